"""``python -m torchnde.cli`` (also under ``torchrun -m torchnde.cli``)."""

from torchnde.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
