"""The ``torchnde reproduce`` framework: entries are declared, found, run over seeds into a run
folder whose report, metrics and figures are complete (or absent, when the run was killed)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from torchnde import reproduce as rp
from torchnde.cli import main
from torchnde.reproduce import _registry

pytestmark = pytest.mark.usefixtures("one_thread")


def _dummy_run(ctx: rp.RunContext, seed: int) -> dict[str, float]:
    """A tiny 'experiment': a random draw (to check seeding) and a figure for seed 0."""
    draw = float(torch.rand(()))
    ctx.progress.update(1)
    if seed == 0:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, draw])
        ctx.save_figure(fig, "draw.png")
    return {"draw": draw, "accuracy": 0.97 + 0.01 * seed, "quick": float(ctx.quick)}


def _dummy_summarise(per_seed: list[dict], ctx: rp.RunContext) -> rp.Outcome:
    accuracies = [m["accuracy"] for m in per_seed]
    figure = ctx.out / "draw.png"
    return rp.Outcome(
        rows=[
            rp.Row("test accuracy", "99.6 %", rp.mean_spread(accuracies, scale=100, unit="%")),
            rp.Row("draw", "—", rp.mean_spread([m["draw"] for m in per_seed]), note="a | pipe"),
        ],
        criterion_met=min(accuracies) >= 0.97,
        details={"accuracy_mean": sum(accuracies) / len(accuracies), "nan": math.nan},
        figures=[figure] if figure.exists() else [],
    )


def _dummy(**changes) -> rp.Entry:
    fields = dict(
        name="dummy-entry",
        title="A dummy entry",
        paper="Nobody (2024). Nothing.",
        paper_result="99.6 % accuracy",
        data="random numbers",
        criterion="accuracy >= 97 % for every seed",
        run=_dummy_run,
        summarise=_dummy_summarise,
    )
    fields.update(changes)
    return rp.Entry(**fields)


def test_quick_run_writes_a_complete_run_folder(tmp_path):
    result = rp.run_entry(_dummy(), quick=True, run_dir=tmp_path / "run", progress=False)
    folder = result.run_dir
    assert rp.verify_run_folder(folder) == []
    assert result.seeds == [0] and result.per_seed[0]["quick"] == 1.0
    report = (folder / "report.md").read_text()
    assert report.startswith("# A dummy entry")
    assert "| quantity | paper | ours | note |" in report
    assert "| test accuracy | 99.6 % | 97.0 % (1 seed) |  |" in report
    assert "a \\| pipe" in report  # a pipe in a cell does not break the table
    assert "criterion **HELD**" in report and "**HELD** over 1 seed" in report
    assert "--quick" in report and "![draw.png](draw.png)" in report
    assert torch.__version__ in report
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["summary"] == {"accuracy_mean": pytest.approx(0.97), "nan": None}
    assert metrics["per_seed"][0]["seed"] == 0 and metrics["criterion_met"] is True
    assert metrics["figures"] == ["draw.png"]
    assert rp.is_complete_png(folder / "draw.png")
    assert (folder / "log.txt").read_text().startswith("dummy-entry seed 0: draw=")


def test_each_seed_starts_from_its_own_seeded_generators(tmp_path):
    result = rp.run_entry(_dummy(), seeds=3, run_dir=tmp_path, progress=False)
    expected = []
    for seed in range(3):
        torch.manual_seed(seed)
        expected.append(float(torch.rand(())))
    assert [m["draw"] for m in result.per_seed] == expected
    assert result.per_seed[0]["quick"] == 0.0
    report = (tmp_path / "report.md").read_text()
    assert "98.0 ± 1.0 % (3 seeds)" in report and "seeds: 0, 1, 2" in report


def _crash_on_seed_one(ctx: rp.RunContext, seed: int) -> dict[str, float]:
    if seed == 1:
        raise RuntimeError("diverged")
    return {"a": 1.0}


def test_seeds_in_parallel_processes_give_the_serial_run(tmp_path):
    serial = rp.run_entry(_dummy(), seeds=3, run_dir=tmp_path / "serial", progress=False)
    parallel = rp.run_entry(_dummy(), seeds=3, jobs=2, run_dir=tmp_path / "jobs", progress=False)
    assert parallel.per_seed == serial.per_seed and parallel.seeds == [0, 1, 2]
    folder = parallel.run_dir
    assert rp.verify_run_folder(folder) == [] and rp.is_complete_png(folder / "draw.png")
    lines = (folder / "log.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == [f"dummy-entry seed {s}" for s in range(3)]
    assert json.loads((folder / "metrics.json").read_text())["jobs"] == 2
    assert "1 thread in each of 2 processes" in (folder / "report.md").read_text()
    assert torch.get_num_threads() == 1


def test_a_seed_failing_in_a_worker_leaves_no_report(tmp_path):
    entry = _dummy(run=_crash_on_seed_one)
    with pytest.raises(RuntimeError, match="diverged"):
        rp.run_entry(entry, seeds=2, jobs=2, run_dir=tmp_path, progress=False)
    assert not (tmp_path / "report.md").exists() and not (tmp_path / "metrics.json").exists()


def test_parallel_seeds_need_an_entry_that_pickles(tmp_path):
    entry = _dummy(run=lambda ctx, seed: {"a": 1.0})
    with pytest.raises(ValueError, match="jobs=1"):
        rp.run_entry(entry, seeds=2, jobs=2, run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="`jobs` must be an int >= 1, got 0"):
        rp.run_entry(_dummy(), seeds=2, jobs=0, run_dir=tmp_path, progress=False)


def test_a_failed_criterion_reads_not_held(tmp_path):
    def failing(per_seed, ctx):
        return rp.Outcome(rows=[rp.Row("x", "1", "2")], criterion_met=False)

    rp.run_entry(_dummy(summarise=failing), quick=True, run_dir=tmp_path, progress=False)
    report = (tmp_path / "report.md").read_text()
    assert "criterion **NOT HELD**" in report and "**HELD**" not in report
    assert rp.verify_run_folder(tmp_path) == []


def test_a_failing_seed_leaves_no_report(tmp_path):
    def crash(ctx, seed):
        if seed == 1:
            raise RuntimeError("diverged")
        return {"a": 1.0}

    with pytest.raises(RuntimeError, match="diverged"):
        rp.run_entry(_dummy(run=crash), seeds=2, run_dir=tmp_path, progress=False)
    assert not (tmp_path / "report.md").exists() and not (tmp_path / "metrics.json").exists()
    assert torch.get_num_threads() == 1  # restored


def test_a_killed_run_leaves_no_report(tmp_path):
    """SIGKILL in the middle of a run: the figure written so far is whole, no report exists."""
    marker = tmp_path / "started"
    script = tmp_path / "killed.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            from test_reproduce import _dummy, _dummy_run
            from torchnde import reproduce as rp

            def slow(ctx, seed):
                metrics = _dummy_run(ctx, seed)
                if seed == 1:
                    open({str(marker)!r}, "w").close()
                    time.sleep(60)
                return metrics

            rp.run_entry(_dummy(run=slow), seeds=3, run_dir={str(tmp_path / "run")!r},
                         progress=False)
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run never reached seed 1"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    folder = tmp_path / "run"
    assert rp.is_complete_png(folder / "draw.png")
    assert not (folder / "report.md").exists() and not (folder / "metrics.json").exists()
    assert rp.verify_run_folder(folder) == [f"{folder / 'report.md'} is missing"]


def test_verify_run_folder_finds_what_is_wrong(tmp_path):
    rp.run_entry(_dummy(), quick=True, run_dir=tmp_path, progress=False)
    (tmp_path / "draw.png").write_bytes(b"\x89PNG\r\n\x1a\nhalf")
    assert rp.verify_run_folder(tmp_path) == ["figure draw.png is not a whole PNG file"]
    text = (tmp_path / "metrics.json").read_text().replace('"seed": 0', '"seed": NaN')
    (tmp_path / "metrics.json").write_text(text)
    assert "not strict JSON" in rp.verify_run_folder(tmp_path)[-1]


def test_default_run_folder_is_new_and_named_after_the_entry(tmp_path):
    first = rp.run_entry(_dummy(), quick=True, out=tmp_path, progress=False).run_dir
    second = rp.run_entry(_dummy(), quick=True, out=tmp_path, progress=False).run_dir
    assert first != second and first.parent == tmp_path == second.parent
    assert first.name.startswith("reproduce-dummy-entry-")


def test_mean_spread_formats():
    assert rp.mean_spread([0.978, 0.981, 0.975], scale=100, unit="%") == "97.8 ± 0.3 % (3 seeds)"
    assert rp.mean_spread([2.0]) == "2.00 (1 seed)"
    assert rp.mean_spread([1.2e-8, 1.4e-8]) == "1.30e-08 ± 1.41e-09 (2 seeds)"
    assert rp.mean_spread([1.0, math.nan, math.inf]) == "non-finite in 2 of 3 (3 seeds)"
    assert rp.mean_spread([]) == "— (no seeds)"


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"name": "Bad_Name"}, ValueError, "kebab-case"),
        ({"seeds": 2}, ValueError, "`seeds` must be an int >= 3"),
        ({"quick_seeds": 0}, ValueError, "`quick_seeds`"),
        ({"extras": "sklearn"}, TypeError, "`extras` must be a tuple"),
        ({"run": None}, TypeError, "`run` must be callable"),
        ({"criterion": " "}, ValueError, "`criterion` must be a non-empty str"),
    ],
)
def test_bad_entries_are_refused(changes, error, match):
    with pytest.raises(error, match=match):
        _dummy(**changes)


def test_bad_outcomes_and_metrics_are_refused(tmp_path):
    with pytest.raises(TypeError, match="`ours` must be a str"):
        rp.Row("x", "1", 0.5)
    with pytest.raises(TypeError, match="`criterion_met` must be a bool"):
        rp.Outcome(rows=[], criterion_met=1)
    with pytest.raises(TypeError, match="metric 'a' of seed 0 must be a number"):
        rp.run_entry(_dummy(run=lambda ctx, s: {"a": "high"}), quick=True, run_dir=tmp_path)
    with pytest.raises(ValueError, match="not in the run folder"):
        bad = rp.Outcome(rows=[], criterion_met=True, figures=[tmp_path.parent / "x.png"])
        rp.run_entry(_dummy(summarise=lambda p, c: bad), quick=True, run_dir=tmp_path / "a")
    with pytest.raises(ValueError, match="`seeds` must be an int >= 1"):
        rp.run_entry(_dummy(), seeds=0, run_dir=tmp_path)
    with pytest.raises(ValueError, match=r"plain file name ending in \.png"):
        rp.RunContext(quick=True, out=tmp_path).figure("../escape.png")


def test_missing_extras_name_the_install(tmp_path):
    entry = _dummy(extras=("sklearn", "surely_not_installed_module"))
    with pytest.raises(ImportError, match=r"pip install surely_not_installed_module"):
        rp.run_entry(entry, quick=True, run_dir=tmp_path)
    entry = _dummy(extras=("surely_not_installed_module", "math"))
    rp.check_extras(_dummy(extras=("math", "torch")))  # installed: no error
    with pytest.raises(ImportError, match=r"needs surely_not_installed_module"):
        rp.check_extras(entry)


@pytest.fixture
def fake_entries(tmp_path, monkeypatch):
    """A package of entries of its own, in place of torchnde.reproduce.entries."""
    package = tmp_path / "fake_entries_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "dummy.py").write_text("from test_reproduce import _dummy\nENTRY = _dummy()\n")
    (package / "_helper.py").write_text("raise RuntimeError('helpers are not imported')\n")
    (package / "no_entry.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_registry, "_PACKAGE", "fake_entries_pkg")
    yield package
    for name in [m for m in sys.modules if m.startswith("fake_entries_pkg")]:
        del sys.modules[name]


def test_registry_finds_entries_and_suggests_names(fake_entries):
    assert list(rp.entries()) == ["dummy-entry"]
    assert rp.get("dummy-entry").title == "A dummy entry"
    with pytest.raises(ValueError, match=r"did you mean 'dummy-entry'\?.*`torchnde reproduce`"):
        rp.get("dummy-entri")


def test_registry_refuses_duplicates_and_non_entries(fake_entries):
    (fake_entries / "again.py").write_text("from test_reproduce import _dummy\nENTRY = _dummy()\n")
    with pytest.raises(ValueError, match="two reproduce entries are named 'dummy-entry'"):
        rp.entries()
    (fake_entries / "again.py").write_text("ENTRY = 3\n")
    del sys.modules["fake_entries_pkg.again"]
    with pytest.raises(TypeError, match=r"again\.ENTRY must be a torchnde\.reproduce\.Entry"):
        rp.entries()


def test_cli_lists_and_runs_an_entry(fake_entries, tmp_path, capsys):
    assert main(["reproduce"]) == 0
    assert "dummy-entry  A dummy entry" in capsys.readouterr().out
    out = tmp_path / "runs"
    assert main(["reproduce", "dummy-entry", "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "criterion HELD" in printed
    (folder,) = out.iterdir()
    assert rp.verify_run_folder(folder) == []
    report = (folder / "report.md").read_text()
    assert f"command: `torchnde reproduce dummy-entry --quick --out {out}`" in report
    assert main(["reproduce", "nope"]) == 2
    assert "no reproduce entry is named 'nope'" in capsys.readouterr().err


def test_registered_entries_are_well_formed():
    """The real entries: unique kebab names (Entry checks them), each in its own module."""
    found = rp.entries()
    assert callable(rp.entries)  # importing the entries subpackage does not shadow the function
    for name, entry in found.items():
        assert entry.name == name and entry.seeds >= 3
        module = entry.run.__module__
        assert module.startswith("torchnde.reproduce.entries"), (name, module)


def test_get_imports_only_the_named_module(fake_entries):
    """`get` finds entries/<name>.py directly, so a broken neighbour does not stop it."""
    (fake_entries / "dummy_entry.py").write_text(
        "from test_reproduce import _dummy\nENTRY = _dummy()\n"
    )
    (fake_entries / "broken.py").write_text("raise RuntimeError('half-written entry')\n")
    (fake_entries / "dummy.py").unlink()
    assert rp.get("dummy-entry").name == "dummy-entry"
    with pytest.raises(RuntimeError, match="half-written entry"):
        rp.entries()  # listing imports everything, and says what is broken
