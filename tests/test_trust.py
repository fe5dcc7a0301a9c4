"""No silent wrong results (issue 8, the solver core): each test reproduces a defect that used to
return a wrong answer with a success status, or an error a user could not act on.

* a vector field (or event function) that modifies ``y`` in place is refused by name, and the
  caller's ``y0`` is left alone;
* a vector field whose output shape or dtype changes after the first evaluation is refused with
  the same message as at ``t0`` (it used to be broadcast silently);
* the smallest step is local to the time reached (float32 on a long interval used to fail at
  ``t=0``), an adaptive step near ``t1`` is never extended back to a rejected length (it used to
  loop until ``max_steps``), and the DTMIN message says when the time dtype is the likely cause;
* ``DirectAdjoint`` differentiates a value saved at ``ts[0] == t0`` with respect to ``ts[0]``
  (it gave 0);
* the failure time is a field of the solution; one sample with a non-finite ``y0`` is flagged
  without rejecting the batch or leaking NaN into the others' gradients;
* misspelt keywords name the nearest valid ones; a Brownian path follows the state's dtype;
* the backward solve of ``BacksolveAdjoint`` says it was the backward solve; a non-finite
  derivative is reported with the interval where it arose.
"""

from __future__ import annotations

import math
import sys
import time
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import torchnde as tn
from torchnde import ODETerm, PIDController, SaveAt, Status

F64 = torch.float64
PID = dict(rtol=1e-8, atol=1e-10)


def decay(t, y, args):
    return -y


# ------------------------------------------------------------------------------------------------
# fields that mutate their input


def _mutating(t, y, args):
    y.mul_(0.5)
    return -y


@pytest.mark.parametrize("batch_axis", [None, 0])
def test_a_field_that_mutates_y_in_place_is_refused_and_y0_is_untouched(batch_axis):
    y0 = torch.ones(3, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"`_mutating` modified its input `y` in place"):
        tn.solve(
            ODETerm(_mutating),
            tn.Dopri5(),
            0.0,
            1.0,
            y0,
            controller=PIDController(**PID),
            batch_axis=batch_axis,
        )
    assert torch.equal(y0, torch.ones(3, 2, dtype=F64))


def test_mutation_of_one_leaf_of_a_tuple_state_is_refused():
    def field(t, y, args):
        x, v = y
        v[0] = 0.0  # item assignment is an in-place change too
        return v, -x

    y0 = (torch.ones(2, dtype=F64), torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match="in place"):
        tn.solve(ODETerm(field), tn.RK4(), 0.0, 1.0, y0, dt0=0.1)


def test_a_diffusion_that_mutates_y_is_refused():
    path = tn.BrownianGrid(0.0, 1.0, (2,), steps=8, seed=0)

    def diffusion(t, y, args):
        y += 1.0
        return torch.ones_like(y)

    term = tn.MultiTerm(ODETerm(decay), tn.ControlTerm(diffusion, path, noise="diagonal"))
    with pytest.raises(ValueError, match="`diffusion` modified its input"):
        tn.solve(term, tn.EulerMaruyama(), 0.0, 1.0, torch.ones(2, dtype=F64), dt0=0.125)


def test_an_event_function_that_mutates_y_is_refused():
    def cond(t, y, args):
        y.zero_()
        return y[0] - 0.5

    with pytest.raises(ValueError, match="event function `cond` modified its input"):
        tn.solve(
            ODETerm(decay),
            tn.Dopri5(),
            0.0,
            1.0,
            torch.ones(2, dtype=F64),
            controller=PIDController(**PID),
            event=tn.Event(cond),
        )


# ------------------------------------------------------------------------------------------------
# outputs whose shape changes mid-solve


