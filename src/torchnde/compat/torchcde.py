"""torchcde 0.2.5's interface, translated onto torchnde's paths and :func:`torchnde.solve`.

Switch with one import line::

    from torchnde.compat import torchcde

    coeffs = torchcde.hermite_cubic_coefficients_with_backward_differences(x)
    X = torchcde.CubicSpline(coeffs)
    z_T = torchcde.cdeint(X=X, func=func, z0=z0, t=X.interval)

What is torchcde's, unchanged: the signatures and defaults (``cdeint(X, func, z0, t, adjoint=True,
backend="torchdiffeq", **kwargs)`` with ``rtol=1e-4``, ``atol=1e-6``, the adjoint tolerances
defaulting to those), the data layout (``x: (..., length, channels)`` with any number of batch
axes, ``t`` shared by the batch and defaulting to ``0, 1, …, length - 1``), the coefficient
layouts (linear: the filled knots ``(..., length, channels)``; cubic: ``(..., length - 1,
4 * channels)`` holding ``a, b, 2c, 3d``), the output shape ``(..., len(t), hidden)``, tuple
states, ``func.prod``, and the method names and options of torchdiffeq (``method="rk4"``,
``options=dict(step_size=...)``, ``options=dict(jump_t=...)``, ``adjoint_*``), which go to
:mod:`torchnde.compat.torchdiffeq` and from there to :func:`torchnde.solve`.

What runs: the coefficient functions build :class:`torchnde.LinearInterpolation`,
:class:`torchnde.NaturalCubicSpline`, :class:`torchnde.HermiteCubicSpline` or
:class:`torchnde.RectilinearInterpolation` and return their coefficients in torchcde's layout; the
interpolation classes query :class:`torchnde.LinearInterpolation` /
:class:`torchnde.PiecewiseCubic` (one search per query, whatever the batch); :func:`cdeint` solves
``dz/dt = func(t, z) · dX/dt(t)`` with ``odeint`` / ``odeint_adjoint`` of
:mod:`torchnde.compat.torchdiffeq`. Nothing is interpolated or solved here.

Deviations from torchcde, each deliberate:

* **Outside the data** the interpolation classes continue the first and last pieces, as torchcde
  does (the torchnde paths underneath are constant there: a native ``solve`` past the data sees
  a zero derivative). Inside ``X.interval`` the values agree to rounding.
* ``torchcde.misc`` is :mod:`torchnde.compat.torchcde.misc` (``cheap_stack``,
  ``tridiagonal_solve``, ``forward_fill``); ``import torchnde.compat.torchcde.misc`` does not
  work, ``from torchnde.compat.torchcde import misc`` does.
* **Adjoint gradients reach the data.** With ``adjoint=True`` and no ``adjoint_params``, torchcde
  differentiates only ``func``'s parameters (and warns when the coefficients require grad);
  here every tensor the vector field uses gets its gradient, coefficients included. Explicit
  ``adjoint_params`` that miss a used tensor raise instead of losing its gradient.
* **Missing data in natural cubic splines** follow torchcde's rules (the spline through each
  channel's observed values; ``natural_cubic_coeffs`` fills the ends with the nearest
  observation, ``natural_cubic_spline_coeffs`` only the first and last entry), solved in
  one vectorised pass rather than channel by channel; a channel with no observation at all gives
  the zero path, as in torchcde.
* **Rectilinear** data must have non-decreasing times in the time channel (torchcde does not
  check); NaN in the time channel raises a ``ValueError`` that is also an ``AssertionError``
  (torchcde asserts).
* **backend="torchsde"** runs, as in torchcde, the same equation as an SDE with zero diffusion
  through :mod:`torchnde.compat.torchsde` (``sdeint`` / ``sdeint_adjoint`` with torchsde's
  ``method``, ``dt``, ``adjoint_method`` …): e.g. ``method="reversible_heun"`` with
  ``adjoint_method="adjoint_reversible_heun"``.
* **logsignature_windows / logsig_windows** need the ``signatory`` package and are not provided.
* The solver's own deviations from torchdiffeq are listed in :mod:`torchnde.compat.torchdiffeq`
  (adaptive step sizes agree with torchdiffeq's to within the tolerances, not bit for bit;
  fixed-grid methods agree to rounding).

For new code, the native API does the same with fewer moving parts::

    path = torchnde.HermiteCubicSpline(ts, xs)        # xs: (length, batch, channels)
    term = torchnde.ControlTerm(func, path).to_ode()
    sol = torchnde.solve(term, torchnde.Dopri5(), ts[0], ts[-1], z0, ...)
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Callable
from typing import Any

import torch

from ..paths import HermiteCubicSpline as _Hermite
from ..paths import LinearInterpolation as _Linear
from ..paths import NaturalCubicSpline as _Natural
from ..paths import PiecewiseCubic as _PiecewiseCubic
from ..paths import RectilinearInterpolation as _Rectilinear
from ..paths._pieces import reusable
from . import _torchcde_misc as misc  # noqa: F401 (torchcde.misc, kept out of __all__)
from . import torchdiffeq as _torchdiffeq

__all__ = [
    "CubicSpline",
    "InterpolationBase",
    "LinearInterpolation",
    "NaturalCubicSpline",
    "TupleControl",
    "cdeint",
    "hermite_cubic_coefficients_with_backward_differences",
    "linear_interpolation_coeffs",
    "logsig_windows",
    "logsignature_windows",
    "natural_cubic_coeffs",
    "natural_cubic_spline_coeffs",
]


# ------------------------------------------------------------------------------------------------
# data in torchcde's layout


def _times(x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
    """torchcde's checks of ``x: (..., length, channels)`` and ``t``; ``t`` defaults to
    ``0, 1, …, length - 1``. Monotonicity is checked by the torchnde path."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError("X must both be floating point.")
    if x.ndim < 2:
        raise ValueError(
            "X must have at least two dimensions, corresponding to time and channels. It instead "
            f"has shape {tuple(x.shape)}."
        )
    if t is None:
        return torch.linspace(0, x.size(-2) - 1, x.size(-2), dtype=x.dtype, device=x.device)
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise ValueError("t must both be floating point.")
    if t.ndim != 1:
        raise ValueError(f"t must be one dimensional. It instead has shape {tuple(t.shape)}.")
    if x.size(-2) != t.size(0):
        raise ValueError(
            f"The time dimension of X must equal the length of t. X has shape {tuple(x.shape)} "
            f"and t has shape {tuple(t.shape)}, corresponding to time dimensions of {x.size(-2)} "
            f"and {t.size(0)} respectively."
        )
    return t


