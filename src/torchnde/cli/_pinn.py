"""``torchnde pinn CONFIG.toml``: a physics-informed network trained on a shipped problem
(convection, reaction, reaction–diffusion, Burgers, heat) with a training paradigm, into a run
folder with checkpoints, resume, per-phase report, metrics and figures.

The TOML schema is checked with pydantic; every problem becomes one :class:`ConfigError` naming
the file, the key, its line and the fix (with the nearest valid key for typos).
"""

from __future__ import annotations

import copy
import json
import signal
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import pinn
from ..pinn._network import ACTIVATIONS, INITS
from ..pinn._sampling import SAMPLERS
from ..training import RunLock, Stage, TrainingInterrupted, atomic_write_text
from . import _toml
from ._config import NAME_PATTERN, _describe, _has_path
from ._errors import EXIT, CliError, ConfigError
from ._pinn_parser import SHIPPED
from ._run import find_latest_run, new_run_dir

__all__ = [
    "SHIPPED_PINN_CONFIGS",
    "PinnConfig",
    "execute",
    "load_pinn_config",
    "shipped_pinn_config",
]

#: shipped configs, ``torchnde/cli/configs/pinn_<name>.toml``
SHIPPED_PINN_CONFIGS = SHIPPED
CONFIG_NAME = "config.toml"
RUN_INFO = "run.json"

#: what ``--quick`` does to a config without a ``[quick]`` table
QUICK_CAPS = {
    ("training", "adam_steps"): 50,
    ("training", "lbfgs_steps"): 20,
    ("points", "collocation"): 256,
}


def shipped_pinn_config(name: str) -> Path:
    """The path of a shipped PINN config."""
    return Path(str(resources.files("torchnde.cli") / "configs" / f"pinn_{name}.toml"))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ProblemConfig(_Section):
    """``[problem]``: which shipped problem, at which coefficients."""

    equation: str = Field(description="convection, reaction, reaction_diffusion, burgers or heat")
    coefficients: dict[str, float] = Field(
        default_factory=dict, description="coefficient values, e.g. {beta = 30.0}"
    )
    initial: str | None = Field(None, description="initial condition: sin or gauss")
    hard_initial: bool | None = Field(None, description="build the initial condition in")
    hard_periodic: bool | None = Field(None, description="build periodicity in")


class NetworkConfig(_Section):
    """``[network]``: the MLP."""

    width: int = Field(50, ge=1, le=4096)
    depth: int = Field(4, ge=1, le=32)
    activation: Literal[tuple(ACTIVATIONS)] = "tanh"  # type: ignore[valid-type]
    fourier_features: int = Field(0, ge=0, le=4096)
    fourier_scale: float = Field(1.0, gt=0)
    harmonics: int = Field(1, ge=1, le=64)
    scale_inputs: bool = True
    init: Literal[INITS] = "glorot"  # type: ignore[valid-type]


class RefineConfig(_Section):
    """``[points.refine]``: residual-based adaptive refinement."""

    rounds: int = Field(1, ge=1)
    candidates: int = Field(10_000, ge=1)
    add: int = Field(100, ge=1)


class PointsConfig(_Section):
    """``[points]``: where the residual and conditions are enforced."""

    collocation: int = Field(1000, ge=1)
    initial: int = Field(256, ge=1)
    boundary: int = Field(100, ge=1)
    sampler: Literal[tuple(SAMPLERS)] = "uniform"  # type: ignore[valid-type]
    seed: int = Field(0, ge=0)
    refine: RefineConfig | None = None


class TrainingConfig(_Section):
    """``[training]``: the optimiser stages of every phase and the loss weights."""

    adam_steps: int = Field(0, ge=0)
    adam_lr: float = Field(1e-3, gt=0, le=10)
    lbfgs_steps: int = Field(1000, ge=0)
    lbfgs_lr: float = Field(1.0, gt=0, le=10)
    lbfgs_history: int = Field(50, ge=1, le=1000)
    weights: dict[str, float] = Field(default_factory=dict, description="term -> weight")
    adaptive_weights: bool = False
    adaptive_every: int = Field(100, ge=1)
    checkpoint_every: int = Field(100, ge=1)
    dtype: Literal["float32", "float64"] = "float32"


