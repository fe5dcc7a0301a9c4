"""Solvers for stochastic differential equations ``dy = f(t, y) dt + g(t, y) dW``.

An SDE is a term like any other: ``MultiTerm(ODETerm(f), ControlTerm(g, brownian, noise=...))``
(or a bare ``ControlTerm`` for a driftless equation), solved by :func:`~torchnde.solve` with the
same loop, controllers, statuses and adjoints as an ODE. The generic Runge–Kutta methods already
solve it — :class:`~torchnde.Euler` is Euler–Maruyama (Itô), :class:`~torchnde.Heun` and
:class:`~torchnde.Midpoint` are Stratonovich methods, :class:`~torchnde.HeunEuler` an adaptive
Stratonovich pair — and this module adds the methods that read the drift and the diffusion
separately:

=====================  =============  ================  =========================  ========
solver                 interpretation strong order      noise                      adaptive
=====================  =============  ================  =========================  ========
:class:`EulerMaruyama` Itô            0.5 (1.0 additive) any                       no
:class:`Milstein`      Itô or Strat.  1.0               diagonal, scalar, additive no
:class:`EulerHeun`     Stratonovich   0.5 (1.0 commut.) any                        no
:class:`SRA1`          any (additive) 1.5               additive                   yes
=====================  =============  ================  =========================  ========

Each step makes no Python decision on tensor values; the dense output between steps is linear.
Times are the loop's internal times; the step in the user's time ``dt = t1 - t0`` is negative in a
backwards solve, and the Brownian increments then change sign with it.

References: Kloeden & Platen, *Numerical Solution of Stochastic Differential Equations* (1992),
§10.2–10.3 (Euler–Maruyama, Milstein); Rößler, *Runge–Kutta methods for the strong approximation
of solutions of stochastic differential equations*, SIAM J. Numer. Anal. 48(3), 2010 (SRA1).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch

from .._errors import friendly_keywords
from .._problem import Problem
from .._pytree import tree_leaves, tree_map, tree_unflatten
from ..terms import ControlTerm, MultiTerm, ODETerm
from ._base import AbstractSolver, StepResult

__all__ = [
    "SRA1",
    "SRI",
    "AbstractSDESolver",
    "EulerHeun",
    "EulerMaruyama",
    "LogODEMidpoint",
    "Milstein",
]

_INTERPRETATIONS = ("ito", "stratonovich")


def _split_sde(term: Any, solver: AbstractSolver) -> tuple[ODETerm | None, ControlTerm]:
    """The drift (or ``None``) and the diffusion of an SDE term; a clear error for anything
    else."""
    name = type(solver).__name__
    usage = (
        f"`{name}()` solves SDEs written as `MultiTerm(ODETerm(drift), ControlTerm(diffusion, "
        "brownian_path, noise=...))` (or a bare ControlTerm without drift)"
    )
    if isinstance(term, ControlTerm):
        return None, term
    if isinstance(term, MultiTerm):
        parts = term.terms
        if len(parts) == 2 and isinstance(parts[0], ODETerm) and isinstance(parts[1], ControlTerm):
            return parts[0], parts[1]
        if len(parts) == 2 and isinstance(parts[0], ControlTerm) and isinstance(parts[1], ODETerm):
            raise TypeError(f"{usage}, drift first; got {term!r}: swap the two terms")
        raise TypeError(f"{usage}; got {term!r}")
    if isinstance(term, ODETerm):
        raise TypeError(
            f"{usage}; got {term!r}, an ODE without noise: add the diffusion, or solve the ODE "
            "with an ODE solver such as `Euler()` or `Dopri5()`"
        )
    raise TypeError(f"{usage}; got {term!r}")


class _SDE:
    """One step's view of an SDE problem: drift and diffusion on the flat ``(batch, n)`` state."""

    __slots__ = ("args", "diffusion", "drift", "problem", "spec")

    def __init__(self, problem: Problem):
        term = problem.term
        if isinstance(term, MultiTerm):
            self.drift, self.diffusion = term.terms
        else:
            self.drift, self.diffusion = None, term
        self.problem = problem
        self.spec = problem.spec
        self.args = problem.args

    def times(self, t0, t1, like: torch.Tensor):
        """The user's times and the signed step ``dt`` (a number, or a tensor that broadcasts
        against ``like: (batch, n)`` in its dtype)."""
        problem = self.problem
        u0, u1 = problem.user_time(t0), problem.user_time(t1)
        if not isinstance(t0, torch.Tensor):  # host mode: the step as a number
            return u0, u1, (t1 - t0) * problem.sign
        dt = (u1 - u0).to(like.dtype)
        return u0, u1, dt[:, None] if dt.ndim else dt

    def unpack(self, vf: Any) -> tuple[Any, Any]:
        """``(f, g)`` from the term's vector-field value (``f`` is None without drift)."""
        return vf if self.drift is not None else (None, vf)

    def pack(self, f: Any, g: Any) -> Any:
        return (f, g) if self.drift is not None else g

    def f(self, t, y: torch.Tensor) -> torch.Tensor | None:
        """The drift at user time ``t``, flat."""
        if self.drift is None:
            return None
        return self.spec.flatten(self.drift.vf(t, self.spec.unflatten(y), self.args))

    def g(self, t, y: torch.Tensor) -> Any:
        """The diffusion at user time ``t``: the user's tree."""
        return self.diffusion.vf(t, self.spec.unflatten(y), self.args)

    def gdw(self, g: Any, dw: torch.Tensor) -> torch.Tensor:
        """``g · dW`` under the term's noise type, flat."""
        return self.spec.flatten(self.diffusion.prod(g, dw))

    def flat(self, tree: Any) -> torch.Tensor | None:
        return None if tree is None else self.spec.flatten(tree)


