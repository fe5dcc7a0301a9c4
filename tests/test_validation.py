"""Bad input: every validation raises the right exception type with a message that names the
argument, also under ``python -O``; and property-based tests (hypothesis) over random time grids,
shapes, dtypes and tolerances: the outcome is a clear ``ValueError``/``TypeError`` exactly when the
input is invalid, otherwise a correct or flagged result, within seconds.
"""

from __future__ import annotations

import itertools
import math
import re
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import torchnde
from torchnde import ODETerm, PIDController, SaveAt, Status

F64 = torch.float64
PID = dict(rtol=1e-6, atol=1e-8)


def decay(t, y, args):
    return -y


def _solve(y0=None, *, terms=None, solver=None, t0=0.0, t1=1.0, **kwargs):
    kwargs.setdefault("controller", PIDController(**PID))
    return torchnde.solve(
        terms or ODETerm(decay),
        solver or torchnde.Dopri5(),
        t0,
        t1,
        torch.ones(2, dtype=F64) if y0 is None else y0,
        **kwargs,
    )


def _nan(n=2):
    return torch.tensor([1.0] * (n - 1) + [math.nan], dtype=F64)


# (id, call, exception type, text the message must contain: the argument's name)
CASES = [
    # the initial state
    ("y0-nan", lambda: _solve(_nan()), ValueError, "`y0`"),
    ("y0-inf", lambda: _solve(torch.tensor([1.0, math.inf], dtype=F64)), ValueError, "`y0`"),
    ("y0-nan-in-tree", lambda: _solve((torch.ones(1, dtype=F64), _nan())), ValueError, "`y0`"),
    ("y0-list-of-floats", lambda: _solve([1.0, 2.0]), TypeError, "`y0`"),
    ("y0-float", lambda: _solve(1.0), TypeError, "`y0`"),
    ("y0-int", lambda: _solve(torch.tensor([1, 2])), TypeError, "`y0`"),
    ("y0-bool", lambda: _solve(torch.tensor([True])), TypeError, "`y0`"),
    ("y0-half", lambda: _solve(torch.ones(2, dtype=torch.float16)), TypeError, "`y0`"),
    (
        "y0-mixed-dtypes",
        lambda: _solve((torch.ones(1, dtype=F64), torch.ones(1, dtype=torch.float32))),
        TypeError,
        "`y0`",
    ),
    ("y0-empty", lambda: _solve(()), ValueError, "`y0`"),
    (
        "y0-batch-0dim",
        lambda: _solve(torch.tensor(1.0, dtype=F64), batch_axis=0),
        ValueError,
        "`y0`",
    ),
    (
        "y0-empty-batch",
        lambda: _solve(torch.ones(0, 2, dtype=F64), batch_axis=0),
        ValueError,
        "`y0`",
    ),
    # times
    ("t0-nan", lambda: _solve(t0=math.nan), ValueError, "`t0`"),
    ("t1-inf", lambda: _solve(t1=math.inf), ValueError, "`t1`"),
    ("t1-tensor-nan", lambda: _solve(t1=torch.tensor(math.nan)), ValueError, "`t1`"),
    ("t0-complex", lambda: _solve(t0=torch.tensor(0j)), TypeError, "`t0`"),
    ("t0-string", lambda: _solve(t0="0"), TypeError, "`t0`"),
    ("t0-vector-unbatched", lambda: _solve(t0=torch.zeros(2)), ValueError, "`t0`"),
    (
        "t1-wrong-batch",
        lambda: _solve(torch.ones(2, 1, dtype=F64), t1=torch.ones(3), batch_axis=0),
        ValueError,
        "`t1`",
    ),
    ("ts-nan", lambda: _solve(saveat=SaveAt(ts=[0.1, math.nan])), ValueError, "`SaveAt(ts)`"),
    ("ts-inf", lambda: _solve(saveat=SaveAt(ts=[math.inf])), ValueError, "`SaveAt(ts)`"),
    ("ts-not-monotonic", lambda: _solve(saveat=SaveAt(ts=[0.5, 0.1])), ValueError, "`SaveAt(ts)`"),
    (
        "ts-increasing-when-backwards",
        lambda: _solve(t0=1.0, t1=0.0, saveat=SaveAt(ts=[0.1, 0.5])),
        ValueError,
        "`SaveAt(ts)`",
    ),
    ("ts-empty", lambda: _solve(saveat=SaveAt(ts=torch.tensor([]))), ValueError, "`SaveAt(ts"),
    ("ts-after-t1", lambda: _solve(saveat=SaveAt(ts=[0.5, 1.5])), ValueError, "`SaveAt(ts)`"),
    ("ts-before-t0", lambda: _solve(saveat=SaveAt(ts=[-0.1, 0.5])), ValueError, "`SaveAt(ts)`"),
    (
        "ts-outside-backwards",
        lambda: _solve(t0=1.0, t1=0.0, saveat=SaveAt(ts=[0.5, -0.1])),
        ValueError,
        "`SaveAt(ts)`",
    ),
    ("ts-3d", lambda: SaveAt(ts=torch.zeros(1, 1, 1)), ValueError, "`SaveAt(ts"),
    (
        "ts-2d-unbatched",
        lambda: _solve(saveat=SaveAt(ts=torch.zeros(2, 2))),
        ValueError,
        "`SaveAt(ts)`",
    ),
    ("saveat-nothing", lambda: SaveAt(), ValueError, "`SaveAt()`"),
    (
        "step-to-not-monotonic",
        lambda: torchnde.StepTo([0.0, 0.5, 0.2, 1.0]),
        ValueError,
        "`StepTo(ts)`",
    ),
    ("step-to-nan", lambda: torchnde.StepTo([0.0, math.nan, 1.0]), ValueError, "`StepTo(ts)`"),
    (
        "step-to-wrong-ends",
        lambda: _solve(solver=torchnde.Euler(), controller=torchnde.StepTo([0.0, 0.5])),
        ValueError,
        "`StepTo(ts)`",
    ),
    # the vector field's output
    (
        "vf-wrong-shape",
        lambda: _solve(terms=ODETerm(lambda t, y, a: y[:1])),
        ValueError,
        "vector field",
    ),
    (
        "vf-broadcastable-scalar",
        lambda: _solve(terms=ODETerm(lambda t, y, a: torch.tensor(-1.0, dtype=F64))),
        ValueError,
        "broadcastable",
    ),
    (
        "vf-broadcastable-row",
        lambda: _solve(
            torch.ones(3, 2, dtype=F64), terms=ODETerm(lambda t, y, a: -y.sum(0, keepdim=True))
        ),
        ValueError,
        "vector field",
    ),
    (
        "vf-wrong-structure",
        lambda: _solve(terms=ODETerm(lambda t, y, a: (y,))),
        ValueError,
        "vector field",
    ),
    (
        "vf-dict-keys",
        lambda: _solve(
            {"a": torch.ones(1, dtype=F64)}, terms=ODETerm(lambda t, y, a: {"b": y["a"]})
        ),
        ValueError,
        "vector field",
    ),
    (
        "vf-wrong-dtype",
        lambda: _solve(terms=ODETerm(lambda t, y, a: -y.float())),
        TypeError,
        "vector field",
    ),
    (
        "vf-not-a-tensor",
        lambda: _solve(terms=ODETerm(lambda t, y, a: 1.0)),
        TypeError,
        "vector field",
    ),
    # tolerances
    ("rtol-negative", lambda: PIDController(rtol=-1e-3), ValueError, "`rtol`"),
    ("atol-negative", lambda: PIDController(atol=-1e-9), ValueError, "`atol`"),
    ("rtol-nan", lambda: PIDController(rtol=math.nan), ValueError, "`rtol`"),
    ("atol-inf", lambda: PIDController(atol=math.inf), ValueError, "`atol`"),
    (
        "tolerances-both-zero",
        lambda: PIDController(rtol=0.0, atol=0.0),
        ValueError,
        "`rtol` and `atol`",
    ),
    ("rtol-string", lambda: PIDController(rtol="1e-3"), TypeError, "`rtol`"),
    ("dtmin-above-dtmax", lambda: PIDController(dtmin=1.0, dtmax=0.1), ValueError, "`dtmin`"),
    # step sizes
    (
        "dt0-wrong-sign",
        lambda: _solve(solver=torchnde.RK4(), controller=None, dt0=-0.1),
        ValueError,
        "`dt0`",
    ),
    (
        "dt0-wrong-sign-backwards",
        lambda: _solve(t0=1.0, t1=0.0, solver=torchnde.RK4(), controller=None, dt0=0.1),
        ValueError,
        "`dt0`",
    ),
    (
        "dt0-zero",
        lambda: _solve(solver=torchnde.RK4(), controller=None, dt0=0.0),
        ValueError,
        "`dt0`",
    ),
    (
        "dt0-nan",
        lambda: _solve(solver=torchnde.RK4(), controller=None, dt0=math.nan),
        ValueError,
        "`dt0`",
    ),
    (
        "constant-step-without-dt0",
        lambda: _solve(solver=torchnde.RK4(), controller=torchnde.ConstantStepSize()),
        ValueError,
        "`dt0`",
    ),
    ("max-steps-zero", lambda: _solve(max_steps=0), ValueError, "`max_steps`"),
    # objects
    ("no-error-estimate-with-pid", lambda: _solve(solver=torchnde.RK4()), ValueError, "`RK4()`"),
    ("solver-class", lambda: _solve(solver=torchnde.Dopri5), TypeError, "`solver`"),
    ("function-as-terms", lambda: _solve(terms=decay), TypeError, "`terms`"),
    ("controller-wrong-type", lambda: _solve(controller="pid"), TypeError, "`controller`"),
    ("batch-axis-1", lambda: _solve(batch_axis=1), ValueError, "`batch_axis`"),
    ("throw-not-bool", lambda: _solve(throw=1), TypeError, "`throw`"),
    ("event-not-event", lambda: _solve(event=lambda t, y, a: y[0]), TypeError, "`event`"),
    (
        "event-direction",
        lambda: torchnde.Event(lambda t, y, a: y[0], direction=2),
        ValueError,
        "direction",
    ),
]


