"""Sequence-to-sequence time marching for a PINN that fails (Krishnapriyan et al., NeurIPS 2021).

The reaction u_t = rho*u*(1 - u), periodic in x, Gaussian u(x, 0), at rho = 5: a network trained
on the whole of [0, 1] at once stays near the initial bump (relative error ~1); learnt in ten
blocks of 0.1, each block starting from the previous block's prediction at its end, it follows
the growth to u = 1. Every block gets the same budget as the whole-domain run. The run prints
each block's error and the error so far.

    python examples/pinn_time_marching.py            # a few minutes
    python examples/pinn_time_marching.py --quick    # seconds: shows the machinery only
"""

from __future__ import annotations

import argparse

import torch

from torchnde import pinn
from torchnde.training import Stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings that run in seconds")
    parser.add_argument("--rho", type=float, default=5.0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    problem = pinn.reaction(rho=args.rho)
    settings = dict(
        stages=[Stage("lbfgs", steps=10 if args.quick else 500, options={"history_size": 50})],
        points=pinn.Points(collocation=128 if args.quick else 1000, initial=256, boundary=100),
        evaluation={"x": 64 if args.quick else 256, "t": 21 if args.quick else 101},
    )
    whole = pinn.train(problem, **settings)
    print(f"whole domain at rho = {args.rho:g}: relative L2 error {whole.error:.3g}")

    blocks = 2 if args.quick else 10
    marching = pinn.train(problem, paradigm=pinn.TimeMarching(blocks=blocks), **settings)
    for phase in marching.phases:
        print(
            f"{phase.name}: loss {phase.loss:.2e}, block error {phase.error:.3g}, error so far "
            f"{phase.error_so_far:.3g}"
        )
    print(f"time marching at rho = {args.rho:g}: relative L2 error {marching.error:.3g}")


if __name__ == "__main__":
    main()
