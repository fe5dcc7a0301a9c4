"""Observations from a CSV file: a time column and one column per state, irregular times and
missing values allowed, every problem reported with the file, the line or column, and the fix."""

from __future__ import annotations

import csv
import difflib
import itertools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ._spec import Observations

__all__ = ["CSVError", "load_csv"]

#: cell texts read as a missing value (case-insensitive), besides the empty cell
MISSING = frozenset({"", "nan", "na", "n/a", "null", "none", "-"})


class CSVError(ValueError):
    """A CSV file that cannot be read as observations.

    Attributes:
        path: the file.
        line: the line of the problem (1-based, the header is line 1), when there is one.
        column: the column of the problem, when there is one.
    """

    def __init__(
        self, path: Path, problem: str, *, line: int | None = None, column: str | None = None
    ):
        self.path = path
        self.line = line
        self.column = column
        where = str(path) if line is None else f"{path}, line {line}"
        super().__init__(f"{where}: {problem}")


def load_csv(
    path: str | os.PathLike[str],
    time_column: str = "t",
    columns: Mapping[str, str] | Sequence[str] | None = None,
    *,
    dtype: torch.dtype = torch.float64,
) -> Observations:
    """Reads observations from a CSV file with a header row.

    The file holds a time column and one column per state (other columns are ignored). Times may
    be irregular but must be strictly increasing. A missing measurement is an empty cell or
    ``nan``/``NA``/``null``/``-``; it becomes NaN in ``ys`` (the loss skips it). Lines that are
    blank or start with ``#`` are skipped.

    Args:
        path: the CSV file.
        time_column: the header of the time column.
        columns: state name -> header of its column, or a sequence of state names whose headers
            are the names themselves. ``None``: every column but the time column, in file order.
        dtype: the dtype of ``ts`` and ``ys``.

    Returns:
        :class:`Observations` with ``ts`` ``(T,)``, ``ys`` ``(T, states)`` and the states in the
        order of ``columns``.

    Raises:
        CSVError: (a ``ValueError``) naming the file, the line or column and the fix: the file is
            missing or empty, a column is missing (the nearest header is suggested), a cell is
            not a number or is infinite, a time is missing, times go backwards or repeat, a state
            column has no value at all, or there are fewer than two rows.

    Example:
        >>> obs = load_csv("lynx_hare.csv", "year", {"x": "hare", "y": "lynx"})
    """
    path = Path(path)
    header_line, header, rows = _read(path)
    mapping = _columns(path, header_line, header, time_column, columns)
    index = {name: header.index(name) for name in [time_column, *mapping.values()]}
    times, values = [], []
    for line, row in rows:
        if len(row) != len(header):
            raise CSVError(
                path,
                f"{len(row)} fields where the header has {len(header)}; every row needs one "
                "value per header column (leave a cell empty for a missing value)",
                line=line,
            )
        time = _number(path, line, time_column, row[index[time_column]])
        if math.isnan(time):
            raise CSVError(
                path,
                f"the time ({time_column!r}) is missing; every row needs a time: fill it in "
                "or delete the row",
                line=line,
                column=time_column,
            )
        times.append((line, time))
        values.append([_number(path, line, c, row[index[c]]) for c in mapping.values()])
    _check_times(path, time_column, times)
    ys = torch.tensor(values, dtype=dtype).reshape(len(values), len(mapping))
    for j, (state, column) in enumerate(mapping.items()):
        if torch.isnan(ys[:, j]).all():
            named = column if column == state else f"{column!r} (state {state!r})"
            raise CSVError(
                path,
                f"column {named} has no value in any row; give it at least one measurement, or "
                "drop the state",
                column=column,
            )
    ts = torch.tensor([t for _, t in times], dtype=dtype)
    return Observations(ts=ts, ys=ys, states=tuple(mapping))


