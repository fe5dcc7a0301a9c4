"""The run folder's outputs, from a hand-built DiscoveryResult (no training): ``metrics.json`` is
strict JSON with the recovered terms and errors; the recovered equations substitute the recovered
expressions and parameter values into the model's equations; the figures are real PNG files; the
curves they draw are the network's output, the recovered expression and the true term; and
``report.md`` ties them together."""

from __future__ import annotations

import json
import math
import struct

import pytest
import sympy
import torch
from torch import nn

from torchnde.discovery import SparseExpression
from torchnde.hybrid import (
    DiscoveryResult,
    Forecast,
    HybridModel,
    ModelFit,
    NetworkSpec,
    Observations,
    Recovery,
    RunSpec,
    SyntheticData,
    SystemSpec,
    write_run_folder,
)
from torchnde.hybrid._plots import PLOTS, term_curves
from torchnde.hybrid._report import recovered_equations

SYSTEM = SystemSpec(
    states=("x", "y"),
    equations={"x": "alpha*x + NN1(x, y)", "y": "NN2(x, y) - theta*y"},
    constants={"alpha": 1.1},
    parameters={"theta": 0.2},
    networks={"NN1": NetworkSpec(hidden=4, depth=1), "NN2": NetworkSpec(hidden=4, depth=1)},
)
TRUTH = SyntheticData(
    equations={"x": "alpha*x - beta*x*y", "y": "gamma*x*y - delta*y"},
    parameters={"alpha": 1.1, "beta": 0.4, "gamma": 0.1, "delta": 0.4},
    initial={"x": 10.0, "y": 10.0},
    t_end=10.0,
)


def make_result(*, truth: bool = True) -> DiscoveryResult:
    torch.manual_seed(0)
    ts = torch.linspace(0.0, 10.0, 21, dtype=torch.float64)
    ys = torch.stack([10 + torch.sin(ts), 5 + torch.cos(ts)], dim=-1)
    observations = Observations(ts, ys, ("x", "y"), TRUTH if truth else None)
    hybrid = HybridModel(SYSTEM)
    fits = {
        "hybrid": ModelFit("hybrid", hybrid, [1.0, 0.5, math.nan, 0.1], 1.5),
        "recovered": ModelFit("recovered", HybridModel(SYSTEM), [0.1, 0.05], 0.2),
        "blackbox": ModelFit("blackbox", nn.Linear(2, 2), [2.0, math.inf, 0.3], 0.7),
    }
    variables = ("x", "y")
    recoveries = {
        "NN1": Recovery(
            "NN1",
            "x",
            SparseExpression({"x*y": -0.401}, variables),
            absorbed={},
            r2=0.9999,
            truth={"x*y": -0.4} if truth else None,
            max_relative_error=0.0025 if truth else None,
        ),
        "NN2": Recovery(
            "NN2",
            "y",
            SparseExpression({"x*y": 0.0995}, variables),
            absorbed={"theta": 0.402},
            r2=0.998,
            truth={"x*y": 0.1} if truth else None,
            max_relative_error=0.005 if truth else None,
        ),
    }
    forecast_ts = torch.linspace(0.0, 30.0, 61, dtype=torch.float64)
    wave = torch.stack([10 + torch.sin(forecast_ts), 5 + torch.cos(forecast_ts)], dim=-1)
    broken = wave.clone()
    broken[40:] = math.nan  # a black box whose solve failed part-way
    forecast = Forecast(
        ts=forecast_ts,
        truth=wave if truth else None,
        predictions={"hybrid": wave + 0.5, "recovered": wave + 0.01, "blackbox": broken},
        train_end=10.0,
        errors={"hybrid": 0.5, "recovered": 0.01, "blackbox": math.inf} if truth else {},
        relative_errors={"hybrid": 0.06, "recovered": 0.0012, "blackbox": math.inf}
        if truth
        else {},
    )
    return DiscoveryResult(
        spec=RunSpec(name="lv", system=SYSTEM),
        observations=observations,
        fits=fits,
        recoveries=recoveries,
        # the recovered model also holds its coefficients as parameters
        parameters={"hybrid": {"theta": 0.35}, "recovered": {"theta": 0.402, "NN1_c0": -0.401}},
        true_parameters={"theta": 0.4} if truth else {},
        trajectory_ts=ts,
        trajectory=ys,
        forecast=forecast,
        seconds=12.5,
    )


def strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert data.rstrip(b"\x00")[-8:-4] == b"IEND"  # complete, not truncated
    return width, height


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    result = make_result()
    written = write_run_folder(result, run_dir)
    return run_dir, written, result