def _axpy(y: torch.Tensor, f: torch.Tensor | None, dt) -> torch.Tensor:
    """``y + f · dt`` (``y`` when there is no drift)."""
    if f is None:
        return y
    if isinstance(dt, torch.Tensor):
        return torch.addcmul(y, f, dt) if dt.ndim else y + f * dt
    return y.add(f, alpha=dt)


class AbstractSDESolver(AbstractSolver):
    """Base class of the SDE-specific solvers: they read the drift and the diffusion from a
    ``MultiTerm(ODETerm(drift), ControlTerm(diffusion, path, noise=...))`` (or a bare
    ``ControlTerm``), check it before the first step, and interpolate linearly between steps.

    Class attributes beyond :class:`AbstractSolver`'s: ``noise_types``, the noise types of
    :class:`~torchnde.ControlTerm` the method accepts.
    """

    noise_types: ClassVar[tuple[str, ...]] = ("general", "diagonal", "scalar", "additive")
    supports_host = True
    interpolation_order = 1
    # linear interpolation between y0 and y1: rows (y0, y1), y(θ) = (1 - θ) y0 + θ y1
    dense_matrix = ((1.0, -1.0), (0.0, 1.0))

    def check_terms(self, term: Any) -> None:
        _, diffusion = _split_sde(term, self)
        if diffusion.noise not in self.noise_types:
            raise ValueError(self._noise_message(diffusion))

    def _noise_message(self, diffusion: ControlTerm) -> str:
        accepted = ", ".join(repr(n) for n in self.noise_types)
        return (
            f"`{self!r}` needs noise in ({accepted}), but the diffusion "
            f"`{getattr(diffusion.g, '__name__', type(diffusion.g).__name__)}` has "
            f"noise={diffusion.noise!r}"
        )

    def init(self, problem: Problem, t0, y0: torch.Tensor) -> tuple[Any, int]:
        return problem.vf(t0, y0), 1

    def dense_rows(self, problem: Problem, result: StepResult) -> torch.Tensor:
        y0, y1 = result.dense
        return torch.stack([y0.expand_as(y1), y1], dim=1)


class EulerMaruyama(AbstractSDESolver):
    """The Euler–Maruyama method for Itô SDEs:

    .. math:: y_1 = y_0 + f(t_0, y_0)\\,Δt + g(t_0, y_0)\\,ΔW.

    Strong order 0.5 (1.0 when the noise is additive), any noise type, one evaluation of drift and
    diffusion per step, no error estimate. The same numbers as :class:`~torchnde.Euler` on the
    SDE's ``MultiTerm``, without the Runge–Kutta machinery (Kloeden & Platen 1992, §10.2).
    """

    order = 1
    strong_order = 0.5
    interpretation = "ito"

    def step(self, problem, t0, t1, y0, state):
        sde = _SDE(problem)
        u0, u1, dt = sde.times(t0, t1, y0)
        f0, g0 = sde.unpack(state)
        y1 = _axpy(y0 + sde.gdw(g0, sde.diffusion.contr(u0, u1)), sde.flat(f0), dt)
        return StepResult(y1, None, problem.vf(t1, y1), (y0, y1), 1)


