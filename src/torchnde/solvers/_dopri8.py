"""The Dormand–Prince 8(5,3) method of Hairer's DOP853, with a sixth-order dense output built from
its own stages.

Method: due to Dormand & Prince, as published in Hairer, Nørsett & Wanner, *Solving Ordinary
Differential Equations I* (2nd ed., Springer, 1993) and the authors' Fortran code ``dop853.f``,
from which the coefficients are taken. Several of them involve √6 (e.g.
``c4 = (12 - √24)/60``) and are written, as in ``dop853.f``, as 30-digit decimals; the rational
nodes are exact fractions.
"""

from __future__ import annotations

from fractions import Fraction as F

from ._runge_kutta import AbstractExplicitRungeKutta
from ._tableau import ButcherTableau, Interpolant

__all__ = ["Dopri8"]

_B = (
    5.42937341165687622380535766363e-2,
    0,
    0,
    0,
    0,
    4.45031289275240888144113950566,
    1.89151789931450038304281599044,
    -5.8012039600105847814672114227,
    3.1116436695781989440891606237e-1,
    -1.52160949662516078556178806805e-1,
    2.01365400804030348374776537501e-1,
    4.47106157277725905176885569043e-2,
)

# Embedded fifth-order weights b̂ = b - e5, with e5 = (er1, 0, 0, 0, 0, er6, ..., er12) the weights
# of DOP853's fifth-order error estimate.
_B_HAT = (
    0.04117368912237388150555,
    0,
    0,
    0,
    0,
    5.675469339128613322162,
    2.387276848971750574564,
    -7.465581142465571318429,
    0.6614932157077935760976,
    -0.4863400683755335575859,
    0.1194421943189146359091,
    0.06706592359165888577653,
)

_TABLEAU = ButcherTableau(
    c=(
        0,
        0.526001519587677318785587544488e-1,
        0.789002279381515978178381316732e-1,
        0.118350341907227396726757197510,
        0.281649658092772603273242802490,
        F(1, 3),
        F(1, 4),
        F(4, 13),
        F(127, 195),
        F(3, 5),
        F(6, 7),
        1,
    ),
    a=(
        (),
        (5.26001519587677318785587544488e-2,),
        (1.97250569845378994544595329183e-2, 5.91751709536136983633785987549e-2),
        (2.95875854768068491816892993775e-2, 0, 8.87627564304205475450678981324e-2),
        (
            2.41365134159266685502369798665e-1,
            0,
            -8.84549479328286085344864962717e-1,
            9.24834003261792003115737966543e-1,
        ),
        (
            3.7037037037037037037037037037e-2,
            0,
            0,
            1.70828608729473871279604482173e-1,
            1.25467687566822425016691814123e-1,
        ),
        (
            3.7109375e-2,
            0,
            0,
            1.70252211019544039314978060272e-1,
            6.02165389804559606850219397283e-2,
            -1.7578125e-2,
        ),
        (
            3.70920001185047927108779319836e-2,
            0,
            0,
            1.70383925712239993810214054705e-1,
            1.07262030446373284651809199168e-1,
            -1.53194377486244017527936158236e-2,
            8.27378916381402288758473766002e-3,
        ),
        (
            6.24110958716075717114429577812e-1,
            0,
            0,
            -3.36089262944694129406857109825,
            -8.68219346841726006818189891453e-1,
            2.75920996994467083049415600797e1,
            2.01540675504778934086186788979e1,
            -4.34898841810699588477366255144e1,
        ),
        (
            4.77662536438264365890433908527e-1,
            0,
            0,
            -2.48811461997166764192642586468,
            -5.90290826836842996371446475743e-1,
            2.12300514481811942347288949897e1,
            1.52792336328824235832596922938e1,
            -3.32882109689848629194453265587e1,
            -2.03312017085086261358222928593e-2,
        ),
        (
            -9.3714243008598732571704021658e-1,
            0,
            0,
            5.18637242884406370830023853209,
            1.09143734899672957818500254654,
            -8.14978701074692612513997267357,
            -1.85200656599969598641566180701e1,
            2.27394870993505042818970056734e1,
            2.49360555267965238987089396762,
            -3.0467644718982195003823669022,
        ),
        (
            2.27331014751653820792359768449,
            0,
            0,
            -1.05344954667372501984066689879e1,
            -2.00087205822486249909675718444,
            -1.79589318631187989172765950534e1,
            2.79488845294199600508499808837e1,
            -2.85899827713502369474065508674,
            -8.87285693353062954433549289258,
            1.23605671757943030647266201528e1,
            6.43392746015763530355970484046e-1,
        ),
    ),
    b=_B,
    b_hat=_B_HAT,
    order=8,
    embedded_order=5,
)

