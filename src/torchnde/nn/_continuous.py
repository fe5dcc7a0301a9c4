"""Continuous-in-depth networks (Queiruga, Erichson, Taylor & Mahoney 2020): weights that vary
with depth through basis functions, so that a network is a vector field ``f(t, h)`` and any
solver and step count is one of its "graphs"; and the exact ResNet ⇔ Euler correspondence for the
piecewise-constant basis."""

from __future__ import annotations

import abc
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..solvers import Euler
from ._neural_ode import NeuralODE

__all__ = [
    "AbstractBasis",
    "ContinuousBlock",
    "DepthConv2d",
    "DepthLinear",
    "Legendre",
    "MLPField",
    "PiecewiseConstant",
    "PiecewiseLinear",
    "ResNet",
    "neural_ode_from_resnet",
    "resnet_from_neural_ode",
]

#: how far (as a share of a piece) a time may fall short of a piece's start and still count in
#: it: the stage times a solver computes, t0 + i·dt, can miss a boundary by a rounding error
_BOUNDARY_SLACK = 1e-4


class AbstractBasis(abc.ABC):
    """Basis functions ``φ_k(t)``, ``k < size``, on ``[t0, t1]``: a depth-varying weight is
    ``W(t) = Σ_k φ_k(t) W_k``."""

    t0: float
    t1: float

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """How many basis functions (parameter copies) there are."""

    @abc.abstractmethod
    def coefficients(self, t: torch.Tensor) -> torch.Tensor:
        """``(size,)`` values ``φ_k(t)`` at the 0-dim time ``t``."""

    def combine(self, stack: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``Σ_k φ_k(t) stack[k]`` for a ``(size, ...)`` stack of parameters."""
        c = self.coefficients(t).to(stack.dtype)
        return torch.tensordot(c, stack, dims=1)

    def depth(self, t: torch.Tensor) -> torch.Tensor:
        """The normalised depth ``s = (t - t0) / (t1 - t0)``, in ``[0, 1]`` on the span."""
        if t.ndim != 0:
            raise ValueError(
                f"a depth-varying layer needs one time for the whole batch (a 0-dim tensor), got "
                f"shape {tuple(t.shape)}; solve without `batch_axis=0`"
            )
        return (t - self.t0) / (self.t1 - self.t0)

    def _check_span(self) -> None:
        for name in ("t0", "t1"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"`{name}` must be a finite number, got {value!r}")
        if self.t1 <= self.t0:
            raise ValueError(f"the basis needs t0 < t1, got t0={self.t0}, t1={self.t1}")


def _check_count(name: str, value: object, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"`{name}` must be an int >= {least}, got {value!r}")


@dataclass(frozen=True)
class PiecewiseConstant(AbstractBasis):
    """``pieces`` equal intervals of ``[t0, t1]``; on piece ``k`` the weights are ``W_k``.

    Solved with ``Euler()`` and ``pieces`` steps this is exactly a ResNet of ``pieces`` blocks
    (see :func:`resnet_from_neural_ode`). A time on a boundary belongs to the piece it starts.

    Args:
        pieces: how many pieces (ResNet blocks).
        t0, t1: the span (the :class:`NeuralODE`'s).
    """

    pieces: int
    t0: float = 0.0
    t1: float = 1.0

    def __post_init__(self) -> None:
        _check_count("pieces", self.pieces, 1)
        self._check_span()

    @property
    def size(self) -> int:
        return self.pieces

    def index(self, t: torch.Tensor) -> torch.Tensor:
        """The piece that contains ``t`` (clamped to the span), a ``(1,)`` int64 tensor (no
        host synchronisation)."""
        position = self.depth(t) * self.pieces + _BOUNDARY_SLACK
        return position.floor().clamp(0, self.pieces - 1).long().reshape(1)

    def coefficients(self, t):
        index = self.index(t)
        return torch.zeros(self.pieces, dtype=t.dtype, device=t.device).index_fill(0, index, 1)

    def combine(self, stack, t):
        return stack.index_select(0, self.index(t).to(stack.device)).squeeze(0)


@dataclass(frozen=True)
class PiecewiseLinear(AbstractBasis):
    """Hat functions on ``nodes`` equally spaced nodes of ``[t0, t1]``: weights interpolated
    linearly in depth between ``W_0`` (at ``t0``) and ``W_{nodes-1}`` (at ``t1``).

    Args:
        nodes: how many nodes (at least 2).
        t0, t1: the span.
    """

    nodes: int
    t0: float = 0.0
    t1: float = 1.0

    def __post_init__(self) -> None:
        _check_count("nodes", self.nodes, 2)
        self._check_span()

    @property
    def size(self) -> int:
        return self.nodes

    def _bracket(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The left node ``k`` (a ``(1,)`` int64 tensor) and the weight ``w`` of node ``k + 1``."""
        position = (self.depth(t) * (self.nodes - 1)).clamp(0, self.nodes - 1)
        k = position.floor().clamp(max=self.nodes - 2)
        return k.long().reshape(1), position - k

    def coefficients(self, t):
        k, w = self._bracket(t)
        c = torch.zeros(self.nodes, dtype=t.dtype, device=t.device)
        return (
            c.index_fill(0, k, 1).index_add(0, k, -w.reshape(1)).index_add(0, k + 1, w.reshape(1))
        )

    def combine(self, stack, t):
        k, w = self._bracket(t)
        k = k.to(stack.device)
        pair = stack.index_select(0, torch.cat([k, k + 1]))
        return torch.lerp(pair[0], pair[1], w.to(stack.dtype))


@dataclass(frozen=True)
class Legendre(AbstractBasis):
    """Legendre polynomials ``P_0 … P_degree`` of ``2s - 1`` (``s`` the normalised depth):
    weights that vary smoothly with depth (Queiruga et al. 2021, *Compressing deep ODE-Nets
    using basis function expansions*).

    Args:
        degree: the highest degree (0: constant weights, an autonomous field).
        t0, t1: the span.
    """

    degree: int
    t0: float = 0.0
    t1: float = 1.0

    def __post_init__(self) -> None:
        _check_count("degree", self.degree, 0)
        self._check_span()

    @property
    def size(self) -> int:
        return self.degree + 1

    def coefficients(self, t):
        x = 2 * self.depth(t) - 1
        values = [torch.ones_like(x), x]
        for n in range(1, self.degree):  # (n+1) P_{n+1} = (2n+1) x P_n - n P_{n-1}
            values.append(((2 * n + 1) * x * values[n] - n * values[n - 1]) / (n + 1))
        return torch.stack(values[: self.size])


def _check_basis(basis: object) -> AbstractBasis:
    if not isinstance(basis, AbstractBasis):
        raise TypeError(
            f"`basis` must be a basis such as PiecewiseConstant(4), PiecewiseLinear(3) or "
            f"Legendre(2), got {basis!r}"
        )
    return basis


class DepthLinear(nn.Module):
    """A linear layer whose weight and bias vary with depth: ``W(t) x + b(t)`` with
    ``W(t) = Σ_k φ_k(t) W_k`` over the basis functions ``φ_k``.

    Args:
        in_features, out_features: as in ``nn.Linear``.
        basis: the basis in depth.
        bias: whether to add ``b(t)``.

    Every copy ``W_k`` starts like a fresh ``nn.Linear``'s weight.
    """

    depth_varying = True

    def __init__(
        self, in_features: int, out_features: int, basis: AbstractBasis, bias: bool = True
    ):
        super().__init__()
        self.basis = _check_basis(basis)
        templates = [nn.Linear(in_features, out_features, bias=bias) for _ in range(basis.size)]
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in templates]))
        self.bias = (
            nn.Parameter(torch.stack([m.bias.detach() for m in templates])) if bias else None
        )

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.basis.combine(self.bias, t)
        return F.linear(x, self.basis.combine(self.weight, t), bias)

    def static(self, k: int) -> nn.Linear:
        """An ``nn.Linear`` holding copy ``k`` of the parameters."""
        out_features, in_features = self.weight.shape[1:]
        layer = nn.Linear(in_features, out_features, bias=self.bias is not None)
        layer = layer.to(dtype=self.weight.dtype, device=self.weight.device)
        with torch.no_grad():
            layer.weight.copy_(self.weight[k])
            if self.bias is not None:
                layer.bias.copy_(self.bias[k])
        return layer

    @staticmethod
    def stacking(layers: Sequence[nn.Linear], basis: AbstractBasis) -> DepthLinear:
        """A DepthLinear whose copy ``k`` is ``layers[k]``'s parameters."""
        first = layers[0]
        out = DepthLinear(first.in_features, first.out_features, basis, first.bias is not None)
        out = out.to(dtype=first.weight.dtype, device=first.weight.device)
        with torch.no_grad():
            out.weight.copy_(torch.stack([m.weight for m in layers]))
            if out.bias is not None:
                out.bias.copy_(torch.stack([m.bias for m in layers]))
        return out

    def extra_repr(self) -> str:
        _, o, i = self.weight.shape
        return f"in_features={i}, out_features={o}, basis={self.basis}"


