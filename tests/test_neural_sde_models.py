"""Latent SDE and SDE-GAN: the path KL against its closed form (Girsanov with constant drifts
and diffusion), the initial KL against torch.distributions, refusals, and short training runs
that must lower their losses by stated factors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchnde.nn import SDEGAN, CDEDiscriminator, LatentSDE, clip_lipschitz, gradient_penalty


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small networks run much faster on one thread."""


def _zero_last(seq: nn.Sequential, bias: float = 0.0):
    with torch.no_grad():
        seq[-1].weight.zero_()
        seq[-1].bias.fill_(bias)


def test_latent_sde_path_kl_is_girsanov():
    """Posterior drift c, prior drift 0, diffusion g constant: KL = ½ (c/g)² · latent · (t1 - t0)
    exactly; equal drifts give 0."""
    torch.manual_seed(0)
    model = LatentSDE(2, 3, dt=0.05, diffusion_scale=0.8).double()
    for net in model.diffusion.nets:
        _zero_last(net)  # sigmoid(0) = ½: g = 0.4
    _zero_last(model.prior_drift)
    ts = torch.linspace(0, 1, 6, dtype=torch.float64)
    xs = torch.randn(4, 6, 2, dtype=torch.float64)
    _zero_last(model.posterior_drift, 0.3)
    out = model(ts, xs, seed=1)
    torch.testing.assert_close(
        out.kl_path, torch.full((4,), 0.5 * (0.3 / 0.4) ** 2 * 3, dtype=torch.float64)
    )
    _zero_last(model.posterior_drift)
    assert model(ts, xs, seed=1).kl_path.abs().max() < 1e-14
    # the initial KL against torch.distributions
    ctx = model.encoder(xs.flip(1))[0].flip(1)
    mean, logstd = model.q_z0(ctx[:, 0]).chunk(2, dim=1)
    q = torch.distributions.Normal(mean, logstd.exp())
    p = torch.distributions.Normal(model.p_z0_mean, model.p_z0_logstd.exp())
    expected = torch.distributions.kl_divergence(q, p).sum(1)
    torch.testing.assert_close(out.kl_z0, expected)
    torch.testing.assert_close(out.elbo, out.log_likelihood - out.kl_z0 - out.kl_path)


def test_latent_sde_refuses_off_grid_times():
    model = LatentSDE(1, 2, dt=0.1)
    with pytest.raises(ValueError, match="ts"):
        model(torch.tensor([0.0, 0.15, 0.3]), torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match="xs"):
        model(torch.tensor([0.0, 0.1]), torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match="latent_size"):
        LatentSDE(1, 0)


