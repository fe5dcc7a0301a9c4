"""Hybrid models: known physics written as equations, with neural networks for unknown terms
(universal differential equations; Rackauckas et al., *Universal Differential Equations for
Scientific Machine Learning*, 2020)."""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import linecache
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sympy
import torch
from sympy.core.function import AppliedUndef
from sympy.printing.pytorch import TorchPrinter
from torch import nn

from ._equations import ParsedSystem, parse_system
from ._spec import NetworkSpec, SystemSpec, check_scale

__all__ = ["MLP", "HybridModel", "ScaledNetwork", "load_factory"]

_ACTIVATIONS = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
}


def _scale_buffer(value: float | tuple[float, ...] | None, size: int, name: str) -> torch.Tensor:
    if value is None:
        return torch.ones(size)
    values = value if isinstance(value, tuple) else (value,) * size
    if len(values) != size:
        raise ValueError(
            f"`{name}` has {len(values)} values but the network has {size}; give one per "
            "input (output), or a single number for all"
        )
    return torch.tensor(values)


def _copy_scales(module: nn.Module, inputs: torch.Tensor, outputs: torch.Tensor) -> None:
    """Set the data-derived scales of ``module`` (those the user did not fix)."""
    if not module.fixed_input_scale:
        module.in_scale.copy_(inputs)
    if not module.fixed_output_scale:
        module.out_scale.copy_(outputs)