def _observed(x: torch.Tensor) -> torch.Tensor:
    """A channel with no observation at all is the zero path in torchcde; here too, with a
    warning naming the channels (torchnde's own paths refuse such data)."""
    empty = torch.isnan(x).all(dim=-2, keepdim=True)
    if not bool(empty.any()):
        return x
    per_channel = empty.reshape(-1, x.shape[-1])
    channels = torch.nonzero(per_channel.any(dim=0)).reshape(-1).tolist()
    series = int(per_channel.any(dim=1).sum())
    warnings.warn(
        f"channel(s) {channels} of `x` hold no observation at all in {series} series; they are "
        "filled with zeros, as torchcde does (torchnde's own paths raise on such data instead): "
        "check the data, or drop or impute those channels",
        UserWarning,
        stacklevel=3,
    )
    return torch.where(empty, torch.zeros_like(x), x)


def _cubic_layout(coeffs: torch.Tensor) -> torch.Tensor:
    """torchnde's ``(pieces, 4, ..., channels)`` as torchcde's ``(..., pieces, 4 * channels)``
    holding ``a, b, 2c, 3d``."""
    a, b, c, d = coeffs.unbind(1)
    return torch.cat([a, b, 2 * c, 3 * d], dim=-1).movedim(0, -2)


def _from_cubic_layout(coeffs: torch.Tensor) -> torch.Tensor:
    channels = coeffs.size(-1) // 4
    a, b, two_c, three_d = coeffs.split(channels, dim=-1)
    return torch.stack([a, b, two_c / 2, three_d / 3]).movedim(-2, 0)


