"""What a solve returns: ``SaveAt(t0, ts, steps, t1)`` layouts and values, and the dense output
``sol.evaluate(t)``: its shapes for every query form, its accuracy against a known solution, its
continuity across steps, and its agreement with the saved values.

Problem: the damped rotation ``y' = A y`` with ``A = [[-0.1, 1], [-1, -0.1]]``, exact solution
``e^{At} y0`` (``torch.linalg.matrix_exp``).
"""

from __future__ import annotations

import pytest
import torch

import torchnde
from torchnde import ODETerm, PIDController, SaveAt, Status

F64 = torch.float64
A = torch.tensor([[-0.1, 1.0], [-1.0, -0.1]], dtype=F64)
Y0 = torch.tensor([1.0, 0.5], dtype=F64)
RTOL = 1e-9


def rotation(t, y, args):
    return y @ A.T  # (..., 2): works batched and unbatched


def exact(t: torch.Tensor, y0: torch.Tensor = Y0) -> torch.Tensor:
    """``e^{A t} y0`` for any shape of ``t`` → ``t.shape + (2,)``."""
    flat = t.reshape(-1)
    mats = torch.linalg.matrix_exp(flat[:, None, None] * A)
    return (mats @ y0).reshape(*t.shape, 2)


def _solve(saveat, t0=0.0, t1=3.0, y0=Y0, **kwargs):
    kwargs.setdefault("controller", PIDController(rtol=RTOL, atol=RTOL / 100))
    return torchnde.solve(ODETerm(rotation), torchnde.Dopri5(), t0, t1, y0, saveat=saveat, **kwargs)


def test_saveat_layout_and_values():
    ts = torch.tensor([0.0, 0.7, 1.9, 3.0], dtype=F64)  # including both ends
    sol = _solve(SaveAt(t0=True, ts=ts, steps=True, t1=True))
    steps = int(sol.stats["num_accepted"])
    assert sol.ts.shape == (1 + 4 + steps + 1,) and sol.ys.shape == (1 + 4 + steps + 1, 2)
    # order: t0, ts, steps, t1
    assert sol.ts[0] == 0.0 and torch.equal(sol.ts[1:5], ts) and sol.ts[-1] == 3.0
    step_ts = sol.ts[5:-1]
    assert (step_ts.diff() > 0).all() and step_ts[-1] == 3.0 and step_ts[0] > 0
    # values: y0 exactly at t0, the final value exactly at t1 and at the last step
    assert torch.equal(sol.ys[0], Y0) and torch.equal(sol.ys[1], Y0)
    assert torch.equal(sol.ys[-1], sol.ys[-2]) and torch.equal(sol.ys[4], sol.ys[-1])
    torch.testing.assert_close(sol.ys, exact(sol.ts), rtol=0, atol=10 * RTOL)


def test_saveat_batched_layout_with_nan_padded_steps():
    """Per-sample step counts differ, so the saved steps are NaN-padded to the longest."""
    y0 = torch.stack([Y0, 10 * Y0, Y0])
    t1 = torch.tensor([3.0, 3.0, 0.5], dtype=F64)
    sol = _solve(
        SaveAt(t0=True, ts=torch.tensor([0.25, 0.5], dtype=F64), steps=True),
        t1=t1,
        y0=y0,
        batch_axis=0,
    )
    accepted = sol.stats["num_accepted"]
    width = int(accepted.max())
    assert sol.ts.shape == (3, 1 + 2 + width) and sol.ys.shape == (3, 1 + 2 + width, 2)
    for b in range(3):
        n = int(accepted[b])
        real, pad = slice(3, 3 + n), slice(3 + n, None)
        assert torch.isfinite(sol.ts[b, real]).all() and torch.isnan(sol.ts[b, pad]).all()
        assert torch.isnan(sol.ys[b, pad]).all()
        assert sol.ts[b, 3 + n - 1] == t1[b]
        torch.testing.assert_close(
            sol.ys[b, : 3 + n], exact(sol.ts[b, : 3 + n], y0[b]), rtol=0, atol=1e-7
        )


def test_repeated_save_times():
    sol = _solve(SaveAt(ts=torch.tensor([0.5, 0.5, 2.0], dtype=F64)))
    torch.testing.assert_close(sol.ys[0], sol.ys[1], rtol=0, atol=1e-15)  # (vectorised rounding)
    torch.testing.assert_close(sol.ys, exact(sol.ts), rtol=0, atol=10 * RTOL)


# ------------------------------------------------------------------------------------------------
# dense output


@pytest.fixture(scope="module")
def dense():
    return _solve(SaveAt(steps=True, dense=True))


def test_evaluate_query_shapes_unbatched(dense):
    assert dense.evaluate(1.0).shape == (2,)
    assert dense.evaluate(torch.tensor(1.0, dtype=F64)).shape == (2,)
    assert dense.evaluate(torch.linspace(0, 3, 7, dtype=F64)).shape == (7, 2)
    assert dense.evaluate(torch.rand(4, 5, dtype=F64) * 3).shape == (4, 5, 2)


def test_evaluate_accuracy_and_ends(dense):
    t = torch.linspace(0.0, 3.0, 301, dtype=F64)
    torch.testing.assert_close(dense.evaluate(t), exact(t), rtol=0, atol=10 * RTOL)
    assert torch.equal(dense.evaluate(0.0), Y0)
    torch.testing.assert_close(dense.evaluate(3.0), dense.ys[-1], rtol=0, atol=1e-15)


