"""Helpers shared by the physics-informed reproduce entries (Krishnapriyan et al. 2021; Raissi et
al. 2019): the training call with progress, and the figures."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torchnde import pinn
from torchnde.reproduce import RunContext
from torchnde.training import Stage

PAPER = (
    "Krishnapriyan, Gholami, Zhe, Kirby & Mahoney (2021). Characterizing possible failure modes "
    "in physics-informed neural networks. NeurIPS."
)


def train(ctx: RunContext, problem: pinn.PDEProblem, label: str, **kwargs: Any) -> pinn.PINNResult:
    """``pinn.train`` with the run's progress bar advanced phase by phase."""

    def advance(phase: pinn.PhaseResult) -> None:
        ctx.progress.update(1)
        error = "—" if phase.error is None else f"{phase.error:.3g}"
        ctx.progress.set_postfix(run=label, phase=phase.name.split(":")[0], error=error)

    return pinn.train(problem, callback=advance, **kwargs)


def log_phases(ctx: RunContext, label: str, result: pinn.PINNResult) -> None:
    """One log line per phase: status, loss, error."""
    for phase in result.phases:
        error = "—" if phase.error is None else f"{phase.error:.3g}"
        ctx.log(
            f"  {label} {phase.name}: {phase.status.value}, {phase.steps} steps, loss "
            f"{phase.loss:.3g}, error {error}"
        )


def finite(values: Sequence[float]) -> list[float]:
    """The finite values (a failed run counts as an error of 1 elsewhere; here it is dropped)."""
    return [v for v in values if v is not None and math.isfinite(v)]


def mean(values: Sequence[float]) -> float:
    """The mean, NaN for no values."""
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def scientific(value: float) -> str:
    """``9.84e-03``-style text."""
    return f"{value:.3g}" if value >= 0.1 else f"{value:.2e}"