def linear_interpolation_coeffs(
    x: torch.Tensor, t: torch.Tensor | None = None, rectilinear: int | None = None
) -> torch.Tensor:
    """The knots of the linear interpolation of ``x: (..., length, channels)``, missing values
    (NaN) filled linearly in time (the nearest observation at the ends); pass the result to
    :class:`LinearInterpolation`. With ``rectilinear=i`` (``x[..., i]`` holding the times), the
    ``2 * length - 1`` knots of the rectilinear path (:class:`torchnde.RectilinearInterpolation`:
    time moves, then the other channels), to be used with the default ``t``."""
    if rectilinear is not None:
        return _rectilinear(x, t, rectilinear)
    t = _times(x, t)
    if not bool(torch.isnan(x).any()):
        _Linear(t, x[(0,) * (x.ndim - 2)])  # checks t
        return x
    path = _Linear(t, _observed(x).movedim(-2, 0))
    return path.xs.movedim(0, -2)


class _NanTimeError(ValueError, AssertionError):
    """NaN in the time channel: a ``ValueError`` (torchnde's convention for bad input) that is
    also the ``AssertionError`` torchcde raises, so code catching either keeps working."""


def _rectilinear(x: torch.Tensor, t: torch.Tensor | None, index: Any) -> torch.Tensor:
    channels = x.size(-1) if isinstance(x, torch.Tensor) and x.ndim else 0
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < channels:
        raise ValueError(
            f"`rectilinear` must be the index of the time channel, an int in [0, {channels - 1}], "
            f"got {index!r}"
        )
    _times(x, None)
    if t is not None:  # the rectilinear knots are used with the default times
        _times(x.new_empty(*x.shape[:-2], 2 * x.size(-2) - 1, channels), t)
    if bool(torch.isnan(x[..., index]).any()):
        raise _NanTimeError(
            "There exist nan values in the time column which is not allowed. If the times are "
            "padded with nans after final time, a simple solution is to forward fill the final "
            "time."
        )
    if bool(torch.isnan(x[..., 0, :]).any()):
        warnings.warn(
            "The data `x` begins with missing values in some channels. The path will be "
            "constructed by backward-filling the first observed value, which is not causal. If "
            "you need causality then fill in the missing value at the start of each channel.",
            stacklevel=3,
        )
    batch, length = x.shape[:-2], x.size(-2)
    flat = _observed(x).reshape(-1, length, channels)
    times = flat[..., index]
    others = torch.cat([flat[..., :index], flat[..., index + 1 :]], dim=-1)
    path = _Rectilinear(times, others, batch_axis=0)
    values = path.values  # (batch, 2 * length - 1, channels) with time first
    order = [*range(1, index + 1), 0, *range(index + 1, channels)]
    return values[..., order].reshape(*batch, 2 * length - 1, channels)


