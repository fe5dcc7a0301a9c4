"""Regenerate the stored references of the stiff test set:
``python -m benchmarks.stiff_reference [NAME ...] [--check]``.

For each problem of :mod:`benchmarks.stiff_problems`, SciPy's ``solve_ivp(method="Radau",
rtol=1e-12, atol=problem.reference_atol)`` with the analytic Jacobian (for E5: in conservative
variables, see :data:`FORMS`) integrates from each output
time to the next (a fresh start at every output time, so no value comes from an interpolant), and
the states at the output times are written, as numbers, to ``benchmarks/stiff_reference_values.py``
(other problems' entries are kept). Each entry also records how far the reference is from

* the test set's published value at ``t1`` where there is one (``published_error``), and
* a second, independent solve (``check``: BDF at the same tolerances, or Radau at a tighter or
  looser setting where BDF fails), as the reference's own error estimate (``check_error``),

both in the problem's mixed norm (see :func:`benchmarks.stiff_problems.mixed_error`). With
``--check`` nothing is written: the stored numbers are compared with a fresh computation.

Takes minutes (Van der Pol and OREGO need tens of thousands of Radau steps at 1e-12).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .stiff_problems import E5_CONSTANTS, PROBLEMS, StiffProblem, mixed_error

REFERENCE_RTOL = 1e-12
VALUES_FILE = Path(__file__).with_name("stiff_reference_values.py")


@dataclass(frozen=True)
class Form:
    """The equations of a problem in other variables ``z``, for the reference only.

    Attributes:
        f, jac: SciPy's ``f(t, z)`` and ``jac(t, z)``.
        z0: the initial value of ``z``.
        lift: ``z → y``, the problem's own variables.
    """

    f: Callable[[float, np.ndarray], Any]
    jac: Callable[[float, np.ndarray], Any]
    z0: tuple[float, ...]
    lift: Callable[[np.ndarray], np.ndarray]


def _e5_conservative() -> Form:
    """E5 in ``z = (y1, y2, y4)`` with ``y3 = y2 − y4``: the conservation law ``y2 − y3 − y4 = 0``
    holds by construction, so round-off cannot build up in ``y2 − y3`` (see the notes of
    :mod:`benchmarks.stiff_problems`)."""
    A, B, C, M = E5_CONSTANTS

    def f(t: float, z: np.ndarray) -> list[float]:
        y1, y2, y4 = z
        y3 = y2 - y4
        return [-A * y1 - B * y1 * y3, A * y1 - M * C * y2 * y3, B * y1 * y3 - C * y4]

    def jac(t: float, z: np.ndarray) -> list[list[float]]:
        y1, y2, y4 = z
        y3 = y2 - y4
        return [
            [-A - B * y3, -B * y1, B * y1],
            [A, -M * C * (y2 + y3), M * C * y2],
            [B * y3, B * y1, -B * y1 - C],
        ]

    def lift(z: np.ndarray) -> np.ndarray:
        return np.array([z[0], z[1], z[1] - z[2], z[2]])

    return Form(f, jac, (1.76e-3, 0.0, 0.0), lift)


#: problems whose reference is computed in other variables
FORMS: dict[str, Callable[[], Form]] = {"e5": _e5_conservative}

#: the independent solve each reference is checked against: (method, rtol, atol or None for the
#: problem's reference_atol). BDF fails at 1e-12 on Van der Pol ("step size less than spacing"):
#: there, and for E5, Radau at rtol 1e-11 says how much the last digits move.
CHECKS: dict[str, tuple[str, float, float | None]] = {
    "robertson": ("BDF", 1e-12, None),
    "robertson_long": ("BDF", 1e-12, None),
    "vanderpol": ("Radau", 1e-11, 1e-11),  # the reference itself uses atol 1e-14
    "hires": ("BDF", 1e-12, None),
    "orego": ("BDF", 1e-12, None),
    "pollution": ("BDF", 1e-12, None),
    "e5": ("Radau", 1e-11, None),  # in the conservative form too
}


def integrate(
    problem: StiffProblem,
    method: str = "Radau",
    rtol: float = REFERENCE_RTOL,
    atol: float | None = None,
) -> dict[str, Any]:
    """Solve ``problem`` with SciPy from one output time to the next.

    Returns:
        ``{"ys": (len(ts), n) array, "steps": accepted steps, "seconds": wall time}``.

    Raises:
        RuntimeError: naming the segment where SciPy failed.
    """
    from scipy.integrate import solve_ivp

    atol = problem.reference_atol if atol is None else atol
    if problem.name in FORMS:
        form = FORMS[problem.name]()
    else:
        form = Form(problem.numpy_field(), problem.numpy_jacobian(), problem.y0, lambda z: z)
    z, t0, ys, steps = np.array(form.z0, dtype=np.float64), problem.t0, [], 0
    start = time.perf_counter()
    for t1 in problem.ts:
        sol = solve_ivp(form.f, (t0, t1), z, method=method, rtol=rtol, atol=atol, jac=form.jac)
        if sol.status != 0:
            raise RuntimeError(
                f"{problem.name}: SciPy {method} (rtol={rtol:g}, atol={atol:g}) failed on "
                f"[{t0:g}, {t1:g}]: {sol.message}"
            )
        z, t0 = sol.y[:, -1], t1
        ys.append(form.lift(z))
        steps += len(sol.t) - 1
    return {"ys": np.array(ys), "steps": steps, "seconds": time.perf_counter() - start}


def reference_entry(problem: StiffProblem) -> dict[str, Any]:
    """The stored entry of one problem: the reference and its checks."""
    import scipy

    ref = integrate(problem)
    method, rtol, atol = CHECKS[problem.name]
    check = integrate(problem, method, rtol, atol)
    entry: dict[str, Any] = {
        "method": "Radau",
        "rtol": REFERENCE_RTOL,
        "atol": problem.reference_atol,
        "scipy": scipy.__version__,
        "steps": ref["steps"],
        "check": f"{method} rtol={rtol:g} atol={problem.reference_atol if atol is None else atol:g}",
        "check_error": mixed_error(check["ys"], ref["ys"], problem.scale),
        "published_error": None
        if problem.published is None
        else mixed_error(ref["ys"][-1], np.array(problem.published), problem.scale),
        "ts": tuple(problem.ts),
        "ys": tuple(tuple(float(v) for v in row) for row in ref["ys"]),
    }
    print(
        f"{problem.name:15s} Radau {ref['steps']:6d} steps {ref['seconds']:6.1f} s | "
        f"{entry['check']}: {check['steps']} steps, difference {entry['check_error']:.2e} | "
        f"published: {_fmt(entry['published_error'])}",
        flush=True,
    )
    return entry


def _fmt(x: float | None) -> str:
    return "none" if x is None else f"{x:.2e}"


# ------------------------------------------------------------------------------------------------
# the values file (written already in `ruff format`'s layout: one number per line)


def _literal(value: Any, indent: int) -> str:
    pad, inner = "    " * indent, "    " * (indent + 1)
    if isinstance(value, dict):
        items = "".join(
            f"{inner}{_literal(k, indent)}: {_literal(v, indent + 1)},\n" for k, v in value.items()
        )
        return "{\n" + items + pad + "}"
    if isinstance(value, tuple):
        items = "".join(f"{inner}{_literal(v, indent + 1)},\n" for v in value)
        return "(\n" + items + pad + ")"
    if isinstance(value, str):
        return json.dumps(value)  # double quotes, as ruff writes them
    return repr(value)


def render(references: dict[str, dict[str, Any]]) -> str:
    """The text of ``stiff_reference_values.py`` for ``references``."""
    order = [name for name in PROBLEMS if name in references]
    body = _literal({name: references[name] for name in order}, 0)
    return (
        '"""Reference solutions of the stiff test set at its output times: generated by\n'
        "``python -m benchmarks.stiff_reference`` (SciPy Radau, rtol 1e-12); do not edit by hand.\n"
        '"""\n\n'
        f"REFERENCES = {body}\n"
    )


