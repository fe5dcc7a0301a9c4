"""The ``torchnde`` command: discover missing physics from data.

Usage::

    torchnde demo [--quick] [--out DIR] [--resume [RUN_DIR]] [--no-progress] [--debug]
    torchnde run CONFIG.toml [--quick] [--out DIR] [--resume [RUN_DIR]] [--no-progress] [--debug]
    torchnde configs
    torchrun --nproc-per-node N -m torchnde.cli run CONFIG.toml

``demo`` runs the shipped Lotka–Volterra config; ``run`` runs a config file (or the name of a
shipped one: ``lotka_volterra``, ``pendulum``, ``sir``). Each run writes a folder
``runs/<name>-<YYYYmmdd-HHMMSS>/`` with the resolved config, ``metrics.json``, figures,
checkpoints and ``report.md``.

Exit status: 0 done; 1 the run failed; 2 bad command line, config, equations or data; 3 the run
folder is in use or cannot be resumed; 130 / 143 stopped by Ctrl-C / SIGTERM (a checkpoint was
written: resume with ``--resume``).

Needs the ``cli`` extra: ``pip install 'torchnde[cli]'``.
"""

from __future__ import annotations

from ._main import build_parser, main

__all__ = ["build_parser", "main"]
