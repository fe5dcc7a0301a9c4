"""Checkpoint durability: every checkpoint carries a SHA-256 checksum of its content; a
``latest.pt`` with flipped bytes (which ``torch.load`` reads without a word) is detected, named,
moved aside, and the fall-back to ``previous.pt`` announced; old checkpoints without a checksum
load with a warning; a disk that fills up during a checkpoint gives "no space left on device while
writing <file>; the previous checkpoint <file> is intact", and that checkpoint still loads and
resumes."""

from __future__ import annotations

import errno
import io
import os

import pytest
import torch
from torch import nn

from torchnde.training import (
    CheckpointError,
    CheckpointWarning,
    Stage,
    Trainer,
    atomic_save,
    atomic_write_text,
    load_checkpoint,
)
from torchnde.training import _atomic as atomic_module
from torchnde.training._checkpoint import UNCHECKED_FORMAT, content_digest


class Quadratic(nn.Module):
    """``loss = mean((w_i - i)²)``."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(6, dtype=torch.float64))

    def loss(self, batch) -> torch.Tensor:
        return ((self.w - torch.arange(6, dtype=torch.float64)) ** 2).mean()


STAGES = [Stage("adam", steps=6, lr=0.1)]


def trainer(**kwargs) -> Trainer:
    return Trainer(Quadratic(), lambda m, b: m.loss(b), STAGES, progress=False, **kwargs)


class Crash(Exception):
    pass


def crash_at(step: int):
    def log(record):
        if record.step == step:
            raise Crash

    return log


@pytest.fixture
def interrupted(tmp_path):
    """A run killed after step 5: latest.pt holds step 4, previous.pt step 2."""
    with pytest.raises(Crash):
        trainer(checkpoint_dir=tmp_path, checkpoint_every=2, log=crash_at(5)).fit()
    return tmp_path


def flip_a_byte_of(path, tensor: torch.Tensor) -> None:
    """Flip one bit in the middle of ``tensor``'s bytes inside the file ``path``."""
    data = bytearray(path.read_bytes())
    raw = tensor.numpy().tobytes()
    where = data.find(raw)
    assert where >= 0 and data.find(raw, where + 1) < 0  # found, once
    data[where + len(raw) // 2] ^= 0x10
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------------------- checksums


def test_every_checkpoint_carries_a_checksum_of_its_content(interrupted):
    for name in ("latest.pt", "previous.pt"):
        raw = torch.load(interrupted / name, weights_only=True)
        assert raw["format"] == "torchnde.training.checkpoint/2"
        assert len(raw["sha256"]) == 64 and raw["sha256"] == content_digest(raw)
    changed = torch.load(interrupted / "latest.pt", weights_only=True)
    changed["losses"][0] += 1e-12  # any change of any value changes the checksum
    assert content_digest(changed) != changed["sha256"]


def test_flipped_bytes_in_latest_are_detected_named_moved_aside_and_the_fallback_announced(
    interrupted,
):
    latest, previous = interrupted / "latest.pt", interrupted / "previous.pt"
    w = torch.load(latest, weights_only=True)["model"]["w"]
    flip_a_byte_of(latest, w)
    silently = torch.load(latest, weights_only=True)["model"]["w"]  # torch does not notice
    assert not torch.equal(silently, w)
    with pytest.raises(CheckpointError, match=f"checkpoint {latest} is damaged.*SHA-256"):
        load_checkpoint(latest)
    reference = trainer().fit()
    fit = trainer(checkpoint_dir=interrupted, checkpoint_every=2)
    with pytest.warns(CheckpointWarning) as caught:
        result = fit.fit(resume=True)
    message = str(caught[0].message)
    assert f"checkpoint {latest} is damaged" in message
    assert f"falling back to the checkpoint before it, {previous} (step 2)" in message
    assert result.resumed_from == previous and result.losses == reference.losses
    assert torch.equal(fit.model.w, load_checkpoint(latest)["model"]["w"])
    kept = interrupted / "latest.pt.damaged"  # for inspection, not rotated into previous.pt
    assert torch.equal(torch.load(kept, weights_only=True)["model"]["w"], silently)
    assert load_checkpoint(previous)["progress"]["global_step"] == 4


def test_a_checkpoint_without_or_with_a_wrong_checksum_is_refused(interrupted, tmp_path):
    state = torch.load(interrupted / "latest.pt", weights_only=True)
    for change, fragment in [
        (lambda s: s.pop("sha256"), "stored None"),
        (lambda s: s.update(sha256="0" * 64), "stored 0000000000000000"),
        (lambda s: s.update(format="something/else"), "is not a torchnde training checkpoint"),
    ]:
        bad = dict(state)
        change(bad)
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=fragment):
            load_checkpoint(tmp_path / "bad.pt")
    (tmp_path / "cut.pt").write_bytes((interrupted / "latest.pt").read_bytes()[:300])
    with pytest.raises(CheckpointError, match=r"cut.pt cannot be read \(RuntimeError"):
        load_checkpoint(tmp_path / "cut.pt")