class DepthConv2d(nn.Module):
    """A 2-D convolution whose kernel and bias vary with depth (as :class:`DepthLinear`).

    Args:
        in_channels, out_channels, kernel_size: as in ``nn.Conv2d``.
        basis: the basis in depth.
        padding: as in ``nn.Conv2d`` (default ``"same"``, so a residual block keeps its shape).
        bias: whether to add a bias.
    """

    depth_varying = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        basis: AbstractBasis,
        *,
        padding: int | str = "same",
        bias: bool = True,
    ):
        super().__init__()
        self.basis = _check_basis(basis)
        self.padding = padding
        templates = [
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
            for _ in range(basis.size)
        ]
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in templates]))
        self.bias = (
            nn.Parameter(torch.stack([m.bias.detach() for m in templates])) if bias else None
        )

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.basis.combine(self.bias, t)
        return F.conv2d(x, self.basis.combine(self.weight, t), bias, padding=self.padding)

    def static(self, k: int) -> nn.Conv2d:
        """An ``nn.Conv2d`` holding copy ``k`` of the parameters."""
        _, out_c, in_c, kh, _ = self.weight.shape
        layer = nn.Conv2d(in_c, out_c, kh, padding=self.padding, bias=self.bias is not None)
        layer = layer.to(dtype=self.weight.dtype, device=self.weight.device)
        with torch.no_grad():
            layer.weight.copy_(self.weight[k])
            if self.bias is not None:
                layer.bias.copy_(self.bias[k])
        return layer

    @staticmethod
    def stacking(layers: Sequence[nn.Conv2d], basis: AbstractBasis) -> DepthConv2d:
        """A DepthConv2d whose copy ``k`` is ``layers[k]``'s parameters."""
        first = layers[0]
        out = DepthConv2d(
            first.in_channels,
            first.out_channels,
            first.kernel_size[0],
            basis,
            padding=first.padding,
            bias=first.bias is not None,
        ).to(dtype=first.weight.dtype, device=first.weight.device)
        with torch.no_grad():
            out.weight.copy_(torch.stack([m.weight for m in layers]))
            if out.bias is not None:
                out.bias.copy_(torch.stack([m.bias for m in layers]))
        return out

    def extra_repr(self) -> str:
        _, o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, padding={self.padding!r}, basis={self.basis}"


