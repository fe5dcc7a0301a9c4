"""NeuralODE: the layer is exactly a call of `solve`; its discretisation can be swapped after
training without copying the weights; gradients flow under every adjoint."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

import torchnde as tn
from torchnde.nn import MLPField, NeuralODE, discretised, neural_odes

pytestmark = pytest.mark.usefixtures("one_thread")


class LinearField(nn.Module):
    """dy/dt = A y, with the known solution y(t) = exp(tA) y0."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.a = nn.Parameter(a.clone())

    def forward(self, t, y, args=None):
        return y @ self.a.T


def _rotation(dtype=torch.float64) -> torch.Tensor:
    return torch.tensor([[-0.1, 1.0], [-1.0, -0.1]], dtype=dtype)


@pytest.mark.parametrize(
    ("solver", "options"),
    [
        (tn.RK4(), {"steps": 7}),
        (tn.Dopri5(), {"controller": tn.PIDController(rtol=1e-6, atol=1e-8)}),
    ],
)
def test_the_layer_is_one_solve(solver, options):
    torch.manual_seed(0)
    field = MLPField(3, hidden=16).double()
    y0 = torch.randn(8, 3, dtype=torch.float64)
    layer = NeuralODE(field, solver, 0.0, 1.5, **options)
    dt0 = 1.5 / options["steps"] if "steps" in options else None
    direct = tn.solve(
        tn.ODETerm(field),
        solver,
        0.0,
        1.5,
        y0,
        dt0=dt0,
        controller=options.get("controller", tn.ConstantStepSize()),
    ).ys[-1]
    out = layer(y0)
    assert out.shape == y0.shape and torch.equal(out, direct)
    assert int(layer.last_stats["num_steps"]) == options.get("steps", layer.last_stats["num_steps"])
    grads = torch.autograd.grad(out.square().sum(), list(field.parameters()))
    expected = torch.autograd.grad(direct.square().sum(), list(field.parameters()))
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


def test_known_solution_and_fourth_order_convergence():
    a = _rotation()
    y0 = torch.tensor([[1.0, 0.5], [-0.3, 0.8]], dtype=torch.float64)
    exact = y0 @ torch.linalg.matrix_exp(2.0 * a).T
    layer = NeuralODE(LinearField(a), tn.RK4(), 0.0, 2.0, steps=4)
    errors = []
    for steps in (4, 8, 16, 32):
        out = layer.with_solver(tn.RK4(), steps=steps)(y0)
        errors.append(float((out - exact).abs().max().detach()))
    orders = [math.log2(e0 / e1) for e0, e1 in itertools.pairwise(errors)]
    assert all(abs(p - 4) < 0.3 for p in orders), orders
    adaptive = layer.with_solver(tn.Dopri5(), controller=tn.PIDController(rtol=1e-10, atol=1e-12))
    torch.testing.assert_close(adaptive(y0), exact, rtol=1e-8, atol=1e-9)


def test_with_solver_shares_the_weights_and_counts_steps():
    torch.manual_seed(1)
    model = NeuralODE(MLPField(2, hidden=8), tn.Euler(), 0.0, 1.0, steps=4)
    fine = model.with_solver(tn.Midpoint(), steps=16)
    assert fine.field is model.field and fine.steps == 16 and model.steps == 4
    assert next(iter(fine.parameters())) is next(iter(model.parameters()))
    x = torch.randn(5, 2)
    fine(x)
    model(x)
    assert int(fine.last_stats["num_steps"]) == 16 and int(model.last_stats["num_steps"]) == 4
    assert "Midpoint, 16 steps" in repr(fine) and "Euler, 4 steps" in repr(model)
    # training the original moves the twin: one set of parameters
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert torch.equal(next(fine.parameters()), next(model.parameters()))


