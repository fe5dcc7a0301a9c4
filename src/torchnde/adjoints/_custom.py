"""Shared machinery of the adjoints that own their backward pass (checkpointing, backsolve):
an ``autograd.Function`` whose forward runs the loop without a graph, and the gradients with
respect to the times, which both compute the same way."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .._errors import NonFiniteGradientWarning
from .._loop import Context, LoopState, Recorder, StepInfo
from .._run import LoopOutput, Prepared, SavePlan, drive
from .._solution import Status

__all__ = [
    "NonFiniteWatch",
    "Run",
    "forward_loop",
    "needs_grad",
    "time_gradients",
    "vector_field",
]


@dataclass
class Run:
    """Everything one solve's custom backward pass needs, filled in by the forward."""

    prep: Prepared
    params: list[torch.Tensor]
    ys: torch.Tensor | None = None
    ts: torch.Tensor | None = None
    y0: torch.Tensor | None = None
    state: LoopState | None = None
    recorder: Recorder | None = None
    snapshots: list[tuple[int, LoopState]] = field(default_factory=list)
    iterations: int = 0
    nfe_backward: torch.Tensor | None = None
    #: BacksolveAdjoint: whether the backward pass interpolates y from the forward dense output
    interpolate: bool = False

    @property
    def ctx(self) -> Context:
        return self.prep.ctx

    @property
    def plan(self) -> SavePlan:
        return self.prep.plan

    def output(self, ys: torch.Tensor) -> LoopOutput:
        return LoopOutput(ys, self.ts, self.state, self.recorder, self.nfe_backward)


class NonFiniteWatch:
    """Watches the cotangents of a backward pass, interval by interval, and warns once
    (:class:`~torchnde.NonFiniteGradientWarning`) naming where they first became NaN or infinite.
    One reduction and one host synchronisation per check."""

    def __init__(self, ctx: Context, adjoint: str):
        self.ctx, self.adjoint, self.warned = ctx, adjoint, False

    def check(self, tensors, t_from: torch.Tensor, t_to: torch.Tensor) -> None:
        """``tensors``: the cotangents after the backward pass over the internal times
        ``t_from → t_to`` (``(batch,)`` or 0-dim; ``None`` entries are skipped)."""
        if self.warned:
            return
        flags = [torch.isfinite(x).all() for x in tensors if isinstance(x, torch.Tensor)]
        if not flags or bool(torch.stack(flags).all()):
            return
        self.warned = True
        user = self.ctx.problem.user_time
        a, b = (
            float(user(t.detach().reshape(-1)[:1].expand(self.ctx.t0.shape)).reshape(-1)[0])
            for t in (t_to, t_from)
        )
        lo, hi = min(a, b), max(a, b)
        warnings.warn(
            f"the gradient became NaN or infinite in the backward pass of {self.adjoint}, between "
            f"t={lo:.6g} and t={hi:.6g}: the vector field has a non-finite derivative there "
            "although its values are finite (e.g. `sqrt(y)` or `abs(y)**p` with p < 1 at y = 0, "
            "`x / y` as y → 0, a `torch.where` with a NaN branch); make it differentiable there "
            "(e.g. `sqrt(y**2 + eps)`)",
            NonFiniteGradientWarning,
            stacklevel=2,
        )


def needs_grad(y0: torch.Tensor, ctx: Context, plan: SavePlan, params: list) -> bool:
    if not torch.is_grad_enabled():
        return False
    times = [ctx.t0, ctx.t_end] + ([plan.ts] if plan.ts is not None else [])
    return y0.requires_grad or any(t.requires_grad for t in times) or bool(params)


@torch.no_grad()
def forward_loop(
    run: Run,
    thin: int | None = None,
    on_step: Callable[[LoopState, StepInfo], None] | None = None,
) -> None:
    """Run the whole solve without a graph; keep at most ``thin`` snapshots of the loop state
    (evenly spaced: when full, every other one is dropped and the spacing doubles); call
    ``on_step(state, info)`` after every iteration, if given."""
    snapshots: list[tuple[int, LoopState]] = []
    interval, count = 1, 0

    def observe(i: int, before: LoopState, after: LoopState, info: StepInfo) -> None:
        nonlocal snapshots, interval, count
        count = i
        if i == 1:
            snapshots.append((0, before))  # the state before the first step, saves at t0 made
        if on_step is not None:
            on_step(after, info)
        if thin is not None and i % interval == 0:
            snapshots.append((i, after))
            if len(snapshots) > thin:
                snapshots = snapshots[::2]
                interval *= 2

    prep = dataclasses.replace(run.prep, y0=run.prep.y0.detach())
    out = drive(prep, observe=observe)
    run.ys, run.ts = out.ys, out.ts
    run.y0 = prep.y0
    run.state, run.recorder = out.state, out.recorder
    run.snapshots = snapshots
    run.iterations = count
    run.nfe_backward = torch.zeros_like(out.state.nfe)


