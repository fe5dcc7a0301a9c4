"""``batch_axis=0``: axis 0 of the state indexes independent problems, each with its own steps,
controller and status.

* a batch gives what each sample gives alone, with the same per-sample step counts;
* per-sample ``t0``/``t1`` (forwards and backwards in one batch), ``dt0`` and ``SaveAt(ts)``;
* a sample that blows up fails alone: the others are correct and ``SUCCESS``.
"""

from __future__ import annotations

import math

import pytest
import torch

import torchnde
from torchnde import ODETerm, PIDController, SaveAt, Status

F64 = torch.float64
STATS = ("num_steps", "num_accepted", "num_rejected", "nfe")


def lotka_volterra(t, y, args):
    """Works on ``(2,)`` and ``(batch, 2)``."""
    x, z = y[..., 0], y[..., 1]
    return torch.stack([1.5 * x - x * z, -3 * z + x * z], dim=-1)


Y0 = torch.tensor([[1.0, 1.0], [2.0, 0.5], [0.5, 3.0], [1.2, 1.7]], dtype=F64)
TS = torch.linspace(0.0, 5.0, 11, dtype=F64)


def _alone_and_batched(solver, **kwargs):
    alone = [torchnde.solve(ODETerm(lotka_volterra), solver, 0.0, 5.0, y0, **kwargs) for y0 in Y0]
    batch = torchnde.solve(ODETerm(lotka_volterra), solver, 0.0, 5.0, Y0, batch_axis=0, **kwargs)
    return alone, batch


