"""Events: the time where a condition crosses zero, found on the solver's dense output.

Known crossings: a falling ball ``h(t) = h0 + v0 t - g t²/2`` lands at
``t* = (v0 + √(v0² + 2 g h0)) / g``; a bouncing ball with restitution ``e`` bounces at
``t*_k = t*_1 + Σ_{j<k} 2 e^j v*/g``; ``cos t`` crosses zero at ``π/2 + kπ``; ``y = y0 e^{-kt}``
reaches ``c`` at ``log(y0/c)/k``. Under :class:`DirectAdjoint` the event time is differentiable
(implicit function theorem), checked against the analytic derivatives.
"""

from __future__ import annotations

import math

import pytest
import torch

import torchnde
from torchnde import Event, ODETerm, PIDController, SaveAt, Status

F64 = torch.float64
G = 9.81
PID = PIDController(rtol=1e-10, atol=1e-12)


def falling(t, y, args):
    """State (height, velocity); works on (2,) and (batch, 2)."""
    return torch.stack([y[..., 1], torch.full_like(y[..., 1], -G)], dim=-1)


def height(t, y, args):
    return y[..., 0]


def landing_time(h0, v0):
    return (v0 + math.sqrt(v0 * v0 + 2 * G * h0)) / G


def _solve(f, y0, t1, event, **kwargs):
    kwargs.setdefault("controller", PID)
    return torchnde.solve(ODETerm(f), torchnde.Dopri5(), 0.0, t1, y0, event=event, **kwargs)


def test_terminal_event_falling_ball():
    h0, v0 = 10.0, 2.0
    sol = _solve(falling, torch.tensor([h0, v0], dtype=F64), 5.0, Event(height))
    t_star = landing_time(h0, v0)
    assert sol.statuses == [Status.EVENT] and sol.ok and sol.messages == [""]
    assert int(sol.event_index) == 0
    assert abs(float(sol.event_t) - t_star) < 1e-12
    # the solve ends at the event: t1 is reported as the event time, the state is on the ground
    assert float(sol.ts[-1]) == float(sol.event_t)
    assert abs(float(sol.ys[-1, 0])) < 1e-10
    assert float(sol.ys[-1, 1]) == pytest.approx(v0 - G * t_star, rel=1e-12)


def test_terminal_event_time_to_solver_accuracy_on_a_nonlinear_problem():
    """y' = -y² from y0 = 1: y = 1/(1 + t), which reaches 0.3 at t = 7/3. The event time error
    follows the tolerance."""
    errors = []
    for rtol in (1e-6, 1e-10):
        sol = _solve(
            lambda t, y, a: -(y**2),
            torch.ones(1, dtype=F64),
            10.0,
            Event(lambda t, y, a: y[0] - 0.3),
            controller=PIDController(rtol=rtol, atol=rtol / 100),
        )
        assert sol.statuses == [Status.EVENT]
        errors.append(abs(float(sol.event_t) - 7 / 3))
    assert errors[0] < 1e-4 and errors[1] < 1e-8 and errors[1] < errors[0]


def test_bouncing_ball():
    """Three bounces by restarting from each landing with the velocity reversed and damped."""
    e, h0 = 0.8, 5.0
    v_land = math.sqrt(2 * G * h0)
    expected = [math.sqrt(2 * h0 / G)]
    for k in range(1, 3):
        expected.append(expected[-1] + 2 * e**k * v_land / G)
    t, y = 0.0, torch.tensor([h0, 0.0], dtype=F64)
    times = []
    for _ in range(3):
        sol = torchnde.solve(
            ODETerm(falling),
            torchnde.Dopri5(),
            t,
            t + 10.0,
            y,
            controller=PID,
            event=Event(height, direction=-1),
        )
        assert sol.statuses == [Status.EVENT]
        t = float(sol.event_t)
        times.append(t)
        y = torch.stack([torch.zeros((), dtype=F64), -e * sol.ys[-1, 1]])
    assert times == pytest.approx(expected, abs=1e-10)


def _oscillator(t, y, args):
    return torch.stack([y[..., 1], -y[..., 0]], dim=-1)


