"""Events: stop a solve (or record the time) where a condition crosses zero."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ._errors import friendly_keywords

__all__ = ["Event"]


@friendly_keywords()
@dataclass(frozen=True)
class Event:
    """A zero crossing of ``cond(t, y, args)``.

    ``cond`` returns a 0-dim tensor (or ``(batch,)`` under ``batch_axis=0``); the event happens
    where it changes sign between two accepted steps. The crossing time is found by root finding
    on the solver's dense output (to floating-point accuracy of that interpolant) and, under
    :class:`~torchnde.DirectAdjoint`, is differentiable through the implicit function theorem:
    ``dt*/dθ = -(∂cond/∂θ) / (d cond/dt)``.

    Args:
        cond: the event function.
        terminal: stop the solve at the first crossing (``Status.EVENT``); otherwise record every
            crossing in ``Solution.event_crossings`` and carry on.
        direction: ``0`` for any crossing, ``+1`` only where ``cond`` goes from negative to
            positive, ``-1`` only from positive to negative.
    """

    cond: Callable[[torch.Tensor, Any, Any], torch.Tensor]
    terminal: bool = True
    direction: int = 0

    def __post_init__(self) -> None:
        if not callable(self.cond):
            raise TypeError(f"`Event(cond)` needs a callable, got {type(self.cond).__name__}")
        if self.direction not in (-1, 0, 1):
            raise ValueError(f"`Event(direction=...)` must be -1, 0 or 1, got {self.direction!r}")
        if not isinstance(self.terminal, bool):
            raise TypeError("`Event(terminal=...)` must be True or False")


def crossed(event: Event, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Where ``cond`` changed sign (in the event's direction) between two values, per sample."""
    up = (before < 0) & (after >= 0)
    down = (before > 0) & (after <= 0)
    if event.direction > 0:
        return up
    if event.direction < 0:
        return down
    return up | down
