"""Step-size controllers: how big the next step is, and whether a step is accepted.

All times here are the loop's internal times ``τ`` (``(batch,)`` tensors that increase); every
decision is a tensor operation, per sample, with no Python branch on tensor values.
"""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ._errors import describe, friendly_keywords
from ._ops import ops_for
from ._problem import Problem
from .solvers._base import AbstractSolver, StepResult

__all__ = ["AbstractController", "ConstantStepSize", "PIDController", "StepTo"]


class AbstractController(abc.ABC):
    """Base class of step-size controllers.

    Per-sample values (times, flags, the controller state) arrive as ``(batch,)`` tensors, or, in
    the loop's host mode (no batch axis), as Python numbers; a controller that writes its
    arithmetic with :func:`torchnde._ops.ops_for` handles both and sets ``supports_host``.
    """

    #: whether the controller needs an error estimate from the solver
    adaptive: bool = False
    #: whether :meth:`init` and :meth:`adapt` accept Python numbers (host mode)
    supports_host: bool = False
    #: whether :meth:`adapt` makes no Python decision on tensor values (a compiled solve can
    #: capture it)
    supports_compile: bool = False

    @abc.abstractmethod
    def init(
        self,
        problem: Problem,
        solver: AbstractSolver,
        t0: torch.Tensor,
        t1: torch.Tensor,
        y0: torch.Tensor,
        dt0: torch.Tensor | None,
        solver_state: Any,
    ) -> tuple[torch.Tensor, Any, int]:
        """Return the end time proposed for the first step ``(batch,)``, the controller state
        and the vector-field evaluations spent choosing it."""

    @abc.abstractmethod
    def adapt(
        self,
        solver: AbstractSolver,
        t0: torch.Tensor,
        t1: torch.Tensor,
        y0: torch.Tensor,
        result: StepResult,
        state: Any,
        clipped: torch.Tensor,
        finite: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, Any, torch.Tensor]:
        """Judge the step ``[t0, t1]`` (``clipped``: shortened to land on an end or stop time;
        ``finite``: whether the candidate ``y1`` is finite).

        Returns ``(accept, next_end, state, too_small)``: per-sample acceptance, the proposed
        end time of the next step, the new state, and where the step size fell below ``dtmin``.
        ``accept`` and ``too_small`` may be plain ``True``/``False`` when they hold for every
        sample.
        """

    def check(self, solver: AbstractSolver) -> None:
        """Raise ``ValueError`` if ``solver`` cannot be used with this controller."""

    def stops(self, problem: Problem, dtype: torch.dtype, device: torch.device) -> Any:
        """Times the steps must land on, as ``(stops, jumps)`` internal-time tensors or ``None``."""
        return None


@friendly_keywords()
@dataclass(frozen=True)
class ConstantStepSize(AbstractController):
    """Steps of a fixed size ``dt0`` (given to :func:`~torchnde.solve`); the last step is shortened
    to end exactly at ``t1``. Step ``n`` ends at ``t0 + n·dt0`` (no accumulated rounding)."""

    adaptive = False
    supports_host = True
    supports_compile = True

    def init(self, problem, solver, t0, t1, y0, dt0, solver_state):
        if dt0 is None:
            raise ValueError(
                "`dt0` is None, but `ConstantStepSize()` needs a step size: pass `dt0=...`, or "
                "use an adaptive controller, `controller=PIDController(rtol=1e-6, atol=1e-8)`"
            )
        return t0 + dt0, (t0, dt0, 1 if ops_for(t0).host else torch.ones_like(t0)), 0

    def adapt(self, solver, t0, t1, y0, result, state, clipped, finite):
        start, dt0, count = state
        count = count + 1
        return True, start + count * dt0, (start, dt0, count), False


