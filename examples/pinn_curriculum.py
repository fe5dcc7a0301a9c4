"""Curriculum regularisation for a PINN that fails (Krishnapriyan et al., NeurIPS 2021).

Convection u_t + beta*u_x = 0 on [0, 2pi) x [0, 1], periodic, u(x, 0) = sin(x), at beta = 30.
Trained at once, a physics-informed network settles on a wrong, smooth solution; trained first
at beta = 1, then 10, 20 and 30, each stage starting from the last one's weights, it finds the
travelling wave. The run prints each stage's loss terms and error.

    python examples/pinn_curriculum.py            # a few minutes
    python examples/pinn_curriculum.py --quick    # seconds: shows the machinery only
"""

from __future__ import annotations

import argparse

import torch

from torchnde import pinn
from torchnde.training import Stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings that run in seconds")
    parser.add_argument("--beta", type=float, default=30.0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    problem = pinn.convection(beta=args.beta)  # or build your own pinn.PDEProblem
    steps = 15 if args.quick else 1000
    settings = dict(
        stages=[Stage("lbfgs", steps=steps, options={"history_size": 50})],
        # the paper's network: 4 x 50 tanh on raw (x, t), PyTorch's default initialisation
        network=pinn.Network(width=50, depth=4, scale_inputs=False, init="torch"),
        points=pinn.Points(collocation=128 if args.quick else 1000, initial=256, boundary=100),
        evaluation={"x": 64 if args.quick else 256, "t": 25 if args.quick else 100},
    )
    plain = pinn.train(problem, **settings)
    print(f"plain training at beta = {args.beta:g}: relative L2 error {plain.error:.3g}")

    values = [10.0, args.beta] if args.quick else [1.0, 10.0, 20.0, args.beta]
    curriculum = pinn.train(problem, paradigm=pinn.Curriculum("beta", values), **settings)
    for phase in curriculum.phases:
        terms = ", ".join(f"{name} {value:.2e}" for name, value in phase.terms.items())
        print(
            f"curriculum stage {phase.name}: {phase.status.value}, loss terms [{terms}], "
            f"error {phase.error:.3g}"
        )
    print(f"curriculum at beta = {args.beta:g}: relative L2 error {curriculum.error:.3g}")


if __name__ == "__main__":
    main()
