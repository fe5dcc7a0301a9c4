"""``solve(..., compact=...)``: finished samples stop costing, and nothing else changes."""

from __future__ import annotations

import pytest
import torch

import torchnde as tn

F64 = torch.float64


def _leaves(tree):
    return list(tree.values()) if isinstance(tree, dict) else [tree]


def _vdp(t, y, mu):
    x, v = y[:, 0], y[:, 1]
    return torch.stack([v, mu * (1 - x**2) * v - x], 1)


def _solve(compact, *, y0=None, mu=None, t0=0.0, t1=6.0, ts=None, max_steps=4096, **kwargs):
    batch = 64
    gen = torch.Generator().manual_seed(0)
    mu = torch.rand(batch, generator=gen, dtype=F64) ** 3 * 20 if mu is None else mu
    y0 = torch.tensor([2.0, 0.0], dtype=F64).repeat(batch, 1) if y0 is None else y0
    return tn.solve(
        tn.ODETerm(kwargs.pop("field", _vdp)),
        tn.Dopri5(),
        t0,
        t1,
        y0,
        args=mu,
        saveat=tn.SaveAt(t0=True, ts=ts),
        controller=tn.PIDController(rtol=1e-6, atol=1e-8),
        batch_axis=0,
        max_steps=max_steps,
        throw=False,
        compact=compact,
        **kwargs,
    )


def _same(a, b):
    for x, y in zip(_leaves(a.ys), _leaves(b.ys)):
        # to rounding: a row's arithmetic may round differently at another position in a
        # vectorised kernel (fused multiply-adds in the vector body, not in the tail)
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-13, equal_nan=True)
    assert a.statuses == b.statuses
    assert a.stats.keys() == b.stats.keys()
    for key in a.stats:
        assert torch.equal(torch.as_tensor(a.stats[key]), torch.as_tensor(b.stats[key])), key


@pytest.mark.parametrize("compact", [True, 0.9])
def test_compaction_gives_the_same_values_statuses_and_statistics(compact):
    """Per-sample times (some backwards), save times inside every sample's span, samples that run
    out of steps: what the uncompacted solve gives (values to rounding, the same steps and
    statuses), while the field sees ever smaller batches."""
    batch = 64
    t1 = torch.linspace(2.0, 6.0, batch, dtype=F64)
    t1[::7] = -t1[::7]  # backwards
    ts = torch.stack([torch.linspace(0.0, float(s), 5, dtype=F64) for s in t1])
    mu = torch.linspace(0.0, 30.0, batch, dtype=F64)
    sizes = []

    def field(t, y, mu):
        sizes.append(y.shape[0])
        return _vdp(t, y, mu)

    plain = _solve(False, mu=mu, t1=t1, ts=ts, max_steps=150)
    compacted = _solve(compact, mu=mu, t1=t1, ts=ts, max_steps=150, field=field)
    _same(plain, compacted)
    assert tn.Status.MAX_STEPS in compacted.statuses and tn.Status.SUCCESS in compacted.statuses
    assert min(sizes) < batch and sizes == sorted(sizes, reverse=True)
    assert sum(sizes) < 0.9 * batch * len(sizes)  # fewer rows evaluated


def test_compaction_with_a_tuple_state_and_shared_args():
    """A dict state and ``args`` holding a per-sample tensor and a shared one (only the first is
    gathered)."""
    batch = 40
    gen = torch.Generator().manual_seed(1)
    rate = torch.rand(batch, generator=gen, dtype=F64) * 10
    mix = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=F64)  # shared: not batch-leading

    def field(t, y, args):
        rate, mix = args
        return {"a": rate[:, None] * (y["b"] @ mix), "b": -y["a"] * torch.cos(t)[:, None]}

    y0 = {"a": torch.ones(batch, 2, dtype=F64), "b": torch.zeros(batch, 2, dtype=F64)}
    out = [
        tn.solve(
            tn.ODETerm(field),
            tn.Tsit5(),
            0.0,
            3.0,
            y0,
            args=(rate, mix),
            controller=tn.PIDController(rtol=1e-7, atol=1e-9),
            batch_axis=0,
            compact=compact,
        )
        for compact in (False, True)
    ]
    _same(*out)


def test_gradients_through_a_compacted_solve():
    """DirectAdjoint differentiates through the gathers and scatters: the same gradients with
    respect to y0, per-sample args and module parameters."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)
    ).double()
    batch = 16
    scale = torch.linspace(0.5, 8.0, batch, dtype=F64, requires_grad=True)
    y0 = torch.randn(batch, 2, dtype=F64, requires_grad=True)
    inputs = [y0, scale, *net.parameters()]
    grads = []
    for compact in (False, True):
        sol = tn.solve(
            tn.ODETerm(lambda t, y, s: s[:, None] * net(y)),
            tn.Dopri5(),
            0.0,
            2.0,
            y0,
            args=scale,
            saveat=tn.SaveAt(ts=torch.linspace(0.0, 2.0, 4, dtype=F64)),
            controller=tn.PIDController(rtol=1e-8, atol=1e-10),
            batch_axis=0,
            compact=compact,
        )
        grads.append(torch.autograd.grad((sol.ys**2).sum(), inputs))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"compact": 1.5}, "fraction"),
        ({"compact": "yes"}, "fraction"),
        ({"compact": True, "batch_axis": None}, "batch_axis=0"),
        ({"compact": True, "saveat": tn.SaveAt(steps=True)}, "steps"),
        ({"compact": True, "event": tn.Event(lambda t, y, args: y[:, 0])}, "event"),
        ({"compact": True, "compile": "eager"}, "compile"),
    ],
)
def test_compact_refusals(kwargs, match):
    y0 = torch.ones(4, 2, dtype=F64)
    kwargs = {"batch_axis": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        tn.solve(tn.ODETerm(lambda t, y, a: -y), tn.Dopri5(), 0.0, 1.0, y0, dt0=0.1, **kwargs)


def test_compaction_keeps_stop_and_jump_times():
    """Step and jump times of the controller (per sample after compaction) are kept: the
    compacted solve takes the same steps through a forcing that jumps at t = 1.5."""
    batch = 24
    rate = torch.linspace(0.5, 12.0, batch, dtype=F64)

    def field(t, y, rate):
        forcing = torch.where(t >= 1.5, 1.0, 0.0).to(y.dtype)
        return -rate[:, None] * y + forcing[:, None]

    out = [
        tn.solve(
            tn.ODETerm(field),
            tn.Dopri5(),
            0.0,
            3.0,
            torch.ones(batch, 1, dtype=F64),
            args=rate,
            saveat=tn.SaveAt(ts=torch.linspace(0.0, 3.0, 7, dtype=F64)),
            controller=tn.PIDController(rtol=1e-7, atol=1e-9, step_ts=[0.7], jump_ts=[1.5]),
            batch_axis=0,
            compact=compact,
        )
        for compact in (False, 0.95)
    ]
    _same(*out)
