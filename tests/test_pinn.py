"""torchnde.pinn's pieces: the derivative helper against analytic derivatives and finite
differences, domains, samplers, conditions (soft losses that vanish on the right function, hard
transforms that hold exactly), problem validation, causal and adaptive weights, and the
paradigms' control flow (the curriculum guard, the time-marching hand-over) with stub runners."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from torchnde import pinn
from torchnde.pinn._loss import PhaseLoss, PhaseModule
from torchnde.training import Stage

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _domain(periodic=False):
    return pinn.Domain(
        {"x": pinn.Interval(0.0, 2.0, periodic=periodic), "t": pinn.Interval(0.0, 1.0)}, time="t"
    )


# -- derivatives ------------------------------------------------------------------------------------


def test_derivatives_match_analytic_ones_up_to_third_order():
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(50, 2, generator=generator, dtype=F64).requires_grad_(True)
    x, t = points[:, 0], points[:, 1]
    u = torch.sin(3 * x) * torch.exp(t) + x**3 * t**2
    d = pinn.Derivatives(points, ("x", "t"))
    xd, td = x.detach(), t.detach()
    expected = {
        ("x",): 3 * torch.cos(3 * xd) * torch.exp(td) + 3 * xd**2 * td**2,
        ("t",): torch.sin(3 * xd) * torch.exp(td) + 2 * xd**3 * td,
        ("x", "x"): -9 * torch.sin(3 * xd) * torch.exp(td) + 6 * xd * td**2,
        ("x", "t"): 3 * torch.cos(3 * xd) * torch.exp(td) + 6 * xd**2 * td,
        ("t", "x"): 3 * torch.cos(3 * xd) * torch.exp(td) + 6 * xd**2 * td,
        ("t", "t"): torch.sin(3 * xd) * torch.exp(td) + 2 * xd**3,
        ("x", "x", "x"): -27 * torch.cos(3 * xd) * torch.exp(td) + 6 * td**2,
    }
    for path, value in expected.items():
        torch.testing.assert_close(d(u, *path).detach(), value, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(d["x"], x)
    # cached: the same tensor object again, so chains reuse one backward pass
    assert d(u, "x") is d(u, "x")
    assert pinn.partial(u, points, 0, 0).detach().allclose(expected[("x", "x")])


def test_derivatives_of_a_network_agree_with_finite_differences_and_train():
    torch.manual_seed(0)
    net = pinn.MLP(2, 1, width=8, depth=2).double()

    def u_xx(params_scale: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        points = points.detach().requires_grad_(True)
        u = net(points * params_scale)[:, 0]
        return pinn.Derivatives(points, ("x", "t"))(u, "x", "x")

    points = torch.rand(6, 2, dtype=F64)
    h = 1e-4
    shift = torch.tensor([h, 0.0], dtype=F64)
    with torch.no_grad():
        fd = (net(points + shift) - 2 * net(points) + net(points - shift))[:, 0] / h**2
    torch.testing.assert_close(
        u_xx(torch.ones(2, dtype=F64), points).detach(), fd, atol=1e-5, rtol=1e-5
    )
    # the second derivative is itself differentiable (what training through a residual needs)
    scale = torch.ones(2, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: u_xx(s, points).sum(), (scale,))


def test_derivative_errors_name_the_problem():
    points = torch.rand(5, 2).requires_grad_(True)
    d = pinn.Derivatives(points, ("x", "t"))
    u = points.sum(dim=1)
    with pytest.raises(ValueError, match="no coordinate 'y'"):
        d(u, "y")
    with pytest.raises(ValueError, match=r"one value per point, shape \(5,\)"):
        d(u[:, None], "x")
    with pytest.raises(ValueError, match="requires_grad_"):
        pinn.Derivatives(torch.rand(5, 2), ("x", "t"))
    # a quantity that does not depend on the points has zero derivatives
    assert torch.equal(d(torch.ones(5), "x"), torch.zeros(5))


# -- domains and sampling ---------------------------------------------------------------------------


def test_domain_grid_restrict_and_sides():
    domain = _domain(periodic=True)
    axes = domain.grid({"x": 4, "t": 3}, F64)
    torch.testing.assert_close(axes["x"], torch.tensor([0.0, 0.5, 1.0, 1.5], dtype=F64))
    torch.testing.assert_close(axes["t"], torch.tensor([0.0, 0.5, 1.0], dtype=F64))
    mesh = domain.mesh(axes)
    assert mesh.shape == (12, 2) and torch.equal(mesh[1], torch.tensor([0.0, 0.5], dtype=F64))
    block = domain.restrict("t", 0.2, 0.4)
    assert block["t"].low == 0.2 and block["t"].high == 0.4 and block["x"] == domain["x"]
    with pytest.raises(ValueError, match="periodic and has no boundary; use Periodic"):
        domain.check_side("x", "low", "Dirichlet('x')")
    with pytest.raises(ValueError, match=r"no coordinate 'tt'.*did you mean 't'"):
        domain.index("tt")
    with pytest.raises(ValueError, match="low < high"):
        pinn.Interval(1.0, 0.0)
    with pytest.raises(ValueError, match="cannot be periodic"):
        pinn.Domain({"t": pinn.Interval(0, 1, periodic=True)}, time="t")


@pytest.mark.parametrize("sampler", [pinn.Uniform(), pinn.LatinHypercube(), pinn.Sobol()])
def test_random_samplers_fill_the_unit_cube_reproducibly(sampler):
    points = sampler.unit(64, [False, True], seed=3)
    assert points.shape == (64, 2) and points.dtype == F64
    assert bool((points >= 0).all() and (points <= 1).all())
    assert torch.equal(points, sampler.unit(64, [False, True], seed=3))
    assert not torch.equal(points, sampler.unit(64, [False, True], seed=4))


def test_latin_hypercube_puts_one_point_in_each_stratum():
    points = pinn.LatinHypercube().unit(40, [False, False, False], seed=0)
    for column in points.T:
        strata = (column * 40).floor().long()
        assert sorted(strata.tolist()) == list(range(40))


def test_grid_sampler_leaves_out_the_high_end_of_periodic_coordinates():
    points = pinn.Grid().unit(16, [True, False], seed=0)
    assert points.shape == (16, 2)
    assert sorted(set(points[:, 0].tolist())) == [0.0, 0.25, 0.5, 0.75]
    assert sorted(set(points[:, 1].tolist()))[-1] == 1.0
    with pytest.raises(ValueError, match=r"unknown sampler 'sobl'.*did you mean 'sobol'"):
        pinn.sampler_by_name("sobl")


def test_residual_refinement_adds_the_points_of_largest_residual():
    candidates = torch.arange(10.0).reshape(10, 1)
    residual = torch.tensor([0.1, -5.0, 0.2, 3.0, float("nan"), 0.0, 1.0, -0.5, 2.0, 0.3])
    chosen = pinn.ResidualRefinement.select(candidates, residual, 3)
    assert sorted(chosen[:, 0].tolist()) == [1.0, 3.0, 4.0]  # NaN counts as the largest
    with pytest.raises(ValueError, match="cannot exceed"):
        pinn.ResidualRefinement(candidates=5, add=6)


# -- conditions -------------------------------------------------------------------------------------


class _Function(nn.Module):
    """A 'network' that is a known function of the points (for condition losses)."""

    def __init__(self, function):
        super().__init__()
        self.function = function
        self.dummy = nn.Parameter(torch.zeros((), dtype=F64))

    def forward(self, points):
        return self.function(points[:, 0], points[:, 1])[:, None] + self.dummy


def _loss(condition, domain, model, n=16):
    return float(condition.prepare(domain, ("u",), n, 0, F64, None).loss(model).detach())


def test_soft_condition_losses_vanish_exactly_on_functions_that_meet_them():
    domain = _domain()
    model = _Function(lambda x, t: x**2 * torch.exp(-t) + 1)
    initial = pinn.InitialCondition(lambda x: x**2 + 1)
    assert _loss(initial, domain, model) == pytest.approx(0, abs=1e-24)
    assert _loss(pinn.InitialCondition(lambda x: x**2), domain, model) == pytest.approx(1)
    left = pinn.Dirichlet("x", "low", 1.0)
    assert _loss(left, domain, model) == pytest.approx(0, abs=1e-24)
    right = pinn.Dirichlet("x", "high", lambda t: 4 * torch.exp(-t) + 1)
    assert _loss(right, domain, model) == pytest.approx(0, abs=1e-24)
    # outward normal derivative: -u_x = 0 at x = 0, +u_x = 4 e^{-t} at x = 2
    neumann = pinn.Neumann("x", "both", lambda x, t: torch.where(x > 1, 4 * torch.exp(-t), 0 * x))
    assert _loss(neumann, domain, model) == pytest.approx(0, abs=1e-20)
    periodic_domain = pinn.Domain(
        {"x": pinn.Interval(0.0, 2 * math.pi, periodic=True), "t": (0.0, 1.0)}, time="t"
    )
    wave = _Function(lambda x, t: torch.sin(x - t))
    assert _loss(pinn.Periodic("x", derivatives=2), periodic_domain, wave) < 1e-24
    ramp = _Function(lambda x, t: x * t)
    assert _loss(pinn.Periodic("x"), periodic_domain, ramp) > 0.1
    points = torch.tensor([[0.5, 0.5], [1.0, 0.2]], dtype=F64)
    data = pinn.Observations(points, model(points)[:, 0].detach())
    data.check(domain, ("u",))
    assert _loss(data, domain, model) == pytest.approx(0, abs=1e-24)


def test_condition_errors_name_the_condition_and_the_fix():
    periodic = _domain(periodic=True)
    with pytest.raises(ValueError, match=r"periodic and has no boundary; use Periodic\('x'\)"):
        pinn.Dirichlet("x").check(periodic, ("u",))
    with pytest.raises(ValueError, match=r"no coordinate 'y'"):
        pinn.Neumann("y").check(periodic, ("u",))
    with pytest.raises(ValueError, match="needs a periodic coordinate"):
        pinn.Periodic("x").check(_domain(), ("u",))
    with pytest.raises(ValueError, match="no hard form"):
        pinn.Neumann("x", hard=True)
    with pytest.raises(ValueError, match="needs a time coordinate"):
        pinn.InitialCondition(0.0).check(pinn.Domain({"x": (0, 1)}), ("u",))
    domain = _domain()
    with pytest.raises(TypeError, match="asks for 'y'"):
        pinn.InitialCondition(lambda y: y).prepare(domain, ("u",), 4, 0, F64, None)
    with pytest.raises(ValueError, match=r"shape \(4, 2\) at 4 points, expected \(4,\)"):
        pinn.InitialCondition(lambda x: torch.stack([x, x], 1)).prepare(
            domain, ("u",), 4, 0, F64, None
        )
    with pytest.raises(ValueError, match="output 'v' is not one of"):
        pinn.InitialCondition(0.0, output="v").check(domain, ("u",))
    outside = pinn.Observations(torch.tensor([[3.0, 0.5]]), torch.zeros(1))
    with pytest.raises(ValueError, match="outside the domain"):
        outside.check(domain, ("u",))


def test_hard_conditions_hold_exactly_for_any_network_weights():
    domain = _domain()
    problem = pinn.PDEProblem(
        domain,
        lambda u, d, p: d(u, "t"),
        [
            pinn.InitialCondition(lambda x: torch.sin(math.pi * x) + 2, hard=True),
            pinn.Dirichlet("x", "low", lambda t: 2 + t, hard=True),
            pinn.Dirichlet("x", "high", 2.0, hard=True),
        ],
    )
    torch.manual_seed(1)
    model = pinn.PINNModel(domain, 1, hard=problem.hard_faces(), dtype=F64)
    t = torch.linspace(0.05, 1, 7, dtype=F64)
    x = torch.linspace(0.05, 1.95, 7, dtype=F64)
    with torch.no_grad():
        start = model(torch.stack([x, torch.zeros_like(x)], 1))[:, 0]
        left = model(torch.stack([torch.zeros_like(t), t], 1))[:, 0]
        right = model(torch.stack([2 * torch.ones_like(t), t], 1))[:, 0]
        inside = model(torch.stack([x, t], 1))[:, 0]
    torch.testing.assert_close(start, torch.sin(math.pi * x) + 2, atol=1e-12, rtol=0)
    torch.testing.assert_close(left, 2 + t, atol=1e-12, rtol=0)
    torch.testing.assert_close(right, torch.full_like(t, 2.0), atol=1e-12, rtol=0)
    assert (inside - 2).abs().max() > 1e-3  # the network still shapes the interior
    assert problem.soft_terms == ("residual",)


def test_hard_periodic_input_makes_the_output_and_its_derivatives_periodic():
    domain = pinn.Domain({"x": pinn.Interval(-1.0, 3.0, periodic=True), "t": (0, 1)}, time="t")
    torch.manual_seed(2)
    model = pinn.PINNModel(domain, 1, pinn.Network(harmonics=2), periodic=("x",), dtype=F64)
    t = torch.rand(9, dtype=F64)
    low = torch.stack([torch.full_like(t, -1.0), t], 1).requires_grad_(True)
    high = torch.stack([torch.full_like(t, 3.0), t], 1).requires_grad_(True)
    u_low, u_high = model(low)[:, 0], model(high)[:, 0]
    torch.testing.assert_close(u_low, u_high, atol=1e-12, rtol=0)
    d_low = pinn.partial(u_low, low, 0, 0)
    d_high = pinn.partial(u_high, high, 0, 0)
    torch.testing.assert_close(d_low, d_high, atol=1e-10, rtol=0)


# -- problems ---------------------------------------------------------------------------------------


def _run_residual(problem, n=8):
    model = pinn.PINNModel(problem.domain, len(problem.outputs), dtype=F64)
    points = problem.domain.scale(torch.rand(n, problem.domain.dim, dtype=F64))
    coefficients = pinn.Coefficients(problem.coefficients)
    return problem.evaluate_residual(model, points, coefficients)


def test_problem_validation_and_residual_shapes():
    domain = _domain()
    good = pinn.PDEProblem(domain, lambda u, d, p: (d(u, "t"), d(u, "x")), coefficients={"a": 1})
    assert _run_residual(good).shape == (8, 2)
    system = pinn.PDEProblem(domain, lambda u, d, p: u["v"] - u["w"], outputs=("v", "w"))
    assert _run_residual(system).shape == (8, 1)
    column = pinn.PDEProblem(domain, lambda u, d, p: d(u, "t")[:, None, None])
    with pytest.raises(ValueError, match=r"returned shape \(8, 1, 1\) at 8 collocation points"):
        _run_residual(column)
    scalar = pinn.PDEProblem(domain, lambda u, d, p: 1.0)
    with pytest.raises(TypeError, match="must return a tensor, got float"):
        _run_residual(scalar)
    typo = pinn.PDEProblem(domain, lambda u, d, p: p["bta"] * u, coefficients={"beta": 1.0})
    with pytest.raises(KeyError, match=r"'bta'.*did you mean 'beta'"):
        _run_residual(typo)
    with pytest.raises(ValueError, match="named 'initial'"):
        pinn.PDEProblem(domain, lambda u, d, p: u, [pinn.InitialCondition(0.0)] * 2)
    with pytest.raises(ValueError, match="both known `coefficients` and `learnable`"):
        pinn.PDEProblem(domain, lambda u, d, p: u, coefficients={"a": 1}, learnable={"a": 2})
    with pytest.raises(TypeError, match=r"`conditions\[0\]` must be a condition"):
        pinn.PDEProblem(domain, lambda u, d, p: u, ["initial"])
    with pytest.raises(ValueError, match="not a known coefficient"):
        good.with_coefficients(b=2.0)


# -- weights ----------------------------------------------------------------------------------------


def test_causal_weights_follow_the_cumulative_loss_of_earlier_slices():
    domain = _domain()
    # the residual is t itself: slice i of 4 has mean square of t over its points
    problem = pinn.PDEProblem(domain, lambda u, d, p: d["t"] + 0 * u)
    points = torch.stack(
        [torch.full((4,), 0.5, dtype=F64), torch.tensor([0.1, 0.3, 0.6, 0.9], dtype=F64)], 1
    )
    causal = pinn.CausalWeights(epsilon=2.0, bins=4)
    loss = PhaseLoss(problem, points, [], causal=causal)
    model = pinn.PINNModel(domain, 1, dtype=F64)
    value = loss.residual_term(model)
    slices = torch.tensor([0.1, 0.3, 0.6, 0.9], dtype=F64) ** 2
    weights = torch.exp(-2.0 * (torch.cumsum(slices, 0) - slices))
    torch.testing.assert_close(value, (weights * slices).mean())
    assert loss.last_causal_min == pytest.approx(float(weights.min()))


def test_conditions_of_values_share_one_network_pass_with_the_same_terms_and_gradients():
    # initial + Dirichlet + value-periodic pairs go through one pass; a Neumann side (which
    # needs a derivative) keeps its own
    domain = pinn.Domain({"x": (0.0, 2.0), "t": (0.0, 1.0)}, time="t")
    conditions = [
        pinn.InitialCondition(lambda x: torch.sin(x)),
        pinn.Dirichlet("x", "low", 0.5),
        pinn.Neumann("x", "high", 0.25),
    ]
    problem = pinn.PDEProblem(domain, lambda u, d, p: d(u, "t"), conditions)
    torch.manual_seed(0)
    model = pinn.PINNModel(domain, 1, pinn.Network(width=8, depth=2), dtype=F64)
    prepared = [c.prepare(domain, ("u",), 16, k, F64, None) for k, c in enumerate(conditions)]
    assert [p.value_points is not None for p in prepared] == [True, True, False]
    loss = PhaseLoss(problem, domain.scale(torch.rand(32, 2, dtype=F64)), prepared)
    merged = loss.evaluate(model)
    assert list(merged) == ["residual", "initial", "dirichlet_x", "neumann_x"]
    params = list(model.parameters())
    for condition in prepared:
        alone = condition.loss(model)
        torch.testing.assert_close(merged[condition.term], alone, rtol=1e-12, atol=0)
        if condition.value_points is None:
            continue  # evaluated as before, by its own loss()
        for a, b in zip(
            torch.autograd.grad(merged[condition.term], params, retain_graph=True),
            torch.autograd.grad(alone, params),
        ):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
    periodic = pinn.Periodic("x").prepare(_periodic_domain(), ("u",), 8, 0, F64, None)
    assert periodic.value_points.shape == (16, 2)
    with_derivative = pinn.Periodic("x", derivatives=1)
    assert with_derivative.prepare(_periodic_domain(), ("u",), 8, 0, F64, None).value_points is None


def _periodic_domain():
    return pinn.Domain(
        {"x": pinn.Interval(0.0, 2 * math.pi, periodic=True), "t": (0.0, 1.0)}, time="t"
    )


def test_adaptive_weights_follow_learning_rate_annealing():
    domain = _domain()
    problem = pinn.PDEProblem(domain, lambda u, d, p: d(u, "t"), [pinn.InitialCondition(1.0)])
    torch.manual_seed(0)
    model = pinn.PINNModel(domain, 1, pinn.Network(width=6, depth=1), dtype=F64)
    points = domain.scale(torch.rand(16, 2, dtype=F64))
    initial = problem.conditions[0].prepare(domain, ("u",), 8, 0, F64, None)
    adaptive = pinn.AdaptiveWeights(every=1, alpha=0.5)
    loss = PhaseLoss(problem, points, [initial], adaptive=adaptive)
    module = PhaseModule(model, [1.0, 1.0])
    params = list(model.parameters())

    def flat(grads):  # an unused parameter counts with a zero gradient
        return torch.cat(
            [
                torch.zeros_like(p).reshape(-1) if g is None else g.reshape(-1)
                for g, p in zip(grads, params)
            ]
        )

    grad_r = flat(torch.autograd.grad(loss.residual_term(model), params, allow_unused=True))
    grad_i = flat(torch.autograd.grad(initial.loss(model), params, allow_unused=True))
    expected = 0.5 + 0.5 * grad_r.abs().max() / grad_i.abs().mean()
    loss(module)
    assert float(module.weights[0]) == 1.0
    assert float(module.weights[1]) == pytest.approx(float(expected), rel=1e-10)
    # frozen while an L-BFGS stage runs
    frozen = PhaseLoss(problem, points, [initial], adaptive=adaptive, first_order=[False])
    before = module.weights.clone()
    frozen(module)
    assert torch.equal(module.weights, before)


def test_weights_name_only_existing_terms():
    with pytest.raises(ValueError, match=r"'intial'.*did you mean 'initial'"):
        pinn.train(pinn.heat(), Stage("lbfgs", steps=1), weights={"intial": 2.0})


# -- paradigms with stub runners ---------------------------------------------------------------------


@dataclass
class _StubRunner:
    """Records the phases a paradigm asks for; each phase's loss is ``losses(settings)``."""

    problem: pinn.PDEProblem
    losses: object
    tolerance_seen: list = field(default_factory=list)
    phases: list = field(default_factory=list)
    calls: list = field(default_factory=list)
    restored: list = field(default_factory=list)
    model: nn.Module | None = None
    predictor: nn.Module | None = None
    stop_reason: str = ""

    def phase(self, name, kind, settings, problem, *, tolerance=None, **kwargs):
        loss = self.losses(settings, len(self.phases))
        status = pinn.PhaseStatus.DONE
        if loss != loss:
            status = pinn.PhaseStatus.NONFINITE
        elif tolerance is not None:
            status = (
                pinn.PhaseStatus.CONVERGED if loss <= tolerance else pinn.PhaseStatus.NOT_CONVERGED
            )
        result = pinn.PhaseResult(
            len(self.phases),
            name,
            kind,
            dict(settings),
            status,
            "stub",
            1,
            loss,
            {},
            {},
            None,
            None,
            0,
            None,
            0.0,
        )
        self.calls.append((name, problem, kwargs))
        self.phases.append(result)
        return result

    def restore(self, index):
        self.restored.append(index)

    def stop(self, reason):
        self.stop_reason = reason


