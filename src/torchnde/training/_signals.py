"""Stopping cleanly on SIGTERM or Ctrl-C (SIGINT): the current step finishes, a checkpoint is
written, and :class:`TrainingInterrupted` is raised."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["SignalGuard", "TrainingInterrupted"]

#: the signals that ask a run to stop
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal (SIGTERM, or SIGINT from Ctrl-C).

    Attributes:
        signal_number: the signal received.
        step: steps completed when training stopped (None if it stopped at once on a second
            signal, in the middle of a step).
        checkpoint: the checkpoint to resume from with ``fit(resume=True)``, or None if the
            trainer has no checkpoint folder.
    """

    def __init__(self, signal_number: int, step: int | None, checkpoint: Path | None):
        self.signal_number = signal_number
        self.step = step
        self.checkpoint = checkpoint
        name = signal.Signals(signal_number).name
        if step is None:
            where = f"at once by a second {name}, in the middle of a step"
        else:
            where = f"by {name} after step {step}"
        if checkpoint is None:
            saved = "no checkpoint was written (the trainer has no checkpoint_dir)"
        else:
            saved = f"resume from {str(checkpoint)!r} with fit(resume=True)"
        super().__init__(f"training stopped {where}; {saved}")


class SignalGuard:
    """Within ``with SignalGuard() as guard:``, SIGINT and SIGTERM only set
    ``guard.received``; a second one raises :class:`TrainingInterrupted` at once. The previous
    handlers are restored on exit. Outside the main thread (where Python cannot install
    handlers) it does nothing.

    Args:
        last_checkpoint: called to name the checkpoint in the error of a second signal.
    """

    def __init__(self, last_checkpoint: Any = lambda: None):
        self.received: int | None = None
        self._last_checkpoint = last_checkpoint
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise TrainingInterrupted(number, None, self._last_checkpoint())
        self.received = number
