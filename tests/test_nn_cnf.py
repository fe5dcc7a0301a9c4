"""Continuous normalising flows: the log-density of a linear flow in closed form under every
adjoint, Hutchinson's estimator unbiased around the exact trace, the change of variables checked
by quadrature and by sampling, gradients against finite differences, and the errors."""

from __future__ import annotations

import math

import pytest
import torch

import torchnde as tn
from torchnde.nn._cnf import CNF
from torchnde.nn._jacobian import ExactTrace, HutchinsonTrace

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
A = torch.tensor([[0.3, -1.0], [0.5, -0.2]], dtype=F64)
ADJOINTS = {
    "direct": tn.DirectAdjoint(),
    "checkpoint": tn.CheckpointAdjoint(),
    "backsolve": tn.BacksolveAdjoint(rtol=1e-11, atol=1e-11),
}


class Linear(torch.nn.Module):
    """``f(z) = A z``: ``x = e^A z0`` is Gaussian with covariance ``e^A e^{Aᵀ}``."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.a = torch.nn.Parameter(a.clone())

    def forward(self, t, z, args=None):
        return z @ self.a.T


class MLP(torch.nn.Module):
    """A small time-dependent field with smooth activations."""

    def __init__(self, dim: int = 2, hidden: int = 16, dtype=F64, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim + 1, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, dim)
        ).to(dtype)

    def forward(self, t, z, args=None):
        return self.net(torch.cat([z, t.expand(z.shape[0], 1)], dim=1))


def gaussian_log_prob(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    m = torch.linalg.matrix_exp(a)
    cov = m @ m.T
    dist = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=x.dtype), cov)
    return dist.log_prob(x)


@pytest.mark.parametrize("adjoint", list(ADJOINTS))
def test_linear_flow_log_density_and_gradient_match_the_gaussian(adjoint):
    x = torch.randn(7, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    field = Linear(A)
    cnf = CNF(field, controller=tn.PIDController(rtol=1e-11, atol=1e-11), adjoint=ADJOINTS[adjoint])
    lp = cnf.log_prob(x)
    a = A.clone().requires_grad_(True)
    ref = gaussian_log_prob(x, a)
    torch.testing.assert_close(lp, ref.detach(), rtol=0, atol=1e-9)
    lp.sum().backward()
    (grad,) = torch.autograd.grad(ref.sum(), a)
    torch.testing.assert_close(field.a.grad, grad, rtol=1e-7, atol=1e-8)


def test_sampling_gives_the_same_density_as_the_reverse_solve():
    """Forwards from the base (``log p_base + Δ(t1)``) and backwards from the samples agree."""
    cnf = CNF(MLP(seed=3), controller=tn.PIDController(rtol=1e-10, atol=1e-10))
    out = cnf.sample_with_log_prob(20, (2,), generator=torch.Generator().manual_seed(0))
    back = cnf(out.x)
    torch.testing.assert_close(back.log_prob, out.log_prob, rtol=0, atol=1e-7)
    torch.testing.assert_close(back.z, out.z, rtol=0, atol=1e-8)
    again = cnf.sample(20, (2,), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, out.x, rtol=0, atol=1e-8)


def test_change_of_variables_density_integrates_to_one_and_matches_the_samples():
    """``∫ p = 1`` by quadrature on a grid, and the samples' mean and covariance match the
    density's (within Monte Carlo error) — a wrong sign or a missing trace breaks both."""
    torch.manual_seed(0)
    field = MLP(seed=5)
    with torch.no_grad():  # a visibly non-Gaussian flow
        field.net[2].weight.mul_(3.0)
    cnf = CNF(field, controller=tn.PIDController(rtol=1e-7, atol=1e-7))
    side = torch.linspace(-7, 7, 141, dtype=F64)
    h = float(side[1] - side[0])
    grid = torch.cartesian_prod(side, side)
    with torch.no_grad():
        p = cnf.log_prob(grid).exp()
        samples = cnf.sample(4000, (2,), generator=torch.Generator().manual_seed(1))
    mass = float(p.sum() * h * h)
    assert abs(mass - 1.0) < 2e-3, mass
    w = p * h * h
    mean = (w[:, None] * grid).sum(0)
    cov = (w[:, None, None] * (grid - mean)[:, :, None] * (grid - mean)[:, None, :]).sum(0)
    stderr = (cov.diagonal() / samples.shape[0]).sqrt()
    assert ((samples.mean(0) - mean).abs() < 4 * stderr).all(), (samples.mean(0), mean)
    sample_cov = torch.cov(samples.T)
    assert (sample_cov - cov).abs().max() < 0.1 * cov.diagonal().max(), (sample_cov, cov)
    # and it is not simply the base distribution
    assert (cov - torch.eye(2, dtype=F64)).abs().max() > 0.3


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_around_the_exact_trace(distribution):
    """The same point repeated across the batch gets independent noise: the estimates' mean is
    the exact log-density within four standard errors, and their spread is not zero."""
    field = MLP(seed=2)
    controller = tn.PIDController(rtol=1e-8, atol=1e-8)
    x = torch.tensor([[0.4, -0.7]], dtype=F64)
    with torch.no_grad():
        exact = CNF(field, controller=controller).log_prob(x)
    hutch = CNF(field, trace=HutchinsonTrace(distribution), controller=controller)
    with torch.no_grad():
        est = hutch.log_prob(x.expand(2000, 2), generator=torch.Generator().manual_seed(0))
    stderr = est.std() / math.sqrt(est.numel())
    assert est.std() > 1e-3
    assert abs(float(est.mean() - exact)) < 4 * float(stderr), (est.mean(), exact, stderr)


