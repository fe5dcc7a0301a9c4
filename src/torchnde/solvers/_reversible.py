"""The reversible Heun method: a step whose inverse is computed exactly, in closed form."""

from __future__ import annotations

from typing import Any

import torch

from .._problem import Problem
from ._base import AbstractReversibleSolver, StepResult

__all__ = ["ReversibleHeun"]


class ReversibleHeun(AbstractReversibleSolver):
    """The reversible Heun method (Kidger, Foster, Li & Lyons, *Efficient and Accurate Gradients
    for Neural SDEs*, NeurIPS 2021).

    Besides ``y`` the method carries an auxiliary state ``ŷ`` (``ŷ_0 = y_0``) and the vector field
    at it, ``v_n = vf(t_n, ŷ_n)``. With ``P(v, ΔX)`` the term's product over the step's control
    (``v·Δt`` for an ODE, ``f Δt + g ΔW`` for an SDE):

    .. math::
        ŷ_{n+1} = 2 y_n - ŷ_n + P(v_n, ΔX), \\quad v_{n+1} = vf(t_{n+1}, ŷ_{n+1}), \\quad
        y_{n+1} = y_n + \\tfrac12 P(v_n + v_{n+1}, ΔX).

    The step is *algebraically reversible*: from ``(y_{n+1}, ŷ_{n+1}, v_{n+1})`` the previous state
    is ``ŷ_n = 2 y_{n+1} - ŷ_{n+1} - P(v_{n+1}, ΔX)``, ``v_n = vf(t_n, ŷ_n)``,
    ``y_n = y_{n+1} - ½ P(v_n + v_{n+1}, ΔX)`` (:meth:`backward_step`), which is what
    :class:`~torchnde.adjoints.ReversibleAdjoint` uses to backpropagate exactly at memory
    independent of the number of steps.

    One vector-field evaluation per step. Order 2 on ODEs; on SDEs it converges to the
    Stratonovich solution with strong order 0.5 (1.0 for additive noise). The error estimate
    ``½ P(v_{n+1} - v_n, ΔX)`` (against an Euler-like step, local order 2) lets it run under
    :class:`~torchnde.PIDController`. Dense output is linear between step ends.

    Works with any term: :class:`~torchnde.ODETerm`, :class:`~torchnde.ControlTerm` and
    ``MultiTerm(ODETerm(drift), ControlTerm(diffusion, brownian))`` with any noise type.

    After a jump of the vector field (``PIDController(jump_ts=...)``) the method restarts with
    ``ŷ = y``. It cannot be used with :class:`~torchnde.CheckpointAdjoint` (its steps depend on
    ``ŷ``, not on ``y`` alone); use :class:`~torchnde.adjoints.ReversibleAdjoint`.
    """

    order = 2
    error_order = 2
    strong_order = 0.5
    interpretation = "stratonovich"
    interpolation_order = 1
    supports_host = True
    generic_terms = True
    # linear dense output: y(θ) = y0 + θ (y1 - y0) on rows (y0, y1)
    dense_matrix = ((1.0, -1.0), (0.0, 1.0))

    def init(self, problem: Problem, t0: torch.Tensor, y0: torch.Tensor) -> tuple[Any, int]:
        return problem.vf(t0, y0), 1

    def carry(self, y0: torch.Tensor, vf0: Any) -> tuple[torch.Tensor, Any]:
        """The carried state ``(ŷ, v)``: ``ŷ_0 = y_0`` and ``v_0 = vf(t_0, y_0)``."""
        return (y0, vf0)

    def step(self, problem, t0, t1, y0, state) -> StepResult:
        yhat0, vf0 = state
        control = problem.contr(t0, t1)
        k0 = problem.prod(vf0, control)
        yhat1 = 2 * y0 - yhat0 + k0
        vf1 = problem.vf(t1, yhat1)
        k1 = problem.prod(vf1, control)
        y1 = y0 + 0.5 * (k0 + k1)
        y_error = 0.5 * (k1 - k0)
        return StepResult(y1, y_error, (yhat1, vf1), (y0, y1), 1)

    def backward_step(self, problem: Problem, t0, t1, y1: torch.Tensor, state) -> tuple:
        """Undo a step ``[t0, t1]``: from ``y1`` and the state ``(ŷ_1, v_1)`` after it, return
        ``(y0, (ŷ_0, v_0))`` (one vector-field evaluation)."""
        yhat1, vf1 = state
        control = problem.contr(t0, t1)
        k1 = problem.prod(vf1, control)
        yhat0 = 2 * y1 - yhat1 - k1
        vf0 = problem.vf(t0, yhat0)
        k0 = problem.prod(vf0, control)
        return y1 - 0.5 * (k0 + k1), (yhat0, vf0)

    def dense_rows(self, problem: Problem, result: StepResult) -> torch.Tensor:
        y0, y1 = result.dense
        return torch.stack([y0, y1], dim=1)