@friendly_keywords()
@dataclasses.dataclass(frozen=True)
class Milstein(AbstractSDESolver):
    """Milstein's method: Euler–Maruyama plus the term that makes it strong order 1,

    .. math::
        y_1 = y_0 + f Δt + g ΔW + \\tfrac12 (∂_y g · g) (ΔW^2 - Δt)
        \\quad\\text{(Itô; Stratonovich drops the } -Δt\\text{)},

    all evaluated at ``(t0, y0)``. For ``noise="diagonal"`` (each entry driven by its own Brownian
    motion, ``g_i`` depending on ``y_i`` — the commutative case the method needs) the derivative
    term is one vector–Jacobian product of ``g`` (as torchsde computes it); for ``noise="scalar"``
    a Jacobian–vector product (``torch.func.jvp``); for ``noise="additive"`` it vanishes and the
    method is Euler–Maruyama. The derivative is taken with ``create_graph`` whenever gradients are
    being recorded, so gradients flow through it (second derivatives of ``g``).

    With ``derivative_free=True`` the derivative term is replaced by its finite-difference form
    (Kloeden & Platen 1992, §11.1): with ``ȳ = y_0 + f Δt + g \\sqrt{Δt}`` (Itô; ``y_0 +
    g \\sqrt{Δt}`` for Stratonovich),

    .. math:: \\tfrac12 (∂_y g · g)(ΔW^2 - Δt) \\approx
        \\frac{g(t_0, ȳ) - g(t_0, y_0)}{2\\sqrt{Δt}} (ΔW^2 - Δt),

    one more diffusion evaluation instead of a derivative (no autograd through ``g``; the same
    strong order 1.0).

    Strong order 1.0; no error estimate (Kloeden & Platen 1992, §10.3).

    Args:
        interpretation: ``"ito"`` (default) or ``"stratonovich"``: which SDE the term is.
        derivative_free: use the finite-difference form of the correction.
    """

    interpretation: str = "ito"
    derivative_free: bool = False

    order: ClassVar[int] = 1
    strong_order: ClassVar[float] = 1.0
    noise_types: ClassVar[tuple[str, ...]] = ("diagonal", "scalar", "additive")

    def __post_init__(self) -> None:
        if self.interpretation not in _INTERPRETATIONS:
            raise ValueError(
                f"`Milstein(interpretation=...)` must be 'ito' or 'stratonovich', got "
                f"{self.interpretation!r}"
            )

    def check_terms(self, term: Any) -> None:
        _, diffusion = _split_sde(term, self)
        if diffusion.noise not in self.noise_types:
            raise ValueError(
                self._noise_message(diffusion)
                + ": its correction ∂g/∂y · g is only defined for commutative noise, known "
                "from the noise type. Declare `noise='diagonal'` if g returns one value per "
                "state entry, or use `EulerHeun()`/`Heun()` (Stratonovich; strong order 1.0 on "
                "commutative general noise, 0.5 otherwise) or `EulerMaruyama()` (Itô, 0.5)"
            )

    def step(self, problem, t0, t1, y0, state):
        sde = _SDE(problem)
        u0, u1, dt = sde.times(t0, t1, y0)
        # the drift is carried from the previous step; the diffusion is evaluated afresh, with
        # the graph its derivative needs (the carried one is left as it is)
        f0, g_carried = sde.unpack(state)
        dw = sde.diffusion.contr(u0, u1)
        noise = sde.diffusion.noise
        ito = self.interpretation == "ito"
        if self.derivative_free and noise != "additive":
            y1 = self._derivative_free(sde, u0, y0, f0, dw, dt)
        elif noise == "diagonal":  # flat: g ⊙ dW + ½ (∂g/∂y · g) ⊙ (dW² - h), as torchsde
            dw = dw.reshape(-1, y0.shape[1])
            weight = dw * dw
            if ito:
                weight = weight - (dt.abs() if isinstance(dt, torch.Tensor) else abs(dt))
            g0, correction = self._diagonal(sde, u0, y0, weight.mul_(0.5))
            y1 = torch.addcmul(y0 + correction, g0, dw)
        elif noise == "scalar":
            g0, dgg = self._scalar(sde, u0, y0)
            weight = dw * dw
            if ito:
                weight = weight - (_abs_like(dt, dw) if isinstance(dt, torch.Tensor) else abs(dt))
            y1 = y0 + sde.gdw(g0, dw) + 0.5 * sde.gdw(dgg, weight)
        else:  # additive: the correction vanishes
            y1 = y0 + sde.gdw(sde.g(u0, y0), dw)
        y1 = _axpy(y1, sde.flat(f0), dt)
        f1 = None if sde.drift is None else sde.drift.vf(u1, sde.spec.unflatten(y1), sde.args)
        return StepResult(y1, None, sde.pack(f1, g_carried), (y0, y1), 2)

    def _derivative_free(self, sde: _SDE, t, y0: torch.Tensor, f0, dw: torch.Tensor, dt):
        """``y0 + g ΔW + (g(ȳ) - g(y0)) (ΔW² - Δt) / (2√Δt)`` (the drift is added by the
        caller), for diagonal or scalar noise."""
        g0 = sde.g(t, y0)
        root = dt.abs().sqrt() if isinstance(dt, torch.Tensor) else math.sqrt(abs(dt))
        flat_g = (
            sde.spec.flatten(tree_map(lambda v: v[..., 0], g0))
            if (sde.diffusion.noise == "scalar")
            else sde.spec.flatten(g0)
        )
        bar = y0 + flat_g * root
        if self.interpretation == "ito":
            bar = _axpy(bar, sde.flat(f0), dt)
        g_bar = sde.g(t, bar)
        weight = dw * dw
        if self.interpretation == "ito":
            weight = weight - (_abs_like(dt, dw) if isinstance(dt, torch.Tensor) else abs(dt))
        scale = 0.5 / (_abs_like(root, dw) if isinstance(root, torch.Tensor) else root)
        diff = tree_map(torch.sub, g_bar, g0)
        return y0 + sde.gdw(g0, dw) + sde.gdw(diff, weight * scale)

    @staticmethod
    def _diagonal(sde: _SDE, t, y0: torch.Tensor, weight: torch.Tensor):
        """The flat ``g`` and ``Σ_i w_i g_i ∂g_i/∂y_j`` for diagonal noise: one vector–Jacobian
        product with cotangent ``w ⊙ g`` (the Jacobian–vector product ``w ⊙ (∂g/∂y · g)`` when
        ``g_i`` depends on ``y_i`` alone, the case the method is for)."""
        record = _records(sde, t, y0)
        with torch.enable_grad():
            y = y0 if y0.requires_grad else y0.detach().requires_grad_(True)
            flat = sde.spec.flatten(sde.g(t, y))
            correction = None
            if flat.requires_grad:  # otherwise g depends neither on y nor on anything else
                (correction,) = torch.autograd.grad(
                    flat, y, grad_outputs=flat * weight, create_graph=record, allow_unused=True
                )
        if correction is None:  # g does not depend on y
            correction = torch.zeros_like(flat)
        if not record:
            flat, correction = flat.detach(), correction.detach()
        return flat, correction

    @staticmethod
    def _scalar(sde: _SDE, t, y0: torch.Tensor):
        """``g`` and ``∂_y g · g`` for one noise channel: the Jacobian–vector product of ``g`` in
        the direction ``g[..., 0]``, as the derivative of a vector–Jacobian product with respect
        to its cotangent (two reverse passes, no forward-mode differentiation needed)."""
        record = _records(sde, t, y0)
        with torch.enable_grad():
            y = y0 if y0.requires_grad else y0.detach().requires_grad_(True)
            g = sde.g(t, y)
            leaves = tree_leaves(g)
            direction = sde.spec.flatten(tree_map(lambda v: v[..., 0], g))
            cotangents = [torch.zeros_like(v, requires_grad=True) for v in leaves]
            vjp = None
            if any(v.requires_grad for v in leaves):  # else g depends on nothing differentiable
                used = [(v, c) for v, c in zip(leaves, cotangents) if v.requires_grad]
                (vjp,) = torch.autograd.grad(
                    [v for v, _ in used],
                    y,
                    grad_outputs=[c for _, c in used],
                    create_graph=True,
                    allow_unused=True,
                )
            if vjp is None:  # g does not depend on y
                dgg = [torch.zeros_like(v) for v in leaves]
            else:
                dgg = torch.autograd.grad(
                    vjp,
                    cotangents,
                    grad_outputs=direction,
                    create_graph=record,
                    allow_unused=True,
                )
                dgg = [torch.zeros_like(v) if d is None else d for v, d in zip(leaves, dgg)]
        if not record:
            g, dgg = tree_map(torch.Tensor.detach, g), [d.detach() for d in dgg]
        return g, tree_unflatten(g, dgg)


