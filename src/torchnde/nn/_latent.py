"""ODE-RNNs and latent ODEs for irregularly sampled time series (Rubanova, Chen & Duvenaud,
*Latent ODEs for irregularly-sampled time series*, NeurIPS 2019; Chen et al. 2018, section 5).

Series come as ``ts`` (observation times: ``(T,)`` shared by the batch, or ``(batch, T)`` per
sample, non-decreasing along ``T``), ``xs: (batch, T, channels)`` and an optional ``mask`` of the
same shape (``True``/1 where observed; default: where ``xs`` is not NaN). Series of different
lengths are padded at the end by repeating the last time with an all-zero mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import solve as _solve
from .._saveat import SaveAt
from ..adjoints import AbstractAdjoint, DirectAdjoint
from ..controllers import AbstractController, ConstantStepSize
from ..solvers import RK4, AbstractSolver, Dopri5
from ..terms import ODETerm

__all__ = ["ODERNN", "LatentODE", "LatentOutput", "check_series"]


def _mlp(n_in: int, hidden: int, n_out: int, layers: int = 1) -> nn.Sequential:
    mods: list[nn.Module] = [nn.Linear(n_in, hidden), nn.Tanh()]
    for _ in range(layers - 1):
        mods += [nn.Linear(hidden, hidden), nn.Tanh()]
    mods.append(nn.Linear(hidden, n_out))
    return nn.Sequential(*mods)


class _Autonomous(nn.Module):
    """``f(t, h, args) = net(h)``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, t, h, args):
        return self.net(h)


