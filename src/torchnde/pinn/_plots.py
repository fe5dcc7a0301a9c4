"""The figures of a PINN run: the solution beside the reference with the error map, the error of
every phase, and every loss term over the steps. Drawn with matplotlib's Agg backend and
written atomically as PNG files."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import torch

from ..training import atomic_write_bytes
from ._result import PINNResult

__all__ = ["PLOTS", "plot_losses", "plot_phases", "plot_solution", "write_plots"]

DPI = 110


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "the PINN plots need matplotlib: `pip install 'torchnde[plot]'` (or `pip install "
            "matplotlib`)"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_solution(result: PINNResult) -> Any:
    """Prediction, reference and absolute error over a 2-D domain (space × time), or None."""
    problem = result.problem
    domain = problem.domain
    if domain.dim != 2 or len(problem.outputs) != 1:
        return None
    plt = _pyplot()
    parameter = next(result.model.parameters())
    axes = domain.grid(result.evaluation, torch.float64, parameter.device)
    prediction = result.solution({k: v.to(parameter.dtype) for k, v in axes.items()})
    prediction = prediction.double().cpu()
    panels = [("prediction", prediction)]
    if problem.reference is not None:
        reference = torch.as_tensor(problem.reference(axes, dict(problem.coefficients))).cpu()
        panels += [("reference", reference), ("|error|", (prediction - reference).abs())]
    first, second = domain.names
    if domain.time == first:  # time along the horizontal axis, as the papers draw it
        panels = [(title, values.T) for title, values in panels]
        first, second = second, first
    extent = [domain[second].low, domain[second].high, domain[first].low, domain[first].high]
    figure, grid = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, values) in zip(grid[0], panels):
        image = ax.imshow(
            values.numpy(), origin="lower", aspect="auto", extent=extent, cmap="viridis"
        )
        figure.colorbar(image, ax=ax)
        ax.set_title(title)
        ax.set_xlabel(second)
        ax.set_ylabel(first)
    error = "" if result.error is None else f" — relative L2 error {result.error:.3g}"
    figure.suptitle(f"{problem.name}{error}")
    figure.tight_layout()
    return figure


def plot_phases(result: PINNResult) -> Any:
    """The error of every phase (and the error so far for time blocks), or None without any."""
    phases = [p for p in result.phases if p.error is not None]
    if not phases:
        return None
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(phases) + 3), 3.6))
    positions = list(range(len(phases)))
    colours = ["tab:blue" if p.ok else "tab:red" for p in phases]
    ax.bar(positions, [p.error for p in phases], color=colours, label="phase error")
    so_far = [(i, p.error_so_far) for i, p in zip(positions, phases) if p.error_so_far is not None]
    if so_far:
        ax.plot(*zip(*so_far), "k.-", label="error so far")
    ax.set_yscale("log")
    ax.set_xticks(positions)
    ax.set_xticklabels([p.name.split(":")[0] for p in phases], rotation=45, ha="right")
    ax.set_ylabel("relative L2 error")
    ax.set_title(f"{result.problem.name}: error phase by phase (red: did not converge)")
    if so_far:
        ax.legend()
    figure.tight_layout()
    return figure


def plot_losses(result: PINNResult) -> Any:
    """Every loss term over the steps of all phases, phase boundaries marked, or None."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(7.5, 3.8))
    offset = 0
    drawn = False
    names = []
    for phase in result.phases:
        steps = [offset + entry["step"] for entry in phase.history]
        if steps:
            ax.plot(steps, [_positive(e["loss"]) for e in phase.history], "k-", lw=0.8)
            terms = sorted({t for e in phase.history for t in e.get("terms", {})})
            for name in terms:
                points = [
                    (offset + e["step"], _positive(e["terms"][name]))
                    for e in phase.history
                    if name in e.get("terms", {})
                ]
                colour = f"C{_index(names, name)}"
                ax.plot(*zip(*points), "-", lw=0.8, color=colour)
            drawn = True
        offset += phase.steps
        ax.axvline(offset, color="grey", lw=0.5, ls=":")
    if not drawn:
        plt.close(figure)
        return None
    ax.plot([], [], "k-", label="total (weighted)")
    for k, name in enumerate(names):
        ax.plot([], [], "-", color=f"C{k}", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step (all phases; dotted: phase ends)")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _positive(value: float) -> float:
    return value if isinstance(value, float) and math.isfinite(value) and value > 0 else math.nan


def _index(names: list[str], name: str) -> int:
    if name not in names:
        names.append(name)
    return names.index(name)


#: figure file names and what draws them
PLOTS = {"solution.png": plot_solution, "phases.png": plot_phases, "losses.png": plot_losses}


def write_plots(result: PINNResult, run_dir: str | Path) -> dict[str, Path]:
    """Draw every figure that has something to show into ``run_dir``; name -> path."""
    plt = _pyplot()
    written = {}
    for name, draw in PLOTS.items():
        figure = draw(result)
        if figure is None:
            continue
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI)
        plt.close(figure)
        written[name] = atomic_write_bytes(Path(run_dir) / name, buffer.getvalue())
    return written
