"""The small training problem the ``test_training*`` tests share, and the script they launch as
separate processes (to kill them, signal them, or run them under ``torchrun``). It holds no tests.

The problem: windows of a damped linear spiral ``dy/dt = A y`` (exact data from the matrix
exponential), fitted by a neural ODE ``dy/dt = MLP(y)`` solved with RK4 through
:func:`torchnde.solve`. Each window has its own learnable initial state (multiple shooting), an
``nn.Parameter`` of the model. The loss draws random numbers from torch, NumPy and Python's
``random`` (noise added to the targets), so a resumed run only matches an uninterrupted one if
every generator's state was restored.

Script use (prints one JSON line: ``{"status": "finished" | "interrupted", ...}``)::

    python tests/test_training_worker.py --checkpoint-dir DIR --out PARAMS.pt [--resume]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy
import torch
from torch import nn

import torchnde
from torchnde.training import (
    Stage,
    Trainer,
    TrainingInterrupted,
    WindowSampler,
    atomic_save,
    is_main_process,
    seed_everything,
)

DTYPE = torch.float64
A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=DTYPE)
DT = 0.1
WINDOW = 4  # steps per window


def make_windows(num_windows: int) -> torch.Tensor:
    """Exact observations ``(num_windows, WINDOW + 1, 2)``: windows start at every sample."""
    times = torch.arange(num_windows + WINDOW, dtype=DTYPE) * DT
    start = torch.tensor([2.0, 0.0], dtype=DTYPE)
    path = torch.stack([torch.linalg.matrix_exp(A * t) @ start for t in times])
    return torch.stack([path[i : i + WINDOW + 1] for i in range(num_windows)])


class ShootingODE(nn.Module):
    """``dy/dt = MLP(y)`` with one learnable initial state per window."""

    def __init__(self, windows: torch.Tensor, hidden: int = 8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 2)).to(DTYPE)
        self.initial = nn.Parameter(windows[:, 0].clone())

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The model's values at the window's sample times: ``(len(batch), WINDOW + 1, 2)``."""
        sol = torchnde.solve(
            torchnde.ODETerm(lambda t, y, args: self.net(y)),
            torchnde.RK4(),
            0.0,
            WINDOW * DT,
            self.initial[batch],
            dt0=DT,
            saveat=torchnde.SaveAt(ts=torch.arange(WINDOW + 1, dtype=DTYPE) * DT),
            batch_axis=0,
        )
        return sol.ys


class Problem:
    """The windows and the loss over a batch of them."""

    def __init__(self, num_windows: int = 10, noise: bool = True):
        self.windows = make_windows(num_windows)
        self.noise = noise

    def model(self, init_seed: int) -> ShootingODE:
        seed_everything(init_seed)
        return ShootingODE(self.windows)

    def loss(self, model: ShootingODE, batch: torch.Tensor) -> torch.Tensor:
        target = self.windows[batch]
        if not self.noise:  # deterministic (data-parallel runs draw different noise)
            return ((model(batch) - target) ** 2).mean()
        noise = 1e-3 * torch.randn(target.shape, dtype=DTYPE)  # torch's generator
        scale = 1.0 + 1e-3 * (random.random() - 0.5) + 1e-3 * (numpy.random.rand() - 0.5)
        return ((model(batch) - target - noise) ** 2).mean() * scale


def default_stages(adam_steps: int = 10, lbfgs_steps: int = 6) -> list[Stage]:
    return [
        Stage("adam", steps=adam_steps, lr=2e-2, scheduler="cosine"),
        Stage("lbfgs", steps=lbfgs_steps, lr=1.0),
    ]


def make_trainer(
    problem: Problem,
    model: ShootingODE,
    *,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 1,
    batch_size: int | None = 4,
    stages: list[Stage] | None = None,
    **kwargs,
) -> Trainer:
    return Trainer(
        model,
        problem.loss,
        stages if stages is not None else default_stages(),
        sampler=WindowSampler(len(problem.windows), batch_size=batch_size, seed=1),
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        seed=0,
        progress=False,
        **kwargs,
    )


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint-dir", type=Path)
    parser.add_argument("--out", required=True, help="final parameters; {rank} is replaced")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--init-seed", type=int, default=7)
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--adam-steps", type=int, default=10)
    parser.add_argument("--lbfgs-steps", type=int, default=6)
    parser.add_argument("--no-noise", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    torch.set_num_threads(1)
    problem = Problem(args.windows, noise=not args.no_noise)
    model = problem.model(args.init_seed)
    trainer = make_trainer(
        problem,
        model,
        checkpoint_dir=args.checkpoint_dir,
        batch_size=args.batch_size if args.batch_size > 0 else None,
        stages=default_stages(args.adam_steps, args.lbfgs_steps),
    )
    try:
        result = trainer.fit(resume=args.resume)
    except TrainingInterrupted as stop:
        print(json.dumps({"status": "interrupted", "step": stop.step}), flush=True)
        return 0
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    atomic_save(
        {"params": model.state_dict(), "losses": result.losses},
        args.out.replace("{rank}", str(rank)),
    )
    if is_main_process():
        print(json.dumps({"status": "finished", "steps": result.num_steps}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