def test_curriculum_advances_only_past_converged_stages():
    problem = pinn.convection(beta=30.0)
    runner = _StubRunner(problem, lambda s, i: 1e-5)
    pinn.Curriculum("beta", [1, 10, 30], tolerance=1e-3).run(runner)
    assert [c[0] for c in runner.calls] == ["beta=1", "beta=10", "beta=30"]
    assert [c[1].coefficients["beta"] for c in runner.calls] == [1.0, 10.0, 30.0]
    assert runner.stop_reason == ""

    # beta = 30 never converges: one retry, then the step 10 -> 30 is halved (20 converges),
    # 30 is tried again (and its retry), then the curriculum stops there
    def losses(settings, index):
        return 1.0 if settings["beta"] == 30 else 1e-5

    runner = _StubRunner(problem, losses)
    pinn.Curriculum("beta", [1, 10, 30], tolerance=1e-3, retries=1, refine=1).run(runner)
    assert [c[0] for c in runner.calls] == [
        "beta=1",
        "beta=10",
        "beta=30",
        "beta=30 (retry 1)",
        "beta=20",
        "beta=30",
        "beta=30 (retry 1)",
    ]
    assert runner.restored == [1]  # back to beta = 10's weights before trying 20
    assert "did not advance past beta=30" in runner.stop_reason

    # a non-finite stage stops at once, without retries
    runner = _StubRunner(problem, lambda s, i: math.nan if s["beta"] == 10 else 1e-5)
    pinn.Curriculum("beta", [1, 10, 30], tolerance=1e-3, retries=3).run(runner)
    assert [c[0] for c in runner.calls] == ["beta=1", "beta=10"]
    assert runner.stop_reason.startswith("beta=10")


