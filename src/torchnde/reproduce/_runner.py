"""Running an entry: seeds -> per-seed metrics -> summary -> a run folder holding ``report.md``,
``metrics.json``, the figures and ``log.txt``, every file written atomically and ``report.md``
last (a killed run never leaves a report)."""

from __future__ import annotations

import importlib.util
import json
import math
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..training import atomic_write_text, seed_everything
from ._entry import Entry, NoProgress, Outcome, Row, RunContext
from ._registry import get

__all__ = [
    "EXTRA_OF",
    "RunResult",
    "check_extras",
    "is_complete_png",
    "json_ready",
    "new_run_dir",
    "run_entry",
    "verify_run_folder",
]

#: the torchnde extra that installs each optional module an entry may need
EXTRA_OF = {
    "sklearn": "models",
    "aeon": "models",
    "mnist1d": "models",
    "matplotlib": "plot",
    "tqdm": "train",
    "sympy": "discovery",
    "pysindy": "discovery",
}
#: the eight bytes every PNG file starts with, and the chunk it ends with
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"


@dataclass(frozen=True)
class RunResult:
    """What :func:`run_entry` produced.

    Attributes:
        run_dir: the run folder (``report.md``, ``metrics.json``, figures, ``log.txt``).
        outcome: the entry's summary: table rows, verdict, details, figures.
        per_seed: each seed's metrics, in seed order.
        seeds: the seeds run.
        seconds: the wall time of the whole run.
    """

    run_dir: Path
    outcome: Outcome
    per_seed: list[dict[str, float]]
    seeds: list[int]
    seconds: float


def run_entry(
    entry: Entry | str,
    *,
    quick: bool = False,
    seeds: int | None = None,
    out: str | Path = "runs",
    run_dir: str | Path | None = None,
    progress: bool = True,
    threads: int = 1,
    jobs: int = 1,
    command: str | None = None,
) -> RunResult:
    """Run a reproduce entry over its seeds and write its run folder.

    Every seed starts from :func:`torchnde.training.seed_everything` with that seed (0, 1, …).
    ``metrics.json`` and the figures are written before ``report.md``, each atomically, so a run
    folder with a ``report.md`` is complete, and a killed run leaves none.

    Args:
        entry: an :class:`Entry` or the name of a registered one.
        quick: tiny settings that run in seconds (for tests and a first look).
        seeds: how many seeds (default: the entry's ``seeds``, or ``quick_seeds`` when quick).
        out: where the run folder goes: ``out/reproduce-<name>-<YYYYmmdd-HHMMSS>/``.
        run_dir: the run folder itself (overrides ``out``; created if missing).
        progress: show a progress bar on stderr (when it is a terminal).
        threads: torch threads during the run (restored afterwards); with ``jobs > 1``, in each
            process.
        jobs: how many seeds run at once, each in its own process (``spawn``): a run of ``n``
            seeds on ``jobs`` cores takes about ``ceil(n / jobs)`` seeds' time. Every seed
            starts from the same state as in a serial run, so the metrics are the same; the
            per-seed progress bar gives way to a line per finished seed.
        command: the command line to quote in the report (default: this call, in Python).

    Returns:
        A :class:`RunResult`.

    Raises:
        ValueError: an unknown entry name, or a bad ``seeds``/``threads``/``jobs``.
        ImportError: a module the entry needs is missing (the message names the install).
    """
    entry = get(entry) if isinstance(entry, str) else entry
    if not isinstance(entry, Entry):
        raise TypeError(f"`entry` must be an Entry or a name, got {type(entry).__name__}")
    count = _count("seeds", seeds) if seeds is not None else None
    count = count or (entry.quick_seeds if quick else entry.seeds)
    _count("threads", threads)
    jobs = min(_count("jobs", jobs), count)
    check_extras(entry)
    folder = Path(run_dir) if run_dir is not None else new_run_dir(Path(out), entry.name)
    folder.mkdir(parents=True, exist_ok=True)
    if command is None:
        command = f"torchnde.reproduce.run_entry({entry.name!r}, quick={quick}, seeds={count})"
    bar = _progress_bar(progress)
    ctx = RunContext(quick=quick, out=folder, progress=bar, threads=threads, jobs=jobs)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        if jobs == 1:
            per_seed = [_run_seed(entry, ctx, seed, count) for seed in range(count)]
        else:
            per_seed = _run_seeds_in_processes(entry, ctx, count, jobs)
        ctx.seed = None
        outcome = entry.summarise(per_seed, ctx)
    finally:
        torch.set_num_threads(previous_threads)
        bar.close()
    outcome = _check_outcome(entry, outcome, folder)
    seconds = time.perf_counter() - started
    result = RunResult(folder, outcome, per_seed, list(range(count)), seconds)
    _write_run_folder(entry, result, ctx, command)
    return result


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
    return value


