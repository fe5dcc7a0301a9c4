"""Backpropagation through the steps, recomputing them from a few stored states."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._errors import friendly_keywords
from .._loop import Recorder
from .._pytree import tree_map
from .._run import advance, drive
from ._base import AbstractAdjoint
from ._custom import (
    ColumnGrads,
    NonFiniteWatch,
    Run,
    forward_loop,
    needs_grad,
    time_gradients,
)
from ._params import grad_inputs

__all__ = ["CheckpointAdjoint"]


@friendly_keywords()
@dataclass(frozen=True, eq=False)
class CheckpointAdjoint(AbstractAdjoint):
    """Backpropagate through the solver's steps like :class:`DirectAdjoint`, but keep only
    ``checkpoints`` states of the forward pass and recompute the steps between them during the
    backward pass (Griewank & Walther, *Evaluating Derivatives*, 2008, ch. 12).

    The gradient equals the direct one (the recomputed steps are the same operations); memory is
    ``O(checkpoints + steps / checkpoints)`` states instead of the whole graph, for about one more
    forward pass of work.

    Args:
        checkpoints: how many loop states to keep; ``None`` means ``ceil(sqrt(max_steps))``.
            The states are spread evenly over the steps actually taken.
        params: the tensors to differentiate with respect to, besides ``y0``, ``args`` and the
            times. ``None`` finds them: the parameters of modules the vector field calls and every
            other tensor requiring grad that it touches. Give them explicitly to be strict: a
            tensor the vector field uses that is not listed is then an error.

    Saved values at ``t0``, ``ts`` and ``t1`` are differentiable (also after a terminal event);
    ``SaveAt(steps=True)`` and dense output are not (use :class:`DirectAdjoint`).
    """

    checkpoints: int | None = None
    params: Sequence[torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.checkpoints is not None and (
            isinstance(self.checkpoints, bool)
            or not isinstance(self.checkpoints, int)
            or self.checkpoints < 1
        ):
            raise ValueError(
                f"`CheckpointAdjoint(checkpoints=...)` must be a positive int or None, "
                f"got {self.checkpoints!r}"
            )

    def check(self, prep) -> None:
        ctx, plan = prep.ctx, prep.plan
        if not ctx.solver.restartable:
            raise ValueError(
                f"CheckpointAdjoint recomputes steps from stored states (t, y), but {ctx.solver!r} "
                "carries more state than y, so the recomputed steps would differ; use "
                "`adjoint=ReversibleAdjoint()` (exact gradients, memory independent of the steps) "
                "or `adjoint=DirectAdjoint()`"
            )
        if plan.steps or plan.dense:
            what = "SaveAt(steps=True)" if plan.steps else "SaveAt(dense=True)"
            raise ValueError(
                f"{what} is not differentiable with CheckpointAdjoint; save at `ts` instead, or "
                "use `adjoint=DirectAdjoint()`"
            )

    def loop(self, prep):
        ctx, plan = prep.ctx, prep.plan
        params = (
            grad_inputs(ctx, prep.y0, self.params, "CheckpointAdjoint")
            if torch.is_grad_enabled()
            else []
        )
        if not needs_grad(prep.y0, ctx, plan, params):
            return drive(prep)
        thin = self.checkpoints or math.ceil(math.sqrt(ctx.max_steps))
        run = Run(dataclasses.replace(prep, solver_state=_detach(prep.solver_state)), params)
        times = (ctx.t0, ctx.t_end, plan.ts if plan.ts is not None else ctx.t0.new_zeros(0))
        ys = _CheckpointFunction.apply(run, thin, prep.y0, *times, *params)
        return run.output(ys)


def _detach(tree):
    return tree_map(lambda x: x.detach() if isinstance(x, torch.Tensor) else x, tree)


class _CheckpointFunction(torch.autograd.Function):
    @staticmethod
    def forward(fctx, run: Run, thin: int, y0, t0, t1, ts, *params):
        forward_loop(run, thin)
        fctx.run = run
        return run.ys

    @staticmethod
    def backward(fctx, grad_ys):
        run: Run = fctx.run
        ctx, plan = run.ctx, run.plan
        grads = ColumnGrads(run, grad_ys)
        params = run.params
        g_params = [None] * len(params)
        g_y = grads.t1 if grads.t1 is not None else torch.zeros_like(run.y0)
        bounds = [i for i, _ in run.snapshots[1:]] + [run.iterations]
        ends = [s.t for _, s in run.snapshots[1:]] + [run.state.t]
        watch = NonFiniteWatch(ctx, "CheckpointAdjoint")
        for (start, snap), stop, t_end in reversed(list(zip(run.snapshots, bounds, ends))):
            if stop == start:
                continue
            g_y, seg = _replay(run, snap, stop - start, g_y, grads)
            for k, g in enumerate(seg):
                if g is not None:
                    g_params[k] = g if g_params[k] is None else g_params[k] + g
            watch.check([g_y, *seg], torch.as_tensor(t_end), torch.as_tensor(snap.t))
        if plan.ts is not None:  # values saved at ts == t0 are y0 itself
            at_start = plan.ts.detach() <= ctx.t0.detach()[:, None]
            g_y = g_y + (grads.ts * at_start[:, :, None]).sum(dim=1)
        g_t0, g_t1, g_ts = time_gradients(run, grads, g_y)
        if grads.t0 is not None:
            g_y = g_y + grads.t0
        return (None, None, g_y, g_t0, g_t1, g_ts, *g_params)


def _replay(run: Run, snap, count: int, g_end: torch.Tensor, grads: ColumnGrads):
    """Recompute ``count`` iterations from ``snap`` with a graph and backpropagate ``g_end``
    (the gradient at the segment's end) plus the gradients of the values saved inside it."""
    ctx, plan = run.ctx, run.plan
    with torch.enable_grad():
        y = snap.y.detach().requires_grad_(True)
        first = ctx.solver.first_state(ctx.problem, snap.t, y)
        st = dataclasses.replace(snap, y=y, solver_state=first)
        rec = Recorder.for_replay(ctx, plan.ts, st)
        start_nfe = st.nfe
        st = advance(ctx, st, rec, iterations=count)
        nfe = st.nfe - start_nfe + snap.running  # and the first-stage evaluation above
        loss = _cdot(st.y, g_end)
        if rec.ts_values is not None:
            loss = loss + _cdot(rec.ts_values, grads.ts)
        inputs = [y, *run.params]
        if not loss.requires_grad:
            return torch.zeros_like(y), [None] * len(run.params)
        out = torch.autograd.grad(loss, inputs, allow_unused=True)
    run.nfe_backward += nfe
    g_y = out[0] if out[0] is not None else torch.zeros_like(y)
    return g_y, list(out[1:])


def _cdot(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """A real scalar whose gradient with respect to complex ``a`` is ``g`` (PyTorch convention)."""
    return (a * g.conj()).real.sum()
