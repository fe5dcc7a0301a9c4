"""Equation texts that do not parse: every mistake is an EquationError that says what is wrong,
how to fix it, and where, with the equation and a caret under the place; never a tokenizer's
``TokenError`` and never a silently different expression (``x if y else z`` read as ``x``, a
``#`` dropping the rest)."""

from __future__ import annotations

import pytest
import sympy

from torchnde.hybrid import EquationError, NetworkSpec, SystemSpec, parse_system
from torchnde.hybrid._equations import parse_expression

SYMBOLS = {name: sympy.Symbol(name, real=True) for name in ("x", "y", "alpha", "theta")}
WHERE = "the equation for `x`"


def error_of(text: str, allow_networks: bool = True) -> EquationError:
    with pytest.raises(EquationError) as error:
        parse_expression(text, WHERE, SYMBOLS, allow_networks=allow_networks)
    return error.value


# (text, fragment of the message, the character the caret points at)
CASES = [
    ("alpha*x + (NN1(x, y)", "this `(` is never closed", "("),
    ("sqrt(-x", "this `(` is never closed", "("),
    ("alpha*x + NN1(x, y))", "this `)` has no matching `(`", ")"),
    ("alpha*x = y", "`=` does not belong in an equation", "="),
    ("alpha*x == y", "a comparison is not a right-hand side", "="),
    ("x < y", "a comparison", "<"),
    ("x $ y", "unexpected '$'", "$"),
    ("x ? y", "unexpected '?'", "?"),
    ("2x", "a number runs into a name; write `2*x`", "2"),
    ("alpha x", "an operator is missing here", "x"),
    ("alpha*", "ends too early", None),
    ("x if y else 2", "a conditional", "i"),
    ("x.real", "attribute access", "."),
    ("x[0]", "indexing is only for a network's outputs", "["),
    ("x, y", "a comma outside", ","),
    ("[x]", "brackets `[ ]`", "["),
    ("x % y", "the operator `%`", "%"),
    ("x // y", "the operator `//`", "/"),
    ("'x'", "'x' is not a number", "'"),
    ("True*x", "True is not a number", "T"),
    ("x # y", "`#` would start a comment", "#"),
    ("x; y", "`;` separates statements", ";"),
    ("lambda: x", "`:` is not allowed", ":"),
    ("2(x + 1)", "only a name can be called", "2"),
    ("thet*y", "undefined symbol `thet` (did you mean `theta`?)", "t"),
]


@pytest.mark.parametrize(("text", "fragment", "marked"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_equation_names_the_problem_and_marks_its_place(text, fragment, marked):
    error = error_of(text)
    assert fragment in error.message
    assert error.message.startswith(WHERE)
    lines = str(error).splitlines()
    assert len(lines) == 3 and lines[1] == f"    {text}"
    assert lines[2].strip() == "^" and lines[2].startswith("    ")
    column = len(lines[2]) - 5
    assert column == error.column
    if marked is None:
        assert column == len(text)  # just after the end
    else:
        assert text[column] == marked


def test_an_equation_may_span_lines_and_the_caret_stays_on_the_flattened_line():
    assert parse_expression("alpha*x\n  - theta*y", WHERE, SYMBOLS) == sympy.sympify(
        "alpha*x - theta*y", locals=SYMBOLS
    )
    error = error_of("alpha*x\n  - (theta*y")
    assert str(error).splitlines()[1] == "    alpha*x   - (theta*y"
    assert error.text[error.column] == "("


@pytest.mark.parametrize("text", ["1/0", "x/0", "1e999*x"])
def test_a_constant_that_is_not_finite_is_refused(text):
    assert "not finite" in error_of(text).message


def test_valid_equations_still_parse():
    assert parse_expression("x ^ 2 - alpha*x**-1 + sin(x)", WHERE, SYMBOLS) is not None
    assert str(parse_expression("NN1(x, y)[1] + NN1(x, y)[0]", WHERE, SYMBOLS)) == (
        "NN1(x, y)[0] + NN1(x, y)[1]"
    )


def test_networks_refused_where_not_allowed_are_marked():
    error = error_of("alpha*x + NN9(x)", allow_networks=False)
    assert "calls `NN9`" in error.message and error.text[error.column :].startswith("NN9")


def test_an_undeclared_network_call_is_marked_in_the_system():
    spec = SystemSpec(
        states=("x", "y"),
        equations={"x": "alpha*x + NN1(x, y)", "y": "NN3(x, y) - y"},
        constants={"alpha": 1.0},
        networks={"NN1": NetworkSpec()},
    )
    with pytest.raises(EquationError) as error:
        parse_system(spec)
    assert "calls `NN3`" in error.value.message
    assert str(error.value).splitlines()[1:] == ["    NN3(x, y) - y", "    ^"]