@friendly_keywords()
@dataclass(frozen=True, eq=False)
class StepTo(AbstractController):
    """Steps exactly from each time in ``ts`` to the next (a fixed, possibly uneven grid).

    ``ts`` must start at ``t0``, end at ``t1`` and be strictly monotonic in the direction of
    integration; ``dt0`` must be None.

    Args:
        ts: the grid, a 1-D sequence or tensor of times.
    """

    ts: Sequence[float] | torch.Tensor = ()
    adaptive = False

    def __post_init__(self) -> None:
        ts = (
            torch.as_tensor(self.ts, dtype=torch.float64)
            if not isinstance(self.ts, torch.Tensor)
            else self.ts
        )
        if ts.ndim != 1 or ts.numel() < 2:
            raise ValueError(
                f"`StepTo(ts)` needs a 1-D grid of at least two times, got {describe(ts)}"
            )
        if not bool(torch.isfinite(ts).all()):
            raise ValueError("`StepTo(ts)` holds NaN or infinite times")
        diffs = ts.diff()
        if not (bool((diffs > 0).all()) or bool((diffs < 0).all())):
            raise ValueError(
                "`StepTo(ts)` must be strictly monotonic (increasing, or decreasing to integrate backwards)"
            )

    def init(self, problem, solver, t0, t1, y0, dt0, solver_state):
        if dt0 is not None:
            raise ValueError("`dt0` must be None with `StepTo(ts)`: the grid sets every step")
        batch = 1 if ops_for(t0).host else t0.shape[0]
        dtype = torch.float64 if ops_for(t0).host else t0.dtype
        grid = torch.as_tensor(self.ts, dtype=dtype, device=y0.device).reshape(1, -1)
        if problem.direction is not None:
            grid = grid * problem.direction.reshape(-1, 1).to(dtype)
        grid = grid.expand(batch, -1)
        first, last = (grid[:, 0], grid[:, -1])
        if ops_for(t0).host:
            bad = float(first[0]) != t0 or float(last[0]) != t1
        else:
            bad = bool(((first != t0) | (last != t1)).any())
        if bad:
            raise ValueError(
                f"`StepTo(ts)` must start at t0 and end at t1, but it spans "
                f"[{float(self.ts[0]):g}, {float(self.ts[-1]):g}]; include t0 and t1 in the grid"
            )
        if not bool((grid.diff(dim=1) > 0).all()):
            raise ValueError("`StepTo(ts)` must run from t0 towards t1")
        if ops_for(t0).host:
            grid = grid[0].tolist()
            return grid[1], (grid, 1), 0
        index = torch.ones_like(t0, dtype=torch.long)
        return grid[:, 1], (grid.contiguous(), index), 0

    supports_host = True
    supports_compile = True

    def adapt(self, solver, t0, t1, y0, result, state, clipped, finite):
        ops = ops_for(t0)
        grid, index = state
        if ops.host:
            index = min(index + 1, len(grid) - 1)
            next_end = grid[index]
        else:
            index = (index + 1).clamp(max=grid.shape[1] - 1)
            next_end = grid.gather(1, index[:, None])[:, 0]
        return True, next_end, (grid, index), False


def _rms(x: torch.Tensor) -> torch.Tensor:
    """Root mean square over the state, per sample: ``x: (batch, n) → (batch,)``."""
    return torch.linalg.vector_norm(x, dim=1) / math.sqrt(max(x.shape[1], 1))


