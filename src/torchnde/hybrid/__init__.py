"""Hybrid models: known physics plus neural networks for the unknown terms, trained through the
solver, then turned into closed-form equations by sparse regression (the seed lecture's
Lotka–Volterra workflow; Rackauckas et al., *Universal Differential Equations for Scientific
Machine Learning*, 2020).

Needs the ``discovery`` extra for the symbolic recovery (``pip install 'torchnde[discovery]'``).
"""

from ._csv import load_csv
from ._equations import EquationError, ParsedSystem, parse_system
from ._model import MLP, HybridModel, ScaledNetwork
from ._report import write_run_folder
from ._result import (
    NO_LAW,
    DiscoveryResult,
    Forecast,
    LawCandidate,
    LawSelection,
    ModelFit,
    Recovery,
    Sampling,
)
from ._sampling import ExtrapolationWarning, sample_windows
from ._simulate import simulate, true_trajectory
from ._spec import (
    DiscoverySpec,
    ForecastSpec,
    NetworkSpec,
    Observations,
    RunSpec,
    SyntheticData,
    SystemSpec,
    TrainingSpec,
)
from ._workflow import discover, solver_by_name

__all__ = [
    "MLP",
    "NO_LAW",
    "DiscoveryResult",
    "DiscoverySpec",
    "EquationError",
    "ExtrapolationWarning",
    "Forecast",
    "ForecastSpec",
    "HybridModel",
    "LawCandidate",
    "LawSelection",
    "ModelFit",
    "NetworkSpec",
    "Observations",
    "ParsedSystem",
    "Recovery",
    "RunSpec",
    "Sampling",
    "ScaledNetwork",
    "SyntheticData",
    "SystemSpec",
    "TrainingSpec",
    "discover",
    "load_csv",
    "parse_system",
    "sample_windows",
    "simulate",
    "solver_by_name",
    "true_trajectory",
    "write_run_folder",
]
