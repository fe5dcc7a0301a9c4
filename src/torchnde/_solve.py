"""``solve``: check the arguments, set up the problem, hand the loop to the adjoint, build the
:class:`Solution`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ._compact import check_compact
from ._compiled import check as check_compile
from ._compiled import resolve_backend
from ._dense import DenseOutput
from ._errors import SolveError, check_finite_time, describe, friendly_keywords
from ._problem import Problem
from ._pytree import StateSpec, tree_leaves, tree_structure_str
from ._run import LoopOutput, Prepared, SavePlan, build
from ._saveat import SaveAt
from ._solution import Solution, Status
from .adjoints._base import AbstractAdjoint
from .adjoints.direct import DirectAdjoint
from .controllers import AbstractController, ConstantStepSize
from .events import Event
from .solvers._base import AbstractSolver
from .terms import AbstractTerm, paths

__all__ = ["DEFAULT_MAX_STEPS", "prepare", "solution", "solve"]

#: the default bound on attempted steps per sample: no solve can run forever
DEFAULT_MAX_STEPS = 10_000


_CONTROLLER_HINT = (
    "tolerances and step limits belong to the step-size controller: "
    "`controller=PIDController(rtol=1e-6, atol=1e-8, dtmin=..., dtmax=...)`"
)


@friendly_keywords(
    {
        **dict.fromkeys(("rtol", "atol", "dtmin", "dtmax", "dt_min", "dt_max"), _CONTROLLER_HINT),
        "method": "pass a solver object as the second argument, e.g. `Dopri5()`",
        "t": "save at given times with `saveat=SaveAt(ts=t)`",
        "ts": "save at given times with `saveat=SaveAt(ts=ts)`",
        "dt": "the (first) step size is `dt0`",
        "max_num_steps": "the step bound is `max_steps`",
    }
)
def solve(
    terms: AbstractTerm,
    solver: AbstractSolver,
    t0: float | torch.Tensor,
    t1: float | torch.Tensor,
    y0: Any,
    *,
    dt0: float | torch.Tensor | None = None,
    args: Any = None,
    saveat: SaveAt | None = None,
    controller: AbstractController | None = None,
    adjoint: AbstractAdjoint | None = None,
    event: Event | Sequence[Event] | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    throw: bool = True,
    batch_axis: int | None = None,
    compile: bool | str = False,
    compact: bool | float = False,
) -> Solution:
    """Solve a differential equation from ``t0`` to ``t1``.

    Args:
        terms: the equation: :class:`ODETerm`, :class:`ControlTerm` or :class:`MultiTerm`.
        solver: how a step is taken, e.g. ``Dopri5()``.
        t0, t1: start and end times (``t1 < t0`` integrates backwards); 0-dim, or ``(batch,)``
            per sample under ``batch_axis=0``.
        y0: the initial state: a tensor, or a tuple/list/dict of tensors of one floating or
            complex dtype, on one device.
        dt0: the (first) step size; signed like ``t1 - t0``. Required by
            :class:`ConstantStepSize`; chosen automatically by adaptive controllers when None.
        args: passed to every vector field as ``f(t, y, args)``.
        saveat: what to return (default: the value at ``t1``).
        controller: the step-size controller (default :class:`ConstantStepSize`).
        adjoint: how gradients flow (default :class:`DirectAdjoint`).
        event: an :class:`Event` or a sequence of them.
        max_steps: the most steps (accepted or rejected) any sample may attempt.
        throw: raise :class:`SolveError` if any sample fails; with ``False`` the statuses are in
            the solution and unreached outputs are NaN.
        batch_axis: ``None`` (the whole state is one problem, one step size) or ``0`` (axis 0 of
            every leaf indexes independent problems with their own steps and statuses).
        compile: run the loop under ``torch.compile`` (``True``: the ``"inductor"`` backend;
            ``"aot_eager"``/``"eager"`` also accepted). Without events, jumps, dense output or
            per-step saving, the whole adaptive loop is one compiled ``while_loop`` with autograd
            off (``torch.no_grad()``), and compiled calls of 8 unrolled steps with autograd on;
            otherwise each step is one compiled call. Compiled once per
            structure and reused (see :func:`torchnde.compile_info`); explicit Runge-Kutta
            solvers with ``ConstantStepSize``/``PIDController`` only.
        compact: under ``batch_axis=0``, once at most this share of the batch (``True``: half)
            is still running, continue stepping the running samples only (gathered into a
            smaller batch, scattered back at the end; repeatedly), so finished samples stop
            costing vector-field evaluations. Each sample takes the same steps and gets the same
            values (to rounding) and statistics. The vector field must treat the rows of ``y``
            independently and take per-sample data from ``args`` (leaves whose first axis has
            the batch size are gathered with the samples), not from a closure. ODE terms, no
            events, no ``SaveAt(steps/dense)``, not with ``compile``; the forward passes of
            ``CheckpointAdjoint``/``BacksolveAdjoint`` under autograd do not compact.

    Returns:
        A :class:`Solution`.
    """
    adjoint = DirectAdjoint() if adjoint is None else adjoint
    if not isinstance(adjoint, AbstractAdjoint):
        _check_objects(terms, solver, saveat, controller, adjoint, max_steps, throw, batch_axis)
    prep = prepare(
        terms,
        solver,
        t0,
        t1,
        y0,
        dt0=dt0,
        args=args,
        saveat=saveat,
        controller=controller,
        event=event,
        max_steps=max_steps,
        batch_axis=batch_axis,
        throw=throw,
        compile=compile,
        compact=compact,
    )
    adjoint.check(prep)
    sol = solution(prep, adjoint.loop(prep))
    if throw and not sol.ok:
        failed = [i for i, s in enumerate(sol.statuses) if not s.ok]
        raise SolveError(_throw_message(sol, failed, prep.ctx.problem.spec.batched), sol, failed)
    return sol


def prepare(
    terms: AbstractTerm,
    solver: AbstractSolver,
    t0: float | torch.Tensor,
    t1: float | torch.Tensor,
    y0: Any,
    *,
    dt0: float | torch.Tensor | None = None,
    args: Any = None,
    saveat: SaveAt | None = None,
    controller: AbstractController | None = None,
    event: Event | Sequence[Event] | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    batch_axis: int | None = None,
    throw: bool = True,
    compile: bool | str = False,
    compact: bool | float = False,
) -> Prepared:
    """Check the arguments of :func:`solve` and build the :class:`~torchnde._run.Prepared` solve
    an adjoint runs (the first half of :func:`solve`: validation, the problem in internal time,
    the solver's first state)."""
    saveat = SaveAt(t1=True) if saveat is None else saveat
    controller = ConstantStepSize() if controller is None else controller
    _check_objects(terms, solver, saveat, controller, None, max_steps, throw, batch_axis)
    events = _check_events(event)
    batched = batch_axis == 0
    spec = _check_state(y0, batched)
    batch, device = spec.batch, spec.device
    tdtype = _time_dtype(spec.dtype, t0, t1, dt0, None if saveat.from_python else saveat.ts)

    t0_ = _time("t0", t0, batched, batch, tdtype, device)
    t1_ = _time("t1", t1, batched, batch, tdtype, device)
    sign = torch.where(t1_ >= t0_, 1.0, -1.0).to(tdtype)
    direction = None if bool((sign > 0).all()) else sign
    tau0 = t0_ if direction is None else t0_ * direction
    tau1 = t1_ if direction is None else t1_ * direction
    save_ts = _check_ts(saveat.ts, batched, batch, tdtype, device, direction, tau0, tau1)
    dt0_ = _check_dt0(dt0, batched, batch, tdtype, device, direction, t0_, t1_)
    controller.check(solver)
    solver.check_terms(terms)
    backend = resolve_backend(compile)
    check_compile(solver, controller, backend)
    fraction = check_compact(
        compact, batched, terms.ode, events, saveat.steps, saveat.dense, backend
    )

    problem = Problem(terms, spec, args, direction, tdtype)
    for path in paths(terms):  # before the first step, which may query them
        path.validate_span(t0_, t1_)
    y0_flat, invalid = _initial_state(spec, y0)
    plan = SavePlan(saveat.t0, saveat.t1, save_ts, saveat.steps, saveat.dense)
    host = not any(isinstance(t, torch.Tensor) and t.requires_grad for t in (t0_, t1_, dt0_))
    return build(
        problem,
        solver,
        controller,
        tau0,
        tau1,
        y0_flat,
        plan=plan,
        dt0=dt0_,
        max_steps=max_steps,
        events=events,
        invalid=invalid,
        host=host,
        compiled=backend,
        compact=fraction,
    )


# ------------------------------------------------------------------------------------------------
# argument checks


def _check_objects(terms, solver, saveat, controller, adjoint, max_steps, throw, batch_axis):
    if not isinstance(terms, AbstractTerm):
        hint = " (wrap a function as `ODETerm(f)`)" if callable(terms) else ""
        raise TypeError(
            f"`terms` must be a term such as `ODETerm(f)`, got {type(terms).__name__}{hint}"
        )
    for name, value, base, example in (
        ("solver", solver, AbstractSolver, "Dopri5()"),
        ("controller", controller, AbstractController, "PIDController(rtol=1e-6, atol=1e-8)"),
        ("adjoint", adjoint, AbstractAdjoint, "DirectAdjoint()"),
        ("saveat", saveat, SaveAt, "SaveAt(t1=True)"),
    ):
        if value is None and name == "adjoint":
            continue
        if isinstance(value, type) and issubclass(value, base):
            raise TypeError(
                f"`{name}` must be an instance: write `{value.__name__}()`, not the class"
            )
        if not isinstance(value, base):
            raise TypeError(
                f"`{name}` must be a {base.__name__}, e.g. `{example}`, got {describe(value)}"
            )
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(
            f"`max_steps` must be a positive int (it bounds every solve), got {describe(max_steps)}"
        )
    if not isinstance(throw, bool):
        raise TypeError(f"`throw` must be True or False, got {describe(throw)}")
    if batch_axis not in (None, 0) or isinstance(batch_axis, bool):
        raise ValueError(
            f"`batch_axis` must be None (one problem) or 0 (axis 0 indexes independent problems), "
            f"got {batch_axis!r}"
        )


def _check_events(event) -> tuple[Event, ...]:
    if event is None:
        return ()
    if not isinstance(event, (Event, Sequence)):
        raise TypeError(
            f"`event` must be an Event or a sequence of Events, got {type(event).__name__}; "
            "wrap a condition function as `Event(cond)`"
        )
    events = (event,) if isinstance(event, Event) else tuple(event)
    for i, ev in enumerate(events):
        if not isinstance(ev, Event):
            raise TypeError(
                f"`event` must be an Event or a sequence of Events, but item {i} is "
                f"{type(ev).__name__}; wrap the condition as `Event(cond)`"
            )
    return events


def _check_state(y0: Any, batched: bool) -> StateSpec:
    leaves = tree_leaves(y0)
    if not leaves:
        raise ValueError("`y0` is an empty container; give at least one tensor")
    for i, leaf in enumerate(leaves):
        where = "" if len(leaves) == 1 else f" (leaf {i} of {tree_structure_str(y0)})"
        if not isinstance(leaf, torch.Tensor):
            raise TypeError(
                f"`y0` must hold tensors, got {type(leaf).__name__}{where}; convert it with "
                "`torch.tensor(..., dtype=torch.float32)`"
            )
        if not (leaf.is_floating_point() or leaf.is_complex()):
            raise TypeError(
                f"`y0` must be floating point or complex, got {leaf.dtype}{where}; convert it with "
                "`.float()` or `.double()`"
            )
        if leaf.dtype in (torch.float16, torch.bfloat16):
            raise TypeError(
                f"`y0` has dtype {leaf.dtype}{where}, too coarse for error control; solve in "
                "float32 (`.float()`) and cast the result"
            )
    first = leaves[0]
    for i, leaf in enumerate(leaves[1:], start=1):
        if leaf.dtype != first.dtype or leaf.device != first.device:
            raise TypeError(
                f"all leaves of `y0` must share one dtype and device, but leaf 0 is "
                f"{first.dtype} on {first.device} and leaf {i} is {leaf.dtype} on {leaf.device}; "
                "cast them to one dtype"
            )
    if batched:
        for leaf in leaves:
            if leaf.ndim == 0 or leaf.shape[0] != first.shape[0] or first.ndim == 0:
                raise ValueError(
                    f"with `batch_axis=0` every leaf of `y0` needs the same leading batch size, "
                    f"got {tree_structure_str(y0)}; add the batch axis or use batch_axis=None"
                )
        if first.shape[0] == 0:
            raise ValueError(
                f"with `batch_axis=0` the batch axis of `y0` is empty, got {tree_structure_str(y0)}; "
                "give at least one sample"
            )
    if batched:  # a sample with a non-finite y0 is flagged, not the whole batch (see solve)
        return StateSpec.from_tree(y0, batched)
    for i, leaf in enumerate(leaves):
        if not bool(torch.isfinite(leaf.detach()).all()):
            where = "" if len(leaves) == 1 else f" leaf {i}"
            bad = torch.nonzero(~torch.isfinite(leaf.detach().reshape(-1)))[0].item()
            raise ValueError(
                f"`y0`{where} holds a non-finite value (flat index {bad}: "
                f"{leaf.detach().reshape(-1)[bad].item()}); the initial state must be finite"
            )
    return StateSpec.from_tree(y0, batched)


def _initial_state(spec: StateSpec, y0: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The flat ``y0: (batch, n)`` — a copy, so no vector field can change the caller's tensor —
    and, under ``batch_axis=0``, which samples have a non-finite ``y0`` (``None`` if none): those
    are solved from zeros instead, never stepped, and reported as ``Status.NONFINITE`` with NaN
    outputs, so one bad sample does not reject the batch nor leak NaN into the others'
    gradients."""
    flat = spec.flatten(y0)
    if flat.data_ptr() == tree_leaves(y0)[0].data_ptr():
        flat = flat.clone()
    if not spec.batched:
        return flat, None
    finite = torch.isfinite(flat.detach()).all(dim=1)
    if bool(finite.all()):
        return flat, None
    return torch.where(finite[:, None], flat, torch.zeros_like(flat)), ~finite


def _time_dtype(state_dtype, *times) -> torch.dtype:
    real = torch.empty((), dtype=state_dtype).real.dtype if state_dtype.is_complex else state_dtype
    for value in times:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            real = torch.promote_types(real, value.dtype)
    return real


def _as_time_tensor(name, value, tdtype, device) -> torch.Tensor:
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"`{name}` must be a number or a tensor, got {describe(value)}")
    if isinstance(value, torch.Tensor) and value.is_complex():
        raise TypeError(f"`{name}` must be real, got a complex tensor")
    check_finite_time(name, value)
    return torch.as_tensor(value, dtype=tdtype, device=device)


def _time(name, value, batched, batch, tdtype, device) -> torch.Tensor:
    """A time argument as a ``(batch,)`` tensor."""
    t = _as_time_tensor(name, value, tdtype, device)
    if t.ndim == 0:
        return t.expand(batch).clone()  # contiguous: a stride-0 view recompiles a compiled step
    if batched and t.shape == (batch,):
        return t
    want = f"a scalar or shape ({batch},) with batch_axis=0" if batched else "a scalar"
    raise ValueError(f"`{name}` must be {want}, got shape {tuple(t.shape)}")


def _check_ts(ts, batched, batch, tdtype, device, direction, tau0, tau1):
    if ts is None:
        return None
    check_finite_time("SaveAt(ts)", ts)
    ts = ts.to(dtype=tdtype, device=device)
    if ts.ndim == 2 and not (batched and ts.shape[0] == batch):
        raise ValueError(
            f"`SaveAt(ts)` of shape {tuple(ts.shape)} needs batch_axis=0 and a leading axis of "
            f"size {batch}; give 1-D times to share them across samples"
        )
    tau = ts.reshape(1, -1) if ts.ndim == 1 else ts
    if direction is not None:
        tau = tau * direction[:, None]
    tau = tau.expand(batch, -1)
    steps = tau[:, 1:] < tau[:, :-1]
    if bool(steps.any()):
        b, i = (int(x) for x in torch.nonzero(steps)[0])
        row = ts if ts.ndim == 1 else ts[b]
        order = "increasing" if direction is None or direction[b] > 0 else "decreasing (t1 < t0)"
        raise ValueError(
            f"`SaveAt(ts)` must be {order}, but ts[{i + 1}]={row[i + 1].item():g} comes after "
            f"ts[{i}]={row[i].item():g}; sort it with `ts.sort()`"
        )
    lo = (tau < tau0[:, None]).any(dim=1)
    hi = (tau > tau1[:, None]).any(dim=1)
    if bool((lo | hi).any()):
        b = int(torch.nonzero(lo | hi)[0])
        row = ts if ts.ndim == 1 else ts[b]
        user0 = tau0[b] * (1 if direction is None else direction[b])
        user1 = tau1[b] * (1 if direction is None else direction[b])
        raise ValueError(
            f"`SaveAt(ts)` must lie within [t0, t1] = [{user0.item()!r}, {user1.item()!r}], but "
            f"it spans [{row.min().item()!r}, {row.max().item()!r}]; drop the times outside (or "
            "clamp them: `ts.clamp(t0, t1)`, e.g. after `torch.logspace`, which can overshoot t1 "
            "by rounding)"
        )
    return tau.contiguous() if direction is not None or ts.ndim == 2 else tau


def _check_dt0(dt0, batched, batch, tdtype, device, direction, t0, t1):
    if dt0 is None:
        return None
    dt = _time("dt0", dt0, batched, batch, tdtype, device)
    if bool((dt == 0).any()):
        raise ValueError("`dt0` must be non-zero; give a step size like `dt0=0.01`")
    span = t1 - t0
    wrong = dt * span < 0
    if bool(wrong.any()):
        i = int(torch.nonzero(wrong)[0])
        raise ValueError(
            f"`dt0`={dt[i].item():g} has the wrong sign: integrating from t0={t0[i].item():g} to "
            f"t1={t1[i].item():g} needs dt0 {'> 0' if span[i] > 0 else '< 0'}"
        )
    return dt.abs()


# ------------------------------------------------------------------------------------------------
# building the solution


def solution(prep: Prepared, out: LoopOutput) -> Solution:
    """The :class:`Solution` of a prepared solve from what its run saved (user times, the state's
    tree, statistics, statuses and messages, events, dense output)."""
    ctx, plan = prep.ctx, prep.plan
    st, rec = out.state, out.recorder
    spec, direction = ctx.problem.spec, ctx.problem.direction
    batched = spec.batched

    def user(tau):
        return tau if direction is None else tau * direction.reshape(-1, *([1] * (tau.ndim - 1)))

    def squeeze(x):
        return x if batched else x[0]

    flat_ys = out.ys
    if ctx.invalid is not None:
        flat_ys = torch.where(ctx.invalid[:, None, None], torch.nan, flat_ys)
    ys = spec.unflatten_series(flat_ys) if out.ys.shape[1] or plan.t1 or plan.t0 else None
    ts = squeeze(user(out.ts))
    stats = {
        "num_steps": squeeze(st.num_steps),
        "num_accepted": squeeze(st.num_accepted),
        "num_rejected": squeeze(st.num_rejected),
        "nfe": squeeze(st.nfe),
        "nfe_backward": squeeze(
            torch.zeros_like(st.nfe) if out.nfe_backward is None else out.nfe_backward
        ),
        **{name: squeeze(value) for name, value in st.counters.items()},
    }
    messages = _messages(ctx, st, user)
    sol = Solution(ts=ts, ys=ys, stats=stats, status=squeeze(st.status), messages=messages)
    failed = st.status > int(Status.EVENT)
    sol.fail_t = squeeze(torch.where(failed, user(st.fail_t), torch.nan).detach())
    sol._next_dt = squeeze(st.t_next - st.t).detach()
    if ctx.events:
        sol.event_t = squeeze(user(rec.event_t))
        sol.event_index = squeeze(rec.event_index)
        sol.event_crossings = [
            squeeze(_crossings(rec.crossings[e], st.t, user)) for e in range(len(ctx.events))
        ]
    if plan.dense:
        sol._dense = DenseOutput(ctx.problem, ctx.dense_matrix, rec.dense_records, ctx.t0, st.t)
    return sol


def _crossings(records, t_like, user) -> torch.Tensor:
    batch = t_like.shape[0]
    if not records:
        return t_like.new_zeros(batch, 0)
    hits = torch.stack([h for h, _ in records], dim=1)
    times = torch.stack([t for _, t in records], dim=1)
    pos = hits.long().cumsum(dim=1) - 1
    width = int(hits.sum(dim=1).max())
    out = torch.full((batch, width), float("nan"), dtype=times.dtype, device=times.device)
    b, m = torch.nonzero(hits, as_tuple=True)
    out = out.index_put((b, pos[b, m]), times[b, m])
    return user(out)


def _messages(ctx, st, user) -> list[str]:
    status = st.status.tolist()
    messages = []
    for b, code in enumerate(status):
        messages.append("" if code <= Status.EVENT else _message(ctx, st, b, Status(code), user))
    return messages


def _message(ctx, st, b, code, user) -> str:
    def value(x):
        return float(x[b].detach())

    t_fail = value(user(st.fail_t))
    t_reached = value(user(st.t))
    t0 = value(user(ctx.t0))
    t1 = value(user(ctx.t_end))
    dt = value(st.t_next - st.t)
    steps = int(st.num_steps[b])
    if code == Status.NONFINITE and ctx.invalid is not None and bool(ctx.invalid[b]):
        return (
            "the initial state `y0` of this sample holds NaN or inf, so it was not solved (the "
            "other samples were); check the data it came from"
        )
    if code == Status.NONFINITE:
        return (
            f"the state or the vector field became NaN/inf at t={t_fail:.6g} "
            f"(solving from {t0:g} to {t1:g}): the solution may blow up there, or the model "
            "overflows (e.g. exp of a large value); check the model, or use smaller steps"
        )
    if code == Status.DTMIN:
        return _dtmin_message(ctx, t_fail, t0, t1)
    if code == Status.NONCONVERGENCE:
        return (
            f"{ctx.solver!r} could not complete a step at t={t_fail:.6g} (solving from {t0:g} to "
            f"{t1:g}), even with the step size reduced to {abs(dt):.3g}: {ctx.solver.failure_hint}"
        )
    span = abs(t1 - t0)
    remaining = abs(t1 - t_reached)
    # tiny steps: at the last step size the rest would take over ten times the steps already spent
    # (a solve that merely needs a few more steps than max_steps is not called stiff)
    stiff = ctx.controller.adaptive and dt > 0 and remaining / dt > 10 * steps
    if stiff and ctx.solver.uses_jacobian:
        hint = (
            f" The steps stayed tiny (last dt={dt:.3g} on an interval of {span:g}) even for an "
            "implicit solver: the solution may vary quickly throughout (raise `max_steps`), or "
            "the tolerances may be too tight for the dtype (loosen rtol/atol)."
        )
    elif stiff:
        hint = (
            f" The steps stayed tiny (last dt={dt:.3g} on an interval of {span:g}): the problem "
            f"may be stiff; explicit solvers need tiny steps on stiff problems: {_STIFF_FIX}."
        )
    else:
        hint = " Raise `max_steps`, or loosen rtol/atol."
    return (
        f"max_steps={ctx.max_steps} steps were not enough: reached t={t_reached:.6g} of "
        f"[{t0:g}, {t1:g}].{hint}"
    )


_STIFF_FIX = (
    "use an implicit solver, `solver=Kvaerno5()` (or `AutoSwitch()` to switch per sample where "
    "it turns stiff)"
)


def _dtmin_message(ctx, t_fail: float, t0: float, t1: float) -> str:
    where = f"at t={t_fail:.6g} (solving from {t0:g} to {t1:g})"
    stiff = (
        f"the problem is stiff there (explicit solvers need tiny steps on stiff problems: "
        f"{_STIFF_FIX}) or the solution is singular there (it blows up, or the field is not "
        "smooth)"
    )
    dtmin = getattr(ctx.controller, "dtmin", None)
    if dtmin:
        return f"the step size fell below dtmin={dtmin:g} {where}: {stiff}; or lower `dtmin`"
    name = str(ctx.t0.dtype).replace("torch.", "")
    text = (
        f"the step size fell to the resolution of {name} times {where}: steps shorter than "
        f"{ctx.resolution * abs(t_fail):.3g} no longer move t there. Either {stiff}"
    )
    if torch.finfo(ctx.t0.dtype).bits < 64:
        return text + (
            f", or {name} times are too coarse for the steps the solution needs (they resolve "
            f"t≈{abs(t_fail):.3g} only to about {torch.finfo(ctx.t0.dtype).eps * abs(t_fail):.2g}): "
            "keep the times in float64 (pass `t0`/`t1` as float64 tensors, e.g. "
            "`torch.tensor(0.0, dtype=torch.float64)`; the state may stay float32)"
        )
    return text + "; loosen rtol/atol"


def _throw_message(sol: Solution, failed: list[int], batched: bool) -> str:
    if not batched:
        status = sol.statuses[0]
        return f"the solve failed ({status.name}): {sol.messages[0]}\n(pass throw=False to get the partial solution and per-sample statuses instead)"
    shown = failed[:5]
    lines = [f"  sample {b} ({Status(int(sol.status[b])).name}): {sol.messages[b]}" for b in shown]
    more = f"\n  ... and {len(failed) - len(shown)} more" if len(failed) > len(shown) else ""
    return (
        f"{len(failed)} of {len(sol.messages)} samples failed:\n"
        + "\n".join(lines)
        + more
        + "\n(pass throw=False to keep the others' results and get per-sample statuses)"
    )
