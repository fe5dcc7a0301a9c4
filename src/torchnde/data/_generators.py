"""Small synthetic data sets, generated on the spot (no files, no downloads)."""

from __future__ import annotations

import math

import torch

__all__ = ["advection_diffusion", "damped_oscillator", "spirals"]


def _generator(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator().manual_seed(seed)


def damped_oscillator(
    n: int,
    *,
    t1: float = 1.0,
    damping: float = 0.1,
    frequency: float = 2.0 * math.pi,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs ``(y(0), y(t1))`` of the damped linear oscillator, in closed form.

    The system is ``x'' + 2ζω x' + ω² x = 0`` written as ``y = (x, x'/ω)``:
    ``dy/dt = ω [[0, 1], [-1, -2ζ]] y``. Its flow map is ``exp(t1·A)``, computed with
    ``torch.linalg.matrix_exp`` in float64.

    Args:
        n: how many pairs.
        t1: the time between input and target.
        damping: ζ (0: undamped).
        frequency: ω (radians per unit time).
        seed: the draws' seed (``None``: the global generator).
        dtype: the outputs' dtype.

    Returns:
        ``y0: (n, 2)`` uniform in ``[-1, 1]²`` and ``y1: (n, 2)`` the exact state at ``t1``.
    """
    a = frequency * torch.tensor([[0.0, 1.0], [-1.0, -2.0 * damping]], dtype=torch.float64)
    flow = torch.linalg.matrix_exp(t1 * a)
    y0 = 2 * torch.rand(n, 2, generator=_generator(seed), dtype=torch.float64) - 1
    return y0.to(dtype), (y0 @ flow.T).to(dtype)


def spirals(
    n: int,
    *,
    points: int = 100,
    t_max: float = 4.0 * math.pi,
    noise: float = 0.0,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Archimedean spirals, half turning clockwise (label 0), half anticlockwise (label 1).

    Each spiral starts at a random phase, ``r = a + b·θ`` with random ``a`` and ``b``.

    Args:
        n: how many spirals.
        points: samples per spiral, on a common time grid ``t`` in ``[0, 1]``.
        t_max: the angle swept.
        noise: the standard deviation of Gaussian noise added to the points.
        seed: the draws' seed (``None``: the global generator).
        dtype: the outputs' dtype.

    Returns:
        ``t: (points,)``, ``xy: (n, points, 2)`` and ``labels: (n,)`` (``int64``).
    """
    gen = _generator(seed)
    t = torch.linspace(0, 1, points, dtype=torch.float64)
    labels = torch.arange(n) % 2
    labels = labels[torch.randperm(n, generator=gen)]
    phase = 2 * math.pi * torch.rand(n, 1, generator=gen, dtype=torch.float64)
    a = 0.5 + 0.5 * torch.rand(n, 1, generator=gen, dtype=torch.float64)
    b = (0.2 + 0.1 * torch.rand(n, 1, generator=gen, dtype=torch.float64)) / math.pi
    theta = t_max * t
    radius = a + b * theta
    sign = (2 * labels - 1).unsqueeze(1).to(torch.float64)  # -1 clockwise, +1 anticlockwise
    angle = phase + sign * theta
    xy = torch.stack((radius * angle.cos(), radius * angle.sin()), dim=-1)
    xy = xy + noise * torch.randn(xy.shape, generator=gen, dtype=torch.float64)
    return t.to(dtype), xy.to(dtype), labels


def advection_diffusion(
    n: int,
    *,
    grid: int = 64,
    velocity: float = 1.0,
    diffusivity: float = 0.05,
    dt: float = 1e-3,
    modes: int = 5,
    seed: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Snapshot pairs ``(u(0), u(dt))`` of ``u_t = -c u_x + ν u_xx`` on the periodic unit
    interval, exact (solved in Fourier space).

    Each initial condition is a random sum of the first ``modes`` Fourier modes; mode ``k``
    evolves by ``exp((-i c κ - ν κ²) dt)`` with ``κ = 2πk``.

    Args:
        n: how many pairs.
        grid: grid points (spacing ``h = 1 / grid``).
        velocity: c.
        diffusivity: ν.
        dt: the time between the snapshots.
        modes: the highest Fourier mode in the initial conditions.
        seed: the draws' seed (``None``: the global generator).
        dtype: the outputs' dtype.

    Returns:
        ``u0: (n, grid)``, ``u1: (n, grid)`` and the spacing ``h``.
    """
    gen = _generator(seed)
    x = torch.arange(grid, dtype=torch.float64) / grid
    k = torch.arange(1, modes + 1, dtype=torch.float64)
    kappa = 2 * math.pi * k
    amplitude = torch.randn(n, modes, 2, generator=gen, dtype=torch.float64) / k.unsqueeze(-1)

    def field(time: float) -> torch.Tensor:
        decay = torch.exp(-diffusivity * kappa**2 * time)
        angle = kappa[:, None] * (x[None, :] - velocity * time)  # (modes, grid)
        cos = decay[:, None] * angle.cos()
        sin = decay[:, None] * angle.sin()
        return amplitude[..., 0] @ cos + amplitude[..., 1] @ sin

    return field(0.0).to(dtype), field(dt).to(dtype), 1.0 / grid
