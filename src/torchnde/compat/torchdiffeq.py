"""torchdiffeq 0.2.5's interface, translated onto :func:`torchnde.solve`.

Switch with one import line::

    from torchnde.compat.torchdiffeq import odeint, odeint_adjoint, odeint_event, odeint_dense

The signatures, defaults (``rtol=1e-7``, ``atol=1e-9``, ``method="dopri5"``), tuple states,
increasing or decreasing ``t`` and output shapes (``(len(t), *y0.shape)``, or a tuple of such) are
torchdiffeq's. Every call runs one or more :func:`torchnde.solve` calls; nothing is solved here.

Methods (torchdiffeq name → torchnde solver):

=================  ==================  ==========================================================
``dopri8``         ``Dopri8``          adaptive
``dopri5``         ``Dopri5``          adaptive (the default)
``bosh3``          ``Bosh3``           adaptive
``fehlberg2``      ``Fehlberg2``       adaptive
``adaptive_heun``  ``HeunEuler``       adaptive
``euler``          ``Euler``           fixed grid
``midpoint``       ``Midpoint``        fixed grid
``heun2``          ``Heun``            fixed grid
``heun3``          ``Heun3``           fixed grid
``rk4``            ``RK38``            fixed grid: torchdiffeq's ``rk4`` is Kutta's 3/8 rule
=================  ==================  ==========================================================

``explicit_adams``, ``implicit_adams`` and ``fixed_adams`` are not available and raise
``ValueError`` naming the nearest method that is. ``scipy_solver`` calls SciPy's ``solve_ivp``
(``options``: ``solver`` — ``"LSODA"`` by default, ``"RK45"``, ``"RK23"``, ``"DOP853"``,
``"Radau"``, ``"BDF"`` — ``min_step``, ``max_step``) on the CPU in float64, forward only as in
torchdiffeq: under :func:`odeint` its values carry no gradient; under :func:`odeint_adjoint` they
get the gradient of torchnde's ``dopri5`` solve at the same tolerances (continuous adjoint),
where torchdiffeq solves its adjoint equation with SciPy too.

Solver callbacks defined on ``func`` are called as torchdiffeq calls them:
``callback_step(t0, y0, dt)`` for every step (every attempt of an adaptive method), then
``callback_accept_step`` or ``callback_reject_step`` with the same arguments (adaptive methods);
the others warn. They are called once the step has been judged (torchdiffeq calls
``callback_step`` before taking it). Under :func:`odeint_adjoint` the backward solve calls
``callback_step_adjoint``, ``callback_accept_step_adjoint`` and ``callback_reject_step_adjoint``
the same way (``BacksolveAdjoint(on_step=...)``), with ``y0`` the augmented state
``(t, y, adj_y, *adj_params)``.

Options of adaptive methods: ``first_step`` (→ ``dt0``), ``step_t`` and ``jump_t`` (→
``PIDController(step_ts=..., jump_ts=...)``), ``safety``, ``ifactor`` (→ ``factormax``),
``dfactor`` (→ ``factormin``), ``min_step`` (→ ``dtmin``), ``max_step`` (→ ``dtmax``),
``max_num_steps`` (→ ``max_steps``), ``dtype`` (the time dtype) and ``norm`` (called, as in
torchdiffeq, on a tensor shaped like ``y0`` or on the tuple state). Options of fixed-grid methods:
``step_size``, ``grid_constructor``, ``interp`` (``"linear"`` or ``"cubic"``) and
``perturb`` (``True``: evaluate ``func`` one ulp inside the step at the grid times, for
fields discontinuous there, as torchdiffeq's ``Perturb`` does, also in ``odeint_adjoint``'s
backward solve). Without ``step_size`` or ``grid_constructor`` a fixed-grid method steps from
each time in ``t`` to the next (``StepTo(t)``), as torchdiffeq does.

Deviations from torchdiffeq, each deliberate:

* **Step sizes of adaptive methods.** Steps come from :class:`torchnde.PIDController` (the same
  integral controller, exponent ``1/order``, safety and growth limits) but its first-step guess
  differs slightly, an accepted step may shrink the next one (torchdiffeq never shrinks after an
  accepted step), and the last step lands exactly on ``t[-1]`` (torchdiffeq steps past it and
  interpolates). Values between steps come from the solver's own dense output (for ``dopri5``
  Hairer's fourth-order extension; torchdiffeq fits its own quartic). Results therefore agree with
  torchdiffeq to within the tolerances, not bit for bit. Fixed-grid methods on the same grid agree
  to rounding; their ``"linear"`` interpolation is torchdiffeq's exactly, and ``"cubic"`` is the
  solver's cubic Hermite interpolant, the same formula.
* **dopri8** is Hairer's DOP853 with its own high-order dense output; torchdiffeq's ``dopri8`` is
  Prince & Dormand's RK8(7)13M, interpolated between its (long) steps by a quartic, which limits
  its output accuracy (about 1e-7 at ``rtol=1e-10`` on a smooth problem, against 1e-13 here).
* **fehlberg2 and adaptive_heun** start each step from ``f(t1, y1)``; torchdiffeq reuses the last
  stage, which for these two (not first-same-as-last) methods is ``f`` at an intermediate state,
  not at ``y1``. So they cost one more evaluation per step here, and are the published methods.
* **max_num_steps.** torchdiffeq bounds the steps between two consecutive output times; here the
  whole solve may take ``max_num_steps * (len(t) - 1)`` steps, the same budget. Its default,
  ``2**31 - 1``, would let a stiff problem run for days: without the option the bound is
  :data:`MAX_NUM_STEPS` (100 000, ten times :data:`torchnde.DEFAULT_MAX_STEPS`: torchdiffeq's
  own tests take 13 000 steps with ``adaptive_heun`` at its default ``rtol=1e-7``) for the whole
  solve. Running out raises
  :class:`torchnde.SolveError` (a ``RuntimeError``), not an ``AssertionError``.
* **min_step.** torchdiffeq silently accepts a step of ``min_step`` whatever its error; here a step
  that would have to shrink below it fails loudly (``SolveError``, ``Status.DTMIN``).
* **Unsupported input raises.** Per-element or per-leaf ``rtol``/``atol`` tensors, tuple states of
  mixed dtypes, and options that the chosen method does not use (torchdiffeq warns and ignores
  those) raise an error that names the option.
* **Events.** The crossing is located on the solver's dense output to floating-point accuracy
  (torchdiffeq bisects to ``atol``; for fixed-grid methods on its linear interpolant by default,
  here always on the cubic Hermite one, so ``interp`` does not move the event). Under plain
  :func:`odeint` the event time is already differentiable (implicit function theorem), which
  torchdiffeq offers only through :func:`odeint_event`. torchdiffeq searches for the event with no
  end time; here adaptive methods search in segments of growing length, starting with
  ``|t[1] - t[0]|`` and doubling, until the event or ``max_num_steps``.
* **odeint_adjoint with event_fn** returns a differentiable event time and the full gradient
  (the event time's own gradient added by the implicit function theorem), which torchdiffeq gives
  only through ``odeint_event(..., odeint_interface=odeint_adjoint)``; torchdiffeq's
  ``odeint_adjoint`` alone holds the event time fixed.
* **odeint_dense** accepts every method, tuple states, decreasing time and a 1-D ``t_eval``; the
  function it returns is valid on ``[t0, t1]`` (torchdiffeq's only for a 0-dim ``t_eval``).
* **jump_t.** The vector field is evaluated at the jump time itself on both sides of it
  (torchdiffeq perturbs the time by one ulp), so a vector field that is discontinuous exactly at
  ``jump_t`` is not yet handled as well as by torchdiffeq; a kink (a jump in a derivative) is.
* **odeint_adjoint** runs :class:`torchnde.BacksolveAdjoint`. A fixed-grid ``adjoint_method``
  steps through the forward pass's grid in reverse (torchdiffeq builds its backward grid from
  ``adjoint_options['step_size']``). Of ``adjoint_options`` it takes ``norm`` and
  ``max_num_steps``: ``norm`` is torchdiffeq's — by default the largest of ``|t|``, the state
  norm of ``y`` and of ``adj_y`` and the RMS of each parameter gradient, ``'seminorm'`` without
  the parameter gradients, or a callable on the tuple ``(t, y, adj_y, *adj_params)`` (a tuple
  state split into its tensors) — and is exposed, and replaceable before ``backward``, as
  ``out.grad_fn.adjoint_options['norm']``. The ``t`` entry (the adjoint of time) is always 0:
  torchnde computes time gradients apart from the backward solve. Other adjoint options raise;
  inherited from ``options`` (the default) they shape the forward solve only, with a warning.
  ``adjoint_params=None`` works for any ``func`` (torchnde finds the tensors it uses); explicit
  ``adjoint_params`` that miss a tensor ``func`` uses raise instead of losing its gradient.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .. import (
    AbstractAdjoint,
    AbstractController,
    AbstractSolver,
    BacksolveAdjoint,
    ConstantStepSize,
    DirectAdjoint,
    Event,
    PIDController,
    SaveAt,
    Solution,
    SolveError,
    Status,
    StepTo,
    solve,
)
from .. import ODETerm as _ODETerm
from .. import solvers as _solvers
from .._errors import check_finite_time

__all__ = ["odeint", "odeint_adjoint", "odeint_dense", "odeint_event"]

#: torchdiffeq method name → (torchnde solver class name, adaptive?)
METHODS: dict[str, tuple[str, bool]] = {
    "dopri8": ("Dopri8", True),
    "dopri5": ("Dopri5", True),
    "bosh3": ("Bosh3", True),
    "fehlberg2": ("Fehlberg2", True),
    "adaptive_heun": ("HeunEuler", True),
    "euler": ("Euler", False),
    "midpoint": ("Midpoint", False),
    "heun2": ("Heun", False),
    "heun3": ("Heun3", False),
    "rk4": ("RK38", False),
}

_ADAMS = (
    "the Adams multistep methods are not available in torchnde; use method='rk4' (fixed grid, "
    "fourth order, with options={'step_size': ...}) or the adaptive method='dopri5'"
)
_UNSUPPORTED: dict[str, str] = {
    "explicit_adams": _ADAMS,
    "implicit_adams": _ADAMS,
    "fixed_adams": _ADAMS,
}

#: SciPy's ``solve_ivp``, forward only, as torchdiffeq offers it
SCIPY = "scipy_solver"
_SCIPY_OPTIONS = ("solver", "min_step", "max_step")
_SCIPY_SOLVERS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")

_ADAPTIVE_OPTIONS = (
    "first_step",
    "step_t",
    "jump_t",
    "safety",
    "ifactor",
    "dfactor",
    "min_step",
    "max_step",
    "max_num_steps",
    "dtype",
    "norm",
)
_FIXED_OPTIONS = ("step_size", "grid_constructor", "interp", "perturb")
_CALLBACKS = (
    "callback_step",
    "callback_accept_step",
    "callback_reject_step",
    "callback_step_adjoint",
    "callback_accept_step_adjoint",
    "callback_reject_step_adjoint",
)

#: the step bound of a whole solve without ``options['max_num_steps']`` (torchdiffeq's is
#: ``2**31 - 1`` per interval of ``t``: a stiff problem would run for days)
MAX_NUM_STEPS = 100_000

#: torchdiffeq's limit on the steps a fixed-grid method takes while looking for an event
_FIXED_EVENT_STEPS = 20_000


# ------------------------------------------------------------------------------------------------
# checking and translating the arguments


@dataclass
class _Problem:
    """One torchdiffeq call, checked and translated."""

    func: Callable
    term: _ODETerm
    y0: Any  # a tensor or a tuple of tensors
    shapes: tuple[torch.Size, ...] | None  # None for a tensor state
    real_dtype: torch.dtype
    method: str
    solver: AbstractSolver | None  # None for method='scipy_solver'
    adaptive: bool
    options: dict[str, Any]
    rtol: float
    atol: float
    callbacks: dict[str, Any]  # the callbacks of func the solve calls

    def leaves(self, tree: Any) -> tuple[torch.Tensor, ...]:
        return (tree,) if self.shapes is None else tuple(tree)

    def tree(self, leaves: Any) -> Any:
        leaves = tuple(leaves)
        return leaves[0] if self.shapes is None else leaves


def _method(method: Any) -> tuple[str, AbstractSolver, bool]:
    name = "dopri5" if method is None else method
    if name == SCIPY:
        return name, None, True
    if name in _UNSUPPORTED:
        raise ValueError(f"method={name!r}: {_UNSUPPORTED[name]}")
    if name not in METHODS:
        known = ", ".join(repr(m) for m in (*METHODS, SCIPY, *_UNSUPPORTED))
        raise ValueError(f"Invalid method {name!r}: `method` must be one of {known}")
    cls_name, adaptive = METHODS[name]
    cls = getattr(_solvers, cls_name, None)
    if cls is None:
        raise ValueError(
            f"method={name!r} needs torchnde.{cls_name}, which this version of torchnde lacks; "
            "use method='dopri5'"
        )
    return name, cls(), adaptive


def _check_options(method: str, adaptive: bool, options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"`options` must be a dict or None, got {type(options).__name__}")
    options = dict(options)
    if method == SCIPY:
        return _check_scipy_options(options)
    own, other = (
        (_ADAPTIVE_OPTIONS, _FIXED_OPTIONS) if adaptive else (_FIXED_OPTIONS, _ADAPTIVE_OPTIONS)
    )
    kind = "adaptive" if adaptive else "fixed-grid"
    for key in options:
        if key in own:
            continue
        if key in other:
            hint = (
                "set the first step with options={'first_step': ...}, or pick a fixed-grid method "
                "such as method='rk4'"
                if adaptive
                else "pick an adaptive method such as method='dopri5' to use it"
            )
            raise ValueError(
                f"options[{key!r}] has no meaning for the {kind} method {method!r} (torchdiffeq "
                f"would ignore it with a warning); {hint}"
            )
        raise ValueError(
            f"unknown option {key!r} for method {method!r}; the {kind} methods accept "
            f"{', '.join(own)}"
        )
    if not isinstance(options.get("perturb", False), bool):
        raise TypeError(f"options['perturb'] must be True or False, got {options['perturb']!r}")
    interp = options.get("interp", "linear")
    if interp not in ("linear", "cubic"):
        raise ValueError(f"options['interp'] must be 'linear' or 'cubic', got {interp!r}")
    if "step_size" in options and "grid_constructor" in options:
        raise ValueError(
            "options 'step_size' and 'grid_constructor' are mutually exclusive; give one of them"
        )
    return options


def _check_scipy_options(options: dict[str, Any]) -> dict[str, Any]:
    options.pop("norm", None)  # torchdiffeq drops it too: SciPy measures errors its own way
    for key in options:
        if key not in _SCIPY_OPTIONS:
            raise ValueError(
                f"unknown option {key!r} for method='scipy_solver'; it accepts "
                f"{', '.join(_SCIPY_OPTIONS)} (options={{'solver': 'LSODA'}} by default)"
            )
    solver = options.get("solver", "LSODA")
    if solver not in _SCIPY_SOLVERS:
        raise ValueError(
            f"options['solver']={solver!r} is not one of SciPy's solve_ivp methods "
            f"{', '.join(_SCIPY_SOLVERS)}"
        )
    return options


def _check_y0(y0: Any) -> tuple[torch.Size, ...] | None:
    if isinstance(y0, torch.Tensor):
        return None
    if not isinstance(y0, tuple) or not all(isinstance(leaf, torch.Tensor) for leaf in y0):
        raise TypeError(
            f"`y0` must be a tensor or a tuple of tensors, got {type(y0).__name__}; "
            "convert it with `torch.as_tensor(...)` or `tuple(...)`"
        )
    if not y0:
        raise ValueError("`y0` is an empty tuple; give at least one tensor")
    return tuple(leaf.shape for leaf in y0)


def _tolerance(name: str, value: Any) -> float:
    if isinstance(value, torch.Tensor):
        if value.requires_grad:
            raise ValueError(f"`{name}` cannot require gradient")
        if value.numel() != 1:
            raise ValueError(
                f"`{name}` holds {value.numel()} values, but torchnde takes one tolerance for the "
                "whole state; pass a float, or rescale the state's components"
            )
        return float(value)
    if isinstance(value, (tuple, list)):
        raise ValueError(
            f"`{name}` is a {type(value).__name__} (one tolerance per tensor of the state), but "
            "torchnde takes one tolerance for the whole state; pass a float, or rescale the state"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a float, got {type(value).__name__}")
    return float(value)


def _vector_field(
    func: Callable, real_dtype: torch.dtype, dtypes: tuple[torch.dtype, ...] | None
) -> Callable:
    """``func(t, y)`` as ``f(t, y, args)``; like torchdiffeq, ``t`` arrives in ``y``'s dtype.

    For a tuple state (``dtypes``: its tensors' dtypes) the tensors reach ``func`` in their own
    dtypes, as in torchdiffeq, whatever dtype the solve carries the state in (torchnde promotes a
    tuple state with float64 times to float64), and the output goes back in the solve's dtype."""

    def f(t, y, args):
        if dtypes is None:
            return func(t.to(real_dtype), y)
        out = func(t.to(real_dtype), tuple(leaf.to(d) for leaf, d in zip(y, dtypes)))
        return tuple(o.to(leaf.dtype) for o, leaf in zip(out, y))

    f.__name__ = getattr(func, "__name__", type(func).__name__)
    return f


def _setup(func, y0, rtol, atol, method, options) -> _Problem:
    if not callable(func):
        raise TypeError(f"`func` must be callable as func(t, y), got {type(func).__name__}")
    shapes = _check_y0(y0)
    name, solver, adaptive = _method(method)
    options = _check_options(name, adaptive, options)
    callbacks = _callbacks(func, name, adaptive)
    first = y0 if shapes is None else y0[0]
    real_dtype = first.abs().dtype if first.is_complex() else first.dtype
    dtypes = None if shapes is None else tuple(leaf.dtype for leaf in y0)
    term = _ODETerm(_vector_field(func, real_dtype, dtypes))
    return _Problem(
        func=func,
        term=term,
        y0=y0,
        shapes=shapes,
        real_dtype=real_dtype,
        method=name,
        solver=solver,
        adaptive=adaptive,
        options=options,
        rtol=_tolerance("rtol", rtol),
        atol=_tolerance("atol", atol),
        callbacks=callbacks,
    )


def _callbacks(func: Callable, method: str, adaptive: bool) -> dict[str, Any]:
    """The forward-solve callbacks ``func`` defines that ``method`` calls (torchdiffeq warns about
    the others); :func:`_backsolve` takes the backward-solve ones (:func:`odeint` ignores them, as
    torchdiffeq does)."""
    found = {name: getattr(func, name) for name in _CALLBACKS[:3] if hasattr(func, name)}
    return _used_callbacks(found, method, adaptive, "", stacklevel=6)


def _used_callbacks(
    found: dict[str, Any], method: str, adaptive: bool, suffix: str, stacklevel: int
) -> dict[str, Any]:
    """Of the callbacks ``found``, those ``method`` calls; the others warn, as in torchdiffeq."""
    used = tuple(
        name + suffix for name in ("callback_step", "callback_accept_step", "callback_reject_step")
    )
    if method == SCIPY:
        used = ()
    elif not adaptive:
        used = used[:1]
    for name in found:
        if name not in used:
            warnings.warn(
                f"Solver {method!r} does not support callback {name!r}; it is not called",
                stacklevel=stacklevel,
            )
    return {name: fn for name, fn in found.items() if name in used}


def _check_t(t: Any, device: torch.device) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"`t` must be a 1-D tensor of times, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"`t` must be a floating point tensor but is {t.dtype}; use `t.double()`")
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"`t` must be a non-empty 1-D tensor of times, got shape {tuple(t.shape)}")
    check_finite_time("t", t)
    if t.numel() > 1:
        steps = t.detach().diff()
        if not (bool((steps > 0).all()) or bool((steps < 0).all())):
            i = int(torch.nonzero(steps * steps[0].sign() <= 0)[0])
            raise ValueError(
                f"`t` must be strictly increasing or decreasing, but t[{i}]={t[i].item():g} and "
                f"t[{i + 1}]={t[i + 1].item():g}; sort it with `t.sort()` and drop repeated times"
            )
    if t.device != device:
        warnings.warn("t is not on the same device as y0. Coercing to y0.device.", stacklevel=3)
        t = t.to(device)
    return t


