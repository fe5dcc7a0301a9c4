"""Causal training of a PINN (Wang, Sankaran & Perdikaris 2022), on reaction-diffusion.

u_t = nu*u_xx + rho*u*(1 - u), periodic, Gaussian u(x, 0), at nu = 3, rho = 5. The residual is
cut into time slices; slice i counts with weight exp(-eps * (loss of the slices before it)), so the
network must resolve early times before late ones count. A schedule of growing eps, each stage
warm-started from the last, reports the smallest causal weight per stage (near 1: every slice is
resolved) and the error.

    python examples/pinn_causal.py            # a few minutes
    python examples/pinn_causal.py --quick    # seconds: shows the machinery only
"""

from __future__ import annotations

import argparse

import torch

from torchnde import pinn
from torchnde.training import Stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings that run in seconds")
    args = parser.parse_args()
    torch.set_num_threads(1)

    problem = pinn.reaction_diffusion(nu=3.0, rho=5.0)
    settings = dict(
        stages=[
            Stage("adam", steps=10 if args.quick else 500, lr=1e-3),
            Stage("lbfgs", steps=10 if args.quick else 500, options={"history_size": 50}),
        ],
        points=pinn.Points(collocation=128 if args.quick else 2000, initial=256, boundary=100),
        evaluation={"x": 64 if args.quick else 256, "t": 21 if args.quick else 101},
    )
    plain = pinn.train(problem, **settings)
    print(f"plain training: relative L2 error {plain.error:.3g}")

    epsilons = (1.0, 10.0) if args.quick else (0.1, 1.0, 10.0, 100.0)
    causal = pinn.train(problem, paradigm=pinn.Causal(epsilons=epsilons, bins=16), **settings)
    for phase in causal.phases:
        print(
            f"{phase.name}: loss {phase.loss:.2e}, smallest causal weight "
            f"{phase.causal_min_weight:.3g}, error {phase.error:.3g}"
        )
    print(f"causal training: relative L2 error {causal.error:.3g}")


if __name__ == "__main__":
    main()
