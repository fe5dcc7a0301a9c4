"""The step loop's contracts, driven by stub solvers and controllers whose behaviour is known exactly.

* ``Scripted``: a solver for ``y' = 1`` (exact: ``y1 = y0 + dt``) whose error estimate is
  ``c·dt²`` per sample. With ``PIDController(rtol=0, atol=1)`` the scaled error is exactly ``c·dt²``,
  so every accept/reject decision and every step size can be predicted by hand.
* ``RejectOddAttempts``: a controller that rejects every other attempt of a fixed step; a rejected
  step must leave the solution exactly as if it had never been tried (FSAL state included).

Covered: a forced rejected step, a NaN from the vector field (``Status.NONFINITE`` with its time, per
sample), a zero error estimate (the step grows by ``factormax``), ``dtmin`` (``Status.DTMIN``),
``max_steps`` (``Status.MAX_STEPS``, with the "may be stiff" hint only when the steps are tiny),
``throw=True`` (``SolveError`` naming the failing samples), ``throw=False`` (unreached outputs are
NaN, never garbage), landing on ``t1``/``step_ts``/``jump_ts``/``StepTo`` grids, and the stiff
Van der Pol oscillator ending quickly with a message that points at stiffness.
"""

from __future__ import annotations

import math
import re
import time

import pytest
import torch
from solver_db import by_name

import torchnde
from torchnde import ODETerm, PIDController, Status
from torchnde.solvers import StepResult

F64 = torch.float64


class Scripted(torchnde.AbstractSolver):
    """``y' = 1`` solved exactly, with the error estimate ``c·dt²`` (``c``: scalar or per sample)."""

    order = 1
    error_order = 2
    interpolation_order = 1
    dense_matrix = ((1.0, -1.0), (0.0, 1.0))  # rows (y0, y1): y(θ) = (1 - θ) y0 + θ y1

    def __init__(self, c):
        self.c = torch.as_tensor(c, dtype=F64)

    def init(self, problem, t0, y0):
        return problem.vf(t0, y0), 1

    def step(self, problem, t0, t1, y0, state):
        dt = (t1 - t0)[:, None]
        c = self.c.reshape(-1, 1)
        error = c * dt**2 * torch.ones_like(y0)
        return StepResult(y0 + dt, error, state, (y0, y0 + dt), 0)

    def dense_rows(self, problem, result):
        return torch.stack(result.dense, dim=1)


def _ones(t, y, args):
    return torch.ones_like(y)


def _step_times(sol) -> torch.Tensor:
    """The accepted step end times of an unbatched solve saved with SaveAt(steps=True) only."""
    return sol.ts[~torch.isnan(sol.ts)]


def _failure_time(message: str) -> float:
    match = re.search(r"at t=([-+0-9.e]+)", message)
    assert match, message
    return float(match.group(1))


EXACT_PID = dict(rtol=0.0, atol=1.0)  # scaled error = the raw estimate


# ------------------------------------------------------------------------------------------------
# accept / reject


def test_forced_rejection_then_predicted_step_sizes():
    """c·dt0² = 4 > 1: rejected, the next attempt is dt0·max(0.9·4^(-1/2), factormin) = 0.45·dt0,
    whose error 0.81 is accepted; from then on the factor 0.9·0.81^(-1/2) = 1 keeps the step."""
    dt0 = 0.1
    c = 4 / dt0**2
    sol = torchnde.solve(
        torchnde.ODETerm(_ones),
        Scripted(c),
        0.0,
        1.0,
        torch.zeros(1, dtype=F64),
        dt0=dt0,
        controller=torchnde.PIDController(**EXACT_PID),
        saveat=torchnde.SaveAt(steps=True),
    )
    steps = _step_times(sol)
    assert int(sol.stats["num_rejected"]) == 1
    assert int(sol.stats["num_steps"]) == int(sol.stats["num_accepted"]) + 1
    # the rejected step did not move t: the first accepted step starts at t0
    assert steps[0].item() == pytest.approx(0.045, rel=1e-12)
    sizes = steps.diff()[:-1]  # the last step is shortened to land on t1
    torch.testing.assert_close(sizes, torch.full_like(sizes, 0.045), rtol=1e-9, atol=0)
    assert int(sol.stats["num_accepted"]) == math.ceil(1 / 0.045)
    # y' = 1 is solved exactly, so y(t) = t at every step, and the last step lands on t1 exactly
    torch.testing.assert_close(sol.ys[:, 0], steps, rtol=0, atol=1e-14)
    assert steps[-1].item() == 1.0


