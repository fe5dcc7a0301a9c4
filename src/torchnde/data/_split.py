"""A labelled data set split into a training and a test part."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Split", "stratified_split"]


@dataclass(frozen=True)
class Split:
    """Inputs and labels, split into training and test parts.

    Attributes:
        x_train: ``(n_train, ...)`` inputs.
        y_train: ``(n_train,)`` integer labels (or targets).
        x_test: ``(n_test, ...)`` inputs.
        y_test: ``(n_test,)`` labels.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def to(self, *args, **kwargs) -> Split:
        """Every input moved/cast with ``tensor.to(*args, **kwargs)``; labels only moved."""
        device = torch.empty(0).to(*args, **kwargs).device
        return Split(
            self.x_train.to(*args, **kwargs),
            self.y_train.to(device),
            self.x_test.to(*args, **kwargs),
            self.y_test.to(device),
        )


def stratified_split(labels: torch.Tensor, test_fraction: float, seed: int) -> tuple:
    """Indices ``(train, test)`` with each class split in the same proportion, drawn with a
    generator of its own seeded with ``seed`` (the global generators are untouched).

    Args:
        labels: ``(n,)`` integer labels.
        test_fraction: the share of each class that goes to the test part, in (0, 1).
        seed: the split's seed: the same seed gives the same split on every machine.

    Returns:
        Two sorted ``int64`` index tensors.
    """
    if not isinstance(test_fraction, float | int) or not 0 < test_fraction < 1:
        raise ValueError(f"`test_fraction` must lie in (0, 1), got {test_fraction!r}")
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for label in labels.unique(sorted=True):
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        cut = round(test_fraction * len(members))
        test.append(members[:cut])
        train.append(members[cut:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values
