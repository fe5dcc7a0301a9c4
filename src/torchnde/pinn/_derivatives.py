"""Partial derivatives of a network's output with respect to its input coordinates, of any
order, by reverse-mode autograd with every intermediate kept for the loss's own backward pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..training._checks import nearest

__all__ = ["Derivatives", "partial"]


def partial(u: torch.Tensor, points: torch.Tensor, *columns: int) -> torch.Tensor:
    """``∂^k u / ∂x_{c1} … ∂x_{ck}`` at every point, for ``u`` ``(n,)`` computed pointwise from
    ``points`` ``(n, d)`` (which must require grad).

    Each order is one ``torch.autograd.grad`` with ``create_graph=True``, so the result can be
    differentiated again and trained through. Pointwise means row ``i`` of ``u`` depends only
    on row ``i`` of ``points`` (true of a network applied to a batch of points); then the
    gradient of ``u.sum()`` holds every point's own derivative.

    Example:
        >>> x = torch.linspace(0, 1, 5, dtype=torch.float64).reshape(-1, 1).requires_grad_()
        >>> partial(torch.sin(x[:, 0]), x, 0, 0)   # -sin(x)
    """
    for column in columns:
        u = _gradient(u, points)[:, column]
    return u


def _gradient(u: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    if u.dim() != 1 or u.shape[0] != points.shape[0]:
        raise ValueError(
            f"derivatives are taken of one value per point, shape ({points.shape[0]},), got "
            f"shape {tuple(u.shape)}; pick one output, e.g. u[:, 0]"
        )
    if not u.requires_grad:  # a constant (or a quantity that does not depend on the points)
        return torch.zeros_like(points)
    (grad,) = torch.autograd.grad(
        u, points, grad_outputs=torch.ones_like(u), create_graph=True, allow_unused=True
    )
    return torch.zeros_like(points) if grad is None else grad


class Derivatives:
    """The derivative helper a residual receives: ``d(u, "x")`` is ∂u/∂x, ``d(u, "x", "x")``
    is ∂²u/∂x², ``d(u, "t", "x")`` is ∂²u/∂x∂t; ``d["x"]`` is the coordinate x itself (for
    source terms).

    One backward pass gives a quantity's derivatives along all coordinates at once, so
    ``d(u, "x")`` and ``d(u, "t")`` cost one pass together; results are cached, so repeated
    requests are free.

    Args:
        points: ``(n, d)`` collocation points requiring grad.
        names: the coordinate names, in column order.
    """

    def __init__(self, points: torch.Tensor, names: Sequence[str]):
        if not points.requires_grad:
            raise ValueError("`points` must require grad: call points.requires_grad_() first")
        self.points = points
        self.names = tuple(names)
        self._columns = {name: i for i, name in enumerate(self.names)}
        self._gradients: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._slices: dict[tuple[int, str], torch.Tensor] = {}

    def __call__(self, u: torch.Tensor, *coordinates: str) -> torch.Tensor:
        """The partial derivative of ``u`` ``(n,)`` along ``coordinates`` in turn."""
        if not coordinates:
            raise ValueError('name at least one coordinate, e.g. d(u, "x")')
        for name in coordinates:
            u = self._first(u, name)
        return u

    def __getitem__(self, name: str) -> torch.Tensor:
        """The values ``(n,)`` of coordinate ``name`` at the points."""
        return self.points[:, self._column(name)]

    @property
    def coordinates(self) -> Mapping[str, torch.Tensor]:
        """Every coordinate's values, name -> ``(n,)``."""
        return {name: self[name] for name in self.names}

    def _column(self, name: str) -> int:
        if name not in self._columns:
            raise ValueError(
                f"no coordinate {name!r}{nearest(str(name), self.names)}; the coordinates are "
                f"{', '.join(self.names)}"
            )
        return self._columns[name]

    def _first(self, u: torch.Tensor, name: str) -> torch.Tensor:
        column = self._column(name)
        key = (id(u), name)
        cached = self._slices.get(key)
        if cached is not None:
            return cached
        entry = self._gradients.get(id(u))
        if entry is None or entry[0] is not u:
            entry = (u, _gradient(u, self.points))
            self._gradients[id(u)] = entry
        result = entry[1][:, column]
        self._slices[key] = result
        return result
