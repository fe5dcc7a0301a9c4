"""Non-finite gradients never reach the parameters or a checkpoint.

A vector field that is finite forward but whose derivative is NaN (``-w * sqrt(y**2)`` at
``y = 0``: ``sqrt'(0) = inf`` times ``d(y**2)/dy = 0``) gives ``w.grad = nan`` through
``DirectAdjoint`` and ``CheckpointAdjoint``. The trainer checks every gradient after every
backward pass: under ``nonfinite="skip"`` (the default) the update is skipped, counted, warned
about and recorded, and ``max_consecutive_skips`` skipped steps in a row stop the run; under
``"raise"`` the first one does. L-BFGS line-search trial points with a non-finite loss or
gradient are reported to the line search as a loss far above the step's start. A model with a
non-finite parameter is never written as a checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from torchnde import CheckpointAdjoint, DirectAdjoint, Heun, ODETerm, solve
from torchnde.training import (
    NonFiniteError,
    NonFiniteStepWarning,
    Stage,
    Trainer,
    WindowSampler,
    load_checkpoint,
)

F64 = torch.float64


class AbsDecay(nn.Module):
    """``dy/dt = -w * sqrt(y**2) = -w |y|``: finite everywhere, but its derivative in ``y`` is
    ``-w * y / sqrt(y**2)``, which autograd evaluates at ``y = 0`` as ``inf * 0 = nan``."""

    def __init__(self, w: float = 0.5):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=F64))
        self.b = nn.Parameter(torch.tensor(0.0, dtype=F64))  # used outside the solve only

    def forward(self, t, y, args):
        return -self.w * torch.sqrt(y**2)


#: initial states of the windows: window 0 starts at y = 0, where the gradient is NaN
Y0 = torch.tensor([0.0, 1.0, 2.0, 1.5, 0.5, 3.0], dtype=F64)
TARGET = Y0 * math.exp(-1.0)  # the solution for w = 1, b = 0 at t = 1


def abs_decay_loss(adjoint):
    def loss_fn(model: AbsDecay, batch: torch.Tensor | None) -> torch.Tensor:
        index = slice(None) if batch is None else batch
        sol = solve(ODETerm(model), Heun(), 0.0, 1.0, Y0[index], dt0=0.25, adjoint=adjoint)
        return ((sol.ys[-1] - TARGET[index]) ** 2).mean() + 0.01 * (model.b - 1.0) ** 2

    return loss_fn


@contextlib.contextmanager
def quiet_skips():
    """Silence the skip warnings (tests that count them use pytest.warns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteStepWarning)
        yield


def trainer(model, loss_fn, stages, **kwargs) -> Trainer:
    return Trainer(model, loss_fn, stages, progress=False, **kwargs)


ADJOINTS = [
    pytest.param(DirectAdjoint(), id="direct"),
    pytest.param(CheckpointAdjoint(), id="ckpt"),
]


# ----------------------------------------------------------------------------- the defect


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_a_nan_gradient_is_never_applied_nor_written(tmp_path, adjoint):
    """All windows in every batch: every step's gradient is NaN, so every step is skipped and
    the fifth in a row stops the run; w and every checkpoint stay finite."""
    model = AbsDecay()
    fit = trainer(
        model,
        abs_decay_loss(adjoint),
        [Stage("adam", steps=8, lr=0.1)],
        checkpoint_dir=tmp_path,
        checkpoint_every=1,
    )
    with pytest.raises(FloatingPointError) as stop, quiet_skips():
        fit.fit()
    assert model.w.item() == 0.5 and model.b.item() == 0.0  # no update was applied
    saved = load_checkpoint(tmp_path)
    assert saved["model"]["w"].item() == 0.5
    assert saved["progress"]["global_step"] == 4 and saved["skipped"] == [1, 2, 3, 4]
    error = stop.value
    assert isinstance(error, NonFiniteError)
    assert (error.step, error.stage_index, error.what) == (5, 0, "gradient")
    assert error.parameters == ["w"] and error.skipped == [1, 2, 3, 4, 5]
    message = str(error)
    for fragment in ("`w`", "steps 1-5", "stage 1", "adam", "set_detect_anomaly", "latest.pt"):
        assert fragment in message, message


def test_raise_stops_at_the_first_non_finite_gradient_naming_the_parameter():
    model = AbsDecay()
    fit = trainer(
        model, abs_decay_loss(DirectAdjoint()), [Stage("adam", steps=4, lr=0.1)], nonfinite="raise"
    )
    with pytest.raises(NonFiniteError) as stop:
        fit.fit()
    assert stop.value.step == 1 and stop.value.parameters == ["w"]
    assert "the gradient of `w` is not finite (NaN or inf) at step 1 (stage 1, adam)" in str(
        stop.value
    )
    assert "sqrt(y**2 + eps)" in str(stop.value) and "nonfinite='skip'" in str(stop.value)
    assert model.w.item() == 0.5


