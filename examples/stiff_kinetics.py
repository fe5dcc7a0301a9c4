"""Fit an unknown rate law inside a stiff reaction network (Robertson's kinetics).

Robertson's three-species reaction network (Robertson 1966; Hairer & Wanner, *Solving Ordinary
Differential Equations II*, §IV.1) is the classic stiff problem:

    y1' = -r1 + 1e4·y2·y3,    y2' = r1 - 3e7·y2² - 1e4·y2·y3,    y3' = 3e7·y2²,

with rate constants spanning eleven orders of magnitude. Here the first reaction's rate law
``r1(y1)`` is unknown (the truth is ``0.04·y1``) and is replaced by a small network,
``r1 = y1·exp(NN(y1))`` (positive, at most first order): a hybrid model. It is fitted to
concentrations observed at logarithmically spaced times by solving it with ``Kvaerno5()`` — an
implicit method; an explicit one needs ~10^5 steps here (the script shows Dopri5 giving up) — and
backpropagating through the solve (``DirectAdjoint``: the implicit stages are differentiated by the
implicit function theorem, not through Newton's iterations), with L-BFGS. At the end the learnt
rate law is compared with the truth, ``r1(y1)/y1 = 0.04``.

Run ``python examples/stiff_kinetics.py`` (about a minute on two CPU cores; noisy data over
[0, 40]) or with ``--quick`` (noise-free data over [0, 10], ~15 s).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import torchnde

F64 = torch.float64
K1, K2, K3 = 0.04, 3e7, 1e4


def robertson(t: torch.Tensor, y: torch.Tensor, args: None) -> torch.Tensor:
    """The true network."""
    y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
    r1, r2, r3 = K1 * y1, K2 * y2**2, K3 * y2 * y3
    return torch.stack([-r1 + r3, r1 - r2 - r3, r2], dim=-1)


class HybridKinetics(torch.nn.Module):
    """Robertson's network with the first rate law ``r1(y1) = y1·exp(NN(y1) - 3)`` learnt."""

    def __init__(self, hidden: int = 8):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(1, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
        ).double()

    def rate(self, y1: torch.Tensor) -> torch.Tensor:
        return y1 * torch.exp(self.net(y1[..., None])[..., 0] - 3.0)

    def forward(self, t: torch.Tensor, y: torch.Tensor, args: None) -> torch.Tensor:
        y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
        r1, r2, r3 = self.rate(y1), K2 * y2**2, K3 * y2 * y3
        return torch.stack([-r1 + r3, r1 - r2 - r3, r2], dim=-1)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="noise-free data on [0, 10]")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    t_end, noise, iterations = (10.0, 0.0, 25) if args.quick else (40.0, 0.002, 60)
    ts = torch.logspace(-2, math.log10(t_end), 12 if args.quick else 25, dtype=F64)
    ts = ts.clamp(max=t_end)  # logspace can overshoot t_end by rounding
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)

    # the data, from the true network at tight tolerances, with relative noise
    truth = torchnde.solve(
        torchnde.ODETerm(robertson),
        torchnde.Kvaerno5(),
        0.0,
        t_end,
        y0,
        controller=torchnde.PIDController(rtol=1e-10, atol=1e-14),
        saveat=torchnde.SaveAt(ts=ts),
    ).ys
    data = truth * (1 + noise * torch.randn_like(truth))

    # an explicit method on the same problem runs out of steps, and says what to use instead
    explicit = torchnde.solve(
        torchnde.ODETerm(robertson),
        torchnde.Dopri5(),
        0.0,
        t_end,
        y0,
        controller=torchnde.PIDController(rtol=1e-5, atol=1e-9),
        max_steps=2000,
        throw=False,
    )
    print(f"Dopri5: {explicit.statuses[0].name} — {explicit.messages[0][:160]}...")

    model = HybridKinetics()
    scale = data.abs().amax(dim=0)
    controller = torchnde.PIDController(rtol=1e-5, atol=1e-9)

    def loss_fn() -> torch.Tensor:
        sol = torchnde.solve(
            torchnde.ODETerm(model),
            torchnde.Kvaerno5(),
            0.0,
            t_end,
            y0,
            controller=controller,
            saveat=torchnde.SaveAt(ts=ts),
        )
        return ((sol.ys - data) / scale).square().mean()

    with torch.no_grad():
        first = float(loss_fn())
    optimiser = torch.optim.LBFGS(
        model.parameters(), lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    start = time.perf_counter()
    optimiser.step(closure)
    with torch.no_grad():
        last = float(loss_fn())
        y1 = torch.linspace(float(truth[:, 0].min()), 1.0, 5, dtype=F64)
        learnt = model.rate(y1) / y1
    error = float((learnt / K1 - 1).abs().max())
    print(
        f"loss {first:.3g} -> {last:.3g} in {time.perf_counter() - start:.1f} s (L-BFGS, "
        f"Kvaerno5, DirectAdjoint)"
    )
    print(
        "learnt r1(y1)/y1 at y1 =",
        [f"{v:.3f}" for v in y1.tolist()],
        ":",
        [f"{v:.5f}" for v in learnt.tolist()],
        f"(truth {K1}; worst relative error {error:.2%})",
    )
    return {"first_loss": first, "last_loss": last, "rate_error": error}


if __name__ == "__main__":
    main()
