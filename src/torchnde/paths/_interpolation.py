"""Control paths through observations besides the linear one: natural cubic splines, cubic Hermite
splines with backward differences (causal), rectilinear paths, and cubics from saved coefficients.

All of them store one polynomial per piece (:class:`~torchnde.paths.AbstractInterpolation`), so a
query costs one search and a few multiply-adds whatever the kind.
"""

from __future__ import annotations

import torch

from ._linear import fill_missing, linear_coeffs, step_widths
from ._pieces import (
    AbstractInterpolation,
    check_channels_observed,
    check_observations,
    forward_fill,
    from_series,
    nearest_ends,
    series_values,
    to_series,
)

__all__ = ["HermiteCubicSpline", "NaturalCubicSpline", "PiecewiseCubic", "RectilinearInterpolation"]


def _last_value(coeffs: torch.Tensor, ts: torch.Tensor, batched: bool) -> torch.Tensor:
    """``X`` at the last knot, from the last piece of ``coeffs``."""
    axis = 1 if batched else 0
    piece = coeffs.select(axis, coeffs.shape[axis] - 1)  # (K, *shape) or (B, K, *shape)
    h = (ts[..., -1] - ts[..., -2]).to(coeffs.dtype)
    parts = piece.unbind(axis)
    if h.ndim:
        h = h.reshape(*h.shape, *([1] * (parts[0].ndim - 1)))
    out = parts[-1]
    for c in parts[-2::-1]:
        out = c + h * out
    return out


# ------------------------------------------------------------------------------------------------
# natural cubic spline


def _thomas(lower, diag, upper, rhs):
    """Solve tridiagonal systems along the last axis (the Thomas algorithm, vectorised over the
    other axes; differentiable). ``lower[i]`` multiplies ``x[i-1]``, ``upper[i]`` ``x[i+1]``."""
    m = rhs.shape[-1]
    if m == 0:
        return rhs
    lo, di, up, r = (v.unbind(-1) for v in torch.broadcast_tensors(lower, diag, upper, rhs))
    c = [up[0] / di[0]]
    d = [r[0] / di[0]]
    for i in range(1, m):
        denom = di[i] - lo[i] * c[-1]
        c.append(up[i] / denom)
        d.append((r[i] - lo[i] * d[-1]) / denom)
    x = [d[-1]]
    for i in range(m - 2, -1, -1):
        x.append(d[i] - c[i] * x[-1])
    return torch.stack(x[::-1], dim=-1)


def _natural_on_knots(t, x, count=None):
    """Natural cubic spline pieces ``(…, length - 1, 4)`` through ``(t, x)`` along the last axis,
    from its second derivatives ``M`` (``M = 0`` at both ends). ``count: (…, 1)``, if given:
    only the first ``count`` knots of each series are real, the rest padding."""
    h = t.diff(dim=-1).to(x.dtype)
    slope = x.diff(dim=-1) / h
    lower, upper = h[..., :-1], h[..., 1:]  # rows 1 … length - 2
    diag = 2 * (lower + upper)
    rhs = 6 * (slope[..., 1:] - slope[..., :-1])
    if count is not None:
        rows = torch.arange(1, x.shape[-1] - 1, device=x.device)
        inside = rows < count - 1
        lower = torch.where(inside, lower, 0.0)
        upper = torch.where(inside, upper, 0.0)
        diag = torch.where(inside, diag, 1.0)
        rhs = torch.where(inside, rhs, 0.0)
    inner = _thomas(lower, diag, upper, rhs)
    zero = torch.zeros_like(inner[..., :1])
    m = torch.cat([zero, inner, zero], dim=-1)
    m0, m1 = m[..., :-1], m[..., 1:]
    b = slope - h * (2 * m0 + m1) / 6
    d = (m1 - m0) / (6 * h)
    return torch.stack(torch.broadcast_tensors(x[..., :-1], b, m0 / 2, d), dim=-1)


