"""What a neural ODE cannot learn, and how one extra dimension fixes it (Dupont, Doucet & Teh,
*Augmented Neural ODEs*, NeurIPS 2019).

The map ``g(-1) = 1, g(1) = -1`` swaps two points on a line. The flow of a 1-D ODE keeps the
order of points (trajectories cannot cross), so a neural ODE's mean squared error on it stays at
1 or more however long it trains. ``torchnde.nn.AugmentedNeuralODE`` with one zero dimension
appended lets the two points pass each other in the plane, and fits ``g``; so does a one-step
Euler "ResNet" ``x + f(x)``, whose discrete trajectories may cross.

Run ``python examples/augmented_node.py`` or with ``--quick`` (seconds either way).
"""

from __future__ import annotations

import argparse

import torch

import torchnde as tn
from torchnde.nn import AugmentedNeuralODE, MLPField


def fit(model, x, y, iterations: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(iterations):
        loss = (model(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (model(x) - y).pow(2).mean().item()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    iterations = 100 if args.quick else 400
    x = torch.tensor([[-1.0], [1.0]])
    y = -x
    adaptive = tn.PIDController(rtol=1e-3, atol=1e-3)
    models = {
        "neural ODE (1-D)": AugmentedNeuralODE(
            MLPField(1, hidden=32), tn.Dopri5(), augment=0, controller=adaptive
        ),
        "augmented ODE (+1 dim)": AugmentedNeuralODE(
            MLPField(2, hidden=32), tn.Dopri5(), augment=1, controller=adaptive
        ),
        "one-step Euler ResNet": AugmentedNeuralODE(
            MLPField(1, hidden=32), tn.Euler(), augment=0, steps=1
        ),
    }
    results = {}
    for name, model in models.items():
        mse = fit(model, x, y, iterations)
        with torch.no_grad():
            out = model(x)[:, 0].tolist()
        nfe = int(model.last_stats["nfe"])
        print(f"{name:24s} MSE {mse:.4f}  g(-1) = {out[0]:+.3f}, g(1) = {out[1]:+.3f}  nfe {nfe}")
        results[name] = mse
    return results


if __name__ == "__main__":
    main()
