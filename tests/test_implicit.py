"""The implicit solvers (ImplicitEuler, Kvaerno3/4/5) beyond the solver database's generic tests:
their stability functions, order reduction on a stiff problem, per-sample Newton solves under a
batch axis, Jacobians from autograd or the user, the chord/Newton/Newton–Krylov iterations,
persistent Newton failure, and gradients by the implicit function theorem.

The stiff test set against SciPy's Radau (Robertson, Van der Pol μ = 1000, HIRES, ...) is in
``test_stiff_set.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from solver_db import IMPLICIT, Method, ids, observed_order

import torchnde as tn
from torchnde import ODETerm, PIDController, SaveAt, Status

F64 = torch.float64
TIGHT = tn.Chord(rtol=1e-13, atol=1e-15, max_iters=30)


def _stability_function(tableau, z: complex) -> complex:
    """``R(z) = 1 + z bᵀ (I - zA)⁻¹ 1``, with ``A`` the full lower-triangular matrix."""
    s = tableau.stages
    a = np.zeros((s, s))
    for i, (row, d) in enumerate(zip(tableau.a, tableau.diagonal)):
        a[i, : len(row)] = [float(x) for x in row]
        a[i, i] = float(d)
    b = np.array([float(x) for x in tableau.b])
    return complex(1 + z * b @ np.linalg.solve(np.eye(s) - z * a, np.ones(s)))


def _one_step(method: Method, a: float, b: float, h: float = 1.0) -> complex:
    """One step of size ``h`` on ``y' = λ y`` with ``λ = a + ib``, written as the real system
    ``(u, v)' = [[a, -b], [b, a]] (u, v)`` from ``y0 = 1``: returns ``y1 = R(λh)``."""
    matrix = torch.tensor([[a, -b], [b, a]], dtype=F64)
    sol = tn.solve(
        ODETerm(lambda t, y, args: matrix @ y),
        method.cls(nonlinear=TIGHT),
        0.0,
        h,
        torch.tensor([1.0, 0.0], dtype=F64),
        dt0=h,
    )
    u, v = sol.ys[-1].tolist()
    return complex(u, v)


@pytest.mark.parametrize("method", IMPLICIT, ids=ids(IMPLICIT))
def test_one_step_is_the_stability_function_and_it_is_l_stable(method: Method):
    tableau = method.cls.tableau
    for z in (-0.5, -20.0, -1e4, complex(-1.0, 3.0), complex(-100.0, 50.0), complex(0.0, 2.0)):
        assert (
            abs(
                _one_step(method, z.real, getattr(z, "imag", 0.0)) - _stability_function(tableau, z)
            )
            < 1e-9
        )
    # A-stable: |R| <= 1 on the closed left half-plane (a grid, and the imaginary axis)
    for re in (-1e3, -30.0, -3.0, -0.3, -1e-3, 0.0):
        for im in (0.0, 0.1, 1.0, 10.0, 100.0, 1e3):
            assert abs(_stability_function(tableau, complex(re, im))) <= 1 + 1e-12
    # L-stable: R(z) -> 0 as z -> -inf
    assert abs(_stability_function(tableau, -1e8)) < 1e-6
    assert abs(_one_step(method, -1e8, 0.0)) < 1e-6


def _prothero_robinson(lam: float):
    """``y' = λ (y - cos t) - sin t``, exact ``y = cos t`` from ``y(0) = 1``: stiff for large
    ``|λ|``, with a smooth solution."""

    def field(t, y, args):
        return lam * (y - torch.cos(t)) - torch.sin(t)

    return field


