"""A PINN for your own PDE: the residual as a plain function, conditions, sampling, refinement,
and an unknown coefficient learnt from data (an inverse problem).

The damped wave u_tt + gamma*u_t = c^2 u_xx on [0, 1] x [0, 1] with u = 0 at both ends,
u(x, 0) = sin(pi x) and u_t(x, 0) = 0 (a Neumann condition on the low side of t: -u_t = 0). First
solved with c = 1 known; then c is treated as unknown and learnt from 50 noisy measurements.

    python examples/pinn_your_own_pde.py            # a few minutes: forward error ~1.5e-3, c = 1.001
    python examples/pinn_your_own_pde.py --quick    # seconds
"""

from __future__ import annotations

import argparse
import math

import torch

from torchnde import pinn
from torchnde.training import Stage

GAMMA = 0.5


def wave(u, d, p):
    """The residual: zero where the PDE holds. ``d(u, "t", "t")`` is u_tt."""
    return d(u, "t", "t") + GAMMA * d(u, "t") - p["c"] ** 2 * d(u, "x", "x")


def exact(x: torch.Tensor, t: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """The solution: one damped standing wave (omega^2 = (c pi)^2 - gamma^2 / 4)."""
    omega = math.sqrt((c * math.pi) ** 2 - GAMMA**2 / 4)
    decay = torch.exp(-GAMMA * t / 2)
    return (
        torch.sin(math.pi * x)
        * decay
        * (torch.cos(omega * t) + GAMMA / (2 * omega) * torch.sin(omega * t))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings that run in seconds")
    args = parser.parse_args()
    torch.set_num_threads(1)

    domain = pinn.Domain({"x": pinn.Interval(0.0, 1.0), "t": pinn.Interval(0.0, 1.0)}, time="t")
    conditions = [
        pinn.InitialCondition(lambda x: torch.sin(math.pi * x), hard=True),  # exact by construction
        pinn.Neumann("t", "low", 0.0, name="initial_velocity"),  # -u_t(x, 0) = 0
        pinn.Dirichlet("x", "both", 0.0),
    ]

    def reference(axes, coefficients):
        return exact(axes["x"][:, None], axes["t"][None, :], coefficients.get("c", 1.0))

    problem = pinn.PDEProblem(
        domain, wave, conditions, coefficients={"c": 1.0}, reference=reference, name="damped wave"
    )
    steps = 8 if args.quick else 400
    settings = dict(
        stages=[Stage("adam", steps=steps, lr=2e-3), Stage("lbfgs", steps=steps)],
        network=pinn.Network(width=32, depth=3),
        points=pinn.Points(
            collocation=256 if args.quick else 2000,
            initial=64,
            boundary=64,
            sampler="sobol",
            # after training, add the 100 points of largest residual among 4000 and train on
            refine=pinn.ResidualRefinement(
                rounds=1, candidates=4000, add=100, stages=(Stage("lbfgs", steps=steps),)
            ),
        ),
        weights={"initial_velocity": 10.0},
        dtype=torch.float64,
    )
    forward = pinn.train(problem, **settings)
    print(
        f"forward problem: relative L2 error {forward.error:.3g} ({forward.final.collocation} collocation points after refinement)"
    )

    generator = torch.Generator().manual_seed(0)
    where = torch.rand(50, 2, generator=generator, dtype=torch.float64)
    measured = exact(where[:, 0], where[:, 1]) + 0.01 * torch.randn(
        50, generator=generator, dtype=torch.float64
    )
    inverse = pinn.PDEProblem(
        domain,
        wave,
        [*conditions, pinn.Observations(where, measured)],
        learnable={"c": 0.5},  # an initial guess; the truth is 1
        reference=reference,
        name="damped wave, c unknown",
    )
    learnt = pinn.train(inverse, **settings)
    print(
        f"inverse problem: learnt c = {learnt.learned['c']:.4f} (truth 1), relative L2 error {learnt.error:.3g}"
    )


if __name__ == "__main__":
    main()
