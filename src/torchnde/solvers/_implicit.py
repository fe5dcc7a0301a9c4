"""Diagonally implicit Runge–Kutta methods for stiff ODEs, with Newton-type stage solves and
Jacobians per sample.

A step of an (E)SDIRK method computes its stages in order; stage ``i`` is explicit when its
diagonal entry is zero, else it solves ``z_i = base_i + γ k_i`` with ``k_i = h f(t_i, z_i)`` and
``base_i = y0 + Σ_{j<i} a_ij k_j`` by the iteration its :mod:`nonlinear solver
<torchnde.solvers._nonlinear>` configures, and takes ``k_i = (z_i - base_i)/γ`` (not
``h f(t_i, z_i)``, which would amplify the iteration's error by the stiffness; Hairer & Wanner
1996, §IV.8). Everything is per sample: under ``batch_axis=0`` each sample has its own Jacobian
``(batch, n, n)``, factorisation, iteration count, convergence and failure.

Gradients (``DirectAdjoint``) do not flow through the iterations: they run without a graph, then
one Newton step with the converged value held fixed and the factorisation held constant,
``z = z* - (I - γ h J)⁻¹ G(z*)``, gives the implicit-function-theorem gradient
``dz = -(∂G/∂z)⁻¹ ∂G/∂(base, h, θ)`` — one transposed linear solve per stage in the backward
pass, memory independent of the iteration count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .._errors import friendly_keywords
from .._problem import Problem
from ._base import StepResult
from ._nonlinear import AbstractNonlinearSolver, Chord
from ._runge_kutta import AbstractRungeKutta, combine

__all__ = ["AbstractDIRK", "jacobian"]

STATISTICS = ("num_jacobians", "num_factorisations", "num_newton_iterations")


# ------------------------------------------------------------------------------------------------
# Jacobians


def check_real(solver: Any, y0: torch.Tensor) -> None:
    """Refuse a complex state: the solvers that factorise ``I - gamma h J`` work on real ones."""
    if y0.is_complex():
        raise TypeError(
            f"`{type(solver).__name__}()` solves real states, got {y0.dtype}; split the state "
            "into real and imaginary parts"
        )


def jacobian(
    problem: Problem, t: torch.Tensor, y: torch.Tensor, size: int | None = None
) -> torch.Tensor:
    """``∂f/∂y`` of the problem's vector field at internal time ``t: (batch,)`` and the flat
    ``y: (batch, n)``, per sample: ``(batch, m, m)`` for the leading ``m = size`` components
    (default: all), in the state's dtype.

    The term's own ``jac`` when it has one (``ODETerm(f, jac=...)``, returning that block);
    otherwise automatic differentiation: ``m`` forward-mode Jacobian–vector products in one
    vectorised call (each sample's block, as the samples of ``batch_axis=0`` are independent),
    or, when the field cannot be vectorised, ``m`` reverse-mode products."""
    m = y.shape[1] if size is None else size
    user = getattr(problem.term, "jac", None)
    if user is not None:
        return _user_jacobian(problem, user, t, y, m)
    mode = problem.memo("jacobian mode", lambda: _probe_forward(problem, t, y, m))
    if mode == "forward":
        return _forward_jacobian(problem, t, y, m)
    return _reverse_jacobian(problem, t, y, m)


def _flat_field(problem: Problem, t: torch.Tensor):
    return lambda yy: problem.flat(problem.vf(t, yy))


def _forward_jacobian(problem: Problem, t, y, m: int) -> torch.Tensor:
    batch, n = y.shape
    basis = torch.eye(m, n, dtype=y.dtype, device=y.device).unsqueeze(1).expand(m, batch, n)
    field_ = _flat_field(problem, t)
    columns = torch.func.vmap(lambda v: torch.func.jvp(field_, (y,), (v,))[1][:, :m])(basis)
    # (batch, i, j) = ∂f_i/∂y_j; forward mode can promote a 0-dim operand's tangent to float64
    return columns.permute(1, 2, 0).to(y.dtype)


def _reverse_jacobian(problem: Problem, t, y, m: int) -> torch.Tensor:
    with torch.enable_grad():
        yy = y.detach().requires_grad_(True)
        out = problem.flat(problem.vf(t, yy))
        rows = []
        for i in range(m):
            cot = torch.zeros_like(out)
            cot[:, i] = 1.0
            (g,) = torch.autograd.grad(out, yy, cot, retain_graph=i < m - 1, allow_unused=True)
            rows.append(torch.zeros_like(y) if g is None else g)
    return torch.stack(rows, dim=1)[:, :, :m]


def _probe_forward(problem: Problem, t, y, m: int) -> str:
    """Whether the field differentiates in forward mode under ``vmap`` (pure torch operations);
    asked once per solve."""
    try:
        _forward_jacobian(problem, t, y, m)
    except Exception:  # any failure of functorch: fall back to reverse mode
        return "reverse"
    return "forward"


def _user_jacobian(problem: Problem, jac, t, y, m: int) -> torch.Tensor:
    batch = y.shape[0]
    spec = problem.spec
    if not spec.single:
        raise TypeError(
            "`ODETerm(f, jac=...)` supports a state of one tensor; for a tuple or dict state leave "
            "`jac` out (the Jacobian then comes from automatic differentiation)"
        )
    value = jac(problem.user_time(t), spec.unflatten(y), problem.args)
    want = (batch, m, m) if spec.batched else (m, m)
    if not isinstance(value, torch.Tensor) or value.numel() != batch * m * m:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(
            f"the Jacobian `{getattr(jac, '__name__', jac)}` returned {shape}, but the state needs "
            f"{want} (∂f_i/∂y_j for the flattened state); return a tensor of that shape"
        )
    return value.reshape(batch, m, m).to(y.dtype)


def quadratures(problem: Problem) -> int:
    """How many trailing components of the flat state are quadratures (``ODETerm(...,
    quadratures=q)``): integrals whose rate does not depend on them, integrated explicitly from
    the other components' stage values."""
    return getattr(problem.term, "quadratures", 0)


# ------------------------------------------------------------------------------------------------
# the state an implicit method carries from step to step


@dataclass
class _Carry:
    """Per sample (leading axis ``batch``): the vector field at the step's start, the Jacobian
    and the factorisation of ``I - γ h J`` with the ``γ h`` it was made for, whether the
    Jacobian was evaluated at the current step's start, and whether the next step must
    re-evaluate it."""

    f: torch.Tensor  # (batch, n)
    jac: torch.Tensor  # (batch, n, n), or (batch, 0, 0) when matrix-free
    lu: torch.Tensor
    pivots: torch.Tensor
    lu_gh: torch.Tensor  # (batch,)
    current: torch.Tensor  # (batch,) bool
    stale: torch.Tensor  # (batch,) bool

    def tree(self) -> tuple:
        return (self.f, self.jac, self.lu, self.pivots, self.lu_gh, self.current, self.stale)

    @classmethod
    def of(cls, tree) -> _Carry:
        return cls(*tree)


@dataclass
class _Step:
    """One attempt's working data."""

    problem: Problem
    h: torch.Tensor  # (batch,) signed step in the user's time
    scale: torch.Tensor  # (batch, n) atol + rtol |y0|
    kappa: float
    max_iters: int
    carry: _Carry
    counts: dict[str, torch.Tensor] = field(default_factory=dict)
    slow: torch.Tensor | None = None  # (batch,) a stage converged slowly
    nfe: int = 0
    m: int = 0  # the components solved implicitly (the rest are quadratures)
    newton: bool = False  # iterate with the Jacobian at every iterate (the chord's fallback)


@friendly_keywords()
@dataclass(frozen=True, repr=False)
class AbstractDIRK(AbstractRungeKutta):
    """A diagonally implicit Runge–Kutta method (SDIRK or ESDIRK) for stiff ODEs: a subclass sets
    ``tableau`` (a :class:`ButcherTableau` with diagonal entries). Dense output is cubic Hermite
    through ``(y0, h f0)`` and ``(y1, h f1)``.

    Args:
        nonlinear: how each implicit stage is solved: :class:`Chord` (default), :class:`Newton`
            or :class:`NewtonKrylov`.

    ODEs only (``ODETerm``); real states. Jacobians come from the term (``ODETerm(f, jac=...)``)
    or from automatic differentiation; ``Solution.stats`` reports ``num_jacobians``,
    ``num_factorisations`` and ``num_newton_iterations`` per sample.
    """

    generic_terms = False
    uses_jacobian = True
    statistics = STATISTICS
    failure_hint = (
        "its Newton iteration did not converge even at the smallest step size; the Jacobian may "
        "be wrong (check `ODETerm(f, jac=...)`), the problem may be singular there, or tighter "
        "Newton settings may help (e.g. `nonlinear=Newton()`)"
    )
    nonlinear: AbstractNonlinearSolver = field(default_factory=Chord)

    def __post_init__(self) -> None:
        if not isinstance(self.nonlinear, AbstractNonlinearSolver):
            raise TypeError(
                f"`{type(self).__name__}(nonlinear=...)` must be `Chord()`, `Newton()` or "
                f"`NewtonKrylov()`, got {self.nonlinear!r}"
            )

    def __repr__(self) -> str:
        extra = "" if self.nonlinear == Chord() else f"nonlinear={self.nonlinear!r}"
        return f"{type(self).__name__}({extra})"

    def check_terms(self, term: Any) -> None:
        if not getattr(term, "ode", False):
            raise TypeError(
                f"`{type(self).__name__}()` solves ordinary differential equations "
                f"(`ODETerm(f)`), got {term!r}; for SDEs and CDEs use their solvers"
            )

    # -- start ---------------------------------------------------------------------------------

    def init(self, problem: Problem, t0: torch.Tensor, y0: torch.Tensor) -> tuple[Any, int]:
        q = quadratures(problem)
        if not (isinstance(q, int) and 0 <= q < y0.shape[1]):
            raise ValueError(
                f"`ODETerm(quadratures=...)` must be an int in [0, {y0.shape[1]}) (the number of "
                f"trailing state components that are integrals), got {q!r}"
            )
        check_real(self, y0)
        return problem.flat(problem.vf(t0, y0)), 1

    def carry(self, y0: torch.Tensor, vf0: Any) -> tuple:
        batch = y0.shape[0]
        # the Jacobian's block is sized at its first evaluation (quadratures are left out)
        zeros = y0.new_zeros(batch, 0, 0)
        flags = torch.zeros(batch, dtype=torch.bool, device=y0.device)
        return _Carry(
            f=vf0,
            jac=zeros,
            lu=zeros.clone(),
            pivots=torch.zeros(batch, 0, dtype=torch.int32, device=y0.device),
            lu_gh=torch.full((batch,), math.nan, dtype=y0.dtype, device=y0.device),
            current=flags,
            stale=~flags,
        ).tree()

    def first_state(self, problem: Problem, t0: torch.Tensor, y0: torch.Tensor) -> Any:
        return self.carry(y0, self.init(problem, t0, y0)[0])

    # -- a step --------------------------------------------------------------------------------

    def step(self, problem, t0, t1, y0, state):
        carry = _Carry.of(state)
        control = problem.contr(t0, t1)  # the signed step in the user's time
        h = control.to(y0.dtype).reshape(-1).expand(y0.shape[0])
        rtol, atol = self.nonlinear.tolerances(problem.tolerances)
        nl = self.nonlinear
        # the iteration cannot resolve z below the rounding of base + γ h f: floor the scale there
        eps = torch.finfo(y0.dtype).eps
        rounding = 16 * eps * (y0.abs() + (h[:, None] * carry.f).abs())
        scale = torch.maximum(atol + rtol * y0.abs(), rounding)
        work = _Step(problem, h, scale, nl.kappa, nl.max_iters, _Carry.of(state))
        work.m = y0.shape[1] - quadratures(problem)
        work.counts = {name: torch.zeros_like(h, dtype=torch.long) for name in STATISTICS}
        times = self._stage_times(t0, t1)
        ks, zs, failed = self._stages(work, times, y0, t0)
        if not nl.fresh_jacobian and not nl.matrix_free:
            ks, zs, failed = self._recover(work, times, y0, t0, ks, zs, failed)
        y1 = zs[-1] if self.tableau.stiffly_accurate else combine(y0, self._b, ks)
        y_error = None if self._e is None else combine(None, self._e, ks)
        f_end = self._end_field(work, ks, carry, problem, t1, y1)
        new = work.carry
        nothing = torch.zeros_like(new.current)
        accepted = _Carry(  # the next step starts elsewhere: the Jacobian is no longer current
            f_end,
            new.jac,
            new.lu,
            new.pivots,
            new.lu_gh,
            nothing,
            nothing if work.slow is None else work.slow,
        )
        rejected = _Carry(  # the same start: keep what was learnt there (a fresh Jacobian, its LU)
            carry.f, new.jac, new.lu, new.pivots, new.lu_gh, new.current, new.stale & ~new.current
        )
        return StepResult(
            y1,
            y_error,
            accepted.tree(),
            (y0, y1, ks, 1.0, f_end, control),
            work.nfe,
            failed=failed,
            counts=work.counts,
            rejected_state=rejected.tree(),
        )

    def _recover(self, work: _Step, times, y0, t0, ks, zs, failed):
        """A chord iteration that failed with a Jacobian from an earlier step retries with one
        evaluated at this step's start. One that failed with a current Jacobian (a long step on a
        nonlinear stage) fails the step, which an adaptive controller retries shorter (cheaper, on
        the stiff test set, than iterating on with fresh Jacobians); with constant steps, which
        cannot shrink, it retries with Newton's iteration before the step is given up."""
        retry = failed & ~work.carry.current
        if bool(retry.any()):
            self._refresh_jacobian(work, t0, y0, retry)
            ks, zs, failed = self._redo(work, times, y0, t0, retry, ks, zs, failed)
        if bool(failed.any()) and not work.problem.adaptive:
            carry = work.carry
            kept = (carry.jac, carry.lu, carry.pivots, carry.lu_gh, carry.current)
            work.newton = True
            ks, zs, failed = self._redo(work, times, y0, t0, failed, ks, zs, failed)
            work.newton = False
            # the iterates' Jacobians are not the one to reuse: keep the step start's
            carry.jac, carry.lu, carry.pivots, carry.lu_gh, carry.current = kept
        return ks, zs, failed

    def _redo(self, work, times, y0, t0, which, ks, zs, failed):
        """Run the stages again; keep the new results for the samples in ``which``."""
        ks2, zs2, failed2 = self._stages(work, times, y0, t0)
        mask = which[:, None]
        ks = [torch.where(mask, new, old) for old, new in zip(ks, ks2)]
        zs = [torch.where(mask, new, old) for old, new in zip(zs, zs2)]
        return ks, zs, torch.where(which, failed2, failed)

    def _end_field(self, work, ks, carry, problem, t1, y1) -> torch.Tensor:
        """The vector field at ``(t1, y1)`` for the next step: for a stiffly accurate method the
        last stage's ``k/h`` (from the stage equation, not a new evaluation); else evaluated."""
        if self.tableau.stiffly_accurate:
            h = work.h[:, None]
            return torch.where(h == 0, carry.f, ks[-1] / torch.where(h == 0, 1.0, h))
        work.nfe += 1
        return problem.flat(problem.vf(t1, y1))

    def _stages(self, work: _Step, times, y0, t0):
        """Every stage; returns the ``k``'s, the stage values and which samples failed."""
        problem, h = work.problem, work.h[:, None]
        failed = torch.zeros_like(work.carry.current)
        ks: list[torch.Tensor] = []
        zs: list[torch.Tensor] = []
        for i, gamma in enumerate(self._diagonal):
            base = y0 if i == 0 else combine(y0, self._a[i], ks)
            if gamma == 0.0:
                if i == 0:
                    f = work.carry.f
                else:
                    f = problem.flat(problem.vf(times[i], base))
                    work.nfe += 1
                ks.append(h * f)
                zs.append(base)
                continue
            # the first guess: the tableau's predictor; in the Newton fallback, the previous stage
            # value (no extrapolation: the predictor's overshoot is what can make a stiff stage fail)
            z0 = zs[-1] if work.newton else base + gamma * self._guess(i, ks, work)
            z, ok = self._solve_stage(work, times[i], base, gamma, z0, t0, y0)
            failed = failed | ~ok
            ks.append((z - base) / gamma)
            zs.append(z)
        return ks, zs, failed

    def _guess(self, i: int, ks: list[torch.Tensor], work: _Step) -> torch.Tensor:
        """The first guess of stage ``i``'s ``k``: the tableau's predictor, else the previous
        stage's (or ``h f0`` for the first)."""
        if self._predictor is not None and self._predictor[i]:
            return combine(None, self._predictor[i], ks)
        return ks[-1] if ks else work.h[:, None] * work.carry.f

    # -- the stage equation -------------------------------------------------------------------

    def _solve_stage(self, work: _Step, t, base, gamma: float, z, t0, y0):
        """Solve ``z = base + γ h f(t, z)`` from the guess ``z``; returns ``(z, converged)``."""
        gh = gamma * work.h
        newton = self.nonlinear.fresh_jacobian or work.newton
        if not self.nonlinear.matrix_free and not newton:
            self._refresh_jacobian(work, t0, y0, work.carry.stale)
            self._factorise(work, gh)
        with torch.no_grad():
            z, converged = self._iterate(work, t, base.detach(), gh, z.detach())
        if torch.is_grad_enabled() and self._needs_graph(work, t, base, z):
            z = self._implicit_gradient(work, t, base, gh, z)
        return z, converged

    def _iterate(self, work: _Step, t, base, gh, z):
        """The stage iteration: per sample in tensors, or with the bookkeeping in Python numbers
        for a single problem (one host synchronisation per iteration, no masking)."""
        if z.shape[0] == 1:
            return self._iterate_one(work, t, base, gh, z)
        return self._iterate_batch(work, t, base, gh, z)

    def _iterate_one(self, work: _Step, t, base, gh, z):
        problem, nl = work.problem, self.nonlinear
        newton = nl.fresh_jacobian or work.newton
        everyone = torch.ones_like(work.carry.current)
        step = float(gh[0])
        inverse_scale = 1.0 / work.scale
        previous, rate, converged, iters = math.inf, 0.0, False, 0
        for k in range(nl.max_iters):
            f = problem.flat(problem.vf(t, z))
            work.nfe += 1
            residual = (base - z).add_(f, alpha=step)  # -G(z)
            if newton:  # the Jacobian at the iterate: quadratic convergence
                self._refresh_jacobian(work, t, z, everyone)
                self._factorise(work, gh, force=True)
            dz = self._linear_solve(work, t, z, gh, residual, everyone)
            z = z + dz
            iters += 1
            # quadratures follow the other components: the norm leaves them out
            part = dz[:, : work.m] * inverse_scale[:, : work.m]
            norm = float(torch.linalg.vector_norm(part)) / math.sqrt(max(work.m, 1))
            # the remaining error is about θ/(1-θ)·‖Δz‖ once the rate θ is measured (from the
            # second iterate on, as SciPy's Radau); a rate ≥ 1, or one too slow to reach the
            # tolerance in the iterations left, fails the stage (Hairer & Wanner IV.8)
            if norm == 0:
                converged = True
                break
            if not math.isfinite(norm):
                break
            if k > 0:
                rate = norm / previous
                # converged: the estimated remaining error is small, or the correction itself is
                # a tenth of it (near the rounding level of the iterate the measured rate is noise:
                # the iterate stagnates, θ ≈ 1, with corrections far below the tolerance)
                if (rate < 1 and rate / (1 - rate) * norm <= nl.kappa) or norm <= nl.kappa / 10:
                    converged = True
                    break
                # diverging; or, for the chord's linear convergence, too slow to converge in the
                # iterations left (Newton's quadratic convergence speeds up: no such test)
                if rate >= 1 or (
                    not newton and rate ** (nl.max_iters - k) / (1 - rate) * norm > nl.kappa
                ):
                    break
            previous = norm
        work.counts["num_newton_iterations"] += iters
        if converged and iters > 2 and rate > 1e-3:
            work.slow = everyone if work.slow is None else work.slow | everyone
        done = everyone if converged else ~everyone
        return z, done

    def _iterate_batch(self, work: _Step, t, base, gh, z):
        problem, nl = work.problem, self.nonlinear
        newton = nl.fresh_jacobian or work.newton
        active = torch.ones_like(work.carry.current)
        converged = torch.zeros_like(active)
        previous = torch.full_like(gh, math.inf)
        rate = torch.zeros_like(gh)
        iters = torch.zeros_like(work.counts["num_newton_iterations"])
        for k in range(nl.max_iters):
            f = problem.flat(problem.vf(t, z))
            work.nfe += 1
            residual = z - base - gh[:, None] * f
            if newton:  # the Jacobian at the iterate: quadratic convergence
                self._refresh_jacobian(work, t, z, active)
                self._factorise(work, gh, force=True)
            dz = self._linear_solve(work, t, z, gh, -residual, active)
            dz = torch.where(active[:, None], dz, torch.zeros_like(dz))
            z = z + dz
            iters = iters + active
            norm = _rms(dz[:, : work.m] / work.scale[:, : work.m])
            # the remaining error is about θ/(1-θ)·‖Δz‖ once the rate θ is measured (from the
            # second iterate on, as SciPy's Radau); a rate ≥ 1, or one too slow to reach the
            # tolerance in the iterations left, fails the stage (Hairer & Wanner IV.8)
            if k > 0:
                rate = torch.where(active, norm / previous, rate)
                small = ((rate < 1) & (rate / (1 - rate) * norm <= nl.kappa)) | (
                    norm <= nl.kappa / 10
                )
                hopeless = rate >= 1
                if not newton:
                    hopeless = hopeless | (
                        rate ** (nl.max_iters - k) / (1 - rate) * norm > nl.kappa
                    )
            else:
                small = hopeless = torch.zeros_like(active)
            done = active & (small | (norm == 0))
            diverged = active & ~done & (hopeless | ~torch.isfinite(norm))
            converged = converged | done
            active = active & ~done & ~diverged
            previous = norm
            if not bool(active.any()):
                break
        work.counts["num_newton_iterations"] += iters
        slow = converged & (iters > 2) & (rate > 1e-3)
        work.slow = slow if work.slow is None else work.slow | slow
        return z, converged

    def _linear_solve(self, work: _Step, t, z, gh, rhs, active):
        """``(I - γ h J) Δ = rhs`` per sample; quadrature components take ``Δ = rhs`` (their
        block of the iteration matrix is the identity: their rate does not depend on them)."""
        if self.nonlinear.matrix_free:
            return _gmres(work, t, z, gh, rhs, active, self.nonlinear)
        m = work.m
        head = torch.linalg.lu_solve(work.carry.lu, work.carry.pivots, rhs[:, :m, None])[:, :, 0]
        return head if m == rhs.shape[1] else torch.cat([head, rhs[:, m:]], dim=1)

    def _refresh_jacobian(self, work: _Step, t, y, which: torch.Tensor):
        """Re-evaluate ``J`` at ``(t, y)`` for the samples in ``which``."""
        if self.nonlinear.matrix_free or not bool(which.any()):
            return
        with torch.no_grad():
            fresh = jacobian(work.problem, t, y.detach(), work.m)
        carry = work.carry
        if carry.jac.shape != fresh.shape:  # the first evaluation: every sample takes it
            which = torch.ones_like(which)
            carry.jac, carry.lu = fresh, torch.zeros_like(fresh)
            carry.pivots = torch.zeros(fresh.shape[:2], dtype=torch.int32, device=fresh.device)
        carry.jac = torch.where(which[:, None, None], fresh, carry.jac)
        carry.current = carry.current | which
        carry.stale = carry.stale & ~which
        carry.lu_gh = torch.where(which, math.nan, carry.lu_gh)  # the LU must be redone
        work.counts["num_jacobians"] += which

    def _factorise(self, work: _Step, gh, force: bool = False):
        carry = work.carry
        redo = (carry.lu_gh != gh) | force
        if not bool(redo.any()):
            return
        n = carry.jac.shape[-1]
        eye = torch.eye(n, dtype=carry.jac.dtype, device=carry.jac.device)
        with torch.no_grad():  # a singular matrix gives non-finite corrections: the stage fails
            lu, pivots, _ = torch.linalg.lu_factor_ex(eye - gh[:, None, None] * carry.jac)
        carry.lu = torch.where(redo[:, None, None], lu, carry.lu)
        carry.pivots = torch.where(redo[:, None], pivots, carry.pivots)
        carry.lu_gh = torch.where(redo, gh, carry.lu_gh)
        work.counts["num_factorisations"] += redo

    # -- gradients -------------------------------------------------------------------------------

    def _needs_graph(self, work: _Step, t, base, z) -> bool:
        if base.requires_grad or work.h.requires_grad or getattr(t, "requires_grad", False):
            return True

        def probe() -> bool:
            out = work.problem.vf(t, z.detach())
            return any(x.requires_grad for x in _leaves(out))

        return work.problem.memo("field has parameters", probe)

    def _implicit_gradient(self, work: _Step, t, base, gh, z_star):
        """One Newton step from the converged ``z*`` with the exact ``∂G/∂z`` at ``z*`` held
        constant: the value stays ``z*`` (to the iteration's accuracy) and the gradient is the
        implicit-function theorem's, ``dz = -(I - γ h J(z*))⁻¹ dG`` — the Jacobian at the
        solution itself, not the (older) one the chord iteration reused, so the gradient is
        exact for the converged stage."""
        problem = work.problem
        z_fixed = z_star.detach()
        f = problem.flat(problem.vf(t, z_fixed))
        work.nfe += 1
        residual = z_fixed - base - gh[:, None] * f
        if self.nonlinear.matrix_free:
            correction = _gmres_graph(work, t, z_fixed, gh, residual, self.nonlinear)
            return z_fixed - correction
        with torch.no_grad():
            jac = jacobian(problem, t, z_fixed)
            n = jac.shape[-1]
            eye = torch.eye(n, dtype=jac.dtype, device=jac.device)
            lu, pivots, _ = torch.linalg.lu_factor_ex(eye - gh.detach()[:, None, None] * jac)
        work.counts["num_jacobians"] += 1
        work.counts["num_factorisations"] += 1
        correction = torch.linalg.lu_solve(lu, pivots, residual[:, :, None])[:, :, 0]
        return z_fixed - correction


def _leaves(tree):
    from .._pytree import tree_leaves

    return [x for x in tree_leaves(tree) if isinstance(x, torch.Tensor)]


def _rms(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x, dim=1) / math.sqrt(max(x.shape[1], 1))


# ------------------------------------------------------------------------------------------------
# matrix-free linear solves


def _jvp_operator(work: _Step, t, z, gh):
    """``v ↦ v - γ h J(z) v`` by forward-mode differentiation of the field at ``z``."""
    problem = work.problem

    def apply(v: torch.Tensor) -> torch.Tensor:
        _, jv = torch.func.jvp(lambda yy: problem.flat(problem.vf(t, yy)), (z,), (v,))
        work.nfe += 1
        return v - gh[:, None] * jv

    return apply


def _gmres(work: _Step, t, z, gh, rhs, active, nl) -> torch.Tensor:
    """Restarted GMRES per sample (batched: every sample runs its own Arnoldi process in lock
    step, Givens-free least squares on the small Hessenberg matrices)."""
    apply = _jvp_operator(work, t, z, gh)
    x = torch.zeros_like(rhs)
    target = nl.krylov_rtol * torch.linalg.vector_norm(rhs, dim=1)
    for _ in range(nl.max_restarts):
        r = rhs - apply(x)
        beta = torch.linalg.vector_norm(r, dim=1)
        if not bool(((beta > target) & active).any()):
            break
        x = x + _arnoldi_solve(apply, r, beta, nl.krylov_dim)
    return x


def _arnoldi_solve(apply, r, beta, m: int) -> torch.Tensor:
    batch, n = r.shape
    m = min(m, n)
    safe = torch.where(beta == 0, torch.ones_like(beta), beta)
    basis = [r / safe[:, None]]
    hess = r.new_zeros(batch, m + 1, m)
    for j in range(m):
        w = apply(basis[j])
        for i in range(j + 1):  # modified Gram–Schmidt
            hij = (w * basis[i]).sum(dim=1)
            hess[:, i, j] = hij
            w = w - hij[:, None] * basis[i]
        norm = torch.linalg.vector_norm(w, dim=1)
        hess[:, j + 1, j] = norm
        basis.append(w / torch.where(norm == 0, torch.ones_like(norm), norm)[:, None])
    e1 = r.new_zeros(batch, m + 1)
    e1[:, 0] = beta
    coeffs = torch.linalg.lstsq(hess, e1[:, :, None]).solution[:, :, 0]  # (batch, m)
    return torch.einsum("bm,mbn->bn", coeffs, torch.stack(basis[:m]))


def _gmres_graph(work: _Step, t, z, gh, residual, nl) -> torch.Tensor:
    """The implicit-function correction ``(I - γ h J)⁻¹ G`` matrix-free, differentiable in ``G``:
    the operator is linear, so its inverse's adjoint is solved the same way (a custom autograd
    function with a GMRES solve in the backward pass)."""
    return _KrylovSolve.apply(work, t, z, gh.detach(), nl, residual)


class _KrylovSolve(torch.autograd.Function):
    @staticmethod
    def forward(fctx, work, t, z, gh, nl, rhs):
        with torch.no_grad():
            active = torch.ones(rhs.shape[0], dtype=torch.bool, device=rhs.device)
            x = _gmres(work, t, z, gh, rhs, active, nl)
        fctx.saved = (work, t, z, gh, nl)
        return x

    @staticmethod
    def backward(fctx, grad):
        work, t, z, gh, nl = fctx.saved
        problem = work.problem

        def apply_t(v: torch.Tensor) -> torch.Tensor:  # v ↦ v - γ h Jᵀ v by a reverse product
            with torch.enable_grad():
                zz = z.detach().requires_grad_(True)
                out = problem.flat(problem.vf(t, zz))
                (jtv,) = torch.autograd.grad(out, zz, v, allow_unused=True)
            jtv = torch.zeros_like(v) if jtv is None else jtv
            return v - gh[:, None] * jtv

        with torch.no_grad():
            x = torch.zeros_like(grad)
            target = nl.krylov_rtol * torch.linalg.vector_norm(grad, dim=1)
            for _ in range(nl.max_restarts):
                r = grad - apply_t(x)
                beta = torch.linalg.vector_norm(r, dim=1)
                if not bool((beta > target).any()):
                    break
                x = x + _arnoldi_solve(apply_t, r, beta, nl.krylov_dim)
        return None, None, None, None, None, x