def _records(sde: _SDE, t, y0: torch.Tensor) -> bool:
    """Whether the derivative of the diffusion must keep its graph: gradients are being recorded
    and flow through ``y0`` or through tensors inside ``g`` (its parameters). The latter is probed
    once per solve, so a solve without anything to differentiate keeps no graph."""
    if not torch.is_grad_enabled():
        return False
    if y0.requires_grad:
        return True

    def probe() -> bool:
        g = sde.g(t, y0.detach())
        return any(isinstance(v, torch.Tensor) and v.requires_grad for v in tree_leaves(g))

    return sde.problem.memo("diffusion needs grad", probe)


def _abs_like(dt: torch.Tensor, dw: torch.Tensor) -> torch.Tensor:
    """``|dt|`` shaped to broadcast against the increment ``dw`` (per sample under a batch
    axis)."""
    step = dt.abs()
    if step.ndim:  # (batch, 1) -> (batch, 1, ..., 1)
        step = step.reshape(step.shape[0], *([1] * (dw.ndim - 1)))
    return step.to(dw.dtype)


class EulerHeun(AbstractSDESolver):
    """The Euler–Heun method for Stratonovich SDEs (torchsde's ``euler_heun``): Euler for the
    drift, Heun's trapezoid for the diffusion,

    .. math::
        y' = y_0 + g(t_0, y_0)\\,ΔW,\\qquad
        y_1 = y_0 + f(t_0, y_0)\\,Δt + \\tfrac12\\big(g(t_0, y_0) + g(t_1, y')\\big)\\,ΔW.

    Strong order 0.5 in general and 1.0 on commutative noise (diagonal, scalar, additive, or
    general noise whose diffusion columns commute); one drift and two diffusion evaluations per
    step; no error estimate. Cheaper than :class:`~torchnde.Heun` when the drift is expensive.
    """

    order = 1
    strong_order = 0.5
    interpretation = "stratonovich"

    def step(self, problem, t0, t1, y0, state):
        sde = _SDE(problem)
        u0, u1, dt = sde.times(t0, t1, y0)
        f0, g0 = sde.unpack(state)
        dw = sde.diffusion.contr(u0, u1)
        noise0 = sde.gdw(g0, dw)
        noise1 = sde.gdw(sde.g(u1, y0 + noise0), dw)
        y1 = _axpy(y0 + 0.5 * (noise0 + noise1), sde.flat(f0), dt)
        return StepResult(y1, None, problem.vf(t1, y1), (y0, y1), 2)


