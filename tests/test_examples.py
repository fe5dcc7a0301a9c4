"""The examples run, and do what they claim: here, training through ``torchnde.solve`` fits the
spiral (the loss falls and the model's trajectory moves towards the true one)."""

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
        timeout=180,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_spiral_neural_ode_quick_fits_the_spiral():
    out = run_example("spiral_neural_ode.py", "--quick")
    losses = [
        (int(it), float(loss))
        for it, loss in re.findall(rf"^iteration\s+(\d+)\s+loss\s+{NUMBER}$", out, re.M)
    ]
    assert len(losses) >= 5, f"expected a loss line every few iterations, got:\n{out}"
    assert losses[0][0] == 1
    assert [it for it, _ in losses] == sorted(it for it, _ in losses)
    first, final = losses[0][1], losses[-1][1]
    assert final < 0.5 * first, f"the loss did not fall enough: {first} -> {final}\n{out}"

    match = re.search(rf"mean abs error {NUMBER} before training, {NUMBER} after", out)
    assert match, f"no final error line in:\n{out}"
    before, after = float(match.group(1)), float(match.group(2))
    # solved from y(0) alone over the whole span, the trained model tracks the truth better
    assert after < 0.75 * before, f"trajectory error {before} -> {after}\n{out}"
