"""Equations as text: parse, check and compile the right-hand sides of a hybrid model.

``"alpha*x + NN1(x, y)"`` is parsed with sympy in a closed namespace: the names it may use are the
states, the time, the known constants, the learnable parameters and a fixed set of mathematical
functions; any other call ``NAME(args)`` is a network. Nothing else is accepted, so a typo is an
error that names the equation and the closest valid name, not a silent new symbol.
"""

from __future__ import annotations

import difflib
import keyword
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sympy
from sympy.core.function import AppliedUndef
from sympy.parsing.sympy_parser import convert_xor, parse_expr, standard_transformations

from .._math_names import MATH_FUNCTIONS
from ._spec import SystemSpec

__all__ = ["FUNCTIONS", "EquationError", "ParsedSystem", "parse_expression", "parse_system"]

#: the mathematical functions equations may use (by their name in the text); constants other than
#: pi are not names here, so that e.g. `E` can be a state
FUNCTIONS: dict[str, Any] = MATH_FUNCTIONS
_CONSTANTS = {"pi": sympy.pi}
_PARSER_NAMES = {
    "Function": sympy.Function,
    "Symbol": sympy.Symbol,
    "Integer": sympy.Integer,
    "Float": sympy.Float,
    "Rational": sympy.Rational,
}


class EquationError(ValueError):
    """An equation that does not parse, or uses a name it may not."""


def _suggest(name: str, valid) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


def parse_expression(
    text: str, where: str, symbols: Mapping[str, sympy.Symbol], allow_networks: bool = True
) -> sympy.Expr:
    """Parse one right-hand side. ``where`` names it in errors (e.g. ``"the equation for x"``)."""
    if not isinstance(text, str) or not text.strip():
        raise EquationError(f'{where} is empty; write it as text, e.g. "alpha*x - beta*x*y"')
    global_dict = {**_PARSER_NAMES, **FUNCTIONS, **_CONSTANTS}
    try:
        expr = parse_expr(
            text,
            local_dict=dict(symbols),
            global_dict=global_dict,
            transformations=(*standard_transformations, convert_xor),
        )
    except (SyntaxError, TypeError, ValueError, AttributeError) as exc:
        reason = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise EquationError(
            f'{where} does not parse: {text!r} ({reason}); write it like "alpha*x + NN1(x, y)", '
            "with * for products and ** or ^ for powers"
        ) from None
    if not isinstance(expr, sympy.Expr):
        raise EquationError(f"{where} is not an expression: {text!r}")
    unknown = sorted(str(s) for s in expr.free_symbols if str(s) not in symbols)
    if unknown:
        raise EquationError(
            f"{where} uses the undefined symbol `{unknown[0]}`{_suggest(unknown[0], symbols)} in "
            f"{text!r}; declare it as a state, a constant or a learnable parameter"
        )
    calls = expr.atoms(AppliedUndef)
    if calls and not allow_networks:
        name = sorted(c.func.__name__ for c in calls)[0]
        raise EquationError(
            f"{where} calls `{name}`{_suggest(name, FUNCTIONS)}, which is not a known function "
            f"(known: {', '.join(sorted(set(FUNCTIONS) - {'Abs'}))}); networks are not allowed here"
        )
    return expr


@dataclass(frozen=True)
class ParsedSystem:
    """A checked :class:`SystemSpec`.

    Attributes:
        spec: the source.
        symbols: every name an equation may use, as sympy symbols.
        equations: per state, the right-hand side (constants still symbolic).
        networks: per network name, the names of its inputs (states or time), in call order.
    """

    spec: SystemSpec
    symbols: dict[str, sympy.Symbol]
    equations: dict[str, sympy.Expr]
    networks: dict[str, tuple[str, ...]]

    @property
    def states(self) -> tuple[str, ...]:
        return tuple(self.spec.states)

    def network_equations(self, name: str) -> list[str]:
        """The states whose equations call network ``name``."""
        return [
            s
            for s, e in self.equations.items()
            if any(c.func.__name__ == name for c in e.atoms(AppliedUndef))
        ]


