"""torchnde.training's windows and multiple shooting, on fields with known solutions: each window's
solution is the exact one from its initial state (shared and per-window solves agree), the loss is
the scaled error over the observed values, multiple shooting learns both the field and the
initial states, a failed solve counts as a large loss with no gradient, and bad input is refused
naming the argument."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import torchnde as tn
from torchnde.training import MultipleShooting, Stage, Trainer, TrajectoryWindows, WindowSampler

F64 = torch.float64


class Decay(nn.Module):
    """dy/dt = -k y (autonomous): y(t) = y(t0) exp(-k (t - t0))."""

    def __init__(self, k: float = 0.5):
        super().__init__()
        self.k = nn.Parameter(torch.tensor(k, dtype=F64))

    def forward(self, t, y, args=None):
        return -self.k * y


class Forced(nn.Module):
    """dy/dt = cos(t) (depends on time): y(t) = y(t0) + sin(t) - sin(t0)."""

    def forward(self, t, y, args=None):
        return torch.cos(t).reshape(t.shape + (1,) * (y.ndim - t.ndim)).expand_as(y)


def decay_data(n=21, k=0.5, missing=()):
    ts = torch.linspace(0.0, 4.0, n, dtype=F64)
    ys = torch.stack([3.0 * torch.exp(-k * ts), -2.0 * torch.exp(-k * ts)], -1)
    for i, j in missing:
        ys[i, j] = math.nan
    return ts, ys


def test_windows_start_at_complete_observations_every_stride():
    ts, ys = decay_data(missing=[(3, 0), (10, 1)])
    windows = TrajectoryWindows(ts, ys, 5, stride=2, solver=tn.RK4())
    assert windows.starts.tolist() == [0, 2, 4, 6, 8, 12, 14, 16]  # 10 is incomplete
    assert windows.times.shape == (8, 5) and windows.target.shape == (8, 5, 2)
    assert not bool(windows.mask[0, 3, 0]) and int((~windows.mask).sum()) == 4
    assert windows.y0.tolist() == ys[windows.starts].tolist()
    torch.testing.assert_close(windows.scale, torch.tensor([3.0, 2.0], dtype=F64))
    cover = windows.covering()
    assert cover.tolist() == [0, 2, 4, 5, 7]  # starts 0, 4, 8, 12, 16: each where the last ends
    covered = {int(s) + j for s in windows.starts[cover] for j in range(5)}
    assert covered == set(range(21))


@pytest.mark.parametrize(
    ("solver", "controller"),
    [(tn.RK4(), None), (tn.Tsit5(), tn.PIDController(rtol=1e-10, atol=1e-12))],
)
def test_each_window_is_the_exact_solution_from_its_start(solver, controller):
    ts, ys = decay_data()
    options = dict(solver=solver, controller=controller, dt0=0.01)
    windows = TrajectoryWindows(ts, ys, 6, autonomous=True, **options)
    assert windows.shared
    starts = windows.y0 * 1.1  # off the data: the solution follows the start given
    pred = windows.solve(Decay(), starts)
    exact = starts[:, None, :] * torch.exp(-0.5 * (windows.times - windows.times[:, :1]))[..., None]
    torch.testing.assert_close(pred, exact, rtol=1e-7, atol=1e-9)
    per_window = TrajectoryWindows(ts, ys, 6, autonomous=False, **options)
    assert not per_window.shared
    torch.testing.assert_close(per_window.solve(Decay(), starts), pred, rtol=1e-7, atol=1e-9)
    dense = windows.solve(Decay(), starts[[2, 5]], torch.tensor([2, 5]), points=9)
    times = windows.times_at(torch.tensor([2, 5]), 9)
    assert dense.shape == (2, 9, 2) and torch.allclose(times[:, -1], windows.times[[2, 5], -1])
    exact = starts[[2, 5], None, :] * torch.exp(-0.5 * (times - times[:, :1]))[..., None]
    torch.testing.assert_close(dense, exact, rtol=1e-7, atol=1e-9)


def test_a_time_dependent_field_gets_each_windows_own_times():
    ts, ys = decay_data()
    windows = TrajectoryWindows(ts, ys[:, :1], 4, solver=tn.RK4(), dt0=0.01)
    pred = windows.solve(Forced())
    exact = windows.y0[:, None, :] + (
        torch.sin(windows.times) - torch.sin(windows.times[:, :1])
    ).unsqueeze(-1)
    torch.testing.assert_close(pred, exact, rtol=1e-8, atol=1e-9)


def test_the_loss_is_the_scaled_error_over_observed_values():
    ts, ys = decay_data(missing=[(3, 0)])
    windows = TrajectoryWindows(ts, ys, 5, solver=tn.RK4())
    prediction = torch.nan_to_num(windows.target.clone()) + torch.tensor([0.3, 0.0], dtype=F64)
    loss = windows.loss(prediction)
    observed_x = int(windows.mask[..., 0].sum())
    expected = observed_x * (0.3 / 3.0) ** 2 / int(windows.mask.sum())
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="`prediction` has shape"):
        windows.loss(prediction[:, :3])


def test_multiple_shooting_learns_the_field_and_the_starts_from_noisy_data():
    ts, clean = decay_data(n=41, k=0.8)
    noisy = clean + 0.05 * torch.randn(
        clean.shape, dtype=F64, generator=torch.Generator().manual_seed(0)
    )
    windows = TrajectoryWindows(ts, noisy, 8, solver=tn.RK4(), dt0=0.05, autonomous=True)
    field = Decay(k=0.3)
    model = MultipleShooting(field, windows)
    assert isinstance(model.starts, nn.Parameter) and model.starts.shape == (windows.count, 2)
    truth = clean[windows.starts]
    with torch.no_grad():
        noise_floor = float(windows.loss(windows.solve(Decay(k=0.8), truth)))
        before = float(model.loss())
    assert before > 5 * noise_floor
    Trainer(
        model,
        lambda m, idx: m.loss(idx),
        [Stage("adam", steps=60, lr=0.05), Stage("lbfgs", steps=20, lr=1.0)],
        sampler=WindowSampler(windows.count),
        seed=0,
    ).fit()
    assert float(model.loss().detach()) < 1.05 * noise_floor  # down to the noise
    assert field.k.item() == pytest.approx(0.8, rel=0.03)
    # the learnt starts lie closer to the truth than the noisy observations they started from
    assert (model.starts - truth).norm() < 0.8 * (windows.y0 - truth).norm()
    fixed = MultipleShooting(Decay(), windows, learn_starts=False)
    assert "starts" in dict(fixed.named_buffers()) and not list(fixed.parameters())[1:]


def test_a_failed_solve_is_a_large_loss_without_gradient():
    class Blowup(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.tensor(1.0, dtype=F64))

        def forward(self, t, y, args=None):
            return self.a * y**3

    ts = torch.linspace(0.0, 4.0, 9, dtype=F64)
    ys = torch.full((9, 1), 5.0, dtype=F64)
    windows = TrajectoryWindows(ts, ys, 9, solver=tn.RK4(), dt0=0.05, autonomous=True)
    model = MultipleShooting(Blowup(), windows)
    loss = model.loss()
    assert loss.item() == 1e6
    loss.backward()
    assert float(model.field.a.grad) == 0.0 and float(model.starts.grad.abs().sum()) == 0.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ts, ys: TrajectoryWindows(ts, ys, 1), "`width` must be at least 2"),
        (lambda ts, ys: TrajectoryWindows(ts, ys, 4, stride=0), "`stride` must be a whole number"),
        (lambda ts, ys: TrajectoryWindows(ts.flip(0), ys, 4), "strictly increasing, but ts[1]"),
        (lambda ts, ys: TrajectoryWindows(ts, ys[:5], 4), r"`ys` must have shape \(T, states\)"),
        (lambda ts, ys: TrajectoryWindows(ts, ys * math.nan, 4), "no window starts"),
        (lambda ts, ys: TrajectoryWindows(ts, ys, 4, solver="rk4"), "`solver` must be a torchnde"),
        (lambda ts, ys: TrajectoryWindows(ts, ys, 4).solve(Decay(), idx=[99]), "outside 0..17"),
        (lambda ts, ys: MultipleShooting(Decay(), (ts, ys)), "`windows` must be TrajectoryWindows"),
    ],
)
def test_bad_input_is_refused_naming_the_argument(call, message):
    ts, ys = decay_data()
    with pytest.raises((ValueError, TypeError), match=message.replace("[", r"\[")):
        call(ts, ys)
