"""torchcde 0.2.5's ``torchcde.misc`` helpers, reached as ``torchnde.compat.torchcde.misc``.

torchcde's own code and tests import them (``import torchcde.misc``); they are small tensor
utilities, independent of any solve.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["cheap_stack", "forward_fill", "tridiagonal_solve"]


def cheap_stack(tensors: Sequence[torch.Tensor], dim: int) -> torch.Tensor:
    """``torch.stack(tensors, dim)`` (torchcde avoids a copy for a single tensor; so does this)."""
    if len(tensors) == 1:
        return tensors[0].unsqueeze(dim)
    return torch.stack(list(tensors), dim=dim)


def tridiagonal_solve(
    b: torch.Tensor, A_upper: torch.Tensor, A_diagonal: torch.Tensor, A_lower: torch.Tensor
) -> torch.Tensor:
    """Solve ``A x = b`` for tridiagonal ``A`` along the last axis (the Thomas algorithm,
    broadcast over the other axes, differentiable).

    Args:
        b: ``(..., n)`` right-hand side.
        A_upper: ``(..., n - 1)`` superdiagonal (``A[i, i + 1]``).
        A_diagonal: ``(..., n)`` diagonal.
        A_lower: ``(..., n - 1)`` subdiagonal (``A[i + 1, i]``).

    Returns:
        ``x``, ``(..., n)``. No pivoting: ``A`` should be diagonally dominant (as the spline
        systems are), as in torchcde.
    """
    n = A_diagonal.shape[-1]
    if b.shape[-1] != n or A_upper.shape[-1] != n - 1 or A_lower.shape[-1] != n - 1:
        raise ValueError(
            f"tridiagonal_solve: b and A_diagonal need n entries and A_upper/A_lower n - 1 along "
            f"the last axis, got b {tuple(b.shape)}, A_upper {tuple(A_upper.shape)}, A_diagonal "
            f"{tuple(A_diagonal.shape)}, A_lower {tuple(A_lower.shape)}"
        )
    upper, diag = A_upper.unbind(-1), A_diagonal.unbind(-1)
    lower, rhs = A_lower.unbind(-1), b.unbind(-1)
    # forward sweep: row i becomes x[i] + c[i] x[i + 1] = d[i]
    c, d = [], [rhs[0] / diag[0]]
    if n > 1:
        c.append(upper[0] / diag[0])
    for i in range(1, n):
        denom = diag[i] - lower[i - 1] * c[i - 1]
        if i < n - 1:
            c.append(upper[i] / denom)
        d.append((rhs[i] - lower[i - 1] * d[i - 1]) / denom)
    x = [d[-1]]
    for i in range(n - 2, -1, -1):
        x.append(d[i] - c[i] * x[-1])
    return torch.stack(torch.broadcast_tensors(*x[::-1]), dim=-1)


def forward_fill(x: torch.Tensor, fill_index: int = -2) -> torch.Tensor:
    """Replace each NaN of ``x`` by the last non-NaN value before it along axis ``fill_index``
    (leading NaNs stay NaN), as torchcde's ``forward_fill``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"forward_fill: `x` must be a tensor, got {type(x).__name__}")
    axis = fill_index % x.ndim
    moved = x.movedim(axis, -1)
    length = moved.shape[-1]
    positions = torch.arange(length, device=x.device).expand_as(moved)
    last = torch.where(torch.isnan(moved), -1, positions).cummax(dim=-1).values
    filled = moved.gather(-1, last.clamp(min=0))
    filled = torch.where(last < 0, torch.full_like(filled, float("nan")), filled)
    return filled.movedim(-1, axis)
