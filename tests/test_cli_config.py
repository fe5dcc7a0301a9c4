"""The ``torchnde`` command's config files: every mistake (unknown key, missing key, wrong type,
out-of-range value, bad TOML, bad equation, undefined symbol, unknown network, bad CSV) ends the
command with exit status 2 and ONE message on stderr naming the file, the key and its line, and
the fix, without a traceback unless ``--debug``. The schema mirrors the library's dataclasses, the
resolved config round-trips, and the shipped configs are valid.

These call ``main()`` in-process: every case fails before any training starts.
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path

import pytest

from torchnde.cli import _config as config_module
from torchnde.cli import main
from torchnde.cli._config import load_config
from torchnde.cli._main import SHIPPED_CONFIGS, shipped_config
from torchnde.cli._run import _load_data
from torchnde.cli._toml import dumps, find_line
from torchnde.hybrid import (
    DiscoverySpec,
    ForecastSpec,
    NetworkSpec,
    RunSpec,
    SyntheticData,
    SystemSpec,
    TrainingSpec,
    parse_system,
)

BASE = textwrap.dedent(
    """\
    name = "lv"

    [system]
    states = ["x", "y"]
    equations = { x = "alpha*x + NN1(x, y)", y = "NN2(x, y) - theta*y" }
    constants = { alpha = 1.1 }
    parameters = { theta = 0.2 }

    [system.networks]
    NN1 = { hidden = 16 }
    NN2 = {}

    [data.synthetic]
    equations = { x = "alpha*x - beta*x*y", y = "gamma*x*y - delta*y" }
    parameters = { alpha = 1.1, beta = 0.4, gamma = 0.1, delta = 0.4 }
    initial = { x = 10.0, y = 10.0 }
    t_end = 10.0

    [training]
    adam_steps = 300
    solver = "rk4"

    [quick.training]
    adam_steps = 20
    """
)


def edit(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced (which must be there: a no-op edit would start a run)."""
    assert old in text, old
    return text.replace(old, new)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def config_error(tmp_path, capsys, text: str, *extra: str) -> tuple[str, int | None]:
    """Runs `torchnde run` on ``text``; returns the one error line and the line number it names."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code, out, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "runs"), *extra)
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"torchnde: error: {path}"), lines[0]
    assert not (tmp_path / "runs").exists()  # no run folder for a bad config
    match = re.match(rf"torchnde: error: {re.escape(str(path))}, line (\d+):", lines[0])
    return lines[0], int(match.group(1)) if match else None


def equation_error(tmp_path, capsys, text: str) -> tuple[str, int | None, str, int]:
    """Runs `torchnde run` on ``text`` with a bad equation; returns the error line, the config
    line it names, and the equation and caret column shown under it (exactly two more lines)."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code, out, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "runs"))
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.rstrip("\n").splitlines()
    assert len(lines) == 3, err
    assert lines[0].startswith(f"torchnde: error: {path}, line "), lines[0]
    assert lines[1].startswith("    ") and lines[2].startswith("    ")
    assert lines[2].strip() == "^", err
    assert not (tmp_path / "runs").exists()
    line = int(re.match(rf"torchnde: error: {re.escape(str(path))}, line (\d+):", lines[0])[1])
    return lines[0], line, lines[1][4:], len(lines[2]) - 5


def line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_an_unknown_key_suggests_the_nearest_valid_one(tmp_path, capsys):
    text = edit(BASE, "adam_steps = 300", "adam_step = 300")
    message, line = config_error(tmp_path, capsys, text)
    assert line == line_of(text, "adam_step = 300")
    assert "`training.adam_step`" in message
    assert "did you mean `adam_steps`?" in message
    assert "delete the line" in message


def test_an_unknown_key_inside_an_inline_table_and_at_the_top_level(tmp_path, capsys):
    text = edit(BASE, "hidden = 16", "hiden = 16")
    message, line = config_error(tmp_path, capsys, text)
    assert "`system.networks.NN1.hiden`" in message and "did you mean `hidden`?" in message
    assert line == line_of(text, "hiden")
    message, _ = config_error(tmp_path, capsys, "sed = 1\n" + BASE)
    assert "unknown key `sed` in the top level; did you mean `seed`?" in message


