"""B4 — fixed-step RK4, 1000 steps of 1e-3 on B1's field and batch: with no step-size control and
no error estimate left to compute, this times the cost of the loop itself."""

from __future__ import annotations

import torch

import torchnde

from . import _libraries as lib
from ._common import Case, Contestant, Counts, Options, Row
from .b1_forward import BATCH, STATE, problem


def build(opts: Options) -> Case:
    steps = 200 if opts.quick else 1000
    dt = 1.0 / steps
    field, y0, ts = problem()

    def bare() -> None:
        with torch.no_grad():
            field(ts[0], y0)

    def limit(n: Counts, per_call: dict[str, float]) -> float:
        return n.nfe * per_call["fwd"]

    def entry(library, variant, solve, counts, role, note=""):
        def run(probe):
            with torch.no_grad():
                return solve()

        return Contestant(library, variant, run, counts, limit, field.counter, role, note)

    contestants = [
        entry(
            "torchnde",
            "RK4, ConstantStepSize",
            lib.nde_solve(field, y0, ts, solver=torchnde.RK4(), dt0=dt),
            lib.nde_counts,
            "main",
        ),
        entry(
            "torchnde",
            "RK38 (torchdiffeq's 'rk4')",
            lib.nde_solve(field, y0, ts, solver=torchnde.RK38(), dt0=dt),
            lib.nde_counts,
            "extra",
        ),
    ]
    skipped = []
    if lib.torchdiffeq is not None:
        solve = lib.tdq_solve(field, y0, ts, method="rk4", step_size=dt)
        contestants.append(
            entry("torchdiffeq", "odeint 'rk4' (3/8 rule)", solve, lib.tdq_counts, "peer")
        )
    else:
        skipped.append(Row("torchdiffeq", "", [], None, None, "peer", skipped="not installed"))
    if lib.torchode is not None:
        solve = lib.tod_solve(field, y0, ts, method="rk4", dt0=dt)
        note = "torchode ships no RK4: built from its ExplicitRungeKutta and ButcherTableau"
        contestants.append(
            entry("torchode", "RK4, FixedStepController", solve, lib.tod_counts, "peer", note)
        )
    else:
        skipped.append(Row("torchode", "", [], None, None, "peer", skipped="not installed"))
    return Case(
        name="B4",
        title="fixed-step RK4 (the cost of the loop)",
        setup=[
            f"B1's field, batch {BATCH}, state {STATE}, {steps} steps of {dt:g} on [0, 1], "
            "10 save times, float32, torch.no_grad()",
        ],
        contestants=contestants,
        skipped=skipped,
        bare={"fwd": bare},
        default_rounds=5,
        targets={"ratio": 1.0, "overhead": 2.0},
        notes=[
            "torchdiffeq saves by linear interpolation between steps; torchnde and torchode use "
            "a cubic dense output",
        ],
    )