class SRA1(AbstractSDESolver):
    """Rößler's SRA1: strong order 1.5 for SDEs with additive noise ``dy = f(t, y) dt + g(t) dW``,
    with an embedded estimate for adaptive steps.

    With ``(ΔW, H)`` the increment and the space-time Lévy area of the step
    (``H = (1/Δt)∫(W_u - W_{t0}) du - ΔW/2``, :meth:`~torchnde.paths.AbstractPath.levy_increment`):

    .. math::
        z &= y_0 + \\tfrac34 f(t_0, y_0)\\,Δt + g(t_0)\\,(\\tfrac34 ΔW + \\tfrac32 H), \\\\
        y_1 &= y_0 + \\big(\\tfrac13 f(t_0, y_0) + \\tfrac23 f(t_0 + \\tfrac34 Δt, z)\\big)\\,Δt
              + \\tfrac12\\big(g(t_0) + g(t_1)\\big)\\,ΔW + \\big(g(t_0) - g(t_1)\\big)\\,H,

    the last two terms being exact for a diffusion linear in time (Rößler's stochastic weights
    read in diffrax's convention for ``H``). The error estimate is the difference with the
    embedded Euler step, ``⅔ (f(z) - f(t_0, y_0)) Δt``, of local order 1.5 on these SDEs, so the
    method drives :class:`~torchnde.PIDController` (with a
    :class:`~torchnde.VirtualBrownianTree` path). Two drift and one diffusion evaluations per step.

    Needs ``ControlTerm(g, path, noise="additive")`` — ``g`` may depend on ``t`` but not on ``y``
    (it is called with some state, which it must ignore) — and a Brownian path built with
    ``levy_area="space-time"``. Itô and Stratonovich agree for additive noise.

    Reference: A. Rößler, *Runge–Kutta methods for the strong approximation of solutions of
    stochastic differential equations*, SIAM J. Numer. Anal. 48(3):922–952, 2010 (Table 6.2,
    SRA1).
    """

    order = 2
    error_order = 2  # on the drift alone; error_order_for gives 1.5 on the SDEs it solves
    strong_order = 1.5
    interpretation = "any"
    noise_types: ClassVar[tuple[str, ...]] = ("additive",)

    def check_terms(self, term: Any) -> None:
        _, diffusion = _split_sde(term, self)
        if diffusion.noise != "additive":
            raise ValueError(
                self._noise_message(diffusion)
                + ": SRA1 is a method for additive noise (a diffusion g(t) that does not depend "
                "on y); if yours does not, declare it with `ControlTerm(g, path, "
                "noise='additive')`, otherwise use `Milstein()`, `EulerHeun()` or "
                "`EulerMaruyama()`"
            )
        if getattr(diffusion.path, "levy_area", None) != "space-time":
            raise ValueError(
                f"`SRA1()` needs the space-time Lévy area of the Brownian motion, but the path "
                f"{diffusion.path!r} has levy_area={getattr(diffusion.path, 'levy_area', None)!r}; "
                'build it with `levy_area="space-time"`, e.g. `VirtualBrownianTree(t0, t1, shape, '
                'levy_area="space-time")`'
            )

    def step(self, problem, t0, t1, y0, state):
        sde = _SDE(problem)
        u0, u1, dt = sde.times(t0, t1, y0)
        f0, g0 = sde.unpack(state)
        f0 = sde.flat(f0)
        w, h = sde.diffusion.path.levy_increment(u0, u1)
        z = _axpy(y0 + sde.gdw(g0, 0.75 * w + 1.5 * h), f0, 0.75 * dt)
        g1 = sde.g(u1, y0)
        noise = sde.gdw(g0, 0.5 * w + h) + sde.gdw(g1, 0.5 * w - h)
        if f0 is None:
            y1, y_error = y0 + noise, torch.zeros_like(y0)
        else:
            f_stage = sde.f(problem.user_time(t0 + 0.75 * (t1 - t0)), z)
            drift = torch.add(f0, f_stage, alpha=2.0)  # f0 + 2 f_stage, times dt / 3 below
            y1 = _axpy(y0 + noise, drift, dt / 3)
            y_error = (f_stage - f0) * (2 * dt / 3)
        f1 = sde.f(u1, y1)
        vf1 = sde.pack(None if f1 is None else sde.spec.unflatten(f1), g1)
        return StepResult(y1, y_error, vf1, (y0, y1), 2)


