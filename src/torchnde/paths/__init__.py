"""Control paths ``X(t)`` for :class:`~torchnde.ControlTerm`: interpolated observations (CDEs) and
Brownian motion (SDEs)."""

from ._base import AbstractPath
from ._brownian import (
    AbstractBrownianPath,
    BrownianGrid,
    BrownianIntervalTree,
    VirtualBrownianTree,
)
from ._interpolation import (
    HermiteCubicSpline,
    NaturalCubicSpline,
    PiecewiseCubic,
    RectilinearInterpolation,
)
from ._linear import LinearInterpolation
from ._pieces import AbstractInterpolation

__all__ = [
    "AbstractBrownianPath",
    "AbstractInterpolation",
    "AbstractPath",
    "BrownianGrid",
    "BrownianIntervalTree",
    "HermiteCubicSpline",
    "LinearInterpolation",
    "NaturalCubicSpline",
    "PiecewiseCubic",
    "RectilinearInterpolation",
    "VirtualBrownianTree",
]