class RejectOddAttempts(torchnde.AbstractController):
    """Steps of ``dt0``; the first attempt of each step is rejected and retried unchanged."""

    adaptive = False

    def init(self, problem, solver, t0, t1, y0, dt0, solver_state):
        return t0 + dt0, (dt0, torch.zeros_like(t0)), 0

    def adapt(self, solver, t0, t1, y0, result, state, clipped, finite):
        dt0, attempts = state
        accept = attempts % 2 == 1
        next_end = torch.where(accept, t1 + dt0, t1)
        return accept, next_end, (dt0, attempts + 1), torch.zeros_like(accept)


@pytest.mark.parametrize("name", ["Bosh3", "RK4"])  # FSAL and not
def test_rejected_steps_leave_no_trace(name):
    method = by_name(name)

    def f(t, y, args):
        return torch.stack([1.5 * y[0] - y[0] * y[1], -3 * y[1] + y[0] * y[1]])

    y0 = torch.tensor([1.0, 1.0], dtype=F64)
    kwargs = dict(dt0=0.25, saveat=torchnde.SaveAt(steps=True))
    plain = torchnde.solve(torchnde.ODETerm(f), method.cls(), 0.0, 2.0, y0, **kwargs)
    retried = torchnde.solve(
        torchnde.ODETerm(f), method.cls(), 0.0, 2.0, y0, controller=RejectOddAttempts(), **kwargs
    )
    assert int(retried.stats["num_rejected"]) == int(retried.stats["num_accepted"]) == 8
    assert torch.equal(retried.ts, plain.ts)
    assert torch.equal(retried.ys, plain.ys)
    # a rejected attempt costs the same evaluations as an accepted one
    assert int(retried.stats["nfe"]) == 1 + 16 * method.nfe_per_step


def test_zero_error_estimate_grows_the_step_by_factormax():
    for factormax in (10.0, 3.0):
        sol = torchnde.solve(
            torchnde.ODETerm(_ones),
            Scripted(0.0),
            0.0,
            1.0,
            torch.zeros(1, dtype=F64),
            dt0=1e-6,
            controller=torchnde.PIDController(**EXACT_PID, factormax=factormax),
            saveat=torchnde.SaveAt(steps=True),
        )
        steps = torch.cat([torch.zeros(1, dtype=F64), _step_times(sol)])
        sizes = steps.diff()
        ratios = sizes[1:-1] / sizes[:-2]  # the last step is clipped to t1
        torch.testing.assert_close(ratios, torch.full_like(ratios, factormax), rtol=1e-6, atol=0)
        assert int(sol.stats["num_rejected"]) == 0
        assert sizes[0].item() == pytest.approx(1e-6)
        assert steps[-1].item() == 1.0


# ------------------------------------------------------------------------------------------------
# failures


def test_dtmin_reached_per_sample():
    """Sample 1 needs dt ≤ 1e-4 (c = 1e8), below dtmin = 1e-3: 0.01 is rejected, 0.002 is rejected,
    the next step 0.0004 < dtmin fails. Sample 0 (c = 1) is unaffected."""
    sol = torchnde.solve(
        torchnde.ODETerm(_ones),
        Scripted([1.0, 1e8]),
        0.0,
        1.0,
        torch.zeros(2, 1, dtype=F64),
        dt0=0.01,
        controller=torchnde.PIDController(**EXACT_PID, dtmin=1e-3),
        batch_axis=0,
        throw=False,
    )
    assert sol.statuses == [Status.SUCCESS, Status.DTMIN]
    assert sol.stats["num_accepted"][1] == 0 and sol.stats["num_rejected"][1] == 2
    assert "dtmin=0.001" in sol.messages[1] and sol.messages[0] == ""
    assert "stiff" in sol.messages[1]
    assert sol.ys[0, -1, 0].item() == pytest.approx(1.0, abs=1e-14)
    assert torch.isnan(sol.ys[1]).all()


