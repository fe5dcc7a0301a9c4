"""B3 — Van der Pol (μ = 10) for a batch of 1024 different initial conditions, Dopri5 at
rtol 1e-6, atol 1e-8, float64, 10 save times: per-sample step control (torchnde with
``batch_axis=0``, torchode) against one step size shared by the batch (torchnde without a batch
axis, torchdiffeq). The field is cheap, so this case times the loop's per-step work."""

from __future__ import annotations

import torch

import torchnde

from . import _libraries as lib
from ._common import Case, Contestant, Counts, Options, Row, VanDerPol

MU = 10.0
RTOL, ATOL = 1e-6, 1e-8


def build(opts: Options) -> Case:
    batch, t1 = (256, 2.0) if opts.quick else (1024, 10.0)
    dtype = torch.float64
    field = VanDerPol(MU)
    gen = torch.Generator().manual_seed(0)
    y0 = torch.rand(batch, 2, generator=gen, dtype=dtype) * 4 - 2  # uniform in [-2, 2]²
    ts = torch.linspace(0.0, t1, 10, dtype=dtype)

    def bare() -> None:
        with torch.no_grad():
            field(ts[0], y0)

    def limit(n: Counts, per_call: dict[str, float]) -> float:
        return n.nfe * per_call["fwd"]

    def entry(library, variant, solve, counts, role):
        def run(probe):
            with torch.no_grad():
                return solve()

        return Contestant(library, variant, run, counts, limit, field.counter, role)

    dopri = torchnde.Dopri5()
    nde = dict(solver=dopri, rtol=RTOL, atol=ATOL)
    contestants = [
        entry(
            "torchnde",
            "batch_axis=0 (per-sample)",
            lib.nde_solve(field, y0, ts, **nde, batch_axis=0),
            lib.nde_counts,
            "main",
        ),
        entry(
            "torchnde",
            "batch_axis=None (shared)",
            lib.nde_solve(field, y0, ts, **nde),
            lib.nde_counts,
            "extra",
        ),
    ]
    skipped = []
    if lib.torchdiffeq is not None:
        solve = lib.tdq_solve(field, y0, ts, method="dopri5", rtol=RTOL, atol=ATOL)
        contestants.append(entry("torchdiffeq", "odeint (shared)", solve, lib.tdq_counts, "peer"))
    else:
        skipped.append(Row("torchdiffeq", "", [], None, None, "peer", skipped="not installed"))
    if lib.torchode is not None:
        solve = lib.tod_solve(field, y0, ts, method="dopri5", rtol=RTOL, atol=ATOL)
        contestants.append(entry("torchode", "Dopri5 (per-sample)", solve, lib.tod_counts, "peer"))
    else:
        skipped.append(Row("torchode", "", [], None, None, "peer", skipped="not installed"))
    return Case(
        name="B3",
        title="Van der Pol, per-sample against shared step control",
        setup=[
            f"mu={MU:g}, batch {batch} of initial conditions uniform in [-2, 2]^2, t in [0, "
            f"{t1:g}], Dopri5, rtol {RTOL:g}, atol {ATOL:g}, 10 save times, float64, "
            "torch.no_grad()",
        ],
        contestants=contestants,
        skipped=skipped,
        bare={"fwd": bare},
        bare_calls=200,
        default_rounds=5,
        targets={"ratio": 1.0},
        notes=[
            "per-sample rows: steps = max (mean) over samples; every loop iteration evaluates "
            "the field on the whole batch, so nfe follows the slowest sample",
            "a shared step must suit the hardest sample at every time: it takes more steps",
        ],
    )
