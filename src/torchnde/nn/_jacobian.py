"""Jacobian quantities of a vector field inside a solve: the trace of ``∂f/∂y`` (exactly, or by
Hutchinson's estimator) and its squared Frobenius norm, from vector–Jacobian products.

These run *inside* the vector field that :func:`torchnde.solve` calls, under every adjoint: the
loop may call the field with gradients off (the forward pass of
:class:`~torchnde.BacksolveAdjoint`, inference under ``torch.no_grad()``) or on a state that does not
require grad, so :func:`differentiable_state` makes a state the products can differentiate
against, and :func:`outputs` drops the inner graph again when nothing outside asked for one.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

__all__ = [
    "AbstractTraceEstimator",
    "ExactTrace",
    "HutchinsonTrace",
    "JacobianInfo",
    "differentiable_state",
    "per_sample",
]


def per_sample(x: torch.Tensor) -> torch.Tensor:
    """Sum over every axis but the first (the batch): ``(batch, ...) -> (batch,)``; a 1-D
    ``x`` (one sample) sums to a 0-dim tensor."""
    if x.ndim <= 1:
        return x.sum()
    return x.flatten(1).sum(dim=1)


def differentiable_state(y: torch.Tensor) -> torch.Tensor:
    """``y`` itself when it is already part of a graph, else a detached copy that requires
    grad, so that ``∂f/∂y`` can be formed even where the solve runs without gradients."""
    return y if y.requires_grad else y.detach().requires_grad_(True)


@dataclass
class JacobianInfo:
    """What one evaluation learnt about ``J = ∂f/∂y`` (each ``(batch,)``, or ``None`` where not
    asked for).

    Attributes:
        trace: ``tr J`` (exact) or ``εᵀJε`` (Hutchinson).
        frobenius_sq: ``‖J‖_F²`` (exact) or ``‖εᵀJ‖²`` (Hutchinson: unbiased for ``‖J‖_F²`` when
            ``E[εεᵀ] = I``).
    """

    trace: torch.Tensor | None = None
    frobenius_sq: torch.Tensor | None = None


def _vjp(f: torch.Tensor, y: torch.Tensor, v: torch.Tensor, create_graph: bool) -> torch.Tensor:
    (g,) = torch.autograd.grad(f, y, v, create_graph=create_graph, retain_graph=True)
    return g


class AbstractTraceEstimator(abc.ABC):
    """How the divergence ``tr ∂f/∂y`` of a continuous normalising flow is computed."""

    #: whether :meth:`noise` must be drawn once per solve and handed back to :meth:`estimate`
    needs_noise: bool = False

    def noise(self, like: torch.Tensor, generator: torch.Generator | None = None):
        """The random vectors for one solve (``None`` for deterministic estimators)."""
        return None

    @abc.abstractmethod
    def estimate(
        self,
        f: torch.Tensor,
        y: torch.Tensor,
        noise: torch.Tensor | None,
        *,
        frobenius: bool,
        create_graph: bool,
    ) -> JacobianInfo:
        """The trace (and, if ``frobenius``, the squared Frobenius norm) of ``∂f/∂y``, per sample,
        for ``f = field(t, y)`` computed with ``y`` requiring grad."""


@dataclass(frozen=True)
class ExactTrace(AbstractTraceEstimator):
    """The exact trace ``Σ_i ∂f_i/∂y_i`` from one vector–Jacobian product per dimension (``d``
    products per evaluation: for low-dimensional flows, as in Chen et al. 2018's planar CNF).
    The same products give the exact ``‖∂f/∂y‖_F²`` for free."""

    max_dim: int = 64

    def estimate(self, f, y, noise, *, frobenius, create_graph):
        event = f.shape[1:] if f.ndim > 1 else f.shape
        dim = event.numel()
        if dim > self.max_dim:
            raise ValueError(
                f"`ExactTrace` takes one vector–Jacobian product per dimension, and the state has "
                f"{dim} > max_dim={self.max_dim}; use `HutchinsonTrace()` (one product per "
                f"evaluation) or raise `ExactTrace(max_dim={dim})`"
            )
        flat_f = f.reshape(-1, dim)
        trace = torch.zeros(flat_f.shape[0], dtype=f.dtype, device=f.device)
        frob = torch.zeros_like(trace) if frobenius else None
        for i in range(dim):
            row = _vjp(flat_f[:, i].sum(), y, None, create_graph).reshape(-1, dim)
            trace = trace + row[:, i]
            if frob is not None:
                frob = frob + row.pow(2).sum(dim=1)
        if f.ndim <= 1:
            trace = trace.reshape(())
            frob = None if frob is None else frob.reshape(())
        return JacobianInfo(trace, frob)


_NOISES = ("rademacher", "gaussian")


@dataclass(frozen=True)
class HutchinsonTrace(AbstractTraceEstimator):
    """Hutchinson's estimator ``tr J ≈ εᵀJε`` (Hutchinson 1989), as FFJORD uses it (Grathwohl,
    Chen, Bettencourt, Sutskever & Duvenaud, *FFJORD: Free-form continuous dynamics for scalable
    reversible generative models*, ICLR 2019): one vector–Jacobian product ``εᵀJ`` per
    evaluation, whatever the dimension. ``ε`` is drawn once per solve (the estimate must be the
    same function of ``y`` at every stage for the solver to integrate it), Rademacher (±1,
    lower variance) or standard Gaussian; both have ``E[εεᵀ] = I``, so the estimate is unbiased,
    and ``‖εᵀJ‖²`` is an unbiased estimate of ``‖J‖_F²`` (Finlay et al. 2020) at no extra cost.

    Args:
        distribution: ``"rademacher"`` (default) or ``"gaussian"``.
    """

    distribution: str = "rademacher"
    needs_noise = True

    def __post_init__(self):
        if self.distribution not in _NOISES:
            raise ValueError(
                f"`distribution` must be one of {_NOISES}, got {self.distribution!r}; e.g. "
                "`HutchinsonTrace('rademacher')`"
            )

    def noise(self, like, generator=None):
        eps = torch.randn(like.shape, dtype=like.dtype, device=like.device, generator=generator)
        if self.distribution == "rademacher":
            return torch.where(eps >= 0, 1.0, -1.0).to(like.dtype)
        return eps

    def estimate(self, f, y, noise, *, frobenius, create_graph):
        if noise is None or noise.shape != f.shape:
            raise ValueError(
                f"`HutchinsonTrace` needs one noise vector shaped like the state {tuple(f.shape)}, "
                f"got {None if noise is None else tuple(noise.shape)}; draw it with "
                "`estimator.noise(y0)` once per solve"
            )
        e_j = _vjp(f, y, noise, create_graph)
        return JacobianInfo(per_sample(e_j * noise), per_sample(e_j.pow(2)) if frobenius else None)
