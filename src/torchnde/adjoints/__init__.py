"""Gradient methods: how ``loss.backward()`` flows through a solve. The adjoint owns the loop."""

from ._base import AbstractAdjoint
from .backsolve import BacksolveAdjoint
from .checkpoint import CheckpointAdjoint
from .direct import DirectAdjoint
from .reversible import ReversibleAdjoint

__all__ = [
    "AbstractAdjoint",
    "BacksolveAdjoint",
    "CheckpointAdjoint",
    "DirectAdjoint",
    "ReversibleAdjoint",
]
