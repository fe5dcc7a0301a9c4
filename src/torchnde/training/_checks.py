"""Argument checks shared by the training modules: each error names the argument and the value."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["check_callable", "check_count", "check_positive", "nearest"]


def nearest(value: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or an empty string."""
    match = difflib.get_close_matches(value, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def check_count(value: object, name: str, *, minimum: int = 1) -> int:
    """``value`` if it is an int of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}, got {value}")
    return value


def check_positive(value: object, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a float if it is a finite number > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{name}` must be a number, got {value!r} of type {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be finite and {bound}, got {value}")
    return float(value)


def check_callable(value: object, name: str) -> Callable[..., Any]:
    """``value`` if it is callable."""
    if not callable(value):
        raise TypeError(f"`{name}` must be callable, got {value!r}")
    return value
