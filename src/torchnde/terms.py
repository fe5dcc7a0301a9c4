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

from ._pytree import same_structure, tree_leaves, tree_map, tree_structure_str
from .paths import AbstractPath

__all__ = ["AbstractTerm", "ControlTerm", "MultiTerm", "ODETerm"]


def _bcast(scalar: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor | float:
    """Broadcast a number, a 0-dim or a ``(batch,)`` tensor against ``like`` (``(batch, ...)``)."""
    if not isinstance(scalar, torch.Tensor) or scalar.ndim == 0:
        return scalar
    return scalar.reshape(scalar.shape[0], *([1] * (like.ndim - 1)))


def _add_trees(a: Any, b: Any) -> Any:
    return tree_map(torch.add, a, b)


class AbstractTerm(abc.ABC):
    """Base class of terms. Subclasses implement :meth:`vf`, :meth:`contr` and :meth:`prod`."""

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

    @abc.abstractmethod
    def check(self, vf: Any, y: Any, batched: bool) -> None:
        """Raise a clear ``ValueError``/``TypeError`` if ``vf`` (from ``vf(t0, y0, args)``) does
        not fit the state ``y``."""

    def callables(self) -> list[Callable[..., Any]]:
        """The user functions this term calls (so adjoints can find their parameters)."""
        return []


def _check_like_state(name: str, out: Any, y: Any, extra: tuple[int, ...] = ()) -> None:
    """Check that ``out`` has ``y``'s structure and dtypes, and leaf shapes ``y.shape + extra``."""
    if not same_structure(y, out):
        raise ValueError(
            f"the vector field `{name}` returned {tree_structure_str(out)}, but the state `y0` is "
            f"{tree_structure_str(y)}; return the same structure as the state"
        )
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


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


class ODETerm(AbstractTerm):
    """An ordinary differential equation ``dy/dt = f(t, y, args)``.

    Args:
        f: the vector field; returns a tree shaped exactly like ``y`` (same structure, shapes,
            dtype). Often an ``nn.Module`` whose ``forward(t, y, args)`` is the network.
    """

    def __init__(self, f: Callable[[torch.Tensor, Any, Any], Any]):
        if not callable(f):
            raise TypeError(f"`ODETerm(f)` needs a callable f(t, y, args), got {type(f).__name__}")
        self.f = f

    def vf(self, t, y, args):
        return self.f(t, y, args)

    def contr(self, t0, t1):
        return t1 - t0

    def prod(self, vf, control):
        return tree_map(lambda v: v * _bcast(control, v), vf)

    def check(self, vf, y, batched):
        _check_like_state(_name(self.f), vf, y)

    def callables(self):
        return [self.f]

    def __repr__(self) -> str:
        return f"ODETerm({_name(self.f)})"


class ControlTerm(AbstractTerm):
    """A controlled term ``g(t, y, args) dX(t)``.

    ``g`` returns, for each leaf of ``y`` shaped ``s``, a tensor shaped ``s + path.shape``; the
    increment ``dX`` (shaped ``path.shape``, with a leading batch axis if the path is batched) is
    contracted with its trailing axes: ``dy[..., i] = Σ_c g[..., i, c] dX[c]``.

    Args:
        g: the vector field (matrix-valued).
        path: the control, an :class:`~torchnde.paths.AbstractPath` with ``increment(t0, t1)``.
    """

    def __init__(self, g: Callable[[torch.Tensor, Any, Any], Any], path: AbstractPath):
        if not callable(g):
            raise TypeError(f"`ControlTerm(g, path)` needs a callable g, got {type(g).__name__}")
        if not isinstance(path, AbstractPath):
            raise TypeError(
                f"`ControlTerm(g, path)`: `path` must be a torchnde path (e.g. "
                f"`torchnde.paths.LinearInterpolation(ts, xs)`), got {type(path).__name__}"
            )
        self.g = g
        self.path = path

    def vf(self, t, y, args):
        return self.g(t, y, args)

    def contr(self, t0, t1):
        return self.path.increment(t0, t1)

    def prod(self, vf, control):
        channels = len(self.path.shape)
        return tree_map(lambda v: _contract(v, control, channels), vf)

    def check(self, vf, y, batched):
        _check_like_state(_name(self.g), vf, y, tuple(self.path.shape))

    def callables(self):
        return [self.g]

    def to_ode(self) -> ODETerm:
        """The ODE ``dy/dt = g(t, y, args) · dX/dt(t)`` (needs a differentiable path). Its solvers
        keep their full order on smooth paths, which the increment form does not."""
        path, g = self.path, self.g
        channels = len(path.shape)

        def f(t, y, args):
            dx = path.derivative(t)
            return tree_map(lambda v: _contract(v, dx, channels), g(t, y, args))

        f.__name__ = f"{_name(g)}·dX/dt"
        term = ODETerm(f)
        term.callables = lambda: [g]  # type: ignore[method-assign]
        return term

    def __repr__(self) -> str:
        return f"ControlTerm({_name(self.g)}, {self.path!r})"


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

    def __repr__(self) -> str:
        return f"MultiTerm({', '.join(map(repr, self.terms))})"
