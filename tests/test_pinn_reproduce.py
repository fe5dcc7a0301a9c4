"""The quick runs of the physics-informed reproduce entries: each writes a complete run folder
(report with its table and verdict, strict metrics, figures) with finite errors, and its
per-stage / per-block numbers are where the entry says."""

from __future__ import annotations

import pytest

from torchnde import reproduce

pytestmark = pytest.mark.usefixtures("one_thread")


def _quick(name: str, tmp_path) -> reproduce.RunResult:
    result = reproduce.run_entry(name, quick=True, run_dir=tmp_path, progress=False)
    assert reproduce.verify_run_folder(tmp_path) == []
    return result


def test_convection_quick_runs_plain_and_every_curriculum_stage(tmp_path):
    result = _quick("pinn-convection", tmp_path)
    metrics = result.per_seed[0]
    assert {"plain_20", "curriculum_20", "chain_10", "chain_20"} <= set(metrics)
    assert metrics["curriculum_20"] == metrics["chain_20"]
    assert all(0 < metrics[key] < 10 for key in ("plain_20", "chain_10", "chain_20"))
    report = (tmp_path / "report.md").read_text()
    assert "β = 20, curriculum | 9.84e-03 |" in report
    assert (tmp_path / "errors.png").exists() and (tmp_path / "solutions-seed0.png").exists()


@pytest.mark.parametrize(
    ("name", "label", "suffix", "remedy"),
    [
        ("pinn-reaction", "ρ=5", "_h", "hard initial condition"),
        ("pinn-reaction-diffusion", "ν=3", "_w", "initial weight 100"),
    ],
)
def test_marching_entries_quick_run_whole_domain_and_blocks(tmp_path, name, label, suffix, remedy):
    result = _quick(name, tmp_path)
    metrics = result.per_seed[0]
    keys = ("whole", "marching", f"whole{suffix}", f"marching{suffix}", "block0", "block1")
    for key in keys:
        assert 0 < metrics[f"{key}_{label}"] < 10, key
    # the error after the last block is the error of the whole march (with the remedy)
    assert metrics[f"block1_{label}"] == pytest.approx(metrics[f"marching{suffix}_{label}"])
    assert remedy in (tmp_path / "report.md").read_text()
    assert (tmp_path / "blocks.png").exists()


def test_burgers_quick_writes_its_folder(tmp_path):
    result = _quick("pinn-burgers", tmp_path)
    assert 0 < result.per_seed[0]["error"] < 10
    assert "6.7e-04" in (tmp_path / "report.md").read_text()
