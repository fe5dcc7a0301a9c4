"""Classify spirals as clockwise or anticlockwise from irregular, partial observations with a
neural CDE.

Every spiral (``torchnde.data.spirals``) keeps a random half of its 100 points, so each series
has its own observation times, and one of its two coordinates is missing (NaN) at another 10 %
of the kept times. ``torchnde.nn.NeuralCDE`` turns each series — with time as a channel — into
a continuous path and solves ``dz = f(z) dX`` along it (Kidger et al., NeurIPS 2020); a linear
readout of the final state gives the class.

Run ``python examples/neural_cde_spirals.py`` (about a minute) or with ``--quick`` (seconds).
"""

from __future__ import annotations

import argparse

import torch

import torchnde as tn
from torchnde.data import spirals
from torchnde.nn import NeuralCDE


def irregular(n: int, seed: int, gen: torch.Generator):
    """Per-sample times ``(n, 50)``, values ``(n, 50, 2)`` with NaN gaps, labels ``(n,)``."""
    t, xy, labels = spirals(n, points=100, noise=0.05, seed=seed)
    keep = torch.stack([torch.randperm(100, generator=gen)[:50] for _ in range(n)]).sort(1).values
    ts = t[keep]
    xs = torch.gather(xy, 1, keep[..., None].expand(-1, -1, 2))
    gaps = torch.rand(n, 50, generator=gen) < 0.1
    channel = torch.randint(0, 2, (n, 50), generator=gen)
    xs[gaps & (channel == 0), 0] = float("nan")
    xs[gaps & (channel == 1), 1] = float("nan")
    return ts, xs, labels


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    n_train, epochs = (64, 2) if args.quick else (512, 10)

    train = irregular(n_train, args.seed, gen)
    test = irregular(200, args.seed + 1, gen)
    model = NeuralCDE(2, 16, 2, solver=tn.RK4(), dt0=1.0)  # one RK4 step per observation

    def accuracy() -> float:
        with torch.no_grad():
            return (model(test[0], test[1]).argmax(1) == test[2]).float().mean().item()

    before = accuracy()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n_train, generator=gen)
        for k in range(0, n_train, 32):
            b = order[k : k + 32]
            loss = torch.nn.functional.cross_entropy(model(train[0][b], train[1][b]), train[2][b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch:3d}  loss {loss.item():.4f}", flush=True)
    after = accuracy()
    print(f"test accuracy: {100 * before:.1f} % before training, {100 * after:.1f} % after")
    return {"before": before, "after": after}


if __name__ == "__main__":
    main()