def skipped_batches(sampler: WindowSampler, steps: int, bad_window: int) -> list[int]:
    """The steps (1-based) whose batch holds ``bad_window``."""
    return [step for step in range(1, steps + 1) if bad_window in sampler.next_batch().tolist()]


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_skip_drops_only_the_steps_whose_batch_meets_the_nan_and_records_them(adjoint):
    """Mini-batches of 2 windows out of 6: the batches that contain window 0 (y0 = 0) are
    skipped, the others train; the skipped steps are in the result, the step records and one
    warning each."""
    steps = 12
    expected = skipped_batches(WindowSampler(6, batch_size=2, seed=3), steps, bad_window=0)
    assert 2 <= len(expected) <= 6  # the test needs both kinds of step
    model = AbsDecay()
    records = []
    fit = trainer(
        model,
        abs_decay_loss(adjoint),
        [Stage("adam", steps=steps, lr=0.05)],
        sampler=WindowSampler(6, batch_size=2, seed=3),
        log=records.append,
    )
    with pytest.warns(NonFiniteStepWarning) as caught:
        result = fit.fit()
    assert result.skipped_steps == expected
    assert [r.step for r in records if r.skipped] == expected
    assert all("skipped" in str(r) for r in records if r.skipped)
    skips = [w for w in caught if issubclass(w.category, NonFiniteStepWarning)]
    assert len(skips) == len(expected)
    assert f"step {expected[0]}" in str(skips[0].message) and "`w`" in str(skips[0].message)
    assert math.isfinite(model.w.item()) and model.w.item() > 0.5  # trained towards w = 1


def test_a_stage_whose_every_step_was_skipped_is_an_error():
    """Fewer steps than max_consecutive_skips, all skipped: not a silent success."""
    fit = trainer(AbsDecay(), abs_decay_loss(DirectAdjoint()), [Stage("sgd", steps=2, lr=0.1)])
    with pytest.raises(NonFiniteError, match="no update was applied in stage 1"), quiet_skips():
        fit.fit()


def test_a_non_finite_loss_is_skipped_like_a_gradient():
    calls = []

    def loss_fn(model, batch):
        calls.append(1)
        loss = ((model.w - 3.0) ** 2).sum()
        return loss * math.nan if len(calls) in (2, 3) else loss

    model = nn.Module()
    model.w = nn.Parameter(torch.zeros(2, dtype=F64))
    with pytest.warns(NonFiniteStepWarning, match="the loss is nan"):
        result = trainer(model, loss_fn, [Stage("sgd", steps=5, lr=0.1)]).fit()
    assert result.skipped_steps == [2, 3]
    assert math.isnan(result.losses[1]) and math.isfinite(result.losses[4])
    assert torch.allclose(model.w, torch.full((2,), 3.0 * (1 - 0.8**3), dtype=F64))


# ----------------------------------------------------------------------------- L-BFGS


def test_lbfgs_skips_a_nan_gradient_at_the_start_of_its_step():
    model = AbsDecay()
    fit = trainer(model, abs_decay_loss(DirectAdjoint()), [Stage("lbfgs", steps=3, lr=1.0)])
    with pytest.raises(NonFiniteError, match="no update was applied"), quiet_skips():
        fit.fit()
    assert model.w.item() == 0.5


def test_lbfgs_line_search_backs_off_from_trial_points_with_a_nan_gradient():
    """``w**2 + sqrt(relu(1 - w) * 0)`` is finite everywhere, but its
    gradient is NaN for w < 1 (``sqrt'(0) * 0``). From w = 3 the quasi-Newton steps aim at
    w = 0; the line search must see those trial points as bad and settle on the finite side,
    making progress every step."""
    trials = []

    def loss_fn(model, batch):
        trials.append(model.w.item())
        return model.w**2 + torch.sqrt(torch.relu(1.0 - model.w) * 0.0)

    model = nn.Module()
    model.w = nn.Parameter(torch.tensor(3.0, dtype=F64))
    result = trainer(model, loss_fn, [Stage("lbfgs", steps=4, lr=1.0)]).fit()
    assert any(w < 1.0 for w in trials)  # the line search did try the NaN region
    assert all(math.isfinite(w) for w in trials)
    assert result.skipped_steps == []
    assert all(b < a for a, b in zip(result.losses, result.losses[1:]))
    assert 1.0 <= model.w.item() < 1.8


# ----------------------------------------------------------------------------- parameters


def test_a_model_with_a_non_finite_parameter_is_never_written(tmp_path):
    model = AbsDecay()

    def poison(record):  # stands for anything that breaks the model between steps
        if record.step == 3:
            with torch.no_grad():
                model.b.fill_(math.inf)

    fit = trainer(
        model,
        lambda m, batch: (m.w - 1.0) ** 2 + m.b**2,
        [Stage("adam", steps=6, lr=0.1)],
        checkpoint_dir=tmp_path,
        checkpoint_every=1,
        log=poison,
    )
    with pytest.raises(NonFiniteError) as stop:
        fit.fit()
    message = str(stop.value)
    assert "refusing to write a checkpoint" in message and "`b`" in message
    assert str(tmp_path / "latest.pt") in message and "step 2" in message
    saved = load_checkpoint(tmp_path / "latest.pt")
    assert saved["progress"]["global_step"] == 2 and torch.isfinite(saved["model"]["b"])


