"""Neural CDE layer: a field that does not depend on z integrates the path exactly, shared and
per-sample times agree, a CDE without a time channel is invariant to reparameterising time,
count channels count, gradients reach the field, and the errors name the argument."""

from __future__ import annotations

import pytest
import torch

import torchnde as tn
from torchnde.nn._cde import NeuralCDE

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
TIGHT = tn.PIDController(rtol=1e-7, atol=1e-7)


class ConstantField(torch.nn.Module):
    """``f(z) = M``: then ``z(T) = z0 + M (X(T) - X(t0))``."""

    def __init__(self, hidden: int, channels: int):
        super().__init__()
        self.m = torch.nn.Parameter(torch.randn(hidden, channels, dtype=F64))

    def forward(self, t, z, args):
        return self.m.expand(*z.shape[:-1], *self.m.shape)


def data(batch=3, length=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ts = torch.rand(length, generator=gen, dtype=F64).cumsum(0)
    xs = torch.randn(batch, length, 2, generator=gen, dtype=F64)
    xs[0, 2, 1] = float("nan")
    xs[1, -1, 0] = float("nan")
    return ts, xs


@pytest.mark.parametrize("per_sample", [False, True])
def test_a_field_independent_of_z_integrates_the_path_exactly(per_sample):
    torch.manual_seed(0)
    ts, xs = data()
    # per sample, the steps cross the observation times, where the spline's curvature jumps:
    # many rejected steps, so a looser tolerance there
    controller = tn.PIDController(rtol=1e-6, atol=1e-6) if per_sample else TIGHT
    model = NeuralCDE(
        2, 4, 1, field=ConstantField(4, 3), controller=controller, clock="time"
    ).double()
    times = ts.expand(3, -1).clone() if per_sample else ts
    sol = model.solve(times, xs)
    z_end = sol.ys[:, -1] if per_sample else sol.ys[-1]
    obs = model.channels_of(ts, xs)
    first, last = obs[:, 0], obs[:, -1].clone()
    last[1, 1] = obs[1, -2, 1]  # the path holds the last observation of a missing channel
    z0 = model.initial(first)
    atol = 1e-3 if per_sample else 1e-6
    torch.testing.assert_close(z_end, z0 + (last - first) @ model.field.m.T, rtol=0, atol=atol)


def test_shared_and_per_sample_times_agree_and_gradients_flow():
    torch.manual_seed(1)
    ts, xs = data()
    model = NeuralCDE(
        2, 6, 3, controller=tn.PIDController(rtol=1e-6, atol=1e-6), clock="time"
    ).double()
    shared = model(ts, xs)
    per = model(ts.expand(3, -1).clone(), xs)
    torch.testing.assert_close(per, shared, rtol=0, atol=1e-3)
    per.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_without_a_time_channel_the_output_does_not_depend_on_the_clock():
    """A CDE sees the path's image only: a monotone reparameterisation of time changes nothing
    (Kidger et al. 2020) — and with time as a channel it does."""
    torch.manual_seed(2)
    ts, xs = data(seed=3)
    xs = xs.nan_to_num(0.5)
    warped = ts.pow(2) + 0.3 * ts  # increasing for ts > 0
    for time_channel in (False, True):
        model = NeuralCDE(
            2,
            5,
            2,
            path=tn.LinearInterpolation,
            time_channel=time_channel,
            controller=tn.PIDController(rtol=1e-9, atol=1e-9, jump_ts=ts),
        ).double()
        a = model(ts, xs)
        model.controller = tn.PIDController(rtol=1e-9, atol=1e-9, jump_ts=warped)
        b = model(warped, xs)
        if time_channel:
            assert (a - b).abs().max() > 1e-3
        else:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def test_the_index_clock_gives_each_sample_what_its_own_times_give():
    """Per-sample times on the shared index clock: with a piecewise-linear path (the same image
    on either clock) each sample's output equals that of the sample solved alone on its own
    times."""
    torch.manual_seed(4)
    gen = torch.Generator().manual_seed(5)
    ts = torch.rand(3, 6, generator=gen, dtype=F64).cumsum(1)
    xs = torch.randn(3, 6, 2, generator=gen, dtype=F64)
    model = NeuralCDE(
        2, 4, 2, path=tn.LinearInterpolation, controller=tn.PIDController(rtol=1e-9, atol=1e-9)
    ).double()
    together = model(ts, xs)
    for b in range(3):
        model.controller = tn.PIDController(rtol=1e-9, atol=1e-9, jump_ts=ts[b])
        alone = model(ts[b], xs[b : b + 1])
        torch.testing.assert_close(together[b], alone[0], rtol=0, atol=1e-7)
        model.controller = tn.PIDController(rtol=1e-9, atol=1e-9)


def test_count_channels_and_steps_on_the_observations():
    ts, xs = data()
    model = NeuralCDE(2, 4, 1, count_channels=True).double()
    obs = model.channels_of(ts, xs)
    assert obs.shape == (3, 8, 5)
    torch.testing.assert_close(obs[..., 0], ts.expand(3, -1))
    assert obs[0, -1, 3:].tolist() == [8.0, 7.0] and obs[1, -1, 3:].tolist() == [7.0, 8.0]
    assert obs[0, 2, 4] == obs[0, 1, 4]  # nothing new was observed at t_2 in channel 1
    with torch.no_grad():
        model(ts, xs)
        landed = model.last_stats["nfe"]
        model.step_on_observations = False
        model(ts, xs)
    assert landed <= model.last_stats["nfe"]


def test_errors_name_the_argument():
    ts, xs = data()
    model = NeuralCDE(2, 4, 1).double()
    with pytest.raises(ValueError, match="`xs` must be shaped"):
        model(ts, xs[0])
    with pytest.raises(ValueError, match="3 channels"):
        model(ts, torch.zeros(3, 8, 3, dtype=F64))
    with pytest.raises(ValueError, match="`ts` must be shaped"):
        model(ts[:4], xs)
    with pytest.raises(ValueError, match="hidden_size"):
        NeuralCDE(2, 0, 1)
    with pytest.raises(ValueError, match="clock"):
        NeuralCDE(2, 3, 1, clock="hours")
    with pytest.raises(TypeError, match="path"):
        NeuralCDE(2, 3, 1, path="hermite")
