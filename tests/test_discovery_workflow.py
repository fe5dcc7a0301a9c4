"""The discovery workflow on data it was not tuned for (issue 14).

- The networks are sampled where the data are: along the fitted solutions of windows covering the
  observations, which stay within the data's range where one long solve of a slightly wrong model
  leaves it (and is then flagged).
- A quick seed sweep: ``discover()`` on Lotka–Volterra observations handed over without the truth
  (as from a CSV), with network and data seeds of its own, recovers exactly the x·y terms.
- A law that does not explain the data is not reported: "no sparse law found".
"""

from __future__ import annotations

import dataclasses
import shutil
import warnings

import pytest
import torch
from torch import nn

import torchnde as tn
from torchnde.hybrid import (
    NO_LAW,
    DiscoverySpec,
    ExtrapolationWarning,
    ForecastSpec,
    HybridModel,
    NetworkSpec,
    Observations,
    RunSpec,
    SyntheticData,
    SystemSpec,
    TrainingSpec,
    discover,
    sample_windows,
    simulate,
)
from torchnde.hybrid._sampling import sampling_report
from torchnde.training import TrajectoryWindows

pytest.importorskip("pysindy")

F64 = torch.float64
LV_SYSTEM = SystemSpec(
    states=("x", "y"),
    equations={"x": "alpha*x + NN1(x, y)", "y": "NN2(x, y) - theta*y"},
    constants={"alpha": 1.1},
    parameters={"theta": 0.1},
    networks={"NN1": NetworkSpec(hidden=16), "NN2": NetworkSpec(hidden=16)},
)
LV_TRUTH = dict(
    equations={"x": "alpha*x - beta*x*y", "y": "gamma*x*y - delta*y"},
    parameters=dict(alpha=1.1, beta=0.4, gamma=0.1, delta=0.4),
    initial=dict(x=10.0, y=10.0),
)


class _Term(nn.Module):
    """A stand-in for a trained network: a known function of (x, y)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, u):
        return self.fn(u[..., 0], u[..., 1]).unsqueeze(-1)


def _lv_observations(noise: float, seed: int, n_points: int = 76) -> Observations:
    return simulate(
        SyntheticData(**LV_TRUTH, t_end=15.0, n_points=n_points, noise=noise, seed=seed),
        ("x", "y"),
    )


def _beyond(values: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """How far each value lies outside [low, high] (0 inside)."""
    return (low - values).clamp(min=0) + (values - high).clamp(min=0)


def test_the_regression_uses_only_samples_within_the_datas_range(one_thread):
    """Networks that are the truth where the data are and garbage beyond (as an extrapolating
    network is): windows started from noisy observations (no multiple shooting) wander a little
    outside near the prey's minimum; those samples are reported and left out, so the regression
    recovers the law, where using every sample fits the garbage."""
    from torchnde.hybrid._recovery import regress_networks

    obs = _lv_observations(noise=0.05, seed=5)
    (xlo, xhi), (ylo, yhi) = [(float(c.min()), float(c.max())) for c in obs.ys.unbind(-1)]

    def garbage(x, y):
        return 40.0 * (_beyond(x, xlo, xhi) + _beyond(y, ylo, yhi)) ** 2

    def lotka_volterra(extra):
        model = HybridModel(
            LV_SYSTEM,
            networks={
                "NN1": _Term(lambda x, y: -0.4 * x * y + extra(x, y)),
                "NN2": _Term(lambda x, y: 0.1 * x * y - extra(x, y)),
            },
        )
        model.params["theta"].data.fill_(0.4)
        return model

    fitted = lotka_volterra(lambda x, y: 0.0 * x)  # the windows' solutions: the true law
    model = lotka_volterra(garbage)  # the networks: the true law, garbage beyond the data
    windows = TrajectoryWindows(obs.ts, obs.ys, 8, solver=tn.RK4(), dt0=0.05, autonomous=True)
    ts, states, count = sample_windows(fitted, windows, windows.y0, 200)
    assert 180 <= ts.shape[0] <= 240 and count == len(windows.covering())
    assert bool((ts.diff() > 0).all())  # one increasing sequence of times, windows trimmed
    report = sampling_report(model.parsed, obs, ts, states, count)
    outside = (_beyond(states[:, 0], xlo, xhi) + _beyond(states[:, 1], ylo, yhi)) > 0
    assert 0 < int(outside.sum()) < 0.5 * len(ts)  # some samples left the data's range
    for call in ("NN1", "NN2"):
        assert torch.equal(report.inside[call], ~outside)
        assert report.outside[call] == pytest.approx(float(outside.double().mean()))
    spec = DiscoverySpec()
    kept, _, _ = regress_networks(model, ts, states, obs, spec, 0.1, report.inside)
    assert kept["NN1"].terms == pytest.approx({"x*y": -0.4}, rel=1e-6)
    assert kept["NN2"].terms == pytest.approx({"x*y": 0.1}, rel=1e-6)
    assert kept["NN2"].absorbed == pytest.approx({"theta": 0.4}, rel=1e-6)
    every, _, _ = regress_networks(model, ts, states, obs, spec, 0.1)  # the extrapolation too
    assert set(every["NN1"].terms) != {"x*y"} or set(every["NN2"].terms) != {"x*y"}


class _TwoOutputs(nn.Module):
    """A stand-in for one trained network with two outputs, counting its calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, u):
        self.calls += 1
        x, y = u[..., 0], u[..., 1]
        return torch.stack([-0.4 * x * y, 0.1 * x * y - 0.15 * y], -1)


