"""Rosenbrock (linearly implicit) methods for stiff ODEs: one Jacobian and one LU factorisation
per step, no Newton iteration.

A Rosenbrock method replaces the nonlinear stage equations of an implicit Runge–Kutta method by
linear ones with the exact Jacobian ``J = ∂f/∂y`` at the step's start. In the transformed
variables of Hairer & Wanner (*Solving Ordinary Differential Equations II*, 2nd ed. 1996, §IV.7,
eq. 7.4') stage ``i`` solves

    (I/(γh) - J) u_i = f(t0 + α_i h, y0 + Σ_{j<i} a_ij u_j) + Σ_{j<i} (c_ij/h) u_j + γ_i h f_t,

with ``f_t = ∂f/∂t`` at ``(t0, y0)``, and ``y1 = y0 + Σ m_i u_i``, the embedded solution
``ŷ1 = y0 + Σ m̂_i u_i``. Every stage shares the matrix ``I - γ h J`` (multiplied through by ``γh``,
which keeps a zero step well defined), so a step costs one Jacobian, one LU factorisation and
``s`` triangular solves per sample; under ``batch_axis=0`` each sample has its own (batched
``torch.linalg.lu_factor_ex``), and a sample whose matrix is singular fails its step
(:attr:`StepResult.failed`), which the loop retries smaller.

Since a step is an explicit function of ``(t0, y0, h)`` through ``J``, ``f_t`` and the linear
solves, :class:`~torchnde.DirectAdjoint` differentiates it exactly: the Jacobian is then computed
with its graph (forward-mode products compose with reverse mode), so the gradient is that of the
discrete solution, second derivatives of ``f`` included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar

import torch

from .._problem import Problem
from ._base import AbstractSolver, StepResult
from ._implicit import STATISTICS, check_real, jacobian
from ._runge_kutta import combine

__all__ = ["AbstractRosenbrock", "Rodas5P", "Rosenbrock23", "RosenbrockTableau"]

Number = Fraction | float | int
_Coeffs = tuple[tuple[int, float], ...]
_TOL = 1e-12


def _close(x: float, y: float, scale: float = 1.0) -> bool:
    return abs(float(x) - float(y)) <= _TOL * max(1.0, scale)


def _floats(row: Sequence[Number]) -> tuple[float, ...]:
    return tuple(float(x) for x in row)


def _nonzero(row: Sequence[float]) -> _Coeffs:
    return tuple((j, float(x)) for j, x in enumerate(row) if x != 0)


# ------------------------------------------------------------------------------------------------
# the coefficients


@dataclass(frozen=True)
class RosenbrockTableau:
    """A Rosenbrock method as data, in Hairer & Wanner's transformed form (§IV.7, eq. 7.4').

    Args:
        gamma: the diagonal ``γ > 0`` (every stage's matrix is ``I/(γh) - J``).
        a: rows ``i = 0 … s-1`` of the strictly lower matrix ``(a_ij)``: row ``i`` has ``i``
            entries; stage ``i`` evaluates ``f`` at ``y0 + Σ_j a_ij u_j``.
        c: rows of the strictly lower matrix ``(c_ij)``, same shape: stage ``i`` adds
            ``Σ_j (c_ij/h) u_j`` to its right-hand side.
        alpha: the nodes ``α_i``: stage ``i`` evaluates ``f`` at ``t0 + α_i h``.
        gammas: ``γ_i``, the coefficient of ``h ∂f/∂t`` in stage ``i``.
        m: weights of the solution, ``y1 = y0 + Σ m_i u_i``.
        order: the order of ``y1``.
        m_hat: weights of the embedded solution, if the method has one.
        embedded_order: its order.
        dense: optional published dense output, as a matrix: ``dense[r][p]`` is the coefficient of
            ``θ^p`` for row ``r`` of ``(y0, y1, u_1, …, u_s)``; ``None`` for cubic Hermite through
            ``(y0, h f0)`` and ``(y1, h f1)``.
        dense_order: the order of the published dense output.

    Checked when built: the shapes; that ``α_i`` and ``γ_i`` are those of the classical form the
    transformed coefficients come from (with ``Γ = (diag(1/γ) - C)⁻¹`` the classical matrix of
    ``γ_ij``, ``α_i = Σ_j (A Γ)_ij`` and ``γ_i = Σ_j Γ_ij``); the first-order condition
    ``Σ m_i γ_i = 1`` (the classical weights ``b = m Γ`` sum to 1) for both solutions; that a
    dense output gives ``y0`` at ``θ = 0`` and ``y1`` at ``θ = 1``. Derived: whether the last
    stage evaluates ``f(t1, y1)`` itself (``fsal``: its value then starts the next step).
    """

    gamma: Number
    a: tuple[tuple[Number, ...], ...]
    c: tuple[tuple[Number, ...], ...]
    alpha: tuple[Number, ...]
    gammas: tuple[Number, ...]
    m: tuple[Number, ...]
    order: int
    m_hat: tuple[Number, ...] | None = None
    embedded_order: int | None = None
    dense: tuple[tuple[Number, ...], ...] | None = None
    dense_order: int = 3
    fsal: bool = field(init=False)

    def __post_init__(self) -> None:
        s = len(self.alpha)
        if not float(self.gamma) > 0:
            raise ValueError(f"Rosenbrock tableau: gamma must be positive, got {self.gamma}")
        for name in ("a", "c", "gammas", "m"):
            if len(getattr(self, name)) != s:
                raise ValueError(
                    f"Rosenbrock tableau: `{name}` must have one entry per stage ({s}, as "
                    f"`alpha`), got {len(getattr(self, name))}"
                )
        for name in ("a", "c"):
            for i, row in enumerate(getattr(self, name)):
                if len(row) != i:
                    raise ValueError(
                        f"Rosenbrock tableau: row {i} of `{name}` must have {i} entries (strictly "
                        f"lower triangular), got {len(row)}"
                    )
        self._check_classical(s)
        self._check_weights("m", self.m)
        if self.m_hat is not None:
            if len(self.m_hat) != s:
                raise ValueError("Rosenbrock tableau: `m_hat` must have one entry per stage")
            if self.embedded_order is None:
                raise ValueError("Rosenbrock tableau: give `embedded_order` with `m_hat`")
            self._check_weights("m_hat", self.m_hat)
        if self.dense is not None:
            self._check_dense(s)
        last = self.a[-1]
        fsal = (
            s > 1
            and _close(self.alpha[-1], 1)
            and _close(self.m[-1], 0)
            and all(_close(x, y) for x, y in zip(last, self.m[:-1]))
        )
        object.__setattr__(self, "fsal", fsal)

    @property
    def stages(self) -> int:
        return len(self.alpha)

    def classical_gamma(self) -> list[list[float]]:
        """The classical lower-triangular matrix ``Γ = (γ_ij) = (diag(1/γ) - C)⁻¹`` (``u = Γ k``
        relates the transformed stages to the classical ones)."""
        s, g = self.stages, float(self.gamma)
        inverse = [
            [1 / g if i == j else -float(self.c[i][j]) if j < i else 0.0 for j in range(s)]
            for i in range(s)
        ]
        return _lower_inverse(inverse)

    def _check_classical(self, s: int) -> None:
        big = self.classical_gamma()
        for i in range(s):
            terms = [float(self.a[i][k]) * big[k][j] for j in range(i) for k in range(j, i)]
            if not _close(sum(terms), self.alpha[i], sum(map(abs, terms))):
                raise ValueError(
                    f"Rosenbrock tableau: alpha[{i}]={float(self.alpha[i])} is not the node of the "
                    f"coefficients a and c, Σ_j (A Γ)_{i}j = {sum(terms)}"
                )
            gamma_i = sum(big[i][: i + 1])
            if not _close(gamma_i, self.gammas[i], sum(map(abs, big[i]))):
                raise ValueError(
                    f"Rosenbrock tableau: gammas[{i}]={float(self.gammas[i])} is not Σ_j Γ_{i}j = "
                    f"{gamma_i} of the coefficients c and gamma"
                )

    def _check_weights(self, name: str, weights: Sequence[Number]) -> None:
        total = sum(float(w) * float(g) for w, g in zip(weights, self.gammas))
        if not _close(total, 1, sum(abs(float(w)) for w in weights)):
            raise ValueError(
                f"Rosenbrock tableau: Σ {name}_i γ_i = {total}, not 1 (the classical weights must "
                "sum to 1)"
            )

    def _check_dense(self, s: int) -> None:
        matrix = self.dense
        if len(matrix) != s + 2 or len({len(row) for row in matrix}) != 1:
            raise ValueError(
                f"Rosenbrock tableau: `dense` needs {s + 2} rows (y0, y1, u_1..u_{s}) of equal "
                "length"
            )
        at0 = [float(row[0]) for row in matrix]
        if not (_close(at0[0], 1) and all(_close(x, 0) for x in at0[1:])):
            raise ValueError("Rosenbrock tableau: the dense output must give y0 at θ = 0")
        at1 = [sum(float(x) for x in row) for row in matrix]
        ok = _close(at1[0] + at1[1], 1) and all(
            _close(at1[2 + j] + at1[1] * float(mj), float(mj), abs(float(mj)) + 1)
            for j, mj in enumerate(self.m)
        )
        if not ok:
            raise ValueError("Rosenbrock tableau: the dense output must give y1 at θ = 1")

    @classmethod
    def from_classical(
        cls,
        gamma: float,
        alpha: Sequence[Sequence[float]],
        gamma_lower: Sequence[Sequence[float]],
        b: Sequence[float],
        order: int,
        b_hat: Sequence[float] | None = None,
        embedded_order: int | None = None,
        dense_b: Sequence[Sequence[float]] | None = None,
        dense_order: int = 3,
    ) -> RosenbrockTableau:
        """The transformed tableau of a method given in the classical form (Hairer & Wanner eq.
        7.4), ``(I - hγJ) k_i = h f(y0 + Σ α_ij k_j) + hJ Σ γ_ij k_j + γ_i h² f_t``,
        ``y1 = y0 + Σ b_i k_i``: ``A = α Γ⁻¹``, ``C = diag(1/γ) - Γ⁻¹``, ``m = b Γ⁻¹``.
        ``alpha``/``gamma_lower`` are the strictly lower rows; ``dense_b[j]`` the polynomial
        (coefficients of ``θ^0, θ^1, …``) weighting ``k_j`` in ``y(θ) = y0 + Σ b_j(θ) k_j``."""
        s = len(b)
        big = [[float(gamma) if i == j else 0.0 for j in range(s)] for i in range(s)]
        for i, row in enumerate(gamma_lower):
            big[i][:i] = [float(x) for x in row]
        inverse = _lower_inverse(big)
        c = tuple(
            tuple((1 / gamma if i == j else 0.0) - inverse[i][j] for j in range(i))
            for i in range(s)
        )
        full_alpha = [list(row) + [0.0] * (s - len(row)) for row in alpha]

        def times_inverse(row: Sequence[float]) -> tuple[float, ...]:
            return tuple(sum(row[k] * inverse[k][j] for k in range(s)) for j in range(s))

        a = tuple(times_inverse(full_alpha[i])[:i] for i in range(s))
        dense = None
        if dense_b is not None:
            degree = max(len(p) for p in dense_b)
            polys = [list(p) + [0.0] * (degree - len(p)) for p in dense_b]
            u_rows = [
                tuple(sum(polys[k][p] * inverse[k][j] for k in range(s)) for p in range(degree))
                for j in range(s)
            ]
            y0_row = (1.0,) + (0.0,) * (degree - 1)
            dense = (y0_row, (0.0,) * degree, *u_rows)
        return cls(
            gamma=gamma,
            a=a,
            c=c,
            alpha=tuple(float(sum(row)) for row in alpha),
            gammas=tuple(sum(row) for row in big),
            m=times_inverse(b),
            order=order,
            m_hat=None if b_hat is None else times_inverse(b_hat),
            embedded_order=embedded_order,
            dense=dense,
            dense_order=dense_order,
        )


def _lower_inverse(matrix: list[list[float]]) -> list[list[float]]:
    """The inverse of a lower-triangular matrix with a non-zero diagonal."""
    s = len(matrix)
    out = [[0.0] * s for _ in range(s)]
    for col in range(s):
        for i in range(col, s):
            rhs = (1.0 if i == col else 0.0) - sum(
                matrix[i][k] * out[k][col] for k in range(col, i)
            )
            out[i][col] = rhs / matrix[i][i]
    return out


def _dense_rows(tab: RosenbrockTableau) -> list[list[float]]:
    """The dense-output matrix over the rows ``(y0, y1, u_1, …, u_s, h f0, h f1)``: the
    tableau's own, or cubic Hermite."""
    s = tab.stages
    if tab.dense is not None:
        width = len(tab.dense[0])
        return [list(_floats(row)) for row in tab.dense] + [[0.0] * width, [0.0] * width]
    rows = [[0.0] * 4 for _ in range(s + 4)]
    rows[0] = [1.0, 0.0, -3.0, 2.0]  # y0
    rows[1] = [0.0, 0.0, 3.0, -2.0]  # y1
    rows[s + 2] = [0.0, 1.0, -2.0, 1.0]  # h f(t0, y0)
    rows[s + 3] = [0.0, 0.0, -1.0, 1.0]  # h f(t1, y1)
    return rows


# ------------------------------------------------------------------------------------------------
# derivatives of the vector field at the step's start


def derivatives(
    problem: Problem, t: torch.Tensor, y: torch.Tensor, f0: torch.Tensor, graph: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``J = ∂f/∂y: (batch, n, n)`` and ``∂f/∂τ: (batch, n)`` (the derivative in internal time,
    so that ``Δτ ∂f/∂τ = h ∂f/∂t``) at ``(t, y)``, where ``f0 = f(t, y)``, with their graph when
    ``graph``.

    ``J`` is the term's own (``ODETerm(f, jac=...)``) or, with ``∂f/∂t``, from automatic
    differentiation: ``n`` reverse-mode products for small states, ``n + 1`` forward-mode
    products in one vectorised call for larger ones (:data:`REVERSE_MODE_UP_TO`), the other
    mode when the field does not support the first. With a user ``jac``, ``∂f/∂t`` is one forward-mode product
    in ``t``. Automatic differentiation in ``t`` is checked once per solve against a central
    difference: a field that turns ``t`` into a number (``float(t)``, NumPy) gives it a zero
    derivative without failing, and then, as when forward mode fails, ``∂f/∂t`` comes from a
    one-sided difference at every step."""
    with torch.enable_grad() if graph else torch.no_grad():
        if getattr(problem.term, "jac", None) is not None:
            jac = jacobian(problem, t, y)
            autodiff = lambda: _forward_time(problem, t, y)  # noqa: E731
        else:
            mode = problem.memo("rosenbrock jacobian mode", lambda: _probe(problem, t, y))
            jac, dfdt = (
                _forward(problem, t, y) if mode == "forward" else _reverse(problem, t, y, graph)
            )
            autodiff = lambda: dfdt  # noqa: E731
        exact = problem.memo(
            "rosenbrock time derivative by autodiff",
            lambda: _trust_autodiff(problem, t, y, f0, autodiff),
        )
        return jac, autodiff() if exact else _difference(problem, t, y, f0)


def _field(problem: Problem):
    return lambda tt, yy: problem.flat(problem.vf(tt, yy))


def _forward(problem: Problem, t, y) -> tuple[torch.Tensor, torch.Tensor]:
    batch, n = y.shape
    tangent_y = torch.eye(n + 1, n, dtype=y.dtype, device=y.device)[:, None].expand(n + 1, batch, n)
    tangent_t = torch.zeros(n + 1, *t.shape, dtype=t.dtype, device=t.device)
    tangent_t[n] = 1.0
    field_ = _field(problem)
    columns = torch.func.vmap(lambda vt, vy: torch.func.jvp(field_, (t, y), (vt, vy))[1])(
        tangent_t, tangent_y
    )  # (n + 1, batch, n); forward mode may promote a 0-dim operand's tangent to float64
    return columns[:n].permute(1, 2, 0).to(y.dtype), columns[n].to(y.dtype)


#: up to this many state components the Jacobian comes from reverse mode (one evaluation and
#: ``n`` backward passes), beyond it from forward mode (``n + 1`` products in one ``vmap``): on one
#: CPU thread, float64, a state of 2 / 3 / 8 / 20 components (the stiff set's Van der Pol,
#: Robertson, HIRES, Pollution) took 0.27 / 0.47 / 0.95 / 2.2 ms in reverse mode against
#: 1.5 / 1.5 / 1.7 / 1.2 ms in forward mode, whose cost is mostly ``vmap``'s fixed overhead
REVERSE_MODE_UP_TO = 12


def _probe(problem: Problem, t, y) -> str:
    """How to differentiate this field: the faster mode for its size (see
    :data:`REVERSE_MODE_UP_TO`), or the other one if that fails; asked once per solve."""
    modes = ("reverse", "forward") if y.shape[1] <= REVERSE_MODE_UP_TO else ("forward", "reverse")
    errors = []
    for mode in modes:
        try:
            with torch.no_grad():
                _forward(problem, t, y) if mode == "forward" else _reverse(problem, t, y, False)
        except Exception as error:  # e.g. an operation functorch cannot run forward
            errors.append(f"{mode} mode: {type(error).__name__}: {error}".splitlines()[0])
            continue
        return mode
    raise TypeError(
        "a Rosenbrock method needs the Jacobian ∂f/∂y, and automatic differentiation cannot go "
        f"through the vector field {problem.term!r} ({'; '.join(errors)}); give it as "
        "`ODETerm(f, jac=...)`. (The continuous adjoint's backward system is such a field: use "
        "`DirectAdjoint()` or `CheckpointAdjoint()` with Rosenbrock methods, or "
        "`BacksolveAdjoint(solver=Kvaerno5())`.)"
    )


def _reverse(problem: Problem, t, y, graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
    n = y.shape[1]
    with torch.enable_grad():
        # differentiate with respect to the tensors themselves when their graph is to be kept
        yy = y if graph and y.requires_grad else y.detach().requires_grad_(True)
        tt = t if graph and t.requires_grad else t.detach().requires_grad_(True)
        out = problem.flat(problem.vf(tt, yy))
        rows, time_rows = [], []
        for i in range(n):
            cot = torch.zeros_like(out)
            cot[:, i] = 1.0
            gy, gt = torch.autograd.grad(
                out, (yy, tt), cot, retain_graph=True, create_graph=graph, allow_unused=True
            )
            rows.append(torch.zeros_like(y) if gy is None else gy)
            time_rows.append(torch.zeros_like(t) if gt is None else gt)
    jac = torch.stack(rows, dim=1)
    dfdt = torch.stack(time_rows, dim=-1).reshape(y.shape[0], n).to(y.dtype)
    return jac, dfdt


def _forward_time(problem: Problem, t, y) -> torch.Tensor:
    _, out = torch.func.jvp(lambda tt: problem.flat(problem.vf(tt, y)), (t,), (torch.ones_like(t),))
    return out.to(y.dtype)


def _difference(problem: Problem, t, y, f0) -> torch.Tensor:
    """``∂f/∂τ`` by a one-sided difference from ``f0``, with the step ``√ε max(1, |t|)``."""
    delta = math.sqrt(torch.finfo(t.dtype).eps) * torch.clamp(t.detach().abs(), min=1.0)
    shifted = problem.flat(problem.vf(t + delta, y))
    return (shifted - f0) / delta[:, None].to(y.dtype)


def _trust_autodiff(problem: Problem, t, y, f0, autodiff) -> bool:
    """Whether automatic differentiation in ``t`` works for this field: it runs, and it agrees
    with a central difference (step ``ε^⅓ max(1, |t|)``) to 10 %, up to that difference's own
    rounding error. Asked once per solve, on the first step."""
    with torch.no_grad():
        try:
            exact = autodiff()
        except Exception:  # forward mode does not go through the field
            return False
        delta = torch.finfo(t.dtype).eps ** (1 / 3) * torch.clamp(t.abs(), min=1.0)
        ahead = problem.flat(problem.vf(t + delta, y))
        behind = problem.flat(problem.vf(t - delta, y))
        step = delta[:, None].to(y.dtype)
        central = (ahead - behind) / (2 * step)
        noise = torch.finfo(y.dtype).eps * 1e3 * (ahead.abs() + behind.abs() + f0.abs()) / step
        return bool(((exact - central).abs() <= 0.1 * central.abs() + noise).all())


# ------------------------------------------------------------------------------------------------
# the solver


@dataclass
class _Carry:
    """Per sample: ``f`` at the step's start, the Jacobian and ``∂f/∂τ`` there, and whether they
    are current (evaluated at this start: a rejected step keeps them for its retry)."""

    f: torch.Tensor  # (batch, n)
    jac: torch.Tensor  # (batch, n, n)
    dfdt: torch.Tensor  # (batch, n)
    current: torch.Tensor  # (batch,) bool

    def tree(self) -> tuple:
        return (self.f, self.jac, self.dfdt, self.current)


class AbstractRosenbrock(AbstractSolver):
    """A Rosenbrock method for stiff ODEs: a subclass sets ``tableau``, a
    :class:`RosenbrockTableau`.

    Each step evaluates the Jacobian ``J`` and ``∂f/∂t`` at its start (kept for the retry when
    the step is rejected), factorises ``I - γ h J`` once and solves one linear system per stage
    (Hairer & Wanner 1996, §IV.7). No Newton iteration, hence no convergence failure; a singular
    matrix fails that sample's step. ODEs only (``ODETerm``), real states. Jacobians come from
    the term (``ODETerm(f, jac=...)``) or from automatic differentiation; ``Solution.stats``
    reports ``num_jacobians`` and ``num_factorisations`` per sample (``num_newton_iterations``,
    always 0, lines up with the diagonally implicit methods).

    The error estimate is exact only with the exact Jacobian (these are not W-methods at their
    full order): a wrong ``jac`` shows as tiny steps, not as a convergence failure.
    """

    tableau: ClassVar[RosenbrockTableau]
    generic_terms = False
    statistics = STATISTICS
    failure_hint = (
        "the matrix I - γhJ of its linear stages was singular even at the smallest step size; "
        "check the Jacobian (`ODETerm(f, jac=...)`), or try an implicit Runge–Kutta method such "
        "as `Kvaerno5()`"
    )

    # derived once per class
    _gamma: ClassVar[float]
    _a: ClassVar[tuple[_Coeffs, ...]]
    _c: ClassVar[tuple[_Coeffs, ...]]
    _alpha: ClassVar[tuple[float, ...]]
    _gammas: ClassVar[tuple[float, ...]]
    _m: ClassVar[_Coeffs]
    _e: ClassVar[_Coeffs | None]
    _rows: ClassVar[tuple[int, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "tableau" not in cls.__dict__:
            return
        tab = cls.tableau
        if not isinstance(tab, RosenbrockTableau):
            raise TypeError(f"{cls.__name__}.tableau must be a RosenbrockTableau, got {tab!r}")
        cls.order = tab.order
        cls.error_order = (
            None if tab.m_hat is None else min(tab.order, tab.embedded_order) + 1  # type: ignore[type-var]
        )
        cls.interpolation_order = tab.dense_order if tab.dense is not None else 3
        cls._gamma = float(tab.gamma)
        cls._a = tuple(_nonzero(row) for row in tab.a)
        cls._c = tuple(_nonzero(row) for row in tab.c)
        cls._alpha = _floats(tab.alpha)
        cls._gammas = _floats(tab.gammas)
        cls._m = _nonzero(tab.m)
        cls._e = None
        if tab.m_hat is not None:
            cls._e = _nonzero([float(x) - float(y) for x, y in zip(tab.m, tab.m_hat)])
        matrix = _dense_rows(tab)
        cls._rows = tuple(r for r, row in enumerate(matrix) if any(x != 0 for x in row))
        cls.dense_matrix = tuple(tuple(matrix[r]) for r in cls._rows)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def check_terms(self, term: Any) -> None:
        if not getattr(term, "ode", False):
            raise TypeError(
                f"`{type(self).__name__}()` solves ordinary differential equations "
                f"(`ODETerm(f)`), got {term!r}; for SDEs and CDEs use their solvers"
            )
        if getattr(term, "jac", None) is not None and getattr(term, "quadratures", 0):
            raise ValueError(
                f"`{type(self).__name__}()` needs the full Jacobian, but `ODETerm(f, jac=..., "
                f"quadratures={term.quadratures})` gives only the block of the non-quadrature "
                "components; leave out `jac` (automatic differentiation) or `quadratures`"
            )

    # -- start ---------------------------------------------------------------------------------

    def init(self, problem: Problem, t0: torch.Tensor, y0: torch.Tensor) -> tuple[Any, int]:
        check_real(self, y0)
        return problem.flat(problem.vf(t0, y0)), 1

    def carry(self, y0: torch.Tensor, vf0: Any) -> tuple:
        batch, n = y0.shape
        return _Carry(
            f=vf0,
            jac=y0.new_zeros(batch, n, n),
            dfdt=y0.new_zeros(batch, n),
            current=torch.zeros(batch, dtype=torch.bool, device=y0.device),
        ).tree()

    # -- a step --------------------------------------------------------------------------------

    def step(self, problem, t0, t1, y0, state):
        carry = _Carry(*state)
        batch = y0.shape[0]
        h = problem.contr(t0, t1).to(y0.dtype).reshape(-1).expand(batch)  # the user's step
        counts = {
            name: torch.zeros(batch, dtype=torch.long, device=y0.device) for name in STATISTICS
        }
        self._refresh(problem, t0, y0, h, carry, counts)
        lu, pivots, failed = self._factorise(carry.jac, self._gamma * h)
        counts["num_factorisations"] += 1
        times = self._stage_times(t0, t1)
        hft = (t1 - t0).to(y0.dtype)[:, None] * carry.dfdt  # h ∂f/∂t
        us, last_arg, last_f, nfe = self._stages(problem, times, y0, carry.f, h, hft, lu, pivots)
        if self.tableau.fsal:  # the last stage evaluated f(t1, y1)
            y1, f_end = last_arg, last_f
        else:
            y1 = combine(y0, self._m, us)
            f_end = problem.flat(problem.vf(t1, y1))
            nfe += 1
        y_error = None if self._e is None else combine(None, self._e, us)
        done = torch.zeros_like(carry.current)
        accepted = _Carry(f_end, carry.jac, carry.dfdt, done)  # the next step starts elsewhere
        rejected = _Carry(carry.f, carry.jac, carry.dfdt, ~done)  # the same start: keep J
        return StepResult(
            y1,
            y_error,
            accepted.tree(),
            (y0, y1, us, carry.f, f_end, h),
            nfe,
            failed=failed,
            counts=counts,
            rejected_state=rejected.tree(),
        )

    def _refresh(self, problem, t0, y0, h, carry: _Carry, counts) -> None:
        """Evaluate ``J`` and ``∂f/∂τ`` at the step's start for the samples without them."""
        stale = ~carry.current
        if not bool(stale.any()):
            return
        graph = torch.is_grad_enabled() and any(
            x.requires_grad for x in (y0, h, carry.f, torch.as_tensor(t0))
        )
        jac, dfdt = derivatives(problem, t0, y0, carry.f, graph)
        carry.jac = torch.where(stale[:, None, None], jac, carry.jac)
        carry.dfdt = torch.where(stale[:, None], dfdt, carry.dfdt)
        counts["num_jacobians"] += stale

    def _factorise(self, jac: torch.Tensor, gh: torch.Tensor):
        """``LU`` of ``I - γ h J`` per sample; a singular matrix fails its sample's step (and is
        replaced by the identity, so that its values stay finite and the failure is reported
        as such, not as a non-finite state)."""
        n = jac.shape[-1]
        eye = torch.eye(n, dtype=jac.dtype, device=jac.device)
        lu, pivots, info = torch.linalg.lu_factor_ex(eye - gh[:, None, None] * jac)
        failed = info != 0
        lu = torch.where(failed[:, None, None], eye, lu)
        identity = torch.arange(1, n + 1, dtype=pivots.dtype, device=pivots.device)
        pivots = torch.where(failed[:, None], identity, pivots)
        return lu, pivots, failed

    def _stage_times(self, t0, t1) -> list:
        dt = t1 - t0
        return [t0 if a == 0.0 else t1 if a == 1.0 else t0 + a * dt for a in self._alpha]

    def _stages(self, problem, times, y0, f0, h, hft, lu, pivots):
        """``(I - γhJ) u_i = γh (f_i + γ_i h f_t) + γ Σ_j c_ij u_j`` (the stage equation times
        ``γh``) for every stage; returns the ``u``'s, the last stage's argument and field, and
        the evaluations made."""
        gh = (self._gamma * h)[:, None]
        us: list[torch.Tensor] = []
        arg, f, nfe = y0, f0, 0
        for i in range(len(self._alpha)):
            if i > 0:
                arg = combine(y0, self._a[i], us)
                f = problem.flat(problem.vf(times[i], arg))
                nfe += 1
            rhs = f if self._gammas[i] == 0.0 else f.add(hft, alpha=self._gammas[i])
            rhs = gh * rhs
            if self._c[i]:
                rhs = combine(rhs, self._c[i], us, self._gamma)
            us.append(torch.linalg.lu_solve(lu, pivots, rhs[:, :, None])[:, :, 0])
        return us, arg, f, nfe

    def dense_rows(self, problem: Problem, result: StepResult) -> torch.Tensor:
        """Rows ``(y0, y1, u_1, …, u_s, h f0, h f1)`` that the interpolant uses, stacked."""
        y0, y1, us, f0, f1, h = result.dense
        s = len(us)
        rows = []
        for r in self._rows:
            if r == 0:
                rows.append(y0)
            elif r == 1:
                rows.append(y1)
            elif r < s + 2:
                rows.append(us[r - 2])
            else:
                rows.append(h[:, None] * (f0 if r == s + 2 else f1))
        return torch.stack(rows, dim=1)


# ------------------------------------------------------------------------------------------------
# the methods


def _rosenbrock23() -> RosenbrockTableau:
    d = 1 / (2 + math.sqrt(2))
    e32 = 6 + math.sqrt(2)
    # y(θ) = y0 + θ(1-θ)/(1-2d) k1 + θ(θ-2d)/(1-2d) k2 (Shampine & Reichelt 1997, §3)
    dense_b = (
        (0.0, 1 / (1 - 2 * d), -1 / (1 - 2 * d)),
        (0.0, -2 * d / (1 - 2 * d), 1 / (1 - 2 * d)),
        (0.0, 0.0, 0.0),
    )
    return RosenbrockTableau.from_classical(
        gamma=d,
        alpha=((), (0.5,), (0.0, 1.0)),
        gamma_lower=((), (-d,), (d * (e32 - 2), -d * e32)),
        b=(0.0, 1.0, 0.0),
        order=2,
        b_hat=(1 / 6, 2 / 3, 1 / 6),
        embedded_order=3,
        dense_b=dense_b,
        dense_order=2,
    )


class Rosenbrock23(AbstractRosenbrock):
    """The Rosenbrock pair of MATLAB's ``ode23s`` (Shampine & Reichelt, *The MATLAB ODE Suite*,
    SIAM J. Sci. Comput. 18, 1997): order 2, L-stable, with a third-order solution for the error
    estimate; three stages, the last at ``(t1, y1)`` and reused by the next step (two new
    evaluations per step), and the method's own second-order dense output. For loose tolerances
    (``rtol`` 1e-2 … 1e-4) on stiff problems."""

    tableau = _rosenbrock23()


def _rodas5p() -> RosenbrockTableau:
    a6 = (
        -7.502846399306121,
        2.561846144803919,
        -11.627539656261098,
        -0.18268767659942256,
        0.030198172008377946,
    )
    a = (
        (),
        (3.0,),
        (2.849394379747939, 0.45842242204463923),
        (-6.954028509809101, 2.489845061869568, -10.358996098473584),
        (2.8029986275628964, 0.5072464736228206, -0.3988312541770524, -0.04721187230404641),
        a6,
        (*a6, 1.0),
        (*a6, 1.0, 1.0),
    )
    c = (
        (),
        (-14.155112264123755,),
        (-17.97296035885952, -2.859693295451294),
        (147.12150275711716, -1.41221402718213, 71.68940251302358),
        (165.43517024871676, -0.4592823456491126, 42.90938336958603, -5.961986721573306),
        (
            24.854864614690072,
            -3.0009227002832186,
            47.4931110020768,
            5.5814197821558125,
            -0.6610691825249471,
        ),
        (
            30.91273214028599,
            -3.1208243349937974,
            77.79954646070892,
            34.28646028294783,
            -19.097331116725623,
            -28.087943162872662,
        ),
        (
            37.80277123390563,
            -3.2571969029072276,
            112.26918849496327,
            66.9347231244047,
            -40.06618937091002,
            -54.66780262877968,
            -9.48861652309627,
        ),
    )
    # the dense output y(θ) = (1-θ) y0 + θ (y1 + (1-θ)(K1 + θ K2 + θ² K3)), K_r = Σ_j H_rj u_j
    h = (
        (
            25.948786856663858,
            -2.5579724845846235,
            10.433815404888879,
            -2.3679251022685204,
            0.524948541321073,
            1.1241088310450404,
            0.4272876194431874,
            -0.17202221070155493,
        ),
        (
            -9.91568850695171,
            -0.9689944594115154,
            3.0438037242978453,
            -24.495224566215796,
            20.176138334709044,
            15.98066361424651,
            -6.789040303419874,
            -6.710236069923372,
        ),
        (
            11.419903575922262,
            2.8879645146136994,
            72.92137995996029,
            80.12511834622643,
            -52.072871366152654,
            -59.78993625266729,
            -0.15582684282751913,
            4.883087185713722,
        ),
    )
    # θ(1-θ)(K1 + θ K2 + θ² K3) = K1 θ + (K2 - K1) θ² + (K3 - K2) θ³ - K3 θ⁴
    dense = (
        (1.0, -1.0, 0.0, 0.0, 0.0),
        (0.0, 1.0, 0.0, 0.0, 0.0),
        *((0.0, h1, h2 - h1, h3 - h2, -h3) for h1, h2, h3 in zip(*h)),
    )
    return RosenbrockTableau(
        gamma=0.21193756319429014,
        a=a,
        c=c,
        alpha=(
            0.0,
            0.6358126895828704,
            0.4095798393397535,
            0.9769306725060716,
            0.4288403609558664,
            1.0,
            1.0,
            1.0,
        ),
        gammas=(
            0.21193756319429014,
            -0.42387512638858027,
            -0.3384627126235924,
            1.8046452872882734,
            2.325825639765069,
            0.0,
            0.0,
            0.0,
        ),
        m=(*a6, 1.0, 1.0, 1.0),
        order=5,
        m_hat=(*a6, 1.0, 1.0, 0.0),
        embedded_order=4,
        dense=dense,
        dense_order=4,
    )


class Rodas5P(AbstractRosenbrock):
    """Steinebach's Rodas5P (*Construction of Rosenbrock–Wanner method Rodas5P and numerical
    benchmarks within the Julia Differential Equations package*, BIT 63, 2023): order 5 with an
    embedded order-4 solution, eight stages, L-stable, stiffly accurate (both solutions are stage
    values, so the estimate is the last stage's ``u``), with a fourth-order dense output from its
    stages. One Jacobian, one LU and eight linear solves per step; seven new evaluations of ``f``
    plus ``f(t1, y1)`` for the next step. The Rosenbrock method for moderate to tight tolerances.
    Coefficients as tabulated in OrdinaryDiffEq.jl."""

    tableau = _rodas5p()
