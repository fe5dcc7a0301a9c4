"""Two-dimensional toy densities of the flow literature (FFJORD's ``toy_data``), generated here:
eight Gaussians, two moons, a checkerboard; with the exact density where it has one."""

from __future__ import annotations

import math

import torch

__all__ = ["DATASETS", "eight_gaussians_log_prob", "sample"]

#: the eight Gaussians: centres at radius 4 / 1.414, standard deviation 0.5 / 1.414
_RADIUS = 4.0 / 1.414
_SD = 0.5 / 1.414


def _eight_gaussians(n: int, gen: torch.Generator) -> torch.Tensor:
    angle = torch.randint(0, 8, (n,), generator=gen) * (math.pi / 4)
    centres = torch.stack([angle.cos(), angle.sin()], dim=1) * _RADIUS
    return centres + _SD * torch.randn(n, 2, generator=gen)


def eight_gaussians_log_prob(x: torch.Tensor) -> torch.Tensor:
    """The exact log-density of :func:`_eight_gaussians` (a mixture of 8 equal isotropic
    Gaussians)."""
    angle = torch.arange(8, dtype=x.dtype) * (math.pi / 4)
    centres = torch.stack([angle.cos(), angle.sin()], dim=1) * _RADIUS  # (8, 2)
    sq = (x[:, None, :] - centres[None]).pow(2).sum(-1)
    log_comp = -sq / (2 * _SD**2) - math.log(2 * math.pi * _SD**2)
    return torch.logsumexp(log_comp, dim=1) - math.log(8)


def _moons(n: int, gen: torch.Generator) -> torch.Tensor:
    """Two interleaved half circles with noise 0.1 (scikit-learn's ``make_moons`` layout),
    scaled by 2 and centred as in FFJORD."""
    theta = math.pi * torch.rand(n, generator=gen)
    upper = torch.rand(n, generator=gen) < 0.5
    x = torch.where(upper, theta.cos(), 1 - theta.cos())
    y = torch.where(upper, theta.sin(), 0.5 - theta.sin())
    pts = torch.stack([x, y], dim=1) + 0.1 * torch.randn(n, 2, generator=gen)
    return pts * 2 + torch.tensor([-1.0, -0.2])


def _checkerboard(n: int, gen: torch.Generator) -> torch.Tensor:
    """Uniform on the 8 dark squares (side 2) of a 4 x 4 board on ``[-4, 4]²``: entropy
    ``log 32``."""
    x1 = torch.rand(n, generator=gen) * 4 - 2
    x2 = torch.rand(n, generator=gen) - torch.randint(0, 2, (n,), generator=gen) * 2.0
    x2 = x2 + torch.floor(x1) % 2
    return torch.stack([x1, x2], dim=1) * 2


DATASETS = {
    "8gaussians": _eight_gaussians,
    "moons": _moons,
    "checkerboard": _checkerboard,
}


def sample(name: str, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` points ``(n, 2)`` of the named density."""
    return DATASETS[name](n, gen)
