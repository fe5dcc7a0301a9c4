"""The training loop: stages of optimisers over mini-batches of windows, with atomic
checkpoints, bitwise-exact resumption, clean stops on signals, early stopping, a progress bar and
data-parallel training."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._checkpoint import CheckpointStore
from ._checks import check_callable, check_count
from ._distributed import Replica, setup_replica
from ._early_stopping import EarlyStopping
from ._progress import Progress, require_tqdm
from ._result import StageResult, StepRecord, TrainResult
from ._rng import capture_rng_state, check_seed, restore_rng_state, seed_everything
from ._sampler import WindowSampler
from ._signals import SignalGuard, TrainingInterrupted
from ._stage import Stage

__all__ = ["Trainer"]

LossFn = Callable[[nn.Module, "torch.Tensor | None"], torch.Tensor]


@dataclass
class _Run:
    """The progress of a training run: everything a checkpoint restores besides the model,
    sampler and random generators. ``len(losses)`` is the number of steps taken."""

    stage_index: int = 0
    stage_step: int = 0
    losses: list[float] = field(default_factory=list)
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    stages_done: list[StageResult] = field(default_factory=list)
    elapsed: float = 0.0  # seconds spent in earlier sessions
    resumed: bool = False
    pending: dict[str, Any] | None = None  # optimiser etc. states of a stage resumed midway

    @property
    def global_step(self) -> int:
        return len(self.losses)


@dataclass
class _Session:
    """One call of :meth:`Trainer.fit`: this process's replica, where checkpoints go, how the
    loss is evaluated, the signal guard and the progress bar."""

    replica: Replica
    store: CheckpointStore | None
    evaluate: Callable[[torch.Tensor | None, float], torch.Tensor]
    progress: Progress
    guard: SignalGuard
    started: float = field(default_factory=time.perf_counter)
    last_checkpoint: Path | None = None

    def elapsed(self, run: _Run) -> float:
        return run.elapsed + time.perf_counter() - self.started


@dataclass
class _StageState:
    """The live objects of the stage being trained."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    stopper: EarlyStopping