def _natural_series(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Natural spline pieces of each series ``x: (…, length)`` through its observed values only;
    NaNs before the first / after the last observation become knots equal to that observation."""
    x = nearest_ends(t, x)
    obs = ~torch.isnan(x)
    if bool(obs.all()):
        return _natural_on_knots(t, x)
    length = x.shape[-1]
    tt = t.expand(x.shape)
    # the observed knots of each series first, in order; the rest is padding past the end
    order = torch.argsort((~obs).to(torch.int8), dim=-1, stable=True)
    count = obs.sum(dim=-1, keepdim=True)
    pos = torch.arange(length, device=x.device)
    real = pos < count
    tc = tt.gather(-1, order)
    t_end = tc.gather(-1, count - 1)
    tc = torch.where(real, tc, t_end + (pos - count + 1).to(tc.dtype))
    xc = torch.where(real, x.gather(-1, order), 0.0)
    pieces = _natural_on_knots(tc, xc, count)  # (…, length - 1, 4) on the observed knots
    # original piece k lies in observed piece j = (observed knots up to k) - 1
    j = torch.minimum(obs.cumsum(dim=-1)[..., :-1] - 1, count - 2)
    delta = (tt[..., :-1] - tc.gather(-1, j)).to(x.dtype)
    a, b, c, d = pieces.gather(-2, j[..., None].expand(*j.shape, 4)).unbind(-1)
    # re-centre each cubic at the original knot: p(s + δ) in powers of s
    a = a + delta * (b + delta * (c + delta * d))
    b = b + delta * (2 * c + 3 * d * delta)
    c = c + 3 * d * delta
    return torch.stack([a, b, c, d], dim=-1)


class NaturalCubicSpline(AbstractInterpolation):
    """The natural cubic spline through observations ``(ts[i], xs[i])``, channel by channel:
    cubic between observations, twice continuously differentiable (C2), with zero second
    derivative at the first and last observation; constant outside ``[ts[0], ts[-1]]``.

    The smoothest interpolant (it minimises ``∫ |X''|²``) and the usual control of a neural CDE
    (Kidger et al., *Neural Controlled Differential Equations for Irregular Time Series*, NeurIPS
    2020), but not causal: the path before ``t_i`` depends on observations after it. Use
    :class:`HermiteCubicSpline` when the solution must not look ahead.

    Args:
        ts, xs, batch_axis: as :class:`~torchnde.LinearInterpolation`.

    Missing values (NaN): each channel's spline passes through that channel's observed values
    only (a missing value is not a knot of that channel; the spline just continues across it).
    NaNs before a channel's first observation take that observation's value and are knots, as
    are NaNs after its last observation, so the path is flat at the ends of a series. ``xs``
    (the attribute) holds the spline's values at every time in ``ts``. A channel with no
    observation, NaN or non-increasing ``ts`` raise a ``ValueError`` that names it.

    Building the spline solves a tridiagonal system per channel (Thomas algorithm, a Python loop
    over the observations, vectorised over channels and samples): build it once per batch of
    data, not inside the vector field. Differentiable with respect to ``xs`` and ``ts``.
    """

    def __init__(self, ts: torch.Tensor, xs: torch.Tensor, batch_axis: int | None = None):
        owner = "NaturalCubicSpline"
        ts, xs, batched, shape = check_observations(owner, ts, xs, batch_axis)

        def build(ts, xs):
            t, x = to_series(ts, xs, batched)
            if bool(torch.isnan(x).any()):
                check_channels_observed(owner, x, batched, shape)
            pieces = _natural_series(t, x)  # (…, series, length - 1, 4)
            coeffs = from_series(pieces, batched, shape)
            last = _last_value(coeffs, ts, batched)
            knot_values = torch.cat([pieces[..., 0], _series_last(last, batched)], dim=-1)
            return ts, coeffs, last, series_values(knot_values, batched, shape)

        self.ts = ts
        (self.xs,) = self._set_pieces(build, (ts, xs), batched, shape)


def _series_last(last: torch.Tensor, batched: bool) -> torch.Tensor:
    """``X`` at the last knot in series layout ``(…, series, 1)``."""
    if batched:
        return last.reshape(last.shape[0], -1, 1)
    return last.reshape(-1, 1)


# ------------------------------------------------------------------------------------------------
# cubic Hermite with backward differences


def _hermite_coeffs(ts: torch.Tensor, xs: torch.Tensor, batched: bool) -> torch.Tensor:
    """Pieces whose slope at ``t_i`` is the backward difference ``(x_i - x_{i-1}) / (t_i -
    t_{i-1})`` (the first piece starts with its own chord's slope), and at ``t_{i+1}`` the chord
    ``(x_{i+1} - x_i) / (t_{i+1} - t_i)``: piece ``i`` uses data up to ``t_{i+1}`` only."""
    axis = 1 if batched else 0
    channels = xs.ndim - axis - 1
    pieces = xs.shape[axis] - 1
    h = step_widths(ts, batched, channels, xs.dtype)
    chord = xs.diff(dim=axis) / h
    prev = torch.cat([chord.narrow(axis, 0, 1), chord.narrow(axis, 0, pieces - 1)], dim=axis)
    gap = chord - prev
    parts = [xs.narrow(axis, 0, pieces), prev, 2 * gap / h, -gap / (h * h)]
    return torch.stack(parts, dim=axis + 1)


class HermiteCubicSpline(AbstractInterpolation):
    """The cubic Hermite spline with backward differences through ``(ts[i], xs[i])``: on
    ``[t_i, t_{i+1}]`` the cubic with values ``x_i``, ``x_{i+1}`` and slopes ``Δ_{i-1}`` at
    ``t_i`` and ``Δ_i`` at ``t_{i+1}``, where ``Δ_i = (x_{i+1} - x_i) / (t_{i+1} - t_i)`` and
    ``Δ_{-1} = Δ_0``. Continuously differentiable (C1), constant outside ``[ts[0], ts[-1]]``.

    **Causal**: the path on ``[t_i, t_{i+1}]`` depends only on observations up to ``t_{i+1}``, so
    a neural CDE driven by it can run online, updating as each observation arrives, unlike a
    natural cubic spline (Morrill et al., *Neural Controlled Differential Equations for Online
    Prediction Tasks*, 2021; torchcde's ``hermite_cubic_coefficients_with_backward_differences``).
    It reproduces linear data exactly; on smooth data its error is O(h²) (the slopes are one
    step behind).

    Args:
        ts, xs, batch_axis: as :class:`~torchnde.LinearInterpolation`.

    Missing values: imputed as :class:`~torchnde.LinearInterpolation` does (linearly in time
    between the observations around a NaN, the nearest observation at the ends; ``xs`` holds the
    filled values). Linear imputation looks ahead to the next observation, so with missing values
    the path is causal only if the data were filled causally first (e.g. forward-filled).
    A channel with no observation, NaN or non-increasing ``ts`` raise a ``ValueError`` naming it.
    """

    def __init__(self, ts: torch.Tensor, xs: torch.Tensor, batch_axis: int | None = None):
        owner = "HermiteCubicSpline"
        ts, xs, batched, shape = check_observations(owner, ts, xs, batch_axis)

        def build(ts, xs):
            xs = fill_missing(owner, ts, xs, batched, shape)
            last = xs[:, -1] if batched else xs[-1]
            return ts, _hermite_coeffs(ts, xs, batched), last, xs

        self.ts = ts
        (self.xs,) = self._set_pieces(build, (ts, xs), batched, shape)


# ------------------------------------------------------------------------------------------------
# cubic pieces given directly


class PiecewiseCubic(AbstractInterpolation):
    """A piecewise cubic path from its coefficients: on ``[ts[i], ts[i+1]]``,
    ``X(t) = Σ_k coeffs[i, k] (t - ts[i])^k``; constant outside ``[ts[0], ts[-1]]``.

    Rebuilds a spline from coefficients saved earlier (``spline.coeffs``), e.g. precomputed for a
    whole data set and batched by a ``DataLoader``; also what ``torchnde.compat.torchcde``'s
    ``CubicSpline`` runs on.

    Args:
        ts: knot times ``(length,)`` or ``(batch, length)``, strictly increasing.
        coeffs: ``(length - 1, 4, *channels)``, or ``(batch, length - 1, 4, *channels)`` with
            ``batch_axis=0``; no NaN.
        batch_axis: ``0`` for a leading batch axis, else ``None``.
    """

    def __init__(self, ts: torch.Tensor, coeffs: torch.Tensor, batch_axis: int | None = None):
        owner = "PiecewiseCubic"
        ts, coeffs, batched, _ = check_observations(
            owner, ts, coeffs, batch_axis, xs_name="coeffs", time_axis_extra=-1
        )
        axis = 1 if batched else 0
        if coeffs.ndim < axis + 2 or coeffs.shape[axis + 1] != 4:
            raise ValueError(
                f"{owner}: `coeffs` must be shaped (length - 1, 4, *channels)"
                f"{' with a leading batch axis' if batched else ''}: axis {axis + 1} holds the "
                f"four coefficients of each cubic, got shape {tuple(coeffs.shape)}"
            )
        if bool(torch.isnan(coeffs).any()):
            raise ValueError(
                f"{owner}: `coeffs` contains NaN; build the spline from the observations "
                "(NaturalCubicSpline or HermiteCubicSpline impute missing values) and save its "
                "`.coeffs`"
            )
        shape = tuple(coeffs.shape[axis + 2 :])

        def build(ts, coeffs):
            last = _last_value(coeffs, ts, batched)
            values = torch.cat([coeffs.select(axis + 1, 0), last.unsqueeze(axis)], dim=axis)
            return ts, coeffs, last, values

        self.ts = ts
        (self.xs,) = self._set_pieces(build, (ts, coeffs), batched, shape)


# ------------------------------------------------------------------------------------------------
# rectilinear


class RectilinearInterpolation(AbstractInterpolation):
    """The rectilinear path of observations ``(ts[i], xs[i])``: time and the channels move in
    turn, never together. Its channels are ``(t, x_1, …, x_C)``: time enters **as channel 0**
    (torchcde requires the user to put time in a channel and name it; here it is added).

    The path is parameterised by its own clock ``s ∈ [0, length - 1]``, not by ``t``: on
    ``[i, i + ½]`` the time channel moves linearly from ``t_i`` to ``t_{i+1}`` with the others
    held at ``x_i``; on ``[i + ½, i + 1]`` the other channels move from ``x_i`` to ``x_{i+1}``
    with time held. So at ``s = i`` the path has seen exactly observations ``0 … i``: a CDE
    driven by it is causal, and its state after observation ``i`` is its value at ``s = i``.
    Solve over ``[0, length - 1]`` and save at ``torch.arange(length)``; ``knots``
    (``0, ½, 1, …``) are where the derivative jumps, so use ``PIDController(jump_ts=path.knots)``
    or steps that end on the knots (``ControlTerm`` increments are then exact). Elapsed time
    acts only through the time channel; irregular sampling is visible to the model that way.
    (Morrill et al., *Neural Controlled Differential Equations for Online Prediction Tasks*,
    2021.)

    Args:
        ts: observation times ``(length,)`` or ``(batch, length)``, non-decreasing (repeated
            times are allowed, e.g. padding at the end of shorter series).
        xs: observations ``(length, channels)`` or ``(batch, length, channels)`` with
            ``batch_axis=0``; one channel axis. The time channel is stored in ``xs``'s dtype.
        batch_axis: ``0`` for a leading batch axis, else ``None``.

    Missing values are forward-filled (causal): a NaN takes the last observation before it;
    NaNs before a channel's first observation take that first observation, which looks ahead
    (fill them yourself, e.g. with the channel's mean, if that matters). ``xs`` holds the filled
    values. A channel with no observation or NaN/decreasing ``ts`` raise a ``ValueError``.

    Constant outside ``[0, length - 1]``; the path's shape is ``(channels + 1,)``.
    """

    def __init__(self, ts: torch.Tensor, xs: torch.Tensor, batch_axis: int | None = None):
        owner = "RectilinearInterpolation"
        ts, xs, batched, shape = check_observations(owner, ts, xs, batch_axis, strict=False)
        if len(shape) != 1:
            raise ValueError(
                f"{owner}: `xs` must have exactly one channel axis, (length, channels) or "
                f"(batch, length, channels), got shape {tuple(xs.shape)}; flatten the channels "
                "with `xs.flatten(start_dim=...)`"
            )
        axis = 1 if batched else 0
        length = ts.shape[-1]
        knots = torch.arange(2 * length - 1, dtype=ts.dtype, device=ts.device) / 2

        def build(ts, xs):
            if bool(torch.isnan(xs).any()):
                _, x = to_series(ts, xs, batched)
                check_channels_observed(owner, x, batched, shape)
                xs = series_values(forward_fill(x), batched, shape)
            times = ts.to(xs.dtype).repeat_interleave(2, dim=-1)[..., 1:]  # t0, t1, t1, t2, …
            if batched and times.ndim == 1:
                times = times.expand(xs.shape[0], -1)
            held = xs.repeat_interleave(2, dim=axis).narrow(axis, 0, 2 * length - 1)  # x0, x0, …
            values = torch.cat([times.unsqueeze(-1), held], dim=-1)
            last = values[:, -1] if batched else values[-1]
            return knots, linear_coeffs(knots, values, batched), last, xs, values

        self.ts = ts
        self.xs, self.values = self._set_pieces(build, (ts, xs), batched, (shape[0] + 1,))

    @property
    def observation_knots(self) -> torch.Tensor:
        """``s = 0, 1, …, length - 1``: where the path has taken in each observation."""
        return self.knots[::2]
