"""Sparse symbolic regression of learned terms (SINDy with PySINDy), with sympy output.

Given samples of some variables and of a quantity to explain (typically a neural network's output
evaluated along a trajectory), :func:`sparse_regression` finds the few candidate terms that
reproduce it and returns a :class:`SparseExpression`: readable (``str``), symbolic (``.sympy``),
evaluable on numpy or torch values, and convertible to a trainable ``nn.Module`` (``.to_torch()``)
to refit its coefficients. :func:`select_model` sweeps the sparsity threshold and picks a model by
cross-validation or an information criterion; :func:`as_terms` and :func:`compare_terms` put known
expressions in the same canonical form and score a recovery against the truth.

Example::

    from torchnde.discovery import sparse_regression, compare_terms

    expr = sparse_regression({"x": x, "y": y}, nn_output, degree=2, threshold=0.1)
    print(expr, expr.r2)                       # -0.4003*x*y 0.99998
    compare_terms(expr, "-0.4*x*y").matches(rtol=0.05)

Needs the ``discovery`` extra: ``pip install 'torchnde[discovery]'`` (PySINDy and sympy).
"""

from ._expression import (
    SparseExpression,
    SparseExpressionModule,
    TermComparison,
    as_terms,
    compare_terms,
)
from ._library import polynomial_library
from ._regression import sparse_regression
from ._selection import Candidate, ModelSelection, select_model

__all__ = [
    "Candidate",
    "ModelSelection",
    "SparseExpression",
    "SparseExpressionModule",
    "TermComparison",
    "as_terms",
    "compare_terms",
    "polynomial_library",
    "select_model",
    "sparse_regression",
]
