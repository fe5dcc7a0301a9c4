"""Physics-informed neural networks that train reliably.

A problem is a :class:`Domain` (named intervals, periodic where needed, one of them time), a
residual written as a plain function ``residual(u, d, p)`` (``d(u, "x", "x")`` is u_xx), and
conditions (initial, Dirichlet, Neumann, periodic, observations; soft as losses or hard by
output transforms). :func:`train` fits a network through optimiser stages (Adam, L-BFGS) on
:class:`torchnde.training.Trainer` with a training paradigm that fixes the failure modes of
plain training (Krishnapriyan, Gholami, Zhe, Kirby & Mahoney, NeurIPS 2021):
:class:`Curriculum` regularisation, sequence-to-sequence :class:`TimeMarching`, and
:class:`Causal` weights (Wang, Sankaran & Perdikaris 2022), reporting every phase's loss terms
and error against the reference solvers here.

Example:
    >>> from torchnde import pinn
    >>> from torchnde.training import Stage
    >>> problem = pinn.convection(beta=30.0)
    >>> result = pinn.train(problem, [Stage("lbfgs", steps=1000)],
    ...                     paradigm=pinn.Curriculum("beta", [1, 10, 20, 30]))
    >>> for phase in result.phases:
    ...     print(phase.name, phase.status.value, phase.error)
"""

from ._conditions import (
    AbstractCondition,
    Dirichlet,
    InitialCondition,
    Neumann,
    Observations,
    Periodic,
)
from ._derivatives import Derivatives, partial
from ._domain import Domain, Interval
from ._equations import (
    INITIAL_CONDITIONS,
    PROBLEMS,
    burgers,
    convection,
    heat,
    problem_by_name,
    reaction,
    reaction_diffusion,
)
from ._loss import AdaptiveWeights, CausalWeights
from ._network import MLP, FourierFeatures, Network, PINNModel
from ._paradigms import AbstractParadigm, Causal, Curriculum, PiecewiseInTime, Plain, TimeMarching
from ._problem import Coefficients, PDEProblem
from ._reference import (
    burgers_solution,
    convection_characteristics,
    convection_solution,
    heat_solution,
    reaction_diffusion_solution,
    reaction_solution,
    relative_l2,
)
from ._report import write_run_folder
from ._result import PhaseResult, PhaseStatus, PINNResult
from ._sampling import (
    AbstractSampler,
    Grid,
    LatinHypercube,
    ResidualRefinement,
    Sobol,
    Uniform,
    sampler_by_name,
)
from ._train import PhaseRunner, Points, train

__all__ = [
    "INITIAL_CONDITIONS",
    "MLP",
    "PROBLEMS",
    "AbstractCondition",
    "AbstractParadigm",
    "AbstractSampler",
    "AdaptiveWeights",
    "Causal",
    "CausalWeights",
    "Coefficients",
    "Curriculum",
    "Derivatives",
    "Dirichlet",
    "Domain",
    "FourierFeatures",
    "Grid",
    "InitialCondition",
    "Interval",
    "LatinHypercube",
    "Network",
    "Neumann",
    "Observations",
    "PDEProblem",
    "PINNModel",
    "PINNResult",
    "Periodic",
    "PhaseResult",
    "PhaseRunner",
    "PhaseStatus",
    "PiecewiseInTime",
    "Plain",
    "Points",
    "ResidualRefinement",
    "Sobol",
    "TimeMarching",
    "Uniform",
    "burgers",
    "burgers_solution",
    "convection",
    "convection_characteristics",
    "convection_solution",
    "heat",
    "heat_solution",
    "partial",
    "problem_by_name",
    "reaction",
    "reaction_diffusion",
    "reaction_diffusion_solution",
    "reaction_solution",
    "relative_l2",
    "sampler_by_name",
    "train",
    "write_run_folder",
]