def _device(p: _Problem) -> torch.device:
    return p.leaves(p.y0)[0].device


# ------------------------------------------------------------------------------------------------
# adaptive methods: the controller


def _split(x: torch.Tensor, shapes: tuple[torch.Size, ...]) -> tuple[torch.Tensor, ...]:
    """A flat ``(n,)`` tensor as the tuple state."""
    sizes = [math.prod(s) for s in shapes]
    return tuple(part.reshape(s) for part, s in zip(x.split(sizes), shapes))


def _norm(p: _Problem) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """torchdiffeq's error norm as a norm on torchnde's flat ``(1, n)`` scaled error."""
    user = p.options.get("norm")
    if user is None and p.shapes is None:
        return None  # torchnde's RMS norm is torchdiffeq's default for a tensor state
    if user is not None and not callable(user):
        hint = "; 'seminorm' is an adjoint option: pass it in `adjoint_options`"
        raise TypeError(
            "options['norm'] must be a callable taking the state (a tensor, or the tuple of "
            f"tensors), got {user!r}" + (hint if user == "seminorm" else "")
        )
    shapes = p.shapes
    if user is None:  # torchdiffeq's default for a tuple state: the largest RMS of its tensors
        sizes = [math.prod(s) for s in shapes]

        def mixed(x: torch.Tensor) -> torch.Tensor:
            parts = [part for part, size in zip(x.split(sizes, dim=1), sizes) if size]
            return torch.stack([part.abs().pow(2).mean(dim=1).sqrt() for part in parts], 1).amax(1)

        return mixed
    shape = p.y0.shape if shapes is None else None

    def norm(x: torch.Tensor) -> torch.Tensor:
        state = x[0].reshape(shape) if shapes is None else _split(x[0], shapes)
        value = torch.as_tensor(user(state), device=x.device)
        return value.real.to(x.real.dtype).reshape(1)

    return norm


