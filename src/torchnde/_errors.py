"""Exceptions raised by torchnde, and helpers that write their messages."""

from __future__ import annotations

import difflib
import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch

__all__ = [
    "NonFiniteGradientWarning",
    "SolveError",
    "check_finite_time",
    "describe",
    "friendly_keywords",
    "unknown_keyword_message",
]

_T = TypeVar("_T")


class SolveError(RuntimeError):
    """A solve ended without reaching ``t1`` for at least one sample (raised when ``throw=True``).

    Attributes:
        solution: the :class:`~torchnde.Solution`, as ``throw=False`` would have returned it.
        failed: indices of the samples that failed (``[0]`` without a batch axis).
    """

    def __init__(self, message: str, solution: Any, failed: list[int]):
        super().__init__(message)
        self.solution = solution
        self.failed = failed


class NonFiniteGradientWarning(RuntimeWarning):
    """The backward pass of an adjoint that owns it (checkpointing, backsolve, reversible) produced
    a NaN or infinite gradient; the message names the time interval where it arose. Finite
    forward values with a non-finite derivative (``sqrt(y)`` at ``y = 0``) are the usual cause.
    Turn it into an error with ``warnings.simplefilter("error", NonFiniteGradientWarning)``."""


def describe(value: Any) -> str:
    """A short printable form of ``value`` for an error message."""
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return (
                f"tensor({value.item():g})" if not value.is_complex() else f"tensor({value.item()})"
            )
        return f"Tensor(shape={tuple(value.shape)}, dtype={str(value.dtype).replace('torch.', '')})"
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


def check_finite_time(name: str, value: Any) -> None:
    """Raise ``ValueError`` if a time argument holds NaN or infinity."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            bad = ~torch.isfinite(value.detach())
            if bool(bad.any()):
                where = torch.nonzero(bad.reshape(-1))[0].item()
                flat = value.detach().reshape(-1)
                raise ValueError(
                    f"`{name}` must be finite, but element {where} is {flat[where].item()}; "
                    "remove or replace non-finite times"
                )
    elif isinstance(value, (int, float)) and not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, but got {value}; give a finite time")


def unknown_keyword_message(owner: str, name: str, allowed: Sequence[str], hint: str = "") -> str:
    """``"`owner` has no argument `name`; did you mean `close`? ..."`` for a misspelt keyword."""
    close = difflib.get_close_matches(name, allowed, n=2, cutoff=0.6)
    if not close:  # spellings that differ by separators: dt_min / dtmin, max_step / max_steps
        squashed = {a.replace("_", "").lower(): a for a in allowed}
        close = [
            squashed[k]
            for k in difflib.get_close_matches(
                name.replace("_", "").lower(), squashed, n=2, cutoff=0.75
            )
        ]
    text = f"`{owner}` has no argument `{name}`"
    if hint:
        text += f"; {hint}"
    elif close:
        text += "; did you mean " + " or ".join(f"`{c}`" for c in close) + "?"
    return text + f" (its arguments: {', '.join(allowed)})"


def friendly_keywords(hints: Mapping[str, str] | None = None) -> Callable[[_T], _T]:
    """Decorate a class (its ``__init__``) or a function so that an unknown keyword argument
    raises a ``TypeError`` naming the nearest valid ones (``dt_min`` → ``dtmin``), or the hint
    given for it, instead of Python's bare "unexpected keyword argument"."""
    hints = dict(hints or {})

    def decorate(target: _T) -> _T:
        fn = target.__init__ if isinstance(target, type) else target
        params = inspect.signature(fn).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return target
        allowed = [
            n
            for n, p in params.items()
            if n != "self"
            and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        ]
        known = frozenset(allowed)
        owner = target.__name__

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for name in kwargs:
                if name not in known:
                    raise TypeError(
                        unknown_keyword_message(owner, name, allowed, hints.get(name, ""))
                    )
            return fn(*args, **kwargs)

        if isinstance(target, type):
            target.__init__ = wrapper
            return target
        return wrapper  # type: ignore[return-value]

    return decorate
