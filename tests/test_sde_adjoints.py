"""Gradients through SDE and CDE solves: direct and checkpointed backpropagation against finite
differences on a fixed Brownian path, and the continuous (backsolve) adjoint converging to them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchnde as tn

F64 = torch.float64


# small tensors: one intra-op thread is fastest (conftest.one_thread restores it after)
pytestmark = pytest.mark.usefixtures("one_thread")


class _Drift(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 3))

    def forward(self, t, y, args):
        return self.net(y) * args


class _Diffusion(nn.Module):
    """General (non-commutative) noise: 3 state channels, 2 Brownian motions."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(3, 6)

    def forward(self, t, y, args):
        return 0.5 * torch.tanh(self.net(y)).reshape(*y.shape, 2)


def _sde(batch_axis=None, steps=2**9, batch=3):
    torch.manual_seed(0)
    drift, diffusion = _Drift().double(), _Diffusion().double()
    shape = (batch, 2) if batch_axis == 0 else (2,)
    path = tn.BrownianGrid(0.0, 1.0, shape, steps=steps, seed=7, batch_axis=batch_axis, dtype=F64)
    term = tn.MultiTerm(tn.ODETerm(drift), tn.ControlTerm(diffusion, path))
    return term, [*drift.parameters(), *diffusion.parameters()]


def _grads(term, params, solver, adjoint, dt, batch_axis=None, saveat=None):
    torch.manual_seed(1)
    y0 = torch.randn(3, 3, dtype=F64, requires_grad=True)
    scale = torch.tensor(0.9, dtype=F64, requires_grad=True)
    sol = tn.solve(
        term,
        solver,
        0.0,
        1.0,
        y0,
        args=scale,
        dt0=dt,
        saveat=saveat,
        adjoint=adjoint,
        batch_axis=batch_axis,
    )
    loss = (sol.ys**2).sum() + sol.ys[..., 0].sum()
    return torch.autograd.grad(loss, [y0, scale, *params])


def _relative_error(grads, reference) -> float:
    return max(float((g - r).abs().max() / r.abs().max()) for g, r in zip(grads, reference))


# ------------------------------------------------------------------------------------------------
# discretise-then-optimise: direct and checkpointed backpropagation


@pytest.mark.parametrize("batch_axis", [None, 0])
@pytest.mark.parametrize("solver", [tn.Euler(), tn.Heun()], ids=["Euler", "Heun"])
def test_direct_and_checkpoint_agree(solver, batch_axis):
    """Both backpropagate through the same operations of an SDE solve (Itô Euler–Maruyama and
    Stratonovich Heun): the same gradients w.r.t. y0, args, drift and diffusion parameters."""
    term, params = _sde(batch_axis)
    saves = tn.SaveAt(ts=torch.tensor([0.25, 0.5, 0.75], dtype=F64), t1=True)
    direct = _grads(term, params, solver, tn.DirectAdjoint(), 2**-6, batch_axis, saves)
    checkpoint = _grads(
        term, params, solver, tn.CheckpointAdjoint(checkpoints=4), 2**-6, batch_axis, saves
    )
    for c, d in zip(checkpoint, direct):
        torch.testing.assert_close(c, d, rtol=1e-10, atol=1e-12)
    assert all(float(d.abs().max()) > 0 for d in direct)


