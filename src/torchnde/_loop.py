"""The step loop, in named phases: propose → step → accept/reject → commit → event → save.

Everything per sample is a tensor: time ``t: (batch,)``, state ``y: (batch, n)``, statuses and
counters. :func:`attempt` (propose, step, accept/reject, commit) makes no Python decision on tensor
values, so it can go under ``torch.compile(fullgraph=True)``; the event and save phases, and the
``while any sample is running`` test, live outside it.

Without a batch axis (one problem) the same code runs in *host mode*: the per-sample bookkeeping
(times, flags, counters, controller state) is kept as Python numbers (see :mod:`._ops`), and only
the state and the solver's stages are tensors. The arithmetic is the same; a step then costs the
solver's tensor operations and little else.
"""

from __future__ import annotations

import bisect
import cmath
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ._ops import HostOps, TensorOps
from ._problem import Problem
from ._solution import Status
from .controllers import AbstractController
from .events import Event, crossed
from .solvers._base import AbstractSolver, StepResult
from .terms import call_checked

__all__ = [
    "Context",
    "HostBounds",
    "LoopState",
    "Recorder",
    "attempt",
    "finish",
    "init_state",
    "iteration",
]


@dataclass
class HostBounds:
    """The times of :class:`Context` as Python numbers, for host mode (one problem, eager)."""

    t0: float
    t_end: float
    snap_tol: float
    stops: list[float] | None = None  # sorted, +inf at the end
    jumps: frozenset[float] | None = None

    @classmethod
    def of(cls, ctx: Context) -> HostBounds:
        stops = None if ctx.stops is None else ctx.stops[0].tolist()
        jumps = None if ctx.jumps is None else frozenset(ctx.jumps[0].tolist())
        return cls(
            float(ctx.t0[0]),
            float(ctx.t_end[0]),
            float(ctx.snap_tol[0]),
            stops,
            jumps,
        )


@dataclass
class Context:
    """What stays fixed during one solve (internal times, ``(batch,)`` unless noted)."""

    problem: Problem
    solver: AbstractSolver
    controller: AbstractController
    t0: torch.Tensor
    t_end: torch.Tensor
    #: a step whose end falls this close to ``t_end`` (a few units in the last place), or an
    #: adaptive step within 1% of its own length of it, is extended to land on ``t_end``
    snap_tol: torch.Tensor
    #: a step shorter than ``resolution · |t|`` barely moves ``t`` in floating point: the step
    #: size has collapsed (``Status.DTMIN``); local to the time reached, not to the interval
    resolution: float
    max_steps: int
    stops: torch.Tensor | None = None  # (batch, K) sorted, +inf padded: steps land on these
    jumps: torch.Tensor | None = None  # (batch, J): after landing on these, re-evaluate vf
    events: tuple[Event, ...] = ()
    dense_matrix: torch.Tensor | None = None  # (rows, degree + 1)
    host: HostBounds | None = None  # set: per-sample bookkeeping in Python numbers
    #: ``(batch,)``: samples whose initial state is not finite; they are never stepped
    invalid: torch.Tensor | None = None
    #: the ``torch.compile`` backend of a compiled solve (see :mod:`torchnde._compiled`), or None
    compiled: str | None = None
    #: the compiled functions this solve uses, by mode (looked up in the cache once per solve)
    compiled_entries: dict[str, Any] = field(default_factory=dict, repr=False)
    #: compact the batch once at most this share of it is running (see :mod:`torchnde._compact`)
    compact: float | None = None

    @property
    def ops(self) -> type[TensorOps] | type[HostOps]:
        return HostOps if self.host is not None else TensorOps

    @property
    def bounds(self) -> Context | HostBounds:
        """``t0``, ``t_end``, ``snap_tol``, ``stops``, ``jumps`` as the loop sees them."""
        return self.host if self.host is not None else self