def check_extras(entry: Entry) -> None:
    """Raise an ImportError naming ``pip install 'torchnde[...]'`` if a module that ``entry``
    needs is missing."""
    missing = [m for m in entry.extras if importlib.util.find_spec(m) is None]
    if not missing:
        return
    extras = sorted({EXTRA_OF[m] for m in missing if m in EXTRA_OF})
    plain = [m for m in missing if m not in EXTRA_OF]
    fixes = [f"pip install 'torchnde[{','.join(extras)}]'"] if extras else []
    fixes += [f"pip install {m}" for m in plain]
    raise ImportError(
        f"reproduce entry {entry.name!r} needs {', '.join(missing)}, which is not installed; "
        f"install it with `{' && '.join(fixes)}`"
    )


def new_run_dir(out: Path, name: str) -> Path:
    """A new folder ``out/reproduce-<name>-<YYYYmmdd-HHMMSS>[-N]`` (created; never reused)."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        folder = out / (f"reproduce-{name}-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"could not create a new run folder for {name!r} in {out}")


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return NoProgress()
    try:
        from tqdm import tqdm
    except ImportError:  # no bar without tqdm; the run itself does not need it
        return NoProgress()
    return _Bar(tqdm(total=None, disable=None, dynamic_ncols=True))


class _Bar:
    """tqdm with the small interface of :class:`NoProgress` (``write`` prints above the bar)."""

    def __init__(self, bar: Any):
        self._bar = bar

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    def set_postfix(self, **values: Any) -> None:
        self._bar.set_postfix(values, refresh=False)

    def set_description(self, text: str) -> None:
        self._bar.set_description(text, refresh=False)

    def reset(self, total: int | None = None) -> None:
        self._bar.reset(total=total)

    def write(self, text: str) -> None:
        import sys

        self._bar.write(text, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()


def _run_seed(entry: Entry, ctx: RunContext, seed: int, count: int) -> dict[str, float]:
    ctx.seed = seed
    ctx.progress.reset(total=None)
    ctx.progress.set_description(f"{entry.name} seed {seed + 1}/{count}")
    seed_everything(seed)
    metrics = entry.run(ctx, seed)
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"entry {entry.name!r}: `run` must return a dict of metric name -> number, got "
            f"{type(metrics).__name__}"
        )
    checked = {}
    for key, value in metrics.items():
        try:
            checked[str(key)] = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"entry {entry.name!r}: metric {key!r} of seed {seed} must be a number, got "
                f"{value!r}"
            ) from None
    ctx.log(f"{entry.name} seed {seed}: " + ", ".join(f"{k}={v:.4g}" for k, v in checked.items()))
    return checked


def _seed_in_process(
    entry: Entry, quick: bool, folder: Path, threads: int, seed: int, count: int
) -> tuple[dict[str, float], list[str]]:
    """One seed in a worker process: its metrics and the lines it logged."""
    torch.set_num_threads(threads)
    ctx = RunContext(quick=quick, out=folder, threads=threads)
    return _run_seed(entry, ctx, seed, count), ctx.messages


def _run_seeds_in_processes(
    entry: Entry, ctx: RunContext, count: int, jobs: int
) -> list[dict[str, float]]:
    import multiprocessing
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    try:
        pickle.dumps(entry)
    except Exception as error:
        raise ValueError(
            f"entry {entry.name!r} cannot be sent to worker processes ({error}); define its "
            "functions at module level, or run it with jobs=1"
        ) from None
    ctx.progress.set_description(f"{entry.name}: {count} seeds in {jobs} processes")
    ctx.progress.reset(total=count)
    spawn = multiprocessing.get_context("spawn")  # fork is unsafe once torch has threads
    with ProcessPoolExecutor(max_workers=jobs, mp_context=spawn) as pool:
        futures = [
            pool.submit(_seed_in_process, entry, ctx.quick, ctx.out, ctx.threads, seed, count)
            for seed in range(count)
        ]
        results = []
        for future in futures:  # in seed order, so log.txt reads as a serial run's
            metrics, messages = future.result()
            ctx.messages.extend(messages)
            ctx.progress.update(1)
            results.append(metrics)
    return results


def _check_outcome(entry: Entry, outcome: object, folder: Path) -> Outcome:
    if not isinstance(outcome, Outcome):
        raise TypeError(
            f"entry {entry.name!r}: `summarise` must return an Outcome, got "
            f"{type(outcome).__name__}"
        )
    for path in outcome.figures:
        path = Path(path)
        if path.parent.resolve() != folder.resolve():
            raise ValueError(
                f"entry {entry.name!r}: figure {str(path)!r} is not in the run folder {folder}; "
                "save it with ctx.save_figure(fig, name)"
            )
        if not is_complete_png(path):
            raise ValueError(f"entry {entry.name!r}: figure {str(path)!r} is missing or not a PNG")
    return outcome


def is_complete_png(path: Path) -> bool:
    """Whether ``path`` is a whole PNG file: its signature first and its ``IEND`` chunk last."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return False
    return data.startswith(_PNG_SIGNATURE) and data.endswith(_PNG_END)


