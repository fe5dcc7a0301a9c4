"""MEM — peak memory of a training step (solve + ``backward()``) as the number of steps grows, for
each gradient method: B1's field and batch, fixed-step RK4 with n steps on [0, 1], 10 save times.

How memory is measured (PyTorch keeps no statistics of CPU memory, and ``tracemalloc`` does not
see its allocations): each gradient method runs in a fresh subprocess with glibc told to serve
every allocation of 16 KiB or more from its own ``mmap`` (``MALLOC_MMAP_THRESHOLD_=16384``), so
that freed tensor memory goes back to the operating system at once and the resident set size
(RSS) follows the live tensors. Before each run the worker collects garbage, calls
``malloc_trim(0)``, resets the kernel's RSS high-water mark (``/proc/self/clear_refs``) and reads
the RSS; after ``backward()`` it reads the high-water mark (``VmHWM``). The difference is the
peak memory the training step added, model and inputs excluded. A calibration line checks the
method on a tensor of known size. A second table counts the bytes autograd holds for the backward
pass at the end of the forward solve (``torch.autograd.graph.saved_tensors_hooks``, each storage
once); it misses what an adjoint stores outside autograd's saved tensors, which the RSS sees.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import re
import subprocess
import sys
from typing import Any

import torch

import torchnde

from ._common import Options, peer, torchnde_has
from .b1_forward import BATCH, STATE, problem

MiB = 2**20
STEPS = (100, 200, 400, 800)
QUICK_STEPS = (50, 100, 200)

#: row name → (library, description)
ROWS = {
    "direct": ("torchnde", "DirectAdjoint()"),
    "checkpoint": ("torchnde", "CheckpointAdjoint()"),
    "checkpoint-sqrt": ("torchnde", "CheckpointAdjoint(checkpoints=ceil(sqrt(n)))"),
    "backsolve": ("torchnde", "BacksolveAdjoint(1e-6, 1e-8, solver=Dopri5())"),
    "tdq-direct": ("torchdiffeq", "odeint"),
    "tdq-adjoint": ("torchdiffeq", "odeint_adjoint (dopri5 backwards)"),
}


# ------------------------------------------------------------------------------------------------
# the worker (one subprocess per row)


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        return int(re.search(rf"^{key}:\s+(\d+) kB", fh.read(), re.M).group(1)) * 1024


def _reset_peak() -> int:
    """Release free heap memory, reset the RSS high-water mark; return the RSS now."""
    gc.collect()
    with contextlib.suppress(OSError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status("VmRSS")


def _peak_since(base: int) -> int:
    return _status("VmHWM") - base


class _SavedBytes:
    """Bytes of the distinct storages autograd saves for backward while active."""

    def __init__(self) -> None:
        self.storages: dict[int, int] = {}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        self.storages[storage.data_ptr()] = storage.nbytes()
        return t

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def _solver_call(row: str, steps: int, field, y0, ts):
    """The forward solve of ``row`` with ``steps`` fixed RK4 steps; returns time-major ``ys``."""
    dt = 1.0 / steps
    if row.startswith("tdq"):
        tdq = peer("torchdiffeq")
        opts = {"method": "rk4", "options": {"step_size": dt}}
        if row == "tdq-adjoint":
            return tdq.odeint_adjoint(
                field,
                y0,
                ts,
                adjoint_params=tuple(field.parameters()),
                # backwards like torchnde's row: adaptive Dopri5 with seminorms
                adjoint_method="dopri5",
                adjoint_options={"norm": "seminorm"},
                adjoint_rtol=1e-6,
                adjoint_atol=1e-8,
                **opts,
            )
        return tdq.odeint(field, y0, ts, **opts)
    adjoint = {
        "direct": lambda: torchnde.DirectAdjoint(),
        "checkpoint": lambda: torchnde.CheckpointAdjoint(),
        "checkpoint-sqrt": lambda: torchnde.CheckpointAdjoint(
            checkpoints=math.ceil(math.sqrt(steps))
        ),
        # the backward solve is adaptive, so it needs a solver with an error estimate
        "backsolve": lambda: torchnde.BacksolveAdjoint(
            rtol=1e-6, atol=1e-8, solver=torchnde.Dopri5()
        ),
    }[row]()
    sol = torchnde.solve(
        torchnde.ODETerm(field),
        torchnde.RK4(),
        0.0,
        1.0,
        y0,
        dt0=dt,
        saveat=torchnde.SaveAt(ts=ts),
        adjoint=adjoint,
    )
    return sol.ys


def _measure(row: str, steps: int, field, y0, ts, weights) -> dict[str, Any]:
    field.counter.calls = 0
    base = _reset_peak()
    saved = _SavedBytes()
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
        ys = _solver_call(row, steps, field, y0, ts)
    forward_calls = field.counter.calls
    (ys * weights).sum().backward()
    peak = _peak_since(base)
    del ys
    return {
        "steps": steps,
        "peak": peak,
        "saved": saved.total,
        "nfe": forward_calls,
        "nfe_backward": field.counter.calls - forward_calls,
    }


def _calibrate() -> int:
    base = _reset_peak()
    block = torch.ones(16 * MiB // 4)  # 16 MiB of float32
    block += 1
    peak = _peak_since(base)
    del block
    return peak


def worker(row: str, steps: list[int], threads: int) -> None:
    torch.set_num_threads(threads)
    field, y0, ts = problem()
    weights = torch.randn(len(ts), BATCH, STATE, generator=torch.Generator().manual_seed(7))
    _measure(row, 4, field, y0, ts, weights)  # warm-up: kernels, parameter .grad buffers
    print(json.dumps({"calibration": _calibrate()}), flush=True)
    for n in steps:
        print(json.dumps(_measure(row, n, field, y0, ts, weights)), flush=True)


# ------------------------------------------------------------------------------------------------
# the driver


def _available(row: str) -> str:
    """Why ``row`` cannot run, or '' if it can."""
    library, _ = ROWS[row]
    if library == "torchdiffeq":
        return "" if peer("torchdiffeq") is not None else "not installed"
    name = {"checkpoint-sqrt": "checkpoint"}.get(row, row)
    cls = {
        "direct": "DirectAdjoint",
        "checkpoint": "CheckpointAdjoint",
        "backsolve": "BacksolveAdjoint",
    }[name]
    return "" if torchnde_has(cls) else "not available yet"


def _run_worker(row: str, steps: tuple[int, ...], threads: int) -> tuple[list[dict], int, str]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="16384")
    cmd = [sys.executable, "-m", "benchmarks.memory", "--worker", row, "--threads", str(threads)]
    cmd += ["--steps", *map(str, steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return [], 0, f"failed: {last[:80]}"
    results, calibration = [], 0
    for line in proc.stdout.splitlines():
        record = json.loads(line)
        if "calibration" in record:
            calibration = record["calibration"]
        else:
            results.append(record)
    return results, calibration, ""


def main(opts: Options) -> None:
    steps = QUICK_STEPS if opts.quick else STEPS
    rows = [r for r in ROWS if not (opts.quick and ROWS[r][0] != "torchnde")]
    print(
        "\n== MEM: peak memory of solve + backward() as the number of steps grows\n"
        f"   B1's field, batch {BATCH}, state {STATE}, float32, RK4 with n fixed steps on "
        "[0, 1], 10 save times, loss = sum(w * ys)\n"
        "   peak = RSS high-water mark during the step minus RSS before it, one subprocess per "
        "row, glibc mmap threshold 16 KiB, malloc_trim first (see benchmarks/memory.py)"
    )
    if not os.path.exists("/proc/self/clear_refs"):
        print("   skipped: needs Linux /proc (clear_refs, VmHWM) to measure peak memory")
        return
    results: dict[str, list[dict]] = {}
    problems: dict[str, str] = {}
    calibrations = []
    for row in rows:
        why = _available(row)
        if why:
            problems[row] = why
            continue
        res, cal, err = _run_worker(row, steps, opts.threads)
        if err:
            problems[row] = err
        results[row] = res
        if cal:
            calibrations.append(cal)
    if calibrations:
        print(
            f"   calibration: a 16.0 MiB tensor reads as {min(calibrations) / MiB:.1f}–"
            f"{max(calibrations) / MiB:.1f} MiB"
        )
    _table("peak memory added by solve + backward() (MiB)", rows, steps, results, problems, "peak")
    _table("bytes autograd saves for backward (MiB)", rows, steps, results, problems, "saved")
    _table("vector-field calls forward / backward", rows, steps, results, problems, "nfe")


def _table(title, rows, steps, results, problems, key) -> None:
    width = 11 if key == "nfe" else 8
    print(f"\n   {title}")
    head = "".join(f"{'n=' + str(n):>{width}}" for n in steps)
    print(f"   {'library':<12} {'gradients':<44}{head}")
    for row in rows:
        library, name = ROWS[row]
        if row in problems and not results.get(row):
            print(f"   {library:<12} {name:<44} — {problems[row]}")
            continue
        cells = []
        by_steps = {r["steps"]: r for r in results.get(row, [])}
        for n in steps:
            r = by_steps.get(n)
            if r is None:
                cells.append(f"{'—':>{width}}")
            elif key == "nfe":
                cells.append(f"{str(r['nfe']) + '/' + str(r['nfe_backward']):>{width}}")
            else:
                cells.append(f"{r[key] / MiB:>{width}.1f}")
        print(f"   {library:<12} {name:<44}" + "".join(cells))


def _parse(argv):
    parser = argparse.ArgumentParser(description="memory benchmark worker")
    parser.add_argument("--worker", choices=sorted(ROWS), required=True)
    parser.add_argument("--steps", type=int, nargs="+", required=True)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = _parse(sys.argv[1:])
    worker(args.worker, args.steps, args.threads)