def _number(name: str, value: Any, low: float, high: float = math.inf) -> float:
    """``options[name]`` as a float in ``[low, high)``."""
    try:
        number = float(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"options[{name!r}] must be a number, got {value!r}") from None
    if math.isnan(number) or number < low or (number >= high and math.isfinite(high)):
        bound = f"in [{low:g}, {high:g})" if math.isfinite(high) else f"≥ {low:g}"
        raise ValueError(f"options[{name!r}] must be {bound}, got {number:g}")
    return number


def _times(name: str, value: Any) -> torch.Tensor:
    times = torch.as_tensor(value).detach().to(torch.float64).reshape(-1)
    if not bool(torch.isfinite(times).all()):
        raise ValueError(f"options[{name!r}] must hold finite times")
    return times


def _controller(p: _Problem) -> PIDController:
    """``PIDController`` from the tolerances and the adaptive options."""
    o = p.options
    kwargs: dict[str, Any] = {"rtol": p.rtol, "atol": p.atol, "norm": _norm(p)}
    if "safety" in o:
        kwargs["safety"] = _number("safety", o["safety"], 1e-12)
    if "ifactor" in o:
        kwargs["factormax"] = _number("ifactor", o["ifactor"], 1.0)
    if "dfactor" in o:
        kwargs["factormin"] = _number("dfactor", o["dfactor"], 0.0, 1.0)
    if "min_step" in o and _number("min_step", o["min_step"], 0.0) > 0:
        kwargs["dtmin"] = float(o["min_step"])
    if "max_step" in o:
        max_step = _number("max_step", o["max_step"], 1e-300)
        if math.isfinite(max_step):
            kwargs["dtmax"] = max_step
    for option, key in (("step_t", "step_ts"), ("jump_t", "jump_ts")):
        if o.get(option) is not None:
            kwargs[key] = _times(option, o[option])
    return PIDController(**kwargs)