def test_a_missing_key_is_named_with_what_it_is(tmp_path, capsys):
    text = edit(BASE, "t_end = 10.0\n", "")
    message, line = config_error(tmp_path, capsys, text)
    assert "`data.synthetic.t_end`: missing required key `t_end`" in message
    assert "(end of the observed (training) window)" in message
    assert "add it to [data.synthetic]" in message
    assert line == line_of(text, "[data.synthetic]")  # the table it belongs in


def test_a_wrong_type_names_the_expected_type(tmp_path, capsys):
    text = edit(BASE, "adam_steps = 300", 'adam_steps = "many"')
    message, line = config_error(tmp_path, capsys, text)
    assert "`training.adam_steps`: must be an integer (e.g. 300), got 'many' (text)" in message
    assert line == line_of(text, "many")
    message, _ = config_error(
        tmp_path, capsys, edit(BASE, "constants = { alpha = 1.1 }", 'constants = { alpha = "one" }')
    )
    assert "`system.constants.alpha`: must be a number" in message


def test_an_out_of_range_value_names_the_bound(tmp_path, capsys):
    message, _ = config_error(tmp_path, capsys, edit(BASE, "adam_steps = 300", "adam_steps = -5"))
    assert "`training.adam_steps`: must be ≥ 0, got -5" in message
    message, _ = config_error(
        tmp_path, capsys, edit(BASE, "t_end = 10.0", "t_end = 10.0\nnoise = -0.1")
    )
    assert "`data.synthetic.noise`: must be ≥ 0" in message
    message, _ = config_error(tmp_path, capsys, edit(BASE, "t_end = 10.0", "t_end = -1.0"))
    assert "`data.synthetic.t_end`: must be after t_start = 0" in message


def test_an_unknown_solver_or_activation_suggests_a_valid_one(tmp_path, capsys):
    message, _ = config_error(tmp_path, capsys, edit(BASE, 'solver = "rk4"', 'solver = "tsit"'))
    assert "unknown solver 'tsit'; did you mean 'tsit5'?" in message
    message, _ = config_error(tmp_path, capsys, edit(BASE, "hidden = 16", 'activation = "tahn"'))
    assert "`system.networks.NN1.activation`: must be one of tanh, relu" in message
    assert "did you mean 'tanh'?" in message


def test_a_toml_syntax_error_names_the_line(tmp_path, capsys):
    text = edit(BASE, 'name = "lv"', "name = lv")
    message, line = config_error(tmp_path, capsys, text)
    assert line == 1 and "invalid TOML" in message


def test_an_equation_that_does_not_parse(tmp_path, capsys):
    text = edit(BASE, '"alpha*x + NN1(x, y)"', '"alpha*x + * NN1(x, y)"')
    message, line, equation, column = equation_error(tmp_path, capsys, text)
    assert "`system.equations.x`: the equation for `x` does not parse: unexpected '*'" in message
    assert line == line_of(text, 'equations = { x = "alpha')
    assert equation == "alpha*x + * NN1(x, y)" and column == equation.index("* NN1")


#: (the bad equation of x, the problem named, the text the caret points at)
EQUATION_MISTAKES = [
    ("alpha*x + (NN1(x, y)", "this `(` is never closed; add a `)`", "(NN1"),
    ("alpha*x + NN1(x, y))", "this `)` has no matching `(`", ")"),
    ("dx/dt = alpha*x + NN1(x, y)", "`=` does not belong in an equation", "= alpha"),
    ("alpha*x == NN1(x, y)", "a comparison is not a right-hand side", "== NN1"),
    ("alpha x + NN1(x, y)", "an operator is missing here; write `*`", "x + NN1"),
    ("2alpha*x + NN1(x, y)", "a number runs into a name", "2alpha"),
    ("alpha*x + NN1(x, y) $ 2", "unexpected '$'", "$"),
    ("alpha*x + NN1(x, y) +", "ends too early", ""),
    ("alpha*x + NN1(x, y) if x else 0", "a conditional", "if"),
    ("alpha*x + NN1(x, y) # the rest", "`#` would start a comment", "#"),
    ("alpha*xx + NN1(x, y)", "undefined symbol `xx` (did you mean `x`?)", "xx"),
    ("alpha*x + NN3(x, y)", "calls `NN3`", "NN3"),
]


