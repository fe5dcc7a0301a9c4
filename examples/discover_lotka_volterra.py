"""Discover the missing physics of a predator–prey system from noisy data, in Python.

The seed lecture's workflow with the library alone (``torchnde demo`` runs the same from a
config file and writes a run folder with plots and a report):

1. data from dx/dt = 1.1x − 0.4xy, dy/dt = 0.1xy − 0.4y, x(0) = y(0) = 10, with 5% noise;
2. a hybrid model that knows the linear terms and has networks for the interactions,
   dx/dt = 1.1x + NN1(x, y), dy/dt = NN2(x, y) − θy, trained through the solver;
3. sparse regression of the networks on states along the windows' fitted solutions (where the
   data are), candidate laws compared on the data, the chosen one refitted and checked;
4. a forecast past the training window, beside a purely black-box neural ODE.

Run ``python examples/discover_lotka_volterra.py`` (about a minute and a half on two CPU cores)
or with ``--quick`` (about half a minute).
"""

from __future__ import annotations

import argparse

import torch

from torchnde.hybrid import (
    DiscoverySpec,
    ForecastSpec,
    NetworkSpec,
    RunSpec,
    SyntheticData,
    SystemSpec,
    TrainingSpec,
    discover,
    simulate,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer training steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and the networks")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a two-state system: one thread is fastest

    system = SystemSpec(
        states=("x", "y"),
        equations={"x": "alpha*x + NN1(x, y)", "y": "NN2(x, y) - theta*y"},
        constants={"alpha": 1.1},
        parameters={"theta": 0.1},
        networks={"NN1": NetworkSpec(hidden=32, depth=2), "NN2": NetworkSpec(hidden=32, depth=2)},
    )
    data = SyntheticData(
        equations={"x": "alpha*x - beta*x*y", "y": "gamma*x*y - delta*y"},
        parameters={"alpha": 1.1, "beta": 0.4, "gamma": 0.1, "delta": 0.4},
        initial={"x": 10.0, "y": 10.0},
        t_end=15.0,
        n_points=151,
        noise=0.05,
        seed=args.seed,
    )
    steps = (150, 60, 40, 10, 100, 20) if args.quick else (300, 200, 100, 30, 300, 100)
    spec = RunSpec(
        name="lotka_volterra",
        system=system,
        training=TrainingSpec(
            window=8, solver="rk4", dt=0.1, adam_steps=steps[0], lbfgs_steps=steps[1]
        ),
        discovery=DiscoverySpec(
            degree=2, threshold=0.1, refit_steps=steps[2], trajectory_steps=steps[3]
        ),
        forecast=ForecastSpec(
            horizon=2.0, blackbox_adam_steps=steps[4], blackbox_lbfgs_steps=steps[5]
        ),
        seed=args.seed,
    )
    result = discover(spec, simulate(data, system.states), progress=False, log=print)

    sampling = result.sampling
    print(
        f"\nthe networks were sampled at {sampling.ts.shape[0]} states on {sampling.windows} "
        f"windows, {100 * sampling.fraction_outside:.1f}% outside the data's range"
    )
    print(f"selection: {result.selection.reason}")
    if not result.law_found:
        return
    print("\nrecovered terms:")
    for name, rec in result.recoveries.items():
        print(f"  {name}: {rec.expression}   (truth: {rec.truth})")
    theta = result.parameters["recovered"]["theta"]
    print(f"theta = {theta:.4f} (truth 0.4)")
    for name, error in result.forecast.relative_errors.items():
        print(f"forecast relative RMSE {name}: {error:.4f}")
    print(f"done in {result.seconds:.1f} s")


if __name__ == "__main__":
    main()
