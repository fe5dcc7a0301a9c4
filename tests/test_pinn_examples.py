"""The PINN examples run with --quick and print what they say they print (one line per stage or
block, the final errors, the learnt coefficient). Run in-process (runpy) to spare a torch import
per example; the one_thread fixture restores the thread count they set."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(name: str, monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", [name, "--quick"])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return capsys.readouterr().out


def test_curriculum_example(monkeypatch, capsys):
    out = _run("pinn_curriculum.py", monkeypatch, capsys)
    assert re.search(rf"plain training at beta = 30: relative L2 error {NUMBER}", out), out
    stages = re.findall(r"curriculum stage beta=(\d+): done, loss terms \[residual", out)
    assert stages == ["10", "30"], out
    assert re.search(rf"curriculum at beta = 30: relative L2 error {NUMBER}", out), out


def test_time_marching_example(monkeypatch, capsys):
    out = _run("pinn_time_marching.py", monkeypatch, capsys)
    blocks = re.findall(rf"block (\d)/2: .*error so far {NUMBER}", out)
    assert [b[0] for b in blocks] == ["1", "2"], out
    final = float(re.search(rf"time marching at rho = 5: relative L2 error {NUMBER}", out)[1])
    assert final == pytest.approx(float(blocks[-1][1]), rel=1e-2)


def test_causal_example(monkeypatch, capsys):
    out = _run("pinn_causal.py", monkeypatch, capsys)
    weights = [float(w) for w in re.findall(rf"smallest causal weight {NUMBER}", out)]
    assert len(weights) == 2 and all(0 <= w <= 1 for w in weights), out


def test_your_own_pde_example(monkeypatch, capsys):
    out = _run("pinn_your_own_pde.py", monkeypatch, capsys)
    match = re.search(rf"forward problem: relative L2 error {NUMBER} \((\d+) collocation", out)
    assert match and int(match[2]) == 256 + 100, out  # one refinement round added 100 points
    assert re.search(rf"inverse problem: learnt c = -?{NUMBER} \(truth 1\)", out), out
