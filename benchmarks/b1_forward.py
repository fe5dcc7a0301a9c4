"""B1 — neural ODE forward: MLP field (2 hidden layers of 64, tanh), state 32, batch 256,
t ∈ [0, 1], Dopri5, rtol 1e-6, atol 1e-8, 10 save times, float32, under ``torch.no_grad()``."""

from __future__ import annotations

import torch

import torchnde

from . import _libraries as lib
from ._common import Case, Contestant, Counts, MLPField, Options, Row
from ._layers import layer_solve

RTOL, ATOL = 1e-6, 1e-8
STATE, BATCH = 32, 256


def problem(seed: int = 0) -> tuple[MLPField, torch.Tensor, torch.Tensor]:
    """The field, ``y0: (256, 32)`` and the 10 save times on [0, 1] (float32)."""
    field = MLPField(STATE, seed=seed)
    y0 = torch.randn(BATCH, STATE, generator=torch.Generator().manual_seed(seed + 1))
    ts = torch.linspace(0.0, 1.0, 10)
    return field, y0, ts


def no_grad(solve):
    def run(probe):
        with torch.no_grad():
            return solve()

    return run


def build(opts: Options) -> Case:
    field, y0, ts = problem()

    def bare() -> None:
        with torch.no_grad():
            field(ts[0], y0)

    def limit(n: Counts, per_call: dict[str, float]) -> float:
        return n.nfe * per_call["fwd"]

    def entry(library, variant, solve, counts, role, note=""):
        return Contestant(
            library, variant, no_grad(solve), counts, limit, field.counter, role, note
        )

    dopri = torchnde.Dopri5()
    contestants = [
        entry(
            "torchnde",
            "batch_axis=None",
            lib.nde_solve(field, y0, ts, solver=dopri, rtol=RTOL, atol=ATOL),
            lib.nde_counts,
            "main",
        ),
        entry(
            "torchnde",
            "batch_axis=0 (extra)",
            lib.nde_solve(field, y0, ts, solver=dopri, rtol=RTOL, atol=ATOL, batch_axis=0),
            lib.nde_counts,
            "extra",
        ),
    ]
    layer, layer_counts = layer_solve(field, y0, ts, solver=dopri, rtol=RTOL, atol=ATOL)
    contestants.append(entry("torchnde", "NeuralODE layer (extra)", layer, layer_counts, "extra"))
    skipped = []
    if lib.torchdiffeq is not None:
        solve = lib.tdq_solve(field, y0, ts, method="dopri5", rtol=RTOL, atol=ATOL)
        contestants.append(entry("torchdiffeq", "odeint dopri5", solve, lib.tdq_counts, "peer"))
    else:
        skipped.append(Row("torchdiffeq", "", [], None, None, "peer", skipped="not installed"))
    if lib.torchode is not None:
        solve = lib.tod_solve(field, y0, ts, method="dopri5", rtol=RTOL, atol=ATOL)
        contestants.append(entry("torchode", "Dopri5 (per-sample)", solve, lib.tod_counts, "peer"))
    else:
        skipped.append(Row("torchode", "", [], None, None, "peer", skipped="not installed"))
    return Case(
        name="B1",
        title="neural ODE forward (inference)",
        setup=[
            f"MLP {STATE}-64-64-{STATE} tanh, batch {BATCH}, t in [0, 1], Dopri5, rtol {RTOL:g}, "
            f"atol {ATOL:g}, 10 save times, float32, torch.no_grad()",
        ],
        contestants=contestants,
        bare={"fwd": bare},
        skipped=skipped,
        targets={"ratio": 1.0, "overhead": 1.5},
        notes=[
            "torchode always controls the step per sample: its steps are max (mean) over the "
            "batch, its nfe counts calls on the whole batch",
            "NeuralODE layer: the batch_axis=None solve through torchnde.nn.NeuralODE; "
            "target: within 5 % of that row's time",
        ],
    )
