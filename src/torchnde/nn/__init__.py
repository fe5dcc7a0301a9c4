"""Models built on :func:`torchnde.solve`: every layer is an ``nn.Module`` whose forward pass is
a solve (never a loop of its own).

Part A — neural ODEs and continuous-in-depth networks:

- :class:`NeuralODE` — the solve as a layer; its :class:`Discretisation` swappable after
  training (:meth:`NeuralODE.with_solver`, :func:`discretised`).
- :class:`ContinuousBlock`, :class:`DepthLinear`, :class:`DepthConv2d` and the depth bases
  :class:`PiecewiseConstant`, :class:`PiecewiseLinear`, :class:`Legendre` — ContinuousNet;
  :class:`ResNet` with :func:`resnet_from_neural_ode` / :func:`neural_ode_from_resnet`.
- :class:`MLPField` — an MLP vector field.

Part B — flows, latent and augmented models, CDEs, regularisers, hypersolvers:

- :class:`CNF` (FFJORD) with :class:`ExactTrace` / :class:`HutchinsonTrace`.
- :class:`ODERNN`, :class:`LatentODE` — irregularly sampled series.
- :class:`AugmentedNeuralODE`, :class:`SecondOrderNeuralODE`.
- :class:`NeuralCDE` (with :class:`CDEField`) — irregular, partially observed series.
- :class:`KineticEnergy`, :class:`JacobianFrobenius`, :class:`SolverHeuristic` accumulated by
  :class:`Regularised` (or a :class:`CNF`) during the solve.
- :class:`HyperEuler`, :class:`HyperMidpoint`, :class:`HyperRK4` with :func:`fit_hypersolver`.

Part C — ODE-derived recurrent cells, neural SDE models and diffusion:

- :class:`CoRNN`, :class:`LEM`, :class:`LipschitzRNN`, :class:`NoisyRNN`, :class:`LTC`,
  :class:`CTRNN`, :class:`TanhRNN`; :func:`run_cell` / :class:`Recurrent` (the shared sequence
  runner) and :func:`integrate_cell` (the same cell through any torchnde solver).
- :class:`ScoreModel` on :class:`VPSDE` / :class:`VESDE` with :class:`ScoreNetwork` (wrapped in
  :class:`GaussianResidual` to learn only the non-Gaussian part of the noise): denoising
  score matching, reverse-SDE and probability-flow sampling, exact likelihoods;
  :func:`sliced_wasserstein`.
- :class:`LatentSDE` (Li et al. 2020) and :class:`SDEGAN` (Kidger et al. 2021: an
  :class:`SDEGenerator` and a :class:`CDEDiscriminator`, :func:`clip_lipschitz` or
  :func:`gradient_penalty`).
"""

from ._augmented import AugmentedNeuralODE, SecondOrderNeuralODE
from ._cde import CDEField, NeuralCDE
from ._cells import (
    CTRNN,
    LEM,
    LTC,
    AbstractRecurrentCell,
    CoRNN,
    LipschitzRNN,
    NoisyRNN,
    TanhRNN,
    perturb_inputs,
    structured_matrix,
)
from ._cnf import CNF, FlowOutput, StandardNormal
from ._continuous import (
    AbstractBasis,
    ContinuousBlock,
    DepthConv2d,
    DepthLinear,
    Legendre,
    MLPField,
    PiecewiseConstant,
    PiecewiseLinear,
    ResNet,
    neural_ode_from_resnet,
    resnet_from_neural_ode,
)
from ._diffusion import (
    VESDE,
    VPSDE,
    AbstractDiffusionSDE,
    GaussianPrior,
    GaussianResidual,
    ScoreModel,
    ScoreNetwork,
    sliced_wasserstein,
)
from ._hypersolvers import (
    AbstractHyperSolver,
    HyperEuler,
    HyperMidpoint,
    HyperNet,
    HyperRK4,
    HypersolverFit,
    fit_hypersolver,
    hypersolver_residuals,
)
from ._jacobian import AbstractTraceEstimator, ExactTrace, HutchinsonTrace, JacobianInfo
from ._latent import ODERNN, LatentODE, LatentOutput
from ._latent_sde import LatentSDE, LatentSDEOutput
from ._neural_ode import Discretisation, NeuralODE, discretised, neural_odes
from ._regularisers import (
    AbstractRegulariser,
    JacobianFrobenius,
    KineticEnergy,
    Regularised,
    RegularisedSolution,
    SolverHeuristic,
)
from ._sde_gan import SDEGAN, CDEDiscriminator, SDEGenerator, clip_lipschitz, gradient_penalty
from ._sequence import Recurrent, SequenceOutput, integrate_cell, run_cell, sequence_mask

__all__ = [
    "CNF",
    "CTRNN",
    "LEM",
    "LTC",
    "ODERNN",
    "SDEGAN",
    "VESDE",
    "VPSDE",
    "AbstractBasis",
    "AbstractDiffusionSDE",
    "AbstractHyperSolver",
    "AbstractRecurrentCell",
    "AbstractRegulariser",
    "AbstractTraceEstimator",
    "AugmentedNeuralODE",
    "CDEDiscriminator",
    "CDEField",
    "CoRNN",
    "ContinuousBlock",
    "DepthConv2d",
    "DepthLinear",
    "Discretisation",
    "ExactTrace",
    "FlowOutput",
    "GaussianPrior",
    "GaussianResidual",
    "HutchinsonTrace",
    "HyperEuler",
    "HyperMidpoint",
    "HyperNet",
    "HyperRK4",
    "HypersolverFit",
    "JacobianFrobenius",
    "JacobianInfo",
    "KineticEnergy",
    "LatentODE",
    "LatentOutput",
    "LatentSDE",
    "LatentSDEOutput",
    "Legendre",
    "LipschitzRNN",
    "MLPField",
    "NeuralCDE",
    "NeuralODE",
    "NoisyRNN",
    "PiecewiseConstant",
    "PiecewiseLinear",
    "Recurrent",
    "Regularised",
    "RegularisedSolution",
    "ResNet",
    "SDEGenerator",
    "ScoreModel",
    "ScoreNetwork",
    "SecondOrderNeuralODE",
    "SequenceOutput",
    "SolverHeuristic",
    "StandardNormal",
    "TanhRNN",
    "clip_lipschitz",
    "discretised",
    "fit_hypersolver",
    "gradient_penalty",
    "hypersolver_residuals",
    "integrate_cell",
    "neural_ode_from_resnet",
    "neural_odes",
    "perturb_inputs",
    "resnet_from_neural_ode",
    "run_cell",
    "sequence_mask",
    "sliced_wasserstein",
    "structured_matrix",
]