class Trainer:
    """Fits a model by minimising ``loss_fn`` through a schedule of optimiser stages.

    Each step draws a batch of window indices from ``sampler``, evaluates ``loss_fn(model,
    batch)`` and takes one optimiser step (see :class:`Stage` for what a step is for L-BFGS).
    Everything that determines the rest of the run (parameters, optimiser and scheduler states,
    step counters, loss history, early-stopping state, sampler and every random generator) is
    checkpointed atomically every ``checkpoint_every`` steps, at the end of every stage and when
    a SIGTERM/SIGINT stops the run, so ``fit(resume=True)`` after a crash or ``kill -9`` ends,
    on CPU, with parameters bitwise identical to an uninterrupted run.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) or with ``distributed=True`` the batch is shared
    among the processes and gradients are averaged with ``DistributedDataParallel``: the update
    equals one process's update on the whole batch. Only rank 0 writes checkpoints, logs and
    shows progress. A parameter that some loss evaluation does not use makes DDP fail; every
    trainable parameter must take part in every loss evaluation.

    Args:
        model: the module to train; its parameters with ``requires_grad`` are optimised (extra
            learnable tensors, such as per-window initial states for multiple shooting, belong
            here as ``nn.Parameter`` of a wrapper module).
        loss_fn: ``loss_fn(model, batch) -> 0-dim tensor``: the mean loss over the windows whose
            indices ``batch`` (an int64 tensor) holds; ``batch`` is None without a sampler.
        stages: the optimiser schedule, run in order.
        sampler: draws the windows of each step; None: ``loss_fn`` gets ``batch=None``.
        checkpoint_dir: where ``latest.pt`` and ``previous.pt`` go; None: no checkpoints.
        checkpoint_every: steps between checkpoints.
        seed: a fresh run seeds ``random``, NumPy and torch with it; None leaves them alone. (The
            sampler has its own seed. Seed before building the model, e.g. with
            :func:`seed_everything`, to make its initialisation reproducible too.)
        progress: show a tqdm progress bar (stage, step, loss) on stderr when it is a terminal.
        name: shown on the progress bar and stored in checkpoints.
        log: called with a :class:`StepRecord` after every step (rank 0 only).
        val_fn: ``val_fn(model) -> float or 0-dim tensor``, a validation loss, evaluated under
            ``torch.no_grad()`` every ``val_every`` steps; early stopping then monitors it.
        val_every: steps between validations.
        distributed: True or False to force data-parallel training on or off; None: on when
            ``WORLD_SIZE`` > 1 or a process group of several processes is initialised.

    Example:
        >>> trainer = Trainer(model, loss_fn, [Stage("adam", steps=300, lr=1e-2),
        ...                   Stage("lbfgs", steps=100, lr=1.0)],
        ...                   sampler=WindowSampler(143, batch_size=32), checkpoint_dir=run / "ckpt")
        >>> result = trainer.fit(resume=True)
        >>> result.final_loss, result.stopped_early
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        stages: Sequence[Stage],
        *,
        sampler: WindowSampler | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_every: int = 50,
        seed: int | None = 0,
        progress: bool = True,
        name: str = "train",
        log: Callable[[StepRecord], Any] | None = None,
        val_fn: Callable[[nn.Module], Any] | None = None,
        val_every: int = 1,
        distributed: bool | None = None,
    ):
        self.model = _check_model(model)
        self._params = [p for p in model.parameters() if p.requires_grad]
        self.loss_fn = check_callable(loss_fn, "loss_fn")
        self.stages = _check_stages(stages)
        if sampler is not None and not isinstance(sampler, WindowSampler):
            raise TypeError(f"`sampler` must be a WindowSampler or None, got {sampler!r}")
        self.sampler = sampler
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.checkpoint_every = check_count(checkpoint_every, "checkpoint_every")
        self.seed = None if seed is None else check_seed(seed)
        self.progress = bool(progress)
        if self.progress:
            require_tqdm()
        self.name = str(name)
        self.log = None if log is None else check_callable(log, "log")
        self.val_fn = None if val_fn is None else check_callable(val_fn, "val_fn")
        self.val_every = check_count(val_every, "val_every")
        if distributed is not None and not isinstance(distributed, bool):
            raise TypeError(f"`distributed` must be True, False or None, got {distributed!r}")
        self.distributed = distributed

    # ----------------------------------------------------------------------------- fit

    def fit(self, resume: bool = False) -> TrainResult:
        """Train through all stages.

        Args:
            resume: continue from the latest checkpoint in ``checkpoint_dir`` (a fresh start if
                there is none yet; the result at once if that run had finished). False refuses
                a ``checkpoint_dir`` that already holds a checkpoint, so nothing is overwritten.

        Returns:
            A :class:`TrainResult`.

        Raises:
            TrainingInterrupted: SIGTERM or SIGINT arrived; the step in progress was finished
                and a checkpoint written (the signal handlers in place before ``fit`` are back).
            FloatingPointError: the loss became NaN or infinite (the parameters stay as they
                were before that step).
        """
        replica = setup_replica(self.distributed, self._params[0].device)
        self._check_sharing(replica)
        store = self._prepare_store(replica)
        run = self._begin(resume, store)
        session = _Session(
            replica=replica,
            store=store,
            evaluate=replica.evaluator(self.model, self.loss_fn),
            progress=Progress(
                self.progress and replica.is_main,
                total=sum(stage.steps for stage in self.stages),
                initial=sum(stage.steps for stage in self.stages[: run.stage_index])
                + run.stage_step,
                name=self.name,
            ),
            guard=SignalGuard(lambda: session.last_checkpoint),
        )
        try:
            with session.guard:
                while run.stage_index < len(self.stages):
                    self._run_stage(run, session)
        finally:
            session.progress.close()
        return self._result(run, session.elapsed(run))

    def _check_sharing(self, replica: Replica) -> None:
        if not replica.distributed:
            return
        if self.sampler is None:
            raise ValueError(
                "distributed training needs a `sampler` (a WindowSampler) whose batches of "
                "windows the processes share"
            )

    def _prepare_store(self, replica: Replica) -> CheckpointStore | None:
        if self.checkpoint_dir is None:
            return None
        store = CheckpointStore(self.checkpoint_dir)
        if replica.is_main:
            store.prepare()
        return store

    def _begin(self, resume: bool, store: CheckpointStore | None) -> _Run:
        """A fresh run, or the run restored from the latest checkpoint."""
        if resume:
            if store is None:
                raise ValueError("fit(resume=True) needs a `checkpoint_dir` to resume from")
            found = store.load()
            if found is not None:
                return self._restore(*found)
        elif store is not None and store.exists():
            raise FileExistsError(
                f"`checkpoint_dir`={str(store.directory)!r} already holds a checkpoint; call "
                "fit(resume=True) to continue that run, or choose an empty folder"
            )
        if self.seed is not None:
            seed_everything(self.seed)
        if self.sampler is not None:
            self.sampler.reset()
        return _Run()

    # ----------------------------------------------------------------------------- stages

    def _run_stage(self, run: _Run, session: _Session) -> None:
        """Train the current stage to its end (its step budget or an early stop)."""
        stage = self.stages[run.stage_index]
        live = self._start_stage(stage, run)
        session.progress.stage(run.stage_index, len(self.stages), stage.optimizer)
        while True:
            lr = float(live.optimizer.param_groups[0]["lr"])
            loss = self._step(stage, live.optimizer, session, run)
            if live.scheduler is not None:
                live.scheduler.step()
            run.losses.append(loss)
            run.stage_step += 1
            val_loss = self._validate(run, session)
            monitored = loss if self.val_fn is None else val_loss
            stop = monitored is not None and live.stopper.update(monitored)
            finished = stop or run.stage_step >= stage.steps
            stopped_early = stop and run.stage_step < stage.steps
            self._report(run, stage, loss, lr, val_loss, finished, stopped_early, session)
            if finished:
                self._finish_stage(run, stage, stopped_early)
            self._end_step(run, session, None if finished else live)
            if finished:
                return

    def _start_stage(self, stage: Stage, run: _Run) -> _StageState:
        """The stage's optimiser, scheduler and early stopping, in their saved state if the
        stage is being resumed midway."""
        optimizer = stage.build_optimizer(self._params)
        live = _StageState(
            optimizer,
            stage.build_scheduler(optimizer),
            EarlyStopping(stage.patience, stage.min_delta),
        )
        if run.pending is not None:
            optimizer.load_state_dict(run.pending["optimizer"])
            if live.scheduler is not None:
                live.scheduler.load_state_dict(run.pending["scheduler"])
            live.stopper.load_state_dict(run.pending["early_stopping"])
            run.pending = None
        return live

    def _finish_stage(self, run: _Run, stage: Stage, stopped_early: bool) -> None:
        end = run.global_step
        run.stages_done.append(
            StageResult(stage.optimizer, end - run.stage_step, end, stopped_early)
        )
        run.stage_index += 1
        run.stage_step = 0

    def _end_step(self, run: _Run, session: _Session, live: _StageState | None) -> None:
        """Checkpoint if due (``live`` is None at the end of a stage) and stop on a signal."""
        complete = run.stage_index == len(self.stages)
        interrupted = session.replica.any(session.guard.received is not None) and not complete
        if live is None or interrupted or run.global_step % self.checkpoint_every == 0:
            self._save(run, session, live)
        if interrupted:
            session.replica.barrier()
            number = session.guard.received or signal.SIGTERM
            raise TrainingInterrupted(number, run.global_step, session.last_checkpoint)

    # ----------------------------------------------------------------------------- a step

    def _step(
        self, stage: Stage, optimizer: torch.optim.Optimizer, session: _Session, run: _Run
    ) -> float:
        """One optimiser step on the next batch; returns the (global mean) loss before it."""
        batch = self.sampler.next_batch() if self.sampler is not None else None
        shard, weight = session.replica.shard(batch)
        evaluations = 0

        def closure() -> torch.Tensor:
            nonlocal evaluations
            optimizer.zero_grad(set_to_none=True)
            local = session.evaluate(shard, weight)
            if evaluations == 0:
                _check_loss(local)
            local.backward()
            loss = session.replica.global_loss(local.detach())
            if evaluations == 0 and not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the loss is {loss.item()} at step {run.global_step + 1} (stage "
                    f"{run.stage_index + 1}, {stage.optimizer}); the parameters are those from "
                    "before this step. Lower the learning rate, clip gradients with "
                    "Stage(max_grad_norm=...), or check loss_fn and the data"
                )
            evaluations += 1
            if stage.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(self._params, stage.max_grad_norm)
            return loss

        return float(optimizer.step(closure))

    def _validate(self, run: _Run, session: _Session) -> float | None:
        if self.val_fn is None or run.global_step % self.val_every != 0:
            return None
        with torch.no_grad():
            value = float(self.val_fn(self.model))
        value = session.replica.broadcast(value)
        run.val_losses.append((run.global_step, value))
        return value

    def _report(
        self,
        run: _Run,
        stage: Stage,
        loss: float,
        lr: float,
        val_loss: float | None,
        finished: bool,
        stopped_early: bool,
        session: _Session,
    ) -> None:
        if not session.replica.is_main:
            return
        session.progress.step(loss, skipped=stage.steps - run.stage_step if finished else 0)
        if self.log is not None:
            self.log(
                StepRecord(
                    step=run.global_step,
                    stage_index=run.stage_index,
                    stage_count=len(self.stages),
                    optimizer=stage.optimizer,
                    stage_step=run.stage_step,
                    stage_steps=stage.steps,
                    loss=loss,
                    lr=lr,
                    val_loss=val_loss,
                    stage_finished=finished,
                    stopped_early=stopped_early,
                )
            )

    # ----------------------------------------------------------------------------- checkpoints

    def _save(self, run: _Run, session: _Session, live: _StageState | None) -> None:
        if session.store is None:
            return
        if session.replica.is_main:
            session.store.save(self._checkpoint(run, session, live))
        session.last_checkpoint = session.store.latest

    def _checkpoint(self, run: _Run, session: _Session, live: _StageState | None) -> dict:
        return {
            "name": self.name,
            "seed": self.seed,
            "stages": [stage.describe() for stage in self.stages],
            "world_size": session.replica.world_size,
            "model": self.model.state_dict(),
            "optimizer": None if live is None else live.optimizer.state_dict(),
            "scheduler": None
            if live is None or live.scheduler is None
            else live.scheduler.state_dict(),
            "early_stopping": None if live is None else live.stopper.state_dict(),
            "progress": {
                "stage_index": run.stage_index,
                "stage_step": run.stage_step,
                "global_step": run.global_step,
                "complete": run.stage_index == len(self.stages),
                "elapsed": session.elapsed(run),
            },
            "losses": torch.tensor(run.losses, dtype=torch.float64),
            "val_losses": [[step, value] for step, value in run.val_losses],
            "stages_done": [dataclasses.asdict(done) for done in run.stages_done],
            "sampler": None if self.sampler is None else self.sampler.state_dict(),
            "rng": capture_rng_state(),
        }

    def _restore(self, checkpoint: dict, path: Path) -> _Run:
        """Load the model, sampler and generators from ``checkpoint``; return its run."""
        self._check_compatible(checkpoint, path)
        try:
            self.model.load_state_dict(checkpoint["model"])
        except RuntimeError as error:
            raise ValueError(
                f"the checkpoint {str(path)!r} does not fit the model ({error}); was it written "
                "for another model?"
            ) from error
        if self.sampler is not None:
            self.sampler.load_state_dict(checkpoint["sampler"])
        restore_rng_state(checkpoint["rng"])
        progress = checkpoint["progress"]
        midway = progress["stage_step"] > 0
        return _Run(
            stage_index=progress["stage_index"],
            stage_step=progress["stage_step"],
            losses=checkpoint["losses"].tolist(),
            val_losses=[(int(step), float(value)) for step, value in checkpoint["val_losses"]],
            stages_done=[StageResult(**done) for done in checkpoint["stages_done"]],
            elapsed=float(progress["elapsed"]),
            resumed=True,
            pending={key: checkpoint[key] for key in ("optimizer", "scheduler", "early_stopping")}
            if midway
            else None,
        )

    def _check_compatible(self, checkpoint: dict, path: Path) -> None:
        stages = [stage.describe() for stage in self.stages]
        if checkpoint["stages"] != stages:
            raise ValueError(
                f"the checkpoint {str(path)!r} was written for the stages "
                f"{checkpoint['stages']}, but this trainer has {stages}; resume with the same "
                "stages, or start a new run in an empty checkpoint_dir"
            )
        if checkpoint["seed"] != self.seed:
            raise ValueError(
                f"the checkpoint {str(path)!r} was written with seed={checkpoint['seed']}, but "
                f"this trainer has seed={self.seed}; resume with the same seed"
            )
        if (checkpoint["sampler"] is None) != (self.sampler is None):
            has = "has" if checkpoint["sampler"] is not None else "has no"
            raise ValueError(
                f"the checkpoint {str(path)!r} {has} sampler state but this trainer's sampler is "
                f"{self.sampler!r}; resume with the same sampler settings"
            )

    def _result(self, run: _Run, wall_time: float) -> TrainResult:
        return TrainResult(
            losses=list(run.losses),
            stages=list(run.stages_done),
            val_losses=list(run.val_losses),
            wall_time=wall_time,
            resumed=run.resumed,
        )


def _check_loss(loss: object) -> None:
    """Raise if ``loss_fn`` returned something other than a differentiable scalar tensor."""
    if not isinstance(loss, torch.Tensor):
        raise TypeError(
            f"`loss_fn` must return a tensor, got {type(loss).__name__}; return the loss tensor "
            "itself, not loss.item()"
        )
    if loss.dim() != 0:
        raise ValueError(
            f"`loss_fn` must return a 0-dim tensor (the mean over the batch's windows), got "
            f"shape {tuple(loss.shape)}; reduce it with .mean()"
        )
    if not loss.requires_grad:
        raise ValueError(
            "`loss_fn` returned a tensor that does not depend on any trainable parameter of the "
            "model; did it detach the result, or run under torch.no_grad()?"
        )


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            "`model` has no parameter with requires_grad=True, so there is nothing to train"
        )
    return model


def _check_stages(stages: object) -> list[Stage]:
    if isinstance(stages, Stage):
        stages = [stages]
    if not isinstance(stages, Sequence) or isinstance(stages, str) or not stages:
        raise ValueError(
            f"`stages` must be a non-empty list of Stage, got {stages!r}; e.g. "
            "[Stage('adam', steps=300, lr=1e-2)]"
        )
    for index, stage in enumerate(stages):
        if not isinstance(stage, Stage):
            raise TypeError(
                f"`stages[{index}]` must be a Stage, got {stage!r}; e.g. Stage('adam', steps=100)"
            )
    return list(stages)
