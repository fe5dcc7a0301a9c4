"""Per-sample arithmetic that works on ``(batch,)`` tensors and on plain Python numbers alike.

The step loop keeps per-sample bookkeeping (times, step sizes, flags, counters) as ``(batch,)``
tensors, so a step makes no Python decision on tensor values and compiles. When there is no batch
axis the bookkeeping is one number per quantity, and a dozen tensor operations of one element per
step would cost more than the arithmetic they do: the loop then keeps those numbers on the host
as Python floats, bools and ints ("host mode") and the state alone stays a tensor. Controllers and
solvers write their arithmetic once with :func:`ops_for`, which picks the right namespace from the
type of a time value.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ._pytree import tree_where

__all__ = ["HostOps", "TensorOps", "ops_for"]


class TensorOps:
    """Per-sample values are ``(batch,)`` tensors; nothing branches on their values."""

    host = False

    @staticmethod
    def where(cond, a, b):
        return torch.where(cond, a, b)

    @staticmethod
    def select_rows(cond, a, b):
        """Per-sample select of ``(batch, n)`` tensors."""
        return torch.where(cond[:, None], a, b)

    @staticmethod
    def select_tree(cond, a, b):
        return tree_where(cond, a, b)

    @staticmethod
    def minimum(a, b):
        if isinstance(b, torch.Tensor):
            return torch.minimum(a, b)
        return a.clamp(max=b)

    @staticmethod
    def maximum(a, b):
        if isinstance(b, torch.Tensor):
            return torch.maximum(a, b)
        return a.clamp(min=b)

    @staticmethod
    def and_(a, b):
        return a & b

    @staticmethod
    def or_(a, b):
        return a | b

    @staticmethod
    def not_(a):
        return ~a

    @staticmethod
    def isfinite(x):
        return torch.isfinite(x)

    @staticmethod
    def abs(x):
        return x.abs()

    @staticmethod
    def any(x) -> bool:
        return bool(x.any())

    @staticmethod
    def value(x: torch.Tensor):
        """A per-sample result computed from the state (e.g. an error norm)."""
        return x

    @staticmethod
    def false_like(x):
        return torch.zeros_like(x, dtype=torch.bool)

    @staticmethod
    def true_like(x):
        return torch.ones_like(x, dtype=torch.bool)

    @staticmethod
    def nextafter(x, towards: float):
        return torch.nextafter(x, torch.full_like(x, towards))


class HostOps:
    """Unbatched bookkeeping: per-sample values are Python numbers."""

    host = True

    @staticmethod
    def where(cond, a, b):
        return a if cond else b

    select_rows = where
    select_tree = where
    minimum = staticmethod(min)
    maximum = staticmethod(max)
    abs = staticmethod(abs)

    @staticmethod
    def and_(a, b):
        return a and b

    @staticmethod
    def or_(a, b):
        return a or b

    @staticmethod
    def not_(a):
        return not a

    @staticmethod
    def isfinite(x):
        return math.isfinite(x)

    @staticmethod
    def any(x) -> bool:
        return bool(x)

    @staticmethod
    def value(x: torch.Tensor) -> float:
        return x.item()

    @staticmethod
    def false_like(x):
        return False

    @staticmethod
    def true_like(x):
        return True

    @staticmethod
    def nextafter(x, towards: float):
        return math.nextafter(x, towards)


def ops_for(t: Any) -> type[TensorOps] | type[HostOps]:
    """The namespace for per-sample values like ``t`` (a tensor, or a Python number)."""
    return TensorOps if isinstance(t, torch.Tensor) else HostOps
