"""PINN — physics-informed training, torchnde.pinn against DeepXDE (PyTorch backend), in one
process at equal problem, network, initial weights, points and optimiser budget.

Two problems:

* **Burgers** (Raissi et al. 2019): ``u_t + u u_x = (0.01/π) u_xx`` on [−1, 1] × [0, 1],
  ``u(x, 0) = −sin πx``, ``u(±1, t) = 0``; 8 × 20 tanh on inputs scaled to [−1, 1]; Latin
  hypercube collocation points, 100 initial and 2 × 50 boundary points; Adam (lr 1e-3) then
  L-BFGS (history 50, strong Wolfe, no tolerance stop). Float32.
* **Convection** at β = 30 (Krishnapriyan et al. 2021): periodic on [0, 2π) × [0, 1],
  ``u(x, 0) = sin x``; 4 × 50 tanh on inputs scaled to [−1, 1]; 1000 uniform collocation
  points, 256 initial points, 100 periodic pairs; 1000 L-BFGS iterations. torchnde trains it
  plainly (the same run as DeepXDE) and by curriculum regularisation (β = 1, 5, …, 30, the same
  L-BFGS budget per stage).

Both libraries get the very same point sets (torchnde's ``Points.collocation_points`` and
``condition_points``; DeepXDE takes them as ``anchors`` and ``PointSetBC``; the periodic pairs
through its ``PeriodicBC`` on those anchors) and the same initial weights (copied into DeepXDE's
``FNN``). Timed with this thread's CPU time (one torch thread): the Adam stage per iteration, the
L-BFGS stage per iteration (and its loss evaluations per iteration, line searches included). The
error is the relative L2 error on a 256 × 100 grid against the reference solution. Medians
[min, max] over seeds.

What differs by design: DeepXDE evaluates the PDE residual on every input point, boundary points
included (then keeps the collocation rows for the loss), so its residual pass is slightly larger
(and for convection it also enforces the residual on the 100 periodic anchors); its L-BFGS runs up
to 1000 iterations per ``optimizer.step`` call, torchnde's trainer up to 100 (one stretch between
two checkpoints, ``Trainer(fuse_lbfgs=True)``; each iteration is still one logged step). Both
libraries' line searches may use the call's whole evaluation budget.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from torchnde import pinn
from torchnde.training import Stage

from ._common import Options

os.environ.setdefault("DDE_BACKEND", "pytorch")

EVALUATION = {"x": 256, "t": 100}
CHECKPOINT_EVERY = 100  # pinn.train's default: where the trainer's L-BFGS stretches end


def _deepxde() -> Any:
    try:
        import deepxde as dde
    except ImportError:
        return None
    if dde.backend.backend_name != "pytorch":
        raise SystemExit(
            f"DeepXDE must use the PyTorch backend (DDE_BACKEND=pytorch), not {dde.backend.backend_name}"
        )
    return dde


@dataclass(frozen=True)
class Case:
    name: str
    problem: pinn.PDEProblem
    network: pinn.Network
    points: pinn.Points
    adam: int
    lbfgs: int
    curriculum: tuple[float, ...] = ()


def _cases(quick: bool) -> list[Case]:
    burgers = Case(
        "burgers",
        pinn.burgers(),
        pinn.Network(width=20, depth=8),
        pinn.Points(
            collocation=1000 if quick else 2500, initial=100, boundary=50, sampler="latin_hypercube"
        ),
        adam=50 if quick else 500,
        lbfgs=50 if quick else 1500,
    )
    convection = Case(
        "convection",
        pinn.convection(beta=30.0),
        pinn.Network(width=50, depth=4),
        pinn.Points(collocation=1000, initial=256, boundary=100),
        adam=0,
        lbfgs=50 if quick else 1000,
        curriculum=(10.0, 30.0) if quick else (1.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0),
    )
    return [burgers, convection]


def _stages(case: Case) -> list[Stage]:
    stages = []
    if case.adam:
        stages.append(Stage("adam", steps=case.adam, lr=1e-3))
    stages.append(
        Stage(
            "lbfgs",
            steps=case.lbfgs,
            options={"history_size": 50, "tolerance_grad": 0.0, "tolerance_change": 0.0},
        )
    )
    return stages


def _initial(case: Case, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    problem = case.problem
    model = pinn.PINNModel(problem.domain, 1, case.network)
    return {k: v.clone() for k, v in model.net.state_dict().items()}


def _reference_error(case: Case, predict) -> float:
    domain = case.problem.domain
    axes = domain.grid(EVALUATION, torch.float64)
    reference = case.problem.reference(axes, dict(case.problem.coefficients))
    values = predict(domain.mesh(axes).float()).double().reshape(reference.shape)
    return pinn.relative_l2(values, reference)


# ------------------------------------------------------------------------------------------------
# torchnde


def run_torchnde(case: Case, seed: int, paradigm=None) -> dict[str, float]:
    initial = _initial(case, seed)
    started = time.thread_time()
    result = pinn.train(
        case.problem,
        _stages(case),
        paradigm=paradigm,
        network=case.network,
        points=case.points,
        evaluation=EVALUATION,
        initial=initial,
        checkpoint_every=CHECKPOINT_EVERY,
    )
    total = time.thread_time() - started
    out = {"error": result.error, "seconds": total}
    if paradigm is None:
        history = result.final.history
        adam = [h for h in history if h["optimizer"] == "adam"]
        lbfgs = [h for h in history if h["optimizer"] == "lbfgs"]
        if len(adam) > 1:
            out["adam_ms"] = _per_iteration(adam, "cpu_seconds", 1e3)
        out["lbfgs_ms"] = _per_iteration(lbfgs, "cpu_seconds", 1e3)
        out["lbfgs_evals"] = _per_iteration(lbfgs, "evaluations", 1.0)
        out["lbfgs_iterations"] = len(lbfgs)
    return out


def _per_iteration(entries: list[dict], key: str, scale: float) -> float:
    """``key`` (CPU seconds, evaluations) per iteration between the end of a stage's first
    stretch and its last step. The trainer runs an L-BFGS stage in stretches up to each
    checkpoint boundary and logs their steps after each stretch, so the entries of one stretch
    share its end; timing from the first stretch's end leaves out the set-up before the first
    step (sampling, the first call's warm-up) and counts whole stretches only."""
    first = next((k for k, h in enumerate(entries[:-1]) if h["step"] % CHECKPOINT_EVERY == 0), 0)
    return scale * (entries[-1][key] - entries[first][key]) / (len(entries) - 1 - first)


# ------------------------------------------------------------------------------------------------
# DeepXDE


def run_deepxde(dde: Any, case: Case, seed: int) -> dict[str, float]:
    problem = case.problem
    domain = problem.domain
    collocation = case.points.collocation_points(domain)
    prepared = {c.term: c for c in case.points.condition_points(problem)}
    geometry = dde.geometry.GeometryXTime(
        dde.geometry.Interval(domain["x"].low, domain["x"].high),
        dde.geometry.TimeDomain(domain["t"].low, domain["t"].high),
    )
    initial = prepared["initial"]
    conditions = [dde.icbc.PointSetBC(initial.points.numpy(), initial.targets.numpy())]
    anchors = collocation.numpy()
    if case.name == "burgers":
        nu = problem.coefficients["nu"]

        def pde(x, y):
            u_x = dde.grad.jacobian(y, x, i=0, j=0)
            u_t = dde.grad.jacobian(y, x, i=0, j=1)
            u_xx = dde.grad.hessian(y, x, i=0, j=0)
            return u_t + y * u_x - nu * u_xx

        boundary = prepared["dirichlet_x"]
        conditions.append(dde.icbc.PointSetBC(boundary.points.numpy(), boundary.targets.numpy()))
    else:
        beta = problem.coefficients["beta"]

        def pde(x, y):
            return dde.grad.jacobian(y, x, i=0, j=1) + beta * dde.grad.jacobian(y, x, i=0, j=0)

        low = prepared["periodic_x"].low
        conditions.append(
            dde.icbc.PeriodicBC(
                geometry, 0, lambda x, on_boundary: on_boundary and math.isclose(x[0], 0.0)
            )
        )
        anchors = torch.cat([collocation, low]).numpy()
    data = dde.data.TimePDE(
        geometry, pde, conditions, num_domain=0, num_boundary=0, num_initial=0, anchors=anchors
    )
    spec = case.network
    net = dde.nn.FNN([2] + [spec.width] * spec.depth + [1], "tanh", "Glorot normal")
    ours = pinn.MLP(2, 1, spec.width, spec.depth)
    ours.load_state_dict(_initial(case, seed))
    linears = [m for m in ours.layers if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for theirs, mine in zip(net.linears, linears):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
    if spec.scale_inputs:
        low_t = torch.tensor([domain["x"].low, domain["t"].low])
        high_t = torch.tensor([domain["x"].high, domain["t"].high])
        net.apply_feature_transform(lambda x: 2 * (x - low_t) / (high_t - low_t) - 1)
    model = dde.Model(data, net)
    out: dict[str, float] = {}
    started = time.thread_time()
    if case.adam:
        model.compile("adam", lr=1e-3)
        begin = time.thread_time()
        model.train(iterations=case.adam, display_every=case.adam, verbose=0)
        out["adam_ms"] = 1e3 * (time.thread_time() - begin) / case.adam
    dde.optimizers.config.set_LBFGS_options(
        maxcor=50, ftol=0, gtol=0, maxiter=case.lbfgs, maxfun=25 * case.lbfgs, maxls=25
    )
    # DeepXDE computes the PyTorch backend's iterations per optimizer.step once, at import
    # (from the default maxiter 15000); set_LBFGS_options does not update them
    options = dde.optimizers.config.LBFGS_options
    options["iter_per_step"] = min(1000, case.lbfgs)
    options["fun_per_step"] = options["maxfun"] * options["iter_per_step"] // case.lbfgs
    model.compile("L-BFGS")
    begin = time.thread_time()
    model.train(display_every=case.lbfgs, verbose=0)
    state = model.opt.state_dict()["state"]
    iterations = int(state[next(iter(state))]["n_iter"]) if state else case.lbfgs
    evals = int(state[next(iter(state))]["func_evals"]) if state else math.nan
    out["lbfgs_ms"] = 1e3 * (time.thread_time() - begin) / max(iterations, 1)
    out["lbfgs_evals"] = evals / max(iterations, 1)
    out["lbfgs_iterations"] = iterations
    out["seconds"] = time.thread_time() - started
    out["error"] = _reference_error(case, lambda p: torch.as_tensor(model.predict(p.numpy())))
    return out


# ------------------------------------------------------------------------------------------------
# derivative modes: why torchnde.pinn's derivative helper is reverse mode only


def derivative_modes(opts: Options) -> None:
    """Burgers' residual ``u_t + u u_x - ν u_xx`` and its parameter gradient, three ways, on the
    benchmark's network (8 × 20 tanh) at 2500 points: ``pinn.Derivatives`` (reverse-mode
    autograd, what torchnde uses), nested ``torch.func.jvp`` (forward mode), and
    ``torch.func.vmap`` of per-point ``jacrev`` / ``jacfwd(jacrev)``. Milliseconds per loss and
    gradient (thread CPU time, median of rounds of 20 after 3 warm-up calls), and the largest
    difference of the gradients from reverse mode's."""
    from torch.func import functional_call, jacfwd, jacrev, jvp, vmap

    torch.manual_seed(0)
    net = pinn.MLP(2, 1, 20, 8)
    points = torch.rand(1000 if opts.quick else 2500, 2)
    nu = 0.01 / math.pi
    along_x = torch.tensor([1.0, 0.0]).expand_as(points)
    along_t = torch.tensor([0.0, 1.0]).expand_as(points)
    params = dict(net.named_parameters())

    def reverse() -> torch.Tensor:
        x = points.clone().requires_grad_(True)
        u = net(x)[:, 0]
        d = pinn.Derivatives(x, ("x", "t"))
        return (d(u, "t") + u * d(u, "x") - nu * d(u, "x", "x")).square().mean()

    def forward_jvp() -> torch.Tensor:
        def f(x):
            return net(x)[:, 0]

        def f_x(x):
            return jvp(f, (x,), (along_x,))[1]

        u, u_x = jvp(f, (points,), (along_x,))
        u_t = jvp(f, (points,), (along_t,))[1]
        u_xx = jvp(f_x, (points,), (along_x,))[1]
        return (u_t + u * u_x - nu * u_xx).square().mean()

    def point(p, x):
        return functional_call(net, p, (x[None],))[0, 0]

    def vmapped() -> torch.Tensor:
        u = vmap(point, in_dims=(None, 0))(params, points)
        g = vmap(jacrev(point, argnums=1), in_dims=(None, 0))(params, points)
        h = vmap(jacfwd(jacrev(point, argnums=1), argnums=1), in_dims=(None, 0))(params, points)
        return (g[:, 1] + u * g[:, 0] - nu * h[:, 0, 0]).square().mean()

    def gradient(fn) -> torch.Tensor:
        net.zero_grad()
        fn().backward()
        return torch.cat([p.grad.flatten() for p in net.parameters()])

    times: dict[str, list[float]] = {}
    for _ in range(opts.rounds(3)):
        for fn in (reverse, forward_jvp, vmapped):
            for _ in range(3):
                gradient(fn)
            started = time.thread_time()
            for _ in range(20):
                gradient(fn)
            times.setdefault(fn.__name__, []).append(1e3 * (time.thread_time() - started) / 20)
    exact = gradient(reverse)
    print(
        f"\nderivative modes, Burgers residual + gradient, {points.shape[0]} points, 8 x 20 tanh:"
    )
    for fn in (reverse, forward_jvp, vmapped):
        difference = (gradient(fn) - exact).abs().max().item()
        print(
            f"{fn.__name__:12s} {_summary(times[fn.__name__]):>20s} ms  "
            f"ratio to reverse {statistics.median(times[fn.__name__]) / statistics.median(times['reverse']):.2f}  "
            f"max |gradient difference| {difference:.1e}"
        )


# ------------------------------------------------------------------------------------------------
# why one seed's final errors differ: rounding


def rounding_spread(rounds: int = 6, adam: int = 200, lbfgs: int = 300) -> None:
    """Burgers on a short budget from seed 0's initial weights scaled by ``1 + k·1e-7`` (about
    one float32 ulp; k = 0 … rounds − 1), in both libraries: how far the final error moves when
    the start moves by rounding. The two libraries' iterates agree to rounding at first (Adam
    200: weights within 1.4e-6), but such differences grow through the L-BFGS iterations until
    the runs are unrelated, so one seed's pair of final errors says little; compare the spread.
    ``python -m benchmarks.pinn_deepxde``."""
    import dataclasses

    dde = _deepxde()
    case = dataclasses.replace(_cases(False)[0], adam=adam, lbfgs=lbfgs)
    errors: dict[str, list[float]] = {"torchnde": [], "deepxde": []}
    global _initial
    original = _initial
    try:
        for k in range(rounds):

            def scaled(case: Case, seed: int, k: int = k) -> dict[str, torch.Tensor]:
                return {n: v * (1 + k * 1e-7) for n, v in original(case, seed).items()}

            _initial = scaled
            errors["torchnde"].append(run_torchnde(case, 0)["error"])
            if dde is not None:
                errors["deepxde"].append(run_deepxde(dde, case, 0)["error"])
    finally:
        _initial = original
    print(f"Burgers, Adam {adam} + L-BFGS {lbfgs}, seed 0 scaled by 1 + k*1e-7, k < {rounds}:")
    for name, values in errors.items():
        shown = " ".join(f"{v:.4f}" for v in values)
        print(f"{name:10s} final error {_summary(values):>28s}   ({shown})")


# ------------------------------------------------------------------------------------------------


def _summary(values: list[float]) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "—"
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.3g}"
    return f"{median:.3g} [{min(values):.3g}, {max(values):.3g}]"


def main(opts: Options) -> None:
    dde = _deepxde()
    seeds = list(range(opts.rounds(3)))
    print("\n== PINN: torchnde.pinn vs DeepXDE (PyTorch backend) ==")
    if dde is None:
        print("DeepXDE is not installed (pip install 'torchnde[bench]'): torchnde rows only")
    else:
        import deepxde

        print(f"deepxde {deepxde.__version__}; seeds {seeds}; thread CPU time, one thread")
    derivative_modes(opts)
    for case in _cases(opts.quick):
        rows: dict[str, list[dict[str, float]]] = {"torchnde": [], "deepxde": []}
        if case.curriculum:
            rows["torchnde curriculum"] = []
        for seed in seeds:
            rows["torchnde"].append(run_torchnde(case, seed))
            if dde is not None:
                rows["deepxde"].append(run_deepxde(dde, case, seed))
            if case.curriculum:
                problem = case.problem
                paradigm = pinn.Curriculum("beta", case.curriculum)
                rows["torchnde curriculum"].append(
                    run_torchnde(Case(**{**case.__dict__, "problem": problem}), seed, paradigm)
                )
        budget = (f"Adam {case.adam} + " if case.adam else "") + f"L-BFGS {case.lbfgs}"
        print(f"\n{case.name}: {budget} iterations, {case.points.collocation} collocation points")
        print(
            f"{'library':22s} {'Adam ms/it':>20s} {'L-BFGS ms/it':>20s} {'evals/it':>8s} {'error':>28s}"
        )
        for name, results in rows.items():
            if not results:
                continue
            print(
                f"{name:22s} {_summary([r.get('adam_ms') for r in results]):>20s} "
                f"{_summary([r.get('lbfgs_ms') for r in results]):>20s} "
                f"{_summary([r.get('lbfgs_evals') for r in results]):>8s} "
                f"{_summary([r['error'] for r in results]):>28s}"
            )
        if rows["deepxde"]:
            for key, label in (("adam_ms", "Adam"), ("lbfgs_ms", "L-BFGS")):
                ratios = [
                    a[key] / b[key]
                    for a, b in zip(rows["torchnde"], rows["deepxde"])
                    if key in a and key in b
                ]
                if ratios:
                    print(
                        f"ratio torchnde / DeepXDE, {label} time per iteration: {_summary(ratios)} (target ≤ 1.0)"
                    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    rounding_spread()
