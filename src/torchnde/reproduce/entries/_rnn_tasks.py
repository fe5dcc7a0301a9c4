"""Helpers shared by the recurrent-cell reproduce entries: torch's own GRU/LSTM with the same
readout as :class:`torchnde.nn.Recurrent`, a regression training loop, the cells' paper
settings and small formatting helpers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

CORNN_PAPER = (
    "Rusch & Mishra (2021). Coupled oscillatory recurrent neural network (coRNN): an accurate "
    "and (gradient) stable architecture for learning long time dependencies. ICLR."
)
LIPSCHITZ_PAPER = (
    "Erichson, Azencot, Queiruga, Hodgkinson & Mahoney (2021). Lipschitz recurrent neural "
    "networks. ICLR."
)
LEM_PAPER = (
    "Rusch, Mishra, Erichson & Mahoney (2022). Long expressive memory for sequence modeling. ICLR."
)
NOISY_PAPER = (
    "Lim, Erichson, Hodgkinson & Mahoney (2021). Noisy recurrent neural networks. NeurIPS."
)


class TorchRNN(nn.Module):
    """``torch.nn.GRU``/``LSTM``/``RNN`` (tanh) with a linear readout of the last step (or of
    every step with ``return_all``): the baselines, shaped like :class:`torchnde.nn.Recurrent`."""

    def __init__(self, kind: str, input_size: int, hidden: int, output: int, return_all=False):
        super().__init__()
        cls = {"gru": nn.GRU, "lstm": nn.LSTM, "tanh": nn.RNN}[kind]
        self.rnn = cls(input_size, hidden, batch_first=True)
        self.readout = nn.Linear(hidden, output)
        self.return_all = return_all

    def forward(self, x, lengths=None, mask=None):
        out = self.rnn(x)[0]
        return self.readout(out if self.return_all else out[:, -1])


def train_regression(
    model: nn.Module,
    batches: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    *,
    iterations: int,
    lr: float,
    progress: Any,
    evaluate: Callable[[], float] | None = None,
    every: int = 50,
    clip: float | None = 1.0,
    label: str = "",
    schedule: str = "cosine",
) -> tuple[list[tuple[int, float]], float]:
    """Adam on ``batches(i) -> (x, y)`` under the MSE, the gradient norm clipped at ``clip``
    (``None``: not clipped), the learning rate decayed by a cosine to ``lr/20``
    (``schedule="cosine"``) or held (``"constant"``); ``evaluate()`` every ``every`` iterations
    gives the curve. Returns ``(curve, CPU seconds)``."""
    if schedule not in ("cosine", "constant"):
        raise ValueError(
            f"schedule must be 'cosine' or 'constant', got {schedule!r}; pass one of the two"
        )
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = None
    if schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations, eta_min=lr / 20)
    curve: list[tuple[int, float]] = []
    start = time.process_time()
    for it in range(iterations):
        x, y = batches(it)
        loss = (model(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if sched is not None:
            sched.step()
        progress.update(1)
        if evaluate is not None and (it % every == every - 1 or it == iterations - 1):
            model.eval()
            curve.append((it + 1, evaluate()))
            model.train()
            progress.set_postfix(model=label, test=f"{curve[-1][1]:.3g}")
    return curve, time.process_time() - start


def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Every tensor standardised per channel (last axis) with the training set's statistics,
    ignoring NaN; NaN then set to 0."""
    mean = torch.nanmean(train, dim=tuple(range(train.ndim - 1)))
    std = torch.sqrt(torch.nanmean((train - mean) ** 2, dim=tuple(range(train.ndim - 1))))
    return [torch.nan_to_num((x - mean) / std.clamp_min(1e-8)) for x in (train, *others)]


def column(per_seed: Sequence[dict[str, float]], key: str) -> list[float]:
    """One metric over the seeds."""
    return [m[key] for m in per_seed]


def mean(values: Sequence[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def curve_figure(
    curves: dict[str, list[tuple[int, float]]], ylabel: str, title: str, *, hline=None
):
    """Test curves of several models on one log-scale plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, curve in curves.items():
        xs, ys = zip(*curve) if curve else ((), ())
        ax.plot(xs, ys, label=name)
    if hline is not None:
        ax.axhline(hline[0], color="gray", ls="--", lw=1, label=hline[1])
    ax.set_yscale("log")
    ax.set_xlabel("training iteration")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return fig