def _stored() -> dict[str, dict[str, Any]]:
    try:
        from .stiff_reference_values import REFERENCES
    except ImportError:
        return {}
    return dict(REFERENCES)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stiff_reference", description=__doc__
    )
    parser.add_argument("names", nargs="*", help=f"problems (default: all of {list(PROBLEMS)})")
    parser.add_argument(
        "--check", action="store_true", help="compare with the stored numbers, write nothing"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    names = args.names or list(PROBLEMS)
    unknown = [n for n in names if n not in PROBLEMS]
    if unknown:
        raise SystemExit(f"unknown problem(s) {unknown}; the set has {list(PROBLEMS)}")
    stored = _stored()
    if args.check:
        worst = 0.0
        for name in names:
            problem = PROBLEMS[name]
            if name not in stored:
                print(f"{name}: nothing stored")
                worst = float("inf")
                continue
            fresh = integrate(problem)["ys"]
            diff = mixed_error(fresh, np.array(stored[name]["ys"]), problem.scale)
            worst = max(worst, diff)
            print(f"{name:15s} stored vs recomputed: {diff:.2e}", flush=True)
        return 0 if worst < 1e-10 else 1
    for name in names:
        stored[name] = reference_entry(PROBLEMS[name])
    from torchnde.training import atomic_write_text

    atomic_write_text(VALUES_FILE, render(stored))
    print(f"wrote {VALUES_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
