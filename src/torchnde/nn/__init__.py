"""Models built on :func:`torchnde.solve`: every layer is an ``nn.Module`` whose forward pass is
a solve (never a loop of its own).

Part A — neural ODEs and continuous-in-depth networks:

- :class:`NeuralODE` — the solve as a layer; its :class:`Discretisation` swappable after
  training (:meth:`NeuralODE.with_solver`, :func:`discretised`).
- :class:`ContinuousBlock`, :class:`DepthLinear`, :class:`DepthConv2d` and the depth bases
  :class:`PiecewiseConstant`, :class:`PiecewiseLinear`, :class:`Legendre` — ContinuousNet;
  :class:`ResNet` with :func:`resnet_from_neural_ode` / :func:`neural_ode_from_resnet`.
- :class:`MLPField` — an MLP vector field.
"""

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
from ._neural_ode import Discretisation, NeuralODE, discretised, neural_odes

__all__ = [
    "AbstractBasis",
    "ContinuousBlock",
    "DepthConv2d",
    "DepthLinear",
    "Discretisation",
    "Legendre",
    "MLPField",
    "NeuralODE",
    "PiecewiseConstant",
    "PiecewiseLinear",
    "ResNet",
    "discretised",
    "neural_ode_from_resnet",
    "neural_odes",
    "resnet_from_neural_ode",
]
