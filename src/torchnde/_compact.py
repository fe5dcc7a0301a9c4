"""Finished samples stop costing: compaction of a batched solve (``solve(..., compact=...)``).

Under ``batch_axis=0`` every step evaluates the vector field on the whole batch until its slowest
sample finishes. With compaction, once the samples still running are at most a fraction of the
batch being stepped, the loop gathers them (their state, times, controller and solver state,
saved-value buffers and the per-sample ``args``) into a smaller batch, steps that one, and
scatters the results back when it is done — recursively, so a batch whose samples need very
different numbers of steps costs close to the sum of its parts.

Every sample takes the steps it takes without compaction: the loop's arithmetic is row-wise, so
values, statuses and statistics are the same — values to rounding, since a row may round
differently at another position of a vectorised kernel or of a matrix product's blocking.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ._loop import Context, LoopState, Recorder, iteration
from ._pytree import take_rows, tree_map

__all__ = ["advance_compacting", "check_compact"]


def check_compact(
    compact: Any,
    batched: bool,
    ode: bool,
    events: tuple,
    steps: bool,
    dense: bool,
    compiled: str | None,
) -> float | None:
    """``solve``'s ``compact`` argument as the fraction that triggers compaction, or ``None``."""
    if compact is False or compact is None:
        return None
    if compact is True:
        fraction = 0.5
    elif isinstance(compact, (int, float)) and not isinstance(compact, bool) and 0 < compact < 1:
        fraction = float(compact)
    else:
        raise ValueError(
            f"`compact` must be True, False or a fraction in (0, 1) (compact once at most that "
            f"share of the batch is still running), got {compact!r}"
        )
    refusals = (
        (not batched, "a batch of independent problems: pass `batch_axis=0`"),
        (not ode, "an ODE (`ODETerm`): a control path is per sample and is not compacted"),
        (bool(events), "no events: drop `event=` or `compact=`"),
        (steps or dense, "no `SaveAt(steps=True)` or `SaveAt(dense=True)`"),
        (compiled is not None, "an eager solve: drop `compile=` or `compact=`"),
    )
    for refused, why in refusals:
        if refused:
            raise ValueError(f"`compact=` needs {why}")
    return fraction


def advance_compacting(ctx: Context, st: LoopState, rec: Recorder) -> LoopState:
    """:func:`torchnde._run.advance` (no observer), gathering the running samples into a smaller
    batch whenever at most ``ctx.compact`` of the batch being stepped is still running."""
    batch = st.t.shape[0]
    while True:
        count = int(st.running.sum())
        if count == 0:
            return st
        if count <= ctx.compact * batch:
            break
        st, _ = iteration(ctx, st, rec)
    idx = st.running.nonzero()[:, 0]
    sub_ctx = _restrict_context(ctx, idx)
    sub_rec = _restrict_recorder(rec, sub_ctx, idx)
    sub_st = advance_compacting(sub_ctx, _restrict_state(st, idx, batch), sub_rec)
    if rec.ts_out is not None:
        rec.ts_out = rec.ts_out.index_put((idx,), sub_rec.ts_out)
    if rec._at_start is not None:
        rec._at_start = rec._at_start.index_put((idx,), sub_rec._at_start)
    return _merge_state(st, sub_st, idx, batch)


def _put_rows(full: Any, part: Any, idx: torch.Tensor, batch: int) -> Any:
    """``full`` with the rows ``idx`` of its batch-leading leaves replaced by ``part``'s (out of
    place, so gradients flow through both)."""

    def put(leaf, new):
        if isinstance(leaf, torch.Tensor) and leaf.ndim and leaf.shape[0] == batch:
            return leaf.index_put((idx,), new.to(leaf.dtype))
        return leaf

    return tree_map(put, full, part)


def _restrict_context(ctx: Context, idx: torch.Tensor) -> Context:
    def rows(x):
        return None if x is None else x[idx]

    return dataclasses.replace(
        ctx,
        problem=ctx.problem.restricted(idx),
        t0=ctx.t0[idx],
        t_end=ctx.t_end[idx],
        snap_tol=ctx.snap_tol[idx],
        stops=rows(ctx.stops),
        jumps=rows(ctx.jumps),  # (batch, J), like stops
        invalid=rows(ctx.invalid),
        compiled_entries={},
    )


def _restrict_recorder(rec: Recorder, ctx: Context, idx: torch.Tensor) -> Recorder:
    sub = Recorder(ctx, None, False, False)
    if rec.save_ts is not None:
        sub.save_ts = rec.save_ts[idx]
        sub.ts_out = rec.ts_out[idx]
    if rec._at_start is not None:
        sub._at_start = rec._at_start[idx]
    return sub


def _restrict_state(st: LoopState, idx: torch.Tensor, batch: int) -> LoopState:
    """The loop state of the samples ``idx``: every field's batch-leading tensors at ``idx``."""
    fields = {f.name: getattr(st, f.name) for f in dataclasses.fields(st)}
    return LoopState(**{name: take_rows(value, idx, batch) for name, value in fields.items()})


def _merge_state(st: LoopState, sub: LoopState, idx: torch.Tensor, batch: int) -> LoopState:
    """``st`` with the samples ``idx`` replaced by ``sub``'s, field by field."""
    return LoopState(
        **{
            f.name: _put_rows(getattr(st, f.name), getattr(sub, f.name), idx, batch)
            for f in dataclasses.fields(st)
        }
    )
