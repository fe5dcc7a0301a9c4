"""Latent SDEs (Li, Wong, Chen & Duvenaud, *Scalable gradients for stochastic differential
equations*, AISTATS 2020, section 5)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .. import solve as _solve
from .._saveat import SaveAt
from ..adjoints import AbstractAdjoint, DirectAdjoint
from ..controllers import ConstantStepSize
from ..paths import BrownianGrid
from ..solvers import AbstractSolver, EulerMaruyama
from ..terms import ControlTerm, MultiTerm, ODETerm

__all__ = ["LatentSDE", "LatentSDEOutput"]


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.Softplus(), nn.Linear(hidden, hidden), nn.Softplus(),
        nn.Linear(hidden, n_out),
    )  # fmt: skip


@dataclass
class LatentSDEOutput:
    """One pass of a :class:`LatentSDE` over observed series.

    Attributes:
        elbo: the evidence lower bound per series ``(batch,)``.
        log_likelihood: ``log p(x | z)`` per series.
        kl_z0: ``KL(q(z0 | x) ‖ p(z0))`` per series.
        kl_path: the path KL ``∫ ½ |(f_q - h)/g|² dt`` per series (Girsanov).
        zs: posterior latent paths at the observation times ``(batch, T, latent)``.
        xs: their decoded means ``(batch, T, data)``.
    """

    elbo: torch.Tensor
    log_likelihood: torch.Tensor
    kl_z0: torch.Tensor
    kl_path: torch.Tensor
    zs: torch.Tensor
    xs: torch.Tensor


class _Diffusion(nn.Module):
    """Diagonal diffusion: unit ``i`` is ``sigmoid(net_i(z_i, t))`` (a function of ``z_i`` alone,
    as diagonal noise requires), scaled by ``scale``."""

    def __init__(self, latent: int, hidden: int, scale: float):
        super().__init__()
        self.nets = nn.ModuleList(
            nn.Sequential(nn.Linear(2, hidden), nn.Softplus(), nn.Linear(hidden, 1))
            for _ in range(latent)
        )
        self.scale = scale

    def forward(self, t, z):
        tt = t.expand(z.shape[0], 1)
        cols = [net(torch.cat([z[:, i : i + 1], tt], dim=1)) for i, net in enumerate(self.nets)]
        return self.scale * torch.sigmoid(torch.cat(cols, dim=1))


class LatentSDE(nn.Module):
    """A latent SDE trained by variational inference (Li et al. 2020).

    A GRU reads each series backwards and gives a context per observation time; the posterior
    starts from ``z0 ~ q(z0 | x) = N(μ_q, σ_q²)`` and follows ``dz = f_q(t, z, ctx(t)) dt + g(t,
    z) dW``; the prior follows ``dz = h(t, z) dt + g(t, z) dW`` from ``N(μ_p, σ_p²)`` with the
    *same* diffusion, so the path KL is finite and, by Girsanov, ``∫ ½ |u|² dt`` with ``g u =
    f_q - h``; it is integrated in the same solve as an extra state entry (with zero noise).
    Observations are ``x ~ N(W z + b, obs_std²)``. The ELBO

        E_q[log p(x | z)] - KL(q(z0) ‖ p(z0)) - E_q[∫ ½ |u|² dt]

    is estimated with one posterior path per series; gradients flow through the solve (any
    adjoint: ``DirectAdjoint`` by default, ``BacksolveAdjoint`` is the stochastic adjoint of the
    paper with a Stratonovich solver).

    Args:
        data_size: channels of the observations.
        latent_size: latent dimension.
        context_size: GRU context width.
        hidden_size: the drift and diffusion networks' width.
        dt: the constant solver step; observation times must lie on the grid ``ts[0] + k·dt``.
        obs_std: the observation noise's standard deviation.
        diffusion_scale: the largest diffusion a unit can have.
        solver: an SDE solver (default :class:`~torchnde.EulerMaruyama`: Itô).
        adjoint: how gradients flow (default :class:`~torchnde.DirectAdjoint`).
    """

    def __init__(
        self,
        data_size: int,
        latent_size: int,
        context_size: int = 16,
        hidden_size: int = 32,
        *,
        dt: float = 0.01,
        obs_std: float = 0.05,
        diffusion_scale: float = 1.0,
        solver: AbstractSolver | None = None,
        adjoint: AbstractAdjoint | None = None,
    ):
        super().__init__()
        for name, value in (("data_size", data_size), ("latent_size", latent_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}")
        if not dt > 0 or not obs_std > 0:
            raise ValueError(f"`dt` and `obs_std` must be positive, got {dt!r}, {obs_std!r}")
        self.latent_size = latent_size
        self.dt, self.obs_std = float(dt), float(obs_std)
        self.encoder = nn.GRU(data_size, context_size, batch_first=True)
        self.q_z0 = nn.Linear(context_size, 2 * latent_size)
        self.p_z0_mean = nn.Parameter(torch.zeros(latent_size))
        self.p_z0_logstd = nn.Parameter(torch.zeros(latent_size))
        self.posterior_drift = _mlp(latent_size + context_size + 1, hidden_size, latent_size)
        self.prior_drift = _mlp(latent_size + 1, hidden_size, latent_size)
        self.diffusion = _Diffusion(latent_size, hidden_size // 2 or 1, diffusion_scale)
        self.decoder = nn.Linear(latent_size, data_size)
        self.solver = EulerMaruyama() if solver is None else solver
        self.adjoint = DirectAdjoint() if adjoint is None else adjoint

    def _steps(self, ts: torch.Tensor) -> int:
        if not isinstance(ts, torch.Tensor) or ts.ndim != 1 or len(ts) < 2:
            raise ValueError(f"`ts` must be a 1-D tensor of >= 2 times, got {ts!r}")
        grid = (ts - ts[0]) / self.dt
        if (grid - grid.round()).abs().max() > 1e-4 or (ts.diff() <= 0).any():
            raise ValueError(
                f"`ts` must increase on the solver's grid ts[0] + k*dt (dt={self.dt:g}), got "
                f"{ts.tolist()}; choose dt dividing the observation spacing"
            )
        return int(grid[-1].round())

    def _h(self, t, z):
        return self.prior_drift(torch.cat([z, t.expand(z.shape[0], 1)], dim=1))

    def _solve(self, drift, diffusion, ts, y0, seed: int) -> torch.Tensor:
        steps = self._steps(ts)
        t0, t1 = float(ts[0]), float(ts[-1])
        path = BrownianGrid(
            t0, t1, y0.shape, steps=steps, seed=seed, dtype=y0.dtype, device=y0.device
        )
        terms = MultiTerm(ODETerm(drift), ControlTerm(diffusion, path, noise="diagonal"))
        sol = _solve(
            terms,
            self.solver,
            t0,
            t1,
            y0,
            dt0=(t1 - t0) / steps,
            saveat=SaveAt(ts=ts),
            controller=ConstantStepSize(),
            adjoint=self.adjoint,
            max_steps=steps + 10,
        )
        return sol.ys.transpose(0, 1)  # (batch, T, state)

    def forward(self, ts: torch.Tensor, xs: torch.Tensor, *, seed: int | None = None):
        """The ELBO of series ``xs: (batch, T, data)`` observed at shared times ``ts: (T,)``.

        Returns:
            A :class:`LatentSDEOutput`; minimise ``-out.elbo.mean()``.
        """
        if not isinstance(xs, torch.Tensor) or xs.ndim != 3 or xs.shape[1] != len(ts):
            raise ValueError(
                f"`xs` must be (batch, T={len(ts)}, data), got {getattr(xs, 'shape', type(xs))}"
            )
        seed = int(torch.randint(0, 2**31 - 1, ())) if seed is None else seed
        ctx = self.encoder(xs.flip(1))[0].flip(1)  # (batch, T, context): the future of each time
        q_mean, q_logstd = self.q_z0(ctx[:, 0]).chunk(2, dim=1)
        z0 = q_mean + q_logstd.exp() * torch.randn_like(q_mean)
        n = self.latent_size
        ts_ = ts.to(xs.dtype)

        def drift(t, y, args):
            z = y[:, :n]
            i = torch.searchsorted(ts_, t.reshape(1).to(ts_.dtype)).clamp(max=len(ts_) - 1)
            tt = t.expand(z.shape[0], 1)
            f = self.posterior_drift(torch.cat([z, ctx[:, i[0]], tt], dim=1))
            g = self.diffusion(t, z)
            u = (f - self._h(t, z)) / g
            return torch.cat([f, 0.5 * u.pow(2).sum(1, keepdim=True)], dim=1)

        def diffusion(t, y, args):
            g = self.diffusion(t, y[:, :n])
            return torch.cat([g, torch.zeros_like(y[:, n:])], dim=1)

        y0 = torch.cat([z0, z0.new_zeros(z0.shape[0], 1)], dim=1)
        ys = self._solve(drift, diffusion, ts_, y0, seed)
        zs, kl_path = ys[..., :n], ys[:, -1, n]
        means = self.decoder(zs)
        log_lik = (
            -0.5 * ((xs - means) / self.obs_std).pow(2)
            - math.log(self.obs_std * math.sqrt(2 * math.pi))
        ).sum((1, 2))
        kl_z0 = _normal_kl(q_mean, q_logstd, self.p_z0_mean, self.p_z0_logstd).sum(1)
        return LatentSDEOutput(log_lik - kl_z0 - kl_path, log_lik, kl_z0, kl_path, zs, means)

    def sample_prior(
        self,
        ts: torch.Tensor,
        n: int,
        *,
        seed: int = 0,
        generator: torch.Generator | None = None,
        observation_noise: bool = False,
    ) -> torch.Tensor:
        """``n`` series from the generative model at ``ts``: ``(n, T, data)``.

        The prior SDE's paths are decoded to their means ``W z + b``; with
        ``observation_noise=True`` independent ``N(0, obs_std²)`` noise is added at every time,
        so the series follow the model's full likelihood ``p(x | z)`` (its marginal variance is
        the decoded latent variance plus ``obs_std²``)."""
        like = self.p_z0_mean
        eps = torch.randn(
            n, self.latent_size, dtype=like.dtype, device=like.device, generator=generator
        )
        z0 = self.p_z0_mean + self.p_z0_logstd.exp() * eps

        def drift(t, z, args):
            return self._h(t, z)

        def diffusion(t, z, args):
            return self.diffusion(t, z)

        zs = self._solve(drift, diffusion, ts.to(like.dtype), z0, seed)
        means = self.decoder(zs)
        if not observation_noise:
            return means
        eps = torch.randn(means.shape, dtype=means.dtype, device=means.device, generator=generator)
        return means + self.obs_std * eps


def _normal_kl(m1, logs1, m2, logs2):
    """``KL(N(m1, s1²) ‖ N(m2, s2²))`` elementwise."""
    return (
        logs2 - logs1 + (torch.exp(2 * logs1) + (m1 - m2) ** 2) / (2 * torch.exp(2 * logs2)) - 0.5
    )
