"""The result of a sparse regression: a linear combination of terms, readable and evaluable."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy
import torch
from torch import nn

from ._library import (
    check_variable_names,
    numpy_function,
    parse,
    split_term,
    symbols_of,
    torch_function,
)

__all__ = [
    "SparseExpression",
    "SparseExpressionModule",
    "TermComparison",
    "as_terms",
    "compare_terms",
]


class SparseExpression:
    """A sparse linear combination of terms, ``sum_j c_j * term_j(variables)``.

    Usually made by :func:`sparse_regression`; it can also be written down directly, e.g.
    ``SparseExpression({"x*y": -0.4}, variables=("x", "y"))``.

    Args:
        terms: term -> coefficient; a term is a string or sympy expression over the variables
            (``"x*y"``, ``"sin(x)"``, ``"1"``). A numeric factor in a term moves into its
            coefficient (``{"2*x": 1.5}`` is ``{"x": 3.0}``).
        variables: the variable names the expression is a function of, in order.
        r2: the coefficient of determination of the fit that produced it (``None`` if unknown).
        threshold: the relative sparsity threshold of that fit (``None`` if unknown).
        relative_sizes: per term, ``|c_j| * rms(term_j) / rms(target)`` on the fitted samples.

    Attributes:
        terms: ``{name: coefficient}`` with canonical names (sympy's ``str`` of each term:
            ``"x*y"``, ``"x**2"``, ``"1"`` for the constant), in library order.
        sympy: the expression as a sympy expression (``-0.4*x*y``).
        variables, r2, threshold, relative_sizes: as given.
    """

    def __init__(
        self,
        terms: Mapping[Any, float],
        variables: Sequence[str],
        *,
        r2: float | None = None,
        threshold: float | None = None,
        relative_sizes: Mapping[str, float] | None = None,
    ) -> None:
        self._variables = check_variable_names(variables, "variables")
        collected: dict[str, tuple[sympy.Expr, float]] = {}
        for key, value in terms.items():
            factor, term = split_term(parse(key, self._variables, "term"), "term")
            coefficient = float(factor) * _as_float(value, f"the coefficient of {key!r}")
            name = str(term)
            if name in collected:
                coefficient += collected[name][1]
            collected[name] = (term, coefficient)
        self._names = tuple(collected)
        self._terms = tuple(term for term, _ in collected.values())
        self._coefficients = tuple(c for _, c in collected.values())
        self._r2 = None if r2 is None else float(r2)
        self._threshold = None if threshold is None else float(threshold)
        self._relative_sizes = dict(relative_sizes) if relative_sizes is not None else None
        self._numpy_fn: Any = None
        self._torch_fn: Any = None

    # -- what it is -------------------------------------------------------------------------------

    @property
    def variables(self) -> tuple[str, ...]:
        return self._variables

    @property
    def terms(self) -> dict[str, float]:
        return dict(zip(self._names, self._coefficients))

    @property
    def term_exprs(self) -> tuple[sympy.Expr, ...]:
        """The terms as sympy expressions (coefficient-free), in the order of :attr:`terms`."""
        return self._terms

    @property
    def r2(self) -> float | None:
        return self._r2

    @property
    def threshold(self) -> float | None:
        return self._threshold

    @property
    def relative_sizes(self) -> dict[str, float] | None:
        return None if self._relative_sizes is None else dict(self._relative_sizes)

    @property
    def sympy(self) -> sympy.Expr:
        return sympy.Add(*(sympy.Float(c) * t for t, c in zip(self._terms, self._coefficients)))

    def __len__(self) -> int:
        return len(self._names)

    def __str__(self) -> str:
        return format_terms(self._names, self._terms, self._coefficients)

    def __repr__(self) -> str:
        extra = "" if self._r2 is None else f", r2={self._r2:.6g}"
        return f"SparseExpression({str(self)!r}, variables={self._variables}{extra})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseExpression):
            return NotImplemented
        return self.terms == other.terms and self._variables == other._variables

    __hash__ = None  # type: ignore[assignment]  (mutable-looking value object: no hashing)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_numpy_fn"] = state["_torch_fn"] = None  # lambdified functions do not pickle
        return state

    # -- using it ---------------------------------------------------------------------------------

    def __call__(self, inputs: Mapping[str, Any]) -> Any:
        """Evaluates the expression on new samples.

        Args:
            inputs: variable name -> values (tensors or arrays of one broadcastable shape); extra
                names are ignored.

        Returns:
            A tensor if any input is a tensor (differentiable with respect to the inputs), else a
            numpy array, of the inputs' broadcast shape.
        """
        values = _gather(inputs, self._variables)
        if any(isinstance(v, torch.Tensor) for v in values):
            if self._torch_fn is None:
                self._torch_fn = torch_function(self._terms, self._variables)
            return _torch_sum(self._torch_fn, self._coefficients, values)
        arrays = [np.asarray(v) for v in values]
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        dtype = np.result_type(*arrays, np.float64) if arrays else np.float64
        if self._numpy_fn is None:
            self._numpy_fn = numpy_function(self._terms, self._variables)
        out = np.zeros(shape, dtype=dtype)
        for c, value in zip(self._coefficients, self._numpy_fn(*arrays) if self._terms else []):
            out = out + c * np.asarray(value)
        return out

    def to_torch(self, dtype: torch.dtype | None = None) -> SparseExpressionModule:
        """The expression as an ``nn.Module`` whose coefficients are trainable parameters.

        ``module(inputs)`` takes a dict of tensors and returns a tensor, differentiable with
        respect to the inputs and the coefficients; ``module.to_expression()`` gives back a
        :class:`SparseExpression` with the current coefficients. Use it to refit the
        coefficients of a recovered equation by training through a solver.
        """
        return SparseExpressionModule(self, dtype=dtype)

    def with_coefficients(self, coefficients: Mapping[str, float] | Sequence[float] | Any):
        """The same terms with new coefficients.

        Args:
            coefficients: a mapping term name -> coefficient (names of :attr:`terms`; terms not
                named keep their coefficient), or a sequence / 1-D tensor with one value per term
                in the order of :attr:`terms`.

        Returns:
            A new :class:`SparseExpression` (``r2`` and ``relative_sizes`` are dropped: they
            described the old coefficients).
        """
        if isinstance(coefficients, Mapping):
            unknown = [k for k in coefficients if k not in self._names]
            if unknown:
                raise ValueError(
                    f"`coefficients` names {unknown}, which are not terms of {self}; its terms "
                    f"are {list(self._names)}"
                )
            new = [float(coefficients.get(n, c)) for n, c in zip(self._names, self._coefficients)]
        else:
            if isinstance(coefficients, torch.Tensor):
                coefficients = coefficients.detach().cpu().reshape(-1).tolist()
            new = [float(c) for c in coefficients]
            if len(new) != len(self._names):
                raise ValueError(
                    f"`coefficients` has {len(new)} values but the expression has "
                    f"{len(self._names)} terms {list(self._names)}"
                )
        return SparseExpression(
            dict(zip(self._terms, new)), self._variables, threshold=self._threshold
        )


class SparseExpressionModule(nn.Module):
    """A :class:`SparseExpression` with its coefficients as an ``nn.Parameter``.

    Attributes:
        coefficients: ``(terms,)`` parameter, one value per term in the order of ``term_names``.
        term_names: the terms' canonical names.
        variables: the variable names ``forward`` reads from its input dict.
    """

    def __init__(self, expression: SparseExpression, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.variables = expression.variables
        self.term_names = tuple(expression.terms)
        self._term_exprs = expression.term_exprs
        self._threshold = expression.threshold
        values = list(expression.terms.values())
        self.coefficients = nn.Parameter(
            torch.tensor(values, dtype=dtype or torch.get_default_dtype()).reshape(len(values))
        )
        self._torch_fn: Any = None

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``sum_j coefficients[j] * term_j(inputs)``, of the inputs' broadcast shape."""
        values = [torch.as_tensor(v) for v in _gather(inputs, self.variables)]
        if self._torch_fn is None:
            self._torch_fn = torch_function(self._term_exprs, self.variables)
        return _torch_sum(self._torch_fn, self.coefficients, values)

    def to_expression(self) -> SparseExpression:
        """The expression with the module's current coefficients."""
        coefficients = self.coefficients.detach().cpu().tolist()
        return SparseExpression(
            dict(zip(self._term_exprs, coefficients)), self.variables, threshold=self._threshold
        )

    def extra_repr(self) -> str:
        return str(self.to_expression())

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_torch_fn"] = None
        return state


