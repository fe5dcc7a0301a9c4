"""The checkpoint folder: ``latest.pt`` and the one before it, ``previous.pt``, each written
atomically, so a process killed at any moment (even in the middle of writing) leaves a complete
checkpoint behind."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from ._atomic import atomic_write, remove_stale_temporaries

__all__ = ["CHECKPOINT_FORMAT", "CheckpointStore", "load_checkpoint"]

#: written into every checkpoint and checked on loading
CHECKPOINT_FORMAT = "torchnde.training.checkpoint/1"

LATEST = "latest.pt"
PREVIOUS = "previous.pt"


class CheckpointStore:
    """Saves and loads the checkpoints of one training run in ``directory``.

    Args:
        directory: the checkpoint folder (created on :meth:`prepare`).
    """

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        self.latest = self.directory / LATEST
        self.previous = self.directory / PREVIOUS

    def prepare(self) -> None:
        """Create the folder and delete temporary files left by a killed write."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in (self.latest, self.previous):
            remove_stale_temporaries(name)

    def exists(self) -> bool:
        """Whether a checkpoint has been written here."""
        return self.latest.exists() or self.previous.exists()

    def save(self, state: dict[str, Any]) -> Path:
        """Write ``state`` as the new ``latest.pt``; the old one becomes ``previous.pt``.

        Returns:
            The path of the new checkpoint.
        """
        state = {"format": CHECKPOINT_FORMAT, **state}
        return atomic_write(
            self.latest, lambda file: torch.save(state, file), keep_previous=self.previous
        )

    def load(self) -> tuple[dict[str, Any], Path] | None:
        """The newest checkpoint that loads, with its path; None if there is none.

        ``latest.pt`` is tried first, then ``previous.pt``.

        Raises:
            RuntimeError: checkpoint files exist but none can be read.
        """
        problems = []
        for path in (self.latest, self.previous):
            if not path.exists():
                continue
            try:
                return load_checkpoint(path), path
            except (RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
                problems.append(f"{path}: {error}")
        if problems:
            raise RuntimeError(
                "no checkpoint in "
                f"{str(self.directory)!r} can be read ({'; '.join(problems)}); "
                "start a new run in another folder"
            )
        return None


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :class:`~torchnde.training.Trainer`.

    Args:
        path: a checkpoint file, or a checkpoint folder (its ``latest.pt``, else ``previous.pt``).

    Returns:
        The checkpoint: a dict with the keys ``model`` (the state dict), ``optimizer``,
        ``scheduler``, ``progress``, ``losses``, ``rng``, ``sampler`` and more. Tensors are on
        the CPU. Loading uses ``torch.load(weights_only=True)``: no code in the file runs.
    """
    path = Path(path)
    if path.is_dir():
        found = CheckpointStore(path).load()
        if found is None:
            raise FileNotFoundError(
                f"no checkpoint ({LATEST} or {PREVIOUS}) in the folder {str(path)!r}"
            )
        return found[0]
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a torchnde training checkpoint (expected format "
            f"{CHECKPOINT_FORMAT!r})"
        )
    return checkpoint
