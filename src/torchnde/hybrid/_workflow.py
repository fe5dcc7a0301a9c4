"""The discovery workflow: fit a hybrid model through the solver, recover closed forms for its
networks by sparse regression where the data are, check the candidate laws against the data,
refit the chosen one, and forecast.

Every training phase runs in :class:`torchnde.training.Trainer`: with a run folder it checkpoints
and resumes bitwise; under ``torchrun`` it is data-parallel over the trajectory windows. The
phases between trainings (the regression, the forecast) are deterministic functions of the trained
models, so a resumed run recomputes them exactly.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sympy
import torch
from torch import nn

from .. import solvers as _solvers
from .._saveat import SaveAt
from .._solve import solve
from ..controllers import PIDController
from ..terms import ODETerm
from ..training import (
    MultipleShooting,
    Stage,
    Trainer,
    TrajectoryWindows,
    WindowSampler,
    seed_everything,
)
from ._model import MLP, HybridModel
from ._recovery import describe, prune, read_back, recovered_model, regress_networks, size
from ._result import (
    NO_LAW,
    DiscoveryResult,
    Forecast,
    LawCandidate,
    LawSelection,
    ModelFit,
    Sampling,
)
from ._sampling import ExtrapolationWarning, sample_windows, sampling_report
from ._simulate import true_trajectory
from ._spec import DiscoverySpec, Observations, RunSpec, TrainingSpec

__all__ = ["discover", "solver_by_name"]

#: how many times the chosen law may lose terms to the threshold and be refitted again
PRUNE_ROUNDS = 3

_SOLVERS = {
    "euler": _solvers.Euler,
    "midpoint": _solvers.Midpoint,
    "heun": _solvers.Heun,
    "ralston": _solvers.Ralston,
    "heun3": _solvers.Heun3,
    "rk4": _solvers.RK4,
    "rk38": _solvers.RK38,
    "bosh3": _solvers.Bosh3,
    "dopri5": _solvers.Dopri5,
    "tsit5": _solvers.Tsit5,
    "dopri8": _solvers.Dopri8,
}


def solver_by_name(name: str) -> _solvers.AbstractSolver:
    """A solver instance from its lower-case name (``rk4``, ``tsit5``, ``dopri5``, …)."""
    key = str(name).lower()
    if key not in _SOLVERS:
        raise ValueError(f"unknown solver {name!r}; choose one of {', '.join(_SOLVERS)}")
    return _SOLVERS[key]()


# ------------------------------------------------------------------------------------------------
# training


def _windows(
    obs: Observations, training: TrainingSpec, autonomous: bool, width: int | None = None
) -> TrajectoryWindows:
    """The training windows of ``obs``, solved as ``training`` says."""
    solver = solver_by_name(training.solver)
    adaptive = solver.error_order is not None
    return TrajectoryWindows(
        obs.ts,
        obs.ys,
        width or training.window,
        solver=solver,
        controller=PIDController(rtol=training.rtol, atol=training.atol) if adaptive else None,
        dt0=None if adaptive else training.dt,
        autonomous=autonomous,
    )


def _stages(
    adam: int, lr: float, lbfgs: int, patience: int | None, schedule: Any = None
) -> list[Stage]:
    stages = []
    if adam:
        stages.append(Stage("adam", steps=adam, lr=lr, scheduler=schedule, patience=patience))
    if lbfgs:
        stages.append(Stage("lbfgs", steps=lbfgs, lr=1.0, patience=patience))
    return stages


@dataclass
class _Context:
    spec: RunSpec
    windows: TrajectoryWindows
    run_dir: Path | None
    resume: bool
    progress: bool
    log: Callable[[str], None]


def _train(
    ctx: _Context,
    name: str,
    field: nn.Module,
    stages: list[Stage],
    windows: TrajectoryWindows | None = None,
    shooting: bool | None = None,
    quiet: bool = False,
    starts: torch.Tensor | None = None,
) -> tuple[ModelFit, torch.Tensor]:
    """Train ``field`` on ``windows`` (default: the context's), from the windows' initial states
    ``starts`` (default: the observations); returns the fit and the initial states (learnt with
    ``shooting``)."""
    windows = windows or ctx.windows
    shooting = ctx.spec.training.multiple_shooting if shooting is None else shooting
    fit = MultipleShooting(field, windows, learn_starts=shooting, starts=starts)
    batch = ctx.spec.training.batch_size
    batch = None if batch is None or batch >= windows.count else batch
    trainer = Trainer(
        fit,
        lambda model, idx: model.loss(idx),
        stages,
        sampler=WindowSampler(windows.count, batch, seed=ctx.spec.seed),
        checkpoint_dir=None if ctx.run_dir is None else ctx.run_dir / "checkpoints" / name,
        checkpoint_every=ctx.spec.training.checkpoint_every,
        seed=ctx.spec.seed,
        progress=ctx.progress and not quiet,
        name=name,
    )
    if not quiet:
        ctx.log(
            f"training the {name} model: {', '.join(f'{s.steps} {s.optimizer}' for s in stages)}"
        )
    result = trainer.fit(resume=ctx.resume and ctx.run_dir is not None)
    if result.losses and not quiet:
        ctx.log(f"  {name}: loss {result.losses[0]:.3g} -> {result.losses[-1]:.3g}")
    model_fit = ModelFit(name, field, list(result.losses), float(result.wall_time))
    return model_fit, fit.starts.detach()


@torch.no_grad()
def _windows_loss(field: nn.Module, windows: TrajectoryWindows, starts: torch.Tensor) -> float:
    """The loss of ``field`` on every window from ``starts`` (inf where a solve failed)."""
    prediction = windows.solve(field, starts)
    if not bool(torch.isfinite(prediction).all()):
        return math.inf
    return float(windows.loss(prediction))


# ------------------------------------------------------------------------------------------------
# sampling and selection


def _sample(ctx: _Context, hybrid: HybridModel, obs: Observations, starts: torch.Tensor):
    """States along the windows' fitted solutions, with the report on where they lie."""
    ts, states, count = sample_windows(hybrid, ctx.windows, starts, ctx.spec.discovery.samples)
    sampling = sampling_report(hybrid.parsed, obs, ts, states, count)
    share = 100 * sampling.fraction_outside
    ctx.log(
        f"recovering closed forms on {ts.shape[0]} states along the fitted solutions of "
        f"{count} windows ({share:.1f}% outside the data's range, left out)"
    )
    if sampling.warning:
        ctx.log(f"warning: {sampling.warning}")
        warnings.warn(sampling.warning, ExtrapolationWarning, stacklevel=3)
    return sampling


def _thresholds(spec: DiscoverySpec) -> list[float]:
    if not spec.select:
        return [spec.threshold]
    found = sorted({round(spec.threshold * m, 12) for m in (1, 2, 3, 5)})
    if spec.threshold_mode in ("share", "largest"):
        found = [t for t in found if t < 1] or [spec.threshold]
    return found


def _candidates(hybrid: HybridModel, sampling: Sampling, obs: Observations, spec: DiscoverySpec):
    """The distinct regressions over the thresholds: ``[(threshold, (recoveries, implied,
    true_params))]``."""
    candidates, seen = [], set()
    for threshold in _thresholds(spec):
        found = regress_networks(
            hybrid, sampling.ts, sampling.states, obs, spec, threshold, sampling.inside
        )
        key = tuple(
            (net, tuple(sorted(r.expression.terms)), tuple(sorted(r.absorbed)))
            for net, r in found[0].items()
        )
        if key not in seen:
            seen.add(key)
            candidates.append((threshold, found))
    return candidates


def _select(
    ctx: _Context,
    hybrid: HybridModel,
    sampling: Sampling,
    obs: Observations,
    hybrid_starts: torch.Tensor,
):
    """Regress at a few sparsity thresholds, refit each candidate law's coefficients on the
    windows and simulate it against the data, and keep the sparsest candidate whose loss lies
    within one standard error of the best candidate's (the one-standard-error rule of Breiman et
    al., *Classification and Regression Trees*, 1984; the loss is a mean of ``n`` squared scaled
    residuals, whose standard error is ``loss * sqrt(2 / n)``).

    Every candidate is simulated from the same window initial states, those the hybrid model's
    fit ended with, which stay fixed: the refit moves only the candidate's few coefficients, so
    it converges in a few L-BFGS steps and the losses compare the laws, not how far an
    optimisation of the starts got. Selecting on the network's output alone cannot tell the
    network's approximation error from physics (a slightly wrong network asks for small spurious
    terms); on the data, a spurious term lowers the misfit by less than the loss's own noise,
    while a missing or wrong term raises it by far more.

    Returns the winner's ``(recoveries, implied, true_params)`` and the :class:`LawSelection`
    (its verdict is settled by :func:`_check` after the winner's refit)."""
    spec = ctx.spec.discovery
    count = int(torch.isfinite(obs.ys).sum())
    scored = []
    for i, (threshold, found) in enumerate(_candidates(hybrid, sampling, obs, spec)):
        model, _ = recovered_model(hybrid, found[0], found[1])
        _train(
            ctx,
            f"select-{i}",
            model,
            [Stage("lbfgs", steps=spec.select_steps, lr=1.0)],
            shooting=False,
            quiet=True,
            starts=hybrid_starts,
        )
        loss = _windows_loss(model, ctx.windows, hybrid_starts)
        scored.append((LawCandidate(threshold, describe(found[0]), size(found[0]), loss), found))
    best = min(c.loss for c, _ in scored)
    error = best * math.sqrt(2 / count)
    for candidate, _ in scored:
        candidate.within = candidate.loss <= best + error
        ctx.log(
            f"  threshold {candidate.threshold:g}: {candidate.description}  (loss "
            f"{candidate.loss:.4g}" + (", within 1 SE of the best)" if candidate.within else ")")
        )
    eligible = [item for item in scored if item[0].within]
    winner, found = min(eligible, key=lambda item: (item[0].terms, item[0].loss))
    winner.chosen = True
    others = len(scored) - 1
    reason = (
        f"threshold {winner.threshold:g} won: the sparsest law ({winner.terms} coefficients) "
        f"whose loss on the windows ({winner.loss:.4g}) lies within one standard error "
        f"({error:.2g}) of the best candidate's ({best:.4g})"
        if others
        else f"threshold {winner.threshold:g} gave the only candidate law"
    )
    selection = LawSelection(
        candidates=[c for c, _ in scored],
        best_loss=best,
        standard_error=error,
        observations=count,
        max_loss_ratio=spec.max_loss_ratio,
        reason=reason,
    )
    return found, selection


def _check(ctx: _Context, selection: LawSelection, loss: float, baseline: float) -> None:
    """Whether the chosen law explains the data: its loss on the windows after its refit (with
    its own window starts) within ``max_loss_ratio`` of the hybrid model's. Settles
    ``selection.found`` and adds the verdict to its reason."""
    ratio = loss / baseline if baseline > 0 else math.inf
    selection.baseline_loss, selection.refit_loss = baseline, loss
    selection.found = bool(ratio <= selection.max_loss_ratio)
    if selection.pruned:
        shown = "; ".join(f"{call}: {', '.join(terms)}" for call, terms in selection.pruned.items())
        selection.reason += (
            f"; refitted on the data, its terms {shown} fell below the threshold and were "
            "dropped, and the rest refitted again"
        )
    if selection.found:
        selection.reason += (
            f"; refitted, it reproduces the windows with {ratio:.3g}x the hybrid model's loss "
            f"(at most {selection.max_loss_ratio:g}x allowed)"
        )
    else:
        selection.reason = (
            f"{NO_LAW}: the best candidate law, refitted, reproduces the windows only with "
            f"{ratio:.3g}x the hybrid model's loss ({baseline:.3g}; at most "
            f"{selection.max_loss_ratio:g}x allowed) — " + selection.reason
        )


# ------------------------------------------------------------------------------------------------
# forecast and the black box


class _BlackBox(nn.Module):
    """A purely neural vector field ``dy/dt = MLP(y)``, scaled like the hybrid's networks."""

    def __init__(self, states: int, net_spec, ts: torch.Tensor, ys: torch.Tensor):
        super().__init__()
        self.net = MLP(states, states, net_spec)
        size = torch.nan_to_num(ys.abs(), nan=0.0).amax(dim=0).clamp(min=1e-12)
        span = float(ts[-1] - ts[0]) or 1.0
        self.net.set_data_scales(size, size / (span / 10))  # those its spec does not fix
        self.double()

    def forward(self, t, y, args=None):
        return self.net(y)


def _forecast(ctx: _Context, obs: Observations, fits: dict[str, ModelFit], starts) -> Forecast:
    """Each model from its own estimate of the first state (the first observation, or the one
    its fit learnt), well past the training window."""
    spec = ctx.spec.forecast
    t0, t_end = float(obs.ts[0]), float(obs.ts[-1])
    end = t_end + spec.horizon * (t_end - t0)
    ts = torch.linspace(t0, end, 600, dtype=obs.ts.dtype)
    predictions = {}
    for name, fit in fits.items():
        with torch.no_grad():
            sol = solve(
                ODETerm(fit.model),
                _solvers.Dopri5(),
                t0,
                end,
                starts[name],
                controller=PIDController(rtol=1e-7, atol=1e-9),
                saveat=SaveAt(ts=ts),
                throw=False,
                max_steps=200_000,
            )
        predictions[name] = sol.ys
    truth = None
    if obs.truth is not None:
        truth = true_trajectory(obs.truth, obs.states, ts)
    forecast = Forecast(ts=ts, truth=truth, predictions=predictions, train_end=t_end)
    if truth is not None:
        window = ts > t_end
        reference = truth[window].pow(2).mean().sqrt().item()
        for name, pred in predictions.items():
            diff = pred[window] - truth[window]
            rmse = diff.pow(2).mean().sqrt().item() if torch.isfinite(diff).all() else math.inf
            forecast.errors[name] = rmse
            forecast.relative_errors[name] = rmse / reference if reference else math.inf
    return forecast


# ------------------------------------------------------------------------------------------------
# the workflow


def discover(
    spec: RunSpec,
    observations: Observations,
    *,
    networks: Mapping[str, nn.Module] | None = None,
    run_dir: Path | str | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> DiscoveryResult:
    """Fit, recover, check, refit and forecast (the seed lecture's workflow; see the module
    docstring).

    1. Fit the hybrid model of ``spec.system`` to ``observations`` through the solver, on windows
       of consecutive observations (:class:`~torchnde.training.TrajectoryWindows`, with multiple
       shooting if asked), Adam then L-BFGS.
    2. Evaluate each network where the data are — along the fitted solutions of windows covering
       the observations, never along one long solve of the fitted model — and find sparse closed
       forms by regression over a library of candidate terms, at a few sparsity thresholds. A
       learnable parameter whose term the network could also represent (``- theta*y`` beside
       ``NN2(x, y)``) is unidentifiable from the data alone, so its term joins the regression
       and the regression sets it. The share of samples outside the data's range is reported,
       with an :class:`ExtrapolationWarning` when it is not negligible.
    3. Check every candidate law by simulating it over the windows against the data after a
       short refit of its coefficients (from the hybrid model's window starts, kept fixed);
       keep the sparsest candidate whose loss lies within one standard error of the best
       candidate's (``loss * sqrt(2 / n)`` for ``n`` observed values).
    4. Refit the coefficients of the chosen law (and the learnable parameters) on the windows
       with their starts learnt, dropping terms whose refitted coefficients fall below the
       threshold (at most :data:`PRUNE_ROUNDS` times), then on the whole trajectory. If the
       refitted law does not reproduce the windows within ``spec.discovery.max_loss_ratio`` of
       the hybrid model's loss, no law is reported ("no sparse law found; the hybrid model
       stands": ``result.law_found`` is False).
    5. Optionally train a purely neural ODE on the same data, and forecast every model well past
       the training window; with synthetic data, score everything against the truth.

    Args:
        spec: what to run.
        observations: the data (``simulate(...)`` or ``load_csv(...)``).
        networks: the user's own networks by name, instead of the default MLPs; each maps
            ``(..., inputs)`` to ``(..., outputs)`` and is used as given (converted to float64):
            wrap it in :class:`ScaledNetwork` to have its inputs and outputs scaled from the data.
        run_dir: a folder for checkpoints (``run_dir/checkpoints/<phase>/``); ``None``: none.
        resume: continue the run whose checkpoints are in ``run_dir``.
        progress: show progress bars.
        log: called with a line of text at each phase.

    Returns:
        A :class:`DiscoveryResult`.
    """
    started = time.perf_counter()
    log = log or (lambda _line: None)
    run_dir = None if run_dir is None else Path(run_dir)
    obs = Observations(
        observations.ts.to(torch.float64),
        observations.ys.to(torch.float64),
        tuple(observations.states),
        observations.truth,
    )
    system = spec.system
    if tuple(obs.states) != tuple(system.states):
        raise ValueError(
            f"the observations' states {obs.states} differ from the system's {system.states}"
        )
    seed_everything(spec.seed)
    hybrid = HybridModel(system, networks=networks)
    hybrid.set_scales(obs.ts, obs.ys)
    autonomous = all(
        sympy.Symbol(system.time, real=True) not in e.free_symbols
        for e in hybrid.parsed.equations.values()
    )
    windows = _windows(obs, spec.training, autonomous)
    ctx = _Context(spec, windows, run_dir, resume, progress, log)
    train = spec.training
    fits, starts = {}, {}
    fits["hybrid"], hybrid_starts = _train(
        ctx,
        "hybrid",
        hybrid,
        _stages(train.adam_steps, train.adam_lr, train.lbfgs_steps, train.patience, train.schedule),
    )
    starts["hybrid"] = hybrid_starts[0]  # the first window starts at the first observation
    sampling = _sample(ctx, hybrid, obs, hybrid_starts)
    found, selection = _select(ctx, hybrid, sampling, obs, hybrid_starts)
    recovered, first, loss = _refit(
        ctx, obs, hybrid, found, autonomous, hybrid_starts, sampling, selection
    )
    _check(ctx, selection, loss, _windows_loss(hybrid, windows, hybrid_starts))
    log(selection.reason)
    recoveries, true_params = {}, {}
    if selection.found:
        recoveries, _, true_params = found
        fits["recovered"] = recovered
        starts["recovered"] = starts["hybrid"] if first is None else first
    if spec.forecast.blackbox:
        seed_everything(spec.seed + 2)
        box = _BlackBox(len(system.states), spec.forecast.blackbox_network, obs.ts, obs.ys)
        fits["blackbox"], box_starts = _train(
            ctx,
            "blackbox",
            box,
            _stages(
                spec.forecast.blackbox_adam_steps,
                train.adam_lr,
                spec.forecast.blackbox_lbfgs_steps,
                train.patience,
                train.schedule,
            ),
        )
        starts["blackbox"] = box_starts[0]
    log("forecasting past the training window")
    forecast = _forecast(ctx, obs, fits, starts)
    parameters = {
        name: fit.model.parameter_values()
        for name, fit in fits.items()
        if isinstance(fit.model, HybridModel)
    }
    return DiscoveryResult(
        spec=spec,
        observations=obs,
        fits=fits,
        recoveries=recoveries,
        parameters=parameters,
        true_parameters=true_params,
        trajectory_ts=sampling.ts,
        trajectory=sampling.states,
        forecast=forecast,
        seconds=time.perf_counter() - started,
        sampling=sampling,
        selection=selection,
    )


def _refit(
    ctx: _Context,
    obs: Observations,
    hybrid: HybridModel,
    found,
    autonomous: bool,
    hybrid_starts: torch.Tensor,
    sampling: Sampling,
    selection: LawSelection,
) -> tuple[ModelFit, torch.Tensor | None, float]:
    """Refit the chosen law's coefficients on the windows with multiple shooting (so noisy
    observations do not bias them); drop the terms whose refitted coefficients fall below the
    threshold and refit again without them, until none does (at most :data:`PRUNE_ROUNDS`
    times); then fit, with the initial state, the whole observed trajectory at once (the
    maximum-likelihood fit a forecast needs). Returns the fit, its
    estimate of the first state (None: the hybrid model's) and its loss on the windows after the
    window refits (what :func:`_check` compares with the hybrid model's)."""
    spec = ctx.spec
    recoveries, implied, _ = found
    recovered, coefficients = recovered_model(hybrid, recoveries, implied)
    ctx.log(
        "recovered equations: "
        + "; ".join(
            f"d{st}/dt = {recovered.parsed.spec.equations[st]}" for st in spec.system.states
        )
    )
    losses, seconds, first, starts = [], 0.0, None, hybrid_starts
    threshold = next(c.threshold for c in selection.candidates if c.chosen)
    for attempt in range(PRUNE_ROUNDS + 1) if spec.discovery.refit_steps else ():
        fit, starts = _train(
            ctx,
            "recovered" if attempt == 0 else f"recovered-pruned-{attempt}",
            recovered,
            [Stage("lbfgs", steps=spec.discovery.refit_steps, lr=1.0)],
            shooting=True,
            starts=starts,
        )
        losses, seconds = losses + fit.losses, seconds + fit.seconds
        read_back(recovered, recoveries, coefficients)
        if attempt == PRUNE_ROUNDS:
            break
        dropped = prune(
            recoveries, hybrid, sampling.ts, sampling.states, sampling.inside,
            spec.discovery, threshold,
        )  # fmt: skip
        if not dropped:
            break
        for call, terms in dropped.items():
            selection.pruned.setdefault(call, []).extend(terms)
        shown = "; ".join(f"{call}: {', '.join(terms)}" for call, terms in dropped.items())
        ctx.log(f"  refitted on the data, these terms fell below the threshold: {shown}")
        declared = {k: v for k, v in recovered.parameter_values().items() if k in hybrid.params}
        recovered, coefficients = recovered_model(hybrid, recoveries, declared)
    window_loss = _windows_loss(recovered, ctx.windows, starts)
    if spec.discovery.trajectory_steps:
        whole = _windows(obs, spec.training, autonomous, width=obs.ts.shape[0])
        fit, whole_starts = _train(
            ctx,
            "recovered-trajectory",
            recovered,
            [Stage("lbfgs", steps=spec.discovery.trajectory_steps, lr=1.0)],
            windows=whole,
            shooting=True,
            starts=starts[:1],  # the first window's start: the first state
        )
        losses, seconds = losses + fit.losses, seconds + fit.seconds
        first = whole_starts[0]
        read_back(recovered, recoveries, coefficients)
    return ModelFit("recovered", recovered, losses, seconds), first, window_loss
