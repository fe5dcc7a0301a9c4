"""Score-based diffusion: the VP/VE marginals against their moment ODEs and Monte Carlo of the
forward SDE, the exact Gaussian score through the reverse SDE, the probability-flow ODE and its
exact log-likelihood, denoising score matching recovering a known score, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import torchnde as tn
from torchnde.nn import (
    VESDE,
    VPSDE,
    ExactTrace,
    GaussianResidual,
    HutchinsonTrace,
    ScoreModel,
    ScoreNetwork,
    sliced_wasserstein,
)

SDES = [VPSDE(0.1, 20.0), VESDE(0.01, 50.0)]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small networks run much faster on one thread."""


@pytest.mark.parametrize("sde", SDES, ids=["vp", "ve"])
def test_marginals_solve_their_moment_odes(sde):
    """m' = f-coefficient · m and (s²)' = 2·f-coefficient · s² + g², from m(0)=1, s(0)=0."""

    def moments(t, y, args):
        m, var = y
        one = torch.ones(1, 1, dtype=torch.float64)
        a = sde.drift(t, one)[0, 0]  # f(x, t) = a(t) x for both SDEs
        return (a * m, 2 * a * var + sde.diffusion(t) ** 2)

    ts = torch.tensor([0.05, 0.2, 0.5, 0.9, 1.0], dtype=torch.float64)
    one, zero = torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    sol = tn.solve(
        tn.ODETerm(moments),
        tn.Dopri5(),
        0.0,
        1.0,
        (one, zero),
        saveat=tn.SaveAt(ts=ts),
        controller=tn.PIDController(rtol=1e-10, atol=1e-12),
    )
    m, s = sde.marginal(ts)
    torch.testing.assert_close(sol.ys[0], m, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(sol.ys[1], s**2, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("sde", SDES, ids=["vp", "ve"])
def test_marginals_match_monte_carlo_of_the_forward_sde(sde):
    n = 20000
    x0 = torch.full((n, 1), 1.5, dtype=torch.float64)
    bm = tn.BrownianGrid(0.0, 0.5, (n, 1), steps=500, seed=1, dtype=torch.float64)
    terms = tn.MultiTerm(
        tn.ODETerm(lambda t, x, args: sde.drift(t, x)),
        tn.ControlTerm(lambda t, x, args: sde.diffusion(t).expand_as(x), bm, noise="diagonal"),
    )
    xt = tn.solve(terms, tn.EulerMaruyama(), 0.0, 0.5, x0, dt0=0.001).ys[-1]
    m, s = sde.marginal(torch.tensor(0.5, dtype=torch.float64))
    assert abs(xt.mean().item() - 1.5 * m.item()) < 4 * s.item() / math.sqrt(n) + 2e-3
    assert abs(xt.std().item() / s.item() - 1) < 0.02


class _GaussianNoise(nn.Module):
    """The exact ε-network of data N(μ, σ0² I): ε̂ = s (x - mμ) / (m²σ0² + s²)."""

    def __init__(self, sde, mu, sigma0):
        super().__init__()
        self.sde, self.mu, self.sigma0 = sde, mu, sigma0
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x, t):
        t = torch.as_tensor(t, dtype=x.dtype)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        m, s = self.sde.marginal(t[:, None])
        return s * (x - m * self.mu) / (m**2 * self.sigma0**2 + s**2)


@pytest.mark.parametrize("sde", SDES, ids=["vp", "ve"])
def test_exact_score_samples_and_likelihood(sde):
    mu, sigma0 = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.5
    model = ScoreModel(sde, _GaussianNoise(sde, mu, sigma0), eps=1e-4)
    gen = torch.Generator().manual_seed(2)
    by_sde = model.sample_sde(4000, (2,), steps=400, seed=3, generator=gen)
    by_ode = model.sample_ode(4000, (2,), generator=gen)
    for x in (by_sde, by_ode):
        assert (x.mean(0) - mu).abs().max() < 0.05
        assert (x.std(0) / sigma0 - 1).abs().max() < 0.06
    # exact likelihood of p_eps = N(m μ, m²σ0² + s²) through the probability-flow ODE; centred
    # data, so that the prior is p_T itself (else the prior's mismatch, O(m(T)|μ|), shows)
    mu, sigma0 = torch.zeros(2, dtype=torch.float64), 0.7
    model = ScoreModel(sde, _GaussianNoise(sde, mu, sigma0), eps=1e-4)
    x = mu + sigma0 * torch.randn(50, 2, dtype=torch.float64, generator=gen)
    m, s = sde.marginal(torch.tensor(model.eps, dtype=torch.float64))
    var = m**2 * sigma0**2 + s**2
    exact = -((x - m * mu) ** 2).sum(1) / (2 * var) - torch.log(2 * math.pi * var)
    out = model.log_prob(x, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(out.log_prob, exact, rtol=0, atol=1e-3)
    hutch = model.log_prob(x, trace=HutchinsonTrace(), rtol=1e-7, atol=1e-7, generator=gen)
    diff = hutch.log_prob - exact
    assert abs(diff.mean().item()) < 4 * diff.std().item() / math.sqrt(50) + 1e-3


def test_denoising_score_matching_learns_a_known_score():
    """DSM on N(μ, 0.5² I) data: the learnt score matches the exact one where the data are
    (relative error < 0.15 at t in [0.1, 1]), and the loss falls to near its floor."""
    torch.manual_seed(4)
    sde = VPSDE(0.1, 20.0)
    mu, sigma0 = torch.tensor([1.0, -2.0]), 0.5
    model = ScoreModel(sde, ScoreNetwork(2, hidden=64, layers=2, time_scale=4.0))
    exact = ScoreModel(sde, _GaussianNoise(sde, mu, sigma0).float())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(5)
    losses = []
    for _ in range(600):
        x0 = mu + sigma0 * torch.randn(256, 2, generator=gen)
        loss = model.loss(x0, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    x0 = mu + sigma0 * torch.randn(2000, 2, generator=gen)
    t = 0.1 + 0.9 * torch.rand(2000, generator=gen)
    xt = sde.perturb(x0, t, torch.randn(2000, 2, generator=gen))
    with torch.no_grad():
        learnt, true = model.score(t, xt), exact.score(t, xt)
        floor = exact.loss(x0, generator=gen).item()
    rel = ((learnt - true).norm(dim=1) / true.norm(dim=1).clamp_min(1e-3)).median().item()
    assert rel < 0.15, rel
    assert sum(losses[-50:]) / 50 < 1.3 * floor + 0.05, (sum(losses[-50:]) / 50, floor)
    assert sum(losses[-50:]) / 50 < losses[0] / 2


class _Zero(nn.Module):
    def forward(self, x, t):
        return torch.zeros_like(x)


@pytest.mark.parametrize("sde", SDES, ids=["vp", "ve"])
def test_gaussian_residual_is_the_exact_score_of_gaussian_data(sde):
    """With a zero network, GaussianResidual's score -ε̂/s is ∇ log N(x; m μ, diag(m² σ² + s²)),
    the perturbed density of N(μ, diag σ²) data, here by autograd of that log-density."""
    gen = torch.Generator().manual_seed(7)
    mu = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    sd = torch.tensor([0.3, 1.5, 0.05], dtype=torch.float64)
    model = ScoreModel(sde, GaussianResidual(_Zero(), sde, mu, sd))
    t = torch.tensor([1e-3, 0.05, 0.3, 0.7, 1.0], dtype=torch.float64)
    x = 2 * torch.randn(5, 3, dtype=torch.float64, generator=gen)
    m, s = sde.marginal(t[:, None])
    var = m**2 * sd**2 + s**2
    xg = x.clone().requires_grad_(True)
    log_p = (-((xg - m * mu) ** 2) / (2 * var) - 0.5 * torch.log(2 * math.pi * var)).sum()
    (exact,) = torch.autograd.grad(log_p, xg)
    torch.testing.assert_close(model.score(t, x), exact, rtol=1e-12, atol=1e-12)


def _clusters(n, gen):
    """Non-Gaussian data in 16 dimensions: four ±1 patterns (offset, like images' background)
    plus noise of 0.1."""
    protos = torch.tensor([[1.0, -1.0] * 8, [1.0] * 8 + [-1.0] * 8, [-1.0] * 16, [-1.0, 1.0] * 8])
    pick = torch.randint(0, 4, (n,), generator=gen)
    return protos[pick] - 0.5 + 0.1 * torch.randn(n, 16, generator=gen)


def test_gaussian_residual_learns_the_noise_where_the_ode_amplifies_it():
    """Clustered 16-d data, the same short training with and without GaussianResidual: at
    t = 0.9, where the probability-flow ODE amplifies the noise error by ½β/s ≈ 9, the plain
    network's error is several times the residual's (the digits' probability-flow failure,
    too costly for a test, came from that error), and the residual's probability-flow samples
    lie near the data (SW to held-out data within 1.5x of two held-out halves' distance)."""
    torch.manual_seed(8)
    gen = torch.Generator().manual_seed(9)
    train, held = _clusters(2000, gen), _clusters(1000, gen)
    sde = VPSDE(0.1, 20.0)
    large_t, ratios = {}, {}
    for kind in ("plain", "residual"):
        net = ScoreNetwork(16, hidden=64, layers=2, time_scale=4.0)
        if kind == "residual":
            net = GaussianResidual(net, sde, train.mean(0), train.std(0))
        model = ScoreModel(sde, net)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        for _ in range(400):
            loss = model.loss(train[torch.randint(0, 2000, (128,), generator=gen)], generator=gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            t = torch.full((1000,), 0.9)
            z = torch.randn(1000, 16, generator=gen)
            large_t[kind] = (net(sde.perturb(held, t, z), t) - z).pow(2).sum(1).mean().item()
            x = model.sample_ode(500, (16,), rtol=1e-4, atol=1e-4, generator=gen)
        sw = [
            sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(1))
            for y in (held[:500], held[500:])
        ]
        ratios[kind] = sw[0] / sw[1]
    assert large_t["residual"] < large_t["plain"] / 3, large_t
    assert ratios["residual"] < 1.5, ratios


def test_sliced_wasserstein():
    gen = torch.Generator().manual_seed(6)
    a = torch.randn(4000, 3, generator=gen)
    b = torch.randn(4000, 3, generator=gen)
    shifted = b + torch.tensor([1.0, 0.0, 0.0])
    same = sliced_wasserstein(a, b, generator=gen)
    moved = sliced_wasserstein(a, shifted, generator=gen)
    # a shift by v moves each projection by θ·v: SW₂² = E[(θ·v)²] = |v|²/d
    assert same < 0.06
    assert abs(moved - math.sqrt(1 / 3)) < 0.05
    with pytest.raises(ValueError, match="`a` and `b`"):
        sliced_wasserstein(a, b[:10])


def test_bad_input():
    with pytest.raises(ValueError, match="beta"):
        VPSDE(20.0, 0.1)
    with pytest.raises(ValueError, match="sigma"):
        VESDE(0.0, 1.0)
    with pytest.raises(TypeError, match="sde"):
        ScoreModel("vp", ScoreNetwork(2))
    with pytest.raises(ValueError, match="eps"):
        ScoreModel(VPSDE(), ScoreNetwork(2), eps=2.0)
    with pytest.raises(ValueError, match="steps"):
        ScoreModel(VPSDE(), ScoreNetwork(2)).sample_sde(3, (2,), steps=0)
    assert isinstance(ScoreModel(VPSDE(), ScoreNetwork(2)).probability_flow().trace, ExactTrace)
    with pytest.raises(ValueError, match="`std`"):
        GaussianResidual(ScoreNetwork(2), VPSDE(), 0.0, torch.tensor([1.0, 0.0]))
    with pytest.raises(TypeError, match="sde"):
        GaussianResidual(ScoreNetwork(2), "vp")
