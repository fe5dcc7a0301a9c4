"""Benchmark rows for the model layers (``torchnde.nn``): the same solve as a torchnde row, made
through the layer, so that the two rows' times show the layer's overhead (target: ≤ 5 %)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

import torchnde
from torchnde.nn import NeuralODE

from ._common import Counts, steps_str


def layer_solve(
    field: torch.nn.Module,
    y0: torch.Tensor,
    ts: torch.Tensor,
    *,
    solver: torchnde.AbstractSolver,
    rtol: float,
    atol: float,
    adjoint: Any = None,
) -> tuple[Callable[[], Any], Callable[[Any, int, int], Counts]]:
    """``NeuralODE(field, solver, …, saveat=SaveAt(ts=ts))(y0)`` (returns the saved values,
    time-major) and its counts function (steps from the layer's ``last_stats``)."""
    layer = NeuralODE(
        field,
        solver,
        float(ts[0]),
        float(ts[-1]),
        controller=torchnde.PIDController(rtol=rtol, atol=atol),
        adjoint=adjoint,
        saveat=torchnde.SaveAt(ts=ts),
        max_steps=100_000,
    )

    def solve() -> torch.Tensor:
        return layer(y0)

    def counts(out: Any, calls: int, tdq_steps: int) -> Counts:
        return Counts(steps_str(layer.last_stats["num_steps"]), calls)

    return solve, counts