def test_backwards_span_saveat_and_batch_axis():
    a = _rotation()
    y1 = torch.tensor([[0.2, 0.9]], dtype=torch.float64)
    back = NeuralODE(LinearField(a), tn.RK4(), 1.0, 0.0, dt0=0.01)
    torch.testing.assert_close(back(y1), y1 @ torch.linalg.matrix_exp(-a).T, rtol=1e-9, atol=1e-10)
    ts = torch.linspace(0, 1, 5, dtype=torch.float64)
    path = NeuralODE(LinearField(a), tn.RK4(), 0.0, 1.0, steps=20, saveat=tn.SaveAt(ts=ts))
    ys = path(y1)
    assert ys.shape == (5, 1, 2)
    torch.testing.assert_close(ys[0], y1)
    batched = NeuralODE(
        LinearField(a),
        tn.Dopri5(),
        0.0,
        1.0,
        controller=tn.PIDController(rtol=1e-8, atol=1e-10),
        batch_axis=0,
    )
    y0 = torch.tensor([[1.0, 0.0], [100.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(batched(y0), y0 @ torch.linalg.matrix_exp(a).T, rtol=1e-7, atol=0)
    assert batched.last_stats["num_steps"].shape == (2,)


@pytest.mark.parametrize(
    "adjoint",
    [tn.DirectAdjoint(), tn.CheckpointAdjoint(), tn.BacksolveAdjoint(rtol=1e-9, atol=1e-11)],
)
def test_gradients_under_every_adjoint_match_the_analytic_ones(adjoint):
    """d/dA of sum(exp(A) y0) against the derivative of the matrix exponential."""
    a = _rotation()
    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    field = LinearField(a)
    layer = NeuralODE(
        field, tn.Dopri5(), 0.0, 1.0, controller=tn.PIDController(rtol=1e-10, atol=1e-12)
    )
    layer.adjoint = adjoint
    layer(y0).sum().backward()
    a_ = a.clone().requires_grad_()
    (y0 @ torch.linalg.matrix_exp(a_).T).sum().backward()
    torch.testing.assert_close(field.a.grad, a_.grad, rtol=1e-7, atol=1e-8)


def test_gradcheck_through_the_layer():
    torch.manual_seed(2)
    layer = NeuralODE(MLPField(2, hidden=4).double(), tn.Midpoint(), 0.0, 1.0, steps=3)
    y0 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (y0,))


def test_discretised_swaps_every_neural_ode_and_restores():
    torch.manual_seed(3)
    ode = NeuralODE(MLPField(4, hidden=8), tn.Euler(), 0.0, 1.0, steps=2)
    model = nn.Sequential(nn.Linear(3, 4), ode, nn.Linear(4, 2))
    x = torch.randn(6, 3)
    before = model(x)
    assert neural_odes(model) == [ode]
    with discretised(model, tn.RK4(), steps=8):
        assert ode.steps == 8 and isinstance(ode.solver, tn.RK4)
        refined = model(x)
        assert int(ode.last_stats["num_steps"]) == 8
    assert ode.steps == 2 and isinstance(ode.solver, tn.Euler)
    assert torch.equal(model(x), before) and not torch.equal(refined, before)
    with pytest.raises(RuntimeError), discretised(model, tn.RK4(), steps=8):
        raise RuntimeError("inside")
    assert ode.steps == 2  # restored after an error too
    with (
        pytest.raises(ValueError, match="holds no NeuralODE"),
        discretised(nn.Linear(2, 2), tn.RK4(), steps=2),
    ):
        pass


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"solver": tn.RK4}, TypeError, r"note the parentheses"),
        ({"steps": 0}, ValueError, r"`steps` must be an int >= 1, got 0"),
        ({"steps": None}, ValueError, r"needs `steps=N`"),
        ({"steps": 4, "dt0": 0.1}, ValueError, r"give `steps` or `dt0`, not both"),
        (
            {"solver": tn.Dopri5(), "controller": tn.PIDController(rtol=1e-3, atol=1e-6)},
            ValueError,
            r"`steps=4` asks for equal steps",
        ),
        ({"t1": 0.0}, ValueError, r"`t0` and `t1` are both 0.0"),
        ({"t1": "1"}, TypeError, r"`t1` must be a number"),
        ({"adjoint": "backsolve"}, TypeError, r"`adjoint` must be a torchnde adjoint"),
        ({"field": 3}, TypeError, r"`field` must be an nn.Module"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, match):
    arguments = {"field": MLPField(2), "solver": tn.Euler(), "t0": 0.0, "t1": 1.0, "steps": 4}
    arguments.update(kwargs)
    field, solver = arguments.pop("field"), arguments.pop("solver")
    with pytest.raises(error, match=match):
        NeuralODE(field, solver, **arguments)
