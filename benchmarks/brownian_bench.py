"""BROWNIAN — the cost of Brownian-motion queries alone, torchnde's paths against torchsde's
``BrownianInterval``, side by side in one process (issues 12 and 13).

Patterns (fresh path every round, seed = round):

* ``random`` — 20 random intervals ``[a, b]`` (sorted uniform pairs in [0, 1]) at batch 131072,
  float64, as torchsde's statistical tests query a ``BrownianInterval``; without and with the
  space-time Lévy area (``return_U=True``). Rows: the facade's ``BrownianInterval``
  (``torchnde.compat.torchsde``, a ``BrownianIntervalTree``), torchnde ``VirtualBrownianTree``
  at the facade's default resolution (``tol = 2^-20``), torchsde's ``BrownianInterval``.
* ``steps`` — a fixed-step solve's queries ``[k dt, (k + 1) dt]`` in turn, shape (1024, 16),
  float32 (B5's noise), 200 steps (``--quick``) or 1000. Rows: ``VirtualBrownianTree`` at its
  default ``tol=1e-3`` (B5's tree rows), ``BrownianIntervalTree``, torchsde's
  ``BrownianInterval`` (B5's peer).

Clock: this thread's CPU time, one torch thread; medians over rounds, every round runs each row
once in a rotated order.

``python -m benchmarks.brownian_bench [--quick] [--repeats N] [--patterns random steps]``
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import time
from collections.abc import Callable

import torch

import torchnde
from torchnde.compat import torchsde as facade
from torchnde.paths import BrownianIntervalTree

from ._common import peer

torchsde = peer("torchsde")

RANDOM_BATCH, RANDOM_QUERIES = 131072, 20


def _random_rows(levy: str) -> dict[str, Callable[[int], float]]:
    """Each row: seed -> seconds for the 20 queries on a fresh path."""

    def queries(seed: int) -> list[tuple[float, float]]:
        rng = random.Random(seed)
        return [tuple(sorted((rng.random(), rng.random()))) for _ in range(RANDOM_QUERIES)]

    def interval(lib):
        def run(seed: int) -> float:
            bm = lib.BrownianInterval(
                0.0,
                1.0,
                size=(RANDOM_BATCH,),
                dtype=torch.float64,
                entropy=seed,
                levy_area_approximation=levy,
            )
            start = time.thread_time()
            for a, b in queries(seed):
                bm(a, b, return_U=levy != "none")
            return time.thread_time() - start

        return run

    def tree(seed: int) -> float:
        path = torchnde.VirtualBrownianTree(
            0.0,
            1.0,
            (RANDOM_BATCH,),
            tol=2.0**-20,
            seed=seed,
            dtype=torch.float64,
            levy_area=None if levy == "none" else "space-time",
        )
        start = time.thread_time()
        for a, b in queries(seed):
            if levy == "none":
                path.increment(a, b)
            else:
                path.levy_increment(a, b)
        return time.thread_time() - start

    rows = {"torchnde facade BrownianInterval": interval(facade), "torchnde VBT tol 2^-20": tree}
    if torchsde is not None:
        rows["torchsde BrownianInterval"] = interval(torchsde)
    return rows


def _step_rows(steps: int) -> dict[str, Callable[[int], float]]:
    shape = (1024, 16)
    times = [torch.tensor(k / steps, dtype=torch.float64) for k in range(steps + 1)]

    def native(make):
        def run(seed: int) -> float:
            path = make(seed)
            start = time.thread_time()
            for a, b in itertools.pairwise(times):
                path.increment(a, b)
            return time.thread_time() - start

        return run

    rows = {
        "torchnde VBT tol 1e-3": native(
            lambda seed: torchnde.VirtualBrownianTree(
                0.0, 1.0, shape, seed=seed, dtype=torch.float32
            )
        ),
        "torchnde BrownianIntervalTree": native(
            lambda seed: BrownianIntervalTree(0.0, 1.0, shape, seed=seed, dtype=torch.float32)
        ),
    }
    if torchsde is not None:

        def peer_run(seed: int) -> float:
            bm = torchsde.BrownianInterval(0.0, 1.0, size=shape, dtype=torch.float32, entropy=seed)
            start = time.thread_time()
            for a, b in itertools.pairwise(times):
                bm(float(a), float(b))
            return time.thread_time() - start

        rows["torchsde BrownianInterval"] = peer_run
    return rows


def _table(title: str, rows: dict[str, Callable[[int], float]], repeats: int) -> None:
    names = list(rows)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times[name].append(rows[name](r))
    peer_name = next((n for n in names if n.startswith("torchsde")), None)
    base = statistics.median(times[peer_name]) if peer_name else None
    print(f"\n== {title}")
    print(f"   {'row':34s} {'time ms':>9s} {'min-max ms':>17s} {'ratio':>6s}")
    for name in names:
        med = statistics.median(times[name])
        spread = f"{1e3 * min(times[name]):.1f}-{1e3 * max(times[name]):.1f}"
        ratio = f"{med / base:.2f}" if base else "-"
        print(f"   {name:34s} {1e3 * med:9.1f} {spread:>17s} {ratio:>6s}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 steps, 3 rounds")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 5; quick 3)")
    parser.add_argument("--patterns", nargs="+", default=["random", "steps"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    repeats = args.repeats or (3 if args.quick else 5)
    steps = 200 if args.quick else 1000
    print(f"torch {torch.__version__} | 1 thread | thread CPU time | medians of {repeats} rounds")
    if "random" in args.patterns:
        for levy in ("none", "space-time"):
            _table(
                f"random access: {RANDOM_QUERIES} queries at batch {RANDOM_BATCH}, float64, "
                f"levy_area_approximation={levy!r}",
                _random_rows(levy),
                repeats,
            )
    if "steps" in args.patterns:
        _table(
            f"fixed-step queries: {steps} steps of {1 / steps:g}, shape (1024, 16), float32",
            _step_rows(steps),
            repeats,
        )


if __name__ == "__main__":
    main()
