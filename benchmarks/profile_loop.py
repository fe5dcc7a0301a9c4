"""Where torchnde's time goes on a benchmark problem: ``python -m benchmarks.profile_loop
[--case B1 B1-batch B3 B4 B2-direct B2-backsolve] [--solves N]``.

Two views of the same solves:

1. **Phases** — the loop's functions (propose, solver step, controller, commit, save, …) are
   wrapped with timers, found by name so the tool survives refactors (a name that no longer
   exists is skipped). Times are *exclusive* (a function's own time, its timed callees removed),
   per attempted step, so the vector field's share and each phase's share add up to the solve.
   ``ops`` counts the ATen operators each function dispatches itself (one more solve under a
   ``TorchDispatchMode``); ``Problem.vf`` includes the field's own operators.
2. **Operators** — ``torch.profiler`` counts the ATen operators per step outside the vector field
   (the field runs under a ``record_function`` label), the dispatch cost every one of them pays.

Timer wrappers cost about a microsecond per call; the totals are close to, a little above, an
unwrapped solve (printed for comparison).
"""

from __future__ import annotations

import argparse
import bisect
import functools
import importlib
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import torchnde

from . import _libraries as lib
from ._common import MLPField, VanDerPol
from .b1_forward import ATOL, BATCH, RTOL, STATE, problem

#: (module, qualified name) of the functions to time; missing ones are skipped
TARGETS = [
    ("torchnde._solve", "solve"),
    ("torchnde._solve", "_solution"),
    ("torchnde._solve", "_check_state"),
    ("torchnde._run", "assemble"),
    ("torchnde._loop", "init_state"),
    ("torchnde._loop", "iteration"),
    ("torchnde._loop", "attempt"),
    ("torchnde._loop", "_propose"),
    ("torchnde._loop", "_finite"),
    ("torchnde._loop", "_commit"),
    ("torchnde._loop", "event_phase"),
    ("torchnde._loop", "Recorder.start"),
    ("torchnde._loop", "Recorder.save"),
    ("torchnde._loop", "StepInfo.rows"),
    ("torchnde._loop", "interpolate"),
    ("torchnde._pytree", "tree_where"),
    ("torchnde.solvers._runge_kutta", "AbstractExplicitRungeKutta.step"),
    ("torchnde.solvers._runge_kutta", "AbstractExplicitRungeKutta.dense_rows"),
    ("torchnde.solvers._runge_kutta", "_combine"),
    ("torchnde._problem", "Problem.vf"),
    ("torchnde._problem", "Problem.prod"),
    ("torchnde._problem", "Problem.contr"),
    ("torchnde.controllers", "PIDController.init"),
    ("torchnde.controllers", "PIDController._initial_step"),
    ("torchnde.controllers", "PIDController.adapt"),
    ("torchnde.controllers", "PIDController._scaled_norm"),
    ("torchnde.controllers", "ConstantStepSize.adapt"),
    ("torchnde.adjoints.backsolve", "_backsolve"),
]


class _Timers:
    def __init__(self) -> None:
        self.own: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.ops: dict[str, int] = defaultdict(int)  # ATen operators, by innermost function
        self.stack: list[float] = []  # time spent in timed callees of each open frame
        self.names: list[str] = []

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self.stack.append(0.0)
            self.names.append(name)
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.thread_time() - start
                children = self.stack.pop()
                self.names.pop()
                self.own[name] += elapsed - children
                self.calls[name] += 1
                if self.stack:
                    self.stack[-1] += elapsed

        return timed


class _OpCounter(TorchDispatchMode):
    """Counts the ATen operators dispatched while active, by the innermost timed function (the
    vector field's own operators land on ``Problem.vf``)."""

    def __init__(self, timers: _Timers):
        super().__init__()
        self.timers = timers

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        names = self.timers.names
        self.timers.ops[names[-1] if names else "(outside)"] += 1
        return func(*args, **(kwargs or {}))


