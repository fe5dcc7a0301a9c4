"""Brownian motion as a control path: the driving noise of an SDE ``dy = f dt + g dW``.

Two paths, both :class:`~torchnde.paths.AbstractPath` subclasses for
:class:`~torchnde.ControlTerm`:

* :class:`BrownianGrid` — increments pre-sampled on a fixed grid of ``steps`` cells; O(1) per
  query, but every query must start and end on grid points (fixed-step solves on that grid or a
  coarser one made of whole cells).
* :class:`VirtualBrownianTree` — the increment over any interval, computed on demand from the seed
  by Brownian-bridge bisection down to a resolution ``tol``; O(log((t1 - t0)/tol)) per query,
  nothing stored, so adaptive steps, rejected steps, the backward pass and recomputation all see
  the same path.

Both can also give the space-time Lévy area (``levy_area="space-time"``) that strong order 1.5
methods for additive noise need. Its convention is diffrax's:

.. math::
    H_{s,t} = \\frac{1}{t - s}\\int_s^t (W_u - W_s)\\,du - \\frac{W_{s,t}}{2},
    \\qquad H_{s,t} \\sim N(0, (t - s)/12) \\text{ per channel, independent of } W_{s,t}.

Over two adjacent intervals of lengths ``h1``, ``h2`` (``h = h1 + h2``) the pieces combine exactly as

.. math::
    W = W_1 + W_2, \\qquad
    H = \\frac{h_1 H_1 + h_2 H_2}{h} + \\frac{h_2 W_1 - h_1 W_2}{2h}.

Queried backwards (``t1 < t0``), ``W`` changes sign and ``H`` does not: the formula above read
with ``t < s`` is the space-time Lévy area of the time-reversed path, which is what a backwards
solve needs.

Times passed to the paths are 0-dim tensors, or ``(batch,)`` tensors (one time per sample) under
``batch_axis=0``; they may be float64 while the increments are float32.
"""

from __future__ import annotations

import math

import torch

from ._base import AbstractPath

__all__ = ["AbstractBrownianPath", "BrownianGrid"]

_LEVY_AREAS = (None, "space-time")


def _real(name: str, value) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"`{name}` must be a number, got a tensor of shape {tuple(value.shape)}"
            )
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}")
    return value


def _fmt(x: float) -> str:
    return f"{x:.10g}"