@dataclass
class LoopState:
    """The loop's state after a step: ``y`` and ``solver_state`` are tensors; the per-sample
    fields are ``(batch,)`` tensors, or Python numbers in host mode (see :func:`finish`)."""

    t: torch.Tensor
    y: torch.Tensor
    t_next: torch.Tensor  # proposed end of the next step
    solver_state: Any
    ctrl_state: Any
    running: torch.Tensor
    status: torch.Tensor
    fail_t: torch.Tensor
    num_steps: torch.Tensor
    num_accepted: torch.Tensor
    num_rejected: torch.Tensor
    nfe: torch.Tensor
    save_idx: torch.Tensor
    event_vals: tuple[torch.Tensor, ...] = ()
    #: the solver's own statistics (:attr:`~torchnde.AbstractSolver.statistics`), per sample
    counters: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepInfo:
    """One attempted step, for the save and event phases."""

    t0: torch.Tensor
    t1: torch.Tensor
    y0: torch.Tensor
    result: StepResult
    accepted: torch.Tensor
    at_jump: torch.Tensor | None = None  # the step ended just before a jump of the field
    _rows: torch.Tensor | None = field(default=None, repr=False)

    def rows(self, ctx: Context) -> torch.Tensor:
        if self._rows is None:
            self._rows = ctx.solver.dense_rows(ctx.problem, self.result)
        return self._rows


# ------------------------------------------------------------------------------------------------
# interpolation inside a step


