"""The problems the source material studies, ready to train: convection, reaction,
reaction–diffusion (Krishnapriyan et al. 2021), viscous Burgers (Raissi et al. 2019) and the heat
equation, each with its reference solution."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..training._checks import nearest
from ._conditions import Dirichlet, InitialCondition, Periodic
from ._domain import Domain, Interval
from ._problem import PDEProblem
from ._reference import (
    burgers_solution,
    convection_solution,
    heat_solution,
    reaction_diffusion_solution,
    reaction_solution,
)

__all__ = [
    "INITIAL_CONDITIONS",
    "PROBLEMS",
    "burgers",
    "convection",
    "heat",
    "problem_by_name",
    "reaction",
    "reaction_diffusion",
]

TWO_PI = 2 * math.pi


def _sine(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(x)


def _gauss(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-((x - math.pi) ** 2) / (2 * (math.pi / 4) ** 2))


#: initial conditions of the periodic problems on [0, 2π): sin(x), and the Gaussian
#: exp(−(x − π)² / 2(π/4)²) of the reaction and reaction–diffusion experiments
INITIAL_CONDITIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sin": _sine,
    "gauss": _gauss,
}


def _initial(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in INITIAL_CONDITIONS:
        raise ValueError(
            f"unknown initial condition {name!r}{nearest(str(name), INITIAL_CONDITIONS)}; "
            f"valid: {', '.join(INITIAL_CONDITIONS)}"
        )
    return INITIAL_CONDITIONS[name]


def _periodic_domain() -> Domain:
    return Domain({"x": Interval(0.0, TWO_PI, periodic=True), "t": Interval(0.0, 1.0)}, time="t")


def convection(
    beta: float = 30.0,
    *,
    initial: str = "sin",
    hard_initial: bool = False,
    hard_periodic: bool = False,
) -> PDEProblem:
    """``u_t + β u_x = 0`` on ``[0, 2π) × [0, 1]``, periodic in x, ``u(x, 0) = sin x``
    (Krishnapriyan et al. 2021, §3.1): transport at speed β; plain PINNs fail from β ≈ 20.

    Args:
        beta: the speed β.
        initial: ``"sin"`` or ``"gauss"``.
        hard_initial, hard_periodic: build those conditions into the network.
    """
    h = _initial(initial)

    def residual(u, d, p):
        return d(u, "t") + p["beta"] * d(u, "x")

    def reference(axes, coefficients):
        return convection_solution(axes["x"], axes["t"], coefficients["beta"], h)

    return PDEProblem(
        _periodic_domain(),
        residual,
        [InitialCondition(h, hard=hard_initial), Periodic("x", hard=hard_periodic)],
        coefficients={"beta": beta},
        reference=reference,
        name="convection",
    )


def reaction(
    rho: float = 5.0,
    *,
    initial: str = "gauss",
    hard_initial: bool = False,
    hard_periodic: bool = False,
) -> PDEProblem:
    """``u_t = ρ u(1 − u)`` on ``[0, 2π) × [0, 1]``, periodic in x, Gaussian ``u(x, 0)``
    (Krishnapriyan et al. 2021, §3.2): the logistic reaction; plain PINNs fail from ρ ≈ 5."""
    h = _initial(initial)

    def residual(u, d, p):
        return d(u, "t") - p["rho"] * u * (1 - u)

    def reference(axes, coefficients):
        return reaction_solution(axes["x"], axes["t"], coefficients["rho"], h)

    return PDEProblem(
        _periodic_domain(),
        residual,
        [InitialCondition(h, hard=hard_initial), Periodic("x", hard=hard_periodic)],
        coefficients={"rho": rho},
        reference=reference,
        name="reaction",
    )


def reaction_diffusion(
    nu: float = 3.0,
    rho: float = 5.0,
    *,
    initial: str = "gauss",
    hard_initial: bool = False,
    hard_periodic: bool = False,
) -> PDEProblem:
    """``u_t = ν u_xx + ρ u(1 − u)`` on ``[0, 2π) × [0, 1]``, periodic in x (u and u_x), Gaussian
    ``u(x, 0)`` (Krishnapriyan et al. 2021, §3.2); reference by Strang splitting."""
    h = _initial(initial)

    def residual(u, d, p):
        return d(u, "t") - p["nu"] * d(u, "x", "x") - p["rho"] * u * (1 - u)

    def reference(axes, coefficients):
        return reaction_diffusion_solution(
            axes["x"], axes["t"], coefficients["nu"], coefficients["rho"], h
        )

    return PDEProblem(
        _periodic_domain(),
        residual,
        [
            InitialCondition(h, hard=hard_initial),
            Periodic("x", derivatives=1, hard=hard_periodic),
        ],
        coefficients={"nu": nu, "rho": rho},
        reference=reference,
        name="reaction_diffusion",
    )


def burgers(nu: float = 0.01 / math.pi, *, hard_initial: bool = False) -> PDEProblem:
    """``u_t + u u_x = ν u_xx`` on ``[−1, 1] × [0, 1]``, ``u(x, 0) = −sin πx``, ``u(±1, t) = 0``
    (Raissi, Perdikaris & Karniadakis, J. Comput. Phys. 2019, §3.1: ν = 0.01/π, a shock forms
    at x = 0); reference by Cole–Hopf."""

    def residual(u, d, p):
        return d(u, "t") + u * d(u, "x") - p["nu"] * d(u, "x", "x")

    def reference(axes, coefficients):
        return burgers_solution(axes["x"], axes["t"], coefficients["nu"])

    domain = Domain({"x": Interval(-1.0, 1.0), "t": Interval(0.0, 1.0)}, time="t")
    return PDEProblem(
        domain,
        residual,
        [
            InitialCondition(lambda x: -torch.sin(math.pi * x), hard=hard_initial),
            Dirichlet("x", "both", 0.0),
        ],
        coefficients={"nu": nu},
        reference=reference,
        name="burgers",
    )


def heat(nu: float = 0.1, *, hard_initial: bool = False) -> PDEProblem:
    """``u_t = ν u_xx`` on ``[0, 1] × [0, 1]``, ``u(x, 0) = sin πx``, ``u(0, t) = u(1, t) = 0``;
    exact ``u = e^{−νπ²t} sin πx``."""

    def residual(u, d, p):
        return d(u, "t") - p["nu"] * d(u, "x", "x")

    def reference(axes, coefficients):
        return heat_solution(axes["x"], axes["t"], coefficients["nu"])

    domain = Domain({"x": Interval(0.0, 1.0), "t": Interval(0.0, 1.0)}, time="t")
    return PDEProblem(
        domain,
        residual,
        [
            InitialCondition(lambda x: torch.sin(math.pi * x), hard=hard_initial),
            Dirichlet("x", "both", 0.0),
        ],
        coefficients={"nu": nu},
        reference=reference,
        name="heat",
    )


@dataclass(frozen=True)
class _Entry:
    build: Callable[..., PDEProblem]

    @property
    def coefficients(self) -> dict[str, float]:
        """The coefficients and their defaults."""
        return {
            name: p.default
            for name, p in inspect.signature(self.build).parameters.items()
            if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        }

    @property
    def options(self) -> dict[str, object]:
        """The keyword-only options and their defaults."""
        return {
            name: p.default
            for name, p in inspect.signature(self.build).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }


#: the shipped problems by name (configs use these names)
PROBLEMS: dict[str, _Entry] = {
    build.__name__: _Entry(build)
    for build in (convection, reaction, reaction_diffusion, burgers, heat)
}


def problem_by_name(name: str, **settings: object) -> PDEProblem:
    """A shipped problem by name, with coefficients and options as keywords."""
    if name not in PROBLEMS:
        raise ValueError(
            f"unknown problem {name!r}{nearest(str(name), PROBLEMS)}; shipped: "
            f"{', '.join(PROBLEMS)}"
        )
    entry = PROBLEMS[name]
    valid = {**entry.coefficients, **entry.options}
    for key in settings:
        if key not in valid:
            raise ValueError(
                f"the {name} problem has no setting {key!r}{nearest(key, valid)}; valid: "
                f"{', '.join(valid)}"
            )
    return entry.build(**settings)
