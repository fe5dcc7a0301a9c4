"""Reference solutions to measure a physics-informed network's error: convection (spectral, exact
for band-limited data, and by characteristics), reaction (closed form), reaction–diffusion
(Strang splitting: exact reaction, exact Fourier diffusion), viscous Burgers (Cole–Hopf with
Gauss–Hermite quadrature), the heat equation (closed form), and the relative L2 error.

Every solver returns a float64 grid of shape ``(len(x), len(t))`` (``indexing="ij"``), on the
device of ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = [
    "burgers_solution",
    "convection_characteristics",
    "convection_solution",
    "heat_solution",
    "reaction_diffusion_solution",
    "reaction_solution",
    "relative_l2",
]

Initial = Callable[[torch.Tensor], torch.Tensor] | torch.Tensor


def relative_l2(prediction: torch.Tensor, reference: torch.Tensor) -> float:
    """``‖prediction − reference‖₂ / ‖reference‖₂`` over all entries (the error the PINN
    literature reports; Krishnapriyan et al. 2021 call it the relative error)."""
    if prediction.shape != reference.shape:
        raise ValueError(
            f"prediction {tuple(prediction.shape)} and reference {tuple(reference.shape)} must "
            "have the same shape"
        )
    prediction = prediction.detach().to(torch.float64)
    reference = reference.detach().to(torch.float64)
    norm = torch.linalg.vector_norm(reference)
    if norm == 0:
        raise ValueError("the reference is zero everywhere; a relative error is undefined")
    return float(torch.linalg.vector_norm(prediction - reference) / norm)


def _vector(values: torch.Tensor, name: str) -> torch.Tensor:
    values = torch.as_tensor(values)
    if values.dim() != 1 or values.numel() < 1:
        raise ValueError(
            f"`{name}` must be a 1-D tensor of grid values, got shape {tuple(values.shape)}"
        )
    if not torch.isfinite(values).all():
        raise ValueError(f"`{name}` must be finite")
    return values.to(torch.float64)


def _times(t: torch.Tensor) -> torch.Tensor:
    t = _vector(t, "t")
    if (t < 0).any() or (t[1:] < t[:-1]).any():
        raise ValueError("`t` must be non-negative and non-decreasing (times from t = 0)")
    return t


def _initial(initial: Initial, x: torch.Tensor) -> torch.Tensor:
    h = initial(x) if callable(initial) else torch.as_tensor(initial)
    h = h.to(dtype=torch.float64, device=x.device)
    if h.shape != x.shape:
        raise ValueError(
            f"the initial condition must give one value per grid point, shape {tuple(x.shape)}, "
            f"got {tuple(h.shape)}"
        )
    return h


def _periodic_grid(x: torch.Tensor, length: float) -> float:
    """Check that ``x`` is an even grid of one period of ``length`` (high end left out); return
    its spacing."""
    n = x.numel()
    if n < 2:
        raise ValueError("a periodic grid needs at least 2 points")
    spacing = length / n
    expected = x[0] + spacing * torch.arange(n, dtype=torch.float64, device=x.device)
    if not torch.allclose(x, expected, rtol=0, atol=1e-6 * max(1.0, length)):
        raise ValueError(
            f"`x` must be an even grid over one period of length {length:g} without its high end, "
            f"e.g. torch.linspace(0, {length:g}, n + 1)[:-1]"
        )
    return spacing


def _wavenumbers(n: int, length: float, device) -> torch.Tensor:
    return 2 * math.pi * torch.fft.fftfreq(n, d=length / n, dtype=torch.float64, device=device)


def convection_solution(
    x: torch.Tensor,
    t: torch.Tensor,
    beta: float,
    initial: Initial,
    *,
    nu: float = 0.0,
    length: float = 2 * math.pi,
) -> torch.Tensor:
    """``u_t + β u_x = ν u_xx``, periodic with period ``length``, by the Fourier transform:
    ``û_k(t) = ĥ_k exp(−iβkt − νk²t)`` (exact for a band-limited initial condition sampled on
    the grid; the talk's ``F⁻¹(F(h) e^{−iβkt})``).

    Args:
        x: an even periodic grid (``torch.linspace(0, length, n + 1)[:-1]``).
        t: times ``(m,)``, non-negative.
        beta: the speed; nu: the diffusivity (0: pure transport).
        initial: ``h(x)``, a function or its values on ``x``.

    Returns:
        ``u`` of shape ``(n, m)``.
    """
    x, t = _vector(x, "x"), _times(t)
    _periodic_grid(x, length)
    h = _initial(initial, x)
    k = _wavenumbers(x.numel(), length, x.device)
    spectrum = torch.fft.fft(h)
    factor = torch.exp(
        torch.complex(-nu * k[:, None] ** 2 * t[None, :], -beta * k[:, None] * t[None, :])
    )
    return torch.fft.ifft(spectrum[:, None] * factor, dim=0).real


def convection_characteristics(
    x: torch.Tensor,
    t: torch.Tensor,
    beta: float,
    initial: Callable[[torch.Tensor], torch.Tensor],
    *,
    low: float = 0.0,
    length: float = 2 * math.pi,
) -> torch.Tensor:
    """``u_t + β u_x = 0`` by characteristics: ``u(x, t) = h(x − βt)``, wrapped into the period
    ``[low, low + length)``. Exact for any ``h`` (a function); ``x`` any points."""
    x, t = _vector(x, "x"), _times(t)
    shifted = torch.remainder(x[:, None] - beta * t[None, :] - low, length) + low
    return _initial(initial, shifted.reshape(-1)).reshape(shifted.shape)


def _logistic(u: torch.Tensor, rho: float, dt: float | torch.Tensor) -> torch.Tensor:
    """The exact flow of ``u' = ρu(1 − u)`` over ``dt``: ``u e^{ρdt} / (u e^{ρdt} + 1 − u)``."""
    growth = torch.exp(torch.as_tensor(rho * dt, dtype=torch.float64, device=u.device))
    return u * growth / (u * growth + 1 - u)


def reaction_solution(
    x: torch.Tensor, t: torch.Tensor, rho: float, initial: Initial
) -> torch.Tensor:
    """``u_t = ρu(1 − u)`` at every x (Fisher's reaction term alone), in closed form:
    ``u = h e^{ρt} / (h e^{ρt} + 1 − h)``.

    Returns:
        ``u`` of shape ``(len(x), len(t))``.
    """
    x, t = _vector(x, "x"), _times(t)
    h = _initial(initial, x)
    return _logistic(h[:, None], rho, t[None, :])


def reaction_diffusion_solution(
    x: torch.Tensor,
    t: torch.Tensor,
    nu: float,
    rho: float,
    initial: Initial,
    *,
    length: float = 2 * math.pi,
    max_step: float = 1e-3,
) -> torch.Tensor:
    """``u_t = ν u_xx + ρ u(1 − u)``, periodic, by Strang splitting (Strang 1968): each step is
    half a step of the exact reaction flow, a whole step of exact diffusion in Fourier space
    (``û_k e^{−νk²h}``), and another half reaction step — second order in the step, exact when
    ``ρ = 0`` or ``ν = 0``.

    Args:
        x: an even periodic grid; t: output times from 0, non-decreasing.
        nu, rho: diffusivity and reaction rate.
        initial: ``h(x)``.
        max_step: the largest splitting step (each output interval is cut into equal steps no
            longer than this).

    Returns:
        ``u`` of shape ``(n, m)``.
    """
    x, t = _vector(x, "x"), _times(t)
    _periodic_grid(x, length)
    if not max_step > 0:
        raise ValueError(f"`max_step` must be > 0, got {max_step}")
    u = _initial(initial, x)
    k = _wavenumbers(x.numel(), length, x.device)
    out = torch.empty(x.numel(), t.numel(), dtype=torch.float64, device=x.device)
    now = 0.0
    for j, target in enumerate(t.tolist()):
        span = target - now
        steps = math.ceil(span / max_step - 1e-12) if span > 0 else 0
        if steps:
            h = span / steps
            diffusion = torch.exp(-nu * k**2 * h)
            for _ in range(steps):
                u = _logistic(u, rho, h / 2)
                u = torch.fft.ifft(torch.fft.fft(u) * diffusion).real
                u = _logistic(u, rho, h / 2)
        now = target
        out[:, j] = u
    return out


def burgers_solution(
    x: torch.Tensor, t: torch.Tensor, nu: float, *, nodes: int = 200
) -> torch.Tensor:
    """Viscous Burgers ``u_t + u u_x = ν u_xx`` on ``[−1, 1]`` with ``u(x, 0) = −sin(πx)`` and
    ``u(±1, t) = 0`` (the problem of Raissi, Perdikaris & Karniadakis 2019), by the Cole–Hopf
    transform (Basdevant et al., *Spectral and finite difference solutions of the Burgers
    equation*, Computers & Fluids 1986):

    ``u(x, t) = −∫ sin π(x − η) f(x − η) e^{−η²/4νt} dη / ∫ f(x − η) e^{−η²/4νt} dη``,
    ``f(y) = exp(−cos(πy) / 2πν)``,

    each integral by Gauss–Hermite quadrature after ``η = 2√(νt) z``, in log-sum-exp form so
    the huge exponents of small ν do not overflow.

    Args:
        x: points in ``[−1, 1]``; t: times, non-negative.
        nu: the viscosity (``0.01/π`` in Raissi et al.).
        nodes: Gauss–Hermite nodes, 2 to 300 (NumPy's nodes overflow beyond); 100 already
            agree with 200 to 2e-15 at ``ν = 0.01/π`` on ``t ≤ 1``.

    Returns:
        ``u`` of shape ``(len(x), len(t))``.
    """
    import numpy as np

    x, t = _vector(x, "x"), _times(t)
    if not nu > 0:
        raise ValueError(f"`nu` must be > 0 (the Cole–Hopf transform needs viscosity), got {nu}")
    if isinstance(nodes, bool) or not isinstance(nodes, int) or not 2 <= nodes <= 300:
        raise ValueError(f"`nodes` must be an int in [2, 300], got {nodes!r}")
    z_np, w_np = np.polynomial.hermite.hermgauss(nodes)
    z = torch.from_numpy(z_np).to(x.device)
    log_w = torch.log(torch.from_numpy(w_np).to(x.device))
    out = torch.empty(x.numel(), t.numel(), dtype=torch.float64, device=x.device)
    for j, time in enumerate(t.tolist()):
        if time == 0:
            out[:, j] = -torch.sin(math.pi * x)
            continue
        y = x[:, None] - 2 * math.sqrt(nu * time) * z[None, :]  # (n, nodes)
        exponent = log_w[None, :] - torch.cos(math.pi * y) / (2 * math.pi * nu)
        weights = torch.softmax(exponent, dim=1)  # the common huge factor cancels
        out[:, j] = -(weights * torch.sin(math.pi * y)).sum(dim=1)
    return out


def heat_solution(
    x: torch.Tensor, t: torch.Tensor, nu: float, *, length: float = 1.0
) -> torch.Tensor:
    """``u_t = ν u_xx`` on ``[0, length]`` with ``u = 0`` at both ends and ``u(x, 0) =
    sin(πx/L)``: ``u = e^{−ν(π/L)²t} sin(πx/L)``."""
    x, t = _vector(x, "x"), _times(t)
    rate = nu * (math.pi / length) ** 2
    return torch.sin(math.pi * x / length)[:, None] * torch.exp(-rate * t)[None, :]
