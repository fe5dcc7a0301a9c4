"""A convolution is a PDE stencil, and the adjoint equation is backpropagation: two diagnostics.

1. Ruthotto & Haber (2019): a 3-tap kernel on a grid of spacing h is
   ``u_t = β₁u + β₂u_x + β₃u_xx`` by central differences, and a residual layer ``u + δt·K*u`` is
   a forward-Euler step. A residual CNN (10 layers sharing one kernel) is fitted to exact
   snapshots of the advection–diffusion equation ``u_t = −c u_x + ν u_xx``; its kernel, read with
   :func:`torchnde.diagnostics.stencil_to_pde`, gives back ``c`` and ``ν``.
2. :func:`torchnde.diagnostics.adjoint_check`: on an MLP field in float64, the continuous
   adjoint's gradient equals backpropagation's and ``a·f`` is conserved along the backward solve.

Run ``python examples/convolution_pde.py`` (seconds) or with ``--quick``.
"""

from __future__ import annotations

import argparse

import torch

from torchnde.data import advection_diffusion
from torchnde.diagnostics import adjoint_check, pde_to_stencil, stencil_step, stencil_to_pde
from torchnde.nn import MLPField

VELOCITY, DIFFUSIVITY, DT = 1.2, 0.03, 2e-3


def learn_stencil(layers: int, iterations: int) -> tuple[torch.Tensor, float]:
    u0, u1, h = advection_diffusion(
        32, grid=128, velocity=VELOCITY, diffusivity=DIFFUSIVITY, dt=DT, modes=3, seed=0
    )
    kernel = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [kernel],
        max_iter=iterations,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-14,
        tolerance_change=1e-16,
    )

    def closure():
        optimiser.zero_grad()
        u = u0
        for _ in range(layers):
            u = stencil_step(u, kernel, DT / layers)
        loss = (u - u1).square().mean() / DT**2
        loss.backward()
        return loss

    optimiser.step(closure)
    return kernel.detach(), h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer layers and iterations")
    args = parser.parse_args()
    torch.set_num_threads(1)

    h = 1 / 128
    truth = pde_to_stencil([0.0, -VELOCITY, DIFFUSIVITY], h)
    print(
        f"the stencil of u_t = -{VELOCITY} u_x + {DIFFUSIVITY} u_xx at h = 1/128: "
        f"{[round(w, 4) for w in truth.tolist()]}"
    )
    kernel, h = learn_stencil(layers=5 if args.quick else 10, iterations=50 if args.quick else 200)
    beta = stencil_to_pde(kernel, h)
    print(f"learned kernel {[round(w, 4) for w in kernel.tolist()]}")
    print(
        f"recovered c = {-beta[1].item():.4f} (truth {VELOCITY}), "
        f"nu = {beta[2].item():.5f} (truth {DIFFUSIVITY}), beta1 = {beta[0].item():.2e}"
    )

    torch.manual_seed(0)
    field = MLPField(3, hidden=16).double()
    y0 = torch.randn(8, 3, dtype=torch.float64)
    check = adjoint_check(field, y0, 0.0, 1.0, rtol=1e-10, atol=1e-10)
    print()
    print(check.report())


if __name__ == "__main__":
    main()
