"""The adjoint check: for an autonomous field, ``H = a · f(y)`` is conserved along the adjoint's
backward solve, and the continuous adjoint's gradients equal backpropagation's to the solver's
tolerance.

With ``dy/dt = f(y)`` and the adjoint ``a = ∂L/∂y(t)``, ``da/dt = −aᵀ ∂f/∂y``:

    d/dt (a · f) = (da/dt) · f + aᵀ (∂f/∂y) (dy/dt) = −aᵀ J f + aᵀ J f = 0,

the Hamiltonian of Pontryagin's principle (the seed talk "Differential equations and neural
networks": the adjoint equation as backpropagation, in Hamiltonian form). The backward solve here
is the augmented system ``(y, a, g)`` with ``dg/dt = −aᵀ ∂f/∂θ``, integrated from ``t1`` to
``t0`` with :func:`torchnde.solve` itself — not a second solve loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._saveat import SaveAt
from .._solve import solve
from ..adjoints import BacksolveAdjoint, DirectAdjoint
from ..controllers import PIDController
from ..solvers import AbstractSolver, Dopri5
from ..terms import ODETerm

__all__ = ["AdjointCheck", "adjoint_check"]


@dataclass(frozen=True)
class AdjointCheck:
    """What :func:`adjoint_check` measured.

    Attributes:
        ts: the times of the backward solve's saved values, from ``t1`` down to ``t0``.
        invariant: ``a · f(y)`` at those times.
        invariant_drift: ``max_t |a·f(t) − a·f(t1)| / |a·f(t1)|``.
        errors: relative errors ``‖g − g_backprop‖ / ‖g_backprop‖`` of the gradients, for
            ``"backsolve"`` (``BacksolveAdjoint``) and ``"augmented"`` (this check's own backward
            solve), each over ``y0`` and the parameters together; backprop is ``DirectAdjoint``
            through the same tolerances.
        nfe: forward and backward vector-field evaluations per method.
        rtol, atol: the tolerances used everywhere.
    """

    ts: list[float]
    invariant: list[float]
    invariant_drift: float
    errors: dict[str, float]
    nfe: dict[str, int]
    rtol: float
    atol: float

    def passed(self, gradient_tol: float = 1e-6, invariant_tol: float = 1e-6) -> bool:
        """Whether every gradient error is below ``gradient_tol`` and the drift of ``a · f``
        below ``invariant_tol``."""
        return self.invariant_drift < invariant_tol and all(
            e < gradient_tol for e in self.errors.values()
        )

    def report(self, gradient_tol: float = 1e-6, invariant_tol: float = 1e-6) -> str:
        """A short Markdown report: the errors, the drift, the verdict."""
        lines = [
            f"Adjoint check at rtol = {self.rtol:g}, atol = {self.atol:g}:",
            "",
            "| quantity | value | bound |",
            "|---|---|---|",
        ]
        for name, value in self.errors.items():
            lines.append(
                f"| gradient error, {name} vs backprop | {value:.3e} | < {gradient_tol:g} |"
            )
        lines.append(
            f"| drift of a·f along the backward solve | {self.invariant_drift:.3e} "
            f"| < {invariant_tol:g} |"
        )
        verdict = "passed" if self.passed(gradient_tol, invariant_tol) else "FAILED"
        return "\n".join([*lines, "", f"The check {verdict}."])

    def plot(self) -> Any:
        """A matplotlib figure of ``a·f(t) − a·f(t1)`` along the backward solve."""
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        start = self.invariant[0]
        ax.plot(self.ts, [v - start for v in self.invariant], "o-", ms=3)
        ax.set_xlabel("t (solved from t1 down to t0)")
        ax.set_ylabel("a·f(t) − a·f(t1)")
        ax.set_title(f"the adjoint's invariant: relative drift {self.invariant_drift:.2e}")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        return fig


def adjoint_check(
    field: nn.Module,
    y0: torch.Tensor,
    t0: float = 0.0,
    t1: float = 1.0,
    *,
    loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
    solver: AbstractSolver | None = None,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    saves: int = 51,
    params: Sequence[torch.Tensor] | None = None,
) -> AdjointCheck:
    """Check the continuous adjoint on an autonomous vector field.

    Three gradients of ``loss(y(t1))`` with respect to ``y0`` and the field's parameters:
    backpropagation through the solver (``DirectAdjoint``), ``BacksolveAdjoint``, and this
    check's own backward solve of the augmented adjoint system ``(y, a, g)``, along which it
    records ``a · f(y)`` (conserved for an autonomous field). All solves use ``solver`` with a
    ``PIDController(rtol, atol)``.

    Args:
        field: ``field(t, y, args)``, autonomous (``t`` unused): checked at ``t0`` and ``t1``.
        y0: the initial state ``(..., n)``; float64 for tolerances as tight as the defaults.
        t0, t1: the span.
        loss: ``loss(y1) -> scalar`` (default ``½ ‖y1‖²``).
        solver: an adaptive solver (default ``Dopri5()``).
        rtol, atol: the tolerances of every solve.
        saves: how many times the backward solve saves ``(y, a)`` to evaluate ``a · f``.
        params: the parameters to differentiate (default: ``field.parameters()``).

    Returns:
        An :class:`AdjointCheck` (``.passed()``, ``.report()``, ``.plot()``).

    Raises:
        ValueError: the field depends on ``t``, or the tolerances are below ``y0``'s precision.
    """
    solver = Dopri5() if solver is None else solver
    loss = _half_square if loss is None else loss
    params = [p for p in (field.parameters() if params is None else params) if p.requires_grad]
    _check_inputs(field, y0, t0, t1, rtol, atol, saves)
    controller = PIDController(rtol=rtol, atol=atol)
    term = ODETerm(field)

    reference, nfe = {}, {}
    for name, adjoint in (
        ("backprop", DirectAdjoint()),
        ("backsolve", BacksolveAdjoint(rtol=rtol, atol=atol)),
    ):
        start = y0.detach().clone().requires_grad_()
        sol = solve(term, solver, t0, t1, start, controller=controller, adjoint=adjoint)
        value = loss(sol.ys[-1])
        reference[name] = torch.autograd.grad(value, [start, *params], allow_unused=True)
        nfe[name] = int(sol.stats["nfe"]) + int(sol.stats["nfe_backward"])
    augmented, ts, invariant, nfe["augmented"] = _augmented_backward(
        field, term, solver, controller, y0, t0, t1, loss, params, saves
    )
    grads = {"backsolve": reference["backsolve"], "augmented": augmented}
    errors = {name: _relative(g, reference["backprop"]) for name, g in grads.items()}
    scale = max(abs(invariant[0]), torch.finfo(y0.dtype).tiny)
    drift = max(abs(v - invariant[0]) for v in invariant) / scale
    return AdjointCheck(ts, invariant, drift, errors, nfe, float(rtol), float(atol))


def _half_square(y: torch.Tensor) -> torch.Tensor:
    return 0.5 * y.square().sum()


def _check_inputs(field, y0, t0, t1, rtol, atol, saves) -> None:
    if not isinstance(y0, torch.Tensor) or not y0.is_floating_point():
        raise TypeError(f"`y0` must be a floating-point tensor, got {y0!r}")
    eps = torch.finfo(y0.dtype).eps
    if min(rtol, atol) < 10 * eps:
        raise ValueError(
            f"rtol={rtol:g}, atol={atol:g} are below what {y0.dtype} can resolve (eps {eps:.1e});"
            " pass y0.double() and a float64 field (`field.double()`), or looser tolerances"
        )
    if isinstance(saves, bool) or not isinstance(saves, int) or saves < 2:
        raise ValueError(f"`saves` must be an int >= 2, got {saves!r}")
    with torch.no_grad():
        f0 = field(torch.tensor(t0, dtype=y0.dtype), y0, None)
        f1 = field(torch.tensor(t1, dtype=y0.dtype), y0, None)
    if not torch.equal(f0, f1):
        raise ValueError(
            "the field depends on t (field(t0, y0) != field(t1, y0)); a·f is conserved along "
            "the adjoint only for autonomous fields"
        )


class _AugmentedAdjoint(nn.Module):
    """``d/dt (y, a, g) = (f, −aᵀ ∂f/∂y, −aᵀ ∂f/∂θ)``: the adjoint system, solved backwards."""

    def __init__(self, field: nn.Module, params: list[torch.Tensor]):
        super().__init__()
        self.field = field
        self.params = params

    def forward(self, t, state, args=None):
        y, a, _ = state
        with torch.enable_grad():
            y_ = y.detach().requires_grad_()
            f = self.field(t, y_, None)
            vjps = torch.autograd.grad(f, [y_, *self.params], a, allow_unused=True)
        a_dot = -vjps[0]
        g_dot = [
            torch.zeros_like(p).flatten() if v is None else -v.flatten()
            for v, p in zip(vjps[1:], self.params)
        ]
        g = torch.cat(g_dot) if g_dot else torch.zeros(0, dtype=y.dtype, device=y.device)
        return f.detach(), a_dot, g


def _augmented_backward(field, term, solver, controller, y0, t0, t1, loss, params, saves):
    with torch.no_grad():
        y1 = solve(term, solver, t0, t1, y0.detach(), controller=controller).ys[-1]
    y1_ = y1.clone().requires_grad_()
    with torch.enable_grad():
        a1 = torch.autograd.grad(loss(y1_), y1_)[0]
    size = sum(p.numel() for p in params)
    g1 = torch.zeros(size, dtype=y0.dtype, device=y0.device)
    ts = torch.linspace(t1, t0, saves, dtype=y0.dtype)
    with torch.no_grad():
        sol = solve(
            ODETerm(_AugmentedAdjoint(field, params)),
            solver,
            t1,
            t0,
            (y1, a1, g1),
            controller=controller,
            saveat=SaveAt(ts=ts),
        )
    ys, as_, gs = sol.ys
    invariant = []
    with torch.no_grad():
        for k in range(saves):
            f = field(ts[k], ys[k], None)
            invariant.append(float((as_[k] * f).sum()))
    grads = [as_[-1], *_unflatten(gs[-1], params)]
    return grads, ts.tolist(), invariant, int(sol.stats["nfe"])


def _unflatten(flat: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    out, start = [], 0
    for p in params:
        out.append(flat[start : start + p.numel()].reshape(p.shape))
        start += p.numel()
    return out


def _relative(grads: Sequence[torch.Tensor | None], reference: Sequence[torch.Tensor | None]):
    num = den = 0.0
    for g, r in zip(grads, reference):
        g = torch.zeros(()) if g is None else g.detach().double()
        r = torch.zeros(()) if r is None else r.detach().double()
        num += float((g - r).square().sum())
        den += float(r.square().sum())
    return math.sqrt(num / den) if den > 0 else math.sqrt(num)