def test_curriculum_must_end_at_the_problem_value():
    with pytest.raises(ValueError, match="must end at the problem's beta=30"):
        pinn.Curriculum("beta", [1, 10, 20]).check(pinn.convection(beta=30.0))
    with pytest.raises(ValueError, match="not a known coefficient"):
        pinn.Curriculum("rho", [1, 30]).check(pinn.convection(beta=30.0))


class _Linear(nn.Module):
    """u = x + 10 t (a stub for the previous block's network)."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros((), dtype=F64))

    def forward(self, points):
        return (points[:, 0] + 10 * points[:, 1])[:, None] + self.p


def _marching_runner(problem):
    """A stub runner whose every phase ends with the model ``_Linear`` (u = x + 10 t)."""
    runner = _StubRunner(problem, lambda s, i: 1e-5)
    original = runner.phase

    def phase(*args, **kwargs):
        result = original(*args, **kwargs)
        runner.model = _Linear()
        return result

    runner.phase = phase
    return runner


def test_time_marching_hands_each_block_the_previous_prediction_at_its_start():
    problem = pinn.reaction(rho=5.0)
    runner = _marching_runner(problem)
    pinn.TimeMarching(blocks=4).run(runner)
    names = [c[0] for c in runner.calls]
    assert names[0].startswith("block 1/4") and names[-1].startswith("block 4/4")
    x = torch.linspace(0.0, 6.0, 5, dtype=F64)
    for k, (_, block, kwargs) in enumerate(runner.calls):
        low, high = k / 4, (k + 1) / 4
        assert block.domain["t"].low == pytest.approx(low)
        assert block.domain["t"].high == pytest.approx(high)
        assert kwargs["scaling"] == problem.domain and kwargs["sample_key"] == k
        initial = next(c for c in block.conditions if isinstance(c, pinn.InitialCondition))
        if k == 0:
            assert initial is problem.conditions[0]
        else:  # the stub's prediction at the block's first time
            torch.testing.assert_close(initial.value(x=x), x + 10 * low)
    assert isinstance(runner.predictor, pinn.PiecewiseInTime)


def test_time_marching_can_scale_each_block_over_itself_with_an_exact_hand_over():
    problem = pinn.reaction(rho=5.0, hard_initial=True)
    runner = _marching_runner(problem)
    pinn.TimeMarching(blocks=4, rescale=True).run(runner)
    x = torch.linspace(0.0, 6.0, 5, dtype=F64)
    for k, (_, block, kwargs) in enumerate(runner.calls):
        low, high = k / 4, (k + 1) / 4
        assert kwargs["scaling"] == block.domain  # the block's own box, not the whole span
        model = pinn.PINNModel(
            block.domain, 1, hard=block.hard_faces(), scaling=kwargs["scaling"], dtype=F64
        )
        points = torch.stack([x, torch.full_like(x, low)], dim=-1)
        # the network sees the block's time span as [-1, 1] ...
        features = model.features(torch.stack([x, torch.full_like(x, high)], dim=-1))
        torch.testing.assert_close(features[:, 1], torch.ones_like(x))
        torch.testing.assert_close(model.features(points)[:, 1], -torch.ones_like(x))
        # ... and, whatever its weights, starts exactly from the previous block's prediction
        expected = x + 10 * low if k else problem.conditions[0].value(x=x)
        torch.testing.assert_close(model(points)[:, 0], expected)
    with pytest.raises(TypeError, match="`rescale` must be True or False"):
        pinn.TimeMarching(blocks=2, rescale="yes")


def test_time_marching_hand_over_is_computed_once_per_point_set_and_agrees_with_recomputing():
    """Block k's hard initial value is block k-1's model at t_k, which takes its own from block
    k-2, and so on: recomputed at every evaluation, a block's loss passes through every earlier
    network. The hand-over keeps the value and each derivative autograd asks for per point set,
    so the earlier networks run a fixed number of times however many evaluations follow, and
    the residual (with u_xx), the loss and its gradient equal those of recomputing."""
    from torchnde.pinn import _paradigms

    problem = pinn.reaction_diffusion(nu=3.0, rho=5.0, hard_initial=True)
    edges = [0.0, 0.1, 0.2, 0.3]
    calls = {"first": 0}

    def chain(cache: bool) -> pinn.PINNModel:
        torch.manual_seed(0)
        model = None
        for k in range(3):
            conditions = pinn.TimeMarching._conditions(problem, model, edges[k], edges[k + 1])
            for condition in conditions:
                value = getattr(condition, "value", None)
                if isinstance(value, _paradigms._ModelAt) and not cache:
                    value.frozen = None
            block = problem.replace(
                domain=problem.domain.restrict("t", edges[k], edges[k + 1]), conditions=conditions
            )
            model = pinn.PINNModel(
                block.domain,
                1,
                pinn.Network(width=12, depth=2),
                hard=block.hard_faces(),
                scaling=block.domain,
                dtype=F64,
            )
            if k == 0:
                first = model.forward

                def counted(points, first=first):
                    calls["first"] += 1
                    return first(points)

                model.forward = counted
            if k < 2:
                model.requires_grad_(False)
        return model, block

    last = problem.domain.restrict("t", 0.2, 0.3)
    points = pinn.Points(collocation=64).collocation_points(last, dtype=F64)

    def loss_and_gradient(model, block):
        residual = block.evaluate_residual(model, points, pinn.Coefficients(block.coefficients))
        loss = residual.square().mean()
        grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
        return residual.detach(), torch.cat([g.flatten() for g in grads])

    results = {}
    for cache in (False, True):
        model, block = chain(cache)
        calls["first"] = 0
        runs = [loss_and_gradient(model, block) for _ in range(2)]
        after_two = calls["first"]
        runs += [loss_and_gradient(model, block) for _ in range(3)]
        results[cache] = (runs, after_two, calls["first"])
    (fresh, _, fresh_calls), (kept, kept_two, kept_five) = results[False], results[True]
    for (r_fresh, g_fresh), (r_kept, g_kept) in zip(fresh, kept):
        torch.testing.assert_close(r_kept, r_fresh, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(g_kept, g_fresh, rtol=1e-12, atol=1e-14)
    assert fresh_calls >= 5  # recomputed: the first network runs at every evaluation
    assert kept_five == kept_two  # kept: no more runs after the first evaluation


def test_piecewise_predictor_uses_each_block_on_its_span():
    class Constant(nn.Module):
        def __init__(self, value):
            super().__init__()
            self.value = nn.Parameter(torch.tensor(float(value)))

        def forward(self, points):
            return self.value.expand(points.shape[0], 1)

    predictor = pinn.PiecewiseInTime([Constant(1), Constant(2), Constant(3)], [0, 1, 2, 3], 1)
    t = torch.tensor([2.5, 0.0, 1.0, 1.01, 3.0, 0.5])
    points = torch.stack([torch.zeros_like(t), t], 1)
    out = predictor(points)[:, 0].tolist()
    assert out == [3.0, 1.0, 1.0, 2.0, 3.0, 1.0]  # an edge belongs to the earlier block


def test_paradigms_refuse_problems_they_do_not_fit():
    steady = pinn.PDEProblem(pinn.Domain({"x": (0, 1)}), lambda u, d, p: d(u, "x", "x"))
    with pytest.raises(ValueError, match="time marching needs a time coordinate"):
        pinn.TimeMarching(blocks=2).check(steady)
    with pytest.raises(ValueError, match="causal training needs a time coordinate"):
        pinn.Causal().check(steady)
    with pytest.raises(ValueError, match="does not divide"):
        pinn.TimeMarching(block=0.3).check(pinn.reaction())
    with pytest.raises(ValueError, match="exactly one of"):
        pinn.TimeMarching()


def test_the_hard_transform_is_smooth_where_sides_meet():
    """Near the corner (x, t) = (0, 0) of an initial and a boundary side, u_tt and u_xx stay
    of the size of the network's own (a blend by distances alone grows like 1/t there)."""
    domain = _domain()
    hard = pinn.PDEProblem(
        domain,
        lambda u, d, p: u,
        [
            pinn.InitialCondition(lambda x: torch.sin(math.pi * x / 2), hard=True),
            pinn.Dirichlet("x", "both", 0.0, hard=True),
        ],
    ).hard_faces()
    torch.manual_seed(3)
    model = pinn.PINNModel(domain, 1, hard=hard, dtype=F64)
    for eps in (1e-2, 1e-4):
        points = torch.tensor([[eps, eps], [eps, 2 * eps]], dtype=F64, requires_grad=True)
        u = model(points)[:, 0]
        d = pinn.Derivatives(points, ("x", "t"))
        assert d(u, "t", "t").abs().max() < 50 and d(u, "x", "x").abs().max() < 50


