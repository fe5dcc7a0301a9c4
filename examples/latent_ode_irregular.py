"""Fit a latent ODE to irregularly sampled spirals, then interpolate and extrapolate them.

Each spiral (``torchnde.data.spirals``) is seen at a random subset of 20 of its first 60 times,
with noise; ``torchnde.nn.LatentODE`` reads those points backwards with an ODE-RNN encoder
(Rubanova, Chen & Duvenaud, NeurIPS 2019), samples a 4-dimensional latent initial state, solves
the latent ODE to all 100 times in one solve and reads out the positions (Chen et al., NeurIPS
2018, section 5). Training maximises the ELBO of the observed points; the error is measured on
all 100 noise-free points of spirals it never saw, including the 40 past the last observation.

Run ``python examples/latent_ode_irregular.py`` (a few minutes) or with ``--quick`` (seconds).
"""

from __future__ import annotations

import argparse

import torch

from torchnde.data import spirals
from torchnde.nn import LatentODE


def observe(n: int, seed: int, gen: torch.Generator):
    """The grid ``(100,)``, true paths ``(n, 100, 2)``, and 20 noisy observations per spiral
    among its first 60 times: ``(n, 20)`` times, ``(n, 20, 2)`` values, their grid indices."""
    t, xy, _ = spirals(n, points=100, seed=seed)
    grid = 5 * t
    idx = torch.stack([torch.randperm(60, generator=gen)[:20] for _ in range(n)]).sort(1).values
    obs = torch.gather(xy, 1, idx[..., None].expand(-1, -1, 2))
    return grid, xy, grid[idx], obs + 0.05 * torch.randn(obs.shape, generator=gen), idx


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    n_train, iterations, batch = (64, 40, 32) if args.quick else (500, 1000, 50)

    grid, _, obs_t, obs_x, idx = observe(n_train, seed=args.seed, gen=gen)
    test_grid, truth, test_t, test_x, _ = observe(100, seed=args.seed + 1, gen=gen)
    model = LatentODE(2, 4, obs_std=0.05)

    def rmse() -> float:
        with torch.no_grad():
            pred = model(test_t, test_x, ts_pred=test_grid, sample=False).pred
        return (pred - truth).pow(2).mean().sqrt().item()

    before = rmse()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    every = max(iterations // 10, 1)
    for it in range(1, iterations + 1):
        b = torch.randint(0, n_train, (batch,), generator=gen)
        out = model(obs_t[b], obs_x[b], ts_pred=grid, generator=gen)
        target = torch.full_like(out.pred, float("nan"))  # only the observed points count
        target.scatter_(1, idx[b][..., None].expand(-1, -1, 2), obs_x[b])
        loss = model.loss(out, target, kl_weight=min(1.0, it / (0.3 * iterations)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it == 1 or it % every == 0:
            print(f"iteration {it:4d}  loss {loss.item():.3f}", flush=True)
    after = rmse()
    print(f"test RMSE over all 100 times: {before:.4f} before training, {after:.4f} after")
    return {"before": before, "after": after}


if __name__ == "__main__":
    main()