def _like(x, w: torch.Tensor):
    """A per-step number (a float, or a ``(batch, 1)`` tensor under a batch axis) shaped to
    broadcast against the increment ``w`` in its dtype."""
    if not isinstance(x, torch.Tensor):
        return x
    if x.ndim:
        x = x.reshape(x.shape[0], *([1] * (w.ndim - 1)))
    return x.to(w.dtype)


class SRI(AbstractSDESolver):
    """Rößler's stochastic Runge–Kutta method of strong order 1.5 for Itô SDEs with diagonal or
    scalar noise (the SRI family; the coefficient set torchsde's ``srk`` runs, which it calls
    SRID2).

    With ``I = ΔW``, ``I_0 = ∫_{t_0}^{t_1}(W_s - W_{t_0}) ds = Δt (ΔW/2 + H)`` (from the
    space-time Lévy area ``H``), ``I_{11} = (ΔW² - Δt)/2`` and ``I_{111} = (ΔW³ - 3ΔtΔW)/6``,
    four stages

    .. math::
        H^{(0)}_i &= y_0 + \\sum_{j<i} A^{(0)}_{ij} f(t_0 + c^{(0)}_j Δt, H^{(0)}_j) Δt
                    + B^{(0)}_{ij} g(t_0 + c^{(1)}_j Δt, H^{(1)}_j) I_0/Δt, \\\\
        H^{(1)}_i &= y_0 + \\sum_{j<i} A^{(1)}_{ij} f(t_0 + c^{(0)}_j Δt, H^{(0)}_j) Δt
                    + B^{(1)}_{ij} g(t_0 + c^{(1)}_j Δt, H^{(1)}_j) \\sqrt{Δt}, \\\\
        y_1 &= y_0 + \\sum_i α_i f(t_0 + c^{(0)}_i Δt, H^{(0)}_i) Δt
              + \\big(β^{(1)}_i I + β^{(2)}_i \\tfrac{I_{11}}{\\sqrt{Δt}}
              + β^{(3)}_i \\tfrac{I_0}{Δt} + β^{(4)}_i \\tfrac{I_{111}}{Δt}\\big)
                g(t_0 + c^{(1)}_i Δt, H^{(1)}_i),

    products taken channel by channel (diagonal noise: ``g_k`` drives ``y_k`` with its own
    ``W_k``; scalar noise: every channel with the one ``W``). Three drift and four diffusion
    evaluations per step; no error estimate (``StepDoubling(SRI())`` adapts it).

    Needs ``ControlTerm(g, path, noise="diagonal")`` or ``"scalar"`` and a Brownian path built
    with ``levy_area="space-time"``. Strong order 1.5 holds for diagonal noise whose ``g_k``
    depends on ``y_k`` alone and for scalar noise.

    Reference: A. Rößler, *Runge–Kutta methods for the strong approximation of solutions of
    stochastic differential equations*, SIAM J. Numer. Anal. 48(3):922–952, 2010 (the SRI
    schemes of strong order 1.5 for diagonal and scalar noise).
    """

    order = 2
    strong_order = 1.5
    interpretation = "ito"
    noise_types: ClassVar[tuple[str, ...]] = ("diagonal", "scalar")

    c0 = (0.0, 1.0, 0.5, 0.0)
    c1 = (0.0, 0.25, 1.0, 0.25)
    a0 = ((), (1.0,), (0.25, 0.25), (0.0, 0.0, 0.0))
    a1 = ((), (0.25,), (1.0, 0.0), (0.0, 0.0, 0.25))
    b0 = ((), (0.0,), (1.0, 0.5), (0.0, 0.0, 0.0))
    b1 = ((), (-0.5,), (1.0, 0.0), (2.0, -1.0, 0.5))
    alpha = (1 / 6, 1 / 6, 2 / 3, 0.0)
    beta1 = (-1.0, 4 / 3, 2 / 3, 0.0)
    beta2 = (1.0, -4 / 3, 1 / 3, 0.0)
    beta3 = (2.0, -4 / 3, -2 / 3, 0.0)
    beta4 = (-2.0, 5 / 3, -2 / 3, 1.0)

    def check_terms(self, term: Any) -> None:
        _, diffusion = _split_sde(term, self)
        if diffusion.noise not in self.noise_types:
            raise ValueError(
                self._noise_message(diffusion)
                + ": use `SRA1()` for additive noise, `EulerMaruyama()` (or a Stratonovich "
                "method) for general noise"
            )
        if getattr(diffusion.path, "levy_area", None) != "space-time":
            raise ValueError(
                f"`SRI()` needs the space-time Lévy area of the Brownian motion, but the path "
                f"{diffusion.path!r} has levy_area={getattr(diffusion.path, 'levy_area', None)!r}; "
                'build it with `levy_area="space-time"`'
            )

    def _integrals(self, w: torch.Tensor, h: torch.Tensor, dt):
        """The weights of ``g`` in the result (one per stage), in ``H^{(0)}`` (``I_0/Δt``) and in
        ``H^{(1)}`` (``√Δt``), from the increment ``w`` and space-time Lévy area ``h``."""
        step = _like(dt, w)
        size = step.abs() if isinstance(step, torch.Tensor) else abs(step)
        root = size**0.5
        i0 = step * (0.5 * w + h)
        i11 = 0.5 * (w * w - size)
        i111 = (w**3 - 3 * size * w) / 6
        weights = [
            b1 * w + b2 * i11 / root + b3 * i0 / step + b4 * i111 / step
            for b1, b2, b3, b4 in zip(self.beta1, self.beta2, self.beta3, self.beta4)
        ]
        return weights, i0 / step, torch.ones_like(w) * root

    def _needs_drift(self, i: int) -> bool:
        later = range(i + 1, len(self.alpha))
        return bool(self.alpha[i]) or any(self.a0[k][i] or self.a1[k][i] for k in later)

    def step(self, problem, t0, t1, y0, state):
        sde = _SDE(problem)
        u0, u1, dt = sde.times(t0, t1, y0)
        f0, g0 = sde.unpack(state)
        weights, area, unit = self._integrals(*sde.diffusion.path.levy_increment(u0, u1), dt)
        fs, gs = [sde.flat(f0)], [g0]
        for i in range(1, len(self.alpha)):
            h0, h1 = y0, y0
            for j in range(i):
                if self.a0[i][j]:
                    h0 = _axpy(h0, fs[j], self.a0[i][j] * dt)
                if self.a1[i][j]:
                    h1 = _axpy(h1, fs[j], self.a1[i][j] * dt)
                if self.b0[i][j]:
                    h0 = h0 + sde.gdw(gs[j], self.b0[i][j] * area)
                if self.b1[i][j]:
                    h1 = h1 + sde.gdw(gs[j], self.b1[i][j] * unit)
            at = problem.user_time
            fs.append(sde.f(at(t0 + self.c0[i] * (t1 - t0)), h0) if self._needs_drift(i) else None)
            gs.append(sde.g(at(t0 + self.c1[i] * (t1 - t0)), h1))
        y1 = y0
        for i, weight in enumerate(weights):
            if self.alpha[i] and fs[i] is not None:
                y1 = _axpy(y1, fs[i], self.alpha[i] * dt)
            y1 = y1 + sde.gdw(gs[i], weight)
        return StepResult(y1, None, problem.vf(t1, y1), (y0, y1), len(self.alpha))