@pytest.mark.parametrize(("call", "exc", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_naming_the_argument(call, exc, text):
    with pytest.raises(exc) as info:
        call()
    assert text in str(info.value), str(info.value)
    assert not isinstance(info.value, AssertionError)


def test_no_error_estimate_message_suggests_a_fix():
    with pytest.raises(ValueError) as info:
        _solve(solver=torchnde.Euler())
    message = str(info.value)
    assert (
        "no error estimate" in message and "ConstantStepSize" in message and "Dopri5()" in message
    )


_UNDER_O = """
import math, torch, torchnde
assert False  # stripped under -O: reaching the checks proves asserts are off


def check(fn, exc, text):
    try:
        fn()
    except exc as e:
        if text not in str(e):
            raise SystemExit(f"wrong message: {e}")
        return
    raise SystemExit(f"no {exc.__name__} naming {text}")


term = torchnde.ODETerm(lambda t, y, a: -y)
y0 = torch.ones(2, dtype=torch.float64)
pid = torchnde.PIDController(rtol=1e-6, atol=1e-8)
check(lambda: torchnde.solve(term, torchnde.Dopri5(), 0.0, 1.0, torch.tensor([1.0, math.nan]),
      controller=pid), ValueError, "`y0`")
check(lambda: torchnde.solve(term, torchnde.Dopri5(), 0.0, 1.0, y0, controller=pid,
      saveat=torchnde.SaveAt(ts=[0.5, 0.1])), ValueError, "`SaveAt(ts)`")
check(lambda: torchnde.PIDController(rtol=-1.0), ValueError, "`rtol`")
check(lambda: torchnde.solve(term, torchnde.RK4(), 0.0, 1.0, y0, dt0=-0.1), ValueError, "`dt0`")
check(lambda: torchnde.solve(torchnde.ODETerm(lambda t, y, a: y.float()), torchnde.Dopri5(), 0.0,
      1.0, y0, controller=pid), TypeError, "vector field")
check(lambda: torchnde.solve(term, torchnde.RK4(), 0.0, 1.0, torch.tensor([1, 2]), dt0=0.1),
      TypeError, "`y0`")
print("validated under -O")
"""


def test_validations_survive_python_O():
    """Validation is by exceptions, not ``assert``: it still fires under ``python -O``."""
    out = subprocess.run(
        [sys.executable, "-O", "-c", _UNDER_O], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr + out.stdout
    assert "validated under -O" in out.stdout


# ------------------------------------------------------------------------------------------------
# property-based: the outcome is an error exactly when the input is invalid

FAST = settings(
    max_examples=25,
    deadline=5000,  # ms per example: "within seconds"
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
BACKTICKED = re.compile(r"`[^`]+`")


def _run(fn):
    """Call ``fn``; return ``("error", exc)`` for a ValueError/TypeError whose message names an
    argument, else ``("solution", sol)``. Any other exception propagates (a failure)."""
    start = time.monotonic()
    try:
        return "solution", fn()
    except (ValueError, TypeError) as exc:
        assert BACKTICKED.search(str(exc)) or "vector field" in str(exc), str(exc)
        return "error", exc
    finally:
        assert time.monotonic() - start < 10


_time = st.one_of(
    st.floats(-10, 10, allow_nan=False, width=64),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1.0]),
)


@FAST
@given(t0=_time, t1=_time, ts=st.lists(_time, min_size=0, max_size=5))
def test_random_time_grids(t0, t1, ts):
    def solve():
        return torchnde.solve(
            ODETerm(decay),
            torchnde.Dopri5(),
            t0,
            t1,
            torch.ones(1, dtype=F64),
            controller=PIDController(rtol=1e-8, atol=1e-10),
            saveat=SaveAt(ts=torch.tensor(ts, dtype=F64)),
            max_steps=500,
        )

    finite = all(math.isfinite(x) for x in (t0, t1, *ts))
    lo, hi = min(t0, t1), max(t0, t1)
    ordered = all((b - a) * (1 if t1 >= t0 else -1) >= 0 for a, b in itertools.pairwise(ts))
    valid = finite and len(ts) > 0 and ordered and all(lo <= x <= hi for x in ts)
    kind, out = _run(solve)
    assert kind == ("solution" if valid else "error"), (t0, t1, ts, out)
    if valid:
        assert out.statuses == [Status.SUCCESS]
        expected = torch.exp(-(torch.tensor(ts, dtype=F64) - t0))
        torch.testing.assert_close(out.ys[:, 0], expected, rtol=1e-6, atol=1e-12)
    else:
        assert isinstance(out, ValueError)


_DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.complex128,
    torch.int32,
    torch.int64,
    torch.bool,
]
_SOLVABLE = {torch.float32, torch.float64, torch.complex64, torch.complex128}


@FAST
@given(state=st.sampled_from(_DTYPES), returned=st.sampled_from(_DTYPES))
def test_random_dtypes(state, returned):
    y0 = torch.ones(3).to(state)

    def f(t, y, args):
        out = -y
        if out.is_complex() and not (returned.is_complex or returned == torch.bool):
            out = out.real  # (a real cast of a complex tensor warns; the dtype is what matters)
        return out.to(returned)

    kind, out = _run(
        lambda: torchnde.solve(
            ODETerm(f),
            torchnde.Tsit5() if hasattr(torchnde, "Tsit5") else torchnde.Dopri5(),
            0.0,
            1.0,
            y0,
            controller=PIDController(rtol=1e-5, atol=1e-7),
            max_steps=500,
        )
    )
    if state not in _SOLVABLE:
        assert kind == "error" and isinstance(out, TypeError) and "`y0`" in str(out)
    elif returned != state:
        assert kind == "error" and isinstance(out, TypeError) and "vector field" in str(out)
    else:
        assert kind == "solution" and out.statuses == [Status.SUCCESS]
        assert out.ys.dtype == state
        expected = torch.full((3,), math.exp(-1), dtype=F64)
        torch.testing.assert_close(out.ys[0].to(torch.complex128).real, expected, rtol=1e-4, atol=0)


_shape = st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple)


