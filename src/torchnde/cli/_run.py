"""One run of the command: config -> data -> run folder (new or resumed, locked, agreed by every
``torchrun`` process) -> the discovery workflow -> metrics, figures and report."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..hybrid import (
    NO_LAW,
    EquationError,
    ExtrapolationWarning,
    Observations,
    SyntheticData,
    discover,
    load_csv,
    simulate,
    write_run_folder,
)
from ..hybrid._csv import CSVError
from ..training import RunLock, TrainingInterrupted, atomic_save, atomic_write_text
from . import _toml
from ._config import Config, CSVSource, load_config
from ._errors import EXIT, CliError, ConfigError
from ._main import Stopped, rank

__all__ = ["execute", "find_latest_run", "new_run_dir"]

CONFIG_NAME = "config.toml"
RUN_INFO = "run.json"
MODELS = "models.pt"
_STAMP = re.compile(r"^(?P<stamp>\d{8}-\d{6})(?:-(?P<n>\d+))?$")


def execute(
    config_path: Path,
    *,
    quick: bool,
    out: Path,
    resume: str | None,
    progress: bool,
    invocation: str,
) -> int:
    """Runs one config; returns the exit status (errors are raised as :class:`CliError`)."""
    started = time.perf_counter()
    main = rank() == 0
    config = load_config(config_path, quick=quick)
    observations = _load_data(config)
    group = _join_process_group()
    try:
        run_dir, lock = _agree_on_run_dir(config, out, resume, group)
        resume_command = f"{invocation} --resume {run_dir}" + (" --quick" if quick else "")
        try:
            if main:
                print(f"run folder: {run_dir}", flush=True)
            result = _discover(config, observations, run_dir, resume is not None, progress, main)
            if main:
                _finish(result, run_dir, time.perf_counter() - started)
        except TrainingInterrupted as stop:
            code = 128 + stop.signal_number
            raise CliError(_stopped(stop.signal_number, resume_command), code) from None
        except (Stopped, KeyboardInterrupt) as stop:
            number = stop.signal_number if isinstance(stop, Stopped) else int(signal.SIGINT)
            raise CliError(_stopped(number, resume_command), 128 + number) from None
        finally:
            if lock is not None:
                lock.release()
    finally:
        _leave_process_group(group)
    return EXIT["ok"]


def _stopped(number: int, resume_command: str) -> str:
    name = signal.Signals(number).name
    return f"stopped by {name}; the last checkpoint is kept. Resume with: {resume_command}"


# -- data -----------------------------------------------------------------------------------------


def _load_data(config: Config) -> Observations:
    data = config.data
    if isinstance(data, CSVSource):
        try:
            observations = load_csv(data.path, data.time_column, data.columns)
        except CSVError as error:
            raise CliError(f"{error} (the data of {config.path}, [data.csv])") from None
        window = config.spec.training.window
        if window > len(observations.ts):
            raise ConfigError(
                config.path,
                f"a window of {window} observations is longer than the {len(observations.ts)} "
                f"rows of {data.path}; lower it",
                key="training.window",
                line=_toml.find_line(config.text, ("training", "window")),
            )
        return observations
    try:
        return simulate(data, config.spec.system.states)
    except (EquationError, ValueError) as error:
        key = ("data", "synthetic", "equations")
        raise ConfigError(
            config.path, str(error), key=".".join(key), line=_toml.find_line(config.text, key)
        ) from None


def _data_digest(config: Config) -> str | None:
    if not isinstance(config.data, CSVSource):
        return None
    return hashlib.sha256(config.data.path.read_bytes()).hexdigest()


# -- the run folder -------------------------------------------------------------------------------


def new_run_dir(out: Path, name: str) -> Path:
    """Creates ``out/<name>-<YYYYmmdd-HHMMSS>`` (with ``-2``, ``-3``… if that exists)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        candidate = out / (f"{name}-{stamp}" if n == 1 else f"{name}-{stamp}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise CliError(f"cannot create a run folder for {name!r} in {out}", EXIT["failed"])


def find_latest_run(out: Path, name: str) -> Path | None:
    """The newest ``out/<name>-<timestamp>`` folder holding a run, or None."""
    if not out.is_dir():
        return None
    found = []
    for path in out.iterdir():
        if not path.name.startswith(f"{name}-") or not (path / CONFIG_NAME).is_file():
            continue
        match = _STAMP.match(path.name[len(name) + 1 :])
        if match:
            found.append(((match["stamp"], int(match["n"] or 1)), path))
    return max(found)[1] if found else None


def _agree_on_run_dir(
    config: Config, out: Path, resume: str | None, group: Any
) -> tuple[Path, RunLock | None]:
    """Rank 0 picks (and locks, and prepares) the run folder; every rank gets its path, or the
    error rank 0 met."""
    lock = None
    answer: dict[str, Any]
    if rank() == 0:
        try:
            run_dir, lock = _prepare_run_dir(config, out, resume)
            answer = {"run_dir": str(run_dir)}
        except CliError as error:
            answer = {"error": error.message, "code": error.code}
            if group is None:
                raise
        except Exception as error:  # tell the other ranks, or they wait for the path forever
            if group is None:
                raise
            answer = {"error": f"cannot prepare the run folder: {error}", "code": EXIT["failed"]}
    else:
        answer = {}
    if group is not None:
        import torch.distributed as dist

        box = [answer]
        dist.broadcast_object_list(box, src=0)
        answer = box[0]
    if "error" in answer:
        if lock is not None:
            lock.release()
        raise CliError(answer["error"], answer["code"])
    return Path(answer["run_dir"]), lock


def _prepare_run_dir(config: Config, out: Path, resume: str | None) -> tuple[Path, RunLock]:
    name = config.spec.name
    if resume is None:
        run_dir = new_run_dir(out, name)
    elif resume == "":
        latest = find_latest_run(out, name)
        if latest is None:
            raise CliError(
                f"--resume: no run folder of {name!r} in {out}/ to resume; start a run without "
                "--resume, or name the folder: --resume RUN_DIR",
                EXIT["busy"],
            )
        run_dir = latest
    else:
        run_dir = Path(resume)
        if not (run_dir / CONFIG_NAME).is_file():
            what = "does not exist" if not run_dir.exists() else f"has no {CONFIG_NAME}"
            raise CliError(
                f"--resume {run_dir}: the folder {what}, so it is not a run folder; give the "
                "folder a run printed as `run folder: ...`",
                EXIT["busy"],
            )
    lock = RunLock(run_dir)
    try:
        lock.acquire()
    except RuntimeError as error:
        raise CliError(str(error), EXIT["busy"]) from None
    try:
        if resume is None:
            _write_config(config, run_dir)
        else:
            _check_same_config(config, run_dir)
    except BaseException:
        lock.release()
        raise
    return run_dir, lock


def _write_config(config: Config, run_dir: Path) -> None:
    from torchnde import __version__

    header = (
        f"The resolved config of run {run_dir.name} (every default filled in"
        + (", --quick applied" if config.quick else "")
        + f").\nFrom {config.path}; torchnde {__version__}. Run it again with: "
        f"torchnde run {run_dir / CONFIG_NAME}"
    )
    atomic_write_text(run_dir / CONFIG_NAME, _toml.dumps(config.resolved, header))
    info = {
        "config": str(config.path),
        "quick": config.quick,
        "data_sha256": _data_digest(config),
        "torchnde": __version__,
        "torch": torch.__version__,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "argv": sys.argv,
    }
    atomic_write_text(run_dir / RUN_INFO, json.dumps(info, indent=2) + "\n")


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: data}


