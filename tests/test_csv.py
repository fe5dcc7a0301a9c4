"""Observations from CSV files: irregular times and missing values are read exactly; every bad
file is one ``CSVError`` (a ``ValueError``) naming the file, the line or column, and the fix."""

from __future__ import annotations

import math

import pytest
import torch

from torchnde.hybrid import Observations, load_csv
from torchnde.hybrid._csv import CSVError


def write(tmp_path, text: str, name: str = "data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_irregular_times_missing_values_comments_and_renamed_columns_are_read_exactly(tmp_path):
    path = write(
        tmp_path,
        "# lynx and hares, made up\n"
        "year,hare,lynx,notes\n"
        "0.0,30.5,4.0,first\n"
        "0.25,,4.5,\n"  # a missing hare count
        "\n"
        "1.0,NaN,NA,both missing\n"
        "2.5,47.2,-,lynx missing\n"
        "2.75,1e1,6,\n",
    )
    obs = load_csv(path, "year", {"x": "hare", "y": "lynx"})
    assert isinstance(obs, Observations)
    assert obs.states == ("x", "y")
    assert obs.ts.dtype == torch.float64 and obs.ys.shape == (5, 2)
    assert obs.ts.tolist() == [0.0, 0.25, 1.0, 2.5, 2.75]
    expected = [[30.5, 4.0], [math.nan, 4.5], [math.nan, math.nan], [47.2, math.nan], [10.0, 6.0]]
    assert torch.equal(obs.ys.isnan(), torch.tensor(expected).isnan())
    assert torch.equal(
        obs.ys.nan_to_num(-1.0), torch.tensor(expected, dtype=torch.float64).nan_to_num(-1.0)
    )
    assert obs.truth is None


def test_columns_default_to_every_column_but_time_or_to_the_state_names(tmp_path):
    path = write(tmp_path, "t,b,a\n0,1,2\n1,3,4\n")
    everything = load_csv(path)
    assert everything.states == ("b", "a")
    assert everything.ys.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    named = load_csv(path, "t", ["a"])
    assert named.states == ("a",) and named.ys[:, 0].tolist() == [2.0, 4.0]


def error_of(path, *args) -> CSVError:
    with pytest.raises(CSVError) as info:
        load_csv(path, *args)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert message.startswith(str(path)), message
    return info.value


def test_a_missing_column_names_the_header_and_suggests_the_nearest(tmp_path):
    path = write(tmp_path, "# comment\ntime,prey,predator\n0,1,2\n1,2,3\n")
    error = error_of(path, "time", {"x": "prey", "y": "predators"})
    assert error.line == 2 and error.column == "predators"
    assert "'predators' (for state 'y')" in str(error)
    assert "did you mean 'predator'?" in str(error)
    assert "'time', 'prey', 'predator'" in str(error)  # the header as found
    error = error_of(path, "t", {"x": "prey"})
    assert "no time column 't'" in str(error)


def test_times_that_go_backwards_name_the_line_and_say_sort(tmp_path):
    path = write(tmp_path, "t,x\n0,1\n2,1\n1,1\n")
    error = error_of(path, "t", ["x"])
    assert error.line == 4 and error.column == "t"
    assert "time 1 comes after 2 (line 3)" in str(error) and "sort the rows" in str(error)


def test_a_repeated_time_names_both_lines(tmp_path):
    path = write(tmp_path, "t,x\n0,1\n0.5,1\n0.5,2\n")
    error = error_of(path, "t", ["x"])
    assert error.line == 4
    assert "time 0.5 appears twice (lines 3 and 4)" in str(error)


def test_an_all_missing_column_is_named(tmp_path):
    path = write(tmp_path, "t,x,y\n0,1,\n1,2,nan\n2,3,\n")
    error = error_of(path, "t", {"u": "x", "v": "y"})
    assert error.column == "y" and error.line is None
    assert "column 'y' (state 'v') has no value in any row" in str(error)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("t,x\n0,1\n1,abc\n", 3, "column 'x' holds 'abc', which is not a number"),
        ("t,x\n0,1\n1,inf\n", 3, "values must be finite"),
        ("t,x\n0,1\n,2\n", 3, "the time ('t') is missing"),
        ("t,x\n0,1\n1,2,3\n", 3, "3 fields where the header has 2"),
        ("t,x\n0,1\n", None, "only 1 data row(s)"),
        ("", None, "the file is empty"),
        ("0,1\n1,2\n2,3\n", 1, "looks like data, not a header"),
        ("t,x,x\n0,1,2\n1,2,3\n", 1, "two columns are named 'x'"),
    ],
)
def test_malformed_rows_and_headers_name_the_line(tmp_path, text, line, fragment):
    error = error_of(write(tmp_path, text), "t", ["x"])
    assert error.line == line
    assert fragment in str(error)


def test_a_missing_file_is_a_csv_error_naming_it(tmp_path):
    error = error_of(tmp_path / "nowhere.csv", "t", ["x"])
    assert "no such file" in str(error)
