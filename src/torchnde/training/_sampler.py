"""Mini-batches of trajectory windows."""

from __future__ import annotations

from typing import Any

import torch

from ._checks import check_count
from ._rng import check_seed

__all__ = ["WindowSampler"]


class WindowSampler:
    """Yields the indices of the trajectory windows each training step uses.

    With ``batch_size=None`` every step gets all windows, ``arange(num_windows)``. Otherwise each
    epoch is a fresh random permutation of the windows (drawn from the sampler's own
    ``torch.Generator``, so the order does not depend on, or disturb, any other random numbers),
    cut into consecutive batches; every window appears exactly once per epoch. Its state is part
    of every training checkpoint, so a resumed run draws the same batches.

    Args:
        num_windows: how many windows there are (indices ``0 .. num_windows - 1``).
        batch_size: windows per step, or None for all of them.
        seed: seeds the sampler's generator.
        shuffle: draw a random permutation each epoch (False: the windows in order).
        drop_last: skip the last, smaller batch of an epoch when ``batch_size`` does not divide
            ``num_windows``.

    Example:
        >>> sampler = WindowSampler(10, batch_size=4, seed=0)
        >>> batch = sampler.next_batch()  # a LongTensor of 4 window indices
    """

    def __init__(
        self,
        num_windows: int,
        batch_size: int | None = None,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
    ):
        self.num_windows = check_count(num_windows, "num_windows")
        if batch_size is not None:
            check_count(batch_size, "batch_size")
            if batch_size > num_windows:
                raise ValueError(
                    f"`batch_size`={batch_size} exceeds `num_windows`={num_windows}; use "
                    f"batch_size=None to take all windows each step"
                )
        self.batch_size = batch_size
        self.seed = check_seed(seed)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.reset()

    def reset(self) -> None:
        """Start again from the seed, as if newly built."""
        self._generator = torch.Generator().manual_seed(self.seed)
        self._order: torch.Tensor | None = None
        self._position = 0
        self.epoch = 0

    @property
    def smallest_batch(self) -> int:
        """The fewest windows any batch holds."""
        if self.batch_size is None:
            return self.num_windows
        remainder = self.num_windows % self.batch_size
        return self.batch_size if remainder == 0 or self.drop_last else remainder

    @property
    def batches_per_epoch(self) -> int:
        """Steps per pass over all windows."""
        if self.batch_size is None:
            return 1
        full, remainder = divmod(self.num_windows, self.batch_size)
        return full + (1 if remainder and not self.drop_last else 0)

    def next_batch(self) -> torch.Tensor:
        """The next batch: a 1-dim int64 tensor of distinct window indices."""
        if self.batch_size is None:
            return torch.arange(self.num_windows)
        if self._order is None or self._position + self._least_left() > self.num_windows:
            self._order = self._new_order()
            self._position = 0
            self.epoch += 1
        batch = self._order[self._position : self._position + self.batch_size]
        self._position += len(batch)
        return batch.clone()

    def __iter__(self) -> WindowSampler:
        return self

    def __next__(self) -> torch.Tensor:
        return self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the same sequence of batches."""
        return {
            "num_windows": self.num_windows,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "generator": self._generator.get_state(),
            "order": self._order,
            "position": self._position,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`; the sampler's settings must match it."""
        for key in ("num_windows", "batch_size", "seed", "shuffle", "drop_last"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"the saved sampler has {key}={state[key]!r} but this one has "
                    f"{key}={getattr(self, key)!r}; build WindowSampler with the saved settings"
                )
        self._generator.set_state(state["generator"])
        self._order = state["order"]
        self._position = int(state["position"])
        self.epoch = int(state["epoch"])

    def __repr__(self) -> str:
        return (
            f"WindowSampler(num_windows={self.num_windows}, batch_size={self.batch_size}, "
            f"seed={self.seed}, shuffle={self.shuffle}, drop_last={self.drop_last})"
        )

    def _least_left(self) -> int:
        """How many windows must remain in this epoch to make another batch."""
        return self.batch_size if self.drop_last else 1

    def _new_order(self) -> torch.Tensor:
        if self.shuffle:
            return torch.randperm(self.num_windows, generator=self._generator)
        return torch.arange(self.num_windows)