def test_non_terminal_crossings_and_direction():
    """cos t on [0, 10] crosses zero downwards at π/2, 5π/2 and upwards at 3π/2."""
    events = [
        Event(lambda t, y, a: y[..., 0], terminal=False),
        Event(lambda t, y, a: y[..., 0], terminal=False, direction=1),
        Event(lambda t, y, a: y[..., 0], terminal=False, direction=-1),
    ]
    sol = _solve(_oscillator, torch.tensor([1.0, 0.0], dtype=F64), 10.0, events)
    assert sol.statuses == [Status.SUCCESS]
    assert math.isnan(float(sol.event_t)) and int(sol.event_index) == -1
    pi = math.pi
    any_dir, up, down = (c.tolist() for c in sol.event_crossings)
    assert any_dir == pytest.approx([pi / 2, 3 * pi / 2, 5 * pi / 2], abs=1e-9)
    assert up == pytest.approx([3 * pi / 2], abs=1e-9)
    assert down == pytest.approx([pi / 2, 5 * pi / 2], abs=1e-9)
    # the solve went on to t1 regardless
    torch.testing.assert_close(
        sol.ys[-1, 0], torch.tensor(math.cos(10.0), dtype=F64), rtol=0, atol=1e-8
    )


def test_terminal_direction_filter():
    """A terminal event for upward crossings of cos t ignores π/2 and stops at 3π/2."""
    sol = _solve(
        _oscillator,
        torch.tensor([1.0, 0.0], dtype=F64),
        10.0,
        Event(lambda t, y, a: y[0], direction=1),
    )
    assert float(sol.event_t) == pytest.approx(3 * math.pi / 2, abs=1e-9)


def test_first_of_several_terminal_events_wins():
    events = [
        Event(lambda t, y, a: y[0] - 0.5),  # cos t = 0.5 at π/3
        Event(lambda t, y, a: y[0] - 0.9),  # cos t = 0.9 at arccos(0.9) ≈ 0.451, first
    ]
    sol = _solve(_oscillator, torch.tensor([1.0, 0.0], dtype=F64), 10.0, events)
    assert int(sol.event_index) == 1
    assert float(sol.event_t) == pytest.approx(math.acos(0.9), abs=1e-9)


def test_save_times_after_a_terminal_event_are_nan():
    ts = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=F64)
    h0 = 10.0  # lands at 1.428
    sol = _solve(
        falling,
        torch.tensor([h0, 0.0], dtype=F64),
        5.0,
        Event(height),
        saveat=SaveAt(ts=ts, t1=True),
    )
    torch.testing.assert_close(sol.ys[:2, 0], h0 - G * ts[:2] ** 2 / 2, rtol=1e-12, atol=1e-12)
    assert torch.isnan(sol.ys[2:4]).all()
    assert abs(float(sol.ys[-1, 0])) < 1e-10


def test_events_per_sample():
    """Balls from different heights; the last one does not land before t1 = 1.8."""
    h0 = torch.tensor([10.0, 5.0, 20.0], dtype=F64)
    y0 = torch.stack([h0, torch.zeros(3, dtype=F64)], dim=1)
    sol = _solve(falling, y0, 1.8, Event(height), batch_axis=0)
    assert sol.statuses == [Status.EVENT, Status.EVENT, Status.SUCCESS]
    expected = [landing_time(10.0, 0.0), landing_time(5.0, 0.0)]
    assert sol.event_t[:2].tolist() == pytest.approx(expected, abs=1e-12)
    assert math.isnan(float(sol.event_t[2])) and sol.event_index.tolist() == [0, 0, -1]
    # each sample ends where it stopped
    torch.testing.assert_close(
        sol.ts[:, -1], torch.tensor([*expected, 1.8], dtype=F64), rtol=0, atol=1e-12
    )
    assert sol.ys[:2, -1, 0].abs().max() < 1e-10
    assert float(sol.ys[2, -1, 0]) == pytest.approx(20.0 - G * 1.8**2 / 2, rel=1e-12)


def test_non_terminal_crossings_per_sample_are_nan_padded():
    """cos(ω t) with ω = 1, 2: 3 and 6 zero crossings on [0, 10]."""
    omega = torch.tensor([1.0, 2.0], dtype=F64)

    def osc(t, y, w):
        return torch.stack([w * y[:, 1], -w * y[:, 0]], dim=1)

    sol = _solve(
        osc,
        torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=F64),
        10.0,
        Event(lambda t, y, a: y[:, 0], terminal=False),
        args=omega,
        batch_axis=0,
    )
    crossings = sol.event_crossings[0]
    assert crossings.shape == (2, 6)
    first = [(math.pi / 2 + k * math.pi) for k in range(3)]
    second = [(math.pi / 2 + k * math.pi) / 2 for k in range(6)]
    assert crossings[0, :3].tolist() == pytest.approx(first, abs=1e-9)
    assert torch.isnan(crossings[0, 3:]).all()
    assert crossings[1].tolist() == pytest.approx(second, abs=1e-9)


