"""torchnde.training in one process: stages and their validation, the window sampler, atomic
writes, the run lock (against a second process), early stopping, learning-rate schedules,
checkpoint contents, bitwise-exact resumption after a crash at chosen steps, SIGINT handling,
divergence and bad losses, the progress bar."""

from __future__ import annotations

import io
import math
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from test_training_worker import Problem, make_trainer
from torch import nn

from torchnde.training import (
    CheckpointWarning,
    CosineSchedule,
    RunLock,
    Stage,
    StepSchedule,
    Trainer,
    TrainingInterrupted,
    WindowSampler,
    atomic_save,
    atomic_write_text,
    load_checkpoint,
)
from torchnde.training import _lock as lock_module
from torchnde.training import _trainer as trainer_module

# ----------------------------------------------------------------------------- helpers


class Quadratic(nn.Module):
    """``loss = mean over the batch of (w_i - i)²``: cheap, convex, minimum at ``w_i = i``."""

    def __init__(self, size: int = 6):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(size, dtype=torch.float64))
        self.register_buffer("target", torch.arange(size, dtype=torch.float64))

    def loss(self, batch: torch.Tensor | None) -> torch.Tensor:
        index = slice(None) if batch is None else batch
        return ((self.w[index] - self.target[index]) ** 2).mean()


def quadratic_loss(model: Quadratic, batch: torch.Tensor | None) -> torch.Tensor:
    return model.loss(batch)


def quadratic_trainer(stages, **kwargs) -> Trainer:
    return Trainer(Quadratic(), quadratic_loss, stages, progress=False, **kwargs)


@pytest.fixture
def one_thread():
    """Run with one torch thread (as the worker processes do), restoring the count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference():
    """Parameters and losses of an uninterrupted run of the shared problem (no checkpoints)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    problem = Problem()
    model = problem.model(init_seed=7)
    result = make_trainer(problem, model).fit()
    torch.set_num_threads(before)
    return {key: value.clone() for key, value in model.state_dict().items()}, result.losses


def assert_bitwise_equal(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]):
    assert state.keys() == expected.keys()
    for key in expected:
        assert torch.equal(state[key], expected[key]), f"{key} differs"


class Crash(Exception):
    """Stands for the process dying."""


def crash_at(step: int):
    """A ``log`` callable that raises after step ``step`` (before its checkpoint is written)."""

    def log(record):
        if record.step == step:
            raise Crash(step)

    return log


# ----------------------------------------------------------------------------- stages


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"optimizer": "adamm", "steps": 5}, ["optimizer", "'adam'"]),
        ({"optimizer": "newton", "steps": 5}, ["optimizer", "lbfgs"]),
        ({"optimizer": "adam", "steps": 0}, ["steps", "at least 1"]),
        ({"optimizer": "adam", "steps": 2.5}, ["steps", "int"]),
        ({"optimizer": "adam", "steps": 5, "lr": -1.0}, ["lr", "-1.0"]),
        ({"optimizer": "adam", "steps": 5, "lr": math.nan}, ["lr", "nan"]),
        ({"optimizer": "adam", "steps": 5, "scheduler": "cosin"}, ["scheduler", "'cosine'"]),
        ({"optimizer": "adam", "steps": 5, "patience": 0}, ["patience"]),
        ({"optimizer": "adam", "steps": 5, "min_delta": -1e-3}, ["min_delta"]),
        ({"optimizer": "adam", "steps": 5, "options": {"betaz": (0.9, 0.9)}}, ["'betas'"]),
        ({"optimizer": "adam", "steps": 5, "options": {"lr": 0.1}}, ["Stage(lr=...)"]),
        ({"optimizer": "lbfgs", "steps": 5, "max_grad_norm": 1.0}, ["max_grad_norm", "L-BFGS"]),
    ],
)
def test_bad_stage_arguments_raise_naming_the_argument(kwargs, names):
    with pytest.raises((ValueError, TypeError)) as error:
        Stage(**kwargs)
    for name in names:
        assert name in str(error.value)


def test_stage_names_are_normalised_and_schedules_built():
    stage = Stage("L-BFGS", steps=3, lr=0.5, scheduler="step")
    assert stage.optimizer == "lbfgs"
    assert isinstance(stage.scheduler, StepSchedule)
    optimizer = stage.build_optimizer([nn.Parameter(torch.zeros(2))])
    assert isinstance(optimizer, torch.optim.LBFGS)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["max_iter"], group["line_search_fn"]) == (0.5, 1, "strong_wolfe")