def _check_same_config(config: Config, run_dir: Path) -> None:
    """Refuses to resume a run whose resolved config (or CSV data) has changed."""
    stored_path = run_dir / CONFIG_NAME
    stored, _ = _toml.read(stored_path)
    current = _toml.tomllib.loads(_toml.dumps(config.resolved))
    old, new = _flatten(stored), _flatten(current)
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    info = _read_info(run_dir)
    if changed:
        shown = "; ".join(
            f"{k}: {_show(old.get(k))} in the run, {_show(new.get(k))} now" for k in changed[:3]
        )
        more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
        hint = ""
        if info.get("quick") is not None and bool(info["quick"]) != config.quick:
            hint = " The run was started " + ("with" if info["quick"] else "without") + " --quick."
        raise CliError(
            f"--resume {run_dir}: the config differs from the one the run started with "
            f"({stored_path}): {shown}{more}. Resuming would not reproduce the run; restore the "
            f"config, or start a new run without --resume.{hint}",
            EXIT["busy"],
        )
    digest = info.get("data_sha256")
    if digest is not None and digest != _data_digest(config):
        raise CliError(
            f"--resume {run_dir}: the CSV file {config.data.path} has changed since the run "
            "started; restore it, or start a new run without --resume",
            EXIT["busy"],
        )


