"""The discovery workflow: fit a hybrid model through the solver, recover closed forms for its
networks by sparse regression, refit the recovered equations on the data, and forecast.

Every training phase runs in :class:`torchnde.training.Trainer`: with a run folder it checkpoints
and resumes bitwise; under ``torchrun`` it is data-parallel over the trajectory windows. The
phases between trainings (the regression, the forecast) are deterministic functions of the trained
models, so a resumed run recomputes them exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import sympy
import torch
from sympy.core.function import AppliedUndef
from torch import nn

from .. import solvers as _solvers
from .._saveat import SaveAt
from .._solve import solve
from ..controllers import ConstantStepSize, PIDController
from ..terms import ODETerm
from ..training import Stage, Trainer, WindowSampler, seed_everything
from ._equations import parse_expression
from ._model import MLP, HybridModel
from ._result import DiscoveryResult, Forecast, ModelFit, Recovery
from ._simulate import true_trajectory
from ._spec import Observations, RunSpec, TrainingSpec

__all__ = ["discover", "solver_by_name"]

_SOLVERS = {
    "euler": _solvers.Euler,
    "midpoint": _solvers.Midpoint,
    "heun": _solvers.Heun,
    "ralston": _solvers.Ralston,
    "heun3": _solvers.Heun3,
    "rk4": _solvers.RK4,
    "rk38": _solvers.RK38,
    "bosh3": _solvers.Bosh3,
    "dopri5": _solvers.Dopri5,
    "tsit5": _solvers.Tsit5,
    "dopri8": _solvers.Dopri8,
}


def solver_by_name(name: str) -> _solvers.AbstractSolver:
    """A solver instance from its lower-case name (``rk4``, ``tsit5``, ``dopri5``, …)."""
    key = str(name).lower()
    if key not in _SOLVERS:
        raise ValueError(f"unknown solver {name!r}; choose one of {', '.join(_SOLVERS)}")
    return _SOLVERS[key]()


# ------------------------------------------------------------------------------------------------
# training windows


class _Windows:
    """Consecutive runs of ``window`` observations, each solved from its first one.

    With a regular time grid and equations that do not depend on time, every window shares the
    same relative times and the batch is one problem (the fast, unbatched path of ``solve``);
    otherwise each window is its own problem (``batch_axis=0``) with its own times.
    """

    def __init__(self, obs: Observations, spec: TrainingSpec, autonomous: bool):
        ts, ys = obs.ts, obs.ys
        count = ts.shape[0]
        width = min(spec.window, count)
        if width < 2:
            raise ValueError(f"`training.window` must be at least 2, got {spec.window}")
        starts = [i for i in range(count - width + 1) if bool(torch.isfinite(ys[i]).all())]
        if not starts:
            raise ValueError(
                "no training window starts at a fully observed time; fill in missing values at "
                "some times or shorten `training.window`"
            )
        self.starts = torch.tensor(starts)
        self.width = width
        index = self.starts[:, None] + torch.arange(width)  # (windows, width)
        self.y0 = ys[self.starts]  # (windows, states)
        self.target = ys[index]  # (windows, width, states)
        self.mask = torch.isfinite(self.target)
        self.target = torch.nan_to_num(self.target)
        self.times = ts[index]  # (windows, width)
        spacing = ts.diff()
        regular = bool((spacing - spacing.mean()).abs().max() <= 1e-9 * float(ts[-1] - ts[0]))
        self.shared = regular and autonomous
        self.scale = torch.nan_to_num(ys.abs(), nan=0.0).amax(dim=0).clamp(min=1e-12)
        self.solver = solver_by_name(spec.solver)
        median = float(spacing.median())
        if self.solver.error_order is None:
            self.controller = ConstantStepSize()
            self.dt0 = float(spec.dt) if spec.dt is not None else median
        else:
            self.controller = PIDController(rtol=spec.rtol, atol=spec.atol)
            self.dt0 = None

    @property
    def count(self) -> int:
        return int(self.starts.shape[0])

    def predict(self, field: nn.Module, y0: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Each window's solution at its observation times, ``(len(idx), width, states)``."""
        times = self.times[idx]
        if self.shared:
            rel = times[0] - times[0, 0]
            sol = solve(
                ODETerm(field),
                self.solver,
                0.0,
                float(rel[-1]),
                y0,
                dt0=self.dt0,
                controller=self.controller,
                saveat=SaveAt(ts=rel),
                throw=False,
            )
            return sol.ys.transpose(0, 1)
        sol = solve(
            ODETerm(field),
            self.solver,
            times[:, 0],
            times[:, -1],
            y0,
            dt0=self.dt0,
            controller=self.controller,
            saveat=SaveAt(ts=times),
            throw=False,
            batch_axis=0,
        )
        return sol.ys

    def loss(self, field: nn.Module, y0: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Mean squared error over the observed values, each state scaled by its size; a window
        whose solve failed counts as a large error with no gradient (so a line search backs off)."""
        pred = self.predict(field, y0, idx)
        target, mask = self.target[idx], self.mask[idx]
        if not bool(torch.isfinite(pred).all()):
            # no gradient through a blown-up solve (it would be NaN): a large loss whose
            # gradient is zero, so an L-BFGS line search backs off and Adam stands still
            anchor = sum(p.sum() for p in field.parameters()) + y0.sum()
            return anchor * 0 + 1e6
        err = ((pred - target) / self.scale) ** 2
        return (err * mask).sum() / mask.sum().clamp(min=1)


class _Fit(nn.Module):
    """What a training phase optimises: a vector field, and with multiple shooting the windows'
    initial states."""

    def __init__(self, field: nn.Module, windows: _Windows, shooting: bool):
        super().__init__()
        self.field = field
        self.shooting = shooting
        if shooting:
            self.starts = nn.Parameter(windows.y0.clone())
        else:
            self.register_buffer("starts", windows.y0.clone())


def _stages(adam: int, lr: float, lbfgs: int, patience: int | None) -> list[Stage]:
    stages = []
    if adam:
        stages.append(Stage("adam", steps=adam, lr=lr, patience=patience))
    if lbfgs:
        stages.append(Stage("lbfgs", steps=lbfgs, lr=1.0, patience=patience))
    return stages


@dataclass
class _Context:
    spec: RunSpec
    windows: _Windows
    run_dir: Path | None
    resume: bool
    progress: bool
    log: Callable[[str], None]


def _train(
    ctx: _Context,
    name: str,
    field: nn.Module,
    stages: list[Stage],
    windows: _Windows | None = None,
    shooting: bool | None = None,
    quiet: bool = False,
) -> tuple[ModelFit, torch.Tensor]:
    """Train ``field`` on ``windows`` (default: the context's); returns the fit and the windows'
    initial states (learnt with ``shooting``, else the observations)."""
    windows = windows or ctx.windows
    shooting = ctx.spec.training.multiple_shooting if shooting is None else shooting
    fit = _Fit(field, windows, shooting)

    def loss_fn(model: _Fit, idx: torch.Tensor) -> torch.Tensor:
        return windows.loss(model.field, model.starts[idx], idx)

    trainer = Trainer(
        fit,
        loss_fn,
        stages,
        sampler=WindowSampler(windows.count, ctx.spec.training.batch_size, seed=ctx.spec.seed),
        checkpoint_dir=None if ctx.run_dir is None else ctx.run_dir / "checkpoints" / name,
        checkpoint_every=ctx.spec.training.checkpoint_every,
        seed=ctx.spec.seed,
        progress=ctx.progress and not quiet,
        name=name,
    )
    if not quiet:
        ctx.log(
            f"training the {name} model: {', '.join(f'{s.steps} {s.optimizer}' for s in stages)}"
        )
    result = trainer.fit(resume=ctx.resume and ctx.run_dir is not None)
    if result.losses and not quiet:
        ctx.log(f"  {name}: loss {result.losses[0]:.3g} -> {result.losses[-1]:.3g}")
    model_fit = ModelFit(name, field, list(result.losses), float(result.wall_time))
    return model_fit, fit.starts.detach()


# ------------------------------------------------------------------------------------------------
# recovery


def _trajectory(model: nn.Module, obs: Observations, y0: torch.Tensor, samples: int):
    """The fitted model's own solution over the observed window at ``samples`` times."""
    ts = torch.linspace(float(obs.ts[0]), float(obs.ts[-1]), samples, dtype=obs.ts.dtype)
    with torch.no_grad():
        sol = solve(
            ODETerm(model),
            _solvers.Dopri5(),
            float(ts[0]),
            float(ts[-1]),
            y0,
            controller=PIDController(rtol=1e-8, atol=1e-10),
            saveat=SaveAt(ts=ts),
            throw=False,
            max_steps=100_000,
        )
    ys = sol.ys
    keep = torch.isfinite(ys).all(dim=1)
    return ts[keep], ys[keep]


@dataclass
class _Absorbable:
    """A term ``number · parameter · monomial`` of the equation of a single network."""

    parameter: str
    number: float
    monomial: sympy.Expr


def _split_equation(parsed, state: str, network: str, variables: list[str], degree: int):
    """``(c, absorbable)`` where the equation of ``state`` is ``c·network(...) + Σ absorbable +
    rest``; ``c`` is None when the network's term is not a number times the call."""
    expr = sympy.expand(parsed.equations[state])
    call = next(c for c in expr.atoms(AppliedUndef) if c.func.__name__ == network)
    c = sympy.simplify(expr.coeff(call))
    if c.free_symbols or c == 0:
        return None, []
    absorbable = []
    variable_symbols = {parsed.symbols[v] for v in variables}
    for term in sympy.Add.make_args(expr):
        if term.has(AppliedUndef):
            continue
        params = [p for p in parsed.spec.parameters if term.has(parsed.symbols[p])]
        if len(params) != 1:
            continue
        p = parsed.symbols[params[0]]
        rest = sympy.simplify(term / p)
        if rest.has(p):
            continue
        number, monomial = rest.as_coeff_Mul()
        if not (monomial.free_symbols <= variable_symbols) or not monomial.is_polynomial():
            continue
        poly = (
            sympy.Poly(monomial, *sorted(variable_symbols, key=str))
            if monomial.free_symbols
            else None
        )
        if poly is not None and (len(poly.terms()) != 1 or poly.total_degree() > degree):
            continue
        absorbable.append(_Absorbable(params[0], float(number), monomial))
    return float(c), absorbable


def _truth_terms(parsed, obs: Observations, state: str, network: str, variables, c, absorbable):
    """The true unknown term of ``network`` (as ``{term: coefficient}``) and the true values of the
    absorbed parameters, read off the generating equations; ``(None, {})`` if unknown."""
    from ..discovery import as_terms

    truth = obs.truth
    if truth is None or state not in truth.equations or c is None:
        return None, {}
    try:
        symbols = {
            **parsed.symbols,
            **{k: sympy.Symbol(k, real=True) for k in truth.parameters},
        }
        true_rhs = parse_expression(
            truth.equations[state],
            f"the true equation for `{state}`",
            symbols,
            allow_networks=False,
        ).subs({symbols[k]: float(v) for k, v in truth.parameters.items()})
        constants = {parsed.symbols[k]: float(v) for k, v in parsed.spec.constants.items()}
        hybrid = sympy.expand(parsed.equations[state].subs(constants))
        known = sum(
            (
                t
                for t in sympy.Add.make_args(hybrid)
                if not t.has(AppliedUndef)
                and not any(t.has(parsed.symbols[p]) for p in parsed.spec.parameters)
            ),
            sympy.Integer(0),
        )
        unknown = sympy.expand(true_rhs - known)  # = c·NN + Σ n·p·m, at the truth
        terms = as_terms(unknown, variables)
        true_params = {}
        for a in absorbable:
            key = str(a.monomial) if a.monomial != 1 else "1"
            coefficient = terms.pop(key, 0.0)
            true_params[a.parameter] = coefficient / a.number
        return {k: v / c for k, v in terms.items()}, true_params
    except Exception:
        return None, {}


def _recover(ctx: _Context, model: HybridModel, traj_ts, traj, obs: Observations, threshold: float):
    """Sparse regression of every network along the fitted trajectory. Returns the recoveries
    (before refitting), the parameter values they imply, and the true parameters."""
    from ..discovery import SparseExpression, sparse_regression

    spec = ctx.spec.discovery
    parsed = model.parsed
    env = {parsed.spec.time: traj_ts, **dict(zip(model.states, traj.unbind(-1)))}
    with torch.no_grad():
        outputs = model.network_outputs(traj_ts, traj)
    params = model.parameter_values()
    recoveries, implied, true_params = {}, {}, {}
    for network, args in parsed.networks.items():
        variables = list(args)
        owners = parsed.network_equations(network)
        c, absorbable = (None, [])
        if owners:
            c, absorbable = _split_equation(parsed, owners[0], network, variables, spec.degree)
        if len(owners) > 1:  # the network must fit every equation: nothing can be absorbed
            absorbable = []
        scale = 1.0 if c is None else c
        target = scale * outputs[network]
        for a in absorbable:
            target = target + a.number * params[a.parameter] * _monomial(a.monomial, env)
        inputs = {v: env[v] for v in variables}
        library = None if spec.library is None else list(spec.library)
        if library is not None:  # the absorbed monomials must be candidates too
            library += [str(a.monomial) for a in absorbable if str(a.monomial) not in library]
        found = sparse_regression(
            inputs,
            target,
            degree=None if library is not None else spec.degree,
            library=library,
            threshold=threshold,
        )
        terms = dict(found.terms)
        absorbed = {}
        for a in absorbable:
            absorbed[a.parameter] = terms.pop(str(a.monomial), 0.0) / a.number
        expression = SparseExpression(
            {k: v / scale for k, v in terms.items()}, variables=tuple(variables)
        )
        truth, truth_params = _truth_terms(
            parsed, obs, owners[0] if owners else "", network, variables, c, absorbable
        )
        true_params.update(truth_params)
        implied.update(absorbed)
        recoveries[network] = Recovery(
            network=network,
            equation=owners[0] if owners else "",
            expression=expression,
            absorbed=absorbed,
            r2=float(found.r2),
            truth=truth,
        )
    return recoveries, implied, true_params


def _describe(recoveries) -> str:
    parts = []
    for network, rec in recoveries.items():
        absorbed = ", ".join(f"{k} = {v:.4g}" for k, v in rec.absorbed.items())
        parts.append(f"{network} ≈ {rec.expression}" + (f" [and {absorbed}]" if absorbed else ""))
    return "; ".join(parts)


def _select(ctx: _Context, hybrid: HybridModel, traj_ts, traj, obs: Observations):
    """Regress at a few sparsity thresholds and keep the candidate that explains the *data* best
    for its size (Bayesian information criterion after a short refit of each).

    Selecting on the network's output alone cannot tell the network's own approximation error
    from physics (a slightly wrong network asks for small spurious terms); the data can: a spurious
    term barely lowers the misfit and pays log(n) for its coefficient."""
    spec = ctx.spec.discovery
    thresholds = sorted({round(spec.threshold * m, 6) for m in (1, 2, 3, 5)})
    thresholds = [t for t in thresholds if t < 1] if spec.select else [spec.threshold]
    candidates, seen = [], set()
    for threshold in thresholds:
        found = _recover(ctx, hybrid, traj_ts, traj, obs, threshold)
        key = tuple(
            (net, tuple(sorted(r.expression.terms)), tuple(sorted(r.absorbed)))
            for net, r in found[0].items()
        )
        if key not in seen:
            seen.add(key)
            candidates.append((threshold, found))
    if len(candidates) == 1:
        ctx.log(f"  {_describe(candidates[0][1][0])}")
        return candidates[0][1]
    count = int(ctx.windows.mask.sum())
    best, best_score = None, math.inf
    for i, (threshold, found) in enumerate(candidates):
        model, _ = _recovered_model(hybrid, found[0], found[1])
        fit, _ = _train(
            ctx,
            f"select-{i}",
            model,
            [Stage("lbfgs", steps=spec.select_steps, lr=1.0)],
            shooting=True,
            quiet=True,
        )
        loss = min(fit.losses) if fit.losses else math.inf
        size = sum(len(r.expression.terms) + len(r.absorbed) for r in found[0].values())
        score = count * math.log(max(loss, 1e-300)) + size * math.log(count)
        ctx.log(
            f"  threshold {threshold:g}: {_describe(found[0])}  (loss {loss:.3g}, BIC {score:.1f})"
        )
        if score < best_score:
            best, best_score = found, score
    return best


def _monomial(monomial: sympy.Expr, env: dict[str, torch.Tensor]) -> torch.Tensor:
    fn = sympy.lambdify(sorted(monomial.free_symbols, key=str), monomial, modules="torch")
    args = [env[str(s)] for s in sorted(monomial.free_symbols, key=str)]
    value = fn(*args)
    like = next(iter(env.values()))
    return torch.as_tensor(value, dtype=like.dtype).expand(like.shape[-1:] if like.ndim else ())


def _recovered_model(hybrid: HybridModel, recoveries, implied: dict[str, float]):
    """The hybrid model's equations with every network call replaced by its recovered
    expression, each coefficient a learnable parameter named ``<network>_c<j>``; returns the model
    and, per network, the (parameter, term) pairs."""
    parsed = hybrid.parsed
    spec = parsed.spec
    parameters = {**hybrid.parameter_values(), **implied}
    taken = set(parsed.symbols)
    coefficients: dict[str, list[tuple[str, str]]] = {}
    replacements = {}
    for network, rec in recoveries.items():
        variables = {v: parsed.symbols[v] for v in parsed.networks[network]}
        total = sympy.Integer(0)
        coefficients[network] = []
        for j, (term, value) in enumerate(rec.expression.terms.items()):
            name = f"{network}_c{j}"
            while name in taken:
                name += "_"
            taken.add(name)
            parameters[name] = float(value)
            symbol = sympy.Symbol(name, real=True)
            total += symbol * parse_expression(term, f"the recovered term {term!r}", variables)
            coefficients[network].append((name, term))
        replacements[network] = total
    equations = {
        state: sympy.sstr(
            parsed.equations[state].replace(
                lambda e: isinstance(e, AppliedUndef),
                lambda call: replacements[call.func.__name__],
            )
        )
        for state in spec.states
    }
    system = replace(spec, equations=equations, parameters=parameters, networks={})
    return HybridModel(system), coefficients


def _read_back(model: HybridModel, recoveries, coefficients) -> None:
    """Put the refitted coefficients and parameters back into the recoveries."""
    from ..discovery import SparseExpression, compare_terms

    values = model.parameter_values()
    for network, rec in recoveries.items():
        terms = {term: values[name] for name, term in coefficients[network]}
        rec.expression = SparseExpression(terms, variables=rec.expression.variables)
        rec.absorbed = {k: values[k] for k in rec.absorbed}
        if rec.truth is not None:
            rec.max_relative_error = compare_terms(rec.expression, rec.truth).max_relative_error


# ------------------------------------------------------------------------------------------------
# forecast and the black box


class _BlackBox(nn.Module):
    """A purely neural vector field ``dy/dt = MLP(y)``, scaled like the hybrid's networks."""

    def __init__(self, states: int, net_spec, ts: torch.Tensor, ys: torch.Tensor):
        super().__init__()
        self.net = MLP(states, states, net_spec)
        size = torch.nan_to_num(ys.abs(), nan=0.0).amax(dim=0).clamp(min=1e-12)
        span = float(ts[-1] - ts[0]) or 1.0
        with torch.no_grad():
            self.net.in_scale.copy_(size)
            self.net.out_scale.copy_(size / (span / 10))
        self.double()

    def forward(self, t, y, args=None):
        return self.net(y)


def _forecast(ctx: _Context, obs: Observations, fits: dict[str, ModelFit], starts) -> Forecast:
    """Each model from its own estimate of the first state (the first observation, or the one
    its fit learnt), well past the training window."""
    spec = ctx.spec.forecast
    t0, t_end = float(obs.ts[0]), float(obs.ts[-1])
    end = t_end + spec.horizon * (t_end - t0)
    ts = torch.linspace(t0, end, 600, dtype=obs.ts.dtype)
    predictions = {}
    for name, fit in fits.items():
        with torch.no_grad():
            sol = solve(
                ODETerm(fit.model),
                _solvers.Dopri5(),
                t0,
                end,
                starts[name],
                controller=PIDController(rtol=1e-7, atol=1e-9),
                saveat=SaveAt(ts=ts),
                throw=False,
                max_steps=200_000,
            )
        predictions[name] = sol.ys
    truth = None
    if obs.truth is not None:
        truth = true_trajectory(obs.truth, obs.states, ts)
    forecast = Forecast(ts=ts, truth=truth, predictions=predictions, train_end=t_end)
    if truth is not None:
        window = ts > t_end
        reference = truth[window].pow(2).mean().sqrt().item()
        for name, pred in predictions.items():
            diff = pred[window] - truth[window]
            rmse = diff.pow(2).mean().sqrt().item() if torch.isfinite(diff).all() else math.inf
            forecast.errors[name] = rmse
            forecast.relative_errors[name] = rmse / reference if reference else math.inf
    return forecast


# ------------------------------------------------------------------------------------------------
# the workflow


def discover(
    spec: RunSpec,
    observations: Observations,
    *,
    run_dir: Path | str | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> DiscoveryResult:
    """Fit, recover, refit and forecast (the seed lecture's workflow; see the module docstring).

    1. Fit the hybrid model of ``spec.system`` to ``observations`` through the solver, on windows
       of consecutive observations (Adam, then L-BFGS).
    2. Evaluate each network along the fitted model's trajectory and find a sparse closed form by
       regression over a library of candidate terms. A learnable parameter whose term the network
       could also represent (``- theta*y`` beside ``NN2(x, y)``) is unidentifiable from the data
       alone, so its term joins the regression and the regression sets it.
    3. Refit the coefficients of the recovered equations (and the learnable parameters) on the
       data with L-BFGS.
    4. Optionally train a purely neural ODE on the same data, and forecast every model well past
       the training window; with synthetic data, score everything against the truth.

    Args:
        spec: what to run.
        observations: the data (``simulate(...)`` or ``load_csv(...)``).
        run_dir: a folder for checkpoints (``run_dir/checkpoints/<phase>/``); ``None``: none.
        resume: continue the run whose checkpoints are in ``run_dir``.
        progress: show progress bars.
        log: called with a line of text at each phase.

    Returns:
        A :class:`DiscoveryResult`.
    """
    started = time.perf_counter()
    log = log or (lambda _line: None)
    run_dir = None if run_dir is None else Path(run_dir)
    obs = Observations(
        observations.ts.to(torch.float64),
        observations.ys.to(torch.float64),
        tuple(observations.states),
        observations.truth,
    )
    system = spec.system
    if tuple(obs.states) != tuple(system.states):
        raise ValueError(
            f"the observations' states {obs.states} differ from the system's {system.states}"
        )
    seed_everything(spec.seed)
    hybrid = HybridModel(system)
    hybrid.set_scales(obs.ts, obs.ys)
    autonomous = all(
        sympy.Symbol(system.time, real=True) not in e.free_symbols
        for e in hybrid.parsed.equations.values()
    )
    windows = _Windows(obs, spec.training, autonomous)
    ctx = _Context(spec, windows, run_dir, resume, progress, log)
    train = spec.training
    fits, starts = {}, {}
    fits["hybrid"], hybrid_starts = _train(
        ctx,
        "hybrid",
        hybrid,
        _stages(train.adam_steps, train.adam_lr, train.lbfgs_steps, train.patience),
    )
    starts["hybrid"] = hybrid_starts[0]  # the first window starts at the first observation
    traj_ts, traj = _trajectory(hybrid, obs, starts["hybrid"], spec.discovery.samples)
    log(f"recovering closed forms along the fitted trajectory ({traj.shape[0]} points)")
    recoveries, implied, true_params = _select(ctx, hybrid, traj_ts, traj, obs)
    recovered, coefficients = _recovered_model(hybrid, recoveries, implied)
    log(
        "recovered equations: "
        + "; ".join(f"d{st}/dt = {recovered.parsed.spec.equations[st]}" for st in system.states)
    )
    starts["recovered"] = starts["hybrid"]
    losses, seconds = [], 0.0
    if spec.discovery.refit_steps:
        # refit the few coefficients on the windows, learning each window's initial state too
        # (multiple shooting), so noisy observations do not bias them ...
        fit, _ = _train(
            ctx,
            "recovered",
            recovered,
            [Stage("lbfgs", steps=spec.discovery.refit_steps, lr=1.0)],
            shooting=True,
        )
        losses, seconds = fit.losses, fit.seconds
    if spec.discovery.trajectory_steps:
        # ... then, with the initial state, on the whole observed trajectory at once (the
        # maximum-likelihood fit of the recovered equations, which is what a forecast needs)
        whole = _Windows(obs, replace(spec.training, window=obs.ts.shape[0]), autonomous)
        fit, whole_starts = _train(
            ctx,
            "recovered-trajectory",
            recovered,
            [Stage("lbfgs", steps=spec.discovery.trajectory_steps, lr=1.0)],
            windows=whole,
            shooting=True,
        )
        losses, seconds = losses + fit.losses, seconds + fit.seconds
        starts["recovered"] = whole_starts[0]
    fits["recovered"] = ModelFit("recovered", recovered, losses, seconds)
    _read_back(recovered, recoveries, coefficients)
    if spec.forecast.blackbox:
        seed_everything(spec.seed + 2)
        box = _BlackBox(len(system.states), spec.forecast.blackbox_network, obs.ts, obs.ys)
        fits["blackbox"], box_starts = _train(
            ctx,
            "blackbox",
            box,
            _stages(
                spec.forecast.blackbox_adam_steps,
                train.adam_lr,
                spec.forecast.blackbox_lbfgs_steps,
                train.patience,
            ),
        )
        starts["blackbox"] = box_starts[0]
    log("forecasting past the training window")
    forecast = _forecast(ctx, obs, fits, starts)
    parameters = {
        name: fit.model.parameter_values()
        for name, fit in fits.items()
        if isinstance(fit.model, HybridModel)
    }
    return DiscoveryResult(
        spec=spec,
        observations=obs,
        fits=fits,
        recoveries=recoveries,
        parameters=parameters,
        true_parameters=true_params,
        trajectory_ts=traj_ts,
        trajectory=traj,
        forecast=forecast,
        seconds=time.perf_counter() - started,
    )
