"""The checkpoint folder: ``latest.pt`` and the one before it, ``previous.pt``, each written
atomically, so a process killed at any moment (even in the middle of writing) leaves a complete
checkpoint behind.

Every checkpoint carries the SHA-256 checksum of its content (every tensor's bytes, dtype and
shape, every number, string and key, in order), stored in the file under ``"sha256"`` and checked
on loading: ``torch.load`` itself does not notice flipped bytes in tensor data, so without it a
damaged file would resume training from wrong parameters without a word. A damaged ``latest.pt``
is reported by name and the fall-back to ``previous.pt`` is announced with a
:class:`CheckpointWarning`, never silent.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ._atomic import atomic_write, remove_stale_temporaries

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "CheckpointStore",
    "CheckpointWarning",
    "content_digest",
    "load_checkpoint",
]

#: written into every checkpoint and checked on loading (format 2 carries a checksum)
CHECKPOINT_FORMAT = "torchnde.training.checkpoint/2"
#: checkpoints of torchnde versions before checksums: accepted with a warning
UNCHECKED_FORMAT = "torchnde.training.checkpoint/1"

LATEST = "latest.pt"
PREVIOUS = "previous.pt"
#: a damaged ``latest.pt`` is moved aside to this name (for inspection) by the next save
DAMAGED_SUFFIX = ".damaged"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, is not a torchnde checkpoint, or whose content
    does not match its checksum (it was damaged after it was written)."""


class CheckpointWarning(UserWarning):
    """A checkpoint could not be used and an older one was (``latest.pt`` damaged or missing,
    ``previous.pt`` loaded), or a checkpoint without a checksum was loaded unchecked."""


class CheckpointStore:
    """Saves and loads the checkpoints of one training run in ``directory``.

    Args:
        directory: the checkpoint folder (created on :meth:`prepare`).
    """

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        self.latest = self.directory / LATEST
        self.previous = self.directory / PREVIOUS
        self.damaged: list[Path] = []  # files :meth:`load` found damaged

    def prepare(self) -> None:
        """Create the folder and delete temporary files left by a killed write."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in (self.latest, self.previous):
            remove_stale_temporaries(name)

    def exists(self) -> bool:
        """Whether a checkpoint has been written here."""
        return self.latest.exists() or self.previous.exists()

    def save(self, state: dict[str, Any]) -> Path:
        """Write ``state``, with its format and checksum, as the new ``latest.pt``; the old one
        becomes ``previous.pt`` (unless :meth:`load` found it damaged: then it is moved aside to
        ``latest.pt.damaged`` and ``previous.pt``, the checkpoint resumed from, stays).

        Returns:
            The path of the new checkpoint.

        Raises:
            OSError: the file could not be written (errno ``ENOSPC``: the disk is full); the
                previous checkpoint is intact.
        """
        state = {"format": CHECKPOINT_FORMAT, **state}
        state["sha256"] = content_digest(state)
        if self.latest in self.damaged:
            os.replace(self.latest, self.latest.with_name(LATEST + DAMAGED_SUFFIX))
            self.damaged.remove(self.latest)
        return atomic_write(
            self.latest,
            lambda file: torch.save(state, file),
            keep_previous=self.previous,
            what="checkpoint",
        )

    def load(self, *, stacklevel: int = 1) -> tuple[dict[str, Any], Path] | None:
        """The newest checkpoint that loads and matches its checksum, with its path; None if
        there is none.

        ``latest.pt`` is tried first, then ``previous.pt``; falling back is announced with a
        :class:`CheckpointWarning` that names the file that could not be used and why (shown
        at the caller ``stacklevel`` frames above this method's caller).

        Raises:
            RuntimeError: checkpoint files exist but none can be used.
        """
        problems = []
        for path in (self.latest, self.previous):
            if not path.exists():
                if path == self.latest and self.previous.exists():
                    problems.append(f"{path} is missing")
                continue
            try:
                checkpoint = load_checkpoint(path)
            except CheckpointError as error:
                problems.append(str(error))
                self.damaged.append(path)
                continue
            if problems:
                _announce_fallback(problems, path, checkpoint, stacklevel + 2)
            return checkpoint, path
        if problems:
            raise RuntimeError(
                f"no checkpoint in {str(self.directory)!r} can be read ({'; '.join(problems)}); "
                "start a new run in another folder"
            )
        return None


def _announce_fallback(
    problems: list[str], path: Path, checkpoint: dict[str, Any], stacklevel: int
) -> None:
    step = checkpoint.get("progress", {}).get("global_step", "?")
    warnings.warn(
        f"{'; '.join(problems)}; falling back to the checkpoint before it, {path} (step "
        f"{step}): the steps after it will be redone",
        CheckpointWarning,
        stacklevel=stacklevel,
    )


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :class:`~torchnde.training.Trainer` and verify its checksum.

    Args:
        path: a checkpoint file, or a checkpoint folder (its ``latest.pt``, else, announced by a
            :class:`CheckpointWarning`, ``previous.pt``).

    Returns:
        The checkpoint: a dict with the keys ``model`` (the state dict), ``optimizer``,
        ``scheduler``, ``progress``, ``losses``, ``skipped``, ``rng``, ``sampler``, ``sha256``
        and more. Tensors are on the CPU. Loading uses ``torch.load(weights_only=True)``: no code
        in the file runs.

    Raises:
        CheckpointError: (a ValueError) the file cannot be read, is not a torchnde checkpoint,
            or its content does not match its SHA-256 checksum.
        FileNotFoundError: there is no such file (or no checkpoint in the folder).

    Checkpoints written before checksums existed (format ``.../1``) are loaded unchecked, with a
    :class:`CheckpointWarning`: refusing them would strand every run in progress across an
    upgrade, and they are no less trustworthy than they were when written; the next checkpoint
    of a resumed run carries a checksum.
    """
    path = Path(path)
    if path.is_dir():
        found = CheckpointStore(path).load(stacklevel=2)
        if found is None:
            raise FileNotFoundError(
                f"no checkpoint ({LATEST} or {PREVIOUS}) in the folder {str(path)!r}"
            )
        return found[0]
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file fails in many ways: zip, pickle, EOF, ...
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({_reason(error)}); it is damaged or not a "
            "checkpoint"
        ) from error
    _verify(checkpoint, path)
    return checkpoint


