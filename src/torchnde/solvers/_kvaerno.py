"""L-stable diagonally implicit methods for stiff ODEs: implicit Euler and Kværnø's stiffly
accurate ESDIRK pairs.

Coefficients of the Kvaerno methods from A. Kværnø, *Singly diagonally implicit Runge–Kutta
methods with an explicit first stage*, BIT 44 (2004) 489–502 (the 3/2 and 4/3 pairs in closed
form in ``γ``, the 5/4 pair as published), as tabulated in diffrax, with the stage predictors of
OrdinaryDiffEq.jl/diffrax (the first guess of each stage's ``k`` as a combination of the previous
stages' ``k``, weights summing to 1). Each is stiffly accurate (``y1`` is the last stage) with an
explicit first stage, so the last stage's ``f`` starts the next step (FSAL), and its embedded
solution is the penultimate stage.
"""

from __future__ import annotations

from ._implicit import AbstractDIRK
from ._tableau import ButcherTableau

__all__ = ["ImplicitEuler", "Kvaerno3", "Kvaerno4", "Kvaerno5"]


class ImplicitEuler(AbstractDIRK):
    """The implicit (backward) Euler method, ``y1 = y0 + h f(t1, y1)``: order 1, L-stable. The
    error estimate is the difference with the explicit Euler step (local order 2), so it runs
    under :class:`~torchnde.PIDController`; written as a two-stage ESDIRK whose first, explicit
    stage is the previous step's last (no extra evaluation)."""

    tableau = ButcherTableau(
        c=(0, 1), a=((), (0, 1)), b=(0, 1), b_hat=(1, 0), order=1, embedded_order=1
    )


def _kvaerno3() -> ButcherTableau:
    g = 0.43586652150
    a31 = (-4 * g**2 + 6 * g - 1) / (4 * g)
    a32 = (-2 * g + 1) / (4 * g)
    a41 = (6 * g - 1) / (12 * g)
    a42 = -1 / ((24 * g - 12) * g)
    a43 = (-6 * g**2 + 6 * g - 1) / (6 * g - 3)
    theta = 1 / (2 * g)
    return ButcherTableau(
        c=(0, 2 * g, 1, 1),
        a=((), (g, g), (a31, a32, g), (a41, a42, a43, g)),
        b=(a41, a42, a43, g),
        b_hat=(a31, a32, g, 0),
        order=3,
        embedded_order=2,
        a_predictor=((), (1,), (1 - theta, theta), (a31, a32, g)),
    )


def _kvaerno4() -> ButcherTableau:
    g = 0.5728160625

    def poly(*coeffs: float) -> float:
        value = 0.0
        for x in coeffs:
            value = value * g + x
        return value

    a31 = poly(144, -180, 81, -15, 1) * g / poly(12, -6, 1) ** 2
    a32 = poly(-36, 39, -15, 2) * g / poly(12, -6, 1) ** 2
    a41 = poly(-144, 396, -330, 117, -18, 1) / (12 * g**2 * poly(12, -9, 2))
    a42 = poly(72, -126, 69, -15, 1) / (12 * g**2 * poly(3, -1))
    a43 = (poly(-6, 6, -1) * poly(12, -6, 1) ** 2) / (12 * g**2 * poly(12, -9, 2) * poly(3, -1))
    a51 = poly(288, -312, 120, -18, 1) / (48 * g**2 * poly(12, -9, 2))
    a52 = poly(24, -12, 1) / (48 * g**2 * poly(3, -1))
    a53 = -(poly(12, -6, 1) ** 3) / (48 * g**2 * poly(3, -1) * poly(12, -9, 2) * poly(6, -6, 1))
    a54 = poly(-24, 36, -12, 1) / poly(24, -24, 4)
    c2, c3 = 2 * g, g + a31 + a32
    theta1, theta2 = c3 / c2, (1 - c2) / (c3 - c2)
    return ButcherTableau(
        c=(0, c2, c3, 1, 1),
        a=((), (g, g), (a31, a32, g), (a41, a42, a43, g), (a51, a52, a53, a54, g)),
        b=(a51, a52, a53, a54, g),
        b_hat=(a41, a42, a43, g, 0),
        order=4,
        embedded_order=3,
        a_predictor=((), (1,), (1 - theta1, theta1), (0, 1 - theta2, theta2), (a41, a42, a43, g)),
    )


def _kvaerno5() -> ButcherTableau:
    g = 0.26
    a = (
        (),
        (g, g),
        (0.13, 0.84033320996790809, g),
        (0.22371961478320505, 0.47675532319799699, -0.06470895363112615, g),
        (0.16648564323248321, 0.10450018841591720, 0.03631482272098715, -0.13090704451073998, g),
        (0.13855640231268224, 0, -0.04245337201752043, 0.02446657898003141, 0.61943039072480676, g),
        (
            0.13659751177640291,
            0,
            -0.05496908796538376,
            -0.04118626728321046,
            0.62993304899016403,
            0.06962479448202728,
            g,
        ),
    )
    c = (0, 0.52, 1.230333209967908, 0.8957659843500759, 0.43639360985864756, 1.0, 1.0)
    predictor = (
        (),
        (1.0,),
        (-1.366025403784441, 2.3660254037844357),
        (-0.19650552613122207, 0.8113579546496623, 0.38514757148155954),
        (0.10375304369958693, 0.937994698066431, -0.04174774176601781, 0),
        (-0.17281112873898072, 0.6235784481025847, 0.5492326806363959, 0, 0),
        a[5],
    )
    return ButcherTableau(
        c=c, a=a, b=a[6], b_hat=a[5] + (0,), order=5, embedded_order=4, a_predictor=predictor
    )


class Kvaerno3(AbstractDIRK):
    """Kværnø's 3(2) ESDIRK method: order 3, embedded order 2, four stages (three implicit, one
    per step reused), L-stable and stiffly accurate (Kværnø 2004)."""

    tableau = _kvaerno3()


class Kvaerno4(AbstractDIRK):
    """Kværnø's 4(3) ESDIRK method: order 4, embedded order 3, five stages, L-stable and stiffly
    accurate (Kværnø 2004)."""

    tableau = _kvaerno4()


class Kvaerno5(AbstractDIRK):
    """Kværnø's 5(4) ESDIRK method: order 5, embedded order 4, seven stages (six implicit),
    L-stable and stiffly accurate (Kværnø 2004). The default choice for stiff problems at
    moderate to tight tolerances. Some stages lie past ``t1`` (``c`` up to 1.23): the vector field
    is evaluated slightly beyond the step."""

    tableau = _kvaerno5()
