"""Augmented and second-order neural ODEs: padding and readout, the 1-D flow that cannot swap
two points (any ODE flow preserves their order) while one extra dimension lets it, a second-order
system against the harmonic oscillator's exact solution and gradient, and the errors."""

from __future__ import annotations

import math

import pytest
import torch

import torchnde as tn
from torchnde.nn._augmented import AugmentedNeuralODE, SecondOrderNeuralODE
from torchnde.nn._neural_ode import NeuralODE

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


class MLP(torch.nn.Module):
    def __init__(self, dim: int, hidden: int = 32, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, dim)
        )

    def forward(self, t, y, args=None):
        return self.net(y)


def fit(model, x, y, iterations: int, lr: float = 0.03) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(iterations):
        loss = (model(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (model(x) - y).pow(2).mean().item()


def test_pad_and_readout():
    anode = AugmentedNeuralODE(MLP(3), tn.RK4(), augment=2, steps=2)
    x = torch.randn(4, 1)
    padded = anode.pad(x)
    assert padded.shape == (4, 3) and (padded[:, 1:] == 0).all() and (padded[:, 0] == x[:, 0]).all()
    assert anode(x).shape == (4, 1)
    images = AugmentedNeuralODE(MLP(5), tn.Euler(), augment=2, axis=1, steps=1)
    assert images.pad(torch.ones(2, 3, 4, 4)).shape == (2, 5, 4, 4)
    full = AugmentedNeuralODE(MLP(3), tn.RK4(), augment=2, steps=2, readout=torch.nn.Identity())
    assert full(x).shape == (4, 3)
    # zero augmentation is a plain neural ODE on the same field
    field = MLP(2)
    plain = NeuralODE(field, tn.RK4(), steps=4)
    same = AugmentedNeuralODE(field, tn.RK4(), augment=0, steps=4)
    x2 = torch.randn(3, 2)
    torch.testing.assert_close(same(x2), plain(x2))


def test_a_one_dimensional_flow_cannot_swap_two_points_but_an_augmented_one_can():
    """``g(-1) = 1, g(1) = -1``: a 1-D ODE flow keeps ``h(-1) < h(1)``, so its mean squared error
    is at least 1; with one extra dimension the points pass each other (Dupont et al. 2019)."""
    x = torch.tensor([[-1.0], [1.0]])
    y = -x
    controller = tn.PIDController(rtol=1e-4, atol=1e-6)
    node = AugmentedNeuralODE(MLP(1), tn.Dopri5(), augment=0, controller=controller)
    mse_node = fit(node, x, y, 25)
    with torch.no_grad():
        h = node(x)
    assert h[0, 0] < h[1, 0]  # order preserved
    assert mse_node >= 1.0 - 1e-4
    anode = AugmentedNeuralODE(MLP(2, seed=1), tn.RK4(), augment=1, steps=8)
    mse_anode = fit(anode, x, y, 150)
    assert mse_anode < 1e-2, mse_anode
    with torch.no_grad():
        out = anode(x)
    assert out[0, 0] > out[1, 0]  # swapped


def test_second_order_harmonic_oscillator_and_its_gradient():
    """``x'' = -ω²x``: ``x(t) = x0 cos ωt + v0/ω sin ωt``; the gradient in ω by backsolve and by
    backpropagation equals the derivative of the exact solution."""
    for adjoint in (tn.DirectAdjoint(), tn.BacksolveAdjoint(rtol=1e-11, atol=1e-11)):
        omega = torch.tensor(1.7, dtype=F64, requires_grad=True)
        model = SecondOrderNeuralODE(
            lambda t, x, v, w: -(w**2) * x,
            tn.Dopri5(),
            0.0,
            2.0,
            controller=tn.PIDController(rtol=1e-11, atol=1e-11),
            adjoint=adjoint,
        )
        x0 = torch.tensor([[1.0, -0.5]], dtype=F64)
        v0 = torch.tensor([[0.3, 0.2]], dtype=F64)
        x, v = model(x0, v0, omega)
        w = omega.detach().requires_grad_(True)
        exact = x0 * torch.cos(2 * w) + v0 / w * torch.sin(2 * w)
        torch.testing.assert_close(x, exact.detach(), rtol=0, atol=1e-9)
        torch.testing.assert_close(
            v, -x0 * w.detach() * math.sin(2 * 1.7) + v0 * math.cos(2 * 1.7), rtol=0, atol=1e-9
        )
        x.sum().backward()
        (want,) = torch.autograd.grad(exact.sum(), w)
        torch.testing.assert_close(omega.grad, want, rtol=1e-7, atol=0)


def test_second_order_initial_velocity_module_and_saveat():
    head = torch.nn.Linear(2, 2)
    model = SecondOrderNeuralODE(
        lambda t, x, v, args: -x,
        tn.RK4(),
        0.0,
        1.0,
        steps=20,
        initial_velocity=head,
        saveat=tn.SaveAt(ts=torch.linspace(0, 1, 5)),
    )
    x0 = torch.randn(3, 2)
    xs, vs = model(x0)
    assert xs.shape == (5, 3, 2)
    torch.testing.assert_close(vs[0], head(x0))
    xs.sum().backward()
    assert head.weight.grad.abs().sum() > 0


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="augment"):
        AugmentedNeuralODE(MLP(2), tn.RK4(), augment=-1, steps=2)
    with pytest.raises(ValueError, match="axis=3"):
        AugmentedNeuralODE(MLP(2), tn.RK4(), augment=1, axis=3, steps=2)(torch.ones(2, 1))
    with pytest.raises(TypeError, match="acceleration"):
        SecondOrderNeuralODE(3, tn.RK4(), steps=2)
    model = SecondOrderNeuralODE(lambda t, x, v, args: x[:, :1], tn.RK4(), steps=2)
    with pytest.raises(ValueError, match="shaped like x"):
        model(torch.ones(2, 2))
    with pytest.raises(ValueError, match="initial velocity"):
        SecondOrderNeuralODE(lambda t, x, v, args: -x, tn.RK4(), steps=2)(
            torch.ones(2, 2), torch.ones(2, 3)
        )
