"""What a discovery run produces."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ._spec import Observations, RunSpec

__all__ = ["DiscoveryResult", "Forecast", "ModelFit", "Recovery"]


@dataclass
class ModelFit:
    """One trained model.

    Attributes:
        name: ``"hybrid"``, ``"recovered"`` or ``"blackbox"``.
        model: the trained vector field (an ``nn.Module`` called as ``model(t, y, args)``).
        losses: the training loss at every optimiser step.
        seconds: wall time of its training.
    """

    name: str
    model: nn.Module
    losses: list[float]
    seconds: float


@dataclass
class Recovery:
    """The closed form recovered for one network.

    Attributes:
        network: the network's name, e.g. ``"NN1"``.
        equation: the state whose equation the network appears in.
        expression: the recovered expression for the network alone, after refitting
            (a :class:`torchnde.discovery.SparseExpression`; ``.terms`` maps term to coefficient).
        absorbed: learnable parameters whose terms the regression also covered, with the values
            the recovery gave them (e.g. ``{"theta": 0.401}`` for ``- theta*y``).
        r2: how well the expression reproduces the network along the fitted trajectory.
        truth: the true unknown term as ``{term: coefficient}``, when the data are synthetic.
        max_relative_error: the largest relative coefficient error against ``truth`` (``inf`` if
            the recovered terms differ from the true ones), when the truth is known.
    """

    network: str
    equation: str
    expression: Any
    absorbed: dict[str, float]
    r2: float
    truth: dict[str, float] | None = None
    max_relative_error: float | None = None

    @property
    def terms(self) -> dict[str, float]:
        return dict(self.expression.terms)

    @property
    def same_terms_as_truth(self) -> bool | None:
        if self.truth is None:
            return None
        return set(self.terms) == set(self.truth)


@dataclass
class Forecast:
    """Every model solved from the first observation well past the training window.

    Attributes:
        ts: times ``(F,)``.
        truth: the true trajectory ``(F, states)``, when known.
        predictions: per model name, the predicted trajectory ``(F, states)`` (NaN where a
            solve failed).
        train_end: the end of the training window; the forecast window is ``ts > train_end``.
        errors: per model, the root mean square error over the forecast window (needs truth).
        relative_errors: per model, that error divided by the truth's root mean square there.
    """

    ts: torch.Tensor
    truth: torch.Tensor | None
    predictions: dict[str, torch.Tensor]
    train_end: float
    errors: dict[str, float] = field(default_factory=dict)
    relative_errors: dict[str, float] = field(default_factory=dict)


def _finite_or_none(x: float | None) -> float | None:
    if x is None:
        return None
    return x if math.isfinite(x) else None


@dataclass
class DiscoveryResult:
    """Everything a discovery run learnt.

    Attributes:
        spec: what was run.
        observations: the data.
        fits: the trained models by name (``hybrid``, ``recovered``, ``blackbox``).
        recoveries: per network, its :class:`Recovery`.
        parameters: per model, its learnable parameters' values.
        true_parameters: per learnable parameter, its true value when the data are synthetic
            (read off the true equations: the coefficient of the term the parameter multiplies).
        trajectory_ts, trajectory: where the networks were evaluated for the recovery.
        forecast: the :class:`Forecast`.
        seconds: wall time of the whole run.
    """

    spec: RunSpec
    observations: Observations
    fits: dict[str, ModelFit]
    recoveries: dict[str, Recovery]
    parameters: dict[str, dict[str, float]]
    true_parameters: dict[str, float]
    trajectory_ts: torch.Tensor
    trajectory: torch.Tensor
    forecast: Forecast
    seconds: float = 0.0

    def parameter_errors(self, model: str = "recovered") -> dict[str, float]:
        """Relative error of each learnable parameter of ``model`` against its true value."""
        values = self.parameters.get(model, {})
        out = {}
        for name, true in self.true_parameters.items():
            if name in values and true != 0:
                out[name] = abs(values[name] - true) / abs(true)
        return out

    def metrics(self) -> dict[str, Any]:
        """A JSON-ready summary: losses per step, recovered expressions (string and term map),
        parameters and their errors, forecast errors per model."""
        return {
            "name": self.spec.name,
            "seconds": round(self.seconds, 3),
            "losses": {name: fit.losses for name, fit in self.fits.items()},
            "training_seconds": {name: round(fit.seconds, 3) for name, fit in self.fits.items()},
            "recovered": {net: str(r.expression) for net, r in self.recoveries.items()},
            "recovered_terms": {net: r.terms for net, r in self.recoveries.items()},
            "recovery": {
                net: {
                    "equation": r.equation,
                    "expression": str(r.expression),
                    "terms": r.terms,
                    "absorbed_parameters": r.absorbed,
                    "r2": r.r2,
                    "true_terms": r.truth,
                    "same_terms_as_truth": r.same_terms_as_truth,
                    "max_relative_coefficient_error": _finite_or_none(r.max_relative_error),
                }
                for net, r in self.recoveries.items()
            },
            "parameters": self.parameters,
            "true_parameters": self.true_parameters,
            "parameter_relative_errors": {
                model: self.parameter_errors(model) for model in self.parameters
            },
            "forecast": {
                "train_end": self.forecast.train_end,
                "forecast_end": float(self.forecast.ts[-1]),
                "rmse": {k: _finite_or_none(v) for k, v in self.forecast.errors.items()},
                "relative_rmse": {
                    k: _finite_or_none(v) for k, v in self.forecast.relative_errors.items()
                },
            },
            "spec": dataclasses.asdict(self.spec),
        }
