"""Automatic stiffness detection and switching between an explicit and an implicit method, per
sample.

:class:`AutoSwitch` starts every sample on the explicit method. After each accepted explicit step
it estimates ``hλ``, the step size times the dominant eigenvalue of the Jacobian, from the last two
stages (Hairer & Wanner, *Solving Ordinary Differential Equations II*, 1996, §IV.2: for a stiff
problem the explicit method's steps are held at its stability boundary, ``|hλ| ≈ b``); when that
happens on several accepted steps in a row the sample moves to the implicit method. On the
implicit method it estimates the same quantity from the Jacobian the method carries
(``h·‖J‖∞``, an upper bound of ``h·ρ(J)``) and moves back when an explicit step of that size would
be comfortably stable for several steps in a row. Each sample has its own mode, so a batch whose
samples are stiff at different times costs what each needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._errors import friendly_keywords
from .._problem import Problem
from ._base import AbstractSolver, StepResult
from ._implicit import AbstractDIRK, _Carry
from ._runge_kutta import AbstractExplicitRungeKutta, combine
from ._tableau import hermite_interpolant

__all__ = ["AutoSwitch", "stability_boundary"]


def stability_boundary(solver: AbstractExplicitRungeKutta) -> float:
    """Where the explicit method's stability region meets the negative real axis: the largest
    ``x`` with ``|R(-s)| ≤ 1`` for ``0 < s ≤ x``, ``R(z) = 1 + z bᵀ(I - zA)⁻¹1`` (2.0 for Euler,
    about 3.3 for Dopri5)."""
    tab = solver.tableau
    s = tab.stages
    a = np.zeros((s, s))
    for i, row in enumerate(tab.a):
        a[i, : len(row)] = [float(x) for x in row]
    b = np.array([float(x) for x in tab.b])

    def r(z: float) -> float:
        return abs(1 + z * b @ np.linalg.solve(np.eye(s) - z * a, np.ones(s)))

    x = 0.0
    for step in (1.0, 0.1, 0.01, 0.001):
        while r(-(x + step)) <= 1 + 1e-12 and x < 100:
            x += step
    return x


@friendly_keywords()
@dataclass(frozen=True)
class AutoSwitch(AbstractSolver):
    """An explicit and an implicit method with automatic stiffness detection and switching, per
    sample (see the module docstring).

    Args:
        explicit: an explicit embedded pair with first-same-as-last stages (default ``Tsit5()``).
        implicit: a diagonally implicit method with an error estimate of the same order (default
            ``Kvaerno5()``).
        switch_after: how many accepted steps in a row must show stiffness (or its absence)
            before a sample changes method.
        margin: a sample moves to the implicit method when ``|hλ| ≥ margin·b`` (``b`` the explicit
            method's stability boundary) and back when ``h·‖J‖∞ ≤ margin·b / 2``.

    Dense output is cubic Hermite through ``(y0, h f0)`` and ``(y1, h f1)`` for both methods.
    ``Solution.stats`` adds ``num_implicit_steps`` to the implicit method's statistics.
    """

    explicit: AbstractExplicitRungeKutta | None = None
    implicit: AbstractDIRK | None = None
    switch_after: int = 5
    margin: float = 0.9

    def __post_init__(self) -> None:
        from ._kvaerno import Kvaerno5
        from ._tsit5 import Tsit5

        explicit = Tsit5() if self.explicit is None else self.explicit
        implicit = Kvaerno5() if self.implicit is None else self.implicit
        if not isinstance(explicit, AbstractExplicitRungeKutta) or not explicit.tableau.fsal:
            raise TypeError(
                f"`AutoSwitch(explicit=...)` must be an explicit Runge–Kutta pair with "
                f"first-same-as-last stages, such as `Tsit5()` or `Dopri5()`, got {explicit!r}"
            )
        if not isinstance(implicit, AbstractDIRK):
            raise TypeError(
                f"`AutoSwitch(implicit=...)` must be a diagonally implicit method such as "
                f"`Kvaerno5()`, got {implicit!r}"
            )
        if explicit.error_order is None or explicit.error_order != implicit.error_order:
            raise ValueError(
                f"`AutoSwitch` needs two methods whose error estimates have the same order (the "
                f"step-size controller uses one), got {explicit!r} (error order "
                f"{explicit.error_order}) and {implicit!r} ({implicit.error_order}); pair "
                "`Tsit5()`/`Dopri5()` with `Kvaerno5()`, or `Bosh3()` with `Kvaerno3()`"
            )
        if (
            isinstance(self.switch_after, bool)
            or not isinstance(self.switch_after, int)
            or self.switch_after < 1
        ):
            raise ValueError(
                f"`AutoSwitch(switch_after=...)` must be a positive int, got {self.switch_after!r}"
            )
        if not (isinstance(self.margin, (int, float)) and 0 < self.margin <= 1):
            raise ValueError(f"`AutoSwitch(margin=...)` must be in (0, 1], got {self.margin!r}")
        object.__setattr__(self, "explicit", explicit)
        object.__setattr__(self, "implicit", implicit)
        object.__setattr__(self, "_boundary", stability_boundary(explicit))

    # -- the contract --------------------------------------------------------------------------

    generic_terms = False
    uses_jacobian = True
    interpolation_order = 3
    dense_matrix = tuple(
        tuple(float(x) for x in row)
        for row in (hermite_interpolant(1).matrix[r] for r in (0, 1, 2, 3))
    )
    failure_hint = AbstractDIRK.failure_hint

    @property
    def order(self) -> int:  # type: ignore[override]
        return min(self.explicit.order, self.implicit.order)

    @property
    def error_order(self) -> int:  # type: ignore[override]
        return self.explicit.error_order

    @property
    def statistics(self) -> tuple[str, ...]:  # type: ignore[override]
        return (*self.implicit.statistics, "num_implicit_steps")

    def __repr__(self) -> str:
        return f"AutoSwitch(explicit={self.explicit!r}, implicit={self.implicit!r})"

    def check_terms(self, term: Any) -> None:
        self.implicit.check_terms(term)

    def init(self, problem: Problem, t0, y0):
        return self.implicit.init(problem, t0, y0)

    def carry(self, y0: torch.Tensor, vf0: Any) -> tuple:
        batch = y0.shape[0]
        zeros = torch.zeros(batch, dtype=torch.long, device=y0.device)
        return (
            torch.zeros(batch, dtype=torch.bool, device=y0.device),
            zeros,
            self.implicit.carry(y0, vf0),
        )

    def first_state(self, problem: Problem, t0, y0):
        return self.carry(y0, self.init(problem, t0, y0)[0])

    # -- a step --------------------------------------------------------------------------------

    def step(self, problem, t0, t1, y0, state) -> StepResult:
        stiff, run, carry = state
        f0 = _Carry.of(carry).f
        control = problem.contr(t0, t1)
        h = control.to(y0.dtype).reshape(-1).expand(y0.shape[0])
        use_implicit = bool(stiff.any())
        use_explicit = not bool(stiff.all())
        nfe = 0
        if use_explicit:
            ex = self.explicit.step(problem, t0, t1, y0, f0)
            nfe += ex.nfe
        if use_implicit:
            im = self.implicit.step(problem, t0, t1, y0, carry)
            nfe += im.nfe
        if use_explicit and use_implicit:  # a mixed batch: both, then each sample its own
            pick = stiff[:, None]
            y1 = torch.where(pick, im.y1, ex.y1)
            y_error = torch.where(pick, im.y_error, ex.y_error)
            f1 = torch.where(pick, _Carry.of(im.state).f, problem.flat(ex.state))
            failed = stiff & im.failed
        elif use_implicit:
            y1, y_error, f1, failed = im.y1, im.y_error, _Carry.of(im.state).f, im.failed
        else:
            y1, y_error, f1, failed = ex.y1, ex.y_error, problem.flat(ex.state), None
        # the mode of the next step, from this one's stiffness estimate
        measure = self._measure(
            problem, y0, h, stiff, ex if use_explicit else None, im if use_implicit else None
        )
        limit = self.margin * self._boundary
        evidence = torch.where(stiff, measure <= limit / 2, measure >= limit)
        run_next = torch.where(evidence, run + 1, torch.zeros_like(run))
        switch = run_next >= self.switch_after
        stiff_next = stiff ^ switch
        run_next = torch.where(switch, torch.zeros_like(run), run_next)
        new_carry = self._next_carry(carry, im if use_implicit else None, f1, stiff)
        rejected = carry if not use_implicit else im.rejected_state
        counts = dict(im.counts) if use_implicit else {}
        counts = {name: counts.get(name, 0) * stiff for name in self.implicit.statistics}
        counts["num_implicit_steps"] = stiff.long()
        return StepResult(
            y1,
            y_error,
            (stiff_next, run_next, new_carry),
            (y0, y1, h[:, None] * f0, h[:, None] * f1),
            nfe,
            failed=failed,
            counts=counts,
            rejected_state=(stiff, run, rejected),
        )

    def _measure(self, problem, y0, h, stiff, ex, im) -> torch.Tensor:
        """``|hλ|`` per sample: from the explicit step's last two stages (``‖k_s - k_{s-1}‖ /
        ‖y_s - y_{s-1}‖``), or from the implicit method's Jacobian (``h‖J‖∞``)."""
        batch = y0.shape[0]
        measure = torch.zeros(batch, dtype=y0.dtype, device=y0.device)
        if ex is not None:
            _, y1, ks, scale, _, _ = ex.dense
            explicit = self.explicit
            y_prev = combine(y0, explicit._a[-2], ks, scale)  # the stage before y1 (FSAL)
            dk = (ks[-1] - ks[-2]) * scale
            dy = y1 - y_prev
            ratio = torch.linalg.vector_norm(dk, dim=1) / torch.linalg.vector_norm(dy, dim=1).clamp(
                min=torch.finfo(y0.dtype).tiny
            )
            measure = torch.where(stiff, measure, ratio)
        if im is not None:
            jac = _Carry.of(im.state).jac
            if jac.numel():
                norm = jac.abs().sum(dim=2).amax(dim=1)
                measure = torch.where(stiff, h.abs() * norm, measure)
            else:  # no Jacobian yet (matrix-free): stay stiff
                measure = torch.where(stiff, torch.full_like(measure, math.inf), measure)
        return torch.nan_to_num(measure, nan=0.0)

    def _next_carry(self, carry, im, f1, stiff) -> tuple:
        """The implicit method's carried state for the next step, its ``f`` the new ``f1``
        (whichever method took the step; its Jacobian stays for when it is needed)."""
        base = _Carry.of(carry if im is None else im.state)
        if im is not None:
            old = _Carry.of(carry)
            pick = stiff
            base = _Carry(
                f1,
                torch.where(pick[:, None, None], base.jac, old.jac)
                if base.jac.shape == old.jac.shape
                else base.jac,
                torch.where(pick[:, None, None], base.lu, old.lu)
                if base.lu.shape == old.lu.shape
                else base.lu,
                torch.where(pick[:, None], base.pivots, old.pivots)
                if base.pivots.shape == old.pivots.shape
                else base.pivots,
                torch.where(pick, base.lu_gh, old.lu_gh),
                torch.where(pick, base.current, torch.zeros_like(old.current)),
                torch.where(pick, base.stale, torch.ones_like(old.stale)),
            )
        else:
            base = _Carry(
                f1,
                base.jac,
                base.lu,
                base.pivots,
                base.lu_gh,
                torch.zeros_like(base.current),
                torch.ones_like(base.stale),
            )
        return base.tree()

    def dense_rows(self, problem: Problem, result: StepResult) -> torch.Tensor:
        return torch.stack(result.dense, dim=1)
