"""The interface every control path implements."""

from __future__ import annotations

import abc

import torch

__all__ = ["AbstractPath"]


class AbstractPath(abc.ABC):
    """A path ``X: [t0, t1] → R^shape``.

    Solvers need only :meth:`increment`; :meth:`evaluate` and :meth:`derivative` are there for
    paths that have them (interpolations), and :meth:`~torchnde.ControlTerm.to_ode` needs the
    derivative.
    """

    #: channel shape of ``X(t)``
    shape: tuple[int, ...]
    #: whether the path has a leading batch axis (one path per sample)
    batched: bool

    @abc.abstractmethod
    def increment(self, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
        """``X(t1) - X(t0)``; ``t0``, ``t1`` are 0-dim or ``(batch,)`` tensors."""

    def evaluate(self, t: torch.Tensor) -> torch.Tensor:
        """``X(t)``."""
        raise NotImplementedError(f"{type(self).__name__} has no point evaluation")

    def derivative(self, t: torch.Tensor) -> torch.Tensor:
        """``dX/dt`` at ``t``."""
        raise NotImplementedError(
            f"{type(self).__name__} is not differentiable in time; use its increments "
            "(ControlTerm without .to_ode())"
        )
