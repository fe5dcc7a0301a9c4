"""The adjoint equation is backpropagation: the continuous adjoint's gradients against
backpropagation through the solver, and the conservation of a·f along the backward solve."""

from __future__ import annotations

from torchnde.reproduce import Entry, Outcome, Row, RunContext, mean_spread

TOLERANCE = 1e-10  # rtol = atol of every solve
BOUND = 1e-6  # on the gradient errors and on the drift of a·f


def run(ctx: RunContext, seed: int) -> dict[str, float]:
    import torch

    from torchnde.diagnostics import adjoint_check
    from torchnde.nn import MLPField

    hidden, batch, t1 = (8, 4, 0.5) if ctx.quick else (64, 32, 2.0)
    field = MLPField(4, hidden=hidden, layers=2).double()
    with torch.no_grad():  # weights N(0, 2²/fan_in): a field that bends trajectories visibly
        for p in field.parameters():
            if p.ndim == 2:
                p.normal_(0, 2 / p.shape[1] ** 0.5)
    y0 = torch.randn(batch, 4, dtype=torch.float64)
    check = adjoint_check(field, y0, 0.0, t1, rtol=TOLERANCE, atol=TOLERANCE, saves=41)
    ctx.progress.update(1)
    if seed == 0:
        ctx.save_figure(check.plot(), "invariant.png")
    return {
        "backsolve_error": check.errors["backsolve"],
        "augmented_error": check.errors["augmented"],
        "invariant_drift": check.invariant_drift,
        "nfe_backprop": check.nfe["backprop"],
        "nfe_backsolve": check.nfe["backsolve"],
        "nfe_augmented_backward": check.nfe["augmented"],
    }


def summarise(per_seed: list[dict[str, float]], ctx: RunContext) -> Outcome:
    def values(key: str) -> list[float]:
        return [m[key] for m in per_seed]

    rows = [
        Row(
            "relative gradient error, BacksolveAdjoint vs backprop",
            "equal up to the solver's error",
            mean_spread(values("backsolve_error")),
            note=f"max {max(values('backsolve_error')):.2e}",
        ),
        Row(
            "relative gradient error, own augmented (y, a, g) backward solve vs backprop",
            "equal up to the solver's error",
            mean_spread(values("augmented_error")),
            note=f"max {max(values('augmented_error')):.2e}",
        ),
        Row(
            "relative drift of a·f along the backward solve",
            "0 (conserved for autonomous f)",
            mean_spread(values("invariant_drift")),
            note=f"max {max(values('invariant_drift')):.2e}",
        ),
        Row(
            "evaluations: backprop / backsolve (fwd + bwd)",
            "—",
            f"{mean_spread(values('nfe_backprop'))} / {mean_spread(values('nfe_backsolve'))}",
        ),
    ]
    worst = max(max(values(k)) for k in ("backsolve_error", "augmented_error", "invariant_drift"))
    figure = ctx.out / "invariant.png"
    return Outcome(
        rows=rows,
        criterion_met=worst < BOUND,
        details={"worst": worst, "tolerance": TOLERANCE, "bound": BOUND},
        figures=[figure] if figure.exists() else [],
    )


ENTRY = Entry(
    name="adjoint-check",
    title="The adjoint method: gradients equal backpropagation, a·f conserved",
    paper="Chen, Rubanova, Bettencourt & Duvenaud (2018). Neural ordinary differential equations. NeurIPS, §2 (the adjoint sensitivity method); Pontryagin et al. (1962); the seed talk 'Differential equations and neural networks' (the adjoint equation as backpropagation, its Hamiltonian form).",
    paper_result="The adjoint state a(t) = ∂L/∂y(t) obeys da/dt = −aᵀ ∂f/∂y; solving it backwards gives the same gradients as backpropagation up to the solver's error. For an autonomous f, H = a·f is constant along it.",
    data="A random MLP field 4→64→64→4 (tanh, weights N(0, 2²/fan_in)), float64, 32 random initial states, t ∈ [0, 2], loss ½‖y(2)‖²; Dopri5 at rtol = atol = 1e-10 for every solve.",
    criterion="For every seed: the relative gradient errors of BacksolveAdjoint and of the check's own augmented backward solve against backpropagation (DirectAdjoint) are < 1e-6, and the relative drift of a·f along the backward solve is < 1e-6.",
    run=run,
    summarise=summarise,
    seeds=3,
    quick_seeds=1,
    extras=("matplotlib",),
)
