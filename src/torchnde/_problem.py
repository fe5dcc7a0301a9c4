"""The problem as the step loop sees it: flat states, forward internal time.

The loop and the solvers work on a flat state ``y: (batch, n)`` and an internal time ``τ`` that
always increases; :class:`Problem` turns those into the user's tree and the user's time
``t = direction · τ`` before calling the term, and flattens what comes back.
"""

from __future__ import annotations

from typing import Any

import torch

from ._pytree import StateSpec
from .terms import AbstractTerm

__all__ = ["Problem"]


class Problem:
    """A term with its arguments, bound to a state layout and an integration direction.

    Args:
        term: the equation.
        spec: how the state tree maps to ``(batch, n)``.
        args: passed through to the vector fields.
        direction: ``None`` when every sample integrates forwards, else ``(batch,)`` of ``±1``.
    """

    def __init__(
        self,
        term: AbstractTerm,
        spec: StateSpec,
        args: Any,
        direction: torch.Tensor | None,
    ):
        self.term = term
        self.spec = spec
        self.args = args
        self.direction = direction

    def user_time(self, tau: torch.Tensor) -> torch.Tensor:
        """Internal ``(batch,)`` time → the user's time (0-dim without a batch axis)."""
        t = tau if self.direction is None else tau * self.direction
        return t if self.spec.batched else t.reshape(())

    def vf(self, tau: torch.Tensor, y: torch.Tensor) -> Any:
        """The term's vector field at internal time ``tau: (batch,)`` and flat ``y: (batch, n)``."""
        return self.term.vf(self.user_time(tau), self.spec.unflatten(y), self.args)

    def contr(self, tau0: torch.Tensor, tau1: torch.Tensor) -> Any:
        return self.term.contr(self.user_time(tau0), self.user_time(tau1))

    def prod(self, vf: Any, control: Any) -> torch.Tensor:
        """``prod(vf, control)`` flattened to ``(batch, n)``."""
        return self.spec.flatten(self.term.prod(vf, control))

    def with_args(self, args: Any) -> Problem:
        return Problem(self.term, self.spec, args, self.direction)
