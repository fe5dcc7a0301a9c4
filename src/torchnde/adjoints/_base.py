"""The interface of gradient methods: an adjoint owns the solve loop."""

from __future__ import annotations

import abc

from .._run import LoopOutput, Prepared

__all__ = ["AbstractAdjoint"]


class AbstractAdjoint(abc.ABC):
    """Base class of gradient methods (how ``loss.backward()`` flows through a solve).

    :func:`~torchnde.solve` validates its arguments into a :class:`~torchnde._run.Prepared`
    solve, asks the adjoint to :meth:`check` it, then hands it to :meth:`loop`, which runs it —
    through the one loop driver, :func:`torchnde._run.drive` — and returns what was saved, with
    whatever autograd graph or custom backward pass the method needs."""

    @abc.abstractmethod
    def loop(self, prep: Prepared) -> LoopOutput:
        """Run the prepared solve and return what was saved."""

    def check(self, prep: Prepared) -> None:
        """Raise if this adjoint cannot differentiate the solve as prepared."""