def test_max_steps_with_tiny_steps_says_stiff():
    """c = 1e6: every accepted step is ~1e-3 on an interval of 10."""
    sol = torchnde.solve(
        torchnde.ODETerm(_ones),
        Scripted(1e6),
        0.0,
        10.0,
        torch.zeros(1, dtype=F64),
        dt0=1e-3,
        controller=torchnde.PIDController(**EXACT_PID),
        max_steps=50,
        throw=False,
    )
    assert sol.statuses == [Status.MAX_STEPS]
    assert int(sol.stats["num_steps"]) == 50
    assert "max_steps=50" in sol.messages[0] and "stiff" in sol.messages[0]
    assert torch.isnan(sol.ys).all()


def test_max_steps_without_stiffness_hint():
    # constant steps: 10 needed, 5 allowed
    sol = torchnde.solve(
        torchnde.ODETerm(_ones),
        torchnde.Euler(),
        0.0,
        1.0,
        torch.zeros(1, dtype=F64),
        dt0=0.1,
        max_steps=5,
        throw=False,
    )
    assert sol.statuses == [Status.MAX_STEPS]
    assert _failure_time(sol.messages[0].replace("reached t=", "at t=")) == pytest.approx(0.5)
    assert "stiff" not in sol.messages[0] and "Raise `max_steps`" in sol.messages[0]
    # adaptive steps of normal size on y' = -y: a few more steps would have been enough
    sol = torchnde.solve(
        torchnde.ODETerm(lambda t, y, args: -y),
        torchnde.Dopri5(),
        0.0,
        10.0,
        torch.ones(1, dtype=F64),
        controller=torchnde.PIDController(rtol=1e-6, atol=1e-9),
        max_steps=20,
        throw=False,
    )
    assert sol.statuses == [Status.MAX_STEPS]
    assert "stiff" not in sol.messages[0] and "Raise `max_steps`" in sol.messages[0]


NAN_AFTER = torch.tensor([2.0, 0.55, 2.0, 0.83], dtype=F64)  # samples 1 and 3 fail


def _nan_after(t, y, args):
    """``y' = -y`` that returns NaN after a per-sample time."""
    return torch.where((t > NAN_AFTER)[:, None], torch.full_like(y, math.nan), -y)


@pytest.mark.parametrize("adaptive", [False, True])
def test_nan_from_vector_field_is_flagged_per_sample(adaptive):
    kwargs = (
        dict(controller=torchnde.PIDController(rtol=1e-8, atol=1e-10))
        if adaptive
        else dict(dt0=0.1)
    )
    ts = torch.linspace(0, 1, 11, dtype=F64)
    sol = torchnde.solve(
        torchnde.ODETerm(_nan_after),
        torchnde.Dopri5() if adaptive else torchnde.RK4(),
        0.0,
        1.0,
        torch.ones(4, 1, dtype=F64),
        batch_axis=0,
        throw=False,
        saveat=torchnde.SaveAt(ts=ts, t1=True),
        **kwargs,
    )
    assert sol.statuses == [Status.SUCCESS, Status.NONFINITE, Status.SUCCESS, Status.NONFINITE]
    tol = 1e-7 if adaptive else 1e-5  # RK4 with dt = 0.1 and its cubic Hermite dense output
    for b in (1, 3):
        t_fail = _failure_time(sol.messages[b])
        if adaptive:  # the step shrinks onto the time the NaN appears
            assert t_fail == pytest.approx(float(NAN_AFTER[b]), abs=1e-4)
        else:  # the start of the constant step in which it appeared
            assert float(NAN_AFTER[b]) - 0.1 <= t_fail <= float(NAN_AFTER[b])
        before = ts <= t_fail
        torch.testing.assert_close(
            sol.ys[b, :11][before, 0], torch.exp(-ts[before]), rtol=tol, atol=tol
        )
        assert torch.isnan(sol.ys[b, :11][ts > NAN_AFTER[b]]).all()
        assert torch.isnan(sol.ys[b, -1]).all()
    for b in (0, 2):
        torch.testing.assert_close(sol.ys[b, :11, 0], torch.exp(-ts), rtol=tol, atol=tol)


