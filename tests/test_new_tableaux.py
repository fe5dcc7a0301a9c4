"""Tsit5 and Dopri8 (DOP853): the mathematics of the two tableaux and of their dense outputs.

Measured in float64 on a problem with a known solution: the global convergence order, the order
of the embedded error estimate, the order of the dense output, and adaptive solves at tight
tolerance. The continuous order conditions of both interpolants are also checked directly
(Butcher's rooted trees), since the Dopri8 interpolant is derived in torchnde, not published.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

import torchnde
from torchnde._problem import Problem
from torchnde._pytree import StateSpec

F64 = torch.float64
SLOPE_TOL = 0.3

# ------------------------------------------------------------------------------------------------
# The problem: a rotation whose angular speed is the squared radius, and a Riccati equation,
#     u' = -v (u² + v²),  v' = u (u² + v²),  w' = -2 t w²,   (u, v, w)(0) = (R, 0, 1),
# solved by u = R cos(R² t), v = R sin(R² t), w = 1 / (1 + t²). Nonlinear and non-autonomous.

R = 1.2


def vf(t: torch.Tensor, y: torch.Tensor, args) -> torch.Tensor:
    """Unbatched (``t`` 0-dim, ``y`` (3,)) or batched (``t`` (B,), ``y`` (B, 3))."""
    u, v, w = y.unbind(-1)
    r2 = u * u + v * v
    return torch.stack([-v * r2, u * r2, -2 * t * w * w], dim=-1)


def exact(t) -> torch.Tensor:
    """``t`` of any shape → ``t.shape + (3,)``."""
    t = torch.as_tensor(t, dtype=F64)
    phase = R * R * t
    return torch.stack([R * torch.cos(phase), R * torch.sin(phase), 1 / (1 + t * t)], dim=-1)


def slope(hs, errs) -> float:
    """Least-squares slope of log(err) against log(h)."""
    x = torch.tensor(hs, dtype=F64).log()
    y = torch.tensor(errs, dtype=F64).log()
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


# name → (class, order, error order, dense order)
THEORY = {
    "Tsit5": (torchnde.Tsit5, 5, 5, 4),
    "Dopri8": (torchnde.Dopri8, 8, 6, 6),
}
NAMES = list(THEORY)


@pytest.mark.parametrize("name", NAMES)
def test_declared_orders(name):
    cls, order, error_order, dense_order = THEORY[name]
    assert (cls.order, cls.error_order, cls.interpolation_order) == (
        order,
        error_order,
        dense_order,
    )


def test_fsal_and_cost_per_step():
    """Tsit5 is first-same-as-last (6 new evaluations a step); DOP853 is not (11 stages and
    f(t1, y1): 12 a step)."""
    assert torchnde.Tsit5.tableau.fsal and not torchnde.Dopri8.tableau.fsal
    for cls, per_step in ((torchnde.Tsit5, 6), (torchnde.Dopri8, 12)):
        sol = torchnde.solve(torchnde.ODETerm(vf), cls(), 0.0, 1.0, exact(0.0), dt0=0.25)
        assert int(sol.stats["nfe"]) == 1 + 4 * per_step


# ------------------------------------------------------------------------------------------------
# (a) global convergence order, constant steps. Step counts chosen so the error stays well above
# roundoff (≥ 1e-12) and in the asymptotic range.

STEPS = {"Tsit5": [24, 32, 48, 64, 96], "Dopri8": [8, 10, 12, 16]}
T1 = 2.0


def global_errors(cls, steps) -> list[float]:
    ns = torch.tensor(steps, dtype=F64)
    y0 = exact(torch.zeros(len(steps), dtype=F64))
    sol = torchnde.solve(torchnde.ODETerm(vf), cls(), 0.0, T1, y0, dt0=T1 / ns, batch_axis=0)
    assert (sol.stats["num_steps"] == ns.long()).all()
    return (sol.ys[:, -1] - exact(T1)).abs().amax(dim=-1).tolist()


@pytest.mark.parametrize("name", NAMES)
def test_global_convergence_order(name):
    cls, order, _, _ = THEORY[name]
    hs = [T1 / n for n in STEPS[name]]
    errs = global_errors(cls, STEPS[name])
    assert min(errs) > 1e-12, errs
    p = slope(hs, errs)
    assert abs(p - order) <= SLOPE_TOL, f"slope {p:.3f}, errors {errs}"


# ------------------------------------------------------------------------------------------------
# (b) the embedded error estimate of one step from the exact state is O(dt^(embedded_order + 1))

T_LOCAL = 0.3
# Steps for the one-step tests, from the largest in the asymptotic range to the smallest whose
# error is still well above roundoff. DOP853's estimate has a large dt^7 term, so its slope only
# settles on 6 at small steps (6.3 at dt ≈ 0.2, 6.2 at dt ≈ 0.05).
H_EST = {"Tsit5": [0.2 * 2.0**-k for k in range(5)], "Dopri8": [0.1, 0.05, 0.025]}
H_DENSE = {"Tsit5": [0.2 * 2.0**-k for k in range(5)], "Dopri8": [0.2, 0.15, 0.1, 0.075, 0.05]}
H_STEP = {"Tsit5": [0.2 * 2.0**-k for k in range(5)], "Dopri8": [0.4, 0.3, 0.2, 0.15]}


def one_step(cls, hs):
    h = torch.tensor(hs, dtype=F64)
    t0 = torch.full_like(h, T_LOCAL)
    y0 = exact(t0)
    problem = Problem(torchnde.ODETerm(vf), StateSpec.from_tree(y0, True), None, None)
    solver = cls()
    state, _ = solver.init(problem, t0, y0)
    return solver.step(problem, t0, t0 + h, y0, state), t0 + h


@pytest.mark.parametrize("name", NAMES)
def test_error_estimate_order(name):
    cls, _, error_order, _ = THEORY[name]
    hs = H_EST[name]
    result, _ = one_step(cls, hs)
    estimates = result.y_error.abs().amax(dim=-1).tolist()
    assert min(estimates) > 1e-13, estimates
    p = slope(hs, estimates)
    assert abs(p - error_order) <= SLOPE_TOL, f"slope {p:.3f}, estimates {estimates}"


@pytest.mark.parametrize("name", NAMES)
def test_estimate_bounds_the_local_error(name):
    """The propagated solution's local error is of higher order than the estimate and below it."""
    cls, order, _, _ = THEORY[name]
    hs = H_STEP[name]
    result, t1 = one_step(cls, hs)
    estimates = result.y_error.abs().amax(dim=-1).tolist()
    true = (result.y1 - exact(t1)).abs().amax(dim=-1).tolist()
    assert all(x < e for x, e in zip(true, estimates)), (true, estimates)
    above_roundoff = [(h, x) for h, x in zip(hs, true) if x > 1e-13]
    assert len(above_roundoff) >= 3
    assert slope(*zip(*above_roundoff)) > order + 1 - SLOPE_TOL


