"""Training physics-informed networks in phases on :class:`torchnde.training.Trainer`: each phase
(a whole-domain run, a curriculum stage, a time block, a causal stage) samples its points, builds
its loss, trains through the stages with atomic checkpoints, and is measured against the
reference; a paradigm decides which phases to run."""

from __future__ import annotations

import dataclasses
import json
import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..training import Stage, StepRecord, Trainer, atomic_save, atomic_write_text
from ..training._checks import check_count
from ._conditions import (
    AbstractCondition,
    Dirichlet,
    InitialCondition,
    Neumann,
    Observations,
    Periodic,
    PreparedCondition,
)
from ._domain import Domain
from ._loss import AdaptiveWeights, CausalWeights, PhaseLoss, PhaseModule, check_weights
from ._network import Network, PINNModel
from ._problem import PDEProblem
from ._reference import relative_l2
from ._result import PhaseResult, PhaseStatus, PINNResult
from ._sampling import AbstractSampler, ResidualRefinement, Uniform, sampler_by_name

__all__ = ["PhaseRunner", "Points", "train"]


@dataclass(frozen=True)
class Points:
    """How many points enforce what, and where they lie.

    Args:
        collocation: residual points per phase (per block under time marching).
        initial: points of each initial condition.
        boundary: points per side of each boundary condition (and pairs of each periodic one).
        sampler: where collocation points lie: a sampler or its name (``"grid"``,
            ``"uniform"``, ``"latin_hypercube"``, ``"sobol"``).
        refine: residual-based adaptive refinement after each phase, or None.
        seed: the seed of every random point set.
    """

    collocation: int = 1000
    initial: int = 256
    boundary: int = 100
    sampler: AbstractSampler | str = field(default_factory=Uniform)
    refine: ResidualRefinement | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_count(self.collocation, "collocation")
        check_count(self.initial, "initial")
        check_count(self.boundary, "boundary")
        object.__setattr__(self, "sampler", sampler_by_name(self.sampler))
        if self.refine is not None and not isinstance(self.refine, ResidualRefinement):
            raise TypeError(f"`refine` must be a ResidualRefinement or None, got {self.refine!r}")
        check_count(self.seed, "seed", minimum=0)

    def collocation_points(
        self,
        domain: Domain,
        key: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """The collocation points ``(collocation, dim)`` a phase with sample key ``key`` uses
        (the same points :func:`train` trains on)."""
        unit = self.sampler.unit(
            self.collocation,
            [domain[name].periodic for name in domain.names],
            _seed(self.seed, "collocation", key),
        )
        return domain.scale(unit).to(dtype=dtype, device=device)

    def condition_points(
        self,
        problem: PDEProblem,
        key: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> list[PreparedCondition]:
        """Each soft condition of ``problem`` prepared (its points and targets, as
        ``.points``/``.targets`` where it has them) as a phase with sample key ``key`` gets it."""
        return [
            c.prepare(
                problem.domain,
                problem.outputs,
                self.count_for(c),
                _seed(self.seed, "condition", c.term, key),
                dtype,
                device,
            )
            for c in problem.conditions
            if not c.hard
        ]

    def count_for(self, condition: AbstractCondition) -> int:
        """The number of points ``condition`` gets."""
        if isinstance(condition, InitialCondition):
            return self.initial
        if isinstance(condition, Dirichlet | Neumann | Periodic):
            return self.boundary
        return 0 if isinstance(condition, Observations) else self.boundary


def _seed(*parts: Any) -> int:
    """A stable seed from ``parts`` (Python's ``hash`` of strings varies between runs)."""
    return zlib.crc32(repr(parts).encode()) & 0x7FFFFFFF


# -- the runner ------------------------------------------------------------------------------------


class PhaseRunner:
    """Runs the phases a paradigm asks for and keeps what they produced.

    A paradigm calls :meth:`phase` for each phase in turn (reading each result to decide the
    next), may call :meth:`restore` to go back to an earlier phase's weights, and sets
    :attr:`predictor` when the final model is not simply the last phase's (time marching), or
    calls :meth:`stop` to end the run with a reason.
    """

    def __init__(
        self,
        problem: PDEProblem,
        stages: Sequence[Stage],
        *,
        network: Network,
        points: Points,
        weights: Mapping[str, float] | AdaptiveWeights | None,
        evaluation: Mapping[str, int],
        run_dir: Path | None,
        resume: bool,
        progress: bool,
        seed: int,
        dtype: torch.dtype,
        device: torch.device | None,
        checkpoint_every: int,
        callback: Callable[[PhaseResult], Any] | None,
        initial: Mapping[str, torch.Tensor] | None = None,
    ):
        self.problem = problem
        self.initial = initial
        self.stages = list(stages)
        self.network = network
        self.points = points
        self.adaptive = weights if isinstance(weights, AdaptiveWeights) else None
        fixed = weights.initial if isinstance(weights, AdaptiveWeights) else weights
        self.weights = check_weights(fixed, problem.soft_terms)
        self.evaluation = dict(evaluation)
        self.run_dir = run_dir
        self.resume = resume
        self.progress = progress
        self.seed = seed
        self.dtype = dtype
        self.device = device
        self.checkpoint_every = checkpoint_every
        self.callback = callback
        self.phases: list[PhaseResult] = []
        self.models: list[PINNModel] = []
        self.model: PINNModel | None = None
        self.predictor: nn.Module | None = None
        self.stop_reason = ""
        self._references: dict[tuple, torch.Tensor] = {}

    # ----------------------------------------------------------------------------- API

    def phase(
        self,
        name: str,
        kind: str,
        settings: Mapping[str, float],
        problem: PDEProblem,
        *,
        scaling: Domain | None = None,
        sample_key: int = 0,
        causal: CausalWeights | None = None,
        tolerance: float | None = None,
        warm_start: bool = True,
        so_far: Callable[[nn.Module], float | None] | None = None,
    ) -> PhaseResult:
        """Train one phase on ``problem`` (the paradigm's variant of the run's problem).

        Args:
            name, kind, settings: how the phase is reported.
            problem: the phase's problem (its coefficients, domain and conditions).
            scaling: the box the inputs are scaled over (default: the run's whole domain).
            sample_key: phases with the same key and domain share their random points.
            causal: causal weights on the residual.
            tolerance: the phase has converged when its final loss is at most this; None: no
                test (status DONE).
            warm_start: start from the current model's weights (else a fresh initialisation).
            so_far: ``so_far(model)`` gives the phase's ``error_so_far`` (time marching).
        """
        index = len(self.phases)
        model = self._build(problem, index, scaling, warm_start)
        folder = None if self.run_dir is None else self.run_dir / "phases" / f"{index:02d}"
        stored = self._load(folder, model)
        if stored is None:
            started = time.perf_counter()
            outcome = _PhaseTraining(self, problem, model, folder, sample_key, causal).run()
            result = self._result(
                index, name, kind, settings, problem, model, outcome, tolerance, started
            )
            if so_far is not None:
                result = dataclasses.replace(result, error_so_far=so_far(model))
            self._store(folder, model, result)
        else:
            result = stored
        self.phases.append(result)
        self.models.append(model)
        self.model = model
        if self.callback is not None:
            self.callback(result)
        return result

    def restore(self, index: int) -> None:
        """Make the model after phase ``index`` the current one (the next warm start)."""
        self.model = self.models[index]

    def stop(self, reason: str) -> None:
        """End the run here, for ``reason``."""
        self.stop_reason = reason

    def error(
        self,
        predictor: nn.Module,
        problem: PDEProblem,
        time_range: tuple[float, float] | None = None,
    ) -> float | None:
        """The relative L2 error of ``predictor`` against ``problem``'s reference on the
        evaluation grid of the run's whole domain (only the times in ``time_range``, ends
        included, if given); None without a reference."""
        if problem.reference is None:
            return None
        domain = self.problem.domain
        axes = domain.grid(self.evaluation, torch.float64, self.device)
        reference = self._reference(problem, axes)
        parameter = next(predictor.parameters())
        with torch.no_grad():
            values = predictor(domain.mesh(axes).to(parameter.dtype)).double()
        if reference.dim() == domain.dim:  # one output
            prediction = values[:, 0].reshape(reference.shape)
        else:
            prediction = values.reshape(reference.shape)
        if time_range is not None and domain.time is not None:
            t = axes[domain.time]
            keep = (t >= time_range[0] - 1e-12) & (t <= time_range[1] + 1e-12)
            axis = domain.index(domain.time)
            reference = reference.index_select(axis, keep.nonzero().squeeze(-1))
            prediction = prediction.index_select(axis, keep.nonzero().squeeze(-1))
        return relative_l2(prediction, reference)

    # ----------------------------------------------------------------------------- internals

    def _reference(self, problem: PDEProblem, axes: Mapping[str, torch.Tensor]) -> torch.Tensor:
        key = tuple(sorted(problem.coefficients.items()))
        if key not in self._references:
            values = problem.reference(axes, dict(problem.coefficients))
            values = torch.as_tensor(values, dtype=torch.float64)
            expected = [len(axes[name]) for name in self.problem.domain.names]
            if list(values.shape) not in (expected, [*expected, len(problem.outputs)]):
                raise ValueError(
                    f"the reference returned shape {tuple(values.shape)}, expected {expected} "
                    "(one value per grid point, coordinates in the domain's order)"
                )
            self._references[key] = values
        return self._references[key]

    def _build(
        self, problem: PDEProblem, index: int, scaling: Domain | None, warm_start: bool
    ) -> PINNModel:
        torch.manual_seed(_seed(self.seed, "model", index))
        model = PINNModel(
            problem.domain,
            len(problem.outputs),
            self.network,
            hard=problem.hard_faces(),
            periodic=problem.hard_periodic(),
            learnable=problem.learnable,
            scaling=scaling or self.problem.domain,
            dtype=self.dtype,
            device=self.device,
        )
        if warm_start and self.model is not None:
            model.net.load_state_dict(self.model.net.state_dict())
            model.coefficients.load_state_dict(self.model.coefficients.state_dict())
        elif self.initial is not None:
            try:
                model.net.load_state_dict(self.initial)
            except RuntimeError as error:
                raise ValueError(
                    f"`initial` does not fit the network {self.network} ({error}); give the "
                    "state_dict() of a PINNModel's .net built with the same Network"
                ) from None
        return model

    def _result(
        self,
        index: int,
        name: str,
        kind: str,
        settings: Mapping[str, float],
        problem: PDEProblem,
        model: PINNModel,
        outcome: _Outcome,
        tolerance: float | None,
        started: float,
    ) -> PhaseResult:
        status, message = outcome.status, outcome.message
        if status is PhaseStatus.DONE and tolerance is not None:
            if outcome.loss <= tolerance:
                status = PhaseStatus.CONVERGED
            else:
                status = PhaseStatus.NOT_CONVERGED
                message = (
                    f"the final loss {outcome.loss:.3g} is above the tolerance {tolerance:.3g}"
                )
        time_range = None
        if problem.domain.time is not None and problem.domain != self.problem.domain:
            interval = problem.domain[problem.domain.time]
            time_range = (interval.low, interval.high)
        return PhaseResult(
            index=index,
            name=name,
            kind=kind,
            settings=dict(settings),
            status=status,
            message=message,
            steps=outcome.steps,
            loss=outcome.loss,
            terms=outcome.terms,
            weights=outcome.weights,
            error=self.error(model, problem, time_range),
            error_so_far=None,
            collocation=outcome.collocation,
            causal_min_weight=outcome.causal_min,
            wall_time=time.perf_counter() - started,
            history=outcome.history,
        )

    def _load(self, folder: Path | None, model: PINNModel) -> PhaseResult | None:
        if folder is None or not self.resume or not (folder / "final.pt").exists():
            return None
        stored = torch.load(folder / "final.pt", map_location=self.device, weights_only=False)
        model.load_state_dict(stored["model"])
        return PhaseResult.from_data(stored["summary"], stored["history"])

    def _store(self, folder: Path | None, model: PINNModel, result: PhaseResult) -> None:
        if folder is None:
            return
        atomic_save(
            {"model": model.state_dict(), "summary": result.summary(), "history": result.history},
            folder / "final.pt",
        )
        summaries = [p.summary() for p in self.phases] + [result.summary()]
        text = json.dumps(_finite(summaries), indent=2, allow_nan=False) + "\n"
        atomic_write_text(self.run_dir / "phases.json", text)


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- one phase -------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    status: PhaseStatus
    message: str
    steps: int
    loss: float
    terms: dict[str, float]
    weights: dict[str, float]
    collocation: int
    causal_min: float | None
    history: list[dict[str, Any]]


class _PhaseTraining:
    """One phase: points, loss, and the trainer over each refinement round."""

    def __init__(
        self,
        runner: PhaseRunner,
        problem: PDEProblem,
        model: PINNModel,
        folder: Path | None,
        sample_key: int,
        causal: CausalWeights | None,
    ):
        self.runner = runner
        self.problem = problem
        self.model = model
        self.folder = folder
        self.sample_key = sample_key
        self.causal = causal
        self.history: list[dict[str, Any]] = []
        self.steps = 0
        self.started = time.perf_counter()
        self.started_cpu = time.thread_time()

    def run(self) -> _Outcome:
        runner = self.runner
        soft = [c for c in self.problem.conditions if not c.hard]
        weights = [runner.weights[c] for c in ("residual", *(c.term for c in soft))]
        module = PhaseModule(self.model, weights)
        conditions = self._conditions()
        points = self._collocation()
        refine = runner.points.refine
        rounds = 1 + (refine.rounds if refine is not None else 0)
        status, message, loss = PhaseStatus.DONE, "", None
        for number in range(rounds):
            if number:
                points = self._refined(points, loss, number)
            stages = runner.stages if number == 0 or refine.stages is None else list(refine.stages)
            loss = PhaseLoss(
                self.problem,
                points,
                conditions,
                adaptive=runner.adaptive,
                causal=self.causal,
                first_order=[s.optimizer != "lbfgs" for s in stages],
            )
            module.steps.zero_()
            module.stage.zero_()
            status, message = self._fit(module, loss, stages, number)
            if status is not PhaseStatus.DONE:
                break
        return self._outcome(module, loss, status, message, points.shape[0])

    def _conditions(self) -> list[PreparedCondition]:
        runner = self.runner
        return runner.points.condition_points(
            self.problem, self.sample_key, runner.dtype, runner.device
        )

    def _collocation(self) -> torch.Tensor:
        runner = self.runner
        return runner.points.collocation_points(
            self.problem.domain, self.sample_key, runner.dtype, runner.device
        )

    def _refined(self, points: torch.Tensor, loss: PhaseLoss, number: int) -> torch.Tensor:
        """Residual-based refinement: the points of round ``number``."""
        saved = None if self.folder is None else self.folder / f"round-{number}" / "points.pt"
        if saved is not None and saved.exists():
            return torch.load(saved, map_location=self.runner.device).to(self.runner.dtype)
        refine = self.runner.points.refine
        domain = self.problem.domain
        unit = Uniform().unit(
            refine.candidates,
            [domain[name].periodic for name in domain.names],
            _seed(self.runner.points.seed, "refine", self.sample_key, number),
        )
        candidates = domain.scale(unit).to(dtype=self.runner.dtype, device=self.runner.device)
        residual = torch.cat(
            [
                self.problem.evaluate_residual(
                    self.model, chunk, loss.coefficients(self.model)
                ).detach()
                for chunk in candidates.split(4096)
            ]
        )
        points = torch.cat([points, refine.select(candidates, residual, refine.add)])
        if saved is not None:
            atomic_save(points.cpu(), saved)
        return points

    def _fit(
        self, module: PhaseModule, loss: PhaseLoss, stages: Sequence[Stage], number: int
    ) -> tuple[PhaseStatus, str]:
        runner = self.runner
        # the state after the last finished step, for a phase that ends on a non-finite value:
        # copied in place (one fused copy per step) from views that share the live storage
        names, live = zip(*module.state_dict().items())
        good = [tensor.clone() for tensor in live]
        offset = self.steps

        def on_step(record: StepRecord) -> None:
            loss.step_done()
            module.steps += 1
            if record.stage_finished:
                module.stage += 1
            torch._foreach_copy_(good, live)
            self.history.append(
                {
                    "step": offset + record.step,
                    "round": number,
                    "stage": record.stage_index,
                    "optimizer": record.optimizer,
                    "loss": record.loss,
                    "terms": loss.terms_at(record.loss),
                    "weights": module.weights.tolist(),
                    "evaluations": loss.evaluations,
                    "seconds": time.perf_counter() - self.started,
                    "cpu_seconds": time.thread_time() - self.started_cpu,
                }
            )

        folder = None if self.folder is None else self.folder / f"round-{number}" / "checkpoints"
        trainer = self._trainer(module, loss, stages, folder, on_step)
        # L-BFGS stages run in stretches need no cache of evaluations (see PhaseLoss)
        loss.cached = [s.optimizer == "lbfgs" and not trainer.fuses(s) for s in stages]
        try:
            result = trainer.fit(resume=runner.resume)
        except FloatingPointError as error:
            module.load_state_dict(dict(zip(names, good)))
            self.steps = self.history[-1]["step"] if self.history else offset
            return PhaseStatus.NONFINITE, str(error)
        finally:
            loss.close()
        self._fill_history(result.losses, offset, number)
        self.steps = offset + result.num_steps
        return PhaseStatus.DONE, ""

    def _trainer(
        self,
        module: PhaseModule,
        loss: PhaseLoss,
        stages: Sequence[Stage],
        folder: Path | None,
        on_step: Callable[[StepRecord], Any],
    ) -> Trainer:
        """The phase's trainer: it stops at the first non-finite value (the phase then ends
        with status NONFINITE and its last finite weights) and runs L-BFGS iterations in
        stretches between checkpoints (the per-call work of one iteration per call cost
        5-10 % of an iteration on the benchmark problems)."""
        return Trainer(
            module,
            loss,
            stages,
            checkpoint_dir=folder,
            checkpoint_every=self.runner.checkpoint_every,
            seed=self.runner.seed,
            progress=self.runner.progress,
            name=self.problem.name,
            log=on_step,
            nonfinite="raise",
            fuse_lbfgs=True,
        )

    def _fill_history(self, losses: Sequence[float], offset: int, number: int) -> None:
        """Steps a resumed run took before this session: their total loss only."""
        seen = {entry["step"] for entry in self.history}
        missing = [
            {"step": offset + k + 1, "round": number, "loss": value}
            for k, value in enumerate(losses)
            if offset + k + 1 not in seen
        ]
        if missing:
            self.history = sorted(self.history + missing, key=lambda entry: entry["step"])

    def _outcome(
        self,
        module: PhaseModule,
        loss: PhaseLoss,
        status: PhaseStatus,
        message: str,
        collocation: int,
    ) -> _Outcome:
        values = {name: float(v.detach()) for name, v in loss.evaluate(module.model).items()}
        weights = {name: float(w) for name, w in zip(loss.terms, module.weights)}
        total = sum(weights[name] * values[name] for name in loss.terms)
        if status is PhaseStatus.DONE and not math.isfinite(total):
            status = PhaseStatus.NONFINITE
            message = "the final loss is not finite"
        return _Outcome(
            status,
            message,
            self.steps,
            total,
            values,
            weights,
            collocation,
            loss.last_causal_min,
            self.history,
        )


# -- the entry point --------------------------------------------------------------------------------


def train(
    problem: PDEProblem,
    stages: Stage | Sequence[Stage],
    *,
    paradigm: Any = None,
    network: Network | None = None,
    points: Points | None = None,
    weights: Mapping[str, float] | AdaptiveWeights | None = None,
    evaluation: Mapping[str, int] | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    checkpoint_every: int = 100,
    callback: Callable[[PhaseResult], Any] | None = None,
    initial: Mapping[str, torch.Tensor] | None = None,
) -> PINNResult:
    """Train a physics-informed network on ``problem`` with a training paradigm.

    Each phase the paradigm runs (see :class:`Plain`, :class:`Curriculum`,
    :class:`TimeMarching`, :class:`Causal`) trains through ``stages`` with
    :class:`torchnde.training.Trainer`, e.g. ``[Stage("adam", 1000, lr=1e-3), Stage("lbfgs",
    2000)]``; every term of the loss is logged per step; a non-finite loss or parameter stops
    the phase with status ``NONFINITE`` and the last finite parameters, never a NaN model.

    Args:
        problem: the :class:`PDEProblem`.
        stages: the optimiser stages of every phase.
        paradigm: how to train (default :class:`Plain`).
        network: the :class:`Network` (default 4 × 50 tanh).
        points: the :class:`Points` (default 1000 uniform collocation points).
        weights: fixed weights, term -> value (1 where not given; the terms are
            ``problem.soft_terms``), or :class:`AdaptiveWeights`.
        evaluation: grid points per coordinate for the errors (default 101 each, 100 for a
            periodic one).
        run_dir: where checkpoints (``phases/NN/round-R/checkpoints``), each phase's final
            weights and ``phases.json`` go; None: nothing is written.
        resume: continue the run in ``run_dir``: finished phases are loaded, the unfinished one
            resumes from its checkpoint.
        progress: a tqdm bar per phase.
        seed: the seed of the initial weights (phase by phase).
        dtype, device: of the network and points.
        checkpoint_every: steps between checkpoints.
        callback: called with each :class:`PhaseResult` when its phase ends.
        initial: starting weights of the network instead of a fresh initialisation: the
            ``state_dict()`` of a :class:`PINNModel`'s ``.net`` built with the same
            :class:`Network` (a model trained on a related problem; a benchmark's common start).

    Returns:
        A :class:`PINNResult`.

    Example:
        >>> result = train(problem, [Stage("lbfgs", steps=1000)],
        ...                paradigm=Curriculum("beta", [1, 10, 20, 30]))
        >>> [(p.name, p.error) for p in result.phases]
    """
    from ._paradigms import AbstractParadigm, Plain

    if not isinstance(problem, PDEProblem):
        raise TypeError(f"`problem` must be a PDEProblem, got {type(problem).__name__}")
    stages = [stages] if isinstance(stages, Stage) else list(stages)
    if not stages or not all(isinstance(s, Stage) for s in stages):
        raise TypeError("`stages` must be a Stage or a non-empty list of Stage")
    paradigm = Plain() if paradigm is None else paradigm
    if not isinstance(paradigm, AbstractParadigm):
        raise TypeError(
            f"`paradigm` must be Plain(), Curriculum(...), TimeMarching(...) or Causal(...), "
            f"got {paradigm!r}"
        )
    paradigm.check(problem)
    points = points or Points()
    if not isinstance(points, Points):
        raise TypeError(f"`points` must be a Points, got {type(points).__name__}")
    if weights is not None and not isinstance(weights, Mapping | AdaptiveWeights):
        raise TypeError(f"`weights` must be a mapping or AdaptiveWeights, got {weights!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"`dtype` must be torch.float32 or torch.float64, got {dtype}")
    if evaluation is None:
        evaluation = {n: 100 if i.periodic else 101 for n, i in problem.domain.items()}
    problem.domain.grid(evaluation)  # checks it names every coordinate
    runner = PhaseRunner(
        problem,
        stages,
        network=network or Network(),
        points=points,
        weights=weights,
        evaluation=evaluation,
        run_dir=None if run_dir is None else Path(run_dir),
        resume=resume,
        progress=progress,
        seed=seed,
        dtype=dtype,
        device=None if device is None else torch.device(device),
        checkpoint_every=check_count(checkpoint_every, "checkpoint_every"),
        callback=callback,
        initial=initial,
    )
    if runner.run_dir is not None and not resume and (runner.run_dir / "phases").exists():
        raise FileExistsError(
            f"`run_dir`={str(runner.run_dir)!r} already holds a run; pass resume=True to "
            "continue it, or choose an empty folder"
        )
    paradigm.run(runner)
    return _finish(runner, paradigm)


def _finish(runner: PhaseRunner, paradigm: Any) -> PINNResult:
    predictor = runner.predictor or runner.model
    phases = runner.phases
    failed = next((p for p in phases if not p.ok), None)
    completed = failed is None and not runner.stop_reason
    reason = runner.stop_reason
    if failed is not None and not reason:
        reason = (
            f"phase {failed.index} ({failed.name}) ended {failed.status.value}: {failed.message}"
        )
    covers = runner.predictor is not None or (
        phases and runner.problem.domain == _phase_domain(runner, phases[-1])
    )
    error = runner.error(predictor, runner.problem) if completed and covers else None
    learned = {name: float(value) for name, value in predictor_coefficients(runner).items()}
    return PINNResult(
        problem=runner.problem,
        paradigm=paradigm.describe(),
        phases=phases,
        model=predictor,
        error=error,
        completed=completed,
        stop_reason=reason,
        evaluation=runner.evaluation,
        learned=learned,
        wall_time=sum(p.wall_time for p in phases),
    )


def _phase_domain(runner: PhaseRunner, phase: PhaseResult) -> Domain:
    return runner.models[phase.index].domain


def predictor_coefficients(runner: PhaseRunner) -> dict[str, torch.Tensor]:
    """The learnable coefficients of the current model."""
    if runner.model is None:
        return {}
    return {name: p.detach() for name, p in runner.model.coefficients.items()}
