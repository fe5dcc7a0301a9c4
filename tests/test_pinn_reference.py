"""The reference solvers of torchnde.pinn against known solutions: characteristics and exact
Fourier modes for convection, torchnde.solve for the reaction ODE, the heat and logistic limits
and second-order convergence of Strang splitting, and for Burgers (Cole-Hopf) the benchmark value
of Basdevant et al. 1986, symmetry, boundary values and a finite-difference residual that
vanishes at second order."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import torchnde as tn
from torchnde import pinn

F64 = torch.float64
TWO_PI = 2 * math.pi


def _periodic(n):
    return torch.linspace(0, TWO_PI, n + 1, dtype=F64)[:-1]


def test_convection_spectral_equals_characteristics():
    x, t = _periodic(256), torch.linspace(0, 1, 11, dtype=F64)
    # sin is band-limited: exact to rounding; the Gaussian's periodic extension has a kink of
    # size e^-8 at x = 0, whose Gibbs ripple is ~1e-5 on 256 points
    for initial, tolerance in ((torch.sin, 1e-11), (pinn.INITIAL_CONDITIONS["gauss"], 2e-5)):
        spectral = pinn.convection_solution(x, t, 30.0, initial)
        exact = pinn.convection_characteristics(x, t, 30.0, initial)
        assert spectral.shape == (256, 11)
        torch.testing.assert_close(spectral, exact, atol=tolerance, rtol=0)


def test_convection_diffusion_damps_each_mode_exactly():
    x, t = _periodic(64), torch.linspace(0, 2, 5, dtype=F64)
    u = pinn.convection_solution(x, t, 2.0, lambda x: torch.sin(x) + 0.5 * torch.cos(3 * x), nu=0.1)
    X, T = x[:, None], t[None, :]
    exact = torch.exp(-0.1 * T) * torch.sin(X - 2 * T) + 0.5 * torch.exp(-0.9 * T) * torch.cos(
        3 * (X - 2 * T)
    )
    torch.testing.assert_close(u, exact, atol=1e-13, rtol=0)


def test_reaction_closed_form_solves_the_logistic_ode():
    x, t = _periodic(8), torch.linspace(0, 1, 6, dtype=F64)
    h = pinn.INITIAL_CONDITIONS["gauss"]
    u = pinn.reaction_solution(x, t, 7.0, h)
    solution = tn.solve(
        tn.ODETerm(lambda s, y, args: 7.0 * y * (1 - y)),
        tn.Dopri5(),
        0.0,
        1.0,
        h(x),
        controller=tn.PIDController(rtol=1e-11, atol=1e-13),
        saveat=tn.SaveAt(ts=t),
    )
    torch.testing.assert_close(u, solution.ys.T, atol=1e-9, rtol=0)


def test_reaction_diffusion_limits_are_exact():
    x, t = _periodic(64), torch.linspace(0, 0.5, 4, dtype=F64)
    # no reaction: the heat equation, exp(-nu k^2 t) per mode
    u = pinn.reaction_diffusion_solution(x, t, 0.3, 0.0, lambda x: 2 + torch.cos(2 * x))
    exact = 2 + torch.exp(-1.2 * t)[None, :] * torch.cos(2 * x)[:, None]
    torch.testing.assert_close(u, exact, atol=1e-12, rtol=0)
    # no diffusion: the closed-form reaction
    h = pinn.INITIAL_CONDITIONS["gauss"]
    u = pinn.reaction_diffusion_solution(x, t, 0.0, 5.0, h, max_step=0.05)
    torch.testing.assert_close(u, pinn.reaction_solution(x, t, 5.0, h), atol=1e-12, rtol=0)


def test_strang_splitting_converges_at_second_order():
    x, t = _periodic(128), torch.tensor([0.0, 0.5], dtype=F64)
    h = pinn.INITIAL_CONDITIONS["gauss"]

    def solve(step):
        return pinn.reaction_diffusion_solution(x, t, 3.0, 5.0, h, max_step=step)[:, -1]

    fine = solve(0.05 / 32)
    errors = [(solve(step) - fine).abs().max().item() for step in (0.05, 0.025, 0.0125)]
    orders = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
    assert all(abs(order - 2) < 0.3 for order in orders), (errors, orders)


def test_burgers_matches_the_benchmark_steepest_slope():
    """Basdevant et al. 1986: at nu = 0.01/pi the slope at x = 0 peaks at |u_x| = 152.00516,
    at t = 1.6037/pi."""
    h = 1e-6
    x = torch.tensor([-h, h], dtype=F64)
    t = torch.linspace(0.505, 0.515, 51, dtype=F64)
    u = pinn.burgers_solution(x, t, 0.01 / math.pi)
    slope = ((u[1] - u[0]) / (2 * h)).abs()
    assert slope.max().item() == pytest.approx(152.00516, abs=2e-4)
    assert t[slope.argmax()].item() * math.pi == pytest.approx(1.6037, abs=2e-3)


def test_burgers_initial_values_symmetry_boundaries_and_quadrature_convergence():
    nu = 0.01 / math.pi
    x = torch.linspace(-1, 1, 101, dtype=F64)
    t = torch.tensor([0.0, 0.25, 1.0], dtype=F64)
    u = pinn.burgers_solution(x, t, nu)
    torch.testing.assert_close(u[:, 0], -torch.sin(math.pi * x))
    torch.testing.assert_close(u, -u.flip(0), atol=1e-12, rtol=0)  # odd in x
    assert u[[0, -1]].abs().max() < 1e-12  # u(+-1, t) = 0
    coarse = pinn.burgers_solution(x, t, nu, nodes=100)
    assert (coarse - u).abs().max() < 1e-10
    with pytest.raises(ValueError, match=r"`nodes` must be an int in \[2, 300\]"):
        pinn.burgers_solution(x, t, nu, nodes=1000)


def test_burgers_solution_satisfies_the_pde_at_second_order():
    nu = 0.1 / math.pi

    def residual(n):
        x = torch.linspace(-1, 1, n, dtype=F64)
        dx, dt = (x[1] - x[0]).item(), 1e-4
        u = pinn.burgers_solution(x, torch.tensor([0.5 - dt, 0.5, 0.5 + dt], dtype=F64), nu)
        um = u[:, 1]
        u_t = (u[1:-1, 2] - u[1:-1, 0]) / (2 * dt)
        u_x = (um[2:] - um[:-2]) / (2 * dx)
        u_xx = (um[2:] - 2 * um[1:-1] + um[:-2]) / dx**2
        return (u_t + um[1:-1] * u_x - nu * u_xx).abs().max().item()

    coarse, fine = residual(201), residual(401)
    assert fine < 1e-2 and coarse / fine == pytest.approx(4, rel=0.1)


def test_heat_solution_and_relative_error():
    x, t = torch.linspace(0, 1, 5, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    u = pinn.heat_solution(x, t, 0.1)
    torch.testing.assert_close(u[:, 0], torch.sin(math.pi * x))
    torch.testing.assert_close(u[:, 1], math.exp(-0.1 * math.pi**2) * torch.sin(math.pi * x))
    reference = torch.tensor([3.0, 4.0])
    assert pinn.relative_l2(torch.tensor([3.0, 4.5]), reference) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="same shape"):
        pinn.relative_l2(torch.zeros(3), reference)
    with pytest.raises(ValueError, match="zero everywhere"):
        pinn.relative_l2(reference, torch.zeros(2))


def test_reference_input_errors():
    with pytest.raises(ValueError, match="even grid over one period"):
        pinn.convection_solution(
            torch.linspace(0, TWO_PI, 16, dtype=F64), torch.zeros(1), 1.0, torch.sin
        )
    with pytest.raises(ValueError, match="non-decreasing"):
        pinn.reaction_solution(_periodic(8), torch.tensor([0.5, 0.1]), 1.0, torch.sin)
    with pytest.raises(ValueError, match="one value per grid point"):
        pinn.reaction_solution(_periodic(8), torch.zeros(1), 1.0, torch.zeros(3))