def _changes_after(calls: int, wrong):
    count = [0]

    def field(t, y, args):
        count[0] += 1
        return -y if count[0] <= calls else wrong(y)

    return field


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda y: -y[..., :1], r"returned shape \(1,\), but the state needs \(3,\)"),
        (lambda y: -y[None], r"returned shape \(1, 3\), but the state needs \(3,\)"),
        (lambda y: (-y).float(), r"returned dtype torch.float32"),
    ],
    ids=["narrower", "extra-axis", "dtype"],
)
def test_a_field_that_changes_its_output_later_is_refused_with_the_t0_message(wrong, message):
    y0 = torch.ones(3, dtype=F64)
    field = _changes_after(5, wrong)
    with pytest.raises((ValueError, TypeError), match=message):
        tn.solve(ODETerm(field), tn.Dopri5(), 0.0, 1.0, y0, controller=PIDController(**PID))
    # the same message as a wrong output at t0
    with pytest.raises((ValueError, TypeError), match=message):
        tn.solve(
            ODETerm(_changes_after(0, wrong)),
            tn.Dopri5(),
            0.0,
            1.0,
            y0,
            controller=PIDController(**PID),
        )


def test_a_diffusion_that_changes_its_shape_later_is_refused():
    path = tn.BrownianGrid(0.0, 1.0, (2,), steps=16, seed=1)
    count = [0]

    def diffusion(t, y, args):
        count[0] += 1
        g = torch.ones(2, 2, dtype=F64)
        return g if count[0] < 4 else g[:, :1]

    term = tn.MultiTerm(ODETerm(decay), tn.ControlTerm(diffusion, path))
    with pytest.raises(ValueError, match=r"`diffusion` \(ControlTerm, noise='general'\) returned"):
        tn.solve(term, tn.Heun(), 0.0, 1.0, torch.ones(2, dtype=F64), dt0=1 / 16)


# ------------------------------------------------------------------------------------------------
# the smallest step, landing on t1, the DTMIN message


def _oscillator(t, y, args):
    return torch.stack([y[1], -(300.0**2) * y[0]])


def test_float32_on_a_long_interval_does_not_fail_at_t0():
    """The resolution limit is local: a first step far below 4·eps·t1 is fine at t = 0."""
    sol = tn.solve(
        ODETerm(_oscillator),
        tn.Dopri5(),
        0.0,
        100.0,
        torch.tensor([1.0, 0.0]),
        controller=PIDController(),
        max_steps=1500,
        throw=False,
    )
    assert sol.statuses == [Status.MAX_STEPS]  # it runs: 100 time units need ~31000 steps
    assert float(sol.fail_t) > 2.0


def test_an_adaptive_step_near_t1_is_not_extended_back_to_a_rejected_length():
    """Near t1 = 1e12 a proposal within 100 ulps of t1 used to be extended to land on it; after a
    rejection the shrunk proposal was extended again to the same rejected step, until max_steps.
    The stub accepts steps up to 0.01 exactly (error estimate 1e4·dt², atol 1)."""
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from test_loop_contracts import Scripted

    sol = tn.solve(
        ODETerm(lambda t, y, a: torch.ones_like(y)),
        Scripted(1e4),
        1e12 - 1,
        1e12,
        torch.zeros(1, dtype=F64),
        dt0=0.005,
        controller=PIDController(rtol=0.0, atol=1.0),
        max_steps=5000,
        throw=False,
    )
    assert sol.statuses == [Status.SUCCESS]
    assert int(sol.stats["num_steps"]) < 150
    torch.testing.assert_close(sol.ys, torch.ones(1, 1, dtype=F64))


def _blow_up(t, y, args):
    return y**2  # y(t) = 1/(1 - t): a singularity at t = 1


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_the_dtmin_message_names_the_time_dtype_only_when_it_can_be_the_cause(dtype):
    sol = tn.solve(
        ODETerm(_blow_up),
        tn.Dopri5(),
        0.0,
        2.0,
        torch.ones(1, dtype=dtype),
        controller=PIDController(rtol=1e-6, atol=1e-8),
        throw=False,
    )
    assert sol.statuses == [Status.DTMIN]
    message = sol.messages[0]
    assert "singular" in message and "stiff" in message
    assert abs(float(sol.fail_t) - 1.0) < 1e-3
    if dtype == torch.float32:
        assert "float32 times are too coarse" in message and "float64" in message
    else:
        assert "float32" not in message


def test_a_user_dtmin_is_named_in_the_message():
    sol = tn.solve(
        ODETerm(_blow_up),
        tn.Dopri5(),
        0.0,
        2.0,
        torch.ones(1, dtype=F64),
        controller=PIDController(rtol=1e-6, atol=1e-8, dtmin=1e-4),
        throw=False,
    )
    assert sol.statuses == [Status.DTMIN]
    assert "dtmin=0.0001" in sol.messages[0]