def test_metrics_json_is_strict_json_with_the_recovered_terms_and_errors(folder):
    run_dir, written, _ = folder
    metrics = strict_json((run_dir / "metrics.json").read_text())
    assert written["metrics.json"] == run_dir / "metrics.json"
    assert metrics["recovered_terms"] == {"NN1": {"x*y": -0.401}, "NN2": {"x*y": 0.0995}}
    assert metrics["recovered"] == {"NN1": "-0.401*x*y", "NN2": "0.0995*x*y"}
    assert metrics["losses"]["hybrid"] == [1.0, 0.5, None, 0.1]  # NaN -> null
    assert metrics["losses"]["blackbox"] == [2.0, None, 0.3]  # inf -> null
    assert metrics["recovery"]["NN2"]["absorbed_parameters"] == {"theta": 0.402}
    assert metrics["recovery"]["NN1"]["same_terms_as_truth"] is True
    assert metrics["parameter_relative_errors"]["recovered"]["theta"] == pytest.approx(0.005)
    assert metrics["parameter_relative_errors"]["hybrid"]["theta"] == pytest.approx(0.125)
    assert metrics["forecast"]["rmse"] == {"hybrid": 0.5, "recovered": 0.01, "blackbox": None}
    assert metrics["forecast"]["train_end"] == 10.0 and metrics["forecast"]["forecast_end"] == 30.0


def test_the_recovered_equations_substitute_expressions_and_parameter_values(folder):
    run_dir, _, result = folder
    equations = recovered_equations(result)
    x, y = sympy.symbols("x y", real=True)
    expected = {"x": 1.1 * x - 0.401 * x * y, "y": 0.0995 * x * y - 0.402 * y}
    for state, rhs in equations.items():
        got = sympy.sympify(rhs, locals={"x": x, "y": y})
        for point in [(1.0, 2.0), (10.0, 3.5), (-2.0, 0.25)]:
            values = dict(zip((x, y), point))
            assert float(got.subs(values)) == pytest.approx(
                float(expected[state].subs(values)), rel=1e-12
            )
    metrics = strict_json((run_dir / "metrics.json").read_text())
    assert metrics["recovered_equations"] == equations


def test_every_figure_is_a_complete_png(folder):
    run_dir, written, _ = folder
    assert set(PLOTS) <= set(written)
    for name in PLOTS:
        width, height = png_size(run_dir / name)
        assert width >= 400 and height >= 200, (name, width, height)
    assert not list(run_dir.glob(".*.tmp"))  # atomic writes leave no temporary behind


def test_the_term_curves_are_network_recovered_and_true_terms_on_the_trajectory():
    result = make_result()
    curves = term_curves(result)
    x, y = result.trajectory[:, 0], result.trajectory[:, 1]
    with torch.no_grad():
        outputs = result.fits["hybrid"].model.network_outputs(
            result.trajectory_ts, result.trajectory
        )
    for name, recovered, truth in [("NN1", -0.401, -0.4), ("NN2", 0.0995, 0.1)]:
        curve = curves[name]
        assert torch.allclose(torch.as_tensor(curve["learned"]), outputs[name])
        assert torch.allclose(torch.as_tensor(curve["recovered"]), recovered * x * y)
        assert torch.allclose(torch.as_tensor(curve["truth"]), truth * x * y)


