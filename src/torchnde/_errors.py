"""Exceptions raised by torchnde, and helpers that write their messages."""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["SolveError", "check_finite_time", "describe"]


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
