"""Continuous normalising flows: FFJORD."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import solve as _solve
from .._solution import Solution
from ..adjoints import AbstractAdjoint, DirectAdjoint
from ..controllers import AbstractController, PIDController
from ..solvers import AbstractSolver, Dopri5
from ..terms import ODETerm
from ._jacobian import AbstractTraceEstimator, ExactTrace, differentiable_state, per_sample
from ._regularisers import (
    AbstractRegulariser,
    SolverHeuristic,
    _check_regularisers,
    heuristic_solver,
)

__all__ = ["CNF", "FlowOutput", "StandardNormal"]


class StandardNormal:
    """The standard normal base density ``N(0, I)`` over the event shape of the data."""

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``log N(z; 0, I)`` per sample: ``(batch, *event) -> (batch,)``."""
        dim = z[0].numel()
        return -0.5 * per_sample(z.pow(2)) - 0.5 * dim * math.log(2 * math.pi)

    def sample(self, shape: Sequence[int], like: torch.Tensor, generator=None) -> torch.Tensor:
        return torch.randn(tuple(shape), dtype=like.dtype, device=like.device, generator=generator)

    def __repr__(self) -> str:
        return "StandardNormal()"


@dataclass
class FlowOutput:
    """One pass through a :class:`CNF`.

    Attributes:
        x: the data-side points ``z(t1)``, ``(batch, *event)``.
        z: the base-side points ``z(t0)``.
        log_prob: ``log p(x)`` per sample ``(batch,)``.
        penalties: the regularisers' integrals over ``[t0, t1]`` (``name -> (batch,)``; the
            solver heuristic: one number).
        solution: the :class:`~torchnde.Solution` of the augmented state (its ``stats`` count
            the evaluations).
    """

    x: torch.Tensor
    z: torch.Tensor
    log_prob: torch.Tensor
    penalties: dict[str, torch.Tensor]
    solution: Solution


class _Dynamics(nn.Module):
    """``d/dt (z, Δ, R_1, …) = (f, -tr ∂f/∂z, r_1, …)`` with ``args = (user_args, noise)``."""

    def __init__(self, field, trace: AbstractTraceEstimator, regularisers, heuristic: bool):
        super().__init__()
        self.field = field
        self.trace = trace
        self.integrals = regularisers
        self.heuristic = heuristic
        self.frobenius = any(r.needs_frobenius for r in regularisers)

    def forward(self, t, state, args):
        z = state[0]
        user_args, noise = args
        outer = torch.is_grad_enabled()
        with torch.enable_grad():
            z_ = differentiable_state(z)
            f = self.field(t, z_, user_args)
            if not isinstance(f, torch.Tensor) or f.shape != z.shape:
                raise ValueError(
                    f"the CNF's `field(t, z, args)` must return a tensor shaped like z {tuple(z.shape)}, "
                    f"got {getattr(f, 'shape', type(f).__name__)}"
                )
            info = self.trace.estimate(f, z_, noise, frobenius=self.frobenius, create_graph=outer)
        out = [f, -info.trace, *(r.rate(f, info) for r in self.integrals)]
        if not outer:
            out = [x.detach() for x in out]
        if self.heuristic:
            out.append(torch.zeros_like(state[-1]))
        return tuple(out)


