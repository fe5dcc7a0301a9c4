"""STIFF — torchnde's implicit solvers on the stiff test set, side by side in one process with
SciPy's ``solve_ivp`` (Radau, BDF, LSODA) and, where installed, diffrax (Kvaerno3/4/5, jitted).

``python -m benchmarks.run --case STIFF`` runs the three parts below with their defaults;
``python -m benchmarks.stiff_bench --help`` runs them with choices (problems, tolerances, parts,
the folder for the figures and the JSON of every number).

1. **Table** at rtol 1e-6 (``atol = rtol · scale`` per problem, see
   ``benchmarks/stiff_problems.py``): per problem and solver, steps (attempted and accepted),
   vector-field evaluations, Jacobian evaluations, LU factorisations, Newton iterations, the error
   at ``t1`` in the set's mixed norm as a multiple of rtol, and CPU time (median over rounds).
   Then the issue's reference points reproduced (SciPy Radau with its default finite-difference
   Jacobian and diffrax Kvaerno5 at rtol 1e-6 on Robertson / Van der Pol / HIRES) and the targets.
2. **Work–precision**: rtol 1e-3 … 1e-8 for every solver and problem; error against CPU time and
   against NFE, one PNG per problem (``stiff_<problem>.png``) and ``stiff_results.json``.
3. **Batched row**: Van der Pol μ = 1000 on [0, 3000], 1024 initial conditions uniform in
   [-2, 2]², rtol = atol = 1e-6 per sample: torchnde ``Kvaerno5()`` under ``batch_axis=0``,
   SciPy Radau one sample at a time (a subset timed, scaled to 1024), diffrax Kvaerno5 under
   ``jax.vmap``.

What is the same for everyone: float64, the same equations (one definition evaluated by torch,
NumPy or JAX), tolerances, the error norm, and exact Jacobians (torchnde's from autograd, diffrax's
from ``jax.jacfwd``, SciPy's the analytic ones handed to ``solve_ivp(jac=...)``). The clock is the
process's CPU time (``time.process_time``), which includes XLA's threads; torch runs one intra-op
thread and XLA is asked for one (``XLA_FLAGS``). diffrax is jitted: its compile time is excluded
from the timings and reported apart.

What differs and cannot be made the same: SciPy reports accepted steps only (its rejected steps
happen inside ``step()``); its ``nfev`` excludes Jacobian evaluations, as torchnde's ``nfe`` does;
diffrax's statistics have no evaluation counts, so its NFE is counted by a ``jax.debug.callback``
in a separate, untimed run, where one Jacobian (one vectorised ``jacfwd`` call) counts as one
evaluation. Each library's error control differs in detail (SciPy's Radau and BDF use their own
error estimates and step-size rules; torchnde and diffrax an embedded pair with an integral
controller, safety 0.9, factors 0.2–10, RMS norm over ``atol + rtol · max(|y0|, |y1|)``).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# one XLA thread, set before JAX is first imported (a no-op if it already was)
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numpy as np
import torch

import torchnde

from ._common import Options
from .stiff_problems import PROBLEMS, StiffProblem

#: torchnde's implicit methods, by the name torchnde exports (those it does not yet are skipped);
#: each is built with its defaults (AutoSwitch: Tsit5 and Kvaerno5)
TORCHNDE_METHODS = ("Kvaerno3", "Kvaerno4", "Kvaerno5", "Rosenbrock23", "Rodas5P", "AutoSwitch")
DIFFRAX_METHODS = ("Kvaerno3", "Kvaerno4", "Kvaerno5")
SCIPY_METHODS = ("Radau", "BDF", "LSODA")
RTOLS = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
TABLE_RTOL = 1e-6
#: issue 15's reference points at rtol 1e-6: (problem, SciPy Radau steps, diffrax Kvaerno5 steps)
ISSUE_POINTS = (("robertson", 188, 694), ("vanderpol", 919, 3469), ("hires", 156, 521))
MAX_STEPS = 200_000
DEFAULT_OUT = Path("runs") / "stiff"


# ------------------------------------------------------------------------------------------------
# one run of one solver


@dataclass
class Run:
    """What one solve reports. ``None``: the library does not say."""

    library: str
    method: str
    problem: str
    rtol: float
    ok: bool = True
    message: str = ""
    steps: int | None = None  # attempted
    accepted: int | None = None
    nfe: int | None = None
    jacobians: int | None = None
    factorisations: int | None = None
    newton: int | None = None
    error: float = math.nan  # mixed norm at check_t
    seconds: list[float] = field(default_factory=list)  # CPU time per timed round
    compile_s: float | None = None

    @property
    def label(self) -> str:
        return f"{self.library} {self.method}"

    @property
    def time(self) -> float:
        return statistics.median(self.seconds) if self.seconds else math.nan


@dataclass
class Solver:
    """A contestant: ``prepare(problem, rtol)`` returns ``(solve, compile_seconds)``, where
    ``solve()`` runs once and returns a :class:`Run` without times."""

    library: str
    method: str
    prepare: Callable[[StiffProblem, float], tuple[Callable[[], Run], float | None]]

    @property
    def label(self) -> str:
        return f"{self.library} {self.method}"


def _land(p: StiffProblem) -> list[float] | None:
    """Where a step must end so the error is read off a step, not an interpolant."""
    return [p.check_t] if p.check_t < p.t1 else None


# --- torchnde ---------------------------------------------------------------------------------


def torchnde_solver(method: str) -> Solver | None:
    cls = getattr(torchnde, method, None)
    if cls is None:
        return None

    def prepare(p: StiffProblem, rtol: float) -> tuple[Callable[[], Run], None]:
        term = torchnde.ODETerm(p.torch_field())
        ts = torch.tensor(sorted({p.check_t, p.t1}), dtype=torch.float64)
        index = ts.tolist().index(p.check_t)
        controller = torchnde.PIDController(rtol=rtol, atol=p.atol(rtol), step_ts=_land(p))
        y0 = p.y0_tensor()

        def solve() -> Run:
            with torch.no_grad():
                sol = torchnde.solve(
                    term,
                    cls(),
                    0.0,
                    p.t1,
                    y0,
                    controller=controller,
                    saveat=torchnde.SaveAt(ts=ts),
                    max_steps=MAX_STEPS,
                    throw=False,
                )
            stats = {k: int(v) for k, v in sol.stats.items()}
            run = Run(
                "torchnde",
                method,
                p.name,
                rtol,
                ok=bool(sol.ok),
                message=sol.messages[0] if sol.messages else "",
                steps=stats.get("num_steps"),
                accepted=stats.get("num_accepted"),
                nfe=stats.get("nfe"),
                jacobians=stats.get("num_jacobians"),
                factorisations=stats.get("num_factorisations"),
                newton=stats.get("num_newton_iterations"),
            )
            run.error = p.error(sol.ys[index]) if run.ok else math.inf
            return run

        return solve, None

    return Solver("torchnde", method, prepare)


# --- SciPy ------------------------------------------------------------------------------------


def scipy_solver(method: str, jacobian: bool = True) -> Solver | None:
    try:
        from scipy.integrate import solve_ivp
    except ImportError:
        return None

    def prepare(p: StiffProblem, rtol: float) -> tuple[Callable[[], Run], None]:
        f = p.numpy_field()
        jac = p.numpy_jacobian() if jacobian else None
        pieces = sorted({p.check_t, p.t1})
        kwargs = {"method": method, "rtol": rtol, "atol": p.atol(rtol)}
        if jac is not None:
            kwargs["jac"] = jac

        def solve() -> Run:
            run = Run("scipy", method if jacobian else f"{method} (FD Jacobian)", p.name, rtol)
            run.accepted = run.nfe = run.jacobians = run.factorisations = 0
            y, t0 = np.array(p.y0, dtype=np.float64), 0.0
            for t1 in pieces:  # E5: stop at check_t, then go on (a restart)
                sol = solve_ivp(f, (t0, t1), y, **kwargs)
                if sol.status != 0:
                    run.ok, run.message, run.error = False, sol.message, math.inf
                    return run
                run.accepted += len(sol.t) - 1
                run.nfe += sol.nfev
                run.jacobians += sol.njev
                run.factorisations += sol.nlu
                y, t0 = sol.y[:, -1], t1
                if t1 == p.check_t:
                    run.error = p.error(y)
            return run

        return solve, None

    return Solver("scipy", method if jacobian else f"{method} (FD Jacobian)", prepare)


# --- diffrax ----------------------------------------------------------------------------------


def _jax() -> tuple[Any, Any, Any] | None:
    """``(jax, jax.numpy, diffrax)`` with float64 enabled, or None when not installed."""
    try:
        import diffrax
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    return jax, jnp, diffrax


def diffrax_solver(method: str) -> Solver | None:
    lib = _jax()
    if lib is None:
        return None
    jax, jnp, diffrax = lib
    cls = getattr(diffrax, method)

    def build(p: StiffProblem, field_fn: Callable) -> Callable:
        ts = jnp.array(sorted({p.check_t, p.t1}))

        def solve(y0, rtol, atol):
            sol = diffrax.diffeqsolve(
                diffrax.ODETerm(field_fn),
                cls(),
                0.0,
                p.t1,
                None,
                y0,
                stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, step_ts=_land(p)),
                saveat=diffrax.SaveAt(ts=ts),
                max_steps=MAX_STEPS,
                throw=False,
            )
            return sol.ys, sol.stats, sol.result == diffrax.RESULTS.successful

        return solve

    cache: dict[str, tuple[Any, float]] = {}  # problem → (compiled solve, compile seconds)

    def prepare(p: StiffProblem, rtol: float) -> tuple[Callable[[], Run], float]:
        y0, r, a = jnp.array(p.y0), jnp.float64(rtol), jnp.float64(p.atol(rtol))
        if p.name not in cache:  # the tolerances are arguments: one compile per problem
            start = time.process_time()
            compiled = jax.jit(build(p, p.jax_field())).lower(y0, r, a).compile()
            cache[p.name] = (compiled, time.process_time() - start)
        compiled, compile_s = cache[p.name]
        index = sorted({p.check_t, p.t1}).index(p.check_t)
        counted: list[int] = []

        def solve() -> Run:
            ys, stats, success = compiled(y0, r, a)
            ys = np.asarray(jax.block_until_ready(ys))
            run = Run("diffrax", method, p.name, rtol, compile_s=compile_s)
            run.ok = bool(success)
            run.steps = int(stats["num_steps"])
            run.accepted = int(stats["num_accepted_steps"])
            run.nfe = counted[0] if counted else None
            run.error = p.error(ys[index]) if run.ok else math.inf
            run.message = "" if run.ok else "diffrax did not succeed (throw=False)"
            return run

        counted.append(_diffrax_nfe(jax, build, p, y0, r, a))
        return solve, compile_s

    return Solver("diffrax", method, prepare)


def _diffrax_nfe(jax: Any, build: Callable, p: StiffProblem, y0, r, a) -> int:
    """Vector-field calls of one solve, counted by a debug callback in a separate compile."""
    calls = [0]
    field_fn = p.jax_field()

    def counting(t, y, args):
        jax.debug.callback(lambda *_: calls.__setitem__(0, calls[0] + 1), y)
        return field_fn(t, y, args)

    out = jax.jit(build(p, counting))(y0, r, a)
    jax.block_until_ready(out)
    jax.effects_barrier()
    return calls[0]


# ------------------------------------------------------------------------------------------------
# running a grid


def contestants(include_fd: bool = False) -> tuple[list[Solver], list[str]]:
    """Every installed contestant, and a line per missing one."""
    found, missing = [], []
    candidates = [
        *((torchnde_solver(m), f"torchnde {m}: not exported yet") for m in TORCHNDE_METHODS),
        *((scipy_solver(m), f"scipy {m}: SciPy not installed") for m in SCIPY_METHODS),
        *((diffrax_solver(m), f"diffrax {m}: not installed") for m in DIFFRAX_METHODS),
    ]
    if include_fd:
        candidates.append((scipy_solver("Radau", jacobian=False), "scipy: not installed"))
    for solver, why in candidates:
        if solver is None:
            missing.append(why)
        else:
            found.append(solver)
    return found, missing


def measure(solvers: list[Solver], p: StiffProblem, rtol: float, rounds: int) -> list[Run]:
    """One counting run per solver (also its warm-up), then ``rounds`` timed rounds in a
    rotated order; a failed solver is not timed."""
    prepared, runs = [], []
    for s in solvers:
        solve, compile_s = s.prepare(p, rtol)
        run = solve()
        run.compile_s = compile_s
        prepared.append(solve)
        runs.append(run)
    for r in range(rounds):
        order = list(range(len(solvers)))
        shift = r % len(order)
        for i in order[shift:] + order[:shift]:
            if not runs[i].ok:
                continue
            start = time.process_time()
            prepared[i]()
            runs[i].seconds.append(time.process_time() - start)
    return runs


# ------------------------------------------------------------------------------------------------
# part 1: the table at rtol 1e-6


def _n(x: int | None) -> str:
    return "—" if x is None else str(x)


def print_table(p: StiffProblem, runs: list[Run]) -> None:
    print(
        f"\n{p.name} ({p.size} states, t in [0, {p.t1:g}], rtol {runs[0].rtol:g}, "
        f"atol {p.atol(runs[0].rtol):g}; error at t = {p.check_t:g})"
    )
    header = (
        f"   {'solver':<24} {'steps':>7} {'accepted':>8} {'nfe':>7} {'jac':>6} {'LU':>6} "
        f"{'newton':>7} {'err/rtol':>9} {'CPU ms':>9} {'spread':>7} {'compile s':>9}"
    )
    print(header)
    print("   " + "-" * (len(header) - 3))
    for run in runs:
        if not run.ok:
            print(f"   {run.label:<24} FAILED: {run.message[:90]}")
            continue
        spread = (
            f"{(max(run.seconds) - min(run.seconds)) / run.time * 100:6.0f}%"
            if len(run.seconds) > 1
            else f"{'1 run':>7}"
        )
        compile_s = "" if run.compile_s is None else f"{run.compile_s:9.1f}"
        print(
            f"   {run.label:<24} {_n(run.steps):>7} {_n(run.accepted):>8} {_n(run.nfe):>7} "
            f"{_n(run.jacobians):>6} {_n(run.factorisations):>6} {_n(run.newton):>7} "
            f"{run.error / run.rtol:9.3g} {run.time * 1e3:9.1f} {spread} {compile_s:>9}"
        )


def print_targets(table: dict[str, list[Run]]) -> None:
    """Issue 15's targets at rtol 1e-6, per problem."""
    print("\ntargets (issue 15, rtol 1e-6):")
    for name, runs in table.items():
        by = {r.label: r for r in runs if r.ok}
        ours = [r for r in runs if r.library == "torchnde" and r.ok]
        radau = by.get("scipy Radau")
        lines = []
        for r in ours:
            peer = by.get(f"diffrax {r.method}")
            if peer is not None:
                ok = r.steps <= peer.steps
                lines.append(f"{r.method} steps {r.steps} <= diffrax {peer.steps}: {_verdict(ok)}")
            lines.append(
                f"{r.method} err {r.error / r.rtol:.3g} x rtol <= 10: {_verdict(r.error <= 10 * r.rtol)}"
            )
        if ours and radau is not None:
            best = min(ours, key=lambda r: r.accepted)
            ok = best.accepted <= 2 * radau.accepted
            lines.append(
                f"best ({best.method}) accepted steps {best.accepted} <= 2 x Radau's "
                f"{radau.accepted}: {_verdict(ok)}"
            )
            fastest = min(ours, key=lambda r: r.time)
            ratio = fastest.time / radau.time
            lines.append(
                f"fastest ({fastest.method}) CPU time {ratio:.2f} x Radau's <= 3: "
                f"{_verdict(ratio <= 3)}"
            )
        print(f"   {name}: " + "; ".join(lines))


