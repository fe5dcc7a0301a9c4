"""An exclusive lock on a run folder, so two processes never train into the same one."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["RunLock"]

LOCK_NAME = ".lock"


class RunLock:
    """Holds an exclusive ``flock`` on ``run_dir/.lock`` while in use; the file records the
    holder's PID. The operating system releases the lock when the holder exits, however it dies,
    so a stale lock cannot outlive its process.

    Use it as a context manager (or call :meth:`acquire` and :meth:`release`). Under
    ``torchrun``, take it in rank 0 only.

    Args:
        run_dir: the run folder (created if missing).

    Raises:
        RuntimeError: on entry, if another process (or another RunLock in this one) holds the
            folder; the message names the folder and the holder's PID.

    Example:
        >>> with RunLock("runs/lv-20250101-120000"):
        ...     trainer.fit(resume=True)
    """

    def __init__(self, run_dir: str | os.PathLike[str]):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._descriptor: int | None = None

    @property
    def locked(self) -> bool:
        """Whether this object holds the lock."""
        return self._descriptor is not None

    def acquire(self) -> None:
        """Take the lock without waiting (RuntimeError if it is held)."""
        import fcntl  # POSIX only; imported here so that importing torchnde works everywhere

        if self.locked:
            raise RuntimeError(f"this RunLock already holds {str(self.run_dir)!r}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(descriptor)
            os.close(descriptor)
            raise RuntimeError(
                f"the run folder {str(self.run_dir)!r} is in use by {holder} (lock file "
                f"{str(self.path)!r}); wait for it to finish or stop it, or use another folder"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        self._descriptor = descriptor

    def release(self) -> None:
        """Give the lock up (a no-op if not held). The lock file stays: deleting it could let
        two processes lock two different files of the same name."""
        import fcntl

        if self._descriptor is None:
            return
        descriptor, self._descriptor = self._descriptor, None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
        finally:
            os.close(descriptor)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunLock({str(self.run_dir)!r}, locked={self.locked})"


def _read_pid(descriptor: int) -> str:
    """``"process 1234"`` from the lock file, or ``"another process"`` if it names none."""
    text = os.pread(descriptor, 64, 0).decode(errors="replace").strip()
    return f"process {text}" if text.isdigit() else "another process"