# ------------------------------------------------------------------------------------------------
# (c) dense output: one step from the exact state; the largest interpolation error over the step
# is O(dt^(interpolation_order + 1)) (the step's own error, O(dt^(order + 1)), is smaller).

THETAS = torch.linspace(0.05, 0.95, 19, dtype=F64)


@pytest.mark.parametrize("name", NAMES)
def test_dense_output_order(name):
    cls, _, _, dense_order = THEORY[name]
    h = torch.tensor(H_DENSE[name], dtype=F64)
    t0 = torch.full_like(h, T_LOCAL)
    ts = t0[:, None] + THETAS * h[:, None]
    sol = torchnde.solve(
        torchnde.ODETerm(vf),
        cls(),
        t0,
        t0 + h,
        exact(t0),
        dt0=h,
        batch_axis=0,
        saveat=torchnde.SaveAt(dense=True),
    )
    assert (sol.stats["num_steps"] == 1).all()
    errs = (sol.evaluate(ts) - exact(ts)).abs().amax(dim=(-1, -2)).tolist()
    assert min(errs) > 1e-13, errs
    p = slope(H_DENSE[name], errs)
    assert abs(p - (dense_order + 1)) <= SLOPE_TOL, f"slope {p:.3f}, errors {errs}"


@pytest.mark.parametrize("name", NAMES)
def test_dense_output_is_c1(name):
    """dy/dθ is k_1 = dt f(t0, y0) at θ = 0 and dt f(t1, y1) at θ = 1 (the row k_end, or the last
    stage k_s for a first-same-as-last tableau), so the dense solution is C¹ across steps."""
    cls = THEORY[name][0]
    m = torch.tensor([[float(x) for x in row] for row in cls.interpolant.matrix], dtype=F64)
    powers = torch.arange(m.shape[1], dtype=F64)
    d_at_0, d_at_1 = m[:, 1], (m * powers).sum(dim=1)
    s = cls.tableau.stages
    e_k1 = torch.zeros(m.shape[0], dtype=F64)
    e_k1[2] = 1
    e_end = torch.zeros(m.shape[0], dtype=F64)
    e_end[s + 1 if cls.tableau.fsal else s + 2] = 1
    assert torch.allclose(d_at_0, e_k1, rtol=0, atol=1e-12)
    assert torch.allclose(d_at_1, e_end, rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------------------------
# continuous order conditions: Σ_j b_j(θ) Φ_j(τ) = θ^|τ| / γ(τ) for every rooted tree τ with
# |τ| ≤ interpolation order, as polynomials in θ (Hairer, Nørsett & Wanner, Solving ODEs I).


def _size(tree: tuple) -> int:
    return 1 + sum(_size(child) for child in tree)


@functools.cache
def _trees(n: int) -> tuple[tuple, ...]:
    """Rooted trees with ``n`` nodes, each the sorted tuple of its subtrees."""
    if n == 1:
        return ((),)
    pool = [t for k in range(1, n) for t in _trees(k)]
    out: list[tuple] = []

    def extend(start: int, left: int, chosen: list) -> None:
        if left == 0:
            out.append(tuple(chosen))
            return
        for i in range(start, len(pool)):
            if _size(pool[i]) <= left:
                extend(i, left - _size(pool[i]), [*chosen, pool[i]])

    extend(0, n - 1, [])
    return tuple(out)


def _gamma(tree: tuple) -> int:
    return _size(tree) * math.prod(_gamma(child) for child in tree)


def _phi(tree: tuple, a: list[list[float]]) -> list[float]:
    out = [1.0] * len(a)
    for child in tree:
        pc = _phi(child, a)
        out = [out[i] * sum(a[i][j] * pc[j] for j in range(i)) for i in range(len(a))]
    return out


def _continuous_defects(cls, n: int) -> float:
    """Largest |Σ_j b_j(θ) Φ_j(τ) - θ^n/γ(τ)| coefficient over the trees τ of order ``n``, with
    f(t1, y1) as an extra stage (node 1, weights b) when the interpolant uses it."""
    tab = cls.tableau
    s = tab.stages
    m = [[float(x) for x in row] for row in cls.interpolant.matrix]
    b = [float(x) for x in tab.b]
    # y(θ) = (M0 + M1) y0 + Σ_j (M[2+j] + M1 b_j) k_j + M[s+2] k_end
    weights = [[x + y * b[j] for x, y in zip(m[2 + j], m[1])] for j in range(s)] + [m[s + 2]]
    a = [[float(x) for x in row] + [0.0] * (s + 1 - len(row)) for row in tab.a]
    a.append([*b, 0.0])
    worst = 0.0
    for tree in _trees(n):
        phi = _phi(tree, a)
        for p in range(len(m[0])):
            value = sum(w[p] * f for w, f in zip(weights, phi))
            target = 1 / _gamma(tree) if p == n else 0.0
            worst = max(worst, abs(value - target))
    return worst


def test_rooted_tree_counts():
    assert [len(_trees(n)) for n in range(1, 8)] == [1, 1, 2, 4, 9, 20, 48]


@pytest.mark.parametrize("name", NAMES)
def test_interpolant_continuous_order_conditions(name):
    cls, _, _, dense_order = THEORY[name]
    for n in range(1, dense_order + 1):
        worst = _continuous_defects(cls, n)
        assert worst < 1e-11, f"order {n}: defect {worst:g}"
    # and the order is no higher
    assert _continuous_defects(cls, dense_order + 1) > 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_embedded_weights_order(name):
    """b̂ satisfies the order conditions up to the embedded order exactly (to rounding), and not
    beyond: the estimate b - b̂ is a genuine O(dt^error_order) quantity."""
    cls, _, error_order, _ = THEORY[name]
    tab = cls.tableau
    a = [[float(x) for x in row] + [0.0] * (tab.stages - len(row)) for row in tab.a]
    b_hat = [float(x) for x in tab.b_hat]

    def worst(n):
        return max(
            abs(sum(w * f for w, f in zip(b_hat, _phi(t, a))) - 1 / _gamma(t)) for t in _trees(n)
        )

    assert max(worst(n) for n in range(1, error_order)) < 1e-12
    assert worst(error_order) > 1e-5


# ------------------------------------------------------------------------------------------------
# (d) adaptive solves at tight tolerance


RTOL, ATOL = 1e-10, 1e-12
T_ADAPT = 3.0


def adaptive(cls):
    return torchnde.solve(
        torchnde.ODETerm(vf),
        cls(),
        0.0,
        T_ADAPT,
        exact(0.0),
        dt0=0.1,
        controller=torchnde.PIDController(rtol=RTOL, atol=ATOL),
        saveat=torchnde.SaveAt(steps=True, dense=True),
    )


@pytest.mark.parametrize("name", NAMES)
def test_adaptive_solve_meets_tolerance(name):
    cls = THEORY[name][0]
    sol = adaptive(cls)
    assert sol.ok

    # the global error at every step is within a small multiple of the tolerance (scaled by the
    # size of the state: u and v cross zero, where a componentwise relative error means nothing)
    def error_over_tolerance(ts, ys):
        y = exact(ts)
        scale = ATOL + RTOL * y.abs().amax(dim=-1, keepdim=True)
        return float(((ys - y).abs() / scale).amax())

    at_steps = error_over_tolerance(sol.ts, sol.ys)
    assert at_steps < 10, f"global error / tolerance = {at_steps:.3g} at the steps"
    # and between the steps, through the dense output (for Dopri8 the order-6 interpolant keeps
    # up with tight tolerances; cubic Hermite would be ~1e4 times the tolerance here)
    ts = torch.linspace(0.0, T_ADAPT, 601, dtype=F64)
    between = error_over_tolerance(ts, sol.evaluate(ts))
    assert between < 10, f"global error / tolerance = {between:.3g} between the steps"


def test_dopri8_is_cheaper_than_dopri5_at_tight_tolerance():
    stats8, stats5 = adaptive(torchnde.Dopri8).stats, adaptive(torchnde.Dopri5).stats
    assert int(stats8["num_steps"]) < int(stats5["num_steps"]) / 3
    # twelve evaluations a step against six, and still fewer in all
    assert int(stats8["nfe"]) < int(stats5["nfe"]) / 2
