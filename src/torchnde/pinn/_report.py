"""The run folder of a PINN run: ``report.md`` (the problem, the paradigm, one row per phase
with its loss terms, error and status, the figures), ``metrics.json``, ``history.json`` (every
step's loss terms) and the figures, every file written atomically."""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..training import atomic_write_text
from ._result import PINNResult

__all__ = ["json_ready", "render_report", "write_run_folder"]


def json_ready(value: Any) -> Any:
    """``value`` with tuples as lists, tensors as numbers, enums as their values and every
    non-finite float as None (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):
        return json_ready(value.tolist())
    if hasattr(value, "value") and isinstance(getattr(value, "value", None), str):
        return value.value
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def write_run_folder(
    result: PINNResult,
    run_dir: str | Path,
    *,
    command: str | None = None,
    settings: Mapping[str, Any] | None = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Write ``metrics.json``, ``history.json``, the figures and ``report.md`` into ``run_dir``.

    Args:
        result: what :func:`torchnde.pinn.train` returned.
        run_dir: the folder (created if missing).
        command: the command that produced the run, quoted in the report.
        settings: the run's settings as plain data (network, points, stages...), shown in the
            report and stored in ``metrics.json``.
        plots: draw the figures (needs matplotlib).

    Returns:
        file name -> path of every file written.
    """
    if not isinstance(result, PINNResult):
        raise TypeError(f"`result` must be a PINNResult, got {type(result).__name__}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    metrics = json_ready({**result.metrics(), "settings": dict(settings or {})})
    written["metrics.json"] = atomic_write_text(
        run_dir / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False) + "\n"
    )
    history = json_ready({phase.name: phase.history for phase in result.phases})
    written["history.json"] = atomic_write_text(
        run_dir / "history.json", json.dumps(history, allow_nan=False) + "\n"
    )
    figures: list[str] = []
    if plots:
        from ._plots import write_plots

        drawn = write_plots(result, run_dir)
        written.update(drawn)
        figures = list(drawn)
    text = render_report(result, command=command, settings=settings, figures=figures)
    written["report.md"] = atomic_write_text(run_dir / "report.md", text)
    return written


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.3g}"


def render_report(
    result: PINNResult,
    *,
    command: str | None = None,
    settings: Mapping[str, Any] | None = None,
    figures: Sequence[str] = (),
) -> str:
    """The text of ``report.md``."""
    problem = result.problem
    lines = [f"# PINN run: {problem.name}", ""]
    coefficients = ", ".join(f"{k} = {v:g}" for k, v in problem.coefficients.items())
    lines += [
        f"- problem: `{problem.name}`" + (f" with {coefficients}" if coefficients else ""),
        f"- domain: {problem.domain!r}",
        "- conditions: "
        + ", ".join(f"{c.term} ({'hard' if c.hard else 'soft'})" for c in problem.conditions),
        f"- paradigm: {_paradigm(result.paradigm)}",
    ]
    for key, value in (settings or {}).items():
        lines.append(f"- {key}: {_plain(value)}")
    lines.append("")
    lines += ["## Result", ""]
    if result.completed:
        lines.append(
            f"Completed: every phase trained. Relative L2 error over the whole domain: "
            f"**{_number(result.error)}**."
        )
    else:
        lines.append(f"**Stopped early**: {result.stop_reason}")
    if result.learned:
        learned = ", ".join(f"{k} = {v:.6g}" for k, v in result.learned.items())
        lines.append(f"\nLearned coefficients: {learned}.")
    lines += ["", "## Phases", ""]
    lines += _phase_table(result)
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{name}]({name})" for name in figures]
    lines += ["", "## Reproduce", ""]
    if command:
        lines.append(f"    {command}")
    lines.append(
        f"\ntorch {torch.__version__}, Python {platform.python_version()}; training time "
        f"{result.wall_time:.1f} s."
    )
    return "\n".join(lines) + "\n"


def _phase_table(result: PINNResult) -> list[str]:
    terms = sorted({t for p in result.phases for t in p.terms})
    header = ["#", "phase", "status", "steps", "loss", *terms, "error"]
    if any(p.error_so_far is not None for p in result.phases):
        header.append("error so far")
    if any(p.causal_min_weight is not None for p in result.phases):
        header.append("min causal weight")
    header.append("time s")
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for p in result.phases:
        cells = [
            str(p.index),
            p.name,
            p.status.value + (f" ({p.message})" if p.message else ""),
            str(p.steps),
            _number(p.loss),
            *(_number(p.terms.get(t)) for t in terms),
            _number(p.error),
        ]
        if "error so far" in header:
            cells.append(_number(p.error_so_far))
        if "min causal weight" in header:
            cells.append(_number(p.causal_min_weight))
        cells.append(f"{p.wall_time:.1f}")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _paradigm(data: Mapping[str, Any]) -> str:
    name = data.get("name", "?")
    rest = ", ".join(f"{k}={_plain(v)}" for k, v in data.items() if k != "name" and v is not None)
    return f"{name} ({rest})" if rest else str(name)


def _plain(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
