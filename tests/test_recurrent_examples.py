"""The examples of the recurrent-cell, neural SDE and diffusion families run with ``--quick`` and show what
they claim (run in-process: each ``main`` returns its numbers)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


def example(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recurrent_cells_quick_same_weights_other_solvers(capsys):
    results = example("recurrent_cells").main(["--quick"])
    # RK4 on the same ODE stays near the IMEX-trained answer; Euler x1 is another network
    assert abs(results["rk4"] - results["imex"]) < 0.05, results
    assert results["lipschitz_euler_gap"] < 1e-12
    assert "test MSE, the cell's own IMEX scheme" in capsys.readouterr().out


def test_diffusion_2d_quick_samples_both_ways():
    results = example("diffusion_2d").main(["--quick"])
    # a short training already puts both samplers within a few times the data's own distance
    assert results["sde"] < 4 * results["halves"] and results["ode"] < 4 * results["halves"]
    assert 1.0 < results["nll"] < 5.0, results


def test_latent_sde_ou_quick_trains_both_models():
    results = example("latent_sde_ou").main(["--quick"])
    # the ELBO (per batch, at iteration 1 and at the last report, iteration 41) rises by more
    # than an order of magnitude (measured: -4.4e3 -> -2.5e2); both models' errors are reported
    assert results["elbo_last"] > results["elbo_first"] / 8, results
    assert all(math.isfinite(results[k]) for k in ("latent SDE", "SDE-GAN")), results
