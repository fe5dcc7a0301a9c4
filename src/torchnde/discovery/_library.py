"""Candidate terms: variable names, parsing of term strings, the polynomial library, evaluation.

A *term* is a sympy expression over the variables with no numeric factor of its own (``x*y``, not
``2*x*y``); its canonical name is sympy's ``str`` of it (``"x*y"``, ``"x**2"``, ``"sin(x)"``, and
``"1"`` for the constant). Regression coefficients multiply terms.
"""

from __future__ import annotations

import itertools
import keyword
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import sympy
from sympy.core.function import AppliedUndef
from sympy.parsing.sympy_parser import convert_xor, parse_expr, standard_transformations

from .._math_names import MATH_FUNCTIONS

__all__ = ["polynomial_library"]

#: The functions and constants a term string may use, by name. Variables may not take these names.
FUNCTIONS: dict[str, Any] = {**MATH_FUNCTIONS, "pi": sympy.pi, "E": sympy.E}

# What parse_expr's automatic transformations need to find (numbers, symbols), and no builtins.
_PARSER_GLOBALS: dict[str, Any] = {
    "Integer": sympy.Integer,
    "Float": sympy.Float,
    "Rational": sympy.Rational,
    "Symbol": sympy.Symbol,
    "Function": sympy.Function,
    "__builtins__": {},
}
_TRANSFORMATIONS = (*standard_transformations, convert_xor)


def check_variable_names(names: Iterable[Any], argument: str) -> tuple[str, ...]:
    """Checks that ``names`` are usable variable names and returns them as a tuple."""
    names = tuple(names)
    if not names:
        raise ValueError(f"`{argument}` names no variables; give at least one, e.g. {{'x': x}}")
    for name in names:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(
                f"variable name {name!r} in `{argument}` is not usable in a formula: names must "
                "be Python identifiers that are not keywords, e.g. 'x', 'prey', 'theta_1'"
            )
        if name in FUNCTIONS:
            raise ValueError(
                f"variable name {name!r} in `{argument}` clashes with the function or constant "
                f"{name!r} that library terms may use; rename the variable, e.g. {name + '_'!r}"
            )
    return names


def symbols_of(variables: Sequence[str]) -> dict[str, sympy.Symbol]:
    """The sympy symbol of each variable (plain symbols, so ``sympy.Symbol("x")`` is the same)."""
    return {name: sympy.Symbol(name) for name in variables}


def parse(text: Any, variables: Sequence[str] | None, what: str) -> sympy.Expr:
    """Parses a string (or takes a sympy expression / number) over the given variables.

    With ``variables=None`` every free name is a variable. Names of :data:`FUNCTIONS` are functions;
    ``^`` means power. Raises ``ValueError`` naming ``what`` for unparsable text, unknown functions
    and, when ``variables`` is given, names that are not variables.
    """
    if isinstance(text, str):
        local = dict(FUNCTIONS)
        if variables is not None:
            local.update(symbols_of(variables))
        try:
            expr = parse_expr(
                text,
                local_dict=local,
                global_dict=dict(_PARSER_GLOBALS),
                transformations=_TRANSFORMATIONS,
            )
        except Exception as error:  # sympy raises SyntaxError, TypeError, TokenError, ...
            raise ValueError(f"{what} {text!r} does not parse: {error}") from None
    elif isinstance(text, sympy.Basic | int | float):
        expr = sympy.sympify(text)
        # symbols with assumptions (positive=True, ...) become the plain symbol of the same name
        expr = expr.xreplace({s: sympy.Symbol(s.name) for s in expr.free_symbols})
    else:
        raise TypeError(f"{what} must be a string or a sympy expression, got {type(text).__name__}")
    if not isinstance(expr, sympy.Expr):
        raise ValueError(f"{what} {text!r} is not an expression (it parsed as {expr!r})")
    unknown_functions = sorted({str(f.func) for f in expr.atoms(AppliedUndef)})
    if unknown_functions:
        raise ValueError(
            f"{what} {str(text)!r} uses unknown function(s) {', '.join(unknown_functions)}; "
            f"the known functions are {', '.join(sorted(k for k in FUNCTIONS if k[0].islower()))}"
        )
    if variables is not None:
        unknown = sorted(str(s) for s in expr.free_symbols if str(s) not in variables)
        if unknown:
            raise ValueError(
                f"{what} {str(text)!r} uses {', '.join(unknown)}, which "
                f"{'is not a variable' if len(unknown) == 1 else 'are not variables'}; "
                f"the variables are {', '.join(variables)}"
            )
    return expr