def check_series(
    ts: torch.Tensor, xs: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate an irregular batch: returns ``ts``, ``xs`` with missing entries set to 0, and the
    float ``mask`` ``(batch, T, channels)``."""
    if not isinstance(xs, torch.Tensor) or xs.ndim != 3:
        raise ValueError(
            "`xs` must be a tensor shaped (batch, T, channels), got "
            f"{getattr(xs, 'shape', type(xs).__name__)}"
        )
    batch, length, _ = xs.shape
    if not isinstance(ts, torch.Tensor) or ts.shape not in ((length,), (batch, length)):
        raise ValueError(
            f"`ts` must be shaped ({length},) (shared) or ({batch}, {length}) (per sample) for "
            f"xs of shape {tuple(xs.shape)}, got {getattr(ts, 'shape', type(ts).__name__)}"
        )
    if not torch.isfinite(ts).all():
        raise ValueError("`ts` must be finite; pad short series by repeating their last time")
    if length > 1 and (ts[..., 1:] < ts[..., :-1]).any():
        raise ValueError(
            "`ts` must be non-decreasing along the time axis; sort each series by time "
            "(`ts.sort(dim=-1)` and reorder xs and mask alike)"
        )
    if mask is None:
        mask = ~torch.isnan(xs)
    elif not isinstance(mask, torch.Tensor) or mask.shape != xs.shape:
        raise ValueError(
            f"`mask` must be shaped like xs {tuple(xs.shape)}, got "
            f"{getattr(mask, 'shape', type(mask).__name__)}"
        )
    mask = mask.to(xs.dtype)
    values = torch.where(mask > 0, xs, torch.zeros_like(xs))
    if not torch.isfinite(values).all():
        raise ValueError("`xs` has infinite observed values; mark missing values with NaN")
    return ts, values, mask


class ODERNN(nn.Module):
    """An ODE-RNN (Rubanova et al. 2019): a recurrent network whose hidden state follows an ODE
    ``dh/dt = f(h)`` between observations and jumps at each observation,
    ``h ← cell([x_i·m_i, m_i], h)`` (a GRU cell fed the observed values and their mask; samples
    with nothing observed at ``t_i`` keep their evolved state).

    Between observations the state is solved by :func:`torchnde.solve`, one solve per observation
    index for the whole batch: shared times run as one problem, per-sample times as
    ``batch_axis=0`` with each sample's own interval.

    Args:
        input_size: channels of the series.
        hidden_size: size of the hidden state.
        field: ``f(t, h, args)``; default an MLP ``hidden → hidden_size → hidden`` with tanh.
        solver: default ``RK4()``; ``steps`` equal steps per interval (default 1) with constant
            steps, or pass an adaptive ``controller`` (then ``solver`` needs an error estimate).
        adjoint: gradients of each interval's solve (default ``DirectAdjoint()``).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        field: Any = None,
        *,
        solver: AbstractSolver | None = None,
        steps: int = 1,
        controller: AbstractController | None = None,
        adjoint: AbstractAdjoint | None = None,
    ):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"`steps` (per interval) must be a positive int, got {steps!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.field = (
            _Autonomous(_mlp(hidden_size, hidden_size, hidden_size)) if field is None else field
        )
        self.cell = nn.GRUCell(2 * input_size, hidden_size)
        self.solver = RK4() if solver is None else solver
        self.steps = steps
        self.controller = controller
        self.adjoint = DirectAdjoint() if adjoint is None else adjoint

    def evolve(self, h: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
        """``h`` solved from ``t0`` to ``t1`` (0-dim, or ``(batch,)`` per sample)."""
        adaptive = self.controller is not None and self.controller.adaptive
        if t0.ndim == 0:
            gap = float(t1 - t0)
            if gap == 0.0:
                return h
            dt0, batch_axis = (None if adaptive else gap / self.steps), None
        else:
            dt0 = (
                None
                if adaptive
                else torch.where(t1 >= t0, 1.0, -1.0)
                * ((t1 - t0).abs().clamp_min(1e-9) / self.steps)
            )
            batch_axis = 0
        sol = _solve(
            ODETerm(self.field),
            self.solver,
            t0,
            t1,
            h,
            dt0=dt0,
            controller=self.controller if self.controller is not None else ConstantStepSize(),
            adjoint=self.adjoint,
            batch_axis=batch_axis,
        )
        return sol.ys[:, -1] if batch_axis == 0 else sol.ys[-1]

    def update(self, h: torch.Tensor, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """The jump at one observation: ``x, m: (batch, channels)``."""
        new = self.cell(torch.cat([x * m, m], dim=-1), h)
        seen = (m.sum(dim=-1, keepdim=True) > 0).to(h.dtype)
        return seen * new + (1 - seen) * h

    def forward(
        self,
        ts: torch.Tensor,
        xs: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        h0: torch.Tensor | None = None,
        reverse: bool = False,
        t_end: torch.Tensor | float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run over the observations (from the last to the first when ``reverse``).

        Args:
            ts, xs, mask: the series (see the module's docstring).
            h0: the initial hidden state ``(batch, hidden)`` (default zeros).
            reverse: read the series backwards in time, as a latent ODE's encoder does.
            t_end: solve the final state on to this time (e.g. the latent ODE's start time).

        Returns:
            ``hs: (batch, T, hidden)``, the state right after each observation (in time order),
            and the final state ``(batch, hidden)`` (at ``t_end`` if given).
        """
        ts, xs, mask = check_series(ts, xs, mask)
        batch, length, channels = xs.shape
        if channels != self.input_size:
            raise ValueError(f"`xs` has {channels} channels, the ODE-RNN {self.input_size}")
        h = xs.new_zeros(batch, self.hidden_size) if h0 is None else h0
        order = range(length - 1, -1, -1) if reverse else range(length)
        time = (lambda i: ts[i]) if ts.ndim == 1 else (lambda i: ts[:, i])
        hs: list[torch.Tensor | None] = [None] * length
        previous = None
        for i in order:
            if previous is not None:
                h = self.evolve(h, time(previous), time(i))
            h = self.update(h, xs[:, i], mask[:, i])
            hs[i] = h
            previous = i
        if t_end is not None:
            end = torch.as_tensor(t_end, dtype=ts.dtype, device=ts.device)
            if ts.ndim == 2 and end.ndim == 0:
                end = end.expand(batch)
            start = time(previous)
            if ts.ndim == 1 and end.ndim == 1:
                start = start.expand(batch)
            h = self.evolve(h, start, end)
        return torch.stack(hs, dim=1), h


@dataclass
class LatentOutput:
    """A latent ODE's pass.

    Attributes:
        pred: the decoded means ``(batch, T', channels)`` at the prediction times.
        mean, std: the posterior ``q(z0 | x)``, each ``(batch, latent)``.
        z0: the latent initial state used (a sample, or the mean).
        zs: the latent trajectory ``(batch, T', latent)``.
    """

    pred: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    z0: torch.Tensor
    zs: torch.Tensor


class LatentODE(nn.Module):
    """A latent ODE (Chen et al. 2018, section 5; Rubanova et al. 2019): a variational
    autoencoder whose decoder is an ODE in a latent space.

    An :class:`ODERNN` reads the observations backwards in time and gives the posterior
    ``q(z0 | x) = N(μ, σ²)`` of the latent state at the first prediction time; ``z0`` is sampled
    (reparameterised), solved through ``dz/dt = f(z)`` to every prediction time in one
    :func:`torchnde.solve`, and mapped to the observations by ``readout``. Train on
    :meth:`loss`, the negative ELBO: the Gaussian log-likelihood of the observed values minus
    ``KL(q(z0|x) ‖ N(0, I))``. Because the decoder is a solve, predictions exist at any time —
    between observations and past them.

    Args:
        input_size: channels of the series.
        latent_size: size of ``z``.
        hidden_size: the encoder's hidden size (default 25, as in Chen et al.'s spirals).
        field_hidden: hidden units of the latent field's MLP (default 20).
        field: ``f(t, z, args)`` instead of the default MLP.
        readout: ``z -> x`` instead of the default linear map.
        encoder: an :class:`ODERNN` instead of the default one (input ``input_size``).
        solver, controller, adjoint: the decoder's solve (default ``Dopri5()`` with
            ``PIDController(rtol=1e-3, atol=1e-4)``, ``DirectAdjoint()``); for constant steps give
            ``dt0``.
        obs_std: the observation noise of the likelihood.
    """

    def __init__(
        self,
        input_size: int,
        latent_size: int,
        *,
        hidden_size: int = 25,
        field_hidden: int = 20,
        field: Any = None,
        readout: nn.Module | None = None,
        encoder: ODERNN | None = None,
        solver: AbstractSolver | None = None,
        controller: AbstractController | None = None,
        dt0: float | None = None,
        adjoint: AbstractAdjoint | None = None,
        obs_std: float = 0.1,
    ):
        super().__init__()
        if not (isinstance(obs_std, (int, float)) and obs_std > 0):
            raise ValueError(f"`obs_std` must be a positive number, got {obs_std!r}")
        from ..controllers import PIDController

        self.latent_size = latent_size
        self.encoder = ODERNN(input_size, hidden_size) if encoder is None else encoder
        self.to_posterior = nn.Linear(self.encoder.hidden_size, 2 * latent_size)
        self.field = (
            _Autonomous(_mlp(latent_size, field_hidden, latent_size)) if field is None else field
        )
        self.readout = nn.Linear(latent_size, input_size) if readout is None else readout
        self.solver = Dopri5() if solver is None else solver
        if controller is None and dt0 is None:
            controller = PIDController(rtol=1e-3, atol=1e-4)
        self.controller = ConstantStepSize() if controller is None else controller
        self.dt0 = dt0
        self.adjoint = DirectAdjoint() if adjoint is None else adjoint
        self.obs_std = float(obs_std)

    def encode(
        self, ts: torch.Tensor, xs: torch.Tensor, mask: torch.Tensor | None, t_start
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior mean and standard deviation of ``z(t_start)``."""
        _, h = self.encoder(ts, xs, mask, reverse=True, t_end=t_start)
        mean, raw = self.to_posterior(h).chunk(2, dim=-1)
        return mean, nn.functional.softplus(raw) + 1e-4

    def decode(self, z0: torch.Tensor, ts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z`` solved from ``z0`` at ``ts[..., 0]`` to every time of ``ts`` (``(T',)`` shared,
        or ``(batch, T')``), and the readout: ``(pred, zs)``, each ``(batch, T', ·)``."""
        batched = ts.ndim == 2
        t0, t1 = (ts[:, 0], ts[:, -1]) if batched else (ts[0], ts[-1])
        sol = _solve(
            ODETerm(self.field),
            self.solver,
            t0,
            t1,
            z0,
            dt0=self.dt0,
            saveat=SaveAt(ts=ts),
            controller=self.controller,
            adjoint=self.adjoint,
            batch_axis=0 if batched else None,
        )
        zs = sol.ys if batched else sol.ys.transpose(0, 1)
        return self.readout(zs), zs

    def forward(
        self,
        ts: torch.Tensor,
        xs: torch.Tensor,
        mask: torch.Tensor | None = None,
        ts_pred: torch.Tensor | None = None,
        *,
        sample: bool = True,
        generator: torch.Generator | None = None,
    ) -> LatentOutput:
        """Encode the observations, sample ``z0`` (or take the mean with ``sample=False``) and
        decode at ``ts_pred`` (default: ``ts``)."""
        ts_pred = ts if ts_pred is None else ts_pred
        if not isinstance(ts_pred, torch.Tensor) or ts_pred.ndim not in (1, 2):
            raise ValueError(
                f"`ts_pred` must be shaped (T',) or (batch, T'), got "
                f"{getattr(ts_pred, 'shape', type(ts_pred).__name__)}"
            )
        t_start = ts_pred[..., 0]
        mean, std = self.encode(ts, xs, mask, t_start)
        if sample:
            eps = torch.randn(mean.shape, dtype=mean.dtype, device=mean.device, generator=generator)
            z0 = mean + std * eps
        else:
            z0 = mean
        pred, zs = self.decode(z0, ts_pred)
        return LatentOutput(pred, mean, std, z0, zs)

    def loss(
        self,
        out: LatentOutput,
        target: torch.Tensor,
        target_mask: torch.Tensor | None = None,
        *,
        kl_weight: float = 1.0,
    ) -> torch.Tensor:
        """The negative ELBO per observed value: ``-(log N(target | pred, obs_std²)·mask).sum() /
        mask.sum() + kl_weight · KL / mask.sum()`` averaged over the batch (``target`` shaped like
        ``out.pred``; NaN = missing)."""
        if target.shape != out.pred.shape:
            raise ValueError(
                f"`target` must be shaped like the predictions {tuple(out.pred.shape)}, got "
                f"{tuple(target.shape)}"
            )
        mask = (~torch.isnan(target)) if target_mask is None else target_mask.bool()
        mask = mask.to(out.pred.dtype)
        diff = torch.where(mask > 0, target - out.pred, torch.zeros_like(out.pred))
        var = self.obs_std**2
        log_lik = -0.5 * (diff.pow(2) / var + math.log(2 * math.pi * var)) * mask
        kl = (0.5 * (out.std.pow(2) + out.mean.pow(2) - 1) - torch.log(out.std)).sum(dim=-1)
        count = mask.sum().clamp_min(1.0)
        return -(log_lik.sum() - kl_weight * kl.sum()) / count
