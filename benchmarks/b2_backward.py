"""B2 — B1's solve followed by ``backward()`` of a fixed linear loss of the saved values, with
direct gradients (backpropagation through the solver) and with backsolve (continuous adjoint)
gradients. Ratios compare like with like: direct with direct, backsolve with backsolve."""

from __future__ import annotations

import torch

import torchnde

from . import _libraries as lib
from ._common import Case, Contestant, Counts, Options, Row, torchnde_has
from ._layers import layer_solve
from .b1_forward import ATOL, BATCH, RTOL, STATE, problem


def build(opts: Options) -> Case:
    field, y0, ts = problem()
    params = tuple(field.parameters())
    weights = torch.randn(len(ts), BATCH, STATE, generator=torch.Generator().manual_seed(7))

    def training_step(solve, time_major: bool):
        """Solve, then backward of Σ w·y over the saved values (time-major: ``(T, batch, n)``)."""

        def run(probe):
            field.zero_grad(set_to_none=True)
            out = solve()
            ys = out if isinstance(out, torch.Tensor) else out.ys
            probe()
            w = weights if time_major else weights.transpose(0, 1)
            (ys * w).sum().backward()
            return out

        return run

    y_in = y0.clone().requires_grad_(True)
    cotangent = torch.randn_like(y0)

    def bare_fwd() -> None:
        with torch.no_grad():
            field(ts[0], y0)

    def bare_vjp() -> None:
        out = field(ts[0], y_in)
        torch.autograd.grad(out, (y_in, *params), cotangent)

    def direct_limit(n: Counts, per_call: dict[str, float]) -> float:
        return n.nfe * per_call["fwd+bwd"]

    def backsolve_limit(n: Counts, per_call: dict[str, float]) -> float:
        return n.nfe * per_call["fwd"] + n.nfe_backward * per_call["fwd+bwd"]

    contestants: list[Contestant] = []
    skipped: list[Row] = []

    def add(library, variant, solve, counts, role, group, time_major, note="", slow=False):
        limit = direct_limit if group == "direct" else backsolve_limit
        run = training_step(solve, time_major)
        contestants.append(
            Contestant(library, variant, run, counts, limit, field.counter, role, note, group, slow)
        )

    def skip(library, variant, why, role, group):
        skipped.append(Row(library, variant, [], None, None, role, group=group, skipped=why))

    dopri = torchnde.Dopri5()
    nde = dict(solver=dopri, rtol=RTOL, atol=ATOL)
    add(
        "torchnde",
        "DirectAdjoint",
        lib.nde_solve(field, y0, ts, **nde, adjoint=torchnde.DirectAdjoint()),
        lib.nde_counts,
        "main",
        "direct",
        True,
    )
    layer, layer_counts = layer_solve(field, y0, ts, **nde, adjoint=torchnde.DirectAdjoint())
    add("torchnde", "layer, Direct (extra)", layer, layer_counts, "extra", "direct", True)
    if torchnde_has("BacksolveAdjoint"):
        adjoint = torchnde.BacksolveAdjoint(rtol=RTOL, atol=ATOL)
        solve = lib.nde_solve(field, y0, ts, **nde, adjoint=adjoint)
        add("torchnde", "BacksolveAdjoint", solve, lib.nde_counts, "main", "backsolve", True)
        layer, layer_counts = layer_solve(field, y0, ts, **nde, adjoint=adjoint)
        add(
            "torchnde",
            "layer, Backsolve (extra)",
            layer,
            layer_counts,
            "extra",
            "backsolve",
            True,
        )
    else:
        skip("torchnde", "BacksolveAdjoint", "not available yet", "main", "backsolve")
    if lib.torchdiffeq is not None:
        solve = lib.tdq_solve(field, y0, ts, method="dopri5", rtol=RTOL, atol=ATOL)
        add("torchdiffeq", "odeint", solve, lib.tdq_counts, "peer", "direct", True)
        solve = lib.tdq_solve(field, y0, ts, method="dopri5", rtol=RTOL, atol=ATOL, adjoint=True)
        add(
            "torchdiffeq",
            "odeint_adjoint (seminorm)",
            solve,
            lib.tdq_counts,
            "peer",
            "backsolve",
            True,
        )
    else:
        skip("torchdiffeq", "", "not installed", "peer", "direct")
    if lib.torchode is not None:
        solve = lib.tod_solve(field, y0, ts, method="dopri5", rtol=RTOL, atol=ATOL)
        add("torchode", "AutoDiffAdjoint", solve, lib.tod_counts, "peer", "direct", False)
        if not opts.quick:
            solve = lib.tod_solve(
                field, y0, ts, method="dopri5", rtol=RTOL, atol=ATOL, backsolve=True
            )
            note = "slow: timed in one round, not a median"
            add(
                "torchode",
                "BacksolveAdjoint",
                solve,
                lib.tod_counts,
                "peer",
                "backsolve",
                False,
                note,
                True,
            )
    else:
        skip("torchode", "", "not installed", "peer", "direct")
    return Case(
        name="B2",
        title="neural ODE forward + backward (training step)",
        setup=[
            "B1's problem with gradients on; loss = sum(w * ys) with fixed random w; "
            "gradients of the 6.4k field parameters",
            "ratio: direct rows against the faster direct peer, backsolve rows against the "
            "faster backsolve peer",
            "limit: direct = nfe x (field forward + backward); backsolve = nfe x forward + "
            "nfe bwd x (forward + backward)",
        ],
        contestants=contestants,
        skipped=skipped,
        bare={"fwd": bare_fwd, "fwd+bwd": bare_vjp},
        targets={"ratio": 1.0, "overhead": 1.5},
        notes=[
            "torchdiffeq's odeint_adjoint is given adjoint_options=dict(norm='seminorm'), as "
            "torchnde's BacksolveAdjoint uses seminorms by default",
            "torchode's BacksolveAdjoint integrates per-sample parameter adjoints "
            "(batch x 6.4k extra states) and uses no seminorm",
            "layer rows: the torchnde rows' solves through torchnde.nn.NeuralODE; "
            "target: within 5 % of the matching torchnde row",
        ],
    )