@friendly_keywords()
@dataclass(frozen=True)
class PIDController(AbstractController):
    """Adaptive step sizes from the solver's error estimate (a PID controller; the default is the
    classic integral controller).

    A step is accepted when ``‖err / (atol + rtol · max(|y0|, |y1|))‖ ≤ 1``. The next step is
    ``dt · clip(safety · e_n^{-β1} e_{n-1}^{-β2} e_{n-2}^{-β3}, factormin, factormax)`` with
    ``β1 = (p + i + d)/k``, ``β2 = -(p + 2d)/k``, ``β3 = d/k`` and ``k`` the local order of the
    error estimate (Söderlind, *Digital filters in adaptive time-stepping*, ACM TOMS 2003; the
    parametrisation of diffrax).

    Args:
        rtol, atol: relative and absolute tolerances (not negative, not both zero).
        pcoeff, icoeff, dcoeff: the PID coefficients.
        dtmin: a step that must shrink below this fails with ``Status.DTMIN``.
        dtmax: the largest step.
        safety: safety factor applied to the optimal step.
        factormin, factormax: limits on how much one step can shrink or grow the next.
        step_ts: times every step must land on (e.g. where the data are).
        jump_ts: times where the vector field is discontinuous: steps land on them and the first
            stage after them is evaluated afresh.
        norm: the error norm, ``norm(scaled_error) → (batch,)`` on the flat ``(batch, n)`` error;
            RMS by default.
    """

    rtol: float = 1e-3
    atol: float = 1e-6
    pcoeff: float = 0.0
    icoeff: float = 1.0
    dcoeff: float = 0.0
    dtmin: float | None = None
    dtmax: float | None = None
    safety: float = 0.9
    factormin: float = 0.2
    factormax: float = 10.0
    step_ts: Sequence[float] | torch.Tensor | None = None
    jump_ts: Sequence[float] | torch.Tensor | None = None
    norm: Callable[[torch.Tensor], torch.Tensor] | None = None

    adaptive = True

    def __post_init__(self) -> None:
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"`{name}` must be a float, got {describe(value)}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"`{name}` must be a finite number ≥ 0, got {value}; a typical value is "
                    f"{'1e-6' if name == 'rtol' else '1e-8'}"
                )
        if self.rtol == 0 and self.atol == 0:
            raise ValueError(
                "`rtol` and `atol` are both 0, so no step can ever be accepted; set at least one, "
                "e.g. `PIDController(rtol=1e-6, atol=1e-8)`"
            )
        for name in ("safety", "factormax"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"`{name}` must be a positive number, got {describe(value)}")
        if not (0 <= self.factormin < 1 <= self.factormax):
            raise ValueError(
                f"need 0 ≤ factormin < 1 ≤ factormax, got factormin={self.factormin}, "
                f"factormax={self.factormax}"
            )
        for name in ("dtmin", "dtmax"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"`{name}` must be a positive finite number or None, got {value}")
        if self.dtmin is not None and self.dtmax is not None and self.dtmin > self.dtmax:
            raise ValueError(f"`dtmin`={self.dtmin} is larger than `dtmax`={self.dtmax}")
        for name in ("pcoeff", "icoeff", "dcoeff"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ValueError(f"`{name}` must be a finite number, got {describe(value)}")
        if self.norm is not None and not callable(self.norm):
            raise TypeError(f"`norm` must be callable, got {type(self.norm).__name__}")
        for name in ("step_ts", "jump_ts"):
            value = getattr(self, name)
            if value is not None:
                tensor = torch.as_tensor(value, dtype=torch.float64)
                if tensor.ndim != 1 or not bool(torch.isfinite(tensor).all()):
                    raise ValueError(f"`{name}` must be a 1-D sequence of finite times")

    # -- helpers ---------------------------------------------------------------------------------

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return _rms(x) if self.norm is None else self.norm(x)

    def _scaled_norm(self, err: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
        scale = torch.maximum(y0.abs(), y1.abs()).mul_(self.rtol).add_(self.atol)
        return self._norm(err / scale)

    def stops(self, problem, dtype, device):
        def prepare(ts):
            if ts is None:
                return None
            ts = torch.as_tensor(ts, dtype=dtype, device=device).reshape(1, -1)
            if problem.direction is not None:
                ts = ts * problem.direction.reshape(-1, 1)
            return ts.sort(dim=1).values.contiguous()

        stops = prepare(
            None
            if self.step_ts is None and self.jump_ts is None
            else torch.cat(
                [
                    torch.as_tensor(x, dtype=torch.float64).reshape(-1)
                    for x in (self.step_ts, self.jump_ts)
                    if x is not None
                ]
            )
        )
        return None if stops is None else (stops, prepare(self.jump_ts))

    # -- the controller --------------------------------------------------------------------------

    supports_host = True
    supports_compile = True

    def init(self, problem, solver, t0, t1, y0, dt0, solver_state):
        ops = ops_for(t0)
        nfe = 0
        if dt0 is None:
            if ops.host:
                as_tensor = functools.partial(
                    torch.tensor, dtype=problem.time_dtype, device=y0.device
                )
                dt0 = self._initial_step(
                    problem, solver, as_tensor([t0]), as_tensor([t1]), y0, solver_state
                ).item()
            else:
                dt0 = self._initial_step(problem, solver, t0, t1, y0, solver_state)
            nfe = 1
        dt0 = self._clip(dt0, ops)
        # two distinct tensors: aliased state entries would make a compiled step recompile once
        # they stop being aliased after the first accepted step
        ones = 1.0 if ops.host else torch.ones_like(t0)
        # the error estimate's local order on this term (lower on SDEs than on ODEs)
        k = solver.error_order_for(problem.term)
        return t0 + dt0, (ones, 1.0 if ops.host else ones.clone(), dt0, k), nfe

    def _clip(self, dt, ops):
        if self.dtmax is not None:
            dt = ops.minimum(dt, self.dtmax)
        if self.dtmin is not None:
            dt = ops.maximum(dt, self.dtmin)
        return dt

    @torch.no_grad()
    def _initial_step(self, problem, solver, t0, t1, y0, vf0) -> torch.Tensor:
        """Hairer, Nørsett & Wanner (1993), §II.4: a first step from two vector-field values."""
        span = (t1 - t0).abs()
        probe = span * 1e-6
        f0 = problem.prod(vf0, problem.contr(t0, t0 + probe)) / probe[:, None]
        scale = y0.abs() * self.rtol + self.atol
        d0 = self._norm(y0 / scale)
        d1 = self._norm(f0 / scale)
        small = (d0 < 1e-5) | (d1 < 1e-5)
        h0 = torch.where(small, torch.full_like(d0, 1e-6), 0.01 * d0 / d1).to(t0.dtype)
        h0 = torch.minimum(h0, span)
        y1 = y0 + (h0[:, None] * f0).to(y0.dtype)  # f0 is in the time dtype after / probe
        f1 = (
            problem.prod(problem.vf(t0 + h0, y1), problem.contr(t0 + h0, t0 + h0 + probe))
            / probe[:, None]
        )
        d2 = self._norm((f1 - f0) / scale) / h0
        dmax = torch.maximum(d1, d2).to(t0.dtype)
        order = solver.order
        h1 = torch.where(
            dmax <= 1e-15,
            torch.clamp(h0 * 1e-3, min=1e-6),
            (0.01 / dmax) ** (1.0 / (order + 1)),
        )
        dt = torch.minimum(100 * h0, h1)
        dt = torch.minimum(dt, span)
        bad = ~torch.isfinite(dt) | (dt <= 0)
        return torch.where(bad, span * 1e-3, dt)

    def adapt(self, solver, t0, t1, y0, result, state, clipped, finite):
        ops = ops_for(t0)
        prev1, prev2, dt_prev, k = state
        # step sizes are not differentiated: gradients follow the steps that were taken
        err = self._scaled_norm(result.y_error.detach(), y0.detach(), result.y1.detach())
        err = ops.value(err if ops.host else err.to(t0.dtype))
        accept = ops.and_(err <= 1.0, finite)  # a NaN error is never <= 1
        inv = 1.0 / ops.maximum(err, 1e-10)
        factor = self.safety * inv ** ((self.pcoeff + self.icoeff + self.dcoeff) / k)
        if self.pcoeff or self.dcoeff:
            factor = factor * prev1 ** (-(self.pcoeff + 2 * self.dcoeff) / k)
        if self.dcoeff:
            factor = factor * prev2 ** (self.dcoeff / k)
        # a non-finite candidate or error: shrink as much as allowed; a step the solver could not
        # complete (Newton did not converge): halve it, as SciPy's implicit methods do
        factor = ops.where(ops.and_(finite, factor == factor), factor, self.factormin)
        if result.failed is not None:
            factor = ops.where(result.failed, max(0.5, self.factormin), factor)
        factor = ops.minimum(
            ops.maximum(factor, self.factormin), ops.where(accept, self.factormax, 1.0)
        )
        dt = t1 - t0
        dt_next = dt * factor
        # after a step shortened to land on an end or stop time, keep the earlier proposal
        dt_next = ops.where(ops.and_(accept, clipped), ops.maximum(dt_next, dt_prev), dt_next)
        too_small = False
        if self.dtmin is not None:
            too_small = ops.and_(ops.not_(accept), dt_next < self.dtmin)
        dt_next = self._clip(dt_next, ops)
        next_end = ops.where(accept, t1, t0) + dt_next
        prev2 = ops.where(accept, prev1, prev2)
        prev1 = ops.where(accept, inv, prev1)
        return accept, next_end, (prev1, prev2, dt_next, k), too_small

    def check(self, solver: AbstractSolver) -> None:
        if solver.error_order is None:
            raise ValueError(
                f"`{solver!r}` has no error estimate, so it cannot be used with an adaptive "
                "controller: pick an embedded method (`Dopri5()`, `Tsit5()`, `Bosh3()`, "
                "`HeunEuler()`) or use `controller=ConstantStepSize()` with `dt0`"
            )
