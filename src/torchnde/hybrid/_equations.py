"""Equations as text: parse, check and compile the right-hand sides of a hybrid model.

``"alpha*x + NN1(x, y)"`` is parsed with sympy in a closed namespace: the names it may use are the
states, the time, the known constants, the learnable parameters and a fixed set of mathematical
functions; any other call ``NAME(args)`` is a network. Nothing else is accepted, so a typo is an
error that names the equation and the closest valid name, not a silent new symbol.

A network with several outputs is called with an index, ``NN(x, y)[0]`` and ``NN(x, y)[1]``: one
network feeding several equations, evaluated once per step.

Before sympy sees it, the text is checked as a Python expression made only of numbers, names,
``+ - * / ** ^``, parentheses, calls and network output indices: an unbalanced parenthesis, a
stray character, a missing operator, ``=``, a comparison, a conditional or attribute access each
gives an :class:`EquationError` that points at the place with a caret (as Python does) instead of
a tokenizer's ``TokenError`` or, worse, a silently different expression (``x if y else z`` would
be ``x``; a ``#`` would drop the rest of the line).
"""

from __future__ import annotations

import ast
import difflib
import keyword
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from tokenize import TokenError
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
    """An equation that does not parse, or uses a name it may not.

    Attributes:
        message: what is wrong and the fix.
        text: the equation (whitespace shown as spaces), or None.
        column: where in ``text`` the problem is (0-based), or None; ``str(error)`` then shows
            ``text`` and a caret under that column on two more lines.
    """

    def __init__(self, message: str, *, text: str | None = None, column: int | None = None):
        super().__init__(message)
        self.message = message
        self.text = text
        self.column = column

    def __str__(self) -> str:
        if self.text is None or self.column is None:
            return self.message
        return f"{self.message}\n    {self.text}\n    {' ' * self.column}^"


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
    """Parse one right-hand side. ``where`` names it in errors (e.g. ``"the equation for x"``).

    Raises:
        EquationError: the text is empty, is not an expression of numbers, names, arithmetic,
            calls and output indices (with the place marked), uses an undeclared name, or calls
            a network where none is allowed.
    """
    if not isinstance(text, str) or not text.strip():
        raise EquationError(f'{where} is empty; write it as text, e.g. "alpha*x - beta*x*y"')
    flat = _check_syntax(text, where)
    global_dict = {**_PARSER_NAMES, **FUNCTIONS, **_CONSTANTS}
    # every other called name may be a network, and a network's call may be indexed: NN(x)[1]
    called = {
        name: _network_function(name)
        for name in _CALLED.findall(flat)
        if name not in global_dict and name not in symbols
    }
    try:
        expr = parse_expr(
            flat,
            local_dict={**called, **symbols},
            global_dict=global_dict,
            transformations=(*standard_transformations, convert_xor),
        )
    except (
        SyntaxError,
        TokenError,
        TypeError,
        ValueError,
        AttributeError,
        NameError,
        ArithmeticError,
        RecursionError,
    ) as exc:
        reason = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise EquationError(
            f'{where} does not parse: {text!r} ({reason}); write it like "alpha*x + NN1(x, y)", '
            "with * for products and ** or ^ for powers (NN(x, y)[1] for a network's second "
            "output)"
        ) from None
    if not isinstance(expr, sympy.Expr):
        raise EquationError(f"{where} is not an expression: {text!r}")
    if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo) or any(
        not math.isfinite(float(number)) for number in expr.atoms(sympy.Float)
    ):
        raise EquationError(
            f"{where} contains a constant that is not finite in {text!r}: a division by zero, "
            "or a number beyond the float range (about 1.8e308); fix the constant"
        )
    unknown = sorted(str(s) for s in expr.free_symbols if str(s) not in symbols)
    if unknown:
        raise EquationError(
            f"{where} uses the undefined symbol `{unknown[0]}`{_suggest(unknown[0], symbols)}; "
            "declare it as a state, a constant or a learnable parameter",
            **_place(flat, unknown[0]),
        )
    calls = expr.atoms(AppliedUndef)
    if calls and not allow_networks:
        name = sorted(call_parts(c)[0] for c in calls)[0]
        raise EquationError(
            f"{where} calls `{name}`{_suggest(name, FUNCTIONS)}, which is not a known function "
            f"(known: {', '.join(sorted(set(FUNCTIONS) - {'Abs'}))}); networks are not allowed "
            "here",
            **_place(flat, name),
        )
    return expr


