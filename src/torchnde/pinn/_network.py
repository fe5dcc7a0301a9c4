"""The networks of physics-informed models: a multilayer perceptron (tanh or sine, optional
Fourier features) and the model around it that scales the inputs, makes periodic coordinates
periodic and builds hard conditions into the output."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..training._checks import check_count, check_positive, nearest
from ._conditions import HardFace
from ._domain import Domain

__all__ = ["ACTIVATIONS", "INITS", "MLP", "FourierFeatures", "Network", "PINNModel"]


class _Sine(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


#: activation names -> module classes
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "sin": _Sine}

#: weight initialisations of :class:`MLP`
INITS = ("glorot", "torch")


class FourierFeatures(nn.Module):
    """Random Fourier features ``[cos(2π x B), sin(2π x B)]`` with a fixed ``B`` drawn from
    ``N(0, scale²)`` (Tancik et al., *Fourier features let networks learn high frequency
    functions in low dimensional domains*, NeurIPS 2020): a remedy for the spectral bias of
    plain MLPs towards low frequencies.

    Args:
        in_features: input width.
        count: number of frequencies (the output width is ``2 * count``).
        scale: the standard deviation of the frequencies (in cycles per unit input).
        seed: the seed of ``B``.
    """

    def __init__(self, in_features: int, count: int, scale: float = 1.0, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("B", torch.randn(in_features, count, generator=generator) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * x @ self.B.to(x.dtype)
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class MLP(nn.Module):
    """A fully connected network ``in -> width x depth -> out`` with Glorot-normal weights and
    zero biases (Glorot & Bengio 2010, the usual initialisation of PINNs).

    Args:
        in_features, out_features: input and output widths.
        width: hidden width.
        depth: number of hidden layers.
        activation: ``"tanh"`` or ``"sin"``.
        fourier_features: prepend :class:`FourierFeatures` with this many frequencies (0: none).
        fourier_scale: their standard deviation.
        init: ``"glorot"`` (Glorot-normal weights, zero biases) or ``"torch"`` (PyTorch's
            default ``nn.Linear`` initialisation, as in Krishnapriyan et al.'s code).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        width: int = 50,
        depth: int = 4,
        activation: str = "tanh",
        fourier_features: int = 0,
        fourier_scale: float = 1.0,
        init: str = "glorot",
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown `activation`={activation!r}{nearest(str(activation), ACTIVATIONS)}; "
                f"valid: {', '.join(ACTIVATIONS)}"
            )
        layers: list[nn.Module] = []
        width_in = in_features
        if fourier_features:
            layers.append(FourierFeatures(in_features, fourier_features, fourier_scale))
            width_in = 2 * fourier_features
        for _ in range(depth):
            layers += [nn.Linear(width_in, width), ACTIVATIONS[activation]()]
            width_in = width
        layers.append(nn.Linear(width_in, out_features))
        self.layers = nn.Sequential(*layers)
        if init not in INITS:
            raise ValueError(
                f"unknown `init`={init!r}{nearest(str(init), INITS)}; valid: {', '.join(INITS)}"
            )
        if init == "torch":
            return
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@dataclass(frozen=True)
class Network:
    """The network of a :class:`PINNModel`: an :class:`MLP` and how its inputs are made.

    Args:
        width: hidden width.
        depth: hidden layers.
        activation: ``"tanh"`` or ``"sin"``.
        fourier_features: random Fourier features of the scaled inputs (0: none).
        fourier_scale: their standard deviation.
        harmonics: for a hard-periodic coordinate, the harmonics ``k = 1 … harmonics`` of
            ``cos``/``sin(2π k (x - low) / L)`` fed to the network.
        scale_inputs: map each coordinate to ``[-1, 1]`` before the network (False: raw
            coordinates, as in Krishnapriyan et al.'s experiments).
        init: ``"glorot"`` or ``"torch"`` (see :class:`MLP`).
    """

    width: int = 50
    depth: int = 4
    activation: str = "tanh"
    fourier_features: int = 0
    fourier_scale: float = 1.0
    harmonics: int = 1
    scale_inputs: bool = True
    init: str = "glorot"

    def __post_init__(self) -> None:
        check_count(self.width, "width")
        check_count(self.depth, "depth")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown `activation`={self.activation!r}"
                f"{nearest(str(self.activation), ACTIVATIONS)}; valid: {', '.join(ACTIVATIONS)}"
            )
        check_count(self.fourier_features, "fourier_features", minimum=0)
        check_positive(self.fourier_scale, "fourier_scale")
        check_count(self.harmonics, "harmonics")
        if not isinstance(self.scale_inputs, bool):
            raise TypeError(f"`scale_inputs` must be True or False, got {self.scale_inputs!r}")
        if self.init not in INITS:
            raise ValueError(
                f"unknown `init`={self.init!r}{nearest(str(self.init), INITS)}; valid: "
                f"{', '.join(INITS)}"
            )


