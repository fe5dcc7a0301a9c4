"""The quick runs of the neural-ODE / diagnostics reproduce entries: each writes a complete run
folder with finite metrics, and shows what a quick run can of its criterion."""

from __future__ import annotations

import pytest

from torchnde import reproduce

pytestmark = pytest.mark.usefixtures("one_thread")


def _quick(name: str, tmp_path) -> reproduce.RunResult:
    result = reproduce.run_entry(name, quick=True, run_dir=tmp_path, progress=False)
    assert reproduce.verify_run_folder(tmp_path) == []
    return result


def test_adjoint_check_quick_holds(tmp_path):
    result = _quick("adjoint-check", tmp_path)
    metrics = result.per_seed[0]
    assert metrics["backsolve_error"] < 1e-6 and metrics["augmented_error"] < 1e-6
    assert metrics["invariant_drift"] < 1e-6
    assert result.outcome.criterion_met
    assert (tmp_path / "invariant.png").exists()


def test_convolution_pde_quick_recovers_the_coefficients(tmp_path):
    result = _quick("convolution-pde", tmp_path)
    metrics = result.per_seed[0]
    assert metrics["roundtrip_error"] < 1e-12
    assert metrics["advection_error"] < 0.02 and metrics["diffusion_error"] < 0.05
    assert "**HELD**" in (tmp_path / "report.md").read_text() or not result.outcome.criterion_met


def test_convergence_test_quick_shows_the_euler_rk4_contrast(tmp_path):
    result = _quick("convergence-test", tmp_path)
    metrics = result.per_seed[0]
    # even briefly trained, the Euler net's refined limit is several times worse than its fit,
    # the RK4 net's is not
    assert metrics["oscillator_Euler_ratio"] > 3 and metrics["oscillator_Euler_continuous"] == 0
    assert metrics["oscillator_RK4_ratio"] < 1.2 and metrics["oscillator_RK4_continuous"] == 1
    assert abs(metrics["oscillator_RK4_order_own_scheme"] - 4) < 0.3
    assert abs(metrics["oscillator_Euler_order_own_scheme"] - 1) < 0.1
    assert (tmp_path / "convergence.png").exists()


def test_ode_net_digits_quick_learns_and_its_backsolve_memory_is_flat(tmp_path):
    result = _quick("ode-net-digits", tmp_path)
    metrics = result.per_seed[0]
    assert metrics["odenet_accuracy"] > 0.2 and metrics["resnet_accuracy"] > 0.2  # chance: 0.1
    if "backsolve_memory_ratio" in metrics:  # Linux /proc
        # loose: the quick model is small, so a few pages of allocator noise are a few percent
        # (the full run's criterion is ±10 %: it measured 1.01 ± 0.01)
        assert abs(metrics["backsolve_memory_ratio"] - 1) < 0.25
        assert metrics["direct_memory_ratio"] > 2  # backprop's memory grows with the steps
