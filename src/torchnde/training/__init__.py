"""Training for torchnde models: optimiser schedules, mini-batches of trajectory windows,
early stopping, a progress bar, reproducible seeds, atomic checkpoints with bitwise-exact resume,
clean stops on SIGTERM/Ctrl-C, a lock on a run folder, and data-parallel training under
``torchrun``. Nothing non-finite is ever applied or written: every gradient is checked after every
backward pass (``Trainer(nonfinite="skip" | "raise")``), and every checkpoint carries a SHA-256
checksum of its content that is verified on loading.

Generic: it knows nothing of hybrid models or equation discovery; the model is any
``nn.Module`` and the loss any ``loss_fn(model, batch_indices)``.

Example:
    >>> from torchnde.training import Trainer, Stage, WindowSampler, RunLock
    >>> with RunLock(run_dir):
    ...     trainer = Trainer(model, loss_fn,
    ...                       [Stage("adam", steps=300, lr=1e-2), Stage("lbfgs", steps=200, lr=1.0)],
    ...                       sampler=WindowSampler(143, batch_size=32, seed=0),
    ...                       checkpoint_dir=run_dir / "checkpoints", checkpoint_every=50, seed=0)
    ...     result = trainer.fit(resume=True)
"""

from ._atomic import atomic_save, atomic_write_bytes, atomic_write_text
from ._checkpoint import CheckpointError, CheckpointWarning, load_checkpoint
from ._distributed import is_main_process
from ._lock import RunLock
from ._nonfinite import NONFINITE_POLICIES, NonFiniteError, NonFiniteStepWarning
from ._result import StageResult, StepRecord, TrainResult
from ._rng import seed_everything
from ._sampler import WindowSampler
from ._signals import TrainingInterrupted
from ._stage import (
    OPTIMIZERS,
    SCHEDULES,
    AbstractSchedule,
    CosineSchedule,
    ExponentialSchedule,
    Stage,
    StepSchedule,
)
from ._trainer import Trainer
from ._windows import MultipleShooting, TrajectoryWindows

__all__ = [
    "NONFINITE_POLICIES",
    "OPTIMIZERS",
    "SCHEDULES",
    "AbstractSchedule",
    "CheckpointError",
    "CheckpointWarning",
    "CosineSchedule",
    "ExponentialSchedule",
    "MultipleShooting",
    "NonFiniteError",
    "NonFiniteStepWarning",
    "RunLock",
    "Stage",
    "StageResult",
    "StepRecord",
    "StepSchedule",
    "TrainResult",
    "Trainer",
    "TrainingInterrupted",
    "TrajectoryWindows",
    "WindowSampler",
    "atomic_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "is_main_process",
    "load_checkpoint",
    "seed_everything",
]