def _install(timers: _Timers) -> list[tuple[Any, str, Any]]:
    undo = []
    for module_name, qual in TARGETS:
        try:
            owner: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        *path, attr = qual.split(".")
        for part in path:
            owner = getattr(owner, part, None)
            if owner is None:
                break
        if owner is None or attr not in vars(owner):
            continue
        original = vars(owner)[attr]
        fn = original.__func__ if isinstance(original, staticmethod) else original
        wrapped = timers.wrap(qual, fn)
        setattr(
            owner, attr, staticmethod(wrapped) if isinstance(original, staticmethod) else wrapped
        )
        undo.append((owner, attr, original))
    # the package re-exports `solve`; time the call users make
    if hasattr(torchnde, "solve"):
        undo.append((torchnde, "solve", torchnde.solve))
        torchnde.solve = importlib.import_module("torchnde._solve").solve
    return undo


def _uninstall(undo) -> None:
    for owner, attr, original in reversed(undo):
        setattr(owner, attr, original)


# ------------------------------------------------------------------------------------------------
# the problems


def _setups() -> dict[str, Callable[[], tuple[Callable[[], Any], torch.nn.Module, str]]]:
    def b1(batch_axis):
        def make():
            field, y0, ts = problem()
            solve = lib.nde_solve(
                field, y0, ts, solver=torchnde.Dopri5(), rtol=RTOL, atol=ATOL, batch_axis=batch_axis
            )
            return _no_grad(solve), field, f"B1 batch_axis={batch_axis}"

        return make

    def b2(adjoint_name):
        def make():
            field, y0, ts = problem()
            adjoint = (
                torchnde.DirectAdjoint()
                if adjoint_name == "direct"
                else torchnde.BacksolveAdjoint(rtol=RTOL, atol=ATOL)
            )
            solve = lib.nde_solve(
                field, y0, ts, solver=torchnde.Dopri5(), rtol=RTOL, atol=ATOL, adjoint=adjoint
            )
            w = torch.randn(len(ts), BATCH, STATE, generator=torch.Generator().manual_seed(7))

            def run():
                field.zero_grad(set_to_none=True)
                sol = solve()
                with torch.profiler.record_function("backward"):
                    (sol.ys * w).sum().backward()
                return sol

            return run, field, f"B2 {adjoint_name} (solve + backward)"

        return make

    def b3():
        dtype = torch.float64
        field = VanDerPol(10.0)
        y0 = torch.rand(1024, 2, generator=torch.Generator().manual_seed(0), dtype=dtype) * 4 - 2
        ts = torch.linspace(0.0, 10.0, 10, dtype=dtype)
        solve = lib.nde_solve(
            field, y0, ts, solver=torchnde.Dopri5(), rtol=RTOL, atol=ATOL, batch_axis=0
        )
        return _no_grad(solve), field, "B3 Van der Pol batch_axis=0"

    def b4():
        field, y0, ts = problem()
        solve = lib.nde_solve(field, y0, ts, solver=torchnde.RK4(), dt0=1e-3)
        return _no_grad(solve), field, "B4 RK4 1000 fixed steps"

    return {
        "B1": b1(None),
        "B1-batch": b1(0),
        "B2-direct": b2("direct"),
        "B2-backsolve": b2("backsolve"),
        "B3": b3,
        "B4": b4,
    }


def _no_grad(solve):
    def run():
        with torch.no_grad():
            return solve()

    return run


# ------------------------------------------------------------------------------------------------
# the report


def profile_case(name: str, solves: int) -> None:
    run, field, title = _setups()[name]()
    assert isinstance(field, (MLPField, VanDerPol))
    run()  # warm-up
    plain = []
    for _ in range(solves):
        start = time.thread_time()
        sol = run()
        plain.append(time.thread_time() - start)
    steps = int(sol.stats["num_steps"].max())

    timers = _Timers()
    undo = _install(timers)
    try:
        start = time.thread_time()
        for _ in range(solves):
            run()
        wrapped_total = (time.thread_time() - start) / solves
        own, calls = dict(timers.own), dict(timers.calls)
        timers.calls.clear()
        with _OpCounter(timers):
            run()
    finally:
        _uninstall(undo)
    print(f"\n== {name}: {title} — {steps} attempted steps per solve")
    print(
        f"   solve: {statistics.median(plain) * 1e3:.2f} ms unwrapped (median of {solves}), "
        f"{wrapped_total * 1e3:.2f} ms with the phase timers"
    )
    print(
        f"   {'function (exclusive)':<40} {'calls/solve':>11} {'us/call':>8} {'ops/call':>8} "
        f"{'us/step':>8} {'ops/step':>8} {'share':>6}"
    )
    total = sum(own.values())
    for qual, spent in sorted(own.items(), key=lambda kv: -kv[1]):
        n = calls[qual] / solves
        per_solve = spent / solves
        ops = timers.ops.get(qual, 0)  # from one solve
        print(
            f"   {qual:<40} {n:>11.1f} {per_solve / n * 1e6:>8.1f} {ops / max(n, 1):>8.1f} "
            f"{per_solve / steps * 1e6:>8.1f} {ops / steps:>8.1f} {spent / total:>6.1%}"
        )
    _operators(run, field, solves, steps)


