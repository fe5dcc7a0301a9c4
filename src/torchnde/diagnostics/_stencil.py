"""The convolution ⇔ PDE correspondence (Ruthotto & Haber 2019, *Deep neural networks motivated by
partial differential equations*): a 3-tap convolution on a grid of spacing ``h`` is the
central-difference discretisation of ``u_t = β₁ u + β₂ u_x + β₃ u_xx``, and a residual layer
``u + dt · K * u`` is one forward-Euler step of that PDE."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["pde_to_stencil", "stencil_step", "stencil_to_pde"]


def _check_h(h: Any) -> None:
    if isinstance(h, torch.Tensor):
        if not bool((h > 0).all()):
            raise ValueError(f"the grid spacing `h` must be > 0, got {h}")
    elif not (isinstance(h, int | float) and h > 0):
        raise ValueError(f"the grid spacing `h` must be a number > 0, got {h!r}")


def pde_to_stencil(beta: Any, h: float | torch.Tensor) -> torch.Tensor:
    """The 3-tap kernel ``(w₋, w₀, w₊)`` of ``β₁ u + β₂ u_x + β₃ u_xx`` by central differences.

    ``(K * u)_i = w₋ u_{i-1} + w₀ u_i + w₊ u_{i+1}`` (cross-correlation, as ``conv1d``) with

        w₋ = β₃/h² − β₂/(2h),   w₀ = β₁ − 2β₃/h²,   w₊ = β₃/h² + β₂/(2h).

    Args:
        beta: ``(..., 3)`` coefficients ``(β₁, β₂, β₃)`` (a tensor or a sequence of numbers).
        h: the grid spacing.

    Returns:
        ``(..., 3)`` kernel taps (differentiable in ``beta`` and ``h``). The inverse is
        :func:`stencil_to_pde`.
    """
    _check_h(h)
    beta = _last_axis_3("beta", beta)
    b1, b2, b3 = beta.unbind(-1)
    diffusion, advection = b3 / h**2, b2 / (2 * h)
    return torch.stack((diffusion - advection, b1 - 2 * diffusion, diffusion + advection), dim=-1)


def stencil_to_pde(kernel: Any, h: float | torch.Tensor) -> torch.Tensor:
    """The coefficients ``(β₁, β₂, β₃)`` of the PDE ``u_t = β₁ u + β₂ u_x + β₃ u_xx`` whose
    central-difference discretisation is the 3-tap kernel ``(w₋, w₀, w₊)``:

        β₁ = w₋ + w₀ + w₊,   β₂ = h (w₊ − w₋),   β₃ = h² (w₋ + w₊) / 2.

    Every 3-tap kernel is such a stencil (the map is a linear bijection), which is why a
    convolutional ResNet layer "is" a PDE step.

    Args:
        kernel: ``(..., 3)`` taps (the weight of a ``conv1d`` with kernel size 3, squeezed).
        h: the grid spacing.

    Returns:
        ``(..., 3)`` coefficients (differentiable).
    """
    _check_h(h)
    kernel = _last_axis_3("kernel", kernel)
    w_minus, w_0, w_plus = kernel.unbind(-1)
    return torch.stack(
        (w_minus + w_0 + w_plus, h * (w_plus - w_minus), h**2 * (w_minus + w_plus) / 2), dim=-1
    )


def stencil_step(u: torch.Tensor, kernel: torch.Tensor, dt: float) -> torch.Tensor:
    """One residual layer ``u + dt · K * u`` on a periodic 1-D grid: a forward-Euler step of the
    PDE of :func:`stencil_to_pde`.

    Args:
        u: ``(..., n)`` values on the grid.
        kernel: ``(3,)`` taps.
        dt: the step.
    """
    kernel = _last_axis_3("kernel", kernel)
    if kernel.ndim != 1:
        raise ValueError(f"`kernel` must be (3,), got shape {tuple(kernel.shape)}")
    w_minus, w_0, w_plus = kernel.unbind(-1)
    stencil = w_minus * u.roll(1, -1) + w_0 * u + w_plus * u.roll(-1, -1)
    return u + dt * stencil


def _last_axis_3(name: str, x: Any) -> torch.Tensor:
    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=torch.float64)
    if x.ndim == 0 or x.shape[-1] != 3:
        raise ValueError(
            f"`{name}` must have 3 entries on its last axis, got shape {tuple(x.shape)}"
        )
    return x
