"""The ``torchnde pinn`` subcommand's parser and dispatch (light: the PINN machinery is imported
only when the command runs)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ._errors import EXIT, CliError

__all__ = ["add_pinn_parser", "pinn_command"]

SHIPPED = ("convection", "reaction", "reaction_diffusion", "burgers")


def add_pinn_parser(commands, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``torchnde pinn [CONFIG]`` with the shared options (``--quick``, ``--resume``,
    ``--out``, ``--no-progress``, ``--threads``, ``--debug``)."""
    parser = commands.add_parser(
        "pinn",
        help="train a physics-informed network from a config (no CONFIG: list the shipped ones)",
        description="Train a physics-informed network on a shipped PDE (convection, reaction, "
        "reaction_diffusion, burgers, heat) with plain, curriculum, time-marching or causal "
        "training; the run folder gets a per-phase report, metrics, figures and checkpoints.",
    )
    parser.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG",
        help=f"a TOML config file, or a shipped one's name ({', '.join(SHIPPED)})",
    )
    common(parser)


def pinn_command(args: argparse.Namespace) -> int:
    """Run ``torchnde pinn``."""
    try:
        from ._pinn import execute, shipped_pinn_config
    except ImportError as error:
        raise CliError(
            f"`torchnde pinn` needs its optional dependencies ({error.name or error} is "
            "missing); install them with `pip install 'torchnde[cli]'`",
            EXIT["failed"],
        ) from error
    if args.config is None:
        if args.resume and args.resume.endswith(".toml"):  # `pinn --resume CONFIG.toml`
            args.config, args.resume = args.resume, ""
        else:
            print("shipped PINN configs (run one with `torchnde pinn NAME`):")
            for name in SHIPPED:
                print(f"  {name:20s} {shipped_pinn_config(name)}")
            return EXIT["ok"]
    path = Path(args.config)
    if not path.exists() and args.config in SHIPPED:
        path = shipped_pinn_config(args.config)
    return execute(
        path,
        quick=args.quick,
        out=Path(args.out),
        resume=args.resume,
        progress=not args.no_progress,
        invocation=f"torchnde pinn {args.config}",
    )
