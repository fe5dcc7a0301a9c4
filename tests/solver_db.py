"""The solver database: one row per method drives the generic solver tests.

Adding a method is adding one row to ``METHODS``. Each row states the theory independently of the
class (the order of the propagated solution, the local order of the embedded error estimate, whether
the tableau is first-same-as-last, the order of the dense output), and the tests check both that the
class declares the same values and that the numbers bear them out.

Also here: the smooth nonlinear problem with a known solution that the order tests use, and the
slope fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

import torchnde


@dataclass(frozen=True)
class Method:
    """The theory of one method.

    Attributes:
        cls: the solver class.
        order: order of convergence of the propagated solution (global error ``O(h^order)``).
        error_order: local order of the error estimate (``embedded order + 1``: the estimate of one
            step is ``O(h^error_order)``), ``None`` without an embedded method.
        fsal: whether the last stage is ``f(t1, y1)`` (first same as last).
        dense_order: order of the interpolant (local interpolation error ``O(h^(dense_order+1))``
            given exact step data); cubic Hermite, the fallback, has order 3.
    """

    cls: type
    order: int
    error_order: int | None
    fsal: bool
    dense_order: int
    implicit: bool = False
    #: a Rosenbrock (linearly implicit) method: no tableau of Butcher's kind and no Newton
    #: iteration; tested on its own terms in test_rosenbrock.py
    rosenbrock: bool = False

    @property
    def name(self) -> str:
        return self.cls.__name__

    @property
    def adaptive(self) -> bool:
        return self.error_order is not None

    def make(self):
        """An instance for tests of the discretisation: an implicit method solves its stages to
        near rounding (a tight Newton tolerance), so its order shows down to the float64 floor
        rather than at the default iteration tolerance."""
        if self.implicit and not self.rosenbrock:
            return self.cls(nonlinear=torchnde.Chord(rtol=1e-13, atol=1e-15, max_iters=30))
        return self.cls()

    @property
    def local_dense_order(self) -> int:
        """Order of the dense output after one step from exact data: the interpolant is exact to
        ``dense_order`` but sits on ``y1``, whose local error is ``O(h^(order+1))``."""
        return min(self.order, self.dense_order) + 1

    @property
    def stages(self) -> int:
        return self.cls.tableau.stages

    @property
    def nfe_per_step(self) -> int:
        """Vector-field evaluations per step: every stage but the first (reused from the previous
        step's end) plus ``f(t1, y1)``, which for an FSAL tableau is the last stage."""
        return self.stages - 1 + (0 if self.fsal else 1)


def _optional(name: str) -> type | None:
    return getattr(torchnde, name, None)


_ROWS: list[tuple[str, int, int | None, bool, int]] = [
    # name, order, error_order, fsal, dense_order
    ("Euler", 1, None, False, 3),
    ("Midpoint", 2, None, False, 3),
    ("Heun", 2, None, False, 3),
    ("Ralston", 2, None, False, 3),
    ("Heun3", 3, None, False, 3),
    ("RK4", 4, None, False, 3),
    ("RK38", 4, None, False, 3),
    ("HeunEuler", 2, 2, False, 3),
    ("Fehlberg2", 2, 2, False, 3),
    ("Bosh3", 3, 3, True, 3),
    ("Dopri5", 5, 5, True, 4),
    ("Tsit5", 5, 5, True, 4),
    # DOP853 with its fifth-order embedded estimate and a sixth-order dense output from its stages
    ("Dopri8", 8, 6, False, 6),
]

#: diagonally implicit methods (stiffly accurate ESDIRK, cubic Hermite dense output)
_IMPLICIT_ROWS: list[tuple[str, int, int | None, bool, int]] = [
    ("ImplicitEuler", 1, 2, True, 3),
    ("Kvaerno3", 3, 3, True, 3),
    ("Kvaerno4", 4, 4, True, 3),
    ("Kvaerno5", 5, 5, True, 3),
]

#: Rosenbrock methods (one linear solve per stage, no iteration); dense order: Rosenbrock23's own
#: second-order interpolant (Shampine & Reichelt), Rodas5P's fourth-order one
_ROSENBROCK_ROWS: list[tuple[str, int, int | None, bool, int]] = [
    ("Rosenbrock23", 2, 3, True, 2),
    ("Rodas5P", 5, 5, False, 4),
]

METHODS: list[Method] = [
    Method(cls, order, error_order, fsal, dense, implicit)
    for rows, implicit in ((_ROWS, False), (_IMPLICIT_ROWS, True))
    for name, order, error_order, fsal, dense in rows
    if (cls := _optional(name)) is not None
]
ROSENBROCK: list[Method] = [
    Method(cls, order, error_order, fsal, dense, implicit=True, rosenbrock=True)
    for name, order, error_order, fsal, dense in _ROSENBROCK_ROWS
    if (cls := _optional(name)) is not None
]
EXPLICIT: list[Method] = [m for m in METHODS if not m.implicit]
IMPLICIT: list[Method] = [m for m in METHODS if m.implicit]

ADAPTIVE: list[Method] = [m for m in METHODS if m.adaptive]


def by_name(name: str) -> Method:
    for m in METHODS:
        if m.name == name:
            return m
    raise KeyError(name)


def ids(methods: Sequence[Method]) -> list[str]:
    return [m.name for m in methods]


# ------------------------------------------------------------------------------------------------
# the order-test problems: smooth, nonlinear, with known solutions. Each vector field works unbatched
# (``t`` 0-dim, ``y`` (2,)) and batched (``t`` (B,), ``y`` (B, 2)); ``exact(t)`` maps any shape of
# ``t`` to ``t.shape + (2,)``.
#
# Two problems, because an observed slope can sit *above* the order on one problem (a leading error
# coefficient that nearly vanishes for it: DOP853 shows ~9 on the logistic problem within the range
# float64 resolves, Tsit5 ~5.5 on the second), but never persistently below it.


@dataclass(frozen=True)
class OrderProblem:
    name: str
    vf: Callable
    exact: Callable
    y0: tuple[float, float]
    t1: float


def _logistic_vf(t, y, args):
    rate = (1 + t)[..., None] if t.ndim else 1 + t
    return rate * y * (1 - y)


def _logistic_exact(t):
    t = torch.as_tensor(t, dtype=torch.float64)
    s = t + t * t / 2
    c = torch.tensor([1.0, 3.0], dtype=torch.float64)
    return 1 / (1 + c * torch.exp(-s)[..., None])


def _sech_vf(t, y, args):
    u, v = y[..., 0], y[..., 1]
    return torch.stack([u * v, -(u**2)], dim=-1)


def _sech_exact(t):
    t = torch.as_tensor(t, dtype=torch.float64)
    return torch.stack([1 / torch.cosh(t), -torch.tanh(t)], dim=-1)


#: two logistic equations with a growing rate, ``y_i' = (1 + t) y_i (1 - y_i)``:
#: ``y_i = 1 / (1 + c_i exp(-(t + t²/2)))`` with ``c = (1, 3)``
LOGISTIC = OrderProblem("logistic", _logistic_vf, _logistic_exact, (0.5, 0.25), 2.0)
#: ``u' = u v, v' = -u²``: ``u = sech t, v = -tanh t``
SECH = OrderProblem("sech", _sech_vf, _sech_exact, (1.0, 0.0), 4.0)
ORDER_PROBLEMS = (LOGISTIC, SECH)


# ------------------------------------------------------------------------------------------------
# slopes


def observed_order(
    hs: Sequence[float], errors: Sequence[float], *, floor: float, ceiling: float = 1e-2, points=4
) -> tuple[float, list[tuple[float, float]]]:
    """The least-squares log–log slope of error against step size, on the ``points`` smallest step
    sizes whose error lies in ``(floor, ceiling)``: below ``ceiling`` the expansion has settled,
    above the round-off ``floor`` the error is truncation error.

    Returns the slope and the ``(h, error)`` pairs it was fitted on (for assertion messages).
    """
    data = sorted(((h, e) for h, e in zip(hs, errors) if floor < e < ceiling), reverse=True)
    data = data[-points:]
    if len(data) < 3:
        raise AssertionError(
            f"too few step sizes with errors in ({floor:g}, {ceiling:g}) to fit a slope: "
            f"{list(zip(hs, errors))}"
        )
    xs = [math.log(h) for h, _ in data]
    ys = [math.log(e) for _, e in data]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return slope, data