def _first_step(p: _Problem, sign: float) -> float | None:
    if p.options.get("first_step") is None:
        return None
    return sign * _number("first_step", p.options["first_step"], 1e-300)


def _max_steps(p: _Problem, intervals: int) -> int:
    """torchdiffeq's per-interval ``max_num_steps`` as a bound on the whole solve."""
    value = p.options.get("max_num_steps")
    if value is None:
        return MAX_NUM_STEPS
    number = _number("max_num_steps", value, 1.0)
    if isinstance(value, bool) or not number.is_integer():
        raise ValueError(f"options['max_num_steps'] must be a positive int, got {value!r}")
    return int(min(number, 2**62)) * max(intervals, 1)


def _time_dtype(p: _Problem) -> torch.dtype:
    """Adaptive methods keep time in ``options['dtype']`` (float64 by default), as torchdiffeq."""
    dtype = p.options.get("dtype", torch.float64)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"options['dtype'] must be a floating torch.dtype, got {dtype!r}")
    return torch.promote_types(dtype, p.real_dtype)


# ------------------------------------------------------------------------------------------------
# running solve


def _run(p: _Problem, t0, t1, y0, *, throw: bool = True, **kwargs: Any) -> Solution:
    """``torchnde.solve`` on the problem; a failure's message says which option to change."""
    if p.callbacks and "controller" in kwargs:
        kwargs["controller"] = _Observed(kwargs["controller"], p, _sign(torch.stack([t0, t1])))
    try:
        return solve(p.term, p.solver, t0, t1, y0, throw=throw, **kwargs)
    except SolveError as err:
        raise SolveError(_hinted(p, str(err), err.solution), err.solution, err.failed) from None


class _Observed(AbstractController):
    """A controller that calls torchdiffeq's solver callbacks on ``func`` after each attempted
    step: ``callback_step(t0, y0, dt)``, then ``callback_accept_step`` or
    ``callback_reject_step`` with the same arguments, in the user's time and state layout.

    ``inner`` judges the steps; this only observes (torchdiffeq calls ``callback_step`` before the
    step is taken, here it comes after, with the same arguments)."""

    supports_compile = False  # Python callbacks

    def __init__(self, inner: AbstractController, p: _Problem, sign: float):
        self.inner, self.p, self.sign = inner, p, sign

    @property
    def adaptive(self) -> bool:  # type: ignore[override]
        return self.inner.adaptive

    @property
    def supports_host(self) -> bool:  # type: ignore[override]
        return self.inner.supports_host

    def check(self, solver):
        return self.inner.check(solver)

    def stops(self, problem, dtype, device):
        return self.inner.stops(problem, dtype, device)

    def init(self, problem, solver, t0, t1, y0, dt0, solver_state):
        return self.inner.init(problem, solver, t0, t1, y0, dt0, solver_state)

    def adapt(self, solver, t0, t1, y0, result, state, clipped, finite):
        out = self.inner.adapt(solver, t0, t1, y0, result, state, clipped, finite)
        accept = out[0]
        p, sign = self.p, self.sign
        start = torch.as_tensor(t0, dtype=torch.float64).reshape(-1)[0] * sign
        dt = (torch.as_tensor(t1, dtype=torch.float64).reshape(-1)[0] * sign) - start
        flat = y0.detach().reshape(-1)
        state_ = flat.reshape(p.y0.shape) if p.shapes is None else _split(flat, p.shapes)
        user_t, user_dt = start.to(p.real_dtype), dt.to(p.real_dtype)
        if "callback_step" in p.callbacks:
            p.callbacks["callback_step"](user_t, state_, user_dt)
        name = (
            "callback_accept_step"
            if bool(torch.as_tensor(accept).all())
            else "callback_reject_step"
        )
        if name in p.callbacks:
            p.callbacks[name](user_t, state_, user_dt)
        return out


def _hinted(p: _Problem, message: str, sol: Solution) -> str:
    if Status.MAX_STEPS in sol.statuses:
        message += (
            "\n(torchnde.compat.torchdiffeq: raise the bound with options={'max_num_steps': N}, "
            "N steps per interval of `t`)"
        )
    if Status.DTMIN in sol.statuses and "min_step" in p.options:
        message += "\n(torchnde.compat.torchdiffeq: options['min_step'] sets dtmin)"
    return message


def _last(p: _Problem, ys: Any) -> Any:
    return p.tree(leaf[-1] for leaf in p.leaves(ys))


def _sign(t: torch.Tensor) -> float:
    return -1.0 if t.numel() > 1 and bool(t[1] < t[0]) else 1.0


def _solve_adaptive(p: _Problem, t: torch.Tensor, adjoint: AbstractAdjoint) -> Any:
    tt = t.to(_time_dtype(p))
    sol = _run(
        p,
        tt[0],
        tt[-1],
        p.y0,
        saveat=SaveAt(ts=tt),
        controller=_controller(p),
        dt0=_first_step(p, _sign(t)),
        max_steps=_max_steps(p, len(t) - 1),
        adjoint=adjoint,
    )
    return sol.ys


# ------------------------------------------------------------------------------------------------
# fixed-grid methods


def _grid(p: _Problem, t: torch.Tensor) -> torch.Tensor:
    """The times the fixed-grid method steps on, built as torchdiffeq builds them."""
    o = p.options
    if o.get("step_size") is not None:
        h = _number("step_size", o["step_size"], 1e-300)
        sign = _sign(t)
        tau0, tau1 = sign * t[0], sign * t[-1]
        count = int(torch.ceil((tau1 - tau0).detach() / h + 1).item())
        grid = torch.arange(0, count, dtype=t.dtype, device=t.device) * h + tau0
        return sign * torch.cat([grid[:-1], tau1.reshape(1)])
    if o.get("grid_constructor") is not None:
        grid = o["grid_constructor"](p.func, p.y0, t)
        if not isinstance(grid, torch.Tensor) or grid.ndim != 1 or grid.numel() < 2:
            raise ValueError(
                "options['grid_constructor'] must return a 1-D tensor of at least two times, got "
                f"{type(grid).__name__}"
                + (f" of shape {tuple(grid.shape)}" if isinstance(grid, torch.Tensor) else "")
            )
        if bool(grid[0] != t[0]) or bool(grid[-1] != t[-1]):
            raise ValueError(
                f"options['grid_constructor'] returned a grid from {grid[0].item():g} to "
                f"{grid[-1].item():g}, but it must start at t[0]={t[0].item():g} and end at "
                f"t[-1]={t[-1].item():g}"
            )
        return grid.to(t.device)
    return t


#: the fixed-grid methods with a stage at the end of the step (``c = 1``)
_END_STAGE = ("heun2", "rk4")


class _Perturbed:
    """torchdiffeq's ``perturb=True``: ``func`` evaluated one ulp inside the current step at the
    grid times, so a vector field discontinuous there is sampled on the step's own side.

    A stage at a grid time ``g`` is the step's start (moved forwards, in the direction of travel)
    unless the method has an end stage (``c = 1``) and the previous evaluation was elsewhere:
    then it is that step's end (moved back towards it). The direction of travel is read from
    consecutive evaluations, so the backward solve of :func:`odeint_adjoint`, which steps through
    the same grid in reverse, is perturbed the same way."""

    def __init__(self, f: Callable, grid: torch.Tensor, dtype: torch.dtype, end_stage: bool):
        self.f, self.end_stage, self.dtype = f, end_stage, dtype
        times = grid.detach().to(dtype).tolist()
        self.index = {g: i for i, g in enumerate(times)}
        self.times = times
        self.last: float | None = None
        self.direction = 1.0 if times[-1] > times[0] else -1.0
        self.__name__ = getattr(f, "__name__", "func")

    def _towards(self, s: float, k: int) -> float:
        if k == 0 or k == len(self.times) - 1:
            return self.times[1 if k == 0 else -2] - s
        if self.end_stage and self.last is not None and self.last != s:
            return self.last - s  # the end stage of the step just taken
        return self.direction

    def __call__(self, t, y, args):
        s = float(t.to(self.dtype))
        k = self.index.get(s)
        if self.last is not None and s != self.last:
            self.direction = math.copysign(1.0, s - self.last)
        if k is not None:
            towards = self._towards(s, k)
            t = torch.nextafter(t.to(self.dtype), t.to(self.dtype) + math.copysign(1.0, towards))
        self.last = s
        return self.f(t, y, args)


