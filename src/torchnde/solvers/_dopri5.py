"""The Dormand–Prince 5(4) pair with its fourth-order continuous extension.

Dormand & Prince, *A family of embedded Runge–Kutta formulae*, J. Comp. Appl. Math. 6 (1980);
dense output from Hairer, Nørsett & Wanner, *Solving ODEs I* (1993), §II.6 (the ``CONTD5``
formula of their DOPRI5 code).
"""

from __future__ import annotations

from fractions import Fraction as F

from ._runge_kutta import AbstractExplicitRungeKutta
from ._tableau import ButcherTableau, Interpolant, poly_add, poly_mul, poly_scale

__all__ = ["Dopri5"]

_B = (F(35, 384), 0, F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), 0)

_TABLEAU = ButcherTableau(
    c=(0, F(1, 5), F(3, 10), F(4, 5), F(8, 9), 1, 1),
    a=(
        (),
        (F(1, 5),),
        (F(3, 40), F(9, 40)),
        (F(44, 45), F(-56, 15), F(32, 9)),
        (F(19372, 6561), F(-25360, 2187), F(64448, 6561), F(-212, 729)),
        (F(9017, 3168), F(-355, 33), F(46732, 5247), F(49, 176), F(-5103, 18656)),
        _B[:6],
    ),
    b=_B,
    b_hat=(
        F(5179, 57600),
        0,
        F(7571, 16695),
        F(393, 640),
        F(-92097, 339200),
        F(187, 2100),
        F(1, 40),
    ),
    order=5,
    embedded_order=4,
)

# y(θ) = y0 + θ r2 + θ(1-θ) r3 + θ²(1-θ) r4 + θ²(1-θ)² r5 with r2 = y1 - y0, r3 = k1 - r2,
# r4 = r2 - k7 - r3 and r5 = Σ d_j k_j.
_D = (
    F(-12715105075, 11282082432),
    0,
    F(87487479700, 32700410799),
    F(-10690763975, 1880347072),
    F(701980252875, 199316789632),
    F(-1453857185, 822651844),
    F(69997945, 29380423),
)


def _interpolant() -> Interpolant:
    stages = 7
    theta = [0, 1]
    one_minus = [1, -1]
    p2 = theta
    p3 = poly_mul(theta, one_minus)
    p4 = poly_mul(poly_mul(theta, theta), one_minus)
    p5 = poly_mul(p4, one_minus)
    # rows: 0 = y0, 1 = y1, 2..8 = k1..k7; coefficients of each row in r2..r5
    y0 = {"r2": -1, "r3": 1, "r4": -2, "r5": 0}
    y1 = {"r2": 1, "r3": -1, "r4": 2, "r5": 0}
    polys: dict[int, list] = {0: [1]}
    for row, coeffs in ((0, y0), (1, y1)):
        poly = polys.get(row, [])
        for name, p in (("r2", p2), ("r3", p3), ("r4", p4)):
            poly = poly_add(poly, poly_scale(p, coeffs[name]))
        polys[row] = poly
    for j in range(stages):
        poly = poly_scale(p5, _D[j])
        if j == 0:  # k1 enters r3 (+1) and r4 (-1)
            poly = poly_add(poly, poly_add(p3, poly_scale(p4, -1)))
        if j == stages - 1:  # k7 enters r4 (-1)
            poly = poly_add(poly, poly_scale(p4, -1))
        polys[2 + j] = poly
    return Interpolant.from_row_polys(stages, polys, order=4)


class Dopri5(AbstractExplicitRungeKutta):
    """Dormand–Prince 5(4): order 5 with an embedded order-4 error estimate, first same as last,
    with its own fourth-order dense output. The default adaptive solver of most libraries
    (torchdiffeq's ``"dopri5"``, SciPy's ``RK45``)."""

    tableau = _TABLEAU
    interpolant = _interpolant()