class ParadigmConfig(_Section):
    """``[paradigm]``: how the phases are chosen."""

    kind: Literal["plain", "curriculum", "time_marching", "causal"] = "plain"
    coefficient: str | None = Field(None, description="curriculum: the coefficient scheduled")
    values: list[float] | None = Field(
        None, description="curriculum: its values, ending at the target"
    )
    tolerance: float | None = Field(None, gt=0, description="a phase's loss to count as converged")
    retries: int = Field(0, ge=0)
    refine: int = Field(0, ge=0)
    blocks: int | None = Field(None, ge=1, description="time marching: the number of blocks")
    rescale: bool = Field(
        False, description="time marching: scale each block's inputs over the block itself"
    )
    epsilons: list[float] | None = Field(None, description="causal: ε stage by stage")
    bins: int = Field(32, ge=2, description="causal: time slices")


class EvaluationConfig(_Section):
    """``[evaluation]``: the grid the errors are measured on."""

    points: dict[str, int] = Field(
        default_factory=dict, description="per coordinate, e.g. {x = 256}"
    )


class PinnConfig(_Section):
    """The whole config file."""

    name: str | None = Field(None, pattern=NAME_PATTERN)
    seed: int = Field(0, ge=0)
    problem: ProblemConfig
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    points: PointsConfig = Field(default_factory=PointsConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    paradigm: ParadigmConfig = Field(default_factory=ParadigmConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    quick: dict[str, Any] | None = None


@dataclass(frozen=True)
class LoadedPinnConfig:
    """A checked config: the problem and everything :func:`torchnde.pinn.train` takes."""

    path: Path
    name: str
    problem: pinn.PDEProblem
    train_kwargs: dict[str, Any]
    resolved: dict[str, Any]
    quick: bool


def load_pinn_config(path: str | Path, *, quick: bool = False) -> LoadedPinnConfig:
    """Read, validate and convert a PINN config file.

    Raises:
        ConfigError: one problem, with the file, the key, its line and the fix.
    """
    path = Path(path)
    raw, text = _toml.read(path)
    base = {k: v for k, v in raw.items() if k != "quick"}
    overrides = raw.get("quick")
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError(path, "must be a table of overrides, e.g. [quick.training]", key="quick")
    config = _validate(path, text, base)
    quick_config = _validate(
        path, text, _merge(base, overrides) if overrides else _cap(base), overrides
    )
    chosen = quick_config if quick else config
    return _convert(path, text, chosen, quick)


def _merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _cap(base: dict) -> dict:
    out = copy.deepcopy(base)
    for (section, key), cap in QUICK_CAPS.items():
        table = out.setdefault(section, {})
        if isinstance(table, dict):
            default = PinnConfig.model_fields[section].default_factory()
            value = table.get(key, getattr(default, key))
            if isinstance(value, int) and not isinstance(value, bool):
                table[key] = min(value, cap)
    return out


def _validate(path: Path, text: str, data: dict, overrides: dict | None = None) -> PinnConfig:
    try:
        return PinnConfig.model_validate(data)
    except ValidationError as error:
        problems = error.errors(include_url=False)
        first = problems[0]
        loc = tuple(str(part) for part in first["loc"])
        model = _model_at(loc)
        if isinstance(overrides, dict) and _has_path(overrides, loc):
            loc = ("quick", *loc)
        message = _describe(first, loc, model)
        if len(problems) > 1:
            message += f" ({len(problems) - 1} more after this one)"
        raise ConfigError(
            path, message, key=".".join(loc), line=_toml.find_line(text, loc)
        ) from None


def _model_at(loc: tuple[str, ...]) -> type[BaseModel] | None:
    current: Any = PinnConfig
    for part in loc[:-1]:
        field = current.model_fields.get(part) if isinstance(current, type) else None
        if field is None:
            return None
        annotation = field.annotation
        args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
        current = args[0] if args and isinstance(args[0], type) else annotation
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
    return current


def _convert(path: Path, text: str, config: PinnConfig, quick: bool) -> LoadedPinnConfig:
    def error(key: tuple[str, ...], problem: str) -> ConfigError:
        return ConfigError(path, problem, key=".".join(key), line=_toml.find_line(text, key))

    problem = _problem(config.problem, error)
    name = config.name or path.stem.removeprefix("pinn_")
    stages = _stages(config.training, error)
    paradigm = _paradigm(config.paradigm, problem, error)
    evaluation = _evaluation(config.evaluation, problem, error)
    _check_weights(config.training, problem, error)
    training = config.training
    weights: Any = dict(training.weights)
    if training.adaptive_weights:
        weights = pinn.AdaptiveWeights(every=training.adaptive_every, initial=weights)
    refine = config.points.refine
    kwargs = {
        "stages": stages,
        "paradigm": paradigm,
        "network": pinn.Network(**config.network.model_dump()),
        "points": pinn.Points(
            collocation=config.points.collocation,
            initial=config.points.initial,
            boundary=config.points.boundary,
            sampler=config.points.sampler,
            seed=config.points.seed,
            refine=None if refine is None else pinn.ResidualRefinement(**refine.model_dump()),
        ),
        "weights": weights,
        "evaluation": evaluation,
        "seed": config.seed,
        "dtype": getattr(torch, training.dtype),
        "checkpoint_every": training.checkpoint_every,
    }
    resolved = config.model_dump(exclude={"quick"}, exclude_none=True)
    resolved["name"] = name
    resolved["evaluation"] = {"points": evaluation}
    return LoadedPinnConfig(path, name, problem, kwargs, resolved, quick)


def _problem(section: ProblemConfig, error) -> pinn.PDEProblem:
    entry = pinn.PROBLEMS.get(section.equation)
    if entry is None:
        from ..training._checks import nearest

        raise error(
            ("problem", "equation"),
            f"unknown equation {section.equation!r}{nearest(section.equation, pinn.PROBLEMS)}; "
            f"shipped: {', '.join(pinn.PROBLEMS)}",
        )
    settings: dict[str, Any] = {}
    for key, value in section.coefficients.items():
        if key not in entry.coefficients:
            from ..training._checks import nearest

            raise error(
                ("problem", "coefficients", key),
                f"the {section.equation} equation has no coefficient {key!r}"
                f"{nearest(key, entry.coefficients)}; its coefficients: "
                f"{', '.join(entry.coefficients)}",
            )
        settings[key] = value
    for key in ("initial", "hard_initial", "hard_periodic"):
        value = getattr(section, key)
        if value is None:
            continue
        if key not in entry.options:
            raise error(
                ("problem", key),
                f"the {section.equation} equation has no option {key!r} (its options: "
                f"{', '.join(entry.options) or 'none'}); delete the line",
            )
        settings[key] = value
    try:
        return entry.build(**settings)
    except ValueError as problem:
        raise error(("problem",), str(problem)) from None


def _stages(training: TrainingConfig, error) -> list[Stage]:
    stages = []
    if training.adam_steps:
        stages.append(Stage("adam", training.adam_steps, lr=training.adam_lr))
    if training.lbfgs_steps:
        stages.append(
            Stage(
                "lbfgs",
                training.lbfgs_steps,
                lr=training.lbfgs_lr,
                options={"history_size": training.lbfgs_history},
            )
        )
    if not stages:
        raise error(
            ("training", "lbfgs_steps"),
            "adam_steps and lbfgs_steps are both 0, so nothing would be trained; set one",
        )
    return stages


def _paradigm(section: ParadigmConfig, problem: pinn.PDEProblem, error):
    kind = section.kind
    unused = {
        "plain": ("coefficient", "values", "blocks", "epsilons", "tolerance"),
        "curriculum": ("blocks", "epsilons"),
        "time_marching": ("coefficient", "values", "epsilons"),
        "causal": ("coefficient", "values", "blocks", "tolerance"),
    }[kind]
    for key in unused:
        if getattr(section, key) is not None:
            raise error(
                ("paradigm", key), f"is not used by kind = {kind!r}; delete the line or change kind"
            )
    if section.rescale and kind != "time_marching":
        raise error(
            ("paradigm", "rescale"),
            f"is not used by kind = {kind!r}; delete the line or change kind",
        )
    try:
        if kind == "plain":
            paradigm = pinn.Plain()
        elif kind == "curriculum":
            for key in ("coefficient", "values"):
                if getattr(section, key) is None:
                    raise error(("paradigm", key), f"a curriculum needs `{key}`; add it")
            paradigm = pinn.Curriculum(
                section.coefficient,
                section.values,
                tolerance=section.tolerance,
                retries=section.retries,
                refine=section.refine,
            )
        elif kind == "time_marching":
            if section.blocks is None:
                raise error(("paradigm", "blocks"), "time marching needs `blocks`; add it")
            paradigm = pinn.TimeMarching(
                blocks=section.blocks,
                tolerance=section.tolerance,
                retries=section.retries,
                rescale=section.rescale,
            )
        else:
            epsilons = section.epsilons or pinn.Causal().epsilons
            paradigm = pinn.Causal(epsilons, section.bins)
        paradigm.check(problem)
    except ValueError as problem_found:
        key = "values" if kind == "curriculum" and "value" in str(problem_found) else "kind"
        if kind == "curriculum" and "coefficient" in str(problem_found):
            key = "coefficient"
        raise error(("paradigm", key), str(problem_found)) from None
    return paradigm


def _evaluation(section: EvaluationConfig, problem: pinn.PDEProblem, error) -> dict[str, int]:
    domain = problem.domain
    for name, count in section.points.items():
        if name not in domain.names:
            raise error(
                ("evaluation", "points", name),
                f"{name!r} is not a coordinate of the problem ({', '.join(domain.names)})",
            )
        if count < 2:
            raise error(("evaluation", "points", name), f"must be >= 2, got {count}")
    defaults = {n: 100 if i.periodic else 101 for n, i in domain.items()}
    return {**defaults, **section.points}


def _check_weights(training: TrainingConfig, problem: pinn.PDEProblem, error) -> None:
    terms = problem.soft_terms
    for key in training.weights:
        if key not in terms:
            from ..training._checks import nearest

            raise error(
                ("training", "weights", key),
                f"{key!r} is not a loss term of this problem{nearest(key, terms)}; the terms: "
                f"{', '.join(terms)}",
            )


# -- the run ---------------------------------------------------------------------------------------


def execute(
    config_path: Path,
    *,
    quick: bool,
    out: Path,
    resume: str | None,
    progress: bool,
    invocation: str,
) -> int:
    """Run one PINN config; return the exit status (errors are raised as :class:`CliError`)."""
    started = time.perf_counter()
    config = load_pinn_config(config_path, quick=quick)
    run_dir = _run_dir(config, out, resume)
    lock = RunLock(run_dir)
    try:
        lock.acquire()
    except RuntimeError as problem:
        raise CliError(str(problem), EXIT["busy"]) from None
    resume_command = f"{invocation} --resume {run_dir}" + (" --quick" if quick else "")
    try:
        if resume is None:
            _write_config(config, run_dir, invocation)
        else:
            _check_same_config(config, run_dir)
        print(f"run folder: {run_dir}", flush=True)
        print(
            f"{'resuming' if resume is not None else 'training'} {config.name}"
            + (" (--quick)" if quick else "")
            + f": {config.problem.name} {dict(config.problem.coefficients)}, "
            f"{config.train_kwargs['paradigm'].name}",
            flush=True,
        )

        def report(phase: pinn.PhaseResult) -> None:
            error = "" if phase.error is None else f", error {phase.error:.3g}"
            print(
                f"  phase {phase.index} {phase.name}: {phase.status.value}, loss "
                f"{phase.loss:.3g}{error}",
                flush=True,
            )

        result = pinn.train(
            config.problem,
            run_dir=run_dir,
            resume=resume is not None,
            progress=progress,
            callback=report,
            **config.train_kwargs,
        )
        settings = {k: config.resolved[k] for k in ("network", "points", "training")}
        pinn.write_run_folder(
            result, run_dir, command=resume_command.split(" --resume")[0], settings=settings
        )
    except TrainingInterrupted as stop:
        raise CliError(
            _stopped(stop.signal_number, resume_command), 128 + stop.signal_number
        ) from None
    except KeyboardInterrupt:
        number = int(signal.SIGINT)
        raise CliError(_stopped(number, resume_command), 128 + number) from None
    finally:
        lock.release()
    if result.completed:
        error = "—" if result.error is None else f"{result.error:.3g}"
        print(f"relative L2 error: {error}")
    else:
        print(f"stopped early: {result.stop_reason}")
    print(f"done in {time.perf_counter() - started:.1f} s; report: {run_dir / 'report.md'}")
    return EXIT["ok"]


def _stopped(number: int, command: str) -> str:
    name = signal.Signals(number).name
    return f"stopped by {name}; the last checkpoint is kept. Resume with: {command}"


def _run_dir(config: LoadedPinnConfig, out: Path, resume: str | None) -> Path:
    name = f"pinn-{config.name}"
    if resume is None:
        return new_run_dir(out, name)
    if resume == "":
        latest = find_latest_run(out, name)
        if latest is None:
            raise CliError(
                f"--resume: no run folder of {name!r} in {out}/ to resume; start a run without "
                "--resume, or name the folder: --resume RUN_DIR",
                EXIT["busy"],
            )
        return latest
    run_dir = Path(resume)
    if not (run_dir / CONFIG_NAME).is_file():
        what = "does not exist" if not run_dir.exists() else f"has no {CONFIG_NAME}"
        raise CliError(
            f"--resume {run_dir}: the folder {what}, so it is not a run folder", EXIT["busy"]
        )
    return run_dir


def _write_config(config: LoadedPinnConfig, run_dir: Path, invocation: str) -> None:
    from torchnde import __version__

    header = (
        f"The resolved config of run {run_dir.name} (every default filled in"
        + (", --quick applied" if config.quick else "")
        + f").\nFrom {config.path}; torchnde {__version__}. Run it again with: "
        f"torchnde pinn {run_dir / CONFIG_NAME}"
    )
    atomic_write_text(run_dir / CONFIG_NAME, _toml.dumps(config.resolved, header))
    info = {
        "config": str(config.path),
        "quick": config.quick,
        "command": invocation,
        "torch": torch.__version__,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "argv": sys.argv,
    }
    atomic_write_text(run_dir / RUN_INFO, json.dumps(info, indent=2) + "\n")


def _check_same_config(config: LoadedPinnConfig, run_dir: Path) -> None:
    stored, _ = _toml.read(run_dir / CONFIG_NAME)
    current = _toml.tomllib.loads(_toml.dumps(config.resolved))
    if stored != current:
        changed = sorted(
            k for k in stored.keys() | current.keys() if stored.get(k) != current.get(k)
        )
        raise CliError(
            f"--resume {run_dir}: the config differs from the one the run started with in "
            f"[{'], ['.join(changed)}]; restore it, or start a new run without --resume",
            EXIT["busy"],
        )
