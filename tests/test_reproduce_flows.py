"""Quick runs of the flow, latent, augmented, CDE and hypersolver reproduce entries: each run
folder is complete, the metrics are finite, and what a quick run can already show holds."""

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


def test_anode_quick_a_node_cannot_swap_two_points(tmp_path):
    m = quick("anode-dupont", tmp_path)
    # any 1-D flow keeps -1 below 1, so its MSE on g(±1) = ∓1 is at least 1
    assert m["swap_order_kept_node"] == 1.0 and m["swap_mse_node"] >= 0.99
    assert m["swap_resnet_crosses"] == 1.0
    assert (tmp_path / "annuli-nfe.png").exists()


def test_ffjord_quick_hutchinson_agrees_with_the_exact_trace(tmp_path):
    m = quick("ffjord-toy", tmp_path)
    for name in ("8gaussians", "moons", "checkerboard"):
        assert m[f"hutchinson_z_{name}"] < 4.0, m
        assert (tmp_path / f"density-{name}.png").exists()


def test_hypersolvers_quick_beats_plain_euler(tmp_path):
    m = quick("hypersolvers", tmp_path)
    assert m["pendulum_hypereuler_error"] < m["pendulum_euler_error"]
    assert m["neural_ode_hypereuler_error"] < m["neural_ode_euler_error"]


def test_latent_ode_quick_equal_parameter_budgets(tmp_path):
    m = quick("latent-ode-spirals", tmp_path)
    assert abs(m["params_gru"] / m["params_latent_ode"] - 1) < 0.05
    assert (tmp_path / "spirals.png").exists()


def test_neural_cde_quick_tells_the_spirals_apart(tmp_path):
    pytest.importorskip("aeon")
    m = quick("neural-cde-irregular", tmp_path)
    assert m["spirals_accuracy"] >= 0.8
