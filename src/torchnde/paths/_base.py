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
    #: ``"space-time"`` for Brownian paths that also give the space-time Lévy area, else None
    levy_area: str | None = None

    @abc.abstractmethod
    def increment(self, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
        """``X(t1) - X(t0)``; ``t0``, ``t1`` are 0-dim or ``(batch,)`` tensors."""

    def levy_increment(
        self, t0: torch.Tensor, t1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, H)``: the increment and the space-time Lévy area over ``[t0, t1]`` (Brownian paths
        built with ``levy_area="space-time"``; see :class:`~torchnde.VirtualBrownianTree`)."""
        raise ValueError(
            f"{type(self).__name__} has no space-time Lévy area; build a Brownian path with it, "
            'e.g. `VirtualBrownianTree(t0, t1, shape, levy_area="space-time")`'
        )

    def validate_span(self, t0: torch.Tensor, t1: torch.Tensor) -> None:
        """Raise a ``ValueError`` naming the path, its interval, the solve's interval and the fix
        when the path cannot be queried over a solve from ``t0`` to ``t1`` (0-dim or ``(batch,)``
        tensors, ``t1 < t0`` for backwards solves). :func:`~torchnde.solve` calls it for every
        path in the term before the first step; the default accepts every interval."""

    def evaluate(self, t: torch.Tensor) -> torch.Tensor:
        """``X(t)``."""
        raise NotImplementedError(f"{type(self).__name__} has no point evaluation")

    def derivative(self, t: torch.Tensor) -> torch.Tensor:
        """``dX/dt`` at ``t``."""
        raise NotImplementedError(
            f"{type(self).__name__} is not differentiable in time; use its increments "
            "(ControlTerm without .to_ode())"
        )
