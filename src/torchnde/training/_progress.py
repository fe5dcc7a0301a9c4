"""The progress bar (tqdm): stage, step and loss."""

from __future__ import annotations

from typing import Any

__all__ = ["Progress", "require_tqdm"]


def require_tqdm() -> Any:
    """The ``tqdm`` class, or an ImportError that says how to install it."""
    try:
        from tqdm import tqdm
    except ImportError as error:
        raise ImportError(
            "the training progress bar needs tqdm: `pip install 'torchnde[train]'` (or "
            "`pip install tqdm`), or pass progress=False"
        ) from error
    return tqdm


class Progress:
    """A bar over all steps of all stages, on stderr; silent when stderr is not a terminal.

    Args:
        enabled: False: do nothing at all.
        total: steps in all stages (an upper bound: early stopping skips the rest of a stage).
        initial: steps already done (a resumed run).
        name: shown before the stage.
    """

    def __init__(self, enabled: bool, total: int, initial: int, name: str):
        self.name = name
        self._bar = None
        if enabled:
            tqdm = require_tqdm()
            # disable=None: tqdm itself turns the bar off when stderr is not a terminal
            self._bar = tqdm(total=total, initial=initial, disable=None, dynamic_ncols=True)

    def stage(self, index: int, count: int, optimizer: str) -> None:
        """Show that stage ``index`` (0-based) of ``count`` is running."""
        if self._bar is not None:
            self._bar.set_description(f"{self.name} [{index + 1}/{count} {optimizer}]")

    def step(self, loss: float, skipped: int = 0, nonfinite_skips: int = 0) -> None:
        """Advance by one step (plus ``skipped`` steps an early stop left out) and show
        ``loss`` and, once there are any, the count of updates skipped for a non-finite loss or
        gradient."""
        if self._bar is not None:
            postfix = {"loss": f"{loss:.4e}"}
            if nonfinite_skips:
                postfix["skipped"] = str(nonfinite_skips)
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(1 + skipped)

    def close(self) -> None:
        """Remove the bar from the screen's live area."""
        if self._bar is not None:
            self._bar.close()
