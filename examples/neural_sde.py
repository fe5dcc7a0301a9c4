"""Fit a neural SDE to samples of a stochastic process.

The data are 512 sample paths of the mean-reverting process with multiplicative noise

    dy = θ (μ - y) dt + σ y dW,    θ = 2, μ = 1, σ = 0.5, y(0) = 0.2,

observed at 20 times in (0, 2]. The model is the Itô SDE ``dy = f_θ(y) dt + g_φ(y) dW`` with a
small network for the drift and a positive one (softplus) for the diffusion, each state entry
driven by its own Brownian motion (``noise="diagonal"``). It is solved with
:class:`torchnde.Milstein` (strong order 1; the derivative of the diffusion it needs is itself
differentiated, through :class:`torchnde.DirectAdjoint`) on 512 sample paths of its own, and
trained by Adam to match the data's mean and standard deviation at every observation time. The
model's Brownian paths stay fixed during training (common random numbers make the loss a smooth
function of the parameters); at the end a fresh set of paths checks that the fit is not a fit to
that noise.

Run ``python examples/neural_sde.py`` (under a minute on two CPU cores) or with ``--quick`` (a few
seconds).
"""

from __future__ import annotations

import argparse
import time

import torch

import torchnde

THETA, MU, SIGMA, Y0 = 2.0, 1.0, 0.5, 0.2
T_END, OBSERVATIONS, DT = 2.0, 20, 0.05


def sample(drift, diffusion, paths: int, seed: int, ts: torch.Tensor) -> torch.Tensor:
    """Solve ``dy = drift dt + diffusion dW`` for ``paths`` sample paths (one problem with a
    batch axis inside it) from ``y(0) = Y0``; values at ``ts``, shaped ``(len(ts), paths, 1)``."""
    bm = torchnde.BrownianGrid(0.0, T_END, (paths, 1), dt=DT, seed=seed)
    term = torchnde.MultiTerm(
        torchnde.ODETerm(drift), torchnde.ControlTerm(diffusion, bm, noise="diagonal")
    )
    sol = torchnde.solve(
        term,
        torchnde.Milstein(),
        0.0,
        T_END,
        torch.full((paths, 1), Y0),
        dt0=DT,
        saveat=torchnde.SaveAt(ts=ts),
    )
    return sol.ys


def true_drift(t, y, args):
    return THETA * (MU - y)


def true_diffusion(t, y, args):
    return SIGMA * y


class Drift(torch.nn.Module):
    def __init__(self, hidden: int = 32):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(1, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
        )

    def forward(self, t, y, args):
        return self.net(y)


class Diffusion(torch.nn.Module):
    """Positive and, as diagonal noise needs, a function of each state entry alone."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(1, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
        )

    def forward(self, t, y, args):
        return torch.nn.functional.softplus(self.net(y)) * 0.5


def statistics_error(model_ys: torch.Tensor, data_ys: torch.Tensor) -> torch.Tensor:
    """Squared error of the mean and the standard deviation across paths, summed over times."""
    mean = (model_ys.mean(dim=1) - data_ys.mean(dim=1)) ** 2
    std = (model_ys.std(dim=1) - data_ys.std(dim=1)) ** 2
    return (mean + std).sum()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (a few seconds)")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    iterations = args.iterations or (40 if args.quick else 300)
    paths = 256 if args.quick else 512
    every = max(iterations // 10, 1)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # small tensors: one thread is fastest, and fair to a shared machine

    ts = torch.linspace(T_END / OBSERVATIONS, T_END, OBSERVATIONS)
    with torch.no_grad():
        data = sample(true_drift, true_diffusion, paths, seed=1000 + args.seed, ts=ts)
    drift, diffusion = Drift(), Diffusion()
    params = [*drift.parameters(), *diffusion.parameters()]
    optimiser = torch.optim.Adam(params, lr=2e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, iterations, eta_min=1e-3)

    def held_out() -> float:
        with torch.no_grad():
            fresh = sample(drift, diffusion, paths, seed=2000 + args.seed, ts=ts)
        return float(statistics_error(fresh, data))

    before = held_out()
    print(
        f"fitting dy = f(y) dt + g(y) dW (Milstein, {int(T_END / DT)} steps, {paths} paths) to "
        f"the mean and spread of {paths} paths of dy = {THETA:g}({MU:g} - y) dt + {SIGMA:g} y dW"
    )
    start = time.perf_counter()
    for it in range(1, iterations + 1):
        loss = statistics_error(sample(drift, diffusion, paths, seed=args.seed, ts=ts), data)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if it == 1 or it % every == 0 or it == iterations:
            print(f"iteration {it:4d}  loss {loss.item():.6f}")
    after = held_out()
    print(f"statistics error on fresh paths {before:.6f} before training, {after:.6f} after")
    with torch.no_grad():
        y = torch.tensor([[0.5], [1.0], [1.5]])
        learned_f, true_f = drift(0, y, None)[:, 0], true_drift(0, y, None)[:, 0]
        learned_g, true_g = diffusion(0, y, None)[:, 0], true_diffusion(0, y, None)[:, 0]
    for i, v in enumerate(y[:, 0].tolist()):
        print(
            f"y = {v:.1f}: drift {learned_f[i]:+.3f} (true {true_f[i]:+.3f}), "
            f"diffusion {learned_g[i]:.3f} (true {true_g[i]:.3f})"
        )
    print(f"time {time.perf_counter() - start:.1f} s")
    return {"before": before, "after": after}


if __name__ == "__main__":
    main()
