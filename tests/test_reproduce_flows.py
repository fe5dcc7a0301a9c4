"""Quick runs of the flow, latent, augmented, CDE and hypersolver reproduce entries: each run
folder is complete, the metrics are finite, and what a quick run can already show holds."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

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


def test_latent_ode_spirals_follow_one_law_in_two_directions():
    """Every window lies on r = a + b·θ turning one way or the other (the paper's data), sweeps
    the stated angle, and is observed only in its first half."""
    spirals = importlib.import_module("torchnde.reproduce.entries.latent_ode_spirals")
    ts, xy, obs_t, obs_x, idx = spirals._data(64, 30, seed=3)
    xy = xy.double()
    radius = xy.norm(dim=-1)
    theta = (radius - spirals.RADIUS_A) / spirals.RADIUS_B  # the law gives the angle swept
    angle = torch.atan2(xy[..., 1], xy[..., 0])
    ccw = torch.remainder(angle - theta + math.pi, 2 * math.pi) - math.pi
    cw = torch.remainder(angle + theta + math.pi, 2 * math.pi) - math.pi
    on_ccw, on_cw = ccw.abs().amax(dim=1) < 1e-3, cw.abs().amax(dim=1) < 1e-3
    assert (on_ccw ^ on_cw).all()  # each window on exactly one of the two mirror curves
    assert 20 <= int(on_ccw.sum()) <= 44
    swept = theta[:, -1] - theta[:, 0]
    turns = torch.full_like(swept, 2 * math.pi * spirals.WINDOW_TURNS)
    torch.testing.assert_close(swept, turns, rtol=0, atol=1e-5)  # float32 points
    assert (idx < 50).all() and (idx[:, 1:] > idx[:, :-1]).all()
    torch.testing.assert_close(obs_t, ts[idx])
    noise = obs_x - torch.gather(xy.float(), 1, idx[..., None].expand(-1, -1, 2))
    assert 0.04 < noise.std().item() < 0.06


def test_neural_cde_quick_tells_the_spirals_apart(tmp_path):
    pytest.importorskip("aeon")
    m = quick("neural-cde-irregular", tmp_path)
    assert m["spirals_accuracy"] >= 0.8