# ------------------------------------------------------------------------------------------------
# the gradient of a value saved at ts[0] == t0


@pytest.mark.parametrize(
    "adjoint",
    [tn.DirectAdjoint(), tn.CheckpointAdjoint(), tn.BacksolveAdjoint(**PID)],
    ids=["direct", "checkpoint", "backsolve"],
)
@pytest.mark.parametrize("batch_axis", [None, 0])
def test_the_value_saved_at_t0_moves_with_ts0_at_the_rate_f(adjoint, batch_axis):
    """y(s) = y0·exp(-s) for y' = -y: dy(s)/ds at s = t0 = 0.3 is -y0·exp(-0.3)·... = -y(t0)."""
    y0 = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=F64)
    y0 = y0 if batch_axis == 0 else y0[0]
    ts = torch.tensor([0.3, 0.6, 1.0], dtype=F64, requires_grad=True)
    sol = tn.solve(
        ODETerm(decay),
        tn.Dopri5(),
        0.3,
        1.0,
        y0,
        controller=PIDController(**PID),
        saveat=SaveAt(ts=ts),
        adjoint=adjoint,
        batch_axis=batch_axis,
    )
    first = sol.ys[:, 0] if batch_axis == 0 else sol.ys[0]
    (grad,) = torch.autograd.grad(first.sum(), ts)
    torch.testing.assert_close(grad[0], -y0.sum(), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(grad[1:], torch.zeros(2, dtype=F64))


def test_direct_time_gradients_at_t0_agree_with_checkpointing():
    """t0 and ts[0] both requiring grad (as the same value): the gradients of a value saved at
    t0 are -f (t0) and +f (ts[0]), as CheckpointAdjoint computes them."""
    grads = []
    for adjoint in (tn.DirectAdjoint(), tn.CheckpointAdjoint()):
        t0 = torch.tensor(0.2, dtype=F64, requires_grad=True)
        ts = torch.tensor([0.2, 0.7], dtype=F64, requires_grad=True)
        sol = tn.solve(
            ODETerm(lambda t, y, a: -y * (1 + t)),
            tn.Dopri5(),
            t0,
            1.0,
            torch.tensor([1.0, 3.0], dtype=F64),
            controller=PIDController(**PID),
            saveat=SaveAt(ts=ts),
            adjoint=adjoint,
        )
        grads.append(torch.autograd.grad(sol.ys.square().sum(), (t0, ts)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------------------------------------
# failure times, one bad sample in a batch


def test_the_failure_time_is_a_field_of_the_solution():
    y0 = torch.tensor([[0.5], [1.0], [2.0]], dtype=F64)  # blow-ups at t = 2, 1, 0.5
    sol = tn.solve(
        ODETerm(_blow_up),
        tn.Dopri5(),
        0.0,
        1.5,
        y0,
        controller=PIDController(rtol=1e-6, atol=1e-8),
        batch_axis=0,
        throw=False,
    )
    assert sol.statuses == [Status.SUCCESS, Status.DTMIN, Status.DTMIN]
    assert math.isnan(float(sol.fail_t[0]))
    torch.testing.assert_close(
        sol.fail_t[1:], torch.tensor([1.0, 0.5], dtype=F64), atol=1e-3, rtol=0
    )
    assert f"t={float(sol.fail_t[2]):.6g}" in sol.messages[2]


@pytest.mark.parametrize(
    "adjoint",
    [tn.DirectAdjoint(), tn.CheckpointAdjoint(), tn.BacksolveAdjoint(**PID)],
    ids=["direct", "checkpoint", "backsolve"],
)
def test_one_nan_initial_state_is_flagged_and_the_others_are_solved(adjoint):
    w = torch.tensor(0.7, dtype=F64, requires_grad=True)

    def field(t, y, args):
        return -w * y

    y0 = torch.tensor([[1.0, 2.0], [math.nan, 1.0], [-1.0, 0.5]], dtype=F64)
    ts = torch.linspace(0, 1, 4, dtype=F64)
    sol = tn.solve(
        ODETerm(field),
        tn.Dopri5(),
        0.0,
        1.0,
        y0,
        controller=PIDController(**PID),
        saveat=SaveAt(ts=ts),
        adjoint=adjoint,
        batch_axis=0,
        throw=False,
    )
    assert sol.statuses == [Status.SUCCESS, Status.NONFINITE, Status.SUCCESS]
    assert "initial state" in sol.messages[1] and float(sol.fail_t[1]) == 0.0
    assert bool(torch.isnan(sol.ys[1]).all())
    good = y0[[0, 2]]
    expected = good[:, None, :] * torch.exp(-0.7 * ts)[None, :, None]
    torch.testing.assert_close(sol.ys[[0, 2]], expected, rtol=1e-6, atol=1e-8)
    (grad,) = torch.autograd.grad(sol.ys[[0, 2]].sum(), w)
    exact = -(good.sum() * ts * torch.exp(-0.7 * ts)).sum()
    torch.testing.assert_close(grad, exact, rtol=1e-5, atol=1e-7)
    with pytest.raises(tn.SolveError, match=r"1 of 3 samples failed:\n  sample 1 \(NONFINITE\)"):
        tn.solve(
            ODETerm(field), tn.Dopri5(), 0.0, 1.0, y0, controller=PIDController(**PID), batch_axis=0
        )


# ------------------------------------------------------------------------------------------------
# errors a user can act on


@pytest.mark.parametrize(
    "make, expected",
    [
        (
            lambda: PIDController(dt_min=1e-3),
            "`PIDController` has no argument `dt_min`; did you mean `dtmin`?",
        ),
        (lambda: PIDController(rtoll=1e-3), "did you mean `rtol`"),
        (lambda: SaveAt(t=torch.ones(2)), "`SaveAt` has no argument `t`; did you mean `ts`"),
        (lambda: tn.BacksolveAdjoint(max_step=10), "did you mean `max_steps`"),
        (lambda: tn.CheckpointAdjoint(checkpoint=3), "did you mean `checkpoints`?"),
        (
            lambda: tn.solve(ODETerm(decay), tn.Dopri5(), 0.0, 1.0, torch.ones(1), rtol=1e-3),
            "`solve` has no argument `rtol`; tolerances and step limits belong to the step-size controller",
        ),
        (
            lambda: tn.solve(ODETerm(decay), tn.Dopri5(), 0.0, 1.0, torch.ones(1), method="dopri5"),
            "pass a solver object",
        ),
    ],
)
def test_misspelt_keywords_name_the_nearest_valid_ones(make, expected):
    with pytest.raises(TypeError) as info:
        make()
    assert expected in str(info.value)


@pytest.mark.parametrize("noise", ["general", "additive", "diagonal"])
def test_a_brownian_path_built_without_dtype_follows_a_float64_state(noise):
    bm = tn.VirtualBrownianTree(0.0, 1.0, shape=(2,), tol=1e-3, seed=0)
    g = torch.ones(2, 2, dtype=F64) if noise != "diagonal" else torch.ones(2, dtype=F64)
    term = tn.MultiTerm(ODETerm(decay), tn.ControlTerm(lambda t, y, a: g, bm, noise=noise))
    sol = tn.solve(term, tn.EulerMaruyama(), 0.0, 1.0, torch.ones(2, dtype=F64), dt0=0.01)
    assert sol.ys.dtype == F64 and bool(torch.isfinite(sol.ys).all())
    assert bm.increment(torch.tensor(0.0, dtype=F64), torch.tensor(0.5, dtype=F64)).dtype == F64


def test_a_path_of_another_dtype_than_the_state_is_named():
    bm = tn.VirtualBrownianTree(0.0, 1.0, shape=(2,), seed=0, dtype=torch.float32)
    term = tn.MultiTerm(
        ODETerm(decay), tn.ControlTerm(lambda t, y, a: torch.ones(2, 2, dtype=F64), bm)
    )
    with pytest.raises(
        TypeError,
        match=r"gives torch.float32 increments, but the state is torch.float64.*dtype=torch.float64",
    ):
        tn.solve(term, tn.EulerMaruyama(), 0.0, 1.0, torch.ones(2, dtype=F64), dt0=0.01)


def test_the_torchdiffeq_facade_names_a_nan_time():
    from torchnde.compat import torchdiffeq

    with pytest.raises(ValueError, match=r"`t` must be finite, but element 1 is nan"):
        torchdiffeq.odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, math.nan, 1.0]))


