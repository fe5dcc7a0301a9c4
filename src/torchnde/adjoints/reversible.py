"""Exact gradients at memory independent of the number of steps: the steps of an algebraically
reversible solver are undone one by one during the backward pass."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .._errors import friendly_keywords
from .._pytree import tree_leaves, tree_map, tree_unflatten, tree_where
from .._run import drive
from ..solvers._base import AbstractReversibleSolver, AbstractSolver
from ._base import AbstractAdjoint
from ._custom import ColumnGrads, NonFiniteWatch, Run, needs_grad
from ._params import grad_inputs

__all__ = ["ReversibleAdjoint"]


@friendly_keywords()
@dataclass(frozen=True, eq=False)
class ReversibleAdjoint(AbstractAdjoint):
    """Exact gradients of a :class:`~torchnde.ReversibleHeun` solve at memory independent of the
    number of steps (Kidger, Foster, Li & Lyons, *Efficient and Accurate Gradients for Neural
    SDEs*, NeurIPS 2021; for ODEs, Zhuang et al., *MALI*, ICLR 2021).

    The forward pass keeps no graph: only the times of the accepted steps. The backward pass starts
    from the final state ``(y_N, ŷ_N, v_N)`` and undoes the steps in reverse with the solver's
    closed-form inverse (:meth:`~torchnde.ReversibleHeun.backward_step`), backpropagating through
    each
    step as soon as its start is known. The gradient is the one :class:`DirectAdjoint` computes —
    the exact gradient of the discretised solve — up to the rounding of the reconstruction
    (about ``steps × eps`` relative). Cost: one vector-field evaluation and one vector-Jacobian
    product per step backwards; memory: one step's graph, plus the step times (a few numbers per
    sample and step).

    Works for ODEs, CDEs and SDEs (the path must give the same increments when queried again, as
    torchnde's Brownian paths do), with constant steps, ``StepTo`` and adaptive steps
    (``PIDController`` without ``jump_ts``), with or without ``batch_axis=0``.

    Differentiates with respect to ``y0``, ``args``, the parameters of modules the vector fields
    call (and other tensors requiring grad that they touch, e.g. a CDE path's data), and ``t0``,
    ``t1`` and ``SaveAt(ts)`` — the time gradients too are the discrete ones of
    :class:`DirectAdjoint` (the dependence of the step times on ``t0``/``t1`` through the
    step-size controller is recorded during the forward pass, as a graph of per-sample numbers).
    Saved values may be at ``t0``, ``t1``, ``ts`` (linear interpolation inside the step that holds
    them, as the forward pass saves them; exact for adaptive steps too) and every step
    (``SaveAt(steps=True)``).

    Args:
        params: the tensors to differentiate with respect to, besides ``y0``, ``args`` and the
            times. ``None`` finds them (module parameters and every other tensor requiring grad
            the vector field touches); explicit ``params`` that miss a used tensor are an error.

    Needs an algebraically reversible solver (:class:`~torchnde.solvers.AbstractReversibleSolver`
    — today ``ReversibleHeun()``, whose carried state ``(ŷ, v)`` the backward pass
    differentiates); refuses dense output, events and ``jump_ts`` (after a jump the solver
    restarts its auxiliary state, which cannot be undone).
    """

    params: Sequence[torch.Tensor] | None = None

    def check(self, prep) -> None:
        ctx, plan = prep.ctx, prep.plan
        if not isinstance(ctx.solver, AbstractReversibleSolver):
            raise ValueError(
                f"ReversibleAdjoint undoes the steps of an algebraically reversible solver, and "
                f"{ctx.solver!r} is not one: use `solver=ReversibleHeun()`, or another adjoint "
                "(`CheckpointAdjoint()` for exact gradients at O(sqrt(steps)) memory)"
            )
        if plan.dense:
            raise ValueError(
                "SaveAt(dense=True) cannot be differentiated by ReversibleAdjoint; save at `ts` "
                "instead, or use `adjoint=DirectAdjoint()`"
            )
        if ctx.events:
            raise ValueError(
                "events cannot be differentiated by ReversibleAdjoint; use "
                "`adjoint=DirectAdjoint()`"
            )
        if ctx.jumps is not None:
            raise ValueError(
                "ReversibleAdjoint cannot undo the restart of ReversibleHeun at `jump_ts`; pass "
                "those times as `PIDController(step_ts=...)` instead, or use "
                "`adjoint=DirectAdjoint()`"
            )

    def loop(self, prep):
        ctx, plan = prep.ctx, prep.plan
        params = (
            grad_inputs(ctx, prep.y0, self.params, "ReversibleAdjoint")
            if torch.is_grad_enabled()
            else []
        )
        if not needs_grad(prep.y0, ctx, plan, params):
            return drive(prep)
        state = tree_map(
            lambda x: x.detach() if isinstance(x, torch.Tensor) else x, prep.solver_state
        )
        run = _ReversibleRun(dataclasses.replace(prep, solver_state=state), params)
        times = (ctx.t0, ctx.t_end, plan.ts if plan.ts is not None else ctx.t0.new_zeros(0))
        ys = _ReversibleFunction.apply(run, prep.y0, *times, *params)
        return run.output(ys)


@dataclass
class _ReversibleRun(Run):
    """A :class:`Run` with what the reversible backward pass needs."""

    records: _Records | None = None
    #: the step times with their graph to t0/t1/ts, when those need gradients
    time_graph: tuple[torch.Tensor, ...] | None = None
    time_inputs: tuple[torch.Tensor | None, ...] = ()
    saves: torch.Tensor | None = None  # the save times ``(batch, T)`` the forward pass used


class _Records:
    """The accepted steps of the forward pass: per loop iteration with at least one accepted
    step, its start and end times, which samples accepted it, and the columns of ``ts`` it saved
    (``[lo, hi)``). Python numbers in the loop's host mode, ``(batch,)`` tensors otherwise."""

    def __init__(self):
        self.t0: list = []
        self.t1: list = []
        self.accepted: list = []
        self.lo: list = []
        self.hi: list = []

    def add(self, info, lo, hi) -> None:
        self.t0.append(info.t0)
        self.t1.append(info.t1)
        self.accepted.append(info.accepted)
        self.lo.append(lo)
        self.hi.append(hi)

    def stacked(self, batch: int, tdtype, device) -> dict[str, torch.Tensor]:
        """The records as ``(iterations, batch)`` tensors (detached)."""
        if not self.t0:
            empty = torch.zeros(0, batch, dtype=tdtype, device=device)
            idx = torch.zeros(0, batch, dtype=torch.long, device=device)
            return dict(t0=empty, t1=empty, accepted=idx.bool(), lo=idx, hi=idx)
        if not isinstance(self.t0[0], torch.Tensor):  # host mode: one sample, accepted steps

            def col(values, dtype):
                return torch.tensor(values, dtype=dtype, device=device).reshape(-1, 1)

            return dict(
                t0=col(self.t0, tdtype),
                t1=col(self.t1, tdtype),
                accepted=col(self.accepted, torch.bool),
                lo=col(self.lo, torch.long),
                hi=col(self.hi, torch.long),
            )
        return dict(
            t0=torch.stack(self.t0).detach(),
            t1=torch.stack(self.t1).detach(),
            accepted=torch.stack(self.accepted),
            lo=torch.stack([torch.as_tensor(x, device=device) for x in self.lo]).long(),
            hi=torch.stack([torch.as_tensor(x, device=device) for x in self.hi]).long(),
        )


class _UntimedSteps(AbstractSolver):
    """A solver's steps run without a graph and on detached times: with it, the forward pass
    of :class:`ReversibleAdjoint` records only the step-time arithmetic of the loop and the
    controller (how every step time depends on ``t0``, ``t1``), never a state-sized graph."""

    def __init__(self, solver: AbstractSolver):
        self.solver = solver
        for name in ("order", "error_order", "interpolation_order", "dense_matrix"):
            setattr(self, name, getattr(solver, name))

    def init(self, problem, t0, y0):
        return self.solver.init(problem, t0, y0)

    def carry(self, y0, vf0):
        return self.solver.carry(y0, vf0)

    def error_order_for(self, term):
        return self.solver.error_order_for(term)

    def step(self, problem, t0, t1, y0, state):
        with torch.no_grad():
            return self.solver.step(problem, t0.detach(), t1.detach(), y0, state)

    def dense_rows(self, problem, result):
        return self.solver.dense_rows(problem, result)


def _leaf(x: torch.Tensor | None) -> torch.Tensor | None:
    if x is None:
        return None
    return x.detach().requires_grad_(x.requires_grad)


def _forward(run: _ReversibleRun, y0: torch.Tensor) -> None:
    """Run the solve, keeping the accepted step times (and, when ``t0``/``t1``/``ts`` need
    gradients, the graph of those times alone)."""
    prep = dataclasses.replace(run.prep, y0=y0)
    ctx, plan = prep.ctx, prep.plan
    timed = ctx.t0.requires_grad or ctx.t_end.requires_grad
    timed = timed or (plan.ts is not None and plan.ts.requires_grad)
    if timed:
        t0, t1, save_ts = _leaf(ctx.t0), _leaf(ctx.t_end), _leaf(plan.ts)
        ctx = dataclasses.replace(ctx, t0=t0, t_end=t1, solver=_UntimedSteps(ctx.solver))
        plan = dataclasses.replace(plan, ts=save_ts)
        prep = dataclasses.replace(prep, ctx=ctx, plan=plan)
        run.time_inputs = (t0, t1, save_ts)
    ops = ctx.ops
    records = _Records()

    def observe(i, before, after, info) -> None:
        if ops.any(info.accepted):
            records.add(info, before.save_idx, after.save_idx)

    with torch.enable_grad() if timed else torch.no_grad():
        out = drive(prep, observe=observe)
        st, rec = out.state, out.recorder
        if timed:
            run.time_graph = (
                torch.stack(records.t0) if records.t0 else None,
                torch.stack(records.t1) if records.t1 else None,
                st.t,
                rec.ts_values,
            )
    batch = y0.shape[0]
    run.records = records.stacked(batch, ctx.t0.dtype, y0.device)
    run.saves = None if plan.ts is None else plan.ts.detach()
    run.ys, run.ts = out.ys.detach(), out.ts.detach()
    run.y0 = y0
    run.state = dataclasses.replace(
        st, t=st.t.detach(), t_next=st.t_next.detach(), fail_t=st.fail_t.detach()
    )
    run.recorder = rec
    run.nfe_backward = torch.zeros_like(st.nfe)


class _ReversibleFunction(torch.autograd.Function):
    @staticmethod
    def forward(fctx, run: _ReversibleRun, y0, t0, t1, ts, *params):
        _forward(run, y0.detach())
        fctx.run = run
        return run.ys

    @staticmethod
    def backward(fctx, grad_ys):
        run: _ReversibleRun = fctx.run
        sweep = _Sweep(run, ColumnGrads(run, grad_ys))
        g_y, g_params = sweep.backward()
        g_t0, g_t1, g_ts = sweep.time_gradients()
        return (None, g_y, g_t0, g_t1, g_ts, *g_params)


# ------------------------------------------------------------------------------------------------
# the backward pass


@dataclass
class _Step:
    """One step's times (leaves, requiring grad when times need gradients) and its control
    increment (with its graph to them and to the path's data)."""

    t_start: torch.Tensor
    t_end: torch.Tensor
    control: Any = None


@dataclass
class _Point:
    """The reconstructed state at a step boundary, with the vector field at ``(t, ŷ)`` carrying a
    graph from the leaves ``yhat_leaf`` (and ``t_leaf`` when times need gradients)."""

    t: torch.Tensor
    y: torch.Tensor
    yhat_leaf: torch.Tensor
    t_leaf: torch.Tensor
    vf: Any  # with graph

    @property
    def yhat(self) -> torch.Tensor:
        return self.yhat_leaf.detach()


def _zeros_tree(tree: Any) -> Any:
    return tree_map(torch.zeros_like, tree)


def _select(mask: torch.Tensor | None, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Per sample ``new`` where ``mask`` (``None``: every sample), else ``old``."""
    if mask is None:
        return new
    return torch.where(mask.reshape(-1, *([1] * (new.ndim - 1))), new, old)


def _select_tree(mask: torch.Tensor | None, new: Any, old: Any) -> Any:
    return new if mask is None else tree_where(mask, new, old)


def _grad(outputs, inputs, cotangents, retain=False) -> list[torch.Tensor | None]:
    """``autograd.grad`` over the pairs whose output has a graph; ``None`` for unused inputs."""
    pairs = [(o, c) for o, c in zip(outputs, cotangents) if o.requires_grad]
    wanted = [i for i, x in enumerate(inputs) if x is not None and x.requires_grad]
    out: list[torch.Tensor | None] = [None] * len(inputs)
    if not pairs or not wanted:
        return out
    got = torch.autograd.grad(
        [o for o, _ in pairs],
        [inputs[i] for i in wanted],
        [c for _, c in pairs],
        allow_unused=True,
        retain_graph=retain,
    )
    for i, g in zip(wanted, got):
        out[i] = g
    return out


def _add(total: torch.Tensor | None, g: torch.Tensor | None) -> torch.Tensor | None:
    if g is None:
        return total
    return g if total is None else total + g


class _Sweep:
    """Undo the steps in reverse, backpropagating through each: cotangents ``a_y``, ``a_ŷ`` and
    ``a_v`` of the carried ``(y, ŷ, v)`` travel from the end to ``t0``."""

    def __init__(self, run: _ReversibleRun, grads: ColumnGrads):
        self.run, self.grads = run, grads
        ctx = run.ctx
        self.problem = ctx.problem
        self.solver: AbstractReversibleSolver = ctx.solver
        self.params = run.params
        self.timed = run.time_graph is not None
        self.ode = self.problem.ode and not run.y0.is_complex()
        rec = run.records
        self.t0s, self.t1s, self.accepted = rec["t0"], rec["t1"], rec["accepted"]
        self.lo, self.hi = rec["lo"], rec["hi"]
        count, batch = self.t0s.shape
        # cotangents of the step times: rows 0..count-1 for the starts, row `count` for the end
        # time of the solve; `source` says which row the current point's time is
        self.cot_t0 = self.t0s.new_zeros(count + 1, batch) if self.timed else None
        self.cot_t1 = self.t0s.new_zeros(count, batch) if self.timed else None
        self.source = torch.full((batch,), count, dtype=torch.long, device=self.t0s.device)
        self.steps_column = rec["accepted"].long().cumsum(0) - 1
        # per iteration: whether every sample took the step (no masking needed), and whether
        # it saved any value at ts
        self.everyone = self.accepted.all(dim=1).tolist()
        self.has_saves = (self.hi > self.lo).any(dim=1).tolist()
        self.g_params: list[torch.Tensor | None] = [None] * len(self.params)
        self.g_saves = None  # cotangents of the save values, for the time gradients
        st = run.state
        yhat, _ = st.solver_state
        self.point = self._point(st.t, st.y, yhat)
        self.a_y = grads.t1 if grads.t1 is not None else torch.zeros_like(st.y)
        self.a_yhat = torch.zeros_like(st.y)
        self.a_vf = _zeros_tree(self.point.vf)
        run.nfe_backward += 1 + self.accepted.sum(dim=0)

    def _point(self, t: torch.Tensor, y: torch.Tensor, yhat: torch.Tensor) -> _Point:
        yhat_leaf = yhat.detach().requires_grad_(True)
        t_leaf = t.detach().requires_grad_(self.timed)
        with torch.enable_grad():
            vf = self.problem.vf(t_leaf, yhat_leaf)
        return _Point(t.detach(), y.detach(), yhat_leaf, t_leaf, vf)

    def backward(self) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        watch = NonFiniteWatch(self.run.ctx, "ReversibleAdjoint")
        for i in range(self.t0s.shape[0] - 1, -1, -1):
            self._undo(i)
            watch.check([self.a_y, self.a_yhat, *self.g_params], self.t1s[i], self.t0s[i])
        return self._start()

    # -- one step backwards ----------------------------------------------------------------------

    def _undo(self, i: int) -> None:
        mask = None if self.everyone[i] else self.accepted[i]
        t_start, t_end = self.t0s[i], self.t1s[i]
        with torch.enable_grad():  # the increment, queried once, with its graph to path data/times
            step = _Step(
                t_start.detach().requires_grad_(self.timed),
                t_end.detach().requires_grad_(self.timed),
            )
            step.control = self.problem.contr(step.t_start, step.t_end)
        end = self.point
        start = self._inverse(mask, step, end)
        start_part = self._saves(i, start.y, t_start, t_end) if self.has_saves[i] else None
        if self.run.plan.steps:
            self.a_y = self.a_y + self._steps_cotangent(i)
        self._step_vjp(i, mask, step, start, end)
        if start_part is not None:
            self.a_y = self.a_y + start_part
        if self.timed:
            self.source = torch.where(self.accepted[i], i, self.source)
        self.point = start

    def _inverse(self, mask, step: _Step, end: _Point) -> _Point:
        """The state at the step's start, for the samples that took it (the others stay)."""
        problem = self.problem
        with torch.no_grad():
            control = tree_map(torch.Tensor.detach, step.control)
            vf1 = tree_map(torch.Tensor.detach, end.vf)
            k1 = problem.prod(vf1, control)
            yhat0 = _select(mask, 2 * end.y - end.yhat - k1, end.yhat)
        start = self._point(_select(mask, step.t_start.detach(), end.t), end.y, yhat0)
        with torch.no_grad():
            k0 = problem.prod(tree_map(torch.Tensor.detach, start.vf), control)
            start.y = _select(mask, end.y - 0.5 * (k0 + k1), end.y)
        return start

    def _step_vjp(self, i, mask, step: _Step, start: _Point, end: _Point) -> None:
        """Backpropagate ``(a_y, a_ŷ, a_v)`` at the step's end through
        ``ŷ' = 2y - ŷ + P(v, ΔX)``, ``v' = vf(t', ŷ')``, ``y' = y + ½P(v + v', ΔX)``."""
        a_y, a_yhat, a_vf = self.a_y, self.a_yhat, self.a_vf
        if mask is not None:  # only the samples that took the step
            a_y = _select(mask, a_y, torch.zeros_like(a_y))
            a_yhat = _select(mask, a_yhat, torch.zeros_like(a_yhat))
            a_vf = tree_where(mask, a_vf, _zeros_tree(a_vf))
        vjp = self._vjp_ode if self.ode else self._vjp_general
        a_yhat1, a_vf0, g_params, g_times = vjp(step, start, end, a_y, a_yhat, a_vf)
        for k, g in enumerate(g_params):
            self.g_params[k] = _add(self.g_params[k], g)
        if self.timed:
            g_now, g_start, g_end = g_times
            self._time_cotangent(self.accepted[i], g_now)
            self.cot_t0[i] += _zero(g_start, step.t_start)
            self.cot_t1[i] += _zero(g_end, step.t_end)
        self.a_y = _select(mask, a_y + 2 * a_yhat1, self.a_y)
        self.a_yhat = _select(mask, -a_yhat1, self.a_yhat)
        self.a_vf = _select_tree(mask, tree_unflatten(start.vf, a_vf0), self.a_vf)

    def _vjp_general(self, step: _Step, start, end, a_y, a_yhat, a_vf):
        """The step's vector-Jacobian product for any term, by autograd (two calls: the
        cotangent of ``ŷ'`` is known only after the one through ``v' = vf(t', ŷ')``)."""
        problem, params = self.problem, self.params
        control, ts_leaf, te_leaf = step.control, step.t_start, step.t_end
        with torch.enable_grad():
            vf0 = tree_map(lambda x: x.detach().requires_grad_(True), start.vf)
            vf0_leaves = tree_leaves(vf0)
            k0 = problem.prod(vf0, control)
            y1 = 0.5 * (k0 + problem.prod(end.vf, control))
            times = [end.t_leaf, ts_leaf, te_leaf] if self.timed else []
            inputs = [end.yhat_leaf, *vf0_leaves, *params, *times]
            g = _grad([y1, *tree_leaves(end.vf)], inputs, [a_y, *tree_leaves(a_vf)], retain=True)
            a_yhat1 = a_yhat if g[0] is None else a_yhat + g[0]
            g2 = _grad([k0], [*vf0_leaves, *params, *times[1:]], [a_yhat1])
        nv, npar = len(vf0_leaves), len(params)
        a_vf0 = [_zero(_add(g[1 + j], g2[j]), vf0_leaves[j]) for j in range(nv)]
        g_params = [_add(g[1 + nv + k], g2[nv + k]) for k in range(npar)]
        g_times = None
        if self.timed:
            at = 1 + nv + npar
            g_times = (g[at], _add(g[at + 1], g2[nv + npar]), _add(g[at + 2], g2[nv + npar + 1]))
        return a_yhat1, a_vf0, g_params, g_times

    def _vjp_ode(self, step: _Step, start, end, a_y, a_yhat, a_vf):
        """The same for an ODE (``P(v, Δt) = v Δt``, real state) with the linear parts written
        out: one autograd call per step."""
        problem, spec, params = self.problem, self.problem.spec, self.params
        dt = step.control.detach()  # the user's step: 0-dim, or (batch,)
        scale = dt[:, None] if dt.ndim else dt
        half = 0.5 * a_y * scale
        c_vf1 = tree_map(torch.add, a_vf, spec.unflatten(half))
        times = [end.t_leaf] if self.timed else []
        g = _grad(tree_leaves(end.vf), [end.yhat_leaf, *params, *times], tree_leaves(c_vf1))
        a_yhat1 = a_yhat if g[0] is None else a_yhat + g[0]
        a_vf0 = tree_leaves(spec.unflatten(half + a_yhat1 * scale))
        g_times = None
        if self.timed:  # dΔt/dτ_end = -dΔt/dτ_start = direction
            v0, v1 = spec.flatten(start.vf).detach(), spec.flatten(end.vf).detach()
            g_dt = (0.5 * a_y * (v0 + v1) + a_yhat1 * v0).sum(dim=1)
            if problem.direction is not None:
                g_dt = g_dt * problem.direction
            g_times = (g[-1], -g_dt, g_dt)
        return a_yhat1, a_vf0, list(g[1 : 1 + len(params)]), g_times

    def _time_cotangent(self, mask, g: torch.Tensor | None) -> None:
        """Add the cotangent of the current point's time to the step time it is."""
        if g is None:
            return
        cols = torch.arange(g.shape[0], device=g.device)
        self.cot_t0.index_put_((self.source, cols), torch.where(mask, g, 0.0), accumulate=True)

    # -- saved values ----------------------------------------------------------------------------

    def _saves(self, i, y0, t_start, t_end) -> torch.Tensor | None:
        """Cotangents of the values saved at ``ts`` inside step ``i`` (linear interpolation
        ``(1 - θ) y0 + θ y1``): the ``y1`` part is added to ``a_y`` now, the ``y0`` part returned."""
        grads = self.grads
        if grads.ts is None:
            return None
        lo, hi = self.lo[i], self.hi[i]
        width = int((hi - lo).max())
        saves = self.run.saves
        count = saves.shape[1]
        cols = lo[:, None] + torch.arange(width, device=lo.device)
        inside = (cols < hi[:, None]) & self.accepted[i][:, None]
        cols = cols.clamp(max=count - 1)
        s = saves.gather(1, cols)
        dt = t_end - t_start
        safe = torch.where(dt == 0, torch.ones_like(dt), dt)
        theta = ((s - t_start[:, None]) / safe[:, None]).clamp(0, 1)
        theta = torch.where(inside, theta, 0.0).to(y0.dtype)
        g = grads.ts.gather(1, cols[:, :, None].expand(-1, -1, y0.shape[1]))
        g = g * inside[:, :, None]
        self.a_y = self.a_y + (theta[:, :, None] * g).sum(dim=1)
        return ((1 - theta)[:, :, None] * g).sum(dim=1)

    def _steps_cotangent(self, i) -> torch.Tensor:
        """The cotangent of the value saved at the end of step ``i`` by ``SaveAt(steps=True)``."""
        plan, grads = self.run.plan, self.grads
        pos = (1 if plan.t0 else 0) + (0 if plan.ts is None else plan.ts.shape[1])
        width = grads.all.shape[1] - pos - (1 if plan.t1 else 0)
        column = self.steps_column[i].clamp(0, max(width - 1, 0))
        g = grads.all[:, pos : pos + width]
        picked = g.gather(1, column[:, None, None].expand(-1, 1, g.shape[2]))[:, 0]
        return picked * self.accepted[i][:, None]

    # -- the start -------------------------------------------------------------------------------

    def _start(self) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """``ŷ_0 = y_0`` and ``v_0 = vf(t_0, y_0)``: the cotangents of all three reach ``y0``."""
        point, params = self.point, self.params
        times = [point.t_leaf] if self.timed else []
        inputs = [point.yhat_leaf, *params, *times]
        g = _grad(tree_leaves(point.vf), inputs, tree_leaves(self.a_vf))
        g_y = self.a_y + self.a_yhat + _zero(g[0], self.a_y)
        for k in range(len(params)):
            self.g_params[k] = _add(self.g_params[k], g[1 + k])
        if self.timed:
            everyone = torch.ones_like(self.source, dtype=torch.bool)
            self._time_cotangent(everyone, g[1 + len(params)])
        grads, ctx = self.grads, self.run.ctx
        if grads.ts is not None:  # values saved at ts <= t0 are y0 itself
            at_start = self.run.saves <= ctx.t0.detach()[:, None]
            g_y = g_y + (grads.ts * at_start[:, :, None]).sum(dim=1)
        if grads.t0 is not None:
            g_y = g_y + grads.t0
        g_params = [
            None if gp is None else _cast_like(gp, p) for gp, p in zip(self.g_params, params)
        ]
        return g_y, g_params

    def time_gradients(self):
        """Backpropagate the step-time cotangents through the graph of the step times recorded
        in the forward pass, and the save values' cotangents through their interpolation."""
        if not self.timed:
            return None, None, None
        run = self.run
        t0s, t1s, t_final, saved = run.time_graph
        outputs, cots = [t_final], [self.cot_t0[-1]]
        if t0s is not None:
            outputs += [t0s, t1s]
            cots += [self.cot_t0[:-1], self.cot_t1]
        if saved is not None:
            outputs.append(saved)
            cots.append(self.grads.ts)
        g = _grad(outputs, list(run.time_inputs), cots, retain=True)  # backward may run again
        t0, t1, ts = run.time_inputs
        return (
            None if t0 is None or not t0.requires_grad else _zero(g[0], t0),
            None if t1 is None or not t1.requires_grad else _zero(g[1], t1),
            None if ts is None or not ts.requires_grad else _zero(g[2], ts),
        )


def _zero(g: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if g is None else g


def _cast_like(g: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    if g.is_complex() and not p.is_complex():
        g = g.real
    return g.to(p.dtype)
