"""TOML in and out: reading with ``tomllib`` (errors with the file and line), writing the small
subset a resolved config needs, and finding the line of a key for error messages."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from ._errors import ConfigError

__all__ = ["dumps", "find_line", "read"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_LINE = re.compile(r"at line (\d+)")


def read(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed TOML file and its text.

    Raises:
        ConfigError: the file is missing or unreadable, or not valid TOML (with the line).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "no such config file; check the path") from None
    except IsADirectoryError:
        raise ConfigError(path, "is a folder; give the path of a .toml file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(path, f"cannot be read ({error}); it must be a UTF-8 text file") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        match = _LINE.search(message)
        line = int(match.group(1)) if match else getattr(error, "lineno", None)
        reason = _LINE.sub("", message).replace("()", "").strip(" .")
        raise ConfigError(
            path,
            f"invalid TOML: {reason}. Fix the syntax there: strings need quotes "
            '(name = "lv"), tables are [section] headers, lists are [1, 2]',
            line=line,
        ) from None


def dumps(data: Mapping[str, Any], header: str = "") -> str:
    """``data`` (nested dicts of str, bool, int, float and lists of them) as TOML text; keys
    whose value is ``None`` are left out (TOML has no null)."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    if lines:
        lines.append("")
    _table(lines, data, ())
    return "\n".join(lines).strip("\n") + "\n"


def _table(lines: list[str], data: Mapping[str, Any], path: tuple[str, ...]) -> None:
    scalars = {k: v for k, v in data.items() if v is not None and not _is_table(v)}
    tables = {k: v for k, v in data.items() if _is_table(v)}
    if path and (scalars or not tables):
        if lines and lines[-1] != "":
            lines.append("")
        lines.append(f"[{'.'.join(_key(p) for p in path)}]")
    for key, value in scalars.items():
        lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in tables.items():
        _table(lines, value, (*path, key))


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):  # only empty ones reach here
        return "{}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as TOML")


# -- finding a key's line -------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGNMENT = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)
_INLINE_KEY = re.compile(r"""[{,]\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))\s*=""")


def _split_key(text: str) -> tuple[str, ...]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def find_line(text: str, key: Sequence[str]) -> int | None:
    """The line (1-based) where the dotted key ``key`` is set in the TOML ``text``, or failing
    that the line of its closest enclosing table or inline table; None if nothing matches.

    Best effort (multi-line strings and arrays can mislead it): it is only used to point error
    messages at a line.
    """
    key = tuple(str(k) for k in key)
    best: tuple[int, int] | None = None  # (matched length, line)
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        paths = []
        if header:
            table = _split_key(header.group(1))
            paths.append(table)
        else:
            assignment = _ASSIGNMENT.match(line)
            if not assignment:
                continue
            full = table + _split_key(assignment.group(1))
            paths.append(full)
            rest = line[assignment.end() :]
            paths += [(*full, *_split_key(m.group(1))) for m in _INLINE_KEY.finditer(rest)]
        for path in paths:
            if path and key[: len(path)] == path and (best is None or len(path) > best[0]):
                best = (len(path), number)
    return None if best is None else best[1]
