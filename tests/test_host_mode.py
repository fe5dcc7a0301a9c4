"""Host mode (one problem: per-sample bookkeeping as Python numbers) against the tensor path.

Without a batch axis the loop keeps times, flags and counters as Python numbers; differentiating
with respect to a time forces the all-tensor path. Both must take the same steps and give the
same answer. (Not bit for bit: host mode folds an ODE's step size into the stage coefficients,
which rounds differently, and an error estimate — a difference of nearly equal numbers — turns
1e-16 into relative differences of 1e-9 in the next step size; so the comparison allows a small
multiple of the tolerance, and exact equality with constant steps.)
"""

from __future__ import annotations

import pytest
import torch

import torchnde as tn

F64 = torch.float64


def _solve(t0, solver, controller, saveat, dt0=None, t1=3.0):
    def f(t, y, args):
        return torch.stack([y[1], -torch.sin(y[0]) - 0.1 * y[1] + 0.3 * torch.cos(t)])

    return tn.solve(
        tn.ODETerm(f),
        solver,
        t0,
        t1,
        torch.tensor([1.0, 0.0], dtype=F64),
        dt0=dt0,
        controller=controller,
        saveat=saveat,
    )


CASES = [  # solver, controller, dt0, allowed difference
    (tn.Dopri5(), tn.PIDController(rtol=1e-7, atol=1e-9), None, 1e-6),
    (
        tn.Tsit5(),
        tn.PIDController(rtol=1e-5, atol=1e-7, pcoeff=0.2, icoeff=0.5, dcoeff=0.1),
        None,
        1e-4,
    ),
    (tn.Bosh3(), tn.PIDController(rtol=1e-4, atol=1e-6, step_ts=[0.5, 1.7], dtmax=0.4), 0.05, 1e-3),
    (tn.RK4(), tn.ConstantStepSize(), 0.07, 1e-13),
    (tn.Midpoint(), tn.StepTo(torch.linspace(0, 3, 41, dtype=F64)), None, 1e-13),
]


@pytest.mark.parametrize("solver,controller,dt0,tol", CASES)
@pytest.mark.parametrize("backwards", [False, True])
def test_host_mode_equals_the_tensor_path(solver, controller, dt0, tol, backwards):
    if isinstance(controller, tn.StepTo) and backwards:
        controller = tn.StepTo(torch.linspace(0, 3, 41, dtype=F64).flip(0))
    ts = torch.linspace(0.0, 3.0, 7, dtype=F64)
    start, end = (3.0, 0.0) if backwards else (0.0, 3.0)
    saveat = tn.SaveAt(t0=True, ts=ts.flip(0) if backwards else ts, steps=True, t1=True, dense=True)
    step = None if dt0 is None else (-dt0 if backwards else dt0)
    host = _solve(start, solver, controller, saveat, step, end)
    # a time that requires grad keeps the bookkeeping in tensors
    tensor = _solve(
        torch.tensor(start, dtype=F64, requires_grad=True), solver, controller, saveat, step, end
    )
    for key, value in host.stats.items():
        assert int(value) == int(tensor.stats[key]), key
    torch.testing.assert_close(host.ts, tensor.ts.detach(), rtol=0, atol=tol)
    torch.testing.assert_close(host.ys, tensor.ys.detach(), rtol=0, atol=tol)
    probe = torch.tensor([0.3, 1.1, 2.9], dtype=F64)
    torch.testing.assert_close(
        host.evaluate(probe), tensor.evaluate(probe).detach(), rtol=0, atol=tol
    )


def test_host_mode_reports_failures_like_the_tensor_path():
    def blow_up(t, y, args):
        return y**2

    for t0 in (0.0, torch.tensor(0.0, dtype=F64, requires_grad=True)):
        sol = tn.solve(
            tn.ODETerm(blow_up),
            tn.Dopri5(),
            t0,
            2.0,
            torch.ones(1, dtype=F64),
            controller=tn.PIDController(rtol=1e-6, atol=1e-8),
            throw=False,
            saveat=tn.SaveAt(ts=torch.tensor([0.5, 1.5], dtype=F64)),
        )
        assert sol.statuses == [tn.Status.DTMIN]
        torch.testing.assert_close(sol.ys[0], torch.tensor([2.0], dtype=F64), rtol=1e-6, atol=0)
        assert torch.isnan(sol.ys[1]).all()
        with pytest.raises(tn.SolveError, match="max_steps"):
            tn.solve(
                tn.ODETerm(lambda t, y, a: -y),
                tn.Dopri5(),
                t0,
                1e6,
                torch.ones(1, dtype=F64),
                controller=tn.PIDController(rtol=1e-6, atol=1e-8),
                max_steps=20,
            )
