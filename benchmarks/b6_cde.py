"""B6 — neural CDE training step: batch 128, 100 observations of 8 channels (time and 7 random
walks), hidden state 32, field an MLP 32→64→64→32·8, cubic Hermite path with backward
differences, RK4 on the observation times and Dopri5, forward + backward, against torchcde."""

from __future__ import annotations

from typing import Any

import torch

import torchnde

from ._common import Case, Contestant, Counts, Options, Row, _Counter, peer, steps_str

BATCH, LENGTH, CHANNELS, HIDDEN, WIDTH = 128, 100, 8, 32, 64
RTOL, ATOL = 1e-3, 1e-5
CHAIN = 10  # field calls per bare-field sample
BARE = f"{CHAIN} chained calls fwd+bwd"

torchcde = peer("torchcde")


class CDEField(torch.nn.Module):
    """``f(t, z) = tanh(MLP(z))`` shaped ``(..., hidden, channels)``: ``hidden → 64 → 64 →
    hidden·channels``, tanh between the layers (torchcde's example, one layer deeper). Default
    PyTorch initialisation. Counts its calls."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(HIDDEN, WIDTH),
            torch.nn.Tanh(),
            torch.nn.Linear(WIDTH, WIDTH),
            torch.nn.Tanh(),
            torch.nn.Linear(WIDTH, HIDDEN * CHANNELS),
            torch.nn.Tanh(),
        )
        self.counter = _Counter()

    def forward(self, t: torch.Tensor, z: torch.Tensor, args: Any = None) -> torch.Tensor:
        self.counter.calls += 1
        return self.net(z).view(*z.shape[:-1], HIDDEN, CHANNELS)


def problem(seed: int = 0):
    """The field, observation times ``0 … 99``, data ``(batch, length, channels)`` (channel 0 is
    time / 99, the others random walks with N(0, 0.1²) steps), ``z0: (batch, hidden)``."""
    field = CDEField(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    ts = torch.arange(LENGTH, dtype=torch.float32)
    walks = (0.1 * torch.randn(BATCH, LENGTH, CHANNELS - 1, generator=gen)).cumsum(dim=1)
    time = (ts / (LENGTH - 1)).expand(BATCH, LENGTH)[..., None]
    xs = torch.cat([time, walks], dim=-1)
    z0 = 0.5 * torch.randn(BATCH, HIDDEN, generator=gen)
    return field, ts, xs, z0


def build(opts: Options) -> Case:
    field, ts, xs, z0 = problem()
    params = tuple(field.parameters())
    weights = torch.randn(BATCH, HIDDEN, generator=torch.Generator().manual_seed(7))
    t0, t1 = float(ts[0]), float(ts[-1])
    xs_time_major = xs.transpose(0, 1).contiguous()  # torchnde: (length, batch, channels)

    # -- torchnde: ControlTerm(f, HermiteCubicSpline).to_ode() -----------------------------------

    def nde(solver, controller, dt0):
        def solve():
            path = torchnde.HermiteCubicSpline(ts, xs_time_major)  # shape (batch, channels)
            term = torchnde.ControlTerm(field, path).to_ode()
            sol = torchnde.solve(
                term, solver, t0, t1, z0, dt0=dt0, controller=controller, max_steps=100_000
            )
            return sol, sol.ys[-1]

        return solve

    def nde_counts(out, calls, _):
        return Counts(steps_str(out[0].stats["num_steps"]), calls)

    # -- torchcde: cdeint on CubicSpline(hermite coefficients) ----------------------------------

    def tcde(**kwargs):
        def solve():
            coeffs = torchcde.hermite_cubic_coefficients_with_backward_differences(xs, ts)
            X = torchcde.CubicSpline(coeffs, ts)
            z = torchcde.cdeint(X=X, func=field, z0=z0, t=X.interval, adjoint=False, **kwargs)
            return None, z[:, -1]

        return solve

    def tcde_counts(fixed_steps):
        def counts(out, calls, _):
            # cdeint checks its arguments with one call; dopri5 takes 6 new calls per step after
            # two to start (first stage and initial step size)
            steps = fixed_steps if fixed_steps else f"~{max(calls - 3, 0) // 6}"
            return Counts(str(steps), calls)

        return counts

    def training_step(solve):
        def run(probe):
            field.zero_grad(set_to_none=True)
            out = solve()
            probe()
            (out[1] * weights).sum().backward()
            return out

        return run

    z_in = z0.clone().requires_grad_(True)
    dxdt = torch.randn(BATCH, CHANNELS, 1, generator=torch.Generator().manual_seed(3))
    cotangent = torch.randn(BATCH, HIDDEN, generator=torch.Generator().manual_seed(4))

    def bare_chain() -> None:
        """``CHAIN`` field calls chained as a solver's stages are, then one backward: the field's
        share of a training step, per call (a backward per call would overstate it)."""
        z = z_in
        for _ in range(CHAIN):
            z = z + 0.1 * (field(ts[0], z) @ dxdt).squeeze(-1)
        torch.autograd.grad(z, (z_in, *params), cotangent)

    def limit(n: Counts, per_call: dict[str, float]) -> float:
        return n.nfe * per_call[BARE] / CHAIN

    contestants: list[Contestant] = []
    skipped: list[Row] = []

    def add(library, variant, solve, counts, role, group, note=""):
        contestants.append(
            Contestant(
                library,
                variant,
                training_step(solve),
                counts,
                limit,
                field.counter,
                role,
                note,
                group,
            )
        )

    rk4_note = "steps of 1 on the observation times"
    add(
        "torchnde",
        "RK4, ConstantStepSize",
        nde(torchnde.RK4(), torchnde.ConstantStepSize(), 1.0),
        nde_counts,
        "main",
        "rk4",
    )
    add(
        "torchnde",
        "RK38 (torchdiffeq's 'rk4')",
        nde(torchnde.RK38(), torchnde.ConstantStepSize(), 1.0),
        nde_counts,
        "extra",
        "rk4",
    )
    add(
        "torchnde",
        "Dopri5, PIDController",
        nde(torchnde.Dopri5(), torchnde.PIDController(rtol=RTOL, atol=ATOL), None),
        nde_counts,
        "main",
        "dopri5",
    )
    if torchcde is not None:
        add(
            "torchcde",
            "cdeint 'rk4' (3/8 rule)",
            tcde(method="rk4", options=dict(step_size=1.0)),
            tcde_counts(LENGTH - 1),
            "peer",
            "rk4",
            rk4_note,
        )
        add(
            "torchcde",
            "cdeint 'dopri5'",
            tcde(method="dopri5", rtol=RTOL, atol=ATOL),
            tcde_counts(None),
            "peer",
            "dopri5",
        )
    else:
        skipped.append(Row("torchcde", "", [], None, None, "peer", skipped="not installed"))
    return Case(
        name="B6",
        title="neural CDE forward + backward (training step)",
        setup=[
            f"batch {BATCH}, {LENGTH} observations of {CHANNELS} channels (time + 7 random "
            f"walks), hidden {HIDDEN}, field MLP {HIDDEN}-{WIDTH}-{WIDTH}-{HIDDEN}x{CHANNELS} "
            "tanh, float32",
            "cubic Hermite path with backward differences built from the data in every run; "
            f"t in [0, {LENGTH - 1}]; RK4 with steps of 1 (on the observations); Dopri5 with "
            f"rtol {RTOL:g}, atol {ATOL:g}",
            "loss sum(w * z(T)), backward() to the field's parameters (backpropagation through "
            "the solver: torchnde DirectAdjoint, torchcde adjoint=False)",
            "limit: nfe x (field forward + backward with the contraction f(z) @ dX/dt, timed as "
            f"{CHAIN} chained calls and one backward); the path's dX/dt queries count as overhead",
        ],
        contestants=contestants,
        skipped=skipped,
        bare={BARE: bare_chain},
        bare_calls=2,
        default_rounds=5,
        targets={"ratio": 1.0, "overhead": 1.5},
        notes=[
            "torchnde: ControlTerm(f, HermiteCubicSpline(ts, xs)).to_ode(), one path of shape "
            "(batch, channels) shared by the batch's single solve (torchcde's layout)",
            "torchcde's 'rk4' is torchdiffeq's 3/8 rule (torchnde's RK38); its steps are counted "
            "from its field calls for dopri5",
        ],
    )