# -- the syntax check, with the place of the problem ----------------------------------------------

#: characters with a meaning in Python that an equation must not use, and why
_FORBIDDEN = {
    "=": "`=` does not belong in an equation: give only the right-hand side, the state it "
    'belongs to is the key (x = "alpha*x - beta*x*y", not "dx/dt = ...")',
    "#": "`#` would start a comment and silently drop the rest; remove it",
    "\\": "a backslash is not allowed; an equation may span lines without one",
    ";": "`;` separates statements; an equation is one expression",
    ":": "`:` is not allowed; an equation is one expression",
}
_NODE_PROBLEMS: dict[type, str] = {
    ast.Compare: "a comparison is not a right-hand side; write only the expression",
    ast.BoolOp: "`and`/`or` are not allowed; an equation is arithmetic",
    ast.IfExp: "a conditional (`a if c else b`) is not allowed",
    ast.Lambda: "`lambda` is not allowed",
    ast.Attribute: "attribute access (`.name`) is not allowed",
    ast.Tuple: "a comma outside a call's parentheses is not allowed; an equation is one expression",
    ast.List: "brackets `[ ]` are not allowed (except a network's output index, NN(x)[1]); "
    "group with `( )`",
    ast.Set: "braces `{ }` are not allowed; group with `( )`",
    ast.Dict: "braces `{ }` are not allowed; group with `( )`",
    ast.Starred: "`*` before an argument is not allowed",
}
_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.BitXor, ast.USub, ast.UAdd)
_OPERATOR_NAMES = {
    ast.FloorDiv: "`//`",
    ast.Mod: "`%`",
    ast.MatMult: "`@`",
    ast.BitAnd: "`&`",
    ast.BitOr: "`|`",
    ast.LShift: "`<<`",
    ast.RShift: "`>>`",
    ast.Invert: "`~`",
    ast.Not: "`not`",
}


def _check_syntax(text: str, where: str) -> str:
    """``text`` with every whitespace character as a space (so an equation may span lines), once
    it is an expression of numbers, names, ``+ - * / ** ^``, parentheses, calls and output
    indices.

    Raises:
        EquationError: with the column of the first problem.
    """
    flat = re.sub(r"\s", " ", text)

    def fail(problem: str, column: int) -> EquationError:
        column = min(max(column, 0), len(flat))
        return EquationError(f"{where} does not parse: {problem}", text=flat, column=column)

    for character, problem in _FORBIDDEN.items():
        column = _single_equals(flat) if character == "=" else flat.find(character)
        if column >= 0:
            raise fail(problem, column)
    try:
        tree = ast.parse(flat, mode="eval")
    except SyntaxError as error:
        raise fail(*_syntax_problem(flat, error)) from None
    for node in ast.walk(tree.body):
        problem = _node_problem(node)
        if problem is not None:
            raise fail(problem, _node_column(node, flat))
    return flat


def _single_equals(flat: str) -> int:
    """The column of the first ``=`` that is not part of ``==``, ``<=``, ``>=`` or ``!=``."""
    for match in re.finditer("=", flat):
        before = flat[match.start() - 1] if match.start() else ""
        after = flat[match.end()] if match.end() < len(flat) else ""
        if before not in "=<>!" and after != "=":
            return match.start()
    return -1


