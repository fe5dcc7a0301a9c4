"""The sequence data sets: the adding problem's structure and trivial error, pixel digits in
order and under a fixed permutation, FitzHugh–Nagumo trajectories against a tight Dopri5 solve,
aeon's UEA/UCR sets and MNIST-1D from its generator."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import torchnde as tn
from torchnde.data import (
    adding_problem,
    fitzhugh_nagumo,
    load_digits,
    load_mnist1d,
    load_uea,
    pixel_digits,
)


def test_adding_problem():
    x, y = adding_problem(4000, 50, seed=0, dtype=torch.float64)
    marker = x[..., 1]
    assert (marker[:, :25].sum(1) == 1).all() and (marker[:, 25:].sum(1) == 1).all()
    torch.testing.assert_close((x[..., 0] * marker).sum(1), y)
    trivial = (y - 1).pow(2).mean().item()
    assert abs(trivial - 1 / 6) < 0.01
    again = adding_problem(4000, 50, seed=0, dtype=torch.float64)
    torch.testing.assert_close(again[0], x)
    with pytest.raises(ValueError, match="length"):
        adding_problem(3, 1)


def test_pixel_digits_ordered_and_permuted():
    flat = load_digits()
    ordered = pixel_digits()
    permuted = pixel_digits(permuted=True)
    assert ordered.x_train.shape == (1347, 64, 1)
    torch.testing.assert_close(ordered.x_train[..., 0], flat.x_train)
    # the same permutation on every image, training and test alike
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(permuted.x_test[..., 0], flat.x_test[:, order])
    assert not torch.equal(order, torch.arange(64))


def test_fitzhugh_nagumo_against_dopri5():
    """The same draws rebuilt, the current in closed form, Dopri5 at 1e-10 agrees to 1e-4."""
    gen_ts, current, states = fitzhugh_nagumo(2, 21, dt=0.5, seed=2, dtype=torch.float64)
    # rebuild the same draws (the generator's order: c, d, ω, φ, v0, w0)
    gen = torch.Generator().manual_seed(2)

    def draw(low, high):
        return low + (high - low) * torch.rand((2,), generator=gen, dtype=torch.float64)

    c, d, omega, phase = draw(0.2, 0.8), draw(0.0, 0.4), draw(0.05, 0.3), draw(0, 6.283185307179586)
    y0 = torch.stack([draw(-2.0, 2.0), draw(-1.0, 1.5)], dim=1)
    torch.testing.assert_close(states[:, 0], y0)
    torch.testing.assert_close(
        current[:, :, 0],
        c[:, None] + d[:, None] * torch.sin(omega[:, None] * gen_ts[None] + phase[:, None]),
    )

    ref = _fhn_reference(lambda t: c + d * torch.sin(omega * t + phase), 0.08, y0, gen_ts)
    assert (ref - states).abs().max() < 1e-4


def _fhn_reference(current, epsilon, y0, ts):
    """FitzHugh–Nagumo (a = 0.7, b = 0.8) with the current ``current(t)``, solved by Dopri5 at
    1e-10 from ``y0`` at ``ts[0] = 0``: ``(batch, T, 2)``."""

    def field(t, y, args):
        v, w = y[:, 0], y[:, 1]
        return torch.stack([v - v**3 / 3 - w + current(t), epsilon * (v + 0.7 - 0.8 * w)], dim=1)

    return tn.solve(
        tn.ODETerm(field),
        tn.Dopri5(),
        0.0,
        float(ts[-1]),
        y0,
        saveat=tn.SaveAt(ts=ts),
        controller=tn.PIDController(rtol=1e-10, atol=1e-10),
    ).ys.transpose(0, 1)


def test_fitzhugh_nagumo_constant_current_against_dopri5():
    """Rusch et al.'s set-up (constant I = 0.5, ε = 1/50, v(0) ~ U[-1, 1], w(0) = 0): the
    current is constant, the initial state is the generator's draws, Dopri5 at 1e-10 agrees."""
    eps = 1 / 50
    ts, current, states = fitzhugh_nagumo(
        3, 51, dt=0.4, epsilon=eps, current=0.5, v0=(-1, 1), w0=0.0, seed=4, dtype=torch.float64
    )
    assert (current == 0.5).all() and current.shape == (3, 51, 1)
    gen = torch.Generator().manual_seed(4)  # draws: v0, then w0 (a point range)
    v0 = -1 + 2 * torch.rand((3,), generator=gen, dtype=torch.float64)
    y0 = torch.stack([v0, torch.zeros(3, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(states[:, 0], y0)

    ref = _fhn_reference(lambda t: 0.5, eps, y0, ts)
    assert (ref - states).abs().max() < 1e-4
    for bad in [dict(v0=(1.0, -1.0)), dict(w0="0"), dict(current=float("nan"))]:
        with pytest.raises(ValueError, match=next(iter(bad))):
            fitzhugh_nagumo(2, 5, **bad)


@pytest.mark.skipif(importlib.util.find_spec("aeon") is None, reason="aeon not installed")
def test_uea_sets():
    motions = load_uea("BasicMotions")
    assert motions.x_train.shape == (40, 100, 6) and motions.x_test.shape == (40, 100, 6)
    assert motions.y_train.bincount().tolist() == [10, 10, 10, 10]
    gun = load_uea("GunPoint")
    assert gun.x_train.shape == (50, 150, 1) and gun.x_test.shape == (150, 150, 1)
    vowels = load_uea("JapaneseVowels")
    assert vowels.x_train.shape[0] == 270 and vowels.x_train.shape[2] == 12
    assert torch.isnan(vowels.x_train).any()  # shorter utterances are padded with NaN
    with pytest.raises(ValueError, match="name"):
        load_uea("ECG5000")


@pytest.mark.skipif(importlib.util.find_spec("mnist1d") is None, reason="mnist1d not installed")
def test_mnist1d_from_its_generator():
    split = load_mnist1d(samples=200)
    assert split.x_train.shape == (160, 40, 1) and split.x_test.shape == (40, 40, 1)
    assert set(split.y_train.tolist()) <= set(range(10))
