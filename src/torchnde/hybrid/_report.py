"""The run folder's outputs: ``metrics.json``, the PNG figures and ``report.md`` tying them
together, every file written atomically."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sympy
from sympy.core.function import AppliedUndef
from sympy.parsing.sympy_parser import parse_expr

from ..training import atomic_write_text, is_main_process
from ._equations import FUNCTIONS, parse_system
from ._plots import PLOTS, write_plots
from ._result import NO_LAW, DiscoveryResult

__all__ = ["json_ready", "recovered_equations", "render_report", "write_run_folder"]

#: the config the command stores in a run folder (linked from the report when present)
CONFIG_NAME = "config.toml"


def write_run_folder(
    result: DiscoveryResult, run_dir: str | Path, *, plots: bool = True
) -> dict[str, Path]:
    """Writes what a discovery run learnt into ``run_dir``: ``metrics.json`` (from
    :meth:`DiscoveryResult.metrics`), the figures (fit on the training window, phase portrait,
    learned vs recovered vs true unknown terms, forecast, losses) and ``report.md``.

    Every file is written atomically (a reader never sees a half-written file). Under
    ``torchrun`` only the main process writes; the others return at once.

    Args:
        result: the result of :func:`torchnde.hybrid.discover`.
        run_dir: the run folder (created if missing).
        plots: draw the figures (needs matplotlib).

    Returns:
        file name -> path of every file written (empty on a process other than the main one).

    Example:
        >>> result = discover(spec, observations, run_dir=Path("runs/lv"))
        >>> write_run_folder(result, "runs/lv")["report.md"]
        PosixPath('runs/lv/report.md')
    """
    if not isinstance(result, DiscoveryResult):
        raise TypeError(f"`result` must be a DiscoveryResult, got {type(result).__name__}")
    if not is_main_process():
        return {}
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    metrics = json_ready(result.metrics())
    metrics["recovered_equations"] = recovered_equations(result)
    text = json.dumps(metrics, indent=2, allow_nan=False) + "\n"
    written["metrics.json"] = atomic_write_text(run_dir / "metrics.json", text)
    if plots:
        written.update(write_plots(result, run_dir))
    report = render_report(result, run_dir, figures=[n for n in PLOTS if n in written])
    written["report.md"] = atomic_write_text(run_dir / "report.md", report)
    return written


def json_ready(value: Any) -> Any:
    """``value`` with tuples as lists, tensors as numbers or lists, and every non-finite float as
    ``None`` (strict JSON has no NaN or infinity)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # tensors, numpy values
        return json_ready(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def recovered_equations(result: DiscoveryResult) -> dict[str, str]:
    """Per state, the right-hand side with every network replaced by its recovered expression and
    every constant and learnable parameter by its value (the recovered model's); empty when no
    sparse law was found."""
    if not result.law_found:
        return {}
    system = result.spec.system
    parsed = parse_system(system)
    values = {**system.parameters, **result.parameters.get("hybrid", {})}
    values.update(result.parameters.get("recovered", {}))
    for recovery in result.recoveries.values():
        values.update(recovery.absorbed)
    numbers = {
        parsed.symbols[k]: v
        for k, v in {**system.constants, **values}.items()
        if k in parsed.symbols  # not the recovered model's own coefficients
    }
    local = {**FUNCTIONS, **parsed.symbols}
    out = {}
    for state, expr in parsed.equations.items():
        calls = {}
        for call in expr.atoms(AppliedUndef):
            recovery = result.recoveries.get(call.func.__name__)
            if recovery is not None:
                calls[call] = parse_expr(str(recovery.expression.sympy), local_dict=local)
        rhs = expr.subs(calls).subs(numbers)
        out[state] = _format(sympy.expand(rhs))
    return out


def _format(expr: sympy.Expr) -> str:
    """A sympy expression with its floats to 4 significant digits."""
    floats = {f: sympy.Float(float(f"{float(f):.4g}")) for f in expr.atoms(sympy.Float)}
    return sympy.sstr(expr.xreplace(floats), full_prec=False)


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}g}"


