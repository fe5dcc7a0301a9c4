"""Solvers: how one step is taken. Explicit Runge–Kutta methods are Butcher tableaux run by one
generic stepper."""

from ._base import AbstractSolver, StepResult
from ._dopri5 import Dopri5
from ._dopri8 import Dopri8
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
from ._reversible import ReversibleHeun
from ._runge_kutta import AbstractExplicitRungeKutta
from ._sde import SRA1, AbstractSDESolver, EulerHeun, EulerMaruyama, Milstein
from ._tableau import ButcherTableau, Interpolant
from ._tsit5 import Tsit5

__all__ = [
    "RK4",
    "RK38",
    "SRA1",
    "AbstractExplicitRungeKutta",
    "AbstractSDESolver",
    "AbstractSolver",
    "Bosh3",
    "ButcherTableau",
    "Dopri5",
    "Dopri8",
    "Euler",
    "EulerHeun",
    "EulerMaruyama",
    "Fehlberg2",
    "Heun",
    "Heun3",
    "HeunEuler",
    "Interpolant",
    "Midpoint",
    "Milstein",
    "Ralston",
    "ReversibleHeun",
    "StepResult",
    "Tsit5",
]
