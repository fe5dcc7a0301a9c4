"""Gradient methods: how ``loss.backward()`` flows through a solve. The adjoint owns the loop."""

from ._base import AbstractAdjoint
from .direct import DirectAdjoint

__all__ = ["AbstractAdjoint", "DirectAdjoint"]