class CNF(nn.Module):
    """A continuous normalising flow (Chen, Rubanova, Bettencourt & Duvenaud, *Neural ordinary
    differential equations*, NeurIPS 2018; FFJORD: Grathwohl, Chen, Bettencourt, Sutskever &
    Duvenaud, ICLR 2019).

    Points move by ``dz/dt = f(t, z)`` from the base distribution at ``t0`` to the data at ``t1``,
    and their log-density changes by the instantaneous change of variables

        d log p(z(t)) / dt = -tr ∂f/∂z,

    integrated in the same solve as ``z`` (state ``(z, Δ)``). :meth:`log_prob` solves from the data
    at ``t1`` back to ``t0``: ``log p(x) = log p_base(z(t0)) - Δ(t0)`` with ``dΔ/dt = -tr ∂f/∂z``,
    ``Δ(t1) = 0``. :meth:`sample` draws ``z(t0)`` from the base and solves forwards. The trace is
    exact (:class:`ExactTrace`, one vector–Jacobian product per dimension) or Hutchinson's
    estimate (:class:`HutchinsonTrace`, one product per evaluation, noise fixed per solve).
    Regularisers (:class:`KineticEnergy`, :class:`JacobianFrobenius`, :class:`SolverHeuristic`)
    are integrated in the same solve and returned in :class:`FlowOutput`; with a Hutchinson trace
    the Frobenius estimate reuses the trace's product (RNODE, Finlay et al. 2020).

    Every adjoint works: ``DirectAdjoint()``, ``CheckpointAdjoint()``, ``BacksolveAdjoint()`` (the
    field's parameters are found as usual; its second derivatives must exist, e.g. ``tanh`` or
    ``softplus`` activations rather than ``relu``).

    Args:
        field: ``f(t, z, args) -> dz/dt``, an ``nn.Module`` taking the time (0-dim), ``z: (batch,
            *event)`` and the ``args`` given to :meth:`log_prob`/:meth:`sample` (``None`` by
            default; e.g. a conditioning vector).
        trace: :class:`ExactTrace` (default) or :class:`HutchinsonTrace`.
        t0, t1: the base and data times (FFJORD: 0 and 1; a learnt ``t1`` may be a parameter).
        solver, controller, adjoint: as in :func:`torchnde.solve` (defaults ``Dopri5()``,
            ``PIDController(rtol=1e-5, atol=1e-5)`` as in FFJORD, ``DirectAdjoint()``).
        regularisers: penalties integrated along the flow.
        base: the base density (default :class:`StandardNormal`): an object with
            ``log_prob(z) -> (batch,)`` and ``sample(shape, like, generator)``.
        dt0: the size of the first (with ``ConstantStepSize()``: every) step, positive; its
            sign follows the direction of each solve.
        max_steps: passed to :func:`torchnde.solve`.
    """

    def __init__(
        self,
        field: nn.Module,
        *,
        trace: AbstractTraceEstimator | None = None,
        t0: float | torch.Tensor = 0.0,
        t1: float | torch.Tensor = 1.0,
        solver: AbstractSolver | None = None,
        controller: AbstractController | None = None,
        adjoint: AbstractAdjoint | None = None,
        regularisers: Sequence[AbstractRegulariser] = (),
        base: Any = None,
        dt0: float | None = None,
        max_steps: int = 10_000,
    ):
        super().__init__()
        if not callable(field):
            raise TypeError(f"`field` must be callable as field(t, z, args), got {type(field)}")
        trace = ExactTrace() if trace is None else trace
        if not isinstance(trace, AbstractTraceEstimator):
            raise TypeError(
                f"`trace` must be `ExactTrace()` or `HutchinsonTrace()`, got {type(trace).__name__}"
            )
        regs = _check_regularisers(regularisers)
        integrals = tuple(r for r in regs if not isinstance(r, SolverHeuristic))
        self.heuristic = next((r for r in regs if isinstance(r, SolverHeuristic)), None)
        self.field = field
        self.trace = trace
        self.regularisers = regs
        self.dynamics = _Dynamics(field, trace, integrals, self.heuristic is not None)
        self.t0, self.t1 = t0, t1
        self.solver = Dopri5() if solver is None else solver
        self.controller = PIDController(rtol=1e-5, atol=1e-5) if controller is None else controller
        self.adjoint = DirectAdjoint() if adjoint is None else adjoint
        self.base = StandardNormal() if base is None else base
        if dt0 is not None and not (isinstance(dt0, (int, float)) and dt0 > 0):
            raise ValueError(
                f"`dt0` must be a positive number (its sign is set per solve), got {dt0!r}"
            )
        self.dt0 = dt0
        self.max_steps = max_steps
        self._names = [r.name for r in integrals]
        if self.heuristic is not None:
            heuristic_solver(self.heuristic, self.solver, self.controller, self.adjoint)

    def _flow(self, x: torch.Tensor, start, end, args, generator) -> tuple[torch.Tensor, ...]:
        """Solve the augmented state from ``(x, 0, …)`` at ``start`` to ``end``."""
        if not isinstance(x, torch.Tensor) or x.ndim < 2:
            raise ValueError(
                "the CNF's points must be a tensor shaped (batch, *event), got "
                f"{getattr(x, 'shape', type(x).__name__)}; add a batch axis with `x[None]`"
            )
        noise = self.trace.noise(x, generator) if self.trace.needs_noise else None
        lead = x.shape[:1]
        state0 = (x, x.new_zeros(lead), *(x.new_zeros(lead) for _ in self._names))
        solver = self.solver
        if self.heuristic is not None:
            state0 = (*state0, x.new_zeros(()))
            solver = heuristic_solver(self.heuristic, solver, self.controller, self.adjoint)
        sol = _solve(
            ODETerm(self.dynamics),
            solver,
            start,
            end,
            state0,
            args=(args, noise),
            dt0=self._dt0(start, end),
            controller=self.controller,
            adjoint=self.adjoint,
            max_steps=self.max_steps,
        )
        return sol, tuple(leaf[-1] for leaf in sol.ys)

    def _penalties(self, acc: Sequence[torch.Tensor], sign: float) -> dict[str, torch.Tensor]:
        out = {n: sign * a for n, a in zip(self._names, acc)}
        if self.heuristic is not None:
            out[self.heuristic.name] = acc[-1]
        return out

    def forward(
        self, x: torch.Tensor, args: Any = None, *, generator: torch.Generator | None = None
    ) -> FlowOutput:
        """Map data ``x: (batch, *event)`` at ``t1`` to the base at ``t0`` and return
        ``log p(x)`` with the penalties. ``generator`` draws Hutchinson's noise."""
        sol, (z, delta, *acc) = self._flow(x, self.t1, self.t0, args, generator)
        log_prob = self.base.log_prob(z) - delta
        return FlowOutput(x, z, log_prob, self._penalties(acc, -1.0), sol)

    def log_prob(
        self, x: torch.Tensor, args: Any = None, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``log p(x)`` per sample ``(batch,)``."""
        return self.forward(x, args, generator=generator).log_prob

    def sample_with_log_prob(
        self,
        n: int,
        event_shape: Sequence[int],
        args: Any = None,
        *,
        like: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> FlowOutput:
        """Draw ``n`` points: ``z(t0)`` from the base, solved forwards to ``x = z(t1)``, with
        ``log p(x) = log p_base(z(t0)) + Δ(t1)`` (``dΔ/dt = -tr ∂f/∂z``, ``Δ(t0) = 0``).
        ``like`` gives the dtype and device (default: the field's first parameter's)."""
        z = self._base_sample(n, event_shape, like, generator)
        sol, (x, delta, *acc) = self._flow(z, self.t0, self.t1, args, generator)
        return FlowOutput(x, z, self.base.log_prob(z) + delta, self._penalties(acc, 1.0), sol)

    def sample(
        self,
        n: int,
        event_shape: Sequence[int],
        args: Any = None,
        *,
        like: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``n`` samples ``(n, *event_shape)`` of the flow's distribution (no trace computed)."""
        return self.transform(self._base_sample(n, event_shape, like, generator), args)

    def transform(self, z: torch.Tensor, args: Any = None) -> torch.Tensor:
        """Move base-side points ``z(t0)`` to ``z(t1)`` (the state alone, no trace)."""
        sol = _solve(
            ODETerm(self.field),
            self.solver,
            self.t0,
            self.t1,
            z,
            args=args,
            dt0=self._dt0(self.t0, self.t1),
            controller=self.controller,
            adjoint=self.adjoint,
            max_steps=self.max_steps,
        )
        return sol.ys[-1]

    def _base_sample(self, n, event_shape, like, generator) -> torch.Tensor:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"`n` must be a positive int (how many samples), got {n!r}")
        like = self._like() if like is None else like
        return self.base.sample((n, *tuple(event_shape)), like, generator)

    def _dt0(self, start, end) -> float | None:
        if self.dt0 is None:
            return None
        return self.dt0 if float(end) >= float(start) else -self.dt0

    def _like(self) -> torch.Tensor:
        for p in self.parameters():
            return p
        return torch.empty(())

    def extra_repr(self) -> str:
        return f"trace={self.trace}, t0={self.t0}, t1={self.t1}, solver={self.solver!r}"
