"""Raissi, Perdikaris & Karniadakis 2019, §3.1: a PINN for viscous Burgers ``u_t + u u_x =
(0.01/π) u_xx`` on [−1, 1] × [0, 1], ``u(x, 0) = −sin πx``, ``u(±1, t) = 0`` — a shock forms at
x = 0 — with a 9-layer (8 hidden × 20, tanh) network on Latin-hypercube collocation points,
trained by Adam then L-BFGS (float32). The error is the relative L2 error on a 256 × 100 grid
against the Cole–Hopf solution by Gauss–Hermite quadrature (which reproduces the benchmark slope
152.00516 of Basdevant et al. 1986).
"""

from __future__ import annotations

import time

from torchnde import pinn
from torchnde.reproduce import Entry, Outcome, Row, RunContext, mean_spread
from torchnde.training import Stage

from ._pinn_common import log_phases, mean, solution_figure, train

PAPER = (
    "Raissi, Perdikaris & Karniadakis (2019). Physics-informed neural networks: a deep learning "
    "framework for solving forward and inverse problems involving nonlinear partial "
    "differential equations. J. Comput. Phys. 378."
)
NETWORK = pinn.Network(width=20, depth=8, activation="tanh")


def _settings(quick: bool) -> dict:
    if quick:
        return dict(
            adam=20,
            lbfgs=10,
            points=dict(collocation=256, initial=32, boundary=16),
            evaluation={"x": 64, "t": 25},
        )
    return dict(
        adam=1000,
        lbfgs=3000,
        points=dict(collocation=5000, initial=100, boundary=50),
        evaluation={"x": 256, "t": 100},
    )


def run(ctx: RunContext, seed: int) -> dict[str, float]:
    s = _settings(ctx.quick)
    ctx.progress.reset(total=1)
    started = time.process_time()
    result = train(
        ctx,
        pinn.burgers(),
        "burgers",
        stages=[
            Stage("adam", steps=s["adam"], lr=1e-3),
            Stage("lbfgs", steps=s["lbfgs"], options={"history_size": 50}),
        ],
        network=NETWORK,
        points=pinn.Points(**s["points"], sampler="latin_hypercube", seed=seed),
        evaluation=s["evaluation"],
        seed=seed,
    )
    log_phases(ctx, f"seed {seed}", result)
    if seed == 0:
        figure = solution_figure([("Burgers", result)], s["evaluation"])
        ctx.save_figure(figure, "solution-seed0.png")
    return {
        "error": result.error,
        "seconds": result.wall_time,
        "cpu_seconds": time.process_time() - started,
        "loss": result.final.loss,
    }


def summarise(per_seed: list[dict[str, float]], ctx: RunContext) -> Outcome:
    errors = [m["error"] for m in per_seed]
    s = _settings(ctx.quick)
    rows = [
        Row(
            "relative L2 error, ν = 0.01/π",
            "6.7e-04 (N_f = 10000, L-BFGS to convergence)",
            mean_spread(errors),
            note=f"N_f = {s['points']['collocation']}, Adam {s['adam']} + L-BFGS {s['lbfgs']}",
        ),
        Row("training time (s)", "—", mean_spread([m["seconds"] for m in per_seed])),
    ]
    figures = []
    if (ctx.out / "solution-seed0.png").exists():
        figures.append(ctx.out / "solution-seed0.png")
    return Outcome(
        rows=rows,
        criterion_met=bool(mean(errors) <= 5e-3),
        details={"errors": errors},
        figures=figures,
    )


ENTRY = Entry(
    name="pinn-burgers",
    title="A PINN for viscous Burgers with a shock (the PINN paper's first example)",
    paper=PAPER,
    paper_result="relative L2 error 6.7e-4 (N_u = 100, N_f = 10000, 9 layers × 20 neurons)",
    data=(
        "none needed: the PDE and its initial and boundary values; Cole–Hopf reference on a "
        "256 × 100 grid"
    ),
    criterion="mean relative L2 error ≤ 5e-3 over the seeds",
    run=run,
    summarise=summarise,
    seeds=3,
    quick_seeds=1,
    extras=("matplotlib",),
)