def _percent(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{100 * value:.2f}%"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return [*lines, ""]


def render_report(
    result: DiscoveryResult, run_dir: str | Path | None = None, figures: list[str] | None = None
) -> str:
    """``report.md``: the data, the model, the recovered equations against the truth, the
    parameters, the forecast errors per model, and links to the figures and files."""
    spec = result.spec
    run_dir = Path(run_dir) if run_dir is not None else None
    figures = list(PLOTS) if figures is None else figures
    lines = [f"# Run `{spec.name}`", ""]
    lines += [
        f"Written {time.strftime('%Y-%m-%d %H:%M:%S')}; the run took {result.seconds:.1f} s.",
        "",
    ]
    lines += _data_section(result)
    lines += _model_section(result)
    lines += _sampling_section(result)
    lines += _recovery_section(result)
    lines += _selection_section(result)
    lines += _parameter_section(result)
    lines += _forecast_section(result)
    lines += ["## Figures", ""]
    for name in figures:
        lines += [f"### {PLOTS[name][0].capitalize()}", "", f"![{PLOTS[name][0]}]({name})", ""]
    lines += ["## Files", ""]
    if run_dir is None or (run_dir / CONFIG_NAME).exists():
        lines.append(
            f"- [`{CONFIG_NAME}`]({CONFIG_NAME}): the resolved configuration (every default filled in)"
        )
    lines.append(
        "- [`metrics.json`](metrics.json): losses per step, recovered terms, parameters, errors"
    )
    lines.append(
        "- `checkpoints/`: training checkpoints (resume with `torchnde run CONFIG --resume RUN_DIR`)"
    )
    return "\n".join(lines) + "\n"


def _data_section(result: DiscoveryResult) -> list[str]:
    obs = result.observations
    ts = obs.ts
    missing = int(obs.ys.isnan().sum())
    lines = ["## Data", ""]
    lines.append(
        f"{len(ts)} observation times of {', '.join(obs.states)} on "
        f"[{float(ts[0]):.4g}, {float(ts[-1]):.4g}]"
        + (f", {missing} missing values" if missing else "")
        + "."
    )
    truth = obs.truth
    if truth is not None:
        lines += ["", "Synthetic data from the true system:", ""]
        lines += [f"- d{s}/dt = {truth.equations[s]}" for s in obs.states if s in truth.equations]
        values = ", ".join(f"{k} = {v:g}" for k, v in truth.parameters.items())
        start = ", ".join(f"{k}(0) = {v:g}" for k, v in truth.initial.items())
        spread = {"std": "standard deviation", "mean": "mean absolute value"}[
            truth.noise_relative_to
        ]
        lines += [
            "",
            f"with {values}; {start}; Gaussian noise of {100 * truth.noise:g}% of each state's "
            f"{spread}"
            + (", irregular times" if truth.irregular else "")
            + (f", {100 * truth.missing:g}% of values dropped" if truth.missing else "")
            + f"; seed {truth.seed}.",
        ]
    return [*lines, ""]


def _model_section(result: DiscoveryResult) -> list[str]:
    system = result.spec.system
    lines = ["## Hybrid model", ""]
    lines += [f"- d{s}/dt = {system.equations[s]}" for s in system.states]
    if system.constants:
        lines += [
            "",
            "Known constants: "
            + ", ".join(f"{k} = {v:g}" for k, v in system.constants.items())
            + ".",
        ]
    if system.parameters:
        lines += [
            "",
            "Learnable parameters (initial values): "
            + ", ".join(f"{k} = {v:g}" for k, v in system.parameters.items())
            + ".",
        ]
    return [*lines, ""]


def _sampling_section(result: DiscoveryResult) -> list[str]:
    sampling = result.sampling
    if sampling is None:
        return []
    lines = ["## Where the networks were evaluated", ""]
    lines.append(
        f"The sparse regression evaluated the networks at {int(sampling.ts.shape[0])} states along "
        f"the fitted solutions of {sampling.windows} training windows covering the data (each "
        "from its own initial state), not along one long solve of the fitted model. "
        f"{100 * sampling.fraction_outside:.1f}% of them lie outside the observed range of the "
        "states ("
        + ", ".join(f"{k} in [{lo:.4g}, {hi:.4g}]" for k, (lo, hi) in sampling.ranges.items())
        + ")."
    )
    if sampling.outside:
        lines += [
            "",
            "Share of each network's samples outside the range of its inputs: "
            + ", ".join(f"{k} {100 * v:.1f}%" for k, v in sampling.outside.items())
            + ".",
        ]
    if sampling.warning:
        lines += ["", f"**Warning:** {sampling.warning}."]
    return [*lines, ""]


def _selection_section(result: DiscoveryResult) -> list[str]:
    selection = result.selection
    if selection is None or not selection.candidates:
        return []
    lines = ["## How the law was chosen", ""]
    lines.append(
        "Each candidate (the regression at one sparsity threshold) had its coefficients refitted "
        "on the training windows and was simulated over them, from the window initial states "
        "the hybrid model's fit ended with, against the observations. The sparsest candidate "
        "whose loss lies within one standard error of the best one's wins (the "
        f"one-standard-error rule: the loss is a mean of n = {selection.observations} squared "
        f"residuals, so its standard error is loss·√(2/n) = {selection.standard_error:.3g}). "
        "Refitted with its own window initial states, the winner must reproduce the windows "
        f"within {selection.max_loss_ratio:g}× the hybrid model's loss "
        f"({_number(selection.baseline_loss, 3)}), or no law is reported."
    )
    lines.append("")
    rows = [
        [
            f"{c.threshold:g}",
            f"`{c.description}`",
            str(c.terms),
            _number(c.loss, 4),
            "yes" if c.within else "no",
            "**chosen**" if c.chosen else "",
        ]
        for c in selection.candidates
    ]
    header = ["threshold", "candidate", "coefficients", "loss", "within 1 SE of the best", ""]
    lines += _table(header, rows)
    lines += [selection.reason[0].upper() + selection.reason[1:] + ".", ""]
    return lines


def _recovery_section(result: DiscoveryResult) -> list[str]:
    if not result.law_found and result.selection is not None:
        return ["## Recovered terms", "", f"**{NO_LAW[0].upper() + NO_LAW[1:]}.**", ""]
    if not result.recoveries:
        return ["## Recovered terms", "", "The model has no networks to recover.", ""]
    from ..discovery import SparseExpression

    lines = ["## Recovered terms", ""]
    rows = []
    for network, r in result.recoveries.items():
        truth = "—" if r.truth is None else str(SparseExpression(r.truth, r.expression.variables))
        same = {None: "—", True: "yes", False: "**no**"}[r.same_terms_as_truth]
        call = network if "[" not in network else network.replace("[", "(...)[")
        shown = f"{call}({', '.join(r.expression.variables)})" if "[" not in network else call
        rows.append(
            [
                f"`{shown}` in d{r.equation}/dt",
                f"`{r.expression}`",
                f"`{truth}`" if r.truth is not None else truth,
                same,
                _percent(r.max_relative_error),
                _number(r.r2, 6),
            ]
        )
    header = ["network", "recovered", "true term", "same terms", "max coefficient error", "R²"]
    lines += _table(header, rows)
    absorbed = {k: v for r in result.recoveries.values() for k, v in r.absorbed.items()}
    if absorbed:
        lines += [
            "The regression also covered the terms of "
            + ", ".join(f"{k} (now {v:.4g})" for k, v in absorbed.items())
            + ".",
            "",
        ]
    lines += ["Recovered equations (after refitting the coefficients on the data):", ""]
    lines += [f"- d{s}/dt = {rhs}" for s, rhs in recovered_equations(result).items()]
    return [*lines, ""]


def _parameter_section(result: DiscoveryResult) -> list[str]:
    declared = result.spec.system.parameters  # not the recovered model's coefficients
    models = [m for m in result.parameters if set(result.parameters[m]) & set(declared)]
    names = sorted({k for m in models for k in result.parameters[m] if k in declared})
    if not names:
        return []
    header = ["parameter", *models]
    if result.true_parameters:
        header += ["truth", *(f"error ({m})" for m in models)]
    rows = []
    errors = {m: result.parameter_errors(m) for m in models}
    for name in names:
        row = [f"`{name}`", *(_number(result.parameters[m].get(name)) for m in models)]
        if result.true_parameters:
            row.append(_number(result.true_parameters.get(name)))
            row += [_percent(errors[m].get(name)) for m in models]
        rows.append(row)
    return ["## Learnable parameters", "", *_table(header, rows)]


def _forecast_section(result: DiscoveryResult) -> list[str]:
    forecast = result.forecast
    lines = [
        "## Forecast",
        "",
        f"Every model solved from its estimate of the first state (the first observation, or the "
        f"initial state its fit learnt) to t = {float(forecast.ts[-1]):.4g}; "
        f"the training window ends at t = {forecast.train_end:.4g}.",
        "",
    ]
    if forecast.errors:
        rows = [
            [
                name,
                _number(forecast.errors.get(name)),
                _percent(forecast.relative_errors.get(name)),
            ]
            for name in forecast.predictions
        ]
        lines += ["Errors over the forecast window (t > end of training), against the truth:", ""]
        lines += _table(["model", "RMSE", "relative RMSE"], rows)
    else:
        lines += ["The truth is unknown here, so the forecast has no error to report.", ""]
    return lines