# ----------------------------------------------------------------------------- sampler


def test_sampler_epochs_are_permutations_of_all_windows():
    sampler = WindowSampler(10, batch_size=4, seed=3)
    for _ in range(3):
        batches = [sampler.next_batch() for _ in range(sampler.batches_per_epoch)]
        assert [len(b) for b in batches] == [4, 4, 2]
        assert sorted(torch.cat(batches).tolist()) == list(range(10))
    dropped = WindowSampler(10, batch_size=4, seed=3, drop_last=True)
    assert [len(dropped.next_batch()) for _ in range(4)] == [4, 4, 4, 4]
    assert dropped.smallest_batch == 4 and sampler.smallest_batch == 2
    assert torch.equal(WindowSampler(5).next_batch(), torch.arange(5))


def test_sampler_is_reproducible_and_leaves_global_rng_alone():
    def epoch(seed: int) -> torch.Tensor:
        sampler = WindowSampler(9, batch_size=3, seed=seed)
        return torch.cat([sampler.next_batch() for _ in range(3)])

    before = torch.get_rng_state()
    assert torch.equal(epoch(5), epoch(5))
    assert not torch.equal(epoch(5), epoch(6))
    assert torch.equal(torch.get_rng_state(), before)


def test_sampler_state_dict_continues_the_same_sequence():
    sampler = WindowSampler(7, batch_size=3, seed=11)
    for _ in range(4):
        sampler.next_batch()
    state = sampler.state_dict()
    expected = [sampler.next_batch() for _ in range(6)]
    restored = WindowSampler(7, batch_size=3, seed=11)
    restored.load_state_dict(state)
    assert all(torch.equal(a, restored.next_batch()) for a in expected)
    with pytest.raises(ValueError, match="batch_size"):
        WindowSampler(7, batch_size=2, seed=11).load_state_dict(state)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_windows": 0}, "num_windows"),
        ({"num_windows": 4, "batch_size": 5}, "batch_size"),
        ({"num_windows": 4, "batch_size": 0}, "batch_size"),
        ({"num_windows": 4, "seed": -1}, "seed"),
        ({"num_windows": 4, "seed": 2**40}, "seed"),
    ],
)
def test_bad_sampler_arguments_raise_naming_the_argument(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        WindowSampler(**kwargs)


# ----------------------------------------------------------------------------- atomic writes


class ExplodesWhenPickled:
    def __reduce__(self):
        raise RuntimeError("disk full (simulated)")


def test_failed_atomic_save_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.pt"
    atomic_save({"version": 1, "data": torch.ones(1000)}, path)
    with pytest.raises(RuntimeError, match="simulated"):
        atomic_save({"data": torch.zeros(100_000), "bad": ExplodesWhenPickled()}, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["version"] == 1 and torch.equal(loaded["data"], torch.ones(1000))
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_atomic_write_text_replaces_content_and_keeps_the_mode(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_text(path, "old")
    assert (path.stat().st_mode & 0o777) == 0o644
    path.chmod(0o600)
    atomic_write_text(path, '{"loss": 1.5}')
    assert path.read_text() == '{"loss": 1.5}'
    assert (path.stat().st_mode & 0o777) == 0o600


def test_atomic_write_errors_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="mkdir"):
        atomic_write_text(tmp_path / "missing" / "a.txt", "x")
    with pytest.raises(IsADirectoryError, match="folder"):
        atomic_save({}, tmp_path)
    with pytest.raises(TypeError, match="text"):
        atomic_write_text(tmp_path / "a.txt", b"bytes")


# ----------------------------------------------------------------------------- run lock

# The holder loads RunLock's module from its file, skipping the import of torch (seconds).
HOLD_LOCK = textwrap.dedent(
    """
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("lock", sys.argv[1])
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    with lock.RunLock(sys.argv[2]):
        print("locked", flush=True)
        sys.stdin.read()
    """
)


def test_a_second_process_gets_a_clear_lock_error(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, lock_module.__file__, str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeError) as error, RunLock(run_dir):
            pass
        assert str(run_dir) in str(error.value)
        assert f"process {holder.pid}" in str(error.value)
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0
    with RunLock(run_dir) as lock:  # the holder exited: the folder is free again
        assert lock.locked
        with pytest.raises(RuntimeError, match=f"process {os.getpid()}"), RunLock(run_dir):
            pass
    assert not lock.locked


# ----------------------------------------------------------------------------- training


def test_adam_then_lbfgs_reduce_the_loss_and_report_every_step(one_thread):
    problem = Problem(noise=False)
    records = []
    stages = [Stage("adam", steps=15, lr=2e-2), Stage("lbfgs", steps=15, lr=1.0)]
    result = make_trainer(
        problem, problem.model(7), batch_size=None, stages=stages, log=records.append
    ).fit()
    assert result.stage_boundaries == [(0, 15), (15, 30)]
    assert result.stopped_early == [False, False]
    assert result.losses[14] < 0.5 * result.losses[0]  # Adam made progress
    assert result.final_loss < 0.05 * result.losses[0]  # and L-BFGS much more
    assert result.best_loss == min(result.losses)
    assert [r.loss for r in records] == result.losses
    assert [r.step for r in records] == list(range(1, 31))
    assert [r.optimizer for r in records] == ["adam"] * 15 + ["lbfgs"] * 15
    assert records[14].stage_finished and not records[13].stage_finished


def test_early_stopping_ends_a_stage_after_patience_non_improvements():
    stages = [
        Stage("adam", steps=50, lr=0.1, patience=3, min_delta=1e6),  # nothing counts as better
        Stage("sgd", steps=5, lr=0.1, patience=3),  # keeps improving: runs to the end
    ]
    result = quadratic_trainer(stages).fit()
    assert result.stage_boundaries == [(0, 4), (4, 9)]
    assert result.stopped_early == [True, False]
    assert all(b < a for a, b in zip(result.losses[4:], result.losses[5:]))


def test_early_stopping_can_monitor_a_validation_loss():
    values = iter([1.0, 0.5, 0.7, 0.6, 0.1])

    def val_fn(model):
        assert not torch.is_grad_enabled()
        return next(values)

    stages = [Stage("adam", steps=20, lr=0.1, patience=2)]
    result = quadratic_trainer(stages, val_fn=val_fn, val_every=2).fit()
    assert result.val_losses == [(2, 1.0), (4, 0.5), (6, 0.7), (8, 0.6)]
    assert result.stage_boundaries == [(0, 8)] and result.stopped_early == [True]
    assert result.best_val_loss == 0.5


def test_schedules_set_the_learning_rate_of_every_step():
    records = []
    stages = [
        Stage("sgd", steps=8, lr=0.2, scheduler=CosineSchedule(min_lr=0.02)),
        Stage("adam", steps=7, lr=0.1, scheduler=StepSchedule(every=3, gamma=0.5)),
    ]
    quadratic_trainer(stages, log=records.append).fit()
    cosine = [0.02 + 0.18 * (1 + math.cos(math.pi * k / 8)) / 2 for k in range(8)]
    assert [r.lr for r in records[:8]] == pytest.approx(cosine, rel=1e-12)
    assert [r.lr for r in records[8:]] == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025])
    records.clear()
    quadratic_trainer(
        [Stage("sgd", steps=4, lr=0.5, scheduler="exponential")], log=records.append
    ).fit()
    assert [r.lr for r in records] == pytest.approx([0.5 * 0.01 ** (k / 4) for k in range(4)])


