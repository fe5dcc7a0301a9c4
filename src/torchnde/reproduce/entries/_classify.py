"""Training and scoring the digits classifiers of several entries: mini-batch Adam with a
one-cycle schedule, cross-entropy, test accuracy."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

__all__ = ["accuracy", "train_classifier"]


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    progress: Any,
    lr: float = 3e-3,
    batch: int = 128,
    clip: float | None = None,
) -> float:
    """Train ``model`` on ``(x, y)``; returns the wall time in seconds.

    Adam with a one-cycle learning-rate schedule peaking at ``lr``, shuffled mini-batches drawn
    from the global generator (seeded by the runner), one progress tick per batch. ``clip``: the
    largest gradient norm (``clip_grad_norm_``; default ``None``, no clipping).
    """
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    per_epoch = (len(y) + batch - 1) // batch
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=lr, total_steps=epochs * per_epoch
    )
    model.train()
    started = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(y))
        for i in range(0, len(y), batch):
            index = order[i : i + batch]
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(model(x[index]), y[index])
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimiser.step()
            schedule.step()
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return time.perf_counter() - started


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The share of ``x`` that ``model`` labels as ``y``."""
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).double().mean())
