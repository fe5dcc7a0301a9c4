"""The convergence test (Queiruga et al. 2020; Krishnapriyan, Queiruga, Erichson & Mahoney 2023):
networks trained through Euler or Midpoint at a coarse step learn a discrete map that degrades
when the steps are refined; networks trained through RK4 learn a continuous model."""

from __future__ import annotations

from typing import Any

from torchnde.reproduce import Entry, Outcome, Row, RunContext, mean_spread

SCHEMES = ("Euler", "Midpoint", "RK4")
DT = 0.5  # the oscillator data's spacing, as in the paper
OSCILLATOR_STEPS = (1, 2, 4, 8, 16, 32, 64)
PIECES = 4  # ContinuousNet: 4 piecewise-constant pieces on [0, 4] (a 4-block ResNet at step 1)
DIGITS_STEPS = tuple(PIECES * 2**j for j in range(6))  # 4 … 128
TOLERANCE = 0.5  # continuous ⇔ limit error ≤ 1.5 × trained error (+ atol)
DIGITS_ATOL = 0.005  # half a point of error rate: two or three of the 450 test images


def _solver(name: str) -> Any:
    import torchnde as tn

    return {"Euler": tn.Euler(), "Midpoint": tn.Midpoint(), "RK4": tn.RK4()}[name]


def _oscillator(ctx: RunContext, seed: int, scheme: str) -> Any:
    import torch

    from torchnde.data import damped_oscillator
    from torchnde.diagnostics import convergence_test
    from torchnde.nn import MLPField, NeuralODE

    x0, x1 = damped_oscillator(512, t1=DT, damping=0.0, frequency=1.0, seed=1000 + seed)
    xt0, xt1 = damped_oscillator(256, t1=DT, damping=0.0, frequency=1.0, seed=2000 + seed)
    torch.manual_seed(seed)
    model = NeuralODE(MLPField(2, hidden=50), _solver(scheme), 0.0, DT, steps=1)
    iterations = 300 if ctx.quick else 3000
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, iterations)
    for _ in range(iterations):
        optimiser.zero_grad()
        loss = (model(x0) - x1).square().mean()
        loss.backward()
        optimiser.step()
        schedule.step()
        ctx.progress.update(1)
    steps = OSCILLATOR_STEPS[:5] if ctx.quick else OSCILLATOR_STEPS
    return convergence_test(model, xt0, xt1, steps=steps, tolerance=TOLERANCE)


def _digits(ctx: RunContext, seed: int, scheme: str, data: Any) -> Any:
    import torch
    from torch import nn

    from torchnde.diagnostics import convergence_test
    from torchnde.nn import ContinuousBlock, DepthLinear, NeuralODE, PiecewiseConstant

    from ._classify import train_classifier

    torch.manual_seed(seed)
    basis = PiecewiseConstant(PIECES, 0.0, float(PIECES))
    block = ContinuousBlock(DepthLinear(32, 32, basis), nn.ReLU(), DepthLinear(32, 32, basis))
    ode = NeuralODE(block, _solver(scheme), 0.0, float(PIECES), steps=PIECES)
    model = nn.Sequential(nn.Linear(64, 32), ode, nn.Linear(32, 10))
    epochs = 1 if ctx.quick else 30
    train_classifier(model, data.x_train, data.y_train, epochs=epochs, progress=ctx.progress)
    steps = DIGITS_STEPS[:3] if ctx.quick else DIGITS_STEPS
    return convergence_test(
        model, data.x_test, data.y_test, steps=steps, tolerance=TOLERANCE, atol=DIGITS_ATOL
    )