def test_checkpoints_hold_everything_and_keep_the_previous_one(tmp_path):
    sampler = WindowSampler(6, batch_size=2, seed=0)
    trainer = quadratic_trainer(
        [Stage("adam", steps=5, lr=0.1)],
        sampler=sampler,
        checkpoint_dir=tmp_path,
        checkpoint_every=2,
    )
    trainer.fit()
    latest, previous = (
        load_checkpoint(tmp_path / "latest.pt"),
        load_checkpoint(tmp_path / "previous.pt"),
    )
    assert latest["progress"]["global_step"] == 5 and latest["progress"]["complete"]
    assert previous["progress"]["global_step"] == 4 and previous["optimizer"] is not None
    assert torch.equal(latest["model"]["w"], trainer.model.w.detach())
    assert set(latest["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert latest["sampler"]["epoch"] == sampler.epoch
    assert len(latest["losses"]) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt", "previous.pt"]


def test_a_damaged_or_missing_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    stages = [Stage("adam", steps=6, lr=0.1)]
    reference = quadratic_trainer(stages).fit()
    with pytest.raises(Crash):
        quadratic_trainer(
            stages, checkpoint_dir=tmp_path, checkpoint_every=2, log=crash_at(5)
        ).fit()
    (tmp_path / "latest.pt").write_bytes(b"not a checkpoint")  # step 4's file, damaged
    with pytest.warns(CheckpointWarning, match="latest.pt cannot be read"):
        assert load_checkpoint(tmp_path)["progress"]["global_step"] == 2
    (tmp_path / "latest.pt").unlink()
    trainer = quadratic_trainer(stages, checkpoint_dir=tmp_path, checkpoint_every=2)
    with pytest.warns(CheckpointWarning, match="latest.pt is missing; falling back"):
        result = trainer.fit(resume=True)
    assert result.losses == reference.losses
    assert result.resumed_from == tmp_path / "previous.pt"
    (tmp_path / "previous.pt").write_bytes(b"")
    (tmp_path / "latest.pt").write_bytes(b"")
    with pytest.raises(RuntimeError, match="can be read"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("checkpoint_every", "crash_step"),
    [
        (1, 4),  # resume midway through Adam (from step 3)
        (1, 11),  # from the checkpoint at the end of the Adam stage
        (1, 14),  # midway through L-BFGS, with curvature history
        (4, 10),  # from step 8: the last Adam steps and the stage change are redone
        (5, 16),  # the final step: from step 15
    ],
)
def test_resume_after_a_crash_is_bitwise_identical(
    tmp_path, one_thread, reference, checkpoint_every, crash_step
):
    params, losses = reference
    problem = Problem()
    crashed = make_trainer(
        problem,
        problem.model(7),
        checkpoint_dir=tmp_path,
        checkpoint_every=checkpoint_every,
        log=crash_at(crash_step),
    )
    with pytest.raises(Crash):
        crashed.fit()
    model = problem.model(init_seed=99)  # other initial values: all must come from the checkpoint
    result = make_trainer(
        problem, model, checkpoint_dir=tmp_path, checkpoint_every=checkpoint_every
    ).fit(resume=True)
    assert result.resumed
    assert result.losses == losses
    assert result.stage_boundaries == [(0, 10), (10, 16)]
    assert_bitwise_equal(model.state_dict(), params)


def test_resume_without_restoring_random_generators_would_differ(
    tmp_path, one_thread, reference, monkeypatch
):
    """The resume test has teeth: the loss draws random numbers, so skipping the restore of the
    generators changes the result."""
    params, _ = reference
    problem = Problem()
    with pytest.raises(Crash):
        make_trainer(problem, problem.model(7), checkpoint_dir=tmp_path, log=crash_at(6)).fit()
    monkeypatch.setattr(trainer_module, "restore_rng_state", lambda state: None)
    model = problem.model(7)
    make_trainer(problem, model, checkpoint_dir=tmp_path).fit(resume=True)
    assert not torch.equal(model.net[0].weight, params["net.0.weight"])


def test_resume_of_a_finished_run_returns_its_result_without_training(tmp_path):
    first = quadratic_trainer([Stage("adam", steps=4, lr=0.1)], checkpoint_dir=tmp_path).fit()
    calls = []

    def counting_loss(model, batch):
        calls.append(batch)
        return model.loss(batch)

    model = Quadratic()
    again = Trainer(
        model,
        counting_loss,
        [Stage("adam", steps=4, lr=0.1)],
        checkpoint_dir=tmp_path,
        progress=False,
    )
    result = again.fit(resume=True)
    assert calls == [] and result.losses == first.losses and result.resumed
    assert torch.equal(model.w, load_checkpoint(tmp_path)["model"]["w"])


def test_resume_refuses_a_checkpoint_of_another_configuration(tmp_path):
    quadratic_trainer([Stage("adam", steps=3, lr=0.1)], checkpoint_dir=tmp_path).fit()
    with pytest.raises(FileExistsError, match="resume=True"):
        quadratic_trainer([Stage("adam", steps=3, lr=0.1)], checkpoint_dir=tmp_path).fit()
    with pytest.raises(ValueError, match="stages"):
        quadratic_trainer([Stage("adam", steps=4, lr=0.1)], checkpoint_dir=tmp_path).fit(
            resume=True
        )
    with pytest.raises(ValueError, match="seed=0"):
        quadratic_trainer([Stage("adam", steps=3, lr=0.1)], checkpoint_dir=tmp_path, seed=1).fit(
            resume=True
        )
    with pytest.raises(ValueError, match="checkpoint_dir"):
        quadratic_trainer([Stage("adam", steps=3, lr=0.1)]).fit(resume=True)


def test_resume_with_no_checkpoint_yet_starts_afresh(tmp_path):
    fresh = quadratic_trainer([Stage("adam", steps=3, lr=0.1)]).fit()
    resumed = quadratic_trainer(
        [Stage("adam", steps=3, lr=0.1)], checkpoint_dir=tmp_path / "new"
    ).fit(resume=True)
    assert resumed.losses == fresh.losses and not resumed.resumed


def test_sigint_finishes_the_step_checkpoints_and_raises(tmp_path, one_thread, reference):
    params, _ = reference
    problem = Problem()
    handler_before = signal.getsignal(signal.SIGINT)

    def press_ctrl_c(record):
        if record.step == 12:
            os.kill(os.getpid(), signal.SIGINT)

    trainer = make_trainer(
        problem, problem.model(7), checkpoint_dir=tmp_path, checkpoint_every=5, log=press_ctrl_c
    )
    with pytest.raises(TrainingInterrupted) as stop:
        trainer.fit()
    assert stop.value.step == 12 and stop.value.signal_number == signal.SIGINT
    assert stop.value.checkpoint == tmp_path / "latest.pt"
    assert "SIGINT" in str(stop.value) and "resume=True" in str(stop.value)
    assert load_checkpoint(tmp_path)["progress"]["global_step"] == 12
    assert signal.getsignal(signal.SIGINT) is handler_before
    model = problem.model(3)
    make_trainer(problem, model, checkpoint_dir=tmp_path, checkpoint_every=5).fit(resume=True)
    assert_bitwise_equal(model.state_dict(), params)


def test_a_non_finite_loss_stops_with_the_parameters_of_the_step_before():
    saved = {}

    def loss_fn(model, batch):
        loss = model.loss(batch)
        return loss * math.inf if len(saved) == 2 else loss

    def log(record):
        saved[record.step] = model.w.detach().clone()

    model = Quadratic()
    trainer = Trainer(
        model, loss_fn, [Stage("adam", steps=5, lr=0.1)], progress=False, log=log, nonfinite="raise"
    )
    with pytest.raises(FloatingPointError, match="the loss is inf at step 3"):
        trainer.fit()
    assert torch.equal(model.w, saved[2])


@pytest.mark.parametrize(
    ("loss_fn", "error", "text"),
    [
        (lambda model, batch: model.w**2, ValueError, ".mean()"),
        (lambda model, batch: 1.0, TypeError, "tensor"),
        (lambda model, batch: model.loss(batch).detach(), ValueError, "does not depend"),
    ],
)
def test_a_bad_loss_value_is_explained(loss_fn, error, text):
    with pytest.raises(error, match=text):
        Trainer(Quadratic(), loss_fn, [Stage("adam", steps=2)], progress=False).fit()


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"stages": []}, ValueError, "stages"),
        ({"stages": ["adam"]}, TypeError, r"stages\[0\]"),
        ({"checkpoint_every": 0}, ValueError, "checkpoint_every"),
        ({"val_every": 0}, ValueError, "val_every"),
        ({"seed": -3}, ValueError, "seed"),
        ({"sampler": [0, 1]}, TypeError, "sampler"),
        ({"loss_fn": "mse"}, TypeError, "loss_fn"),
        ({"model": nn.Linear(2, 2).requires_grad_(False)}, ValueError, "model"),
    ],
)
def test_bad_trainer_arguments_raise_naming_the_argument(kwargs, error, name):
    arguments = {
        "model": Quadratic(),
        "loss_fn": quadratic_loss,
        "stages": [Stage("adam", steps=2)],
    }
    arguments.update(kwargs)
    with pytest.raises(error, match=name):
        Trainer(
            arguments.pop("model"), arguments.pop("loss_fn"), arguments.pop("stages"), **arguments
        )


def test_distributed_without_a_launcher_says_how_to_launch(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    trainer = quadratic_trainer(
        [Stage("adam", steps=2)], sampler=WindowSampler(6, 2), distributed=True
    )
    with pytest.raises(RuntimeError, match="torchrun"):
        trainer.fit()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_shows_stage_and_loss_on_a_terminal_only(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    stages = [Stage("adam", steps=3, lr=0.1), Stage("lbfgs", steps=2)]
    Trainer(Quadratic(), quadratic_loss, stages, name="hybrid").fit()
    shown = terminal.getvalue()
    assert "hybrid [1/2 adam]" in shown and "hybrid [2/2 lbfgs]" in shown
    assert "loss=" in shown and "5/5" in shown
    quiet = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    Trainer(Quadratic(), quadratic_loss, stages, progress=False).fit()
    piped = io.StringIO()  # not a terminal: tqdm stays silent
    monkeypatch.setattr(sys, "stderr", piped)
    Trainer(Quadratic(), quadratic_loss, stages).fit()
    assert quiet.getvalue() == "" and piped.getvalue() == ""
