"""Step doubling: an error estimate for any one-step method, by comparing one step with two
half steps."""

from __future__ import annotations

from typing import Any

import torch

from .._problem import Problem
from ..terms import sde_noise
from ._base import AbstractSolver, StepResult

__all__ = ["StepDoubling"]


def _either(a: Any, b: Any) -> Any:
    """Per-sample ``or`` of two ``StepResult.failed`` values (None, bool or ``(batch,)``)."""
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.as_tensor(a) | torch.as_tensor(b)
    return a or b


class StepDoubling(AbstractSolver):
    """Any solver made adaptive by step doubling (Richardson's comparison): each step is taken
    once over ``[t0, t1]`` and again as two half steps; the two half steps are the result, and
    their difference with the full step is the error estimate that
    :class:`~torchnde.PIDController` controls.

    For an ODE method of order ``p`` the difference is ``(2^p - 1)`` times the half steps' local
    error, ``O(dt^(p+1))``. For an SDE both results use the same Brownian path (the two half
    increments add up to the full one), so the difference measures the method's local error on
    that path: ``O(dt^1.5)`` for additive noise, ``O(dt)`` otherwise, as for embedded SDE
    estimates (Gaines & Lyons, *Variable step size control in the numerical solution of stochastic
    differential equations*, SIAM J. Appl. Math. 57(5), 1997 — the scheme torchsde's
    ``adaptive=True`` runs). Adaptive steps need a path that answers any interval, such as
    :class:`~torchnde.VirtualBrownianTree`.

    Costs three steps of ``solver`` per attempted step. Dense output is linear between steps
    (the inner method's interpolant is not used). Euler–Maruyama on non-additive noise is not
    guaranteed to converge to the Itô solution with adaptive steps (the step sizes then depend
    on the path's future): use a Stratonovich method or additive noise.

    Args:
        solver: the method to take the steps with (any solver with :meth:`step`).
    """

    interpolation_order = 1
    dense_matrix = ((1.0, -1.0), (0.0, 1.0))

    def __init__(self, solver: AbstractSolver):
        if not isinstance(solver, AbstractSolver):
            raise TypeError(
                f"`StepDoubling(solver)` needs a torchnde solver such as `EulerMaruyama()`, got "
                f"{type(solver).__name__}"
            )
        if isinstance(solver, StepDoubling):
            raise TypeError("`StepDoubling(StepDoubling(...))`: wrap the method itself once")
        self.solver = solver
        self.order = solver.order
        self.error_order = solver.order + 1
        self.supports_host = solver.supports_host
        self.strong_order = solver.strong_order
        self.interpretation = solver.interpretation
        self.statistics = solver.statistics
        self.generic_terms = solver.generic_terms
        self.restartable = solver.restartable

    def __repr__(self) -> str:
        return f"StepDoubling({self.solver!r})"

    def check_terms(self, term: Any) -> None:
        self.solver.check_terms(term)

    def error_order_for(self, term: Any) -> float | None:
        noise = sde_noise(term)
        if noise is None:
            return self.error_order
        return 1.5 if noise == "additive" else 1.0

    def init(self, problem: Problem, t0, y0: torch.Tensor) -> tuple[Any, int]:
        return self.solver.init(problem, t0, y0)

    def carry(self, y0: torch.Tensor, vf0: Any) -> Any:
        return self.solver.carry(y0, vf0)

    def first_state(self, problem: Problem, t0, y0: torch.Tensor) -> Any:
        return self.solver.first_state(problem, t0, y0)

    def step(self, problem: Problem, t0, t1, y0: torch.Tensor, state: Any) -> StepResult:
        inner = self.solver
        full = inner.step(problem, t0, t1, y0, state)
        tm = t0 + 0.5 * (t1 - t0)
        first = inner.step(problem, t0, tm, y0, state)
        second = inner.step(problem, tm, t1, first.y1, first.state)
        counts = None
        if self.statistics:
            counts = {
                name: sum((r.counts or {}).get(name, 0) for r in (full, first, second))
                for name in self.statistics
            }
        return StepResult(
            second.y1,
            second.y1 - full.y1,
            second.state,
            (y0, second.y1),
            full.nfe + first.nfe + second.nfe,
            failed=_either(_either(full.failed, first.failed), second.failed),
            counts=counts,
        )

    def dense_rows(self, problem: Problem, result: StepResult) -> torch.Tensor:
        y0, y1 = result.dense
        return torch.stack([y0.expand_as(y1), y1], dim=1)
