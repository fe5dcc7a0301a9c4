"""Piecewise-linear interpolation of observations ``(t_i, x_i)``."""

from __future__ import annotations

import torch

from ._base import AbstractPath

__all__ = ["LinearInterpolation"]


class LinearInterpolation(AbstractPath):
    """The piecewise-linear path through observations ``(ts[i], xs[i])``, constant outside them.

    Args:
        ts: observation times, strictly increasing: ``(length,)``, or ``(batch, length)`` for
            per-sample times (then ``batch_axis=0`` is implied).
        xs: observations ``(length, *channels)``, or ``(batch, length, *channels)`` with
            ``batch_axis=0``.
        batch_axis: ``0`` if ``xs`` has a leading batch axis, ``None`` otherwise.

    A neural CDE driven by this path is the "linear control" of Kidger et al., *Neural Controlled
    Differential Equations for Irregular Time Series* (NeurIPS 2020); it is exact for solvers that
    step between observation times (pass them as ``PIDController(jump_ts=ts)``).
    """

    def __init__(self, ts: torch.Tensor, xs: torch.Tensor, batch_axis: int | None = None):
        if not isinstance(ts, torch.Tensor) or not isinstance(xs, torch.Tensor):
            raise TypeError("`ts` and `xs` must be tensors")
        if batch_axis not in (None, 0):
            raise ValueError(f"`batch_axis` must be None or 0, got {batch_axis!r}")
        batched = batch_axis == 0 or ts.ndim == 2
        if ts.ndim not in (1, 2) or (ts.ndim == 2 and not batched):
            raise ValueError(f"`ts` must be (length,) or (batch, length), got {tuple(ts.shape)}")
        time_axis = 1 if batched else 0
        if xs.ndim <= time_axis or xs.shape[time_axis] != ts.shape[-1]:
            raise ValueError(
                f"`xs` must have {ts.shape[-1]} observations along axis {time_axis} to match `ts`, "
                f"got shape {tuple(xs.shape)}"
            )
        if ts.shape[-1] < 2:
            raise ValueError("`ts` needs at least two observation times to interpolate")
        if not torch.isfinite(ts).all():
            raise ValueError("`ts` contains NaN or infinite times; remove those observations")
        if not torch.isfinite(xs).all():
            raise ValueError(
                "`xs` contains NaN or infinite values; fill missing observations first "
                "(e.g. forward-fill) before building a LinearInterpolation"
            )
        if not bool((ts.diff(dim=-1) > 0).all()):
            raise ValueError("`ts` must be strictly increasing; sort the observations by time")
        if batched and ts.ndim == 1:  # times shared by every sample's observations
            ts = ts.expand(xs.shape[0], -1).contiguous()
        self.ts = ts
        self.xs = xs
        self.batched = batched
        self.shape = tuple(xs.shape[time_axis + 1 :])

    def __repr__(self) -> str:
        return f"LinearInterpolation(length={self.ts.shape[-1]}, shape={self.shape})"

    def _piece(self, t: torch.Tensor):
        """Index of the piece holding ``t`` and the fraction along it, for 0-dim or (batch,) t."""
        ts = self.ts
        t = t.to(ts.dtype)
        length = ts.shape[-1]
        if self.batched:
            tq = t.expand(ts.shape[0]) if t.ndim == 0 else t
            idx = torch.searchsorted(ts, tq[:, None].contiguous(), right=True)[:, 0] - 1
            idx = idx.clamp(0, length - 2)
            left = ts.gather(1, idx[:, None])[:, 0]
            right = ts.gather(1, idx[:, None] + 1)[:, 0]
        else:
            tq = t.reshape(-1)
            idx = (torch.searchsorted(ts, tq.contiguous(), right=True) - 1).clamp(0, length - 2)
            left, right = ts[idx], ts[idx + 1]
            idx = idx.reshape(t.shape)
            left, right, tq = left.reshape(t.shape), right.reshape(t.shape), tq.reshape(t.shape)
        return idx, left, right, tq

    def _gather(self, idx: torch.Tensor) -> torch.Tensor:
        if self.batched:
            flat = self.xs.reshape(self.xs.shape[0], self.xs.shape[1], -1)
            out = flat.gather(1, idx[:, None, None].expand(-1, 1, flat.shape[2]))[:, 0]
            return out.reshape(idx.shape[0], *self.shape)
        return self.xs[idx]

    def _expand(self, w: torch.Tensor) -> torch.Tensor:
        return w.reshape((*w.shape, *([1] * len(self.shape)))).to(self.xs.dtype)

    def evaluate(self, t: torch.Tensor) -> torch.Tensor:
        idx, left, right, tq = self._piece(t)
        w = ((tq - left) / (right - left)).clamp(0.0, 1.0)
        x0, x1 = self._gather(idx), self._gather(idx + 1)
        return x0 + self._expand(w) * (x1 - x0)

    def increment(self, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
        return self.evaluate(t1) - self.evaluate(t0)

    def derivative(self, t: torch.Tensor) -> torch.Tensor:
        idx, left, right, tq = self._piece(t)
        inside = ((tq >= self.ts[..., :1].squeeze(-1)) & (tq <= self.ts[..., -1])).to(self.xs.dtype)
        x0, x1 = self._gather(idx), self._gather(idx + 1)
        return self._expand(inside / (right - left)) * (x1 - x0)
