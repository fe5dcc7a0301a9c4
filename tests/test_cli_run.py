"""The ``torchnde`` command end to end, in subprocesses, on a one-state problem that trains in
seconds (logistic growth dx/dt = r*x - b*x**2 with the hybrid model dx/dt = r*x + NN1(x), which
must recover NN1 = -b*x**2):

- the run folder holds the resolved config, metrics, figures, checkpoints, weights and a report
  that agree with each other and with the truth;
- a second process on a run folder gets the lock error; a resume with a changed config is refused;
- a run killed with SIGKILL at a checkpoint, then resumed (``--resume`` picking the newest folder),
  ends with weights bitwise identical to an uninterrupted run; so does one stopped with SIGTERM
  (exit 143, one line naming the resume command); Ctrl-C exits 130;
- two processes under ``torchrun`` train the model one process trains, into one folder;
- the demo and the shipped configs, in quick mode, recover their hidden terms.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from torchnde.cli import main
from torchnde.cli._config import load_config
from torchnde.cli._run import find_latest_run
from torchnde.discovery import compare_terms
from torchnde.training import RunLock

TINY = textwrap.dedent(
    """\
    name = "tiny"

    [system]
    states = ["x"]
    equations = { x = "r*x + NN1(x)" }
    constants = { r = 1.0 }
    networks.NN1 = { hidden = 8, depth = 1 }

    [data.synthetic]
    equations = { x = "r*x - b*x**2" }
    parameters = { r = 1.0, b = 1.0 }
    initial = { x = 0.1 }
    t_end = 8.0
    n_points = 25
    noise = 0.0

    [training]
    window = 4
    adam_steps = 60
    adam_lr = 0.05
    lbfgs_steps = 30
    checkpoint_every = 5

    [discovery]
    samples = 50
    refit_steps = 5
    trajectory_steps = 5

    [forecast]
    blackbox = false
    """
)
#: one thread per process (the suite runs beside other tests), no progress bars
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
#: the tests sharing the reference run stay on one xdist worker (one reference run, not two)
SAME_WORKER = pytest.mark.xdist_group("cli_reference")
FIGURES = ("fit.png", "terms.png", "forecast.png", "losses.png")  # one state: no phase portrait


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "torchnde.cli", *args]


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(*args), capture_output=True, text=True, env=ENV, timeout=timeout, check=False
    )


def run_folder(stdout: str) -> Path:
    """The folder the command printed last."""
    found = re.findall(r"^run folder: (.+)$", stdout, re.M)
    assert found, stdout
    return Path(found[-1])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("torchnde")]


def load_models(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return torch.load(run_dir / "models.pt", weights_only=True)


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for model in a:
        assert a[model].keys() == b[model].keys(), model
        for key, value in a[model].items():
            assert torch.equal(value, b[model][key]), f"{model}.{key} differs"


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )


def wait_for_checkpoint(process: subprocess.Popen, out: Path, timeout: float = 120) -> Path:
    """Polls until the hybrid model's first checkpoint is written; returns the run folder."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(out.glob("tiny-*/checkpoints/hybrid/latest.pt"))
        if found:
            return found[0].parents[2]
        if process.poll() is not None:
            pytest.fail(f"the run ended before its first checkpoint:\n{process.communicate()}")
        time.sleep(0.02)
    process.kill()
    pytest.fail("no checkpoint appeared")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory):
    """An uninterrupted run: (its folder, the completed process)."""
    out = tmp_path_factory.mktemp("reference")
    done = run("run", str(tiny), "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    return run_folder(done.stdout), done


@SAME_WORKER
def test_the_run_folder_holds_config_metrics_figures_checkpoints_and_report(tiny, reference):
    run_dir, done = reference
    assert re.fullmatch(r"tiny-\d{8}-\d{6}", run_dir.name)
    assert done.stdout.splitlines()[0] == f"run folder: {run_dir}"  # printed first and last
    # the resolved config is a config, giving the same run
    assert load_config(run_dir / "config.toml").spec == load_config(tiny).spec
    info = json.loads((run_dir / "run.json").read_text())
    assert info["config"] == str(tiny) and info["quick"] is False

    metrics = json.loads((run_dir / "metrics.json").read_text())
    terms = metrics["recovered_terms"]["NN1"]
    assert compare_terms(terms, "-x**2", ["x"]).matches(rtol=0.02), terms  # the science
    assert metrics["recovery"]["NN1"]["same_terms_as_truth"] is True
    assert metrics["recovery"]["NN1"]["true_terms"] == {"x**2": -1.0}
    assert len(metrics["losses"]["hybrid"]) == 60 + 30
    assert metrics["forecast"]["rmse"]["recovered"] < metrics["forecast"]["rmse"]["hybrid"] + 1e-3

    report = (run_dir / "report.md").read_text()
    assert f"`{metrics['recovered']['NN1']}`" in report and "| yes |" in report
    for name in FIGURES:
        data = (run_dir / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and f"]({name})" in report
    assert (run_dir / "checkpoints" / "hybrid" / "latest.pt").is_file()
    models = load_models(run_dir)
    assert set(models) == {"hybrid", "recovered"}
    with RunLock(run_dir):  # released when the command ended
        pass


@SAME_WORKER
def test_a_second_process_on_the_run_folder_gets_the_lock_error(tiny, reference):
    run_dir, _ = reference
    with RunLock(run_dir):
        done = run("run", str(tiny), "--resume", str(run_dir), "--no-progress")
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    (line,) = error_lines(done.stderr)
    assert f"the run folder {str(run_dir)!r} is in use by process {os.getpid()}" in line


@SAME_WORKER
def test_a_resume_with_a_changed_config_is_refused(tmp_path, capsys, reference):
    run_dir, _ = reference
    changed = tmp_path / "tiny.toml"
    changed.write_text(TINY.replace("adam_steps = 60", "adam_steps = 61"))
    code = main(["run", str(changed), "--resume", str(run_dir)])
    err = capsys.readouterr().err
    assert code == 3
    assert "training.adam_steps: 60 in the run, 61 now" in err
    assert "start a new run without --resume" in err
    code = main(["run", str(tmp_path / "tiny.toml"), "--quick", "--resume", str(run_dir)])
    assert code == 3 and "The run was started without --quick." in capsys.readouterr().err


def test_resume_without_a_folder_picks_the_newest_run_of_the_config(tmp_path):
    for name in ["tiny-20250101-000000", "tiny-20250101-000000-2", "tiny-20240101-235959"]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.toml").write_text("")
    (tmp_path / "tiny-20990101-000000").mkdir()  # no config.toml: not a run
    (tmp_path / "tinyx-20990101-000000").mkdir()
    (tmp_path / "tinyx-20990101-000000" / "config.toml").write_text("")
    assert find_latest_run(tmp_path, "tiny") == tmp_path / "tiny-20250101-000000-2"
    assert find_latest_run(tmp_path, "other") is None


@SAME_WORKER
def test_a_run_killed_at_a_checkpoint_resumes_to_the_uninterrupted_result(
    tiny, reference, tmp_path
):
    out = tmp_path / "runs"
    process = start("run", str(tiny), "--out", str(out), "--no-progress")
    run_dir = wait_for_checkpoint(process, out)
    process.kill()
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert not (run_dir / "models.pt").exists()
    # an older run folder of the same name: --resume must pick the newest
    older = out / "tiny-20000101-000000"
    shutil.copytree(run_dir, older, ignore=shutil.ignore_patterns("checkpoints", ".lock"))

    done = run("run", str(tiny), "--out", str(out), "--resume", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert run_folder(done.stdout) == run_dir
    assert_bitwise_equal(load_models(run_dir), load_models(reference[0]))
    resumed = json.loads((run_dir / "metrics.json").read_text())
    uninterrupted = json.loads((reference[0] / "metrics.json").read_text())
    assert resumed["losses"] == uninterrupted["losses"]
    assert resumed["recovered_terms"] == uninterrupted["recovered_terms"]


@SAME_WORKER
def test_sigterm_stops_cleanly_with_the_resume_command_which_completes_the_run(
    tiny, reference, tmp_path
):
    out = tmp_path / "runs"
    process = start("run", str(tiny), "--out", str(out), "--no-progress")
    run_dir = wait_for_checkpoint(process, out)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    (line,) = error_lines(stderr)
    assert "stopped by SIGTERM" in line
    resume = line.split("Resume with: ")[1]
    assert resume == f"torchnde run {tiny} --resume {run_dir}"

    done = run(*resume.split()[1:], "--no-progress")
    assert done.returncode == 0, done.stderr
    assert_bitwise_equal(load_models(run_dir), load_models(reference[0]))


def test_ctrl_c_exits_130(tiny, tmp_path):
    out = tmp_path / "runs"
    process = start("run", str(tiny), "--out", str(out), "--no-progress")
    wait_for_checkpoint(process, out)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    (line,) = error_lines(stderr)
    assert "stopped by SIGINT" in line and "--resume" in line


def test_the_entry_point_reports_a_bad_config_in_one_line_with_status_2(tmp_path):
    script = Path(sys.executable).with_name("torchnde")
    assert script.exists(), "the `torchnde` entry point is missing: pip install -e '.[dev]'"
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("window = 4", "windw = 4"))
    done = subprocess.run(
        [str(script), "run", str(bad)], capture_output=True, text=True, env=ENV, check=False
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    line = TINY.splitlines().index("window = 4") + 1
    assert f"{bad}, line {line}: `training.windw`" in done.stderr
    assert "did you mean `window`?" in done.stderr


def test_python_dash_m_torchnde_is_the_command(tmp_path):
    """``python -m torchnde`` runs the command as ``torchnde`` does (same parser, same errors)."""
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("window = 4", "windw = 4"))
    for args in (["configs"], ["run", str(bad)]):
        via_m = subprocess.run(
            [sys.executable, "-m", "torchnde", *args],
            capture_output=True, text=True, env=ENV, check=False,
        )  # fmt: skip
        via_cli = run(*args)
        assert (via_m.returncode, via_m.stdout, via_m.stderr) == (
            via_cli.returncode,
            via_cli.stdout,
            via_cli.stderr,
        )
    assert via_m.returncode == 2 and "`training.windw`" in via_m.stderr


@SAME_WORKER
def test_two_processes_under_torchrun_train_the_model_of_one_process(tiny, reference, tmp_path):
    out = tmp_path / "runs"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launcher += ["--nproc-per-node", "2", "-m", "torchnde.cli"]
    done = subprocess.run(
        [*launcher, "run", str(tiny), "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (run_dir,) = out.iterdir()  # one folder, agreed by both processes
    assert done.stdout.count("run folder: ") == 2  # rank 0 prints it, first and last; rank 1 never
    assert json.loads((run_dir / "run.json").read_text())["world_size"] == 2
    two, one = load_models(run_dir), load_models(reference[0])
    for model in one:
        for key, value in one[model].items():
            assert torch.allclose(two[model][key], value, rtol=1e-6, atol=1e-6), f"{model}.{key}"
    distributed = json.loads((run_dir / "metrics.json").read_text())
    alone = json.loads((reference[0] / "metrics.json").read_text())
    assert distributed["recovered_terms"].keys() == alone["recovered_terms"].keys()
    assert torch.allclose(
        torch.tensor(distributed["losses"]["hybrid"]),
        torch.tensor(alone["losses"]["hybrid"]),
        rtol=1e-6,
    )


# -- the science of the shipped configs, in quick mode --------------------------------------------

#: what each shipped config must recover, per network (coefficients within 10%)
HIDDEN_TERMS = {
    "lotka_volterra": {"NN1": "-0.4*x*y", "NN2": "0.1*x*y"},
    "pendulum": {"NN1": "-0.2*omega"},
    "sir": {"NN1": "0.5*S*I"},
}


def check_recovery(run_dir: Path, expected: dict[str, str]) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for network, truth in expected.items():
        recovered = metrics["recovered_terms"][network]
        comparison = compare_terms(recovered, truth)
        assert comparison.matches(rtol=0.1), f"{network}: {comparison}"
    return metrics


def test_the_demo_in_quick_mode_recovers_the_interaction_terms(tmp_path):
    done = run("demo", "--quick", "--out", str(tmp_path), "--no-progress", timeout=600)
    assert done.returncode == 0, done.stderr
    run_dir = run_folder(done.stdout)
    assert run_dir.name.startswith("lotka_volterra-")
    metrics = check_recovery(run_dir, HIDDEN_TERMS["lotka_volterra"])
    assert metrics["parameter_relative_errors"]["recovered"]["theta"] < 0.05  # theta = delta


@pytest.mark.parametrize("name", ["pendulum", "sir"])
def test_each_shipped_config_in_quick_mode_recovers_its_hidden_term(name, tmp_path):
    done = run("run", name, "--quick", "--out", str(tmp_path), "--no-progress", timeout=600)
    assert done.returncode == 0, done.stderr
    check_recovery(run_folder(done.stdout), HIDDEN_TERMS[name])
