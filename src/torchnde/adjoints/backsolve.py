"""The continuous adjoint: gradients from an ODE solved backwards in time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._pytree import tree_map
from ..solvers._base import AbstractSolver
from ..terms import ODETerm
from ._base import AbstractAdjoint, SavePlan
from ._custom import ColumnGrads, Run, forward_loop, needs_grad, time_gradients, vector_field
from ._params import grad_inputs
from .direct import DirectAdjoint

__all__ = ["BacksolveAdjoint"]


@dataclass(frozen=True, eq=False)
class BacksolveAdjoint(AbstractAdjoint):
    """Gradients by solving the adjoint equation backwards in time ("optimise then discretise";
    Pontryagin et al. 1962; Chen et al., *Neural Ordinary Differential Equations*, NeurIPS 2018).

    With ``a(t) = dL/dy(t)``, the backward solve integrates, from ``t1`` to ``t0``,

        dy/dt = f(t, y),   da/dt = -aᵀ ∂f/∂y,   dg/dt = -aᵀ ∂f/∂θ,

    adding ``dL/dy(s)`` to ``a`` at every saved time ``s``; then ``dL/dy0 = a(t0)`` and
    ``dL/dθ = g(t0)``. Memory does not grow with the number of steps; the gradient is accurate
    to the tolerances of the backward solve (it is not the exact gradient of the forward
    computation — use :class:`DirectAdjoint` or :class:`CheckpointAdjoint` for that).

    Args:
        rtol, atol: tolerances of the backward solve.
        seminorm: measure the backward solve's error on ``y`` and ``a`` only, not on the parameter
            gradient ``g`` (Kidger, Chen & Lyons, *"Hey, that's not an ODE"*, ICML 2021): fewer
            steps, same accuracy.
        solver: the backward solver (default: the forward one).
        params: the tensors to differentiate with respect to, besides ``y0``, ``args`` and the
            times; ``None`` finds them (module parameters and every other tensor requiring grad
            the vector field touches). Explicit ``params`` that miss a used tensor are an error.
        max_steps: step bound of each backward solve (default: the forward's).

    Needs an :class:`~torchnde.ODETerm` (turn a CDE into one with ``ControlTerm.to_ode()``) and
    saved values at ``t0``/``ts``/``t1``; with ``batch_axis=0`` every sample must share ``t0``,
    ``t1`` and ``ts`` (the backward pass solves the whole batch as one system, since the parameter
    gradient is a sum over it).
    """

    rtol: float = 1e-6
    atol: float = 1e-8
    seminorm: bool = True
    solver: AbstractSolver | None = None
    params: Sequence[torch.Tensor] | None = None
    max_steps: int | None = None

    def __post_init__(self) -> None:
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"`BacksolveAdjoint({name}=...)` must be a number ≥ 0, got {value!r}"
                )
        if self.rtol == 0 and self.atol == 0:
            raise ValueError("`BacksolveAdjoint`: rtol and atol cannot both be 0")
        if self.solver is not None and not isinstance(self.solver, AbstractSolver):
            raise TypeError(
                f"`BacksolveAdjoint(solver=...)` must be a solver instance such as `Dopri5()`, "
                f"got {self.solver!r}"
            )

    def check(self, ctx, plan: SavePlan) -> None:
        solver = self.solver or ctx.solver
        if solver.error_order is None:
            raise ValueError(
                f"BacksolveAdjoint solves the adjoint equation with adaptive steps, and the "
                f"forward solver {solver!r} has no error estimate to use backwards; pass one for "
                "the backward pass, e.g. `BacksolveAdjoint(solver=Dopri5())`, or use "
                "`CheckpointAdjoint()`"
            )
        if not isinstance(ctx.problem.term, ODETerm):
            raise ValueError(
                f"BacksolveAdjoint needs an ODETerm, got {ctx.problem.term!r}; for a CDE use "
                "`ControlTerm(...).to_ode()`, or use `adjoint=CheckpointAdjoint()`"
            )
        if plan.steps or plan.dense or ctx.events:
            what = (
                "SaveAt(steps=True)"
                if plan.steps
                else "SaveAt(dense=True)"
                if plan.dense
                else "events"
            )
            raise ValueError(
                f"{what} cannot be differentiated by BacksolveAdjoint; use `CheckpointAdjoint()` "
                "or `DirectAdjoint()`"
            )
        if ctx.problem.spec.batched:
            shared = bool((ctx.t0 == ctx.t0[0]).all()) and bool((ctx.t_end == ctx.t_end[0]).all())
            if plan.ts is not None:
                shared = shared and bool((plan.ts == plan.ts[:1]).all())
            if not shared:
                raise ValueError(
                    "BacksolveAdjoint with batch_axis=0 needs t0, t1 and SaveAt(ts) shared by every "
                    "sample; use `CheckpointAdjoint()` for per-sample times"
                )

    def loop(self, ctx, y0, dt0, solver_state, nfe0, plan):
        params = (
            grad_inputs(ctx, y0, self.params, "BacksolveAdjoint") if torch.is_grad_enabled() else []
        )
        if not needs_grad(y0, ctx, plan, params):
            return DirectAdjoint().loop(ctx, y0, dt0, solver_state, nfe0, plan)
        run = Run(ctx, plan, dt0, tree_map(torch.Tensor.detach, solver_state), nfe0, params)
        times = (ctx.t0, ctx.t_end, plan.ts if plan.ts is not None else ctx.t0.new_zeros(0))
        ys = _BacksolveFunction.apply(run, self, y0, *times, *params)
        return run.output(ys)


class _BacksolveFunction(torch.autograd.Function):
    @staticmethod
    def forward(fctx, run: Run, adjoint: BacksolveAdjoint, y0, t0, t1, ts, *params):
        forward_loop(run, y0.detach())
        fctx.run, fctx.adjoint = run, adjoint
        return run.ys

    @staticmethod
    def backward(fctx, grad_ys):
        run: Run = fctx.run
        adjoint: BacksolveAdjoint = fctx.adjoint
        grads = ColumnGrads(run, grad_ys)
        g_y, g_params = _backsolve(run, adjoint, grads)
        g_t0, g_t1, g_ts = time_gradients(run, grads, g_y)
        if grads.t0 is not None:
            g_y = g_y + grads.t0
        return (None, None, g_y, g_t0, g_t1, g_ts, *g_params)


def _backsolve(run: Run, adjoint: BacksolveAdjoint, grads: ColumnGrads):
    """Integrate the adjoint system from the last saved time back to ``t0``."""
    # imported here: ``solve`` imports the adjoints package, so a module-level import is circular
    from .._saveat import SaveAt
    from .._solve import solve
    from ..controllers import PIDController

    ctx, plan = run.ctx, run.plan
    ys = run.ys.detach()
    times = run.ts[0].detach()  # shared by the batch (checked)
    columns = ys.shape[1]
    skip_t0 = 1 if plan.t0 else 0  # the t0 column is y0 itself: it enters a after the solve
    params = run.params
    dtype = ys.dtype
    batch, n = run.y0.shape
    aug_f = _AugmentedField(ctx, params)
    size = 2 * batch * n

    def seminorm(x: torch.Tensor) -> torch.Tensor:
        part = x[:, :size]
        return torch.linalg.vector_norm(part, dim=1) / math.sqrt(size)

    controller = PIDController(
        rtol=adjoint.rtol, atol=adjoint.atol, norm=seminorm if adjoint.seminorm else None
    )
    solver = adjoint.solver or ctx.solver
    max_steps = adjoint.max_steps or ctx.max_steps

    # the augmented state (y, a, g) is one flat tensor; the field views it in place
    layout = _Layout(batch, n, params)
    aug_f.layout = layout
    dt_next = None

    def backwards(t_from, t_to, state):
        nonlocal dt_next
        sol = solve(
            ODETerm(aug_f),
            solver,
            t_from,
            t_to,
            state,
            dt0=None if dt_next is None else -min(dt_next, float(t_from - t_to)),
            controller=controller,
            max_steps=max_steps,
            saveat=SaveAt(t1=True),
        )
        run.nfe_backward += sol.stats["nfe"]
        dt_next = float(sol._next_dt)  # the next interval starts with the step this one ended on
        return sol.ys[-1]

    state = layout.pack(run.y0, torch.zeros_like(run.y0), [None] * len(params), dtype)
    t_now = None
    for j in range(columns - 1, skip_t0 - 1, -1):
        t_j = times[j]
        if t_now is None:
            layout.y(state).copy_(torch.nan_to_num(ys[:, j]))
        elif t_j < t_now:
            state = backwards(t_now, t_j, state)
            layout.y(state).copy_(torch.nan_to_num(ys[:, j]))  # re-anchor on the forward solution
        layout.a(state).add_(grads.all[:, j])
        t_now = t_j
    t_start = ctx.t0[0].detach()
    if t_now is not None and t_now > t_start:
        state = backwards(t_now, t_start, state)
    g_params = [_cast_like(gi, p) for gi, p in zip(layout.g(state), params)]
    return layout.a(state).clone(), g_params


class _Layout:
    """Where ``y: (batch, n)``, ``a: (batch, n)`` and each parameter gradient sit in the flat
    augmented state."""

    def __init__(self, batch: int, n: int, params: list[torch.Tensor]):
        self.batch, self.n = batch, n
        self.sizes = [batch * n, batch * n, *(p.numel() for p in params)]
        self.shapes = [p.shape for p in params]

    def pack(self, y, a, gs, dtype) -> torch.Tensor:
        parts = [y.reshape(-1), a.reshape(-1)]
        for g, shape in zip(gs, self.shapes):
            parts.append(
                torch.zeros(shape.numel(), dtype=dtype, device=y.device)
                if g is None
                else g.reshape(-1)
            )
        return torch.cat([p.to(dtype) for p in parts])

    def y(self, state):
        return state[: self.sizes[0]].view(self.batch, self.n)

    def a(self, state):
        return state[self.sizes[0] : 2 * self.sizes[0]].view(self.batch, self.n)

    def g(self, state) -> list[torch.Tensor]:
        out, pos = [], 2 * self.sizes[0]
        for size, shape in zip(self.sizes[2:], self.shapes):
            out.append(state[pos : pos + size].view(shape))
            pos += size
        return out


def _cast_like(g: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    if g.is_complex() and not p.is_complex():
        g = g.real
    return g.to(p.dtype)


class _AugmentedField:
    """``(y, a, g) ↦ (f, -aᵀ∂f/∂y, -aᵀ∂f/∂θ)`` in the forward problem's internal time, on the
    flat augmented state."""

    def __init__(self, ctx, params):
        self.ctx = ctx
        self.params = params
        self.__name__ = "adjoint_field"

    def __call__(self, t, state, args):
        layout = self.layout
        y, a = layout.y(state), layout.a(state)
        tau = t.expand(y.shape[0])
        with torch.enable_grad():
            y_ = y.detach().requires_grad_(True)
            f = vector_field(self.ctx, tau, y_)
            inputs = [y_, *self.params]
            vjps = torch.autograd.grad(f, inputs, -a, allow_unused=True)
        parts = [f.detach().reshape(-1)]
        for v, x in zip(vjps, inputs):
            v = torch.zeros_like(x) if v is None else v
            parts.append(v.reshape(-1) if v.dtype == state.dtype else v.reshape(-1).to(state.dtype))
        return torch.cat(parts)