def test_throw_names_the_failing_samples():
    with pytest.raises(torchnde.SolveError) as info:
        torchnde.solve(
            torchnde.ODETerm(_nan_after),
            torchnde.RK4(),
            0.0,
            1.0,
            torch.ones(4, 1, dtype=F64),
            dt0=0.1,
            batch_axis=0,
        )
    err = info.value
    assert err.failed == [1, 3]
    message = str(err)
    assert "2 of 4 samples failed" in message
    assert "sample 1 (NONFINITE)" in message and "sample 3 (NONFINITE)" in message
    assert "sample 0" not in message and "sample 2" not in message
    assert err.solution.statuses[0] == Status.SUCCESS
    # unbatched: the status and its message
    with pytest.raises(torchnde.SolveError, match=r"MAX_STEPS.*max_steps=3"):
        torchnde.solve(
            torchnde.ODETerm(_ones),
            torchnde.Euler(),
            0.0,
            1.0,
            torch.zeros(1, dtype=F64),
            dt0=0.1,
            max_steps=3,
        )


def test_unreached_outputs_are_nan_never_garbage():
    """y' = y² from y(0) = 1 blows up at t = 1. Every saved value is either the exact 1/(1 - t)
    (to tolerance, measured on 1/y, which stays well conditioned up to the pole) or NaN, and NaN
    exactly where t was not reached."""
    ts = torch.tensor([0.0, 0.5, 0.9, 0.99, 1.5, 2.0], dtype=F64)
    sol = torchnde.solve(
        torchnde.ODETerm(lambda t, y, args: y**2),
        torchnde.Dopri5(),
        0.0,
        2.0,
        torch.ones(1, dtype=F64),
        controller=torchnde.PIDController(rtol=1e-9, atol=1e-9),
        saveat=torchnde.SaveAt(t0=True, ts=ts, steps=True, t1=True, dense=True),
        throw=False,
    )
    assert sol.statuses == [Status.DTMIN]
    assert _failure_time(sol.messages[0]) == pytest.approx(1.0, abs=1e-3)
    values, times = sol.ys[:, 0], sol.ts
    reached = times < 1.0
    assert torch.isfinite(values[reached]).all()
    torch.testing.assert_close(1 / values[reached], 1 - times[reached], rtol=0, atol=1e-8)
    assert torch.isnan(values[~reached]).all()
    # layout: t0, the six ts, the steps, then t1 (reported at t1, value NaN)
    assert times[0] == 0 and torch.equal(times[1:7], ts) and times[-1] == 2.0
    assert torch.isnan(values[[5, 6, -1]]).all()
    # the dense output stops where the solve stopped
    assert sol.evaluate(0.5).item() == pytest.approx(2.0, rel=1e-7)
    with pytest.raises(ValueError, match="outside the solved interval"):
        sol.evaluate(1.5)


# ------------------------------------------------------------------------------------------------
# landing on prescribed times


def test_adaptive_solve_lands_exactly_on_t1():
    sol = torchnde.solve(
        torchnde.ODETerm(lambda t, y, args: -y),
        torchnde.Dopri5(),
        0.0,
        0.7,
        torch.ones(1, dtype=F64),
        controller=torchnde.PIDController(rtol=1e-6, atol=1e-9),
        saveat=torchnde.SaveAt(steps=True, t1=True),
    )
    assert sol.ts[-2].item() == 0.7 and sol.ts[-1].item() == 0.7


def test_step_ts_are_landed_on():
    step_ts = [0.123, 0.5, 0.77]
    sol = torchnde.solve(
        torchnde.ODETerm(lambda t, y, args: -y),
        torchnde.Dopri5(),
        0.0,
        1.0,
        torch.ones(1, dtype=F64),
        controller=torchnde.PIDController(rtol=1e-6, atol=1e-9, step_ts=step_ts),
        saveat=torchnde.SaveAt(steps=True),
    )
    assert torch.isin(torch.tensor(step_ts, dtype=F64), sol.ts).all()