def _solve_grid(p: _Problem, t: torch.Tensor, adjoint: AbstractAdjoint) -> Any:
    grid = _grid(p, t)
    if p.options.get("perturb", False):
        field = _Perturbed(p.term.f, grid, p.real_dtype, p.method in _END_STAGE)
        p.term = _ODETerm(field)
    run = {"controller": StepTo(grid), "max_steps": len(grid) - 1, "adjoint": adjoint}
    if p.options.get("interp", "linear") == "cubic":
        # the solver's interpolant is the cubic Hermite one torchdiffeq uses
        return _run(p, t[0], t[-1], p.y0, saveat=SaveAt(ts=t), **run).ys
    # torchdiffeq's linear interpolation between the two grid values around each output time
    sign = _sign(t)
    hi = torch.searchsorted((sign * grid).detach(), (sign * t).detach(), right=False)
    hi = hi.clamp(1, len(grid) - 1)
    lo = hi - 1
    need = torch.unique(torch.cat([lo, hi]))
    ys = _run(p, t[0], t[-1], p.y0, saveat=SaveAt(ts=grid[need]), **run).ys
    at_lo, at_hi = torch.searchsorted(need, lo), torch.searchsorted(need, hi)
    slope = (t - grid[lo]) / (grid[hi] - grid[lo])
    exact = t == grid[hi]
    out = []
    for leaf in p.leaves(ys):
        shape = (-1, *([1] * (leaf.ndim - 1)))
        y_lo, y_hi = leaf[at_lo], leaf[at_hi]
        value = y_lo + slope.to(leaf.dtype).reshape(shape) * (y_hi - y_lo)
        out.append(torch.where(exact.reshape(shape), y_hi, value))
    return p.tree(out)


# ------------------------------------------------------------------------------------------------
# SciPy


def _solve_scipy(p: _Problem, t: torch.Tensor) -> Any:
    """``scipy.integrate.solve_ivp`` on the flattened state, on the CPU in float64 (complex128 for
    a complex state), ``func`` called without a graph: the values carry no gradient, as in
    torchdiffeq (``odeint_adjoint`` adds one, see :func:`_scipy_adjoint`)."""
    try:
        from scipy.integrate import solve_ivp
    except ImportError:  # pragma: no cover - scipy is a dependency of the dev extra
        raise ImportError(
            "method='scipy_solver' needs SciPy: `pip install scipy`, or use method='dopri5'"
        ) from None
    leaves = p.leaves(p.y0)
    device, shapes = leaves[0].device, [leaf.shape for leaf in leaves]
    wide = torch.complex128 if any(leaf.is_complex() for leaf in leaves) else torch.float64
    y0 = torch.cat([leaf.detach().reshape(-1).to(wide) for leaf in leaves]).cpu().numpy()

    def fun(s, y):
        flat = torch.from_numpy(y).to(device)
        parts = _split(flat, shapes) if p.shapes is not None else (flat.reshape(shapes[0]),)
        state = p.tree(part.to(leaf.dtype) for part, leaf in zip(parts, leaves))
        with torch.no_grad():
            out = p.func(torch.tensor(s, dtype=p.real_dtype, device=device), state)
        out = p.leaves(tuple(out) if isinstance(out, list) else out)
        return torch.cat([o.reshape(-1).to(wide) for o in out]).cpu().numpy()

    o = p.options
    kwargs = {"max_step": _number("max_step", o.get("max_step", math.inf), 0.0)}
    solver = o.get("solver", "LSODA")
    if solver == "LSODA":  # the other methods have no minimum step (SciPy would warn)
        kwargs["min_step"] = _number("min_step", o.get("min_step", 0.0), 0.0)
    times = t.detach().to(torch.float64).cpu().numpy()
    sol = solve_ivp(
        fun,
        (times[0], times[-1]),
        y0,
        t_eval=times,
        method=solver,
        rtol=p.rtol,
        atol=p.atol,
        **kwargs,
    )
    if not sol.success:
        raise RuntimeError(
            f"method='scipy_solver' ({solver}) failed: {sol.message}; try another "
            "options['solver'] or method='dopri5'"
        )
    values = torch.from_numpy(sol.y.T.copy()).to(device)  # (len(t), n)
    return p.tree(_columns(values, shapes, i).to(leaf.dtype) for i, leaf in enumerate(leaves))


def _columns(values: torch.Tensor, shapes: list[torch.Size], i: int) -> torch.Tensor:
    """Leaf ``i`` of a tuple state from flat ``values: (times, n)``."""
    start = sum(math.prod(s) for s in shapes[:i])
    return values[:, start : start + math.prod(shapes[i])].reshape(len(values), *shapes[i])


def _scipy_adjoint(func, y0, t, rtol, atol, options, adjoint_kwargs) -> Any:
    """``odeint_adjoint(method='scipy_solver')``: SciPy's values, with the gradient of torchnde's
    ``dopri5`` solve at the same tolerances under the continuous adjoint (torchdiffeq solves its
    adjoint equation with SciPy too). The torchnde solve runs only when a gradient is wanted."""
    values = odeint(func, y0, t, rtol=rtol, atol=atol, method=SCIPY, options=options)
    leaves = (y0,) if isinstance(y0, torch.Tensor) else tuple(y0)
    wants = torch.is_grad_enabled() and (
        t.requires_grad
        or any(leaf.requires_grad for leaf in leaves)
        or (isinstance(func, torch.nn.Module) and any(q.requires_grad for q in func.parameters()))
        or adjoint_kwargs.get("adjoint_params") is not None
    )
    if not wants:
        return values
    if adjoint_kwargs.get("adjoint_method") in (None, SCIPY):
        adjoint_kwargs = {**adjoint_kwargs, "adjoint_method": "dopri5", "adjoint_options": {}}
    graph = odeint_adjoint(func, y0, t, rtol=rtol, atol=atol, method="dopri5", **adjoint_kwargs)
    if isinstance(values, torch.Tensor):
        return graph + (values - graph).detach()
    return tuple(g + (v - g).detach() for g, v in zip(graph, values))


# ------------------------------------------------------------------------------------------------
# events


def _event(p: _Problem, t: torch.Tensor, event_fn: Callable, adjoint: AbstractAdjoint):
    """Solve from ``t[0]`` until ``event_fn`` changes sign; ``t[1]`` only gives the direction."""
    if len(t) != 2:
        raise ValueError(
            f"We require len(t) == 2 when in event handling mode, but got len(t)={len(t)}; pass "
            "t=torch.tensor([t0, t0 + 1.0]) (only the direction of t[1] matters)"
        )
    if not callable(event_fn):
        raise TypeError(f"`event_fn` must be callable as event_fn(t, y), got {event_fn!r}")
    with torch.no_grad():  # torchdiffeq's combination: every component starts positive
        signs = torch.sign(event_fn(t[0], p.y0))
    cast = None if p.adaptive else p.real_dtype

    def cond(s, y, args):
        return torch.min(event_fn(s if cast is None else s.to(cast), y) * signs)

    cond.__name__ = getattr(event_fn, "__name__", type(event_fn).__name__)
    sign = _sign(t)
    if bool(cond(t[0], p.y0, None) == 0):
        y_event = p.y0
        event_t = t[0]
    elif isinstance(adjoint, BacksolveAdjoint):
        # as torchdiffeq: find the event without a graph, then differentiate the solve up to it
        # with the event time held fixed (odeint_event adds the event time's gradient)
        with torch.no_grad():
            event_t, _ = _until_event(p, t, sign, Event(cond), DirectAdjoint())
        y_event = _solve_to(p, t[0], event_t, sign, adjoint)
    else:
        event_t, y_event = _until_event(p, t, sign, Event(cond), adjoint)
    solution = p.tree(
        torch.stack([a, b.to(a.dtype)]) for a, b in zip(p.leaves(p.y0), p.leaves(y_event))
    )
    return event_t.to(t.dtype), solution


