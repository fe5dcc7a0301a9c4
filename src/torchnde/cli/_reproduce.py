"""``torchnde reproduce``: list the entries, or run one into a run folder."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ._errors import EXIT, CliError

__all__ = ["add_reproduce_parser", "reproduce"]


def add_reproduce_parser(commands: argparse._SubParsersAction, positive_int) -> None:
    """Adds the ``reproduce`` subcommand to ``commands``."""
    parser = commands.add_parser(
        "reproduce",
        help="re-run an experiment of the source material (no NAME: list them)",
        description="Re-run an experiment of the source material over several seeds and write "
        "a run folder: report.md (the paper's figure beside ours, and whether the success "
        "criterion held), metrics.json and figures. Without NAME, list the experiments.",
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="the entry to run")
    parser.add_argument("--quick", action="store_true", help="tiny settings that run in seconds")
    parser.add_argument(
        "--out", default="runs", metavar="DIR", help="where run folders go (default: runs)"
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=None,
        metavar="N",
        help="how many seeds (default: the entry's own, 1 with --quick)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        metavar="N",
        help="torch threads (default 1: small models run fastest so)",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        metavar="N",
        help="run N seeds at once, each in its own process with --threads threads (default 1); "
        "the metrics are the same as a serial run's",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def reproduce(args: argparse.Namespace) -> int:
    """Lists the entries (no name) or runs one; returns the exit status."""
    from .. import reproduce as rp

    if args.name is None:
        return _list(rp.entries())
    try:
        entry = rp.get(args.name)
    except ValueError as error:
        raise CliError(str(error)) from None
    try:
        rp.check_extras(entry)
    except ImportError as error:
        raise CliError(str(error), EXIT["failed"]) from None
    result = rp.run_entry(
        entry,
        quick=args.quick,
        seeds=args.seeds,
        out=Path(args.out),
        progress=not args.no_progress,
        threads=args.threads,
        jobs=args.jobs,
        command=_command(args),
    )
    verdict = "HELD" if result.outcome.criterion_met else "NOT HELD"
    print(f"criterion {verdict}: {entry.criterion}")
    print(f"report: {result.run_dir / 'report.md'}")
    return EXIT["ok"]


def _list(found: dict) -> int:
    if not found:
        print("no reproduce entries are installed")
        return EXIT["ok"]
    width = max(len(name) for name in found)
    for name, entry in found.items():
        print(f"{name:{width}s}  {entry.title}")
    print(
        "\nrun one with `torchnde reproduce NAME [--quick] [--seeds N] [--jobs N] [--out DIR]`",
        file=sys.stderr,
    )
    return EXIT["ok"]


def _command(args: argparse.Namespace) -> str:
    words = ["torchnde", "reproduce", args.name]
    if args.quick:
        words.append("--quick")
    if args.seeds is not None:
        words += ["--seeds", str(args.seeds)]
    if args.out != "runs":
        words += ["--out", args.out]
    if args.threads != 1:
        words += ["--threads", str(args.threads)]
    if args.jobs != 1:
        words += ["--jobs", str(args.jobs)]
    return shlex.join(words)