def solution_figure(results: Sequence[tuple[str, pinn.PINNResult]], axes_counts: dict) -> Any:
    """Prediction and |error| maps of several results of the same 2-D problem, side by side."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import torch

    figure, grid = plt.subplots(2, len(results), figsize=(4.0 * len(results), 6.2), squeeze=False)
    for column, (title, result) in enumerate(results):
        problem = result.problem
        domain = problem.domain
        axes = domain.grid(axes_counts, torch.float64)
        parameter = next(result.model.parameters())
        prediction = result.solution({k: v.to(parameter.dtype) for k, v in axes.items()})
        prediction = prediction.double().cpu()
        reference = problem.reference(axes, dict(problem.coefficients)).cpu()
        extent = [domain["t"].low, domain["t"].high, domain["x"].low, domain["x"].high]
        error = (prediction - reference).abs()
        for row, (values, name) in enumerate(((prediction, "u"), (error, "|error|"))):
            ax = grid[row][column]
            image = ax.imshow(values.numpy(), origin="lower", aspect="auto", extent=extent)
            figure.colorbar(image, ax=ax)
            ax.set_xlabel("t")
            ax.set_ylabel("x")
            relative = pinn.relative_l2(prediction, reference)
            ax.set_title(f"{title}: {name}" + (f" (rel. L2 {relative:.2g})" if row == 0 else ""))
    figure.tight_layout()
    return figure


#: the initial-condition weight of the weighted variants (the paper weighs every term 1)
INITIAL_WEIGHT = 100.0


@dataclass(frozen=True)
class Remedy:
    """The variant each problem is trained with besides the paper's setup (every term weighted
    1, a soft initial condition, inputs scaled over the whole span), judged by the criterion.

    Args:
        suffix: its metrics' key suffix (``whole<suffix>_<label>``, ``marching<suffix>_<label>``).
        label: how the report names it.
        weights: the loss weights (None: every term 1).
        hard_initial: the initial condition built into the network, ``u = u_k(x) + (t − t_k)
            / (t_{k+1} − t_k) · N(x, t)``, so each block's hand-over holds exactly.
        rescale: each block's inputs scaled over the block (``TimeMarching(rescale=True)``).
    """

    suffix: str
    label: str
    weights: Mapping[str, float] | None = None
    hard_initial: bool = False
    rescale: bool = False

    def problem(self, problem: pinn.PDEProblem) -> pinn.PDEProblem:
        """``problem`` with its initial condition hard if this remedy asks for it."""
        if not self.hard_initial:
            return problem
        conditions = [
            dataclasses.replace(c, hard=True) if isinstance(c, pinn.InitialCondition) else c
            for c in problem.conditions
        ]
        return problem.replace(conditions=conditions)


#: the initial condition's loss term weighted :data:`INITIAL_WEIGHT` (soft hand-over)
WEIGHTED = Remedy("_w", f"initial weight {INITIAL_WEIGHT:g}", weights={"initial": INITIAL_WEIGHT})
#: a hard initial condition in every block (exact hand-over) and inputs scaled per block
HARD = Remedy("_h", "hard initial condition, per-block scaling", hard_initial=True, rescale=True)


def marching_comparison(
    ctx: RunContext,
    seed: int,
    problems: dict[str, pinn.PDEProblem],
    *,
    network: pinn.Network,
    steps: int,
    blocks: int,
    points: dict,
    evaluation: dict,
    figure_for: str | None = None,
    remedy: Remedy = WEIGHTED,
) -> dict[str, float]:
    """Per problem: whole-domain training and time marching over ``blocks`` blocks, each block
    (and the whole-domain run) with the same budget (``steps`` L-BFGS iterations on the same
    number of collocation points), in the paper's setup (every term weighted 1) and with
    ``remedy``. Metrics ``whole_<label>``, ``marching_<label>`` (paper's setup),
    ``whole<suffix>_<label>``, ``marching<suffix>_<label>`` (the remedy), and
    ``block<k>_<label>`` (error so far after each block of the remedy's march)."""
    common = dict(
        stages=[Stage("lbfgs", steps=steps, options={"history_size": 50})],
        network=network,
        points=pinn.Points(**points, seed=seed),
        evaluation=evaluation,
        seed=seed,
    )
    ctx.progress.reset(total=len(problems) * 2 * (1 + blocks))
    started = time.process_time()
    metrics: dict[str, float] = {}
    seconds = 0.0
    variants = (
        ("", None, pinn.TimeMarching(blocks=blocks), lambda problem: problem),
        (
            remedy.suffix,
            remedy.weights,
            pinn.TimeMarching(blocks=blocks, rescale=remedy.rescale),
            remedy.problem,
        ),
    )
    for label, problem in problems.items():
        runs = {}
        for suffix, weights, marching_paradigm, variant in variants:
            problem_v = variant(problem)
            whole = train(ctx, problem_v, f"whole{suffix} {label}", weights=weights, **common)
            marching = train(
                ctx,
                problem_v,
                f"marching{suffix} {label}",
                paradigm=marching_paradigm,
                weights=weights,
                **common,
            )
            log_phases(ctx, f"seed {seed} {label} whole domain{suffix}", whole)
            log_phases(ctx, f"seed {seed} {label} time marching{suffix}", marching)
            metrics[f"whole{suffix}_{label}"] = whole.error
            metrics[f"marching{suffix}_{label}"] = marching.error if marching.completed else 1.0
            seconds += whole.wall_time + marching.wall_time
            runs[suffix] = (whole, marching)
        for phase in runs[remedy.suffix][1].phases:
            metrics[f"block{phase.index}_{label}"] = phase.error_so_far
        if seed == 0 and label == figure_for:
            figure = solution_figure(
                [
                    (f"whole domain {label}", runs[""][0]),
                    (f"time marching {label}", runs[""][1]),
                    (f"marching, {remedy.label}", runs[remedy.suffix][1]),
                ],
                evaluation,
            )
            ctx.save_figure(figure, "solutions-seed0.png")
    metrics["seconds"] = seconds
    metrics["cpu_seconds"] = time.process_time() - started
    return metrics


def marching_rows(
    per_seed: list[dict[str, float]],
    labels: Sequence[str],
    paper_whole: dict[str, float],
    paper_marching: dict[str, float],
    remedy: Remedy = WEIGHTED,
) -> tuple[list, bool]:
    """The table rows and whether the criterion held: time marching with ``remedy`` ≤ 5e-2
    wherever whole-domain training in the paper's setup is ≥ 0.5, and whole-domain training
    does fail somewhere (means over seeds)."""
    from torchnde.reproduce import Row, mean_spread

    rows, held, failed_somewhere = [], True, False
    fixed = remedy.suffix
    for label in labels:
        values = {
            key: [m[f"{key}_{label}"] for m in per_seed]
            for key in ("whole", "marching", f"whole{fixed}", f"marching{fixed}")
        }
        rows += [
            Row(
                f"{label}, whole domain",
                scientific(paper_whole[label]),
                mean_spread(values["whole"]),
            ),
            Row(
                f"{label}, time marching",
                scientific(paper_marching[label]),
                mean_spread(values["marching"]),
                note="the paper's loss (every term weight 1)",
            ),
            Row(
                f"{label}, whole domain, {remedy.label}",
                "—",
                mean_spread(values[f"whole{fixed}"]),
            ),
            Row(
                f"{label}, time marching, {remedy.label}",
                "—",
                mean_spread(values[f"marching{fixed}"]),
                note=f"{mean(values['whole']) / mean(values[f'marching{fixed}']):.0f}× below "
                "whole domain",
            ),
        ]
        if mean(values["whole"]) >= 0.5:
            failed_somewhere = True
            held &= mean(values[f"marching{fixed}"]) <= 5e-2
    return rows, bool(held and failed_somewhere)


def block_figure(per_seed: list[dict[str, float]], labels: Sequence[str], blocks: int) -> Any:
    """The error so far after each block, per label (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6.0, 3.6))
    ends = [(k + 1) / blocks for k in range(blocks)]
    for n, label in enumerate(labels):
        series = [
            mean([m.get(f"block{k}_{label}", math.nan) for m in per_seed]) for k in range(blocks)
        ]
        ax.plot(ends, series, "o-", color=f"C{n}", label=f"{label}: time marching")
        whole = mean([m[f"whole_{label}"] for m in per_seed])
        ax.axhline(whole, color=f"C{n}", ls=":", lw=1)
    ax.plot([], [], "k:", label="whole domain (final)")
    ax.set_yscale("log")
    ax.set_xlabel("end of block (t)")
    ax.set_ylabel("relative L2 error on [0, t]")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure
