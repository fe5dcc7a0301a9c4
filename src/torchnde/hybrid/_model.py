"""Hybrid models: known physics written as equations, with neural networks for unknown terms
(universal differential equations; Rackauckas et al., *Universal Differential Equations for
Scientific Machine Learning*, 2020)."""

from __future__ import annotations

from collections.abc import Mapping

import sympy
import torch
from sympy.core.function import AppliedUndef
from torch import nn

from ._equations import ParsedSystem, compile_expression, parse_system
from ._spec import NetworkSpec, SystemSpec

__all__ = ["MLP", "HybridModel"]

_ACTIVATIONS = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
}


class MLP(nn.Module):
    """A multilayer perceptron with fixed input and output scales.

    ``forward(u) = out_scale * net(u / in_scale)``: the scales (buffers, set from data with
    :meth:`HybridModel.set_scales`) keep the network's inputs and outputs of order one whatever the
    units of the data. The last layer starts small, so a fresh hybrid model is close to its known
    physics.

    Args:
        inputs: number of inputs.
        outputs: number of outputs.
        spec: width, depth and activation.
    """

    def __init__(self, inputs: int, outputs: int = 1, spec: NetworkSpec | None = None):
        super().__init__()
        spec = spec or NetworkSpec()
        layers: list[nn.Module] = []
        width = inputs
        for _ in range(spec.depth):
            layers += [nn.Linear(width, spec.hidden), _ACTIVATIONS[spec.activation]()]
            width = spec.hidden
        last = nn.Linear(width, outputs)
        with torch.no_grad():
            last.weight.mul_(0.1)
            last.bias.zero_()
        self.net = nn.Sequential(*layers, last)
        self.register_buffer("in_scale", torch.ones(inputs))
        self.register_buffer("out_scale", torch.ones(outputs))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.net(u / self.in_scale) * self.out_scale


class HybridModel(nn.Module):
    """A vector field ``f(t, y, args)`` from equations in text: known physics plus networks.

    The state ``y`` is a tensor whose last axis holds the states in ``system.states`` order (any
    leading batch shape). Known constants are fixed numbers; learnable parameters are
    ``nn.Parameter`` values in :attr:`params`; every network is an ``nn.Module`` in
    :attr:`nets` — by default an :class:`MLP`, or any module passed in ``networks`` that maps
    ``(..., inputs)`` to ``(..., 1)``. It is an ordinary vector field: use it with
    ``torchnde.ODETerm`` and any solver and adjoint.

    Args:
        system: the equations (a :class:`SystemSpec`, or an already parsed system).
        networks: modules to use instead of the default MLPs, by network name.
        dtype: dtype of the parameters and networks.

    Example::

        model = HybridModel(SystemSpec(
            states=("x", "y"),
            equations={"x": "alpha*x + NN1(x, y)", "y": "NN2(x, y) - theta*y"},
            constants={"alpha": 1.1}, parameters={"theta": 0.1}))
        sol = torchnde.solve(torchnde.ODETerm(model), torchnde.Tsit5(), 0.0, 10.0, y0, ...)
    """

    def __init__(
        self,
        system: SystemSpec | ParsedSystem,
        networks: Mapping[str, nn.Module] | None = None,
        dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        networks = dict(networks or {})
        parsed = (
            system
            if isinstance(system, ParsedSystem)
            else parse_system(system, extra_networks=tuple(networks))
        )
        spec = parsed.spec
        unknown = [n for n in networks if n not in parsed.networks]
        if unknown:
            raise ValueError(
                f"`networks` has `{unknown[0]}`, which no equation calls; the equations call "
                f"{', '.join(parsed.networks) or 'no networks'}"
            )
        self.parsed = parsed
        self.states = tuple(spec.states)
        self.nets = nn.ModuleDict(
            {
                name: networks.get(name) or MLP(len(args), 1, spec.networks.get(name))
                for name, args in parsed.networks.items()
            }
        )
        self.params = nn.ParameterDict(
            {name: nn.Parameter(torch.tensor(float(v))) for name, v in spec.parameters.items()}
        )
        self.to(dtype)
        self._compile()

    def _compile(self) -> None:
        """Each equation as a torch function of (t, states, parameters, network outputs): the
        networks run once per evaluation, however many equations use them."""
        spec = self.parsed.spec
        constants = {self.parsed.symbols[k]: float(v) for k, v in spec.constants.items()}
        outputs = {name: f"_{name}_output" for name in self.parsed.networks}
        self._param_names = tuple(spec.parameters)
        arguments = [spec.time, *spec.states, *spec.parameters, *outputs.values()]
        self._fns = []
        for state in self.states:
            expr = self.parsed.equations[state].subs(constants)
            calls = {
                call: sympy.Symbol(outputs[call.func.__name__], real=True)
                for call in expr.atoms(AppliedUndef)
            }
            self._fns.append(compile_expression(expr.subs(calls), arguments))

    def forward(self, t: torch.Tensor, y: torch.Tensor, args=None) -> torch.Tensor:
        columns = y.unbind(-1)
        outputs = self.network_outputs(t, y).values()
        values = (t, *columns, *(self.params[p] for p in self._param_names), *outputs)
        out = []
        for fn in self._fns:
            value = fn(*values)
            if not isinstance(value, torch.Tensor) or value.shape != columns[0].shape:
                value = torch.as_tensor(value, dtype=y.dtype, device=y.device).expand_as(columns[0])
            out.append(value)
        return torch.stack(out, dim=-1)

    def network_outputs(self, t: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each network's output along states ``y: (..., states)`` at times ``t``."""
        env = {self.parsed.spec.time: t, **dict(zip(self.states, y.unbind(-1)))}
        out = {}
        for name, args in self.parsed.networks.items():
            inputs = torch.broadcast_tensors(*(env[a] for a in args))
            out[name] = self.nets[name](torch.stack(inputs, dim=-1))[..., 0]
        return out

    @torch.no_grad()
    def set_scales(self, ts: torch.Tensor, ys: torch.Tensor) -> None:
        """Scale every default network's inputs and output from observations ``ys: (T, states)``:
        inputs by the size of each state (or the time span), outputs by the size of the state
        whose equation calls it divided by a tenth of the time span."""
        size = torch.nan_to_num(ys.abs(), nan=0.0).amax(dim=0).clamp(min=1e-12)
        span = float(ts[-1] - ts[0]) or 1.0
        scale = {s: float(size[i]) for i, s in enumerate(self.states)}
        scale[self.parsed.spec.time] = span
        for name, args in self.parsed.networks.items():
            module = self.nets[name]
            if not isinstance(module, MLP):
                continue
            module.in_scale.copy_(torch.tensor([scale[a] for a in args]))
            owners = self.parsed.network_equations(name)
            module.out_scale.fill_(scale[owners[0]] / (span / 10) if owners else 1.0)

    def parameter_values(self) -> dict[str, float]:
        return {name: float(p.detach()) for name, p in self.params.items()}

    def extra_repr(self) -> str:
        return "; ".join(f"d{s}/dt = {sympy.sstr(self.parsed.equations[s])}" for s in self.states)