def run(ctx: RunContext, seed: int) -> dict[str, float]:
    from torchnde.data import load_digits

    data = load_digits()
    osc_iters = 300 if ctx.quick else 3000
    digit_batches = (1 if ctx.quick else 30) * ((len(data.y_train) + 127) // 128)
    ctx.progress.reset(total=len(SCHEMES) * (osc_iters + digit_batches))
    metrics: dict[str, float] = {}
    results = {}
    for system in ("oscillator", "digits"):
        for scheme in SCHEMES:
            ctx.progress.set_postfix(system=system, scheme=scheme)
            if system == "oscillator":
                result = _oscillator(ctx, seed, scheme)
            else:
                result = _digits(ctx, seed, scheme, data)
            results[system, scheme] = result
            key = f"{system}_{scheme}"
            metrics[f"{key}_trained_error"] = result.trained_error
            metrics[f"{key}_limit_error"] = result.limit_error
            metrics[f"{key}_ratio"] = result.ratio
            metrics[f"{key}_continuous"] = float(result.verdict == "continuous")
            metrics[f"{key}_order_own_scheme"] = result.orders[scheme]
            ctx.log(f"seed {seed}, {system}, trained with {scheme}:\n{result.table()}\n")
    if seed == 0:
        ctx.save_figure(_figure(results), "convergence.png")
    if seed == 0 and not ctx.quick:
        ctx.save_figure(
            results["digits", "Euler"].plot("digits, trained with Euler, 4 steps"),
            "digits-euler-detail.png",
        )
        ctx.save_figure(
            results["digits", "RK4"].plot("digits, trained with RK4, 4 steps"),
            "digits-rk4-detail.png",
        )
    return metrics


def _figure(results: dict) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, system, label in (
        (axes[0], "oscillator", "RMSE against the exact flow"),
        (axes[1], "digits", "test error rate"),
    ):
        for scheme, colour in zip(SCHEMES, ("tab:red", "tab:orange", "tab:blue")):
            result = results[system, scheme]
            hs, errors = result.curve(scheme)
            ax.plot(
                hs, errors, "o-", color=colour, label=f"trained with {scheme} ({result.verdict})"
            )
            hs, errors = result.curve("RK4")
            ax.plot(hs, errors, ":", color=colour, alpha=0.7)
            ax.plot(
                [result.extra["trained_h"]],
                [result.trained_error],
                "o",
                ms=12,
                mfc="none",
                color=colour,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("step size h at evaluation (training step circled)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("harmonic oscillator, Δt = 0.5 (solid: own scheme, dotted: RK4)")
    axes[1].set_title("8×8 digits, ContinuousNet with 4 pieces")
    fig.tight_layout()
    return fig


def summarise(per_seed: list[dict[str, float]], ctx: RunContext) -> Outcome:
    def values(key: str) -> list[float]:
        return [m[key] for m in per_seed]

    rows = []
    paper = {
        ("oscillator", "Euler"): "gets worse when refined",
        ("oscillator", "Midpoint"): "gets worse when refined",
        ("oscillator", "RK4"): "stays on the solution",
        ("digits", "Euler"): "gets worse (CIFAR-10: 'same dip')",
        ("digits", "Midpoint"): "expected to transfer",
        ("digits", "RK4"): "transfers to other N_t and solvers",
    }
    scale = {"oscillator": (1, ""), "digits": (100, "%")}
    for (system, scheme), claim in paper.items():
        key = f"{system}_{scheme}"
        s, u = scale[system]
        continuous = values(f"{key}_continuous")
        verdicts = f"{int(sum(continuous))}/{len(continuous)} continuous"
        rows.append(
            Row(
                f"{system}, trained with {scheme}: error as trained → refined limit",
                claim,
                f"{mean_spread(values(f'{key}_trained_error'), scale=s, unit=u)} → "
                f"{mean_spread(values(f'{key}_limit_error'), scale=s, unit=u)}",
                note=f"ratio {mean_spread(values(f'{key}_ratio'))}; {verdicts}",
            )
        )
    for scheme in SCHEMES:
        rows.append(
            Row(
                f"observed order of {scheme} on the oscillator nets' outputs",
                {"Euler": "1", "Midpoint": "2", "RK4": "4"}[scheme],
                mean_spread(values(f"oscillator_{scheme}_order_own_scheme")),
            )
        )
    required = {
        ("oscillator", "Euler"): 0.0,
        ("oscillator", "Midpoint"): 0.0,
        ("oscillator", "RK4"): 1.0,
        ("digits", "Euler"): 0.0,
        ("digits", "RK4"): 1.0,
    }
    met = all(
        all(v == want for v in values(f"{system}_{scheme}_continuous"))
        for (system, scheme), want in required.items()
    )
    figures = [
        ctx.out / n for n in ("convergence.png", "digits-euler-detail.png", "digits-rk4-detail.png")
    ]
    return Outcome(
        rows=rows,
        criterion_met=met,
        details={
            "required_verdicts": {
                f"{a}_{b}": ("continuous" if w else "discrete") for (a, b), w in required.items()
            }
        },
        figures=[f for f in figures if f.exists()],
    )


ENTRY = Entry(
    name="convergence-test",
    title="The convergence test: Euler/Midpoint-trained nets are discrete maps, RK4-trained nets continuous models",
    paper="Queiruga, Erichson, Taylor & Mahoney (2020). Continuous-in-depth neural networks. arXiv:2008.02389; Krishnapriyan, Queiruga, Erichson & Mahoney (2023). Learning continuous models for continuous physics. Communications Physics 6, 319.",
    paper_result="Harmonic oscillator, data every Δt = 0.5, a shallow tanh net (50 units) trained through one step of Euler, Midpoint or RK4: Euler-Net and Midpoint-Net get worse when evaluated at smaller Δt, RK4-Net stays on the analytical solution. ContinuousNet on CIFAR-10: trained with Euler (a ResNet) it shows the same dip when refined; trained with RK4 it re-manifests with many N_t and integrators (Midpoint expected to transfer too).",
    data="Synthetic: the harmonic oscillator x' = y, y' = −x, 512 training and 256 test pairs (y(0), y(0.5)) from initial states uniform in [−1, 1]², exact flow; the paper's net (2→50 tanh→2), 3000 full-batch Adam steps. Image classifier: scikit-learn's 8×8 digits (stand-in for CIFAR-10) with a ContinuousNet — linear 64→32, a residual ODE block on [0, 4] with piecewise-constant weights on 4 pieces (ReLU, two 32×32 layers: exactly a 4-block ResNet under Euler), linear 32→10 — trained 30 epochs with 4 steps. Evaluated without retraining with Euler, Midpoint and RK4 at 1…64 (oscillator) or 4…128 (digits) steps.",
    criterion="For every seed, by convergence_test's verdict (continuous ⇔ error at the finest RK4 resolution ≤ 1.5 × the error as trained, + 0.005 for the digits' error rate): oscillator — Euler- and Midpoint-trained discrete, RK4-trained continuous; digits — Euler-trained discrete, RK4-trained continuous (Midpoint is reported).",
    run=run,
    summarise=summarise,
    seeds=3,
    quick_seeds=1,
    extras=("sklearn", "matplotlib"),
)
