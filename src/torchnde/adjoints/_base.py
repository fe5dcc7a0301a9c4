"""The interface of gradient methods: an adjoint owns the solve loop."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import torch

from .._loop import Context, LoopState, Recorder

__all__ = ["AbstractAdjoint", "LoopOutput", "SavePlan"]


@dataclass(frozen=True)
class SavePlan:
    """What to save, in internal times (``ts: (batch, T)`` or ``None``)."""

    t0: bool
    t1: bool
    ts: torch.Tensor | None
    steps: bool
    dense: bool


@dataclass
class LoopOutput:
    """What an adjoint hands back to :func:`~torchnde.solve`.

    ``ys: (batch, times, n)`` and ``ts: (batch, times)`` (internal) carry the gradients;
    ``state`` and ``recorder`` hold statuses, statistics, events and dense output."""

    ys: torch.Tensor
    ts: torch.Tensor
    state: LoopState
    recorder: Recorder
    #: ``(batch,)`` counter the backward pass adds its vector-field evaluations to
    nfe_backward: torch.Tensor | None = None


class AbstractAdjoint(abc.ABC):
    """Base class of gradient methods (how ``loss.backward()`` flows through a solve)."""

    @abc.abstractmethod
    def loop(
        self,
        ctx: Context,
        y0: torch.Tensor,
        dt0: torch.Tensor | None,
        solver_state: Any,
        nfe0: int,
        plan: SavePlan,
    ) -> LoopOutput:
        """Run the solve from the flat ``y0: (batch, n)`` and return what was saved."""

    def check(self, ctx: Context, plan: SavePlan) -> None:
        """Raise if this adjoint cannot differentiate the solve as configured."""