def _syntax_problem(flat: str, error: SyntaxError) -> tuple[str, int]:
    """What Python's parser found, in words for an equation, and its column."""
    column = (error.offset or 0) - 1
    message = error.msg or ""
    end = len(flat.rstrip())
    if "was never closed" in message:
        return "this `(` is never closed; add a `)` where its group ends", column
    if "unmatched" in message:
        return "this `)` has no matching `(`; remove it or add the `(`", column
    if "decimal literal" in message:
        start = column
        while start > 0 and (flat[start - 1].isalnum() or flat[start - 1] in "._"):
            start -= 1
        return "a number runs into a name; write `2*x` for a product", start
    if column < 0 or column >= end:
        return "the equation ends too early (after an operator, or in a call?)", end
    previous = flat[:column].rstrip()[-1:]
    if (previous.isalnum() or previous in ("_", ")")) and (
        flat[column].isalnum() or flat[column] in "_("
    ):
        return "an operator is missing here; write `*` for a product", column
    return f"unexpected {flat[column]!r} here; use numbers, names, + - * / ** ^ and ( )", column


def _node_problem(node: ast.AST) -> str | None:
    """Why ``node`` may not appear in an equation, or None if it may."""
    for kind, problem in _NODE_PROBLEMS.items():
        if isinstance(node, kind):
            return problem
    if isinstance(node, ast.Subscript) and not (
        isinstance(node.value, ast.Call)
        and isinstance(node.slice, ast.Constant)
        and type(node.slice.value) is int
    ):
        return "indexing is only for a network's outputs, as in `NN(x, y)[1]`"
    if isinstance(node, ast.BinOp | ast.UnaryOp) and not isinstance(node.op, _OPERATORS):
        name = _OPERATOR_NAMES.get(type(node.op), type(node.op).__name__)
        return f"the operator {name} is not allowed; use + - * / ** ^"
    if isinstance(node, ast.Constant) and (
        isinstance(node.value, bool) or not isinstance(node.value, int | float)
    ):
        return f"{node.value!r} is not a number; an equation holds numbers and names only"
    if isinstance(node, ast.Call):
        if node.keywords:
            return "keyword arguments (`f(a=...)`) are not allowed"
        if not isinstance(node.func, ast.Name):
            return "only a name can be called, as in `sin(x)`; write `*` for a product"
    if not isinstance(node, ast.expr | ast.operator | ast.unaryop | ast.expr_context):
        return f"{type(node).__name__} is not allowed in an equation"
    return None


#: for these nodes the problem sits right after one of their parts (the operator, `.`, `[`, `,`)
_AFTER = {
    ast.Compare: lambda node: node.left,
    ast.BinOp: lambda node: node.left,
    ast.BoolOp: lambda node: node.values[0],
    ast.IfExp: lambda node: node.body,
    ast.Attribute: lambda node: node.value,
    ast.Subscript: lambda node: node.value,
    ast.Tuple: lambda node: node.elts[0],
}


def _node_column(node: ast.AST, flat: str) -> int:
    """The column of the problem in ``node``: its operator, `.`, `[` or `,` where it has one,
    else its start."""
    for kind, part in _AFTER.items():
        if isinstance(node, kind) and getattr(part(node), "end_col_offset", None) is not None:
            column = part(node).end_col_offset
            while column < len(flat) and flat[column] in " )":
                column += 1
            return column
    return getattr(node, "col_offset", 0)


def _place(flat: str, name: str) -> dict[str, Any]:
    """``text`` and ``column`` for an error about the first use of ``name`` in ``flat``."""
    match = re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", flat)
    return {"text": flat, "column": match.start()} if match else {}


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
        flat = re.sub(r"\s", " ", spec.equations[state])
        for call in sorted(expr.atoms(AppliedUndef), key=str):
            name, index = call_parts(call)
            if name in symbols:
                raise EquationError(
                    f"{where} calls `{name}`, which is declared as a symbol", **_place(flat, name)
                )
            if name not in declared:
                raise EquationError(
                    f"{where} calls `{name}`{_suggest(name, [*declared, *FUNCTIONS])}, which is "
                    f"neither a known function nor a declared network (networks: "
                    f"{', '.join(sorted(declared)) or 'none'}); declare it under `networks` or "
                    "fix the name",
                    **_place(flat, name),
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