@pytest.mark.parametrize(
    ("equation", "problem", "marked"), EQUATION_MISTAKES, ids=[m[0] for m in EQUATION_MISTAKES]
)
def test_every_equation_mistake_names_file_line_key_and_marks_the_place(
    tmp_path, capsys, equation, problem, marked
):
    """The issue's case first: an unbalanced parenthesis was `TokenError: ('EOF in multi-line
    statement', (2, 0))` with exit status 1, naming no file or key."""
    text = edit(BASE, '"alpha*x + NN1(x, y)"', f'"{equation}"')
    message, line, shown, column = equation_error(tmp_path, capsys, text)
    assert "`system.equations.x`: the equation for `x`" in message and problem in message
    assert line == line_of(text, 'equations = { x = "')
    assert shown == equation
    assert shown[column:].startswith(marked) and (marked or column == len(equation))


def test_an_equation_sympy_rejects_is_one_line_with_file_and_key(tmp_path, capsys):
    text = edit(BASE, '"NN2(x, y) - theta*y"', '"NN2(x, y) - sin(theta, y)"')
    message, line = config_error(tmp_path, capsys, text)
    assert line == line_of(text, "sin(theta, y)")
    assert "`system.equations.y`: the equation for `y` does not parse" in message
    assert "sin takes exactly 1 argument (2 given)" in message


def test_a_synthetic_equation_that_does_not_parse_is_marked_too(tmp_path, capsys):
    text = edit(BASE, '"gamma*x*y - delta*y" }', '"gamma*x*(y - delta*y" }')
    message, line, shown, column = equation_error(tmp_path, capsys, text)
    assert "`data.synthetic.equations`: the synthetic data's equation for `y`" in message
    assert "this `(` is never closed" in message
    assert line == line_of(text, '"gamma*x*(y') and shown[column:] == "(y - delta*y"


def test_an_undefined_symbol_suggests_the_declared_one(tmp_path, capsys):
    message, _, shown, column = equation_error(
        tmp_path, capsys, edit(BASE, '"NN2(x, y) - theta*y"', '"NN2(x, y) - thet*y"')
    )
    assert "`system.equations.y`" in message
    assert "undefined symbol `thet` (did you mean `theta`?)" in message
    assert shown[column:] == "thet*y"


def test_a_call_of_an_undeclared_network_and_a_network_no_equation_calls(tmp_path, capsys):
    text = edit(BASE, '"NN2(x, y) - theta*y"', '"NN3(x, y) - theta*y"')
    message, line, _, column = equation_error(tmp_path, capsys, text)
    assert "`system.equations.y`" in message and "calls `NN3`" in message
    assert "neither a known function nor a declared network" in message
    assert line == line_of(text, "NN3(x, y)") and column == 0
    text = edit(BASE, "NN2 = {}", "NN2 = {}\nNN4 = {}")
    message, line = config_error(tmp_path, capsys, text)
    assert "`system.networks.NN4`" in message and "which no equation calls" in message
    assert line == line_of(text, "NN4 = {}")


def test_synthetic_equations_must_cover_the_states_and_call_no_network(tmp_path, capsys):
    message, _ = config_error(
        tmp_path,
        capsys,
        edit(BASE, "initial = { x = 10.0, y = 10.0 }", "initial = { x = 10.0, z = 10.0 }"),
    )
    assert "`data.synthetic.initial`: has no entry for the state 'y'" in message
    message, _, shown, column = equation_error(
        tmp_path, capsys, edit(BASE, '"gamma*x*y - delta*y" }', '"NN9(x) - delta*y" }')
    )
    assert "`data.synthetic.equations`" in message and "NN9" in message
    assert shown == "NN9(x) - delta*y" and column == 0


def test_exactly_one_data_source(tmp_path, capsys):
    text = edit(BASE, "[training]", '[data.csv]\npath = "d.csv"\n\n[training]')
    message, _ = config_error(tmp_path, capsys, text)
    assert "`data`: give exactly one data source" in message and "found both" in message


