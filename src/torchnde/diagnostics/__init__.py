"""Diagnostics for trained models and gradients.

- :func:`convergence_test` — has a trained continuous-depth model learned a continuous model
  (its error settles as the steps are refined) or a discrete map tied to its training step?
- :func:`stencil_to_pde`, :func:`pde_to_stencil`, :func:`stencil_step` — a 3-tap convolution is
  a finite-difference PDE operator, a residual convolution layer a forward-Euler PDE step.
- :func:`adjoint_check` — the continuous adjoint against backpropagation, and the conservation
  of ``a · f`` along its backward solve.
"""

from ._adjoint import AdjointCheck, adjoint_check
from ._convergence import ConvergencePoint, ConvergenceResult, convergence_test
from ._stencil import pde_to_stencil, stencil_step, stencil_to_pde

__all__ = [
    "AdjointCheck",
    "ConvergencePoint",
    "ConvergenceResult",
    "adjoint_check",
    "convergence_test",
    "pde_to_stencil",
    "stencil_step",
    "stencil_to_pde",
]