def test_the_torchcde_facade_warns_about_an_unobserved_channel():
    from torchnde.compat import torchcde

    x = torch.randn(3, 5, 2, dtype=F64)
    x[1, :, 1] = math.nan
    with pytest.warns(
        UserWarning, match=r"channel\(s\) \[1\] of `x` hold no observation at all in 1 series"
    ):
        coeffs = torchcde.linear_interpolation_coeffs(x)
    assert bool(torch.isfinite(coeffs).all())


def test_a_backward_solve_out_of_steps_says_it_was_the_backward_solve():
    w = torch.tensor(2.0, dtype=F64, requires_grad=True)
    sol = tn.solve(
        ODETerm(lambda t, y, a: torch.sin(w * t) * y),
        tn.Dopri5(),
        0.0,
        5.0,
        torch.ones(1, dtype=F64),
        controller=PIDController(**PID),
        adjoint=tn.BacksolveAdjoint(**PID, max_steps=5),
    )
    with pytest.raises(tn.SolveError) as info:
        sol.ys.sum().backward()
    message = str(info.value)
    assert "backward (adjoint) solve of BacksolveAdjoint" in message
    assert "BacksolveAdjoint(max_steps=...)" in message and "CheckpointAdjoint()" in message


# ------------------------------------------------------------------------------------------------
# a NaN that appears only in the backward pass


