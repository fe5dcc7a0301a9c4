"""Continuous-in-depth networks: the bases, the exact ResNet <-> Euler correspondence, and
evaluating one set of weights on other graphs (solvers, step counts)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

import torchnde as tn
from torchnde.nn import (
    ContinuousBlock,
    DepthConv2d,
    DepthLinear,
    Legendre,
    NeuralODE,
    PiecewiseConstant,
    PiecewiseLinear,
    ResNet,
    neural_ode_from_resnet,
    resnet_from_neural_ode,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp_ode(basis, width=6, hidden=10, steps=4, dtype=torch.float32) -> NeuralODE:
    block = ContinuousBlock(
        DepthLinear(width, hidden, basis), nn.Tanh(), DepthLinear(hidden, width, basis)
    ).to(dtype)
    return NeuralODE(block, tn.Euler(), basis.t0, basis.t1, steps=steps)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_neural_ode_to_resnet_is_exact(dtype):
    torch.manual_seed(0)
    model = _mlp_ode(PiecewiseConstant(5, 0.0, 2.0), steps=5, dtype=dtype)
    resnet = resnet_from_neural_ode(model)
    assert len(resnet.blocks) == 5 and resnet.step == pytest.approx(0.4)
    x = torch.randn(7, 6, dtype=dtype, requires_grad=True)
    out_ode, out_res = model(x), resnet(x)
    torch.testing.assert_close(out_res, out_ode, rtol=0, atol=4 * torch.finfo(dtype).eps)
    # and the gradients w.r.t. the input agree
    g_ode = torch.autograd.grad(out_ode.sum(), x)[0]
    g_res = torch.autograd.grad(out_res.sum(), x)[0]
    torch.testing.assert_close(g_res, g_ode, rtol=0, atol=16 * torch.finfo(dtype).eps)
    # the blocks are copies of the pieces: block k is piece k
    first = model.field.layers[0]
    assert torch.equal(resnet.blocks[3][0].weight, first.weight[3])


def test_resnet_to_neural_ode_is_exact_and_round_trips():
    torch.manual_seed(1)
    blocks = [nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4)) for _ in range(3)]
    resnet = ResNet(blocks).double()  # step 1: the usual ResNet
    model = neural_ode_from_resnet(resnet, t0=0.0)
    assert (model.t0, model.t1, model.steps) == (0.0, 3.0, 3) and isinstance(model.solver, tn.Euler)
    x = torch.randn(9, 4, dtype=torch.float64)
    torch.testing.assert_close(model(x), resnet(x), rtol=0, atol=1e-15)
    back = resnet_from_neural_ode(model)
    for a, b in zip(back.parameters(), resnet.parameters()):
        assert torch.equal(a, b)
    # the same weights, another graph: RK4 with 4 steps per block is a different network
    assert not torch.allclose(model.with_solver(tn.RK4(), steps=12)(x), resnet(x))


def test_convolutional_resnet_round_trip():
    torch.manual_seed(2)
    blocks = [
        nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 2, 3, padding=1))
        for _ in range(2)
    ]
    resnet = ResNet(blocks, step=0.5)
    model = neural_ode_from_resnet(resnet, t0=1.0)
    assert (model.t0, model.t1) == (1.0, 2.0)
    assert isinstance(model.field.layers[0], DepthConv2d)
    x = torch.randn(3, 2, 5, 5)
    torch.testing.assert_close(model(x), resnet(x), rtol=0, atol=1e-6)
    back = resnet_from_neural_ode(model)
    torch.testing.assert_close(back(x), resnet(x), rtol=0, atol=1e-6)


def test_pieces_are_found_on_the_solvers_own_stage_times():
    """Stage times t0 + i*dt that round just below a boundary still select piece i."""
    basis = PiecewiseConstant(7, 0.1, 0.8)
    dt = (0.8 - 0.1) / 7
    for i, dtype in itertools.product(range(7), (torch.float32, torch.float64)):
        t = torch.tensor(0.1, dtype=dtype) + i * torch.tensor(dt, dtype=dtype)
        assert int(basis.index(t)) == i
        mid = torch.tensor(0.1 + (i + 0.5) * dt, dtype=dtype)
        assert int(basis.index(mid)) == i
    assert int(basis.index(torch.tensor(0.8))) == 6 and int(basis.index(torch.tensor(5.0))) == 6


@pytest.mark.parametrize(
    "basis", [PiecewiseConstant(4, 0.0, 2.0), PiecewiseLinear(5, 0.0, 2.0), Legendre(3, 0.0, 2.0)]
)
def test_combine_is_the_basis_expansion(basis):
    torch.manual_seed(3)
    stack = torch.randn(basis.size, 3, 2, dtype=torch.float64)
    for s in torch.linspace(0, 2, 13, dtype=torch.float64):
        c = basis.coefficients(s)
        torch.testing.assert_close(basis.combine(stack, s), torch.tensordot(c, stack, dims=1))
        if not isinstance(basis, Legendre):  # a partition of unity
            assert float(c.sum()) == pytest.approx(1.0) and bool((c >= 0).all())


def test_piecewise_linear_interpolates_its_nodes_continuously():
    basis = PiecewiseLinear(4, 0.0, 3.0)  # nodes at t = 0, 1, 2, 3
    for k in range(4):
        c = basis.coefficients(torch.tensor(float(k), dtype=torch.float64))
        assert torch.equal(c, torch.eye(4, dtype=torch.float64)[k])
    c = basis.coefficients(torch.tensor(1.25, dtype=torch.float64))
    torch.testing.assert_close(c, torch.tensor([0, 0.75, 0.25, 0], dtype=torch.float64))


def test_legendre_polynomials_are_orthogonal():
    basis = Legendre(4, 0.0, 1.0)
    # Gauss-Legendre quadrature, exact for the degree-8 products
    nodes, weights = _gauss_legendre(6)
    values = torch.stack([basis.coefficients((x + 1) / 2) for x in nodes])
    gram = values.T @ (values * weights[:, None]) / 2  # ∫_0^1 P_m(2s-1) P_n(2s-1) ds
    expected = torch.diag(torch.tensor([1 / (2 * n + 1) for n in range(5)], dtype=torch.float64))
    torch.testing.assert_close(gram, expected, rtol=1e-12, atol=1e-12)


def _gauss_legendre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights by Golub-Welsch."""
    k = torch.arange(1, n, dtype=torch.float64)
    beta = k / torch.sqrt(4 * k**2 - 1)
    jacobi = torch.diag(beta, 1) + torch.diag(beta, -1)
    nodes, vectors = torch.linalg.eigh(jacobi)
    return nodes, 2 * vectors[0] ** 2


