"""COMPACT — finished samples stop costing (``solve(..., compact=True)``, issue 13): a batched
solve whose samples need very different numbers of steps, with and without compaction, against
the sum of its parts (each group of samples solved on its own) and torchode (per-sample steps,
whole batch every step).

Problems (Dopri5, per-sample step control ``batch_axis=0``, ``torch.no_grad()``):

* ``mixed`` — a neural ODE ``dy/dt = s·MLP(y)`` (8 → 256 → 8, tanh, float32, seed 0) for 1024
  samples on [0, 3], rtol 1e-5, atol 1e-7, where 10 % of the samples run 20× faster
  (``s = 20``, passed per sample in ``args``) and need several times the steps of the rest;
  "sum of parts" solves the fast and the slow samples as two batches.
* ``vdp`` — B3's Van der Pol (μ = 10, 1024 initial conditions in [-2, 2]², [0, 10], rtol 1e-6,
  atol 1e-8, float64, 10 save times): a cheap element-wise field, where the loop's per-step work
  rather than the field dominates.

Clock: process CPU time, one thread, medians.

``python -m benchmarks.compact_bench [--repeats N] [--quick]``, or
``python -m benchmarks.run --case COMPACT``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import torchnde

from . import _libraries as lib


def _timed(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def _solve(field, y0, t1, args, rtol, atol, compact, ts=None):
    saveat = torchnde.SaveAt(ts=ts) if ts is not None else None
    controller = torchnde.PIDController(rtol=rtol, atol=atol)

    def run():
        with torch.no_grad():
            return torchnde.solve(
                torchnde.ODETerm(field),
                torchnde.Dopri5(),
                0.0,
                t1,
                y0,
                args=args,
                saveat=saveat,
                controller=controller,
                batch_axis=0,
                compact=compact,
                max_steps=100_000,
            )

    return run


def _mixed(quick: bool):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 256), torch.nn.Tanh(), torch.nn.Linear(256, 8))
    batch = 256 if quick else 1024
    speed = torch.ones(batch)
    fast = batch // 10
    speed[:fast] = 20.0
    y0 = torch.randn(batch, 8)

    def field(t, y, s):
        return s[:, None] * net(y)

    rows = {
        "torchnde batch_axis=0": _solve(field, y0, 3.0, speed, 1e-5, 1e-7, False),
        "torchnde batch_axis=0, compact=True": _solve(field, y0, 3.0, speed, 1e-5, 1e-7, True),
    }
    parts = [
        _solve(field, y0[sl], 3.0, speed[sl], 1e-5, 1e-7, False)
        for sl in (slice(0, fast), slice(fast, batch))
    ]
    rows["sum of parts (fast and slow apart)"] = lambda: [part() for part in parts]
    if lib.torchode is not None:

        class Field(torch.nn.Module):
            def forward(self, t, y):
                return field(t, y, speed)

        tod = lib.tod_solve(Field(), y0, torch.tensor([0.0, 3.0]), rtol=1e-5, atol=1e-7)

        def torchode_run():
            with torch.no_grad():
                return tod()

        rows["torchode (per-sample, whole batch)"] = torchode_run
    return rows


def _vdp(quick: bool):
    batch, t1 = (256, 2.0) if quick else (1024, 10.0)
    gen = torch.Generator().manual_seed(0)
    y0 = torch.rand(batch, 2, generator=gen, dtype=torch.float64) * 4 - 2
    ts = torch.linspace(0.0, t1, 10, dtype=torch.float64)

    def field(t, y, args):
        x, v = y[:, 0], y[:, 1]
        return torch.stack([v, 10.0 * (1 - x * x) * v - x], dim=1)

    return {
        "torchnde batch_axis=0": _solve(field, y0, t1, None, 1e-6, 1e-8, False, ts),
        "torchnde batch_axis=0, compact=True": _solve(field, y0, t1, None, 1e-6, 1e-8, True, ts),
    }


def main(opts=None, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compact_bench")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args([] if opts is not None else argv)
    if opts is not None:  # from benchmarks.run
        args.repeats = getattr(opts, "repeats", None) or args.repeats
        args.quick = bool(getattr(opts, "quick", False))
    torch.set_num_threads(1)
    for name, build in (("mixed", _mixed), ("vdp", _vdp)):
        rows = build(args.quick)
        times = {label: _timed(fn, 2 if args.quick else args.repeats) for label, fn in rows.items()}
        print(f"\nCOMPACT {name} (CPU time, 1 thread, median)")
        base = times["torchnde batch_axis=0, compact=True"]
        for label, seconds in times.items():
            print(f"  {label:42s} {seconds * 1e3:9.1f} ms   compact/this {base / seconds:5.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(argv=None))
