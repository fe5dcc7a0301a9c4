"""Regularisers of neural ODEs, accumulated during the solve as extra state.

A regulariser with a *rate* (kinetic energy, Jacobian Frobenius norm) is an integral
``R = ∫ r(t, y(t)) dt`` along the solution: it is integrated by the same solve as ``y`` itself, as
extra entries of a tuple state ``(y, R_1, …, R_k)`` with ``dR_i/dt = r_i``, so every adjoint
differentiates it like the rest of the state. The solver heuristic of Pal et al. (2021) is not an
integral of the state but a sum over the solver's accepted steps, ``Σ_j E_j |h_j|``; it is added to
its own accumulator by a thin wrapper around the solver, and its gradient is the discrete one
(direct or checkpointed backpropagation), as in the paper.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import solve as _solve
from .._solution import Solution
from ..adjoints import BacksolveAdjoint
from ..solvers import AbstractSolver
from ..solvers._base import StepResult
from ..terms import ODETerm
from ._jacobian import (
    HutchinsonTrace,
    JacobianInfo,
    differentiable_state,
    per_sample,
)

__all__ = [
    "AbstractRegulariser",
    "JacobianFrobenius",
    "KineticEnergy",
    "Regularised",
    "RegularisedSolution",
    "SolverHeuristic",
]


class AbstractRegulariser(abc.ABC):
    """A penalty on a neural ODE's solution. ``name`` keys it in the solution's ``penalties``."""

    name: str
    #: whether the rate needs ``‖∂f/∂y‖_F²`` (one vector–Jacobian product per evaluation)
    needs_frobenius: bool = False

    def rate(self, f: torch.Tensor, info: JacobianInfo) -> torch.Tensor | None:
        """The integrand ``r`` per sample, from the field value ``f`` and what is known of its
        Jacobian; ``None`` for a regulariser that is not an integral (the solver heuristic)."""
        return None


@dataclass(frozen=True)
class KineticEnergy(AbstractRegulariser):
    """``∫ ‖f(t, y)‖² dt``: the kinetic energy of the flow, which favours straight trajectories
    at constant speed — easy for an adaptive solver (Finlay, Jacobsen, Nurbekyan & Oberman,
    *How to train your neural ODE: the world of Jacobian and kinetic regularization*, ICML 2020,
    "RNODE"). Per sample: the sum over every axis but the first."""

    name: str = "kinetic"

    def rate(self, f, info):
        return per_sample(f.pow(2))


@dataclass(frozen=True)
class JacobianFrobenius(AbstractRegulariser):
    """``∫ ‖∂f/∂y‖_F² dt``, the squared Frobenius norm of the field's Jacobian, which keeps the
    flow smooth and the solver's steps large (Finlay et al. 2020). Estimated with one
    vector–Jacobian product ``εᵀJ`` per evaluation (``E‖εᵀJ‖² = ‖J‖_F²`` for ``E[εεᵀ] = I``),
    ``ε`` drawn once per solve; a CNF with an exact trace gives the exact norm for free."""

    name: str = "jacobian_frobenius"
    needs_frobenius = True

    def rate(self, f, info):
        return info.frobenius_sq


@dataclass(frozen=True)
class SolverHeuristic(AbstractRegulariser):
    """The solver's own cost heuristic, ``R_E = Σ_j E_j |h_j|`` over the accepted steps, where
    ``E_j`` is the step's scaled local error estimate ``RMS(err / (atol + rtol·max(|y_j|,
    |y_{j+1}|)))`` — the number an adaptive controller compares with 1 (Pal, Ma, Shah &
    Rackauckas, *Opening the blackbox: accelerating neural differential equations by regularizing
    internal solver heuristics*, ICML 2021, "ERNODE"). Penalising it teaches the model dynamics
    that the solver crosses in fewer steps, at no extra evaluation.

    It needs a solver with an embedded error estimate (``Dopri5()``, ``Tsit5()``, ``Bosh3()``…),
    and, like the paper, gradients by backpropagation through the solver steps
    (``DirectAdjoint()`` or ``CheckpointAdjoint()``): the continuous adjoint of
    :class:`~torchnde.BacksolveAdjoint` does not see it and is refused.

    Args:
        rtol, atol: the tolerances of the scaled norm; ``None`` takes the controller's (a
            ``PIDController``'s ``rtol``/``atol``), else ``1e-3``/``1e-6``.
    """

    rtol: float | None = None
    atol: float | None = None
    name: str = "solver_heuristic"


# ------------------------------------------------------------------------------------------------
# the solver wrapper behind SolverHeuristic


class _ErrorEstimateAccumulator(AbstractSolver):
    """``base``'s steps, plus ``E_j |h_j|`` added to the state's last leaf (the accumulator).

    The state is a tuple whose first leaf is the model's state, on which ``E_j`` is measured, and
    whose last leaf is the accumulator, which the vector field leaves constant (so ``base``'s
    carried state stays valid). Dense output gains one row, the increment, blended linearly.
    Relies on ``base``'s ``init``, ``carry``, ``first_state``, ``check_terms``,
    ``error_order_for``, ``step`` (its ``y1``, ``y_error``, ``state``, ``dense`` and ``nfe``),
    ``dense_rows`` and ``dense_matrix``.
    """

    def __init__(self, base: AbstractSolver, rtol: float, atol: float):
        self.base = base
        self.rtol = rtol
        self.atol = atol
        for name in (
            "order",
            "error_order",
            "interpolation_order",
            "supports_host",
            "restartable",
            "strong_order",
            "interpretation",
        ):
            setattr(self, name, getattr(base, name))
        degree = len(base.dense_matrix[0])
        linear = tuple(1.0 if p == 1 else 0.0 for p in range(degree))
        self.dense_matrix = (*base.dense_matrix, linear)

    def check_terms(self, term):
        self.base.check_terms(term)

    def error_order_for(self, term):
        return self.base.error_order_for(term)

    def init(self, problem, t0, y0):
        return self.base.init(problem, t0, y0)

    def carry(self, y0, vf0):
        return self.base.carry(y0, vf0)

    def first_state(self, problem, t0, y0):
        return self.base.first_state(problem, t0, y0)

    def step(self, problem, t0, t1, y0, state) -> StepResult:
        res = self.base.step(problem, t0, t1, y0, state)
        spec = problem.spec
        err = spec.unflatten(res.y_error)[0]
        a = spec.unflatten(y0)[0].abs()
        b = spec.unflatten(res.y1)[0].abs()
        scaled = err / (self.atol + self.rtol * torch.maximum(a, b))
        if spec.batched:
            size = scaled[0].numel()
            estimate = per_sample(scaled.pow(2)).div(size).sqrt()
        else:
            estimate = scaled.pow(2).mean().sqrt()
        h = abs(t1 - t0)
        increment = (estimate * h).reshape(-1, 1).to(res.y1.dtype)
        extra = torch.zeros_like(res.y1)
        extra = torch.cat([extra[:, :-1], increment.expand(extra.shape[0], 1)], dim=1)
        y1 = torch.cat([res.y1[:, :-1], res.y1[:, -1:] + increment], dim=1)
        return StepResult(y1, res.y_error, res.state, (res, extra), res.nfe)

    def dense_rows(self, problem, result):
        res, extra = result.dense
        rows = self.base.dense_rows(problem, res)
        return torch.cat([rows, extra[:, None]], dim=1)

    def __repr__(self) -> str:
        return f"SolverHeuristic({self.base!r})"


# ------------------------------------------------------------------------------------------------
# the regularised field and its solve


@dataclass
class RegularisedSolution:
    """What :meth:`Regularised.solve` returns.

    Attributes:
        ys: the model's saved states (as ``Solution.ys`` would be for ``y0`` alone).
        penalties: ``name -> value`` at the last saved time: per sample ``(batch,)`` for the
            integrals when the state has a leading batch axis, one number for the solver heuristic
            (per sample under ``batch_axis=0``).
        solution: the underlying :class:`~torchnde.Solution` of the tuple state.
    """

    ys: torch.Tensor
    penalties: dict[str, torch.Tensor]
    solution: Solution


def _check_regularisers(regularisers) -> tuple[AbstractRegulariser, ...]:
    regs = tuple(regularisers)
    for i, r in enumerate(regs):
        if isinstance(r, type) and issubclass(r, AbstractRegulariser):
            raise TypeError(f"`regularisers[{i}]` must be an instance: write `{r.__name__}()`")
        if not isinstance(r, AbstractRegulariser):
            raise TypeError(
                f"`regularisers[{i}]` must be a regulariser such as `KineticEnergy()`, "
                f"`JacobianFrobenius()` or `SolverHeuristic()`, got {type(r).__name__}"
            )
    names = [r.name for r in regs]
    if len(set(names)) != len(names):
        raise ValueError(f"`regularisers` names must be distinct, got {names}")
    return regs


class Regularised(nn.Module):
    """A vector field ``f(t, y, args)`` together with penalties integrated along its solution.

    The solve runs on the tuple state ``(y, R_1, …, R_k[, R_E])`` with ``dR_i/dt = r_i(t, y)``
    (:class:`KineticEnergy`, :class:`JacobianFrobenius`) and, for :class:`SolverHeuristic`, a last
    accumulator fed by the solver, so the penalties come out of the same solve as ``y`` at no
    extra solve, and gradients flow through them under every adjoint (the heuristic: direct or
    checkpointed). Typical training loss: ``data_loss + λ_k·R_kinetic.mean() + λ_J·R_J.mean()``.

    Args:
        field: ``f(t, y, args)``, e.g. an ``nn.Module``; ``y`` has a leading batch axis for
            per-sample penalties.
        regularisers: a sequence of :class:`AbstractRegulariser` objects.

    Example::

        reg = Regularised(field, [KineticEnergy(), JacobianFrobenius()])
        out = reg.solve(torchnde.Dopri5(), 0.0, 1.0, y0, controller=PIDController(1e-5, 1e-7))
        loss = mse(out.ys[-1], target) + 0.01 * sum(p.mean() for p in out.penalties.values())
    """

    def __init__(
        self, field: Callable[..., Any], regularisers: Sequence[AbstractRegulariser]
    ) -> None:
        super().__init__()
        if not callable(field):
            raise TypeError(f"`field` must be callable as f(t, y, args), got {type(field)}")
        self.field = field
        self.regularisers = _check_regularisers(regularisers)
        self.integrals = tuple(r for r in self.regularisers if not isinstance(r, SolverHeuristic))
        self.heuristic = next(
            (r for r in self.regularisers if isinstance(r, SolverHeuristic)), None
        )
        self._frobenius = any(r.needs_frobenius for r in self.integrals)
        self._estimator = HutchinsonTrace("gaussian")

    def forward(self, t: torch.Tensor, state: tuple, args: Any) -> tuple:
        """The augmented field: ``(f, r_1, …, r_k[, 0])``; ``args`` is ``(user_args, noise)``."""
        y = state[0]
        user_args, noise = args
        outer = torch.is_grad_enabled()
        if not self._frobenius:
            f = self.field(t, y, user_args)
            info = JacobianInfo()
        else:
            with torch.enable_grad():
                y_ = differentiable_state(y)
                f = self.field(t, y_, user_args)
                info = self._estimator.estimate(f, y_, noise, frobenius=True, create_graph=outer)
        rates = [r.rate(f, info) for r in self.integrals]
        out = [f, *rates]
        if not outer:
            out = [x.detach() for x in out]
        if self.heuristic is not None:
            out.append(torch.zeros_like(state[-1]))
        return tuple(out)

    def initial_state(self, y0: torch.Tensor, batch_axis: int | None = None) -> tuple:
        """``(y0, 0, …)``: each integral's accumulator shaped ``(batch,)`` (``()`` for a 1-D
        ``y0``), the heuristic's ``()`` (``(batch,)`` under ``batch_axis=0``)."""
        lead = y0.shape[:1] if y0.ndim > 1 else ()
        zeros = [y0.new_zeros(lead) for _ in self.integrals]
        if self.heuristic is not None:
            zeros.append(y0.new_zeros(y0.shape[:1] if batch_axis == 0 else ()))
        return (y0, *zeros)

    def solve(
        self,
        solver: AbstractSolver,
        t0,
        t1,
        y0: torch.Tensor,
        *,
        args: Any = None,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> RegularisedSolution:
        """:func:`torchnde.solve` of the augmented field from ``y0``; ``kwargs`` (``controller``,
        ``adjoint``, ``saveat``, ``dt0``, ``batch_axis``, …) pass through. ``generator`` draws the
        Jacobian estimator's noise (one vector per solve)."""
        if not isinstance(y0, torch.Tensor):
            raise TypeError(f"`y0` must be a tensor, got {type(y0).__name__}")
        batch_axis = kwargs.get("batch_axis")
        solver = self._solver(solver, kwargs)
        noise = self._estimator.noise(y0, generator) if self._frobenius else None
        state0 = self.initial_state(y0, batch_axis)
        sol = _solve(ODETerm(self), solver, t0, t1, state0, args=(args, noise), **kwargs)
        backwards = bool(torch.as_tensor(t1).lt(torch.as_tensor(t0)).any())
        return self.split(sol, batch_axis, backwards)

    def split(
        self, sol: Solution, batch_axis: int | None = None, backwards: bool = False
    ) -> RegularisedSolution:
        """The model's ``ys`` and the penalties (at the last saved time) of a solve of this
        field; ``backwards`` when it ran from a later to an earlier time (the integrals then
        accumulate with the opposite sign, which is undone here)."""
        ys, *acc = sol.ys
        last = (lambda x: x[:, -1]) if batch_axis == 0 else (lambda x: x[-1])
        names = [r.name for r in self.integrals]
        if self.heuristic is not None:
            names.append(self.heuristic.name)
        sign = -1.0 if backwards else 1.0
        penalties = {n: sign * last(a) for n, a in zip(names[: len(self.integrals)], acc)}
        if self.heuristic is not None:  # a sum of |h|: positive either way
            penalties[self.heuristic.name] = last(acc[-1])
        return RegularisedSolution(ys, penalties, sol)

    def _solver(self, solver: AbstractSolver, kwargs: dict) -> AbstractSolver:
        if self.heuristic is None:
            return solver
        return heuristic_solver(
            self.heuristic, solver, kwargs.get("controller"), kwargs.get("adjoint")
        )


def heuristic_solver(
    heuristic: SolverHeuristic, solver: AbstractSolver, controller: Any, adjoint: Any
) -> AbstractSolver:
    """``solver`` wrapped to accumulate :class:`SolverHeuristic`'s ``Σ_j E_j |h_j|`` into the
    state's last leaf; refuses solvers without an error estimate and the continuous adjoint."""
    if solver.error_order is None:
        raise ValueError(
            f"`SolverHeuristic()` measures the solver's local error estimate, and {solver!r} has "
            "none; use a solver with an embedded estimate such as `Dopri5()` or `Tsit5()`"
        )
    if isinstance(adjoint, BacksolveAdjoint):
        raise ValueError(
            "`SolverHeuristic()` is a sum over the solver's steps and needs gradients through "
            "them (Pal et al. 2021 use discrete sensitivities); `BacksolveAdjoint()` does not see "
            "it: use `DirectAdjoint()` or `CheckpointAdjoint()`"
        )
    rtol = heuristic.rtol if heuristic.rtol is not None else getattr(controller, "rtol", 1e-3)
    atol = heuristic.atol if heuristic.atol is not None else getattr(controller, "atol", 1e-6)
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"`SolverHeuristic({name}=...)` must be a number >= 0, got {value!r}")
    if rtol == 0 and atol == 0:
        raise ValueError("`SolverHeuristic` needs rtol > 0 or atol > 0 to scale the error")
    return _ErrorEstimateAccumulator(solver, float(rtol), float(atol))