def vector_field(ctx: Context, tau: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``dy/dτ`` in internal time, flat ``(batch, n)`` (``τ`` is ``(batch,)``)."""
    problem = ctx.problem
    control = problem.contr(tau, tau + 1)
    if isinstance(control, torch.Tensor) and control.is_floating_point():
        # the times may be wider than the state (float64 times, float32 state): a 0-dim leaf of a
        # tuple state times a 0-dim time would be promoted
        control = control.to(y.real.dtype if y.is_complex() else y.dtype)
    return problem.prod(problem.vf(tau, y), control)


class ColumnGrads:
    """``grad_ys: (batch, T, n)`` split by what each saved column is (t0, ts, t1)."""

    def __init__(self, run: Run, grad_ys: torch.Tensor | None):
        plan = run.plan
        batch, count, n = run.ys.shape
        if grad_ys is None:
            grad_ys = run.ys.new_zeros(batch, count, n)
        # outputs a sample never reached are NaN: they pass no gradient (as under DirectAdjoint,
        # whose NaN fill is a constant); other cotangents, NaN ones included, go through
        grad_ys = torch.where(torch.isnan(run.ys), torch.zeros_like(grad_ys), grad_ys)
        pos = 0
        self.t0 = None
        if plan.t0:
            self.t0 = grad_ys[:, 0]
            pos = 1
        self.ts = None
        if plan.ts is not None:
            self.ts = grad_ys[:, pos : pos + plan.ts.shape[1]]
            pos += plan.ts.shape[1]
        self.t1 = None
        if plan.t1:
            ok = run.state.status <= int(Status.EVENT)
            self.t1 = torch.where(ok[:, None], grad_ys[:, pos], torch.zeros_like(grad_ys[:, pos]))
        self.all = grad_ys


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample real inner product ``Re Σ conj(a) b`` (PyTorch's convention for complex grads)."""
    return (a.conj() * b).real.sum(dim=-1) if a.is_complex() else (a * b).sum(dim=-1)


@torch.no_grad()
def time_gradients(
    run: Run, grads: ColumnGrads, adjoint_at_t0: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients with respect to the internal ``t0``, ``t1`` and save times.

    A value saved at time ``s`` moves with ``s`` at the rate ``f(s, y(s))``, so
    ``dL/ds = <dL/dy(s), f(s, y(s))>``; moving ``t0`` shifts the whole trajectory, so
    ``dL/dt0 = -<a(t0), f(t0, y0)>`` with ``a(t0) = dL/dy0`` (the value saved at ``t0`` itself is
    ``y0`` and does not move)."""
    ctx, plan = run.ctx, run.plan
    needs_t0 = ctx.t0.requires_grad
    needs_t1 = ctx.t_end.requires_grad
    needs_ts = plan.ts is not None and plan.ts.requires_grad
    g_t0 = g_t1 = g_ts = None
    count = 0
    if needs_t0:
        g_t0 = -_dot(adjoint_at_t0, vector_field(ctx, ctx.t0.detach(), run.y0))
        count += 1
    if needs_t1 and grads.t1 is not None:
        st = run.state
        at_end = st.t == ctx.t_end.detach()  # not samples stopped early by an event
        f1 = vector_field(ctx, ctx.t_end.detach(), st.y)
        g_t1 = torch.where(at_end, _dot(grads.t1, f1), torch.zeros_like(ctx.t_end))
        count += 1
    elif needs_t1:
        g_t1 = torch.zeros_like(ctx.t_end)
    if needs_ts:
        pos = 1 if plan.t0 else 0
        columns = []
        for j in range(plan.ts.shape[1]):
            y_j = run.ys[:, pos + j]
            tau_j = plan.ts[:, j].detach()
            finite = torch.isfinite(y_j).all(dim=1)
            f_j = vector_field(ctx, tau_j, torch.nan_to_num(y_j))
            columns.append(torch.where(finite, _dot(grads.ts[:, j], f_j), 0.0))
            count += 1
        g_ts = torch.stack(columns, dim=1)
    if count:
        run.nfe_backward += count
    return g_t0, g_t1, g_ts
