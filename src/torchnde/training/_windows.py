"""Fitting a vector field to a measured trajectory on windows, with multiple shooting.

A long trajectory is hard to fit in one solve: the loss landscape of a long solve is rugged and
one bad stretch spoils the rest. Cutting the observations into short windows of consecutive
observations, each solved from its own initial state, makes every window an easy problem; with
*multiple shooting* (Bock & Plitt, "A multiple shooting algorithm for direct solution of optimal
control problems", IFAC 1984; for neural ODEs e.g. Turan & Jäschke, "Multiple shooting for
training neural differential equations on time series", IEEE Control Systems Letters 2022) each
window's initial state is a learnable parameter, starting from its observation, so the noise of
one observation does not bias the fit.

:class:`TrajectoryWindows` holds the windows (data, mask, times) and how they are solved (any
torchnde solver, controller and adjoint); :class:`MultipleShooting` is the ``nn.Module`` a
:class:`~torchnde.training.Trainer` optimises: the field plus the windows' initial states. Both
work with any vector field ``f(t, y, args)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._saveat import SaveAt
from .._solve import solve
from ..controllers import AbstractController, ConstantStepSize, PIDController
from ..solvers import AbstractSolver, Tsit5
from ..terms import ODETerm

__all__ = ["MultipleShooting", "TrajectoryWindows"]

#: the loss a window whose solve failed counts as (with no gradient: a line search backs off)
FAILED_LOSS = 1e6


class TrajectoryWindows:
    """Consecutive runs of ``width`` observations of one trajectory, each solved from its first
    observation (or from a learnt initial state, see :class:`MultipleShooting`).

    Window ``i`` covers the observations ``starts[i] .. starts[i] + width - 1``; a window starts
    every ``stride`` observations where the observation is complete (no NaN), so a missing value
    never becomes an initial state. Missing values inside a window are skipped by the loss.

    When the time grid is regular and the field is ``autonomous`` (it does not depend on ``t``),
    every window shares the same relative times and all windows are solved as one problem (the
    fast, unbatched path of :func:`torchnde.solve`); otherwise each window is its own problem
    (``batch_axis=0``) with its own times.

    Args:
        ts: observation times ``(T,)``, strictly increasing.
        ys: observations ``(T, states)``; NaN marks a missing value.
        width: observations per window, ``>= 2`` (capped at ``T``).
        stride: observations between the starts of consecutive windows (1: every observation).
        solver: a torchnde solver (default ``Tsit5()``).
        controller: default: ``ConstantStepSize()`` for a solver without an error estimate, else
            ``PIDController(rtol=1e-6, atol=1e-8)``.
        dt0: the step of a constant-step controller (default: the median observation spacing),
            or the first step of an adaptive one (default: chosen by the controller).
        adjoint: how gradients flow through the solves (default: ``solve``'s).
        autonomous: the field does not depend on time (allows the shared solve above).
        max_steps: the most steps a window's solve may take.

    Attributes:
        starts: ``(W,)`` index of each window's first observation.
        times: ``(W, width)`` each window's observation times.
        target: ``(W, width, states)`` the observations (missing ones set to 0).
        mask: ``(W, width, states)`` True where an observation exists.
        y0: ``(W, states)`` each window's first observation.
        scale: ``(states,)`` each state's largest absolute observed value (the loss divides by it).

    Example:
        >>> windows = TrajectoryWindows(ts, ys, width=10, solver=RK4(), dt0=0.05)
        >>> model = MultipleShooting(field, windows)
        >>> Trainer(model, lambda m, idx: m.loss(idx), [Stage("adam", 300, lr=1e-2)],
        ...         sampler=WindowSampler(windows.count)).fit()
    """

    def __init__(
        self,
        ts: torch.Tensor,
        ys: torch.Tensor,
        width: int,
        *,
        stride: int = 1,
        solver: AbstractSolver | None = None,
        controller: AbstractController | None = None,
        dt0: float | None = None,
        adjoint: Any = None,
        autonomous: bool = False,
        max_steps: int = 10_000,
    ):
        ts, ys = _check_data(ts, ys)
        count = ts.shape[0]
        for value, name in ((width, "width"), (stride, "stride")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a whole number >= 1, got {value!r}")
        if width < 2:
            raise ValueError(f"`width` must be at least 2 observations per window, got {width}")
        width = min(width, count)
        complete = torch.isfinite(ys).flatten(1).all(dim=1)
        starts = [i for i in range(0, count - width + 1, stride) if bool(complete[i])]
        if not starts:
            raise ValueError(
                "no window starts at a fully observed time; fill in missing values at some "
                "times, or shorten `width`"
            )
        self.ts, self.ys = ts, ys
        self.width = width
        self.stride = stride
        self.starts = torch.tensor(starts, device=ts.device)
        index = self.starts[:, None] + torch.arange(width, device=ts.device)
        self.times = ts[index]
        target = ys[index]
        self.mask = torch.isfinite(target)
        self.target = torch.nan_to_num(target)
        self.y0 = ys[self.starts]
        self.scale = torch.nan_to_num(ys.abs(), nan=0.0).amax(dim=0).clamp(min=1e-12)
        spacing = ts.diff()
        span = float(ts[-1] - ts[0])
        self.regular = bool((spacing - spacing.mean()).abs().max() <= 1e-9 * span)
        self.autonomous = bool(autonomous)
        self.solver = solver if solver is not None else Tsit5()
        if not isinstance(self.solver, AbstractSolver):
            raise TypeError(
                f"`solver` must be a torchnde solver such as RK4() or Tsit5(), got "
                f"{type(self.solver).__name__}"
            )
        adaptive = self.solver.error_order is not None
        if controller is None:
            controller = PIDController(rtol=1e-6, atol=1e-8) if adaptive else ConstantStepSize()
        self.controller = controller
        if dt0 is None and isinstance(controller, ConstantStepSize):
            dt0 = float(spacing.median())
        self.dt0 = None if dt0 is None else float(dt0)
        self.adjoint = adjoint
        self.max_steps = int(max_steps)

    @property
    def count(self) -> int:
        """The number of windows."""
        return int(self.starts.shape[0])

    @property
    def shared(self) -> bool:
        """Whether all windows are solved as one problem on shared relative times."""
        return self.regular and self.autonomous

    def covering(self) -> torch.Tensor:
        """Indices of windows that together cover every observation time with as little overlap
        as the starts allow: from the first window, the next one starting at or before the end of
        the last one taken, and always the last window."""
        chosen = [0]
        starts = self.starts.tolist()
        last = starts[-1]
        while starts[chosen[-1]] < last:
            end = starts[chosen[-1]] + self.width - 1
            reach = [i for i, s in enumerate(starts) if chosen[-1] < i and s <= end]
            chosen.append(reach[-1] if reach else chosen[-1] + 1)
        return torch.tensor(chosen, device=self.starts.device)

    def solve(
        self,
        field: nn.Module | Any,
        y0: torch.Tensor | None = None,
        idx: torch.Tensor | Sequence[int] | None = None,
        *,
        points: int | None = None,
        args: Any = None,
    ) -> torch.Tensor:
        """Each window's solution, ``(len(idx), width or points, states)``.

        Args:
            field: the vector field ``field(t, y, args)``.
            y0: the windows' initial states ``(len(idx), states)`` (default: their first
                observations).
            idx: which windows (default: all).
            points: None: at each window's observation times; a number: at that many equally
                spaced times from each window's first to its last observation.
            args: passed to the field.

        Returns:
            The solutions; a window whose solve failed is NaN from where it failed.
        """
        idx = self._indices(idx)
        if y0 is None:
            y0 = self.y0[idx]
        elif y0.shape != (len(idx), *self.y0.shape[1:]):
            raise ValueError(
                f"`y0` has shape {tuple(y0.shape)} but {len(idx)} windows are solved; give one "
                f"initial state per window in `idx`, shape {(len(idx), *self.y0.shape[1:])}"
            )
        times = self.times_at(idx, points)
        options: dict[str, Any] = dict(
            dt0=self.dt0,
            controller=self.controller,
            throw=False,
            args=args,
            max_steps=self.max_steps,
        )
        if self.adjoint is not None:
            options["adjoint"] = self.adjoint
        if self.shared:
            rel = times[0] - times[0, 0]
            sol = solve(
                ODETerm(field),
                self.solver,
                0.0,
                float(rel[-1]),
                y0,
                saveat=SaveAt(ts=rel),
                **options,
            )
            return sol.ys.transpose(0, 1)
        sol = solve(
            ODETerm(field),
            self.solver,
            times[:, 0],
            times[:, -1],
            y0,
            saveat=SaveAt(ts=times),
            batch_axis=0,
            **options,
        )
        return sol.ys

    def times_at(
        self, idx: torch.Tensor | Sequence[int] | None = None, points: int | None = None
    ) -> torch.Tensor:
        """The times :meth:`solve` returns the windows ``idx`` at, ``(len(idx), width or
        points)``: the observation times, or ``points`` equally spaced times from each window's
        first to its last observation."""
        times = self.times[self._indices(idx)]
        if points is None:
            return times
        if isinstance(points, bool) or not isinstance(points, int) or points < 2:
            raise ValueError(f"`points` must be a whole number >= 2, got {points!r}")
        fractions = torch.linspace(0.0, 1.0, points, dtype=times.dtype, device=times.device)
        return times[:, :1] + (times[:, -1:] - times[:, :1]) * fractions

    def loss(self, prediction: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """The mean squared error of ``prediction`` (from :meth:`solve`) against the windows'
        observations, each state divided by its :attr:`scale`, over the observed values only."""
        idx = self._indices(idx)
        target, mask = self.target[idx], self.mask[idx]
        if prediction.shape != target.shape:
            raise ValueError(
                f"`prediction` has shape {tuple(prediction.shape)} but the windows' observations "
                f"have shape {tuple(target.shape)}; solve at the observation times (points=None)"
            )
        err = ((prediction - target) / self.scale) ** 2
        return (err * mask).sum() / mask.sum().clamp(min=1)

    def _indices(self, idx: Any) -> torch.Tensor:
        if idx is None:
            return torch.arange(self.count, device=self.starts.device)
        idx = torch.as_tensor(idx, device=self.starts.device)
        if idx.ndim != 1 or idx.dtype in (torch.bool, torch.float32, torch.float64):
            raise ValueError(f"`idx` must be a 1-dim tensor of window indices, got {idx!r}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.count):
            raise ValueError(f"`idx` holds indices outside 0..{self.count - 1}: {idx.tolist()}")
        return idx

    def __repr__(self) -> str:
        return (
            f"TrajectoryWindows({self.count} windows of {self.width} observations, stride "
            f"{self.stride}, solver {type(self.solver).__name__}, "
            f"{'shared times' if self.shared else 'per-window times'})"
        )


class MultipleShooting(nn.Module):
    """What a trainer optimises to fit ``field`` on :class:`TrajectoryWindows`: the field and,
    with ``learn_starts``, every window's initial state as a parameter (multiple shooting),
    starting from the windows' first observations.

    ``model.loss(idx)`` is the windows' scaled mean squared error (:meth:`TrajectoryWindows.loss`);
    a batch whose solve failed (non-finite values) counts as a large loss with zero gradient,
    so an L-BFGS line search backs off and Adam stands still instead of stepping on NaN.

    Args:
        field: the vector field, an ``nn.Module`` called as ``field(t, y, args)``.
        windows: the windows and how they are solved.
        learn_starts: learn each window's initial state (False: keep them fixed).
        starts: the initial states to start from, ``(W, states)`` (default: the windows' first
            observations), e.g. those another model's multiple-shooting fit learnt.

    Attributes:
        field: the field.
        starts: ``(W, states)`` the windows' initial states (a parameter with ``learn_starts``,
            else a buffer).
    """

    def __init__(
        self,
        field: nn.Module,
        windows: TrajectoryWindows,
        *,
        learn_starts: bool = True,
        starts: torch.Tensor | None = None,
    ):
        super().__init__()
        if not isinstance(windows, TrajectoryWindows):
            raise TypeError(
                f"`windows` must be TrajectoryWindows, got {type(windows).__name__}; build them "
                "with TrajectoryWindows(ts, ys, width, solver=...)"
            )
        if starts is not None and starts.shape != windows.y0.shape:
            raise ValueError(
                f"`starts` has shape {tuple(starts.shape)} but the windows' initial states have "
                f"shape {tuple(windows.y0.shape)}"
            )
        self.field = field
        self.windows = windows
        self.learn_starts = bool(learn_starts)
        starts = (windows.y0 if starts is None else starts).detach().clone()
        if self.learn_starts:
            self.starts = nn.Parameter(starts)
        else:
            self.register_buffer("starts", starts)

    def forward(self, idx: torch.Tensor | None = None, *, points: int | None = None):
        """The windows' solutions from :attr:`starts` (see :meth:`TrajectoryWindows.solve`)."""
        idx = self.windows._indices(idx)
        return self.windows.solve(self.field, self.starts[idx], idx, points=points)

    def loss(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """The windows' loss on ``idx`` (default: all)."""
        idx = self.windows._indices(idx)
        prediction = self(idx)
        if not bool(torch.isfinite(prediction).all()):
            anchor = sum(p.sum() for p in self.parameters() if p.requires_grad)
            return anchor * 0 + FAILED_LOSS
        return self.windows.loss(prediction, idx)


def _check_data(ts: Any, ys: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(ts, torch.Tensor) or not isinstance(ys, torch.Tensor):
        raise TypeError(
            f"`ts` and `ys` must be tensors, got {type(ts).__name__} and {type(ys).__name__}"
        )
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"`ts` must have shape (T,) with T >= 2, got {tuple(ts.shape)}")
    if ys.ndim != 2 or ys.shape[0] != ts.shape[0]:
        raise ValueError(
            f"`ys` must have shape (T, states) = ({ts.shape[0]}, states), got {tuple(ys.shape)}"
        )
    if not bool(torch.isfinite(ts).all()):
        raise ValueError("`ts` holds NaN or infinite times; every observation needs a time")
    steps = ts.diff()
    if not bool((steps > 0).all()):
        i = int(torch.nonzero(steps <= 0)[0])
        raise ValueError(
            f"`ts` must be strictly increasing, but ts[{i + 1}]={float(ts[i + 1])} <= "
            f"ts[{i}]={float(ts[i])}; sort the observations by time"
        )
    if not math.isfinite(float(ts[-1] - ts[0])):
        raise ValueError("`ts` spans an infinite interval")
    return ts, ys
