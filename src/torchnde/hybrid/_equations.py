"""Equations as text: parse, check and compile the right-hand sides of a hybrid model.

``"alpha*x + NN1(x, y)"`` is parsed with sympy in a closed namespace: the names it may use are the
states, the time, the known constants, the learnable parameters and a fixed set of mathematical
functions; any other call ``NAME(args)`` is a network. Nothing else is accepted, so a typo is an
error that names the equation and the closest valid name, not a silent new symbol.

A network with several outputs is called with an index, ``NN(x, y)[0]`` and ``NN(x, y)[1]``: one
network feeding several equations, evaluated once per step.
"""

from __future__ import annotations

import difflib
import keyword
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sympy
from sympy.core.function import AppliedUndef
from sympy.parsing.sympy_parser import convert_xor, parse_expr, standard_transformations

from .._math_names import MATH_FUNCTIONS
from ._spec import SystemSpec

__all__ = [
    "FUNCTIONS",
    "EquationError",
    "NetworkCall",
    "ParsedSystem",
    "parse_expression",
    "parse_system",
]

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


class NetworkCall(AppliedUndef):
    """A call ``NAME(args)`` in an equation; ``NAME(args)[k]`` is the call of its output ``k``
    (a function named ``NAME[k]`` whose :attr:`network` is ``NAME`` and :attr:`index` is ``k``)."""

    network: str = ""
    index: int | None = None

    def __getitem__(self, index):
        if self.index is not None:
            raise TypeError(f"{self} is one output already; index the network once")
        if not isinstance(index, int | sympy.Integer) or int(index) < 0:
            raise TypeError(f"an output index must be a whole number >= 0, got {index!r}")
        k = int(index)
        return _network_function(self.network, k)(*self.args)

    def _sympystr(self, printer) -> str:
        args = ", ".join(printer.doprint(a) for a in self.args)
        suffix = "" if self.index is None else f"[{self.index}]"
        return f"{self.network}({args}){suffix}"


def _network_function(network: str, index: int | None = None):
    name = network if index is None else f"{network}[{index}]"
    return sympy.Function(name, bases=(NetworkCall,), __dict__={"network": network, "index": index})


def call_parts(call: sympy.Expr) -> tuple[str, int | None]:
    """``(network, output index or None)`` of a network call found in an equation."""
    network = getattr(call, "network", "") or call.func.__name__
    return network, getattr(call, "index", None)


_CALLED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")


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
    # every other called name may be a network, and a network's call may be indexed: NN(x)[1]
    called = {
        name: _network_function(name)
        for name in _CALLED.findall(text)
        if name not in global_dict and name not in symbols
    }
    try:
        expr = parse_expr(
            text,
            local_dict={**called, **symbols},
            global_dict=global_dict,
            transformations=(*standard_transformations, convert_xor),
        )
    except (SyntaxError, TypeError, ValueError, AttributeError) as exc:
        reason = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise EquationError(
            f'{where} does not parse: {text!r} ({reason}); write it like "alpha*x + NN1(x, y)", '
            "with * for products and ** or ^ for powers (NN(x, y)[1] for a network's second "
            "output)"
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
        outputs: per network name, the output indices its calls use (``(None,)`` for the plain
            call ``NN(x)`` of a one-output network), sorted.
    """

    spec: SystemSpec
    symbols: dict[str, sympy.Symbol]
    equations: dict[str, sympy.Expr]
    networks: dict[str, tuple[str, ...]]
    outputs: dict[str, tuple[int | None, ...]] = field(default_factory=dict)

    @property
    def states(self) -> tuple[str, ...]:
        return tuple(self.spec.states)

    @property
    def calls(self) -> dict[str, tuple[str, int | None]]:
        """Every distinct network call by its name (``"NN1"``, or ``"NN1[0]"`` for an output of
        a several-output network) -> ``(network, index)``, networks in order."""
        return {
            (name if index is None else f"{name}[{index}]"): (name, index)
            for name, indices in self.outputs.items()
            for index in indices
        }

    def network_equations(self, name: str) -> list[str]:
        """The states whose equations call ``name``: a network (any of its outputs) or one call
        name such as ``"NN1[0]"``."""
        return [
            s
            for s, e in self.equations.items()
            if any(name in (c.func.__name__, call_parts(c)[0]) for c in e.atoms(AppliedUndef))
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
    indices: dict[str, set[int | None]] = {}
    for state in spec.states:
        where = f"the equation for `{state}`"
        expr = parse_expression(spec.equations[state], where, symbols)
        for call in sorted(expr.atoms(AppliedUndef), key=str):
            name, index = call_parts(call)
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
            indices.setdefault(name, set()).add(index)
        equations[state] = expr
    unused = [n for n in spec.networks if n not in networks]
    if unused:
        raise EquationError(
            f"network settings are given for `{unused[0]}`, which no equation calls"
            f"{_suggest(unused[0], networks)}"
        )
    outputs = {}
    for name, used in indices.items():
        if None in used and len(used) > 1:
            state = next(
                s
                for s, e in equations.items()
                if any(call_parts(c) == (name, None) for c in e.atoms(AppliedUndef))
            )
            raise EquationError(
                f"the equation for `{state}` calls `{name}` without an output index, but other "
                f"equations index it ({', '.join(f'{name}(...)[{i}]' for i in sorted(used - {None}))}); "
                f"index every call of a several-output network, e.g. {name}(...)[0]"
            )
        outputs[name] = tuple(sorted(used, key=lambda i: -1 if i is None else i))
    return ParsedSystem(spec, symbols, equations, networks, outputs)


def compile_expression(expr: sympy.Expr, arguments: list[str]) -> Callable[..., Any]:
    """A torch function of ``arguments`` (names, in order) evaluating ``expr``."""
    symbols = [sympy.Symbol(a, real=True) for a in arguments]
    return sympy.lambdify(symbols, expr, modules="torch")
