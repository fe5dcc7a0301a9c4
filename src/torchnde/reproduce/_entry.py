"""What a reproduce entry declares (:class:`Entry`), what its summary returns (:class:`Outcome`,
made of :class:`Row` s), and what a run hands it (:class:`RunContext`)."""

from __future__ import annotations

import io
import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..training import atomic_write_bytes

__all__ = ["Entry", "NoProgress", "Outcome", "Row", "RunContext", "mean_spread"]

#: an entry's CLI name: lower-case words joined by single hyphens
_KEBAB = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
#: a figure's file name: letters, digits, '-', '_' and '.', ending in .png
_FIGURE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.png$")


@dataclass(frozen=True)
class Row:
    """One line of a report's table: a quantity, what the paper reports, what we measured.

    Args:
        quantity: what is compared, e.g. ``"test accuracy, ODE-Net"``.
        paper: the paper's figure as text (``"99.58 % (MNIST)"``, or ``"—"`` when it gives none).
        ours: our figure as text, with its spread and seed count, e.g. ``"97.9 ± 0.3 % (3 seeds)"``
            (:func:`mean_spread` writes it).
        note: an optional remark (a different data set, a looser setting).
    """

    quantity: str
    paper: str
    ours: str
    note: str = ""

    def __post_init__(self) -> None:
        for name in ("quantity", "paper", "ours", "note"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(
                    f"Row `{name}` must be a str, got {value!r} of type {type(value).__name__}; "
                    "format numbers first, e.g. with torchnde.reproduce.mean_spread"
                )


@dataclass(frozen=True)
class Outcome:
    """The summary of an entry's seeds: the report's table, the verdict, and what else to keep.

    Args:
        rows: the table "quantity | paper | ours".
        criterion_met: whether the entry's success criterion held.
        details: summary numbers for ``metrics.json`` (JSON-able: numbers, strings, lists,
            dicts, tensors; non-finite floats are stored as ``null``).
        figures: PNG files in the run folder to embed in the report (from
            :meth:`RunContext.save_figure` or :meth:`RunContext.figure`).
    """

    rows: list[Row]
    criterion_met: bool
    details: dict[str, Any] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not all(isinstance(row, Row) for row in self.rows):
            bad = next(row for row in self.rows if not isinstance(row, Row))
            raise TypeError(f"Outcome `rows` must hold Row objects, got {type(bad).__name__}")
        if not isinstance(self.criterion_met, bool):
            raise TypeError(
                f"Outcome `criterion_met` must be a bool, got {self.criterion_met!r}; "
                "wrap the test in bool(...)"
            )
        if not isinstance(self.details, Mapping):
            raise TypeError(f"Outcome `details` must be a dict, got {type(self.details).__name__}")


RunFunction = Callable[["RunContext", int], dict[str, float]]
SummariseFunction = Callable[[list[dict[str, float]], "RunContext"], Outcome]


@dataclass(frozen=True)
class Entry:
    """One experiment of the source material, re-run by ``torchnde reproduce NAME``.

    Args:
        name: the CLI name, kebab-case (``"ode-net-digits"``).
        title: a one-line title for the report.
        paper: the citation (authors, year, title, venue).
        paper_result: what the paper reports, as text.
        data: the data we use offline, and why it stands in for the paper's.
        criterion: the success criterion, in words.
        run: ``run(ctx, seed) -> metrics``: one seed (the runner seeds every generator with
            ``seed`` first); returns that seed's numbers and may save figures via ``ctx``.
        summarise: ``summarise(per_seed_metrics, ctx) -> Outcome``: all seeds -> table, verdict.
        seeds: how many seeds a full run uses (at least 3).
        quick_seeds: how many seeds a ``--quick`` run uses.
        extras: the modules the entry needs beyond torchnde's core (``("sklearn",)``), checked
            before the run with an error that names the ``pip install`` to run.
    """

    name: str
    title: str
    paper: str
    paper_result: str
    data: str
    criterion: str
    run: RunFunction
    summarise: SummariseFunction
    seeds: int = 3
    quick_seeds: int = 1
    extras: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _KEBAB.match(self.name):
            raise ValueError(
                f"Entry `name` must be kebab-case (lower-case words joined by '-', e.g. "
                f"'ode-net-digits'), got {self.name!r}"
            )
        for key in ("title", "paper", "paper_result", "data", "criterion"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"Entry {self.name!r}: `{key}` must be a non-empty str")
        for key in ("run", "summarise"):
            if not callable(getattr(self, key)):
                raise TypeError(f"Entry {self.name!r}: `{key}` must be callable")
        _check_count(self.name, "seeds", self.seeds, 3)
        _check_count(self.name, "quick_seeds", self.quick_seeds, 1)
        if isinstance(self.extras, str) or not all(isinstance(e, str) for e in self.extras):
            raise TypeError(
                f"Entry {self.name!r}: `extras` must be a tuple of module names, e.g. "
                f"('sklearn',), got {self.extras!r}"
            )


def _check_count(name: str, key: str, value: object, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"Entry {name!r}: `{key}` must be an int >= {least}, got {value!r}")


class NoProgress:
    """A progress bar that shows nothing (``--no-progress``, or no terminal)."""

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` (ignored)."""

    def set_postfix(self, **values: Any) -> None:
        """Show ``values`` beside the bar (ignored)."""

    def set_description(self, text: str) -> None:
        """Show ``text`` before the bar (ignored)."""

    def reset(self, total: int | None = None) -> None:
        """Start again from 0 with a new ``total`` (ignored)."""

    def write(self, text: str) -> None:
        """Print a line without breaking the bar."""
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Remove the bar (ignored)."""


class RunContext:
    """What a run hands an entry's ``run`` and ``summarise``.

    Attributes:
        quick: a ``--quick`` run: tiny settings that finish in seconds.
        out: the run folder.
        progress: a tqdm-like bar (``update``, ``set_postfix``, ``set_description``,
            ``reset(total)``), or a no-op when progress is off.
        threads: torch threads during the run (default 1: small models run fastest so), in each
            process.
        jobs: how many seeds run at once, each in its own process (default 1).
        seed: the seed being run (``None`` in ``summarise``).
    """

    def __init__(
        self,
        *,
        quick: bool,
        out: Path,
        progress: Any | None = None,
        threads: int = 1,
        jobs: int = 1,
    ):
        self.quick = bool(quick)
        self.out = Path(out)
        self.progress = progress if progress is not None else NoProgress()
        self.threads = threads
        self.jobs = jobs
        self.seed: int | None = None
        self.messages: list[str] = []

    def figure(self, name: str) -> Path:
        """The path of a PNG figure ``name`` (e.g. ``"loss-seed0.png"``) in the run folder.

        Prefer :meth:`save_figure`, which writes the file atomically (a killed run never leaves a
        truncated PNG).
        """
        if not isinstance(name, str) or not _FIGURE.match(name) or name in (".png",):
            raise ValueError(
                f"`name` must be a plain file name ending in .png (letters, digits, '-', '_', "
                f"'.'), e.g. 'loss-seed0.png', got {name!r}"
            )
        return self.out / name

    def save_figure(self, fig: Any, name: str, *, dpi: int = 110) -> Path:
        """Save a matplotlib figure as ``name`` in the run folder, atomically, and close it.

        Returns:
            The file's path (put it in :attr:`Outcome.figures` to embed it in the report).
        """
        path = self.figure(name)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
        atomic_write_bytes(path, buffer.getvalue())
        import matplotlib.pyplot as plt

        plt.close(fig)
        return path

    def log(self, message: str) -> None:
        """Print ``message`` (without breaking the progress bar) and keep it for ``log.txt``."""
        text = str(message)
        self.messages.append(text)
        self.progress.write(text)


def mean_spread(
    values: Iterable[float], *, digits: int = 3, unit: str = "", scale: float = 1.0
) -> str:
    """``"mean ± std unit (n seeds)"``: the text of one number over seeds.

    The spread is the sample standard deviation (``n - 1`` in the denominator); one value is
    written without a spread. Non-finite values are counted and shown as such.

    Args:
        values: one number per seed.
        digits: significant digits of the mean (the spread gets as many decimals).
        unit: appended after the numbers (``"%"``, ``"s"``, ``"MiB"``).
        scale: multiply every value first (``100`` for a fraction shown in percent).

    Returns:
        e.g. ``"97.9 ± 0.3 % (3 seeds)"``.

    Example:
        >>> mean_spread([0.978, 0.981, 0.975], scale=100, unit="%")
        '97.8 ± 0.3 % (3 seeds)'
    """
    xs = [float(v) * scale for v in values]
    n = len(xs)
    if n == 0:
        return "— (no seeds)"
    seeds = f"({n} seed{'s' if n != 1 else ''})"
    suffix = f" {unit}" if unit else ""
    if not all(math.isfinite(x) for x in xs):
        bad = sum(not math.isfinite(x) for x in xs)
        return f"non-finite in {bad} of {n} {seeds}"
    mean = sum(xs) / n
    form = _format_of(mean, digits)
    if n == 1:
        return f"{mean:{form}}{suffix} {seeds}"
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return f"{mean:{form}} ± {std:{form}}{suffix} {seeds}"


def _format_of(value: float, digits: int) -> str:
    """Fixed point with ``digits`` significant digits, scientific for very small or large."""
    if value == 0:
        return f".{digits - 1}f"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude < -3 or magnitude >= 6:
        return f".{digits - 1}e"
    return f".{max(0, digits - 1 - magnitude)}f"
