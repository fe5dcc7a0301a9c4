"""The convergence test (Queiruga et al. 2020; Krishnapriyan, Queiruga, Erichson & Mahoney 2023):
evaluate a trained continuous-depth model on many graphs — solvers and step counts — without
retraining, and tell a continuous model (refining the steps does not hurt) from a discrete one
(it learned a map tied to its training step, and refining makes it worse)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..nn import Discretisation, discretised, neural_odes
from ..solvers import RK4, AbstractSolver, Euler, Midpoint

__all__ = ["ConvergencePoint", "ConvergenceResult", "convergence_test"]

#: the default step counts: doubling, from one step to 64
DEFAULT_STEPS = (1, 2, 4, 8, 16, 32, 64)
#: differences between resolutions below this many ulps of the outputs' size are rounding noise
_NOISE_ULPS = 100
#: the observed order is fitted to the finest this many differences above the noise
_ORDER_PAIRS = 3


@dataclass(frozen=True)
class ConvergencePoint:
    """One evaluation of the model: a solver and a step count.

    Attributes:
        solver: the solver's name.
        steps: equal steps over the span.
        h: the step size, ``|t1 - t0| / steps``.
        error: the error against the data (the test's metric), ``nan`` without data.
        distance: the RMS difference of the outputs from the same solver's finest resolution.
        nfe: vector-field evaluations of the solve(s) in the model.
    """

    solver: str
    steps: int
    h: float
    error: float
    distance: float
    nfe: int


@dataclass(frozen=True)
class ConvergenceResult:
    """What :func:`convergence_test` found.

    Attributes:
        points: one :class:`ConvergencePoint` per (solver, steps).
        orders: per solver, the observed order of convergence of the outputs: the least-squares
            slope of ``log |y_h - y_{h'}|`` (successive resolutions) against ``log h``; ``nan``
            when the differences are all at rounding level.
        trained: the discretisation the model was evaluated with first (its own: the training
            one), e.g. ``"Euler, 4 steps"``.
        trained_error: the error at that discretisation.
        limit_error: the error at the finest step of the highest-order solver: the error of the
            ODE the network defines, not of one graph of it.
        verdict: ``"continuous"`` (refining does not make the error worse beyond the
            tolerance), ``"discrete"`` (it does), or ``None`` without data.
        metric: the name of the error (``"error rate"``, ``"RMSE"`` or the function's name).
        tolerance, atol: the verdict's relative and absolute slack:
            continuous ⇔ ``limit_error <= trained_error · (1 + tolerance) + atol``.
    """

    points: list[ConvergencePoint]
    orders: dict[str, float]
    trained: str
    trained_error: float
    limit_error: float
    verdict: str | None
    metric: str
    tolerance: float
    atol: float
    span: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def solvers(self) -> list[str]:
        """The solvers' names, in the order tested."""
        return list(dict.fromkeys(p.solver for p in self.points))

    def curve(self, solver: str, quantity: str = "error") -> tuple[list[float], list[float]]:
        """``(h, values)`` of one solver, ``quantity`` being ``"error"`` or ``"distance"``."""
        chosen = [p for p in self.points if p.solver == solver]
        if not chosen:
            raise ValueError(f"no solver named {solver!r} was tested; tested: {self.solvers}")
        return [p.h for p in chosen], [getattr(p, quantity) for p in chosen]

    @property
    def ratio(self) -> float:
        """``limit_error / trained_error``: above 1, refining hurt."""
        if self.trained_error == 0:
            return math.inf if self.limit_error > 0 else 1.0
        return self.limit_error / self.trained_error

    def table(self) -> str:
        """The points as a Markdown table, then the orders and the verdict."""
        lines = [
            f"| solver | steps | h | {self.metric} | distance to finest | nfe |",
            "|---|---|---|---|---|---|",
        ]
        for p in self.points:
            lines.append(
                f"| {p.solver} | {p.steps} | {p.h:.4g} | {p.error:.4g} | {p.distance:.3g} "
                f"| {p.nfe} |"
            )
        orders = ", ".join(f"{name} {order:.2f}" for name, order in self.orders.items())
        lines += [
            "",
            f"Observed orders: {orders}.",
            f"Trained ({self.trained}): {self.metric} {self.trained_error:.4g}; refined limit: "
            f"{self.limit_error:.4g} (x{self.ratio:.3g}). Verdict: **{self.verdict}**.",
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain numbers and strings (for JSON)."""
        out = asdict(self)
        out["ratio"] = self.ratio
        return out

    def plot(self, title: str | None = None) -> Any:
        """A matplotlib figure: the error against the data per step size (left) and the
        distance to the finest resolution with the observed orders (right); the trained
        discretisation is circled."""
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for name in self.solvers:
            hs, errors = self.curve(name)
            (line,) = left.plot(hs, errors, "o-", label=name)
            hs_d, distances = self.curve(name, "distance")
            keep = [(h, d) for h, d in zip(hs_d, distances) if d > 0]
            if keep:
                order = self.orders.get(name, math.nan)
                label = f"{name} (order {order:.2f})" if math.isfinite(order) else name
                right.plot(*zip(*keep), "o-", color=line.get_color(), label=label)
        trained = self.extra.get("trained_h")
        if trained is not None:
            left.plot([trained], [self.trained_error], "ko", mfc="none", ms=14, label="as trained")
        left.axhline(self.limit_error, color="grey", lw=0.8, ls="--")
        for ax, ylabel in ((left, f"{self.metric} against the data"), (right, "distance")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("step size h")
            ax.set_ylabel(ylabel)
            ax.invert_xaxis()
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        right.set_title("distance to the finest resolution")
        left.set_title(title or f"verdict: {self.verdict}")
        fig.tight_layout()
        return fig


def convergence_test(
    model: nn.Module,
    inputs: Any,
    targets: torch.Tensor | None = None,
    *,
    solvers: Sequence[AbstractSolver] = (Euler(), Midpoint(), RK4()),
    steps: Sequence[int] = DEFAULT_STEPS,
    error: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
    tolerance: float = 0.5,
    atol: float = 0.0,
) -> ConvergenceResult:
    """Evaluate a trained continuous-depth model at several solvers and step counts, without
    retraining, and say whether it learned a continuous model.

    A network trained through a solver at a coarse step may have learned a *discrete* map: it
    fits the data at that step, but the ODE its vector field defines does not, so refining the
    steps (which converges to that ODE) makes the error worse. A *continuous* model's error
    settles or falls as the steps are refined, whatever the solver (Queiruga, Erichson, Taylor &
    Mahoney 2020, *Continuous-in-depth neural networks*; Krishnapriyan, Queiruga, Erichson &
    Mahoney 2023, *Learning continuous models for continuous physics*). The outputs of every
    solver converge as ``h → 0`` at the solver's order in either case — that is numerics, not
    learning; the question is whether the limit fits the data.

    The model is evaluated in ``torch.no_grad()`` first with its own discretisation (the
    trained one), then with every solver and step count, by swapping the discretisation of every
    :class:`~torchnde.nn.NeuralODE` inside it (:func:`~torchnde.nn.discretised`); its train/eval
    mode is left as it is (call ``model.eval()`` first if it has dropout or batch norm).

    Args:
        model: a :class:`~torchnde.nn.NeuralODE`, or a module holding one or more (an encoder,
            the ODE block, a head); called as ``model(inputs)``.
        inputs: the model's input.
        targets: the data the outputs should match; integer labels make the default error the
            classification error rate, real targets the RMSE. ``None``: no verdict, only the
            distances and orders.
        solvers: the fixed-step solvers to sweep.
        steps: the step counts to sweep (increasing).
        error: ``error(outputs, targets) -> float`` in place of the default.
        tolerance: the relative slack of the verdict (0.5: the limit may be 50 % worse than the
            trained error and still count as continuous).
        atol: the absolute slack, for errors so small that their ratio means little.

    Returns:
        A :class:`ConvergenceResult`; ``result.table()``, ``result.plot()``.

    Raises:
        ValueError: ``model`` holds no NeuralODE, or bad ``steps``/``solvers``/``tolerance``.

    Example:
        >>> result = convergence_test(classifier, x_test, y_test, steps=(4, 8, 16, 32, 64))
        >>> result.verdict, result.orders
        ('continuous', {'Euler': 1.01, 'Midpoint': 2.0, 'RK4': 3.97})
    """
    layers = neural_odes(model)
    if not layers:
        raise ValueError(
            f"`model` ({type(model).__name__}) holds no torchnde.nn.NeuralODE, so it has no "
            "discretisation to vary"
        )
    steps = _check_steps(steps)
    solvers = _check_solvers(solvers)
    if not (isinstance(tolerance, int | float) and tolerance >= 0):
        raise ValueError(f"`tolerance` must be a number >= 0, got {tolerance!r}")
    if not (isinstance(atol, int | float) and atol >= 0):
        raise ValueError(f"`atol` must be a number >= 0, got {atol!r}")
    metric, error_fn = _error_function(error, targets)
    span = abs(layers[0].t1 - layers[0].t0)

    with torch.no_grad():
        trained_out = model(inputs)
        trained_error = error_fn(trained_out, targets) if targets is not None else math.nan
        trained = layers[0].discretisation
        outputs = {}
        nfes = {}
        for solver in solvers:
            for n in steps:
                with discretised(model, solver, steps=n):
                    outputs[type(solver).__name__, n] = model(inputs).detach()
                    nfes[type(solver).__name__, n] = sum(
                        int(layer.last_stats.get("nfe", torch.tensor(0)).sum()) for layer in layers
                    )

    points, orders = [], {}
    for solver in solvers:
        name = type(solver).__name__
        finest = outputs[name, steps[-1]]
        for n in steps:
            out = outputs[name, n]
            e = error_fn(out, targets) if targets is not None else math.nan
            points.append(ConvergencePoint(name, n, span / n, e, _rms(out - finest), nfes[name, n]))
        orders[name] = _observed_order([outputs[name, n] for n in steps], [span / n for n in steps])
    best = max(solvers, key=lambda s: s.order)
    limit_error = next(
        p.error for p in points if p.solver == type(best).__name__ and p.steps == steps[-1]
    )
    verdict = None
    if targets is not None:
        continuous = limit_error <= trained_error * (1 + tolerance) + atol
        verdict = "continuous" if continuous else "discrete"
    return ConvergenceResult(
        points=points,
        orders=orders,
        trained=trained.describe(),
        trained_error=float(trained_error),
        limit_error=float(limit_error),
        verdict=verdict,
        metric=metric,
        tolerance=float(tolerance),
        atol=float(atol),
        span=span,
        extra={"trained_h": _trained_h(trained, span)},
    )


def _check_steps(steps: Sequence[int]) -> list[int]:
    steps = list(steps)
    if len(steps) < 2 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in steps):
        raise ValueError(f"`steps` must be at least two ints >= 1, got {steps!r}")
    if steps != sorted(set(steps)):
        raise ValueError(f"`steps` must be strictly increasing, got {steps!r}; sort it")
    return steps


def _check_solvers(solvers: Sequence[AbstractSolver]) -> list[AbstractSolver]:
    solvers = list(solvers)
    if not solvers:
        raise ValueError("`solvers` is empty; give e.g. (Euler(), Midpoint(), RK4())")
    for s in solvers:
        Discretisation(s, steps=1)  # a fixed-step solver instance, or a clear error
    names = [type(s).__name__ for s in solvers]
    if len(set(names)) != len(names):
        raise ValueError(f"`solvers` holds a solver twice: {names}")
    return solvers


def _error_function(error, targets) -> tuple[str, Callable[[torch.Tensor, torch.Tensor], float]]:
    if error is not None:
        if not callable(error):
            raise TypeError(f"`error` must be callable error(outputs, targets), got {error!r}")
        return getattr(error, "__name__", "error"), lambda out, tgt: float(error(out, tgt))
    if targets is not None and not targets.is_floating_point():
        return "error rate", _error_rate
    return "RMSE", lambda out, tgt: _rms(out - tgt)


def _error_rate(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=-1) != labels).double().mean())


def _rms(x: torch.Tensor) -> float:
    return float(x.double().square().mean().sqrt())


def _observed_order(outputs: list[torch.Tensor], hs: list[float]) -> float:
    """The slope of log |y_k - y_{k+1}| against log h_k over the finest pairs above rounding
    noise."""
    scale = max(_rms(outputs[-1]), 1e-300)
    noise = _NOISE_ULPS * torch.finfo(outputs[-1].dtype).eps * scale
    xs, ys = [], []
    for k in range(len(outputs) - 1):
        d = _rms(outputs[k] - outputs[k + 1])
        if d > noise:
            xs.append(math.log(hs[k]))
            ys.append(math.log(d))
    xs, ys = xs[-_ORDER_PAIRS:], ys[-_ORDER_PAIRS:]  # the finest: the asymptotic regime
    if len(xs) < 2:
        return math.nan
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def _trained_h(trained: Discretisation, span: float) -> float | None:
    if trained.steps is not None:
        return span / trained.steps
    if trained.dt0 is not None and not trained.adaptive:
        return trained.dt0
    return None
