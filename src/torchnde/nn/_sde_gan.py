"""Neural SDEs as GANs (Kidger, Foster, Li, Oberhauser & Lyons, *Neural SDEs as
infinite-dimensional GANs*, ICML 2021): an SDE generator and a neural CDE discriminator trained
with the Wasserstein loss."""

from __future__ import annotations

import torch
from torch import nn

from .. import solve as _solve
from .._saveat import SaveAt
from ..adjoints import AbstractAdjoint, DirectAdjoint
from ..controllers import ConstantStepSize
from ..paths import BrownianGrid, LinearInterpolation
from ..solvers import AbstractSolver, Heun
from ..terms import ControlTerm, MultiTerm, ODETerm

__all__ = ["SDEGAN", "CDEDiscriminator", "SDEGenerator", "clip_lipschitz", "gradient_penalty"]


class LipSwish(nn.Module):
    """``0.909·x·sigmoid(x)``: SiLU scaled to be 1-Lipschitz (Chen et al. 2019)."""

    def forward(self, x):
        return 0.909 * nn.functional.silu(x)


def _mlp(n_in: int, hidden: int, n_out: int, final_tanh: bool) -> nn.Sequential:
    mods = [nn.Linear(n_in, hidden), LipSwish(), nn.Linear(hidden, hidden), LipSwish()]
    mods.append(nn.Linear(hidden, n_out))
    if final_tanh:
        mods.append(nn.Tanh())
    return nn.Sequential(*mods)


def _check_times(ts: torch.Tensor) -> tuple[float, float, int]:
    if not isinstance(ts, torch.Tensor) or ts.ndim != 1 or len(ts) < 2:
        raise ValueError(f"`ts` must be a 1-D tensor of >= 2 times, got {ts!r}")
    gaps = ts.diff()
    if (gaps <= 0).any() or (gaps - gaps[0]).abs().max() > 1e-5 * gaps[0].abs():
        raise ValueError(f"`ts` must be equally spaced and increasing, got {ts.tolist()}")
    return float(ts[0]), float(ts[-1]), len(ts) - 1


