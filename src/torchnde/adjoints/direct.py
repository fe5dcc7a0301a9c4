"""Backpropagation through every operation of the solver."""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import friendly_keywords
from .._run import drive
from ._base import AbstractAdjoint

__all__ = ["DirectAdjoint"]


@friendly_keywords()
@dataclass(frozen=True)
class DirectAdjoint(AbstractAdjoint):
    """Differentiate by backpropagating through the solver's operations ("discretise then
    optimise"). The gradient is the exact gradient of the computed solution; memory grows with the
    number of steps. Differentiates everything: saved values, dense output and event times."""

    def loop(self, prep):
        return drive(prep)
