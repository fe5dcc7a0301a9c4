"""Poli et al. 2020: hypersolvers. A HyperEuler step — Euler plus ``h² g_ω(t, y, h)`` with a
small network ``g_ω`` fitted on Euler's one-step residuals against a tight-tolerance reference —
on two vector fields:

* a damped pendulum ``θ'' = -sin θ - 0.1 θ'`` over ``t ∈ [0, 4]``, initial states in
  ``[-1.5, 1.5] × [-1, 1]``;
* a trained neural ODE: an MLP field fitted (RK4, 10 steps) to the flow map over ``t ∈ [0, 1]``
  of the cubic oscillator ``y' = A y³`` (Chen et al. 2018's spiral system), then integrated over
  ``[0, 1]``.

HyperEuler takes ``K`` steps; Euler, Midpoint and RK4 take ``K`` and other step counts, Dopri5
a range of tolerances; the error is the mean distance of the terminal state from a Dopri5
reference at ``rtol = atol = 1e-9`` over 256 test initial states the correction never saw.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from torchnde.reproduce import Entry, Outcome, Row, RunContext, mean_spread

A_CUBIC = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]])


def _settings(quick: bool) -> dict:
    if quick:
        return dict(steps=10, train=32, test=32, node_iterations=5, fit_iterations=30)
    return dict(steps=10, train=256, test=256, node_iterations=600, fit_iterations=500)


def pendulum(t, y, args):
    return torch.stack([y[..., 1], -torch.sin(y[..., 0]) - 0.1 * y[..., 1]], dim=-1)


def cubic(t, y, args):
    return (y**3) @ A_CUBIC.T


class Field(nn.Module):
    def __init__(self, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, 2),
        )  # fmt: skip

    def forward(self, t, y, args):
        return self.net(y)


def _box(n: int, gen: torch.Generator, half: tuple[float, float]) -> torch.Tensor:
    return (2 * torch.rand(n, 2, generator=gen) - 1) * torch.tensor(half)


def _solve(field, solver, t1, y0, steps=None, rtol=None):
    import torchnde as tn

    if rtol is not None:
        controller, dt0 = tn.PIDController(rtol=rtol, atol=rtol), None
    else:
        controller, dt0 = tn.ConstantStepSize(), t1 / steps
    sol = tn.solve(tn.ODETerm(field), solver, 0.0, t1, y0, dt0=dt0, controller=controller)
    return sol.ys[-1], int(sol.stats["nfe"])


def _train_neural_ode(cfg, ctx, gen) -> nn.Module:
    """An MLP field fitted to the cubic oscillator's flow map over [0, 1]."""
    import torchnde as tn

    y0 = _box(512, gen, (1.5, 1.5))
    with torch.no_grad():
        y1, _ = _solve(cubic, tn.Dopri5(), 1.0, y0, rtol=1e-8)
    field = Field()
    opt = torch.optim.Adam(field.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg["node_iterations"], 1e-4)
    for it in range(cfg["node_iterations"]):
        pred, _ = _solve(field, tn.RK4(), 1.0, y0, steps=10)
        loss = (pred - y1).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        ctx.progress.update(1)
        if it % 25 == 0:
            ctx.progress.set_postfix(task="neural ODE", loss=f"{loss.item():.2e}")
    for p in field.parameters():
        p.requires_grad_(False)
    return field


def _compare(name, field, t1, half, cfg, ctx, gen) -> dict[str, float]:
    """Fit HyperEuler on ``field`` and measure every method's terminal error and NFE."""
    import torchnde as tn
    from torchnde.nn._hypersolvers import HyperEuler, HyperNet, fit_hypersolver

    steps = cfg["steps"]
    hyper = HyperEuler(HyperNet(2, hidden=32))
    start = time.process_time()
    fit = fit_hypersolver(
        hyper, field, _box(cfg["train"], gen, half), 0.0, t1, steps,
        iterations=cfg["fit_iterations"],
    )  # fmt: skip
    fit_seconds = time.process_time() - start
    test = _box(cfg["test"], gen, half)
    out: dict[str, float] = {f"{name}_fit_cpu_seconds": fit_seconds}
    out[f"{name}_fit_relative_loss"] = fit.losses[-1] / fit.residual_scale
    with torch.no_grad():
        exact, _ = _solve(field, tn.Dopri5(), t1, test, rtol=1e-9)

        def error(solver, **kw):
            end, nfe = _solve(field, solver, t1, test, **kw)
            return (end - exact).norm(dim=-1).mean().item(), nfe

        out[f"{name}_hypereuler_error"], out[f"{name}_hypereuler_nfe"] = error(hyper, steps=steps)
        pareto = {"Euler": [], "Midpoint": [], "RK4": [], "Dopri5": []}
        for k in (steps // 2, steps, 2 * steps, 4 * steps, 8 * steps):
            for label, solver in (("Euler", tn.Euler()), ("Midpoint", tn.Midpoint())):
                pareto[label].append(error(solver, steps=k))
            pareto["RK4"].append(error(tn.RK4(), steps=k))
        for rtol in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6):
            pareto["Dopri5"].append(error(tn.Dopri5(), rtol=rtol))
    out[f"{name}_euler_error"] = pareto["Euler"][1][0]
    out[f"{name}_midpoint_error"] = pareto["Midpoint"][1][0]
    out[f"{name}_rk4_error"] = pareto["RK4"][1][0]
    if ctx.seed == 0:
        _plot(ctx, name, pareto, out, steps)
    return out