@pytest.mark.parametrize("method", IMPLICIT, ids=ids(IMPLICIT))
def test_stiff_prothero_robinson_converges_at_the_stage_order_uniformly_in_the_stiffness(method):
    """With ``|λh| ≫ 1`` a stiffly accurate method converges at its stage order (2 for these
    ESDIRK methods, 1 for implicit Euler) whatever ``λ`` — order reduction, but no loss of
    accuracy as the problem gets stiffer (B-convergence; Hairer & Wanner 1996, §IV.15)."""
    hs = [0.2, 0.1, 0.05, 0.025]
    errors = {}
    for lam in (-1e4, -1e7):
        errs = []
        for h in hs:
            sol = tn.solve(
                ODETerm(_prothero_robinson(lam)),
                method.cls(nonlinear=TIGHT),
                0.0,
                2.0,
                torch.ones(1, dtype=F64),
                dt0=h,
                saveat=SaveAt(steps=True),
            )
            errs.append(float((sol.ys[:, 0] - torch.cos(sol.ts)).abs().max()))
        errors[lam] = errs
        slope, data = observed_order(hs, errs, floor=1e-14, ceiling=1.0)
        assert abs(slope - min(method.order, 2)) <= 0.3, (lam, slope, data)
    assert max(errors[-1e7]) <= 1.1 * max(errors[-1e4])  # no worse when 1000x stiffer


# ------------------------------------------------------------------------------------------------
# Van der Pol: batches, Jacobians, iterations


def _van_der_pol(t, y, mu):
    x, v = y[..., 0], y[..., 1]
    return torch.stack([v, mu * (1 - x * x) * v - x], dim=-1)


def _van_der_pol_jacobian(t, y, mu):
    x, v = y[..., 0], y[..., 1]
    row0 = torch.stack([torch.zeros_like(x), torch.ones_like(x)], dim=-1)
    row1 = torch.stack([-2 * mu * x * v - 1, mu * (1 - x * x)], dim=-1)
    return torch.stack([row0, row1], dim=-2)


def test_a_batch_under_batch_axis_0_agrees_with_each_sample_solved_alone():
    mus = torch.tensor([5.0, 50.0, 500.0], dtype=F64)
    y0 = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-1.5, 0.5]], dtype=F64)
    controller = PIDController(rtol=1e-7, atol=1e-9)
    batch = tn.solve(
        ODETerm(_van_der_pol),
        tn.Kvaerno5(),
        0.0,
        2.0,
        y0,
        args=mus,
        controller=controller,
        batch_axis=0,
    )
    assert batch.ok
    for i in range(3):
        alone = tn.solve(
            ODETerm(_van_der_pol),
            tn.Kvaerno5(),
            0.0,
            2.0,
            y0[i],
            args=mus[i],
            controller=controller,
        )
        torch.testing.assert_close(batch.ys[i], alone.ys, rtol=1e-10, atol=1e-12)
        # its own iteration counts too (to a few percent: the batched linear algebra rounds
        # differently, and an iteration's stopping decision can flip on the last bits)
        for name in ("num_steps", "num_jacobians", "num_newton_iterations"):
            ours, solo = int(batch.stats[name][i]), int(alone.stats[name])
            assert abs(ours - solo) <= max(2, 0.03 * solo), (name, ours, solo)
    # the stiffer samples take more steps: each has its own step sizes
    assert int(batch.stats["num_steps"][2]) > int(batch.stats["num_steps"][0])


def test_chord_reuses_its_jacobian_newton_does_not_and_krylov_needs_none():
    y0 = torch.tensor([2.0, 0.0], dtype=F64)
    controller = PIDController(rtol=1e-6, atol=1e-8)
    results = {}
    for name, nonlinear in (
        ("chord", tn.Chord()),
        ("newton", tn.Newton()),
        ("krylov", tn.NewtonKrylov()),
    ):
        sol = tn.solve(
            ODETerm(_van_der_pol),
            tn.Kvaerno3(nonlinear=nonlinear),
            0.0,
            1.0,
            y0,
            args=100.0,
            controller=controller,
        )
        assert sol.ok, name
        results[name] = sol
    chord, newton, krylov = (results[k].stats for k in ("chord", "newton", "krylov"))
    assert int(chord["num_jacobians"]) < int(chord["num_steps"]) / 2  # reused across steps
    assert int(newton["num_jacobians"]) >= int(newton["num_newton_iterations"])  # one per iterate
    assert int(krylov["num_jacobians"]) == 0 and int(krylov["num_factorisations"]) == 0
    for name in ("newton", "krylov"):
        torch.testing.assert_close(results[name].ys, results["chord"].ys, rtol=1e-4, atol=1e-6)


