"""Quick runs of the recurrent-cell, neural SDE and diffusion reproduce entries: each run folder
is complete, the metrics are finite, and what a quick run can show holds."""

from __future__ import annotations

import math

import pytest

from torchnde import reproduce

pytestmark = pytest.mark.usefixtures("one_thread")


def quick(name: str, tmp_path) -> dict[str, float]:
    result = reproduce.run_entry(name, quick=True, run_dir=tmp_path, progress=False)
    assert reproduce.verify_run_folder(tmp_path) == []
    (metrics,) = result.per_seed
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    return metrics


def test_cornn_adding_quick(tmp_path):
    m = quick("cornn-adding", tmp_path)
    # 40 iterations cannot solve it; both must at least beat answering 0 (MSE 7/6)
    assert m["mse_cornn"] < 7 / 6 and m["mse_tanh"] < 7 / 6
    assert (tmp_path / "adding-curves.png").exists()


def test_pixel_digits_rnn_quick(tmp_path):
    m = quick("pixel-digits-rnn", tmp_path)
    accuracies = [v for k, v in m.items() if k.startswith("acc_")]
    assert len(accuracies) == 8 and all(0 <= a <= 1 for a in accuracies)


def test_lem_fitzhugh_nagumo_quick(tmp_path):
    m = quick("lem-fitzhugh-nagumo", tmp_path)
    # the residual readout starts at persistence; 30 steps must not make it much worse
    assert m["rmse_lem"] < 3 * m["rmse_persistence"]
    assert m["parameters_lem"] > 0 and (tmp_path / "fhn-curves.png").exists()


def test_noisy_rnn_robustness_quick(tmp_path):
    m = quick("noisy-rnn-robustness", tmp_path)
    assert {"acc_noisy_0", "acc_noisy_0.2", "acc_deterministic_0.2"} <= m.keys()
    assert (tmp_path / "robustness.png").exists()


def test_cornn_basic_motions_quick(tmp_path):
    pytest.importorskip("aeon")
    m = quick("cornn-basic-motions", tmp_path)
    assert 0 <= m["acc_cornn"] <= 1


def test_neural_sde_ou_quick(tmp_path):
    m = quick("neural-sde-ou", tmp_path)
    # fresh Monte Carlo paths of the data process agree with the exact moments (256 paths)
    assert m["monte_carlo_worst"] < 0.25
    assert (tmp_path / "paths.png").exists()


def test_diffusion_toy_quick(tmp_path):
    m = quick("diffusion-toy", tmp_path)
    assert m["sw_moons_halves"] < 0.3 and m["nll_8gaussians"] > 0
    assert (tmp_path / "digits.png").exists() and (tmp_path / "samples-2d.png").exists()