def test_event_time_gradient_falling_ball():
    """dt*/dh0 = 1/s and dt*/dv0 = (1 + v0/s)/g with s = √(v0² + 2 g h0)."""
    h0, v0 = 10.0, 1.0
    y0 = torch.tensor([h0, v0], dtype=F64, requires_grad=True)
    sol = _solve(falling, y0, 5.0, Event(height), adjoint=torchnde.DirectAdjoint())
    (grad,) = torch.autograd.grad(sol.event_t, y0)
    s = math.sqrt(v0 * v0 + 2 * G * h0)
    torch.testing.assert_close(
        grad, torch.tensor([1 / s, (1 + v0 / s) / G], dtype=F64), rtol=1e-8, atol=0
    )


def test_event_time_gradient_through_args_and_state_batched():
    """y' = -k y reaches c at t* = log(y0/c)/k: dt*/dy0 = 1/(k y0), dt*/dk = -t*/k, per sample."""
    c = 0.2
    y0 = torch.tensor([[1.0], [2.0]], dtype=F64, requires_grad=True)
    k = torch.tensor([1.0, 0.5], dtype=F64, requires_grad=True)
    sol = _solve(
        lambda t, y, rate: -rate[:, None] * y,
        y0,
        20.0,
        Event(lambda t, y, a: y[:, 0] - c),
        args=k,
        batch_axis=0,
    )
    t_star = torch.log(y0.detach()[:, 0] / c) / k.detach()
    torch.testing.assert_close(sol.event_t.detach(), t_star, rtol=1e-9, atol=0)
    g_y0, g_k = torch.autograd.grad(sol.event_t.sum(), (y0, k))
    torch.testing.assert_close(g_y0[:, 0], 1 / (k.detach() * y0.detach()[:, 0]), rtol=1e-6, atol=0)
    torch.testing.assert_close(g_k, -t_star / k.detach(), rtol=1e-6, atol=0)


def test_event_time_gradient_matches_finite_differences_on_the_pendulum():
    """No closed form: the pendulum from rest at angle θ0 reaches θ = 0 at a quarter period.
    Central differences of the event time in θ0 (float64, tight tolerance)."""

    def pendulum(t, y, args):
        return torch.stack([y[1], -torch.sin(y[0])])

    def event_time(theta0):
        y0 = torch.stack([theta0, torch.zeros((), dtype=F64)])
        sol = _solve(
            pendulum,
            y0,
            10.0,
            Event(lambda t, y, a: y[0]),
            controller=PIDController(rtol=1e-12, atol=1e-14),
        )
        return sol.event_t

    theta0 = torch.tensor(1.2, dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(event_time(theta0), theta0)
    eps = 1e-5
    with torch.no_grad():
        fd = (event_time(theta0 + eps) - event_time(theta0 - eps)) / (2 * eps)
    assert float(grad) == pytest.approx(float(fd), rel=1e-5)
    # and the quarter period itself: K(sin²(θ0/2)) by the arithmetic-geometric mean
    a, b = 1.0, math.cos(0.6)
    for _ in range(30):
        a, b = (a + b) / 2, math.sqrt(a * b)
    assert float(event_time(theta0.detach())) == pytest.approx(math.pi / (2 * a), abs=1e-10)


def test_a_condition_that_drops_to_zero_and_stays_fires_where_it_drops():
    """A condition that jumps to exactly 0 at t = 1 and stays 0 (torchdiffeq's examples end a
    search this way) fires at the jump, not at some later zero of the plateau nor at a step's
    end; the condition's value there, with no slope, leaves the event time without a gradient
    path instead of failing."""

    def cond(t, y, args):
        return torch.where(t > 1.0, torch.zeros_like(y[0]), y[0])

    y0 = torch.tensor([1.0], dtype=F64, requires_grad=True)
    sol = torchnde.solve(
        ODETerm(lambda t, y, args: -0.1 * y),
        torchnde.Dopri5(),
        0.0,
        5.0,
        y0,
        controller=PIDController(rtol=1e-8, atol=1e-10),
        event=Event(cond, terminal=True),
    )
    assert sol.status == Status.EVENT
    assert float(sol.event_t) == pytest.approx(1.0, abs=1e-12)
    (grad,) = torch.autograd.grad(sol.ys.sum(), y0)  # no slope at the event: no failure
    assert torch.isfinite(grad).all()
