"""Recurrent cells are discretised ODEs: train a coRNN on the adding problem, then run the same
trained weights through other torchnde solvers.

A coRNN (Rusch & Mishra 2021) is the IMEX discretisation of coupled damped oscillators driven by
the input, ``y'' = tanh(W y + 𝒲 y' + V u + b) - γ y - ε y'``. After training it with its own
scheme, ``integrate_cell`` solves the very same ODE with Euler, Heun or RK4 (each input held for
the cell's ``dt``): the closer the scheme is to the continuous model, the closer its answers are
to the IMEX-trained ones -- the discrete network *is* a solver of that ODE. The script also
checks that a Lipschitz RNN stepped by Euler is, to rounding, torchnde's ``Euler`` on its
right-hand side.

Run ``python examples/recurrent_cells.py`` (a few minutes on two CPU cores) or with ``--quick``.
"""

from __future__ import annotations

import argparse

import torch

import torchnde as tn
from torchnde.data import adding_problem
from torchnde.nn import CoRNN, LipschitzRNN, Recurrent, integrate_cell, run_cell


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # small cells: one thread is fastest (and fair to a shared machine)
    length, iterations = (20, 120) if args.quick else (100, 1500)

    cell = CoRNN(2, 64, dt=0.1, gamma=1.0, epsilon=1.0)
    model = Recurrent(cell, 1)
    x_test, y_test = adding_problem(200 if args.quick else 1000, length, seed=1000 + args.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-3)

    def test_mse(outputs: torch.Tensor) -> float:
        return float((model.readout(outputs).squeeze(-1) - y_test).pow(2).mean())

    print(f"training a coRNN (64 units, IMEX, dt = {cell.dt}) on the adding problem, T = {length}")
    for it in range(1, iterations + 1):
        x, y = adding_problem(64, length)
        loss = (model(x).squeeze(-1) - y).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if it % max(iterations // 6, 1) == 0 or it == 1:
            print(f"iteration {it:5d}  loss {loss.item():.4f}")

    results = {}
    with torch.no_grad():
        results["imex"] = test_mse(run_cell(cell, x_test).last)
        print(f"test MSE, the cell's own IMEX scheme:  {results['imex']:.4f} (trivial 0.167)")
        for name, solver, substeps in (
            ("euler", tn.Euler(), 1),
            ("heun", tn.Heun(), 1),
            ("rk4", tn.RK4(), 4),
        ):
            out = integrate_cell(cell, x_test, solver, substeps=substeps)
            results[name] = test_mse(out.last)
            print(f"test MSE, {name:5s} x{substeps} per input:      {results[name]:.4f}")

        lipschitz = LipschitzRNN(2, 16, dt=0.1).double()
        xs = x_test[:8].double()
        gap = run_cell(lipschitz, xs).outputs - integrate_cell(lipschitz, xs, tn.Euler()).outputs
        results["lipschitz_euler_gap"] = float(gap.abs().max())
        print(
            "Lipschitz RNN (Euler) against torchnde's Euler on its right-hand side: max "
            f"difference {results['lipschitz_euler_gap']:.1e}"
        )
    return results


if __name__ == "__main__":
    main()
