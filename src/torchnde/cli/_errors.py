"""The command's errors: each is one message naming the file, the key or line, and the fix,
with the exit status the command ends with."""

from __future__ import annotations

from pathlib import Path

__all__ = ["EXIT", "CliError", "ConfigError"]

#: exit statuses of the command
EXIT = {
    "ok": 0,
    "failed": 1,  # the run itself failed (an unexpected error)
    "input": 2,  # bad command line, config, equations or data
    "busy": 3,  # the run folder is in use, or cannot be resumed
}


class CliError(Exception):
    """An error the command reports as one message, without a traceback.

    Args:
        message: what is wrong and how to fix it.
        code: the exit status.
    """

    def __init__(self, message: str, code: int = EXIT["input"]):
        super().__init__(message)
        self.message = message
        self.code = code


class ConfigError(CliError):
    """A problem in a config file, at a key (dotted path) and, when it can be found, a line.

    Args:
        path: the config file.
        problem: what is wrong and the fix.
        key: the dotted path of the key (``"training.adam_steps"``), if any.
        line: the line of the key in the file, if known.
    """

    def __init__(
        self, path: Path, problem: str, *, key: str | None = None, line: int | None = None
    ):
        where = str(path) if line is None else f"{path}, line {line}"
        subject = f"`{key}`: " if key else ""
        super().__init__(f"{where}: {subject}{problem}")
        self.path = path
        self.key = key
        self.line = line
        self.problem = problem
