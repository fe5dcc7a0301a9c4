"""The continuous adjoint: gradients from the adjoint equation solved backwards in time — for
ODEs, and for CDEs and (Stratonovich) SDEs over the same control path."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .._dense import DenseOutput
from .._errors import SolveError, friendly_keywords
from .._pytree import tree_map
from .._run import drive, flat_problem, integrate
from .._solution import Status
from ..controllers import PIDController, StepTo
from ..paths import AbstractBrownianPath
from ..solvers._base import AbstractSolver
from ..terms import AbstractTerm, ODETerm, walk
from ._base import AbstractAdjoint
from ._custom import (
    ColumnGrads,
    NonFiniteWatch,
    Run,
    forward_loop,
    needs_grad,
    time_gradients,
    vector_field,
)
from ._params import grad_inputs

__all__ = ["BacksolveAdjoint"]


@friendly_keywords()
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

    **CDEs and SDEs.** For a term driven by a control path, ``dy = f dt + g ∘ dX`` (a
    :class:`~torchnde.ControlTerm`, alone or in a :class:`~torchnde.MultiTerm` with a drift), the
    backward solve integrates the adjoint system over the *same* path, queried over reversed
    intervals (Li, Wong, Chen & Duvenaud, *Scalable Gradients for Stochastic Differential
    Equations*, AISTATS 2020; Kidger et al., *Neural Controlled Differential Equations*, 2020):

        dy = f dt + g ∘ dX,   da = -aᵀ ∂f/∂y dt - aᵀ ∂g/∂y ∘ dX,   dθ-part likewise,

    where ``aᵀ ∂g/∂y ∘ dX`` is the vector-Jacobian product of ``y ↦ g(t, y)·dX`` with ``a``: the
    augmented term's ``vf`` evaluates the forward vector field and keeps its graph, and its
    ``prod`` contracts it with the control increment and forms the vector-Jacobian products.
    The backward solve takes the forward pass's steps in reverse (every sample's accepted step
    times, merged), so the path is queried only at times the forward pass used — as a
    :class:`~torchnde.BrownianGrid` requires — with ``solver`` (default: the forward solver when it
    is a Runge–Kutta method or ``ReversibleHeun``, else ``Heun()``); ``rtol``/``atol`` do not apply.
    For an SDE these are the gradients of the *Stratonovich* solution: they converge to the exact
    gradient of the solution as the step shrinks, but are not equal to backpropagation through the
    discretisation (:class:`DirectAdjoint`, or :class:`ReversibleAdjoint` at constant memory). A
    forward solver converging to the Itô solution (``Euler``, ``EulerMaruyama``, Itô
    ``Milstein``) is refused unless the noise is additive (convert the drift to Stratonovich form
    and use ``Heun()``, ``EulerHeun()`` or ``ReversibleHeun()``). Gradients with respect to
    ``t0``, ``t1`` and ``SaveAt(ts)`` are not available for control terms.

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
        interpolate: take ``y(t)`` in the backward pass from the forward solve's dense output
            (its values, no graph: memory grows with the number of steps) instead of solving
            ``dy/dt = f`` backwards. Solving it backwards is unstable for stiff, dissipative
            problems — their decaying modes grow backwards — while the adjoint equation itself is
            stable backwards; interpolating is SciML's "interpolating adjoint". ``None``
            (default): interpolate when the backward solver is implicit (a stiff problem). ODEs
            only.
        norm: the error norm of an adaptive backward solve, replacing the ``seminorm`` choice:
            called as ``norm(y, a, g)`` with the scaled error estimate (error over
            ``atol + rtol·|value|``) split like the augmented state — ``y`` and ``a`` flat,
            ``(batch, n)`` (``batch`` 1 and ``n`` the whole state's size without ``batch_axis``;
            ``y`` is ``None`` when the backward pass interpolates it), ``g`` a tuple shaped like
            the parameters — and returns a 0-dim tensor; a step is accepted when it is ≤ 1.
            Unused when the backward pass replays the forward steps.
        on_step: called after every attempted step of the backward solve as
            ``on_step(t0, t1, (y, a, g), accepted)``: the step's start and end (0-dim, in the
            problem's time, running from the solve's end back to its start), the augmented state at its start split as for
            ``norm`` (views: do not modify them) and whether the step was accepted — to monitor
            or count the backward steps.

    Needs saved values at ``t0``/``ts``/``t1``; with ``batch_axis=0`` every sample must share ``t0``,
    ``t1`` and ``ts`` (the backward pass solves the whole batch as one system, since the parameter
    gradient is a sum over it).
    """

    rtol: float = 1e-6
    atol: float = 1e-8
    seminorm: bool = True
    solver: AbstractSolver | None = None
    params: Sequence[torch.Tensor] | None = None
    max_steps: int | None = None
    interpolate: bool | None = None
    norm: Callable[..., torch.Tensor] | None = None
    on_step: Callable[..., None] | None = None

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
        for name in ("norm", "on_step"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(
                    f"`BacksolveAdjoint({name}=...)` must be a callable or None, got {value!r}"
                )

    def replays(self, ctx) -> bool:
        """Whether the backward pass steps through the forward pass's step times in reverse —
        for CDEs and SDEs (the same path), after constant or prescribed steps (torchdiffeq's
        fixed-grid adjoint), and with a backward solver without an error estimate — rather than
        choosing its own steps adaptively."""
        solver = self.solver or ctx.solver
        return not ctx.problem.ode or not ctx.controller.adaptive or solver.error_order is None

    def interpolates(self, ctx) -> bool:
        """Whether the backward pass takes ``y`` from the forward dense output."""
        if self.interpolate is not None:
            return self.interpolate
        return ctx.problem.ode and (self.solver or ctx.solver).uses_jacobian

    def check(self, prep) -> None:
        ctx, plan = prep.ctx, prep.plan
        if self.interpolate and not ctx.problem.ode:
            raise ValueError(
                "`BacksolveAdjoint(interpolate=True)` takes y from the forward dense output of an "
                "ODE; for a CDE/SDE leave it out (y is solved backwards over the same path)"
            )
        if not ctx.problem.ode:
            _check_control(ctx, self.solver)
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

    def loop(self, prep):
        ctx, plan = prep.ctx, prep.plan
        params = (
            grad_inputs(ctx, prep.y0, self.params, "BacksolveAdjoint")
            if torch.is_grad_enabled()
            else []
        )
        if not needs_grad(prep.y0, ctx, plan, params):
            return drive(prep)
        if not ctx.problem.ode:
            times = (("t0", ctx.t0), ("t1", ctx.t_end), ("SaveAt(ts)", plan.ts))
            timed = [name for name, t in times if t is not None and t.requires_grad]
            if timed:
                raise ValueError(
                    f"BacksolveAdjoint cannot differentiate a CDE/SDE solve with respect to "
                    f"{', '.join(timed)}; detach them, or use `DirectAdjoint()` (or "
                    "`ReversibleAdjoint()` with `ReversibleHeun()`)"
                )
        state = tree_map(torch.Tensor.detach, prep.solver_state)
        run = Run(dataclasses.replace(prep, solver_state=state), params)
        times = (ctx.t0, ctx.t_end, plan.ts if plan.ts is not None else ctx.t0.new_zeros(0))
        ys = _BacksolveFunction.apply(run, self, prep.y0, *times, *params)
        return run.output(ys)


class _BacksolveFunction(torch.autograd.Function):
    @staticmethod
    def forward(fctx, run: Run, adjoint: BacksolveAdjoint, y0, t0, t1, ts, *params):
        steps = _StepTimes(run.ctx) if adjoint.replays(run.ctx) else None
        run.interpolate = adjoint.interpolates(run.ctx)
        if run.interpolate:  # record the dense output (values only) for the backward pass
            run.prep = dataclasses.replace(
                run.prep, plan=dataclasses.replace(run.prep.plan, dense=True)
            )
        forward_loop(run, on_step=steps)
        run.step_times = steps
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
    ctx, plan = run.ctx, run.plan
    ys = run.ys.detach()
    times = run.ts[0].detach()  # shared by the batch (checked)
    columns = ys.shape[1]
    skip_t0 = 1 if plan.t0 else 0  # the t0 column is y0 itself: it enters a after the solve
    params = run.params
    batch, n = run.y0.shape
    # the augmented state (y, a, g) is one flat tensor; the field views it in place
    layout = _Layout(batch, n, params, with_y=not run.interpolate)
    if adjoint.replays(ctx):
        backwards = _replay_backwards(run, adjoint, layout)
    else:
        backwards = _ode_backwards(run, adjoint, layout)
    state = layout.pack(run.y0, torch.zeros_like(run.y0), [None] * len(params), ys.dtype)
    watch = NonFiniteWatch(ctx, "BacksolveAdjoint")
    t_now = None
    for j in range(columns - 1, skip_t0 - 1, -1):
        t_j = times[j]
        if t_now is None:
            if layout.with_y:
                layout.y(state).copy_(torch.nan_to_num(ys[:, j]))
        elif t_j < t_now:
            state = backwards(t_now, t_j, state)
            watch.check([layout.a(state), *layout.g(state)], t_now, t_j)
            if layout.with_y:  # re-anchor on the forward solution
                layout.y(state).copy_(torch.nan_to_num(ys[:, j]))
        layout.a(state).add_(grads.all[:, j])
        t_now = t_j
    t_start = ctx.t0[0].detach()
    if t_now is not None and t_now > t_start:
        state = backwards(t_now, t_start, state)
        watch.check([layout.a(state), *layout.g(state)], t_now, t_start)
    g_params = [_cast_like(gi, p) for gi, p in zip(layout.g(state), params)]
    return layout.a(state).clone(), g_params


def _ode_backwards(run: Run, adjoint: BacksolveAdjoint, layout: _Layout):
    """``backwards(t_from, t_to, state)`` for an ODE: an adaptive solve of the augmented ODE."""
    ctx = run.ctx
    solution = None if layout.with_y else _dense_solution(run)
    aug_f = _AugmentedField(ctx, run.params, layout, solution)
    size = layout.start + layout.batch * layout.n  # y and a: the seminorm's part

    def seminorm(x: torch.Tensor) -> torch.Tensor:
        part = x[:, :size]
        return torch.linalg.vector_norm(part, dim=1) / math.sqrt(size)

    def user_norm(x: torch.Tensor) -> torch.Tensor:
        value = torch.as_tensor(adjoint.norm(*layout.split(x[0])), device=x.device)
        return value.real.to(x.real.dtype).reshape(1)

    norm = user_norm if adjoint.norm is not None else seminorm if adjoint.seminorm else None
    controller = PIDController(rtol=adjoint.rtol, atol=adjoint.atol, norm=norm)
    on_step = _step_hook(ctx, adjoint, layout)
    solver = adjoint.solver or ctx.solver
    max_steps = adjoint.max_steps or ctx.max_steps
    problem = None
    dt_next = None

    def backwards(t_from, t_to, state):
        nonlocal dt_next, problem
        if problem is None:
            term = ODETerm(aug_f)
            if solver.uses_jacobian:  # a stiff problem's adjoint is stiff: solve it implicitly
                term = ODETerm(aug_f, jac=_AugmentedJacobian(aug_f), quadratures=layout.quadratures)
            problem = flat_problem(term, state, ctx.problem.time_dtype)
        span = float(t_from - t_to)
        out = integrate(
            problem,
            solver,
            controller,
            t_from,
            t_to,
            state,
            dt0=None if dt_next is None else min(dt_next, span),
            max_steps=max_steps,
            on_step=on_step,
        )
        run.nfe_backward += out.state.nfe
        _check_backward(ctx, out, t_from, t_to, max_steps)
        # the next interval starts with the step this one ended on
        dt_next = float(out.state.t_next[0] - out.state.t[0])
        return out.ys[0, -1]

    return backwards


def _replay_backwards(run: Run, adjoint: BacksolveAdjoint, layout: _Layout):
    """``backwards(t_from, t_to, state)`` stepping through the forward pass's step times in
    reverse: for a CDE/SDE the augmented term over the same path; for an ODE solved with
    constant or prescribed steps (or a backward solver without an error estimate) the augmented
    ODE on the same grid, as torchdiffeq's fixed-grid adjoint does."""
    ctx = run.ctx
    solver = _backward_solver(ctx, adjoint.solver)
    if ctx.problem.ode:
        solution = None if layout.with_y else _dense_solution(run)
        field = _AugmentedField(ctx, run.params, layout, solution)
        term = ODETerm(field)
        if solver.uses_jacobian:
            term = ODETerm(field, jac=_AugmentedJacobian(field), quadratures=layout.quadratures)
    else:
        term = _AugmentedTerm(ctx, run.params, layout)
    grid = run.step_times.grid()
    max_steps = adjoint.max_steps or ctx.max_steps
    on_step = _step_hook(ctx, adjoint, layout)

    def backwards(t_from, t_to, state):
        inner = grid[(grid < t_from) & (grid > t_to)].flip(0)
        steps = torch.cat([t_from.reshape(1), inner, t_to.reshape(1)])
        bound = max(max_steps, steps.shape[0])
        problem = flat_problem(term, state, ctx.problem.time_dtype)
        out = integrate(
            problem, solver, StepTo(steps), t_from, t_to, state, max_steps=bound, on_step=on_step
        )
        run.nfe_backward += out.state.nfe
        _check_backward(ctx, out, t_from, t_to, bound)
        return out.ys[0, -1]

    return backwards


def _step_hook(ctx, adjoint: BacksolveAdjoint, layout: _Layout):
    """``integrate``'s step hook calling ``adjoint.on_step`` with the augmented state split and
    the times in the user's time (the backward solve runs in the forward's internal time)."""
    if adjoint.on_step is None:
        return None
    direction = ctx.problem.direction  # shared by the batch (checked)
    sign = 1.0 if direction is None else float(direction.reshape(-1)[0])

    def hook(t0, t1, state, accepted) -> None:
        adjoint.on_step(t0 * sign, t1 * sign, layout.split(state), accepted)

    return hook


def _check_backward(ctx, out, t_from, t_to, max_steps: int) -> None:
    """A backward solve that failed for a reason other than a non-finite value raises, saying it
    was the adjoint solve and how to fix it; a non-finite one returns its NaN state, which the
    backward pass reports as a non-finite gradient (:class:`~torchnde.NonFiniteGradientWarning`),
    as the other adjoints do."""
    status = Status(int(out.state.status[0]))
    if status.ok or status == Status.NONFINITE:
        return
    sign = 1.0 if ctx.problem.direction is None else float(ctx.problem.direction.reshape(-1)[0])
    start, end = float(t_from) * sign, float(t_to) * sign
    backwards = -1.0 if float(t_to) < float(t_from) else 1.0  # internal time of the backward solve
    reached = float(out.state.fail_t[0]) * backwards * sign
    why = (
        f"{max_steps} steps were not enough"
        if status == Status.MAX_STEPS
        else "its step size collapsed"
    )
    raise SolveError(
        f"the backward (adjoint) solve of BacksolveAdjoint, from t={start:g} back to t={end:g}, "
        f"failed ({status.name}) at t={reached:.6g}: {why}. The adjoint equation of a stiff or "
        "rapidly varying problem is as hard as the problem itself, and the backward solve has its "
        "own settings: raise `BacksolveAdjoint(max_steps=...)`, loosen "
        "`BacksolveAdjoint(rtol=..., atol=...)`, or use `CheckpointAdjoint()`, which needs no "
        "backward solve",
        None,
        [0],
    )


class _Layout:
    """Where ``y: (batch, n)`` (unless the backward pass interpolates it), ``a: (batch, n)`` and
    each parameter gradient sit in the flat augmented state."""

    def __init__(self, batch: int, n: int, params: list[torch.Tensor], with_y: bool = True):
        self.batch, self.n, self.with_y = batch, n, with_y
        self.sizes = [batch * n] * (2 if with_y else 1) + [p.numel() for p in params]
        self.shapes = [p.shape for p in params]
        self.start = batch * n if with_y else 0  # where a begins
        #: the trailing entries (the parameter gradients) are integrals of (y, a)
        self.quadratures = sum(p.numel() for p in params)

    def pack(self, y, a, gs, dtype) -> torch.Tensor:
        parts = ([y.reshape(-1)] if self.with_y else []) + [a.reshape(-1)]
        for g, shape in zip(gs, self.shapes):
            parts.append(
                torch.zeros(shape.numel(), dtype=dtype, device=a.device)
                if g is None
                else g.reshape(-1)
            )
        return torch.cat([p.to(dtype) for p in parts])

    def y(self, state):
        return state[: self.batch * self.n].view(self.batch, self.n)

    def a(self, state):
        return state[self.start : self.start + self.batch * self.n].view(self.batch, self.n)

    def split(self, state) -> tuple:
        """``(y or None, a, g)``: the flat state's parts, ``g`` a tuple shaped like the params."""
        return (self.y(state) if self.with_y else None, self.a(state), tuple(self.g(state)))

    def g(self, state) -> list[torch.Tensor]:
        out, pos = [], self.start + self.batch * self.n
        for size, shape in zip(self.sizes[len(self.sizes) - len(self.shapes) :], self.shapes):
            out.append(state[pos : pos + size].view(shape))
            pos += size
        return out


def _cast_like(g: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    if g.is_complex() and not p.is_complex():
        g = g.real
    return g.to(p.dtype)


class _AugmentedField:
    """``(y, a, g) ↦ (f, -aᵀ∂f/∂y, -aᵀ∂f/∂θ)`` in the forward problem's internal time, on the
    flat augmented state — or ``(a, g) ↦ (-aᵀ∂f/∂y, -aᵀ∂f/∂θ)`` with ``y(τ)`` from ``solution``
    (the forward pass's dense output) when the backward pass interpolates ``y``."""

    def __init__(self, ctx, params, layout: _Layout, solution=None):
        self.ctx, self.params, self.layout, self.solution = ctx, params, layout, solution
        self.__name__ = "adjoint_field"

    def state_y(self, t, state) -> torch.Tensor:
        return self.layout.y(state) if self.layout.with_y else self.solution(t)

    def __call__(self, t, state, args):
        layout = self.layout
        y, a = self.state_y(t, state), layout.a(state)
        tau = t.expand(y.shape[0])
        with torch.enable_grad():
            y_ = y.detach().requires_grad_(True)
            f = vector_field(self.ctx, tau, y_)
            inputs = [y_, *self.params]
            # retain_graph: a parameter may be a non-leaf tensor (a path's coefficients computed
            # from data that requires grad); its history must survive for the next evaluation
            vjps = torch.autograd.grad(f, inputs, -a, allow_unused=True, retain_graph=True)
        parts = [f.detach().reshape(-1)] if layout.with_y else []
        for v, x in zip(vjps, inputs):
            v = torch.zeros_like(x) if v is None else v
            parts.append(v.reshape(-1) if v.dtype == state.dtype else v.reshape(-1).to(state.dtype))
        return torch.cat(parts)


class _AugmentedJacobian:
    """For implicit backward solvers: the Jacobian of the augmented field's ``(y, a)`` part,
    ``[[J, 0], [C, -Jᵀ]]`` with ``J = ∂(dy/dτ)/∂y`` per forward sample (block-diagonal over the
    batch), dropping the second-derivative block ``C = -∂(aᵀJ)/∂y``: the chord iteration only needs
    an approximate matrix, and with ``C`` strictly below the diagonal it still converges; ``-Jᵀ``
    alone when ``y`` is interpolated. The parameter part ``g`` is a quadrature (its rate does not
    depend on ``g``)."""

    def __init__(self, field: _AugmentedField):
        self.field = field
        self.__name__ = "adjoint_jacobian"

    def __call__(self, t, state, args) -> torch.Tensor:
        from ..solvers._implicit import jacobian

        field = self.field
        layout, problem = field.layout, field.ctx.problem
        y = field.state_y(t, state).detach()
        jac = jacobian(problem, t.expand(layout.batch), y)  # of f; dy/dτ = direction · f
        if problem.direction is not None:
            jac = jac * problem.direction.reshape(-1, 1, 1)
        block = torch.block_diag(*jac) if layout.batch > 1 else jac[0]
        return torch.block_diag(block, -block.T) if layout.with_y else -block.T


def _dense_solution(run: Run):
    """``τ ↦ y(τ)``, flat ``(batch, n)``, from the forward pass's dense output (internal times)."""
    ctx = run.ctx
    problem = ctx.problem
    dense = DenseOutput(problem, ctx.dense_matrix, run.recorder.dense_records, ctx.t0, run.state.t)
    sign = 1.0 if problem.direction is None else float(problem.direction.reshape(-1)[0])
    lo, hi = float(ctx.t0[0]), float(run.state.t.min())

    def solution(tau: torch.Tensor) -> torch.Tensor:
        # stages of some implicit methods lie slightly past the ends (Kvaerno5: c up to 1.23):
        # they see the end values
        tau = tau.reshape(()).clamp(lo, hi)
        with torch.no_grad():
            return problem.spec.flatten(dense.evaluate(tau * sign))

    return solution


# ------------------------------------------------------------------------------------------------
# CDEs and SDEs


def _brownian_noise(term: AbstractTerm) -> list[str]:
    """The noise types of the control terms in ``term`` driven by Brownian motion."""
    return [
        getattr(part, "noise", "general")
        for part in walk(term)
        if isinstance(part.control_path(), AbstractBrownianPath)
    ]


def _backward_solver(ctx, solver: AbstractSolver | None) -> AbstractSolver:
    if solver is not None:
        return solver
    forward = ctx.solver
    if ctx.problem.ode:  # the augmented system is an ODE too
        return forward
    sde = bool(_brownian_noise(ctx.problem.term))
    if forward.generic_terms and (not sde or forward.interpretation == "stratonovich"):
        return forward
    from ..solvers import Heun

    return Heun()


def _check_control(ctx, solver: AbstractSolver | None) -> None:
    """What BacksolveAdjoint needs of a CDE/SDE solve."""
    noise = _brownian_noise(ctx.problem.term)
    additive = all(kind == "additive" for kind in noise)
    forward = ctx.solver
    if noise and forward.interpretation == "ito" and not additive:
        raise ValueError(
            f"BacksolveAdjoint solves the Stratonovich adjoint SDE, but the forward solver "
            f"{forward!r} converges to the Itô solution; write the SDE in Stratonovich form and "
            "solve it with `Heun()`, `EulerHeun()` or `ReversibleHeun()`, or use "
            "`adjoint=DirectAdjoint()`/`CheckpointAdjoint()` (gradients of the Itô discretisation)"
        )
    backward = _backward_solver(ctx, solver)
    if not backward.generic_terms:
        raise ValueError(
            f"BacksolveAdjoint solves the adjoint of a CDE/SDE with a solver that works on any "
            f"term (a Runge–Kutta method, or ReversibleHeun), and {backward!r} is not one; pass "
            "e.g. `BacksolveAdjoint(solver=Heun())`"
        )
    if noise and not additive and backward.interpretation != "stratonovich":
        raise ValueError(
            f"the backward solver {backward!r} converges to the Itô solution of the adjoint SDE, "
            "which is Stratonovich; pass `BacksolveAdjoint(solver=Heun())` or `ReversibleHeun()`"
        )


class _StepTimes:
    """Collects the end times of the forward pass's accepted steps (every sample's)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.times: list = []

    def __call__(self, st, info) -> None:
        self.times.append(st.t)

    def grid(self) -> torch.Tensor:
        """Every time a step started or ended, sorted, as a 1-D tensor of internal times."""
        t0 = self.ctx.t0.detach()
        parts = [t0.reshape(-1)]
        if self.times and isinstance(self.times[0], torch.Tensor):
            parts.append(torch.stack(self.times).reshape(-1).detach())
        elif self.times:
            parts.append(torch.tensor(self.times, dtype=t0.dtype, device=t0.device))
        return torch.unique(torch.cat(parts), sorted=True)


class _Linearised:
    """The forward vector field at ``(t, y)`` with its graph from the leaf ``y``, and the adjoint
    ``a`` there: what :class:`_AugmentedTerm` hands from ``vf`` to ``prod``."""

    def __init__(self, y: torch.Tensor, vf, a: torch.Tensor):
        self.y, self.vf, self.a = y, vf, a


class _AugmentedTerm(AbstractTerm):
    """The adjoint system of ``dy = vf(t, y)·dX`` on the flat augmented state ``(y, a, g)``, in
    the forward problem's internal time: ``prod(vf(t, z), ΔX)`` is
    ``(vf·ΔX, -aᵀ ∂(vf·ΔX)/∂y, -aᵀ ∂(vf·ΔX)/∂θ)`` — linear in ``ΔX``, as a term must be; ``vf``
    returns the forward field with its graph and ``prod`` forms the vector-Jacobian products with
    the increment."""

    def __init__(self, ctx, params, layout: _Layout):
        self.ctx, self.params, self.layout = ctx, params, layout
        self.batch = layout.batch

    def vf(self, t, state, args) -> _Linearised:
        layout = self.layout
        with torch.enable_grad():
            y = layout.y(state).detach().requires_grad_(True)
            vf = self.ctx.problem.vf(t.expand(self.batch), y)
        return _Linearised(y, vf, layout.a(state).detach())

    def contr(self, t0, t1):
        with torch.enable_grad():  # the increment's graph to the path's data (a CDE's xs)
            return self.ctx.problem.contr(t0.expand(self.batch), t1.expand(self.batch))

    def prod(self, vf: _Linearised, control) -> torch.Tensor:
        inputs = [vf.y, *self.params]
        with torch.enable_grad():
            k = self.ctx.problem.prod(vf.vf, control)
            vjps = [None] * len(inputs)
            if k.requires_grad:
                vjps = torch.autograd.grad(k, inputs, -vf.a, allow_unused=True, retain_graph=True)
        dtype = k.dtype
        parts = [k.detach().reshape(-1)]
        for v, x in zip(vjps, inputs):
            v = torch.zeros_like(x) if v is None else v
            parts.append(v.reshape(-1).to(dtype))
        return torch.cat(parts)

    def check(self, vf, y, batched) -> None:
        return None