def _plot(ctx, name, pareto, out, steps) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, points in pareto.items():
        errs, nfes = zip(*points)
        ax.loglog(nfes, errs, "o-", label=label, ms=4)
    ax.loglog(
        [out[f"{name}_hypereuler_nfe"]], [out[f"{name}_hypereuler_error"]], "k*", ms=14,
        label=f"HyperEuler, {steps} steps",
    )  # fmt: skip
    ax.set_xlabel("function evaluations (HyperEuler: 2 per step, g_ω not counted)")
    ax.set_ylabel("mean terminal error")
    ax.set_title(f"{name}: error against cost")
    ax.legend(fontsize=8)
    ctx.save_figure(fig, f"pareto-{name}.png")


def run(ctx: RunContext, seed: int) -> dict[str, float]:
    cfg = _settings(ctx.quick)
    ctx.progress.reset(total=cfg["node_iterations"])
    gen = torch.Generator().manual_seed(seed)
    metrics = _compare("pendulum", pendulum, 4.0, (1.5, 1.0), cfg, ctx, gen)
    field = _train_neural_ode(cfg, ctx, gen)
    metrics.update(_compare("neural_ode", field, 1.0, (1.5, 1.5), cfg, ctx, gen))
    return metrics


def summarise(per_seed: list[dict[str, float]], ctx: RunContext) -> Outcome:
    def col(key):
        return [m[key] for m in per_seed]

    rows, held = [], True
    steps = _settings(ctx.quick)["steps"]
    for name, label in (("pendulum", "pendulum"), ("neural_ode", "trained neural ODE")):
        hyper, euler, mid = (col(f"{name}_{k}_error") for k in ("hypereuler", "euler", "midpoint"))
        rows += [
            Row(f"{label}: terminal error, HyperEuler ({steps} steps)", "—", mean_spread(hyper)),
            Row(f"{label}: terminal error, Euler ({steps} steps)", "—", mean_spread(euler)),
            Row(f"{label}: terminal error, Midpoint ({steps} steps)", "—", mean_spread(mid)),
            Row(
                f"{label}: HyperEuler / Euler error",
                "≤ 0.1 (criterion)",
                mean_spread([h / e for h, e in zip(hyper, euler)]),
            ),
            Row(
                f"{label}: HyperEuler / Midpoint error",
                "≤ 1 (criterion)",
                mean_spread([h / m for h, m in zip(hyper, mid)]),
            ),
        ]
        held &= all(h <= 0.1 * e and h <= m for h, e, m in zip(hyper, euler, mid))
    rows.append(
        Row(
            "fitting g_ω (L-BFGS): CPU time, pendulum / neural ODE",
            "—",
            f"{mean_spread(col('pendulum_fit_cpu_seconds'), unit='s')} / "
            f"{mean_spread(col('neural_ode_fit_cpu_seconds'), unit='s')}",
        )
    )
    return Outcome(
        rows=rows,
        criterion_met=held,
        details={"steps": steps},
        figures=[
            p for n in ("pendulum", "neural_ode") if (p := ctx.out / f"pareto-{n}.png").exists()
        ],
    )


ENTRY = Entry(
    name="hypersolvers",
    title="Hypersolvers: HyperEuler against Euler, Midpoint, RK4 and Dopri5",
    paper=(
        "Poli, Massaroli, Yamashita, Asama & Park (2020). Hypersolvers: toward fast "
        "continuous-depth models. NeurIPS."
    ),
    paper_result=(
        "HyperEuler reaches the accuracy of higher-order solvers at a fraction of their cost on "
        "trained neural ODEs (Pareto fronts of error against evaluations)"
    ),
    data=(
        "generated: a damped pendulum, and a neural ODE trained here on the cubic oscillator's "
        "flow map; initial states drawn uniformly from a box"
    ),
    criterion=(
        "on both fields and every seed, HyperEuler's terminal error with K = 10 steps is <= 0.1x "
        "Euler's with K steps and <= Midpoint's with K steps"
    ),
    run=run,
    summarise=summarise,
    seeds=3,
    extras=("matplotlib",),
)