def print_issue_points() -> list[dict[str, Any]]:
    """Reproduce the issue's reference points (steps at rtol 1e-6) before comparing with them."""
    radau_fd = scipy_solver("Radau", jacobian=False)
    kvaerno = diffrax_solver("Kvaerno5")
    print(
        "\nissue 15's reference points reproduced (rtol 1e-6; SciPy Radau with its default "
        "finite-difference Jacobian: accepted steps; diffrax Kvaerno5: attempted steps):"
    )
    out = []
    for name, radau_steps, diffrax_steps in ISSUE_POINTS:
        p = PROBLEMS[name]
        row = {"problem": name, "atol": p.atol(TABLE_RTOL)}
        parts = []
        if radau_fd is not None:
            run = radau_fd.prepare(p, TABLE_RTOL)[0]()
            row["radau"] = run.accepted
            parts.append(f"SciPy Radau {run.accepted} (issue: {radau_steps})")
        if kvaerno is not None:
            run = kvaerno.prepare(p, TABLE_RTOL)[0]()
            row["diffrax_kvaerno5"] = run.steps
            parts.append(f"diffrax Kvaerno5 {run.steps} (issue: {diffrax_steps})")
        print(f"   {name:10s} atol {row['atol']:g}: " + "; ".join(parts))
        out.append(row)
    return out


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# ------------------------------------------------------------------------------------------------
# part 2: work-precision


