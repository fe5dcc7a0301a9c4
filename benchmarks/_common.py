"""What every benchmark case shares: the vector fields, the optional peers, the timing helper and
the printed table.

Timing: every contestant of a case is warmed up, then timed in rounds — one run of each contestant
and one block of bare vector-field calls per round, in a rotated order — so that a slow spell of
the machine hits every library and the limit alike; the reported time is the median over rounds.
With one thread the clock is the thread's CPU time (``time.thread_time``), which other processes on
a shared machine do not inflate; ``--clock wall`` (the default with more threads) uses elapsed
time. Step and evaluation counts come from one extra, untimed run of each contestant.
"""

from __future__ import annotations

import importlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "Case",
    "Contestant",
    "Counts",
    "MLPField",
    "Options",
    "Row",
    "VanDerPol",
    "peer",
    "print_case",
    "run_case",
    "steps_str",
    "torchnde_has",
]


# ------------------------------------------------------------------------------------------------
# options


@dataclass(frozen=True)
class Options:
    """How hard to measure: rounds, warm-up runs, problem sizes (``quick`` shrinks them)."""

    repeats: int | None = None  # None: each case's default
    warmup: int = 1
    quick: bool = False
    threads: int = 1
    clock: str = "cpu"  # "cpu": this thread's CPU time; "wall": elapsed time

    def timer(self) -> Callable[[], float]:
        return time.thread_time if self.clock == "cpu" else time.perf_counter

    def rounds(self, default: int) -> int:
        if self.repeats is not None:
            return self.repeats
        return 2 if self.quick else default


# ------------------------------------------------------------------------------------------------
# optional libraries


