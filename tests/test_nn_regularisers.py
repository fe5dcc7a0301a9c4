"""Regularisers accumulated during the solve: each integral equals a direct quadrature of the
same quantity along the solution, under every adjoint, with the same gradients; the solver
heuristic equals ``Σ_j E_j |h_j|`` computed by hand on a linear ODE; misuse is refused."""

from __future__ import annotations

import pytest
import torch

import torchnde as tn
from torchnde.nn._cnf import CNF
from torchnde.nn._jacobian import HutchinsonTrace
from torchnde.nn._regularisers import (
    JacobianFrobenius,
    KineticEnergy,
    Regularised,
    SolverHeuristic,
)

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


class Field(torch.nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, 12), torch.nn.Tanh(), torch.nn.Linear(12, 2)
        ).to(F64)

    def forward(self, t, y, args=None):
        return self.net(torch.cat([y, t.expand(*y.shape[:-1], 1)], dim=-1))


def simpson(values: torch.Tensor, h: float) -> torch.Tensor:
    """Composite Simpson over the first axis (odd number of points)."""
    w = torch.ones(values.shape[0], dtype=values.dtype)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return (w.reshape(-1, *([1] * (values.ndim - 1))) * values).sum(0) * h / 3


def jacobians(field, t, y):
    """``∂f/∂y`` per sample: ``(batch, d, d)``."""
    return torch.stack(
        [torch.autograd.functional.jacobian(lambda v: field(t, v[None])[0], row) for row in y]
    )


def test_kinetic_and_frobenius_integrals_equal_quadrature_along_the_solution():
    field = Field()
    reg = Regularised(field, [KineticEnergy(), JacobianFrobenius()])
    y0 = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    ts = torch.linspace(0, 1.5, 201, dtype=F64)
    out = reg.solve(
        tn.Dopri5(),
        0.0,
        1.5,
        y0,
        saveat=tn.SaveAt(ts=ts),
        controller=tn.PIDController(rtol=1e-10, atol=1e-10),
        generator=torch.Generator().manual_seed(3),
    )
    noise = HutchinsonTrace("gaussian").noise(y0, torch.Generator().manual_seed(3))
    kinetic, frob = [], []
    for t, y in zip(ts, out.ys):
        y = y.detach().requires_grad_(True)
        f = field(t, y)
        (ej,) = torch.autograd.grad(f, y, noise)
        kinetic.append(f.detach().pow(2).sum(1))
        frob.append(ej.pow(2).sum(1))
    h = float(ts[1] - ts[0])
    torch.testing.assert_close(
        out.penalties["kinetic"], simpson(torch.stack(kinetic), h), rtol=1e-7, atol=0
    )
    torch.testing.assert_close(
        out.penalties["jacobian_frobenius"], simpson(torch.stack(frob), h), rtol=1e-7, atol=0
    )
    # Hutchinson's Frobenius estimate is not the exact norm (one noise vector), but near it
    exact = simpson(
        torch.stack([jacobians(field, t, y).pow(2).sum((1, 2)) for t, y in zip(ts, out.ys)]), h
    )
    assert (out.penalties["jacobian_frobenius"] - exact).abs().max() < exact.max()


def test_cnf_exact_trace_gives_the_exact_frobenius_norm_and_kinetic_energy():
    field = Field(seed=1)
    cnf = CNF(
        field,
        controller=tn.PIDController(rtol=1e-10, atol=1e-10),
        regularisers=[KineticEnergy(), JacobianFrobenius()],
    )
    x = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    out = cnf(x)
    # the data-to-base trajectory, saved densely, integrated by hand over [t0, t1]
    ts = torch.linspace(1.0, 0.0, 201, dtype=F64)
    sol = tn.solve(
        tn.ODETerm(field),
        tn.Dopri5(),
        1.0,
        0.0,
        x,
        saveat=tn.SaveAt(ts=ts),
        controller=tn.PIDController(rtol=1e-10, atol=1e-10),
    )
    with torch.no_grad():
        kinetic = torch.stack([field(t, y).pow(2).sum(1) for t, y in zip(ts, sol.ys)])
    frob = torch.stack([jacobians(field, t, y).pow(2).sum((1, 2)) for t, y in zip(ts, sol.ys)])
    h = float(ts[0] - ts[1])
    torch.testing.assert_close(out.penalties["kinetic"], simpson(kinetic, h), rtol=1e-7, atol=0)
    torch.testing.assert_close(
        out.penalties["jacobian_frobenius"], simpson(frob, h), rtol=1e-7, atol=0
    )
    assert (out.penalties["kinetic"] > 0).all()


