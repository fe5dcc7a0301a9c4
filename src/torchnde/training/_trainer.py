"""The training loop: stages of optimisers over mini-batches of windows, with atomic
checkpoints, bitwise-exact resumption, clean stops on signals, early stopping, a progress bar and
data-parallel training."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
import warnings
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
from ._nonfinite import (
    GRADIENT_HINT,
    LOSS_HINT,
    NonFiniteError,
    NonFiniteStepWarning,
    backticked,
    check_policy,
    nonfinite_names,
    step_span,
)
from ._progress import Progress, require_tqdm
from ._result import StageResult, StepRecord, TrainResult
from ._rng import capture_rng_state, check_seed, restore_rng_state, seed_everything
from ._sampler import WindowSampler
from ._signals import SignalGuard, TrainingInterrupted
from ._stage import LBFGS_DEFAULTS, Stage

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
    resumed_from: Path | None = None
    pending: dict[str, Any] | None = None  # optimiser etc. states of a stage resumed midway
    skipped: list[int] = field(default_factory=list)  # steps whose update was skipped
    consecutive_skips: int = 0  # the current run of skipped steps

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
    last_saved_step: int | None = None

    def checkpoint_note(self) -> str:
        """Where the last (intact, finite) checkpoint is, for error messages."""
        if self.store is None:
            return "no checkpoint is written (the trainer has no checkpoint_dir)"
        if self.last_checkpoint is None:
            return "no checkpoint has been written in this session yet"
        return (
            f"the last checkpoint, {self.last_checkpoint} (step {self.last_saved_step}), is intact"
        )

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
        nonfinite: what a step whose loss or gradient holds a NaN or an infinity does. Every
            gradient is checked after every backward pass (one fused reduction), not only the
            loss, because a derivative can be NaN where the loss is finite (``sqrt(y**2)`` at
            ``y = 0``). ``"skip"`` (the default): the update is left out (the parameters and
            the optimiser state stay as they were; the step still counts towards the stage's
            budget and its schedule), a :class:`NonFiniteStepWarning` names the step and the
            parameters, the step is recorded in :attr:`TrainResult.skipped_steps` and
            :attr:`StepRecord.skipped`, and ``max_consecutive_skips`` skipped steps in a row,
            or a stage in which every step was skipped, stop the run with a
            :class:`NonFiniteError`. One bad mini-batch (a window whose solve meets a
            singular derivative) thus costs one step, not the run, while a persistent fault
            stops within a few steps. ``"raise"``: the first such step raises
            :class:`NonFiniteError`. For L-BFGS the check applies to the first evaluation of
            each step; a line-search trial point with a non-finite loss or gradient is reported
            to the line search as a loss far above the step's start, so it backs off to the
            finite side. Either way the parameters
            after a finished step are checked too, and a model with a non-finite parameter is
            never written as a checkpoint.
        max_consecutive_skips: under ``nonfinite="skip"``, how many skipped steps in a row stop
            the run.
        fuse_lbfgs: run an L-BFGS stage's iterations in one ``optimizer.step`` call per stretch
            up to the next checkpoint boundary (at most ``checkpoint_every`` iterations) instead
            of one call per iteration, which saves the per-call work (torch's L-BFGS evaluates
            the loss again at the start of every call, and the trainer checks and reports
            every call). Each iteration still counts as one step: the step counts, losses
            (each the loss at the iteration's start), :class:`StepRecord` s (logged after the
            stretch), checkpoints and resumption are those of one iteration per step, and the
            iterates are the same unless a line search runs out of evaluations (the stretch's
            call gets ``max_eval`` times its iterations, so one line search may use more than
            ``max_eval``). Every evaluation is still checked for non-finite values (a
            non-finite start stops or skips as usual; a non-finite trial point is reported to
            the line search as far worse). Applies only where nothing has to happen between
            iterations: no sampler, no scheduler, no early stopping (``patience``), no
            ``val_fn``, one process, and ``max_iter`` 1 (the default); other stages run one
            iteration per step as without it. A SIGTERM/SIGINT is answered at the end of the
            stretch.

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
        nonfinite: str = "skip",
        max_consecutive_skips: int = 5,
        fuse_lbfgs: bool = False,
    ):
        self.model = _check_model(model)
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self._names = [name for name, _ in named]
        self._params = [p for _, p in named]
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
        self.nonfinite = check_policy(nonfinite)
        self.max_consecutive_skips = check_count(max_consecutive_skips, "max_consecutive_skips")
        if not isinstance(fuse_lbfgs, bool):
            raise TypeError(f"`fuse_lbfgs` must be True or False, got {fuse_lbfgs!r}")
        self.fuse_lbfgs = fuse_lbfgs

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
            NonFiniteError: (a FloatingPointError) a non-finite loss or gradient under
                ``nonfinite="raise"``, too many skipped steps under ``"skip"``, parameters that
                an update made non-finite, or a model with a non-finite parameter about to be
                checkpointed. Nothing non-finite was written; the message names the step, the
                stage, the parameters and the last checkpoint.
            ValueError: a parameter is not finite before training starts.
            OSError: a checkpoint could not be written (e.g. the disk is full, errno ENOSPC);
                the previous checkpoint is intact.
        """
        replica = setup_replica(self.distributed, self._params[0].device)
        self._check_sharing(replica)
        store = self._prepare_store(replica)
        run = self._begin(resume, store)
        self._check_initial_parameters(run)
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
        if run.resumed:  # the checkpoint resumed from is the last one written
            session.last_checkpoint, session.last_saved_step = run.resumed_from, run.global_step
        try:
            with session.guard:
                while run.stage_index < len(self.stages):
                    self._run_stage(run, session)
        finally:
            session.progress.close()
        return self._result(run, session.elapsed(run))

    def _check_initial_parameters(self, run: _Run) -> None:
        bad = nonfinite_names(self._names, self._params)
        if bad:
            source = f"the checkpoint {run.resumed_from}" if run.resumed else "the model"
            raise ValueError(
                f"{_parameters(bad)} of {source} {'is' if len(bad) == 1 else 'are'} not finite "
                "before training starts; initialise them with finite values (check the model's "
                "construction, or load another checkpoint)"
            )

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
            found = store.load(stacklevel=3)  # the warning points at the caller of fit()
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
        if self.fuses(stage) and not session.replica.distributed:
            self._run_fused_stage(stage, live, run, session)
            return
        while True:
            lr = float(live.optimizer.param_groups[0]["lr"])
            loss, skipped = self._step(stage, live.optimizer, session, run)
            if live.scheduler is not None:
                _step_scheduler(live.scheduler, skipped)
            run.losses.append(loss)
            run.stage_step += 1
            val_loss = self._validate(run, session)
            monitored = loss if self.val_fn is None else val_loss
            stop = monitored is not None and live.stopper.update(monitored)
            finished = stop or run.stage_step >= stage.steps
            stopped_early = stop and run.stage_step < stage.steps
            self._report(run, stage, loss, lr, val_loss, finished, stopped_early, session, skipped)
            if self._close_step(run, stage, live, session, finished, stopped_early):
                return

    def fuses(self, stage: Stage) -> bool:
        """Whether ``stage`` runs its L-BFGS iterations in stretches (see ``fuse_lbfgs``) when
        trained in one process."""
        return (
            self.fuse_lbfgs
            and stage.optimizer == "lbfgs"
            and {**LBFGS_DEFAULTS, **stage.options}["max_iter"] == 1
            and stage.scheduler is None
            and stage.patience is None
            and self.val_fn is None
            and self.sampler is None
        )

    def _run_fused_stage(
        self, stage: Stage, live: _StageState, run: _Run, session: _Session
    ) -> None:
        """An L-BFGS stage in stretches of iterations up to each checkpoint boundary, every
        iteration recorded as one step."""
        group = live.optimizer.param_groups[0]
        lr = float(group["lr"])
        while True:
            count = min(
                stage.steps - run.stage_step,
                self.checkpoint_every - run.global_step % self.checkpoint_every,
            )
            losses, skipped = self._stretch(stage, live.optimizer, session, run, count)
            for k, loss in enumerate(losses):
                run.losses.append(loss)
                run.stage_step += 1
                live.stopper.update(loss)  # no patience: it only keeps the best value
                finished = run.stage_step >= stage.steps
                last = k == len(losses) - 1
                self._report(run, stage, loss, lr, None, finished, False, session, skipped and last)
            if self._close_step(run, stage, live, session, finished, False):
                return

    def _close_step(
        self,
        run: _Run,
        stage: Stage,
        live: _StageState,
        session: _Session,
        finished: bool,
        stopped_early: bool,
    ) -> bool:
        """End a step (or a fused stretch): close the stage if it is ``finished``, then the
        step's checkpoint and bookkeeping. Returns ``finished``."""
        if finished:
            self._check_stage_updated(run, stage, session)
            self._finish_stage(run, stage, stopped_early)
        self._end_step(run, session, None if finished else live)
        return finished

    def _stretch(
        self,
        stage: Stage,
        optimizer: torch.optim.Optimizer,
        session: _Session,
        run: _Run,
        count: int,
    ) -> tuple[list[float], bool]:
        """One ``optimizer.step`` call of up to ``count`` L-BFGS iterations; returns the loss at
        the start of each iteration it took (one value when it took none: it stopped at once on
        its tolerances, or its start was non-finite) and whether that one was skipped.

        torch's L-BFGS keeps its iteration counter ``n_iter`` in the state of the first
        parameter and raises it at the start of each iteration, before the line search; so the
        evaluations of iteration ``i`` are those made while the counter reads ``start + i``. The
        strong-Wolfe line search returns the lowest of the values it kept (the start's included),
        so an iteration ends at the lowest value seen since it began: that is the next
        iteration's start loss."""
        group = optimizer.param_groups[0]
        state = optimizer.state[group["params"][0]]
        begin = int(state.get("n_iter", 0))
        seen: list[tuple[int, float]] = []
        saved = group["max_iter"], group["max_eval"]
        group["max_iter"], group["max_eval"] = count, saved[1] * count
        try:
            loss, skipped = self._step(
                stage, optimizer, session, run, lambda value: seen.append((state["n_iter"], value))
            )
        finally:
            group["max_iter"], group["max_eval"] = saved
        taken = int(state.get("n_iter", 0)) - begin
        if skipped or taken == 0:
            return [loss], skipped
        losses = [loss]
        for iteration in range(1, taken):
            trials = [value for n, value in seen if n == begin + iteration]
            losses.append(min([losses[-1], *trials]))
        return losses, False

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
        self,
        stage: Stage,
        optimizer: torch.optim.Optimizer,
        session: _Session,
        run: _Run,
        evaluated: Callable[[float], Any] | None = None,
    ) -> tuple[float, bool]:
        """One optimiser step on the next batch; returns the (global mean) loss before it and
        whether its update was skipped (a non-finite loss or gradient, see ``nonfinite``).
        ``evaluated`` is called with the value handed to the optimiser at every evaluation."""
        batch = self.sampler.next_batch() if self.sampler is not None else None
        shard, weight = session.replica.shard(batch)
        evaluations = 0
        start_loss = 0.0  # the loss at the start of the step (its first evaluation)

        def closure() -> torch.Tensor:
            nonlocal evaluations, start_loss
            first = evaluations == 0
            evaluations += 1
            optimizer.zero_grad(set_to_none=True)
            local = session.evaluate(shard, weight)
            if first:
                _check_loss(local)
            local.backward()
            loss = session.replica.global_loss(local.detach())
            # one fused check of every gradient and the loss (the empty name is the loss)
            bad = nonfinite_names([*self._names, ""], [*(p.grad for p in self._params), loss])
            if bad:
                if first:
                    raise _NonFiniteStep(float(loss), [name for name in bad if name])
                # an L-BFGS line-search trial point: reported as far worse than the start (a
                # finite value: an infinite one turns the line search's cubic fit into NaN)
                optimizer.zero_grad(set_to_none=True)
                worse = torch.full_like(loss, start_loss + 1e6 * max(1.0, abs(start_loss)))
                if evaluated is not None:
                    evaluated(float(worse))
                return worse
            if first:
                start_loss = float(loss)
            if evaluated is not None:
                evaluated(start_loss if first else float(loss))
            if stage.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(self._params, stage.max_grad_norm)
            return loss

        try:
            loss = float(optimizer.step(closure))
        except _NonFiniteStep as found:
            optimizer.zero_grad(set_to_none=True)
            self._skip(found, stage, run, session)
            return found.loss, True
        self._check_updated(stage, run, session)
        run.consecutive_skips = 0
        return loss, False

    def _skip(self, found: _NonFiniteStep, stage: Stage, run: _Run, session: _Session) -> None:
        """Record a skipped step; raise if the policy or the run of skips says stop."""
        step = run.global_step + 1
        where = f"step {step} (stage {run.stage_index + 1}, {stage.optimizer})"
        if math.isfinite(found.loss):
            what, hint = "gradient", GRADIENT_HINT
            problem = (
                f"the gradient of {backticked(found.parameters)} is not finite (NaN or inf) at "
                f"{where}, although the loss, {found.loss:.6g}, is"
            )
        else:
            what, hint = "loss", LOSS_HINT
            problem = f"the loss is {found.loss} at {where}"
        run.skipped.append(step)
        run.consecutive_skips += 1

        def stop(message: str) -> NonFiniteError:
            return NonFiniteError(
                f"{message}; {session.checkpoint_note()}. {hint}",
                step=step,
                stage_index=run.stage_index,
                optimizer=stage.optimizer,
                what=what,
                parameters=found.parameters,
                skipped=run.skipped,
                checkpoint=session.last_checkpoint,
            )

        if self.nonfinite == "raise":
            raise stop(
                f"{problem}. The update was not applied: the parameters are those from before "
                "this step (with nonfinite='skip' the trainer would leave out such steps and go "
                "on)"
            )
        streak = run.skipped[-run.consecutive_skips :]
        if len(streak) >= self.max_consecutive_skips:
            raise stop(
                f"training stopped: {len(streak)} steps in a row ({step_span(streak)}) were "
                f"skipped (max_consecutive_skips={self.max_consecutive_skips}); at the last, "
                f"{problem}. The parameters are those from before them"
            )
        warnings.warn(
            f"{problem}: the update was skipped and the parameters left as they were "
            f"({len(streak)} skipped in a row; {self.max_consecutive_skips} stop the run). "
            + hint.split(". ")[0],
            NonFiniteStepWarning,
            stacklevel=5,  # the caller of fit()
        )

    def _check_updated(self, stage: Stage, run: _Run, session: _Session) -> None:
        """Raise if the update just applied made a parameter non-finite (finite loss and
        gradient, but the step overflowed)."""
        bad = nonfinite_names(self._names, self._params)
        if not bad:
            return
        step = run.global_step + 1
        raise NonFiniteError(
            f"{_parameters(bad)} became non-finite in step {step} (stage {run.stage_index + 1}, "
            f"{stage.optimizer}) although the loss and its gradient were finite: the update "
            "overflowed. Lower the learning rate (Stage(lr=...)) or clip the gradient "
            f"(Stage(max_grad_norm=...)); nothing of this step was written, "
            f"{session.checkpoint_note()}",
            step=step,
            stage_index=run.stage_index,
            optimizer=stage.optimizer,
            what="parameters",
            parameters=bad,
            skipped=run.skipped,
            checkpoint=session.last_checkpoint,
        )

    def _check_stage_updated(self, run: _Run, stage: Stage, session: _Session) -> None:
        """A stage in which every step was skipped is an error, not a silent success."""
        start = run.global_step - run.stage_step
        skipped = [step for step in run.skipped if step > start]
        if len(skipped) < run.stage_step:
            return
        raise NonFiniteError(
            f"no update was applied in stage {run.stage_index + 1} ({stage.optimizer}): all its "
            f"{run.stage_step} steps ({step_span(skipped)}) were skipped for a non-finite loss "
            f"or gradient (see the warnings); {session.checkpoint_note()}. {GRADIENT_HINT}",
            step=run.global_step,
            stage_index=run.stage_index,
            optimizer=stage.optimizer,
            what="gradient",
            skipped=run.skipped,
            checkpoint=session.last_checkpoint,
        )

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
        skipped: bool,
    ) -> None:
        if not session.replica.is_main:
            return
        session.progress.step(
            loss,
            skipped=stage.steps - run.stage_step if finished else 0,
            nonfinite_skips=len(run.skipped),
        )
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
                    skipped=skipped,
                )
            )

    # ----------------------------------------------------------------------------- checkpoints

    def _save(self, run: _Run, session: _Session, live: _StageState | None) -> None:
        if session.store is None:
            return
        self._check_savable(run, session)  # on every rank, so that all of them stop together
        if session.replica.is_main:
            try:
                session.store.save(self._checkpoint(run, session, live))
            except OSError as error:
                raise _save_failed(error, run, session) from error
        session.last_checkpoint = session.store.latest
        session.last_saved_step = run.global_step

    def _check_savable(self, run: _Run, session: _Session) -> None:
        """Refuse to write a model with a non-finite parameter."""
        bad = nonfinite_names(self._names, self._params)
        if not bad:
            return
        stage = self.stages[min(run.stage_index, len(self.stages) - 1)]
        raise NonFiniteError(
            f"refusing to write a checkpoint after step {run.global_step}: {_parameters(bad)} "
            f"{'is' if len(bad) == 1 else 'are'} not finite although every update was checked, "
            "so something changed them between steps (a `log` or `val_fn` callable, a hook, "
            f"another thread); {session.checkpoint_note()} and was kept",
            step=run.global_step,
            stage_index=run.stage_index,
            optimizer=stage.optimizer,
            what="parameters",
            parameters=bad,
            skipped=run.skipped,
            checkpoint=session.last_checkpoint,
        )

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
            "skipped": list(run.skipped),
            "consecutive_skips": run.consecutive_skips,
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
            resumed_from=path,
            skipped=[int(step) for step in checkpoint.get("skipped", [])],
            consecutive_skips=int(checkpoint.get("consecutive_skips", 0)),
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
            skipped_steps=list(run.skipped),
            resumed_from=run.resumed_from,
        )


