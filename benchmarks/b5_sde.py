"""B5 — neural SDE training step: drift and diagonal diffusion MLPs (16 → 64 → 64 → 16, tanh;
the diffusion ends in a sigmoid), batch 1024, 1000 fixed steps of 1e-3 on [0, 1], Itô, 11 save
times, float32; loss ``sum(w * ys)`` for a fixed random ``w``, ``backward()`` to both networks'
parameters. Euler–Maruyama and Milstein, against torchsde's ``sdeint`` with the same method and
step.

Brownian motion, drawn afresh in every run as torchsde's ``sdeint(bm=None)`` does: torchnde's
main rows use ``BrownianGrid`` (increments sampled once on the step grid, O(1) per step), the
extra rows ``VirtualBrownianTree`` (any interval, O(log 1/tol) per query); torchsde builds its
default ``BrownianInterval`` (a binary tree of intervals, seeded per node, with an LRU cache).

The limit is the bare field work of the same steps, timed in the same rounds: for Euler–Maruyama
one drift and one diffusion call with their backward per step; for Milstein also the
diffusion's vector–Jacobian product ``(∂g/∂y)ᵀ(g v)`` (the Milstein correction, with
``create_graph=True`` so it can be differentiated) and the backward through it.
"""

from __future__ import annotations

from typing import Any

import torch

import torchnde

from ._common import Case, Contestant, Counts, Options, Row, _Counter, peer, steps_str

torchsde = peer("torchsde")

STATE, HIDDEN, BATCH = 16, 64, 1024
T1 = 1.0


class SDEField(torch.nn.Module):
    """``16 → 64 → 64 → 16`` with tanh (and a final sigmoid for the diffusion), PyTorch's default
    initialisation under a fixed seed; counts its calls in ``counter.calls``."""

    def __init__(self, seed: int, sigmoid: bool = False, counter: _Counter | None = None):
        super().__init__()
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        layers: list[torch.nn.Module] = [
            torch.nn.Linear(STATE, HIDDEN),
            torch.nn.Tanh(),
            torch.nn.Linear(HIDDEN, HIDDEN),
            torch.nn.Tanh(),
            torch.nn.Linear(HIDDEN, STATE),
        ]
        if sigmoid:
            layers.append(torch.nn.Sigmoid())
        self.net = torch.nn.Sequential(*layers)
        torch.random.set_rng_state(gen_state)
        self.counter = _Counter() if counter is None else counter

    def forward(self, t: torch.Tensor, y: torch.Tensor, args: Any = None) -> torch.Tensor:
        self.counter.calls += 1
        return self.net(y)


class TorchsdeSDE(torch.nn.Module):
    """The same two networks as torchsde's SDE object (``f(t, y)``, ``g(t, y)``)."""

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, drift: SDEField, diffusion: SDEField):
        super().__init__()
        self.drift = drift
        self.diffusion = diffusion

    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.drift(t, y)

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.diffusion(t, y)


def problem(steps: int) -> tuple[SDEField, SDEField, torch.Tensor, torch.Tensor]:
    counter = _Counter()  # counts drift calls; the diffusion keeps its own count
    drift = SDEField(seed=0, counter=counter)
    diffusion = SDEField(seed=1, sigmoid=True)
    y0 = torch.randn(BATCH, STATE, generator=torch.Generator().manual_seed(2))
    ts = torch.linspace(0.0, T1, 11)
    return drift, diffusion, y0, ts


def _nde_path(kind: str, steps: int, seed: int) -> torchnde.AbstractPath:
    if kind == "grid":
        return torchnde.BrownianGrid(0.0, T1, (BATCH, STATE), steps=steps, seed=seed)
    return torchnde.VirtualBrownianTree(0.0, T1, (BATCH, STATE), seed=seed)


def _nde_solver(method: str) -> torchnde.AbstractSolver:
    if method == "euler":
        return torchnde.EulerMaruyama()
    return torchnde.Milstein()


