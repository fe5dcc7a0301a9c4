"""Neural controlled differential equations over irregular, partially observed time series."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from .. import solve as _solve
from .._saveat import SaveAt
from .._solution import Solution
from ..adjoints import AbstractAdjoint, DirectAdjoint
from ..controllers import AbstractController, ConstantStepSize, PIDController
from ..paths import HermiteCubicSpline
from ..solvers import AbstractSolver, Dopri5
from ..terms import ControlTerm

__all__ = ["CDEField", "NeuralCDE"]


class CDEField(nn.Module):
    """The default neural CDE field ``f(t, z) ∈ R^{hidden × channels}``: an MLP on ``z`` whose
    output passes through ``tanh`` (bounded, as Kidger et al. recommend), reshaped to a matrix.

    Args:
        hidden_size: size of ``z``.
        channels: channels of the control path.
        width, depth: the MLP's hidden width and number of hidden layers.
    """

    def __init__(self, hidden_size: int, channels: int, width: int = 64, depth: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(hidden_size, width), nn.Softplus()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.Softplus()]
        layers.append(nn.Linear(width, hidden_size * channels))
        self.net = nn.Sequential(*layers)
        self.hidden_size = hidden_size
        self.channels = channels

    def forward(self, t, z, args):
        return torch.tanh(self.net(z)).view(*z.shape[:-1], self.hidden_size, self.channels)


class NeuralCDE(nn.Module):
    """A neural CDE classifier or regressor (Kidger, Morrill, Foster & Lyons, *Neural controlled
    differential equations for irregular time series*, NeurIPS 2020).

    The observations ``(t_i, x_i)`` — irregular, per-sample times allowed, missing values as NaN —
    become a continuous path ``X`` (time itself as channel 0, optionally the cumulative count of
    observations of every channel, which lets the model see *when* values were missing); the
    hidden state solves

        dz = f(z) dX(t),   z(t_0) = ζ(X(t_0)),

    and the output is a linear readout of ``z`` at the last time (logits for a classifier, values
    for a regressor). It is ``ControlTerm(f, path).to_ode()`` solved by :func:`torchnde.solve`, so
    every solver, controller and adjoint applies.

    Args:
        input_channels: channels of the data (before the time and count channels).
        hidden_size: size of ``z``.
        output_size: size of the output.
        field: ``f(t, z, args) -> (batch, hidden, channels)`` (default :class:`CDEField`).
        path: how the path is built: a class such as ``HermiteCubicSpline`` (default: causal and
            C¹, good with adaptive steps), ``NaturalCubicSpline``, ``LinearInterpolation``, called
            as ``path(ts, xs)`` or ``path(ts, xs, batch_axis=0)``.
        time_channel: add time as channel 0 (needed to tell a fast series from a slow one).
        count_channels: add the cumulative number of observations of each channel.
        solver, controller, dt0, adjoint: the solve (default ``Dopri5()``,
            ``PIDController(rtol=1e-3, atol=1e-5)``, ``DirectAdjoint()``); give ``dt0`` and
            ``controller=ConstantStepSize()`` for constant steps.
        step_on_observations: with shared times and a ``PIDController`` that has no
            ``step_ts``/``jump_ts`` of its own, land the steps on the observation times, where a
            cubic path's second derivative jumps (about 3x fewer evaluations than stepping over
            them and being rejected); for a piecewise-linear path, whose derivative jumps there,
            give your own ``PIDController(jump_ts=ts)`` instead.
        clock: for per-sample times ``(batch, T)``: ``"index"`` (default) builds the path on the
            observation index ``s = 0, 1, …, T-1``, shared by the batch, with the real times in
            the time channel — a CDE depends only on the path's image, so this is the same model
            class (for a piecewise-linear path, exactly the same function), solved as one problem
            stepping on the observations; ``"time"`` builds one path per sample on its own times
            and solves with ``batch_axis=0`` (each sample its own steps, which cannot land on
            its own observations: slower, and less accurate across a cubic's knots).

    Shapes: ``ts`` is ``(T,)`` (shared) or ``(batch, T)`` (per sample, see ``clock``); ``xs``
    is ``(batch, T, channels)``. Shorter series: extend their times past the end with NaN values
    (the data channels stay constant there; the time channel keeps moving).
    """

    def __init__(
        self,
        input_channels: int,
        hidden_size: int,
        output_size: int,
        *,
        field: Any = None,
        path: Any = HermiteCubicSpline,
        time_channel: bool = True,
        count_channels: bool = False,
        solver: AbstractSolver | None = None,
        controller: AbstractController | None = None,
        dt0: float | None = None,
        adjoint: AbstractAdjoint | None = None,
        step_on_observations: bool = True,
        clock: str = "index",
        max_steps: int = 10_000,
    ):
        super().__init__()
        for name, value in (
            ("input_channels", input_channels),
            ("hidden_size", hidden_size),
            ("output_size", output_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}")
        if not callable(path):
            raise TypeError(f"`path` must be a path class such as HermiteCubicSpline, got {path!r}")
        self.input_channels = input_channels
        self.time_channel = bool(time_channel)
        self.count_channels = bool(count_channels)
        self.channels = input_channels * (2 if count_channels else 1) + int(self.time_channel)
        self.field = CDEField(hidden_size, self.channels) if field is None else field
        self.initial = nn.Linear(self.channels, hidden_size)
        self.readout = nn.Linear(hidden_size, output_size)
        self.path_type = path
        self.solver = Dopri5() if solver is None else solver
        if controller is None:
            controller = PIDController(rtol=1e-3, atol=1e-5) if dt0 is None else ConstantStepSize()
        self.controller = controller
        self.dt0 = dt0
        self.adjoint = DirectAdjoint() if adjoint is None else adjoint
        if clock not in ("index", "time"):
            raise ValueError(f"`clock` must be 'index' or 'time', got {clock!r}")
        self.clock = clock
        self.step_on_observations = bool(step_on_observations)
        self.max_steps = max_steps
        self.last_stats: dict[str, torch.Tensor] = {}

    def channels_of(self, ts: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """The path's observations ``(batch, T, channels)``: ``[t, x, counts]`` as configured."""
        if not isinstance(xs, torch.Tensor) or xs.ndim != 3:
            raise ValueError(
                "`xs` must be shaped (batch, T, channels), got "
                f"{getattr(xs, 'shape', type(xs).__name__)}"
            )
        batch, length, channels = xs.shape
        if channels != self.input_channels:
            raise ValueError(f"`xs` has {channels} channels, the model {self.input_channels}")
        if not isinstance(ts, torch.Tensor) or ts.shape not in ((length,), (batch, length)):
            raise ValueError(
                f"`ts` must be shaped ({length},) or ({batch}, {length}) for xs of shape "
                f"{tuple(xs.shape)}, got {getattr(ts, 'shape', type(ts).__name__)}"
            )
        parts = []
        if self.time_channel:
            parts.append(ts.to(xs.dtype).expand(batch, length)[..., None])
        parts.append(xs)
        if self.count_channels:
            parts.append((~torch.isnan(xs)).to(xs.dtype).cumsum(dim=1))
        return torch.cat(parts, dim=-1)

    def _index_clock(self, ts: torch.Tensor) -> bool:
        return ts.ndim == 2 and self.clock == "index"

    def build_path(self, ts: torch.Tensor, xs: torch.Tensor):
        """The control path of the batch and its clock ``(T,)``: one path over ``(batch,
        channels)`` on the shared times, or on the observation index ``0, 1, …, T-1`` for
        per-sample times (``clock="index"``); or one path per sample (``clock="time"``, solved
        with ``batch_axis=0``)."""
        obs = self.channels_of(ts, xs)
        if ts.ndim == 1:
            return self.path_type(ts, obs.transpose(0, 1)), ts
        if self._index_clock(ts):
            clock = torch.arange(ts.shape[1], dtype=obs.dtype, device=obs.device)
            return self.path_type(clock, obs.transpose(0, 1)), clock
        return self.path_type(ts, obs, batch_axis=0), ts

    def solve(
        self, ts: torch.Tensor, xs: torch.Tensor, *, saveat: SaveAt | None = None
    ) -> Solution:
        """The hidden state's :class:`~torchnde.Solution` (default: at the last time; with
        ``saveat``, its times are on the path's clock)."""
        path, clock = self.build_path(ts, xs)
        batched = clock.ndim == 2
        t0, t1 = (clock[:, 0], clock[:, -1]) if batched else (clock[0], clock[-1])
        z0 = self.initial(path.evaluate(t0))
        sol = _solve(
            ControlTerm(self.field, path).to_ode(),
            self.solver,
            t0,
            t1,
            z0,
            dt0=self.dt0,
            saveat=saveat,
            controller=self._controller(clock),
            adjoint=self.adjoint,
            max_steps=self.max_steps,
            batch_axis=0 if batched else None,
        )
        self.last_stats = {k: v.detach() for k, v in sol.stats.items()}
        return sol

    def _controller(self, clock: torch.Tensor) -> AbstractController:
        c = self.controller
        if (
            self.step_on_observations
            and clock.ndim == 1
            and isinstance(c, PIDController)
            and c.step_ts is None
            and c.jump_ts is None
        ):
            return dataclasses.replace(c, step_ts=clock.detach())
        return c

    def forward(self, ts: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """The output at the last time, ``(batch, output_size)``."""
        sol = self.solve(ts, xs)
        z = sol.ys[:, -1] if ts.ndim == 2 and not self._index_clock(ts) else sol.ys[-1]
        return self.readout(z)
