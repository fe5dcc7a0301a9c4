"""How an implicit method solves its stage equations: small configuration objects.

A diagonally implicit stage solves ``z = base + γ h f(t, z)`` (``h`` the step, ``γ`` the
diagonal entry) by Newton-type iterations on ``G(z) = z - base - γ h f(t, z)``, whose Jacobian
is ``I - γ h J`` with ``J = ∂f/∂y``:

* :class:`Chord` (the default) — the simplified Newton iteration of Hairer & Wanner's RADAU5 and
  of SciPy: ``J`` is evaluated once and reused, with the LU factorisation of ``I - γ h J``,
  across iterations, stages and steps, until the iteration fails or converges slowly; then it is
  re-evaluated. The factorisation is redone only when ``γ h`` changes.
* :class:`Newton` — ``J`` re-evaluated and ``I - γ h J`` refactorised at every iterate: quadratic
  convergence, at the price of a Jacobian per iteration; for strongly nonlinear stages.
* :class:`NewtonKrylov` — matrix-free: each Newton correction solves ``(I - γ h J) Δ = -G`` by
  GMRES on Jacobian–vector products (forward-mode autodiff), never forming ``J``: for states too
  large for a dense ``n × n`` Jacobian per sample.

All three monitor the convergence rate ``θ = ‖Δz_k‖ / ‖Δz_{k-1}‖`` per sample and stop when the
estimated remaining error ``θ/(1-θ)·‖Δz_k‖`` is below ``kappa`` (norms scaled by
``atol + rtol·|y0|``), declare divergence when ``θ ≥ 1``, and give up after ``max_iters``: a
sample whose iteration fails fails its step (``StepResult.failed``), which the loop retries with
a smaller step (Hairer & Wanner, *Solving Ordinary Differential Equations II*, 1996, §IV.8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from .._errors import friendly_keywords

__all__ = ["AbstractNonlinearSolver", "Chord", "Newton", "NewtonKrylov"]


def _check_positive(owner: str, name: str, value, integer: bool = False) -> None:
    kind = "a positive int" if integer else "a positive number"
    bad = isinstance(value, bool) or not isinstance(value, int if integer else (int, float))
    if bad or not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{owner}({name}=...)` must be {kind}, got {value!r}")


@dataclass(frozen=True)
class AbstractNonlinearSolver:
    """What every stage solver shares.

    Attributes:
        rtol, atol: tolerances of the iteration's norm; ``None`` takes the step-size
            controller's (``PIDController``), or ``1e-10``/``1e-12`` with constant steps.
        kappa: stop when the estimated remaining error, in that norm, is below ``kappa`` (a
            fraction of the tolerance the step is held to: 0.01 to 0.1 are usual).
        max_iters: the most iterations per stage before the step fails.
    """

    rtol: float | None = None
    atol: float | None = None
    kappa: float = 1e-2
    max_iters: int = 10

    #: re-evaluate the Jacobian at every iterate (full Newton) instead of reusing it
    fresh_jacobian: ClassVar[bool] = False
    #: solve the linear systems matrix-free (GMRES on Jacobian–vector products)
    matrix_free: ClassVar[bool] = False

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(
                    f"`{owner}({name}=...)` must be None or a number ≥ 0, got {value!r}"
                )
        _check_positive(owner, "kappa", self.kappa)
        _check_positive(owner, "max_iters", self.max_iters, integer=True)

    def tolerances(self, controller_tolerances: tuple[float, float] | None) -> tuple[float, float]:
        """``(rtol, atol)`` of the iteration's norm."""
        rtol, atol = controller_tolerances or (1e-10, 1e-12)
        return (
            rtol if self.rtol is None else self.rtol,
            atol if self.atol is None else self.atol,
        )


@friendly_keywords()
@dataclass(frozen=True)
class Chord(AbstractNonlinearSolver):
    """Simplified Newton: one Jacobian and one LU factorisation reused across iterations, stages
    and steps — re-evaluated when an iteration fails with a Jacobian from an earlier step, or
    after a step whose iterations converged slowly (more than 2 iterations at a rate above
    ``1e-3``, SciPy's rule); refactorised when ``γ h`` changes. See the module docstring."""


@friendly_keywords()
@dataclass(frozen=True)
class Newton(AbstractNonlinearSolver):
    """Newton's method: the Jacobian re-evaluated and ``I - γ h J`` refactorised at every
    iterate. Quadratic convergence; one Jacobian evaluation per iteration."""

    fresh_jacobian: ClassVar[bool] = True


@friendly_keywords()
@dataclass(frozen=True)
class NewtonKrylov(AbstractNonlinearSolver):
    """Jacobian-free Newton–Krylov: each correction solves ``(I - γ h J) Δ = -G`` by restarted
    GMRES on Jacobian–vector products at the current iterate (forward-mode autodiff of the vector
    field), so no ``n × n`` matrix is formed or stored — for large states.

    Args:
        krylov_rtol: the linear solve stops when its residual falls below this fraction of
            ``‖G‖`` (an inexact Newton method).
        krylov_dim: the Krylov subspace size before a restart.
        max_restarts: restarts of GMRES before it returns its best iterate.
    """

    matrix_free: ClassVar[bool] = True
    krylov_rtol: float = 1e-3
    krylov_dim: int = 20
    max_restarts: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive("NewtonKrylov", "krylov_rtol", self.krylov_rtol)
        _check_positive("NewtonKrylov", "krylov_dim", self.krylov_dim, integer=True)
        _check_positive("NewtonKrylov", "max_restarts", self.max_restarts, integer=True)
