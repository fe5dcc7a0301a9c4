"""What every interpolated control path shares: checking observations, filling missing values, and
evaluating a piecewise polynomial quickly.

A path through observations ``(t_i, x_i)``, ``i = 0 … n``, is stored as one polynomial per piece
``[t_i, t_{i+1}]`` in the local time ``s = t - t_i``:

    X(t) = Σ_k coeffs[i, k] s^k,

plus a constant piece on each side, so the path is constant before ``t_0`` and after ``t_n``. A
query finds its piece with one ``torch.bucketize`` (``torch.searchsorted`` for per-sample times):
no Python loop over samples or observations.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from ._base import AbstractPath

__all__ = ["AbstractInterpolation"]


# ------------------------------------------------------------------------------------------------
# checking observations


def check_observations(
    owner: str,
    ts: torch.Tensor,
    xs: torch.Tensor,
    batch_axis: int | None,
    *,
    strict: bool = True,
    xs_name: str = "xs",
    time_axis_extra: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, bool, tuple[int, ...]]:
    """Check ``ts``/``xs`` as observations and return ``(ts, xs, batched, channel_shape)``.

    ``ts`` is ``(length,)`` or ``(batch, length)``; ``xs`` is ``(length, *channels)`` or, batched,
    ``(batch, length, *channels)``. ``strict``: times strictly increasing (else non-decreasing).
    ``time_axis_extra``: ``xs`` holds ``length - 1 + time_axis_extra`` entries along its time axis
    (``-1`` for per-piece coefficients).
    """
    if not isinstance(ts, torch.Tensor):
        raise TypeError(f"{owner}: `ts` must be a tensor of times, got {type(ts).__name__}")
    if not isinstance(xs, torch.Tensor):
        raise TypeError(f"{owner}: `{xs_name}` must be a tensor, got {type(xs).__name__}")
    if batch_axis not in (None, 0):
        raise ValueError(f"{owner}: `batch_axis` must be None or 0, got {batch_axis!r}")
    if not ts.is_floating_point():
        raise TypeError(
            f"{owner}: `ts` must be floating point, got {ts.dtype}; convert it with `ts.double()`"
        )
    if not xs.is_floating_point():
        raise TypeError(
            f"{owner}: `{xs_name}` must be real floating point, got {xs.dtype}; convert it with "
            f"`{xs_name}.float()`"
        )
    if ts.device != xs.device:
        raise ValueError(
            f"{owner}: `ts` is on {ts.device} but `{xs_name}` is on {xs.device}; move them to one "
            f"device, e.g. `ts.to({xs_name}.device)`"
        )
    batched = batch_axis == 0 or ts.ndim == 2
    if ts.ndim not in (1, 2):
        raise ValueError(
            f"{owner}: `ts` must be (length,) or (batch, length), got shape {tuple(ts.shape)}"
        )
    time_axis = 1 if batched else 0
    length = ts.shape[-1]
    want = length + time_axis_extra
    if xs.ndim <= time_axis or xs.shape[time_axis] != want:
        where = "(batch, length, *channels)" if batched else "(length, *channels)"
        raise ValueError(
            f"{owner}: `{xs_name}` must be shaped {where} with {want} entries along axis "
            f"{time_axis} to match `ts` of shape {tuple(ts.shape)}, got {tuple(xs.shape)}"
        )
    if ts.ndim == 2 and ts.shape[0] != xs.shape[0]:
        raise ValueError(
            f"{owner}: per-sample `ts` {tuple(ts.shape)} and `{xs_name}` {tuple(xs.shape)} disagree "
            "on the batch size"
        )
    if length < 2:
        raise ValueError(f"{owner}: `ts` needs at least two observation times, got {length}")
    _check_times(owner, ts, strict)
    inf = torch.isinf(xs)
    if bool(inf.any()):
        at = _index_str(torch.nonzero(inf)[0].tolist())
        raise ValueError(
            f"{owner}: `{xs_name}` has an infinite value at {xs_name}{at}; a missing value must be "
            f"NaN (it is then imputed), so replace it, e.g. `{xs_name}[{xs_name}.isinf()] = nan`"
        )
    return ts, xs, batched, tuple(xs.shape[time_axis + 1 :])


def _check_times(owner: str, ts: torch.Tensor, strict: bool) -> None:
    t = ts.detach()
    nan = ~torch.isfinite(t)
    if bool(nan.any()):
        at = _index_str(torch.nonzero(nan)[0].tolist())
        raise ValueError(
            f"{owner}: `ts` has a non-finite time ts{at}={t[tuple(torch.nonzero(nan)[0])]:g}; "
            "times cannot be missing: drop that observation, or for series of different lengths "
            "extend the times past the end (e.g. t_last + 1, t_last + 2, …) with NaN values, "
            "which the path fills with the last observation"
        )
    steps = t.diff(dim=-1)
    bad = steps <= 0 if strict else steps < 0
    if bool(bad.any()):
        at = torch.nonzero(bad)[0].tolist()
        i = at[-1]
        prev, this = [*at[:-1], i], [*at[:-1], i + 1]
        order = "strictly increasing" if strict else "non-decreasing"
        raise ValueError(
            f"{owner}: `ts` must be {order}, but ts{_index_str(this)}={t[tuple(this)]:g} follows "
            f"ts{_index_str(prev)}={t[tuple(prev)]:g}; sort the observations by time "
            "(`ts, order = ts.sort()`, then `xs = xs[order]`) and merge repeated times"
        )


def _index_str(index: list[int]) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]"


# ------------------------------------------------------------------------------------------------
# series layout: every channel of every sample as one row of a (…, length) tensor


def to_series(ts: torch.Tensor, xs: torch.Tensor, batched: bool):
    """``xs`` as ``(series, length)`` (or ``(batch, series, length)``) and ``ts`` broadcastable
    against it, the channels flattened to one ``series`` axis."""
    if batched:
        b, length = xs.shape[0], xs.shape[1]
        x = xs.reshape(b, length, -1).transpose(1, 2)
        t = ts if ts.ndim == 1 else ts[:, None, :]
    else:
        length = xs.shape[0]
        x = xs.reshape(length, -1).t()
        t = ts
    return t, x


def from_series(pieces: torch.Tensor, batched: bool, shape: tuple[int, ...]) -> torch.Tensor:
    """``(…, series, pieces, K)`` back to ``(pieces, K, *shape)`` (or ``(batch, pieces, K, *shape)``)."""
    if batched:
        b, _, p, k = pieces.shape
        return pieces.permute(0, 2, 3, 1).reshape(b, p, k, *shape).contiguous()
    _, p, k = pieces.shape
    return pieces.permute(1, 2, 0).reshape(p, k, *shape).contiguous()


def series_values(x: torch.Tensor, batched: bool, shape: tuple[int, ...]) -> torch.Tensor:
    """``(…, series, length)`` back to ``xs``'s layout."""
    if batched:
        b, _, length = x.shape
        return x.transpose(1, 2).reshape(b, length, *shape)
    return x.t().reshape(x.shape[1], *shape)


