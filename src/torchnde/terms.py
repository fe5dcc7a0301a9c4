"""Terms: what the differential equation is.

A term contributes ``prod(vf(t, y, args), contr(t0, t1))`` to the state over a step ``[t0, t1]``:

* :class:`ODETerm` — ``f(t, y, args) · (t1 - t0)``: an ordinary differential equation ``dy/dt = f``.
* :class:`ControlTerm` — ``g(t, y, args) · (X(t1) - X(t0))`` for a path ``X``: a controlled
  differential equation ``dy = g dX`` (an interpolated time series makes a neural CDE; Brownian
  motion makes an SDE).
* :class:`MultiTerm` — the sum of several terms, e.g. drift plus diffusion.

Solvers only ever call ``vf``, ``contr`` and ``prod``, so a new kind of equation is a new term, not a
change to the loop (the design of diffrax; Kidger, *On Neural Differential Equations*, 2021, §5).

Times passed to ``f`` and ``g`` are 0-dim tensors, or ``(batch,)`` tensors under ``batch_axis=0``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import torch

from ._pytree import (
    same_structure,
    tree_leaves,
    tree_map,
    tree_structure_str,
    tree_unflatten,
)
from .paths import AbstractBrownianPath, AbstractPath

__all__ = [
    "NOISE_TYPES",
    "AbstractTerm",
    "ControlTerm",
    "MultiTerm",
    "ODETerm",
    "call_checked",
    "paths",
    "sde_noise",
    "walk",
]


def _bcast(scalar: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor | float:
    """Broadcast a number, a 0-dim or a ``(batch,)`` tensor against ``like`` (``(batch, ...)``)."""
    if not isinstance(scalar, torch.Tensor) or scalar.ndim == 0:
        return scalar
    return scalar.reshape(scalar.shape[0], *([1] * (like.ndim - 1)))


def _add_trees(a: Any, b: Any) -> Any:
    return tree_map(torch.add, a, b)


class AbstractTerm(abc.ABC):
    """Base class of terms. Subclasses implement :meth:`vf`, :meth:`contr` and :meth:`prod`.

    Attributes:
        ode: whether the term is an ordinary differential equation ``dy/dt = vf(t, y)``: its
            control is time itself (``contr(t0, t1) = t1 - t0``) and ``prod(vf, dt) = vf · dt``
            with ``vf`` shaped like the state. Solvers and adjoints use it for what only holds
            for ODEs (the continuous adjoint's ``dy/dt``, arithmetic on the step as a number).
    """

    ode: bool = False

    @abc.abstractmethod
    def vf(self, t: torch.Tensor, y: Any, args: Any) -> Any:
        """The vector field at ``(t, y)``."""

    @abc.abstractmethod
    def contr(self, t0: torch.Tensor, t1: torch.Tensor) -> Any:
        """The control increment over ``[t0, t1]`` (``t1 - t0`` for an ODE)."""

    @abc.abstractmethod
    def prod(self, vf: Any, control: Any) -> Any:
        """Apply a vector field value to a control increment; the result is shaped like ``y``."""

    def vf_prod(self, t: torch.Tensor, y: Any, args: Any, control: Any) -> Any:
        """``prod(vf(t, y, args), control)``."""
        return self.prod(self.vf(t, y, args), control)

    def check(self, vf: Any, y: Any, batched: bool) -> None:
        """Raise a clear ``ValueError``/``TypeError`` if ``vf`` (a value of ``vf(t, y, args)``)
        does not fit the state ``y``. The built-in terms call it from :meth:`vf` on every
        evaluation whose output or state layout they have not seen; a term of your own should
        validate its outputs likewise. The default accepts everything."""

    def callables(self) -> list[Callable[..., Any]]:
        """The user functions this term calls (so adjoints can find their parameters)."""
        return []

    def subterms(self) -> tuple[AbstractTerm, ...]:
        """The terms this one is made of (:class:`MultiTerm`'s parts; none for the others)."""
        return ()

    def control_path(self) -> AbstractPath | None:
        """The control path this term is driven by, if any (:class:`ControlTerm`'s)."""
        return None


def walk(term: AbstractTerm):
    """Every term in ``term``'s tree, itself first, then its sub-terms depth-first."""
    yield term
    for sub in term.subterms():
        yield from walk(sub)


def paths(term: AbstractTerm) -> list[AbstractPath]:
    """The control paths of every term in ``term``'s tree, in order."""
    return [p for t in walk(term) if (p := t.control_path()) is not None]


def _check_structure(name: str, out: Any, y: Any, what: str = "") -> None:
    """Check that ``out`` has ``y``'s tree structure."""
    if not same_structure(y, out):
        label = f"the vector field `{name}`" + (f" {what}" if what else "")
        raise ValueError(
            f"{label} returned {tree_structure_str(out)}, but the state `y0` is "
            f"{tree_structure_str(y)}; return the same structure as the state"
        )


def _check_leaf_meta(name: str, o: Any, s: torch.Tensor, where: str) -> None:
    """Check that one output leaf is a tensor of the state's dtype and device."""
    if not isinstance(o, torch.Tensor):
        raise TypeError(
            f"the vector field `{name}` returned {type(o).__name__}{where}, expected a tensor"
        )
    if o.dtype != s.dtype:
        raise TypeError(
            f"the vector field `{name}` returned dtype {o.dtype}{where}, but the state `y0` is "
            f"{s.dtype}; cast the output with `.to({s.dtype})` or build the network in that dtype"
        )
    if o.device != s.device:
        raise ValueError(
            f"the vector field `{name}` returned a tensor on {o.device}{where}, but the state "
            f"is on {s.device}; move the model with `.to({str(s.device)!r})`"
        )


def _check_like_state(name: str, out: Any, y: Any, extra: tuple[int, ...] = ()) -> None:
    """Check that ``out`` has ``y``'s structure and dtypes, and leaf shapes ``y.shape + extra``."""
    _check_structure(name, out, y)
    for i, (o, s) in enumerate(zip(tree_leaves(out), tree_leaves(y))):
        where = "" if len(tree_leaves(y)) == 1 else f" (leaf {i})"
        if not isinstance(o, torch.Tensor):
            raise TypeError(
                f"the vector field `{name}` returned {type(o).__name__}{where}, expected a tensor "
                f"shaped {tuple(s.shape) + extra}"
            )
        want = tuple(s.shape) + tuple(extra)
        if tuple(o.shape) != want:
            hint = (
                " (a scalar or broadcastable output is not accepted: expand it to the full shape)"
                if o.numel() < s.numel()
                else ""
            )
            raise ValueError(
                f"the vector field `{name}` returned shape {tuple(o.shape)}{where}, but the state "
                f"needs {want}{hint}; make it return a tensor shaped {want}"
            )
        _check_leaf_meta(name, o, s, where)


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _versions(y: Any) -> Any:
    """The version counters of the state's leaves (``y._version`` grows with every in-place
    operation on ``y`` or on a view of it), or None under ``torch.compile``, which does not trace
    them."""
    if torch.compiler.is_compiling():
        return None
    if isinstance(y, torch.Tensor):
        return y._version
    return tuple(leaf._version for leaf in tree_leaves(y) if isinstance(leaf, torch.Tensor))


def call_checked(role: str, fn: Callable[..., Any], t: Any, y: Any, args: Any) -> Any:
    """``fn(t, y, args)``, refusing a function that modifies ``y`` in place: the state it is given
    is the solver's own (its stages, or the caller's ``y0``), so an in-place change would make the
    solve return a wrong answer with a success status."""
    before = _versions(y)
    out = fn(t, y, args)
    if before is not None and _versions(y) != before:
        raise ValueError(
            f"the {role} `{_name(fn)}` modified its input `y` in place (e.g. `y.mul_(...)`, "
            "`y += ...`, `y[...] = ...`); the state it receives belongs to the solver, so the "
            "solve would be wrong. Compute a new tensor instead (`y = y * 2`, or start with "
            "`y = y.clone()`)"
        )
    return out


def _layout(x: Any) -> Any:
    """The leaf shapes and dtypes of a tree (a cheap key to compare outputs by)."""
    if isinstance(x, torch.Tensor):
        return (x.shape, x.dtype)
    return tuple(
        (leaf.shape, leaf.dtype) if isinstance(leaf, torch.Tensor) else type(leaf)
        for leaf in tree_leaves(x)
    )


def _same_layout(out: Any, y: Any) -> bool:
    """Whether ``out`` has ``y``'s leaf shapes and dtypes (the cheap per-call check; the full check
    with its message is :func:`_check_like_state`)."""
    if isinstance(out, torch.Tensor) and isinstance(y, torch.Tensor):
        return out.shape == y.shape and out.dtype == y.dtype
    outs, ys = tree_leaves(out), tree_leaves(y)
    return (
        len(outs) == len(ys)
        and all(
            isinstance(o, torch.Tensor) and o.shape == s.shape and o.dtype == s.dtype
            for o, s in zip(outs, ys)
        )
        and same_structure(y, out)
    )


class ODETerm(AbstractTerm):
    """An ordinary differential equation ``dy/dt = f(t, y, args)``.

    Args:
        f: the vector field; returns a tree shaped exactly like ``y`` (same structure, shapes,
            dtype). Often an ``nn.Module`` whose ``forward(t, y, args)`` is the network.
        jac: optionally, ``∂f/∂y`` for implicit solvers, ``jac(t, y, args)``: for a state of one
            tensor of ``n`` numbers an ``(n, n)`` tensor, ``(batch, n, n)`` under
            ``batch_axis=0`` (``[..., i, j] = ∂f_i/∂y_j`` of the flattened state). Without it,
            implicit solvers differentiate ``f`` automatically.
        quadratures: how many trailing entries of the flattened state are integrals — entries
            whose rate does not depend on them, such as an accumulated loss, a log-density or
            the parameter gradients of an adjoint system. Implicit solvers then solve only the
            other entries by Newton's method (a ``jac`` covers those alone) and integrate these
            from their stage values.
    """

    ode = True

    def __init__(
        self,
        f: Callable[[torch.Tensor, Any, Any], Any],
        jac: Callable[[torch.Tensor, Any, Any], torch.Tensor] | None = None,
        quadratures: int = 0,
    ):
        if not callable(f):
            raise TypeError(f"`ODETerm(f)` needs a callable f(t, y, args), got {type(f).__name__}")
        if jac is not None and not callable(jac):
            raise TypeError(
                f"`ODETerm(f, jac=...)` needs a callable jac(t, y, args) or None, got "
                f"{type(jac).__name__}"
            )
        if isinstance(quadratures, bool) or not isinstance(quadratures, int) or quadratures < 0:
            raise ValueError(f"`ODETerm(quadratures=...)` must be an int ≥ 0, got {quadratures!r}")
        self.f = f
        self.jac = jac
        self.quadratures = quadratures

    def vf(self, t, y, args):
        out = call_checked("vector field", self.f, t, y, args)
        if not _same_layout(out, y):  # every evaluation, not only the first
            _check_like_state(_name(self.f), out, y)
        return out

    def contr(self, t0, t1):
        return t1 - t0

    def prod(self, vf, control):
        return tree_map(lambda v: v * _bcast(control, v), vf)

    def check(self, vf, y, batched):
        _check_like_state(_name(self.f), vf, y)

    def callables(self):
        return [self.f] if self.jac is None else [self.f, self.jac]

    def __repr__(self) -> str:
        return f"ODETerm({_name(self.f)})"


#: the noise types of :class:`ControlTerm`
NOISE_TYPES = ("general", "diagonal", "scalar", "additive")

_NOISE_RULES = {
    "general": "g returns s + path.shape (dy = Σ_c g[..., c] dX[c]), or s + (m,) when "
    "path.shape == s[:-1] + (m,) (dy[..., i] = Σ_j g[..., i, j] dX[..., j])",
    "additive": "as 'general', and g must not depend on y",
    "diagonal": "g returns s itself (dy = g ⊙ dX), with path.shape == s or (n,) for a state of n "
    "numbers",
    "scalar": "g returns s + (1,) and the path has one channel: shape (1,) or s[:-1] + (1,)",
}


class ControlTerm(AbstractTerm):
    """A controlled term ``g(t, y, args) dX(t)``: a neural CDE's control, or an SDE's diffusion
    (``X`` a Brownian motion).

    How ``g``'s value meets the increment ``dX`` (shaped ``path.shape``, with a leading batch axis
    when the path is batched) is the noise type. For a state leaf shaped ``s``:

    * ``"general"`` (default): ``g`` returns ``s + path.shape`` and ``dy = Σ_c g[..., c] dX[c]``
      over every channel axis. Or, when the path's leading axes are the state's
      (``path.shape == s[:-1] + (m,)``, torchsde's and torchcde's convention for a batch inside one
      problem: a state ``(batch, d)`` with a path ``(batch, m)``), ``g`` returns ``s + (m,)`` and
      ``dy[..., i] = Σ_j g[..., i, j] dX[..., j]`` — one batched matrix product.
    * ``"diagonal"``: ``path.shape == s`` and ``g`` returns ``s``; ``dy = g ⊙ dX`` (one
      elementwise product: each state entry has its own Brownian motion). For a tuple or dict
      state the path has shape ``(n,)``, ``n`` the number of entries in the state (per sample),
      split across the leaves in their flatten order (dict keys in insertion order).
    * ``"scalar"``: one noise channel: as ``"general"`` with ``m = 1`` (``g`` returns ``s + (1,)``).
    * ``"additive"``: as ``"general"``, and a promise that ``g`` does not depend on ``y`` (it may
      depend on ``t``); :class:`~torchnde.SRA1` relies on it.

    Under ``batch_axis=0`` the shapes above include the batch axis of the state (``s = (batch,
    ...)``); a batched path (one per sample) then meets each sample's row, an unbatched one is
    shared by every sample.

    Args:
        g: the vector field (the diffusion of an SDE), ``g(t, y, args)``.
        path: the control, an :class:`~torchnde.paths.AbstractPath` with ``increment(t0, t1)``.
        noise: ``"general"``, ``"diagonal"``, ``"scalar"`` or ``"additive"``.
    """

    def __init__(
        self,
        g: Callable[[torch.Tensor, Any, Any], Any],
        path: AbstractPath,
        noise: str = "general",
    ):
        if not callable(g):
            raise TypeError(f"`ControlTerm(g, path)` needs a callable g, got {type(g).__name__}")
        if not isinstance(path, AbstractPath):
            raise TypeError(
                f"`ControlTerm(g, path)`: `path` must be a torchnde path (e.g. "
                f"`torchnde.paths.LinearInterpolation(ts, xs)`), got {type(path).__name__}"
            )
        if not isinstance(noise, str) or noise not in NOISE_TYPES:
            raise ValueError(
                f"`ControlTerm(noise=...)` must be one of {', '.join(map(repr, NOISE_TYPES))}, "
                f"got {noise!r}"
            )
        self.g = g
        self.path = path
        self.noise = noise
        # (vf leaf shapes, increment shape) -> how they meet; filled by `check`
        self._plans: dict[tuple[Any, ...], _Plan] = {}
        # the state's layout -> the layout of g's output that `check` accepted for it
        self._layouts: dict[Any, Any] = {}

    def vf(self, t, y, args):
        out = call_checked("vector field", self.g, t, y, args)
        if self._layouts.get(_layout(y)) != _layout(out):  # every evaluation, not only the first
            self.check(out, y, None)
        return out

    def contr(self, t0, t1):
        return self.path.increment(t0, t1)

    def prod(self, vf, control):
        if isinstance(vf, torch.Tensor):  # one leaf: the common case, kept short
            plan = self._plans.get((vf.shape, control.shape)) or self._guess(vf, control)
            return plan.apply_one(vf, control)
        leaves = tree_leaves(vf)
        key = (tuple(v.shape for v in leaves), control.shape)
        plan = self._plans.get(key) or self._guess(vf, control)
        return tree_unflatten(vf, plan.apply(leaves, control))

    def check(self, vf, y, batched):
        name = _name(self.g)
        _check_structure(name, vf, y, f"(ControlTerm, noise={self.noise!r})")
        leaves, states = tree_leaves(vf), tree_leaves(y)
        for i, (o, s) in enumerate(zip(leaves, states)):
            _check_leaf_meta(name, o, s, _where(i, states))
        self._match_dtype(states[0])
        lead = (states[0].shape[0],) if self.path.batched and states[0].ndim else ()
        increment = torch.Size(lead + tuple(self.path.shape))
        plan = self._plan(leaves, states, increment)
        self._remember(plan, leaves, increment)
        if len(self._layouts) > 64:  # many shapes seen (e.g. varying batch sizes): start afresh
            self._layouts.clear()
        self._layouts[_layout(y)] = _layout(vf)

    def callables(self):
        return [self.g]

    def control_path(self) -> AbstractPath:
        return self.path

    def to_ode(self) -> ODETerm:
        """The ODE ``dy/dt = g(t, y, args) · dX/dt(t)`` (needs a differentiable path). Its solvers
        keep their full order on smooth paths, which the increment form does not."""
        path, g = self.path, self.g

        def f(t, y, args):
            dx = path.derivative(t)
            vf = g(t, y, args)
            leaves = tree_leaves(vf)
            plan = self._plan(leaves, tree_leaves(y), dx.shape)
            return tree_unflatten(vf, plan.apply(leaves, dx))

        f.__name__ = f"{_name(g)}·dX/dt"
        return ODETerm(f)  # adjoints find g's parameters through f's closure

    def __repr__(self) -> str:
        noise = "" if self.noise == "general" else f", noise={self.noise!r}"
        return f"ControlTerm({_name(self.g)}, {self.path!r}{noise})"

    def _match_dtype(self, state: torch.Tensor) -> None:
        """A Brownian path built without a dtype takes the state's; a path whose increments have
        another dtype than the state is refused here, by name, rather than deep inside a matrix
        product."""
        real = state.real.dtype if state.is_complex() else state.dtype
        adopt = getattr(self.path, "adopt_dtype", None)
        if adopt is not None:
            adopt(real)
        dtype = getattr(self.path, "dtype", None)
        if isinstance(dtype, torch.dtype) and dtype != real:
            raise TypeError(
                f"the path {self.path!r} of `ControlTerm({_name(self.g)}, ...)` gives {dtype} "
                f"increments, but the state is {state.dtype}; build the path with "
                f"`dtype={real}` (a Brownian path built without `dtype` follows the state)"
            )

    # -- how g meets dX ---------------------------------------------------------------------------

    def _remember(self, plan: _Plan, leaves: list[torch.Tensor], increment: torch.Size) -> None:
        if len(self._plans) > 64:  # many shapes seen (e.g. varying batch sizes): start afresh
            self._plans.clear()
        key_shapes = leaves[0].shape if len(leaves) == 1 else tuple(v.shape for v in leaves)
        self._plans[(key_shapes, increment)] = plan
        if len(leaves) == 1:  # a one-leaf tree (e.g. a 1-tuple) is looked up by its tuple too
            self._plans[((leaves[0].shape,), increment)] = plan

    def _guess(self, vf: Any, control: torch.Tensor) -> _Plan:
        """The plan when :meth:`check` has not seen these shapes (e.g. ``prod`` called directly):
        the state's leaf shapes are inferred from ``g``'s output under the noise type's rule."""
        leaves = tree_leaves(vf)
        channels = len(self.path.shape)
        states = []
        for v in leaves:
            if self.noise == "diagonal":
                states.append(v)
            elif self.noise in ("general", "additive") and tuple(
                v.shape[v.ndim - channels :]
            ) == tuple(self.path.shape):
                states.append(v.new_empty(v.shape[: v.ndim - channels]))
            else:
                states.append(v.new_empty(v.shape[:-1]))
        plan = self._plan(leaves, states, control.shape)
        self._remember(plan, leaves, control.shape)
        return plan

    def _plan(self, leaves: list[torch.Tensor], states: list[torch.Tensor], increment) -> _Plan:
        """How each leaf of ``g``'s output meets an increment shaped ``increment``, for state
        leaves ``states``; a clear error when the shapes do not fit the noise type."""
        increment = tuple(increment)
        path_shape = tuple(self.path.shape)
        lead = increment[: len(increment) - len(path_shape)]  # the path's batch axis, if any
        if self.noise == "diagonal":
            return self._diagonal_plan(leaves, states, increment, lead)
        ops = []
        for i, (v, s) in enumerate(zip(leaves, states)):
            got, want = tuple(v.shape), tuple(s.shape)
            shared = len(increment) >= 2 and increment[:-1] == want[:-1]
            if self.noise == "scalar" and (not increment or increment[-1] != 1):
                raise ValueError(
                    f"`ControlTerm(noise='scalar')` needs a path with one channel (shape (1,), or "
                    f"s[:-1] + (1,) for a state shaped s), but the path has shape {path_shape}; "
                    "use noise='general' for several channels"
                )
            if shared and got == want + increment[-1:]:
                ops.append(("scalar" if self.noise == "scalar" else "shared", increment))
            elif got == want + path_shape:
                if path_shape == (1,):  # one channel: a broadcast product
                    ops.append(("scalar", lead + (1,) * (len(want) - len(lead))))
                else:
                    ops.append(("full", ()))
            else:
                options = [want + path_shape]
                if shared:
                    options.append(want + increment[-1:])
                raise ValueError(self._shape_message(got, want, options, _where(i, states)))
        return _Plan(tuple(ops), len(path_shape))

    def _diagonal_plan(self, leaves, states, increment, lead) -> _Plan:
        path_shape = tuple(self.path.shape)
        for i, (v, s) in enumerate(zip(leaves, states)):
            if v.shape != s.shape:
                raise ValueError(
                    self._shape_message(
                        tuple(v.shape), tuple(s.shape), [tuple(s.shape)], _where(i, states)
                    )
                    + "; for a matrix-valued diffusion use noise='general'"
                )
        # per-sample leaf shapes: the whole leaf, or the leaf without its batch axis (a state
        # under batch_axis=0 with a path shared by every sample, or a batched path)
        for drop in (0, 1) if not lead else (1,):
            per = [tuple(s.shape[drop:]) for s in states]
            numels = [int(torch.Size(p).numel()) for p in per]
            if len(per) == 1 and path_shape == per[0]:
                return _Plan((("mul", lead + per[0]),), len(path_shape))
            if path_shape == (sum(numels),):
                ops = tuple(("mul", lead + p) for p in per)
                return _Plan(ops, 1, None if len(per) == 1 else tuple(numels))
        per = [tuple(s.shape[1 if lead else 0 :]) for s in states]
        total = sum(int(torch.Size(p).numel()) for p in per)
        want = f"{per[0]} or ({total},)" if len(per) == 1 and len(per[0]) != 1 else f"({total},)"
        raise ValueError(
            f"the diffusion `{_name(self.g)}` (ControlTerm, noise='diagonal') needs a path with one "
            f"channel per state entry, shaped {want}, but the path has shape {path_shape}; build "
            f"the Brownian motion with that shape, or use noise='general' with g returning "
            "s + path.shape"
        )

    def _shape_message(self, got, want, options, where) -> str:
        expected = " or ".join(str(o) for o in options)
        return (
            f"the diffusion `{_name(self.g)}` (ControlTerm, noise={self.noise!r}) returned shape "
            f"{got}{where} for a state leaf shaped {want} and a path shaped "
            f"{tuple(self.path.shape)}{' (batched)' if self.path.batched else ''}; expected "
            f"{expected}. With noise={self.noise!r}: {_NOISE_RULES[self.noise]}"
        )


class _Plan:
    """How the leaves of ``g``'s output meet one increment ``dX``: per leaf an operation
    (``"full"``: contract every channel axis; ``"shared"``: one batched matrix–vector product over
    the last axis; ``"mul"``: elementwise (diagonal); ``"scalar"``: one channel, broadcast) and the
    shape ``dX`` (or its part) takes for it."""

    __slots__ = ("channels", "ops", "split")

    def __init__(self, ops, channels: int, split: tuple[int, ...] | None = None):
        self.ops = ops
        self.channels = channels
        self.split = split  # diagonal noise over several leaves: entries per leaf

    def apply_one(self, v: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        kind, shape = self.ops[0]
        if kind == "mul":
            return v * (dx if dx.shape == shape else dx.reshape(shape))
        if kind == "shared":
            return torch.matmul(v, dx.unsqueeze(-1)).squeeze(-1)
        if kind == "scalar":
            return v.squeeze(-1) * (dx if dx.shape == shape else dx.reshape(shape))
        return _contract(v, dx, self.channels)

    def apply(self, leaves: list[torch.Tensor], dx: torch.Tensor) -> list[torch.Tensor]:
        if self.split is None:
            return [_Plan((op,), self.channels).apply_one(v, dx) for v, op in zip(leaves, self.ops)]
        parts = dx.split(self.split, dim=-1)
        return [v * part.reshape(shape) for v, part, (_, shape) in zip(leaves, parts, self.ops)]


def _contract(v: torch.Tensor, dx: torch.Tensor, channels: int) -> torch.Tensor:
    """Contract the trailing ``channels`` axes of ``v`` with ``dx`` (batched or not)."""
    cshape = v.shape[v.ndim - channels :]
    c = int(torch.Size(cshape).numel())
    lead = v.shape[: v.ndim - channels]
    if dx.ndim == channels:  # one increment for every sample
        return (v.reshape(-1, c) @ dx.reshape(c)).reshape(lead)
    batch = dx.shape[0]
    out = torch.bmm(v.reshape(batch, -1, c), dx.reshape(batch, c, 1))
    return out.reshape(lead)


def _where(i: int, states: list[Any]) -> str:
    return "" if len(states) == 1 else f" (leaf {i})"


class MultiTerm(AbstractTerm):
    """The sum of several terms, e.g. ``MultiTerm(ODETerm(drift), ControlTerm(diffusion, bm))``."""

    def __init__(self, *terms: AbstractTerm):
        if not terms:
            raise ValueError("`MultiTerm(*terms)` needs at least one term")
        for i, term in enumerate(terms):
            if not isinstance(term, AbstractTerm):
                raise TypeError(
                    f"`MultiTerm` argument {i} must be a term (ODETerm, ControlTerm, ...), got "
                    f"{type(term).__name__}"
                )
        self.terms = tuple(terms)

    def vf(self, t, y, args):
        return tuple(term.vf(t, y, args) for term in self.terms)

    def contr(self, t0, t1):
        return tuple(term.contr(t0, t1) for term in self.terms)

    def prod(self, vf, control):
        parts = [term.prod(v, c) for term, v, c in zip(self.terms, vf, control)]
        total = parts[0]
        for part in parts[1:]:
            total = _add_trees(total, part)
        return total

    def check(self, vf, y, batched):
        for term, v in zip(self.terms, vf):
            term.check(v, y, batched)

    def callables(self):
        return [fn for term in self.terms for fn in term.callables()]

    def subterms(self):
        return self.terms

    def __repr__(self) -> str:
        return f"MultiTerm({', '.join(map(repr, self.terms))})"


def sde_noise(term: AbstractTerm) -> str | None:
    """The noise type of ``term`` if it is a stochastic differential equation — a
    :class:`ControlTerm` driven by Brownian motion, alone or inside a :class:`MultiTerm` — else
    ``None`` (ODEs, and CDEs driven by smooth paths)."""
    for part in walk(term):
        if isinstance(part.control_path(), AbstractBrownianPath):
            return getattr(part, "noise", "general")
    return None