def test_old_checkpoints_without_a_checksum_load_with_a_warning_and_resume(interrupted):
    """As written before checksums (format /1): used, announced as unverifiable; the resumed
    run's next checkpoint carries a checksum."""
    for name in ("latest.pt", "previous.pt"):
        old = torch.load(interrupted / name, weights_only=True)
        del old["sha256"]
        old["format"] = UNCHECKED_FORMAT
        torch.save(old, interrupted / name)
    with pytest.warns(CheckpointWarning, match="without a checksum"):
        assert load_checkpoint(interrupted / "latest.pt")["progress"]["global_step"] == 4
    reference = trainer().fit()
    with pytest.warns(CheckpointWarning, match="without a checksum"):
        result = trainer(checkpoint_dir=interrupted, checkpoint_every=2).fit(resume=True)
    assert result.losses == reference.losses
    assert "sha256" in load_checkpoint(interrupted / "latest.pt")


# ----------------------------------------------------------------------------- a full disk


class FillingDevice:
    """A file on a device with ``free`` bytes left: the write that crosses it stores what fits,
    then fails with ENOSPC, as ``write(2)`` does on a full disk."""

    def __init__(self, file: io.BufferedWriter, free: int, code: int = errno.ENOSPC):
        self._file = file
        self.free = free
        self.code = code

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.free:
            self._file.write(data[: self.free])
            self.free = 0
            raise OSError(self.code, os.strerror(self.code))
        self.free -= len(data)
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


@pytest.fixture
def disk_full(monkeypatch):
    """Call it to make every later atomic write hit a full disk after ``free`` bytes."""

    opened = atomic_module._open_temporary

    def fill(free: int = 700, code: int = errno.ENOSPC):
        monkeypatch.setattr(
            atomic_module, "_open_temporary", lambda fd: FillingDevice(opened(fd), free, code)
        )

    return fill


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_says_so(tmp_path, disk_full):
    def fill_after_step_2(record):
        if record.step == 3:
            disk_full()

    fit = trainer(checkpoint_dir=tmp_path, checkpoint_every=2, log=fill_after_step_2)
    with pytest.raises(OSError) as error:
        fit.fit()
    latest = tmp_path / "latest.pt"
    assert error.value.errno == errno.ENOSPC
    message = str(error.value)
    assert (
        f"no space left on device while writing {latest}; the previous checkpoint {latest} is "
        "intact" in message
    )
    assert "fit(resume=True) continues from step 2" in message
    assert "enforce fail" not in message and "unexpected pos" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]  # no partial file left
    assert load_checkpoint(latest)["progress"]["global_step"] == 2


def test_after_space_is_freed_the_run_resumes_from_the_intact_checkpoint(tmp_path, monkeypatch):
    reference = trainer().fit()
    opened = atomic_module._open_temporary

    def fill_after_step_2(record):
        if record.step == 3:
            monkeypatch.setattr(
                atomic_module, "_open_temporary", lambda fd: FillingDevice(opened(fd), 700)
            )

    with pytest.raises(OSError, match="no space left on device"):
        trainer(checkpoint_dir=tmp_path, checkpoint_every=2, log=fill_after_step_2).fit()
    monkeypatch.setattr(atomic_module, "_open_temporary", opened)  # space freed
    result = trainer(checkpoint_dir=tmp_path, checkpoint_every=2).fit(resume=True)
    assert result.losses == reference.losses


@pytest.mark.parametrize("free", [0, 300, 5000])
def test_torch_zip_writer_errors_are_translated_wherever_the_disk_fills(tmp_path, disk_full, free):
    """torch.save reports a failed write as ``RuntimeError: [enforce fail at
    inline_container.cc] unexpected pos``; the OSError underneath is what the user sees."""
    path = tmp_path / "state.pt"
    atomic_save({"data": torch.ones(100)}, path)
    disk_full(free)
    with pytest.raises(OSError) as error:
        atomic_save({"data": torch.zeros(10_000)}, path)
    assert error.value.errno == errno.ENOSPC
    assert str(error.value).startswith(f"[Errno {errno.ENOSPC}] no space left on device while")
    assert isinstance(error.value.__cause__, RuntimeError | OSError)
    assert torch.equal(torch.load(path, weights_only=True)["data"], torch.ones(100))
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_plain_writes_name_the_file_whether_or_not_it_existed(tmp_path, disk_full):
    disk_full(10)
    with pytest.raises(OSError, match=r"no space left on device while writing .*new.txt; no file"):
        atomic_write_text(tmp_path / "new.txt", "x" * 100)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "old.txt").write_text("old")
    disk_full(10, code=errno.EIO)
    with pytest.raises(
        OSError, match=r"input/output error while writing .*old.txt; the previous file"
    ) as error:
        atomic_write_text(tmp_path / "old.txt", "new" * 100)
    assert error.value.errno == errno.EIO and (tmp_path / "old.txt").read_text() == "old"