def json_ready(value: Any) -> Any:
    """``value`` as strict JSON: tuples as lists, tensors and NumPy values as numbers or lists,
    paths as strings, non-finite floats as ``None``."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and callable(value.tolist):
        return json_ready(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def _write_run_folder(entry: Entry, result: RunResult, ctx: RunContext, command: str) -> None:
    outcome = result.outcome
    metrics = {
        "entry": entry.name,
        "title": entry.title,
        "quick": ctx.quick,
        "criterion_met": outcome.criterion_met,
        "seeds": result.seeds,
        "per_seed": [{"seed": s, **m} for s, m in zip(result.seeds, result.per_seed)],
        "summary": outcome.details,
        "rows": [vars(row) for row in outcome.rows],
        "figures": [Path(p).name for p in outcome.figures],
        "seconds": result.seconds,
        "torch": torch.__version__,
        "threads": ctx.threads,
        "jobs": ctx.jobs,
        "command": command,
    }
    text = json.dumps(json_ready(metrics), indent=2, allow_nan=False) + "\n"
    atomic_write_text(result.run_dir / "metrics.json", text)
    if ctx.messages:
        atomic_write_text(result.run_dir / "log.txt", "\n".join(ctx.messages) + "\n")
    report = render_report(
        entry,
        result,
        quick=ctx.quick,
        command=command,
        threads=ctx.threads,
        jobs=ctx.jobs,
    )
    atomic_write_text(result.run_dir / "report.md", report)


def verdict(met: bool) -> str:
    """``"HELD"`` or ``"NOT HELD"``."""
    return "HELD" if met else "NOT HELD"


def render_report(
    entry: Entry,
    result: RunResult,
    *,
    quick: bool,
    command: str,
    threads: int = 1,
    jobs: int = 1,
) -> str:
    """The text of ``report.md``: the paper and its result, our data, the table, the criterion
    and whether it held, the figures, and how the run was made."""
    outcome = result.outcome
    lines = [f"# {entry.title}", ""]
    lines += [f"Reproduce entry `{entry.name}`: criterion **{verdict(outcome.criterion_met)}**."]
    if quick:
        lines += [
            "",
            "_A `--quick` run: tiny settings that check the machinery; its numbers do not test "
            "the paper's claim (run without `--quick` for that)._",
        ]
    lines += ["", f"- **Paper**: {entry.paper}", f"- **Paper's result**: {entry.paper_result}"]
    lines += [f"- **Our data**: {entry.data}", "", "## Results", ""]
    lines += _table(outcome.rows)
    lines += ["## Criterion", "", entry.criterion, ""]
    lines += [f"**{verdict(outcome.criterion_met)}** over {_seeds_text(result.seeds)}.", ""]
    if outcome.figures:
        lines += ["## Figures", ""]
        for path in outcome.figures:
            name = Path(path).name
            lines += [f"![{name}]({name})", ""]
    lines += ["## Run", ""]
    lines += [
        f"- command: `{command}`",
        f"- seeds: {', '.join(str(s) for s in result.seeds)}",
        f"- wall time: {result.seconds:.1f} s",
        f"- torch {torch.__version__}, {threads} thread{'s' if threads != 1 else ''}"
        + (f" in each of {jobs} processes (seeds in parallel)" if jobs > 1 else "")
        + f", Python {platform.python_version()}",
        f"- written {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "- files: [`metrics.json`](metrics.json) (per-seed metrics and the summary)"
        + (", [`log.txt`](log.txt)" if (result.run_dir / "log.txt").exists() else ""),
    ]
    return "\n".join(lines) + "\n"


def _seeds_text(seeds: Sequence[int]) -> str:
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}"


def _table(rows: Sequence[Row]) -> list[str]:
    notes = any(row.note for row in rows)
    header = ["quantity", "paper", "ours", *(["note"] if notes else [])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.quantity, row.paper, row.ours, *([row.note] if notes else [])]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return [*lines, ""]


def verify_run_folder(run_dir: str | Path) -> list[str]:
    """The problems of a finished run folder; empty when it is complete.

    Complete means: ``report.md`` with the results table and a verdict (HELD / NOT HELD);
    ``metrics.json`` in strict JSON (no NaN or infinity) with finite per-seed metrics; every
    figure it lists a whole PNG file (embedded in the report); no temporary file left behind.
    Tests of entries call it after a quick run.
    """
    folder = Path(run_dir)
    problems = []
    report_path, metrics_path = folder / "report.md", folder / "metrics.json"
    if not report_path.is_file():
        return [f"{report_path} is missing"]
    if not metrics_path.is_file():
        return [f"{metrics_path} is missing"]
    report = report_path.read_text()
    if "| quantity | paper | ours" not in report:
        problems.append("report.md has no results table")
    if "**HELD**" not in report and "**NOT HELD**" not in report:
        problems.append("report.md states no verdict")

    def strict(constant: str) -> None:
        raise ValueError(f"metrics.json holds {constant}, which strict JSON forbids")

    try:
        metrics = json.loads(metrics_path.read_text(), parse_constant=strict)
    except ValueError as error:
        return [*problems, f"metrics.json is not strict JSON: {error}"]
    for record in metrics.get("per_seed", []):
        bad = [k for k, v in record.items() if not isinstance(v, int | float)]
        if bad:
            problems.append(f"seed {record.get('seed')}: non-finite metrics {bad}")
    if not metrics.get("per_seed"):
        problems.append("metrics.json has no per-seed metrics")
    for name in metrics.get("figures", []):
        if not is_complete_png(folder / name):
            problems.append(f"figure {name} is not a whole PNG file")
        if f"]({name})" not in report:
            problems.append(f"figure {name} is not embedded in report.md")
    leftovers = sorted(p.name for p in folder.glob(".*.tmp"))
    if leftovers:
        problems.append(f"temporary files left behind: {leftovers}")
    return problems