def test_a_user_jacobian_is_used_and_gives_the_autograd_answer():
    y0 = torch.tensor([[2.0, 0.0], [0.5, -1.0]], dtype=F64)
    controller = PIDController(rtol=1e-8, atol=1e-10)
    calls = []

    def jac(t, y, args):
        calls.append(1)
        return _van_der_pol_jacobian(t, y, args)

    ours = tn.solve(
        ODETerm(_van_der_pol, jac=jac),
        tn.Kvaerno4(),
        0.0,
        1.0,
        y0,
        args=30.0,
        controller=controller,
        batch_axis=0,
    )
    auto = tn.solve(
        ODETerm(_van_der_pol),
        tn.Kvaerno4(),
        0.0,
        1.0,
        y0,
        args=30.0,
        controller=controller,
        batch_axis=0,
    )
    jacobians = ours.stats["num_jacobians"]  # per sample; one call serves every sample needing one
    assert int(jacobians.max()) <= len(calls) <= int(jacobians.sum())
    torch.testing.assert_close(ours.ys, auto.ys, rtol=1e-10, atol=1e-12)
    bad = ODETerm(_van_der_pol, jac=lambda t, y, args: torch.zeros(3, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"the Jacobian `<lambda>` returned \(3, 3\).*\(2, 2, 2\)"):
        tn.solve(bad, tn.Kvaerno3(), 0.0, 1.0, y0, args=1.0, controller=controller, batch_axis=0)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_tuple_and_dict_states_in_float32_and_float64(dtype):
    """x' = v, v' = -k x - c v as a tuple and as a dict: the same as the flat solve."""

    def flat(t, y, args):
        return torch.stack([y[1], -1e3 * y[0] - 50 * y[1]])

    def pair(t, y, args):
        x, v = y
        return v, -1e3 * x - 50 * v

    def named(t, y, args):
        return {"x": y["v"], "v": -1e3 * y["x"] - 50 * y["v"]}

    # float32 resolves ~1e-7: tolerances near it leave implicit error estimates to rounding
    controller = (
        PIDController(rtol=1e-4, atol=1e-6)
        if dtype == torch.float32
        else PIDController(rtol=1e-7, atol=1e-9)
    )
    one, zero = torch.ones(1, dtype=dtype), torch.zeros(1, dtype=dtype)
    ref = tn.solve(
        ODETerm(flat),
        tn.Kvaerno5(),
        0.0,
        1.0,
        torch.tensor([1.0, 0.0], dtype=dtype),
        controller=controller,
    )
    tup = tn.solve(ODETerm(pair), tn.Kvaerno5(), 0.0, 1.0, (one, zero), controller=controller)
    dic = tn.solve(
        ODETerm(named), tn.Kvaerno5(), 0.0, 1.0, {"x": one, "v": zero}, controller=controller
    )
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert ref.ys.dtype == dtype
    torch.testing.assert_close(torch.cat(tup.ys, dim=-1), ref.ys, rtol=tol, atol=tol)
    torch.testing.assert_close(
        torch.cat([dic.ys["x"], dic.ys["v"]], dim=-1), ref.ys, rtol=tol, atol=tol
    )
    exact = math.exp(-25) * (
        math.cos(math.sqrt(375)) + 25 / math.sqrt(375) * math.sin(math.sqrt(375))
    )
    assert abs(float(ref.ys[0, 0]) - exact) < (1e-3 if dtype == torch.float32 else 1e-6)


def test_dense_output_and_an_event_on_a_stiff_oscillator():
    """Van der Pol μ = 100: the first time x crosses 0 downwards, from the dense output, against
    SciPy's Radau at tight tolerance."""
    from scipy.integrate import solve_ivp

    y0 = torch.tensor([2.0, 0.0], dtype=F64)

    def cond(t, y, args):
        return y[0]

    sol = tn.solve(
        ODETerm(_van_der_pol),
        tn.Kvaerno5(),
        0.0,
        200.0,
        y0,
        args=100.0,
        controller=PIDController(rtol=1e-8, atol=1e-10),
        event=tn.Event(cond, direction=-1),
        saveat=SaveAt(dense=True),
    )
    ref = solve_ivp(
        lambda t, y: [y[1], 100 * (1 - y[0] ** 2) * y[1] - y[0]],
        (0, 200),
        [2.0, 0.0],
        method="Radau",
        rtol=1e-12,
        atol=1e-12,
        events=lambda t, y: y[0],
        dense_output=True,
    )
    t_cross = ref.t_events[0][0]
    assert sol.statuses == [Status.EVENT]
    assert abs(float(sol.event_t) - t_cross) < 1e-5 * t_cross
    mid = torch.tensor([10.0, 50.0], dtype=F64)
    torch.testing.assert_close(
        sol.evaluate(mid), torch.from_numpy(ref.sol(mid.numpy()).T), rtol=1e-5, atol=1e-6
    )


# ------------------------------------------------------------------------------------------------
# failure


def test_a_stage_equation_without_a_solution_ends_in_nonconvergence_quickly():
    """``y' = -10⁶·sign(y)``: once ``y`` nears 0 (at t = 10⁻⁶), ``z = base - γh·10⁶·sign(z)`` has no
    solution for the steps the controller tries down to ``dtmin`` — a persistent Newton failure,
    never a hang and never a value passed off as one."""
    sol = tn.solve(
        ODETerm(lambda t, y, args: -1e6 * torch.sign(y)),
        tn.Kvaerno3(),
        0.0,
        1.0,
        torch.ones(1, dtype=F64),
        controller=PIDController(rtol=1e-6, atol=1e-8, dtmin=1e-10),
        throw=False,
        max_steps=2000,
    )
    assert sol.statuses == [Status.NONCONVERGENCE]
    assert "Newton iteration did not converge" in sol.messages[0]
    assert bool(torch.isnan(sol.ys).all()) and 0.0 < float(sol.fail_t) < 1e-5
    assert int(sol.stats["num_steps"]) < 500


def test_implicit_solvers_refuse_what_they_cannot_solve():
    with pytest.raises(TypeError, match="solves ordinary differential equations"):
        path = tn.BrownianGrid(0.0, 1.0, (1,), steps=4)
        term = tn.MultiTerm(
            ODETerm(lambda t, y, a: -y), tn.ControlTerm(lambda t, y, a: y[..., None], path)
        )
        tn.solve(term, tn.Kvaerno5(), 0.0, 1.0, torch.ones(1, dtype=F64), dt0=0.25)
    with pytest.raises(TypeError, match="solves real states"):
        tn.solve(
            ODETerm(lambda t, y, a: -y),
            tn.Kvaerno5(),
            0.0,
            1.0,
            torch.ones(1, dtype=torch.complex128),
            dt0=0.25,
        )
    with pytest.raises(TypeError, match=r"nonlinear=...\)` must be `Chord\(\)`"):
        tn.Kvaerno5(nonlinear="newton")
    with pytest.raises(TypeError, match="did you mean `nonlinear`"):
        tn.Kvaerno5(non_linear=tn.Chord())
    with pytest.raises(ValueError, match=r"`Chord\(kappa=...\)` must be a positive number"):
        tn.Chord(kappa=0)


# ------------------------------------------------------------------------------------------------
# gradients


def _linear_stiff(k: torch.Tensor, c: torch.Tensor):
    """``y' = -k (y - sin t) + c y²``: stiff for large ``k``, with parameters ``k`` and ``c``."""

    def field(t, y, args):
        t = t[:, None] if t.ndim else t
        return -k * (y - torch.sin(t)) + c * y * y

    return field


@pytest.mark.parametrize("method", IMPLICIT, ids=ids(IMPLICIT))
@pytest.mark.parametrize(
    "adjoint", [tn.DirectAdjoint(), tn.CheckpointAdjoint()], ids=["direct", "checkpoint"]
)
def test_gradcheck_through_implicit_steps(method: Method, adjoint):
    ts = torch.tensor([0.4, 1.0], dtype=F64)

    def run(y0, k, c):
        sol = tn.solve(
            ODETerm(_linear_stiff(k, c)),
            method.cls(nonlinear=TIGHT),
            0.0,
            1.0,
            y0,
            dt0=0.1,
            saveat=SaveAt(ts=ts),
            adjoint=adjoint,
        )
        return sol.ys

    inputs = (
        torch.tensor([0.7, -0.2], dtype=F64, requires_grad=True),
        torch.tensor(50.0, dtype=F64, requires_grad=True),
        torch.tensor(0.3, dtype=F64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_direct_and_checkpoint_gradients_agree_under_adaptive_steps():
    k = torch.tensor(200.0, dtype=F64, requires_grad=True)
    c = torch.tensor(0.5, dtype=F64, requires_grad=True)
    y0 = torch.tensor([[1.0], [0.5]], dtype=F64, requires_grad=True)
    grads = []
    for adjoint in (tn.DirectAdjoint(), tn.CheckpointAdjoint()):
        sol = tn.solve(
            ODETerm(_linear_stiff(k, c)),
            tn.Kvaerno5(nonlinear=TIGHT),
            0.0,
            2.0,
            y0,
            controller=PIDController(rtol=1e-8, atol=1e-10),
            adjoint=adjoint,
            batch_axis=0,
        )
        grads.append(torch.autograd.grad(sol.ys.square().sum(), (y0, k, c)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


def test_direct_adjoint_memory_does_not_grow_with_the_newton_iterations():
    """The iterations run without a graph: a tolerance that needs three times the iterations
    saves the same tensors for the backward pass."""
    k = torch.tensor(10.0, dtype=F64, requires_grad=True)

    def saved_bytes(nonlinear) -> tuple[int, int]:
        total = []

        def pack(x):
            total.append(x.numel() * x.element_size())
            return x

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            sol = tn.solve(
                ODETerm(lambda t, y, args: -k * y**3),
                tn.Kvaerno3(nonlinear=nonlinear),
                0.0,
                1.0,
                torch.ones(3, dtype=F64),
                dt0=0.1,
            )
        return sum(total), int(sol.stats["num_newton_iterations"])

    loose, iters_loose = saved_bytes(tn.Chord(rtol=1e-4, atol=1e-6))
    tight, iters_tight = saved_bytes(tn.Chord(rtol=1e-13, atol=1e-15, max_iters=40))
    assert iters_tight >= 1.5 * iters_loose
    assert tight == loose


@pytest.mark.parametrize("solver", [tn.Kvaerno5(), tn.Dopri5()], ids=["Kvaerno5", "Dopri5"])
def test_backsolve_through_a_stiff_problem_interpolates_y_and_agrees_with_direct(solver):
    """Solving y' = -k (y - sin t) backwards blows up (its decaying mode grows backwards); the
    continuous adjoint takes y from the forward dense output instead (the default for implicit
    solvers, asked for explicitly with Dopri5) and solves the adjoint equation — stiff too — with
    the implicit solver and the transposed Jacobian."""
    k = torch.tensor(200.0, dtype=F64, requires_grad=True)
    c = torch.tensor(0.5, dtype=F64, requires_grad=True)
    y0 = torch.tensor([[1.0], [0.5]], dtype=F64, requires_grad=True)
    ts = torch.linspace(0, 1, 5, dtype=F64)
    pid = dict(rtol=1e-9, atol=1e-11)
    grads = []
    backsolve = tn.BacksolveAdjoint(**pid, interpolate=None if solver.uses_jacobian else True)
    for adjoint in (tn.DirectAdjoint(), backsolve):
        sol = tn.solve(
            ODETerm(_linear_stiff(k, c)),
            solver,
            0.0,
            1.0,
            y0,
            controller=PIDController(**pid),
            adjoint=adjoint,
            batch_axis=0,
            saveat=SaveAt(ts=ts),
            max_steps=50_000,
        )
        grads.append(torch.autograd.grad(sol.ys.square().sum(), (y0, k, c)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)


def test_backsolve_refuses_interpolation_for_a_cde():
    path = tn.LinearInterpolation(torch.linspace(0, 1, 5, dtype=F64), torch.randn(5, 2, dtype=F64))
    term = tn.ControlTerm(lambda t, y, a: torch.ones(2, 2, dtype=F64) * y[..., None], path)
    y0 = torch.ones(2, dtype=F64, requires_grad=True)
    with pytest.raises(
        ValueError, match=r"interpolate=True\)` takes y from the forward dense output"
    ):
        tn.solve(
            term, tn.Heun(), 0.0, 1.0, y0, dt0=0.25, adjoint=tn.BacksolveAdjoint(interpolate=True)
        )


# ------------------------------------------------------------------------------------------------
# automatic switching


def test_autoswitch_on_a_non_stiff_problem_is_its_explicit_method():
    y0 = torch.tensor([2.0, 0.0], dtype=F64)
    controller = PIDController(rtol=1e-6, atol=1e-8)
    auto = tn.solve(
        ODETerm(_van_der_pol), tn.AutoSwitch(), 0.0, 10.0, y0, args=1.0, controller=controller
    )
    tsit = tn.solve(
        ODETerm(_van_der_pol), tn.Tsit5(), 0.0, 10.0, y0, args=1.0, controller=controller
    )
    assert int(auto.stats["num_implicit_steps"]) == 0 and int(auto.stats["num_jacobians"]) == 0
    assert int(auto.stats["num_steps"]) == int(tsit.stats["num_steps"])
    torch.testing.assert_close(auto.ys, tsit.ys, rtol=1e-10, atol=1e-12)  # the same steps


def test_autoswitch_moves_each_sample_to_the_implicit_method_while_it_is_stiff_and_back():
    """``y' = -λ(t)(y - cos t) - sin t`` with ``λ = 10⁴`` before t = 1 and 1 after (per sample the
    switch time differs): stiff, then not."""

    def field(t, y, args):
        lam = torch.where(t < args, 1e4, 1.0)[:, None]
        return -lam * (y - torch.cos(t)[:, None]) - torch.sin(t)[:, None]

    y0 = torch.ones(3, 1, dtype=F64)
    until = torch.tensor([0.0, 1.0, 2.0], dtype=F64)  # sample 0 is never stiff
    sol = tn.solve(
        ODETerm(field),
        tn.AutoSwitch(),
        0.0,
        8.0,
        y0,
        args=until,
        controller=PIDController(rtol=1e-6, atol=1e-8, jump_ts=[1.0, 2.0]),
        batch_axis=0,
        saveat=SaveAt(ts=torch.tensor([8.0], dtype=F64)),
    )
    assert sol.ok
    torch.testing.assert_close(
        sol.ys[:, 0, 0], torch.cos(torch.full((3,), 8.0, dtype=F64)), rtol=1e-4, atol=1e-5
    )
    implicit = sol.stats["num_implicit_steps"]
    assert int(implicit[0]) == 0
    assert 0 < int(implicit[1]) < int(implicit[2])  # stiff twice as long: more implicit steps
    # it came back: the non-stiff tail (length 6-7) took explicit steps
    assert bool((sol.stats["num_steps"][1:] - implicit[1:] > 10).all())


def test_autoswitch_solves_a_stiff_oscillator_like_its_implicit_method():
    y0 = torch.tensor([2.0, 0.0], dtype=F64)
    controller = PIDController(rtol=1e-6, atol=1e-6)
    auto = tn.solve(
        ODETerm(_van_der_pol), tn.AutoSwitch(), 0.0, 300.0, y0, args=1000.0, controller=controller
    )
    kv = tn.solve(
        ODETerm(_van_der_pol), tn.Kvaerno5(), 0.0, 300.0, y0, args=1000.0, controller=controller
    )
    # a few explicit steps show the stiffness, then it stays implicit (Tsit5 alone: ~10^5 steps)
    assert int(auto.stats["num_implicit_steps"]) >= int(kv.stats["num_steps"]) / 2
    assert int(auto.stats["num_steps"]) <= 3 * int(kv.stats["num_steps"])
    torch.testing.assert_close(auto.ys, kv.ys, rtol=1e-4, atol=1e-6)


def test_autoswitch_checks_its_methods():
    with pytest.raises(ValueError, match="error estimates have the same order"):
        tn.AutoSwitch(explicit=tn.Bosh3(), implicit=tn.Kvaerno5())
    with pytest.raises(TypeError, match="first-same-as-last"):
        tn.AutoSwitch(explicit=tn.RK4())
    with pytest.raises(TypeError, match="diagonally implicit"):
        tn.AutoSwitch(implicit=tn.Dopri5())
