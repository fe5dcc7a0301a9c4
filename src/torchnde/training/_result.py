"""What training returns and reports."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["StageResult", "StepRecord", "TrainResult"]


@dataclass(frozen=True)
class StepRecord:
    """One finished optimiser step, as given to the trainer's ``log`` callable.

    Attributes:
        step: steps completed in the whole run (1 after the first step).
        stage_index: the stage (0-based) and ``stage_count`` the number of stages.
        optimizer: the stage's optimiser name.
        stage_step: steps completed in this stage.
        stage_steps: the stage's step budget.
        loss: the training loss at the start of the step (before the update), averaged over
            the batch (and over all processes under DDP).
        lr: the learning rate the step used.
        val_loss: the validation loss after the step, if it was evaluated.
        stage_finished: this step ended its stage; ``stopped_early`` says whether early.
        skipped: the step's update was left out because its loss or gradient was not finite
            (the trainer's ``nonfinite="skip"`` policy); the parameters did not change.
    """

    step: int
    stage_index: int
    stage_count: int
    optimizer: str
    stage_step: int
    stage_steps: int
    loss: float
    lr: float
    val_loss: float | None = None
    stage_finished: bool = False
    stopped_early: bool = False
    skipped: bool = False

    def __str__(self) -> str:
        text = (
            f"step {self.step} [stage {self.stage_index + 1}/{self.stage_count} "
            f"{self.optimizer} {self.stage_step}/{self.stage_steps}] loss={self.loss:.6g} "
            f"lr={self.lr:.3g}"
        )
        if self.val_loss is not None:
            text += f" val_loss={self.val_loss:.6g}"
        if self.skipped:
            text += " (update skipped: non-finite loss or gradient)"
        if self.stopped_early:
            text += " (stopped early)"
        return text


@dataclass(frozen=True)
class StageResult:
    """One finished stage.

    Attributes:
        optimizer: its optimiser name.
        start, end: its steps are ``losses[start:end]`` of the run.
        stopped_early: whether early stopping ended it before its step budget.
    """

    optimizer: str
    start: int
    end: int
    stopped_early: bool


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :meth:`Trainer.fit`.

    Attributes:
        losses: the training loss of every step, in order (each measured before its update).
        stages: one :class:`StageResult` per stage.
        val_losses: ``(step, validation loss)`` pairs, if the trainer validates.
        wall_time: seconds spent training, summed over the sessions of a resumed run (time lost
            between the last checkpoint and a kill is not counted).
        resumed: whether this fit continued from a checkpoint.
        skipped_steps: the steps (1-based, over the whole run, resumed sessions included) whose
            update was skipped because their loss or gradient was not finite; their losses are
            still in ``losses``.
        resumed_from: the checkpoint file this fit continued from (``previous.pt`` when
            ``latest.pt`` was damaged), or None.
    """

    losses: list[float]
    stages: list[StageResult]
    val_losses: list[tuple[int, float]]
    wall_time: float
    resumed: bool
    skipped_steps: list[int] = field(default_factory=list)
    resumed_from: Path | None = None

    @property
    def num_steps(self) -> int:
        """Steps taken in all."""
        return len(self.losses)

    @property
    def final_loss(self) -> float:
        """The loss of the last step."""
        return self.losses[-1]

    @property
    def best_loss(self) -> float:
        """The smallest finite training loss (NaN if there is none)."""
        return min((loss for loss in self.losses if math.isfinite(loss)), default=math.nan)

    @property
    def best_val_loss(self) -> float | None:
        """The smallest finite validation loss, or None without validation."""
        if not self.val_losses:
            return None
        finite = [value for _, value in self.val_losses if math.isfinite(value)]
        return min(finite, default=math.nan)

    @property
    def stage_boundaries(self) -> list[tuple[int, int]]:
        """``(start, end)`` step indices of each stage."""
        return [(stage.start, stage.end) for stage in self.stages]

    @property
    def stopped_early(self) -> list[bool]:
        """Per stage, whether early stopping ended it."""
        return [stage.stopped_early for stage in self.stages]