def test_normal_derivatives_on_a_hard_side_are_the_networks_own():
    """u = h(x) + (t - t0)/L N: on the side itself u_t = N / L (a |t - t0| factor would make every
    normal derivative there vanish, and a Neumann condition on that side toothless)."""
    domain = _domain()
    hard = pinn.InitialCondition(lambda x: torch.cos(x), hard=True).hard_faces(domain, ("u",))
    torch.manual_seed(4)
    model = pinn.PINNModel(domain, 1, hard=hard, dtype=F64)
    x = torch.linspace(0.1, 1.9, 5, dtype=F64)
    points = torch.stack([x, torch.zeros_like(x)], 1).requires_grad_(True)
    u_t = pinn.partial(model(points)[:, 0], points, 1)
    with torch.no_grad():
        raw = model.net(model.features(points))[:, 0]
    torch.testing.assert_close(u_t.detach(), raw / 1.0, atol=1e-12, rtol=0)
    assert u_t.abs().min() > 0


def test_time_marching_gives_each_block_only_its_observations():
    base = pinn.heat()
    points = torch.tensor([[0.5, 0.1], [0.5, 0.6], [0.2, 0.9]], dtype=F64)
    problem = base.replace(
        conditions=[*base.conditions, pinn.Observations(points, torch.zeros(3, dtype=F64))]
    )
    runner = _marching_runner(problem)
    pinn.TimeMarching(blocks=4).run(runner)
    seen = []
    for _, block, _ in runner.calls:
        data = [c for c in block.conditions if isinstance(c, pinn.Observations)]
        seen.append([row[1].item() for c in data for row in c.matrix(block.domain)])
    assert seen == [[0.1], [], [0.6], [0.9]]


def test_time_marching_retries_a_block_above_the_tolerance_then_stops():
    problem = pinn.reaction(rho=5.0)

    def losses(settings, index):  # block 2 never converges
        return 1.0 if settings["t0"] == 0.25 else 1e-5

    runner = _StubRunner(problem, losses)
    original = runner.phase

    def phase(*args, **kwargs):
        result = original(*args, **kwargs)
        runner.model = _Linear()
        return result

    runner.phase = phase
    pinn.TimeMarching(blocks=4, tolerance=1e-3, retries=2).run(runner)
    names = [c[0].split(":")[0] + (" retry" if "retry" in c[0] else "") for c in runner.calls]
    assert names == ["block 1/4", "block 2/4", "block 2/4 retry", "block 2/4 retry"]
    assert runner.stop_reason.startswith("block 2 ended not converged")
    assert runner.predictor is None
    with pytest.raises(ValueError, match="needs a `tolerance`"):
        pinn.TimeMarching(blocks=2, retries=1)
