"""Running a solve: a :class:`Prepared` problem (built once, validated by :func:`~torchnde.solve`
or built directly by an adjoint for its backward solve), the one loop driver :func:`advance` with
its hook, and :func:`drive`, which runs a prepared solve from start to finish and stacks what it
saved.

Every solve — the forward pass of each adjoint, a checkpointed segment recomputed in a backward
pass, the backward solve of the continuous adjoint — goes through :func:`advance`; adjoints that
need to see the steps pass an ``observe`` hook instead of writing a loop of their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ._compact import advance_compacting
from ._compiled import loop_applies, normalise, run_loop
from ._loop import Context, HostBounds, LoopState, Recorder, StepInfo, finish, init_state, iteration
from ._problem import Problem
from ._pytree import StateSpec
from ._solution import Status
from .controllers import AbstractController
from .events import Event
from .solvers._base import AbstractSolver

__all__ = [
    "LoopOutput",
    "Observer",
    "Prepared",
    "SavePlan",
    "advance",
    "assemble",
    "build",
    "drive",
    "integrate",
]

#: ``observe(i, before, after, info)``: called after every iteration ``i`` (1, 2, ...) with the
#: loop state before and after it and the attempted step
Observer = Callable[[int, LoopState, LoopState, StepInfo], None]


@dataclass(frozen=True)
class SavePlan:
    """What to save, in internal times (``ts: (batch, T)`` or ``None``)."""

    t0: bool
    t1: bool
    ts: torch.Tensor | None
    steps: bool
    dense: bool


@dataclass
class Prepared:
    """A solve ready to run: the fixed context, what to save, the flat initial state
    ``y0: (batch, n)``, the first step size (internal, ``(batch,)`` or None) and the solver's
    first state with the evaluations it cost."""

    ctx: Context
    plan: SavePlan
    y0: torch.Tensor
    dt0: torch.Tensor | None
    solver_state: Any
    nfe0: int


@dataclass
class LoopOutput:
    """What running a solve gives: ``ys: (batch, times, n)`` and ``ts: (batch, times)`` (internal)
    carry the gradients; ``state`` and ``recorder`` hold statuses, statistics, events and dense
    output; ``nfe_backward`` is the ``(batch,)`` counter a custom backward pass adds to."""

    ys: torch.Tensor
    ts: torch.Tensor
    state: LoopState
    recorder: Recorder
    nfe_backward: torch.Tensor | None = None


# ------------------------------------------------------------------------------------------------
# building


def build(
    problem: Problem,
    solver: AbstractSolver,
    controller: AbstractController,
    tau0: torch.Tensor,
    tau1: torch.Tensor,
    y0: torch.Tensor,
    *,
    plan: SavePlan,
    dt0: torch.Tensor | None = None,
    max_steps: int,
    events: tuple[Event, ...] = (),
    invalid: torch.Tensor | None = None,
    host: bool = True,
    compiled: str | None = None,
    compact: float | None = None,
) -> Prepared:
    """A :class:`Prepared` solve from checked arguments: internal times ``tau0 < tau1`` per sample
    (``(batch,)``), the flat ``y0: (batch, n)`` and ``dt0`` (positive, ``(batch,)`` or None).
    ``host=False`` keeps the per-sample bookkeeping in tensors even where host mode would do;
    ``compiled`` names the ``torch.compile`` backend of a compiled solve (which keeps them in
    tensors too); ``compact`` the share of running samples below which a batched solve continues
    on the running ones only (:mod:`torchnde._compact`)."""
    tdtype, device = tau0.dtype, tau0.device
    batch = problem.spec.batch
    eps = torch.finfo(tdtype).eps
    stops = controller.stops(problem, tdtype, device)
    rtol, atol = getattr(controller, "rtol", None), getattr(controller, "atol", None)
    if rtol is not None and atol is not None:
        problem.tolerances = (float(rtol), float(atol))
    problem.adaptive = controller.adaptive
    solver_state, nfe0 = solver.init(problem, tau0, y0)
    ctx = Context(
        problem=problem,
        solver=solver,
        controller=controller,
        t0=tau0,
        t_end=tau1,
        snap_tol=(4 if controller.adaptive else 100) * eps * torch.maximum(tau0.abs(), tau1.abs()),
        resolution=4 * eps,
        max_steps=max_steps,
        stops=None if stops is None else _pad_stops(stops[0], batch),
        jumps=None if stops is None or stops[1] is None else stops[1].expand(batch, -1),
        events=events,
        dense_matrix=torch.tensor(solver.dense_matrix, dtype=tdtype, device=device),
        invalid=invalid,
        compiled=compiled,
        compact=compact,
    )
    if (
        host
        and compiled is None
        and _host_mode(problem.spec.batched, events, solver, controller, tau0, tau1, plan.ts, dt0)
    ):
        ctx.host = HostBounds.of(ctx)
    return Prepared(ctx, plan, y0, dt0, solver_state, nfe0)


def _host_mode(batched, events, solver, controller, *times) -> bool:
    """Keep the per-sample bookkeeping as Python numbers (one problem, no events, nothing
    differentiated with respect to the times, and a solver and controller that support it)."""
    return (
        not batched
        and not events
        and solver.supports_host
        and controller.supports_host
        and not any(isinstance(t, torch.Tensor) and t.requires_grad for t in times)
    )


def _pad_stops(stops: torch.Tensor, batch: int) -> torch.Tensor:
    inf = torch.full_like(stops[:, :1], math.inf)
    return torch.cat([stops, inf], dim=1).expand(batch, -1).contiguous()


# ------------------------------------------------------------------------------------------------
# running


def advance(
    ctx: Context,
    st: LoopState,
    rec: Recorder,
    *,
    iterations: int | None = None,
    observe: Observer | None = None,
) -> LoopState:
    """The loop driver: iterate (propose → step → accept/reject → commit → event → save) until no
    sample is running — every sample stops by ``max_steps`` at the latest — or, if given, for at
    most ``iterations`` passes. ``observe`` sees every iteration."""
    i = 0
    if ctx.compiled is not None:
        st = normalise(st)
    while ctx.ops.any(st.running) and (iterations is None or i < iterations):
        before = st
        st, info = iteration(ctx, st, rec)
        i += 1
        if observe is not None:
            observe(i, before, st, info)
    return st


def drive(prep: Prepared, *, observe: Observer | None = None) -> LoopOutput:
    """Run a prepared solve from its start to its end and stack what it saved."""
    ctx, plan = prep.ctx, prep.plan
    st = init_state(ctx, prep.y0, prep.dt0, prep.solver_state, prep.nfe0)
    rec = Recorder(ctx, plan.ts, plan.steps, plan.dense)
    st = rec.start(st)
    if observe is None and ctx.compact is not None:
        st = advance_compacting(ctx, st, rec)
    else:
        whole = run_loop(ctx, st, rec) if observe is None and loop_applies(ctx, rec) else None
        st = advance(ctx, st, rec, observe=observe) if whole is None else whole
    st = finish(ctx, st)
    ys, ts = assemble(ctx, plan, st, rec, prep.y0)
    return LoopOutput(ys, ts, st, rec)


def integrate(
    problem: Problem,
    solver: AbstractSolver,
    controller: AbstractController,
    t0: torch.Tensor,
    t1: torch.Tensor,
    y0: torch.Tensor,
    *,
    dt0: float | None = None,
    max_steps: int,
    on_step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], None] | None = None,
) -> LoopOutput:
    """Solve ``problem`` (its state one problem, no batch axis) from ``t0`` to ``t1`` (0-dim user
    times, either order) and save the value at ``t1``: the backward solves of the adjoints, run
    on arguments they built themselves, with no validation and no gradient method of their own.

    ``dt0`` is the first step size (positive, or None to let an adaptive controller choose).
    ``on_step(t0, t1, y0, accepted)``, if given, is called after every attempted step with its
    start and end (0-dim, in the times of ``t0``/``t1``), the flat state at its start and whether
    it was accepted."""
    tdtype = problem.time_dtype
    t0 = t0.detach().reshape(1).to(tdtype)
    t1 = t1.detach().reshape(1).to(tdtype)
    sign = 1.0 if bool(t1 >= t0) else -1.0
    direction = None if sign > 0 else torch.full_like(t0, -1.0)
    problem = problem.with_direction(direction)
    step = None if dt0 is None else torch.full_like(t0, abs(dt0))
    plan = SavePlan(False, True, None, False, False)
    observe = None
    if on_step is not None:

        def observe(i: int, before: LoopState, after: LoopState, info: StepInfo) -> None:
            accepted = bool(torch.as_tensor(info.accepted).all())
            t_start = torch.as_tensor(info.t0).reshape(-1)[0] * sign
            t_end = torch.as_tensor(info.t1).reshape(-1)[0] * sign
            on_step(t_start, t_end, info.y0[0], accepted)

    return drive(
        build(
            problem,
            solver,
            controller,
            t0 * sign,
            t1 * sign,
            y0.reshape(1, -1),
            plan=plan,
            dt0=step,
            max_steps=max_steps,
        ),
        observe=observe,
    )


def flat_problem(term: Any, y0: torch.Tensor, time_dtype: torch.dtype) -> Problem:
    """A :class:`Problem` for a term over a flat 1-D state (one problem, forwards in time)."""
    return Problem(term, StateSpec.from_tree(y0, False), None, None, time_dtype)


# ------------------------------------------------------------------------------------------------
# what was saved


def assemble(ctx: Context, plan: SavePlan, st: LoopState, rec: Recorder, y0: torch.Tensor):
    """Return ``(ys, ts)``: saved values ``(batch, T, n)`` and their internal times ``(batch, T)``,
    in the order t0, ts, steps, t1. Values a sample never reached are NaN."""
    ys, ts = [], []
    if plan.t0:
        ys.append(y0[:, None])
        ts.append(ctx.t0[:, None])
    if plan.ts is not None:
        ys.append(rec.ts_values)
        ts.append(plan.ts)
    if plan.steps:
        y_steps, t_steps = _steps(rec, y0)
        ys.append(y_steps)
        ts.append(t_steps)
    if plan.t1:
        ok = st.status <= int(Status.EVENT)
        nan = torch.full_like(st.y, float("nan"))
        ys.append(torch.where(ok[:, None], st.y, nan)[:, None])
        ts.append(torch.where(ok, st.t, ctx.t_end)[:, None])
    if not ys:
        batch, n = y0.shape
        return y0.new_zeros(batch, 0, n), ctx.t0.new_zeros(batch, 0)
    return torch.cat(ys, dim=1), torch.cat(ts, dim=1)


def _steps(rec: Recorder, y0: torch.Tensor):
    """Every accepted step, left-aligned per sample and NaN-padded."""
    batch, n = y0.shape
    if not rec.step_records:
        return y0.new_zeros(batch, 0, n), y0.new_zeros(batch, 0).real
    t = torch.stack([r[0] for r in rec.step_records], dim=1)  # (batch, M)
    y = torch.stack([r[1] for r in rec.step_records], dim=1)  # (batch, M, n)
    acc = torch.stack([r[2] for r in rec.step_records], dim=1)
    pos = acc.long().cumsum(dim=1) - 1
    width = int(acc.sum(dim=1).max())
    b_idx, m_idx = torch.nonzero(acc, as_tuple=True)
    p_idx = pos[b_idx, m_idx]
    y_out = torch.full((batch, width, n), float("nan"), dtype=y.dtype, device=y.device)
    t_out = torch.full((batch, width), float("nan"), dtype=t.dtype, device=t.device)
    y_out = y_out.index_put((b_idx, p_idx), y[b_idx, m_idx])
    t_out = t_out.index_put((b_idx, p_idx), t[b_idx, m_idx])
    return y_out, t_out
