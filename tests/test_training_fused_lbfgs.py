"""``Trainer(fuse_lbfgs=True)``: L-BFGS iterations run in one ``optimizer.step`` call per stretch
up to each checkpoint boundary, yet every iteration is one step — the same iterates, losses,
records, checkpoints and resumption as one iteration per step, and the same non-finite
guarantees."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchnde.training import NonFiniteError, Stage, Trainer

F64 = torch.float64


class Rosenbrock(nn.Module):
    """A small non-quadratic problem on which L-BFGS's line search brackets and zooms:
    ``sum_i 100 (w_{i+1} − w_i²)² + (1 − w_i)²`` from a fixed start."""

    def __init__(self, size: int = 6):
        super().__init__()
        start = torch.linspace(-1.2, 1.0, size, dtype=F64)
        self.w = nn.Parameter(start)


def rosenbrock(model: Rosenbrock, batch=None) -> torch.Tensor:
    w = model.w
    return (100 * (w[1:] - w[:-1] ** 2) ** 2 + (1 - w[:-1]) ** 2).sum()


def fit(fused: bool, steps: int = 40, **kwargs):
    model = Rosenbrock()
    records = []
    stages = kwargs.pop("stages", [Stage("lbfgs", steps=steps, options={"history_size": 10})])
    trainer = Trainer(
        model,
        kwargs.pop("loss_fn", rosenbrock),
        stages,
        progress=False,
        log=records.append,
        fuse_lbfgs=fused,
        **kwargs,
    )
    return trainer, model, records


def test_fused_stretches_give_the_iterates_and_losses_of_one_iteration_per_step():
    evaluations = {True: 0, False: 0}
    results = {}
    for fused in (False, True):

        def counted(model, batch=None, fused=fused):
            evaluations[fused] += 1
            return rosenbrock(model)

        stages = [Stage("adam", steps=5, lr=1e-2), Stage("lbfgs", steps=40)]
        trainer, model, records = fit(fused, stages=stages, loss_fn=counted, checkpoint_every=7)
        results[fused] = (trainer.fit(), model.w.detach().clone(), records)
    (plain, w_plain, rec_plain), (fused, w_fused, rec_fused) = results[False], results[True]
    assert torch.equal(w_plain, w_fused)  # bitwise the same iterates
    assert fused.losses == plain.losses  # each step's start loss, bitwise
    assert [r.step for r in rec_fused] == list(range(1, 46))
    assert [(r.stage_finished, r.optimizer) for r in rec_fused] == [
        (r.stage_finished, r.optimizer) for r in rec_plain
    ]
    assert plain.losses[-1] < 1e-3 * plain.losses[5]  # L-BFGS did converge a long way
    # one call per stretch of <= 7 iterations instead of one per iteration: fewer evaluations
    # (no repeated evaluation at each call's start)
    assert evaluations[True] < evaluations[False] - 20


def test_fused_run_resumes_bitwise_from_a_checkpoint(tmp_path):
    trainer, model, _ = fit(True, steps=30, checkpoint_dir=tmp_path / "a", checkpoint_every=10)
    whole = trainer.fit()
    # the same run stopped after its checkpoint at step 20 (a crash), then resumed
    first, _, _ = fit(True, steps=30, checkpoint_dir=tmp_path / "b", checkpoint_every=10)
    calls = []

    def crash(record):
        calls.append(record.step)
        if record.step == 25:
            raise KeyboardInterrupt

    first.log = crash
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed, again, _ = fit(True, steps=30, checkpoint_dir=tmp_path / "b", checkpoint_every=10)
    result = resumed.fit(resume=True)
    assert result.resumed and result.losses == whole.losses
    assert torch.equal(again.w, model.w)


def test_fused_stage_stops_on_a_non_finite_start_with_finite_parameters():
    def loss_fn(model, batch=None):
        value = rosenbrock(model)
        return value * math.nan if model.w.detach().abs().max() < 0.999 else value

    model = nn.Module()
    model.w = nn.Parameter(torch.tensor([3.0, 3.0], dtype=F64))

    def train():
        stages = [Stage("lbfgs", steps=20)]
        return Trainer(
            model,
            lambda m, b: loss_fn(m),
            stages,
            progress=False,
            nonfinite="raise",
            fuse_lbfgs=True,
        ).fit()

    result = train()  # the NaN region is only ever a trial point: backed off from
    assert result.skipped_steps == [] and torch.isfinite(model.w).all()
    assert all(math.isfinite(v) for v in result.losses)

    model.w.data = torch.tensor([0.5, 0.5], dtype=F64)  # a NaN start: stops, nothing applied
    with pytest.raises(NonFiniteError, match="loss is nan"):
        train()
    assert torch.equal(model.w.detach(), torch.tensor([0.5, 0.5], dtype=F64))


def test_fuse_lbfgs_is_checked_and_left_alone_where_it_cannot_apply():
    with pytest.raises(TypeError, match="fuse_lbfgs"):
        fit("yes")
    # early stopping needs each step's loss before the next: one iteration per step
    stages = [Stage("lbfgs", steps=30, patience=3, min_delta=1e9)]
    trainer, _, records = fit(True, stages=stages)
    assert trainer.fit().stopped_early == [True]
    assert len(records) == 4  # the first step sets the best, three more do not beat it