@FAST
@given(shape=_shape, out_shape=st.one_of(st.none(), _shape), batched=st.booleans())
def test_random_shapes(shape, out_shape, batched):
    """The vector field returns ``-y`` (``out_shape=None``) or a tensor of another shape."""
    y0 = torch.ones(shape, dtype=F64)

    def f(t, y, args):
        return -y if out_shape is None else -torch.ones(out_shape, dtype=F64)

    kind, out = _run(
        lambda: torchnde.solve(
            ODETerm(f),
            torchnde.Dopri5(),
            0.0,
            1.0,
            y0,
            controller=PIDController(rtol=1e-6, atol=1e-8),
            batch_axis=0 if batched else None,
            max_steps=500,
        )
    )
    if batched and len(shape) == 0:
        assert kind == "error" and "`y0`" in str(out)
    elif out_shape is not None and out_shape != shape:
        assert kind == "error" and isinstance(out, ValueError) and "vector field" in str(out)
    else:
        assert kind == "solution" and out.ok
        lead = (shape[0], 1, *shape[1:]) if batched else (1, *shape)
        assert out.ys.shape == lead
        if out_shape is None:
            torch.testing.assert_close(
                out.ys, torch.full(lead, math.exp(-1), dtype=F64), rtol=1e-5, atol=0
            )