class _NonFiniteStep(Exception):
    """Raised out of ``optimizer.step`` by the closure when the step's first evaluation has a
    non-finite loss or gradient, before the optimiser has changed anything."""

    def __init__(self, loss: float, parameters: list[str]):
        super().__init__(loss, parameters)
        self.loss = loss
        self.parameters = parameters


#: torch's warning when a scheduler steps before its optimiser ever has (a skipped first step)
_SCHEDULER_ORDER = r"Detected call of `lr_scheduler\.step\(\)` before `optimizer\.step\(\)`"


def _step_scheduler(scheduler: torch.optim.lr_scheduler.LRScheduler, skipped: bool) -> None:
    """Advance the schedule; a skipped step still counts (the schedule follows the stage's
    steps), without torch's warning about the order of the calls."""
    if not skipped:
        scheduler.step()
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SCHEDULER_ORDER, category=UserWarning)
        scheduler.step()


def _parameters(names: list[str]) -> str:
    """``the parameter `w``` or ``the parameters `a`, `b```."""
    return f"the parameter{'s' if len(names) > 1 else ''} {backticked(names)}"


def _save_failed(error: OSError, run: _Run, session: _Session) -> OSError:
    """The error of a checkpoint that could not be written, with the step to resume from."""
    if session.last_checkpoint is None:
        resume = "no earlier checkpoint of this session exists"
    else:
        resume = (
            f"fit(resume=True) continues from step {session.last_saved_step} once the problem "
            "is fixed"
        )
    message = f"{error.strerror or error} (the checkpoint of step {run.global_step}); {resume}"
    return OSError(error.errno, message)


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