def test_evaluate_at_steps_matches_saved_steps_and_is_continuous(dense):
    step_ts = dense.ts
    torch.testing.assert_close(dense.evaluate(step_ts), dense.ys, rtol=0, atol=1e-14)
    inner = step_ts[:-1]
    eps = 1e-9 * inner.abs().clamp(min=1)
    left, right = dense.evaluate(inner - eps), dense.evaluate(inner + eps)
    # across a step boundary the two interpolants meet: the jump is O(eps · |y'|), not O(tol)
    assert float((left - right).abs().max()) < 1e-8


def test_evaluate_outside_and_without_dense(dense):
    with pytest.raises(ValueError, match="outside the solved interval"):
        dense.evaluate(3.5)
    with pytest.raises(ValueError, match="outside the solved interval"):
        dense.evaluate(torch.tensor([0.5, -0.1], dtype=F64))
    plain = _solve(SaveAt(t1=True))
    with pytest.raises(ValueError, match="dense=True"):
        plain.evaluate(1.0)


def test_evaluate_backwards_in_time():
    sol = _solve(
        SaveAt(t1=True, dense=True), t0=3.0, t1=0.0, y0=exact(torch.tensor(3.0, dtype=F64))
    )
    t = torch.linspace(3.0, 0.0, 31, dtype=F64)
    torch.testing.assert_close(sol.evaluate(t), exact(t), rtol=0, atol=20 * RTOL)
    torch.testing.assert_close(sol.ys[0], Y0, rtol=0, atol=20 * RTOL)


def test_evaluate_batched_query_forms():
    y0 = torch.stack([Y0, 2 * Y0, -Y0])
    t1 = torch.tensor([3.0, 2.0, 1.0], dtype=F64)
    sol = _solve(SaveAt(dense=True), t1=t1, y0=y0, batch_axis=0)
    per = lambda t: torch.stack([exact(t[b], y0[b]) for b in range(3)])  # noqa: E731
    # a scalar: every sample at that time
    out = sol.evaluate(0.5)
    assert out.shape == (3, 2)
    torch.testing.assert_close(out, per(torch.full((3,), 0.5, dtype=F64)), rtol=0, atol=1e-7)
    # (batch,): one time per sample
    t = torch.tensor([2.5, 1.5, 0.25], dtype=F64)
    out = sol.evaluate(t)
    assert out.shape == (3, 2)
    torch.testing.assert_close(out, per(t), rtol=0, atol=1e-7)
    # (batch, Q): Q times per sample
    t = torch.tensor([[0.0, 1.0, 3.0], [0.5, 1.0, 2.0], [0.1, 0.2, 1.0]], dtype=F64)
    out = sol.evaluate(t)
    assert out.shape == (3, 3, 2)
    torch.testing.assert_close(out, per(t), rtol=0, atol=1e-7)
    # (Q,) with Q != batch: the same times for every sample
    t = torch.tensor([0.1, 0.2, 0.4, 0.8], dtype=F64)
    out = sol.evaluate(t)
    assert out.shape == (3, 4, 2)
    torch.testing.assert_close(out, per(t.expand(3, 4)), rtol=0, atol=1e-7)
    # beyond a sample's own t1
    with pytest.raises(ValueError, match="outside"):
        sol.evaluate(torch.tensor([0.5, 0.5, 2.0], dtype=F64))


def test_evaluate_tree_state():
    def f(t, y, args):
        return {"x": y["v"], "v": -y["x"]}

    sol = torchnde.solve(
        ODETerm(f),
        torchnde.Tsit5() if hasattr(torchnde, "Tsit5") else torchnde.Dopri5(),
        0.0,
        2.0,
        {"x": torch.ones(3, dtype=F64), "v": torch.zeros(3, dtype=F64)},
        controller=PIDController(rtol=1e-9, atol=1e-11),
        saveat=SaveAt(dense=True),
    )
    t = torch.tensor([0.3, 1.7], dtype=F64)
    out = sol.evaluate(t)
    assert set(out) == {"x", "v"} and out["x"].shape == (2, 3)
    torch.testing.assert_close(out["x"], torch.cos(t)[:, None].expand(2, 3), rtol=0, atol=1e-8)
    torch.testing.assert_close(out["v"], -torch.sin(t)[:, None].expand(2, 3), rtol=0, atol=1e-8)
    assert sol.statuses == [Status.SUCCESS]


def test_constant_step_dense_output_with_step_to():
    """Under StepTo the dense output of RK4 (cubic Hermite) has its fourth-order accuracy between
    the grid points, halving the grid spacing divides the error by ~16."""
    errors = []
    for n in (8, 16):
        grid = torch.linspace(0.0, 3.0, n + 1, dtype=F64)
        sol = torchnde.solve(
            ODETerm(rotation),
            torchnde.RK4(),
            0.0,
            3.0,
            Y0,
            controller=torchnde.StepTo(grid),
            saveat=SaveAt(dense=True),
        )
        mid = (grid[:-1] + grid[1:]) / 2
        errors.append(float((sol.evaluate(mid) - exact(mid)).abs().max()))
    assert 12 < errors[0] / errors[1] < 20, errors