@pytest.mark.parametrize(
    "adjoint, solver",
    [
        (tn.CheckpointAdjoint(), tn.Dopri5()),
        (tn.BacksolveAdjoint(**PID), tn.Dopri5()),
        (tn.ReversibleAdjoint(), tn.ReversibleHeun()),
    ],
    ids=["checkpoint", "backsolve", "reversible"],
)
def test_a_non_finite_derivative_is_reported_with_where_it_arose(adjoint, solver):
    """-w·sqrt(y²) is finite, but its derivative at y = 0 is NaN (0/0)."""
    w = torch.tensor(1.0, dtype=F64, requires_grad=True)
    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    controller = PIDController(**PID) if solver.error_order else tn.ConstantStepSize()
    sol = tn.solve(
        ODETerm(lambda t, y, a: -w * torch.sqrt(y**2)),
        solver,
        0.0,
        1.0,
        y0,
        dt0=None if solver.error_order else 0.05,
        controller=controller,
        adjoint=adjoint,
    )
    assert sol.ok and bool(torch.isfinite(sol.ys).all())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sol.ys.sum().backward()
    assert math.isnan(float(w.grad))  # as DirectAdjoint gives: no silent zero
    found = [c for c in caught if issubclass(c.category, tn.NonFiniteGradientWarning)]
    assert len(found) == 1
    assert f"backward pass of {type(adjoint).__name__}, between t=" in str(found[0].message)


# ------------------------------------------------------------------------------------------------
# property-based: a misbehaving field gives a clear error or a flagged result, within seconds