def test_a_bad_quick_override_is_reported_under_quick_even_without_quick(tmp_path, capsys):
    text = edit(BASE, "[quick.training]\nadam_steps = 20", "[quick.training]\nadam_stps = 20")
    message, line = config_error(tmp_path, capsys, text)
    assert "`quick.training.adam_stps`" in message and "did you mean `adam_steps`?" in message
    assert line == line_of(text, "adam_stps")


def test_debug_shows_the_traceback(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(edit(BASE, "adam_steps = 300", "adam_steps = -5"))
    code, _, err = run_cli(capsys, "run", str(path), "--debug", "--out", str(tmp_path))
    assert code == 2
    assert "Traceback" in err and "must be ≥ 0" in err


def test_a_missing_config_file_and_a_missing_argument(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", str(tmp_path / "nope.toml"))
    assert code == 2 and "nope.toml: no such config file" in err
    code, _, err = run_cli(capsys, "run")
    assert code == 2 and "needs a CONFIG file" in err


CSV_CONFIG = textwrap.dedent(
    """\
    [system]
    states = ["x"]
    equations = { x = "-a*x + NN1(x)" }
    constants = { a = 1.0 }
    networks = { NN1 = {} }

    [data.csv]
    path = "data.csv"
    columns = { x = "signal" }
    """
)


@pytest.mark.parametrize(
    ("csv", "fragment"),
    [
        ("t,signl\n0,1\n1,2\n", "no column 'signal' (for state 'x'); the header has 't', 'signl'"),
        ("t,signal\n0,1\n2,2\n1,3\n", "line 4: time 1 comes after 2 (line 3)"),
        ("t,signal\n0,1\n1,2\n1,3\n", "line 4: time 1 appears twice (lines 3 and 4)"),
        ("t,signal\n0,\n1,\n2,nan\n", "column 'signal' (state 'x') has no value in any row"),
    ],
)
def test_csv_errors_name_the_data_file_the_line_or_column_and_the_config(
    tmp_path, capsys, csv, fragment
):
    (tmp_path / "data.csv").write_text(csv)
    (tmp_path / "c.toml").write_text(CSV_CONFIG)
    code, _, err = run_cli(capsys, "run", str(tmp_path / "c.toml"), "--out", str(tmp_path / "runs"))
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"torchnde: error: {tmp_path / 'data.csv'}")
    assert fragment in err
    assert f"the data of {tmp_path / 'c.toml'}" in err


def test_a_csv_config_reads_its_columns_relative_to_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "data.csv").write_text("t,signal,other\n0,1.5,9\n0.3,,9\n1,2.5,9\n")
    (tmp_path / "c.toml").write_text(CSV_CONFIG + "[training]\nwindow = 2\n")
    monkeypatch.chdir(tmp_path.parent)  # the path is relative to the config, not to here
    config = load_config(tmp_path / "c.toml")
    observations = _load_data(config)
    assert observations.states == ("x",)
    assert observations.ts.tolist() == [0.0, 0.3, 1.0]
    assert observations.ys[:, 0].nan_to_num(-1).tolist() == [1.5, -1.0, 2.5]
    assert config.resolved["data"]["csv"]["path"] == str(tmp_path / "data.csv")


def test_the_configs_command_lists_the_shipped_configs(capsys):
    code, out, _ = run_cli(capsys, "configs")
    assert code == 0
    listed = dict(line.split() for line in out.strip().splitlines())
    assert set(listed) == set(SHIPPED_CONFIGS)
    assert all(Path(path).is_file() for path in listed.values())


def test_csv_columns_must_name_states_and_the_window_must_fit_the_rows(tmp_path, capsys):
    (tmp_path / "data.csv").write_text("t,signal\n0,1\n1,2\n2,3\n")
    text = edit(CSV_CONFIG, '{ x = "signal" }', '{ x = "signal", xx = "b" }')
    message, _ = config_error(tmp_path, capsys, text)
    assert "`data.csv.columns.xx`: 'xx' is not a state; did you mean 'x'?" in message
    message, _ = config_error(tmp_path, capsys, CSV_CONFIG + "[training]\nwindow = 5\n")
    assert "`training.window`: a window of 5 observations is longer than the 3 rows" in message


