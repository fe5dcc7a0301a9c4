"""Hypersolvers (Poli, Massaroli, Yamashita, Asama & Park, *Hypersolvers: toward fast
continuous-depth models*, NeurIPS 2020): a cheap explicit step corrected by a small network
trained on the step's local error,

    y_{k+1} = y_k + ψ_h(t_k, y_k) + h^{p+1} g_ω(t_k, y_k, h),

where ``ψ`` is the increment of a base method of order ``p``. If ``g_ω`` matched the scaled
local truncation error exactly, the step would be exact; in practice it removes most of it, so a
few corrected Euler steps can beat many plain ones.

Built by composition: a hypersolver wraps its base solver's public methods and adds the
correction; it is a solver like any other for :func:`torchnde.solve` (constant steps).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .. import solve as _solve
from .._saveat import SaveAt
from ..controllers import ConstantStepSize, PIDController
from ..solvers import RK4, AbstractSolver, Dopri5, Euler, Midpoint
from ..solvers._base import StepResult
from ..terms import AbstractTerm, ODETerm

__all__ = [
    "AbstractHyperSolver",
    "HyperEuler",
    "HyperMidpoint",
    "HyperNet",
    "HyperRK4",
    "HypersolverFit",
    "fit_hypersolver",
]


class HyperNet(nn.Module):
    """A default correction ``g_ω(t, y, h)``: an MLP on ``[y, h]`` (and ``t`` if
    ``time_dependent``) for states ``(..., dim)``.

    Args:
        dim: the state's last axis.
        hidden: hidden width; depth: hidden layers.
        time_dependent: feed ``t`` as well (for non-autonomous fields).
    """

    def __init__(self, dim: int, hidden: int = 32, depth: int = 2, time_dependent: bool = False):
        super().__init__()
        self.time_dependent = bool(time_dependent)
        width = dim + 1 + int(self.time_dependent)
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.Softplus()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, t: torch.Tensor, y: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        lead = y.shape[:-1]
        parts = [y, _column(h, lead, y)]
        if self.time_dependent:
            parts.append(_column(t, lead, y))
        return self.net(torch.cat(parts, dim=-1))


def _column(x: torch.Tensor, lead: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """A 0-dim or ``(batch,)`` time broadcast to ``(*lead, 1)``."""
    x = x.to(like.dtype)
    if x.ndim == 0:
        return x.expand(*lead, 1)
    return x.reshape(x.shape[0], *([1] * (len(lead) - 1)), 1).expand(*lead, 1)


class AbstractHyperSolver(AbstractSolver):
    """A base explicit solver's step plus ``h^{p+1} g_ω(t, y, h)``.

    Subclasses set ``base`` (the base method's class). The correction ``g_ω`` is any callable
    ``g(t, y, h) -> like y`` (an ``nn.Module``: its parameters train with
    :func:`fit_hypersolver` or end to end); ``t`` is the step's start time and ``h`` the signed
    step, as the vector field sees them (0-dim, or ``(batch,)`` under ``batch_axis=0``).

    Cost per step: the base step's evaluations, one more of the field at the corrected point (the
    next step's first stage: the base step's own final evaluation, at the uncorrected point,
    cannot be reused — see the note in :meth:`step`), and one of ``g_ω``, which ``stats["nfe"]``
    does not count. No error estimate: constant steps only.

    Relies on the base solver's ``init``, ``carry``, ``first_state``, ``check_terms``, ``step``
    (``y1``, ``nfe``, ``dense``), ``dense_rows``, ``dense_matrix``, ``order`` and
    ``supports_host``.
    """

    base: ClassVar[type[AbstractSolver]]
    error_order = None

    def __init__(self, correction: Callable[..., Any]):
        if not callable(correction):
            raise TypeError(
                f"`correction` must be callable as g(t, y, h), e.g. `HyperNet(dim)`, got "
                f"{type(correction).__name__}"
            )
        self.correction = correction
        self.solver = self.base()
        self.order = self.solver.order
        self.interpolation_order = self.solver.interpolation_order
        self.supports_host = self.solver.supports_host
        degree = len(self.solver.dense_matrix[0])
        self.dense_matrix = (
            *self.solver.dense_matrix,
            tuple(1.0 if p == 1 else 0.0 for p in range(degree)),
        )

    def check_terms(self, term: Any) -> None:
        if not isinstance(term, ODETerm):
            raise TypeError(
                f"{type(self).__name__} corrects ODE steps; got a {type(term).__name__}, use an "
                "`ODETerm`"
            )
        self.solver.check_terms(term)

    def init(self, problem, t0, y0):
        return self.solver.init(problem, t0, y0)

    def carry(self, y0, vf0):
        return self.solver.carry(y0, vf0)

    def first_state(self, problem, t0, y0):
        return self.solver.first_state(problem, t0, y0)

    def step(self, problem, t0, t1, y0, state) -> StepResult:
        res = self.solver.step(problem, t0, t1, y0, state)
        t = problem.user_time(t0)
        h = problem.user_time(t1) - t
        g = self.correction(t, problem.spec.unflatten(y0), h)
        power = h ** (self.order + 1)
        delta = problem.spec.flatten(g) * (power[:, None] if power.ndim else power)
        y1 = res.y1 + delta.to(res.y1.dtype)
        # the base step ended with the field at its own (uncorrected) y1: the next step needs it
        # at the corrected point, one more evaluation
        vf1, nfe = self.solver.init(problem, t1, y1)
        return StepResult(y1, None, self.solver.carry(y1, vf1), (res, delta), res.nfe + nfe)

    def dense_rows(self, problem, result):
        res, delta = result.dense
        rows = self.solver.dense_rows(problem, res)
        return torch.cat([rows, delta[:, None]], dim=1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.correction!r})"


class HyperEuler(AbstractHyperSolver):
    """Euler plus ``h² g_ω(t, y, h)`` (Poli et al. 2020's HyperEuler)."""

    base = Euler


class HyperMidpoint(AbstractHyperSolver):
    """The explicit midpoint method plus ``h³ g_ω(t, y, h)``."""

    base = Midpoint


class HyperRK4(AbstractHyperSolver):
    """Classic RK4 plus ``h⁵ g_ω(t, y, h)``."""

    base = RK4


# ------------------------------------------------------------------------------------------------
# fitting g on one-step residuals


@dataclass
class HypersolverFit:
    """What :func:`fit_hypersolver` did.

    Attributes:
        losses: the residual-fitting loss per iteration.
        residual_scale: the mean squared scaled residual ``‖R‖²`` (the loss of ``g = 0``).
        points: how many ``(t_k, y_k)`` pairs the residuals were computed at.
    """

    losses: list[float]
    residual_scale: float
    points: int


def _term(field: Any) -> AbstractTerm:
    if isinstance(field, AbstractTerm):
        return field
    if not callable(field):
        raise TypeError(f"`field` must be f(t, y, args) or an ODETerm, got {type(field).__name__}")
    return ODETerm(field)


def hypersolver_residuals(
    solver: AbstractHyperSolver,
    field: Any,
    y0: torch.Tensor,
    t0: float,
    t1: float,
    steps: int,
    *,
    args: Any = None,
    rtol: float = 1e-9,
    atol: float = 1e-9,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """The training set of a hypersolver: ``(t_k, y_k, R_k, h)`` with ``y_k`` on reference
    trajectories (Dopri5 at ``rtol``/``atol``) from every row of ``y0`` on the mesh
    ``t_k = t0 + k h``, ``h = (t1 - t0)/steps``, and the scaled one-step residuals
    ``R_k = (y_{k+1} - y_k - ψ_h(t_k, y_k)) / h^{p+1}`` of the base method."""
    term = _term(field)
    h = (t1 - t0) / steps
    mesh = torch.linspace(t0, t1, steps + 1, dtype=y0.dtype, device=y0.device)
    with torch.no_grad():
        ref = _solve(
            term,
            Dopri5(),
            t0,
            t1,
            y0,
            args=args,
            saveat=SaveAt(ts=mesh),
            controller=PIDController(rtol=rtol, atol=atol),
        ).ys  # (steps + 1, n, ...)
        starts = ref[:-1].reshape(-1, *y0.shape[1:])
        ends = ref[1:].reshape(-1, *y0.shape[1:])
        times = mesh[:-1].repeat_interleave(y0.shape[0])
        base = _solve(
            term,
            solver.solver,
            times,
            times + h,
            starts,
            args=args,
            dt0=torch.full_like(times, h),
            controller=ConstantStepSize(),
            batch_axis=0,
        ).ys[:, -1]
    residual = (ends - base) / h ** (solver.order + 1)
    return times, starts, residual, h


def fit_hypersolver(
    solver: AbstractHyperSolver,
    field: Any,
    y0: torch.Tensor,
    t0: float,
    t1: float,
    steps: int,
    *,
    args: Any = None,
    optimizer: str = "lbfgs",
    iterations: int = 500,
    lr: float | None = None,
    batch_size: int | None = None,
    rtol: float = 1e-9,
    atol: float = 1e-9,
    generator: torch.Generator | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> HypersolverFit:
    """Fit ``solver.correction`` (an ``nn.Module``) on one-step residuals against a
    tight-tolerance reference (Poli et al. 2020's residual fitting): minimise
    ``mean ‖g_ω(t_k, y_k, h) - R_k‖²``, where ``R_k`` is the base method's scaled local error on
    the mesh of ``steps`` steps over ``[t0, t1]`` (see :func:`hypersolver_residuals`).

    Args:
        solver: the hypersolver whose correction is trained.
        field: ``f(t, y, args)`` (e.g. a trained neural ODE's field) or an ``ODETerm``.
        y0: initial conditions ``(n, ...)`` of the training trajectories.
        t0, t1, steps: the span and the number of steps the hypersolver will take.
        optimizer: ``"lbfgs"`` (default: full batch, a smooth small regression that L-BFGS
            fits one to two orders of magnitude tighter than Adam in the same time) or
            ``"adam"`` (with ``batch_size`` for large residual sets).
        iterations: L-BFGS iterations, or Adam steps.
        lr: the learning rate (default 1 for L-BFGS with a strong-Wolfe line search, 1e-2 for
            Adam, annealed by a cosine schedule).
        rtol, atol: the reference solve's tolerances.
        generator: draws Adam's mini-batches.
        callback: called as ``callback(iteration, loss)``.

    Returns:
        A :class:`HypersolverFit`.
    """
    if not isinstance(solver, AbstractHyperSolver):
        raise TypeError(f"`solver` must be a hypersolver such as HyperEuler(g), got {solver!r}")
    if not isinstance(solver.correction, nn.Module):
        raise TypeError("`solver.correction` must be an nn.Module to be fitted")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` must be a positive int, got {steps!r}")
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"`optimizer` must be 'lbfgs' or 'adam', got {optimizer!r}")
    times, starts, residual, h = hypersolver_residuals(
        solver, field, y0, t0, t1, steps, args=args, rtol=rtol, atol=atol
    )
    h_t = torch.full_like(times, h)
    params = list(solver.correction.parameters())
    losses: list[float] = []

    def loss_at(idx) -> torch.Tensor:
        return (solver.correction(times[idx], starts[idx], h_t[idx]) - residual[idx]).pow(2).mean()

    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(
            params,
            lr=1.0 if lr is None else lr,
            max_iter=iterations,
            history_size=50,
            line_search_fn="strong_wolfe",
        )

        def closure():
            opt.zero_grad()
            loss = loss_at(slice(None))
            loss.backward()
            losses.append(loss.item())
            if callback is not None:
                callback(len(losses) - 1, losses[-1])
            return loss

        opt.step(closure)
        losses.append(loss_at(slice(None)).item())
    else:
        lr = 1e-2 if lr is None else lr
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations, eta_min=lr / 20)
        n = starts.shape[0]
        for it in range(iterations):
            full = batch_size is None or batch_size >= n
            idx = slice(None) if full else torch.randint(0, n, (batch_size,), generator=generator)
            loss = loss_at(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if callback is not None:
                callback(it, losses[-1])
    return HypersolverFit(losses, residual.pow(2).mean().item(), starts.shape[0])