FAST = settings(
    max_examples=20,
    deadline=5000,  # ms per example: "within seconds"
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_SOLVERS = st.sampled_from(["Dopri5", "Tsit5", "Bosh3", "RK4", "Euler", "Heun"])
_ADJOINTS = st.sampled_from(["direct", "checkpoint", "backsolve"])


def _setup(solver_name: str, batch_axis):
    solver = getattr(tn, solver_name)()
    adaptive = solver.error_order is not None
    controller = PIDController(rtol=1e-6, atol=1e-8) if adaptive else tn.ConstantStepSize()
    y0 = torch.ones(3, 2, dtype=F64) if batch_axis == 0 else torch.ones(2, dtype=F64)
    return solver, controller, None if adaptive else 0.05, y0


@FAST
@given(
    solver=_SOLVERS,
    at=st.integers(0, 40),
    batch_axis=st.sampled_from([None, 0]),
    how=st.sampled_from(["mul_", "setitem", "add_", "copy_"]),
)
def test_property_fields_that_mutate_their_input_are_always_refused(solver, at, batch_axis, how):
    count = [0]

    def field(t, y, args):
        count[0] += 1
        if count[0] > at:
            if how == "mul_":
                y.mul_(1.0)  # even a change that keeps the values bumps the version
            elif how == "setitem":
                y[..., 0] = 2.0
            elif how == "add_":
                y.add_(1.0)
            else:
                y.copy_(y + 1)
        return -y

    solver_, controller, dt0, y0 = _setup(solver, batch_axis)
    original = y0.clone()
    start = time.monotonic()
    try:
        sol = tn.solve(
            ODETerm(field),
            solver_,
            0.0,
            1.0,
            y0,
            dt0=dt0,
            controller=controller,
            batch_axis=batch_axis,
            throw=False,
        )
    except ValueError as exc:
        assert "modified its input `y` in place" in str(exc)
    else:  # only when the field was never called often enough to misbehave
        assert count[0] <= at and bool(sol.succeeded.all())
    assert time.monotonic() - start < 10
    assert torch.equal(y0, original)


@FAST
@given(
    solver=_SOLVERS,
    at=st.integers(0, 40),
    batch_axis=st.sampled_from([None, 0]),
    change=st.sampled_from(["narrow", "wide", "scalar", "transpose", "dtype"]),
)
def test_property_fields_whose_output_changes_are_always_refused(solver, at, batch_axis, change):
    count = [0]

    def field(t, y, args):
        count[0] += 1
        out = -y
        if count[0] > at:
            if change == "narrow":
                out = out[..., :1]
            elif change == "wide":
                out = torch.cat([out, out], dim=-1)
            elif change == "scalar":
                out = out.sum()
            elif change == "transpose":
                out = (
                    out.reshape(*out.shape[:-1], 1, 2)
                    .transpose(-1, -2)
                    .reshape(*out.shape[:-1], 2, 1)
                )
            else:
                out = out.float()
        return out

    solver_, controller, dt0, y0 = _setup(solver, batch_axis)
    start = time.monotonic()
    try:
        sol = tn.solve(
            ODETerm(field),
            solver_,
            0.0,
            1.0,
            y0,
            dt0=dt0,
            controller=controller,
            batch_axis=batch_axis,
            throw=False,
        )
    except (ValueError, TypeError) as exc:
        assert "the vector field `field` returned" in str(exc)
    else:
        assert count[0] <= at and bool(sol.succeeded.all())
    assert time.monotonic() - start < 10


@FAST
@given(
    solver=st.sampled_from(["Dopri5", "Tsit5", "Bosh3"]),
    adjoint=_ADJOINTS,
    zero_at=st.integers(0, 1),
)
def test_property_a_nan_derivative_gives_a_nan_gradient_never_a_silent_number(
    solver, adjoint, zero_at
):
    """A field finite forward with a NaN derivative (sqrt(y²) at y = 0): the solve succeeds and
    the gradient is NaN under every adjoint (the trainer then refuses it), never a finite wrong
    number; adjoints that own their backward pass also warn where it arose."""
    w = torch.tensor(1.5, dtype=F64, requires_grad=True)
    y0 = torch.ones(2, dtype=F64)
    y0[zero_at] = 0.0
    adjoints = {
        "direct": tn.DirectAdjoint(),
        "checkpoint": tn.CheckpointAdjoint(),
        "backsolve": tn.BacksolveAdjoint(rtol=1e-6, atol=1e-8),
    }
    start = time.monotonic()
    sol = tn.solve(
        ODETerm(lambda t, y, a: -w * torch.sqrt(y**2)),
        getattr(tn, solver)(),
        0.0,
        1.0,
        y0,
        controller=PIDController(rtol=1e-6, atol=1e-8),
        adjoint=adjoints[adjoint],
    )
    assert sol.ok
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (grad,) = torch.autograd.grad(sol.ys.sum(), w)
    assert math.isnan(float(grad))
    if adjoint != "direct":
        assert any(issubclass(c.category, tn.NonFiniteGradientWarning) for c in caught)
    assert time.monotonic() - start < 10
