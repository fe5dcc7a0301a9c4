"""Tsitouras' 5(4) pair with its fourth-order continuous extension.

Ch. Tsitouras, *Runge–Kutta pairs of order 5(4) satisfying only the first column simplifying
assumption*, Comput. Math. Appl. 62(2) (2011) 770–775. The nodes ``c2, c3, c4`` and the weight
``b2`` are exact decimals (written as fractions); the other coefficients are not rational numbers
of small height and are written as floats, rounded from their 30-plus-digit values. The
dense-output polynomials ``b_j(θ)`` are the paper's, in the expanded form (16 digits) used by
OrdinaryDiffEq.jl's ``Tsit5``.
"""

from __future__ import annotations

from fractions import Fraction as F

from ._runge_kutta import AbstractExplicitRungeKutta
from ._tableau import ButcherTableau, Interpolant, rk_interpolant

__all__ = ["Tsit5"]

_B = (
    0.09646076681806522951816731316513,
    F(1, 100),
    0.4798896504144995747752495322906,
    1.379008574103741893192274821857,
    -3.290069515436080679901047585711,
    2.324710524099773982415355918399,
    0,
)

# The embedded fourth-order weights b̂ of the paper. (OrdinaryDiffEq.jl stores the error weights
# as ``btilde = b̂ - b``, diffrax as ``b - b̂``; the tableau takes b̂ itself.)
_B_HAT = (
    0.09468075576583945807478876255759,
    0.009183565540343253096776363936645,
    0.4877705284247615707855642599631,
    1.234297566930478985655109673884,
    -2.707712349983525454881109975059,
    1.866628418170587035753719399566,
    F(1, 66),
)

_TABLEAU = ButcherTableau(
    c=(0, F(161, 1000), F(327, 1000), F(9, 10), 0.9800255409045096857298102862870, 1, 1),
    a=(
        (),
        (F(161, 1000),),
        (-0.008480655492356988544426874250231, 0.3354806554923569885444268742502),
        (
            2.897153057105493432130432594193,
            -6.359448489975074843148159912384,
            4.362295432869581411017727318191,
        ),
        (
            5.325864828439256604428877920841,
            -11.74888356406282787774717033979,
            7.495539342889836208304604784564,
            -0.09249506636175524925650207933207,
        ),
        (
            5.861455442946420028659251486983,
            -12.92096931784710929170611868178,
            8.159367898576158643180400794539,
            -0.07158497328140099722453054252583,
            -0.02826905039406838290900305721271,
        ),
        _B[:6],
    ),
    b=_B,
    b_hat=_B_HAT,
    order=5,
    embedded_order=4,
)

# y(t0 + θ dt) = y0 + Σ_j b_j(θ) k_j; coefficients of θ^0 … θ^4. Each b_j(1) = b_j, and
# Σ_j b_j'(1) k_j = k_7 = dt f(t1, y1), so the dense output is C¹ across steps.
_WEIGHTS = (
    (0, 1, -2.763706197274826, 2.9132554618219126, -1.0530884977290216),
    (0, 0, 0.1317, -0.2234, 0.1017),
    (0, 0, 3.9302962368947516, -5.941033872131505, 2.490627285651253),
    (0, 0, -12.411077166933676, 30.33818863028232, -16.548102889244902),
    (0, 0, 37.50931341651104, -88.1789048947664, 47.37952196281928),
    (0, 0, -27.896526289197286, 65.09189467479366, -34.87065786149661),
    (0, 0, F(3, 2), -4, F(5, 2)),
)


def _interpolant() -> Interpolant:
    return rk_interpolant(7, [list(w) for w in _WEIGHTS], order=4)


class Tsit5(AbstractExplicitRungeKutta):
    """Tsitouras' 5(4) pair: order 5 with an embedded order-4 error estimate, seven stages,
    first same as last (six vector-field evaluations per step), with its own fourth-order dense
    output.

    Tsitouras imposed only the first-column simplifying assumption (where Dormand–Prince pairs
    impose more) and spent the freedom on smaller principal error coefficients. The same cost
    per step as :class:`Dopri5`; the usual first choice for non-stiff problems in
    DifferentialEquations.jl and diffrax.

    Reference: Ch. Tsitouras, *Runge–Kutta pairs of order 5(4) satisfying only the first
    column simplifying assumption*, Comput. Math. Appl. 62(2) (2011) 770–775.
    """

    tableau = _TABLEAU
    interpolant = _interpolant()
