"""A ResNet is an Euler solver: train a continuous-in-depth network on the 8×8 digits, read it as
a ResNet, evaluate it on other graphs, and run the convergence test.

The classifier is ``linear 64→32 → ODE block → linear 32→10``; the ODE block's vector field is a
residual block ``W₂(t) relu(W₁(t) h + b₁(t)) + b₂(t)`` whose weights are constant on 4 pieces of
``[0, 4]`` (ContinuousNet; Queiruga et al. 2020). Solved with ``Euler()`` in 4 steps it *is* a
4-block ResNet: the script converts it to a :class:`torchnde.nn.ResNet` and back and checks the
outputs agree to rounding. It then trains the same network through ``RK4()`` and shows, with
:func:`torchnde.diagnostics.convergence_test`, the published finding: the Euler-trained net
gets worse when its steps are refined (it learned a discrete map), the RK4-trained one does not
(it learned a continuous model).

Run ``python examples/continuous_depth_digits.py`` (about a minute) or with ``--quick``
(seconds). Needs scikit-learn (``pip install 'torchnde[models]'``).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import torchnde as tn
from torchnde.data import load_digits
from torchnde.diagnostics import convergence_test
from torchnde.nn import (
    ContinuousBlock,
    DepthLinear,
    NeuralODE,
    PiecewiseConstant,
    neural_ode_from_resnet,
    resnet_from_neural_ode,
)

PIECES, WIDTH = 4, 32


def build(solver: tn.AbstractSolver) -> nn.Sequential:
    basis = PiecewiseConstant(PIECES, 0.0, float(PIECES))
    block = ContinuousBlock(
        DepthLinear(WIDTH, WIDTH, basis), nn.ReLU(), DepthLinear(WIDTH, WIDTH, basis)
    )
    ode = NeuralODE(block, solver, 0.0, float(PIECES), steps=PIECES)
    return nn.Sequential(nn.Linear(64, WIDTH), ode, nn.Linear(WIDTH, 10))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        order = torch.randperm(len(y))
        for i in range(0, len(y), 128):
            index = order[i : i + 128]
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimiser.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = load_digits()
    epochs = 4 if args.quick else 30
    steps = (4, 8, 16, 32) if args.quick else (4, 8, 16, 32, 64, 128)

    euler = build(tn.Euler())
    train(euler, data.x_train, data.y_train, epochs)

    # 1. the Euler-solved network is a ResNet, exactly
    resnet = resnet_from_neural_ode(euler[1])
    with torch.no_grad():
        h = euler[0](data.x_test)
        gap = (resnet(h) - euler[1](h)).abs().max().item()
        back = (neural_ode_from_resnet(resnet)(h) - euler[1](h)).abs().max().item()
    print(
        f"ResNet of {len(resnet.blocks)} blocks (step {resnet.step:g}) vs the ODE block: "
        f"max difference {gap:.1e}; converted back: {back:.1e}"
    )

    # 2. the convergence test: the same weights on other graphs
    for name, model in (("Euler", euler), ("RK4", None)):
        if model is None:
            torch.manual_seed(0)
            model = build(tn.RK4())
            train(model, data.x_train, data.y_train, epochs)
        result = convergence_test(model, data.x_test, data.y_test, steps=steps, atol=0.005)
        print(f"\ntrained with {name}, {PIECES} steps:")
        print(result.table())
        print(
            f"verdict trained with {name}: {result.verdict} "
            f"(test error {100 * result.trained_error:.1f}% as trained, "
            f"{100 * result.limit_error:.1f}% refined)"
        )


if __name__ == "__main__":
    main()
