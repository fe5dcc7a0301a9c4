"""Hybrid models: known physics plus neural networks for the unknown terms, trained through the
solver, then turned into closed-form equations by sparse regression (the seed lecture's
Lotka–Volterra workflow; Rackauckas et al., *Universal Differential Equations for Scientific
Machine Learning*, 2020).

Needs the ``discovery`` extra for the symbolic recovery (``pip install 'torchnde[discovery]'``).
"""

from ._csv import load_csv
from ._equations import EquationError, ParsedSystem, parse_system
from ._model import MLP, HybridModel
from ._report import write_run_folder
from ._result import DiscoveryResult, Forecast, ModelFit, Recovery
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
    "DiscoveryResult",
    "DiscoverySpec",
    "EquationError",
    "Forecast",
    "ForecastSpec",
    "HybridModel",
    "ModelFit",
    "NetworkSpec",
    "Observations",
    "ParsedSystem",
    "Recovery",
    "RunSpec",
    "SyntheticData",
    "SystemSpec",
    "TrainingSpec",
    "discover",
    "load_csv",
    "parse_system",
    "simulate",
    "solver_by_name",
    "true_trajectory",
    "write_run_folder",
]