def _check_names(spec: SystemSpec) -> None:
    groups = {
        "states": list(spec.states),
        "constants": list(spec.constants),
        "parameters": list(spec.parameters),
        "time": [spec.time],
    }
    seen: dict[str, str] = {}
    for group, names in groups.items():
        for name in names:
            if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
                raise EquationError(
                    f"the name {name!r} in {group} is not a valid identifier; use letters, digits "
                    "and underscores, starting with a letter"
                )
            if name in FUNCTIONS or name in _CONSTANTS:
                raise EquationError(
                    f"the name `{name}` in {group} is a reserved function or constant; rename it"
                )
            if name in seen:
                raise EquationError(
                    f"the name `{name}` is declared twice (in {seen[name]} and in {group}); "
                    "every name must be unique"
                )
            seen[name] = group
    if not spec.states:
        raise EquationError('the system has no states; list them, e.g. states = ["x", "y"]')
    missing = [s for s in spec.states if s not in spec.equations]
    if missing:
        raise EquationError(
            f'the state `{missing[0]}` has no equation; add `{missing[0]} = "..."` to the equations'
        )
    extra = [s for s in spec.equations if s not in spec.states]
    if extra:
        raise EquationError(
            f"there is an equation for `{extra[0]}`, which is not a state{_suggest(extra[0], spec.states)}; "
            "list it in the states or remove the equation"
        )


def parse_system(spec: SystemSpec, extra_networks: tuple[str, ...] = ()) -> ParsedSystem:
    """Parse and check every equation of ``spec`` (raises :class:`EquationError`).

    A call ``NAME(args)`` must name a network declared in ``spec.networks`` (or in
    ``extra_networks``); any other unknown call is an error, so a misspelt function is not
    silently taken for a network."""
    _check_names(spec)
    declared = {*spec.networks, *extra_networks}
    names = [*spec.states, spec.time, *spec.constants, *spec.parameters]
    symbols = {name: sympy.Symbol(name, real=True) for name in names}
    equations: dict[str, sympy.Expr] = {}
    networks: dict[str, tuple[str, ...]] = {}
    for state in spec.states:
        where = f"the equation for `{state}`"
        expr = parse_expression(spec.equations[state], where, symbols)
        for call in sorted(expr.atoms(AppliedUndef), key=str):
            name = call.func.__name__
            if name in symbols:
                raise EquationError(f"{where} calls `{name}`, which is declared as a symbol")
            if name not in declared:
                raise EquationError(
                    f"{where} calls `{name}`{_suggest(name, [*declared, *FUNCTIONS])}, which is "
                    f"neither a known function nor a declared network (networks: "
                    f"{', '.join(sorted(declared)) or 'none'}); declare it under `networks` or "
                    "fix the name"
                )
            args = []
            for arg in call.args:
                if not (
                    isinstance(arg, sympy.Symbol)
                    and (str(arg) in spec.states or str(arg) == spec.time)
                ):
                    raise EquationError(
                        f"{where}: the network `{name}` takes `{arg}`; a network's inputs must be "
                        f"states or the time `{spec.time}`, e.g. {name}({', '.join(spec.states)})"
                    )
                args.append(str(arg))
            if not args:
                raise EquationError(f"{where}: the network `{name}` needs at least one input")
            if name in networks and networks[name] != tuple(args):
                raise EquationError(
                    f"{where} calls `{name}({', '.join(args)})`, but `{name}` is also called with "
                    f"({', '.join(networks[name])}); a network has one list of inputs"
                )
            networks[name] = tuple(args)
        equations[state] = expr
    unused = [n for n in spec.networks if n not in networks]
    if unused:
        raise EquationError(
            f"network settings are given for `{unused[0]}`, which no equation calls"
            f"{_suggest(unused[0], networks)}"
        )
    return ParsedSystem(spec, symbols, equations, networks)


def compile_expression(expr: sympy.Expr, arguments: list[str]) -> Callable[..., Any]:
    """A torch function of ``arguments`` (names, in order) evaluating ``expr``."""
    symbols = [sympy.Symbol(a, real=True) for a in arguments]
    return sympy.lambdify(symbols, expr, modules="torch")