# Dense output y(t0 + θ dt) = y0 + Σ_j b_j(θ) k_j + b_end(θ) k_end, k_end = dt f(t1, y1);
# coefficients of θ^1 … θ^7. Stages 2–5 have b_j(θ) ≡ 0.
#
# Derivation (torchnde's own; DOP853's published seventh-order formula needs three extra stages).
# Degree-7 polynomials satisfying, for every θ, the continuous order conditions
# Σ_j b_j(θ) Φ_j(τ) = θ^|τ| / γ(τ) for all 37 rooted trees τ with |τ| ≤ 6 (no degree-7 choice
# reaches order 7: those conditions are inconsistent on these 13 rows), and b_j(1) = b_j,
# b_j'(0) = δ_j1, b_end'(1) = 1, b_j'(1) = 0 otherwise, so the dense output interpolates
# (y0, f0) and (y1, f1) and is C¹ across steps. That leaves four free parameters; they minimise
# the L²(0, 1) norm in θ of the 48 seventh-order defects plus 1e-15 times their squared size,
# a ridge that keeps the coefficients below ~450 (the unregularised optimum is 30% smaller in
# error and 50× larger in coefficients). Solved in 45-digit arithmetic from dop853.f's
# 30-digit coefficients, then rounded.
_DENSE = {
    1: (
        1.0,
        -6.024342093699554,
        16.774504363343663,
        -24.018094619748883,
        17.70589622905262,
        -5.953759444919484,
        0.5700893000882092,
    ),
    6: (
        49.48336234893202,
        46.61054679508848,
        -375.0933908100225,
        284.3418164974232,
        153.88973075947393,
        -154.78175269814275,
    ),
    7: (
        58.0838370375669,
        -197.21279934468348,
        286.88256205270756,
        -250.88420636581333,
        152.7933640596049,
        -47.771239540068045,
    ),
    8: (
        -106.30079242459773,
        178.1126805008437,
        0.6803183333860019,
        49.62465537094638,
        -322.845453342511,
        194.92738760192208,
    ),
    9: (
        -18.22132204994489,
        141.78196347173727,
        -335.1823387882479,
        303.5269231220822,
        -75.34992294794085,
        -16.244138440728108,
    ),
    10: (
        21.87550427810532,
        -179.36998459552,
        434.9817217766101,
        -397.58634816878504,
        97.26482135165563,
        22.682124408271484,
    ),
    11: (
        1.1851889965936382,
        -6.589122087514,
        9.371970460233142,
        -1.891608870817523,
        -2.492592466348355,
        0.6175293686571294,
    ),
    12: (
        1.2518972403776325,
        -5.663344658851194,
        7.377251595082478,
        -2.503794480755265,
        -0.4172990801258775,
    ),
}
_DENSE_END = (F(-4, 3), F(50, 9), -5, F(-7, 3), F(28, 9))


def _interpolant() -> Interpolant:
    stages = 12
    polys: dict[int, list] = {0: [1]}
    for j, coeffs in _DENSE.items():  # stage j (1-based) is row j + 1
        polys[j + 1] = [0.0, *coeffs] if j == 1 else [0.0, 0.0, *coeffs]
    polys[stages + 2] = [0, 0, *_DENSE_END]
    return Interpolant.from_row_polys(stages, polys, order=6)


class Dopri8(AbstractExplicitRungeKutta):
    """Dormand–Prince 8(5,3), Hairer's DOP853: order 8, twelve stages, with an embedded order-5
    error estimate and a sixth-order dense output. A step costs twelve vector-field evaluations
    (eleven new stages and ``f(t1, y1)``, which is the next step's first stage). For smooth
    problems at tight tolerances (rtol ≲ 1e-8) it takes far fewer steps than :class:`Dopri5`.

    **Error estimate.** DOP853 computes two embedded estimates, of orders 5 and 3, and combines
    them as ``err5² / sqrt(err5² + 0.01 err3²)``, which behaves like ``O(dt⁸)``. A
    :class:`ButcherTableau` carries one embedded solution, so this class uses the fifth-order
    one, ``b̂ = b - e5`` with DOP853's weights ``e5``: ``error_order = 6``. This estimate is more
    pessimistic than DOP853's combined one, so at a given tolerance the controller takes smaller
    steps than ``dop853.f`` (and SciPy's ``DOP853``) would, and the result is more accurate than
    asked (on a smooth test problem at ``rtol=1e-10``: about twice SciPy's evaluations, and a
    global error ~1e-3 of the tolerance where SciPy's is ~2 times it). (torchdiffeq's ``"dopri8"`` and diffrax's ``Dopri8`` are a different method:
    Prince & Dormand's 13-stage RK8(7)13M with a seventh-order embedding.)

    **Dense output: order 6.** DOP853's published seventh-order continuous extension needs three
    extra stages per step, which the generic stepper does not take. Instead the dense output is a
    degree-7 continuous extension of order 6 built only from the twelve stages and
    ``f(t1, y1)`` (see the derivation in the module): its error within a step is ``O(dt⁷)``
    where the step's own error is ``O(dt⁹)``, so at tight tolerances :meth:`Solution.evaluate`
    between steps is less accurate than the values at the steps. It matches ``f`` at both ends
    of every step, so the dense solution is continuously differentiable.

    Reference: E. Hairer, S. P. Nørsett & G. Wanner, *Solving Ordinary Differential Equations I:
    Nonstiff Problems* (2nd ed., Springer, 1993), and their code ``dop853.f`` (method due to
    Dormand & Prince).
    """

    tableau = _TABLEAU
    interpolant = _interpolant()