def _until_event(p, t, sign, event, adjoint):
    if p.adaptive:
        return _adaptive_until_event(p, t.to(_time_dtype(p)), sign, event, adjoint)
    return _fixed_until_event(p, t, sign, event, adjoint)


def _solve_to(p, t0, t1, sign, adjoint):
    """The state at ``t1`` (the event time), solved with the same controller as the search."""
    if p.adaptive:
        tdtype = _time_dtype(p)
        t0, t1 = t0.to(tdtype), t1.to(tdtype)
        run = {"controller": _controller(p), "dt0": _first_step(p, sign)}
        run["max_steps"] = _max_steps(p, 1)
    else:
        h = _number("step_size", p.options["step_size"], 1e-300)
        run = {"controller": ConstantStepSize(), "dt0": sign * h, "max_steps": _FIXED_EVENT_STEPS}
    sol = _run(p, t0, t1, p.y0, saveat=SaveAt(t1=True), adjoint=adjoint, **run)
    return _last(p, sol.ys)


def _adaptive_until_event(p, t, sign, event, adjoint):
    """Segments of growing length (``|t[1] - t[0]|``, doubled each time) until the event."""
    controller = _controller(p)
    budget = _max_steps(p, 1)
    dt0 = _first_step(p, sign)
    start, span, y, used = t[0], (t[1] - t[0]).detach().abs(), p.y0, 0
    while True:
        end = start + sign * span
        sol = _run(
            p,
            start,
            end,
            y,
            saveat=SaveAt(t1=True),
            controller=controller,
            dt0=dt0,
            max_steps=budget - used,
            adjoint=adjoint,
            event=event,
            throw=False,
        )
        y = _last(p, sol.ys)
        status = sol.statuses[0]
        if status is Status.EVENT:
            return sol.event_t, y
        used += int(sol.stats["num_steps"])
        if status is not Status.SUCCESS:
            text = f"the solve failed ({status.name}) before the event: {sol.messages[0]}"
            raise SolveError(_hinted(p, text, sol), sol, [0])
        if used >= budget:
            text = (
                f"event_fn did not change sign within {budget} steps (reached t={end.item():g}); "
                "check the event function, or raise options={'max_num_steps': N}"
            )
            raise SolveError(text, sol, [0])
        start, span, dt0 = end, 2 * span, None


def _fixed_until_event(p, t, sign, event, adjoint):
    """torchdiffeq's fixed-grid event search: steps of ``step_size``, at most 20000 of them."""
    if p.options.get("step_size") is None:
        raise ValueError(
            f"event handling with the fixed-grid method {p.method!r} needs "
            "options={'step_size': ...}; or use an adaptive method such as method='dopri5'"
        )
    h = _number("step_size", p.options["step_size"], 1e-300)
    sol = _run(
        p,
        t[0],
        t[0] + sign * _FIXED_EVENT_STEPS * h,
        p.y0,
        saveat=SaveAt(t1=True),
        controller=ConstantStepSize(),
        dt0=sign * h,
        max_steps=_FIXED_EVENT_STEPS,
        adjoint=adjoint,
        event=event,
    )
    if sol.statuses[0] is not Status.EVENT:
        raise SolveError(
            f"Reached maximum number of iterations {_FIXED_EVENT_STEPS}: event_fn did not change "
            f"sign within {_FIXED_EVENT_STEPS} steps of step_size={h:g}; check the event "
            "function, or use a larger step_size or an adaptive method",
            sol,
            [0],
        )
    return sol.event_t, _last(p, sol.ys)


# ------------------------------------------------------------------------------------------------
# the public functions


def _odeint(func, y0, t, rtol, atol, method, options, event_fn, adjoint: AbstractAdjoint):
    p = _setup(func, y0, rtol, atol, method, options)
    t = _check_t(t, _device(p))
    if p.method == SCIPY and event_fn is not None:
        raise ValueError(
            "method='scipy_solver' does not locate events (nor does torchdiffeq's); use "
            "method='dopri5' with event_fn"
        )
    if event_fn is not None:
        return _event(p, t, event_fn, adjoint)
    if len(t) == 1:
        return p.tree(leaf[None].clone() for leaf in p.leaves(p.y0))
    if p.method == SCIPY:
        return _solve_scipy(p, t)
    ys = _solve_adaptive(p, t, adjoint) if p.adaptive else _solve_grid(p, t, adjoint)
    return _user_dtypes(p, ys)


def _user_dtypes(p: _Problem, ys: Any) -> Any:
    """The solution's tensors in ``y0``'s dtypes (a tuple state may come back promoted)."""
    if p.shapes is None:
        return ys
    return tuple(y.to(leaf.dtype) for y, leaf in zip(ys, p.y0))


def odeint(
    func: Callable,
    y0: torch.Tensor | tuple[torch.Tensor, ...],
    t: torch.Tensor,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str | None = None,
    options: dict[str, Any] | None = None,
    event_fn: Callable | None = None,
) -> Any:
    """Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0``, and return ``y`` at every time in ``t``.

    torchdiffeq's ``odeint``; gradients flow by backpropagation through the solver's operations
    (:class:`torchnde.DirectAdjoint`).

    Args:
        func: ``func(t, y)`` with ``t`` a 0-dim tensor (in ``y``'s real dtype) and ``y`` shaped
            like ``y0``; returns ``dy/dt`` of the same shape (a tuple for a tuple state).
        y0: the initial state, a tensor or a tuple of tensors of one dtype.
        t: 1-D tensor of output times, strictly increasing or decreasing; ``t[0]`` is the start.
        rtol, atol: relative and absolute tolerances (adaptive methods), scalars.
        method: see the module's table; ``None`` means ``"dopri5"``.
        options: the method's options (see the module docstring).
        event_fn: ``event_fn(t, y) → tensor``: solve from ``t[0]`` until any component changes
            sign (``t`` must have two entries; ``t[1]`` only sets the direction).

    Returns:
        ``y`` shaped ``(len(t), *y0.shape)`` (a tuple of such for a tuple state); with
        ``event_fn``, ``(event_t, y)`` where ``y`` holds the states at ``t[0]`` and ``event_t``.
    """
    return _odeint(func, y0, t, rtol, atol, method, options, event_fn, DirectAdjoint())


def odeint_dense(
    func: Callable,
    y0: torch.Tensor | tuple[torch.Tensor, ...],
    t0: torch.Tensor | float,
    t1: torch.Tensor | float,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str | None = None,
    options: dict[str, Any] | None = None,
) -> Callable[[torch.Tensor], Any]:
    """Solve from ``t0`` to ``t1`` and return ``dense_output_fn(t_eval)``, the solution anywhere in
    ``[t0, t1]`` from the solver's dense output (torchdiffeq's ``odeint_dense``).

    ``t_eval`` may be 0-dim (returns ``y0``'s shape) or 1-D (returns ``(len(t_eval), ...)``).
    """
    p = _setup(func, y0, rtol, atol, method, options)
    if p.method == SCIPY:
        raise ValueError(
            "odeint_dense does not take method='scipy_solver' (nor does torchdiffeq's); use "
            "method='dopri5', whose dense output is fourth order"
        )
    like = t0 if isinstance(t0, torch.Tensor) else torch.as_tensor(t0, dtype=torch.float64)
    t = torch.stack([torch.as_tensor(t0).to(like), torch.as_tensor(t1).to(like)])
    t = _check_t(t, _device(p))
    if p.adaptive:
        tt = t.to(_time_dtype(p))
        run = {
            "controller": _controller(p),
            "dt0": _first_step(p, _sign(t)),
            "max_steps": _max_steps(p, 1),
        }
    else:
        grid = _grid(p, t)
        tt, run = t, {"controller": StepTo(grid), "max_steps": len(grid) - 1}
    sol = _run(p, tt[0], tt[1], p.y0, saveat=SaveAt(dense=True), **run)

    def dense_output_fn(t_eval: torch.Tensor | float) -> Any:
        return sol.evaluate(t_eval)

    return dense_output_fn


