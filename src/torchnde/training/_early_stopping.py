"""Early stopping within one stage."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Tracks the best monitored loss of a stage and says when to stop.

    A value improves if it is below ``best - min_delta``; the stage stops once ``patience``
    values in a row have not improved. A NaN never improves.

    Args:
        patience: non-improving values in a row that end the stage; None: never.
        min_delta: the smallest decrease that counts as an improvement.
    """

    def __init__(self, patience: int | None, min_delta: float):
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.bad = 0

    def update(self, value: float) -> bool:
        """Record ``value``; True if the stage should stop now."""
        if value < self.best - self.min_delta:
            self.best = value
            self.bad = 0
        else:
            self.bad += 1
        return self.patience is not None and self.bad >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """The best value and the count of non-improving values."""
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`."""
        self.best = float(state["best"])
        self.bad = int(state["bad"])
