"""Atomic file writes: whoever reads the file, and whenever the writer dies, they see either the
old content or the new one, never a mixture or a truncated file.

The recipe (the one POSIX file systems guarantee): write a temporary file in the same folder, flush
it and ``fsync`` it, ``os.replace`` it onto the target (an atomic rename), then ``fsync`` the folder
so the rename itself survives a power cut.

A write that fails on the way (a full disk, a quota, an I/O error) removes its temporary file and
raises an :class:`OSError` with the original ``errno`` and a message that names the file and says
the previous content is intact, e.g. ``no space left on device while writing runs/a/latest.pt``,
also where torch's zip writer would report only ``[enforce fail at inline_container.cc] unexpected
pos``.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["atomic_save", "atomic_write_bytes", "atomic_write_text"]

#: the mode of a new file (an existing target keeps its own)
_NEW_FILE_MODE = 0o644


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj, path)``, atomically: a crash (even ``kill -9``) mid-write leaves the
    previous file at ``path`` intact.

    Args:
        obj: anything ``torch.save`` accepts (state dicts, tensors, dicts of them).
        path: the target file; its folder must exist.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    return atomic_write(path, lambda file: torch.save(obj, file))


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_save`).

    Args:
        path: the target file; its folder must exist.
        text: the new content.
        encoding: how ``text`` is encoded.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if not isinstance(text, str):
        raise TypeError(
            f"`text` must be a str, got {type(text).__name__}; for bytes use atomic_write_bytes"
        )
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_save`).

    Args:
        path: the target file; its folder must exist.
        data: the new content.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    return atomic_write(path, lambda file: file.write(bytes(data)))


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[IO[bytes]], Any],
    *,
    keep_previous: Path | None = None,
    what: str = "file",
) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path`` and move it onto ``path`` once it
    is complete and on disk.

    Args:
        path: the target file; its folder must exist.
        write: writes the content into the binary file object it is given.
        keep_previous: if given and ``path`` exists, the old ``path`` is kept under this name
            (in the same folder) before the new one replaces it. ``path`` stays present
            throughout where the file system supports hard links.
        what: what the file is, for error messages (``"checkpoint"``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: writing failed (errno ``ENOSPC``: the device is full); the message names the
            file and says that its previous content is intact. The temporary file is removed.
    """
    target = _check_target(path)
    existed = target.exists()
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    recorder = None
    try:
        with _open_temporary(descriptor) as file:
            os.fchmod(file.fileno(), _mode_for(target))
            recorder = _Recorder(file)
            write(recorder)
            file.flush()
            os.fsync(file.fileno())
        if keep_previous is not None:
            _keep_copy(target, keep_previous)
        os.replace(temporary, target)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        cause = _os_error(error, recorder)
        if cause is None:
            raise
        raise _write_failed(cause, target, what, existed) from error
    fsync_directory(target.parent)
    return target


def _open_temporary(descriptor: int) -> IO[bytes]:
    """The temporary file as a binary file object (a seam for tests that fill the disk)."""
    return os.fdopen(descriptor, "wb")


class _Recorder:
    """The temporary file as ``write`` sees it: remembers the OSError a write raised, which
    torch's zip writer replaces by a RuntimeError (``unexpected pos``)."""

    def __init__(self, file: IO[bytes]):
        self._file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._file.write(data)
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def _os_error(error: BaseException, recorder: _Recorder | None) -> OSError | None:
    """The OSError behind a failed write: the error itself, the one a write raised, or one in
    the chain of causes; None if the failure was not the file system's."""
    if isinstance(error, OSError):
        return error
    if recorder is not None and recorder.error is not None:
        return recorder.error
    seen: BaseException | None = error.__cause__ or error.__context__
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


#: errors that mean the device has no room for the file
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _write_failed(cause: OSError, target: Path, what: str, existed: bool) -> OSError:
    if cause.errno in _FULL:
        reason = "no space left on device" if cause.errno == errno.ENOSPC else "disk quota exceeded"
        fix = "free space on that device or write elsewhere"
    else:
        reason = (cause.strerror or str(cause)).lower()
        fix = "check the device"
    kept = (
        f"the previous {what} {target} is intact"
        if existed
        else f"no {what} was written at {target}"
    )
    return OSError(
        cause.errno,
        f"{reason} while writing {target}; {kept} (the partial file was removed); {fix}",
    )


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_write` to ``target`` left behind.

    Only call this while no other process writes ``target``.

    Returns:
        The files deleted.
    """
    stale = sorted(target.parent.glob(f".{target.name}.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def fsync_directory(directory: Path) -> None:
    """Flush a folder's entries (renames, new files) to disk; a no-op where folders cannot be
    opened (Windows) or synced."""
    if os.name == "nt":
        return
    descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems refuse fsync on a folder; the rename is still atomic
        pass
    finally:
        os.close(descriptor)


def _check_target(path: str | os.PathLike[str]) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"`path` must be a str or a Path, got {type(path).__name__}")
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(
            f"`path`={str(target)!r} is a folder; give a file inside it, e.g. {str(target / 'file')!r}"
        )
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"the folder of `path`={str(target)!r} does not exist; create it first with "
            f"Path({str(target.parent)!r}).mkdir(parents=True, exist_ok=True)"
        )
    return target


def _mode_for(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        return _NEW_FILE_MODE


def _keep_copy(target: Path, previous: Path) -> None:
    """Make ``previous`` the current content of ``target`` (if any), leaving ``target`` in place
    when a hard link is possible."""
    if not target.exists():
        return
    link = previous.with_name(f".{previous.name}.{os.getpid()}.link.tmp")
    link.unlink(missing_ok=True)
    try:
        os.link(target, link)
    except OSError:  # no hard links here: move it; a reader then falls back to `previous`
        os.replace(target, previous)
        return
    os.replace(link, previous)