# -- the schema and the resolved config -----------------------------------------------------------


#: required by the dataclass, optional in a config file
OPTIONAL_IN_CONFIGS = {(SyntheticData, "parameters")}  # a true system may have no parameters


@pytest.mark.parametrize(
    ("model", "dataclass"),
    [
        (config_module.NetworkConfig, NetworkSpec),
        (config_module.SystemConfig, SystemSpec),
        (config_module.SyntheticConfig, SyntheticData),
        (config_module.TrainingConfig, TrainingSpec),
        (config_module.DiscoveryConfig, DiscoverySpec),
        (config_module.ForecastConfig, ForecastSpec),
    ],
)
def test_the_schema_has_the_fields_and_defaults_of_the_library_dataclasses(model, dataclass):
    fields = {f.name: f for f in dataclasses.fields(dataclass)}
    assert set(model.model_fields) == set(fields)
    for name, field in fields.items():
        schema = model.model_fields[name]
        if field.default is not dataclasses.MISSING:
            assert schema.get_default(call_default_factory=True) == field.default, name
        elif field.default_factory is not dataclasses.MISSING:
            default = schema.get_default(call_default_factory=True)
            if hasattr(default, "model_dump"):  # a nested section: compare as the dataclass
                default = NetworkSpec(**default.model_dump())
            assert default == field.default_factory(), name
        elif (dataclass, name) not in OPTIONAL_IN_CONFIGS:
            assert schema.is_required(), name
    assert set(config_module.RunConfig.model_fields) >= {
        f.name for f in dataclasses.fields(RunSpec)
    }


def test_the_resolved_config_is_a_config_giving_the_same_run(tmp_path):
    path = tmp_path / "lv.toml"
    path.write_text(BASE)
    first = load_config(path, quick=True)
    assert first.spec.training.adam_steps == 20  # the [quick] override
    assert first.spec.training.lbfgs_steps == TrainingSpec().lbfgs_steps  # a default filled in
    assert "quick" not in first.resolved
    again = tmp_path / "resolved.toml"
    again.write_text(dumps(first.resolved, "a header\nof two lines"))
    second = load_config(again)
    assert second.spec == first.spec
    assert second.resolved == first.resolved


def test_without_a_quick_table_quick_caps_the_steps(tmp_path):
    path = tmp_path / "plain.toml"
    path.write_text(BASE.split("[quick.training]")[0])
    full, quick = load_config(path), load_config(path, quick=True)
    assert full.spec.training.adam_steps == 300 and quick.spec.training.adam_steps == 40
    assert quick.spec.training.lbfgs_steps == 10 and quick.spec.discovery.refit_steps == 20


def test_find_line_locates_tables_dotted_keys_and_inline_tables():
    text = textwrap.dedent(
        """\
        # comment
        name = "a"
        [system]
        networks.NN1 = { hidden = 8, depth = 1 }
        [data.synthetic]
        initial = { x = 1.0 }
        "t_end" = 3
        """
    )
    assert find_line(text, ("name",)) == 2
    assert find_line(text, ("system", "networks", "NN1", "depth")) == 4
    assert find_line(text, ("data", "synthetic", "initial", "x")) == 6
    assert find_line(text, ("data", "synthetic", "t_end")) == 7
    assert find_line(text, ("data", "synthetic", "missing_key")) == 5
    assert find_line(text, ("training", "window")) is None


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
@pytest.mark.parametrize("quick", [False, True])
def test_the_shipped_configs_are_valid(name, quick):
    config = load_config(shipped_config(name), quick=quick)
    assert config.spec.name == name
    parsed = parse_system(config.spec.system)
    assert parsed.networks  # each has a hidden term to recover
    assert isinstance(config.data, SyntheticData)  # so the recovery is scored against the truth


def test_the_configs_folder_is_the_package_data():
    root = Path(__file__).resolve().parents[1]
    for name in SHIPPED_CONFIGS:
        assert (root / "configs" / f"{name}.toml").resolve() == shipped_config(name).resolve()