_tol = st.one_of(
    st.floats(-1.0, 1.0, allow_nan=False),
    st.sampled_from([0.0, 1e-300, 1e-12, 1e-3, 1e3, 1e300, math.nan, math.inf, -math.inf]),
)


@FAST
@given(rtol=_tol, atol=_tol)
def test_random_tolerances(rtol, atol):
    def solve():
        return torchnde.solve(
            ODETerm(decay),
            torchnde.Dopri5(),
            0.0,
            1.0,
            torch.ones(2, dtype=F64),
            controller=PIDController(rtol=rtol, atol=atol),
            max_steps=100,
            throw=False,
        )

    valid = all(math.isfinite(x) and x >= 0 for x in (rtol, atol)) and (rtol > 0 or atol > 0)
    kind, out = _run(solve)
    assert kind == ("solution" if valid else "error"), (rtol, atol, out)
    if not valid:
        assert isinstance(out, ValueError) and ("`rtol`" in str(out) or "`atol`" in str(out))
        return
    (status,) = out.statuses
    if status == Status.SUCCESS:
        error = float((out.ys - math.exp(-1)).abs().max())
        assert error <= max(10 * max(rtol, atol), 1e-10) or max(rtol, atol) >= 1e-2
    else:  # tolerances below what float64 can meet: flagged, with a reason, and no values
        assert status in (Status.DTMIN, Status.MAX_STEPS), status
        assert out.messages[0] and torch.isnan(out.ys).all()