def _operators(run, field, solves: int, steps: int) -> None:
    """ATen operators outside the vector field, per attempted step (the field runs under a
    ``record_function("vector_field")`` label; operators inside its ranges are left out)."""
    original_forward = field.forward

    def labelled_forward(t, y, args=None):
        with torch.profiler.record_function("vector_field"):
            return original_forward(t, y, args)

    field.forward = labelled_forward  # an instance attribute: nn.Module.__call__ finds it
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(solves):
                run()
    finally:
        del field.forward
    events = prof.events()
    ranges = sorted(
        (e.time_range.start, e.time_range.end) for e in events if e.name == "vector_field"
    )
    starts = [r[0] for r in ranges]
    counts: dict[str, int] = defaultdict(int)
    self_us: dict[str, float] = defaultdict(float)
    for e in events:
        if not e.name.startswith("aten::"):
            continue
        i = bisect.bisect_right(starts, e.time_range.start) - 1
        if i >= 0 and e.time_range.end <= ranges[i][1]:
            continue
        counts[e.name] += 1
        self_us[e.name] += e.self_cpu_time_total
    total_ops = sum(counts.values()) / solves
    print(
        f"   ATen operators outside the vector field: {total_ops:.0f} per solve, "
        f"{total_ops / steps:.0f} per step (nested calls included)"
    )
    top = sorted(counts, key=lambda k: -self_us[k])[:14]
    print(
        "   by self time: "
        + ", ".join(f"{k[6:]} {counts[k] / solves / steps:.1f}/step" for k in top)
    )


def _peer_setups(name: str) -> list[tuple[str, Callable[[], Any], torch.nn.Module]]:
    """The peers on the same problem (forward cases only), for the operator view."""
    out = []
    if name in ("B1", "B1-batch", "B4"):
        field, y0, ts = problem()
    elif name == "B3":
        field = VanDerPol(10.0)
        dtype = torch.float64
        y0 = torch.rand(1024, 2, generator=torch.Generator().manual_seed(0), dtype=dtype) * 4 - 2
        ts = torch.linspace(0.0, 10.0, 10, dtype=dtype)
    else:
        return out
    if lib.torchdiffeq is not None:
        if name == "B4":
            solve = lib.tdq_solve(field, y0, ts, method="rk4", step_size=1e-3)
        else:
            solve = lib.tdq_solve(field, y0, ts, method="dopri5", rtol=RTOL, atol=ATOL)
        out.append(("torchdiffeq", _no_grad(solve), field))
    if lib.torchode is not None:
        if name == "B4":
            solve = lib.tod_solve(field, y0, ts, method="rk4", dt0=1e-3)
        else:
            solve = lib.tod_solve(field, y0, ts, method="dopri5", rtol=RTOL, atol=ATOL)
        out.append(("torchode", _no_grad(solve), field))
    return out


def profile_peers(name: str, solves: int) -> None:
    for library, run, field in _peer_setups(name):
        run()
        field.counter.calls = field.counter.steps = 0
        sol = run()
        calls = field.counter.calls
        if library == "torchdiffeq":
            steps = field.counter.steps
        else:
            steps = int(sol.stats["n_steps"].max())
        times = []
        for _ in range(solves):
            start = time.thread_time()
            run()
            times.append(time.thread_time() - start)
        print(
            f"   {library}: {statistics.median(times) * 1e3:.2f} ms, {steps} steps, "
            f"{calls} field calls"
        )
        _operators(run, field, solves, steps)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_loop", description=__doc__)
    cases = list(_setups())
    parser.add_argument("--case", nargs="+", choices=cases, default=cases)
    parser.add_argument("--solves", type=int, default=5)
    parser.add_argument(
        "--peers", action="store_true", help="also count the peers' operators (forward cases)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.case:
        profile_case(name, args.solves)
        if args.peers:
            profile_peers(name, args.solves)


if __name__ == "__main__":
    main()