def interpolate(matrix: torch.Tensor, rows: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``y(θ) = Σ_p θ^p Σ_r M[r, p] rows[:, r]`` for ``rows: (batch, R, n)``.

    ``θ: (batch,)`` gives ``(batch, n)``; ``θ: (batch, k)`` gives ``(batch, k, n)``."""
    single = theta.ndim == 1
    th = theta[:, None] if single else theta
    powers = th[..., None] ** torch.arange(matrix.shape[1], device=theta.device)
    weights = (powers.to(matrix.dtype) @ matrix.T).to(rows.dtype)  # (batch, k, R)
    out = torch.bmm(weights, rows)
    return out[:, 0] if single else out


# ------------------------------------------------------------------------------------------------
# the phases of one step


def _propose(ctx: Context, st: LoopState):
    """The end of the next step: the controller's proposal, clipped to ``t_end`` and stop times.

    A step that would end on a jump of the vector field ends one floating-point number before it
    instead (``at_jump``), so none of its stages sees the field beyond the jump; the step after it
    starts just past the jump (see :func:`_commit`)."""
    ops, b = ctx.ops, ctx.bounds
    t1 = ops.minimum(st.t_next, b.t_end)
    # land on t_end rather than leave a sliver; an adaptive step at most 1% longer than
    # proposed, so a rejected step (which shrinks by more) is not extended back to the same length
    snap = ops.maximum(b.snap_tol, 0.01 * (t1 - st.t)) if ctx.controller.adaptive else b.snap_tol
    t1 = ops.where(b.t_end - t1 <= snap, b.t_end, t1)
    clipped = t1 < st.t_next
    at_jump = None
    if b.stops is not None:
        nxt = _next_stop(b.stops, st.t)
        hit = nxt < t1
        t1 = ops.where(hit, nxt, t1)
        clipped = ops.or_(clipped, hit)
        if b.jumps is not None:
            at_jump = ops.and_(_is_jump(b.jumps, t1), ops.and_(t1 < b.t_end, st.running))
            t1 = ops.where(at_jump, ops.nextafter(t1, -math.inf), t1)
    return ops.where(st.running, t1, st.t), clipped, at_jump


def _next_stop(stops, t):
    """The first stop time strictly after ``t`` (``+inf`` padding ends the list)."""
    if isinstance(stops, list):
        return stops[bisect.bisect_right(stops, t)] if t < stops[-1] else math.inf
    idx = torch.searchsorted(stops, t[:, None].contiguous(), right=True)
    return stops.gather(1, idx.clamp(max=stops.shape[1] - 1))[:, 0]


def _is_jump(jumps, t):
    if isinstance(jumps, frozenset):
        return t in jumps
    return (jumps == t[:, None]).any(dim=1)


def _finite(ctx: Context, result: StepResult):
    """Whether the candidate and its error estimate are finite, per sample (one reduction)."""
    total = result.y1.sum(dim=1)
    if result.y_error is not None:
        total = total + result.y_error.sum(dim=1)
    # a sum of finite numbers overflows only for a blow-up anyway
    if ctx.host is not None:
        value = total.item()
        return cmath.isfinite(value) if isinstance(value, complex) else math.isfinite(value)
    return (total - total) == 0  # NaN for NaN or inf: one operation cheaper than isfinite


def attempt(ctx: Context, st: LoopState) -> tuple[LoopState, StepInfo]:
    """Propose, step, accept/reject and commit one step for every running sample."""
    ops = ctx.ops
    t0 = st.t
    t1, clipped, at_jump = _propose(ctx, st)
    result = ctx.solver.step(ctx.problem, t0, t1, st.y, st.solver_state)
    finite = _finite(ctx, result)
    # a step the solver itself failed (e.g. Newton did not converge) is rejected like a
    # non-finite one: the controller retries with a smaller step
    usable = finite if result.failed is None else ops.and_(finite, ops.not_(result.failed))
    accept, next_end, ctrl_state, too_small = ctx.controller.adapt(
        ctx.solver, t0, t1, st.y, result, st.ctrl_state, clipped, usable
    )
    ok = ops.and_(accept, usable)
    acc = ops.and_(ok, st.running)
    new = _commit(ctx, st, t1, result, acc, ok, next_end, ctrl_state, too_small, finite, at_jump)
    return new, StepInfo(t0, t1, st.y, result, acc, at_jump)


def _commit(
    ctx, st, t1, result, acc, ok, next_end, ctrl_state, too_small, finite, at_jump
) -> LoopState:
    # on bools, ``a > b`` is ``a and not b``: one operation on tensors, and right on Python bools
    ops, b = ctx.ops, ctx.bounds
    running = st.running
    t_reached = t1
    if at_jump is not None:  # step over the jump: from one number before it to one after it
        t_reached = ops.where(at_jump, ops.nextafter(ops.nextafter(t1, math.inf), math.inf), t1)
    t = ops.where(acc, t_reached, st.t)
    num_steps = st.num_steps + running
    going = running > ops.and_(acc, t1 >= b.t_end)  # running and not reached the end
    t_next = ops.where(running, next_end, st.t_next)
    dt_fail = ops.and_(going, (t_next - t) <= ctx.resolution * ops.abs(t))
    nonfinite = running > finite
    unsolved = None if result.failed is None else ops.and_(running, ops.and_(finite, result.failed))
    if ctx.controller.adaptive:  # an adaptive controller first retries with smaller steps
        dt_fail = ops.or_(too_small, dt_fail)
        nonfinite = ops.and_(nonfinite, dt_fail)
        if unsolved is not None:
            unsolved = ops.and_(unsolved, dt_fail)
    stop = ops.or_(nonfinite, dt_fail)
    if unsolved is not None:
        stop = ops.or_(stop, unsolved)
    failed = ops.and_(going, ops.or_(stop, num_steps >= ctx.max_steps))
    code = ops.where(dt_fail, int(Status.DTMIN), int(Status.MAX_STEPS))
    if unsolved is not None:
        code = ops.where(unsolved, int(Status.NONCONVERGENCE), code)
    code = ops.where(nonfinite, int(Status.NONFINITE), code)
    return LoopState(
        t=t,
        y=ops.select_rows(acc, result.y1, st.y),
        t_next=t_next,
        solver_state=ops.select_tree(
            acc,
            result.state,
            st.solver_state if result.rejected_state is None else result.rejected_state,
        ),
        ctrl_state=ctrl_state,  # what a finished sample's controller does no longer matters
        running=going > failed,
        status=ops.where(failed, code, st.status),
        fail_t=ops.where(failed, st.t, st.fail_t),
        num_steps=num_steps,
        num_accepted=st.num_accepted + acc,
        num_rejected=st.num_rejected + (running > ok),
        nfe=st.nfe + running * result.nfe,
        save_idx=st.save_idx,
        event_vals=st.event_vals,
        counters=_count(st.counters, result.counts, running),
    )


def _count(counters: dict[str, Any], counts: dict[str, Any] | None, running) -> dict[str, Any]:
    """Add a step's own statistics (Jacobian evaluations, factorisations, Newton iterations...)
    for the samples that were running."""
    if not counts:
        return counters
    return {name: total + running * counts.get(name, 0) for name, total in counters.items()}


# ------------------------------------------------------------------------------------------------
# start


def init_state(
    ctx: Context, y0: torch.Tensor, dt0: torch.Tensor | None, solver_state: Any, nfe0: int
) -> LoopState:
    """The state before the first step (``solver_state`` is the first vector-field value, from
    :meth:`~torchnde.solvers.AbstractSolver.init`; the solver turns it into the state it carries)."""
    b = ctx.bounds
    if ctx.host is not None and dt0 is not None:
        dt0 = float(dt0[0])
    t_next, ctrl_state, nfe = ctx.controller.init(
        ctx.problem, ctx.solver, b.t0, b.t_end, y0, dt0, solver_state
    )
    solver_state = ctx.solver.carry(y0, solver_state)
    if ctx.host is not None:
        return LoopState(
            t=b.t0,
            y=y0,
            t_next=t_next,
            solver_state=solver_state,
            ctrl_state=ctrl_state,
            running=b.t_end > b.t0,
            status=0,
            fail_t=math.nan,
            num_steps=0,
            num_accepted=0,
            num_rejected=0,
            nfe=nfe0 + nfe,
            save_idx=0,
            counters=dict.fromkeys(ctx.solver.statistics, 0),
        )
    t0 = ctx.t0
    batch = t0.shape[0]
    zeros = torch.zeros(batch, dtype=torch.long, device=t0.device)
    event_vals = tuple(_cond(ctx, ev, t0, y0) for ev in ctx.events)
    running, status, fail_t = ctx.t_end > t0, zeros.clone(), torch.full_like(t0, float("nan"))
    if ctx.invalid is not None:
        running = running & ~ctx.invalid
        status = torch.where(ctx.invalid, int(Status.NONFINITE), status)
        fail_t = torch.where(ctx.invalid, t0, fail_t)
    return LoopState(
        t=t0,
        y=y0,
        t_next=t_next,
        solver_state=solver_state,
        ctrl_state=ctrl_state,
        running=running,
        status=status,
        fail_t=fail_t,
        num_steps=zeros.clone(),
        num_accepted=zeros.clone(),
        num_rejected=zeros.clone(),
        nfe=zeros + (nfe0 + nfe),
        save_idx=zeros.clone(),
        event_vals=event_vals,
        counters={name: zeros.clone() for name in ctx.solver.statistics},
    )


def finish(ctx: Context, st: LoopState) -> LoopState:
    """The state with every per-sample field as a ``(batch,)`` tensor (host mode converts its
    Python numbers; otherwise nothing changes)."""
    if ctx.host is None:
        return st
    device, tdtype = ctx.t0.device, ctx.t0.dtype

    def time(x):
        return torch.tensor([x], dtype=tdtype, device=device)

    def count(x):
        return torch.tensor([x], dtype=torch.long, device=device)

    return dataclasses.replace(
        st,
        t=time(st.t),
        t_next=time(st.t_next),
        running=torch.tensor([st.running], device=device),
        status=count(st.status),
        fail_t=time(st.fail_t),
        num_steps=count(st.num_steps),
        num_accepted=count(st.num_accepted),
        num_rejected=count(st.num_rejected),
        nfe=count(st.nfe),
        save_idx=count(st.save_idx),
        counters={name: count(value) for name, value in st.counters.items()},
    )


# ------------------------------------------------------------------------------------------------
# recording what is saved


class Recorder:
    """Collects the saved values of a solve.

    Args:
        ctx: the solve's context.
        save_ts: internal save times ``(batch, T)``, or ``None``.
        steps: record every accepted step.
        dense: record the dense output.
    """

    def __init__(self, ctx: Context, save_ts: torch.Tensor | None, steps: bool, dense: bool):
        self.ctx = ctx
        # one +inf column of padding: masked writes of a vectorised save land there
        self.save_ts = (
            None
            if save_ts is None
            else torch.cat([save_ts, torch.full_like(save_ts[:, :1], float("inf"))], dim=1)
        )
        self.steps = steps
        self.dense = dense
        self.ts_out: torch.Tensor | None = None
        self.step_records: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.dense_records: list[tuple[torch.Tensor, ...]] = []
        self.crossings: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in ctx.events]
        self.event_t: torch.Tensor | None = None
        self.event_index: torch.Tensor | None = None
        # values saved at ts == t0 whose dependence on the save times is still to be added (after
        # each sample's first accepted step, from the slope of its dense output): (batch, k) mask
        self._at_start: torch.Tensor | None = None

    @classmethod
    def for_replay(cls, ctx: Context, save_ts: torch.Tensor | None, st: LoopState) -> Recorder:
        """A recorder for recomputing part of a solve: ``ts`` values start at zero (so only those
        saved in the recomputed part carry gradients) and nothing is saved at ``t0``."""
        rec = cls(ctx, save_ts, False, False)
        if save_ts is not None:
            batch, n = st.y.shape
            rec.ts_out = st.y.new_zeros(batch, save_ts.shape[1] + 1, n)
            if ctx.host is not None:
                rec.save_list = rec.save_ts[0].tolist()
        if ctx.events:
            rec.event_t = torch.full_like(st.t, float("nan"))
            rec.event_index = torch.full_like(st.status, -1)
        return rec

    @property
    def ts_values(self) -> torch.Tensor | None:
        """The values saved at ``ts``, ``(batch, T, n)``."""
        return None if self.ts_out is None else self.ts_out[:, :-1]

    def start(self, st: LoopState) -> LoopState:
        """Save the values at ``ts == t0`` before the first step."""
        if self.ctx.events:
            self.event_t = torch.full_like(st.t, float("nan"))
            self.event_index = torch.full_like(st.status, -1)
        if self.save_ts is None:
            return st
        batch, count = self.save_ts.shape
        n = st.y.shape[1]
        self.ts_out = torch.full(
            (batch, count, n), float("nan"), dtype=st.y.dtype, device=st.y.device
        )
        if self.ctx.host is not None:
            self.save_list = self.save_ts[0].tolist()
            starts = bisect.bisect_right(self.save_list, self.ctx.host.t0)
            if starts:
                self.ts_out[:, :starts] = st.y[:, None, :]
            return dataclasses.replace(st, save_idx=starts)
        at_start = self.save_ts <= self.ctx.t0[:, None]
        starts = int(at_start.sum(dim=1).max())  # ts are sorted: the first few
        if starts:
            self.ts_out[:, :starts] = torch.where(
                at_start[:, :starts, None], st.y[:, None, :], self.ts_out[:, :starts]
            )
        if (
            starts
            and torch.is_grad_enabled()
            and (self.save_ts.requires_grad or st.t.requires_grad)
        ):
            self._at_start = at_start[:, :starts]
        return dataclasses.replace(st, save_idx=at_start.sum(dim=1))

    def _start_slopes(self, info: StepInfo) -> None:
        """Give the values saved at ``ts == t0`` their derivative with respect to the save times
        (and ``t0``): ``y(s) = y0 + (s - t0)·y'(t0)``, with ``y'(t0)`` the slope of the first
        accepted step's dense output — the added term is zero in value, so only gradients change,
        and they agree with those of the values interpolated inside later steps."""
        first = info.accepted & self._at_start.any(dim=1)
        if not bool(first.any()):
            return
        dt = info.t1 - info.t0
        safe_dt = torch.where(dt == 0, torch.ones_like(dt), dt)
        rows = info.rows(self.ctx)
        weights = self.ctx.dense_matrix[:, 1].to(rows.dtype)  # d/dθ at θ = 0, per row
        slope = torch.einsum("r,brn->bn", weights, rows) / safe_dt[:, None]
        slope = slope.to(self.ts_out.dtype)
        slope = torch.where(torch.isfinite(slope), slope, torch.zeros_like(slope))
        k = self._at_start.shape[1]
        shift = (self.save_ts[:, :k] - info.t0[:, None])[:, :, None] * slope[:, None, :]
        mask = (self._at_start & first[:, None])[:, :, None]
        self.ts_out[:, :k] = torch.where(mask, self.ts_out[:, :k] + shift, self.ts_out[:, :k])
        self._at_start = self._at_start & ~first[:, None]

    def save(self, st: LoopState, info: StepInfo, t_stop: torch.Tensor) -> LoopState:
        """Save every value inside the accepted part ``(t0, t_stop]`` of the last step."""
        ctx = self.ctx
        if ctx.host is not None:
            return self._save_host(st, info, t_stop)
        if self.steps:
            self.step_records.append((t_stop, st.y, info.accepted))
        if self.dense:
            reached = torch.where(info.accepted, t_stop, info.t0)
            self.dense_records.append((info.t0, info.t1 - info.t0, reached, info.rows(ctx)))
        if self._at_start is not None:
            self._start_slopes(info)
        if self.save_ts is None:
            return st
        # the samples with a save time inside this step; then for each, the run of columns
        # [idx, end) it saves, interpolated for those samples only
        idx = st.save_idx
        next_t = self.save_ts.gather(1, idx[:, None])[:, 0]
        hit = info.accepted & (next_t <= t_stop)
        if not bool(hit.any()):
            return st
        which = hit.nonzero()[:, 0]
        save_ts, t0, stop, first = self.save_ts[which], info.t0[which], t_stop[which], idx[which]
        end = torch.searchsorted(save_ts, stop[:, None].contiguous(), right=True)[:, 0]
        k = int((end - first).max())
        count = self.save_ts.shape[1] - 1  # the last column is padding
        cols = first[:, None] + torch.arange(k, device=idx.device)
        inside = cols < end[:, None]
        cols = torch.where(inside, cols, count)  # masked writes go to the padding column
        dt = (info.t1 - info.t0)[which]
        safe_dt = torch.where(dt == 0, torch.ones_like(dt), dt)
        t_save = torch.where(inside, save_ts.gather(1, cols), t0[:, None])  # no inf
        theta = ((t_save - t0[:, None]) / safe_dt[:, None]).clamp(0, 1)
        values = interpolate(ctx.dense_matrix, info.rows(ctx)[which], theta)
        self.ts_out[which[:, None], cols] = values.to(self.ts_out.dtype)
        return dataclasses.replace(st, save_idx=idx.index_put((which,), end))

    def _save_host(self, st: LoopState, info: StepInfo, t_stop: float) -> LoopState:
        """:meth:`save` with host-mode bookkeeping (one problem, times as Python floats)."""
        ctx = self.ctx
        if self.steps or self.dense:
            t0, dt, reached = (
                torch.tensor([x], dtype=ctx.t0.dtype, device=ctx.t0.device)
                for x in (info.t0, info.t1 - info.t0, t_stop if info.accepted else info.t0)
            )
            if self.steps:
                accepted = torch.tensor([info.accepted], device=ctx.t0.device)
                self.step_records.append((reached, st.y, accepted))
            if self.dense:
                self.dense_records.append((t0, dt, reached, info.rows(ctx)))
        if self.save_ts is None or not info.accepted:
            return st
        idx = st.save_idx
        if self.save_list[idx] > t_stop:
            return st
        end = bisect.bisect_right(self.save_list, t_stop)
        dt = info.t1 - info.t0
        theta = [min(max((s - info.t0) / dt, 0.0), 1.0) for s in self.save_list[idx:end]]
        theta = torch.tensor([theta], dtype=ctx.dense_matrix.dtype, device=st.y.device)
        values = interpolate(ctx.dense_matrix, info.rows(ctx), theta)
        self.ts_out[:, idx:end] = values.to(self.ts_out.dtype)
        return dataclasses.replace(st, save_idx=end)


# ------------------------------------------------------------------------------------------------
# events


def _cond(ctx: Context, event: Event, tau: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    problem = ctx.problem
    value = call_checked(
        "event function",
        event.cond,
        problem.user_time(tau),
        problem.spec.unflatten(y),
        problem.args,
    )
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"the event function `{getattr(event.cond, '__name__', event.cond)}` returned "
            f"{type(value).__name__}; it must return a tensor"
        )
    batch = tau.shape[0]
    if value.numel() != batch:
        raise ValueError(
            f"the event function `{getattr(event.cond, '__name__', event.cond)}` returned shape "
            f"{tuple(value.shape)}; it must return one value per sample "
            f"({'(batch,)' if problem.spec.batched else 'a 0-dim tensor'})"
        )
    return value.reshape(batch).real


def _root(ctx, event, info, lo, hi, f_lo, f_hi, mask) -> torch.Tensor:
    """Illinois (modified regula falsi) on the dense output, per sample, within ``[lo, hi]``."""
    rows = info.rows(ctx).detach()
    dt = info.t1 - info.t0
    safe_dt = torch.where(dt == 0, torch.ones_like(dt), dt)
    lo, hi, f_lo, f_hi = lo.detach(), hi.detach(), f_lo.detach(), f_hi.detach()
    eps = torch.finfo(lo.dtype).eps
    side = torch.zeros_like(lo)
    with torch.no_grad():
        for _ in range(200):
            width = (hi - lo).abs()
            if not bool(((width > 4 * eps * hi.abs().clamp(min=1.0)) & mask).any()):
                break
            denom = f_hi - f_lo
            mid = torch.where(denom != 0, lo - f_lo * (hi - lo) / denom, (lo + hi) / 2)
            mid = torch.where((mid > lo) & (mid < hi), mid, (lo + hi) / 2)
            y_mid = interpolate(ctx.dense_matrix, rows, ((mid - info.t0) / safe_dt).clamp(0, 1))
            f_mid = _cond(ctx, event, mid, y_mid)
            # mid on the start's side (f_lo ≠ 0: the condition was strictly on one side before
            # the step): the crossing is in (mid, hi]. Otherwise it is in [lo, mid] — also when
            # f(mid) = 0, so that a condition that drops to exactly 0 and stays there (a jump)
            # gives the first such time, not any zero of the plateau
            left = (f_mid * f_lo) > 0
            lo_new = torch.where(left, mid, lo)
            hi_new = torch.where(left, hi, mid)
            # Illinois: halve the value at an end kept twice in a row
            f_lo = torch.where(left, f_mid, torch.where(side < 0, f_lo / 2, f_lo))
            f_hi = torch.where(left, torch.where(side > 0, f_hi / 2, f_hi), f_mid)
            side = torch.where(left, torch.ones_like(side), -torch.ones_like(side))
            lo, hi = lo_new, hi_new
    return hi


def _differentiable_time(ctx, event, info, t_star) -> torch.Tensor:
    """One Newton step from the root with the derivative held fixed: the value is unchanged, the
    gradient is the implicit-function-theorem one."""
    dt = info.t1 - info.t0
    safe_dt = torch.where(dt == 0, torch.ones_like(dt), dt)
    rows = info.rows(ctx)
    with torch.enable_grad():
        tt = t_star.detach().requires_grad_(True)
        y = interpolate(ctx.dense_matrix, rows.detach(), (tt - info.t0.detach()) / safe_dt.detach())
        c = _cond(ctx, event, tt, y)
        # a condition that does not depend on t or y there (e.g. a constant 0 past some time)
        # has no slope to take
        slope = None
        if c.requires_grad:
            (slope,) = torch.autograd.grad(c.sum(), tt, allow_unused=True)
    if slope is None:
        slope = torch.zeros_like(t_star)
    slope = torch.where(slope == 0, torch.ones_like(slope), slope).detach()
    theta = (t_star.detach() - info.t0) / safe_dt
    c_graph = _cond(ctx, event, t_star.detach(), interpolate(ctx.dense_matrix, rows, theta))
    if not c_graph.requires_grad and not info.t0.requires_grad:
        return t_star.detach()
    return t_star.detach() - (c_graph - c_graph.detach()) / slope


def event_phase(ctx: Context, rec: Recorder, st: LoopState, info: StepInfo):
    """Check every event over the accepted step; stop samples at terminal ones.

    Returns the new state and the time up to which the step counts for saving."""
    t_stop = info.t1
    if not ctx.events:
        return st, t_stop
    values = tuple(_cond(ctx, ev, st.t, st.y) for ev in ctx.events)
    first_t = torch.full_like(st.t, float("inf"))
    first_e = torch.full_like(st.status, -1)
    for e, (ev, before, after) in enumerate(zip(ctx.events, st.event_vals, values)):
        hit = info.accepted & crossed(ev, before, after)
        if not bool(hit.any()):
            continue
        t_root = _root(ctx, ev, info, info.t0, info.t1, before, after, hit)
        if ev.terminal:
            earlier = hit & (t_root < first_t)
            first_t = torch.where(earlier, t_root, first_t)
            first_e = torch.where(earlier, torch.full_like(first_e, e), first_e)
        else:
            rec.crossings[e].append((hit, t_root))
    new_vals = tuple(torch.where(info.accepted, a, b) for a, b in zip(values, st.event_vals))
    st = dataclasses.replace(st, event_vals=new_vals)
    fired = first_e >= 0
    if not bool(fired.any()):
        return st, t_stop
    # a terminal event: the step ends at the crossing
    t_star = first_t.clone()
    for e, ev in enumerate(ctx.events):
        which = fired & (first_e == e)
        if bool(which.any()):
            t_diff = _differentiable_time(ctx, ev, info, torch.where(which, first_t, info.t1))
            t_star = torch.where(which, t_diff, t_star)
    t_star = torch.where(fired, t_star, info.t1)
    dt = info.t1 - info.t0
    safe_dt = torch.where(dt == 0, torch.ones_like(dt), dt)
    y_star = interpolate(ctx.dense_matrix, info.rows(ctx), (t_star - info.t0) / safe_dt)
    rec.event_t = torch.where(fired, t_star, rec.event_t)
    rec.event_index = torch.where(fired, first_e, rec.event_index)
    st = dataclasses.replace(
        st,
        t=torch.where(fired, t_star, st.t),
        y=torch.where(fired[:, None], y_star, st.y),
        running=st.running & ~fired,
        status=torch.where(fired, int(Status.EVENT), st.status),
    )
    return st, torch.where(fired, t_star, t_stop)


# ------------------------------------------------------------------------------------------------
# the loop


def iteration(ctx: Context, st: LoopState, rec: Recorder) -> tuple[LoopState, StepInfo]:
    """One pass of the loop: attempt a step, then the event and save phases (the driver is
    :func:`torchnde._run.advance`)."""
    if ctx.compiled is not None:
        from ._compiled import compiled_attempt

        st, info = compiled_attempt(ctx, st)
    else:
        st, info = attempt(ctx, st)
    st, t_stop = event_phase(ctx, rec, st, info)
    st = rec.save(st, info, t_stop)
    if ctx.jumps is not None:
        st = _refresh_after_jump(ctx, st, info)
    return st, info


def _refresh_after_jump(ctx: Context, st: LoopState, info: StepInfo) -> LoopState:
    """After a step lands on a discontinuity of the vector field, evaluate it afresh there."""
    if info.at_jump is None:
        return st
    ops = ctx.ops
    jumped = ops.and_(info.accepted, info.at_jump)
    if not ops.any(jumped):
        return st
    fresh = ctx.solver.first_state(ctx.problem, st.t, st.y)
    return dataclasses.replace(
        st,
        solver_state=ops.select_tree(jumped, fresh, st.solver_state),
        nfe=st.nfe + st.running,
    )
