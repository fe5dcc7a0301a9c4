"""The networks of physics-informed models: a multilayer perceptron (tanh or sine, optional
Fourier features) and the model around it that scales the inputs, makes periodic coordinates
periodic and builds hard conditions into the output."""

from __future__ import annotations

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
    ``cos``/``sin`` of its phase instead). With hard conditions on sides ``i`` (values ``g_i``,
    normalised distances ``d_i`` to the side), ``D = Π d_i`` and ``G = Σ_i g_i Π_{j≠i} d_j /
    Σ_i Π_{j≠i} d_j``, which equals ``g_i`` on side ``i`` (Sukumar & Srivastava, *Exact
    imposition of boundary conditions with distance functions in physics-informed deep neural
    networks*, CMAME 2022, in its simplest transfinite form; at corners, where two sides meet,
    ``G`` is 0). An output no hard condition names is ``N`` itself.

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
            faces = [face for face in self.hard if j in face.outputs]
            if not faces:
                columns.append(raw[:, j])
                continue
            distances, values = [], []
            for face in faces:
                distances.append((points[:, face.column] - face.position).abs() / face.length)
                projected = points.clone()
                projected[:, face.column] = face.position
                values.append(face.value(projected)[:, face.outputs.index(j)])
            columns.append(_blend(distances, values) + _product(distances) * raw[:, j])
        return torch.stack(columns, dim=-1)


def _product(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    result = factors[0]
    for factor in factors[1:]:
        result = result * factor
    return result


def _blend(distances: Sequence[torch.Tensor], values: Sequence[torch.Tensor]) -> torch.Tensor:
    """``Σ g_i Π_{j≠i} d_j / Σ Π_{j≠i} d_j``: ``g_i`` on side ``i``."""
    if len(values) == 1:
        return values[0]
    weights = [
        _product([d for j, d in enumerate(distances) if j != i]) for i in range(len(distances))
    ]
    total = sum(weights).clamp_min(torch.finfo(weights[0].dtype).tiny)
    return sum(w * g for w, g in zip(weights, values)) / total