class _Known(nn.Module):
    """A stand-in trained network: a known function of (x, y)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, u):
        return self.fn(u[..., 0], u[..., 1]).unsqueeze(-1)


def test_a_network_whose_parameter_was_absorbed_is_drawn_as_it_enters_its_equation(tmp_path):
    """The hybrid model fitted dy/dt = NN2 - 0.35*y with NN2 = 0.1*x*y - 0.05*y (the truth, split
    differently): the network alone is not the law 0.1*x*y. With theta at its recovered 0.4, the
    network as it enters the equation is NN2 + (0.4 - 0.35)*y = 0.1*x*y exactly, the curve the
    recovered law and the truth are drawn beside (issue 14's confusing plot)."""
    result = make_result()
    hybrid = HybridModel(
        SYSTEM,
        networks={
            "NN1": _Known(lambda x, y: -0.4 * x * y),
            "NN2": _Known(lambda x, y: 0.1 * x * y - 0.05 * y),
        },
    )
    result.fits["hybrid"] = ModelFit("hybrid", hybrid, [1.0, 0.1], 1.0)
    result.parameters["hybrid"] = {"theta": 0.35}
    nn2 = result.recoveries["NN2"]
    result.recoveries["NN2"] = Recovery(
        "NN2",
        "y",
        SparseExpression({"x*y": 0.1}, ("x", "y")),
        absorbed={"theta": 0.4},
        r2=1.0,
        truth=nn2.truth,
        max_relative_error=0.0,
        factor=1.0,
        absorbed_terms={"theta": (-1.0, "y")},
    )
    curves = term_curves(result)
    x, y = result.trajectory[:, 0], result.trajectory[:, 1]
    torch.testing.assert_close(torch.as_tensor(curves["NN2"]["learned"]), 0.1 * x * y - 0.05 * y)
    torch.testing.assert_close(torch.as_tensor(curves["NN2"]["in_equation"]), 0.1 * x * y)
    torch.testing.assert_close(torch.as_tensor(curves["NN2"]["truth"]), 0.1 * x * y)
    assert curves["NN1"]["in_equation"] is None  # nothing absorbed: the network alone is the term
    # a minus sign on the network: dy/dt = -NN2 - theta*y, so NN2 + (0.35 - 0.4)*y enters as -NN2
    result.recoveries["NN2"] = Recovery(
        "NN2", "y", SparseExpression({"x*y": -0.1}, ("x", "y")), {"theta": 0.4}, 1.0,
        factor=-1.0, absorbed_terms={"theta": (-1.0, "y")},
    )  # fmt: skip
    hybrid.nets["NN2"].fn = lambda x, y: -0.1 * x * y + 0.05 * y
    curves = term_curves(result)
    torch.testing.assert_close(torch.as_tensor(curves["NN2"]["in_equation"]), -0.1 * x * y)


def test_report_md_ties_the_run_together(folder):
    run_dir, _, _ = folder
    report = (run_dir / "report.md").read_text()
    assert report.startswith("# Run `lv`")
    assert "- dx/dt = alpha*x - beta*x*y" in report  # the true system
    assert "- dy/dt = NN2(x, y) - theta*y" in report  # the hybrid model
    assert "| `NN1(x, y)` in dx/dt | `-0.401*x*y` | `-0.4*x*y` | yes | 0.25% |" in report
    assert "theta (now 0.402)" in report
    for state, rhs in recovered_equations(make_result()).items():
        assert f"- d{state}/dt = {rhs}" in report
    assert "| `theta` | 0.35 | 0.402 | 0.4 | 12.50% | 0.50% |" in report
    assert "| recovered | 0.01 | 0.12% |" in report and "| blackbox | — | — |" in report
    for name in PLOTS:
        assert f"]({name})" in report
    assert "[`metrics.json`](metrics.json)" in report


def _with_sampling_and_selection(found: bool) -> DiscoveryResult:
    """make_result() with the networks sampled on states of which 3 in 21 leave x's range, and
    two candidate laws of which the sparser won."""
    from torchnde.hybrid import LawCandidate, LawSelection
    from torchnde.hybrid._sampling import sampling_report

    result = make_result()
    states = result.observations.ys.clone()
    states[:3, 0] = 12.0  # x = 10 + sin(t) is observed in [9.022, 11]
    model = result.fits["hybrid"].model
    result.sampling = sampling_report(
        model.parsed, result.observations, result.observations.ts, states, 4
    )
    candidates = [
        LawCandidate(0.1, "NN1 ≈ -0.4*x*y + 0.01*x**2; NN2 ≈ 0.1*x*y", 3, 1.00e-3, within=True),
        LawCandidate(0.2, "NN1 ≈ -0.4*x*y; NN2 ≈ 0.1*x*y", 2, 1.02e-3, within=True, chosen=True),
    ]
    result.selection = LawSelection(
        candidates, 1.00e-3, 2.2e-4, 42, 2.0, "threshold 0.2 won: the sparsest", found=found
    )
    if not found:
        result.recoveries = {}
    return result


def test_the_report_says_where_the_networks_were_sampled_and_why_the_law_won(tmp_path):
    result = _with_sampling_and_selection(found=True)
    assert result.sampling.fraction_outside == pytest.approx(3 / 21)
    assert result.sampling.outside == {"NN1": pytest.approx(3 / 21), "NN2": pytest.approx(3 / 21)}
    write_run_folder(result, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "14.3% of them lie outside the observed range" in report
    assert "NN1 14.3%, NN2 14.3%" in report
    assert (
        "**Warning:** the fitted model leaves the data" in report and "x in [9.022, 11]" in report
    )
    assert "| 0.2 | `NN1 ≈ -0.4*x*y; NN2 ≈ 0.1*x*y` | 2 | 0.00102 | yes | **chosen** |" in report
    assert "Threshold 0.2 won: the sparsest." in report
    metrics = strict_json((tmp_path / "metrics.json").read_text())
    assert metrics["law_found"] is True
    assert metrics["sampling"]["fraction_outside_data_range"] == pytest.approx(3 / 21)
    assert metrics["sampling"]["warning"] == result.sampling.warning
    assert [c["chosen"] for c in metrics["selection"]["candidates"]] == [False, True]


def test_without_a_law_the_report_prints_none(tmp_path):
    write_run_folder(_with_sampling_and_selection(found=False), tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "**No sparse law found; the hybrid model stands.**" in report
    assert "-0.401*x*y" not in report  # no equation is printed
    metrics = strict_json((tmp_path / "metrics.json").read_text())
    assert metrics["law_found"] is False and metrics["recovered_terms"] == {}


def test_without_the_truth_the_report_says_so_and_the_figures_are_still_drawn(tmp_path):
    written = write_run_folder(make_result(truth=False), tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "the forecast has no error to report" in report
    assert "| `NN1(x, y)` in dx/dt | `-0.401*x*y` | — | — | — |" in report
    metrics = strict_json((tmp_path / "metrics.json").read_text())
    assert metrics["recovery"]["NN1"]["true_terms"] is None
    assert metrics["forecast"]["rmse"] == {}
    for name in PLOTS:
        png_size(written[name])


def test_write_run_folder_refuses_something_else():
    with pytest.raises(TypeError, match="DiscoveryResult"):
        write_run_folder({"name": "lv"}, "runs/x")