def test_one_network_with_two_outputs_is_regressed_per_output_and_recovered_as_the_law():
    """``NN(x, y)[0]`` and ``NN(x, y)[1]`` feed two equations: the regression evaluates the
    network once for both, finds each output's own law (the second absorbing theta*y), and the
    recovered model is Lotka-Volterra itself."""
    from torchnde.hybrid._recovery import recovered_model, regress_networks

    system = SystemSpec(
        states=("x", "y"),
        equations={"x": "alpha*x + NN(x, y)[0]", "y": "NN(x, y)[1] - theta*y"},
        constants={"alpha": 1.1},
        parameters={"theta": 0.25},
        networks={"NN": NetworkSpec()},
    )
    net = _TwoOutputs()
    model = HybridModel(system, networks={"NN": net})
    obs = _lv_observations(noise=0.0, seed=0)
    net.calls = 0
    found, implied, truth = regress_networks(model, obs.ts, obs.ys, obs, DiscoverySpec(), 0.1)
    assert net.calls == 1
    assert set(found) == {"NN[0]", "NN[1]"}
    assert found["NN[0]"].terms == pytest.approx({"x*y": -0.4}, rel=1e-9)
    # NN[1] - 0.25*y with NN[1] = 0.1*x*y - 0.15*y: the -0.15*y goes into theta = 0.4
    assert found["NN[1]"].terms == pytest.approx({"x*y": 0.1}, rel=1e-9)
    assert implied == pytest.approx({"theta": 0.4}, rel=1e-9)
    assert found["NN[0]"].truth == pytest.approx({"x*y": -0.4}, rel=1e-9)
    assert truth == pytest.approx({"theta": 0.4}, rel=1e-9)
    recovered, _ = recovered_model(model, found, implied)
    x, y = obs.ys.unbind(-1)
    with torch.no_grad():
        out = recovered(obs.ts[0], obs.ys)
    expected = torch.stack([1.1 * x - 0.4 * x * y, 0.1 * x * y - 0.4 * y], -1)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)


def test_samples_far_outside_the_data_are_flagged(one_thread):
    obs = _lv_observations(noise=0.02, seed=6)
    model = HybridModel(LV_SYSTEM)
    ts = obs.ts
    inside = sampling_report(model.parsed, obs, ts, obs.ys, 1)
    assert inside.fraction_outside == 0.0 and inside.warning is None
    far = sampling_report(model.parsed, obs, ts, obs.ys * torch.tensor([1.5, 1.0]), 1)
    assert far.fraction_outside > 0.05 and far.outside["NN1"] == far.outside["NN2"]
    assert "the fitted model leaves the data" in far.warning and "x in [" in far.warning


def test_terms_that_shrink_when_the_law_is_fitted_to_the_data_are_pruned():
    """The last step of sequential thresholding, on the refitted coefficients: a term below the
    threshold (by its share of the network's term, its size, or relative to the largest) goes."""
    from torchnde.discovery import SparseExpression
    from torchnde.hybrid import Recovery
    from torchnde.hybrid._recovery import prune

    obs = _lv_observations(noise=0.0, seed=0)
    model = HybridModel(LV_SYSTEM)
    ts, states = obs.ts, obs.ys
    inside = {
        "NN1": torch.ones(len(ts), dtype=torch.bool),
        "NN2": torch.ones(len(ts), dtype=torch.bool),
    }

    def recoveries():
        nn1 = SparseExpression({"x*y": -0.4, "x": 0.006, "x**2": -0.0004}, ("x", "y"))
        nn2 = SparseExpression({"x*y": 0.1, "y**2": 0.05}, ("x", "y"))
        return {
            "NN1": Recovery("NN1", "x", nn1, {}, 1.0, factor=1.0),
            "NN2": Recovery(
                "NN2",
                "y",
                nn2,
                {"theta": 0.4},
                1.0,
                factor=1.0,
                absorbed_terms={"theta": (-1.0, "y")},
            ),
        }

    found = recoveries()
    dropped = prune(found, model, ts, states, inside, DiscoverySpec(), 0.1)
    assert dropped == {"NN1": ["x", "x**2"]}  # 0.05*y**2 carries more than 10% of NN2's term
    assert found["NN1"].terms == {"x*y": -0.4} and set(found["NN2"].terms) == {"x*y", "y**2"}
    found = recoveries()
    absolute = DiscoverySpec(threshold=0.01, threshold_mode="absolute")
    assert prune(found, model, ts, states, inside, absolute, 0.01) == {"NN1": ["x", "x**2"]}
    found = recoveries()
    largest = DiscoverySpec(threshold=0.2, threshold_mode="largest")  # of |theta| = 0.4 here
    dropped = prune(found, model, ts, states, inside, largest, 0.2)
    assert dropped == {"NN1": ["x", "x**2"], "NN2": ["y**2"]}  # 0.1 >= 0.2 * 0.4 > 0.05
    assert found["NN2"].absorbed == {"theta": 0.4}  # declared parameters are never dropped


