"""``python -m torchnde``: the ``torchnde`` command (``demo``, ``run CONFIG``, ``configs``, …)."""

from torchnde.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
