"""The figures of a run folder, drawn with matplotlib's Agg backend (no screen needed) and
written atomically as PNG files.

Each ``plot_*`` function takes a :class:`DiscoveryResult` and returns a matplotlib ``Figure`` (or
``None`` when the result holds nothing to draw); :func:`write_plots` saves them all.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..training import atomic_write_bytes
from ._result import DiscoveryResult

__all__ = [
    "PLOTS",
    "plot_fit",
    "plot_forecast",
    "plot_losses",
    "plot_phase",
    "plot_terms",
    "write_plots",
]

#: a fixed colour per model, so every figure reads the same way
COLOURS = {"truth": "black", "hybrid": "tab:blue", "recovered": "tab:green", "blackbox": "tab:red"}
LABELS = {
    "truth": "truth",
    "hybrid": "hybrid model (physics + networks)",
    "recovered": "recovered equations",
    "blackbox": "black-box neural ODE",
}
DPI = 110


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "the run folder's plots need matplotlib; install it with "
            "`pip install 'torchnde[cli]'` (or `pip install matplotlib`)"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _numpy(x: torch.Tensor) -> Any:
    return x.detach().cpu().double().numpy()


def _state_axes(plt: Any, count: int, title: str) -> tuple[Any, list[Any]]:
    figure, axes = plt.subplots(
        count, 1, figsize=(8, 2.4 * count + 0.8), sharex=True, squeeze=False
    )
    figure.suptitle(title)
    return figure, list(axes[:, 0])


def plot_fit(result: DiscoveryResult) -> Any:
    """The hybrid model's fitted trajectory beside the observations on the training window (and
    the true trajectory when the data are synthetic)."""
    plt = _pyplot()
    obs = result.observations
    states = obs.states
    figure, axes = _state_axes(plt, len(states), "Fit on the training window")
    forecast = result.forecast
    inside = forecast.ts <= forecast.train_end
    for j, (state, ax) in enumerate(zip(states, axes)):
        ax.plot(_numpy(obs.ts), _numpy(obs.ys[:, j]), "o", ms=3, color="0.45", label="observations")
        if forecast.truth is not None:
            ax.plot(
                _numpy(forecast.ts[inside]),
                _numpy(forecast.truth[inside, j]),
                "--",
                color=COLOURS["truth"],
                lw=1,
                label=LABELS["truth"],
                zorder=5,
            )
        if result.trajectory.numel():
            ax.plot(
                _numpy(result.trajectory_ts),
                _numpy(result.trajectory[:, j]),
                color=COLOURS["hybrid"],
                label="hybrid model, windows' fitted solutions",
            )
        ax.set_ylabel(state)
    axes[-1].set_xlabel("time")
    axes[0].legend(loc="best", fontsize="small")
    figure.tight_layout()
    return figure


def plot_phase(result: DiscoveryResult) -> Any:
    """Phase portraits (state against state, for up to three pairs) of the truth, every model's
    forecast and the observations."""
    plt = _pyplot()
    obs = result.observations
    pairs = list(itertools.combinations(range(len(obs.states)), 2))[:3]
    if not pairs:
        return None
    figure, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4.6), squeeze=False)
    figure.suptitle("Phase portrait")
    forecast = result.forecast
    for (i, j), ax in zip(pairs, axes[0]):
        ax.plot(
            _numpy(obs.ys[:, i]),
            _numpy(obs.ys[:, j]),
            "o",
            ms=2.5,
            color="0.6",
            label="observations",
        )
        if forecast.truth is not None:
            ax.plot(
                _numpy(forecast.truth[:, i]),
                _numpy(forecast.truth[:, j]),
                "--",
                color=COLOURS["truth"],
                lw=1.2,
                label=LABELS["truth"],
                zorder=5,
            )
        for name, prediction in forecast.predictions.items():
            ax.plot(
                _numpy(prediction[:, i]),
                _numpy(prediction[:, j]),
                color=COLOURS.get(name),
                lw=1,
                label=LABELS.get(name, name),
            )
        ax.set_xlabel(obs.states[i])
        ax.set_ylabel(obs.states[j])
    axes[0, 0].legend(loc="best", fontsize="small")
    figure.tight_layout()
    return figure


def term_curves(result: DiscoveryResult) -> dict[str, dict[str, Any]]:
    """Per network, on the sampled states: ``{"ts", "learned", "in_equation", "recovered",
    "truth"}`` (numpy arrays; None when unavailable).

    ``learned`` is the network's output alone. Where the regression absorbed a learnable
    parameter's term (``- theta*y`` beside ``NN2(x, y)``), the network and that term are only
    determined together, so the network alone need not match the recovered law or the truth;
    ``in_equation`` is the network as it enters its equation once the parameter takes its
    recovered value, ``NN + n (p_hybrid - p_recovered) m / c`` for a term ``n·p·m`` beside
    ``c·NN``: the curve the recovered law and the truth are comparable to."""
    from ..discovery import SparseExpression

    ts = result.trajectory_ts
    ys = result.trajectory
    hybrid = result.fits.get("hybrid")
    learned: dict[str, torch.Tensor] = {}
    if hybrid is not None and hasattr(hybrid.model, "network_outputs") and ys.numel():
        with torch.no_grad():
            learned = hybrid.model.network_outputs(ts.to(ys.dtype), ys)
    inputs = {state: ys[:, j] for j, state in enumerate(result.observations.states)}
    inputs[result.spec.system.time] = ts.to(ys.dtype)
    curves = {}
    for network, recovery in result.recoveries.items():
        expression = recovery.expression
        variables = expression.variables
        with torch.no_grad():
            recovered = expression({v: inputs[v] for v in variables})
            truth = None
            if recovery.truth is not None:
                truth = SparseExpression(recovery.truth, variables)(
                    {v: inputs[v] for v in variables}
                )
        in_equation = _in_equation(result, recovery, learned.get(network), inputs)
        curves[network] = {
            "ts": _numpy(ts),
            "learned": _numpy(learned[network]) if network in learned else None,
            "in_equation": None if in_equation is None else _numpy(in_equation),
            "recovered": _numpy(torch.as_tensor(recovered).expand_as(ts)),
            "truth": None if truth is None else _numpy(torch.as_tensor(truth).expand_as(ts)),
            "equation": recovery.equation,
            "arguments": variables,
        }
    return curves


def _in_equation(result: DiscoveryResult, recovery, learned, inputs) -> torch.Tensor | None:
    """The network plus the absorbed terms' shift to their recovered parameters (or None when
    nothing was absorbed)."""
    from ..discovery import SparseExpression

    if learned is None or not recovery.absorbed_terms or not recovery.factor:
        return None
    hybrid = result.parameters.get("hybrid", {})
    out = learned.clone()
    variables = recovery.expression.variables
    for parameter, (number, monomial) in recovery.absorbed_terms.items():
        if parameter not in hybrid or parameter not in recovery.absorbed:
            return None
        shift = number * (hybrid[parameter] - recovery.absorbed[parameter]) / recovery.factor
        term = SparseExpression({monomial: 1.0}, variables)({v: inputs[v] for v in variables})
        out = out + shift * torch.as_tensor(term).expand_as(out)
    return out


def plot_terms(result: DiscoveryResult) -> Any:
    """Each unknown term on the sampled states (the windows' fitted solutions), against time:
    the network as it enters its equation (with the terms the regression absorbed moved in, so
    it is comparable to the law), the network alone when that differs, the recovered closed
    form, and the true term when it is known."""
    if not result.recoveries or not result.trajectory.numel():
        return None
    plt = _pyplot()
    curves = term_curves(result)
    figure, axes = _state_axes(plt, len(curves), "Unknown terms on the windows' fitted solutions")
    for (network, curve), ax in zip(curves.items(), axes):
        recovery = result.recoveries[network]
        if curve["truth"] is not None:
            ax.plot(curve["ts"], curve["truth"], "--", color="black", lw=1.2, label="true term")
        if curve["in_equation"] is not None:
            absorbed = ", ".join(f"{k} = {v:.4g}" for k, v in recovery.absorbed.items())
            ax.plot(
                curve["ts"],
                curve["learned"],
                color=COLOURS["hybrid"],
                lw=1,
                alpha=0.35,
                label="network alone (beside the hybrid model's parameters)",
            )
            ax.plot(
                curve["ts"],
                curve["in_equation"],
                color=COLOURS["hybrid"],
                lw=2,
                alpha=0.7,
                label=f"network as in its equation with {absorbed}",
            )
        elif curve["learned"] is not None:
            ax.plot(
                curve["ts"],
                curve["learned"],
                color=COLOURS["hybrid"],
                lw=2,
                alpha=0.7,
                label="network (learned)",
            )
        ax.plot(
            curve["ts"],
            curve["recovered"],
            ":",
            color=COLOURS["recovered"],
            lw=2,
            label="recovered",
        )
        call = (
            f"{network}({', '.join(curve['arguments'])})"
            if "[" not in network
            else network.replace("[", f"({', '.join(curve['arguments'])})[")
        )
        ax.set_ylabel(call)
        ax.set_title(
            f"{call} = {recovery.expression}  (in d{curve['equation']}/dt)", fontsize="small"
        )
    axes[-1].set_xlabel("time")
    for ax in axes:
        ax.legend(loc="best", fontsize="x-small")
    figure.tight_layout()
    return figure


def plot_forecast(result: DiscoveryResult) -> Any:
    """Every model solved from the first observation well past the training window, beside the
    truth; the training window is shaded."""
    plt = _pyplot()
    forecast = result.forecast
    obs = result.observations
    figure, axes = _state_axes(plt, len(obs.states), "Forecast past the training window")
    ts = _numpy(forecast.ts)
    for j, (state, ax) in enumerate(zip(obs.states, axes)):
        ax.axvspan(float(forecast.ts[0]), forecast.train_end, color="0.92", label="training window")
        ax.plot(
            _numpy(obs.ts), _numpy(obs.ys[:, j]), "o", ms=2.5, color="0.55", label="observations"
        )
        if forecast.truth is not None:
            ax.plot(
                ts,
                _numpy(forecast.truth[:, j]),
                "--",
                color=COLOURS["truth"],
                lw=1.2,
                label=LABELS["truth"],
                zorder=5,
            )
        for name, prediction in forecast.predictions.items():
            ax.plot(
                ts,
                _numpy(prediction[:, j]),
                color=COLOURS.get(name),
                lw=1.2,
                label=LABELS.get(name, name),
            )
        ax.set_ylabel(state)
    axes[-1].set_xlabel("time")
    axes[0].legend(loc="best", fontsize="small")
    figure.tight_layout()
    return figure


def plot_losses(result: DiscoveryResult) -> Any:
    """The training loss at every optimiser step of every model (log scale)."""
    losses = {name: fit.losses for name, fit in result.fits.items() if fit.losses}
    if not losses:
        return None
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 4))
    for name, values in losses.items():
        finite = [(i, v) for i, v in enumerate(values, start=1) if math.isfinite(v) and v > 0]
        if finite:
            steps, values = zip(*finite)
            ax.plot(steps, values, color=COLOURS.get(name), label=LABELS.get(name, name))
    ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    ax.legend(loc="best", fontsize="small")
    figure.tight_layout()
    return figure


#: file name -> (what it shows, how to draw it)
PLOTS: dict[str, tuple[str, Callable[[DiscoveryResult], Any]]] = {
    "fit.png": ("fit of the hybrid model on the training window", plot_fit),
    "phase.png": ("phase portrait", plot_phase),
    "terms.png": ("learned vs recovered vs true unknown terms", plot_terms),
    "forecast.png": ("forecast of every model, training window shaded", plot_forecast),
    "losses.png": ("training loss per step", plot_losses),
}


def write_plots(result: DiscoveryResult, run_dir: str | Path) -> dict[str, Path]:
    """Draws every figure of :data:`PLOTS` that has something to show and writes it atomically
    into ``run_dir``.

    Returns:
        file name -> path of each PNG written.
    """
    plt = _pyplot()
    run_dir = Path(run_dir)
    written = {}
    for name, (_, draw) in PLOTS.items():
        figure = draw(result)
        if figure is None:
            continue
        buffer = io.BytesIO()
        try:
            figure.savefig(buffer, format="png", dpi=DPI)
        finally:
            plt.close(figure)
        written[name] = atomic_write_bytes(run_dir / name, buffer.getvalue())
    return written
