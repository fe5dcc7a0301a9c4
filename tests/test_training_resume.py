"""Nothing lost, for real: training processes killed with SIGKILL at random moments (also in
the middle of writing a checkpoint) or stopped with SIGTERM, then resumed in a new process, end
with parameters bitwise identical to an uninterrupted run; a file written by ``atomic_save`` in a
loop is complete whenever its writer is killed."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from test_training_worker import Problem, default_stages, make_trainer

from torchnde.training import atomic_save, load_checkpoint

WORKER = Path(__file__).with_name("test_training_worker.py")
#: Adam steps 1-12, L-BFGS 13-20: the Adam stage is long enough that a kill aimed at its start
#: lands inside it even when the worker runs several (~ms) steps during the test's sleep
ADAM, LBFGS = 12, 8
STAGES = ["--adam-steps", str(ADAM), "--lbfgs-steps", str(LBFGS)]


@pytest.fixture(scope="module")
def reference():
    """Final parameters of an uninterrupted run with the workers' settings (one thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    problem = Problem()
    model = problem.model(init_seed=7)
    make_trainer(problem, model, stages=default_stages(ADAM, LBFGS)).fit()
    torch.set_num_threads(before)
    return model.state_dict()


def launch(
    checkpoint_dir: Path, out: Path, *, resume: bool, init_seed: int = 7
) -> subprocess.Popen:
    command = [sys.executable, str(WORKER), "--checkpoint-dir", str(checkpoint_dir)]
    command += ["--out", str(out), "--init-seed", str(init_seed), *STAGES]
    command += ["--resume"] if resume else []
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def checkpoint_id(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def wait_for_checkpoints(process: subprocess.Popen, checkpoint_dir: Path, count: int) -> bool:
    """Poll until ``count`` new checkpoints have replaced ``latest.pt``; False if the process
    ended first."""
    latest = checkpoint_dir / "latest.pt"
    seen = checkpoint_id(latest)
    deadline = time.monotonic() + 120
    while count > 0:
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        current = checkpoint_id(latest)
        if current != seen:
            seen, count = current, count - 1
        time.sleep(0.001)
    return True


def finish(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    return json.loads(stdout.strip().splitlines()[-1])


def assert_bitwise_equal(out: Path, expected: dict[str, torch.Tensor]) -> None:
    params = torch.load(out, weights_only=True)["params"]
    assert params.keys() == expected.keys()
    for key in expected:
        assert torch.equal(params[key], expected[key]), f"{key} differs"


def test_kill_9_at_random_moments_then_resume_is_bitwise_identical(tmp_path, reference):
    """Killed once in the Adam stage (so a resumed process crosses into L-BFGS) and once in the
    L-BFGS stage (so its curvature history must come back), then resumed to the end."""
    moments = random.Random(20240607)  # "random-ish", yet the same in every test run
    checkpoint_dir, out = tmp_path / "checkpoints", tmp_path / "params.pt"
    killed_at = [0]
    for attempt, target in enumerate([moments.randint(1, 3), moments.randint(14, 17)]):
        process = launch(checkpoint_dir, out, resume=attempt > 0, init_seed=7 + attempt)
        # one checkpoint per step: wait until step `target` is on disk
        assert wait_for_checkpoints(process, checkpoint_dir, count=target - killed_at[-1])
        time.sleep(moments.uniform(0.0, 0.03))  # inside a step, or inside a checkpoint write
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL
        killed_at.append(load_checkpoint(checkpoint_dir)["progress"]["global_step"])
    assert killed_at[1] < ADAM < killed_at[2] < ADAM + LBFGS
    status = finish(launch(checkpoint_dir, out, resume=True, init_seed=11))
    assert status == {"status": "finished", "steps": ADAM + LBFGS}
    assert_bitwise_equal(out, reference)


def test_sigterm_exits_cleanly_with_a_checkpoint_and_resume_matches(tmp_path, reference):
    checkpoint_dir, out = tmp_path / "checkpoints", tmp_path / "params.pt"
    process = launch(checkpoint_dir, out, resume=False)
    assert wait_for_checkpoints(process, checkpoint_dir, count=ADAM + 2)  # into L-BFGS
    process.send_signal(signal.SIGTERM)
    status = finish(process)
    assert status["status"] == "interrupted" and ADAM + 2 <= status["step"] < ADAM + LBFGS
    checkpoint = load_checkpoint(checkpoint_dir / "latest.pt")
    assert checkpoint["progress"]["global_step"] == status["step"]
    assert not out.exists()
    # resume here (the kill test resumes in a new process; a process start costs seconds)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    problem = Problem()
    model = problem.model(init_seed=3)
    result = make_trainer(
        problem, model, checkpoint_dir=checkpoint_dir, stages=default_stages(ADAM, LBFGS)
    )
    result = result.fit(resume=True)
    torch.set_num_threads(before)
    assert result.resumed and result.num_steps == ADAM + LBFGS
    atomic_save({"params": model.state_dict()}, out)
    assert_bitwise_equal(out, reference)


SAVE_FOREVER = textwrap.dedent(
    """
    import sys, torch
    from torchnde.training import atomic_save
    for i in range(1_000_000):
        atomic_save({"i": i, "data": torch.full((300_000,), float(i))}, sys.argv[1])
        if i == 0:
            print("saved", flush=True)
    """
)


def test_kill_9_during_atomic_saves_leaves_a_complete_file(tmp_path):
    path = tmp_path / "state.pt"
    writer = subprocess.Popen(
        [sys.executable, "-c", SAVE_FOREVER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline().strip() == "saved"
    time.sleep(0.3)  # dozens of writes of 2.4 MB: the kill most likely lands inside one
    writer.kill()
    writer.wait()
    state = torch.load(path, weights_only=True)
    assert state["i"] > 0
    assert torch.equal(state["data"], torch.full((300_000,), float(state["i"])))
    leftovers = [p.name for p in tmp_path.iterdir() if p != path]
    assert all(name.startswith(".state.pt.") and name.endswith(".tmp") for name in leftovers)
