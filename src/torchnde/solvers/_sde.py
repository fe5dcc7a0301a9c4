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
from typing import Any, ClassVar

import torch

from .._errors import friendly_keywords
from .._problem import Problem
from .._pytree import tree_leaves, tree_map, tree_unflatten
from ..terms import ControlTerm, MultiTerm, ODETerm
from ._base import AbstractSolver, StepResult

__all__ = ["SRA1", "AbstractSDESolver", "EulerHeun", "EulerMaruyama", "Milstein"]

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

    Strong order 1.0; no error estimate (Kloeden & Platen 1992, §10.3).

    Args:
        interpretation: ``"ito"`` (default) or ``"stratonovich"``: which SDE the term is.
    """

    interpretation: str = "ito"

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
        if noise == "diagonal":  # flat: g ⊙ dW + ½ (∂g/∂y · g) ⊙ (dW² - h), as torchsde
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

    @staticmethod
    def _diagonal(sde: _SDE, t, y0: torch.Tensor, weight: torch.Tensor):
        """The flat ``g`` and ``Σ_i w_i g_i ∂g_i/∂y_j`` for diagonal noise: one vector–Jacobian
        product with cotangent ``w ⊙ g`` (the Jacobian–vector product ``w ⊙ (∂g/∂y · g)`` when
        ``g_i`` depends on ``y_i`` alone, the case the method is for)."""
        record = _records(sde, t, y0)
        with torch.enable_grad():
            y = y0 if y0.requires_grad else y0.detach().requires_grad_(True)
            flat = sde.spec.flatten(sde.g(t, y))
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
            (vjp,) = torch.autograd.grad(
                leaves, y, grad_outputs=cotangents, create_graph=True, allow_unused=True
            )
            if vjp is None:  # g does not depend on y
                dgg = [torch.zeros_like(v) for v in leaves]
            else:
                dgg = torch.autograd.grad(
                    vjp, cotangents, grad_outputs=direction, create_graph=record, allow_unused=True
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