def peer(name: str) -> Any | None:
    """Import a peer library, or None when it is not installed (the case then skips it)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def torchnde_has(name: str) -> bool:
    """Whether ``torchnde`` exports ``name`` yet (some adjoints are still being written)."""
    import torchnde

    return hasattr(torchnde, name)


# ------------------------------------------------------------------------------------------------
# vector fields


class _Counter:
    """A plain counter object, so counting does not go through ``nn.Module.__setattr__``."""

    __slots__ = ("calls", "steps")

    def __init__(self) -> None:
        self.calls = 0
        self.steps = 0


class MLPField(torch.nn.Module):
    """``dy/dt = MLP(y)``: ``state → 64 → 64 → state`` with tanh, the field of B1, B2 and B4.

    The weights are drawn ``N(0, gain² / fan_in)`` with a fixed seed. PyTorch's default
    initialisation gives a nearly linear field that Dopri5 crosses in 4 steps at rtol 1e-6, which
    would time only the set-up of a solve; ``gain=2.5`` gives a field with some curvature (about
    25 steps), like a model partway through training.

    Counts its calls (``counter.calls``) and, through torchdiffeq's ``callback_step`` hook, the
    steps torchdiffeq attempts (``counter.steps``); the cost is one Python increment per call.
    """

    def __init__(self, state: int = 32, hidden: int = 64, gain: float = 2.5, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(state, hidden),
            torch.nn.Tanh(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.Tanh(),
            torch.nn.Linear(hidden, state),
        )
        with torch.no_grad():
            for layer in self.net:
                if isinstance(layer, torch.nn.Linear):
                    std = gain / layer.in_features**0.5
                    layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * std)
                    layer.bias.zero_()
        self.counter = _Counter()

    def forward(self, t: torch.Tensor, y: torch.Tensor, args: Any = None) -> torch.Tensor:
        self.counter.calls += 1
        return self.net(y)

    def callback_step(self, t0: Any, y0: Any, dt: Any) -> None:  # torchdiffeq's hook
        self.counter.steps += 1


class VanDerPol(torch.nn.Module):
    """The Van der Pol oscillator ``x'' = μ (1 - x²) x' - x`` as ``y = (x, x')``, batched:
    ``y: (batch, 2)``. Counts calls and torchdiffeq steps like :class:`MLPField`."""

    def __init__(self, mu: float = 10.0):
        super().__init__()
        self.mu = mu
        self.counter = _Counter()

    def forward(self, t: torch.Tensor, y: torch.Tensor, args: Any = None) -> torch.Tensor:
        self.counter.calls += 1
        x, v = y[:, 0], y[:, 1]
        return torch.stack([v, self.mu * (1 - x * x) * v - x], dim=1)

    def callback_step(self, t0: Any, y0: Any, dt: Any) -> None:
        self.counter.steps += 1


# ------------------------------------------------------------------------------------------------
# timing


@dataclass
class Counts:
    """What one untimed run of a contestant reports.

    ``steps``: attempted steps (accepted + rejected) as printed; ``nfe``/``nfe_backward``: calls
    of the vector field on the whole batch in the forward solve / during ``backward()``.
    """

    steps: str
    nfe: int
    nfe_backward: int = 0


@dataclass
class Contestant:
    """One library (or variant) in a case.

    ``run(probe)`` does the timed work (a solve, or a solve and ``backward()``) and calls
    ``probe()`` where the forward solve ends; ``counts(result)`` reads the statistics of an
    untimed run; ``limit(counts, per_call)`` is the bare-field time of the same evaluations, from the
    measured seconds per bare call of each kind in ``per_call`` (see :class:`Case`);
    ``role``: ``"main"`` (a torchnde row held to the case's targets), ``"extra"`` (a torchnde row
    shown for information) or ``"peer"`` (a library torchnde is compared against).
    """

    library: str
    variant: str
    run: Callable[[Callable[[], None]], Any]
    counts: Callable[[Any, int, int], Counts]
    limit: Callable[[Counts, dict[str, float]], float]
    counter: _Counter
    role: str = "main"  # "main" (torchnde, held to the targets), "extra" (torchnde) or "peer"
    note: str = ""
    group: str = ""  # ratios compare rows of one group (e.g. "direct", "backsolve")
    slow: bool = False  # timed in one round only, with the counting run as its warm-up


@dataclass
class Row:
    library: str
    variant: str
    times: list[float]
    counts: Counts | None
    limit: float | None
    role: str
    note: str = ""
    group: str = ""
    skipped: str = ""  # why this contestant did not run

    @property
    def time(self) -> float:
        return statistics.median(self.times)


@dataclass
class Case:
    """A benchmark case: its name, a description of the problem, and its contestants.

    ``bare`` holds the bare vector-field work the limits are made of (e.g. ``"fwd"``: one
    evaluation on the batch; ``"vjp"``: one evaluation and its backward); blocks of
    ``bare_calls`` calls are timed in the same rounds as the solves.
    """

    name: str
    title: str
    setup: list[str]
    contestants: list[Contestant]
    bare: dict[str, Callable[[], Any]]
    bare_calls: int = 20
    per_call: dict[str, float] = field(default_factory=dict)  # filled by run_case
    skipped: list[Row] = field(default_factory=list)
    targets: dict[str, float] = field(default_factory=dict)  # "ratio"/"overhead" → bound
    default_rounds: int = 7
    notes: list[str] = field(default_factory=list)


def _noop() -> None:
    return None


def run_case(case: Case, opts: Options) -> list[Row]:
    """Warm up, count (one untimed run each), then time every contestant and every bare-field
    block in rotated rounds, so that the limits see the same machine load as the solves."""
    contestants = case.contestants
    counts: list[Counts] = []
    for c in contestants:
        for _ in range(0 if c.slow else opts.warmup):
            c.run(_noop)
        counts.append(_count(c))
    jobs: list[Callable[[], Any]] = [lambda c=c: c.run(_noop) for c in contestants]
    for fn in case.bare.values():
        fn()  # warm-up
        jobs.append(lambda fn=fn: [fn() for _ in range(case.bare_calls)])
    times: list[list[float]] = [[] for _ in jobs]
    clock = opts.timer()
    for r in range(opts.rounds(case.default_rounds)):
        order = list(range(len(jobs)))
        shift = r % len(order)
        for i in order[shift:] + order[:shift]:
            if i < len(contestants) and contestants[i].slow and times[i]:
                continue
            start = clock()
            jobs[i]()
            times[i].append(clock() - start)
    per_call = {
        name: statistics.median(ts) / case.bare_calls
        for name, ts in zip(case.bare, times[len(contestants) :])
    }
    case.per_call = per_call
    rows = []
    for c, n, ts in zip(contestants, counts, times):
        limit = c.limit(n, per_call)
        rows.append(Row(c.library, c.variant, ts, n, limit, c.role, c.note, c.group))
    return rows + case.skipped


def _count(c: Contestant) -> Counts:
    """One untimed run: field calls and torchdiffeq steps, split where ``probe()`` is called."""
    c.counter.calls = c.counter.steps = 0
    marks: list[tuple[int, int]] = []
    result = c.run(lambda: marks.append((c.counter.calls, c.counter.steps)))
    calls, steps = marks[0] if marks else (c.counter.calls, c.counter.steps)
    counts = c.counts(result, calls, steps)
    counts.nfe_backward = c.counter.calls - calls
    return counts


# ------------------------------------------------------------------------------------------------
# the printed table


def _fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:9.2f}"


def print_case(case: Case, rows: list[Row]) -> dict[str, Any]:
    """Print the case's table; return a summary (torchnde's ratio and overhead per row)."""
    print(f"\n== {case.name}: {case.title}")
    for line in case.setup:
        print(f"   {line}")
    bare = ", ".join(f"{k} {v * 1e6:.0f} us" for k, v in case.per_call.items())
    print(f"   bare field per call on the batch (median of the same rounds): {bare}")
    best = _best_peers(rows)
    header = (
        f"   {'library':<12} {'variant':<26} {'time ms':>9} {'spread':>7} {'ratio':>6} "
        f"{'steps':>14} {'nfe':>6} {'nfe bwd':>7} {'limit ms':>9} {'overhead':>8}"
    )
    print(header)
    print("   " + "-" * (len(header) - 3))
    summary: dict[str, Any] = {"case": case.name, "rows": []}
    for r in rows:
        if r.skipped:
            print(f"   {r.library:<12} {r.variant:<26} {'— ' + r.skipped}")
            continue
        spread = (max(r.times) - min(r.times)) / r.time * 100 if len(r.times) > 1 else 0.0
        ratio = r.time / best[r.group] if best.get(r.group) else float("nan")
        n = r.counts
        overhead = r.time / r.limit if r.limit else float("nan")
        spread_s = f"{spread:6.0f}%" if len(r.times) > 1 else f"{'1 run':>7}"
        print(
            f"   {r.library:<12} {r.variant:<26} {_fmt_time(r.time)} {spread_s} {ratio:6.2f} "
            f"{n.steps:>14} {n.nfe:>6} {n.nfe_backward or '':>7} {_fmt_time(r.limit)} "
            f"{overhead:8.2f}"
        )
        summary["rows"].append(
            {
                "library": r.library,
                "variant": r.variant,
                "time": r.time,
                "ratio": ratio,
                "overhead": overhead,
            }
        )
    for r in rows:
        if r.note and not r.skipped:
            print(f"   note ({r.library}, {r.variant}): {r.note}")
    for note in case.notes:
        print(f"   note: {note}")
    _print_targets(case, rows, best)
    return summary


def _best_peers(rows: list[Row]) -> dict[str, float]:
    """The faster peer's time in each group."""
    best: dict[str, float] = {}
    for r in rows:
        if r.role == "peer" and not r.skipped:
            best[r.group] = min(best.get(r.group, float("inf")), r.time)
    return best


def _print_targets(case: Case, rows: list[Row], best: dict[str, float]) -> None:
    mains = [r for r in rows if r.role == "main" and not r.skipped]
    for r in mains:
        checks = []
        if "ratio" in case.targets and best.get(r.group):
            ratio = r.time / best[r.group]
            ok = ratio <= case.targets["ratio"]
            checks.append(f"ratio {ratio:.2f} ≤ {case.targets['ratio']:g}: {_verdict(ok)}")
        if "overhead" in case.targets and r.limit:
            over = r.time / r.limit
            ok = over <= case.targets["overhead"]
            checks.append(f"overhead {over:.2f} ≤ {case.targets['overhead']:g}: {_verdict(ok)}")
        if checks:
            print(f"   target [{r.variant}]: " + "; ".join(checks))


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def steps_str(steps: torch.Tensor | int) -> str:
    """Attempted steps: a number, or ``max (mean)`` over a batch of per-sample counts."""
    if isinstance(steps, int):
        return str(steps)
    if steps.ndim == 0 or steps.numel() == 1:
        return str(int(steps.reshape(())))
    steps = steps.double()
    return f"{int(steps.max())} (μ {steps.mean():.1f})"
