"""Hypersolvers: with the exact scaled local error as the correction the corrected steps are
exact; a fitted correction cuts Euler's error on a pendulum more than tenfold; statistics count
the field evaluations; the errors name the argument."""

from __future__ import annotations

import pytest
import torch

import torchnde as tn
from torchnde.nn._hypersolvers import (
    HyperEuler,
    HyperMidpoint,
    HyperNet,
    HyperRK4,
    fit_hypersolver,
    hypersolver_residuals,
)

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
A = torch.tensor([[-0.2, 2.0], [-2.0, -0.2]], dtype=F64)
TRUNCATED = {  # the base method's increment on y' = A y: a truncated exponential series
    HyperEuler: lambda ah: torch.eye(2, dtype=F64) + ah,
    HyperMidpoint: lambda ah: torch.eye(2, dtype=F64) + ah + ah @ ah / 2,
    HyperRK4: lambda ah: sum(
        torch.linalg.matrix_power(ah, k) / [1, 1, 2, 6, 24][k] for k in range(5)
    ),
}


class ExactLocalError(torch.nn.Module):
    """``g(t, y, h) = (e^{Ah} - Ψ(Ah)) y / h^{p+1}``: the scaled local error of the base method."""

    def __init__(self, truncated, order: int):
        super().__init__()
        self.truncated, self.order = truncated, order

    def forward(self, t, y, h):
        ah = A * h
        return y @ ((torch.linalg.matrix_exp(ah) - self.truncated(ah)) / h ** (self.order + 1)).T


@pytest.mark.parametrize("cls", [HyperEuler, HyperMidpoint, HyperRK4])
@pytest.mark.parametrize("batch_axis", [None, 0])
def test_the_exact_correction_makes_every_step_exact(cls, batch_axis):
    order = cls.base().order
    solver = cls(ExactLocalError(TRUNCATED[cls], order))
    y0 = torch.tensor([[1.0, 0.0], [0.3, -0.7]], dtype=F64)
    steps = 5
    sol = tn.solve(
        tn.ODETerm(lambda t, y, args: y @ A.T),
        solver,
        0.0,
        3.0,
        y0,
        dt0=3.0 / steps,
        batch_axis=batch_axis,
    )
    end = sol.ys[:, -1] if batch_axis == 0 else sol.ys[-1]
    exact = y0 @ torch.linalg.matrix_exp(3.0 * A).T
    torch.testing.assert_close(end, exact, rtol=0, atol=1e-12)
    plain = tn.solve(
        tn.ODETerm(lambda t, y, args: y @ A.T), cls.base(), 0.0, 3.0, y0, dt0=3.0 / steps
    ).ys[-1]
    assert (plain - exact).abs().max() > 1e-3  # the base alone is far off
    # evaluations: the base step's, plus the field at each corrected point, plus the first
    nfe = sol.stats["nfe"].max() if batch_axis == 0 else sol.stats["nfe"]
    per_step = {HyperEuler: 1, HyperMidpoint: 2, HyperRK4: 4}[cls] + 1
    assert int(nfe) == 1 + steps * per_step


def pendulum(t, y, args):
    return torch.stack([y[..., 1], -torch.sin(y[..., 0]) - 0.1 * y[..., 1]], dim=-1)


def test_a_fitted_hypereuler_cuts_eulers_error_tenfold_on_a_pendulum():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    train = torch.rand(64, 2, generator=gen) * torch.tensor([3.0, 2.0]) - torch.tensor([1.5, 1.0])
    solver = HyperEuler(HyperNet(2, hidden=32))
    fit = fit_hypersolver(solver, pendulum, train, 0.0, 4.0, 20, iterations=300)
    assert fit.losses[-1] < 1e-3 * fit.residual_scale
    test = torch.rand(32, 2, generator=gen) * torch.tensor([3.0, 2.0]) - torch.tensor([1.5, 1.0])
    exact = tn.solve(
        tn.ODETerm(pendulum),
        tn.Dopri5(),
        0.0,
        4.0,
        test,
        controller=tn.PIDController(rtol=1e-9, atol=1e-9),
    ).ys[-1]
    errors = {}
    with torch.no_grad():
        for name, s in (("hyper", solver), ("euler", tn.Euler()), ("midpoint", tn.Midpoint())):
            end = tn.solve(tn.ODETerm(pendulum), s, 0.0, 4.0, test, dt0=0.2).ys[-1]
            errors[name] = (end - exact).norm(dim=-1).mean().item()
    assert errors["hyper"] < 0.1 * errors["euler"], errors
    assert errors["hyper"] < errors["midpoint"], errors


def test_residuals_are_the_scaled_local_error():
    solver = HyperMidpoint(HyperNet(2))
    y0 = torch.tensor([[1.0, 0.0]], dtype=F64)
    times, starts, residual, h = hypersolver_residuals(
        solver, lambda t, y, args: y @ A.T, y0, 0.0, 1.0, 4
    )
    assert h == 0.25 and times.tolist() == [0.0, 0.25, 0.5, 0.75]
    want = ExactLocalError(TRUNCATED[HyperMidpoint], 2)(None, starts, torch.tensor(h, dtype=F64))
    torch.testing.assert_close(residual, want, rtol=1e-6, atol=1e-8)


def test_errors_name_the_argument():
    with pytest.raises(TypeError, match="correction"):
        HyperEuler(3)
    term = tn.ODETerm(lambda t, y, args: -y)
    with pytest.raises(ValueError, match="error estimate"):
        tn.solve(
            term, HyperEuler(HyperNet(2)), 0.0, 1.0, torch.ones(1, 2), controller=tn.PIDController()
        )
    with pytest.raises(TypeError, match="ODETerm"):
        path = tn.LinearInterpolation(torch.linspace(0, 1, 3), torch.zeros(3, 1, 2))
        tn.solve(
            tn.ControlTerm(lambda t, y, a: y[..., None], path),
            HyperEuler(HyperNet(2)),
            0.0,
            1.0,
            torch.ones(1, 2),
            dt0=0.5,
        )
    with pytest.raises(TypeError, match="hypersolver"):
        fit_hypersolver(tn.Euler(), pendulum, torch.zeros(2, 2), 0.0, 1.0, 4)
    with pytest.raises(ValueError, match="optimizer"):
        fit_hypersolver(
            HyperEuler(HyperNet(2)), pendulum, torch.zeros(2, 2), 0.0, 1.0, 4, optimizer="sgd"
        )
    with pytest.raises(ValueError, match="steps"):
        fit_hypersolver(HyperEuler(HyperNet(2)), pendulum, torch.zeros(2, 2), 0.0, 1.0, 0)
