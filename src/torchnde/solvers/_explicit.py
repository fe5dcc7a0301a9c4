"""Classical explicit Runge–Kutta methods of orders 1–4 and the low-order embedded pairs.

Coefficients from Hairer, Nørsett & Wanner, *Solving Ordinary Differential Equations I* (1993),
§II.1; Fehlberg (1969), NASA TR R-315 (the RKF1(2) pair); Bogacki & Shampine (1989),
*A 3(2) pair of Runge–Kutta formulas*, Appl. Math. Lett. 2(4).
"""

from __future__ import annotations

from fractions import Fraction as F

from ._runge_kutta import AbstractExplicitRungeKutta
from ._tableau import ButcherTableau

__all__ = [
    "RK4",
    "RK38",
    "Bosh3",
    "Euler",
    "Fehlberg2",
    "Heun",
    "Heun3",
    "HeunEuler",
    "Midpoint",
    "Ralston",
]


class Euler(AbstractExplicitRungeKutta):
    """The explicit Euler method, ``y1 = y0 + dt f(t0, y0)``. Order 1, no error estimate.

    A residual network ``x + f(x)`` is one Euler step of size 1 (the seed lecture's ResNet ⇔ Euler
    correspondence).

    On an SDE ``MultiTerm(ODETerm(f), ControlTerm(g, brownian))`` it is Euler–Maruyama: Itô,
    strong order 0.5 (1.0 on additive noise)."""

    tableau = ButcherTableau(c=(0,), a=((),), b=(1,), order=1)
    strong_order = 0.5
    interpretation = "ito"


class Midpoint(AbstractExplicitRungeKutta):
    """The explicit midpoint method. Order 2.

    On an SDE it converges to the Stratonovich solution: strong order 0.5 in general, 1.0 on
    commutative noise."""

    tableau = ButcherTableau(c=(0, F(1, 2)), a=((), (F(1, 2),)), b=(0, 1), order=2)
    strong_order = 0.5
    interpretation = "stratonovich"


class Heun(AbstractExplicitRungeKutta):
    """Heun's method (the explicit trapezoidal rule). Order 2, no error estimate.

    On an SDE ``MultiTerm(ODETerm(f), ControlTerm(g, brownian))`` (the increment of a step is used
    by both stages) it is the stochastic Heun method: Stratonovich, strong order 0.5 in general and
    1.0 on commutative noise (diagonal, scalar, additive, or commuting matrix noise)."""

    tableau = ButcherTableau(c=(0, 1), a=((), (1,)), b=(F(1, 2), F(1, 2)), order=2)
    strong_order = 0.5
    interpretation = "stratonovich"


class Ralston(AbstractExplicitRungeKutta):
    """Ralston's second-order method (minimal error bound among two-stage methods). Order 2."""

    tableau = ButcherTableau(c=(0, F(2, 3)), a=((), (F(2, 3),)), b=(F(1, 4), F(3, 4)), order=2)


class Heun3(AbstractExplicitRungeKutta):
    """Heun's third-order method. Order 3."""

    tableau = ButcherTableau(
        c=(0, F(1, 3), F(2, 3)),
        a=((), (F(1, 3),), (0, F(2, 3))),
        b=(F(1, 4), 0, F(3, 4)),
        order=3,
    )


class RK4(AbstractExplicitRungeKutta):
    """The classic fourth-order Runge–Kutta method. (torchdiffeq's ``"rk4"`` is :class:`RK38`.)"""

    tableau = ButcherTableau(
        c=(0, F(1, 2), F(1, 2), 1),
        a=((), (F(1, 2),), (0, F(1, 2)), (0, 0, 1)),
        b=(F(1, 6), F(1, 3), F(1, 3), F(1, 6)),
        order=4,
    )


class RK38(AbstractExplicitRungeKutta):
    """Kutta's 3/8 rule, a fourth-order method (torchdiffeq's ``"rk4"``)."""

    tableau = ButcherTableau(
        c=(0, F(1, 3), F(2, 3), 1),
        a=((), (F(1, 3),), (F(-1, 3), 1), (1, -1, 1)),
        b=(F(1, 8), F(3, 8), F(3, 8), F(1, 8)),
        order=4,
    )


class HeunEuler(AbstractExplicitRungeKutta):
    """Heun's method with an embedded Euler method: the simplest adaptive pair, 2(1).

    On an SDE it is :class:`Heun` (Stratonovich) with an error estimate of local order 1 (1.5 on
    additive noise; see :meth:`~AbstractSolver.error_order_for`), so adaptive steps work with a
    :class:`~torchnde.VirtualBrownianTree` path (they converge for commutative noise)."""

    strong_order = 0.5
    interpretation = "stratonovich"

    tableau = ButcherTableau(
        c=(0, 1),
        a=((), (1,)),
        b=(F(1, 2), F(1, 2)),
        b_hat=(1, 0),
        order=2,
        embedded_order=1,
    )


class Fehlberg2(AbstractExplicitRungeKutta):
    """Fehlberg's low-order pair RKF1(2) with the second-order solution propagated. Order 2,
    embedded order 1, three stages."""

    tableau = ButcherTableau(
        c=(0, F(1, 2), 1),
        a=((), (F(1, 2),), (F(1, 256), F(255, 256))),
        b=(F(1, 512), F(255, 256), F(1, 512)),
        b_hat=(F(1, 256), F(255, 256), 0),
        order=2,
        embedded_order=1,
    )


class Bosh3(AbstractExplicitRungeKutta):
    """The Bogacki–Shampine 3(2) pair (MATLAB's ``ode23``), first same as last. Order 3."""

    tableau = ButcherTableau(
        c=(0, F(1, 2), F(3, 4), 1),
        a=((), (F(1, 2),), (0, F(3, 4)), (F(2, 9), F(1, 3), F(4, 9))),
        b=(F(2, 9), F(1, 3), F(4, 9), 0),
        b_hat=(F(7, 24), F(1, 4), F(1, 3), F(1, 8)),
        order=3,
        embedded_order=2,
    )