def _reason(error: Exception) -> str:
    """The first line of a loading error, short (torch's unpickler explains weights_only)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else "no details"
    if "Weights only load failed" in text:
        text = "its data is not a checkpoint's"
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(error).__name__}: {text}"


def _verify(checkpoint: Any, path: Path) -> None:
    """Raise :class:`CheckpointError` unless ``checkpoint`` is a torchnde checkpoint whose
    content matches its checksum."""
    found = checkpoint.get("format") if isinstance(checkpoint, dict) else None
    if found == UNCHECKED_FORMAT:
        warnings.warn(
            f"checkpoint {path} was written by an older torchnde without a checksum, so whether "
            "it is intact cannot be verified; it is used as it is (the next checkpoint of this "
            "run will carry one)",
            CheckpointWarning,
            stacklevel=3,
        )
        return
    if found != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a torchnde training checkpoint (expected format "
            f"{CHECKPOINT_FORMAT!r}, found {found!r})"
        )
    stored = checkpoint.get("sha256")
    actual = content_digest(checkpoint)
    if stored != actual:
        raise CheckpointError(
            f"checkpoint {path} is damaged: its content does not match the SHA-256 checksum "
            f"written with it (stored {str(stored)[:16]}..., content {actual[:16]}...); the file "
            "changed after it was written (a disk, copy or transfer error)"
        )


def content_digest(state: Mapping[str, Any]) -> str:
    """The SHA-256 checksum (hex) of a checkpoint's content, its ``"sha256"`` entry left out.

    It covers every key, tensor (dtype, shape and bytes), number, string and nesting, in order,
    so it is the same for the dict that was saved and the dict ``torch.load`` gives back, and
    differs if any byte of tensor data or any value changed.
    """
    digest = hashlib.sha256()
    _feed(digest, {key: value for key, value in state.items() if key != "sha256"})
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if tensor.layout != torch.strided:
            tensor = tensor.to_dense()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        flat = tensor.cpu().contiguous().reshape(-1)
        if flat.numel():
            digest.update(flat.view(torch.uint8).numpy().data)
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)}".encode())
        for key, item in value.items():
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, list | tuple):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, bool) or value is None:
        digest.update(f"C{value}".encode())
    elif isinstance(value, int):
        digest.update(f"I{value};".encode())
    elif isinstance(value, float):
        digest.update(f"F{value.hex()};".encode())
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        digest.update(f"S{len(data)};".encode() + data)
    elif isinstance(value, bytes | bytearray):
        digest.update(f"B{len(value)};".encode() + bytes(value))
    else:  # what weights_only loading allows besides (dtype, device, Size): exact reprs
        digest.update(f"R{type(value).__name__}:{value!r};".encode())