@pytest.mark.parametrize(
    ("solver", "rtol"),
    [(torchnde.Dopri5(), 1e-7), (torchnde.Bosh3(), 1e-5)],
    ids=["Dopri5", "Bosh3"],
)
def test_batch_equals_samples_alone_adaptive(solver, rtol):
    alone, batch = _alone_and_batched(
        solver,
        controller=PIDController(rtol=rtol, atol=rtol / 100),
        saveat=SaveAt(ts=TS, t1=True),
    )
    assert batch.ys.shape == (4, 12, 2) and batch.ts.shape == (4, 12)
    steps = batch.stats["num_steps"]
    assert len(set(steps.tolist())) > 1  # the samples really step differently
    for b, sol in enumerate(alone):
        torch.testing.assert_close(batch.ys[b], sol.ys, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(batch.ts[b], sol.ts, rtol=0, atol=0)
        for key in STATS:
            assert int(batch.stats[key][b]) == int(sol.stats[key]), key
    assert batch.statuses == [Status.SUCCESS] * 4


def test_batch_with_per_sample_constant_steps():
    dt0 = torch.tensor([0.1, 0.05, 0.25, 0.5], dtype=F64)
    batch = torchnde.solve(
        ODETerm(lotka_volterra), torchnde.RK4(), 0.0, 5.0, Y0, dt0=dt0, batch_axis=0
    )
    for b in range(4):
        sol = torchnde.solve(
            ODETerm(lotka_volterra), torchnde.RK4(), 0.0, 5.0, Y0[b], dt0=float(dt0[b])
        )
        torch.testing.assert_close(batch.ys[b], sol.ys, rtol=1e-13, atol=1e-13)
        assert int(batch.stats["num_steps"][b]) == round(5.0 / float(dt0[b]))


def test_per_sample_times_and_save_times():
    """y' = -k y with per-sample rates (through args), start and end times, some backwards:
    y(t) = y0 exp(-k (t - t0))."""
    k = torch.tensor([1.0, 0.5, 2.0, 1.5], dtype=F64)
    t0 = torch.tensor([0.0, 1.0, 2.0, 0.5], dtype=F64)
    t1 = torch.tensor([1.0, 3.0, 0.5, -1.0], dtype=F64)  # samples 2 and 3 run backwards
    frac = torch.tensor([0.2, 0.5, 0.9], dtype=F64)
    ts = t0[:, None] + frac * (t1 - t0)[:, None]  # (batch, 3), ordered along each direction
    y0 = torch.tensor([[1.0], [2.0], [0.5], [1.0]], dtype=F64)

    def f(t, y, rate):
        assert t.shape == (4,)  # per-sample times reach the vector field
        return -rate[:, None] * y

    sol = torchnde.solve(
        ODETerm(f),
        torchnde.Dopri5(),
        t0,
        t1,
        y0,
        args=k,
        controller=PIDController(rtol=1e-10, atol=1e-12),
        saveat=SaveAt(t0=True, ts=ts, t1=True),
        batch_axis=0,
    )
    times = torch.cat([t0[:, None], ts, t1[:, None]], dim=1)
    torch.testing.assert_close(sol.ts, times, rtol=0, atol=0)
    exact = y0 * torch.exp(-k[:, None] * (times - t0[:, None]))
    torch.testing.assert_close(sol.ys[..., 0], exact, rtol=1e-8, atol=0)
    assert sol.statuses == [Status.SUCCESS] * 4


def test_one_blow_up_leaves_the_others_untouched():
    """y' = y² from y0 = 10 blows up at t = 0.1; the other samples' exact solution is
    y0 / (1 - y0 t), and each is computed exactly as if it were alone."""
    y0 = torch.tensor([[0.5], [10.0], [-1.0], [0.1]], dtype=F64)
    ts = torch.tensor([0.05, 0.5, 1.0], dtype=F64)
    kwargs = dict(controller=PIDController(rtol=1e-8, atol=1e-10), saveat=SaveAt(ts=ts))

    def f(t, y, args):
        return y**2

    sol = torchnde.solve(
        ODETerm(f), torchnde.Dopri5(), 0.0, 1.0, y0, batch_axis=0, throw=False, **kwargs
    )
    assert sol.statuses[1] in (Status.DTMIN, Status.NONFINITE)
    assert [sol.statuses[b] for b in (0, 2, 3)] == [Status.SUCCESS] * 3
    assert "t=0.1" in sol.messages[1] and sol.messages[0] == ""
    exact = y0 / (1 - y0 * ts)
    for b in (0, 2, 3):
        torch.testing.assert_close(sol.ys[b, :, 0], exact[b], rtol=1e-7, atol=0)
        alone = torchnde.solve(ODETerm(f), torchnde.Dopri5(), 0.0, 1.0, y0[b], **kwargs)
        for key in STATS:
            assert int(sol.stats[key][b]) == int(alone.stats[key]), key
    # the failed sample: its value before the blow-up is right, after it NaN
    assert sol.ys[1, 0, 0].item() == pytest.approx(20.0, rel=1e-6)
    assert torch.isnan(sol.ys[1, 1:]).all()
    # with throw=True the error names only that sample
    with pytest.raises(torchnde.SolveError) as info:
        torchnde.solve(ODETerm(f), torchnde.Dopri5(), 0.0, 1.0, y0, batch_axis=0, **kwargs)
    assert info.value.failed == [1]


def test_finished_samples_stop_counting():
    """A sample with a shorter interval stops: its counters stop, its state stays at its t1."""
    t1 = torch.tensor([0.1, 10.0], dtype=F64)
    sol = torchnde.solve(
        ODETerm(lambda t, y, args: -y),
        torchnde.Dopri5(),
        0.0,
        t1,
        torch.ones(2, 1, dtype=F64),
        controller=PIDController(rtol=1e-8, atol=1e-10),
        batch_axis=0,
    )
    steps = sol.stats["num_steps"]
    assert steps[0] < steps[1]
    torch.testing.assert_close(sol.ys[:, 0, 0], torch.exp(-t1), rtol=0, atol=1e-8)
    nfe = sol.stats["nfe"]
    assert int(nfe[0]) == 2 + 6 * int(steps[0])  # init + first-step choice + 6 per Dopri5 step
    assert math.isclose(float(sol.ts[0, 0]), 0.1) and float(sol.ts[1, 0]) == 10.0