def split_term(expr: sympy.Expr, what: str) -> tuple[sympy.Expr, sympy.Expr]:
    """Splits an expression into (numeric factor, term): ``2*x*y`` -> ``(2, x*y)``.

    An expression free of variables is the constant term ``1`` times its value.
    """
    if not expr.free_symbols:
        value = sympy.nsimplify(expr) if expr.is_number else expr
        if value == 0 or not value.is_finite:
            raise ValueError(f"{what} {str(expr)!r} is {value}, which cannot be a library term")
        return value, sympy.S.One
    factor, term = expr.as_coeff_Mul()
    return factor, term


def parse_library(
    library: Iterable[Any], variables: Sequence[str]
) -> tuple[tuple[sympy.Expr, ...], tuple[str, ...]]:
    """Parses candidate terms; returns them (numeric factors dropped) and their canonical names."""
    if isinstance(library, str | sympy.Basic):
        raise TypeError(
            "`library` must be a list of terms, e.g. ['x', 'x*y', 'sin(x)'], not a single "
            f"{type(library).__name__}"
        )
    terms: list[sympy.Expr] = []
    names: list[str] = []
    origin: dict[str, Any] = {}
    for entry in library:
        _, term = split_term(parse(entry, variables, "library term"), "library term")
        name = str(term)
        if name in origin:
            raise ValueError(
                f"library terms {origin[name]!r} and {entry!r} are the same term {name!r} up to a "
                "constant factor; keep one of them"
            )
        origin[name] = entry
        terms.append(term)
        names.append(name)
    if not terms:
        raise ValueError("`library` is empty; give at least one candidate term, e.g. ['x', 'x*y']")
    return tuple(terms), tuple(names)


def polynomial_library(
    variables: Sequence[str] | Mapping[str, Any], degree: int = 2, *, constant: bool = True
) -> list[sympy.Expr]:
    """All monomials of the variables up to a total degree, as sympy expressions.

    The order is graded, then lexicographic in the order the variables are given (the order of
    PySINDy's ``PolynomialLibrary``): for ``("x", "y")`` and degree 2, ``[1, x, y, x**2, x*y, y**2]``.

    Args:
        variables: the variable names (or a mapping whose keys are the names).
        degree: the highest total degree, ``>= 0``.
        constant: include the constant term ``1``.

    Returns:
        The monomials; combine them with other terms freely, e.g.
        ``polynomial_library(["x", "v"], 1) + ["sin(x)"]``.
    """
    names = check_variable_names(variables, "variables")
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
        raise ValueError(f"`degree` must be an integer >= 0, got {degree!r}")
    symbols = list(symbols_of(names).values())
    monomials: list[sympy.Expr] = [sympy.S.One] if constant else []
    for d in range(1, degree + 1):
        for combination in itertools.combinations_with_replacement(symbols, d):
            monomials.append(sympy.Mul(*combination))
    if not monomials:
        raise ValueError("`degree=0` with `constant=False` leaves no terms")
    return monomials


def numpy_function(terms: Sequence[sympy.Expr], variables: Sequence[str]) -> Callable[..., list]:
    """A function of the variables (positional, in order) returning each term's numpy value."""
    symbols = list(symbols_of(variables).values())
    return sympy.lambdify(symbols, list(terms), modules="numpy")


def torch_function(terms: Sequence[sympy.Expr], variables: Sequence[str]) -> Callable[..., list]:
    """A function of the variables (positional, in order) returning each term's torch value."""
    symbols = list(symbols_of(variables).values())
    return sympy.lambdify(symbols, list(terms), modules="torch")


def evaluate_columns(
    terms: Sequence[sympy.Expr], names: Sequence[str], data: Mapping[str, np.ndarray]
) -> np.ndarray:
    """The library matrix ``(samples, terms)`` in float64; raises naming a non-finite term."""
    variables = tuple(data)
    n = next(iter(data.values())).shape[0]
    with np.errstate(all="ignore"):
        values = numpy_function(terms, variables)(*data.values())
    columns = np.empty((n, len(terms)), dtype=np.float64)
    for j, value in enumerate(values):
        value = np.asarray(value)
        if np.iscomplexobj(value):
            raise ValueError(f"library term {names[j]!r} is complex on these samples")
        columns[:, j] = np.broadcast_to(value.astype(np.float64), (n,))
        bad = ~np.isfinite(columns[:, j])
        if bad.any():
            i = int(np.argmax(bad))
            at = ", ".join(f"{k}={data[k][i]:.6g}" for k in variables)
            raise ValueError(
                f"library term {names[j]!r} is not finite at {int(bad.sum())} sample(s), the "
                f"first at index {i} ({at}); drop the term or those samples"
            )
    return columns
