"""B9 — one training epoch of the digits ODE-Net (the ``ode-net-digits`` reproduce entry's model):
linear 64→64, ReLU, an ODE block whose field is a residual block with weights affine in depth
(``W₂(t) relu(W₁(t) h + b₁(t)) + b₂(t)``), linear 64→10; Dopri5 at rtol 1e-3, atol 1e-4 over
[0, 1], gradients by the continuous adjoint with seminorms; 11 mini-batches of 128 (the 1347
training digits), Adam. torchnde (``torchnde.nn.NeuralODE`` with ``BacksolveAdjoint``) against
the same model on torchdiffeq (``odeint_adjoint``, ``adjoint_options=dict(norm="seminorm")``).

Every run starts from the same weights and optimiser state and visits the batches in the same
order, so each contestant does the same work in every round. The digits come with scikit-learn
(the benchmark is skipped without it)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import torchnde
from torchnde.nn import ContinuousBlock, DepthLinear, Legendre, NeuralODE

from ._common import Case, Contestant, Counts, Options, Row, _Counter, peer

WIDTH, BATCH = 64, 128
RTOL, ATOL = 1e-3, 1e-4

torchdiffeq = peer("torchdiffeq")


class CountingField(nn.Module):
    """The ODE block's field, counting calls made with and without gradients (the forward
    solve of an adjoint method runs without, its backward solve with)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block
        self.counter = _Counter()
        self.split = {"fwd": 0, "bwd": 0}

    def forward(self, t: torch.Tensor, h: torch.Tensor, args: Any = None) -> torch.Tensor:
        self.counter.calls += 1
        self.split["bwd" if torch.is_grad_enabled() else "fwd"] += 1
        return self.block(t, h)


def _digits() -> tuple[torch.Tensor, torch.Tensor] | None:
    try:
        from torchnde.data import load_digits

        data = load_digits()
    except ImportError:
        return None
    return data.x_train, data.y_train


def build(opts: Options) -> Case:
    digits = _digits()
    torch.manual_seed(0)
    basis = Legendre(1, 0.0, 1.0)
    field = CountingField(
        ContinuousBlock(
            DepthLinear(WIDTH, WIDTH, basis), nn.ReLU(), DepthLinear(WIDTH, WIDTH, basis)
        )
    )
    encoder, head = nn.Linear(64, WIDTH), nn.Linear(WIDTH, 10)
    ode = NeuralODE(
        field,
        torchnde.Dopri5(),
        0.0,
        1.0,
        controller=torchnde.PIDController(rtol=RTOL, atol=ATOL),
        adjoint=torchnde.BacksolveAdjoint(rtol=RTOL, atol=ATOL),
    )
    modules = nn.ModuleList([encoder, field, head])
    initial = {k: v.clone() for k, v in modules.state_dict().items()}
    x, y = digits if digits is not None else (torch.zeros(0, 64), torch.zeros(0))
    batches = 2 if opts.quick else (len(y) + BATCH - 1) // BATCH
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    index = [order[i * BATCH : (i + 1) * BATCH] for i in range(batches)]
    times = torch.tensor([0.0, 1.0])

    def tdq_block(h: torch.Tensor) -> torch.Tensor:
        return torchdiffeq.odeint_adjoint(
            field,
            h,
            times,
            rtol=RTOL,
            atol=ATOL,
            method="dopri5",
            adjoint_params=tuple(field.parameters()),
            adjoint_options={"norm": "seminorm"},
        )[-1]

    def epoch(block) -> tuple[Any, Any]:
        """The timed run and its limit (from this contestant's own forward/backward calls)."""
        last = {"fwd": 0, "bwd": 0}

        def run(probe):
            modules.load_state_dict(initial)
            field.split.update(fwd=0, bwd=0)
            optimiser = torch.optim.Adam(modules.parameters(), lr=3e-3)
            for i in index:
                optimiser.zero_grad()
                logits = head(block(torch.relu(encoder(x[i]))))
                nn.functional.cross_entropy(logits, y[i]).backward()
                optimiser.step()
            last.update(field.split)
            return dict(last)

        def limit(n: Counts, per_call: dict[str, float]) -> float:
            return last["fwd"] * per_call["fwd"] + last["bwd"] * per_call["fwd+bwd"]

        return run, limit

    def counts(split, calls, _):
        return Counts(f"{batches} batches", calls)

    h = torch.randn(BATCH, WIDTH, generator=torch.Generator().manual_seed(2))
    h_in = h.clone().requires_grad_(True)
    params = tuple(field.parameters())
    t_bare = torch.tensor(0.5)

    def bare_fwd() -> None:
        with torch.no_grad():
            field.block(t_bare, h)

    def bare_vjp() -> None:
        out = field.block(t_bare, h_in)
        torch.autograd.grad(out, (h_in, *params), torch.ones_like(out))

    contestants: list[Contestant] = []
    skipped: list[Row] = []
    if digits is None:
        skipped.append(Row("torchnde", "", [], None, None, "main", skipped="needs scikit-learn"))
    else:
        run, limit = epoch(ode)
        contestants.append(
            Contestant("torchnde", "NeuralODE, Backsolve", run, counts, limit, field.counter)
        )
        if torchdiffeq is not None:
            run, limit = epoch(tdq_block)
            contestants.append(
                Contestant(
                    "torchdiffeq",
                    "odeint_adjoint (seminorm)",
                    run,
                    counts,
                    limit,
                    field.counter,
                    "peer",
                )
            )
        else:
            skipped.append(Row("torchdiffeq", "", [], None, None, "peer", skipped="not installed"))
    return Case(
        name="B9",
        title="ODE-Net digits training epoch",
        setup=[
            f"8x8 digits, {batches} batches of {BATCH}, linear 64-{WIDTH}, ReLU, ODE block "
            f"(residual block {WIDTH}-{WIDTH}-{WIDTH}, ReLU, weights affine in t), linear {WIDTH}-10",
            f"Dopri5 rtol {RTOL:g}, atol {ATOL:g} on [0, 1]; continuous adjoint with seminorms; "
            "Adam; every run from the same weights and batch order; float32",
            "nfe: field calls in the epoch, forward and backward solves together; limit: forward "
            "calls x bare forward + backward calls x bare forward+backward",
        ],
        contestants=contestants,
        skipped=skipped,
        bare={"fwd": bare_fwd, "fwd+bwd": bare_vjp},
        default_rounds=5,
        targets={"ratio": 1.0},
    )