class MLP(nn.Module):
    """A multilayer perceptron with fixed input and output scales.

    ``forward(u) = out_scale * net(u / in_scale)``: the scales (buffers) keep the network's inputs
    and outputs of order one whatever the units of the data. Scales given in ``spec``
    (``input_scale``, ``output_scale``) are fixed; the others are set from the data by
    :meth:`HybridModel.set_scales`. The last layer starts small, so a fresh hybrid model is close
    to its known physics.

    Args:
        inputs: number of inputs.
        outputs: number of outputs.
        spec: width, depth, activation and scales.
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
        self.fixed_input_scale = spec.input_scale is not None
        self.fixed_output_scale = spec.output_scale is not None
        self.register_buffer("in_scale", _scale_buffer(spec.input_scale, inputs, "input_scale"))
        self.register_buffer("out_scale", _scale_buffer(spec.output_scale, outputs, "output_scale"))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.net(u / self.in_scale) * self.out_scale

    @torch.no_grad()
    def set_data_scales(self, inputs: torch.Tensor, outputs: torch.Tensor) -> None:
        """Set the scales not fixed by the spec: ``inputs: (inputs,)``, ``outputs: (outputs,)``."""
        _copy_scales(self, inputs, outputs)


class ScaledNetwork(nn.Module):
    """The user's own network with input and output scales: ``forward(u) = out_scale *
    network(u / in_scale)``.

    Wrap a network in it to give it the scaling the default :class:`MLP` has: a scale left as
    None is set from the data by :meth:`HybridModel.set_scales` (``discover`` calls it), a number
    (for all) or a sequence (one per input or output) fixes it. A network passed to
    :class:`HybridModel` or :func:`torchnde.hybrid.discover` unwrapped is used exactly as given.

    Args:
        network: a module mapping ``(..., inputs)`` to ``(..., outputs)``.
        inputs: its number of inputs.
        outputs: its number of outputs.
        input_scale, output_scale: None (from the data), a positive number, or a sequence.

    Example::

        net = ScaledNetwork(nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1)), inputs=2)
        result = discover(spec, observations, networks={"NN1": net})
    """

    def __init__(
        self,
        network: nn.Module,
        inputs: int,
        outputs: int = 1,
        *,
        input_scale: float | Sequence[float] | None = None,
        output_scale: float | Sequence[float] | None = None,
    ):
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(f"`network` must be an nn.Module, got {type(network).__name__}")
        for value, name in ((inputs, "inputs"), (outputs, "outputs")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a whole number >= 1, got {value!r}")
        input_scale = check_scale(input_scale, "input_scale")
        output_scale = check_scale(output_scale, "output_scale")
        self.network = network
        self.fixed_input_scale = input_scale is not None
        self.fixed_output_scale = output_scale is not None
        self.register_buffer("in_scale", _scale_buffer(input_scale, inputs, "input_scale"))
        self.register_buffer("out_scale", _scale_buffer(output_scale, outputs, "output_scale"))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.network(u / self.in_scale) * self.out_scale

    @torch.no_grad()
    def set_data_scales(self, inputs: torch.Tensor, outputs: torch.Tensor) -> None:
        """Set the scales not fixed at construction."""
        _copy_scales(self, inputs, outputs)


def load_factory(factory: str) -> Callable[..., nn.Module]:
    """The function a :attr:`NetworkSpec.factory` names: ``"package.module:function"`` or
    ``"path/to/file.py:function"``."""
    where, _, name = factory.rpartition(":")
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser()
            if not path.is_file():
                raise ImportError(f"no such file {str(path)!r}")
            spec = importlib.util.spec_from_file_location(f"_torchnde_networks_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except Exception as problem:
        raise ImportError(
            f"`factory` {factory!r}: cannot import {where!r} ({type(problem).__name__}: "
            f"{problem}); give an importable module or an existing .py file"
        ) from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ValueError(
            f"`factory` {factory!r}: {where!r} has no function {name!r}; write "
            '"module:function" with a function (inputs, outputs) -> nn.Module'
        )
    return function


def _build_network(name: str, inputs: int, outputs: int, spec: NetworkSpec | None) -> nn.Module:
    spec = spec or NetworkSpec()
    if spec.factory is None:
        return MLP(inputs, outputs, spec)
    module = load_factory(spec.factory)(inputs, outputs)
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"the factory {spec.factory!r} of the network `{name}` returned "
            f"{type(module).__name__}, not an nn.Module"
        )
    return ScaledNetwork(
        module, inputs, outputs, input_scale=spec.input_scale, output_scale=spec.output_scale
    )


class HybridModel(nn.Module):
    """A vector field ``f(t, y, args)`` from equations in text: known physics plus networks.

    The state ``y`` is a tensor whose last axis holds the states in ``system.states`` order (any
    leading batch shape). Known constants are fixed numbers; learnable parameters are
    ``nn.Parameter`` values in :attr:`params`, in the model's dtype; every network is an
    ``nn.Module`` in :attr:`nets` — by default an :class:`MLP`, the network a
    :attr:`NetworkSpec.factory` builds, or any module passed in ``networks`` that maps
    ``(..., inputs)`` to ``(..., outputs)``, used as given (wrap it in :class:`ScaledNetwork` for
    scaling). A network with several outputs is called with an index
    in the equations, ``NN(x, y)[0]``, and runs once per evaluation however many equations use it;
    an output count that does not match the equations' calls is refused, naming the equation.

    The equations are compiled once into one Python function of plain torch operations (the
    networks' inputs built once, no per-equation dispatch), so an evaluation costs what a
    hand-written field of the same equations costs; :attr:`source` shows it. The model is an
    ordinary vector field: use it with ``torchnde.ODETerm`` and any solver and adjoint.

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
        for name, module in networks.items():
            if not isinstance(module, nn.Module):
                raise TypeError(
                    f"`networks[{name!r}]` must be an nn.Module, got {type(module).__name__}"
                )
        self.parsed = parsed
        self.states = tuple(spec.states)
        self.nets = nn.ModuleDict(
            {
                name: networks[name]
                if name in networks
                else _build_network(
                    name, len(args), _needed_outputs(parsed, name), spec.networks.get(name)
                )
                for name, args in parsed.networks.items()
            }
        )
        self.params = nn.ParameterDict(
            {
                name: nn.Parameter(torch.tensor(float(v), dtype=dtype))
                for name, v in spec.parameters.items()
            }
        )
        self.to(dtype)
        self._check_outputs(dtype)
        self._compile()

    # -- building -------------------------------------------------------------------------------

    def _check_outputs(self, dtype: torch.dtype) -> None:
        """Every network's output count must match the calls of the equations: refused, naming
        the equation, where a call takes one of several outputs as the whole or indexes past
        the end."""
        for name, args in self.parsed.networks.items():
            module = self.nets[name]
            device = next(itertools.chain(module.parameters(), module.buffers()), None)
            device = device.device if device is not None else torch.device("cpu")
            with torch.no_grad():
                out = module(torch.zeros(1, len(args), dtype=dtype, device=device))
            count = _output_count(out, name, len(args))
            for index in self.parsed.outputs[name]:
                _check_call(self.parsed, name, args, index, count)

    def _compile(self) -> None:
        """Generate, once, the Python source of the whole vector field and compile it."""
        source, namespace = _field_source(self.parsed, self.states)
        filename = f"<torchnde hybrid field {id(self):x}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), namespace)  # our own generated code
        self.source = source
        self._field = namespace["_field"]
        self._network_names = tuple(self.parsed.networks)
        self._parameter_names = tuple(self.parsed.spec.parameters)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_field", None)  # a generated function does not pickle: rebuilt on load
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._compile()

    # -- evaluating -----------------------------------------------------------------------------

    def forward(self, t: torch.Tensor, y: torch.Tensor, args=None) -> torch.Tensor:
        nets, params = self.nets, self.params  # by name: a ParameterDict sorts its keys
        return self._field(
            t,
            y,
            tuple(nets[n] for n in self._network_names),
            tuple(params[n] for n in self._parameter_names),
        )

    def network_outputs(self, t: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each network call's output along states ``y: (..., states)`` at times ``t``, by call
        name (``"NN1"``, or ``"NN1[0]"`` for an output of a several-output network)."""
        env = {self.parsed.spec.time: t, **dict(zip(self.states, y.unbind(-1)))}
        raw = {}
        for name, args in self.parsed.networks.items():
            inputs = torch.broadcast_tensors(*(env[a] for a in args))
            raw[name] = self.nets[name](torch.stack(inputs, dim=-1))
        return {
            call: raw[name][..., 0 if index is None else index]
            for call, (name, index) in self.parsed.calls.items()
        }

    @torch.no_grad()
    def set_scales(self, ts: torch.Tensor, ys: torch.Tensor) -> None:
        """Scale every network that can be scaled (an :class:`MLP`, a :class:`ScaledNetwork`, or
        any module with a ``set_data_scales(inputs, outputs)`` method) from observations
        ``ys: (T, states)``: inputs by the size of each state (its largest absolute value) or the
        time span, each output by the size of the state whose equation calls it divided by a
        tenth of the time span. Scales fixed by the user are kept."""
        size = torch.nan_to_num(ys.abs(), nan=0.0).amax(dim=0).clamp(min=1e-12)
        span = float(ts[-1] - ts[0]) or 1.0
        scale = {s: float(size[i]) for i, s in enumerate(self.states)}
        scale[self.parsed.spec.time] = span
        for name, args in self.parsed.networks.items():
            module = self.nets[name]
            if not callable(getattr(module, "set_data_scales", None)):
                continue
            like = module.out_scale if hasattr(module, "out_scale") else torch.ones(1)
            outputs = torch.ones(like.shape, dtype=like.dtype, device=like.device)
            for index in self.parsed.outputs[name]:
                call = name if index is None else f"{name}[{index}]"
                owners = self.parsed.network_equations(call)
                if owners:
                    outputs[0 if index is None else index] = scale[owners[0]] / (span / 10)
            inputs = torch.tensor([scale[a] for a in args], dtype=like.dtype, device=like.device)
            module.set_data_scales(inputs, outputs)

    def parameter_values(self) -> dict[str, float]:
        return {name: float(p.detach()) for name, p in self.params.items()}

    def extra_repr(self) -> str:
        return "; ".join(f"d{s}/dt = {sympy.sstr(self.parsed.equations[s])}" for s in self.states)


# -- output counts ---------------------------------------------------------------------------------


def _needed_outputs(parsed: ParsedSystem, name: str) -> int:
    indices = [i for i in parsed.outputs[name] if i is not None]
    return max(indices) + 1 if indices else 1


def _output_count(out: Any, name: str, inputs: int) -> int:
    if not isinstance(out, torch.Tensor) or out.ndim < 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"the network `{name}` must map (..., {inputs}) inputs to (..., outputs), but on a "
            f"(1, {inputs}) input it returned {shape}; end it with e.g. nn.Linear(hidden, 1)"
        )
    return int(out.shape[-1])


def _check_call(parsed: ParsedSystem, name: str, args, index: int | None, count: int) -> None:
    call = name if index is None else f"{name}[{index}]"
    state = parsed.network_equations(call)[0]
    shown = f"{name}({', '.join(args)})"
    if index is None and count != 1:
        picks = ", ".join(f"{shown}[{k}]" for k in range(min(count, 3)))
        raise ValueError(
            f"the equation for `{state}` uses `{shown}` as one number, but the network `{name}` "
            f"returns {count} outputs; pick an output in the equations ({picks}) or give the "
            "network one output"
        )
    if index is not None and index >= count:
        raise ValueError(
            f"the equation for `{state}` uses `{shown}[{index}]`, but the network `{name}` "
            f"returns {count} output{'s' if count != 1 else ''} (indices 0 to {count - 1}); "
            "fix the index or the network's output count"
        )


# -- code generation --------------------------------------------------------------------------------


def _field_source(parsed: ParsedSystem, states: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """The source of ``_field(t, y, nets, params)`` computing every right-hand side, and the
    namespace it runs in (torch and the constants, as exact Python floats).

    Every user name becomes a generated local (``_s0`` for the first state, ``_p0``, ``_o0_1`` for
    output 1 of network 0, ``_t``), so no user name can clash with the code. Constants are
    substituted and every number-only part folded into one float (printed to 17 digits, so the
    value is exact), so a torch function never receives a plain number."""
    spec = parsed.spec
    symbols = parsed.symbols
    rename: dict[sympy.Symbol, sympy.Expr] = {}
    local: dict[str, str] = {}
    for prefix, names in (("_s", states), ("_p", spec.parameters)):
        for i, name in enumerate(names):
            local[name] = f"{prefix}{i}"
    local[spec.time] = "_t"
    for name, code in local.items():
        rename[symbols[name]] = sympy.Symbol(code, real=True)
    for name, value in spec.constants.items():
        rename[symbols[name]] = sympy.Float(float(value))
    namespace: dict[str, Any] = {"torch": torch}

    networks = list(parsed.networks)
    calls: dict[str, str] = {}
    for i, name in enumerate(networks):
        for index in parsed.outputs[name]:
            call = name if index is None else f"{name}[{index}]"
            calls[call] = f"_o{i}_{0 if index is None else index}"
    expressions = []
    for state in states:
        expr = parsed.equations[state].replace(
            lambda e: isinstance(e, AppliedUndef),
            lambda e: sympy.Symbol(calls[e.func.__name__], real=True),
        )
        expressions.append(expr.xreplace(rename).evalf(17))

    used = {str(s) for e in expressions for s in e.free_symbols}
    lines = ["def _field(t, y, nets, params):", "    _t = t"]
    columns = [local[s] for s in states]
    needs_columns = any(c in used for c in columns) or any(
        tuple(args) != tuple(states) for args in parsed.networks.values()
    )
    if needs_columns:
        lines.append(f"    {', '.join(columns)}, = y.unbind(-1)")
    if spec.parameters:
        lines.append(f"    {', '.join(local[p] for p in spec.parameters)}, = params")
    for i, name in enumerate(networks):
        args = parsed.networks[name]
        lines.append(f"    _n{i} = nets[{i}]({_network_input(args, states, local, spec.time)})")
        indices = [0 if k is None else k for k in parsed.outputs[name]]
        for k in indices:
            lines.append(f"    _o{i}_{k} = _n{i}[..., {k}]")
    printer = TorchPrinter()
    shaped = set(columns) | set(calls.values())
    terms = []
    for expr in expressions:
        code = printer.doprint(expr)
        if not ({str(s) for s in expr.free_symbols} & shaped):
            code = f"torch.zeros_like(y[..., 0]) + ({code})"  # a constant or time-only equation
        terms.append(code)
    lines.append(f"    return torch.stack(({', '.join(terms)},), dim=-1)")
    return "\n".join(lines) + "\n", namespace


def _network_input(args, states, local, time) -> str:
    if tuple(args) == tuple(states):
        return "y"
    names = [local[a] for a in args]
    if time in args:
        return f"torch.stack(torch.broadcast_tensors({', '.join(names)}), dim=-1)"
    return f"torch.stack(({', '.join(names)},), dim=-1)"