def work_precision(
    solvers: list[Solver], names: list[str], rtols: tuple[float, ...], rounds: int
) -> dict[str, list[Run]]:
    results: dict[str, list[Run]] = {}
    for name in names:
        p = PROBLEMS[name]
        results[name] = []
        for rtol in rtols:
            runs = measure(solvers, p, rtol, rounds)
            results[name].extend(runs)
            cells = ", ".join(
                f"{r.label} {r.error / rtol:.2g}x/{r.time * 1e3:.0f}ms"
                if r.ok
                else f"{r.label} FAILED"
                for r in runs
            )
            print(f"   {name} rtol {rtol:g}: {cells}", flush=True)
    return results


def plot_work_precision(results: dict[str, list[Run]], out: Path) -> list[Path]:
    """One PNG per problem: error against CPU time and against NFE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from torchnde.training import atomic_write_bytes

    paths = []
    for name, runs in results.items():
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        labels = sorted({r.label for r in runs}, key=lambda s: (not s.startswith("torchnde"), s))
        for label in labels:
            mine = sorted((r for r in runs if r.label == label and r.ok), key=lambda r: -r.rtol)
            if not mine:
                continue
            style = "-o" if label.startswith("torchnde") else ("--s" if "scipy" in label else ":^")
            err = [max(r.error, 1e-17) for r in mine]
            axes[0].loglog([r.time for r in mine], err, style, label=label, ms=4)
            with_nfe = [(r.nfe, e) for r, e in zip(mine, err) if r.nfe]
            if with_nfe:
                axes[1].loglog(*zip(*with_nfe), style, label=label, ms=4)
        p = PROBLEMS[name]
        for ax, xlabel in zip(axes, ("CPU time [s]", "vector-field evaluations")):
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"error at t={p.check_t:g} (mixed norm, scale {p.scale:g})")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{name}: rtol {min(r.rtol for r in runs):g} … {max(r.rtol for r in runs):g}")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        path = out / f"stiff_{name}.png"
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------------
# part 3: the batched row


def batched_row(size: int, t1: float, rtol: float, scipy_subset: int) -> dict[str, Any]:
    """Van der Pol μ = 1000 for ``size`` initial conditions, per-sample tolerance."""
    p = PROBLEMS["vanderpol"]
    atol = p.atol(rtol)
    gen = torch.Generator().manual_seed(0)
    y0 = torch.rand(size, 2, generator=gen, dtype=torch.float64) * 4 - 2  # uniform in [-2, 2]²
    print(
        f"\nbatched: Van der Pol mu = 1000, {size} initial conditions uniform in [-2, 2]^2, "
        f"t in [0, {t1:g}], rtol {rtol:g}, atol {atol:g}, per-sample step control"
    )
    rows: dict[str, Any] = {}
    reference = _scipy_batch(p, y0[:scipy_subset].numpy(), t1, 1e-10, 1e-10)["ys"]

    def error(ys: np.ndarray) -> float:
        return max(
            float(np.max(np.abs(a - b) / (np.abs(b) + p.scale))) for a, b in zip(ys, reference)
        )

    kvaerno = getattr(torchnde, "Kvaerno5", None)
    if kvaerno is not None:
        start = time.process_time()
        with torch.no_grad():
            sol = torchnde.solve(
                torchnde.ODETerm(p.torch_field()),
                kvaerno(),
                0.0,
                t1,
                y0,
                controller=torchnde.PIDController(rtol=rtol, atol=atol),
                batch_axis=0,
                max_steps=MAX_STEPS,
                throw=False,
            )
        seconds = time.process_time() - start
        steps = sol.stats["num_steps"].double()
        rows["torchnde Kvaerno5 batch_axis=0"] = {
            "seconds": seconds,
            "steps_max": int(steps.max()),
            "steps_mean": float(steps.mean()),
            "ok": int(sol.succeeded.sum()),
            "error": error(sol.ys[:scipy_subset, -1].numpy()),
        }
    scipy = _scipy_batch(p, y0[:scipy_subset].numpy(), t1, rtol, atol)
    rows[f"scipy Radau one by one ({scipy_subset} timed, x{size // scipy_subset})"] = {
        "seconds": scipy["seconds"] * size / scipy_subset,
        "steps_max": int(max(scipy["steps"])),
        "steps_mean": float(np.mean(scipy["steps"])),
        "ok": f"{scipy['ok']}/{scipy_subset}",
        "error": error(scipy["ys"]),
    }
    lib = _jax()
    if lib is not None:
        rows["diffrax Kvaerno5 vmap"] = _diffrax_batch(lib, p, y0.numpy(), t1, rtol, atol)
        rows["diffrax Kvaerno5 vmap"]["error"] = error(
            rows["diffrax Kvaerno5 vmap"].pop("ys")[:scipy_subset]
        )
    base = rows[next(k for k in rows if k.startswith("scipy"))]["seconds"]
    print(
        f"   {'solver':<42} {'CPU s':>8} {'ms/sample':>9} {'speed-up':>8} {'steps max (mean)':>18} "
        f"{'ok':>9} {'err/rtol':>9} {'compile s':>9}"
    )
    for label, row in rows.items():
        compile_s = f"{row['compile_s']:9.1f}" if "compile_s" in row else ""
        print(
            f"   {label:<42} {row['seconds']:8.2f} {row['seconds'] / size * 1e3:9.2f} "
            f"{base / row['seconds']:8.1f} {row['steps_max']:>8} ({row['steps_mean']:7.1f}) "
            f"{row['ok']!s:>9} {row['error'] / rtol:9.3g} {compile_s:>9}"
        )
    print(
        f"   err: the largest over the first {scipy_subset} samples of the mixed error at t1 "
        "against SciPy Radau at rtol 1e-10"
    )
    torch_row = rows.get("torchnde Kvaerno5 batch_axis=0")
    if torch_row is not None:
        speedup = base / torch_row["seconds"]
        print(
            f"   target: >= 10x faster than SciPy one by one: {speedup:.1f}x {_verdict(speedup >= 10)}"
        )
    return rows


def _scipy_batch(p: StiffProblem, y0: np.ndarray, t1: float, rtol: float, atol: float) -> dict:
    from scipy.integrate import solve_ivp

    f, jac = p.numpy_field(), p.numpy_jacobian()
    ys, steps, ok = [], [], 0
    start = time.process_time()
    for y in y0:
        sol = solve_ivp(f, (0.0, t1), y, method="Radau", rtol=rtol, atol=atol, jac=jac)
        ok += sol.status == 0
        ys.append(sol.y[:, -1])
        steps.append(len(sol.t) - 1)
    return {"ys": np.array(ys), "steps": steps, "ok": ok, "seconds": time.process_time() - start}


def _diffrax_batch(lib, p: StiffProblem, y0: np.ndarray, t1: float, rtol: float, atol: float):
    jax, jnp, diffrax = lib

    def one(y):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(p.jax_field()),
            diffrax.Kvaerno5(),
            0.0,
            t1,
            None,
            y,
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            max_steps=MAX_STEPS,
            throw=False,
        )
        return sol.ys[-1], sol.stats["num_steps"], sol.result == diffrax.RESULTS.successful

    y = jnp.asarray(y0)
    start = time.process_time()
    compiled = jax.jit(jax.vmap(one)).lower(y).compile()
    compile_s = time.process_time() - start
    jax.block_until_ready(compiled(y))  # warm-up
    start = time.process_time()
    ys, steps, success = jax.block_until_ready(compiled(y))
    seconds = time.process_time() - start
    steps = np.asarray(steps)
    return {
        "seconds": seconds,
        "steps_max": int(steps.max()),
        "steps_mean": float(steps.mean()),
        "ok": int(np.asarray(success).sum()),
        "ys": np.asarray(ys),
        "compile_s": compile_s,
    }


# ------------------------------------------------------------------------------------------------
# entry points


def _header(missing: list[str]) -> None:
    lib = _jax()
    import scipy

    versions = f"scipy {scipy.__version__}"
    if lib is not None:
        import diffrax
        import jax

        versions += f" | jax {jax.__version__} | diffrax {diffrax.__version__}"
    print("\n== STIFF: implicit solvers on the stiff test set (float64, CPU time of the process)")
    print(f"   torchnde {torchnde.__version__} at {_source_state()}")
    print(
        f"   {versions} | torch threads {torch.get_num_threads()} | XLA_FLAGS={os.environ.get('XLA_FLAGS')}"
    )
    for line in missing:
        print(f"   skipped: {line}")


def _source_state() -> str:
    """The commit the solvers came from, and whether ``src/torchnde`` had uncommitted changes."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src/torchnde"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "an unknown commit"
    return f"commit {head or '?'}" + (" + uncommitted changes in src/torchnde" if dirty else "")


