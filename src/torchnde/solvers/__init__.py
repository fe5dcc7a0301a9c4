"""Solvers: how one step is taken. Explicit Runge–Kutta methods are Butcher tableaux run by one
generic stepper."""

from ._base import AbstractReversibleSolver, AbstractSolver, StepResult
from ._dopri5 import Dopri5
from ._dopri8 import Dopri8
from ._doubling import StepDoubling
from ._explicit import (
    RK4,
    RK38,
    Bosh3,
    Euler,
    Fehlberg2,
    Heun,
    Heun3,
    HeunEuler,
    Midpoint,
    Ralston,
)
from ._implicit import AbstractDIRK
from ._kvaerno import ImplicitEuler, Kvaerno3, Kvaerno4, Kvaerno5
from ._nonlinear import AbstractNonlinearSolver, Chord, Newton, NewtonKrylov
from ._reversible import ReversibleHeun
from ._rosenbrock import AbstractRosenbrock, Rodas5P, Rosenbrock23, RosenbrockTableau
from ._runge_kutta import AbstractExplicitRungeKutta, AbstractRungeKutta
from ._sde import (
    SRA1,
    SRI,
    AbstractSDESolver,
    EulerHeun,
    EulerMaruyama,
    LogODEMidpoint,
    Milstein,
)
from ._switch import AutoSwitch, stability_boundary
from ._tableau import ButcherTableau, Interpolant
from ._tsit5 import Tsit5

__all__ = [
    "RK4",
    "RK38",
    "SRA1",
    "SRI",
    "AbstractDIRK",
    "AbstractExplicitRungeKutta",
    "AbstractNonlinearSolver",
    "AbstractReversibleSolver",
    "AbstractRosenbrock",
    "AbstractRungeKutta",
    "AbstractSDESolver",
    "AbstractSolver",
    "AutoSwitch",
    "Bosh3",
    "ButcherTableau",
    "Chord",
    "Dopri5",
    "Dopri8",
    "Euler",
    "EulerHeun",
    "EulerMaruyama",
    "Fehlberg2",
    "Heun",
    "Heun3",
    "HeunEuler",
    "ImplicitEuler",
    "Interpolant",
    "Kvaerno3",
    "Kvaerno4",
    "Kvaerno5",
    "LogODEMidpoint",
    "Midpoint",
    "Milstein",
    "Newton",
    "NewtonKrylov",
    "Ralston",
    "ReversibleHeun",
    "Rodas5P",
    "Rosenbrock23",
    "RosenbrockTableau",
    "StepDoubling",
    "StepResult",
    "Tsit5",
    "stability_boundary",
]
