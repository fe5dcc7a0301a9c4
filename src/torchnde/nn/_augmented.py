"""Augmented and second-order neural ODEs: a :class:`NeuralODE` on a larger state."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..solvers import AbstractSolver
from ._neural_ode import NeuralODE

__all__ = ["AugmentedNeuralODE", "SecondOrderNeuralODE"]


class AugmentedNeuralODE(nn.Module):
    """An augmented neural ODE (Dupont, Doucet & Teh, *Augmented Neural ODEs*, NeurIPS 2019).

    The flow of an ODE is a homeomorphism: trajectories cannot cross, so a neural ODE in the
    data's own dimension cannot represent maps such as ``g(-1) = 1, g(1) = -1``, or separate a disk
    from the annulus around it. Appending ``augment`` zeros to the state, ``[x, 0] ∈ R^{d+p}``,
    lets the flow lift points past each other; a readout (by default the first ``d``
    coordinates, or any module you give) maps the final state to the output.

    Args:
        field: the vector field on the augmented state, ``field(t, y, args)`` with ``y`` of
            ``d + augment`` features (channels) along ``axis``.
        solver, t0, t1: as in :class:`NeuralODE` (the layer solves through one; it is
            ``self.ode``, so ``with_solver``/``discretised`` apply).
        ode_kwargs: the keywords of :class:`NeuralODE` (``steps``, ``dt0``, ``controller``,
            ``adjoint``, ``batch_axis``, ``max_steps``).
        augment: how many zero dimensions (channels) to append, ``>= 0``.
        axis: the feature axis to pad (``-1`` for vectors ``(batch, d)``; ``1`` for images
            ``(batch, channels, h, w)``, as in the paper's convolutional ANODE).
        readout: applied to the final augmented state; ``None`` keeps the first ``d`` features
            (the data's own dimensions), ``nn.Identity()`` returns the whole state.

    Example:
        >>> anode = AugmentedNeuralODE(MLPField(2), Dopri5(), 0.0, 1.0, augment=1,
        ...                            controller=PIDController(rtol=1e-3, atol=1e-4))
        >>> anode(torch.tensor([[-1.0], [1.0]])).shape
        torch.Size([2, 1])
    """

    def __init__(
        self,
        field: Any,
        solver: AbstractSolver,
        t0: float = 0.0,
        t1: float = 1.0,
        *,
        augment: int,
        axis: int = -1,
        readout: nn.Module | None = None,
        **ode_kwargs: Any,
    ):
        super().__init__()
        if isinstance(augment, bool) or not isinstance(augment, int) or augment < 0:
            raise ValueError(
                f"`augment` must be an int >= 0 (how many zero dimensions to append), "
                f"got {augment!r}"
            )
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"`axis` must be an int (the feature axis), got {axis!r}")
        self.augment = augment
        self.axis = axis
        self.readout = readout
        self.ode = NeuralODE(field, solver, t0, t1, **ode_kwargs)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``[x, 0]``: ``augment`` zeros appended along :attr:`axis`."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"the input must be a tensor, got {type(x).__name__}")
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(
                f"`axis={self.axis}` is not an axis of the input of shape {tuple(x.shape)}"
            )
        shape = list(x.shape)
        shape[self.axis] = self.augment
        return torch.cat([x, x.new_zeros(shape)], dim=self.axis)

    def flow(self, x: torch.Tensor, args: Any = None) -> Any:
        """The augmented state at ``t1`` (or the layer's ``saveat`` values), before the readout."""
        return self.ode(self.pad(x), args)

    def forward(self, x: torch.Tensor, args: Any = None) -> Any:
        y = self.flow(x, args)
        if self.readout is not None:
            return self.readout(y)
        return y.narrow(self.axis, 0, x.shape[self.axis])

    @property
    def last_stats(self) -> dict[str, torch.Tensor]:
        """The statistics of the latest solve (``nfe``, ``num_steps``, …)."""
        return self.ode.last_stats

    def extra_repr(self) -> str:
        return f"augment={self.augment}, axis={self.axis}"


class _SecondOrderField(nn.Module):
    """``d/dt (x, v) = (v, a(t, x, v))``."""

    def __init__(self, acceleration: Any):
        super().__init__()
        self.acceleration = acceleration

    def forward(self, t, state, args):
        x, v = state
        a = self.acceleration(t, x, v, args)
        if not isinstance(a, torch.Tensor) or a.shape != x.shape:
            raise ValueError(
                f"`acceleration(t, x, v, args)` must return a tensor shaped like x "
                f"{tuple(x.shape)}, got {getattr(a, 'shape', type(a).__name__)}"
            )
        return (v, a)


class SecondOrderNeuralODE(nn.Module):
    """A second-order neural ODE ``x'' = a(t, x, x')`` (Norcliffe, Bodnar, Day, Simidjievski &
    Liò, *On second order behaviour in augmented neural ODEs*, NeurIPS 2020; Yildiz, Heinonen &
    Lähdesmäki, *ODE²VAE*, NeurIPS 2019), solved as the first-order system
    ``d/dt (x, v) = (v, a(t, x, v))`` on the tuple state ``(x, v)`` — so every solver, controller
    and adjoint applies. It is an augmented ODE whose extra dimensions are the velocity, with
    the structure of a mechanical system built in.

    Args:
        acceleration: ``a(t, x, v, args)`` returning a tensor shaped like ``x``.
        solver, t0, t1: as in :class:`NeuralODE`.
        ode_kwargs: the keywords of :class:`NeuralODE` (``steps``, ``dt0``, ``controller``,
            ``adjoint``, ``saveat``, ``batch_axis``, ``max_steps``).
        initial_velocity: ``v0 = initial_velocity(x0)`` when :meth:`forward` gets no ``v0``
            (SONODE learns it with a network); ``None``: zero.

    :meth:`forward` returns ``(x, v)`` at ``t1`` (or at the ``saveat`` times).
    """

    def __init__(
        self,
        acceleration: Any,
        solver: AbstractSolver,
        t0: float = 0.0,
        t1: float = 1.0,
        *,
        initial_velocity: nn.Module | None = None,
        **ode_kwargs: Any,
    ):
        super().__init__()
        if not callable(acceleration):
            raise TypeError(
                f"`acceleration` must be callable as a(t, x, v, args), got {type(acceleration)}"
            )
        self.initial_velocity = initial_velocity
        self.ode = NeuralODE(_SecondOrderField(acceleration), solver, t0, t1, **ode_kwargs)

    def forward(self, x0: torch.Tensor, v0: torch.Tensor | None = None, args: Any = None):
        if v0 is None:
            v0 = (
                torch.zeros_like(x0) if self.initial_velocity is None else self.initial_velocity(x0)
            )
        if not isinstance(v0, torch.Tensor) or v0.shape != x0.shape:
            raise ValueError(
                f"the initial velocity must be shaped like x0 {tuple(x0.shape)}, got "
                f"{getattr(v0, 'shape', type(v0).__name__)}"
            )
        return self.ode((x0, v0), args)

    @property
    def last_stats(self) -> dict[str, torch.Tensor]:
        """The statistics of the latest solve."""
        return self.ode.last_stats