def run(
    opts: Options,
    parts: tuple[str, ...] = ("table", "wp", "batch"),
    names: list[str] | None = None,
    rtols: tuple[float, ...] = RTOLS,
    out: Path = DEFAULT_OUT,
) -> dict[str, Any]:
    """Run the chosen parts; print their tables; write the figures and ``stiff_results.json``."""
    torch.set_num_threads(opts.threads)
    names = names or (["robertson", "hires", "pollution"] if opts.quick else list(PROBLEMS))
    solvers, missing = contestants()
    _header(missing)
    results: dict[str, Any] = {"rtol_table": TABLE_RTOL, "problems": names}
    if "table" in parts:
        results["issue_points"] = print_issue_points()
        table = {}
        for name in names:
            table[name] = measure(solvers, PROBLEMS[name], TABLE_RTOL, opts.rounds(3))
            print_table(PROBLEMS[name], table[name])
            sys.stdout.flush()
        print_targets(table)
        results["table"] = {k: [asdict(r) for r in v] for k, v in table.items()}
    if "wp" in parts:
        rtols = (1e-3, 1e-6) if opts.quick else rtols
        print(f"\nwork-precision, rtol {rtols[0]:g} ... {rtols[-1]:g} (err/rtol and CPU ms):")
        wp = work_precision(solvers, names, rtols, 1 if opts.repeats is None else opts.repeats)
        out.mkdir(parents=True, exist_ok=True)
        for path in plot_work_precision(wp, out):
            print(f"   wrote {path}")
        results["work_precision"] = {k: [asdict(r) for r in v] for k, v in wp.items()}
    if "batch" in parts:
        size, t1, subset = (64, 300.0, 8) if opts.quick else (1024, 3000.0, 32)
        results["batch"] = batched_row(size, t1, TABLE_RTOL, subset)
    if "wp" in parts or "table" in parts:
        from torchnde.training import atomic_write_text

        out.mkdir(parents=True, exist_ok=True)
        path = out / "stiff_results.json"
        atomic_write_text(path, json.dumps(results, indent=1, default=float))
        print(f"   wrote {path}")
    return results


def main(opts: Options) -> None:
    """``python -m benchmarks.run --case STIFF``: every part with its defaults."""
    run(opts)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stiff_bench", description=__doc__)
    parser.add_argument("--parts", nargs="+", choices=("table", "wp", "batch"), default=None)
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=None)
    parser.add_argument("--rtols", nargs="+", type=float, default=list(RTOLS))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="figures and JSON")
    parser.add_argument("--quick", action="store_true", help="3 problems, 2 tolerances, 64 samples")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default: 3 / 1)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = _parse(sys.argv[1:])
    run(
        Options(repeats=args.repeats, quick=args.quick),
        parts=tuple(args.parts or ("table", "wp", "batch")),
        names=args.problems,
        rtols=tuple(args.rtols),
        out=args.out,
    )
