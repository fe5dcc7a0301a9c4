"""B8 — continuous normalising flow training step (FFJORD): 2-D data, batch 512, a time-dependent
softplus MLP 3→64→64→64→2, Hutchinson's trace estimator (one Rademacher vector per solve),
Dopri5 at rtol = atol = 1e-5 from the data at t = 1 to the base at t = 0, loss -mean log p(x),
backward() through the solver — torchnde.nn.CNF against the same model written on torchdiffeq in
the structure of its ``examples/cnf.py`` (an ``odefunc`` on the tuple ``(z, log p)``)."""

from __future__ import annotations

import math
from typing import Any

import torch

import torchnde
from torchnde.nn import CNF, HutchinsonTrace

from ._common import Case, Contestant, Counts, Options, Row, _Counter, peer, steps_str

BATCH, HIDDEN = 512, 64
TOL = 1e-5
CHAIN = 6  # augmented-field calls per bare sample (one Dopri5 step's worth)
BARE = f"{CHAIN} chained augmented calls fwd+bwd"

torchdiffeq = peer("torchdiffeq")


class Field(torch.nn.Module):
    """``f(t, z)``: softplus MLP, time concatenated to every layer's input; weights drawn
    ``N(0, 1.5² / fan_in)`` with a fixed seed (a field with some curvature, like a model partway
    through training). Counts its calls."""

    def __init__(self, seed: int = 0, gain: float = 1.5):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        sizes = [(3, HIDDEN), (HIDDEN + 1, HIDDEN), (HIDDEN + 1, HIDDEN), (HIDDEN + 1, 2)]
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in sizes)
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.copy_(
                    torch.randn(layer.weight.shape, generator=gen) * gain / layer.in_features**0.5
                )
                layer.bias.zero_()
        self.counter = _Counter()

    def forward(self, t: torch.Tensor, z: torch.Tensor, args: Any = None) -> torch.Tensor:
        self.counter.calls += 1
        tt = t.to(z.dtype).expand(z.shape[0], 1)
        h = z
        for layer in self.layers[:-1]:
            h = torch.nn.functional.softplus(layer(torch.cat([h, tt], dim=1)))
        return self.layers[-1](torch.cat([h, tt], dim=1))


def data(seed: int = 1) -> torch.Tensor:
    """Eight Gaussians (FFJORD's toy set), ``(BATCH, 2)``."""
    gen = torch.Generator().manual_seed(seed)
    angle = torch.randint(0, 8, (BATCH,), generator=gen) * (math.pi / 4)
    centres = torch.stack([angle.cos(), angle.sin()], dim=1) * (4 / 1.414)
    return centres + (0.5 / 1.414) * torch.randn(BATCH, 2, generator=gen)


def standard_normal_logp(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * z.pow(2).sum(1) - math.log(2 * math.pi)


class DiffeqODEFunc(torch.nn.Module):
    """torchdiffeq's CNF structure: ``forward(t, (z, logp))`` returns ``(dz, -tr)`` with the
    trace from one vector–Jacobian product against the noise set before the solve."""

    def __init__(self, field: Field):
        super().__init__()
        self.field = field
        self.noise: torch.Tensor | None = None

    def forward(self, t, states):
        z = states[0]
        with torch.set_grad_enabled(True):
            z.requires_grad_(True)
            dz = self.field(t, z)
            (e_j,) = torch.autograd.grad(dz, z, self.noise, create_graph=True)
            trace = (e_j * self.noise).sum(1)
        return dz, -trace


def rademacher(x: torch.Tensor, seed: int = 5) -> torch.Tensor:
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return torch.where(eps >= 0, 1.0, -1.0)


def build(opts: Options) -> Case:
    field = Field()
    params = tuple(field.parameters())
    x = data()
    cnf = CNF(field, trace=HutchinsonTrace(), controller=torchnde.PIDController(rtol=TOL, atol=TOL))

    def nde_step(probe):
        field.zero_grad(set_to_none=True)
        gen = torch.Generator().manual_seed(5)  # the same Rademacher vector as the peer's
        out = cnf(x, generator=gen)
        probe()
        (-out.log_prob.mean()).backward()
        return out

    def nde_counts(out, calls, _):
        return Counts(steps_str(out.solution.stats["num_steps"]), calls)

    func = DiffeqODEFunc(field)

    def tdq_step(probe):
        field.zero_grad(set_to_none=True)
        func.noise = rademacher(x)
        logp0 = torch.zeros(BATCH)
        times = torch.tensor([1.0, 0.0])
        z_t, delta_t = torchdiffeq.odeint(
            func, (x, logp0), times, method="dopri5", rtol=TOL, atol=TOL
        )
        probe()
        log_prob = standard_normal_logp(z_t[-1]) - delta_t[-1]
        (-log_prob.mean()).backward()
        return field.counter.steps

    def tdq_counts(out, calls, _):
        # dopri5: 6 new calls per step after two to start (first stage and initial step size)
        return Counts(f"~{max(calls - 2, 0) // 6}", calls)

    z_in = x.clone().requires_grad_(True)
    noise = rademacher(x)
    t_bare = torch.tensor(0.5)

    def bare_chain() -> None:
        """``CHAIN`` augmented evaluations (field + the trace's vector–Jacobian product with
        ``create_graph``) chained as a solver's stages are, then one backward to the parameters."""
        z, total = z_in, 0.0
        for _ in range(CHAIN):
            f = field(t_bare, z)
            (e_j,) = torch.autograd.grad(f, z_in if z is z_in else z, noise, create_graph=True)
            total = total + (e_j * noise).sum()
            z = z + 0.05 * f
        torch.autograd.grad(total + z.sum(), params)

    def limit(n: Counts, per_call: dict[str, float]) -> float:
        return n.nfe * per_call[BARE] / CHAIN

    contestants = [
        Contestant(
            "torchnde", "nn.CNF, HutchinsonTrace", nde_step, nde_counts, limit, field.counter
        )
    ]
    skipped: list[Row] = []
    if torchdiffeq is not None:
        contestants.append(
            Contestant(
                "torchdiffeq",
                "odeint dopri5, examples/cnf.py structure",
                tdq_step,
                tdq_counts,
                limit,
                field.counter,
                "peer",
            )
        )
    else:
        skipped.append(Row("torchdiffeq", "", [], None, None, "peer", skipped="not installed"))
    return Case(
        name="B8",
        title="CNF (FFJORD) training step",
        setup=[
            f"2-D eight Gaussians, batch {BATCH}, field softplus MLP 3-{HIDDEN}-{HIDDEN}-{HIDDEN}-2 "
            "with t concatenated to every layer, float32",
            f"Hutchinson trace, one Rademacher vector per solve (the same for both); Dopri5, "
            f"rtol = atol = {TOL:g}, t from 1 (data) to 0 (base)",
            "loss -mean log p(x), backward() through the solver (torchnde DirectAdjoint, "
            "torchdiffeq odeint)",
            f"limit: nfe x (field + trace VJP with create_graph, and the backward), timed as "
            f"{CHAIN} chained calls and one backward",
        ],
        contestants=contestants,
        skipped=skipped,
        bare={BARE: bare_chain},
        bare_calls=2,
        default_rounds=5,
        targets={"ratio": 1.0},
        notes=[
            "torchdiffeq: the CNF as in its examples/cnf.py (an odefunc on (z, log p) with the "
            "trace inside), with the Hutchinson estimator instead of the exact trace",
        ],
    )
