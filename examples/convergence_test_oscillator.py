"""The convergence test on a harmonic oscillator (Krishnapriyan, Queiruga, Erichson & Mahoney
2023, *Learning continuous models for continuous physics*).

Data: pairs ``(y(t), y(t + 0.5))`` of ``x' = y, y' = −x``. A shallow tanh network ``G`` (50 units)
is trained so that one step of a numerical scheme, ``y + scheme[G, 0.5](y)``, maps each input to
its target — once through ``Euler()``, once through ``Midpoint()``, once through ``RK4()``. All
three fit the data. Then :func:`torchnde.diagnostics.convergence_test` evaluates each trained
``G`` with every scheme at 1…64 steps, without retraining: the Euler- and Midpoint-trained
networks get *worse* as the step shrinks (they learned the one-step map, not the vector field),
the RK4-trained one stays on the data (it learned the oscillator's vector field).

Run ``python examples/convergence_test_oscillator.py`` (about 30 s) or with ``--quick``
(seconds); ``--plot FILE.png`` saves the figure.
"""

from __future__ import annotations

import argparse

import torch

import torchnde as tn
from torchnde.data import damped_oscillator
from torchnde.diagnostics import convergence_test
from torchnde.nn import MLPField, NeuralODE

DT = 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer training iterations")
    parser.add_argument("--plot", metavar="FILE", help="save the Euler-trained net's plot")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x0, x1 = damped_oscillator(512, t1=DT, damping=0.0, frequency=1.0, seed=0)
    xt0, xt1 = damped_oscillator(256, t1=DT, damping=0.0, frequency=1.0, seed=1)
    iterations = 400 if args.quick else 3000
    for scheme in (tn.Euler(), tn.Midpoint(), tn.RK4()):
        torch.manual_seed(0)
        model = NeuralODE(MLPField(2, hidden=50), scheme, 0.0, DT, steps=1)
        optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, iterations)
        for _ in range(iterations):
            optimiser.zero_grad()
            (model(x0) - x1).square().mean().backward()
            optimiser.step()
            schedule.step()
        result = convergence_test(model, xt0, xt1)
        name = type(scheme).__name__
        print(f"\n== trained with {name}, one step of {DT}")
        print(result.table())
        print(f"verdict trained with {name}: {result.verdict} (ratio {result.ratio:.2f})")
        if args.plot and name == "Euler":
            result.plot("trained with Euler").savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