def test_jump_ts_make_a_discontinuous_field_exact():
    """y' = 1 before t = 0.5 and -1 after: with the jump declared, each piece is linear and solved
    exactly (y(1) = y(0)); without it, the controller must grind through the kink."""

    def kink(t, y, args):
        return torch.where(t < 0.5, 1.0, -1.0) * torch.ones_like(y)

    def run(jump_ts):
        return torchnde.solve(
            torchnde.ODETerm(kink),
            torchnde.Dopri5(),
            0.0,
            1.0,
            torch.zeros(1, dtype=F64),
            controller=torchnde.PIDController(rtol=1e-10, atol=1e-12, jump_ts=jump_ts),
            saveat=torchnde.SaveAt(ts=torch.tensor([0.25, 0.5, 0.75], dtype=F64), t1=True),
        )

    with_jump, without = run([0.5]), run(None)
    # declaring the jump must not cost steps: the stages of the step that ends on it see the field
    # before the jump, the first stage after it the field after
    assert int(with_jump.stats["num_steps"]) < int(without.stats["num_steps"]), (
        with_jump.stats,
        without.stats,
    )
    torch.testing.assert_close(
        with_jump.ys[:, 0], torch.tensor([0.25, 0.5, 0.25, 0.0], dtype=F64), rtol=0, atol=1e-13
    )


def test_step_to_follows_an_uneven_grid():
    """Euler on y' = y over a given grid multiplies by (1 + h_i) exactly."""
    grid = torch.tensor([0.0, 0.1, 0.15, 0.4, 0.45, 1.0], dtype=F64)
    sol = torchnde.solve(
        torchnde.ODETerm(lambda t, y, args: y),
        torchnde.Euler(),
        0.0,
        1.0,
        torch.ones(1, dtype=F64),
        controller=torchnde.StepTo(grid),
        saveat=torchnde.SaveAt(steps=True),
    )
    assert torch.equal(sol.ts, grid[1:])
    torch.testing.assert_close(sol.ys[:, 0], torch.cumprod(1 + grid.diff(), 0), rtol=1e-15, atol=0)


# ------------------------------------------------------------------------------------------------
# the stiff problem


@pytest.mark.slow
def test_stiff_van_der_pol_ends_quickly_and_says_stiff():
    """Van der Pol with μ = 1000 over [0, 3000], Dopri5 with the default PIDController and an
    automatic first step: an explicit method needs ~μ times more steps than the solution's scale
    suggests. The solve must stop at max_steps (not hang) and say why."""

    def vdp(t, y, mu):
        x, v = y[0], y[1]
        return torch.stack([v, mu * (1 - x**2) * v - x])

    start = time.monotonic()
    with pytest.raises(torchnde.SolveError) as info:
        torchnde.solve(
            torchnde.ODETerm(vdp),
            torchnde.Dopri5(),
            0.0,
            3000.0,
            torch.tensor([2.0, 0.0], dtype=F64),
            args=1000.0,
            controller=torchnde.PIDController(),
        )
    elapsed = time.monotonic() - start
    assert elapsed < 60, f"took {elapsed:.1f} s"  # ~15 s alone, ~20 s beside other tests
    sol = info.value.solution
    assert sol.statuses == [Status.MAX_STEPS]
    assert int(sol.stats["num_steps"]) == torchnde.DEFAULT_MAX_STEPS
    message = str(info.value)
    assert "stiff" in message and "implicit" in message and "Kvaerno5()" in message
    assert _failure_time(message.replace("reached t=", "at t=")) < 100  # far from t1 = 3000
    # the fix the message names works
    sol = torchnde.solve(
        torchnde.ODETerm(vdp),
        torchnde.Kvaerno5(),
        0.0,
        3000.0,
        torch.tensor([2.0, 0.0], dtype=F64),
        args=1000.0,
        controller=torchnde.PIDController(),
    )
    assert sol.ok and int(sol.stats["num_steps"]) < 2000
    assert abs(float(sol.ys[-1, 0]) + 1.5106) < 1e-2  # SciPy Radau at rtol 1e-12: -1.51061


# ------------------------------------------------------------------------------------------------
# a step the solver itself fails (an implicit method's Newton iteration)