class ContinuousBlock(nn.Module):
    """A residual block as a vector field in depth: ``f(t, h) = layers(t, h)``, applied in
    order, where depth-varying layers (:class:`DepthLinear`, :class:`DepthConv2d`) see ``t`` and
    the others (activations, normalisations without running state) see only ``h``.

    This is ContinuousNet's ``R(h, θ(t))`` (Queiruga, Erichson, Taylor & Mahoney, 2020,
    *Continuous-in-depth neural networks*): wrapped in a :class:`NeuralODE`, ``Euler()`` with as
    many steps as a :class:`PiecewiseConstant` basis has pieces is a ResNet, and any other
    solver or step count evaluates the same weights on another graph.

    Args:
        *layers: the block's layers.

    Example:
        >>> basis = PiecewiseConstant(4, t0=0.0, t1=1.0)
        >>> block = ContinuousBlock(DepthLinear(32, 32, basis), nn.Tanh(), DepthLinear(32, 32, basis))
        >>> model = NeuralODE(block, Euler(), 0.0, 1.0, steps=4)
    """

    def __init__(self, *layers: nn.Module):
        super().__init__()
        if not layers:
            raise ValueError("ContinuousBlock needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, nn.Module):
                raise TypeError(f"layer {i} must be an nn.Module, got {type(layer).__name__}")
        self.layers = nn.ModuleList(layers)
        bases = {layer.basis for layer in layers if getattr(layer, "depth_varying", False)}
        if len(bases) > 1:
            raise ValueError(
                f"the depth-varying layers of a ContinuousBlock must share one basis, got {bases}"
            )
        self.basis: AbstractBasis | None = next(iter(bases), None)

    def forward(self, t: torch.Tensor, h: torch.Tensor, args: Any = None) -> torch.Tensor:
        for layer in self.layers:
            h = layer(t, h) if getattr(layer, "depth_varying", False) else layer(h)
        return h

    def piece(self, k: int) -> nn.Sequential:
        """The static block of piece ``k``: every depth-varying layer replaced by its ``k``-th
        parameters (piecewise-constant basis), the other layers shared."""
        if not isinstance(self.basis, PiecewiseConstant):
            raise ValueError(
                f"a ResNet block exists only for a PiecewiseConstant basis, this block's is "
                f"{self.basis!r}"
            )
        return nn.Sequential(
            *(
                layer.static(k) if getattr(layer, "depth_varying", False) else layer
                for layer in self.layers
            )
        )


class ResNet(nn.Module):
    """A residual network ``h_{k+1} = h_k + step · block_k(h_k)``, ``k < len(blocks)``
    (He et al. 2016; ``step = 1`` is the usual ResNet).

    One Euler step of size ``step`` per block: see :func:`neural_ode_from_resnet` and
    :func:`resnet_from_neural_ode` for the exact correspondence.

    Args:
        blocks: the residual branches, each ``nn.Module`` mapping ``h`` to a tensor shaped like
            ``h``; for the conversions, ``nn.Sequential`` s of the same layer types.
        step: the factor of each residual branch.
    """

    def __init__(self, blocks: Sequence[nn.Module], step: float = 1.0):
        super().__init__()
        if len(blocks) == 0:
            raise ValueError("a ResNet needs at least one block")
        if not isinstance(step, int | float) or not step > 0:
            raise ValueError(f"`step` must be a number > 0, got {step!r}")
        self.blocks = nn.ModuleList(blocks)
        self.step = float(step)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            h = h + block(h) * self.step
        return h


def resnet_from_neural_ode(model: NeuralODE) -> ResNet:
    """The ResNet that ``model`` is under ``Euler()`` with one step per piece.

    ``model.field`` must be a :class:`ContinuousBlock` on a :class:`PiecewiseConstant` basis
    spanning the model's ``[t0, t1]``; block ``k`` holds piece ``k``'s weights (copies) and the
    step is ``(t1 - t0) / pieces``. The ResNet's output equals
    ``model.with_solver(Euler(), steps=pieces)``'s to rounding.

    Raises:
        ValueError: the field is not a piecewise-constant continuous block over the span.
    """
    block = _piecewise_block(model)
    pieces = block.basis.pieces
    return ResNet([block.piece(k) for k in range(pieces)], step=(model.t1 - model.t0) / pieces)


def neural_ode_from_resnet(resnet: ResNet, t0: float = 0.0) -> NeuralODE:
    """The neural ODE whose ``Euler()`` solve with one step per block is ``resnet``.

    Every block must be an ``nn.Sequential`` of the same layer types; its ``nn.Linear`` and
    ``nn.Conv2d`` layers are stacked into :class:`DepthLinear` / :class:`DepthConv2d` layers on a
    :class:`PiecewiseConstant` basis over ``[t0, t0 + len(blocks) · step]``, the other layers are
    shared from the first block (they must hold no parameters). The result uses ``Euler()`` with
    one step per block; swap it with :meth:`NeuralODE.with_solver`.

    Raises:
        ValueError: the blocks differ in structure, or a parameter-holding layer is neither
            ``nn.Linear`` nor ``nn.Conv2d``.
    """
    if not isinstance(resnet, ResNet):
        raise TypeError(f"`resnet` must be a torchnde.nn.ResNet, got {type(resnet).__name__}")
    n = len(resnet.blocks)
    t1 = t0 + n * resnet.step
    basis = PiecewiseConstant(n, t0, t1)
    columns = _layer_columns(resnet)
    layers = [_stack_layers(i, column, basis) for i, column in enumerate(columns)]
    return NeuralODE(ContinuousBlock(*layers), Euler(), t0, t1, steps=n)


_STACKERS: dict[type, Callable[[Sequence[nn.Module], AbstractBasis], nn.Module]] = {
    nn.Linear: DepthLinear.stacking,
    nn.Conv2d: DepthConv2d.stacking,
}


def _layer_columns(resnet: ResNet) -> list[list[nn.Module]]:
    blocks = list(resnet.blocks)
    for k, block in enumerate(blocks):
        if not isinstance(block, nn.Sequential):
            raise ValueError(
                f"block {k} is a {type(block).__name__}; the conversion needs nn.Sequential "
                "blocks of the same layer types"
            )
    shapes = [[type(m) for m in block] for block in blocks]
    for k, shape in enumerate(shapes):
        if shape != shapes[0]:
            raise ValueError(
                f"block {k} has layers {[t.__name__ for t in shape]}, block 0 has "
                f"{[t.__name__ for t in shapes[0]]}; every block must have the same structure"
            )
    return [list(column) for column in zip(*blocks)]


def _stack_layers(i: int, column: list[nn.Module], basis: AbstractBasis) -> nn.Module:
    kind = type(column[0])
    if kind in _STACKERS:
        return _STACKERS[kind](column, basis)
    if any(True for _ in column[0].parameters()):
        raise ValueError(
            f"layer {i} ({kind.__name__}) holds parameters but is neither nn.Linear nor "
            "nn.Conv2d; only those can be made depth-varying"
        )
    return column[0]


def _piecewise_block(model: NeuralODE) -> ContinuousBlock:
    if not isinstance(model, NeuralODE):
        raise TypeError(f"`model` must be a NeuralODE, got {type(model).__name__}")
    block = model.field
    if not isinstance(block, ContinuousBlock) or not isinstance(block.basis, PiecewiseConstant):
        raise ValueError(
            "a NeuralODE is a ResNet only when its field is a ContinuousBlock on a "
            f"PiecewiseConstant basis; this field is {type(block).__name__}"
            + (f" on {block.basis!r}" if isinstance(block, ContinuousBlock) else "")
        )
    basis = block.basis
    if (basis.t0, basis.t1) != (model.t0, model.t1):
        raise ValueError(
            f"the basis spans [{basis.t0}, {basis.t1}] but the model integrates over "
            f"[{model.t0}, {model.t1}]; build the basis with the model's t0 and t1"
        )
    return block


class MLPField(nn.Module):
    """A multilayer perceptron as an autonomous vector field ``f(t, y) = MLP(y)`` (``t`` and
    ``args`` unused): the usual neural ODE field.

    Args:
        dim: the state's size (last axis).
        hidden: the hidden width.
        layers: how many hidden layers (at least 1).
        activation: the activation module class (default ``nn.Tanh``).
    """

    def __init__(
        self, dim: int, hidden: int = 64, layers: int = 1, activation: type = nn.Tanh
    ) -> None:
        super().__init__()
        _check_count("dim", dim, 1)
        _check_count("hidden", hidden, 1)
        _check_count("layers", layers, 1)
        sizes = [dim, *([hidden] * layers)]
        modules: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            modules += [nn.Linear(a, b), activation()]
        modules.append(nn.Linear(hidden, dim))
        self.net = nn.Sequential(*modules)

    def forward(self, t: torch.Tensor, y: torch.Tensor, args: Any = None) -> torch.Tensor:
        return self.net(y)