class AbstractBrownianPath(AbstractPath):
    """Base class of Brownian-motion paths on ``[t0, t1]``: independent standard Brownian motion in
    every channel (and, under ``batch_axis=0``, in every sample).

    Subclasses implement :meth:`levy_increment` on ``(batch,)``-or-0-dim float64 times already
    checked, through ``_query``; this class handles the arguments, shapes and ``validate_span``.
    """

    t0: float
    t1: float
    seed: int
    dtype: torch.dtype
    device: torch.device

    def _setup(self, t0, t1, shape, seed, levy_area, dtype, device, batch_axis) -> None:
        self.t0 = _real("t0", t0)
        self.t1 = _real("t1", t1)
        if not self.t1 > self.t0:
            raise ValueError(
                f"a Brownian path needs `t0 < t1`, got t0={_fmt(self.t0)}, t1={_fmt(self.t1)}; "
                "give the interval in increasing order (a backwards solve queries it backwards)"
            )
        if isinstance(shape, int):
            shape = (shape,)
        shape = tuple(shape)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise ValueError(f"`shape` must be a tuple of non-negative ints, got {shape!r}")
        if batch_axis not in (None, 0):
            raise ValueError(f"`batch_axis` must be None or 0, got {batch_axis!r}")
        self.batched = batch_axis == 0
        if self.batched:
            if not shape or shape[0] < 1:
                raise ValueError(
                    f"with `batch_axis=0`, `shape[0]` is the batch size, got shape {shape!r}; "
                    "pass e.g. `shape=(batch, channels)`"
                )
            self.batch, self.shape = shape[0], shape[1:]
        else:
            self.batch, self.shape = 1, shape
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"`seed` must be an int, got {type(seed).__name__}")
        self.seed = seed
        if levy_area not in _LEVY_AREAS:
            raise ValueError(
                f'`levy_area` must be None or "space-time", got {levy_area!r}; "space-time" gives '
                "the space-time Lévy area H next to each increment (for SRA1-type solvers)"
            )
        self.levy_area = levy_area
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"`dtype` must be a real floating dtype, got {dtype!r}")
        self.dtype = dtype
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.channels = int(math.prod(self.shape))

    # ---- queries -----------------------------------------------------------------------------

    def increment(self, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
        """``W(t1) - W(t0)``: shaped ``path.shape``, or ``(batch, *path.shape)`` for ``(batch,)``
        times or a batched path. Backwards (``t1 < t0``) it is minus the forward increment."""
        return self._query(t0, t1, False)[0]

    def levy_increment(
        self, t0: torch.Tensor, t1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, H)`` over ``[t0, t1]``: the increment and the space-time Lévy area (see the
        module docstring for the convention), each shaped like :meth:`increment`'s result.
        Needs ``levy_area="space-time"``."""
        if self.levy_area is None:
            raise ValueError(
                f"{self!r} was built without Lévy area; build it with "
                f'`{type(self).__name__}(..., levy_area="space-time")`'
            )
        return self._query(t0, t1, True)

    def _times(self, t0, t1) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
        """The query times as float64 tensors of a common shape ``()`` or ``(batch,)``."""
        t0 = torch.as_tensor(t0, device=self.device)
        t1 = torch.as_tensor(t1, device=self.device)
        dtypes = (t0.dtype, t1.dtype)
        t0, t1 = torch.broadcast_tensors(t0.to(torch.float64), t1.to(torch.float64))
        if t0.ndim > 1:
            raise ValueError(
                f"{self!r}: query times must be 0-dim or (batch,), got shape {tuple(t0.shape)}"
            )
        if self.batched:
            if t0.ndim == 0:
                t0, t1 = t0.expand(self.batch), t1.expand(self.batch)
            elif t0.shape[0] != self.batch:
                raise ValueError(
                    f"{self!r} has batch size {self.batch}, but was queried with {t0.shape[0]} "
                    "times; build the path with `shape=(batch, ...)` matching the solve's batch"
                )
        self._time_dtypes = dtypes
        return t0, t1, tuple(t0.shape)

    def _sample_index(self, lead: tuple[int, ...]) -> torch.Tensor:
        """Which path each query reads: sample ``b`` for a batched path, else path 0."""
        if self.batched:
            return torch.arange(self.batch, device=self.device)
        return torch.zeros(lead, dtype=torch.long, device=self.device)

    def _query(self, t0, t1, levy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def _out(self, x: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
        return x.to(self.dtype).reshape(*lead, *self.shape)

    # ---- the span of a solve -------------------------------------------------------------------

    def validate_span(self, t0: torch.Tensor, t1: torch.Tensor) -> None:
        lo = min(float(torch.as_tensor(t0).min()), float(torch.as_tensor(t1).min()))
        hi = max(float(torch.as_tensor(t0).max()), float(torch.as_tensor(t1).max()))
        slack = 64 * torch.finfo(torch.as_tensor(t0).dtype).eps * max(abs(lo), abs(hi), 1e-300)
        if lo < self.t0 - slack or hi > self.t1 + slack:
            raise ValueError(
                f"{self!r} covers [{_fmt(self.t0)}, {_fmt(self.t1)}], but the solve runs over "
                f"[{_fmt(lo)}, {_fmt(hi)}]; build the path over the solve's interval, e.g. "
                f"`{type(self).__name__}({_fmt(lo)}, {_fmt(hi)}, ...)`"
            )


# ------------------------------------------------------------------------------------------------
# fixed grid


class BrownianGrid(AbstractBrownianPath):
    """Brownian motion pre-sampled on a uniform grid: O(1) per query, for fixed-step solves.

    The interval ``[t0, t1]`` is cut into ``steps`` cells of width ``h = (t1 - t0)/steps``; the
    increment of every cell (and its space-time Lévy area, ``N(0, h/12)`` independent of it) is
    drawn once, from a CPU ``torch.Generator`` seeded with ``seed`` (so the path is the same on
    every device), and stored as cumulative sums in float64. A query over any union of whole
    cells, ``[t0 + i·h, t0 + j·h]``, is then a difference of two stored values: a solve with
    ``dt0`` a multiple of ``h`` (or ``StepTo`` on a subset of the grid) gets exact Brownian
    increments, and strong-order tests can solve at several step sizes against one fine path.

    Every query time must be a grid point (up to float rounding of the time dtype, 16 ulp of the
    largest time); otherwise :meth:`increment` raises a ``ValueError``: step on the grid, or use
    :class:`VirtualBrownianTree` for adaptive steps. The same ``seed`` gives the same ``W`` with
    or without Lévy area.

    Args:
        t0, t1: the interval, ``t0 < t1``.
        shape: channel shape of ``W``; with ``batch_axis=0``, ``shape[0]`` is the batch size (one
            independent path per sample) and ``path.shape == shape[1:]``.
        steps: number of grid cells; or give ``dt`` (``(t1 - t0)/dt`` must be an integer).
        seed: the seed of the path.
        levy_area: None, or ``"space-time"`` to also store the space-time Lévy area
            (:meth:`levy_increment`).
        dtype: dtype of the increments returned.
        device: where the cumulative sums live (memory: ``(steps + 1) · batch · channels`` float64
            numbers, twice that with Lévy area).
        batch_axis: None, or 0 for one path per sample.
    """

    def __init__(
        self,
        t0: float,
        t1: float,
        shape: tuple[int, ...] | int,
        *,
        steps: int | None = None,
        dt: float | None = None,
        seed: int = 0,
        levy_area: str | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        batch_axis: int | None = None,
    ):
        self._setup(t0, t1, shape, seed, levy_area, dtype, device, batch_axis)
        self.steps = self._steps(steps, dt)
        self.h = (self.t1 - self.t0) / self.steps
        gen = torch.Generator().manual_seed(seed)
        size = (self.steps, self.batch * self.channels)
        dw = torch.randn(size, generator=gen, dtype=torch.float64) * math.sqrt(self.h)
        zero = torch.zeros(1, size[1], dtype=torch.float64)
        w = torch.cat([zero, dw.cumsum(0)])
        self._w = w.reshape(self.steps + 1, self.batch, self.channels).to(self.device)
        self._j = None
        if levy_area is not None:
            dh = torch.randn(size, generator=gen, dtype=torch.float64) * math.sqrt(self.h / 12)
            # J(t) = ∫_{t0}^t W du; over cell k: h·W_k + ∫(W_u - W_k) du = h·W_k + h(H_k + ΔW_k/2)
            dj = self.h * (w[:-1] + dh + dw / 2)
            j = torch.cat([zero, dj.cumsum(0)])
            self._j = j.reshape(self.steps + 1, self.batch, self.channels).to(self.device)

    def _steps(self, steps, dt) -> int:
        if (steps is None) == (dt is None):
            raise ValueError("give exactly one of `steps` (number of grid cells) and `dt`")
        if steps is not None:
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
                raise ValueError(f"`steps` must be a positive int, got {steps!r}")
            return steps
        dt = _real("dt", dt)
        if dt <= 0:
            raise ValueError(f"`dt` must be positive, got {dt}")
        n = round((self.t1 - self.t0) / dt)
        if n < 1 or abs(n * dt - (self.t1 - self.t0)) > 1e-9 * (self.t1 - self.t0):
            raise ValueError(
                f"`dt`={dt:g} does not divide [t0, t1] = [{_fmt(self.t0)}, {_fmt(self.t1)}] into "
                f"whole cells ((t1 - t0)/dt = {(self.t1 - self.t0) / dt:g}); pass `steps=` instead"
            )
        return n

    def __repr__(self) -> str:
        shape = ((self.batch,) if self.batched else ()) + self.shape
        return (
            f"BrownianGrid(t0={_fmt(self.t0)}, t1={_fmt(self.t1)}, shape={shape}, "
            f"steps={self.steps})"
        )

    def _tolerance(self, dtype: torch.dtype) -> float:
        """How far (in time) a query may be from a grid point and still be read as on it."""
        eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
        tol = 16 * max(eps, torch.finfo(torch.float64).eps) * max(abs(self.t0), abs(self.t1))
        if tol >= self.h / 4:
            raise ValueError(
                f"{self!r}: its cells (h={self.h:g}) are too fine to be told apart in "
                f"{dtype} times; query in float64 (e.g. pass t0/t1 to `solve` as float64 "
                "tensors) or use fewer steps"
            )
        return max(tol, 1e-12 * self.h)

    def _index(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        k = ((t - self.t0) / self.h).round()
        if not torch.compiler.is_compiling():
            tol = self._tolerance(dtype)
            err = (t - (self.t0 + k * self.h)).abs()
            bad = (err > tol) | (k < 0) | (k > self.steps)
            if bool(bad.any()):
                at = float(t.reshape(-1)[bad.reshape(-1).nonzero()[0, 0]])
                raise ValueError(
                    f"{self!r} was queried at t={at:.10g}, which is not one of its grid points "
                    f"t0 + k·{self.h:g}; step on the grid (ConstantStepSize with `dt0` a multiple "
                    f"of {self.h:g}, or StepTo on grid points), or use `VirtualBrownianTree` for "
                    "steps anywhere (adaptive solvers)"
                )
        return k.long()

    def _query(self, t0, t1, levy):
        ta, tb, lead = self._times(t0, t1)
        ka = self._index(ta, self._time_dtypes[0])
        kb = self._index(tb, self._time_dtypes[1])
        p = self._sample_index(lead)
        wa, wb = self._w[ka, p], self._w[kb, p]
        w = wb - wa
        if not levy:
            return self._out(w, lead), None
        span = ((kb - ka).to(torch.float64) * self.h).unsqueeze(-1)
        safe = torch.where(span == 0, 1.0, span)
        h = (self._j[kb, p] - self._j[ka, p]) / safe - wa - w / 2
        h = torch.where(span == 0, 0.0, h)
        return self._out(w, lead), self._out(h, lead)

    def validate_span(self, t0: torch.Tensor, t1: torch.Tensor) -> None:
        super().validate_span(t0, t1)
        for name, t in (("t0", t0), ("t1", t1)):
            t = torch.as_tensor(t)
            td = t.to(torch.float64).reshape(-1)
            k = ((td - self.t0) / self.h).round()
            err = (td - (self.t0 + k * self.h)).abs()
            bad = err > self._tolerance(t.dtype)
            if bool(bad.any()):
                at = float(td[bad.nonzero()[0, 0]])
                raise ValueError(
                    f"the solve's `{name}`={at:.10g} is not a grid point of {self!r} (points "
                    f"t0 + k·{self.h:g}); start and end the solve on grid points, or use "
                    "`VirtualBrownianTree` for any interval"
                )
