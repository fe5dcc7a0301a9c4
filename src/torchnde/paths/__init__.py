"""Control paths ``X(t)`` for :class:`~torchnde.ControlTerm`: interpolated observations (CDEs) and
Brownian motion (SDEs)."""

from ._base import AbstractPath
from ._brownian import AbstractBrownianPath, BrownianGrid, VirtualBrownianTree
from ._linear import LinearInterpolation

__all__ = [
    "AbstractBrownianPath",
    "AbstractPath",
    "BrownianGrid",
    "LinearInterpolation",
    "VirtualBrownianTree",
]