def odeint_event(
    func: Callable,
    y0: torch.Tensor | tuple[torch.Tensor, ...],
    t0: torch.Tensor | float,
    *,
    event_fn: Callable,
    reverse_time: bool = False,
    odeint_interface: Callable = odeint,
    **kwargs: Any,
) -> tuple[torch.Tensor, Any]:
    """Solve from ``t0`` (forwards, or backwards with ``reverse_time``) until ``event_fn(t, y)``
    changes sign; return ``(event_t, y)`` with ``y`` the states at ``t0`` and ``event_t``.

    torchdiffeq's ``odeint_event``. ``event_t`` and the final state are differentiable (implicit
    function theorem: ``dt*/dθ = -(∂g/∂θ) / (dg/dt)`` for the event function ``g``).
    ``kwargs`` (``rtol``, ``atol``, ``method``, ``options``, …) go to ``odeint_interface``.
    """
    if not isinstance(t0, torch.Tensor):
        t0 = torch.as_tensor(t0, dtype=torch.get_default_dtype())
    t0 = t0.reshape(-1)
    t = torch.cat([t0, t0.detach() + (-1.0 if reverse_time else 1.0)])
    event_t, solution = odeint_interface(func, y0, t, event_fn=event_fn, **kwargs)
    if odeint_interface in (odeint, odeint_adjoint):
        return event_t, solution  # both give the event time its gradient already
    return _with_event_gradient(func, event_fn, y0, t, event_t, solution)


def _with_event_gradient(func, event_fn, y0, t, event_t, solution):
    """``(event_t, solution)`` of a solve that held the event time fixed, with the event time's
    gradient added (:class:`_EventGradient`), as torchdiffeq does."""
    is_tuple = not isinstance(y0, torch.Tensor)
    leaves = tuple(solution) if is_tuple else (solution,)
    with torch.no_grad():
        signs = torch.sign(event_fn(t[0], y0))
    event_t, *state = _EventGradient.apply(
        func, event_fn, signs, is_tuple, event_t, *(leaf[-1] for leaf in leaves)
    )
    out = tuple(torch.cat([leaf[:-1], s[None]]) for leaf, s in zip(leaves, state))
    return event_t, (out if is_tuple else out[0])


class _EventGradient(torch.autograd.Function):
    """Identity on ``(event_t, state)`` whose backward adds what moving the event time does:
    with ``g`` the event function at the crossing, ``dg/dt = ∂g/∂t + ∇_y g · f`` and the incoming
    ``G = dL/dt* + dL/dy* · f``, the state's gradient gains ``-∇_y g · G / (dg/dt)`` (implicit
    function theorem; torchdiffeq's ``ImplicitFnGradientRerouting``)."""

    @staticmethod
    def forward(ctx, func, event_fn, signs, is_tuple, event_t, *state):
        ctx.func, ctx.event_fn, ctx.signs, ctx.is_tuple = func, event_fn, signs, is_tuple
        ctx.save_for_backward(event_t, *state)
        return (event_t.detach(), *(s.detach() for s in state))

    @staticmethod
    def backward(ctx, grad_t, *grad_state):
        event_t, *state = ctx.saved_tensors
        t = event_t.detach().requires_grad_(True)
        ys = [s.detach().requires_grad_(True) for s in state]
        tree = tuple(ys) if ctx.is_tuple else ys[0]
        real = ys[0].abs().dtype if ys[0].is_complex() else ys[0].dtype
        with torch.enable_grad():
            f = ctx.func(
                t.detach().to(real),
                tuple(y.detach() for y in ys) if ctx.is_tuple else ys[0].detach(),
            )
            c = torch.min(ctx.event_fn(t, tree) * ctx.signs)
            dc = torch.autograd.grad(c, (t, *ys), allow_unused=True)
        f = tuple(f) if ctx.is_tuple else (f,)
        dc_dt, *dc_dy = (torch.zeros_like(x) if g is None else g for g, x in zip(dc, (t, *ys)))
        slope = dc_dt + sum((g * fi).sum() for g, fi in zip(dc_dy, f))
        total = grad_t + sum((g * fi).sum() for g, fi in zip(grad_state, f))
        scale = -total / (slope + 1e-12)
        grads = tuple(g + d * scale.to(d.dtype) for g, d in zip(grad_state, dc_dy))
        return (None, None, None, None, None, *grads)


def _backsolve(
    func,
    y0,
    rtol,
    atol,
    method,
    options,
    adjoint_rtol,
    adjoint_atol,
    adjoint_method,
    adjoint_options,
    adjoint_params,
) -> BacksolveAdjoint:
    """torchdiffeq's adjoint arguments as a :class:`torchnde.BacksolveAdjoint`."""
    adjoint_method = method if adjoint_method is None else adjoint_method
    if adjoint_method != method and options is not None and adjoint_options is None:
        raise ValueError(
            "If `adjoint_method != method` then we cannot infer `adjoint_options` from `options`. "
            "So as `options` has been passed then `adjoint_options` must be passed as well."
        )
    inherited = adjoint_options is None
    if inherited:
        adjoint_options = {k: v for k, v in (options or {}).items() if k != "norm"}
    name, solver, adaptive = _method(adjoint_method)
    adjoint_options = _check_options(name, adaptive, adjoint_options)
    if not adaptive:
        # a fixed-grid backward solve steps through the forward pass's grid in reverse
        # (BacksolveAdjoint's replay), so its own step-size options have nothing to set
        for key in ("step_size", "grid_constructor", "perturb"):
            adjoint_options.pop(key, None)
    norm = adjoint_options.pop("norm", None)
    if norm is not None and norm != "seminorm" and not callable(norm):
        raise TypeError(
            "adjoint_options['norm'] must be 'seminorm' or a callable taking the tuple "
            f"(t, y, adj_y, *adj_params), got {norm!r}"
        )
    max_steps = adjoint_options.pop("max_num_steps", None)
    if max_steps is not None and (
        isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
    ):
        raise ValueError(
            f"adjoint_options['max_num_steps'] must be a positive int, got {max_steps!r}"
        )
    dtype = adjoint_options.pop("dtype", None)
    if dtype is not None and dtype != (options or {}).get("dtype", torch.float64):
        raise ValueError(
            "adjoint_options['dtype'] must equal the forward time dtype: the backward solve runs "
            "in the forward's time dtype; drop it"
        )
    if adjoint_options:  # step-size hints the backward solve cannot take
        names = ", ".join(repr(k) for k in adjoint_options)
        if not inherited:
            raise ValueError(
                f"adjoint_options {names} cannot be used: torchnde's backward solve is set only by "
                "adjoint_rtol, adjoint_atol, adjoint_method and adjoint_options 'norm' and "
                "'max_num_steps'; drop them"
            )
        warnings.warn(
            f"odeint_adjoint: options {names} apply to the forward solve only; the backward solve "
            "chooses its own steps (pass adjoint_options={} to silence this warning)",
            stacklevel=3,
        )
    params = None
    if adjoint_params is not None:
        params = tuple(p for p in adjoint_params if p.requires_grad)
    shapes = _check_y0(y0)
    view = _AdjointView(y0.shape if shapes is None else None, shapes, flat=not callable(norm))
    if not callable(norm):
        norm = _default_adjoint_norm(view, (options or {}).get("norm"), norm == "seminorm")
    chosen = {"norm": norm}  # read at every backward step: replaceable on `grad_fn`
    if max_steps is not None:
        chosen["max_num_steps"] = max_steps
    found = {name: getattr(func, name) for name in _CALLBACKS[3:] if hasattr(func, name)}
    callbacks = _used_callbacks(found, name, adaptive, "_adjoint", stacklevel=4)
    adjoint = BacksolveAdjoint(
        rtol=_tolerance("adjoint_rtol", rtol if adjoint_rtol is None else adjoint_rtol),
        atol=_tolerance("adjoint_atol", atol if adjoint_atol is None else adjoint_atol),
        solver=solver,
        params=params,
        max_steps=MAX_NUM_STEPS if max_steps is None else max_steps,
        norm=lambda y, a, g: chosen["norm"](view(y, a, g)),
        on_step=_AdjointCallbacks(callbacks, view) if callbacks else None,
    )
    return adjoint, chosen