def _torch_sum(fn: Any, coefficients: Any, values: list[Any]) -> torch.Tensor:
    """``sum_j coefficients[j] * fn(*values)[j]`` broadcast to the inputs' shape (torch)."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    like = tensors[0] if tensors else torch.zeros(())
    values = [torch.as_tensor(v, device=like.device) for v in values]
    shape = torch.broadcast_shapes(*(v.shape for v in values))
    dtype = torch.result_type(like, 1.0)
    for v in values:
        dtype = torch.promote_types(dtype, v.dtype)
    values = [v.to(dtype) for v in values]
    out = torch.zeros(shape, dtype=dtype, device=like.device)
    if len(coefficients) == 0:
        return out
    terms = fn(*values)
    for j, term in enumerate(terms):
        out = out + coefficients[j] * term
    return out


def _gather(inputs: Mapping[str, Any], variables: Sequence[str]) -> list[Any]:
    if not isinstance(inputs, Mapping):
        raise TypeError(
            f"`inputs` must be a dict of variable name -> values, got {type(inputs).__name__}"
        )
    missing = [v for v in variables if v not in inputs]
    if missing:
        raise ValueError(
            f"`inputs` lacks {', '.join(repr(m) for m in missing)}; the expression's variables "
            f"are {', '.join(variables)}"
        )
    return [inputs[v] for v in variables]


def _as_float(value: Any, what: str) -> float:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().item()
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(result):
        raise ValueError(f"{what} must be finite, got {result}")
    return result


def format_terms(
    names: Sequence[str], terms: Sequence[sympy.Expr], coefficients: Sequence[float]
) -> str:
    """``"0.1*x*y - 0.4*y"``: coefficients to 4 significant digits, in the given order."""
    if not names:
        return "0"
    pieces = []
    for name, term, c in zip(names, terms, coefficients):
        size = f"{abs(c):.4g}"
        factor = "" if abs(c) == 1.0 else f"{size}*"
        if term == 1:
            body = size
        elif isinstance(term, sympy.Add):
            body = f"{factor}({name})"
        else:
            body = f"{factor}{name}"
        if not pieces:
            pieces.append(f"-{body}" if c < 0 else body)
        else:
            pieces.append(f"{'-' if c < 0 else '+'} {body}")
    return " ".join(pieces)


# -- comparing expressions ------------------------------------------------------------------------


def as_terms(expr: Any, variables: Sequence[str] | None = None) -> dict[str, float]:
    """Expands an expression into ``{term: coefficient}`` in the canonical form of
    :attr:`SparseExpression.terms`.

    ``as_terms("-0.4*x*y")`` is ``{"x*y": -0.4}``; ``as_terms("0.1*x*(y - 4)")`` is
    ``{"x*y": 0.1, "x": -0.4}``; ``as_terms("-0.5*sin(x) + 2")`` is ``{"sin(x)": -0.5, "1": 2.0}``.
    Products and integer powers of sums are multiplied out (``expand`` with ``mul`` and
    ``multinomial`` only: ``exp(x + y)`` and ``log(x*y)`` stay as they are).

    Args:
        expr: a sympy expression, a string, a number, a mapping term -> coefficient, or a
            :class:`SparseExpression`.
        variables: the variable names; every other symbol must be absent (substitute parameter
            values first, e.g. ``expr.subs({beta: 0.4})``). ``None``: every free symbol is a
            variable (for a :class:`SparseExpression`, its own variables).

    Returns:
        ``{name: coefficient}`` with the numeric factor of each term collected into its
        coefficient and zero coefficients dropped.
    """
    if isinstance(expr, SparseExpression):
        variables = expr.variables if variables is None else variables
        expr = expr.sympy
    if variables is not None:
        variables = check_variable_names(variables, "variables")
    if isinstance(expr, Mapping):
        expr = sympy.Add(
            *(
                parse(k, variables, "term") * sympy.Float(_as_float(v, f"the coefficient of {k!r}"))
                for k, v in expr.items()
            )
        )
    expr = parse(expr, variables, "expression")
    symbols = (
        list(symbols_of(variables).values()) if variables is not None else list(expr.free_symbols)
    )
    expanded = sympy.expand(expr, power_exp=False, power_base=False, log=False)
    out: dict[str, float] = {}
    for piece in sympy.Add.make_args(expanded):
        if symbols:
            factor, term = piece.as_independent(*symbols, as_Add=False)
        else:
            factor, term = piece, sympy.S.One
        if factor.free_symbols:
            raise ValueError(
                f"the coefficient of {term} in {expr} is {factor}, which contains "
                f"{', '.join(sorted(map(str, factor.free_symbols)))}: not a variable; substitute "
                "numbers for parameters first, e.g. `expr.subs({'beta': 0.4})`"
            )
        if not term.free_symbols:
            factor, term = factor * term, sympy.S.One
        number, rest = term.as_coeff_Mul()
        name = str(rest)
        out[name] = out.get(name, 0.0) + float(factor * number)
    return {k: v for k, v in out.items() if v != 0.0}


@dataclass(frozen=True)
class TermComparison:
    """How a recovered expression compares with the true one, term by term.

    Attributes:
        recovered, truth: both in the canonical form of :func:`as_terms`.
        missing: true terms the recovered expression lacks.
        extra: recovered terms that are not in the truth.
        relative_errors: per true term, ``|c_recovered - c_true| / |c_true|`` (``1.0`` when the
            term is missing).
        same_support: the recovered terms are exactly the true terms.
        max_relative_error: the largest of ``relative_errors`` (``0.0`` for an empty truth).
    """

    recovered: dict[str, float]
    truth: dict[str, float]
    missing: tuple[str, ...]
    extra: tuple[str, ...]
    relative_errors: dict[str, float]

    @property
    def same_support(self) -> bool:
        return not self.missing and not self.extra

    @property
    def max_relative_error(self) -> float:
        return max(self.relative_errors.values(), default=0.0)

    def matches(self, rtol: float = 0.1) -> bool:
        """Same support and every coefficient within ``rtol`` (relative) of the truth."""
        return self.same_support and self.max_relative_error <= rtol

    def __str__(self) -> str:
        lines = [f"same support: {self.same_support}"]
        if self.missing:
            lines.append(f"missing: {', '.join(self.missing)}")
        if self.extra:
            lines.append(
                f"extra: {', '.join(f'{t} ({self.recovered[t]:.4g})' for t in self.extra)}"
            )
        for term, error in self.relative_errors.items():
            got = self.recovered.get(term, 0.0)
            lines.append(f"{term}: {got:.6g} vs {self.truth[term]:.6g} ({100 * error:.2f}% error)")
        return "\n".join(lines)


def compare_terms(
    recovered: Any, truth: Any, variables: Sequence[str] | None = None
) -> TermComparison:
    """Scores a recovered expression against the true one.

    Both are expanded with :func:`as_terms` (so ``"y*x"`` matches ``"x*y"`` and a library term
    ``x*(y - 4)`` is compared as ``x*y`` and ``x``).

    Args:
        recovered: a :class:`SparseExpression`, sympy expression, string or term mapping.
        truth: the true expression, in any of the same forms, e.g. ``"-0.4*x*y"``.
        variables: the variable names (default: the recovered expression's, if it has them).

    Returns:
        A :class:`TermComparison`; ``.matches(rtol)`` is the usual pass/fail.
    """
    if variables is None and isinstance(recovered, SparseExpression):
        variables = recovered.variables
    got = as_terms(recovered, variables)
    true = as_terms(truth, variables)
    errors = {t: abs(got.get(t, 0.0) - c) / abs(c) for t, c in true.items()}
    return TermComparison(
        recovered=got,
        truth=true,
        missing=tuple(t for t in true if t not in got),
        extra=tuple(t for t in got if t not in true),
        relative_errors=errors,
    )
