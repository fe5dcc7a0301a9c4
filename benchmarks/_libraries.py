"""One solve per library, set up the same way: same field object, tolerances, save times and dtype.

Each ``*_solve`` function returns a closure that runs one solve and returns the library's result;
the ``*_counts`` functions read attempted steps from it. torchdiffeq and torchode are optional:
their builders are only called when :func:`~benchmarks._common.peer` found them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

import torchnde

from ._common import Counts, peer, steps_str

__all__ = [
    "nde_counts",
    "nde_solve",
    "tdq_counts",
    "tdq_solve",
    "tod_counts",
    "tod_rk4",
    "tod_solve",
    "torchdiffeq",
    "torchode",
]

torchdiffeq = peer("torchdiffeq")
torchode = peer("torchode")


# ------------------------------------------------------------------------------------------------
# torchnde


def nde_solve(
    field: torch.nn.Module,
    y0: torch.Tensor,
    ts: torch.Tensor,
    *,
    solver: torchnde.AbstractSolver,
    rtol: float | None = None,
    atol: float | None = None,
    dt0: float | None = None,
    batch_axis: int | None = None,
    adjoint: Any = None,
    max_steps: int = 100_000,
) -> Callable[[], Any]:
    """An adaptive solve (``rtol``/``atol``) or a fixed-step one (``dt0``) of ``dy/dt = field``."""
    term = torchnde.ODETerm(field)
    if dt0 is None:
        controller = torchnde.PIDController(rtol=rtol, atol=atol)
    else:
        controller = torchnde.ConstantStepSize()
    saveat = torchnde.SaveAt(ts=ts)
    t0, t1 = float(ts[0]), float(ts[-1])

    def solve() -> Any:
        return torchnde.solve(
            term,
            solver,
            t0,
            t1,
            y0,
            dt0=dt0,
            saveat=saveat,
            controller=controller,
            adjoint=adjoint,
            batch_axis=batch_axis,
            max_steps=max_steps,
        )

    return solve


def nde_counts(sol: Any, calls: int, tdq_steps: int) -> Counts:
    return Counts(steps_str(sol.stats["num_steps"]), calls)


# ------------------------------------------------------------------------------------------------
# torchdiffeq (one step size for the whole batch; times in float64 by default)


def tdq_solve(
    field: torch.nn.Module,
    y0: torch.Tensor,
    ts: torch.Tensor,
    *,
    method: str,
    rtol: float | None = None,
    atol: float | None = None,
    step_size: float | None = None,
    adjoint: bool = False,
) -> Callable[[], Any]:
    """``odeint`` (or ``odeint_adjoint`` with seminorms, as torchnde's backsolve uses)."""
    kwargs: dict[str, Any] = {"method": method}
    if step_size is None:
        kwargs.update(rtol=rtol, atol=atol)
    else:
        kwargs.update(options={"step_size": step_size})
    if adjoint:
        kwargs.update(
            adjoint_params=tuple(field.parameters()),
            adjoint_options={"norm": "seminorm"},
        )
        odeint = torchdiffeq.odeint_adjoint
    else:
        odeint = torchdiffeq.odeint

    def solve() -> Any:
        return odeint(field, y0, ts, **kwargs)

    return solve


def tdq_counts(ys: Any, calls: int, tdq_steps: int) -> Counts:
    return Counts(str(tdq_steps), calls)


# ------------------------------------------------------------------------------------------------
# torchode (always one step size per sample; its documented batched API)


def tod_solve(
    field: torch.nn.Module,
    y0: torch.Tensor,
    ts: torch.Tensor,
    *,
    method: str = "dopri5",
    rtol: float | None = None,
    atol: float | None = None,
    dt0: float | None = None,
    backsolve: bool = False,
) -> Callable[[], Any]:
    """``AutoDiffAdjoint`` (or ``BacksolveAdjoint``) with an ``IntegralController`` (the controller
    torchnde's default ``PIDController`` and torchdiffeq use) or a ``FixedStepController``."""
    to = torchode
    term = to.ODETerm(field)
    step = {"dopri5": to.Dopri5, "tsit5": to.Tsit5, "rk4": tod_rk4()}[method](term=term)
    if dt0 is None:
        controller = to.IntegralController(atol=atol, rtol=rtol, term=term)
    else:
        controller = to.FixedStepController()
    if backsolve:
        adjoint = to.BacksolveAdjoint(term, step, controller)
    else:
        adjoint = to.AutoDiffAdjoint(step, controller)
    batch = y0.shape[0]
    t_eval = ts.expand(batch, -1)
    dt0_ = None if dt0 is None else torch.full((batch,), dt0, dtype=ts.dtype)

    def solve() -> Any:
        problem = to.InitialValueProblem(y0=y0, t_eval=t_eval)
        return adjoint.solve(problem, dt0=dt0_)

    return solve


def tod_counts(sol: Any, calls: int, tdq_steps: int) -> Counts:
    return Counts(steps_str(sol.stats["n_steps"]), calls)


_RK4 = None


def tod_rk4() -> type:
    """The classic RK4 built from torchode's own ``ExplicitRungeKutta`` and ``ButcherTableau``
    (torchode ships no RK4); its dense output is torchode's cubic ``from_k`` interpolation."""
    global _RK4
    if _RK4 is not None:
        return _RK4
    from torchode.interpolation import ThirdOrderPolynomialInterpolation
    from torchode.single_step_methods.runge_kutta import ButcherTableau, ExplicitRungeKutta

    tableau = ButcherTableau.from_lists(
        c=[0.0, 0.5, 0.5, 1.0],
        a=[[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]],
        b=[1 / 6, 1 / 3, 1 / 3, 1 / 6],
        b_err=[0.0, 0.0, 0.0, 0.0],
    )

    class RK4(ExplicitRungeKutta):
        def __init__(self, term=None):
            super().__init__(term, tableau)

        def convergence_order(self):
            return 4

        def build_interpolation(self, data):
            return ThirdOrderPolynomialInterpolation.from_k(
                data.t0, data.dt, data.y0, data.y1, data.k
            )

    _RK4 = RK4
    return RK4