def _ou_paths(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """dY = 2(sin(2t) - Y) dt + 0.3 dW from Y0 ~ N(0, 0.1²), Euler–Maruyama at 0.01, seen at
    0.1 spacing on [0, 1]."""
    y = 0.1 * torch.randn(n, generator=gen)
    out = [y]
    for k in range(100):
        t = k * 0.01
        y = (
            y
            + 2 * (torch.sin(torch.tensor(2 * t)) - y) * 0.01
            + 0.3 * 0.1 * torch.randn(n, generator=gen)
        )
        if (k + 1) % 10 == 0:
            out.append(y)
    return torch.linspace(0, 1, 11), torch.stack(out, dim=1).unsqueeze(-1)


def test_latent_sde_training_lowers_the_negative_elbo():
    """30 Adam steps lower -ELBO per observation at least 4x."""
    torch.manual_seed(2)
    gen = torch.Generator().manual_seed(3)
    ts, xs = _ou_paths(32, gen)
    model = LatentSDE(1, 2, 8, 16, dt=0.05, obs_std=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(30):
        loss = -model(ts, xs).elbo.mean() / 11
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < losses[0] / 4, losses[::10]
    assert model.sample_prior(ts, 7).shape == (7, 11, 1)


def test_latent_sde_prior_samples_with_observation_noise():
    """``observation_noise=True`` samples ``p(x | z)``: the same prior paths plus independent
    ``N(0, obs_std²)`` noise, so each time's variance grows by ``obs_std²``."""
    torch.manual_seed(0)
    model = LatentSDE(1, 2, dt=0.1, obs_std=0.3)
    ts = torch.linspace(0, 1, 11)
    with torch.no_grad():
        means = model.sample_prior(ts, 4000, seed=3, generator=torch.Generator().manual_seed(5))
        noisy = model.sample_prior(
            ts, 4000, seed=3, generator=torch.Generator().manual_seed(5), observation_noise=True
        )
    noise = noisy - means  # the paths are the same draws: only the noise differs
    assert abs(noise.std().item() - 0.3) < 0.01 and abs(noise.mean().item()) < 0.01
    steps = noise[:, 1:, 0] * noise[:, :-1, 0]
    assert abs(steps.mean().item()) < 0.01  # independent across times: E[e_t e_s] = 0
    torch.testing.assert_close(noisy.var(0), means.var(0) + 0.09, atol=0.02, rtol=0.0)


def test_clipping_makes_each_layer_one_lipschitz():
    torch.manual_seed(4)
    disc = CDEDiscriminator(2, 8, 16)
    with torch.no_grad():
        for p in disc.parameters():
            p.mul_(10)
    clip_lipschitz(disc)
    for layer in disc.modules():
        if isinstance(layer, nn.Linear):
            assert layer.weight.abs().sum(1).max() <= 1 + 1e-6


def test_sde_gan_shapes_determinism_and_refusals():
    torch.manual_seed(5)
    gan = SDEGAN(2, hidden_size=8, noise_size=2, mlp_size=16)
    ts = torch.linspace(0, 1, 5)
    a = gan.sample(ts, 6, seed=3, generator=torch.Generator().manual_seed(1))
    b = gan.sample(ts, 6, seed=3, generator=torch.Generator().manual_seed(1))
    assert a.shape == (6, 5, 2)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = gan.sample(ts, 6, seed=4, generator=torch.Generator().manual_seed(1))
    assert (a - c).abs().max() > 1e-4  # another Brownian path
    score = gan.discriminator(ts, a)
    torch.testing.assert_close(score, gan.discriminator(ts, b))
    with pytest.raises(ValueError, match="equally spaced"):
        gan.sample(torch.tensor([0.0, 0.1, 0.5]), 3)


def test_sde_gan_critic_learns_to_separate():
    """The critic, trained 25 steps with clipping against a fixed generator, widens the gap
    E[D(real)] - E[D(fake)] at least 5x over its initial value."""
    torch.manual_seed(6)
    gen = torch.Generator().manual_seed(7)
    ts, real = _ou_paths(32, gen)
    gan = SDEGAN(1, hidden_size=8, noise_size=2, mlp_size=16, discriminator_hidden=8)
    opt = torch.optim.Adam(gan.discriminator.parameters(), lr=1e-2)
    gaps = []
    for _ in range(25):
        loss = gan.discriminator_loss(ts, real, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        gan.clip()
        gaps.append(-loss.item())
    assert sum(gaps[-5:]) / 5 > 5 * abs(gaps[0]), gaps[::8]
    # and the generator's loss has a gradient
    g_loss = gan.generator_loss(ts, 16, generator=gen)
    g_loss.backward()
    assert gan.generator.drift[0].weight.grad.abs().sum() > 0


def test_sde_gan_generator_learns_against_a_fixed_critic():
    """The generator, trained 25 steps against a fixed (clipped) critic, raises its mean score
    E[D(generated)] by more than 10 standard errors of its 512-path estimate (measured 38-65 over 4 seeds)."""
    torch.manual_seed(6)
    gen = torch.Generator().manual_seed(7)
    ts = torch.linspace(0, 1, 11)
    gan = SDEGAN(1, hidden_size=8, noise_size=2, mlp_size=16, discriminator_hidden=8)

    def scores():
        with torch.no_grad():
            return gan.discriminator(ts, gan.sample(ts, 512, generator=gen))

    before = scores()
    opt = torch.optim.Adam(gan.generator.parameters(), lr=1e-2)
    for _ in range(25):
        loss = gan.generator_loss(ts, 32, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = scores()
    stderr = (before.var() / 512 + after.var() / 512).sqrt()
    assert after.mean() - before.mean() > 10 * stderr, (before.mean(), after.mean(), stderr)


class _LinearCritic(nn.Module):
    """``D(y) = Σ w·y``: its input gradient is ``w`` everywhere, of norm ``‖w‖``."""

    def __init__(self, shape):
        super().__init__()
        self.w = nn.Parameter(torch.randn(shape, dtype=torch.float64))

    def forward(self, ts, ys):
        return (ys * self.w).sum((1, 2))


def test_gradient_penalty_matches_its_formula():
    """A linear critic gives ``(‖w‖ - 1)²`` whatever the interpolates, with the parameter
    gradient ``2(‖w‖ - 1) w/‖w‖`` (the double backward); a quadratic critic ``½‖y‖²`` gives
    ``mean (‖ŷ‖ - 1)²`` at ``ŷ = real`` when ``fake = real``."""
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(6, 5, 2, dtype=torch.float64, generator=gen)
    fake = torch.randn(6, 5, 2, dtype=torch.float64, generator=gen)
    ts = torch.linspace(0, 1, 5, dtype=torch.float64)
    critic = _LinearCritic((5, 2))
    pen = gradient_penalty(critic, ts, real, fake, generator=gen)
    norm = critic.w.detach().norm()
    torch.testing.assert_close(pen, (norm - 1) ** 2)
    pen.backward()
    torch.testing.assert_close(critic.w.grad, 2 * (norm - 1) * critic.w.detach() / norm)

    class Quadratic(nn.Module):
        def forward(self, ts, ys):
            return 0.5 * ys.pow(2).sum((1, 2))

    pen = gradient_penalty(Quadratic(), ts, real, real.clone(), generator=gen)
    torch.testing.assert_close(pen, (real.flatten(1).norm(dim=1) - 1).pow(2).mean())


def test_gradient_penalty_of_the_cde_critic_matches_finite_differences():
    """The CDE critic's input gradient inside the penalty equals central differences of its
    scores (float64), and the penalty reaches the critic's parameters."""
    torch.manual_seed(3)
    disc = CDEDiscriminator(1, hidden_size=4, mlp_size=8).double()
    ts = torch.linspace(0, 1, 4, dtype=torch.float64)
    real = torch.randn(1, 4, 1, dtype=torch.float64)
    fake = real.clone()  # the interpolate is then `real`, whatever ε
    fd = torch.zeros(4)
    with torch.no_grad():
        for k in range(4):
            step = torch.zeros_like(real)
            step[0, k, 0] = 1e-6
            fd[k] = (disc(ts, real + step) - disc(ts, real - step)).item() / 2e-6
    got = gradient_penalty(disc, ts, real, fake)
    torch.testing.assert_close(got.detach(), (fd.double().norm() - 1) ** 2, rtol=1e-6, atol=1e-9)
    got.backward()
    assert disc.control[0].weight.grad.abs().sum() > 0
    gan = SDEGAN(1, hidden_size=4, mlp_size=8, discriminator_hidden=4).double()
    other = torch.randn(1, 4, 1, dtype=torch.float64)
    a = gan.gradient_penalty(ts, real, other, generator=torch.Generator().manual_seed(1))
    b = gradient_penalty(
        gan.discriminator, ts, real, other, generator=torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_gradient_penalty_refuses_mismatched_batches():
    disc = CDEDiscriminator(1, hidden_size=4, mlp_size=8)
    ts = torch.linspace(0, 1, 4)
    with pytest.raises(ValueError, match="of one shape"):
        gradient_penalty(disc, ts, torch.zeros(3, 4, 1), torch.zeros(2, 4, 1))
    with pytest.raises(TypeError, match="must be tensors"):
        gradient_penalty(disc, ts, [0.0], torch.zeros(2, 4, 1))
