"""``NeuralODE``: the solve of ``dy/dt = field(t, y, args)`` as a layer, whose discretisation
(solver, steps or controller) can be swapped after training."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from .._saveat import SaveAt
from .._solution import Solution
from .._solve import DEFAULT_MAX_STEPS, solve
from ..adjoints import AbstractAdjoint, DirectAdjoint
from ..controllers import AbstractController, ConstantStepSize
from ..solvers import AbstractSolver
from ..terms import ODETerm

__all__ = ["Discretisation", "NeuralODE", "discretised", "neural_odes"]


@dataclass(frozen=True)
class Discretisation:
    """How a :class:`NeuralODE` is solved: the solver and either a number of equal steps, a
    step size, or an adaptive controller.

    Args:
        solver: e.g. ``Euler()``, ``RK4()``, ``Dopri5()``.
        steps: this many equal steps from ``t0`` to ``t1`` (fixed-step solving).
        dt0: the (first) step size; with ``ConstantStepSize`` the steps are of this size.
        controller: the step-size controller (default: ``ConstantStepSize()``).

    Give ``steps`` or ``dt0`` for constant steps; an adaptive controller needs neither.
    """

    solver: AbstractSolver
    steps: int | None = None
    dt0: float | None = None
    controller: AbstractController | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.solver, AbstractSolver):
            raise TypeError(
                f"`solver` must be a torchnde solver such as Euler() or Dopri5(), got "
                f"{self.solver!r}; note the parentheses: RK4() not RK4"
            )
        if self.controller is not None and not isinstance(self.controller, AbstractController):
            raise TypeError(
                f"`controller` must be a torchnde controller such as ConstantStepSize() or "
                f"PIDController(rtol=1e-6, atol=1e-8), got {self.controller!r}"
            )
        if self.steps is not None:
            if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
                raise ValueError(f"`steps` must be an int >= 1, got {self.steps!r}")
            if self.dt0 is not None:
                raise ValueError(
                    f"give `steps` or `dt0`, not both (got steps={self.steps}, dt0={self.dt0})"
                )
            if self.adaptive:
                raise ValueError(
                    f"`steps={self.steps}` asks for equal steps, but the controller "
                    f"{type(self.controller).__name__} chooses its own; drop `steps`, or drop "
                    "the controller"
                )
        if self.dt0 is not None and not (isinstance(self.dt0, int | float) and self.dt0 > 0):
            raise ValueError(f"`dt0` must be a number > 0, got {self.dt0!r}")
        if self.steps is None and self.dt0 is None and not self.adaptive:
            raise ValueError(
                f"{type(self.solver).__name__}() with constant steps needs `steps=N` (or "
                "`dt0=...`); for adaptive steps pass `controller=PIDController(rtol=1e-6, "
                "atol=1e-8)` with an embedded method such as Dopri5()"
            )

    @property
    def adaptive(self) -> bool:
        """Whether the controller chooses the steps."""
        return self.controller is not None and bool(self.controller.adaptive)

    def describe(self) -> str:
        """e.g. ``"RK4, 8 steps"`` or ``"Dopri5, PIDController"``."""
        name = type(self.solver).__name__
        if self.steps is not None:
            return f"{name}, {self.steps} step{'s' if self.steps != 1 else ''}"
        if self.dt0 is not None and not self.adaptive:
            return f"{name}, dt={self.dt0:g}"
        return f"{name}, {type(self.controller).__name__}"


class NeuralODE(nn.Module):
    """A neural ODE layer: ``y0 -> y(t1)`` where ``dy/dt = field(t, y, args)`` (Chen, Rubanova,
    Bettencourt & Duvenaud, *Neural Ordinary Differential Equations*, NeurIPS 2018).

    The forward pass is one call of :func:`torchnde.solve`; every solver, controller and adjoint
    of the library applies. The discretisation is a separate, swappable part: a model trained
    with ``Euler()`` and 4 steps (a 4-block ResNet) can be evaluated with ``RK4()`` and 64 steps
    (:meth:`with_solver`, :func:`discretised`) — the mechanism of the convergence test
    (:func:`torchnde.diagnostics.convergence_test`).

    Args:
        field: the vector field, an ``nn.Module`` (or callable) ``field(t, y, args)`` returning a
            tensor shaped like ``y``; its parameters are the layer's.
        solver: how a step is taken (``Euler()``, ``RK4()``, ``Dopri5()``, …).
        t0, t1: the span of depth (or time) to integrate over.
        steps: equal steps from ``t0`` to ``t1`` for a fixed-step solve.
        dt0: a step size instead of ``steps`` (constant steps), or the first step of an adaptive
            solve.
        controller: the step-size controller, e.g. ``PIDController(rtol=1e-6, atol=1e-8)``.
        adjoint: how gradients flow: ``DirectAdjoint()`` (default), ``CheckpointAdjoint()``,
            ``BacksolveAdjoint()`` (memory flat in the steps).
        saveat: what to return; default ``None``: the state at ``t1`` alone, shaped like ``y0``.
            Otherwise the forward pass returns ``Solution.ys`` (times stacked on axis 0, or on
            axis 1 with ``batch_axis=0``).
        batch_axis: ``None`` (one solve for the whole batch, as in torchdiffeq) or ``0`` (every
            sample its own steps and status).
        max_steps: the most steps a solve may take.

    Attributes:
        last_stats: the statistics of the latest solve (``nfe``, ``num_steps``, …; detached).

    Example:
        >>> field = MLPField(2, hidden=64)
        >>> model = NeuralODE(field, Euler(), 0.0, 1.0, steps=4)       # a 4-block ResNet
        >>> fine = model.with_solver(RK4(), steps=64)                    # same weights
        >>> model(torch.randn(16, 2)).shape
        torch.Size([16, 2])
    """

    def __init__(
        self,
        field: Any,
        solver: AbstractSolver,
        t0: float = 0.0,
        t1: float = 1.0,
        *,
        steps: int | None = None,
        dt0: float | None = None,
        controller: AbstractController | None = None,
        adjoint: AbstractAdjoint | None = None,
        saveat: SaveAt | None = None,
        batch_axis: int | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
    ):
        super().__init__()
        if not callable(field):
            raise TypeError(
                f"`field` must be an nn.Module (or callable) field(t, y, args), got "
                f"{type(field).__name__}"
            )
        for name, value in (("t0", t0), ("t1", t1)):
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise TypeError(f"`{name}` must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"`{name}` must be finite, got {value!r}")
        if t0 == t1:
            raise ValueError(f"`t0` and `t1` are both {t0}; give a span, e.g. t0=0.0, t1=1.0")
        if adjoint is not None and not isinstance(adjoint, AbstractAdjoint):
            raise TypeError(f"`adjoint` must be a torchnde adjoint, got {adjoint!r}")
        if saveat is not None and not isinstance(saveat, SaveAt):
            raise TypeError(f"`saveat` must be a SaveAt, got {saveat!r}")
        self.field = field
        self.t0 = float(t0)
        self.t1 = float(t1)
        self.discretisation = Discretisation(solver, steps, dt0, controller)
        self.adjoint = DirectAdjoint() if adjoint is None else adjoint
        self.saveat = saveat
        self.batch_axis = batch_axis
        self.max_steps = max_steps
        self.last_stats: dict[str, torch.Tensor] = {}
        self._term = ODETerm(field)

    @property
    def solver(self) -> AbstractSolver:
        """The current solver."""
        return self.discretisation.solver

    @property
    def steps(self) -> int | None:
        """The current number of equal steps (``None`` when not solving with equal steps)."""
        return self.discretisation.steps

    def solve(self, y0: Any, args: Any = None) -> Solution:
        """The whole :class:`~torchnde.Solution` of the solve from ``y0`` (statistics, status)."""
        d = self.discretisation
        dt0 = d.dt0
        if d.steps is not None:
            dt0 = (self.t1 - self.t0) / d.steps
        elif dt0 is not None and self.t1 < self.t0:
            dt0 = -dt0
        sol = solve(
            self._term,
            d.solver,
            self.t0,
            self.t1,
            y0,
            dt0=dt0,
            args=args,
            saveat=self.saveat if self.saveat is not None else SaveAt(t1=True),
            controller=d.controller if d.controller is not None else ConstantStepSize(),
            adjoint=self.adjoint,
            max_steps=self.max_steps,
            batch_axis=self.batch_axis,
        )
        self.last_stats = {k: v.detach() for k, v in sol.stats.items()}
        return sol

    def forward(self, y0: Any, args: Any = None) -> Any:
        """``y(t1)`` shaped like ``y0`` (or ``Solution.ys`` when the layer has a ``saveat``)."""
        ys = self.solve(y0, args).ys
        if self.saveat is not None:
            return ys
        axis = 1 if self.batch_axis == 0 else 0
        return _select(ys, axis)

    def with_solver(
        self,
        solver: AbstractSolver,
        *,
        steps: int | None = None,
        dt0: float | None = None,
        controller: AbstractController | None = None,
    ) -> NeuralODE:
        """The same layer — the same field, sharing its parameters — with another
        discretisation.

        Example:
            >>> resnet_like = NeuralODE(field, Euler(), 0.0, 4.0, steps=4)
            >>> refined = resnet_like.with_solver(RK4(), steps=32)
        """
        twin = _shallow_copy(self)
        twin.discretisation = Discretisation(solver, steps, dt0, controller)
        return twin

    def extra_repr(self) -> str:
        return f"t0={self.t0:g}, t1={self.t1:g}, {self.discretisation.describe()}"


def _select(ys: Any, axis: int) -> Any:
    """The last saved value along ``axis`` of every leaf of ``ys``."""
    if isinstance(ys, torch.Tensor):
        return ys.select(axis, -1)
    if isinstance(ys, dict):
        return {k: _select(v, axis) for k, v in ys.items()}
    return type(ys)(_select(v, axis) for v in ys)


def _shallow_copy(model: NeuralODE) -> NeuralODE:
    """A new NeuralODE holding the same field module (shared parameters) and settings."""
    twin = NeuralODE.__new__(NeuralODE)
    nn.Module.__init__(twin)
    twin.field = model.field
    for name in ("t0", "t1", "discretisation", "adjoint", "saveat", "batch_axis", "max_steps"):
        setattr(twin, name, getattr(model, name))
    twin.last_stats = {}
    twin._term = model._term
    twin.train(model.training)
    return twin


def neural_odes(module: nn.Module) -> list[NeuralODE]:
    """Every :class:`NeuralODE` inside ``module`` (itself included), in module order."""
    return [m for m in module.modules() if isinstance(m, NeuralODE)]


@contextlib.contextmanager
def discretised(
    module: nn.Module,
    solver: AbstractSolver,
    *,
    steps: int | None = None,
    dt0: float | None = None,
    controller: AbstractController | None = None,
) -> Iterator[nn.Module]:
    """Temporarily solve every :class:`NeuralODE` inside ``module`` with another discretisation.

    For models that wrap a neural ODE (an encoder, the ODE block, a classifier head): the
    weights stay, the discretisation changes, and it is restored on leaving the block.

    Args:
        module: a model holding one or more :class:`NeuralODE` layers.
        solver, steps, dt0, controller: the discretisation (as in :class:`Discretisation`).

    Raises:
        ValueError: ``module`` holds no NeuralODE.

    Example:
        >>> with discretised(classifier, RK4(), steps=16):
        ...     accuracy = (classifier(x).argmax(1) == y).float().mean()
    """
    layers = neural_odes(module)
    if not layers:
        raise ValueError(
            f"`module` ({type(module).__name__}) holds no NeuralODE layer whose discretisation "
            "could be changed"
        )
    new = Discretisation(solver, steps, dt0, controller)
    previous = [layer.discretisation for layer in layers]
    try:
        for layer in layers:
            layer.discretisation = replace(new)
        yield module
    finally:
        for layer, old in zip(layers, previous):
            layer.discretisation = old
