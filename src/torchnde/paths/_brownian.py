"""Brownian motion as a control path: the driving noise of an SDE ``dy = f dt + g dW``.

Three paths, all :class:`~torchnde.paths.AbstractPath` subclasses for
:class:`~torchnde.ControlTerm`:

* :class:`BrownianGrid` — increments pre-sampled on a fixed grid of ``steps`` cells; O(1) per
  query, but every query must start and end on grid points (fixed-step solves on that grid or a
  coarser one made of whole cells).
* :class:`VirtualBrownianTree` — the increment over any interval, computed on demand from the seed
  by Brownian-bridge bisection down to a resolution ``tol``; O(log((t1 - t0)/tol)) per query,
  nothing stored, so adaptive steps, rejected steps, the backward pass and recomputation all see
  the same path.
* :class:`BrownianIntervalTree` — torchsde's ``BrownianInterval`` structure: a tree of intervals
  split where it is queried, about one bridge sample per new query point (fast random access at
  large batch); the path depends on the order of the queries.

All three can give the space-time Lévy area (``levy_area="space-time"``) that strong order 1.5
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

import abc
import collections
import math

import torch

from ._base import AbstractPath

__all__ = ["AbstractBrownianPath", "BrownianGrid", "BrownianIntervalTree", "VirtualBrownianTree"]

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
        if dtype is not None and (
            not isinstance(dtype, torch.dtype) or not dtype.is_floating_point
        ):
            raise TypeError(
                f"`dtype` must be None (the dtype of the state it drives) or a real floating "
                f"dtype, got {dtype!r}"
            )
        #: the path was built without a dtype: its increments take the real dtype of the state of
        #: the solve that uses it (:meth:`adopt_dtype`), float32 before any solve
        self.follows_state = dtype is None
        self.dtype = torch.float32 if dtype is None else dtype
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.channels = int(math.prod(self.shape))

    def adopt_dtype(self, dtype: torch.dtype) -> None:
        """Produce increments in ``dtype`` from now on, if the path was built without a dtype
        (``dtype=None``); :class:`~torchnde.ControlTerm` calls it with the state's real dtype when
        a solve starts. A path built with an explicit dtype keeps it."""
        if self.follows_state and dtype in (
            torch.float16,
            torch.bfloat16,
            torch.float32,
            torch.float64,
        ):
            self.dtype = dtype

    # ---- queries -----------------------------------------------------------------------------

    def increment(self, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
        """``W(t1) - W(t0)``: shaped ``path.shape``, or ``(batch, *path.shape)`` for ``(batch,)``
        times or a batched path. Backwards (``t1 < t0``) it is minus the forward increment."""
        return self._query(t0, t1, False)[0]

    def evaluate(self, t: torch.Tensor) -> torch.Tensor:
        """``W(t)``, with ``W(t0) = 0``: the increment from the path's start."""
        t = torch.as_tensor(t)
        return self.increment(torch.full_like(t, self.t0, dtype=torch.float64), t)

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

    def area_increment(
        self, t0: torch.Tensor, t1: torch.Tensor, approximation: str = "foster"
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(W, H, A)`` over ``[t0, t1]``: the increment, the space-time Lévy area and an
        approximation of the Lévy area ``A_ij = ½∫(W_i dW_j - W_j dW_i)`` between the channels
        of the last axis (``A`` is shaped like ``W`` with that axis repeated; a path with one
        channel, ``shape == ()``, has no area and gets zeros shaped like ``W``).

        Both approximations take ``A`` as its conditional mean given ``(W, H)`` plus an
        independent antisymmetric normal:

        .. math::
            \\tilde A_{ij} = H_i W_j - W_i H_j + σ_{ij} λ_{ij},\\qquad λ_{ij} = -λ_{ji} \\sim N(0, 1),

        with ``σ² = h²/12`` (``approximation="davie"``: Davie, *KMT theory applied to
        approximations of SDE*, 2014) or ``σ² = h²/20 + h (H_i² + H_j²)/5``
        (``"foster"``: the conditional variance of ``A`` given ``H``, Foster, *Numerical
        approximations for stochastic differential equations*, PhD thesis, Oxford 2020). Both
        have the true Lévy area's mean 0 and variance ``h²/4`` off the diagonal; Foster's also
        its conditional variance given ``H``. ``λ`` is a counter-based hash of (seed, ``t0``,
        ``t1``), so the same query gives the same ``A``; it is not consistent between an
        interval and its halves (an approximation of weak order, for log-ODE-type methods).
        Queried backwards, ``A`` changes sign (the area of the reversed path).

        Needs ``levy_area="space-time"``.
        """
        if approximation not in ("davie", "foster"):
            raise ValueError(f'`approximation` must be "davie" or "foster", got {approximation!r}')
        w, h = self.levy_increment(t0, t1)
        if not self.shape:
            return w, h, torch.zeros_like(w)
        ta, tb, lead, _ = self._times(t0, t1)
        sign = torch.where(tb < ta, -1.0, 1.0).to(w.dtype)
        lo, hi = torch.minimum(ta, tb), torch.maximum(ta, tb)
        span = (hi - lo).to(w.dtype)
        # the forward increment: W changes sign backwards, H does not
        sign_w = sign.reshape(*lead, *([1] * len(self.shape)))
        w_fwd = w * sign_w
        mean = h.unsqueeze(-1) * w_fwd.unsqueeze(-2) - w_fwd.unsqueeze(-1) * h.unsqueeze(-2)
        noise = self._area_normals(lo, hi, lead, w.dtype)
        step = span.reshape(*lead, *([1] * (len(self.shape) + 1)))
        if approximation == "davie":
            var = step * step / 12
        else:
            hh = h * h
            var = step * step / 20 + step * (hh.unsqueeze(-1) + hh.unsqueeze(-2)) / 5
        area = (mean + var.sqrt() * noise) * sign_w.unsqueeze(-1)
        return w, h, area

    def _area_normals(self, lo, hi, lead, dtype) -> torch.Tensor:
        """Antisymmetric standard normals ``(*lead, *shape, d)`` keyed by (seed, ``lo``,
        ``hi``, entry): ``(N - Nᵀ)/√2``."""
        d = self.shape[-1]
        entries = math.prod(self.shape) * d
        bits = torch.stack([lo, hi]).to(torch.float64).view(torch.int64)  # (2, *lead)
        key = torch.tensor(_seed_lanes(self.seed ^ 0x5DEECE66D), device=bits.device)
        key = key.reshape(2, *([1] * len(lead)))
        for word in (bits[0] & _MASK, (bits[0] >> 32) & _MASK, bits[1] & _MASK):
            key = _pcg(key ^ word)
        key = _pcg(key ^ ((bits[1] >> 32) & _MASK))
        counter = torch.arange(entries, device=bits.device)
        if self.batched:  # one stream per sample
            counter = counter + entries * torch.arange(self.batch, device=bits.device)[:, None]
        u = _pcg(key.unsqueeze(-1) ^ counter)  # (2, *lead, entries)
        z = _box_muller(u, dtype)[0].to(dtype).reshape(*lead, *self.shape, d)
        return (z - z.transpose(-1, -2)) * (0.5**0.5)

    def _times(self, t0, t1):
        """The query times as float64 tensors of a common shape ``lead``, ``()`` or ``(batch,)``,
        with the dtypes they came in."""
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
        return t0, t1, tuple(t0.shape), dtypes

    def _sample_index(self, lead: tuple[int, ...]) -> torch.Tensor:
        """Which path each query reads: sample ``b`` for a batched path, else path 0."""
        if self.batched:
            return torch.arange(self.batch, device=self.device)
        return torch.zeros(lead, dtype=torch.long, device=self.device)

    @abc.abstractmethod
    def _query(self, t0, t1, levy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(W, H or None)`` over ``[t0, t1]`` (``H`` when ``levy``)."""

    def _out(self, x: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
        return x.to(self.dtype).reshape((*lead, *self.shape))

    # ---- the span of a solve -------------------------------------------------------------------

    def validate_span(self, t0: torch.Tensor, t1: torch.Tensor) -> None:
        t0, t1 = torch.as_tensor(t0).detach(), torch.as_tensor(t1).detach()
        lo = min(float(t0.min()), float(t1.min()))
        hi = max(float(t0.max()), float(t1.max()))
        dtype = t0.dtype
        eps = torch.finfo(dtype if dtype.is_floating_point else torch.float64).eps
        slack = 64 * eps * max(abs(lo), abs(hi), 1e-300)
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
    drawn once, from a CPU ``torch.Generator`` seeded from ``seed`` (so the path is the same on
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
        dtype: dtype of the increments returned; None (default): the real dtype of the state of
            the solve that uses the path (float32 before any solve).
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
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        batch_axis: int | None = None,
    ):
        self._setup(t0, t1, shape, seed, levy_area, dtype, device, batch_axis)
        self.steps = self._steps(steps, dt)
        self.h = (self.t1 - self.t0) / self.steps
        self._tolerances: dict[torch.dtype, float] = {}
        # torch's CPU generator keeps 32 bits of its seed: hash all 64 of ours into them
        gen = torch.Generator().manual_seed(_seed_lanes(seed)[0])
        size = (self.steps, self.batch * self.channels)
        # W = [0, cumsum(randn · √h)], built in place in one buffer: no temporary copies of the
        # steps × channels float64 numbers (a third of the cost of a large grid)
        w = torch.empty(self.steps + 1, size[1], dtype=torch.float64)
        w[0] = 0.0
        dw = torch.randn(size, generator=gen, dtype=torch.float64, out=w[1:])
        dw.mul_(math.sqrt(self.h))
        if levy_area is not None:
            dw = dw.clone()  # the Lévy area below needs the increments themselves
        w[1:].cumsum_(0)
        self._w = w.reshape(self.steps + 1, self.batch, self.channels).to(self.device)
        self._j = None
        if levy_area is not None:
            zero = torch.zeros(1, size[1], dtype=torch.float64)
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
        tol = self._tolerances.get(dtype)
        if tol is None:
            tol = self._tolerances[dtype] = self._compute_tolerance(dtype)
        return tol

    def _compute_tolerance(self, dtype: torch.dtype) -> float:
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
                first = int(bad.reshape(-1).nonzero()[0, 0])
                raise ValueError(self._off_grid(float(t.reshape(-1)[first])))
        return k.long()

    def _off_grid(self, at: float) -> str:
        return (
            f"{self!r} was queried at t={at:.10g}, which is not one of its grid points "
            f"t0 + k·{self.h:g} in [{_fmt(self.t0)}, {_fmt(self.t1)}]; step on the grid "
            f"(ConstantStepSize with `dt0` a multiple of {self.h:g}, or StepTo on grid points), "
            "or use `VirtualBrownianTree` for steps anywhere (adaptive solvers)"
        )

    def _query(self, t0, t1, levy):
        ta, tb = _host_time(t0), _host_time(t1)
        if ta is not None and tb is not None and not self.batched:  # Python indices
            ka, kb = self._host_index(ta, t0), self._host_index(tb, t1)
            lo, hi = min(ka, kb), max(ka, kb)  # computed forwards, so reversal is exact
            wa, wb = self._w[lo, 0], self._w[hi, 0]
            w = wb - wa
            sign_w = w if ka <= kb else -w
            if not levy:
                return self._out(sign_w, ()), None
            if ka == kb:
                return self._out(w, ()), self._out(torch.zeros_like(w), ())
            h = (self._j[hi, 0] - self._j[lo, 0]) / ((hi - lo) * self.h) - wa - w / 2
            return self._out(sign_w, ()), self._out(h, ())
        ta, tb, lead, dtypes = self._times(t0, t1)
        ka = self._index(ta, dtypes[0])
        kb = self._index(tb, dtypes[1])
        lo, hi = torch.minimum(ka, kb), torch.maximum(ka, kb)
        sign = torch.where(kb < ka, -1.0, 1.0).unsqueeze(-1)
        p = self._sample_index(lead)
        wa, wb = self._w[lo, p], self._w[hi, p]
        w = wb - wa
        if not levy:
            return self._out(sign * w, lead), None
        span = ((hi - lo).to(torch.float64) * self.h).unsqueeze(-1)
        safe = torch.where(span == 0, 1.0, span)
        h = (self._j[hi, p] - self._j[lo, p]) / safe - wa - w / 2
        h = torch.where(span == 0, 0.0, h)
        return self._out(sign * w, lead), self._out(h, lead)

    def _host_index(self, t: float, given) -> int:
        k = round((t - self.t0) / self.h)
        dtype = given.dtype if isinstance(given, torch.Tensor) else torch.float64
        if abs(t - (self.t0 + k * self.h)) > self._tolerance(dtype) or not 0 <= k <= self.steps:
            raise ValueError(self._off_grid(t))
        return k

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


# ------------------------------------------------------------------------------------------------
# counter-based random numbers: a hash of (seed, tree node, sample, channel), in int64 torch ops

_MASK = 0xFFFFFFFF


def _pcg(x):
    """The 32-bit PCG hash (Jarzynski & Olano, *Hash Functions for GPU Rendering*, JCGT 2020) of
    ``x`` in ``[0, 2^32)``, on Python ints or int64 tensors. Every product stays below ``2^63``
    (multipliers below ``2^30``), so int64 arithmetic never overflows."""
    if not isinstance(x, torch.Tensor):
        state = (x * 747796405 + 2891336453) & _MASK
        word = (((state >> ((state >> 28) + 4)) ^ state) * 277803737) & _MASK
        return (word >> 22) ^ word
    # the same in place on two new tensors (each allocation of a large batch costs page faults)
    state = x.mul(747796405).add_(2891336453).bitwise_and_(_MASK)
    word = state.bitwise_right_shift(state.bitwise_right_shift(28).add_(4))
    word.bitwise_xor_(state).mul_(277803737).bitwise_and_(_MASK)
    return word.bitwise_xor_(state.copy_(word).bitwise_right_shift_(22))


def _seed_lanes(seed: int) -> tuple[int, int]:
    """Two 32-bit starting states from a seed (taken modulo 2^64)."""
    lo, hi = seed & _MASK, (seed >> 32) & _MASK
    return _pcg(_pcg(lo) ^ hi), _pcg(_pcg(lo ^ 0x9E3779B9) ^ hi ^ 0x7F4A7C15)


def _box_muller(u: torch.Tensor, dtype: torch.dtype, axis: int = 0) -> torch.Tensor:
    """Two independent standard normals from two 32-bit uniform integers ``u: (2, ...)``,
    stacked at ``axis`` (``(2, ...)`` by default), in float64 for float64 paths, else float32
    (tails are cut at ``sqrt(2·32·ln 2) ≈ 6.7`` standard deviations, probability ``2^-32``)."""
    u = u.to(torch.float64 if dtype == torch.float64 else torch.float32)
    r = u[0].add_(0.5).mul_(2.0**-32).log_().mul_(-2.0).sqrt_()
    angle = u[1].mul_(2.0 * math.pi * 2.0**-32)
    out = torch.empty((*r.shape[:axis], 2, *r.shape[axis:]), dtype=u.dtype, device=u.device)
    torch.cos(angle, out=out.select(axis, 0))
    torch.sin(angle, out=out.select(axis, 1))
    return out.mul_(r.unsqueeze(axis))


# ------------------------------------------------------------------------------------------------
# shape functions of the tree (per unit node length; x ∈ [0, 1] the position in the node)


def _tent(x):
    """The Brownian-bridge midpoint displacement (Lévy–Ciesielski construction): linear up to the
    node's midpoint and back down (a float or a tensor)."""
    return 1 - abs(2 * x - 1)


def _pywhere(cond, a, b):
    return a if cond else b


def _levy_shapes(x, where=torch.where):
    """``(φ, ψ, Φ, Ψ)`` at ``x`` (a float or a tensor; ``where`` picks per element): how the two
    normals drawn at a node (``Z`` and ``X`` below) move the path, and their antiderivatives
    ``∫_0^x`` (which vanish at both ends of the node).

    Splitting ``[s, u]`` (length ``h``) at its midpoint given ``W`` and ``H`` over it:
    ``W_1 = W/2 + 3H/2 + Z``, ``W_2 = W - W_1``, ``H_1 = H/4 - Z/2 + X``, ``H_2 = H/4 - Z/2 - X``
    with ``Z ~ N(0, h/16)`` and ``X ~ N(0, h/48)`` independent of ``(W, H)``: the conditional law
    of ``(W_1, H_1, W_2, H_2)`` given ``(W, H)`` (it follows from the combination rule in the
    module docstring and the covariances of the halves; see Foster, *Numerical approximations for
    stochastic differential equations*, PhD thesis, Oxford 2020). Between levels the path is the
    conditional mean given each node's ``(W, H)``, the parabola
    ``W_{s,s+r} = (r/h) W + 6 (r/h)(1 - r/h) H``; refining a node moves it by ``Z φ + X ψ``."""
    left = x < 0.5
    u = where(left, 2 * x, 2 * x - 1)  # position in the half
    c = 1 - u
    uu = u * u
    phi = where(left, u * (3 * u - 2), c * (1 - 3 * u))
    psi = where(left, 6 * u * c, -6 * u * c)
    big_phi = where(left, -uu * c, u * c * c) / 2
    big_psi = where(left, uu * (3 - 2 * u), 1 - uu * (3 - 2 * u)) / 2
    return phi, psi, big_phi, big_psi


# ------------------------------------------------------------------------------------------------
# virtual Brownian tree


class VirtualBrownianTree(AbstractBrownianPath):
    """Brownian motion on ``[t0, t1]`` computed on demand from a seed, to resolution ``tol``.

    The path is the Brownian-bridge bisection of ``[t0, t1]`` down to depth
    ``L = ceil(log2((t1 - t0)/tol))``: ``W`` is exact Brownian motion at the dyadic points
    ``t0 + k (t1 - t0)/2^L`` (spacing at most ``tol``) and, between them, its conditional mean
    given the finest level — the straight line (as diffrax does), or with
    ``levy_area="space-time"`` the parabola fixed by the cell's increment and Lévy area. So ``tol``
    (absolute, in time units, like torchsde's ``BrownianTree`` and diffrax) is the resolution:
    an increment over an interval whose ends are dyadic points is exact in law; one whose ends are
    not misses the bridge fluctuation inside the end cells (standard deviation at most
    ``sqrt(tol)/2``). Choose ``tol`` well below the step size.

    The random numbers of each tree node come from a counter-based hash of (seed, node, sample,
    channel) — the 32-bit PCG hash in two lanes, then Box–Muller — in int64 tensor operations, so
    the path is a pure function of (seed, time): the backward pass, rejected steps and
    checkpoint recomputation see the same path, nothing is stored, queries run on any device,
    and under ``batch_axis=0`` every sample (its own independent path) is queried at its own time
    in one vectorised pass. Identical on every device up to float rounding in Box–Muller.

    Each query costs O(L): ``W`` is a sum over levels of one node's normal times a fixed shape
    (the Lévy–Ciesielski form of the bisection), and only the nodes holding the two ends of the
    interval contribute, so no Python loop runs over levels, samples or values. The increment and
    the Lévy area over ``[a, b]`` are computed as differences within each node (float64 weights,
    normals in ``dtype``), so short intervals keep their relative precision. The work is
    ``O(L · batch · channels)`` hash evaluations per query — cheap on a GPU; on a CPU, for
    fixed-step solves of large batches, :class:`BrownianGrid` (O(1) per query) is much faster.
    Increments are not differentiable with respect to the query times.

    Args:
        t0, t1: the interval, ``t0 < t1``; queries outside it are clamped to it
            (:func:`~torchnde.solve` checks the solve's interval first).
        shape: channel shape of ``W``; with ``batch_axis=0``, ``shape[0]`` is the batch size (one
            independent path per sample) and ``path.shape == shape[1:]``.
        tol: the resolution, in time units (default ``1e-3``); the depth is capped at 48 levels.
        seed: the seed (any int, taken modulo ``2^64``).
        levy_area: None, or ``"space-time"`` for :meth:`levy_increment` (the path then differs
            from the one without Lévy area for the same seed).
        dtype: dtype of the increments; None (default): the real dtype of the state of the solve
            that uses the path (float32 before any solve).
        device: where queries are computed.
        batch_axis: None, or 0 for one path per sample.
        w1: condition the path on its end value, ``W(t1) - W(t0) = w1`` (a tensor of the
            path's full shape, batch included): the path is then the Brownian bridge to ``w1``.
        h1: with ``levy_area="space-time"``, also condition on the space-time Lévy area over
            ``[t0, t1]``.

    Without a batch axis the path may also be queried at ``(batch,)`` times: one path read at
    several times. References: Gaines & Lyons, *Variable step size control in the numerical
    solution of stochastic differential equations*, SIAM J. Appl. Math. 1997 (the virtual tree);
    Li et al., *Scalable gradients for stochastic differential equations*, AISTATS 2020;
    Jelinčič et al., *Single-seed generation of Brownian paths and integrals for adaptive and
    high order SDE solvers*, 2024 (Lévy area in the tree).
    """

    _MAX_DEPTH = 48

    def __init__(
        self,
        t0: float,
        t1: float,
        shape: tuple[int, ...] | int,
        *,
        tol: float = 1e-3,
        seed: int = 0,
        levy_area: str | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        batch_axis: int | None = None,
        w1: torch.Tensor | None = None,
        h1: torch.Tensor | None = None,
    ):
        self._setup(t0, t1, shape, seed, levy_area, dtype, device, batch_axis)
        tol = _real("tol", tol)
        if tol <= 0:
            raise ValueError(f"`tol` must be positive, got {tol}")
        span = self.t1 - self.t0
        depth = max(0, math.ceil(math.log2(span / tol) - 1e-12))
        if depth > self._MAX_DEPTH:
            raise ValueError(
                f"`tol`={tol:g} needs {depth} levels of bisection on [{_fmt(self.t0)}, "
                f"{_fmt(self.t1)}], more than {self._MAX_DEPTH}; use `tol` >= {span * 2.0**-48:g}"
            )
        self.tol, self.depth = tol, depth
        dev = self.device
        levels = torch.arange(depth, device=dev)
        self._cells = 2.0 ** levels.to(torch.float64)  # (L,): nodes per level
        self._first = 2**levels  # heap number of each level's first node
        widths = span / self._cells
        if levy_area is None:  # the bridge's midpoint displacement: N(0, h/4)
            self._sigma = (widths.sqrt() / 2)[None]
        else:  # Z ~ N(0, h/16), X ~ N(0, h/48) (see `_levy_shapes`)
            self._sigma = torch.stack([widths.sqrt() / 4, (widths / 48).sqrt()])
        root = [math.sqrt(span), math.sqrt(span / 12)]  # W and H over [t0, t1]
        self._root = torch.tensor(root, dtype=torch.float64, device=dev)
        self._lanes_f = _seed_lanes(seed)
        self._lanes = torch.tensor(self._lanes_f, device=dev)
        self._root_f, self._sigma_f = tuple(root), self._sigma.T.tolist()
        # normals come in pairs (Box–Muller): without Lévy area one pair serves two channels
        pairs = self.channels if levy_area else (self.channels + 1) // 2
        if self.batch * pairs >= 2**32:
            raise ValueError(
                f"{self!r} has {self.batch * self.channels} numbers per tree node, more than "
                "2^32; split it into several paths with different seeds"
            )
        sample = torch.arange(self.batch, device=dev)[:, None]
        self._counter = sample * pairs + torch.arange(pairs, device=dev)  # (batch, pairs)
        self._ends = self._end_values(w1, h1)
        # 2 · depth + 1 rows serve one query; a few queries' worth are kept
        self._cache = _RowCache(8 * 2 * pairs, min_rows=4 * depth + 4)

    def _end_values(self, w1, h1) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``w1``/``h1`` as the root's normals ``(batch or 1, channels)``: the bridge from 0 to
        ``w1`` (and, with Lévy area, the space-time area ``h1`` over ``[t0, t1]``)."""
        full = ((self.batch,) if self.batched else ()) + self.shape
        out = []
        for name, value, scale in (("w1", w1, self._root_f[0]), ("h1", h1, self._root_f[1])):
            if value is None:
                out.append(None)
                continue
            if name == "h1" and self.levy_area is None:
                raise ValueError(
                    '`h1` (the space-time Lévy area over [t0, t1]) needs levy_area="space-time"'
                )
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != full:
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
                raise ValueError(f"`{name}` must be a tensor of the path's shape {full}, got {got}")
            z = value.detach().to(device=self.device, dtype=torch.float64) / scale
            out.append(z.reshape(self.batch if self.batched else 1, self.channels))
        return out[0], out[1]

    def _condition(self, z: torch.Tensor) -> torch.Tensor:
        """Put the end values' normals in the root's row of ``z`` (``(R, *lead, channels)``, or
        ``(2, R, *lead, pairs)`` with Lévy area)."""
        w1, h1 = self._ends
        if w1 is None and h1 is None:
            return z
        z = z.clone()
        rows = z if self.levy_area is None else z[0]
        if w1 is not None:
            root = rows[0]
            rows[0] = (w1 if self.batched else w1[0]).to(z.dtype).expand_as(root)
        if h1 is not None:
            root = z[1, 0]
            z[1, 0] = (h1 if self.batched else h1[0]).to(z.dtype).expand_as(root)
        return z

    def __repr__(self) -> str:
        shape = ((self.batch,) if self.batched else ()) + self.shape
        levy = "" if self.levy_area is None else f", levy_area={self.levy_area!r}"
        return (
            f"VirtualBrownianTree(t0={_fmt(self.t0)}, t1={_fmt(self.t1)}, shape={shape}, "
            f"tol={self.tol:g}{levy})"
        )

    def _query(self, t0, t1, levy):
        ta, tb = _host_time(t0), _host_time(t1)
        if ta is not None and tb is not None and not self.batched:
            return self._host_query(ta, tb, levy)
        ta, tb, lead, _ = self._times(t0, t1)
        span = self.t1 - self.t0
        s = ((torch.stack([ta, tb]) - self.t0) / span).clamp_(0, 1)  # (2, *lead)
        sign = torch.where(s[1] < s[0], -1.0, 1.0)  # computed forwards, so reversal is exact
        s = torch.stack([s.amin(0), s.amax(0)])
        cells = self._cells.reshape(-1, 1, *([1] * len(lead)))  # (L, 1, ...)
        y = s * cells  # (L, end, *lead): each end's position in units of that level's nodes
        k = y.floor().clamp_(max=cells - 1)  # the node holding each end
        # x[l, n, e]: where end e falls in the level-l node holding end n (clamped to the node)
        x = (y.unsqueeze(1) - k.unsqueeze(2)).clamp_(0, 1)  # (L, node, end, *lead)
        same = (k[:, 0] == k[:, 1]).unsqueeze(1)  # (L, 1, *lead)
        drop = torch.cat([torch.zeros_like(same), same], 1)  # node b counted once, as node a
        nodes = (k.long() + self._first.reshape(cells.shape)).flatten(0, 1)  # (2L, *lead)
        nodes = torch.cat([torch.zeros_like(nodes[:1]), nodes])  # the root is node 0
        h = _pcg((nodes & _MASK) ^ self._lanes.reshape(2, *([1] * nodes.ndim)))
        if self.depth > 32:  # heap numbers from 2^32: their high bits too
            h = _pcg(h ^ (nodes >> 32))
        z = self._condition(self._normals(h, self._counter if self.batched else self._counter[0]))
        delta = s[1] - s[0]
        if self.levy_area is None:
            w = self._sigma[0].reshape(cells.shape) * (_tent(x[:, :, 1]) - _tent(x[:, :, 0]))
            w = torch.cat([(self._root[0] * delta)[None], w.masked_fill(drop, 0).flatten(0, 1)])
            return self._out(_contract(w * sign, z, lead), lead), None
        w, h = self._levy_weights(x, s, cells, drop)
        w_out = self._out(_contract(w * sign, z, lead), lead)
        if not levy:
            return w_out, None
        return w_out, self._out(_contract(h, z, lead), lead)

    def _levy_weights(self, x, s, cells, drop):
        """Weights ``(stream, R, *lead)`` of the normals in ``W`` and in ``H`` over ``[a, b]``,
        from ``W = f(b) - f(a)`` and ``H = (F(b) - F(a))/(b - a) - f(a) - W/2`` for each shape
        ``f`` with antiderivative ``F``. Each node's shapes are read inside that node (nodes
        away from both ends contribute nothing), so nothing large cancels."""
        shapes = _levy_shapes(x)
        f, big = torch.stack(shapes[:2]), torch.stack(shapes[2:])  # (stream, L, node, end, ...)
        delta = s[1] - s[0]
        safe = torch.where(delta == 0, 1.0, delta)
        sigma = self._sigma.reshape(2, -1, *([1] * (x.ndim - 2)))  # (stream, L, 1, ...)
        w = f[:, :, :, 1] - f[:, :, :, 0]
        h = (big[:, :, :, 1] - big[:, :, :, 0]) / (cells * safe) - f[:, :, :, 0] - w / 2
        w = (sigma * w).masked_fill_(drop, 0).flatten(1, 2)
        h = (sigma * h).masked_fill_(drop, 0).flatten(1, 2)
        # the root: W = √T·ξ along a line (no area), H = √(T/12)·η through the parabola 6s(1-s)
        root = self._root.reshape(2, *([1] * delta.ndim))
        root_w = torch.stack([delta, 6 * delta * (1 - s[0] - s[1])]) * root
        root_h = torch.stack([torch.zeros_like(delta), delta * delta]) * root
        w = torch.cat([root_w.unsqueeze(1), w], 1)
        h = torch.cat([root_h.unsqueeze(1), h], 1)
        return w, h.masked_fill_(delta == 0, 0)

    def _normals(self, h: torch.Tensor, counter: torch.Tensor) -> torch.Tensor:
        """The normals of every (node, sample, channel) from ``h: (2, R, *lead)``, the two hash
        lanes keyed by (seed, node), and the element counter ``sample · pairs + pair``; returns
        ``(2, R, *lead, pairs)`` (Lévy area: one stream each) or ``(R, *lead, channels)``."""
        z = _box_muller(_pcg(h.unsqueeze(-1) ^ counter), self.dtype)
        if self.levy_area is None:  # the pair's two normals serve two channels
            return torch.cat([z[0], z[1]], -1)[..., : self.channels]
        return z

    def _host_query(self, ta: float, tb: float, levy: bool):
        """One path queried at two Python times: the same computation as ``_query``, with the
        per-level bookkeeping in Python numbers (far fewer tensor operations) and only the
        nodes that contribute."""
        span = self.t1 - self.t0
        sa = min(max((ta - self.t0) / span, 0.0), 1.0)
        sb = min(max((tb - self.t0) / span, 0.0), 1.0)
        sign = 1.0
        if sb < sa:
            sa, sb, sign = sb, sa, -1.0
        delta = sb - sa
        safe = delta if delta else 1.0
        nodes = [0]
        root_w, root_h = self._root_f
        if self.levy_area is None:
            weights = [[root_w * delta * sign]]
        else:
            weights = [
                [root_w * delta * sign],
                [root_h * 6 * delta * (1 - sa - sb) * sign],
                [0.0],
                [root_h * delta * delta],
            ]
        for level in range(self.depth):
            cells = float(1 << level)
            ya, yb = sa * cells, sb * cells
            ka, kb = min(math.floor(ya), cells - 1), min(math.floor(yb), cells - 1)
            for k in (ka,) if ka == kb else (ka, kb):
                xa, xb = min(max(ya - k, 0.0), 1.0), min(max(yb - k, 0.0), 1.0)
                nodes.append((1 << level) + int(k))
                sigma = self._sigma_f[level]
                if self.levy_area is None:
                    weights[0].append(sigma[0] * (_tent(xb) - _tent(xa)) * sign)
                    continue
                fa, fb = _levy_shapes(xa, _pywhere), _levy_shapes(xb, _pywhere)
                for stream in (0, 1):
                    w = fb[stream] - fa[stream]
                    h = (fb[stream + 2] - fa[stream + 2]) / (cells * safe) - fa[stream] - w / 2
                    weights[stream].append(sigma[stream] * w * sign)
                    weights[stream + 2].append(sigma[stream] * h if delta else 0.0)
        z = torch.stack(self._node_rows(nodes))  # (R, channels), or (R, stream, pairs)
        if self.levy_area is None:
            w = torch.tensor(weights[0], dtype=z.dtype, device=self.device) @ z
            return self._out(w, ()), None
        # one product: rows (R, stream) of z against the weights of W and H, in that order
        rows = [[x for pair in zip(*weights[i : i + 2]) for x in pair] for i in (0, 2)]
        wh = torch.tensor(rows, dtype=z.dtype, device=self.device) @ z.flatten(0, 1)
        return self._out(wh[0], ()), self._out(wh[1], ()) if levy else None

    def _node_rows(self, nodes: list[int]) -> list[torch.Tensor]:
        """The normals of ``nodes`` (one path), each ``(channels,)``, or ``(2, pairs)`` with
        Lévy area, the root's conditioned on the end values. Rows are kept in a small
        least-recently-used cache: consecutive steps of a solve share all but the finest levels'
        nodes (and every query shares the top levels), so a fixed-step solve computes about two
        new rows per step instead of ``2 · depth + 1``."""
        cache = self._cache
        if cache.dtype != self.dtype:
            cache.clear(self.dtype)
        found = {n: cache.get(n) for n in nodes if n in cache.rows}
        missing = [n for n in dict.fromkeys(nodes) if n not in found]
        if missing:
            lanes = [[_pcg((n & _MASK) ^ lane) for n in missing] for lane in self._lanes_f]
            if self.depth > 32:
                lanes = [[_pcg(h ^ (n >> 32)) for h, n in zip(lane, missing)] for lane in lanes]
            lanes = torch.tensor(lanes, device=self.device)
            # (missing, stream, pairs): each node's two streams side by side
            fresh = _box_muller(_pcg(lanes.unsqueeze(-1) ^ self._counter[0]), self.dtype, axis=1)
            if self.levy_area is None:  # the pair's two normals serve two channels
                fresh = fresh.flatten(1)[:, : self.channels]
            for n, row in zip(missing, fresh.unbind(0)):
                cache.put(n, row)
                found[n] = row
        rows = [found[n] for n in nodes]
        w1, h1 = self._ends
        if w1 is not None or h1 is not None:  # the root (node 0) is conditioned
            root = rows[0].clone()
            if self.levy_area is None:
                root.copy_(w1[0])
            else:
                if w1 is not None:
                    root[0] = w1[0]
                if h1 is not None:
                    root[1] = h1[0]
            rows[0] = root
        return rows


class _RowCache:
    """Least-recently-used rows of a tree's normals, keyed by node, for one dtype."""

    def __init__(self, row_bytes: int, min_rows: int, budget: int = 64 * 2**20):
        self.rows: collections.OrderedDict[int, torch.Tensor] = collections.OrderedDict()
        self.capacity = max(min_rows, min(4096, budget // max(row_bytes, 1)))
        self.dtype: torch.dtype | None = None

    def clear(self, dtype: torch.dtype) -> None:
        self.rows.clear()
        self.dtype = dtype

    def get(self, node: int) -> torch.Tensor:
        self.rows.move_to_end(node)
        return self.rows[node]

    def put(self, node: int, row: torch.Tensor) -> None:
        self.rows[node] = row
        if len(self.rows) > self.capacity:
            self.rows.popitem(last=False)


def _host_time(t) -> float | None:
    """``t`` as a Python float when it is a number or a 0-dim CPU tensor (cheap to read) that no
    gradient flows through."""
    if isinstance(t, torch.Tensor):
        if t.ndim or t.device.type != "cpu" or t.requires_grad or torch.compiler.is_compiling():
            return None
        return t.item()
    return float(t) if isinstance(t, (int, float)) else None


def _contract(weights: torch.Tensor, z: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
    """``Σ weights z`` over the axes of ``weights`` before ``lead`` (streams, rows); ``z`` has
    one more trailing axis (channels)."""
    prod = weights.to(z.dtype).unsqueeze(-1) * z
    return prod.sum(tuple(range(weights.ndim - len(lead))))


# ------------------------------------------------------------------------------------------------
# a tree of intervals split where it is queried (torchsde's BrownianInterval structure)

_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """SplitMix64's finaliser (Steele, Lea & Flood, *Fast splittable pseudorandom number
    generators*, OOPSLA 2014): a bijection of 64-bit ints that scrambles every bit."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
    return x ^ (x >> 31)


class _Node:
    """An interval ``[start, end]`` of the tree; once split, at ``mid``, it has two children.
    ``seed`` seeds the normals that split it (the children's seeds derive from it)."""

    __slots__ = ("end", "left", "mid", "parent", "right", "seed", "start")

    def __init__(self, start: float, end: float, seed: int, parent: _Node | None):
        self.start, self.end, self.seed, self.parent = start, end, seed, parent
        self.mid: float | None = None
        self.left: _Node | None = None
        self.right: _Node | None = None

    def split(self, mid: float) -> None:
        self.mid = mid
        self.left = _Node(self.start, mid, _mix64(self.seed ^ 0x9E3779B97F4A7C15), self)
        self.right = _Node(mid, self.end, _mix64(self.seed ^ 0x6A09E667F3BCC909), self)


class BrownianIntervalTree(AbstractBrownianPath):
    """Brownian motion on a binary tree of intervals that is split where it is queried: the
    structure of torchsde's ``BrownianInterval`` (Kidger et al., *Efficient and accurate
    gradients for neural SDEs*, NeurIPS 2021, §4). Fast random access at large batch; the path
    depends on the order of the queries.

    The root is ``[t0, t1]`` with ``W`` (and, with ``levy_area="space-time"``, ``H``) drawn from
    the seed. A query ``[a, b]`` walks down the tree; a leaf that holds ``a`` or ``b`` strictly
    inside is split there (or, while the leaf is wider than 16 query widths — 16 ``dt`` when
    ``dt`` is given — at its midpoint first, so that a solve's steps build a balanced tree: each
    leaf then holds at most about 16 steps). The children of a split are drawn from their
    conditional law given the parent's values, with normals from a ``torch.Generator`` seeded by
    the parent's seed (children's seeds derive from it), and the answer combines the values of the
    nodes that cover ``[a, b]``. So a query costs about one bridge sample per new split point
    instead of one per level of a fixed-resolution tree, and increments are exact in law at any
    times (no resolution ``tol``).

    Splitting ``[s, u]`` (length ``h``) at ``s + r·h`` (``q = 1 - r``) given ``(W, H)``:

    .. math::
        W_1 = rW + 6rqH + \\sqrt{hrq}\\,σ Z_1, \\qquad
        W_2 = qW - 6rqH - \\sqrt{hrq}\\,σ Z_1,

        H_1 = r^2 H - \\frac{\\sqrt h\\, r^{5/2} q^{1/2}}{2σ} Z_1
              + \\frac{\\sqrt{h/12}\\, r^{1/2} q^{3/2}}{σ} Z_2, \\qquad
        H_2 = q^2 H - \\frac{\\sqrt h\\, r^{1/2} q^{5/2}}{2σ} Z_1
              - \\frac{\\sqrt{h/12}\\, r^{3/2} q^{1/2}}{σ} Z_2,

    with ``σ = sqrt(1 - 3rq)`` and ``Z_1, Z_2`` independent standard normals: the conditional law
    of the halves given ``(W, H)`` (from the combination rule in the module docstring; at
    ``r = 1/2`` it is :class:`VirtualBrownianTree`'s midpoint split). Without Lévy area only
    ``W_1, W_2`` with ``H = 0`` and the ``Z_1`` term ``sqrt(hrq)``.

    Reproducible for a given seed and sequence of queries, and consistent: once a query is
    answered, the same interval (forwards or backwards, during a backward pass or a rejected
    step's retry) gives the same values, and the increments of adjacent intervals add up. A
    different order of queries draws a different (equally Brownian) path — use
    :class:`VirtualBrownianTree` when the path must not depend on it. The values of recently used
    nodes are kept in a least-recently-used cache of ``cache_size`` nodes; evicted ones are
    recomputed from their ancestors, identically. The normals come from the device's
    generator, so the same seed gives different paths on the CPU and on a GPU.

    Args:
        t0, t1: the interval, ``t0 < t1``; queries outside it are clamped to it.
        shape: shape of ``W`` (all samples and channels; one time for all of them).
        seed: the seed (any int, taken modulo ``2^64``).
        levy_area: None, or ``"space-time"`` for :meth:`levy_increment`.
        dtype: dtype of the increments; None (default): the real dtype of the state of the solve
            that uses the path (float32 before any solve).
        device: where the increments are computed.
        dt: the step size of the solve that will query it, if known: the tree is then split at
            midpoints down to leaves of about ``16·dt`` whatever the queries' widths.
        cache_size: how many nodes' values are kept (None: all; default 45, torchsde's).
        w1: condition the path on its end value ``W(t1) - W(t0) = w1`` (a tensor of ``shape``).
        h1: with ``levy_area="space-time"``, also on the space-time Lévy area over ``[t0, t1]``.
    """

    #: a leaf wider than this many query widths (or ``dt``) is split at its midpoint first
    _PIECE = 16
    #: midpoint splits stop at leaves of ``(t1 - t0) · 2^-_MAX_HALVINGS``
    _MAX_HALVINGS = 40

    def __init__(
        self,
        t0: float,
        t1: float,
        shape: tuple[int, ...] | int,
        *,
        seed: int = 0,
        levy_area: str | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        dt: float | None = None,
        cache_size: int | None = 45,
        w1: torch.Tensor | None = None,
        h1: torch.Tensor | None = None,
    ):
        self._setup(t0, t1, shape, seed, levy_area, dtype, device, None)
        span = self.t1 - self.t0
        if dt is not None:
            dt = _real("dt", dt)
            if dt <= 0:
                raise ValueError(f"`dt` must be positive (the solve's step size), got {dt}")
        self.dt = dt
        if cache_size is not None and (
            isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1
        ):
            raise ValueError(f"`cache_size` must be a positive int or None, got {cache_size!r}")
        self.cache_size = cache_size
        self._min_leaf = span * 2.0**-self._MAX_HALVINGS
        lanes = _seed_lanes(seed)
        self._root = _Node(self.t0, self.t1, _mix64(lanes[0] << 32 | lanes[1]), None)
        self._ends = self._end_values(w1, h1)
        self._cache: collections.OrderedDict[_Node, tuple] = collections.OrderedDict()
        self._root_values: tuple | None = None
        self._generator: torch.Generator | None = None

    def _end_values(self, w1, h1) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        out = []
        for name, value in (("w1", w1), ("h1", h1)):
            if value is None:
                out.append(None)
                continue
            if name == "h1" and self.levy_area is None:
                raise ValueError(
                    '`h1` (the space-time Lévy area over [t0, t1]) needs levy_area="space-time"'
                )
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != self.shape:
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
                raise ValueError(
                    f"`{name}` must be a tensor of the path's shape {self.shape}, got {got}"
                )
            out.append(value.detach().to(device=self.device))
        return out[0], out[1]

    def __repr__(self) -> str:
        levy = "" if self.levy_area is None else f", levy_area={self.levy_area!r}"
        dt = "" if self.dt is None else f", dt={self.dt:g}"
        return (
            f"BrownianIntervalTree(t0={_fmt(self.t0)}, t1={_fmt(self.t1)}, shape={self.shape}"
            f"{dt}{levy})"
        )

    # ---- values of the nodes -------------------------------------------------------------------

    def _normals(self, seed: int, count: int) -> torch.Tensor:
        if self._generator is None:
            self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(seed & 0x7FFFFFFFFFFFFFFF)
        return torch.randn(
            (count, *self.shape), generator=self._generator, dtype=self.dtype, device=self.device
        )

    def _root_vals(self) -> tuple:
        values = self._root_values
        if values is None or values[0].dtype != self.dtype:
            self._cache.clear()  # the path was given another dtype: start afresh
            span = self.t1 - self.t0
            # the root's own normals: a seed apart from the one that splits it
            z = self._normals(
                _mix64(self._root.seed ^ 0xB7E151628AED2A6B), 2 if self.levy_area else 1
            )
            w = z[0] * math.sqrt(span) if self._ends[0] is None else self._ends[0].to(self.dtype)
            h = None
            if self.levy_area is not None:
                h = z[1] * math.sqrt(span / 12)
                if self._ends[1] is not None:
                    h = self._ends[1].to(self.dtype)
            values = self._root_values = (w, h)
        return values

    def _values(self, node: _Node) -> tuple:
        """``(W, H or None)`` over ``node``: from the cache, or drawn down from the nearest
        ancestor whose values are known."""
        root = self._root_vals()
        if node is self._root:
            return root
        cache = self._cache
        chain = []
        while node is not self._root and node not in cache:
            chain.append(node)
            node = node.parent
        values = root if node is self._root else cache[node]
        if not chain:
            cache.move_to_end(node)
        for child in reversed(chain):
            parent = child.parent
            pair = self._children(parent, values)
            values = pair[0] if child is parent.left else pair[1]
        return values

    def _children(self, node: _Node, values: tuple) -> tuple[tuple, tuple]:
        """The values of ``node``'s two children given its own (the formulas in the class
        docstring); both go into the cache."""
        w, h = values
        span = node.end - node.start
        r = (node.mid - node.start) / span
        q = (node.end - node.mid) / span
        if self.levy_area is None:
            z = self._normals(node.seed, 1)[0] * math.sqrt(span * r * q)
            left, right = (w * r + z, None), (w * q - z, None)
        else:
            z = self._normals(node.seed, 2)
            sigma = math.sqrt(1 - 3 * r * q)
            root_h, root_h12 = math.sqrt(span), math.sqrt(span / 12)
            drift = h * (6 * r * q)
            noise = z[0] * (math.sqrt(span * r * q) * sigma)
            left = (
                w * r + drift + noise,
                h * (r * r)
                + z[0] * (-root_h * r**2.5 * q**0.5 / (2 * sigma))
                + z[1] * (root_h12 * r**0.5 * q**1.5 / sigma),
            )
            right = (
                w * q - drift - noise,
                h * (q * q)
                + z[0] * (-root_h * r**0.5 * q**2.5 / (2 * sigma))
                - z[1] * (root_h12 * r**1.5 * q**0.5 / sigma),
            )
        cache = self._cache
        cache[node.left], cache[node.right] = left, right
        if self.cache_size is not None:
            while len(cache) > self.cache_size:
                cache.popitem(last=False)
        return left, right

    # ---- the nodes covering a query --------------------------------------------------------------

    def _cover(self, a: float, b: float) -> list[_Node]:
        """The nodes whose union is ``[a, b]`` (``a < b``), left to right, splitting leaves that
        hold ``a`` or ``b`` strictly inside."""
        piece = self._PIECE * (self.dt if self.dt is not None else b - a)
        out: list[_Node] = []
        stack = [(self._root, a, b)]
        while stack:
            node, lo, hi = stack.pop()
            if lo == node.start and hi == node.end:
                out.append(node)
                continue
            if node.mid is None:
                width = node.end - node.start
                half = node.start + width / 2
                if width > piece and width > self._min_leaf and node.start < half < node.end:
                    node.split(half)
                else:
                    node.split(lo if lo > node.start else hi)
            mid = node.mid
            if hi <= mid:
                stack.append((node.left, lo, hi))
            elif lo >= mid:
                stack.append((node.right, lo, hi))
            else:
                stack.append((node.right, mid, hi))
                stack.append((node.left, lo, mid))
        return out

    def _host_times(self, t0, t1) -> tuple[float, float, tuple[int, ...]]:
        ta, tb = _host_time(t0), _host_time(t1)
        if ta is not None and tb is not None:
            return ta, tb, ()
        ta, tb, lead, _ = self._times(t0, t1)
        flat_a, flat_b = ta.detach().reshape(-1), tb.detach().reshape(-1)
        if lead and not (bool((flat_a == flat_a[0]).all()) and bool((flat_b == flat_b[0]).all())):
            raise ValueError(
                f"{self!r} answers one interval at a time (the same times for every sample), but "
                "was queried at several different times; use `VirtualBrownianTree(..., "
                "batch_axis=0)` for per-sample times"
            )
        return float(flat_a[0]), float(flat_b[0]), lead

    def _query(self, t0, t1, levy):
        ta, tb, lead = self._host_times(t0, t1)
        lo = min(max(min(ta, tb), self.t0), self.t1)
        hi = min(max(max(ta, tb), self.t0), self.t1)
        if lo == hi:
            zero = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
            w, h = zero, zero if levy else None
        else:
            nodes = self._cover(lo, hi)
            w, h = self._values(nodes[0])
            start, end = nodes[0].start, nodes[0].end
            for node in nodes[1:]:  # the combination rule of the module docstring
                w2, h2 = self._values(node)
                if levy:
                    len1, len2 = end - start, node.end - node.start
                    total = len1 + len2
                    h = (h * len1 + h2 * len2 + (w * len2 - w2 * len1) / 2) / total
                w, end = w + w2, node.end
            if tb < ta:
                w = -w
            if not levy:
                h = None
        if lead:
            w = w.expand(*lead, *self.shape)
            h = None if h is None else h.expand(*lead, *self.shape)
        return w, h
