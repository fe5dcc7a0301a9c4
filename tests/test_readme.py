"""The README's ten-line example runs as printed and does what its comments say."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import torchnde as tn

README = Path(__file__).resolve().parents[1] / "README.md"


def _first_python_block() -> str:
    match = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert match, "README.md has no python example"
    return match.group(1)


def test_readme_example_runs_and_its_comments_hold():
    code = _first_python_block()
    assert len(code.strip().splitlines()) <= 12, (
        "the front-door example should stay about ten lines"
    )
    namespace: dict = {}
    torch.manual_seed(0)
    exec(compile(code, str(README), "exec"), namespace)  # our own README
    sol, field = namespace["sol"], namespace["field"]
    assert sol.ys.shape == (10, 128, 2)  # as the comment says
    assert bool(sol.ok) and int(sol.stats["nfe"]) > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in field.parameters())
    assert isinstance(sol.status, torch.Tensor) and int(sol.status) == tn.Status.SUCCESS