class PINNModel(nn.Module):
    """``u(z) = G(z) + D(z) · N(φ(z))``: the network ``N`` of scaled inputs ``φ(z)``, with hard
    conditions built in.

    ``φ`` maps each coordinate to ``[-1, 1]`` over ``scaling`` (a hard-periodic coordinate to
    ``cos``/``sin`` of its phase instead). With hard conditions (initial or Dirichlet values
    ``g`` on some sides), ``D`` is the product over the constrained coordinates of a factor that
    vanishes on their hard sides (``(z − p)/L`` for one low side, ``(p − z)/L`` for a high one,
    ``4(z − p₀)(p₁ − z)/L²`` for both), and ``G`` is the transfinite interpolation of the side values (Gordon & Hall 1973;
    Lagaris, Likas & Fotiadis, *Artificial neural networks for solving ordinary and partial
    differential equations*, IEEE TNN 1998, for the idea of the ansatz): ``G = g`` on every hard
    side, smooth inside, provided the values agree where sides meet (an initial condition that
    meets the boundary values at t0). An output no hard condition names is ``N`` itself.

    Args:
        domain: the domain the hard conditions' distances are measured in.
        outputs: the number of outputs.
        network: the :class:`Network`.
        hard: the :class:`HardFace` list of the hard conditions.
        periodic: coordinates made periodic by the input map (hard periodic conditions).
        learnable: unknown coefficients of an inverse problem, name -> initial value; they live
            in ``model.coefficients`` and are trained with the network.
        scaling: the domain whose box the inputs are scaled over (default ``domain``; time
            marching keeps the whole time span so a warm start continues the previous block).
        dtype, device: of the parameters.
    """

    def __init__(
        self,
        domain: Domain,
        outputs: int = 1,
        network: Network | None = None,
        *,
        hard: Sequence[HardFace] = (),
        periodic: Sequence[str] = (),
        learnable: Mapping[str, float] | None = None,
        scaling: Domain | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        network = network or Network()
        if not isinstance(network, Network):
            raise TypeError(f"`network` must be a Network, got {type(network).__name__}")
        self.domain = domain
        self.spec = network
        self.outputs = check_count(outputs, "outputs")
        self.periodic = tuple(periodic)
        for name in self.periodic:
            if not domain[name].periodic:
                raise ValueError(f"coordinate {name!r} is not periodic; it cannot be hard-periodic")
        self.hard = tuple(hard)
        scaling = scaling or domain
        low, high = scaling.bounds(torch.float64)
        self.register_buffer("_low", low.to(dtype=dtype, device=device))
        self.register_buffer("_high", high.to(dtype=dtype, device=device))
        self._periodic_columns = [domain.index(name) for name in self.periodic]
        in_features = domain.dim + (2 * network.harmonics - 1) * len(self.periodic)
        self.net = MLP(
            in_features,
            outputs,
            network.width,
            network.depth,
            network.activation,
            network.fourier_features,
            network.fourier_scale,
            network.init,
        ).to(dtype=dtype, device=device)
        self.coefficients = nn.ParameterDict(
            {
                name: nn.Parameter(torch.tensor(float(value), dtype=dtype, device=device))
                for name, value in (learnable or {}).items()
            }
        )

    def features(self, points: torch.Tensor) -> torch.Tensor:
        """``φ(z)``: the network's input."""
        scaled = 2 * (points - self._low) / (self._high - self._low) - 1
        if not self._periodic_columns:
            return scaled if self.spec.scale_inputs else points
        columns = []
        for i in range(points.shape[-1]):
            if i not in self._periodic_columns:
                source = scaled if self.spec.scale_inputs else points
                columns.append(source[:, i : i + 1])
                continue
            phase = math.pi * (scaled[:, i : i + 1] + 1)  # 2π (z - low) / L over the scaling box
            for k in range(1, self.spec.harmonics + 1):
                columns += [torch.cos(k * phase), torch.sin(k * phase)]
        return torch.cat(columns, dim=-1)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """``u`` at ``points`` ``(n, dim)``: shape ``(n, outputs)``."""
        if points.dim() != 2 or points.shape[-1] != self.domain.dim:
            raise ValueError(
                f"points must be (n, {self.domain.dim}) with columns {self.domain.names}, got "
                f"{tuple(points.shape)}"
            )
        raw = self.net(self.features(points))
        if not self.hard:
            return raw
        return self._constrain(points, raw)

    def _constrain(self, points: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        columns = []
        for j in range(self.outputs):
            faces: dict[int, list[HardFace]] = {}
            for face in self.hard:
                if j in face.outputs:
                    faces.setdefault(face.column, []).append(face)
            if not faces:
                columns.append(raw[:, j])
                continue
            for sides in faces.values():
                sides.sort(key=lambda face: face.position)
            vanishing = _product([_vanishing(points[:, c], sides) for c, sides in faces.items()])
            columns.append(_transfinite(points, faces, j) + vanishing * raw[:, j])
        return torch.stack(columns, dim=-1)


def _product(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    result = factors[0]
    for factor in factors[1:]:
        result = result * factor
    return result


def _vanishing(z: torch.Tensor, sides: Sequence[HardFace]) -> torch.Tensor:
    """A factor that is 0 on the given sides of one coordinate, positive inside and at most 1:
    ``(z − p) / L`` for a low side, ``(p − z) / L`` for a high one (smooth: ``|z − p|`` would
    have a zero derivative on the side itself, and so would every normal derivative of ``u``
    there), ``4 (z − p₀)(p₁ − z) / (p₁ − p₀)²`` for both."""
    if len(sides) == 1:
        face = sides[0]
        sign = 1.0 if face.side == "low" else -1.0
        return sign * (z - face.position) / face.length
    low, high = sides[0].position, sides[1].position
    return 4 * (z - low) * (high - z) / (high - low) ** 2


def _weights(z: torch.Tensor, sides: Sequence[HardFace]) -> list[torch.Tensor]:
    """The univariate interpolation weights of each side's value: 1 for a single side, linear
    between two."""
    if len(sides) == 1:
        return [torch.ones_like(z)]
    low, high = sides[0].position, sides[1].position
    return [(high - z) / (high - low), (z - low) / (high - low)]


def _transfinite(points: torch.Tensor, faces: dict[int, list[HardFace]], j: int) -> torch.Tensor:
    """The transfinite (Boolean-sum) interpolation of the hard sides' values (Gordon & Hall,
    *Construction of curvilinear co-ordinate systems and applications to mesh generation*, 1973):
    ``G = Σ_{S ≠ ∅} (−1)^{|S|+1} Π_{c ∈ S} P_c g``, ``P_c`` the interpolation between the sides
    of coordinate ``c`` (a constant extension for one side). It equals each side's value on that
    side wherever the values agree at the corners, and is as smooth as the values are."""
    coordinates = sorted(faces)
    total = torch.zeros_like(points[:, 0])
    for size in range(1, len(coordinates) + 1):
        sign = 1.0 if size % 2 else -1.0
        for subset in itertools.combinations(coordinates, size):
            total = total + sign * _projected(points, [faces[c] for c in subset], j)
    return total


def _projected(points: torch.Tensor, groups: Sequence[Sequence[HardFace]], j: int) -> torch.Tensor:
    """``Π_{c} P_c g`` for the coordinates of ``groups``: every choice of one side per
    coordinate, weighted, with the value of the first chosen side at the projected point."""
    total = torch.zeros_like(points[:, 0])
    for choice in itertools.product(*[range(len(sides)) for sides in groups]):
        chosen = [sides[k] for sides, k in zip(groups, choice)]
        weight = _product(
            [
                _weights(points[:, face.column], sides)[k]
                for face, sides, k in zip(chosen, groups, choice)
            ]
        )
        projected = points.clone()
        for face in chosen:
            projected[:, face.column] = face.position
        value = chosen[0].value(projected)[:, chosen[0].outputs.index(j)]
        total = total + weight * value
    return total