def _quick_spec(seed: int, **discovery) -> RunSpec:
    """Seconds of training that still recover the law: 101 observations on [0, 15], windows of 8
    solved with one RK4 step per observation interval, networks of width 16."""
    return RunSpec(
        name="lv-quick",
        system=LV_SYSTEM,
        training=TrainingSpec(window=8, dt=0.15, adam_steps=200, lbfgs_steps=60),
        discovery=DiscoverySpec(refit_steps=30, trajectory_steps=0, select_steps=10, **discovery),
        forecast=ForecastSpec(horizon=0.5, blackbox=False),
        seed=seed,
    )


def _measured(seed: int, relative_to: str) -> Observations:
    """Observations as a CSV would give them: made by the library, handed over without the truth."""
    data = SyntheticData(
        **LV_TRUTH, t_end=15.0, n_points=101, noise=0.05, noise_relative_to=relative_to, seed=seed
    )
    return dataclasses.replace(simulate(data, ("x", "y")), truth=None)


SWEEP = [(21, 31, "std"), (22, 32, "mean")]  # network seed, data seed, noise relative to


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The quick runs of the seed sweep, each with its run folder (checkpoints)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    runs = {}
    for seed, data_seed, relative_to in SWEEP:
        folder = tmp_path_factory.mktemp(f"lv-{seed}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExtrapolationWarning)  # judged below, not here
            result = discover(
                _quick_spec(seed), _measured(data_seed, relative_to), run_dir=folder, progress=False
            )
        runs[seed] = (result, folder)
    torch.set_num_threads(threads)
    return runs


@pytest.mark.parametrize("seed", [seed for seed, _, _ in SWEEP])
def test_a_quick_seed_sweep_recovers_exactly_the_interaction_terms(sweep, seed):
    result, _ = sweep[seed]
    assert result.law_found, result.selection.reason
    terms = {name: r.terms for name, r in result.recoveries.items()}
    assert set(terms["NN1"]) == {"x*y"} and set(terms["NN2"]) == {"x*y"}, terms
    assert terms["NN1"]["x*y"] == pytest.approx(-0.4, rel=0.1)
    assert terms["NN2"]["x*y"] == pytest.approx(0.1, rel=0.1)
    assert result.parameters["recovered"]["theta"] == pytest.approx(0.4, rel=0.1)
    assert result.sampling.fraction_outside < 0.2  # left out of the regression, and reported
    chosen = [c for c in result.selection.candidates if c.chosen]
    assert len(chosen) == 1 and chosen[0].within
    assert result.selection.refit_loss <= 2 * result.selection.baseline_loss


def test_a_law_that_does_not_explain_the_data_is_not_reported(sweep, tmp_path, one_thread):
    """A library without x*y cannot express the interactions: whatever the regression makes of
    the (same, already trained) networks does not reproduce the windows, and the run says so
    instead of printing it."""
    result, folder = sweep[SWEEP[0][0]]
    shutil.copytree(folder / "checkpoints" / "hybrid", tmp_path / "checkpoints" / "hybrid")
    spec = _quick_spec(SWEEP[0][0], library=("x", "y", "x**2"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        again = discover(
            spec, _measured(*SWEEP[0][1:]), run_dir=tmp_path, resume=True, progress=False
        )
    assert again.fits["hybrid"].losses == result.fits["hybrid"].losses  # the same networks
    assert not again.law_found and again.recoveries == {}
    assert again.selection.reason.startswith(NO_LAW)
    assert again.selection.refit_loss > 2 * again.selection.baseline_loss
    assert "recovered" not in again.fits and "hybrid" in again.forecast.predictions
    assert bool(torch.isfinite(again.forecast.predictions["hybrid"]).all())
