"""The TOML config of ``torchnde run``: its schema (pydantic), the checks that need more than one
key, and its conversion into a :class:`~torchnde.hybrid.RunSpec` plus a data source.

Every problem becomes one :class:`ConfigError` naming the file, the key (dotted path) and its line
where it can be found, and the fix.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..hybrid import (
    DiscoverySpec,
    ForecastSpec,
    NetworkSpec,
    RunSpec,
    SyntheticData,
    SystemSpec,
    TrainingSpec,
)
from ..hybrid._spec import ACTIVATIONS, NOISE_RELATIVE_TO, THRESHOLD_MODES
from ..training import SCHEDULES
from . import _toml
from ._errors import ConfigError

__all__ = ["CSVSource", "Config", "RunConfig", "load_config", "solver_names"]

#: a run name becomes a folder name
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

#: what ``--quick`` does to a config without a ``[quick]`` table: fewer optimiser steps
QUICK_CAPS = {
    ("training", "adam_steps"): 40,
    ("training", "lbfgs_steps"): 10,
    ("discovery", "refit_steps"): 20,
    ("discovery", "trajectory_steps"): 10,
    ("forecast", "blackbox_adam_steps"): 40,
    ("forecast", "blackbox_lbfgs_steps"): 5,
}


def solver_names() -> tuple[str, ...]:
    """The solver names a config may use (those :func:`torchnde.hybrid.solver_by_name` knows)."""
    from ..hybrid._workflow import _SOLVERS

    return tuple(_SOLVERS)


def _default(cls: type, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls`` (the single source of defaults)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise KeyError(name)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class NetworkConfig(_Section):
    """``[system.networks.NAME]`` and ``forecast.blackbox_network``: a multilayer perceptron."""

    hidden: int = Field(
        _default(NetworkSpec, "hidden"), ge=1, le=4096, description="width of each hidden layer"
    )
    depth: int = Field(
        _default(NetworkSpec, "depth"), ge=0, le=16, description="number of hidden layers"
    )
    activation: Literal[ACTIVATIONS] = Field(  # type: ignore[valid-type]
        _default(NetworkSpec, "activation"), description="activation function"
    )
    input_scale: float | list[float] | None = Field(
        None,
        description="inputs are divided by this (one number, or one per input); default: "
        "from the data",
    )
    output_scale: float | list[float] | None = Field(
        None,
        description="outputs are multiplied by this (one number, or one per output); "
        "default: from the data",
    )
    factory: str | None = Field(
        None,
        min_length=3,
        description='your own network: "file.py:function" (relative to the config) or '
        '"package.module:function", a function (inputs, outputs) -> torch.nn.Module',
    )


class SystemConfig(_Section):
    """``[system]``: the hybrid model."""

    states: list[str] = Field(min_length=1, description='the state names, e.g. ["x", "y"]')
    equations: dict[str, str] = Field(
        min_length=1, description='per state, its right-hand side, e.g. x = "alpha*x + NN1(x, y)"'
    )
    constants: dict[str, float] = Field(default_factory=dict, description="known parameters")
    parameters: dict[str, float] = Field(
        default_factory=dict, description="learnable parameters and their initial values"
    )
    networks: dict[str, NetworkConfig] = Field(
        default_factory=dict,
        description="every network the equations call, with its settings ({} for the defaults)",
    )
    time: str = Field(_default(SystemSpec, "time"), min_length=1, description="the name of time")


class SyntheticConfig(_Section):
    """``[data.synthetic]``: data generated from a fully known system."""

    equations: dict[str, str] = Field(
        min_length=1, description='the true right-hand sides, e.g. x = "alpha*x - beta*x*y"'
    )
    parameters: dict[str, float] = Field(
        default_factory=dict, description="values of the symbols of the true equations"
    )
    initial: dict[str, float] = Field(
        min_length=1, description="the initial state, e.g. {x = 10.0}"
    )
    t_end: float = Field(description="end of the observed (training) window")
    t_start: float = Field(_default(SyntheticData, "t_start"), description="start of the window")
    n_points: int = Field(
        _default(SyntheticData, "n_points"), ge=2, description="observation times"
    )
    noise: float = Field(
        _default(SyntheticData, "noise"),
        ge=0,
        le=10,
        description="noise standard deviation as a fraction of each state's standard deviation "
        "or mean (see noise_relative_to)",
    )
    noise_relative_to: Literal[NOISE_RELATIVE_TO] = Field(  # type: ignore[valid-type]
        _default(SyntheticData, "noise_relative_to"),
        description='"std": noise is a fraction of each state\'s standard deviation; "mean": of '
        "its mean absolute value",
    )
    irregular: bool = Field(_default(SyntheticData, "irregular"), description="random times")
    missing: float = Field(
        _default(SyntheticData, "missing"), ge=0, lt=1, description="fraction of values dropped"
    )
    seed: int = Field(_default(SyntheticData, "seed"), ge=0, description="seed of noise and times")


class CSVConfig(_Section):
    """``[data.csv]``: observations from a CSV file."""

    path: str = Field(min_length=1, description="the CSV file, relative to the config file")
    time_column: str = Field("t", min_length=1, description="header of the time column")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="state -> column header (states not listed use their own name)",
    )


class DataConfig(_Section):
    """``[data]``: exactly one of ``[data.synthetic]`` and ``[data.csv]``."""

    synthetic: SyntheticConfig | None = Field(None, description="a synthetic data generator")
    csv: CSVConfig | None = Field(None, description="a CSV file of observations")


class TrainingConfig(_Section):
    """``[training]``: how the hybrid model is fitted."""

    window: int = Field(
        _default(TrainingSpec, "window"), ge=2, description="observations per window"
    )
    solver: str = Field(_default(TrainingSpec, "solver"), description="solver name, e.g. rk4")
    dt: float | None = Field(None, gt=0, description="step size of fixed-step solvers")
    rtol: float = Field(
        _default(TrainingSpec, "rtol"), gt=0, lt=1, description="relative tolerance"
    )
    atol: float = Field(_default(TrainingSpec, "atol"), gt=0, description="absolute tolerance")
    adam_steps: int = Field(_default(TrainingSpec, "adam_steps"), ge=0, description="Adam steps")
    adam_lr: float = Field(_default(TrainingSpec, "adam_lr"), gt=0, le=10, description="Adam rate")
    schedule: str | dict[str, Any] | None = Field(
        None,
        description='the Adam stage\'s learning-rate schedule: "cosine", "step", "exponential" '
        '(default settings) or a table such as { name = "cosine", min_lr = 1e-4 }',
    )
    lbfgs_steps: int = Field(
        _default(TrainingSpec, "lbfgs_steps"), ge=0, description="L-BFGS steps"
    )
    batch_size: int | None = Field(None, ge=1, description="windows per step (default: all)")
    multiple_shooting: bool = Field(
        _default(TrainingSpec, "multiple_shooting"), description="learn each window's start"
    )
    checkpoint_every: int = Field(
        _default(TrainingSpec, "checkpoint_every"), ge=1, description="steps between checkpoints"
    )
    patience: int | None = Field(None, ge=1, description="early stopping patience in steps")


class DiscoveryConfig(_Section):
    """``[discovery]``: how closed forms are recovered."""

    degree: int = Field(
        _default(DiscoverySpec, "degree"), ge=1, le=6, description="polynomial degree"
    )
    library: list[str] | None = Field(
        None, min_length=1, description='explicit candidate terms, e.g. ["x", "x*y", "sin(x)"]'
    )
    threshold: float = Field(
        _default(DiscoverySpec, "threshold"), ge=0, description="sparsity threshold"
    )
    threshold_mode: Literal[THRESHOLD_MODES] = Field(  # type: ignore[valid-type]
        _default(DiscoverySpec, "threshold_mode"),
        description='how the threshold is read: "share" of the target\'s RMS, relative to the '
        '"largest" coefficient, or "absolute" coefficient size (PySINDy\'s STLSQ)',
    )
    samples: int = Field(_default(DiscoverySpec, "samples"), ge=10, description="evaluation points")
    refit_steps: int = Field(
        _default(DiscoverySpec, "refit_steps"),
        ge=0,
        description="L-BFGS steps refitting on windows",
    )
    trajectory_steps: int = Field(
        _default(DiscoverySpec, "trajectory_steps"),
        ge=0,
        description="L-BFGS steps then refitting on the whole trajectory",
    )
    select: bool = Field(
        _default(DiscoverySpec, "select"),
        description="choose the sparsity among thresholds x1, 2, 3, 5 on the data (the sparsest "
        "law within one standard error of the best)",
    )
    select_steps: int = Field(
        _default(DiscoverySpec, "select_steps"),
        ge=1,
        description="L-BFGS steps refitting each candidate before comparing them",
    )
    max_loss_ratio: float = Field(
        _default(DiscoverySpec, "max_loss_ratio"),
        ge=1,
        description="the chosen law explains the data when, refitted, its loss on the windows is "
        "at most this many times the hybrid model's (else: no sparse law found)",
    )


class ForecastConfig(_Section):
    """``[forecast]``: the forecast and the black-box baseline."""

    horizon: float = Field(
        _default(ForecastSpec, "horizon"),
        gt=0,
        le=100,
        description="forecast length / window length",
    )
    blackbox: bool = Field(_default(ForecastSpec, "blackbox"), description="train a black box too")
    blackbox_network: NetworkConfig = Field(
        default_factory=lambda: NetworkConfig(
            **dataclasses.asdict(_default(ForecastSpec, "blackbox_network"))
        ),
        description="the black box's network",
    )
    blackbox_adam_steps: int = Field(_default(ForecastSpec, "blackbox_adam_steps"), ge=0)
    blackbox_lbfgs_steps: int = Field(_default(ForecastSpec, "blackbox_lbfgs_steps"), ge=0)


class RunConfig(_Section):
    """The whole config file."""

    name: str | None = Field(
        None, pattern=NAME_PATTERN, description="the run's name (default: the file's name)"
    )
    seed: int = Field(_default(RunSpec, "seed"), ge=0, description="seed of the initial weights")
    system: SystemConfig = Field(description="the hybrid model")
    data: DataConfig = Field(description="[data.synthetic] or [data.csv]")
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)
    quick: dict[str, Any] | None = Field(
        None, description="overrides applied by --quick (same layout as the config)"
    )


@dataclass(frozen=True)
class CSVSource:
    """Where the observations come from when they are a CSV file."""

    path: Path
    time_column: str
    columns: dict[str, str]


@dataclass(frozen=True)
class Config:
    """A checked config file.

    Attributes:
        path: the config file.
        text: its text.
        spec: the run.
        data: the synthetic generator or the CSV file.
        resolved: the config with every default filled in, the ``--quick`` overrides applied
            and the CSV path absolute (what a run folder stores as ``config.toml``).
        quick: whether the ``--quick`` overrides were applied.
    """

    path: Path
    text: str
    spec: RunSpec
    data: SyntheticData | CSVSource
    resolved: dict[str, Any]
    quick: bool


def load_config(path: str | Path, *, quick: bool = False, name: str | None = None) -> Config:
    """Reads, validates and converts a config file.

    Args:
        path: the TOML file.
        quick: apply the config's ``[quick]`` overrides (or, without one, cap the optimiser
            steps) for a run of seconds.
        name: the run name when the config gives none (default: the file's stem).

    Raises:
        ConfigError: one problem, with the file, key, line and fix.
    """
    path = Path(path)
    raw, text = _toml.read(path)
    base = {k: v for k, v in raw.items() if k != "quick"}
    overrides = raw.get("quick")
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError(
            path,
            "must be a table of overrides, e.g. [quick.training] with adam_steps = 20",
            key="quick",
            line=_toml.find_line(text, ("quick",)),
        )
    config = _validate(path, text, base)
    if overrides is not None:  # checked also without --quick, so a typo shows at once
        quick_config = _validate(path, text, _merge(base, overrides), overrides)
    else:
        quick_config = _validate(path, text, _cap(base))
    return _convert(path, text, quick_config if quick else config, quick, name)


def resolve_data_path(config_file: Path, csv_path: str) -> Path:
    """A CSV path from a config: absolute, relative paths taken from the config's folder."""
    data = Path(csv_path).expanduser()
    return data if data.is_absolute() else (config_file.resolve().parent / data)


# -- validation -----------------------------------------------------------------------------------


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _cap(base: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for (section, key), cap in QUICK_CAPS.items():
        table = out.setdefault(section, {})
        if not isinstance(table, dict):
            continue
        value = table.get(key)
        if value is None:
            value = _default_of(section, key)
        if isinstance(value, int) and not isinstance(value, bool):
            table[key] = min(value, cap)
    return out


def _default_of(section: str, key: str) -> Any:
    model = RunConfig.model_fields[section].default_factory()
    return getattr(model, key)


def _validate(path: Path, text: str, data: dict, overrides: dict | None = None) -> RunConfig:
    """The validated config; an error at a key the ``overrides`` set is named under
    ``quick.``."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as error:
        raise _config_error(path, text, error, overrides) from None


def _config_error(path: Path, text: str, error: ValidationError, overrides: Any) -> ConfigError:
    problems = error.errors(include_url=False)
    first = problems[0]
    loc = tuple(str(part) for part in first["loc"])
    if isinstance(overrides, dict) and _has_path(overrides, loc):
        loc = ("quick", *loc)
    message = _describe(first, loc, _lookup_model(loc[1:] if loc[:1] == ("quick",) else loc))
    if len(problems) > 1:
        message += (
            f" ({len(problems) - 1} more problem{'s' if len(problems) > 2 else ''} after this one)"
        )
    return ConfigError(path, message, key=".".join(loc), line=_toml.find_line(text, loc))


def _has_path(data: Any, loc: tuple[str, ...]) -> bool:
    for part in loc:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _lookup_model(loc: tuple[str, ...]) -> type[BaseModel] | None:
    """The model class holding the last key of ``loc`` (the schema walked along the path)."""
    current: Any = RunConfig
    for part in loc[:-1]:
        current = _step(current, part)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _step(current: Any, part: str) -> Any:
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        field = current.model_fields.get(part)
        return None if field is None else _unwrap(field.annotation)
    if typing.get_origin(current) is dict:
        return _unwrap(typing.get_args(current)[1])
    return None


def _unwrap(annotation: Any) -> Any:
    """``X`` from ``X | None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


_EXPECTED = {
    "int_type": "an integer (e.g. 300)",
    "int_from_float": "an integer (e.g. 300), not a fraction",
    "float_type": "a number (e.g. 0.5)",
    "string_type": 'text in quotes (e.g. "x")',
    "bool_type": "true or false",
    "dict_type": "a table ([section] or {key = value})",
    "model_type": "a table ([section] or {key = value})",
    "model_attributes_type": "a table ([section] or {key = value})",
    "list_type": 'a list (e.g. ["x", "y"])',
}
_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", "≥"),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "≤"),
}
_TOML_TYPES = {
    str: "text",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    dict: "a table",
    list: "a list",
}


def _got(value: Any) -> str:
    kind = _TOML_TYPES.get(type(value), type(value).__name__)
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{shown} ({kind})"


def _describe(problem: dict, loc: tuple[str, ...], model: type[BaseModel] | None) -> str:
    kind = problem["type"]
    key = loc[-1] if loc else ""
    value = problem.get("input")
    ctx = problem.get("ctx") or {}
    section = ".".join(loc[:-1])
    where = f"[{section}]" if section else "the top level"
    if kind == "extra_forbidden":
        valid = list(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
        hint = f"did you mean `{close[0]}`? " if close else ""
        return (
            f"unknown key `{key}` in {where}; {hint}valid keys there: {', '.join(valid)}. "
            "Fix the spelling or delete the line."
        )
    if kind == "missing":
        field = model.model_fields.get(key) if model is not None else None
        what = f" ({field.description})" if field is not None and field.description else ""
        return f"missing required key `{key}`{what}; add it to {where}"
    if kind in _BOUNDS:
        name, sign = _BOUNDS[kind]
        return f"must be {sign} {ctx.get(name)}, got {value!r}; change the value"
    if kind in ("too_short", "too_long"):
        return f"{problem['msg'].lower()}; got {_got(value)}"
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        options = [o.strip().strip("'") for o in expected.replace(" or ", ", ").split(",")]
        close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"must be one of {', '.join(options)}, got {value!r}{hint}"
    if kind == "string_pattern_mismatch":
        return (
            f"{value!r} cannot name a run folder; use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit"
        )
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}, got {_got(value)}; change the value"
    return f"{problem['msg']} (got {_got(value)})"


# -- conversion -----------------------------------------------------------------------------------


def _convert(path: Path, text: str, config: RunConfig, quick: bool, name: str | None) -> Config:
    def error(key: tuple[str, ...], problem: str) -> ConfigError:
        return ConfigError(path, problem, key=".".join(key), line=_toml.find_line(text, key))

    system = config.system
    states = tuple(system.states)
    _check_system(states, system, error)
    data = _data(path, config, states, error)
    _check_training(config, data, error)
    run_name = config.name or name or path.stem
    if not _valid_name(run_name):
        raise error(("name",), f'the file name {run_name!r} cannot name a run; set name = "..."')
    spec = RunSpec(
        name=run_name,
        system=SystemSpec(
            states=states,
            equations=dict(system.equations),
            constants=dict(system.constants),
            parameters=dict(system.parameters),
            networks={
                k: _network_spec(path, v, ("system", "networks", k), error)
                for k, v in system.networks.items()
            },
            time=system.time,
        ),
        training=TrainingSpec(
            **{
                **config.training.model_dump(),
                "schedule": _schedule(config.training.schedule, error),
            }
        ),
        discovery=DiscoverySpec(
            **{
                **config.discovery.model_dump(),
                "library": None
                if config.discovery.library is None
                else tuple(config.discovery.library),
            }
        ),
        forecast=ForecastSpec(
            **{
                **config.forecast.model_dump(),
                "blackbox_network": _network_spec(
                    path, config.forecast.blackbox_network, ("forecast", "blackbox_network"), error
                ),
            }
        ),
        seed=config.seed,
    )
    _check_equations(spec, error)
    _check_scales(spec, error)
    _check_threshold(config.discovery, error)
    resolved = config.model_dump(exclude={"quick"})
    for name, network in spec.system.networks.items():  # factory files as absolute paths
        if network.factory is not None:
            resolved["system"]["networks"][name]["factory"] = network.factory
    resolved["name"] = run_name
    if isinstance(data, CSVSource):
        resolved["data"] = {"csv": {**resolved["data"]["csv"], "path": str(data.path)}}
        resolved["data"]["csv"]["columns"] = dict(data.columns)
    else:
        resolved["data"] = {"synthetic": resolved["data"]["synthetic"]}
    return Config(path=path, text=text, spec=spec, data=data, resolved=resolved, quick=quick)


def _network_spec(path: Path, network: NetworkConfig, key: tuple[str, ...], error) -> NetworkSpec:
    """The network's spec; a factory file is taken relative to the config and checked now."""
    from ..hybrid._model import load_factory

    values = network.model_dump()
    factory = values.get("factory")
    if factory is not None:
        if key[0] == "forecast":
            raise error((*key, "factory"), "the black box is always the default MLP; remove it")
        module, _, function = factory.rpartition(":")
        if module.endswith(".py") and not Path(module).expanduser().is_absolute():
            factory = f"{resolve_data_path(path, module)}:{function}"
        values["factory"] = factory
    for name in ("input_scale", "output_scale"):
        if isinstance(values[name], list):
            values[name] = tuple(values[name])
    try:
        spec = NetworkSpec(**values)
        if spec.factory is not None:
            load_factory(spec.factory)
    except (ValueError, TypeError, ImportError) as problem:
        bad = "factory" if factory is not None and "factory" in str(problem) else None
        raise error((*key, bad) if bad else key, str(problem)) from None
    return spec


def _schedule(schedule: Any, error) -> Any:
    """The schedule of ``training.schedule``: None (constant), a name, or a schedule object
    from a table ``{ name = "cosine", min_lr = 1e-4 }``."""
    key = ("training", "schedule")
    names = [*SCHEDULES, "constant"]
    table = dict(schedule) if isinstance(schedule, dict) else {"name": schedule}
    name = table.pop("name", None)
    if schedule is None or name == "constant":
        return None if not table else _schedule_error(error, key, "constant", table)
    if name not in SCHEDULES:
        where = key if isinstance(schedule, str) else (*key, "name")
        close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise error(where, f"must be one of {', '.join(names)}, got {name!r}{hint}")
    if isinstance(schedule, str):
        return schedule
    cls = SCHEDULES[name]
    valid = [f.name for f in dataclasses.fields(cls)]
    extra = [k for k in table if k not in valid]
    if extra:
        _schedule_error(error, key, name, table, valid)
    try:
        return cls(**table)
    except (TypeError, ValueError) as problem:
        raise error(key, f"{problem}; fix the {name} schedule's settings") from None


def _schedule_error(error, key, name: str, table: dict, valid: list[str] | None = None):
    raise error(
        key,
        f"the {name} schedule takes {', '.join(valid or []) or 'no settings'}, got "
        f"{', '.join(table)}; remove the others",
    )


def _check_scales(spec: RunSpec, error) -> None:
    """A list of scales has one value per input (output) of its network."""
    from ..hybrid import parse_system

    parsed = parse_system(spec.system)
    for name, network in spec.system.networks.items():
        indices = [i for i in parsed.outputs.get(name, ()) if i is not None]
        sizes = {
            "input_scale": len(parsed.networks[name]),
            "output_scale": max(indices) + 1 if indices else 1,
        }
        for key, size in sizes.items():
            value = getattr(network, key)
            if isinstance(value, tuple) and len(value) != size:
                what = "inputs" if key == "input_scale" else "outputs"
                raise error(
                    ("system", "networks", name, key),
                    f"has {len(value)} values but `{name}` takes {size} {what}; give one value "
                    f"per {what[:-1]}, or one number for all",
                )


def _check_threshold(discovery: DiscoveryConfig, error) -> None:
    limit = {"share": 1.0, "largest": 1.0}.get(discovery.threshold_mode)
    if limit is not None and discovery.threshold >= limit:
        raise error(
            ("discovery", "threshold"),
            f"must be < 1 with threshold_mode = {discovery.threshold_mode!r} (a fraction), got "
            f'{discovery.threshold!r}; lower it, or use threshold_mode = "absolute"',
        )


def _valid_name(name: str) -> bool:
    return re.match(NAME_PATTERN, name) is not None


def _check_system(states: tuple[str, ...], system: SystemConfig, error) -> None:
    if len(set(states)) != len(states):
        twice = next(s for s in states if states.count(s) > 1)
        raise error(("system", "states"), f"the state {twice!r} is listed twice; list each once")


def _check_training(config: RunConfig, data: SyntheticData | CSVSource, error) -> None:
    solvers = solver_names()
    solver = config.training.solver
    if solver.lower() not in solvers:
        close = difflib.get_close_matches(solver.lower(), solvers, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise error(
            ("training", "solver"),
            f"unknown solver {solver!r}; {hint}choose one of {', '.join(solvers)}",
        )
    if isinstance(data, SyntheticData) and config.training.window > data.n_points:
        raise error(
            ("training", "window"),
            f"a window of {config.training.window} observations is longer than the "
            f"{data.n_points} observations of [data.synthetic] (n_points); lower it or raise n_points",
        )


def _data(
    path: Path, config: RunConfig, states: tuple[str, ...], error
) -> SyntheticData | CSVSource:
    data = config.data
    if (data.synthetic is None) == (data.csv is None):
        found = "both" if data.synthetic is not None else "neither"
        raise error(
            ("data",),
            f"give exactly one data source, [data.synthetic] or [data.csv]; found {found}",
        )
    if data.csv is not None:
        columns = dict(data.csv.columns)
        for state in columns:
            if state not in states:
                close = difflib.get_close_matches(state, states, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise error(
                    ("data", "csv", "columns", state),
                    f"{state!r} is not a state; {hint}the keys of columns are state names "
                    f"({', '.join(states)})",
                )
        return CSVSource(
            path=resolve_data_path(path, data.csv.path),
            time_column=data.csv.time_column,
            columns={s: columns.get(s, s) for s in states},
        )
    synthetic = data.synthetic
    for key in ("equations", "initial"):
        given = getattr(synthetic, key)
        missing = [s for s in states if s not in given]
        extra = [s for s in given if s not in states]
        if missing:
            raise error(
                ("data", "synthetic", key),
                f"has no entry for the state {missing[0]!r}; give one per state ({', '.join(states)})",
            )
        if extra:
            close = difflib.get_close_matches(extra[0], states, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise error(
                ("data", "synthetic", key, extra[0]),
                f"{extra[0]!r} is not a state{hint}; the states are {', '.join(states)}",
            )
    if synthetic.t_end <= synthetic.t_start:
        raise error(
            ("data", "synthetic", "t_end"),
            f"must be after t_start = {synthetic.t_start:g}, got {synthetic.t_end:g}",
        )
    return SyntheticData(
        equations={s: synthetic.equations[s] for s in states},
        parameters=dict(synthetic.parameters),
        initial={s: synthetic.initial[s] for s in states},
        t_end=synthetic.t_end,
        n_points=synthetic.n_points,
        t_start=synthetic.t_start,
        noise=synthetic.noise,
        irregular=synthetic.irregular,
        missing=synthetic.missing,
        seed=synthetic.seed,
        noise_relative_to=synthetic.noise_relative_to,
    )


def _check_equations(spec: RunSpec, error) -> None:
    from ..hybrid import EquationError, parse_system

    try:
        parse_system(spec.system)
    except EquationError as problem:
        raise error(_equation_key(str(problem), spec.system), str(problem)) from None


def _equation_key(message: str, system: SystemSpec) -> tuple[str, ...]:
    """The key an equation error is about, read off its message (best effort)."""
    for pattern, section in (
        (r"the equation for `([^`]+)`", "equations"),
        (r"network settings are given for `([^`]+)`", "networks"),
    ):
        match = re.search(pattern, message)
        if match:
            return ("system", section, match.group(1))
    for group in ("states", "constants", "parameters"):
        if f"in {group}" in message:
            return ("system", group)
    return ("system", "equations")
