"""What a discovery run produces."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ._spec import Observations, RunSpec

__all__ = [
    "DiscoveryResult",
    "Forecast",
    "LawCandidate",
    "LawSelection",
    "ModelFit",
    "Recovery",
    "Sampling",
]


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
        network: the network call's name, e.g. ``"NN1"`` (``"NN1[0]"`` for an output of a network
            with several outputs).
        equation: the state whose equation the network appears in.
        expression: the recovered expression for the network alone, after refitting
            (a :class:`torchnde.discovery.SparseExpression`; ``.terms`` maps term to coefficient).
        absorbed: learnable parameters whose terms the regression also covered, with the values
            the recovery gave them (e.g. ``{"theta": 0.401}`` for ``- theta*y``).
        r2: how well the expression reproduces the network on the sampled states.
        truth: the true unknown term as ``{term: coefficient}``, when the data are synthetic.
        max_relative_error: the largest relative coefficient error against ``truth`` (``inf`` if
            the recovered terms differ from the true ones), when the truth is known.
        factor: the number ``c`` the network is multiplied by in its equation (``-1`` for
            ``-NN1(S, I)``); None when its term is not a number times the call.
        absorbed_terms: per absorbed parameter, ``(number, monomial)`` of its term
            ``number * parameter * monomial`` in the equation (``(-1.0, "y")`` for ``- theta*y``).
    """

    network: str
    equation: str
    expression: Any
    absorbed: dict[str, float]
    r2: float
    truth: dict[str, float] | None = None
    max_relative_error: float | None = None
    factor: float | None = None
    absorbed_terms: dict[str, tuple[float, str]] = field(default_factory=dict)

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


@dataclass
class Sampling:
    """Where the networks were evaluated for the sparse regression: along the fitted solutions
    of the training windows (each from its own, possibly learnt, initial state), never along one
    long solve of the fitted model; each network's regression uses only the samples inside the
    data's range of its inputs.

    Attributes:
        ts: ``(N,)`` the samples' times.
        states: ``(N, states)`` the sampled states.
        windows: how many windows the samples come from.
        ranges: per variable (every state, and the time), the observed ``(min, max)``.
        outside: per network call, the fraction of its samples with an input outside the
            observed range of that input.
        fraction_outside: the fraction of samples with any state outside its observed range.
        warning: the warning given when more than :data:`EXTRAPOLATION_LIMIT` of a network's
            samples lie outside the data's range (the fitted model leaves the data), else None.
        inside: per network call, which samples lie inside the observed range of its inputs:
            the samples its regression uses (the others would fit the network's extrapolation).
    """

    ts: torch.Tensor
    states: torch.Tensor
    windows: int
    ranges: dict[str, tuple[float, float]]
    outside: dict[str, float]
    fraction_outside: float
    warning: str | None = None
    inside: dict[str, torch.Tensor] = field(default_factory=dict)


#: the share of a network's samples outside the data's range above which a run warns
EXTRAPOLATION_LIMIT = 0.05


@dataclass
class LawCandidate:
    """One candidate law of the selection: the recovered terms at one sparsity threshold, its
    coefficients refitted on the training windows and simulated against the data.

    Attributes:
        threshold: the threshold that produced it.
        description: the candidate, e.g. ``"NN1 ≈ -0.4*x*y; NN2 ≈ 0.1*x*y [and theta = 0.4]"``.
        terms: its number of coefficients (terms and absorbed parameters).
        loss: its loss on the windows (the scaled mean squared error against the observations),
            from the window initial states of the hybrid model's fit.
        within: whether that loss lies within one standard error of the best candidate's.
        chosen: whether it won.
    """

    threshold: float
    description: str
    terms: int
    loss: float
    within: bool = False
    chosen: bool = False


@dataclass
class LawSelection:
    """How the recovered law was chosen, and whether it explains the data.

    The sparsest candidate whose loss lies within one standard error of the best candidate's
    wins (the one-standard-error rule); refitted with its own window initial states, it must
    reproduce the windows within ``max_loss_ratio`` of the hybrid model's loss, else no law is
    reported ("no sparse law found; the hybrid model stands").

    Attributes:
        candidates: every distinct candidate, in threshold order.
        best_loss: the lowest candidate loss.
        standard_error: the standard error of that loss, ``best_loss * sqrt(2 / n)``.
        observations: ``n``, the number of observed values.
        max_loss_ratio: how many times the hybrid model's loss the refitted winner may reach.
        reason: why the winner won, and the verdict.
        baseline_loss: the hybrid model's loss on the windows.
        refit_loss: the winner's loss on the windows after its refit.
        found: whether the winner explains the data.
        pruned: per network call, the terms of the winner that fell below the threshold once its
            coefficients were refitted on the data, and were dropped (it was refitted again).
    """

    candidates: list[LawCandidate]
    best_loss: float
    standard_error: float
    observations: int
    max_loss_ratio: float
    reason: str
    baseline_loss: float = math.nan
    refit_loss: float = math.nan
    found: bool = False
    pruned: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: what a run says when no candidate law explains the data
NO_LAW = "no sparse law found; the hybrid model stands"


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
        recoveries: per network call, its :class:`Recovery` (empty when no sparse law was
            found: see :attr:`selection`).
        parameters: per model, its learnable parameters' values.
        true_parameters: per learnable parameter, its true value when the data are synthetic
            (read off the true equations: the coefficient of the term the parameter multiplies).
        trajectory_ts, trajectory: where the networks were evaluated for the recovery (the
            sampled states of :attr:`sampling`).
        forecast: the :class:`Forecast`.
        seconds: wall time of the whole run.
        sampling: where and how the networks were sampled (:class:`Sampling`).
        selection: the candidate laws and why one won (:class:`LawSelection`).
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
    sampling: Sampling | None = None
    selection: LawSelection | None = None

    @property
    def law_found(self) -> bool:
        """Whether a sparse law explains the data (else the hybrid model stands)."""
        return bool(self.recoveries) if self.selection is None else self.selection.found

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
                    "factor": r.factor,
                    "absorbed_terms": r.absorbed_terms,
                }
                for net, r in self.recoveries.items()
            },
            "parameters": self.parameters,
            "true_parameters": self.true_parameters,
            "parameter_relative_errors": {
                model: self.parameter_errors(model) for model in self.parameters
            },
            "law_found": self.law_found,
            "sampling": None if self.sampling is None else _sampling_metrics(self.sampling),
            "selection": None if self.selection is None else self.selection.as_dict(),
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


def _sampling_metrics(sampling: Sampling) -> dict[str, Any]:
    return {
        "where": "along the training windows' fitted solutions",
        "samples": int(sampling.ts.shape[0]),
        "windows": sampling.windows,
        "ranges": {k: list(v) for k, v in sampling.ranges.items()},
        "fraction_outside_data_range": sampling.fraction_outside,
        "fraction_outside_per_network": sampling.outside,
        "warning": sampling.warning,
    }
