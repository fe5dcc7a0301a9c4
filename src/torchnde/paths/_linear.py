"""Piecewise-linear interpolation of observations ``(t_i, x_i)``."""

from __future__ import annotations

import torch

from ._pieces import (
    AbstractInterpolation,
    check_channels_observed,
    check_observations,
    impute_linear,
    series_values,
    to_series,
)

__all__ = ["LinearInterpolation"]


def step_widths(ts: torch.Tensor, batched: bool, channels: int, dtype: torch.dtype) -> torch.Tensor:
    """``t_{i+1} - t_i`` shaped to broadcast against ``xs.diff`` along the time axis."""
    h = ts.diff(dim=-1).to(dtype)
    if batched and ts.ndim == 1:
        h = h[None]
    return h.reshape(*h.shape, *([1] * channels))


def linear_coeffs(ts: torch.Tensor, xs: torch.Tensor, batched: bool) -> torch.Tensor:
    """``(pieces, 2, *channels)`` (batched: ``(batch, pieces, 2, *channels)``): value and slope."""
    axis = 1 if batched else 0
    channels = xs.ndim - axis - 1
    length = xs.shape[axis]
    slope = xs.diff(dim=axis) / step_widths(ts, batched, channels, xs.dtype)
    return torch.stack([xs.narrow(axis, 0, length - 1), slope], dim=axis + 1)


def fill_missing(owner, ts, xs, batched, shape) -> torch.Tensor:
    """``xs`` with NaNs imputed linearly in time (nearest observation at the ends)."""
    if not bool(torch.isnan(xs).any()):
        return xs
    t, x = to_series(ts, xs, batched)
    check_channels_observed(owner, x, batched, shape)
    return series_values(impute_linear(t, x), batched, shape)


class LinearInterpolation(AbstractInterpolation):
    """The piecewise-linear path through observations ``(ts[i], xs[i])``, constant outside them.

    Args:
        ts: observation times, strictly increasing: ``(length,)``, or ``(batch, length)`` for
            per-sample times (then ``batch_axis=0`` is implied). Any floating dtype; times may be
            irregular.
        xs: observations ``(length, *channels)``, or ``(batch, length, *channels)`` with
            ``batch_axis=0``. Missing values are NaN (see below).
        batch_axis: ``0`` if ``xs`` has a leading batch axis (one path per sample, queried at
            ``(batch,)`` times in a solve with ``batch_axis=0``), ``None`` otherwise.

    Missing values: each NaN is replaced, channel by channel, by the linear interpolation in time
    of the observations just before and after it; NaNs before a channel's first observation take
    that observation, and NaNs after its last take the last one. ``xs`` (the attribute) holds the
    filled values. A channel with no observation at all, or NaN/non-increasing ``ts``, raise a
    ``ValueError`` that names it.

    Outside ``[ts[0], ts[-1]]`` the path is constant (its derivative is zero there).

    A neural CDE driven by this path is the "linear control" of Kidger et al., *Neural Controlled
    Differential Equations for Irregular Time Series* (NeurIPS 2020). Its derivative jumps at every
    observation: with ``ControlTerm(f, path)`` (increments), steps that end on the observation
    times (``StepTo(ts)``) are exact; with adaptive steps pass ``PIDController(jump_ts=ts)``.
    """

    def __init__(self, ts: torch.Tensor, xs: torch.Tensor, batch_axis: int | None = None):
        owner = "LinearInterpolation"
        ts, xs, batched, shape = check_observations(owner, ts, xs, batch_axis)

        def build(ts, xs):
            xs = fill_missing(owner, ts, xs, batched, shape)
            last = xs[:, -1] if batched else xs[-1]
            return ts, linear_coeffs(ts, xs, batched), last, xs

        self.ts = ts
        (self.xs,) = self._set_pieces(build, (ts, xs), batched, shape)
