"""Butcher tableaux, checked when built, and polynomial interpolants on top of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from numbers import Rational

__all__ = [
    "ButcherTableau",
    "Interpolant",
    "hermite_interpolant",
    "poly_add",
    "poly_mul",
    "poly_scale",
    "rk_interpolant",
]

Number = Fraction | float | int

_FLOAT_TOL = 1e-12


def _close(x: Number, y: Number, scale: float = 1.0) -> bool:
    if isinstance(x, Rational) and isinstance(y, Rational):
        return x == y
    return abs(float(x) - float(y)) <= _FLOAT_TOL * max(1.0, scale)


def _as_number(x: Number) -> Number:
    if isinstance(x, (Fraction, float)):
        return x
    if isinstance(x, int):
        return Fraction(x)
    raise TypeError(f"tableau coefficients must be Fraction, int or float, got {type(x).__name__}")


@dataclass(frozen=True)
class ButcherTableau:
    """A Runge–Kutta method as data: explicit, or diagonally implicit (DIRK, SDIRK, ESDIRK).

    Args:
        c: nodes.
        a: the lower-triangular matrix as rows. Row ``i`` has ``i`` entries (an explicit stage)
            or ``i + 1`` (its last entry is the diagonal ``a_ii``: stage ``i`` solves
            ``z_i = y0 + Σ_{j<i} a_ij k_j + a_ii k_i`` with ``k_i = dt·f(t0 + c_i dt, z_i)``).
        b: weights of the propagated solution (sum to 1).
        order: the order of the propagated solution.
        b_hat: weights of the embedded solution, if the method has one.
        embedded_order: the order of the embedded solution.
        a_predictor: for a diagonally implicit method, optional rows (``i`` entries for stage
            ``i``) predicting implicit stage ``i``'s ``k_i`` from the previous stages' as
            ``Σ_{j<i} p_ij k_j`` — the first guess of its nonlinear solve; each row sums to 1 (an
            affine combination). Without them the guess is the previous stage's ``k``.

    Checked when built: each row of ``a`` (with its diagonal) sums to its ``c``, ``b`` sums to 1,
    the error weights ``b - b_hat`` sum to 0, predictor rows sum to 1. Derived, not declared:
    whether the method is FSAL (first same as last: the last stage is ``f(t1, y1)`` and the first
    stage is explicit, so it serves the next step) and stiffly accurate (``y1`` is the last stage,
    the last row of ``a`` equals ``b``). Rational coefficients are exact fractions, so these checks
    are exact for them.
    """

    c: tuple[Number, ...]
    a: tuple[tuple[Number, ...], ...]
    b: tuple[Number, ...]
    order: int
    b_hat: tuple[Number, ...] | None = None
    embedded_order: int | None = None
    a_predictor: tuple[tuple[Number, ...], ...] | None = None
    fsal: bool = field(init=False)
    diagonal: tuple[Number, ...] = field(init=False)
    stiffly_accurate: bool = field(init=False)

    def __post_init__(self) -> None:
        c = tuple(_as_number(x) for x in self.c)
        rows = tuple(tuple(_as_number(x) for x in row) for row in self.a)
        b = tuple(_as_number(x) for x in self.b)
        b_hat = None if self.b_hat is None else tuple(_as_number(x) for x in self.b_hat)
        stages = len(c)
        if len(rows) != stages or len(b) != stages:
            raise ValueError(
                f"tableau: c, a and b must all have one entry per stage ({stages}), got "
                f"len(a)={len(rows)}, len(b)={len(b)}"
            )
        if all(len(row) == i for i, row in enumerate(rows)) and c[0] != 0:
            raise ValueError(f"tableau: an explicit method has c[0] == 0, got {c[0]}")
        lower, diagonal = [], []
        for i, row in enumerate(rows):
            if len(row) not in (i, i + 1):
                raise ValueError(
                    f"tableau: row {i} of a must have {i} entries (explicit stage) or {i + 1} "
                    f"(with its diagonal entry), got {len(row)}"
                )
            lower.append(row[:i])
            diagonal.append(row[i] if len(row) == i + 1 else Fraction(0))
            if not _close(sum(row), c[i], sum(abs(float(x)) for x in row)):
                raise ValueError(
                    f"tableau: row {i} of a sums to {float(sum(row))}, not c[{i}]={c[i]}"
                )
        if not _close(sum(b), 1):
            raise ValueError(f"tableau: the weights b sum to {float(sum(b))}, not 1")
        if b_hat is not None:
            if len(b_hat) != stages:
                raise ValueError("tableau: b_hat must have one entry per stage")
            if not _close(sum(b_hat), 1):
                raise ValueError(f"tableau: the embedded weights sum to {float(sum(b_hat))}, not 1")
            if self.embedded_order is None:
                raise ValueError("tableau: give `embedded_order` with `b_hat`")
        predictor = None
        if self.a_predictor is not None:
            predictor = tuple(tuple(_as_number(x) for x in row) for row in self.a_predictor)
            if len(predictor) != stages:
                raise ValueError("tableau: a_predictor must have one row per stage")
            for i, row in enumerate(predictor):
                if len(row) != i:
                    raise ValueError(f"tableau: row {i} of a_predictor must have {i} entries")
                if i and not _close(sum(row), 1, sum(abs(float(x)) for x in row)):
                    raise ValueError(
                        f"tableau: row {i} of a_predictor sums to {float(sum(row))}, not 1 (it "
                        "predicts a stage's k as an affine combination of the previous ones)"
                    )
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "a", tuple(lower))
        object.__setattr__(self, "diagonal", tuple(diagonal))
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "b_hat", b_hat)
        object.__setattr__(self, "a_predictor", predictor)
        last = lower[-1] + (diagonal[-1],)
        stiffly_accurate = _close(c[-1], 1) and all(_close(x, y) for x, y in zip(last, b))
        object.__setattr__(self, "stiffly_accurate", stiffly_accurate)
        # the last stage is f(t1, y1) and the next step's first stage is explicit: it is reused
        fsal = stages > 1 and stiffly_accurate and diagonal[0] == 0
        object.__setattr__(self, "fsal", fsal)

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def implicit(self) -> bool:
        """Whether some stage is implicit (a non-zero diagonal entry)."""
        return any(d != 0 for d in self.diagonal)

    @property
    def b_error(self) -> tuple[Number, ...] | None:
        """Weights of the error estimate ``y1 - y1_embedded = Σ (b - b_hat)_j k_j``."""
        if self.b_hat is None:
            return None
        return tuple(x - y for x, y in zip(self.b, self.b_hat))


# ----------------------------------------------------------------------------------------------
# Interpolants. Rows of the dense information of one step are, in this order:
#     y0, y1, k_1, ..., k_s, k_end
# where k_j = prod(vf_j, control) includes the step (for an ODE k_j = dt · f_j) and
# k_end = prod(vf(t1, y1), control). An interpolant is a matrix M (rows × (degree + 1)) with
#     y(t0 + θ dt) = Σ_p θ^p Σ_r M[r][p] row_r.


Poly = list  # polynomial coefficients, lowest degree first


def poly_add(p: Poly, q: Poly) -> Poly:
    n = max(len(p), len(q))
    return [(p[i] if i < len(p) else 0) + (q[i] if i < len(q) else 0) for i in range(n)]


def poly_mul(p: Poly, q: Poly) -> Poly:
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, x in enumerate(p):
        for j, y in enumerate(q):
            out[i + j] += x * y
    return out


def poly_scale(p: Poly, s: Number) -> Poly:
    return [x * s for x in p]


@dataclass(frozen=True)
class Interpolant:
    """Dense output of a step as a polynomial in ``θ ∈ [0, 1]``: ``matrix[r][p]`` is the
    coefficient of ``θ^p`` for row ``r`` of ``(y0, y1, k_1, ..., k_s, k_end)``."""

    matrix: tuple[tuple[Number, ...], ...]
    order: int

    @property
    def degree(self) -> int:
        return len(self.matrix[0]) - 1

    @classmethod
    def from_row_polys(cls, stages: int, polys: dict[int, Poly], order: int) -> Interpolant:
        rows = stages + 3
        degree = max(len(p) for p in polys.values()) - 1
        matrix = []
        for r in range(rows):
            p = polys.get(r, [])
            matrix.append(
                tuple(Fraction(x) if not isinstance(x, float) else x for x in p)
                + (Fraction(0),) * (degree + 1 - len(p))
            )
        return cls(tuple(matrix), order)

    def check(self, tableau: ButcherTableau) -> None:
        """An interpolant must give y0 at θ=0 and y1 at θ=1."""
        s = tableau.stages
        at0 = [row[0] for row in self.matrix]
        at1 = [sum(row) for row in self.matrix]
        # θ = 0: weight 1 on y0, nothing else.
        if not (_close(at0[0], 1) and all(_close(x, 0) for x in at0[1:])):
            raise ValueError("interpolant: y(θ=0) must equal y0")
        # θ = 1: y0 + Σ b_j k_j, writing y1 = y0 + Σ b_j k_j.
        w_y0 = at1[0] + at1[1]
        w_k = [at1[2 + j] + at1[1] * tableau.b[j] for j in range(s)]
        w_end = at1[s + 2]
        if tableau.fsal:
            w_k[-1] += w_end
            w_end = 0
        ok = _close(w_y0, 1) and _close(w_end, 0)
        ok = ok and all(_close(w, bj, 1e3) for w, bj in zip(w_k, tableau.b))
        if not ok:
            raise ValueError("interpolant: y(θ=1) must equal y1")


def hermite_interpolant(stages: int) -> Interpolant:
    """Cubic Hermite interpolation through ``(y0, dt·f0)`` and ``(y1, dt·f1)``; third order."""
    polys = {
        0: [1, 0, -3, 2],  # y0
        1: [0, 0, 3, -2],  # y1
        2: [0, 1, -2, 1],  # k_1 = dt·f(t0, y0)
        stages + 2: [0, 0, -1, 1],  # k_end = dt·f(t1, y1)
    }
    return Interpolant.from_row_polys(stages, polys, order=3)


def rk_interpolant(stages: int, weights: Sequence[Poly], order: int) -> Interpolant:
    """The classical form ``y(θ) = y0 + Σ_j b_j(θ) k_j`` from per-stage polynomials ``b_j(θ)``."""
    polys: dict[int, Poly] = {0: [Fraction(1)]}
    for j, p in enumerate(weights):
        if any(x != 0 for x in p):
            polys[2 + j] = list(p)
    return Interpolant.from_row_polys(stages, polys, order)
