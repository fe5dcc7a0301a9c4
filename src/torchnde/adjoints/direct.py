"""Backpropagation through every operation of the solver."""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import friendly_keywords
from .._loop import Recorder, init_state, run
from ._base import AbstractAdjoint, LoopOutput
from ._output import assemble

__all__ = ["DirectAdjoint"]


@friendly_keywords()
@dataclass(frozen=True)
class DirectAdjoint(AbstractAdjoint):
    """Differentiate by backpropagating through the solver's operations ("discretise then
    optimise"). The gradient is the exact gradient of the computed solution; memory grows with the
    number of steps. Differentiates everything: saved values, dense output and event times."""

    def loop(self, ctx, y0, dt0, solver_state, nfe0, plan):
        st = init_state(ctx, y0, dt0, solver_state, nfe0)
        rec = Recorder(ctx, plan.ts, plan.steps, plan.dense)
        st = run(ctx, st, rec)
        ys, ts = assemble(ctx, plan, st, rec, y0)
        return LoopOutput(ys, ts, st, rec)