@pytest.mark.parametrize("basis", [PiecewiseLinear(3, 0.0, 1.0), Legendre(2, 0.0, 1.0)])
def test_smooth_bases_converge_at_the_solvers_order(basis):
    """Weights that vary smoothly (piecewise smoothly, with steps on the nodes) with depth make
    a smooth field: RK4 converges at order 4 to the same limit from every step count."""
    torch.manual_seed(4)
    model = _mlp_ode(basis, dtype=torch.float64)
    x = torch.randn(5, 6, dtype=torch.float64)
    with torch.no_grad():
        reference = model.with_solver(tn.RK4(), steps=512)(x)
        errors = [
            float((model.with_solver(tn.RK4(), steps=n)(x) - reference).abs().max())
            for n in (8, 16, 32)
        ]
    orders = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
    assert all(3.6 < p < 4.5 for p in orders), (errors, orders)


def test_trained_weights_can_be_read_on_another_basis_graph():
    """Piecewise constant: Euler with 4 steps per piece converges (order 1) to the RK4 limit."""
    torch.manual_seed(5)
    model = _mlp_ode(PiecewiseConstant(3, 0.0, 1.5), steps=3, dtype=torch.float64)
    x = torch.randn(4, 6, dtype=torch.float64)
    with torch.no_grad():
        limit = model.with_solver(tn.RK4(), steps=300)(x)
        errors = [
            float((model.with_solver(tn.Euler(), steps=3 * m)(x) - limit).abs().max())
            for m in (8, 16, 32)
        ]
    orders = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
    assert all(0.85 < p < 1.15 for p in orders), orders


def test_conversion_refusals():
    basis = Legendre(2, 0.0, 1.0)
    with pytest.raises(
        ValueError, match="only when its field is a ContinuousBlock on a PiecewiseConstant basis"
    ):
        resnet_from_neural_ode(_mlp_ode(basis))
    span = _mlp_ode(PiecewiseConstant(4, 0.0, 2.0))
    span = NeuralODE(span.field, tn.Euler(), 0.0, 1.0, steps=4)
    with pytest.raises(ValueError, match=r"basis spans \[0.0, 2.0\] but the model integrates"):
        resnet_from_neural_ode(span)
    mixed = ResNet(
        [nn.Sequential(nn.Linear(2, 2), nn.Tanh()), nn.Sequential(nn.Linear(2, 2), nn.ReLU())]
    )
    with pytest.raises(ValueError, match="block 1 has layers"):
        neural_ode_from_resnet(mixed)
    normed = ResNet([nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))])
    with pytest.raises(ValueError, match=r"layer 1 \(LayerNorm\) holds parameters"):
        neural_ode_from_resnet(normed)
    with pytest.raises(TypeError, match="`basis` must be a basis"):
        DepthLinear(2, 2, basis=4)
    with pytest.raises(ValueError, match="`pieces` must be an int >= 1"):
        PiecewiseConstant(0)
    with pytest.raises(ValueError, match="t0 < t1"):
        Legendre(2, 1.0, 0.0)
    with pytest.raises(ValueError, match="share one basis"):
        ContinuousBlock(DepthLinear(2, 2, Legendre(1)), DepthLinear(2, 2, Legendre(2)))


def test_depth_varying_layers_need_one_time_for_the_batch():
    model = _mlp_ode(Legendre(1, 0.0, 1.0))
    batched = NeuralODE(model.field, tn.Euler(), 0.0, 1.0, steps=2, batch_axis=0)
    with pytest.raises(ValueError, match="one time for the whole batch"):
        batched(torch.randn(3, 6))