@pytest.mark.parametrize("adjoint", [tn.DirectAdjoint(), tn.CheckpointAdjoint(checkpoints=3)])
def test_gradcheck_on_a_fixed_path(adjoint):
    """y0 and args against finite differences, on one Brownian path (float64)."""
    path = tn.BrownianGrid(0.0, 1.0, (2,), steps=32, seed=3, dtype=F64)
    w = torch.tensor([[0.3, -0.5], [0.8, 0.1]], dtype=F64)

    def run(y0, a):
        term = tn.MultiTerm(
            tn.ODETerm(lambda t, y, args: -args * y + torch.sin(y)),
            tn.ControlTerm(lambda t, y, args: torch.tanh(y[:, None] * w), path),
        )
        sol = tn.solve(
            term,
            tn.Heun(),
            0.0,
            1.0,
            y0,
            args=a,
            dt0=1 / 32,
            saveat=tn.SaveAt(ts=torch.tensor([0.5], dtype=F64), t1=True),
            adjoint=adjoint,
        )
        return sol.ys

    inputs = (
        torch.tensor([0.7, -0.4], dtype=F64, requires_grad=True),
        torch.tensor(0.6, dtype=F64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(run, inputs, atol=1e-7, rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# optimise-then-discretise: the stochastic (Stratonovich) adjoint


@pytest.mark.parametrize(
    ("batch_axis", "solver"),
    [(None, tn.Heun()), (0, tn.ReversibleHeun())],
    ids=["Heun", "ReversibleHeun-batched"],
)
def test_backsolve_converges_to_the_direct_gradient(batch_axis, solver):
    """On one path, the backsolve gradient (the Stratonovich adjoint SDE solved backwards) and
    backpropagation through the discretisation both tend to the gradient of the exact solution:
    their difference falls as the step shrinks."""
    term, params = _sde(batch_axis)
    errors = []
    for dt in (2**-3, 2**-7):
        direct = _grads(term, params, solver, tn.DirectAdjoint(), dt, batch_axis)
        backsolve = _grads(term, params, solver, tn.BacksolveAdjoint(), dt, batch_axis)
        errors.append(_relative_error(backsolve, direct))
    # strong order 0.5 in general: a 16 times smaller step at least quarters the difference
    assert errors[1] < errors[0] / 4, errors
    assert errors[1] < 2e-3, errors


def test_backsolve_over_adaptive_steps_on_a_virtual_tree():
    """Adaptive forward steps (a different grid per sample): the backward solve takes every
    sample's step times, and agrees with direct backpropagation to the accuracy of the steps."""
    torch.manual_seed(0)
    drift, diffusion = _Drift().double(), _Diffusion().double()
    params = [*drift.parameters(), *diffusion.parameters()]
    path = tn.VirtualBrownianTree(0.0, 1.0, (3, 2), tol=1e-4, seed=2, batch_axis=0, dtype=F64)
    term = tn.MultiTerm(tn.ODETerm(drift), tn.ControlTerm(diffusion, path))
    grads = {}
    for name, adjoint in (("direct", tn.DirectAdjoint()), ("backsolve", tn.BacksolveAdjoint())):
        y0 = torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(5))
        y0.requires_grad_(True)
        sol = tn.solve(
            term,
            tn.ReversibleHeun(),
            0.0,
            1.0,
            y0,
            args=torch.tensor(0.9, dtype=F64),
            controller=tn.PIDController(rtol=1e-3, atol=1e-3),
            adjoint=adjoint,
            batch_axis=0,
        )
        grads[name] = torch.autograd.grad((sol.ys**2).sum(), [y0, *params])
    steps = sol.stats["num_accepted"]
    assert len(set(steps.tolist())) > 1  # the samples stepped differently
    assert _relative_error(grads["backsolve"], grads["direct"]) < 0.03


def test_backsolve_cde_converges_and_reaches_the_path_data():
    """A neural CDE over a linear interpolation: the backsolve gradient w.r.t. the initial state,
    the field's weights and the observations converges to the direct one (fourth order: RK4
    both ways)."""
    torch.manual_seed(3)
    ts = torch.linspace(0, 1, 6, dtype=F64)
    xs = torch.randn(6, 2, dtype=F64, requires_grad=True)
    weight = (0.3 * torch.randn(3, 3, 2, dtype=F64)).requires_grad_(True)

    def field(t, z, args):
        return torch.tanh(torch.einsum("ijc,j->ic", weight, z))

    def grads(adjoint, dt):
        z0 = torch.ones(3, dtype=F64, requires_grad=True)
        path = tn.LinearInterpolation(ts, xs)
        sol = tn.solve(tn.ControlTerm(field, path), tn.RK4(), 0.0, 1.0, z0, dt0=dt, adjoint=adjoint)
        return torch.autograd.grad((sol.ys**2).sum(), [z0, xs, weight])

    errors = [
        _relative_error(grads(tn.BacksolveAdjoint(), dt), grads(tn.DirectAdjoint(), dt))
        for dt in (0.1, 0.025)
    ]
    assert errors[1] < errors[0] / 30, errors
    assert errors[1] < 3e-5


def test_backsolve_refuses_what_it_cannot_differentiate():
    term, _ = _sde()
    y0 = torch.ones(3, 3, dtype=F64, requires_grad=True)
    one = torch.tensor(1.0, dtype=F64)
    with pytest.raises(ValueError, match=r"Itô.*Heun\(\)"):  # the adjoint SDE is Stratonovich
        tn.solve(term, tn.Euler(), 0.0, 1.0, y0, args=one, dt0=0.125, adjoint=tn.BacksolveAdjoint())
    with pytest.raises(ValueError, match=r"BacksolveAdjoint\(solver=Heun\(\)\)"):
        tn.solve(
            term,
            tn.Heun(),
            0.0,
            1.0,
            y0,
            args=one,
            dt0=0.125,
            adjoint=tn.BacksolveAdjoint(solver=tn.Euler()),
        )
    with pytest.raises(ValueError, match="t0"):
        tn.solve(
            term,
            tn.Heun(),
            torch.tensor(0.0, dtype=F64, requires_grad=True),
            1.0,
            y0,
            args=one,
            dt0=0.125,
            adjoint=tn.BacksolveAdjoint(),
        )