def build(opts: Options) -> Case:
    steps = 200 if opts.quick else 1000
    dt = T1 / steps
    drift, diffusion, y0, ts = problem(steps)
    params = (*drift.parameters(), *diffusion.parameters())
    weights = torch.randn(len(ts), BATCH, STATE, generator=torch.Generator().manual_seed(7))
    seeds = iter(range(10**9))

    def training_step(solve):
        def run(probe):
            for p in params:
                p.grad = None
            ys = solve()
            probe()
            (ys * weights).sum().backward()
            return ys

        return run

    # ---- torchnde (native API)
    def nde(method: str, path_kind: str):
        solver = _nde_solver(method)
        saveat = torchnde.SaveAt(ts=ts)
        stats: dict[str, Any] = {}

        def solve():
            path = _nde_path(path_kind, steps, next(seeds))
            terms = torchnde.MultiTerm(
                torchnde.ODETerm(drift),
                torchnde.ControlTerm(diffusion, path, noise="diagonal"),
            )
            sol = torchnde.solve(
                terms,
                solver,
                0.0,
                T1,
                y0,
                dt0=dt,
                saveat=saveat,
                controller=torchnde.ConstantStepSize(),
                max_steps=steps,
            )
            stats["steps"] = sol.stats["num_steps"]
            return sol.ys

        def counts(ys, calls, _):
            return Counts(steps_str(stats["steps"]), calls)

        return solve, counts

    # ---- torchsde
    def tsde(method: str):
        sde = TorchsdeSDE(drift, diffusion)

        def solve():
            return torchsde.sdeint(sde, y0, ts, method=method, dt=dt)

        def counts(ys, calls, _):
            return Counts(str(steps), calls)

        return solve, counts

    # ---- torchnde's torchsde facade: the same call as torchsde's
    def compat(method: str):
        from torchnde.compat import torchsde as facade

        sde = TorchsdeSDE(drift, diffusion)

        def solve():
            return facade.sdeint(sde, y0, ts, method=method, dt=dt)

        def counts(ys, calls, _):
            return Counts(str(steps), calls)

        return solve, counts

    # ---- the bare field work
    y_in = y0.clone().requires_grad_(True)
    cotangent = torch.randn_like(y0)

    def bare_em() -> None:
        out = drift(ts[0], y_in) + diffusion(ts[0], y_in)
        torch.autograd.grad(out, (y_in, *params), cotangent)

    def bare_milstein() -> None:
        f = drift(ts[0], y_in)
        g = diffusion(ts[0], y_in)
        (gdg,) = torch.autograd.grad(g, y_in, g * cotangent, create_graph=True)
        torch.autograd.grad(f + g + gdg, (y_in, *params), cotangent)

    def limit_for(kind: str):
        def limit(n: Counts, per_call: dict[str, float]) -> float:
            return n.nfe * per_call[kind]

        return limit

    contestants: list[Contestant] = []
    skipped: list[Row] = []
    for method, label, bare_kind in (
        ("euler", "EM", "em"),
        ("milstein", "Milstein", "milstein"),
    ):
        solver_name = "EulerMaruyama" if method == "euler" else "Milstein"
        for kind, role, variant in (
            ("grid", "main", f"{label}, BrownianGrid"),
            ("tree", "extra", f"{label}, VBT"),
        ):
            needs = "BrownianGrid" if kind == "grid" else "VirtualBrownianTree"
            if not (hasattr(torchnde, solver_name) and hasattr(torchnde, needs)):
                why = f"torchnde.{solver_name} / torchnde.{needs} not available yet"
                skipped.append(
                    Row("torchnde", variant, [], None, None, role, group=method, skipped=why)
                )
                continue
            solve, counts = nde(method, kind)
            contestants.append(
                Contestant(
                    "torchnde",
                    variant,
                    training_step(solve),
                    counts,
                    limit_for(bare_kind),
                    drift.counter,
                    role,
                    group=method,
                )
            )
        solve, counts = compat(method)
        contestants.append(
            Contestant(
                "torchnde",
                f"compat sdeint {method!r}",
                training_step(solve),
                counts,
                limit_for(bare_kind),
                drift.counter,
                "extra",
                group=method,
            )
        )
        if torchsde is not None:
            solve, counts = tsde(method)
            contestants.append(
                Contestant(
                    "torchsde",
                    f"sdeint {method!r}",
                    training_step(solve),
                    counts,
                    limit_for(bare_kind),
                    drift.counter,
                    "peer",
                    group=method,
                )
            )
        else:
            skipped.append(
                Row(
                    "torchsde",
                    method,
                    [],
                    None,
                    None,
                    "peer",
                    group=method,
                    skipped="not installed",
                )
            )
    return Case(
        name="B5",
        title="neural SDE training step (Euler-Maruyama and Milstein, fixed steps)",
        setup=[
            f"drift and diagonal diffusion MLPs {STATE}-{HIDDEN}-{HIDDEN}-{STATE} tanh (diffusion "
            f"ends in a sigmoid), batch {BATCH}, {steps} steps of {dt:g} on [0, {T1:g}], Ito, "
            f"{len(ts)} save times, float32; loss sum(w * ys), backward to the "
            f"{sum(p.numel() for p in params)} parameters",
            "Brownian motion drawn afresh every run: torchnde BrownianGrid (main rows) or "
            "VirtualBrownianTree (VBT, default tol, extra rows); the facade "
            "torchnde.compat.torchsde.sdeint (bm=None: a BrownianGrid on its step grid; extra "
            "rows); torchsde's default BrownianInterval (sdeint(bm=None))",
            "limit: nfe x bare (drift + diffusion) forward + backward; Milstein adds the "
            "diffusion's vjp (create_graph) and its backward",
            "ratio: each torchnde row against torchsde with the same method",
        ],
        contestants=contestants,
        skipped=skipped,
        bare={"em": bare_em, "milstein": bare_milstein},
        bare_calls=10,
        default_rounds=5,
        targets={"ratio": 1.0, "overhead": 1.5},
    )