def test_an_update_that_overflows_the_parameters_stops_at_once(tmp_path):
    """Finite loss and gradient, but lr * grad overflows: no skip can help; stop, and write
    nothing of it."""
    model = nn.Module()
    model.w = nn.Parameter(torch.tensor([1.0, 0.0], dtype=F64))
    fit = trainer(
        model,
        lambda m, batch: (10.0 * m.w).sum(),
        [Stage("sgd", steps=3, lr=1e308)],
        checkpoint_dir=tmp_path,
    )
    with pytest.raises(NonFiniteError, match=r"parameter `w` became non-finite in step 1.*lr"):
        fit.fit()
    assert not (tmp_path / "latest.pt").exists()


def test_non_finite_initial_parameters_are_refused():
    model = AbsDecay(w=math.nan)
    with pytest.raises(ValueError, match=r"`w`.*before training"):
        trainer(model, abs_decay_loss(DirectAdjoint()), [Stage("adam", steps=1)]).fit()


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"nonfinite": "ignore"}, ValueError, "nonfinite"),
        ({"nonfinite": "skp"}, ValueError, "'skip'"),
        ({"max_consecutive_skips": 0}, ValueError, "max_consecutive_skips"),
    ],
)
def test_bad_policy_arguments_are_named(kwargs, error, text):
    with pytest.raises(error, match=text):
        trainer(AbsDecay(), abs_decay_loss(DirectAdjoint()), [Stage("adam", steps=1)], **kwargs)


def test_skips_survive_a_resume(tmp_path):
    """The skipped steps and the run of consecutive skips are in the checkpoint."""

    def run(**kwargs):
        model = AbsDecay()
        fit = trainer(
            model,
            abs_decay_loss(DirectAdjoint()),
            [Stage("adam", steps=10, lr=0.05)],
            sampler=WindowSampler(6, batch_size=3, seed=1),
            **kwargs,
        )
        with quiet_skips():
            return fit.fit(resume="checkpoint_dir" in kwargs), model

    reference, ref_model = run()
    assert reference.skipped_steps  # the seed puts window 0 into some batches

    def crash(record):
        if record.step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(checkpoint_dir=tmp_path, checkpoint_every=3, log=crash)
    resumed, model = run(checkpoint_dir=tmp_path, checkpoint_every=3)
    assert resumed.resumed and resumed.skipped_steps == reference.skipped_steps
    assert torch.equal(model.w, ref_model.w)


# ----------------------------------------------------------------------------- property


PROPERTY = settings(
    max_examples=12,
    deadline=5000,  # ms per example: "within seconds"
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@PROPERTY
@given(
    optimizer=st.sampled_from(["adam", "sgd", "lbfgs"]),
    adjoint=st.sampled_from(["direct", "checkpoint"]),
    policy=st.sampled_from(["skip", "raise"]),
    zeros=st.integers(1, 6),
    batch=st.one_of(st.none(), st.integers(1, 6)),
)
def test_property_nan_derivative_ends_in_a_clear_error_or_skips_never_a_nan_model_on_disk(
    tmp_path_factory, optimizer, adjoint, policy, zeros, batch
):
    """Any optimiser, adjoint, policy, batching and number of windows starting at y = 0 (where
    the derivative is NaN): training ends within seconds with a NonFiniteError or with the
    skipped steps recorded, and neither the model nor any checkpoint holds a non-finite value."""
    folder = tmp_path_factory.mktemp("nonfinite")
    y0 = torch.cat([torch.zeros(zeros, dtype=F64), torch.linspace(0.5, 2.0, 6 - zeros, dtype=F64)])
    chosen = DirectAdjoint() if adjoint == "direct" else CheckpointAdjoint()

    def loss_fn(model, index):
        index = slice(None) if index is None else index
        sol = solve(ODETerm(model), Heun(), 0.0, 1.0, y0[index], dt0=0.5, adjoint=chosen)
        return ((sol.ys[-1] - y0[index] * 0.5) ** 2).mean()

    model = AbsDecay()
    sampler = None if batch is None else WindowSampler(6, batch_size=batch, seed=0)
    fit = trainer(
        model,
        loss_fn,
        [Stage(optimizer, steps=6, lr=0.05 if optimizer != "lbfgs" else 1.0)],
        sampler=sampler,
        checkpoint_dir=folder,
        checkpoint_every=2,
        nonfinite=policy,
        max_consecutive_skips=3,
    )
    start = time.monotonic()
    with quiet_skips():
        try:
            result = fit.fit()
        except NonFiniteError as error:
            assert "`w`" in str(error) and f"step {error.step}" in str(error)
        else:
            assert policy == "skip" and result.skipped_steps  # every batch... or some met a zero
    assert time.monotonic() - start < 10
    assert all(torch.isfinite(p).all() for p in model.parameters())
    for name in ("latest.pt", "previous.pt"):
        if (folder / name).exists():
            state = load_checkpoint(folder / name)["model"]
            assert all(torch.isfinite(value).all() for value in state.values())
