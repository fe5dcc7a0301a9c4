"""Quick runs of the recurrent-cell, neural SDE and diffusion reproduce entries: each run folder
is complete, the metrics are finite, and what a quick run can show holds."""

from __future__ import annotations

import math

import pytest
import torch

from torchnde import reproduce

pytestmark = pytest.mark.usefixtures("one_thread")


def quick(name: str, tmp_path) -> dict[str, float]:
    result = reproduce.run_entry(name, quick=True, run_dir=tmp_path, progress=False)
    assert reproduce.verify_run_folder(tmp_path) == []
    (metrics,) = result.per_seed
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    return metrics


def test_cornn_adding_quick(tmp_path):
    m = quick("cornn-adding", tmp_path)
    # 40 iterations cannot solve it; both must at least beat answering 0 (MSE 7/6)
    assert m["mse_cornn"] < 7 / 6 and m["mse_tanh"] < 7 / 6
    assert (tmp_path / "adding-curves.png").exists()


def test_pixel_digits_rnn_quick(tmp_path):
    m = quick("pixel-digits-rnn", tmp_path)
    accuracies = [v for k, v in m.items() if k.startswith("acc_")]
    assert len(accuracies) == 8 and all(0 <= a <= 1 for a in accuracies)


def test_lem_fitzhugh_nagumo_quick(tmp_path):
    m = quick("lem-fitzhugh-nagumo", tmp_path)
    # the residual readouts start at persistence; the best validation checkpoint of 12
    # iterations must not be much worse on the test set
    assert m["rmse_lem"] < 3 * m["rmse_persistence"]
    assert m["rmse_lstm"] < 3 * m["rmse_persistence"]
    assert m["parameters_lem"] > 0 and (tmp_path / "fhn-curves.png").exists()
    assert (tmp_path / "fhn-trajectory.png").exists()


def test_noisy_rnn_robustness_quick(tmp_path):
    pytest.importorskip("aeon")
    m = quick("noisy-rnn-robustness", tmp_path)
    assert {"acc_noisy_0", "acc_noisy_0.2", "acc_deterministic_0.2"} <= m.keys()
    assert (tmp_path / "robustness.png").exists()


def test_cornn_basic_motions_quick(tmp_path):
    pytest.importorskip("aeon")
    m = quick("cornn-basic-motions", tmp_path)
    assert 0 <= m["acc_cornn"] <= 1


def test_neural_sde_ou_quick(tmp_path):
    m = quick("neural-sde-ou", tmp_path)
    # fresh Monte Carlo paths of the data process agree with the exact moments (256 paths)
    assert m["monte_carlo_worst"] < 0.25
    assert (tmp_path / "paths.png").exists()


def test_neural_sde_ou_data_follow_the_exact_law():
    """The exact transitions, chained, give the moment equations' mean and variance at every
    observation time (to the ODE tolerance), and 160000 paths match them to sampling error (the
    old Euler-Maruyama data, h = 1/200, were 0.025 sd off in the mean); the one-step covariance
    is e^(-θh)·Var(Y_t), as for any Ornstein-Uhlenbeck process."""
    from torchnde.reproduce.entries import neural_sde_ou as ou

    ts = torch.linspace(0, 1, 21)
    mean, std = ou.truth(ts)
    a, m, v = ou._transitions(ts)
    chained_m, chained_v = [torch.zeros((), dtype=torch.float64)], [torch.tensor(ou.Y0_STD**2)]
    for k in range(20):
        chained_m.append(a * chained_m[-1] + m[k])
        chained_v.append(a * a * chained_v[-1] + v[k])
    torch.testing.assert_close(torch.stack(chained_m), mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.stack(chained_v).double().sqrt(), std, atol=1e-6, rtol=0)
    x = ou.simulate(160_000, ts, seed=3)[..., 0].double()
    assert x.shape == (160_000, 21)
    assert ((x.mean(0) - mean).abs() / std).max() < 0.0125  # 5 standard errors
    assert (x.std(0) / std - 1).abs().max() < 0.0125
    centred = x - x.mean(0)
    lag_cov = (centred[:, 1:] * centred[:, :-1]).mean(0)
    torch.testing.assert_close(lag_cov, a * std[:-1] ** 2, atol=0.002, rtol=0)
    with pytest.raises(ValueError, match="equally spaced"):
        ou.simulate(10, torch.tensor([0.0, 0.1, 0.3]), seed=0)