class SDEGenerator(nn.Module):
    """``X0 = ζ(V)``, ``V ~ N(0, I)``; ``dX = μ(t, X) dt + σ(t, X) ∘ dW``; ``Y = ℓ(X)`` at the
    observation times (Kidger et al. 2021, eq. 1). ``μ`` and ``σ`` are MLPs with LipSwish
    activations and a final tanh (bounded, so the solve stays tame); ``σ`` is a
    ``(hidden, noise)`` matrix (general noise), solved as a Stratonovich SDE.

    Args:
        data_size: channels of ``Y``.
        hidden_size: size of ``X``.
        noise_size: channels of the Brownian motion ``W``.
        initial_noise_size: size of ``V``.
        mlp_size: the networks' width.
        steps_per_interval: solver steps between consecutive observation times.
        solver: a Stratonovich SDE solver (default :class:`~torchnde.Heun`).
        adjoint: how gradients flow (default :class:`~torchnde.DirectAdjoint`).
    """

    def __init__(
        self,
        data_size: int,
        hidden_size: int = 16,
        noise_size: int = 3,
        initial_noise_size: int = 5,
        mlp_size: int = 32,
        *,
        steps_per_interval: int = 1,
        solver: AbstractSolver | None = None,
        adjoint: AbstractAdjoint | None = None,
    ):
        super().__init__()
        self.hidden_size, self.noise_size = hidden_size, noise_size
        self.initial_noise_size = initial_noise_size
        self.initial = _mlp(initial_noise_size, mlp_size, hidden_size, final_tanh=False)
        self.drift = _mlp(hidden_size + 1, mlp_size, hidden_size, final_tanh=True)
        self.diffusion = _mlp(hidden_size + 1, mlp_size, hidden_size * noise_size, final_tanh=True)
        self.readout = nn.Linear(hidden_size, data_size)
        self.steps_per_interval = steps_per_interval
        self.solver = Heun() if solver is None else solver
        self.adjoint = DirectAdjoint() if adjoint is None else adjoint

    def forward(
        self,
        ts: torch.Tensor,
        n: int,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``n`` generated series at the equally spaced times ``ts``: ``(n, T, data)``."""
        t0, t1, intervals = _check_times(ts)
        steps = intervals * self.steps_per_interval
        like = self.readout.weight
        v = torch.randn(
            n, self.initial_noise_size, dtype=like.dtype, device=like.device, generator=generator
        )
        x0 = self.initial(v)
        seed = int(torch.randint(0, 2**31 - 1, (), generator=generator)) if seed is None else seed
        path = BrownianGrid(
            t0,
            t1,
            (n, self.noise_size),
            steps=steps,
            seed=seed,
            dtype=like.dtype,
            device=like.device,
        )

        def mu(t, x, args):
            return self.drift(torch.cat([t.expand(x.shape[0], 1), x], dim=1))

        def sigma(t, x, args):
            out = self.diffusion(torch.cat([t.expand(x.shape[0], 1), x], dim=1))
            return out.view(x.shape[0], self.hidden_size, self.noise_size)

        sol = _solve(
            MultiTerm(ODETerm(mu), ControlTerm(sigma, path)),
            self.solver,
            t0,
            t1,
            x0,
            dt0=(t1 - t0) / steps,
            saveat=SaveAt(ts=ts.to(like.dtype)),
            controller=ConstantStepSize(),
            adjoint=self.adjoint,
            max_steps=steps + 10,
        )
        return self.readout(sol.ys.transpose(0, 1))


class CDEDiscriminator(nn.Module):
    """``H0 = ξ(t0, Y0)``, ``dH = f(t, H) dt + g(t, H) dY``, ``D = m·H_T`` (Kidger et al. 2021,
    eq. 3): a neural CDE driven by the linear interpolation of the series (with time as a
    channel), solved with Heun steps on the observation times (exact for a linear control).

    Args:
        data_size: channels of ``Y``.
        hidden_size: size of ``H``.
        mlp_size: the networks' width.
    """

    def __init__(self, data_size: int, hidden_size: int = 16, mlp_size: int = 32):
        super().__init__()
        self.hidden_size, self.channels = hidden_size, data_size + 1
        self.initial = _mlp(data_size + 1, mlp_size, hidden_size, final_tanh=False)
        self.drift = _mlp(hidden_size + 1, mlp_size, hidden_size, final_tanh=True)
        self.control = _mlp(hidden_size + 1, mlp_size, hidden_size * self.channels, final_tanh=True)
        self.readout = nn.Linear(hidden_size, 1)

    def forward(self, ts: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """The critic's score of each series ``ys: (batch, T, data)``: ``(batch,)``."""
        t0, t1, intervals = _check_times(ts)
        batch = ys.shape[0]
        ts_ = ts.to(ys.dtype)
        with_time = torch.cat([ts_.view(1, -1, 1).expand(batch, -1, 1), ys], dim=2)
        path = LinearInterpolation(ts_, with_time.transpose(0, 1))  # channels (batch, 1 + data)
        h0 = self.initial(with_time[:, 0])

        def f(t, h, args):
            return self.drift(torch.cat([t.expand(h.shape[0], 1), h], dim=1))

        def g(t, h, args):
            out = self.control(torch.cat([t.expand(h.shape[0], 1), h], dim=1))
            return out.view(h.shape[0], self.hidden_size, self.channels)

        sol = _solve(
            MultiTerm(ODETerm(f), ControlTerm(g, path)),
            Heun(),
            t0,
            t1,
            h0,
            dt0=(t1 - t0) / intervals,
            controller=ConstantStepSize(),
            max_steps=intervals + 10,
        )
        return self.readout(sol.ys[-1]).squeeze(-1)


def clip_lipschitz(module: nn.Module) -> None:
    """Clip every ``nn.Linear`` weight of ``module`` into ``[-1/in, 1/in]`` (in place), so each
    layer is 1-Lipschitz in the ∞-norm (its absolute row sums are at most 1); with LipSwish
    activations the discriminator's vector fields are then Lipschitz, the constraint the
    Wasserstein loss needs (Kidger et al. 2021 clip the discriminator's weights after every
    step, section 4)."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Linear):
                bound = 1.0 / layer.in_features
                layer.weight.clamp_(-bound, bound)


def gradient_penalty(
    discriminator: nn.Module,
    ts: torch.Tensor,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The gradient penalty of WGAN-GP (Gulrajani et al., *Improved training of Wasserstein
    GANs*, NeurIPS 2017), the Lipschitz control Kidger et al. (2021) use for the SDE-GAN's
    critic: ``E[(‖∇_y D(ŷ)‖₂ - 1)²]`` at ``ŷ = ε·real + (1 - ε)·fake`` with one ``ε ~ U(0, 1)``
    per series, the norm taken over the whole series (all times and channels).

    Add ``λ·gradient_penalty(...)`` (λ = 10 in the paper) to the critic's loss instead of
    weight clipping; the penalty is differentiable in the critic's parameters (the input
    gradient is taken with ``create_graph=True``, a double backward through the critic's solve).

    Args:
        discriminator: a critic ``(ts, ys) -> (batch,)`` scores, e.g. a
            :class:`CDEDiscriminator`.
        ts: the observation times ``(T,)``.
        real, fake: series ``(batch, T, data)`` of the same shape (``fake`` is detached).
        generator: the random generator for ``ε``.

    Returns:
        The penalty, a scalar tensor.
    """
    if not isinstance(real, torch.Tensor) or not isinstance(fake, torch.Tensor):
        raise TypeError(
            f"`real` and `fake` must be tensors, got {type(real).__name__}, {type(fake).__name__}"
        )
    if real.shape != fake.shape or real.ndim != 3:
        raise ValueError(
            f"`real` and `fake` must both be (batch, T, data) of one shape, got "
            f"{tuple(real.shape)} and {tuple(fake.shape)}; draw as many fakes as real series"
        )
    eps = torch.rand(real.shape[0], 1, 1, dtype=real.dtype, device=real.device, generator=generator)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(ts, mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


class SDEGAN(nn.Module):
    """A neural SDE generator and a neural CDE discriminator with the Wasserstein loss.

    ``generator_loss`` is ``-E[D(generated)]`` and ``discriminator_loss`` is ``E[D(generated)]
    - E[D(real)]``; after each discriminator step call :meth:`clip` (weight clipping of the
    discriminator's layers, :func:`clip_lipschitz`). :meth:`sample` draws series.

    Args:
        data_size: channels of the series.
        hidden_size, noise_size, initial_noise_size, mlp_size: the generator's sizes.
        discriminator_hidden: the discriminator's hidden size.
        steps_per_interval: generator solver steps between observations.
    """

    def __init__(
        self,
        data_size: int,
        hidden_size: int = 16,
        noise_size: int = 3,
        initial_noise_size: int = 5,
        mlp_size: int = 32,
        discriminator_hidden: int = 16,
        *,
        steps_per_interval: int = 1,
    ):
        super().__init__()
        self.generator = SDEGenerator(
            data_size,
            hidden_size,
            noise_size,
            initial_noise_size,
            mlp_size,
            steps_per_interval=steps_per_interval,
        )
        self.discriminator = CDEDiscriminator(data_size, discriminator_hidden, mlp_size)
        self.clip()

    def sample(self, ts, n, *, seed=None, generator=None) -> torch.Tensor:
        """``n`` generated series ``(n, T, data)`` at ``ts``."""
        return self.generator(ts, n, seed=seed, generator=generator)

    def generator_loss(self, ts, n, *, generator=None) -> torch.Tensor:
        """``-E[D(G(V, W))]`` over ``n`` generated series."""
        return -self.discriminator(ts, self.sample(ts, n, generator=generator)).mean()

    def discriminator_loss(self, ts, real: torch.Tensor, *, generator=None) -> torch.Tensor:
        """``E[D(fake)] - E[D(real)]`` with as many fakes as real series (fakes detached)."""
        with torch.no_grad():
            fake = self.sample(ts, real.shape[0], generator=generator)
        return self.discriminator(ts, fake).mean() - self.discriminator(ts, real).mean()

    def gradient_penalty(self, ts, real, fake, *, generator=None) -> torch.Tensor:
        """The WGAN-GP penalty of the discriminator (see :func:`gradient_penalty`), the
        alternative to :meth:`clip`."""
        return gradient_penalty(self.discriminator, ts, real, fake, generator=generator)

    def clip(self) -> None:
        """Weight clipping of the discriminator (see :func:`clip_lipschitz`)."""
        clip_lipschitz(self.discriminator)
