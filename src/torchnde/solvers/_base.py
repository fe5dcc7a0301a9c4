"""The interface of a solver: how one step is taken."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import torch

from .._problem import Problem
from ..terms import sde_noise

__all__ = ["AbstractReversibleSolver", "AbstractSolver", "StepResult"]


@dataclass
class StepResult:
    """What one attempted step produces.

    Attributes:
        y1: the candidate state at ``t1``, ``(batch, n)``.
        y_error: the local error estimate ``(batch, n)``, or ``None`` without an embedded method.
        state: the solver state to carry to the next step if this one is accepted (e.g. the
            vector field at ``(t1, y1)`` for first-same-as-last reuse).
        dense: what :meth:`AbstractSolver.dense_rows` needs to interpolate inside the step.
        nfe: vector-field evaluations this step made.
        failed: per sample (a ``(batch,)`` bool tensor, or a Python bool in the loop's host
            mode), whether the solver could not complete the step for a reason other than a
            non-finite value — an implicit method's Newton iteration did not converge. The loop
            rejects such a step (an adaptive controller retries it smaller) and, when it persists
            down to the smallest step, ends the sample with ``Status.NONCONVERGENCE``. ``None``:
            every step completed.
        counts: the solver's own statistics for this step (names from
            :attr:`AbstractSolver.statistics`: numbers, or ``(batch,)`` tensors), added to
            ``Solution.stats``.
        rejected_state: the state to carry when the step is rejected (the next attempt starts
            from the same point); ``None`` keeps the state from before the step. An implicit
            method keeps a Jacobian it evaluated there.
    """

    y1: torch.Tensor
    y_error: torch.Tensor | None
    state: Any
    dense: Any
    nfe: int
    failed: Any = None
    counts: dict[str, Any] | None = None
    rejected_state: Any = None


class AbstractSolver(abc.ABC):
    """Base class of solvers.

    Attributes:
        order: order of convergence of the propagated solution.
        error_order: local order of the error estimate (``p + 1`` for an embedded method of order
            ``p``), used by adaptive controllers; ``None`` when there is no estimate.
        interpolation_order: order of the dense output.
    """

    order: int
    error_order: int | None = None
    interpolation_order: int = 1
    #: whether :meth:`init` and :meth:`step` accept times as Python floats (the loop's host mode,
    #: used without a batch axis); a solver that only does ``t0 + c * (t1 - t0)`` arithmetic on
    #: times and hands them to the problem can set it
    supports_host: bool = False
    #: whether :meth:`step` makes no Python decision on tensor values, so a compiled solve
    #: (``solve(..., compile=True)``) can capture it whole
    supports_compile: bool = False
    #: strong order of convergence on an SDE, ``E|y_N - y(T)| = O(dt^strong_order)``, for the
    #: noise the method is meant for (see its docstring: e.g. Euler–Maruyama is 0.5 in general and
    #: 1.0 on additive noise); ``None`` for methods not analysed as SDE solvers
    strong_order: float | None = None
    #: the stochastic integral the method converges to on an SDE: ``"ito"``, ``"stratonovich"``,
    #: ``"any"`` (additive noise only, where the two agree); ``None`` when not an SDE method
    interpretation: str | None = None

    #: names of the statistics this solver counts besides the loop's (e.g. ``"num_jacobians"``),
    #: reported per sample in ``Solution.stats``; each step returns its share in
    #: :attr:`StepResult.counts`
    statistics: tuple[str, ...] = ()
    #: what to tell the user when a step persistently fails (``Status.NONCONVERGENCE``)
    failure_hint: str = "the solver could not complete a step"

    #: whether the method uses the Jacobian ``∂f/∂y`` (implicit methods): a term built for it
    #: (such as the continuous adjoint's) then supplies ``jac`` and its ``quadratures``
    uses_jacobian: bool = False

    #: whether the method uses a term only through ``vf``/``contr``/``prod`` — so it solves any
    #: term, including one built by an adjoint for its backward solve (Runge–Kutta methods,
    #: ``ReversibleHeun``); SDE-specific methods that read the drift and diffusion apart do not
    generic_terms: bool = False

    def check_terms(self, term: Any) -> None:
        """Raise a clear ``TypeError``/``ValueError`` when this solver cannot solve ``term`` (e.g.
        Milstein on non-diagonal noise). :func:`~torchnde.solve` calls it before the first step;
        the default accepts every term."""

    def error_order_for(self, term: Any) -> float | None:
        """The local order ``k`` of the error estimate on ``term`` (one step's estimate is
        ``O(dt^k)``), which adaptive controllers use for the step-size exponent ``1/k``.

        :attr:`error_order` on ODEs and CDEs. On an SDE (a control term driven by Brownian
        motion) stages differ by ``O(dt^½)`` increments, so an embedded estimate is ``O(dt)``
        (``O(dt^1.5)`` for additive noise, whose diffusion does not move with ``y``); a solver
        whose estimate behaves otherwise overrides this."""
        if self.error_order is None:
            return None
        noise = sde_noise(term)
        if noise is None:
            return self.error_order
        return 1.5 if noise == "additive" else 1.0

    @abc.abstractmethod
    def init(self, problem: Problem, t0: torch.Tensor, y0: torch.Tensor) -> tuple[Any, int]:
        """The solver state at the start (e.g. the first vector-field value) and its cost."""

    @abc.abstractmethod
    def step(
        self,
        problem: Problem,
        t0: torch.Tensor,
        t1: torch.Tensor,
        y0: torch.Tensor,
        state: Any,
    ) -> StepResult:
        """Attempt a step from ``(t0, y0)`` to ``t1`` (internal times, ``(batch,)``)."""

    @abc.abstractmethod
    def dense_rows(self, problem: Problem, result: StepResult) -> torch.Tensor:
        """The rows ``(batch, rows, n)`` that :attr:`dense_matrix` combines."""

    #: ``dense_matrix[r][p]``: coefficient of ``θ^p`` for row ``r`` of :meth:`dense_rows`.
    dense_matrix: tuple[tuple[float, ...], ...]

    #: whether a step depends on the past only through ``(t, y)``, so that a solve can be
    #: restarted from a stored ``(t, y)`` (with :meth:`first_state`) and reproduce the same steps;
    #: false for solvers that carry more state, such as ``ReversibleHeun``
    restartable: bool = True

    def carry(self, y0: torch.Tensor, vf0: Any) -> Any:
        """The state carried into the first step, from the flat ``y0`` and the vector field
        ``vf0`` that :meth:`init` returned (default: ``vf0`` itself)."""
        return vf0

    def first_state(self, problem: Problem, t0: torch.Tensor, y0: torch.Tensor) -> Any:
        """The carried state at the start of a step, recomputed from ``(t0, y0)`` (after a jump
        in the equation)."""
        return self.carry(y0, self.init(problem, t0, y0)[0])

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class AbstractReversibleSolver(AbstractSolver):
    """A solver whose step can be undone exactly, in closed form: from the state after a step
    :meth:`backward_step` recovers the state before it. :class:`~torchnde.ReversibleAdjoint`
    needs this capability (it reconstructs the forward pass backwards instead of storing it)."""

    restartable = False

    @abc.abstractmethod
    def backward_step(
        self, problem: Problem, t0: torch.Tensor, t1: torch.Tensor, y1: torch.Tensor, state: Any
    ) -> tuple[torch.Tensor, Any]:
        """Undo a step ``[t0, t1]``: from ``y1`` and the carried state after it, return ``(y0,
        state0)``, the state and carried state before it."""