class _GaussianPaths(torch.nn.Module):
    """A stand-in generator: ``n`` constant paths ``loc + spread * N(0, 1)`` over ``ts``."""

    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(()))
        self.spread = torch.nn.Parameter(torch.ones(()))

    def forward(self, ts, n, generator=None):
        z = torch.randn(n, 1, 1, generator=generator, dtype=torch.float64)
        return (self.loc + self.spread * z).expand(n, len(ts), 1)


def test_neural_sde_ou_gan_sampler_draws_the_mixture_of_its_snapshots():
    from torchnde.reproduce.entries.neural_sde_ou import GANSampler

    module, states = _GaussianPaths(), []
    for loc, spread in ((0.0, 1.0), (3.0, 2.0)):
        with torch.no_grad():
            module.loc.fill_(loc), module.spread.fill_(spread)
        states.append({k: v.clone() for k, v in module.state_dict().items()})
    sampler = GANSampler(module, states, torch.linspace(0, 1, 3), shift=1.0, scale=0.5)
    x = sampler.sample(200_001, generator=torch.Generator().manual_seed(0))[:, 0]
    # the equal mixture of N(0, 1) and N(3, 4), mapped by 1 + 0.5 y: mean 1.75, variance
    # 0.25 * (mean of the variances 2.5 + variance of the means 2.25) = 1.1875
    assert x.shape == (200_001,)
    assert abs(x.mean().item() - 1.75) < 0.01
    assert abs(x.var().item() - 1.1875) < 0.015

    # shuffled, not one snapshot's block after the other's: |x - 1| > 1.5 is rare (0.3 %) under
    # the first snapshot and common (50 %) under the second, so both halves show about 25 %
    def share(v):
        return ((v - 1.0).abs() > 1.5).double().mean().item()

    assert 0.24 < share(x[:100_000]) < 0.265 and 0.24 < share(x[100_001:]) < 0.265
    with pytest.raises(ValueError, match="snapshot"):
        GANSampler(module, [], torch.linspace(0, 1, 3), shift=0.0, scale=1.0)


def test_diffusion_toy_quick(tmp_path):
    m = quick("diffusion-toy", tmp_path)
    assert m["sw_moons_halves"] < 0.3 and m["nll_8gaussians"] > 0
    assert (tmp_path / "digits.png").exists() and (tmp_path / "samples-2d.png").exists()


class _Constant(torch.nn.Module):
    """Predicts one parameter for every input: with a target far away its gradient keeps one
    sign and (almost) one size, so every Adam step moves it by the learning rate."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.w.expand(x.shape[0], 1)


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_train_regression_schedule_sets_the_step_sizes(schedule):
    from torchnde.reproduce.entries import _rnn_tasks as tasks

    model, lr, n = _Constant(), 1e-2, 20
    x, y = torch.zeros(4, 1), torch.full((4, 1), 1e4)
    tasks.train_regression(
        model,
        lambda it: (x, y),
        iterations=n,
        lr=lr,
        progress=_NoBar(),
        clip=None,
        schedule=schedule,
    )
    if schedule == "constant":
        expected = n * lr
    else:  # CosineAnnealingLR to lr/20: lr_t = lr/20 + (lr - lr/20)(1 + cos(pi t/n))/2
        expected = sum(lr / 20 + 0.95 * lr * (1 + math.cos(math.pi * t / n)) / 2 for t in range(n))
    assert model.w.item() == pytest.approx(expected, rel=1e-5)


def test_train_regression_rejects_an_unknown_schedule():
    from torchnde.reproduce.entries import _rnn_tasks as tasks

    with pytest.raises(ValueError, match="schedule must be 'cosine' or 'constant', got 'linear'"):
        tasks.train_regression(
            _Constant(),
            lambda it: None,
            iterations=1,
            lr=1e-2,
            progress=_NoBar(),
            schedule="linear",
        )


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, **kwargs):
        pass
