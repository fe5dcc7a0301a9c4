"""``torchnde reproduce``: the source material's experiments, re-run, each with the paper's
figure beside ours and whether the success criterion held.

An experiment is one small module in ``torchnde/reproduce/entries/`` defining ``ENTRY``, an
:class:`Entry`; see ``docs/reproduce.md`` for how to add one.

Example:
    >>> from torchnde import reproduce
    >>> list(reproduce.entries())                       # the registered names
    >>> result = reproduce.run_entry("adjoint-check", quick=True, out="runs")
    >>> result.outcome.criterion_met, result.run_dir / "report.md"
"""

# The subpackage ``entries`` first: importing a subpackage sets it as an attribute of its parent,
# which would shadow the function ``entries()`` if that happened after the function's import.
from . import entries as _entries_package  # noqa: F401
from ._entry import Entry, NoProgress, Outcome, Row, RunContext, mean_spread
from ._registry import entries, get
from ._runner import (
    RunResult,
    check_extras,
    is_complete_png,
    json_ready,
    run_entry,
    verify_run_folder,
)

__all__ = [
    "Entry",
    "NoProgress",
    "Outcome",
    "Row",
    "RunContext",
    "RunResult",
    "check_extras",
    "entries",
    "get",
    "is_complete_png",
    "json_ready",
    "mean_spread",
    "run_entry",
    "verify_run_folder",
]