class FailsAbove(torchnde.AbstractSolver):
    """``y' = 1`` solved exactly, with no error (``PIDController`` grows every accepted step by
    ``factormax``); the step *fails* (``StepResult.failed``) where ``dt`` exceeds a per-sample
    limit, as a Newton iteration that cannot converge on long steps, and it counts its
    "iterations" (one per attempt) in its own statistic."""

    order = 1
    error_order = 2
    interpolation_order = 1
    dense_matrix = ((1.0, -1.0), (0.0, 1.0))
    statistics = ("num_newton_iterations",)
    failure_hint = "its stub iteration fails on steps above the limit"

    def __init__(self, limit):
        self.limit = torch.as_tensor(limit, dtype=F64)

    def init(self, problem, t0, y0):
        return problem.vf(t0, y0), 1

    def step(self, problem, t0, t1, y0, state):
        dt = t1 - t0
        failed = dt > self.limit
        failed = bool(failed) if not isinstance(t0, torch.Tensor) else failed.reshape(dt.shape)
        dtc = dt[:, None] if isinstance(dt, torch.Tensor) else dt
        y1 = y0 + dtc * torch.ones_like(y0)
        counts = {"num_newton_iterations": 3}
        return StepResult(y1, torch.zeros_like(y0), state, (y0, y1), 0, failed, counts)

    def dense_rows(self, problem, result):
        return torch.stack(result.dense, dim=1)


@pytest.mark.parametrize("batch_axis", [None, 0])
def test_a_failed_step_is_retried_smaller_and_counted(batch_axis):
    y0 = torch.zeros(2, 1, dtype=F64) if batch_axis == 0 else torch.zeros(1, dtype=F64)
    limit = [0.3, 0.05] if batch_axis == 0 else 0.3
    sol = torchnde.solve(
        ODETerm(_ones),
        FailsAbove(limit),
        0.0,
        1.0,
        y0,
        dt0=0.25,
        controller=PIDController(rtol=0.0, atol=1.0, factormax=2.0),
        batch_axis=batch_axis,
    )
    assert sol.ok
    torch.testing.assert_close(sol.ys[..., -1, :] if batch_axis == 0 else sol.ys[-1], y0 + 1)
    rejected = sol.stats["num_rejected"]
    assert bool((rejected >= 1).all())  # each sample hit its limit at least once and shrank
    if batch_axis == 0:
        assert int(rejected[1]) > int(rejected[0])  # the stricter limit fails more often
    torch.testing.assert_close(sol.stats["num_newton_iterations"], 3 * sol.stats["num_steps"])


def test_a_failure_that_persists_down_to_dtmin_is_its_own_status():
    y0 = torch.zeros(3, 1, dtype=F64)
    limit = torch.tensor([1.0, 1e-9, 1.0], dtype=F64)  # sample 1 cannot take any usable step
    sol = torchnde.solve(
        ODETerm(_ones),
        FailsAbove(limit),
        0.0,
        1.0,
        y0,
        dt0=0.1,
        controller=PIDController(rtol=0.0, atol=1.0, dtmin=1e-6),
        batch_axis=0,
        throw=False,
    )
    assert sol.statuses == [Status.SUCCESS, Status.NONCONVERGENCE, Status.SUCCESS]
    assert "could not complete a step at t=0" in sol.messages[1]
    assert "its stub iteration fails on steps above the limit" in sol.messages[1]
    assert bool(torch.isnan(sol.ys[1]).all()) and float(sol.fail_t[1]) == 0.0
    with pytest.raises(torchnde.SolveError, match="sample 1 \\(NONCONVERGENCE\\)"):
        torchnde.solve(
            ODETerm(_ones),
            FailsAbove(limit),
            0.0,
            1.0,
            y0,
            dt0=0.1,
            controller=PIDController(rtol=0.0, atol=1.0, dtmin=1e-6),
            batch_axis=0,
        )


def test_with_constant_steps_a_failed_step_ends_the_sample_at_once():
    sol = torchnde.solve(
        ODETerm(_ones),
        FailsAbove(0.05),
        0.0,
        1.0,
        torch.zeros(1, dtype=F64),
        dt0=0.1,
        throw=False,
    )
    assert sol.statuses == [Status.NONCONVERGENCE]
    assert int(sol.stats["num_steps"]) == 1
