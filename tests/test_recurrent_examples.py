"""The examples of the recurrent-cell, neural SDE and diffusion families run with ``--quick`` and
show what they claim."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def run_example(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_recurrent_cells_quick_same_weights_other_solvers():
    out = run_example("recurrent_cells.py", "--quick")
    mse = dict(re.findall(rf"test MSE, (\w+)[^:]*:\s+{NUMBER}", out))
    assert {"the", "euler", "heun", "rk4"} <= mse.keys(), out
    # a higher-order solve of the same ODE stays near the IMEX-trained answer
    assert abs(float(mse["rk4"]) - float(mse["the"])) < 0.05, out
    gap = float(re.search(rf"max difference {NUMBER}", out).group(1))
    assert gap < 1e-12, out


def test_diffusion_2d_quick_samples_both_ways():
    out = run_example("diffusion_2d.py", "--quick")
    match = re.search(
        rf"reverse SDE {NUMBER}, probability-flow ODE {NUMBER}, between held-out halves {NUMBER}",
        out,
    )
    assert match, out
    sde, ode, halves = map(float, match.groups())
    # 400 iterations already put both samplers within a few times the data's own distance
    assert sde < 4 * halves and ode < 4 * halves, out
    nll = float(re.search(rf"probability-flow ODE: {NUMBER} nats", out).group(1))
    assert 1.0 < nll < 5.0, out
