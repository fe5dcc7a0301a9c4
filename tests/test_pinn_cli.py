"""``torchnde pinn``: every config mistake (a typo in a key, an unknown equation, coefficient or
option, a loss term or coordinate the problem does not have, a curriculum that does not end at
the target, keys of another paradigm) is exit status 2 and one message naming the file, key and
line, with the nearest valid name; the shipped configs are valid; a quick run writes a complete
run folder and resumes."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from torchnde import pinn
from torchnde.cli import main
from torchnde.cli._pinn import SHIPPED_PINN_CONFIGS, load_pinn_config, shipped_pinn_config

BASE = textwrap.dedent(
    """\
    name = "conv"

    [problem]
    equation = "convection"
    coefficients = { beta = 10.0 }

    [network]
    width = 8
    depth = 2

    [points]
    collocation = 64
    initial = 16
    boundary = 16

    [training]
    lbfgs_steps = 3

    [paradigm]
    kind = "curriculum"
    coefficient = "beta"
    values = [5.0, 10.0]

    [evaluation]
    points = { x = 32, t = 11 }
    """
)


def _write(tmp_path, text, name="conv.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _run(capsys, *args):
    code = main(["pinn", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "lbfgs_steps = 3",
            "lbfgs_step = 3",
            r"line 17: `training.lbfgs_step`: unknown key.*did you mean `lbfgs_steps`",
        ),
        (
            'equation = "convection"',
            'equation = "convektion"',
            r"`problem.equation`: unknown equation 'convektion' \(did you mean 'convection'\?\)",
        ),
        (
            "beta = 10.0",
            "bta = 10.0",
            r"`problem.coefficients.bta`: .*no coefficient 'bta' \(did you mean 'beta'\?\)",
        ),
        (
            "values = [5.0, 10.0]",
            "values = [5.0, 8.0]",
            r"`paradigm.values`: .*must end at the problem's beta=10",
        ),
        (
            'kind = "curriculum"',
            'kind = "curiculum"',
            r"`paradigm.kind`: must be one of .*did you mean 'curriculum'",
        ),
        (
            "points = { x = 32, t = 11 }",
            "points = { x = 32, y = 11 }",
            r"`evaluation.points.y`: 'y' is not a coordinate",
        ),
        (
            "lbfgs_steps = 3",
            "lbfgs_steps = 3\nweights = { intial = 2.0 }",
            r"`training.weights.intial`: .*did you mean 'initial'",
        ),
        ("width = 8", "width = 0", r"`network.width`: must be ≥ 1, got 0"),
        ("[evaluation]", "[paradigm.extra]\n[evaluation]", r"`paradigm.extra`: unknown key"),
    ],
)
def test_config_mistakes_are_one_clear_error(tmp_path, capsys, old, new, expected):
    assert old in BASE
    path = _write(tmp_path, BASE.replace(old, new, 1))
    code, out, err = _run(capsys, path, "--out", tmp_path / "runs")
    assert code == 2, (out, err)
    assert err.count("error:") == 1 and "Traceback" not in err
    assert str(path) in err

    assert re.search(expected, err), err
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_keys_of_another_paradigm_and_options_a_problem_lacks_are_refused(tmp_path, capsys):
    text = BASE.replace('kind = "curriculum"', 'kind = "time_marching"')
    code, _, err = _run(capsys, _write(tmp_path, text))
    assert code == 2 and "`paradigm.coefficient`: is not used by kind = 'time_marching'" in err
    text = BASE.replace("values = [5.0, 10.0]", "values = [5.0, 10.0]\nrescale = true")
    code, _, err = _run(capsys, _write(tmp_path, text))
    assert code == 2 and "`paradigm.rescale`: is not used by kind = 'curriculum'" in err
    text = BASE.replace(
        "coefficients = { beta = 10.0 }", 'coefficients = { beta = 10.0 }\ninitial = "sin"'
    )
    text = text.replace('equation = "convection"', 'equation = "burgers"')
    code, _, err = _run(capsys, _write(tmp_path, text))
    assert code == 2 and "problem" in err


def test_time_marching_options_reach_the_paradigm(tmp_path):
    text = BASE.replace(
        'kind = "curriculum"\ncoefficient = "beta"\nvalues = [5.0, 10.0]',
        'kind = "time_marching"\nblocks = 4\nrescale = true',
    )
    config = load_pinn_config(_write(tmp_path, text))
    assert config.train_kwargs["paradigm"] == pinn.TimeMarching(blocks=4, rescale=True)


@pytest.mark.parametrize("name", SHIPPED_PINN_CONFIGS)
@pytest.mark.parametrize("quick", [False, True])
def test_the_shipped_configs_are_valid(name, quick):
    config = load_pinn_config(shipped_pinn_config(name), quick=quick)
    assert config.name == name and config.problem.name == name


def test_listing_and_a_quick_run_with_resume(tmp_path, capsys):
    code, out, _ = _run(capsys)
    assert code == 0 and all(name in out for name in SHIPPED_PINN_CONFIGS)
    path = _write(tmp_path, BASE)
    runs = tmp_path / "runs"
    code, out, err = _run(capsys, path, "--out", runs, "--no-progress")
    assert code == 0, err
    (run_dir,) = runs.iterdir()
    assert run_dir.name.startswith("pinn-conv-")
    for name in ("report.md", "metrics.json", "history.json", "config.toml", "phases.json"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [p["name"] for p in metrics["phases"]] == ["beta=5", "beta=10"]
    assert "phase 1 beta=10: done" in out
    # resuming a finished run loads every phase and rewrites the same report
    code, out, _ = _run(capsys, path, "--out", runs, "--resume", "--no-progress")
    assert code == 0 and f"run folder: {run_dir}" in out
    # a changed config is refused
    changed = _write(tmp_path, BASE.replace("lbfgs_steps = 3", "lbfgs_steps = 4"))
    code, _, err = _run(capsys, changed, "--out", runs, "--resume", run_dir)
    assert code == 3 and "differs from the one the run started with" in err
