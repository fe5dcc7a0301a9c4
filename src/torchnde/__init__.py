"""torchnde: neural differential equations in PyTorch.

One function, :func:`solve`, solves every equation; its arguments are small objects with one job
each: a term (what the equation is), a solver (how a step is taken), a step-size controller, what
to save, how gradients flow, and events.
"""

from ._errors import NonFiniteGradientWarning, SolveError
from ._saveat import SaveAt
from ._solution import Solution, Status
from ._solve import DEFAULT_MAX_STEPS, solve
from .adjoints import (
    AbstractAdjoint,
    BacksolveAdjoint,
    CheckpointAdjoint,
    DirectAdjoint,
    ReversibleAdjoint,
)
from .controllers import AbstractController, ConstantStepSize, PIDController, StepTo
from .events import Event
from .paths import (
    AbstractBrownianPath,
    AbstractPath,
    BrownianGrid,
    HermiteCubicSpline,
    LinearInterpolation,
    NaturalCubicSpline,
    PiecewiseCubic,
    RectilinearInterpolation,
    VirtualBrownianTree,
)
from .solvers import (
    RK4,
    RK38,
    SRA1,
    AbstractDIRK,
    AbstractExplicitRungeKutta,
    AbstractSDESolver,
    AbstractSolver,
    Bosh3,
    ButcherTableau,
    Chord,
    Dopri5,
    Dopri8,
    Euler,
    EulerHeun,
    EulerMaruyama,
    Fehlberg2,
    Heun,
    Heun3,
    HeunEuler,
    ImplicitEuler,
    Kvaerno3,
    Kvaerno4,
    Kvaerno5,
    Midpoint,
    Milstein,
    Newton,
    NewtonKrylov,
    Ralston,
    ReversibleHeun,
    Tsit5,
)
from .terms import AbstractTerm, ControlTerm, MultiTerm, ODETerm

#: the version of torchnde (PEP 440)
__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_STEPS",
    "RK4",
    "RK38",
    "SRA1",
    "AbstractAdjoint",
    "AbstractBrownianPath",
    "AbstractController",
    "AbstractDIRK",
    "AbstractExplicitRungeKutta",
    "AbstractPath",
    "AbstractSDESolver",
    "AbstractSolver",
    "AbstractTerm",
    "BacksolveAdjoint",
    "Bosh3",
    "BrownianGrid",
    "ButcherTableau",
    "CheckpointAdjoint",
    "Chord",
    "ConstantStepSize",
    "ControlTerm",
    "DirectAdjoint",
    "Dopri5",
    "Dopri8",
    "Euler",
    "EulerHeun",
    "EulerMaruyama",
    "Event",
    "Fehlberg2",
    "HermiteCubicSpline",
    "Heun",
    "Heun3",
    "HeunEuler",
    "ImplicitEuler",
    "Kvaerno3",
    "Kvaerno4",
    "Kvaerno5",
    "LinearInterpolation",
    "Midpoint",
    "Milstein",
    "MultiTerm",
    "NaturalCubicSpline",
    "Newton",
    "NewtonKrylov",
    "NonFiniteGradientWarning",
    "ODETerm",
    "PIDController",
    "PiecewiseCubic",
    "Ralston",
    "RectilinearInterpolation",
    "ReversibleAdjoint",
    "ReversibleHeun",
    "SaveAt",
    "Solution",
    "SolveError",
    "Status",
    "StepTo",
    "Tsit5",
    "VirtualBrownianTree",
    "__version__",
    "solve",
]
