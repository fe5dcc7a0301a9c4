"""What physics-informed training returns: one record per phase (a curriculum stage, a time
block, a causal stage, a refinement round) and the whole run's result."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ._problem import PDEProblem

__all__ = ["PINNResult", "PhaseResult", "PhaseStatus"]


class PhaseStatus(str, enum.Enum):
    """How a phase ended."""

    #: it used its budget (no convergence test was asked for)
    DONE = "done"
    #: its final loss met the tolerance
    CONVERGED = "converged"
    #: its final loss missed the tolerance (a curriculum does not advance past it)
    NOT_CONVERGED = "not converged"
    #: the loss or the parameters became NaN or infinite; the parameters are the last finite ones
    NONFINITE = "nonfinite"


@dataclass(frozen=True)
class PhaseResult:
    """One trained phase.

    Attributes:
        index: its position in the run (0-based).
        name: a label, e.g. ``"beta=20"`` or ``"block 3/10"``.
        kind: ``"plain"``, ``"curriculum"``, ``"block"``, ``"causal"``.
        settings: what sets it apart, e.g. ``{"beta": 20.0}`` or ``{"t0": 0.2, "t1": 0.3}``.
        status: a :class:`PhaseStatus`.
        message: why it stopped where that is not plain success.
        steps: optimiser steps taken (all rounds).
        loss: the weighted loss after training.
        terms: each term's (unweighted) loss after training.
        weights: each term's weight at the end.
        error: relative L2 error against the reference over the phase's part of the evaluation
            grid, at its coefficients (None without a reference).
        error_so_far: for time blocks, the error over ``[t0, end of this block]``.
        collocation: collocation points at the end (refinement adds some).
        causal_min_weight: the smallest causal weight at the end (causal phases).
        wall_time: seconds of training.
        history: per step ``{"step", "round", "stage", "optimizer", "loss", "terms",
            "weights", "evaluations", "seconds", "cpu_seconds"}`` (loss evaluations, wall-clock
            and this thread's CPU seconds since the phase started, all cumulative).
    """

    index: int
    name: str
    kind: str
    settings: Mapping[str, float]
    status: PhaseStatus
    message: str
    steps: int
    loss: float
    terms: Mapping[str, float]
    weights: Mapping[str, float]
    error: float | None
    error_so_far: float | None
    collocation: int
    causal_min_weight: float | None
    wall_time: float
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """Whether a paradigm may build on this phase."""
        return self.status in (PhaseStatus.DONE, PhaseStatus.CONVERGED)

    def summary(self) -> dict[str, Any]:
        """The phase as plain data, without its history."""
        return {
            "index": self.index,
            "name": self.name,
            "kind": self.kind,
            "settings": dict(self.settings),
            "status": self.status.value,
            "message": self.message,
            "steps": self.steps,
            "loss": self.loss,
            "terms": dict(self.terms),
            "weights": dict(self.weights),
            "error": self.error,
            "error_so_far": self.error_so_far,
            "collocation": self.collocation,
            "causal_min_weight": self.causal_min_weight,
            "wall_time": self.wall_time,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], history: list | None = None) -> PhaseResult:
        """The inverse of :meth:`summary` (for resumed runs)."""
        return cls(**{**data, "status": PhaseStatus(data["status"]), "history": history or []})


@dataclass(frozen=True)
class PINNResult:
    """The outcome of :func:`train`.

    Attributes:
        problem: the problem solved (at its target coefficients).
        paradigm: how it was trained, as plain data.
        phases: one :class:`PhaseResult` per phase, in order.
        model: the final predictor, ``model(points) -> (n, outputs)`` (a piecewise-in-time
            module after time marching).
        error: the relative L2 error of the final predictor over the whole evaluation grid at
            the target coefficients (None without a reference, or when the run stopped before
            covering the whole domain).
        completed: whether every phase the paradigm planned was trained and none failed.
        stop_reason: why the run stopped early ("" when completed).
        evaluation: the evaluation grid's points per coordinate.
        learned: the learnable coefficients' final values.
        wall_time: seconds of training, all phases.
    """

    problem: PDEProblem
    paradigm: Mapping[str, Any]
    phases: list[PhaseResult]
    model: nn.Module
    error: float | None
    completed: bool
    stop_reason: str
    evaluation: Mapping[str, int]
    learned: Mapping[str, float]
    wall_time: float

    @property
    def final(self) -> PhaseResult:
        """The last phase."""
        return self.phases[-1]

    def predict(self, points: torch.Tensor) -> torch.Tensor:
        """The prediction at ``points`` ``(n, dim)``: ``(n, outputs)``, without gradients."""
        with torch.no_grad():
            return self.model(points)

    def solution(self, axes: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The prediction on a grid (default: the evaluation grid), shaped like the grid (plus a
        trailing axis of outputs when there are several)."""
        domain = self.problem.domain
        parameter = next(self.model.parameters())
        if axes is None:
            axes = domain.grid(self.evaluation, parameter.dtype, parameter.device)
        values = self.predict(domain.mesh(axes))
        shape = [len(axes[name]) for name in domain.names]
        if values.shape[-1] == 1:
            return values.reshape(shape)
        return values.reshape([*shape, values.shape[-1]])

    def metrics(self) -> dict[str, Any]:
        """The result as plain data (``metrics.json``)."""
        return {
            "problem": self.problem.name,
            "coefficients": dict(self.problem.coefficients),
            "domain": self.problem.domain.describe(),
            "paradigm": dict(self.paradigm),
            "error": self.error,
            "completed": self.completed,
            "stop_reason": self.stop_reason,
            "learned": dict(self.learned),
            "wall_time": self.wall_time,
            "evaluation": dict(self.evaluation),
            "phases": [phase.summary() for phase in self.phases],
        }
