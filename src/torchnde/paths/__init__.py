"""Control paths ``X(t)`` for :class:`~torchnde.ControlTerm`: interpolated observations (CDEs) and,
later, Brownian motion (SDEs)."""

from ._base import AbstractPath
from ._linear import LinearInterpolation

__all__ = ["AbstractPath", "LinearInterpolation"]