def check_channels_observed(owner: str, x: torch.Tensor, batched: bool, shape) -> None:
    """Raise naming the first channel (and sample) of series ``x`` with no observation at all."""
    empty = torch.isnan(x).all(dim=-1)
    if not bool(empty.any()):
        return
    at = torch.nonzero(empty)[0].tolist()
    flat = at[-1]
    channel = list(torch.unravel_index(torch.tensor(flat), shape)) if shape else []
    channel = [int(c) for c in channel]
    name = _index_str(channel) if len(channel) != 1 else str(channel[0])
    sample = f" of sample {at[0]}" if batched else ""
    index = ("..., " if batched else "") + ":, " + ", ".join(map(str, channel))
    raise ValueError(
        f"{owner}: channel {name}{sample} of `xs` has no observation (every value is NaN), so "
        f"there is nothing to interpolate; drop that channel, or fill it with a constant, e.g. "
        f"`xs[{index}] = 0`"
    )


def nearest_ends(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Fill NaNs before the first and after the last observation of each series with that
    observation (``x: (…, length)``; every series has an observation)."""
    obs = ~torch.isnan(x)
    length = x.shape[-1]
    pos = torch.arange(length, device=x.device)
    first = torch.where(obs, pos, length).amin(dim=-1, keepdim=True)
    last = torch.where(obs, pos, -1).amax(dim=-1, keepdim=True)
    x = torch.where(pos < first, x.gather(-1, first), x)
    return torch.where(pos > last, x.gather(-1, last), x)


def impute_linear(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Fill NaNs of each series ``x: (…, length)`` (times ``t`` broadcastable against it):
    linearly in time between the observations around them, and with the nearest observation
    before the first and after the last one. Differentiable with respect to the observations."""
    obs = ~torch.isnan(x)
    if bool(obs.all()):
        return x
    length = x.shape[-1]
    pos = torch.arange(length, device=x.device)
    prev = torch.where(obs, pos, -1).cummax(dim=-1).values
    nxt = torch.where(obs, pos, length).flip(-1).cummin(dim=-1).values.flip(-1)
    lo = torch.where(prev < 0, nxt, prev)
    hi = torch.where(nxt >= length, prev, nxt)
    tt = t.expand(x.shape)
    t_lo, t_hi = tt.gather(-1, lo), tt.gather(-1, hi)
    span = torch.where(hi == lo, torch.ones_like(t_lo), t_hi - t_lo)
    w = torch.where(hi == lo, torch.zeros_like(t_lo), (tt - t_lo) / span).to(x.dtype)
    x_lo, x_hi = x.gather(-1, lo), x.gather(-1, hi)
    return torch.where(obs, x, x_lo + w * (x_hi - x_lo))


def forward_fill(x: torch.Tensor) -> torch.Tensor:
    """Fill each NaN of ``x: (…, length)`` with the last observation before it, and NaNs before
    the first observation with that observation."""
    obs = ~torch.isnan(x)
    if bool(obs.all()):
        return x
    length = x.shape[-1]
    pos = torch.arange(length, device=x.device)
    prev = torch.where(obs, pos, -1).cummax(dim=-1).values
    first = torch.where(obs, pos, length).amin(dim=-1, keepdim=True)
    idx = torch.where(prev < 0, first.expand_as(prev), prev)
    return x.gather(-1, idx)


# ------------------------------------------------------------------------------------------------
# the path


def _bump(t: torch.Tensor, direction: float) -> torch.Tensor:
    return torch.nextafter(t, torch.full_like(t, direction))


def _tables(build, batched: bool, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(knots, coeffs, values, slopes, lefts, *extra)``: the pieces padded with a constant piece
    on each side (values) and with zero pieces (slopes), and the left end of every padded piece."""
    knots, coeffs, last, *extra = build(*inputs)
    axis = 1 if batched else 0  # the piece axis
    k = coeffs.shape[axis + 1]
    first = coeffs.select(axis, 0).select(axis, 0)  # X at the first knot
    pad = torch.zeros_like(coeffs.narrow(axis, 0, 1).narrow(axis + 1, 1, k - 1))

    def constant(value: torch.Tensor) -> torch.Tensor:  # one piece equal to `value`
        return torch.cat([value.unsqueeze(axis).unsqueeze(axis), pad], dim=axis + 1)

    values = torch.cat([constant(first), coeffs, constant(last)], dim=axis).contiguous()
    powers = torch.arange(1, k, dtype=coeffs.dtype, device=coeffs.device)
    powers = powers.reshape(k - 1, *([1] * (coeffs.ndim - axis - 2)))
    slopes = coeffs.narrow(axis + 1, 1, k - 1) * powers
    zero = torch.zeros_like(slopes.narrow(axis, 0, 1))
    slopes = torch.cat([zero, slopes, zero], dim=axis).contiguous()
    lefts = torch.cat([knots[..., :1], knots[..., :-1], knots[..., -1:]], dim=-1).contiguous()
    return (knots, coeffs, values, slopes, lefts, *extra)


def reusable(fn: Callable[..., tuple[torch.Tensor, ...]], *inputs: torch.Tensor):
    """``fn(*inputs)`` (a tuple of tensors); when an input requires grad, computed as one autograd
    node whose backward may run any number of times (:class:`_Reusable`)."""
    if torch.is_grad_enabled() and any(x.requires_grad for x in inputs):
        return _Reusable.apply(fn, *inputs)
    return fn(*inputs)


class _Reusable(torch.autograd.Function):
    """``run(*inputs)`` as one autograd node whose backward may run many times.

    A path's tables are computed once from the data; a solve then reads them at every step. Adjoints
    that own their backward pass differentiate one piece of the solve at a time and so walk back
    through the tables more than once; an ordinary graph frees its saved tensors after the first
    walk. Here the construction's graph is kept (``retain_graph=True``) for the node's lifetime.
    Under double backward the result is differentiable with respect to the incoming gradients
    (the tables are linear in the observations), not through a second derivative in the times.
    """

    @staticmethod
    def forward(ctx, run, *inputs):
        with torch.enable_grad():
            leaves = [x.detach().requires_grad_(x.requires_grad) for x in inputs]
            outs = run(*leaves)
        ctx.graph = (leaves, outs)
        return tuple(o.detach() for o in outs)

    @staticmethod
    def backward(ctx, *grads):
        leaves, outs = ctx.graph
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
        wanted = [x for x in leaves if x.requires_grad]
        if not pairs or not wanted:
            return (None, *(None for _ in leaves))
        got = iter(
            torch.autograd.grad(
                [o for o, _ in pairs],
                wanted,
                [g for _, g in pairs],
                retain_graph=True,
                create_graph=torch.is_grad_enabled(),  # double backward: linear in the grads
                allow_unused=True,
            )
        )
        return (None, *(next(got) if x.requires_grad else None for x in leaves))


class AbstractInterpolation(AbstractPath):
    """A path that is a polynomial of degree ``K - 1`` on each piece ``[knots[i], knots[i+1]]``,
    constant before the first knot and after the last.

    Subclasses compute the coefficients in ``__init__`` and call :meth:`_set_pieces`.

    Attributes:
        knots: ``(length,)``, or ``(batch, length)`` for per-sample knots.
        coeffs: ``(length - 1, K, *shape)`` (``(batch, length - 1, K, *shape)`` when batched):
            on piece ``i``, ``X(t) = Σ_k coeffs[i, k] (t - knots[i])^k``.

    Queries take a 0-dim time, or ``(batch,)`` times for a batched path; an unbatched path also
    evaluates at a tensor of times of any shape ``T`` (the result is ``T + shape``). Times may
    have another dtype than the values (e.g. float64 times, float32 data); they are compared with
    the knots in the knots' dtype.
    """

    knots: torch.Tensor
    coeffs: torch.Tensor

    def _set_pieces(
        self,
        build: Callable[..., tuple[torch.Tensor, ...]],
        inputs: tuple[torch.Tensor, ...],
        batched: bool,
        shape: tuple[int, ...],
    ) -> list[torch.Tensor]:
        """Build the path: ``build(*inputs) -> (knots, coeffs, last, *extra)`` with ``coeffs`` as
        in the class docstring and ``last`` the value at the last knot. Returns ``extra``.

        When an input requires grad, the tables the queries read are outputs of one autograd node
        whose backward can run any number of times (see :class:`_Reusable`), so adjoints that
        differentiate the vector field piece by piece (checkpointing, backsolve) reach the data.
        """
        outs = reusable(functools.partial(_tables, build, batched), *inputs)
        knots, coeffs, self._values, self._slopes, self._lefts, *extra = outs
        self.knots = knots
        self.coeffs = coeffs
        self.batched = batched
        self.shape = tuple(shape)
        # piece index = bucketize(t, bounds) with the constant pieces at 0 and length
        knots = knots.detach()
        t0, tn = knots[..., :1], knots[..., -1:]
        self._bounds = knots.contiguous()  # values: right-continuous, exact at every knot
        # slopes: the end knots belong to the closed interval; interior knots to one side
        self._bounds_right = torch.cat([knots[..., :-1], _bump(tn, math.inf)], dim=-1).contiguous()
        self._bounds_left = torch.cat([_bump(t0, -math.inf), knots[..., 1:]], dim=-1).contiguous()
        self._per_sample = knots.ndim == 2
        self._rows = torch.arange(coeffs.shape[0], device=coeffs.device) if batched else None
        self._trail = (1,) * len(shape)
        return extra

    # -- queries ---------------------------------------------------------------------------------

    def _locate(self, t: torch.Tensor, bounds: torch.Tensor, right: bool):
        """Piece index (into the padded tables) and local time ``s`` of each query."""
        knots = self.knots
        if not isinstance(t, torch.Tensor):
            t = torch.as_tensor(t, dtype=knots.dtype, device=knots.device)
        elif t.dtype != knots.dtype:
            t = t.to(knots.dtype)
        if not self.batched:
            idx = torch.bucketize(t, bounds, right=right)
            return idx, t - self._lefts[idx]
        batch = self._rows.shape[0]
        if t.ndim == 0 and not self._per_sample:  # one piece for every sample
            idx = torch.bucketize(t, bounds, right=right)
            return idx, t - self._lefts[idx]
        if t.ndim == 0:
            t = t.expand(batch)
        elif t.shape != (batch,):
            raise ValueError(
                f"{type(self).__name__}: a batched path takes a 0-dim time or ({batch},) times, "
                f"got shape {tuple(t.shape)}"
            )
        if self._per_sample:
            idx = torch.searchsorted(bounds, t[:, None].contiguous(), right=right)[:, 0]
            return idx, t - self._lefts.gather(1, idx[:, None])[:, 0]
        idx = torch.bucketize(t.contiguous(), bounds, right=right)
        return idx, t - self._lefts[idx]

    def _horner(self, table: torch.Tensor, idx: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if not self.batched:
            rows, axis = table[idx], idx.ndim
        elif idx.ndim == 0:
            rows, axis = table[:, idx], 1
        else:
            rows, axis = table[self._rows, idx], 1
        parts = rows.unbind(axis)
        s = s.to(table.dtype)
        if s.ndim:
            s = s.reshape(*s.shape, *self._trail)
        out = parts[-1]
        for c in parts[-2::-1]:
            out = torch.addcmul(c, out, s)
        return out

    def evaluate(self, t: torch.Tensor) -> torch.Tensor:
        """``X(t)``: ``shape`` for a 0-dim ``t``; ``(batch, *shape)`` for a batched path; for an
        unbatched path and ``t`` of shape ``T``, ``T + shape``. Constant outside the knots."""
        idx, s = self._locate(t, self._bounds, True)
        return self._horner(self._values, idx, s)

    def derivative(self, t: torch.Tensor, *, left: bool = False) -> torch.Tensor:
        """``dX/dt`` at ``t`` (shaped as :meth:`evaluate`), zero outside ``[knots[0], knots[-1]]``.

        At an interior knot where the derivative jumps (linear and rectilinear paths), the
        right derivative is returned, or the left one with ``left=True``; at the first and last
        knots, the derivative of the piece inside. Cubic splines are C1, so ``left`` does not
        matter for them. A solver stepping across a jump in the derivative should be told
        where they are: ``PIDController(jump_ts=path.knots)``, or steps that end on the knots.
        """
        if left:
            idx, s = self._locate(t, self._bounds_left, False)
        else:
            idx, s = self._locate(t, self._bounds_right, True)
        return self._horner(self._slopes, idx, s)

    def increment(self, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
        """``X(t1) - X(t0)``."""
        if (
            not self.batched
            and isinstance(t0, torch.Tensor)
            and isinstance(t1, torch.Tensor)
            and t0.ndim == 0
            and t1.ndim == 0
        ):
            both = self.evaluate(torch.stack([t0, t1.to(t0.dtype)]))
            return both[1] - both[0]
        return self.evaluate(t1) - self.evaluate(t0)

    @property
    def interval(self) -> torch.Tensor:
        """``[first knot, last knot]`` (``(batch, 2)`` for per-sample knots)."""
        return torch.stack([self.knots[..., 0], self.knots[..., -1]], dim=-1)

    def __repr__(self) -> str:
        batch = f"batch={self.coeffs.shape[0]}, " if self.batched else ""
        return f"{type(self).__name__}({batch}length={self.knots.shape[-1]}, shape={self.shape})"