def test_penalty_gradients_agree_across_adjoints():
    y0 = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    adjoints = {
        "direct": tn.DirectAdjoint(),
        "checkpoint": tn.CheckpointAdjoint(),
        "backsolve": tn.BacksolveAdjoint(rtol=1e-11, atol=1e-11),
    }
    grads = {}
    for name, adjoint in adjoints.items():
        field = Field(seed=4)
        reg = Regularised(field, [KineticEnergy(), JacobianFrobenius()])
        out = reg.solve(
            tn.Tsit5(),
            0.0,
            1.0,
            y0,
            controller=tn.PIDController(rtol=1e-10, atol=1e-10),
            adjoint=adjoint,
            generator=torch.Generator().manual_seed(0),
        )
        loss = out.ys[-1].pow(2).sum() + sum(p.sum() for p in out.penalties.values())
        loss.backward()
        grads[name] = torch.cat([p.grad.flatten() for p in field.parameters()])
    assert grads["direct"].abs().max() > 1e-3
    torch.testing.assert_close(grads["checkpoint"], grads["direct"], rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(grads["backsolve"], grads["direct"], rtol=1e-6, atol=1e-8)


def test_penalty_gradients_under_the_reversible_adjoint_equal_directs():
    """ReversibleAdjoint (through ReversibleHeun) reconstructs each step backwards: the
    penalties' gradients are DirectAdjoint's discrete ones to rounding."""
    y0 = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    grads = {}
    for name, adjoint in (("direct", tn.DirectAdjoint()), ("reversible", tn.ReversibleAdjoint())):
        field = Field(seed=4)
        reg = Regularised(field, [KineticEnergy(), JacobianFrobenius()])
        out = reg.solve(
            tn.ReversibleHeun(),
            0.0,
            1.0,
            y0,
            dt0=0.05,
            adjoint=adjoint,
            generator=torch.Generator().manual_seed(0),
        )
        loss = out.ys[-1].pow(2).sum() + sum(p.sum() for p in out.penalties.values())
        loss.backward()
        grads[name] = torch.cat([p.grad.flatten() for p in field.parameters()])
    assert grads["direct"].abs().max() > 1e-3
    torch.testing.assert_close(grads["reversible"], grads["direct"], rtol=1e-10, atol=1e-12)


def heun_euler_heuristic(y0: torch.Tensor, lam: float, h: float, steps: int, rtol, atol):
    """``Σ_j E_j h`` for Heun–Euler on ``y' = λ y``: its estimate is ``h²λ²y_j/2``."""
    total = torch.zeros(y0.shape[:-1], dtype=y0.dtype)
    y = y0
    for _ in range(steps):
        y1 = y * (1 + h * lam + (h * lam) ** 2 / 2)
        scale = atol + rtol * torch.maximum(y.abs(), y1.abs())
        err = (h * lam) ** 2 * y / 2 / scale
        total = total + err.pow(2).mean(-1).sqrt() * h
        y = y1
    return total


@pytest.mark.parametrize("batch_axis", [None, 0])
def test_solver_heuristic_is_the_sum_of_scaled_error_estimates(batch_axis):
    lam, h = -1.3, 0.1
    reg = Regularised(lambda t, y, args: lam * y, [SolverHeuristic(rtol=1e-3, atol=1e-4)])
    y0 = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.1, 0.2]], dtype=F64)
    out = reg.solve(tn.HeunEuler(), 0.0, 1.0, y0, dt0=h, batch_axis=batch_axis)
    if batch_axis == 0:
        want = heun_euler_heuristic(y0, lam, h, 10, 1e-3, 1e-4)
    else:  # one problem: the RMS runs over the whole state
        want = heun_euler_heuristic(y0.reshape(1, -1), lam, h, 10, 1e-3, 1e-4)[0]
    torch.testing.assert_close(out.penalties["solver_heuristic"], want, rtol=1e-12, atol=0)
    y_end = y0 * (1 + h * lam + (h * lam) ** 2 / 2) ** 10
    final = out.ys[:, -1] if batch_axis == 0 else out.ys[-1]  # Solution's layout
    torch.testing.assert_close(final, y_end, rtol=1e-12, atol=0)


def test_solver_heuristic_is_differentiable_and_takes_the_controller_tolerances():
    grads = {}
    for name, adjoint in (("direct", tn.DirectAdjoint()), ("checkpoint", tn.CheckpointAdjoint())):
        field = Field(seed=5)
        reg = Regularised(field, [SolverHeuristic()])
        y0 = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
        out = reg.solve(
            tn.Dopri5(), 0.0, 2.0, y0, controller=tn.PIDController(1e-4, 1e-6), adjoint=adjoint
        )
        penalty = out.penalties["solver_heuristic"]
        assert penalty.ndim == 0 and 0 < penalty.item() < 2.0  # accepted steps have E_j <= 1
        penalty.backward()
        grads[name] = torch.cat([p.grad.flatten() for p in field.parameters()])
    assert grads["direct"].abs().max() > 0
    torch.testing.assert_close(grads["checkpoint"], grads["direct"], rtol=1e-9, atol=1e-12)
    # a looser tolerance scales the same error estimates down
    loose = Regularised(Field(seed=5), [SolverHeuristic(rtol=1e-2, atol=1e-4)])
    out_loose = loose.solve(tn.Dopri5(), 0.0, 2.0, y0, controller=tn.PIDController(1e-4, 1e-6))
    assert out_loose.penalties["solver_heuristic"].item() < penalty.item()


def test_misuse_is_refused_with_the_fix():
    field = Field()
    y0 = torch.zeros(2, 2, dtype=F64)
    with pytest.raises(ValueError, match="BacksolveAdjoint"):
        Regularised(field, [SolverHeuristic()]).solve(
            tn.Dopri5(), 0.0, 1.0, y0, adjoint=tn.BacksolveAdjoint()
        )
    with pytest.raises(ValueError, match="error estimate"):
        Regularised(field, [SolverHeuristic()]).solve(tn.RK4(), 0.0, 1.0, y0, dt0=0.1)
    with pytest.raises(TypeError, match=r"regularisers\[0\].*KineticEnergy\(\)"):
        Regularised(field, [KineticEnergy])
    with pytest.raises(TypeError, match=r"regularisers\[1\]"):
        Regularised(field, [KineticEnergy(), "kinetic"])
    with pytest.raises(ValueError, match="distinct"):
        Regularised(field, [KineticEnergy(), KineticEnergy()])
    with pytest.raises(ValueError, match="BacksolveAdjoint"):
        CNF(field, regularisers=[SolverHeuristic()], adjoint=tn.BacksolveAdjoint())
