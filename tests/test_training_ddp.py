"""Data-parallel training: two CPU processes under ``torchrun`` (gloo) train the same model as
one process does on the combined batch, including L-BFGS and shards of unequal size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from test_training_worker import Problem, default_stages, make_trainer

from torchnde.training import load_checkpoint

WORKER = Path(__file__).with_name("test_training_worker.py")


def single_process_run() -> tuple[dict[str, torch.Tensor], list[float]]:
    """10 windows, batches of 5 (shared 3 + 2 by two processes), Adam then L-BFGS."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    problem = Problem(10, noise=False)
    model = problem.model(init_seed=7)
    result = make_trainer(problem, model, batch_size=5, stages=default_stages(6, 4)).fit()
    torch.set_num_threads(before)
    return model.state_dict(), result.losses


def test_two_processes_train_the_model_of_one_process_on_the_combined_batch(tmp_path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
    ]
    command += [str(WORKER), "--out", str(tmp_path / "params-{rank}.pt"), "--no-noise"]
    command += ["--checkpoint-dir", str(tmp_path / "checkpoints"), "--windows", "10"]
    command += ["--batch-size", "5", "--adam-steps", "6", "--lbfgs-steps", "4"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"status": "finished", "steps": 10}

    expected, expected_losses = single_process_run()
    rank0 = torch.load(tmp_path / "params-0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "params-1.pt", weights_only=True)
    for key, value in expected.items():
        assert torch.equal(rank0["params"][key], rank1["params"][key]), f"ranks differ in {key}"
        assert (rank0["params"][key] - value).abs().max() < 1e-10, key
    assert torch.allclose(
        torch.tensor(rank0["losses"]), torch.tensor(expected_losses), rtol=1e-10, atol=0
    )
    assert expected_losses[-1] < 0.5 * expected_losses[0]  # it did train

    checkpoint = load_checkpoint(tmp_path / "checkpoints")  # written by rank 0
    assert checkpoint["world_size"] == 2 and checkpoint["progress"]["complete"]
    assert torch.equal(checkpoint["model"]["initial"], rank0["params"]["initial"])