def _show(value: Any) -> str:
    return "(absent)" if value is None else repr(value)


def _read_info(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# -- torchrun -------------------------------------------------------------------------------------


def _join_process_group() -> Any:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1), joins the process group the training will use;
    returns it, or None when running alone or when a group already exists (its owner keeps it)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch.distributed as dist

    if dist.is_initialized():
        return None
    dist.init_process_group(backend="gloo")
    return dist.group.WORLD


def _leave_process_group(group: Any) -> None:
    if group is None:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


# -- the workflow and its outputs -----------------------------------------------------------------


def _discover(
    config: Config,
    observations: Observations,
    run_dir: Path,
    resume: bool,
    progress: bool,
    main: bool,
):
    log: Callable[[str], None] = (
        (lambda line: print(line, flush=True) if line else None) if main else (lambda line: None)
    )
    if main:
        source = (
            "synthetic data" if isinstance(config.data, SyntheticData) else str(config.data.path)
        )
        log(
            f"{'resuming' if resume else 'running'} {config.spec.name}"
            + (" (--quick)" if config.quick else "")
            + f": {len(observations.ts)} observations of {', '.join(observations.states)} "
            f"from {source}"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)  # the log prints it already
        return discover(
            config.spec,
            observations,
            run_dir=run_dir,
            resume=resume,
            progress=progress and main,
            log=log,
        )


def _finish(result, run_dir: Path, seconds: float) -> None:
    atomic_save(
        {name: fit.model.state_dict() for name, fit in result.fits.items()}, run_dir / MODELS
    )
    written = write_run_folder(result, run_dir)
    metrics = json.loads(written["metrics.json"].read_text(encoding="utf-8"))
    if result.law_found:
        print("recovered equations:")
        for state, rhs in metrics["recovered_equations"].items():
            print(f"  d{state}/dt = {rhs}")
    else:
        print(f"{NO_LAW} (see the candidates in the report)")
    if result.sampling is not None and result.sampling.warning:
        print(f"warning: {result.sampling.warning}")
    for network, recovery in result.recoveries.items():
        if recovery.truth is not None:
            verdict = (
                "same terms as the truth"
                if recovery.same_terms_as_truth
                else "terms differ from the truth"
            )
            error = recovery.max_relative_error
            print(
                f"  {network}: {verdict}"
                + ("" if error is None else f", max coefficient error {100 * error:.2f}%")
            )
    errors = result.forecast.relative_errors
    if errors:
        print("forecast relative RMSE: " + ", ".join(f"{k} {v:.3g}" for k, v in errors.items()))
    print(f"done in {seconds:.1f} s; report: {run_dir / 'report.md'}")
    print(f"run folder: {run_dir}", flush=True)
