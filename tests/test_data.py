"""Offline data: the digits split is fixed and stratified; the generators solve their equations."""

from __future__ import annotations

import math

import pytest
import torch

from torchnde.data import (
    advection_diffusion,
    damped_oscillator,
    load_digits,
    spirals,
    stratified_split,
)


def test_digits_split_is_fixed_stratified_and_disjoint():
    split = load_digits()
    assert split.x_train.shape == (1347, 64) and split.x_test.shape == (450, 64)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    assert split.x_train.min() >= 0 and split.x_train.max() == 1
    counts_train, counts_test = split.y_train.bincount(), split.y_test.bincount()
    ratio = counts_test.double() / (counts_train + counts_test)
    assert (ratio - 0.25).abs().max() < 0.01  # every class split 3:1
    again = load_digits()
    assert torch.equal(again.x_test, split.x_test) and torch.equal(again.y_test, split.y_test)
    train, test = stratified_split(torch.arange(30) % 3, 0.2, seed=0)
    assert sorted(train.tolist() + test.tolist()) == list(range(30))  # disjoint, covering
    assert (test % 3).bincount().tolist() == [2, 2, 2]
    images = load_digits(image=True, dtype=torch.float64)
    assert images.x_train.shape == (1347, 1, 8, 8) and images.x_train.dtype == torch.float64
    assert torch.equal(images.x_train.flatten(1).float(), split.x_train)
    other = load_digits(seed=1)
    assert not torch.equal(other.y_test, split.y_test)
    with pytest.raises(ValueError, match="`test_fraction` must lie in"):
        load_digits(test_fraction=1.5)


def test_damped_oscillator_is_the_flow_of_its_equation():
    y0, y1 = damped_oscillator(50, t1=0.7, damping=0.2, frequency=3.0, seed=0, dtype=torch.float64)
    # d/dt (x, v) = ω (v, -x - 2ζ v), integrated with small RK4 steps
    a = 3.0 * torch.tensor([[0.0, 1.0], [-1.0, -0.4]], dtype=torch.float64)
    y, h = y0.clone(), 0.7 / 200
    for _ in range(200):
        k1 = y @ a.T
        k2 = (y + h / 2 * k1) @ a.T
        k3 = (y + h / 2 * k2) @ a.T
        k4 = (y + h * k3) @ a.T
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    torch.testing.assert_close(y, y1, rtol=1e-8, atol=1e-10)
    assert torch.equal(damped_oscillator(5, seed=3)[0], damped_oscillator(5, seed=3)[0])


def test_spirals_turn_the_way_their_label_says():
    t, xy, labels = spirals(40, points=50, seed=0, dtype=torch.float64)
    assert t.shape == (50,) and xy.shape == (40, 50, 2) and labels.bincount().tolist() == [20, 20]
    cross = xy[:, :-1, 0] * xy[:, 1:, 1] - xy[:, :-1, 1] * xy[:, 1:, 0]  # z of r_i x r_{i+1}
    turning = cross.sum(dim=1).sign()
    assert torch.equal(turning, (2 * labels - 1).double())


def test_advection_diffusion_snapshots_solve_the_pde():
    c, nu, dt = 1.3, 0.02, 1e-4
    u0, u1, h = advection_diffusion(3, grid=256, velocity=c, diffusivity=nu, dt=dt, seed=0)
    assert h == 1 / 256
    # central differences of u0 give u_t ≈ -c u_x + ν u_xx to O(h² + dt)
    ux = (u0.roll(-1, 1) - u0.roll(1, 1)) / (2 * h)
    uxx = (u0.roll(-1, 1) - 2 * u0 + u0.roll(1, 1)) / h**2
    rate = (u1 - u0) / dt
    residual = rate - (-c * ux + nu * uxx)
    assert residual.abs().max() < 2e-3 * rate.abs().max()
    # the mean is conserved and, with diffusion, the energy decays
    torch.testing.assert_close(u1.mean(1), u0.mean(1), atol=1e-12, rtol=0)
    assert (u1.square().sum(1) < u0.square().sum(1)).all()
    assert math.isclose(float(u0.mean()), 0.0, abs_tol=1e-12)