class _AdjointView:
    """The backward solve's augmented state ``(y, a, g)`` as torchdiffeq hands it to an adjoint
    norm or callback: ``(t, y, adj_y, *adj_params)``, with ``y`` and ``adj_y`` shaped like ``y0``
    (a tensor state), flattened (a tuple state, ``flat``: the norms torchdiffeq builds itself) or
    split into the tuple's tensors (a user's norm), and ``t`` the time's adjoint — not part of
    torchnde's backward solve (time gradients are computed separately), so always 0 here."""

    def __init__(self, shape, shapes, flat: bool):
        self.shape, self.shapes, self.flat = shape, shapes, flat

    def __call__(self, y, a, g) -> tuple[torch.Tensor, ...]:
        a = a.reshape(-1)
        y = torch.zeros_like(a) if y is None else y.reshape(-1)
        t = a.new_zeros(())
        if self.shapes is None:
            return (t, y.reshape(self.shape), a.reshape(self.shape), *g)
        if self.flat:
            return (t, y, a, *g)
        return (t, *_split(y, self.shapes), *_split(a, self.shapes), *g)


def _default_adjoint_norm(view: _AdjointView, forward_norm, seminorm: bool):
    """torchdiffeq's adjoint norms: the largest of ``|t|``, the forward norm of ``y`` and of
    ``adj_y`` and, unless ``seminorm``, the largest RMS of the parameter gradients (the forward
    norm is the RMS for a tensor state, the largest RMS of its tensors for a tuple state)."""
    shapes = view.shapes

    def rms(x: torch.Tensor) -> torch.Tensor:
        return x.abs().pow(2).mean().sqrt()

    def state_norm(x: torch.Tensor) -> torch.Tensor:
        if forward_norm is not None:
            return torch.as_tensor(forward_norm(x if shapes is None else _split(x, shapes)))
        if shapes is None:
            return rms(x)
        return torch.stack([rms(part) for part in _split(x, shapes) if part.numel()]).amax()

    def norm(tensor_tuple: tuple[torch.Tensor, ...]) -> torch.Tensor:
        t, y, adj_y, *adj_params = tensor_tuple
        parts = [t.abs(), state_norm(y), state_norm(adj_y)]
        if not seminorm:
            parts += [rms(g) for g in adj_params if g.numel()]
        return torch.stack([part.to(y.dtype) for part in parts]).amax()

    return norm


class _AdjointCallbacks:
    """``BacksolveAdjoint(on_step=...)`` calling torchdiffeq's backward-solve callbacks on
    ``func``: ``callback_step_adjoint(t0, y0, dt)``, then ``callback_accept_step_adjoint`` or
    ``callback_reject_step_adjoint``, with ``y0`` the augmented state as :class:`_AdjointView`
    gives it and ``t0``, ``dt`` in the forward problem's time (the backward solve runs from
    ``t[-1]`` to ``t[0]``, so ``dt`` has the opposite sign of the forward steps)."""

    def __init__(self, callbacks: dict[str, Any], view: _AdjointView):
        self.callbacks, self.view = callbacks, view

    def __call__(self, t0, t1, parts, accepted: bool) -> None:
        state = self.view(*parts)
        if "callback_step_adjoint" in self.callbacks:
            self.callbacks["callback_step_adjoint"](t0, state, t1 - t0)
        name = "callback_accept_step_adjoint" if accepted else "callback_reject_step_adjoint"
        if name in self.callbacks:
            self.callbacks[name](t0, state, t1 - t0)


class _AdjointOptions(torch.autograd.Function):
    """The identity on :func:`odeint_adjoint`'s output whose node carries ``adjoint_options``,
    as torchdiffeq's ``OdeintAdjointMethod`` node does (``xs.grad_fn.adjoint_options['norm']``
    can be read and replaced before ``backward``)."""

    @staticmethod
    def forward(ctx, options, x):
        ctx.adjoint_options = options
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return None, grad


def _with_adjoint_options(p_shapes, out: Any, options: dict[str, Any]) -> Any:
    """``out`` through :class:`_AdjointOptions`: a tensor directly, a tuple as one flat tensor
    split back into its tensors (so ``xs[0].grad_fn.next_functions[0][0].next_functions[0][0]``
    is the node, as in torchdiffeq)."""
    leaves = (out,) if p_shapes is None else tuple(out)
    if not torch.is_grad_enabled() or not any(leaf.requires_grad for leaf in leaves):
        return out
    if p_shapes is None:
        return _AdjointOptions.apply(options, out)
    steps = leaves[0].shape[0]
    flat = _AdjointOptions.apply(
        options, torch.cat([leaf.reshape(steps, -1) for leaf in leaves], 1)
    )
    sizes = [math.prod(shape) for shape in p_shapes]
    return tuple(
        part.view(steps, *shape) for part, shape in zip(flat.split(sizes, dim=1), p_shapes)
    )


def odeint_adjoint(
    func: Callable,
    y0: torch.Tensor | tuple[torch.Tensor, ...],
    t: torch.Tensor,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str | None = None,
    options: dict[str, Any] | None = None,
    event_fn: Callable | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_method: str | None = None,
    adjoint_options: dict[str, Any] | None = None,
    adjoint_params: Any = None,
) -> Any:
    """:func:`odeint` with gradients from the continuous adjoint (:class:`torchnde.BacksolveAdjoint`):
    memory does not grow with the number of steps (torchdiffeq's ``odeint_adjoint``).

    Args:
        func, y0, t, rtol, atol, method, options, event_fn: as in :func:`odeint`.
        adjoint_rtol, adjoint_atol: tolerances of the backward solve (default ``rtol``, ``atol``).
        adjoint_method: the backward solver (default ``method``). A fixed-grid one steps
            through the forward pass's steps in reverse (torchdiffeq builds a grid from
            ``adjoint_options['step_size']`` instead; with the same step size the grids agree
            between output times that are multiples of it).
        adjoint_options: ``'norm'`` — ``'seminorm'`` (measure the error on the state and its
            adjoint only: fewer backward steps) or a callable on ``(t, y, adj_y, *adj_params)`` —
            and ``'max_num_steps'`` (per interval of ``t``). Default: ``options`` less ``norm``;
            of those, step-size hints apply to the forward solve only.
        adjoint_params: the tensors to return gradients for besides ``y0`` and ``t``. ``None``
            finds them (the parameters of ``func`` if it is an ``nn.Module``, and any other tensor
            requiring grad that it uses); an explicit tuple that misses a tensor ``func`` uses is
            an error rather than a silently lost gradient.

    With ``event_fn`` the event is located without a graph, the solve to it is differentiated by
    the adjoint with the event time held fixed, and the event time's own gradient is added
    (implicit function theorem), so ``event_t`` and the event state are differentiable.
    """
    if method == SCIPY:
        if event_fn is not None:
            raise ValueError(
                "method='scipy_solver' does not locate events; use method='dopri5' with event_fn"
            )
        extra = {
            "adjoint_rtol": adjoint_rtol,
            "adjoint_atol": adjoint_atol,
            "adjoint_method": adjoint_method,
            "adjoint_params": adjoint_params,
        }
        if adjoint_options is not None:
            extra["adjoint_options"] = adjoint_options
        return _scipy_adjoint(func, y0, t, rtol, atol, options, extra)
    adjoint, chosen = _backsolve(
        func,
        y0,
        rtol,
        atol,
        method,
        options,
        adjoint_rtol,
        adjoint_atol,
        adjoint_method,
        adjoint_options,
        adjoint_params,
    )
    out = _odeint(func, y0, t, rtol, atol, method, options, event_fn, adjoint)
    if event_fn is None:
        return _with_adjoint_options(_check_y0(y0), out, chosen)
    # the event is located without a graph and the solve to it holds its time fixed: add the
    # event time's gradient (implicit function theorem), so event_t is differentiable too
    return _with_event_gradient(func, event_fn, y0, _check_t(t, out[1].device), *out)
