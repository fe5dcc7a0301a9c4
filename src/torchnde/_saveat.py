"""What a solve returns: :class:`SaveAt`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ._errors import friendly_keywords

__all__ = ["SaveAt"]


@friendly_keywords()
@dataclass(frozen=True)
class SaveAt:
    """Which values of the solution to return.

    Args:
        t0: save the initial value.
        t1: save the value at the end time.
        ts: save at these times, ``(times,)`` or ``(batch, times)`` per sample under
            ``batch_axis=0``; ordered in the direction of integration and inside ``[t0, t1]``.
            Values between steps come from the solver's own interpolant, so they carry its
            accuracy.
        steps: save after every accepted step.
        dense: keep the dense output, so :meth:`Solution.evaluate` works anywhere in ``[t0, t1]``.

    Saved values are stacked along a time axis in the order ``t0, ts, steps, t1``.
    """

    t0: bool = False
    t1: bool = False
    ts: Any = None
    steps: bool = False
    dense: bool = False
    #: ``ts`` came as Python numbers: they take the state's time dtype instead of setting it
    from_python: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("t0", "t1", "steps", "dense"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"`SaveAt({name}=...)` must be True or False")
        if self.ts is not None:
            if not isinstance(self.ts, torch.Tensor):
                object.__setattr__(self, "from_python", True)
                try:
                    object.__setattr__(self, "ts", torch.as_tensor(self.ts, dtype=torch.float64))
                except (TypeError, ValueError) as exc:
                    raise TypeError(
                        f"`SaveAt(ts=...)` must be a tensor or a sequence of times: {exc}"
                    ) from None
            if self.ts.ndim not in (1, 2):
                raise ValueError(
                    f"`SaveAt(ts=...)` must be 1-D (times,) or 2-D (batch, times), got shape "
                    f"{tuple(self.ts.shape)}"
                )
            if self.ts.shape[-1] == 0:
                raise ValueError("`SaveAt(ts=...)` is empty; give at least one time, or ts=None")
        if not (self.t0 or self.t1 or self.ts is not None or self.steps or self.dense):
            raise ValueError(
                "`SaveAt()` saves nothing; set at least one of t0, t1, ts, steps or dense, e.g. "
                "`SaveAt(t1=True)`"
            )