def _read(path: Path) -> tuple[int, list[str], list[tuple[int, list[str]]]]:
    """The header's line, the header and the data rows with their line numbers (blank and ``#``
    lines skipped)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CSVError(
            path,
            "no such file; check the path (relative paths in a config are "
            "relative to the config file)",
        ) from None
    except IsADirectoryError:
        raise CSVError(path, "is a folder, not a CSV file; name the file inside it") from None
    except UnicodeDecodeError as error:
        raise CSVError(path, f"is not UTF-8 text ({error.reason}); save it as UTF-8 CSV") from None
    header: list[str] | None = None
    header_line = 1
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(text.splitlines())
    for row in reader:
        line = reader.line_num
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        cells = [cell.strip() for cell in row]
        if header is None:
            header, header_line = cells, line
            _check_header(path, line, header)
        else:
            rows.append((line, cells))
    if header is None:
        raise CSVError(path, "the file is empty; it needs a header row (e.g. `t,x,y`) and data")
    if len(rows) < 2:
        raise CSVError(path, f"only {len(rows)} data row(s); observations need at least two times")
    return header_line, header, rows


def _check_header(path: Path, line: int, header: list[str]) -> None:
    for j, name in enumerate(header):
        if not name:
            raise CSVError(path, f"header column {j + 1} has no name; name every column", line=line)
        try:
            float(name)
        except ValueError:
            continue
        raise CSVError(
            path,
            f"the first row ({', '.join(header)}) looks like data, not a header; add a header "
            "row naming the columns, e.g. `t,x,y`",
            line=line,
        )
    seen = set()
    for name in header:
        if name in seen:
            raise CSVError(
                path, f"two columns are named {name!r}; give each column its own name", line=line
            )
        seen.add(name)


def _columns(
    path: Path,
    header_line: int,
    header: list[str],
    time_column: str,
    columns: Mapping[str, str] | Sequence[str] | None,
) -> dict[str, str]:
    """state -> column header, every header checked to exist."""
    if columns is None:
        mapping = {name: name for name in header if name != time_column}
    elif isinstance(columns, Mapping):
        mapping = dict(columns)
    elif isinstance(columns, str):
        raise TypeError(f"`columns` must be a mapping or a list of names, got the str {columns!r}")
    else:
        mapping = {name: name for name in columns}
    wanted = [("time column", time_column, None)]
    wanted += [("column", column, state) for state, column in mapping.items()]
    for kind, name, state in wanted:
        if name in header:
            continue
        close = difflib.get_close_matches(name, header, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        owner = "" if state is None or state == name else f" (for state {state!r})"
        raise CSVError(
            path,
            f"no {kind} {name!r}{owner}; the header has {', '.join(map(repr, header))}. {hint}"
            "Rename the column in the file or point the config at the right header.",
            line=header_line,
            column=name,
        )
    if not mapping:
        raise CSVError(path, f"no state columns besides the time column {time_column!r}")
    return mapping


def _number(path: Path, line: int, column: str, cell: str) -> float:
    if cell.lower() in MISSING:
        return math.nan
    try:
        value = float(cell)
    except ValueError:
        raise CSVError(
            path,
            f"column {column!r} holds {cell!r}, which is not a number; write a number, or leave "
            "the cell empty for a missing value",
            line=line,
            column=column,
        ) from None
    if math.isinf(value):
        raise CSVError(
            path,
            f"column {column!r} holds {cell!r}; values must be finite (leave the cell empty for "
            "a missing value)",
            line=line,
            column=column,
        )
    return value


def _check_times(path: Path, time_column: str, times: list[tuple[int, float]]) -> None:
    for (previous_line, previous), (line, time) in itertools.pairwise(times):
        if time == previous:
            raise CSVError(
                path,
                f"time {time:g} appears twice (lines {previous_line} and {line}); times must be "
                "distinct: merge the two rows (e.g. average them) or drop one",
                line=line,
                column=time_column,
            )
        if time < previous:
            raise CSVError(
                path,
                f"time {time:g} comes after {previous:g} (line {previous_line}); times must "
                "increase: sort the rows by the time column",
                line=line,
                column=time_column,
            )
