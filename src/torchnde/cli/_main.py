"""The command line: parsing, dispatch, and turning every failure into one message and an exit
status (a traceback only with ``--debug``)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from ._errors import EXIT, CliError

__all__ = ["SHIPPED_CONFIGS", "build_parser", "main", "shipped_config"]

#: the configs shipped inside the package (``torchnde/cli/configs/<name>.toml``)
SHIPPED_CONFIGS = ("lotka_volterra", "pendulum", "sir")
DEMO = "lotka_volterra"


class Stopped(BaseException):
    """SIGTERM outside training (inside it the trainer checkpoints and raises
    ``TrainingInterrupted``). A ``BaseException``, like ``KeyboardInterrupt``, so that no
    ``except Exception`` swallows it."""

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


def build_parser() -> argparse.ArgumentParser:
    """The ``torchnde`` argument parser."""
    from torchnde import __version__

    parser = argparse.ArgumentParser(
        prog="torchnde",
        description="Discover missing physics from data: fit a hybrid model (known equations + "
        "neural networks), recover closed forms for the networks, forecast.",
        epilog="Exit status: 0 done, 1 the run failed, 2 bad input, 3 run folder busy or not "
        "resumable, 130/143 stopped by Ctrl-C/SIGTERM (resume with --resume).",
    )
    parser.add_argument("--version", action="version", version=f"torchnde {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="the Lotka-Volterra demo: no files needed",
        description="Generate Lotka-Volterra data, fit dx/dt = alpha*x + NN1(x, y), "
        "dy/dt = NN2(x, y) - theta*y, recover -beta*x*y and gamma*x*y, and forecast.",
    )
    _common(demo)

    run = commands.add_parser(
        "run",
        help="run a config file",
        description="Run the discovery workflow described by a TOML config file.",
    )
    run.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG",
        help=f"a TOML config file, or the name of a shipped one ({', '.join(SHIPPED_CONFIGS)})",
    )
    _common(run)

    commands.add_parser("configs", help="list the shipped configs and where they are")
    from ._reproduce import add_reproduce_parser

    add_reproduce_parser(commands, _positive_int)
    from ._pinn_parser import add_pinn_parser

    add_pinn_parser(commands, _common)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        metavar="RUN_DIR",
        help="continue a stopped run: RUN_DIR, or the newest run folder of this config's name",
    )
    parser.add_argument("--quick", action="store_true", help="a reduced run of seconds")
    parser.add_argument(
        "--out", default="runs", metavar="DIR", help="where run folders go (default: runs)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        metavar="N",
        help="torch threads per process (default 1: fastest for small systems, and what "
        "bitwise resume needs to match)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def shipped_config(name: str) -> Path:
    """The path of a shipped config (inside the installed package)."""
    return Path(str(resources.files("torchnde.cli") / "configs" / f"{name}.toml"))


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command with ``argv`` (default: ``sys.argv[1:]``) and returns its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    previous = _catch_sigterm()
    try:
        return _dispatch(parser, args)
    except CliError as error:
        if debug:
            traceback.print_exc()
        _report(error.message, everywhere=error.code == EXIT["failed"])
        return error.code
    except (Stopped, KeyboardInterrupt) as stop:
        if debug:
            traceback.print_exc()
        number = stop.signal_number if isinstance(stop, Stopped) else signal.SIGINT
        _report(f"stopped by {signal.Signals(number).name}")
        return 128 + int(number)
    except Exception as error:  # the run failed: one line, the traceback only with --debug
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (run again with --debug for the traceback)"
        _report(f"the run failed: {type(error).__name__}: {error}{hint}", everywhere=True)
        return EXIT["failed"]
    finally:
        _restore_sigterm(previous)


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if getattr(args, "threads", None) is not None:
        import torch  # imported here so that `--help` stays quick

        torch.set_num_threads(args.threads)
    if args.command == "reproduce":
        from ._reproduce import reproduce

        return reproduce(args)
    if args.command == "pinn":
        from ._pinn_parser import pinn_command

        return pinn_command(args)
    if args.command == "configs":
        for name in SHIPPED_CONFIGS:
            print(f"{name:16s} {shipped_config(name)}")
        return EXIT["ok"]
    if args.command == "run" and args.config is None:
        if args.resume and args.resume.endswith(".toml"):  # `run --resume CONFIG.toml`
            args.config, args.resume = args.resume, ""
        else:
            raise CliError(
                "`torchnde run` needs a CONFIG file, e.g. `torchnde run configs/pendulum.toml` "
                f"(shipped: {', '.join(SHIPPED_CONFIGS)}; `torchnde demo` needs none)"
            )
    try:
        from ._run import execute
    except ImportError as error:
        raise CliError(
            f"the torchnde command needs its optional dependencies ({error.name or error} is "
            "missing); install them with `pip install 'torchnde[cli]'`",
            EXIT["failed"],
        ) from error
    if args.command == "demo":
        config = shipped_config(DEMO)
        invocation = "torchnde demo"
    else:
        config = _config_path(args.config)
        invocation = f"torchnde run {args.config}"
    return execute(
        config,
        quick=args.quick,
        out=Path(args.out),
        resume=args.resume,
        progress=not args.no_progress,
        invocation=invocation,
    )


def _config_path(text: str) -> Path:
    path = Path(text)
    if not path.exists() and text in SHIPPED_CONFIGS:
        return shipped_config(text)
    return path


def rank() -> int:
    """This process's rank under ``torchrun`` (0 otherwise)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _report(message: str, *, everywhere: bool = False) -> None:
    """Prints an error on stderr: once (rank 0) for problems every rank sees alike, from every
    rank (prefixed) for failures that may be one rank's own."""
    if rank() == 0:
        print(f"torchnde: error: {message}", file=sys.stderr, flush=True)
    elif everywhere:
        print(f"torchnde [rank {rank()}]: error: {message}", file=sys.stderr, flush=True)


def _raise_stopped(number: int, frame: object) -> None:
    raise Stopped(number)


def _catch_sigterm():
    """SIGTERM raises :class:`Stopped` and Ctrl-C ``KeyboardInterrupt`` (also where the shell
    started us with SIGINT ignored, as it does for background jobs); returns the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return (
        signal.signal(signal.SIGTERM, _raise_stopped),
        signal.signal(signal.SIGINT, signal.default_int_handler),
    )


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