def natural_cubic_coeffs(x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
    """Coefficients ``(..., length - 1, 4 * channels)`` of the natural cubic spline through
    ``x: (..., length, channels)`` (:class:`torchnde.NaturalCubicSpline`): through each channel's
    observed values, NaNs before the first / after the last observation filled with it. Pass the
    result to :class:`CubicSpline`."""
    t = _times(x, t)
    if x.size(-2) == 2:
        return _line(x, t)
    return _cubic_layout(_Natural(t, _observed(x).movedim(-2, 0)).coeffs)


def _line(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The natural cubic spline through two points is the line through them: one piece
    ``(a, b, 2c, 3d) = (x0, slope, 0, 0)`` (a missing value takes the other one, as in
    :func:`linear_interpolation_coeffs`)."""
    knots = linear_interpolation_coeffs(x, t)
    a = knots[..., :1, :]
    b = (knots[..., 1:, :] - a) / (t[1] - t[0]).to(x.dtype)
    return torch.cat([a, b, torch.zeros_like(a), torch.zeros_like(a)], dim=-1)


def natural_cubic_spline_coeffs(x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
    """torchcde's deprecated variant of :func:`natural_cubic_coeffs`: a missing first (last)
    value takes the first (last) observation; other missing values at the ends are skipped."""
    t = _times(x, t)
    if x.size(-2) == 2:
        return _line(x, t)
    x = _observed(x)
    obs = ~torch.isnan(x)
    if not bool(obs.all()):
        length = x.size(-2)
        pos = torch.arange(length, device=x.device)[:, None]
        first = torch.where(obs, pos, length).amin(dim=-2, keepdim=True).clamp(max=length - 1)
        last = torch.where(obs, pos, -1).amax(dim=-2, keepdim=True).clamp(min=0)
        x = x.clone()
        x[..., :1, :] = torch.where(obs[..., :1, :], x[..., :1, :], x.gather(-2, first))
        x[..., -1:, :] = torch.where(obs[..., -1:, :], x[..., -1:, :], x.gather(-2, last))
    return _cubic_layout(_Natural(t, x.movedim(-2, 0)).coeffs)


def hermite_cubic_coefficients_with_backward_differences(
    x: torch.Tensor, t: torch.Tensor | None = None
) -> torch.Tensor:
    """Coefficients ``(..., length - 1, 4 * channels)`` of the cubic Hermite spline with backward
    differences through ``x`` (:class:`torchnde.HermiteCubicSpline`; causal), missing values
    filled as in :func:`linear_interpolation_coeffs`. Pass the result to :class:`CubicSpline`."""
    t = _times(x, t)
    return _cubic_layout(_Hermite(t, _observed(x).movedim(-2, 0)).coeffs)


# ------------------------------------------------------------------------------------------------
# interpolation classes


def _time_first(out: torch.Tensor, n: int) -> torch.Tensor:
    """torchnde's ``(*T, ..., channels)`` as torchcde's ``(..., *T, channels)``."""
    if n == 0:
        return out
    return out.movedim(list(range(n)), list(range(out.ndim - 1 - n, out.ndim - 1)))


class InterpolationBase(torch.nn.Module, metaclass=abc.ABCMeta):
    """torchcde's interface of a control: ``grid_points``, ``interval``, ``evaluate(t)`` and
    ``derivative(t)``; subclass it for a control of your own."""

    @property
    @abc.abstractmethod
    def grid_points(self) -> torch.Tensor:
        """The knot times."""

    @property
    @abc.abstractmethod
    def interval(self) -> torch.Tensor:
        """``[t[0], t[-1]]``."""

    @abc.abstractmethod
    def evaluate(self, t: Any) -> Any:
        """``X(t)``."""

    @abc.abstractmethod
    def derivative(self, t: Any) -> Any:
        """``dX/dt``."""


class _OnPath(InterpolationBase):
    """A torchcde control answered by a torchnde path (``self.path``) over knot times ``_t``."""

    path: Any

    @property
    def grid_points(self) -> torch.Tensor:
        return self._t

    @property
    def interval(self) -> torch.Tensor:
        return torch.stack([self._t[0], self._t[-1]])

    def _query(self, t: Any) -> torch.Tensor:
        return torch.as_tensor(t, dtype=self._dtype, device=self._t.device)

    def evaluate(self, t: Any) -> torch.Tensor:
        """``X(t)``: ``(..., channels)`` for a 0-dim ``t``, ``(..., *t.shape, channels)`` else."""
        t = self._query(t)
        return self._extend(t, _time_first(self.path.evaluate(t), t.ndim), derivative=False)

    def derivative(self, t: Any) -> torch.Tensor:
        """``dX/dt``, left-continuous at the knots as in torchcde."""
        t = self._query(t)
        out = _time_first(self.path.derivative(t, left=True), t.ndim)
        return self._extend(t, out, derivative=True)

    def _piece(self, end: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The first (``end=0``) or last (``end=-1``) piece as ``(start, (a, b, c, d))``,
        ``X = a + b x + c x² + d x³`` with ``x = t - start``, coefficients ``(..., channels)``."""
        raise NotImplementedError

    def _extend(self, t: torch.Tensor, out: torch.Tensor, derivative: bool) -> torch.Tensor:
        """Outside the knots, continue the first / last piece, as torchcde does (the torchnde
        paths are constant there)."""
        below, above = t < self._t[0], t > self._t[-1]
        if not bool((below | above).any()):
            return out
        for mask, end in ((below, 0), (above, -1)):
            if not bool(mask.any()):
                continue
            start, coeffs = self._piece(end)
            a, b, c, d = (v.reshape(*v.shape[:-1], *([1] * t.ndim), v.shape[-1]) for v in coeffs)
            x = (t - start).to(out.dtype).reshape(*t.shape, 1)
            value = b + x * (2 * c + 3 * d * x) if derivative else a + x * (b + x * (c + x * d))
            out = torch.where(mask.reshape(*t.shape, 1), value, out)
        return out


class LinearInterpolation(_OnPath):
    """The linear interpolation of knots ``coeffs: (..., length, channels)`` (from
    :func:`linear_interpolation_coeffs`) at times ``t`` (default ``0, 1, …``); runs on
    :class:`torchnde.LinearInterpolation`."""

    def __init__(self, coeffs: torch.Tensor, t: torch.Tensor | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if t is None:
            t = torch.linspace(
                0, coeffs.size(-2) - 1, coeffs.size(-2), dtype=coeffs.dtype, device=coeffs.device
            )
        self.register_buffer("_t", t)
        self.register_buffer("_coeffs", coeffs)
        self._dtype = coeffs.dtype
        self.path = _Linear(t, coeffs.movedim(-2, 0))

    def _piece(self, end: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        i, j = (0, 1) if end == 0 else (-2, -1)
        knots, t = self._coeffs, self._t
        slope = (knots[..., j, :] - knots[..., i, :]) / (t[j] - t[i]).to(knots.dtype)
        zero = torch.zeros_like(slope)
        return t[end], (knots[..., end, :], slope, zero, zero)


class CubicSpline(_OnPath):
    """The piecewise cubic with coefficients ``coeffs: (..., length - 1, 4 * channels)`` (from
    :func:`natural_cubic_coeffs` or :func:`hermite_cubic_coefficients_with_backward_differences`)
    at times ``t`` (default ``0, 1, …``); runs on :class:`torchnde.PiecewiseCubic`."""

    def __init__(self, coeffs: torch.Tensor, t: torch.Tensor | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if t is None:
            t = torch.linspace(
                0, coeffs.size(-2), coeffs.size(-2) + 1, dtype=coeffs.dtype, device=coeffs.device
            )
        if coeffs.size(-1) % 4 != 0:
            raise ValueError("Passed invalid coeffs.")
        self.register_buffer("_t", t)
        self.register_buffer("_coeffs", coeffs)
        self._dtype = coeffs.dtype
        # the layout change as one re-traversable node: adjoints walk back through it many times
        (pieces,) = reusable(lambda c: (_from_cubic_layout(c),), coeffs)
        self.path = _PiecewiseCubic(t, pieces)

    def _piece(self, end: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        channels = self._coeffs.size(-1) // 4
        a, b, two_c, three_d = self._coeffs[..., end, :].split(channels, dim=-1)
        return self._t[0 if end == 0 else -2], (a, b, two_c / 2, three_d / 3)


#: torchcde's deprecated name for :class:`CubicSpline`
NaturalCubicSpline = CubicSpline


class TupleControl(torch.nn.Module):
    """Several controls over the same interval, evaluated together as a tuple (for tuple
    states)."""

    def __init__(self, *controls: Any):
        super().__init__()
        if len(controls) == 0:
            raise ValueError("Expected one or more controls to batch together.")
        self._interval = controls[0].interval
        grid = controls[0].grid_points
        same = True
        for control in controls[1:]:
            if bool((control.interval != self._interval).any()):
                raise ValueError("Can only batch together controls over the same interval.")
            other = control.grid_points
            same = same and other.shape == grid.shape and bool((other == grid).all())
        self._grid_points = grid if same else None
        self.controls = torch.nn.ModuleList(controls)

    @property
    def interval(self) -> torch.Tensor:
        return self._interval

    @property
    def grid_points(self) -> torch.Tensor:
        if self._grid_points is None:
            raise RuntimeError("Batch of controls have different grid points.")
        return self._grid_points

    def evaluate(self, t: Any) -> tuple[torch.Tensor, ...]:
        return tuple(control.evaluate(t) for control in self.controls)

    def derivative(self, t: Any) -> tuple[torch.Tensor, ...]:
        return tuple(control.derivative(t) for control in self.controls)


def logsignature_windows(*args: Any, **kwargs: Any) -> Any:
    """Not provided: it needs the ``signatory`` package."""
    raise NotImplementedError(
        "logsignature_windows (the log-ODE method) needs the `signatory` package, which torchnde "
        "does not use; compute the windows' log-signatures with signatory or iisignature and "
        "interpolate them with linear_interpolation_coeffs, or drive the CDE by the raw data"
    )


#: torchcde's short name for :func:`logsignature_windows` (not provided: it needs ``signatory``)
logsig_windows = logsignature_windows


# ------------------------------------------------------------------------------------------------
# cdeint


def _check_pair(dxdt: torch.Tensor, out: torch.Tensor, z0: torch.Tensor, prod: bool) -> None:
    """torchcde's shape checks of one tensor of the state."""
    if dxdt.shape[:-1] != z0.shape[:-1]:
        raise ValueError(
            f"X.derivative did not return a tensor with the same number of batch dimensions as "
            f"z0. X.derivative returned shape {tuple(dxdt.shape)} (meaning "
            f"{tuple(dxdt.shape[:-1])} batch dimensions), whilst z0 has shape {tuple(z0.shape)} "
            f"(meaning {tuple(z0.shape[:-1])} batch dimensions)."
        )
    if prod:
        if out.shape != z0.shape:
            raise ValueError(
                f"func.prod did not return a tensor with the same shape as z0. func.prod returned "
                f"shape {tuple(out.shape)} whilst z0 has shape {tuple(z0.shape)}."
            )
        return
    if out.shape[:-2] != z0.shape[:-1]:
        raise ValueError(
            f"func did not return a tensor with the same number of batch dimensions as z0. func "
            f"returned shape {tuple(out.shape)}, whilst z0 has shape {tuple(z0.shape)}; return "
            "(..., hidden_channels, input_channels)."
        )
    if out.size(-2) != z0.size(-1):
        raise ValueError(
            f"func did not return a tensor with the same number of hidden channels as z0. func "
            f"returned shape {tuple(out.shape)} (meaning {out.size(-2)} channels), whilst z0 has "
            f"shape {tuple(z0.shape)} (meaning {z0.size(-1)} channels)."
        )
    if out.size(-1) != dxdt.size(-1):
        raise ValueError(
            f"func did not return a tensor with the same number of input channels as "
            f"X.derivative returned. func returned shape {tuple(out.shape)} (meaning "
            f"{out.size(-1)} channels), whilst X.derivative returned shape {tuple(dxdt.shape)} "
            f"(meaning {dxdt.size(-1)} channels)."
        )


def _check(X: Any, func: Callable, z0: Any, t: torch.Tensor) -> tuple[bool, bool]:
    """``(is_tensor, is_prod)`` after torchcde's compatibility checks (one evaluation each)."""
    if not hasattr(X, "derivative"):
        raise ValueError("X must have a 'derivative' method.")
    if not isinstance(t, torch.Tensor) or t.ndim != 1 or t.numel() < 1:
        raise ValueError(f"`t` must be a 1-D tensor of times, got {t!r}")
    dxdt = X.derivative(t[0].detach())
    prod = hasattr(func, "prod")
    out = func.prod(t[0], z0, dxdt) if prod else func(t[0], z0)
    what = "func.prod" if prod else "func"
    if isinstance(z0, torch.Tensor):
        if not isinstance(dxdt, torch.Tensor):
            raise ValueError("z0 is a tensor and so X.derivative must return a tensor as well.")
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"z0 is a tensor and so {what} must return a tensor as well.")
        _check_pair(dxdt, out, z0, prod)
        return True, prod
    if not isinstance(z0, (tuple, list)):
        raise ValueError("z0 must either a tensor or a tuple/list of tensors.")
    if not isinstance(dxdt, (tuple, list)) or len(dxdt) != len(z0):
        raise ValueError(
            "z0 is a tuple/list and so X.derivative must return a tuple/list of the same length."
        )
    if not isinstance(out, (tuple, list)) or len(out) != len(z0):
        raise ValueError(f"z0 is a tuple/list and so {what} must return one of the same length.")
    for d, o, z in zip(dxdt, out, z0):
        if not all(isinstance(v, torch.Tensor) for v in (d, o, z)):
            raise ValueError(f"X.derivative, {what} and z0 must hold tensors.")
        _check_pair(d, o, z, prod)
    return False, prod


class _VectorField(torch.nn.Module):
    """``dz/dt = func(t, z) · dX/dt(t)`` (or ``func.prod(t, z, dX/dt)``), torchdiffeq's way; for
    ``backend="torchsde"`` also an SDE with drift ``f`` and zero diffusion ``g`` (one Brownian
    channel), of ``func``'s ``sde_type``/``noise_type`` (default Stratonovich, additive), as
    torchcde builds it."""

    def __init__(self, X: Any, func: Callable, is_tensor: bool, is_prod: bool):
        super().__init__()
        self.X = X
        self.func = func
        self.is_tensor = is_tensor
        self.is_prod = is_prod
        self.sde_type = getattr(func, "sde_type", "stratonovich")
        self.noise_type = getattr(func, "noise_type", "additive")

    def f(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self(t, z)

    def g(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(z).unsqueeze(-1)

    def forward(self, t: torch.Tensor, z: Any) -> Any:
        dxdt = self.X.derivative(t)
        if self.is_prod:
            return self.func.prod(t, z, dxdt)
        field = self.func(t, z)
        if self.is_tensor:
            return (field @ dxdt.unsqueeze(-1)).squeeze(-1)
        return tuple((f @ d.unsqueeze(-1)).squeeze(-1) for f, d in zip(field, dxdt))


def cdeint(
    X: Any,
    func: Callable,
    z0: torch.Tensor | tuple[torch.Tensor, ...],
    t: torch.Tensor,
    adjoint: bool = True,
    backend: str = "torchdiffeq",
    **kwargs: Any,
) -> Any:
    """Solve the CDE ``z(t) = z(t[0]) + ∫ func(s, z(s)) dX(s)`` and return ``z`` at every time in
    ``t`` (torchcde's ``cdeint``).

    Args:
        X: the control: anything with ``derivative(t)`` returning ``(..., input_channels)``
            (:class:`CubicSpline`, :class:`LinearInterpolation`, a torchnde path, …).
        func: ``func(t, z) -> (..., hidden, input_channels)``, or an object with
            ``func.prod(t, z, dXdt) -> (..., hidden)``. An ``nn.Module`` usually.
        z0: the initial state ``(..., hidden)`` (or a tuple of such, with tuple controls).
        t: 1-D times; the solve runs from ``t[0]`` to ``t[-1]``.
        adjoint: gradients by the continuous adjoint (:class:`torchnde.BacksolveAdjoint`, via
            ``odeint_adjoint``) rather than backpropagation through the solver.
        backend: ``"torchdiffeq"``, or ``"torchsde"`` (torchsde's solvers on the same equation
            with zero noise; ``kwargs`` are then torchsde's).
        **kwargs: torchdiffeq's ``rtol`` (default ``1e-4``), ``atol`` (``1e-6``), ``method``,
            ``options`` and, with ``adjoint``, ``adjoint_rtol``, ``adjoint_atol`` (default
            ``rtol``, ``atol``), ``adjoint_method``, ``adjoint_options``, ``adjoint_params``.

    Returns:
        ``(..., len(t), hidden)`` (a tuple of such for a tuple state).
    """
    if backend not in ("torchdiffeq", "torchsde"):
        raise ValueError(
            f"Unrecognised backend={backend!r}; use backend='torchdiffeq' or backend='torchsde'"
        )
    kwargs.setdefault("atol", 1e-6)
    kwargs.setdefault("rtol", 1e-4)
    if adjoint:
        kwargs.setdefault("adjoint_atol", kwargs["atol"])
        kwargs.setdefault("adjoint_rtol", kwargs["rtol"])
    is_tensor, is_prod = _check(X, func, z0, t)
    field = _VectorField(X, func, is_tensor, is_prod)
    if backend == "torchsde":  # the same equation through the torchsde facade's solvers
        from . import torchsde as _torchsde

        sdeint = _torchsde.sdeint_adjoint if adjoint else _torchsde.sdeint
        out = sdeint(field, z0, t, **kwargs)
    else:
        odeint = _torchdiffeq.odeint_adjoint if adjoint else _torchdiffeq.odeint
        out = odeint(field, z0, t, **kwargs)
    if is_tensor:
        return _time_axis(out)
    return tuple(_time_axis(o) for o in out)


def _time_axis(out: torch.Tensor) -> torch.Tensor:
    """``(len(t), ..., hidden)`` as ``(..., len(t), hidden)``."""
    return out.movedim(0, -2) if out.ndim > 1 else out