def test_backsolve_gradients_match_direct_with_hutchinson_and_a_nonlinear_field():
    x = torch.randn(16, 2, dtype=F64, generator=torch.Generator().manual_seed(4))
    grads = {}
    for name in ("direct", "checkpoint", "backsolve"):
        field = MLP(seed=7)
        cnf = CNF(
            field,
            trace=HutchinsonTrace(),
            controller=tn.PIDController(rtol=1e-10, atol=1e-10),
            adjoint=ADJOINTS[name],
        )
        cnf.log_prob(x, generator=torch.Generator().manual_seed(9)).mean().backward()
        grads[name] = torch.cat([p.grad.flatten() for p in field.parameters()])
    torch.testing.assert_close(grads["checkpoint"], grads["direct"], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(grads["backsolve"], grads["direct"], rtol=1e-6, atol=1e-7)


def test_log_prob_gradcheck_through_the_trace():
    """Backpropagation through the trace's vector–Jacobian products (second derivatives of the
    field) against finite differences, on fixed RK4 steps."""
    field = MLP(hidden=4, seed=1)
    x = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    cnf = CNF(field, solver=tn.RK4(), controller=tn.ConstantStepSize(), dt0=0.25)
    names = [f"field.{n}" for n, _ in field.named_parameters()]

    def log_prob(*ps):
        return torch.func.functional_call(cnf, dict(zip(names, ps)), (x,)).log_prob

    inputs = tuple(p.detach().clone().requires_grad_(True) for p in field.parameters())
    assert torch.autograd.gradcheck(log_prob, inputs)


class Counting(MLP):
    """An MLP field (any dimension) that counts its evaluations."""

    def __init__(self, dim: int, seed: int = 0):
        super().__init__(dim=dim, hidden=8, seed=seed)
        self.calls = 0

    def forward(self, t, z, args=None):
        self.calls += 1
        return super().forward(t, z, args)


@pytest.mark.parametrize("dim", [2, 6])
def test_hutchinson_takes_one_vjp_per_evaluation_and_exact_one_per_dimension(dim, monkeypatch):
    """FFJORD's cost claim: Hutchinson's estimate (and its Frobenius norm, for the RNODE
    penalty) costs one vector–Jacobian product per field evaluation whatever the dimension; the
    exact trace costs one per dimension."""
    from torchnde.nn import _jacobian
    from torchnde.nn._regularisers import JacobianFrobenius, KineticEnergy

    vjps = []
    original = _jacobian._vjp
    monkeypatch.setattr(
        _jacobian, "_vjp", lambda *a, **k: vjps.append(1) or original(*a, **k), raising=True
    )
    x = torch.randn(5, dim, dtype=F64, generator=torch.Generator().manual_seed(0))
    for trace, per_evaluation in ((HutchinsonTrace(), 1), (ExactTrace(), dim)):
        field = Counting(dim)
        cnf = CNF(
            field,
            trace=trace,
            solver=tn.RK4(),
            controller=tn.ConstantStepSize(),
            dt0=0.25,
            regularisers=[KineticEnergy(), JacobianFrobenius()],
        )
        vjps.clear()
        out = cnf(x, generator=torch.Generator().manual_seed(1))
        assert field.calls >= 16  # 4 steps of 4 stages (and any check evaluation)
        assert len(vjps) == per_evaluation * field.calls, (type(trace).__name__, len(vjps))
        assert torch.isfinite(out.log_prob).all()


def test_rademacher_noise_is_plus_or_minus_one_and_gaussian_is_not():
    like = torch.zeros(4000, 3, dtype=F64)
    gen = torch.Generator().manual_seed(0)
    rademacher = HutchinsonTrace("rademacher").noise(like, gen)
    assert set(rademacher.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(rademacher.mean())) < 0.05
    gaussian = HutchinsonTrace("gaussian").noise(like, gen)
    assert gaussian.unique().numel() > 1000
    assert abs(float(gaussian.var()) - 1.0) < 0.1


@pytest.mark.parametrize("trace", [ExactTrace(), HutchinsonTrace()])
def test_reversible_adjoint_gives_directs_gradient_of_the_log_density_and_penalties(trace):
    """The remaining adjoint: ReversibleAdjoint through ReversibleHeun reconstructs the forward
    pass step by step and gives DirectAdjoint's (discrete) gradient to rounding, penalties and
    Hutchinson's noise included (the noise is fixed per solve, so the backward pass sees the
    same estimator)."""
    from torchnde.nn._regularisers import JacobianFrobenius, KineticEnergy

    x = torch.randn(8, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    grads = {}
    for name, adjoint in (("direct", tn.DirectAdjoint()), ("reversible", tn.ReversibleAdjoint())):
        field = MLP(seed=3)
        cnf = CNF(
            field,
            trace=trace,
            solver=tn.ReversibleHeun(),
            controller=tn.ConstantStepSize(),
            dt0=0.05,
            adjoint=adjoint,
            regularisers=[KineticEnergy(), JacobianFrobenius()],
        )
        out = cnf(x, generator=torch.Generator().manual_seed(5))
        loss = -out.log_prob.mean() + sum(p.mean() for p in out.penalties.values())
        loss.backward()
        grads[name] = torch.cat([p.grad.flatten() for p in field.parameters()])
    assert grads["direct"].abs().max() > 1e-2
    torch.testing.assert_close(grads["reversible"], grads["direct"], rtol=1e-10, atol=1e-12)
