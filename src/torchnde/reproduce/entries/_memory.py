"""Peak memory of one training step of the digits ODE-Net, as the number of solver steps grows —
measured the way ``benchmarks/memory.py`` does it (see there for the reasoning).

Each measurement runs in a fresh subprocess whose glibc serves every allocation of 16 KiB or more
from its own ``mmap`` (``MALLOC_MMAP_THRESHOLD_=16384``), so freed tensor memory returns to the
system at once and the resident set size follows the live tensors. Before the step the worker
collects garbage, calls ``malloc_trim(0)``, resets the kernel's RSS high-water mark
(``/proc/self/clear_refs``) and reads the RSS; after ``backward()`` it reads the high-water mark
(``VmHWM``). The difference is the peak memory the step added. The bytes autograd saves for the
backward pass (each storage once) are counted too.

Run as ``python -m torchnde.reproduce.entries._memory --adjoint backsolve direct --steps 8 32``;
prints one JSON line per method and step count.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import re
import subprocess
import sys

__all__ = ["measure", "supported"]

MiB = 2**20


def supported() -> bool:
    """Whether this system has what the measurement reads (Linux ``/proc``)."""
    return os.path.exists("/proc/self/clear_refs") and os.path.exists("/proc/self/status")


def measure(
    adjoints: list[str], steps: list[int], *, width: int, batch: int, seed: int
) -> list[dict]:
    """Peak memory (bytes) of a training step per gradient method and step count, from one fresh
    subprocess.

    Args:
        adjoints: among ``"backsolve"`` and ``"direct"``.
        steps: the fixed RK4 step counts of the forward solve.
        width: the ODE-Net's width.
        batch: the batch of digits.
        seed: seeds the model and the batch.

    Returns:
        One dict per method and step count: ``adjoint``, ``steps``, ``peak`` and ``saved`` bytes,
        plus ``calibration`` (how a 16 MiB tensor reads).
    """
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="16384")
    cmd = [sys.executable, "-m", __name__, "--adjoint", *adjoints, "--width", str(width)]
    cmd += ["--batch", str(batch), "--seed", str(seed), "--steps", *map(str, steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the memory worker failed:\n{proc.stderr[-2000:]}")
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    calibration = next(r["calibration"] for r in records if "calibration" in r)
    return [{**r, "calibration": calibration} for r in records if "steps" in r]


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        return int(re.search(rf"^{key}:\s+(\d+) kB", fh.read(), re.M).group(1)) * 1024


def _reset_peak() -> int:
    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status("VmRSS")


def _worker(args: argparse.Namespace) -> None:
    import torch

    import torchnde as tn
    from torchnde.data import load_digits

    from .ode_net_digits import build_odenet

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    data = load_digits()
    index = torch.randperm(len(data.y_train))[: args.batch]
    x, y = data.x_train[index], data.y_train[index]
    model = build_odenet(args.width)
    adjoints = {
        "backsolve": tn.BacksolveAdjoint(rtol=1e-3, atol=1e-4, solver=tn.Dopri5()),
        "direct": tn.DirectAdjoint(),
    }

    def step(adjoint: str, n: int) -> tuple[int, int]:
        storages: dict[int, int] = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        model[2].adjoint = adjoints[adjoint]
        model.zero_grad(set_to_none=False)
        base = _reset_peak()
        with tn.nn.discretised(model, tn.RK4(), steps=n):
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
        return _status("VmHWM") - base, sum(storages.values())

    for adjoint in args.adjoint:
        step(adjoint, 2)  # warm-up: kernels, .grad buffers
    base = _reset_peak()
    block = torch.ones(16 * MiB // 4)
    block += 1
    print(json.dumps({"calibration": _status("VmHWM") - base}), flush=True)
    del block
    for adjoint in args.adjoint:
        for n in args.steps:
            peak, saved = step(adjoint, n)
            record = {"adjoint": adjoint, "steps": n, "peak": peak, "saved": saved}
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--adjoint", choices=("backsolve", "direct"), nargs="+", required=True)
    parser.add_argument("--steps", type=int, nargs="+", required=True)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    _worker(parser.parse_args())
