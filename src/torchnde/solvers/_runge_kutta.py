"""Runge–Kutta methods as data: :class:`AbstractRungeKutta` prepares any tableau (explicit or
diagonally implicit) once per class; one generic stepper, :class:`AbstractExplicitRungeKutta`,
runs every explicit tableau (the diagonally implicit ones are stepped by
:class:`~torchnde.solvers.AbstractDIRK`, on the same pieces).

Stages are ``k_i = prod(vf(t0 + c_i dt, y0 + Σ_j a_ij k_j), control)`` (for an ODE,
``k_i = dt · f(...)``), the solution ``y1 = y0 + Σ_j b_j k_j`` and the error estimate
``Σ_j (b_j - b̂_j) k_j``. The vector field at ``(t1, y1)`` is always returned as the next step's
first stage: free for first-same-as-last (FSAL) methods, and for the others it replaces the
evaluation the next step would make anyway, while giving every method a cubic Hermite dense
output.

Every coefficient is a Python float, so the step makes no Python decision on tensor values and
compiles with ``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import torch

from .._problem import Problem
from ._base import AbstractSolver, StepResult
from ._tableau import ButcherTableau, Interpolant, hermite_interpolant

__all__ = ["AbstractExplicitRungeKutta", "AbstractRungeKutta", "combine"]

_Coeffs = tuple[tuple[int, float], ...]


def _nonzero(row) -> _Coeffs:
    return tuple((j, float(x)) for j, x in enumerate(row) if x != 0)


def combine(
    base: torch.Tensor | None, coeffs: _Coeffs, ks: list[torch.Tensor], scale: float = 1.0
) -> torch.Tensor:
    """``base + Σ_j scale·coeffs_j k_j``, allocating one tensor."""
    if base is None:
        (j0, c0), coeffs = coeffs[0], coeffs[1:]
        acc = ks[j0] * (c0 * scale)
    elif not coeffs:
        return base
    else:
        (j0, c0), coeffs = coeffs[0], coeffs[1:]
        acc = base.add(ks[j0], alpha=c0 * scale)
    for j, c in coeffs:
        acc.add_(ks[j], alpha=c * scale)
    return acc


class AbstractRungeKutta(AbstractSolver):
    """A Runge–Kutta method given by its :class:`ButcherTableau`: what explicit and diagonally
    implicit methods share — the tableau's coefficients prepared once per class, stage times,
    ``Σ a_ij k_j`` combinations, the dense output (the method's own interpolant, or cubic Hermite
    through ``(y0, dt·f0)`` and ``(y1, dt·f1)``). A subclass sets ``tableau`` (and ``interpolant``
    if the method publishes one); :class:`AbstractExplicitRungeKutta` and the diagonally implicit
    :class:`~torchnde.solvers.AbstractDIRK` add the stepping."""

    tableau: ClassVar[ButcherTableau]
    interpolant: ClassVar[Interpolant | None] = None
    generic_terms = True

    # derived once per class
    _a: ClassVar[tuple[_Coeffs, ...]]
    _b: ClassVar[_Coeffs]
    _e: ClassVar[_Coeffs | None]
    _c: ClassVar[tuple[float, ...]]
    _diagonal: ClassVar[tuple[float, ...]]
    _predictor: ClassVar[tuple[_Coeffs, ...] | None]
    _rows: ClassVar[tuple[int, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "tableau" not in cls.__dict__:
            return
        tab = cls.tableau
        cls.order = tab.order
        if "interpretation" not in cls.__dict__:
            # on an SDE (every stage reuses the step's increment) a consistent method converges
            # to the Itô solution at order 1 (Euler–Maruyama) and to Stratonovich's above
            cls.interpretation = "ito" if tab.order == 1 else "stratonovich"
        cls.error_order = None if tab.b_hat is None else tab.embedded_order + 1
        cls._a = tuple(_nonzero(row) for row in tab.a)
        cls._b = _nonzero(tab.b)
        cls._e = None if tab.b_error is None else _nonzero(tab.b_error)
        cls._c = tuple(float(x) for x in tab.c)
        cls._diagonal = tuple(float(x) for x in tab.diagonal)
        cls._predictor = (
            None if tab.a_predictor is None else tuple(_nonzero(r) for r in tab.a_predictor)
        )
        interp = cls.interpolant or hermite_interpolant(tab.stages)
        interp.check(tab)
        cls.interpolation_order = interp.order
        matrix = [list(row) for row in interp.matrix]
        if tab.fsal:  # k_end is k_s: fold its row in
            matrix[tab.stages + 1] = [x + y for x, y in zip(matrix[tab.stages + 1], matrix[-1])]
            matrix[-1] = [0] * len(matrix[-1])
        cls._rows = tuple(r for r, row in enumerate(matrix) if any(x != 0 for x in row))
        cls.dense_matrix = tuple(tuple(float(x) for x in matrix[r]) for r in cls._rows)

    def _stage_times(self, t0, t1) -> list:
        """``t0 + c_i (t1 - t0)`` for every stage (``t1`` itself where ``c_i == 1``); per-sample
        ``(batch,)`` tensors are computed in one operation."""
        if not isinstance(t0, torch.Tensor) or torch.compiler.is_compiling():
            # compiled: no tensor of the c_i, which inductor (torch 2.13) fails to declare
            # inside a while_loop once it is too large to inline (Dopri8's 16 stages)
            dt = t1 - t0
            return [t1 if c == 1.0 else t0 + c * dt for c in self._c]
        all_times = torch.addcmul(t0[:, None], (t1 - t0)[:, None], t0.new_tensor(self._c))
        return [t1 if c == 1.0 else all_times[:, i] for i, c in enumerate(self._c)]

    def dense_rows(self, problem: Problem, result: StepResult) -> torch.Tensor:
        """Rows ``(y0, y1, k_1, ..., k_s, k_end)`` that the interpolant uses, stacked; ``result.dense``
        holds ``(y0, y1, ks, scale, vf_end, control)``."""
        y0, y1, ks, scale, vf_end, control = result.dense
        rows = []
        stages = len(ks)
        for r in self._rows:
            if r == 0:
                rows.append(y0)
            elif r == 1:
                rows.append(y1)
            elif r < stages + 2:
                rows.append(ks[r - 2] if scale == 1.0 else ks[r - 2] * scale)
            else:
                rows.append(problem.prod(vf_end, control))
        return torch.stack(rows, dim=1)


class AbstractExplicitRungeKutta(AbstractRungeKutta):
    """An explicit Runge–Kutta method: a subclass sets ``tableau`` and, if the method has a
    published one, ``interpolant``; otherwise dense output is cubic Hermite."""

    supports_host = True
    supports_compile = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if "tableau" in cls.__dict__ and cls.tableau.implicit:
            raise TypeError(
                f"{cls.__name__}: an explicit Runge–Kutta method needs a tableau without diagonal "
                "entries; derive a diagonally implicit method from AbstractDIRK"
            )
        super().__init_subclass__(**kwargs)

    def init(self, problem: Problem, t0: torch.Tensor, y0: torch.Tensor) -> tuple[Any, int]:
        return problem.vf(t0, y0), 1

    def step(self, problem, t0, t1, y0, state):
        control = problem.contr(t0, t1)
        # k_j = prod(vf_j, control); when that is a multiplication by a number (an ODE in the
        # loop's host mode) the stages keep vf_j and the number joins the coefficients instead
        scale = problem.fold(control)
        if scale is None:
            stage = functools.partial(problem.prod, control=control)
            scale = 1.0
        else:
            stage = problem.flat
        times = self._stage_times(t0, t1)
        ks = [stage(state)]
        vf = state
        y_stage = y0
        for i in range(1, len(self._c)):
            y_stage = combine(y0, self._a[i], ks, scale)
            vf = problem.vf(times[i], y_stage)
            ks.append(stage(vf))
        if self.tableau.fsal:
            y1, vf_end, nfe = y_stage, vf, len(self._c) - 1
        else:
            y1 = combine(y0, self._b, ks, scale)
            vf_end, nfe = problem.vf(t1, y1), len(self._c)
        y_error = None if self._e is None else combine(None, self._e, ks, scale)
        return StepResult(y1, y_error, vf_end, (y0, y1, ks, scale, vf_end, control), nfe)