@friendly_keywords()
@dataclasses.dataclass(frozen=True)
class LogODEMidpoint(AbstractSDESolver):
    """The log-ODE midpoint method for Stratonovich SDEs (torchsde's ``log_ode``): the explicit
    midpoint method on the increment ``ΔW`` plus the Lévy-area term of the step's log-signature,

    .. math::
        y' &= y_0 + \\tfrac12 f(t_0, y_0) Δt + \\tfrac12 g(t_0, y_0) ΔW, \\\\
        y_1 &= y_0 + f(t', y') Δt + g(t', y') ΔW
              + \\sum_{j,k} A_{jk} \\,(∂_y g_k \\, g_j)(t', y'),

    ``t' = t_0 + Δt/2``, ``g_k`` the ``k``-th noise column and ``A`` an approximation of the
    Lévy area (:meth:`~torchnde.paths.AbstractBrownianPath.area_increment`: ``"davie"`` or
    ``"foster"``). The Lévy-area term is ``Σ_{j<k} A_{jk} [g_j, g_k]``: it vanishes for
    commutative noise (diagonal, scalar, additive), where the method is the midpoint method. Its
    derivatives are Jacobian–vector products of ``g`` (autograd, the graph kept when gradients
    are recorded). Strong order 0.5 for general noise (1.0 on commutative noise: the Lévy area is
    approximated, not exact); no error estimate.

    Needs a Brownian path with ``levy_area="space-time"`` (and ``area_increment``).

    Args:
        approximation: ``"foster"`` (default) or ``"davie"``.

    Reference: Foster, Lyons & Oberhauser, *An optimal polynomial approximation of Brownian
    motion*, SIAM J. Numer. Anal. 58(3), 2020 (the log-ODE method with Lévy-area
    approximations); Davie, *KMT theory applied to approximations of SDE*, 2014.
    """

    approximation: str = "foster"

    order: ClassVar[int] = 2
    strong_order: ClassVar[float] = 0.5
    interpretation: ClassVar[str] = "stratonovich"

    def __post_init__(self) -> None:
        if self.approximation not in ("davie", "foster"):
            raise ValueError(
                f"`LogODEMidpoint(approximation=...)` must be 'davie' or 'foster', got "
                f"{self.approximation!r}"
            )

    def check_terms(self, term: Any) -> None:
        _, diffusion = _split_sde(term, self)
        if not hasattr(diffusion.path, "area_increment") or (
            getattr(diffusion.path, "levy_area", None) != "space-time"
        ):
            raise ValueError(
                f"`LogODEMidpoint()` needs Lévy areas of the Brownian motion, but the path "
                f"{diffusion.path!r} has levy_area={getattr(diffusion.path, 'levy_area', None)!r}; "
                'build it with `levy_area="space-time"`'
            )

    def step(self, problem, t0, t1, y0, state):
        sde = _SDE(problem)
        u0, u1, dt = sde.times(t0, t1, y0)
        f0, g0 = sde.unpack(state)
        path, noise = sde.diffusion.path, sde.diffusion.noise
        w, _, area = path.area_increment(u0, u1, self.approximation)
        y_mid = _axpy(y0 + 0.5 * sde.gdw(g0, w), sde.flat(f0), 0.5 * dt)
        t_mid = problem.user_time(t0 + 0.5 * (t1 - t0))
        f_mid = sde.f(t_mid, y_mid)
        if noise == "general":
            g_mid, bracket = self._bracket(sde, t_mid, y_mid, area)
            y1 = y0 + sde.gdw(g_mid, w) + bracket
        else:  # commutative noise: no Lévy-area term
            y1 = y0 + sde.gdw(sde.g(t_mid, y_mid), w)
        y1 = _axpy(y1, f_mid, dt)
        return StepResult(y1, None, problem.vf(t1, y1), (y0, y1), 2)

    @staticmethod
    def _bracket(sde: _SDE, t, y0: torch.Tensor, area: torch.Tensor):
        """``g`` and ``Σ_k (∂g_k/∂y)(g A)_k`` at ``(t, y0)``, flat, for general noise."""
        record = _records(sde, t, y0)
        with torch.enable_grad():
            y = y0 if y0.requires_grad else y0.detach().requires_grad_(True)
            g = sde.g(t, y)
            ga = tree_map(lambda v: torch.matmul(v, area.to(v.dtype)), g)
            columns = tree_leaves(g)[0].shape[-1]
            total = torch.zeros_like(y0)
            for k in range(columns):
                out = sde.spec.flatten(tree_map(lambda v, k=k: v[..., k], g))
                direction = sde.spec.flatten(tree_map(lambda v, k=k: v[..., k], ga))
                if out.requires_grad:
                    total = total + _jvp_flat(out, y, direction, record)
        if not record:
            g, total = tree_map(torch.Tensor.detach, g), total.detach()
        return g, total


def _jvp_flat(out: torch.Tensor, x: torch.Tensor, v: torch.Tensor, record: bool) -> torch.Tensor:
    """``(∂out/∂x) v`` by differentiating a vector–Jacobian product in its cotangent."""
    cotangent = torch.zeros_like(out, requires_grad=True)
    (vjp,) = torch.autograd.grad(out, x, cotangent, create_graph=True, allow_unused=True)
    if vjp is None:
        return torch.zeros_like(x)
    (jv,) = torch.autograd.grad(vjp, cotangent, v, create_graph=record, allow_unused=True)
    return torch.zeros_like(x) if jv is None else jv
