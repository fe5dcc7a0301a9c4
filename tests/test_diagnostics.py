"""Diagnostics: the convergence test tells a discrete map from a continuous model (on fields
built by hand, so the answer is known); the stencil <-> PDE map is exact; the adjoint check
finds a·f conserved and the adjoint equal to backpropagation."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from torch import nn

import torchnde as tn
from torchnde.diagnostics import (
    adjoint_check,
    convergence_test,
    pde_to_stencil,
    stencil_step,
    stencil_to_pde,
)
from torchnde.nn import MLPField, NeuralODE

pytestmark = pytest.mark.usefixtures("one_thread")

H = 0.5  # the "training" step
A = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)  # the harmonic oscillator


class Linear(nn.Module):
    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        self.matrix = nn.Parameter(matrix.clone())

    def forward(self, t, y, args=None):
        return y @ self.matrix.T


def _data(n=64):
    y0 = torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return y0, y0 @ torch.linalg.matrix_exp(H * A).T


def test_an_euler_fitted_map_is_discrete_and_the_true_field_continuous():
    """Euler with one step fits the data exactly with B = (exp(hA) - I)/h: a perfect discrete
    model whose ODE, dy/dt = B y, is not the oscillator. Refining exposes it."""
    y0, y1 = _data()
    b = (torch.linalg.matrix_exp(H * A) - torch.eye(2, dtype=torch.float64)) / H
    discrete = NeuralODE(Linear(b), tn.Euler(), 0.0, H, steps=1)
    result = convergence_test(discrete, y0, y1, atol=1e-6)
    assert result.trained == "Euler, 1 step" and result.trained_error < 1e-14
    assert result.verdict == "discrete" and result.limit_error > 0.05
    hs, errors = result.curve("Euler")
    assert hs == [H / n for n in (1, 2, 4, 8, 16, 32, 64)]
    assert all(b_ > a_ for a_, b_ in itertools.pairwise(errors))  # refining makes it worse
    continuous = NeuralODE(Linear(A), tn.RK4(), 0.0, H, steps=1)
    result = convergence_test(continuous, y0, y1, atol=1e-6)
    assert result.verdict == "continuous" and result.limit_error < 1e-10
    assert result.curve("Euler")[1][0] > result.curve("Euler")[1][-1]  # falls with h
    # the outputs converge at each solver's order whatever the field learned
    for res in (result, convergence_test(discrete, y0, y1)):
        assert res.orders["Euler"] == pytest.approx(1, abs=0.1)
        assert res.orders["Midpoint"] == pytest.approx(2, abs=0.1)
        assert res.orders["RK4"] == pytest.approx(4, abs=0.3)
    assert discrete.steps == 1 and isinstance(discrete.solver, tn.Euler)  # restored


def test_classifier_report_plot_and_json():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 8), NeuralODE(MLPField(8, 16), tn.Euler(), 0.0, 2.0, steps=2), nn.Linear(8, 3)
    )
    x = torch.randn(30, 4)
    labels = model(x).argmax(1)  # the model is right on its own labels, as trained
    result = convergence_test(model, x, labels, solvers=(tn.Euler(), tn.RK4()), steps=(2, 4, 8))
    assert result.metric == "error rate" and result.trained_error == 0.0
    assert result.solvers == ["Euler", "RK4"] and len(result.points) == 6
    assert all(p.nfe > 0 for p in result.points)
    table = result.table()
    assert "| solver | steps | h | error rate |" in table and f"**{result.verdict}**" in table
    json.dumps(result.to_dict(), allow_nan=True)
    fig = result.plot()
    assert len(fig.axes) == 2
    import matplotlib.pyplot as plt

    plt.close(fig)
    bare = convergence_test(model, x, steps=(2, 4))
    assert bare.verdict is None and math.isnan(bare.points[0].error)


def test_convergence_test_refusals():
    ode = NeuralODE(MLPField(2), tn.Euler(), 0.0, 1.0, steps=1)
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match=r"holds no torchnde\.nn\.NeuralODE"):
        convergence_test(nn.Linear(2, 2), x, x)
    with pytest.raises(ValueError, match="strictly increasing"):
        convergence_test(ode, x, x, steps=(4, 2))
    with pytest.raises(ValueError, match="at least two ints"):
        convergence_test(ode, x, x, steps=(4,))
    with pytest.raises(TypeError, match="note the parentheses"):
        convergence_test(ode, x, x, solvers=(tn.RK4,))
    with pytest.raises(ValueError, match="`tolerance` must be"):
        convergence_test(ode, x, x, tolerance=-1)


def test_stencil_and_pde_coefficients_map_exactly_both_ways():
    """Exact to rounding: 1e-12 relative to the size of what is mapped (β₁ = w₋ + w₀ + w₊
    cancels terms of size β₃/h², so a small h costs digits of β₁ and nothing else)."""
    gen = torch.Generator().manual_seed(1)
    kernel = torch.randn(50, 3, dtype=torch.float64, generator=gen)
    h = torch.rand(50, dtype=torch.float64, generator=gen) + 0.01
    back = pde_to_stencil(stencil_to_pde(kernel, h), h)
    scale = kernel.abs().amax(dim=1, keepdim=True)
    assert float(((back - kernel).abs() / scale).max()) < 1e-12
    beta = torch.randn(50, 3, dtype=torch.float64, generator=gen)
    h = torch.rand(50, dtype=torch.float64, generator=gen) + 0.5
    torch.testing.assert_close(
        stencil_to_pde(pde_to_stencil(beta, h), h), beta, rtol=1e-12, atol=1e-12
    )
    # the textbook stencils
    assert pde_to_stencil([0.0, 0.0, 1.0], 0.5).tolist() == [4.0, -8.0, 4.0]  # u_xx / h^2
    assert pde_to_stencil([0.0, 1.0, 0.0], 0.5).tolist() == [-1.0, 0.0, 1.0]  # u_x / 2h
    assert stencil_to_pde([0.0, 1.0, 0.0], 0.1).tolist() == [1.0, 0.0, 0.0]  # identity


def test_the_stencil_is_the_operator_to_second_order():
    beta = torch.tensor([0.3, -1.2, 0.05], dtype=torch.float64)
    errors = []
    for n in (32, 64, 128):
        x = torch.arange(n, dtype=torch.float64) / n
        u = torch.sin(2 * math.pi * x) + 0.5 * torch.cos(4 * math.pi * x)
        ux = 2 * math.pi * torch.cos(2 * math.pi * x) - 2 * math.pi * torch.sin(4 * math.pi * x)
        uxx = -((2 * math.pi) ** 2) * torch.sin(2 * math.pi * x) - 0.5 * (
            4 * math.pi
        ) ** 2 * torch.cos(4 * math.pi * x)
        exact = beta[0] * u + beta[1] * ux + beta[2] * uxx
        dt = 1e-3
        rate = (stencil_step(u, pde_to_stencil(beta, 1 / n), dt) - u) / dt
        errors.append(float((rate - exact).abs().max()))
    orders = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
    assert all(abs(p - 2) < 0.1 for p in orders), orders
    # and the step is conv1d with circular padding
    kernel = torch.tensor([0.2, -0.5, 0.4], dtype=torch.float64)
    u = torch.randn(3, 16, dtype=torch.float64)
    padded = torch.nn.functional.pad(u.unsqueeze(1), (1, 1), mode="circular")
    conv = torch.nn.functional.conv1d(padded, kernel.reshape(1, 1, 3)).squeeze(1)
    torch.testing.assert_close(stencil_step(u, kernel, 0.1), u + 0.1 * conv)


def test_stencil_refusals():
    with pytest.raises(ValueError, match="`h` must be"):
        stencil_to_pde([1.0, 2.0, 3.0], 0.0)
    with pytest.raises(ValueError, match="`beta` must have 3 entries"):
        pde_to_stencil([1.0, 2.0], 0.1)


def test_adjoint_check_on_a_linear_field_matches_the_closed_form():
    """dy/dt = M y with L = ½|y1|²: a(t) = exp((t1-t)Mᵀ) y1 and a·f = a·M y conserved."""
    m = torch.tensor([[-0.2, 1.0], [-1.5, -0.1]], dtype=torch.float64)
    y0 = torch.tensor([[1.0, -0.5], [0.3, 0.2]], dtype=torch.float64)
    check = adjoint_check(Linear(m), y0, 0.0, 1.5, rtol=1e-9, atol=1e-9, saves=11)
    assert check.passed(gradient_tol=1e-6, invariant_tol=1e-6)
    assert check.errors["backsolve"] < 1e-7 and check.errors["augmented"] < 1e-7
    assert check.ts[0] == 1.5 and check.ts[-1] == 0.0 and len(check.invariant) == 11
    y1 = y0 @ torch.linalg.matrix_exp(1.5 * m).T
    expected = float((y1 * (y1 @ m.T)).sum())  # a(t1)·f(y1) with a(t1) = y1
    assert check.invariant[0] == pytest.approx(expected, rel=1e-8)
    assert "The check passed." in check.report()
    # a sloppy backward solve does not pass: the check can fail
    loose = adjoint_check(Linear(m), y0, 0.0, 1.5, rtol=1e-3, atol=1e-3, saves=11)
    assert not loose.passed(gradient_tol=1e-8, invariant_tol=1e-8)


def test_adjoint_check_refusals():
    class Driven(nn.Module):
        def forward(self, t, y, args=None):
            return -y + t

    y0 = torch.ones(1, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="depends on t"):
        adjoint_check(Driven(), y0)
    with pytest.raises(ValueError, match=r"below what torch\.float32 can resolve"):
        adjoint_check(Linear(A).float(), y0.float())
