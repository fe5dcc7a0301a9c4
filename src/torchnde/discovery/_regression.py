"""Sparse regression of sampled values onto a library of candidate terms (SINDy-style).

The regression is posed on a *scaled* problem in which every library column and the target have
unit weighted RMS (then divided by ``sqrt(samples)`` so that they have unit Euclidean norm, which
keeps PySINDy's hyperparameters independent of the number of samples). A coefficient of the scaled
problem is then exactly the relative size of its term,

    c_j = coef_j * rms(term_j) / rms(target),

so one threshold means the same thing for every term, every data set and every unit system.
PySINDy's optimiser selects the support on that problem; the coefficients reported are those of an
unregularised least-squares refit on the support, pruned until every kept term is at least the
threshold in size.

Two other readings of the threshold are available (``threshold_mode``): PySINDy's own, an absolute
bound on the coefficients in the data's units (``STLSQ(threshold=...)``), and a bound relative to
the largest coefficient. Both run sequentially thresholded least squares (STLSQ without ridge).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy
import torch

from ._expression import SparseExpression
from ._library import check_variable_names, evaluate_columns, parse_library, polynomial_library

__all__ = ["sparse_regression"]

#: default ridge weight of STLSQ on the unit-norm problem: numerically stabilising, negligibly biased
DEFAULT_RIDGE = 1e-5
#: how a threshold is read: a term's share of the target's RMS (the default), a coefficient's
#: magnitude relative to the largest one, or a coefficient's magnitude in the data's units
THRESHOLD_MODES = ("share", "largest", "absolute")
_NOT_OPTIMISERS = {"BaseOptimizer", "EnsembleOptimizer", "WrappedOptimizer", "SINDyPI"}


def sparse_regression(
    inputs: Mapping[str, Any],
    target: Any,
    *,
    degree: int | None = None,
    library: Iterable[Any] | None = None,
    threshold: float = 0.1,
    threshold_mode: str = "share",
    optimizer: str | Any = "stlsq",
    optimizer_options: Mapping[str, Any] | None = None,
    weights: Any = None,
) -> SparseExpression:
    """Finds a sparse combination of candidate terms that reproduces ``target``.

    Solves ``target ≈ sum_j coef_j * term_j(inputs)`` with as few terms as the threshold allows
    (sparse identification of nonlinear dynamics, SINDy: Brunton, Proctor & Kutz 2016, PNAS 113,
    3932), using PySINDy's optimisers (de Silva et al. 2020, JOSS 5, 2104; Kaptanoglu et al. 2022,
    JOSS 7, 3994).

    **Threshold (relative).** A term is kept when its contribution is at least ``threshold`` of the
    target, measured in weighted RMS over the samples::

        |coef_j| * rms(term_j) / rms(target) >= threshold

    with ``rms(v) = sqrt(sum_i w_i v_i**2 / sum_i w_i)``. With the default 0.1, a term must account
    for at least 10% of the target's RMS. Unlike PySINDy's ``normalize_columns`` (which divides by
    column norms that grow with the number of samples), this does not depend on the number of
    samples, the units of the variables or the scale of the target.

    **Other threshold modes.** ``threshold_mode="absolute"`` reads the threshold as PySINDy's
    ``STLSQ(threshold=...)`` does: a term is kept when ``|coef_j| >= threshold`` in the units of
    the data (so it depends on the units and the scale of each term).
    ``threshold_mode="largest"`` keeps a term when ``|coef_j| >= threshold * max_k |coef_k|``,
    relative to the largest coefficient of the current fit. Both select the support by
    sequentially thresholded least squares without ridge (STLSQ with ``alpha=0``, unbiased: the
    steps (3)–(4) below become one loop of least squares and pruning, from every term) and need
    ``optimizer="stlsq"``; the same data and threshold give PySINDy's STLSQ result.

    **Procedure.** (1) Evaluate the library on the samples; (2) scale every column and the target to
    unit weighted RMS (a column that is identically zero on the samples is left out); (3) run the
    optimiser on the scaled problem (STLSQ thresholds at ``threshold`` with a tiny ridge; SR3 with an
    L0 or L1 penalty gets the weight that makes its threshold equal ``threshold``); (4) refit the
    selected terms by unregularised least squares, drop any whose refitted relative size falls below
    ``threshold``, and repeat until none does; (5) undo the scaling. So every term of the result
    satisfies the rule above with its final coefficient.

    An empty result (no term passes the threshold) is a valid answer: the expression is ``0``
    (``terms == {}``), meaning that no candidate explains a ``threshold`` share of the target.

    Args:
        inputs: variable name -> samples (tensors or arrays, all of one shape; flattened, so
            ``(trajectories, times)`` works). Names must be identifiers that do not clash with the
            functions terms may use (``sin``, ``exp``, ``E``, ``pi``, ...).
        target: the values to explain, the same shape as each input (e.g. a network's output along
            a trajectory).
        degree: use all monomials of the inputs up to this total degree, constant included
            (:func:`polynomial_library`). Default 2 when ``library`` is not given.
        library: instead of ``degree``, the candidate terms as strings or sympy expressions over
            the inputs, e.g. ``["x", "x*y", "sin(x)"]`` (a numeric factor in a term is ignored;
            ``^`` means power).
        threshold: the sparsity threshold, ``>= 0``, read as ``threshold_mode`` says.
        threshold_mode: ``"share"`` (default: a term's share of the target's RMS), ``"absolute"``
            (a coefficient's magnitude, PySINDy's STLSQ threshold) or ``"largest"`` (a
            coefficient's magnitude relative to the largest coefficient's).
        optimizer: a PySINDy optimiser by name (``"stlsq"``, ``"sr3"``, ``"ssr"``, ``"frols"``,
            ...; case-insensitive) or an unfitted PySINDy optimiser instance (used as given on the
            scaled problem, where columns and target have unit norm). Step (4) applies to all.
        optimizer_options: keyword arguments for the named optimiser's constructor, e.g.
            ``{"alpha": 1e-3}`` (STLSQ's ridge weight on the unit-norm problem, default 1e-5) or
            ``{"regularizer": "L1"}`` for SR3. The threshold is set from ``threshold``.
        weights: optional non-negative per-sample weights of the least-squares fit and of the RMS
            above, the same shape as ``target``.

    Returns:
        A :class:`SparseExpression` with ``terms``, ``sympy``, ``r2`` (weighted coefficient of
        determination on the given samples) and ``relative_sizes``.

    Raises:
        ValueError: naming the argument: empty or mismatched shapes, NaN/inf values, clashing or
            unusable names, a library term using an unknown variable or function or not finite on
            the samples, fewer samples than terms, a bad threshold or optimiser name.
    """
    design = build_design(inputs, target, degree=degree, library=library, weights=weights)
    threshold = check_threshold(threshold)
    mode = check_threshold_mode(threshold_mode, optimizer)
    if mode == "share":
        support = select_support(design, threshold, optimizer, optimizer_options)
    else:
        if optimizer_options:
            raise ValueError(
                f"`optimizer_options` do not apply with threshold_mode={mode!r} (STLSQ without "
                "ridge); drop them, or use threshold_mode='share'"
            )
        support = design.usable.copy()
    coefficients, support = refit(design, support, threshold, mode)
    return make_expression(design, coefficients, support, threshold)


# -- the data -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Design:
    """The regression problem: library columns, target, weights, and the scaled system.

    ``matrix`` (samples, terms) and ``rhs`` (samples,) are the weighted, unit-norm problem:
    ``matrix[i, j] = sqrt(w_i) * columns[i, j] / (col_rms[j] * sqrt(W))`` with ``W = sum(w)``,
    ``rhs[i] = sqrt(w_i) * target[i] / (target_rms * sqrt(W))``; unusable (all-zero) columns are 0.
    """

    variables: tuple[str, ...]
    terms: tuple[sympy.Expr, ...]
    names: tuple[str, ...]
    columns: np.ndarray
    target: np.ndarray
    weights: np.ndarray
    col_rms: np.ndarray
    target_rms: float
    matrix: np.ndarray
    rhs: np.ndarray
    usable: np.ndarray

    @property
    def num_samples(self) -> int:
        """Samples that carry weight."""
        return int(np.count_nonzero(self.weights))


def build_design(
    inputs: Mapping[str, Any],
    target: Any,
    *,
    degree: int | None,
    library: Iterable[Any] | None,
    weights: Any,
) -> Design:
    """Validates the arguments and builds the (scaled) regression problem."""
    data, y, w = _check_data(inputs, target, weights)
    variables = tuple(data)
    if library is not None and degree is not None:
        raise ValueError(
            "give either `degree` (a polynomial library) or `library` (explicit terms), not both; "
            "to combine them use `library=polynomial_library(names, degree) + [...]`"
        )
    if library is None:
        library = polynomial_library(variables, 2 if degree is None else degree)
    terms, names = parse_library(library, variables)
    columns = evaluate_columns(terms, names, data)
    total = float(w.sum())
    col_rms = np.sqrt((w[:, None] * columns**2).sum(axis=0) / total)
    target_rms = math.sqrt(float((w * y**2).sum()) / total)
    usable = col_rms > 0
    row = np.sqrt(w / total)
    matrix = np.zeros_like(columns)
    matrix[:, usable] = row[:, None] * columns[:, usable] / col_rms[usable]
    rhs = row * y / target_rms if target_rms > 0 else np.zeros_like(y)
    design = Design(
        variables, terms, names, columns, y, w, col_rms, target_rms, matrix, rhs, usable
    )
    if design.num_samples < int(usable.sum()):
        raise ValueError(
            f"there are {design.num_samples} weighted samples but {int(usable.sum())} library terms; "
            "the regression needs at least as many samples as terms: give more samples or fewer "
            "terms (a lower `degree` or a shorter `library`)"
        )
    return design


def _check_data(
    inputs: Mapping[str, Any], target: Any, weights: Any
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    if not isinstance(inputs, Mapping):
        raise TypeError(
            f"`inputs` must be a dict of variable name -> samples, got {type(inputs).__name__}"
        )
    check_variable_names(inputs, "inputs")
    arrays = {name: _to_numpy(value, f"inputs[{name!r}]") for name, value in inputs.items()}
    first = next(iter(arrays))
    shape = arrays[first].shape
    for name, array in arrays.items():
        if array.shape != shape:
            raise ValueError(
                f"`inputs[{name!r}]` has shape {tuple(array.shape)} but `inputs[{first!r}]` has "
                f"shape {tuple(shape)}: every input must hold the same samples"
            )
    y = _to_numpy(target, "target")
    if y.shape != shape:
        raise ValueError(
            f"`target` has shape {tuple(y.shape)} but the inputs have shape {tuple(shape)}: the "
            "target must hold one value per sample"
        )
    if y.size == 0:
        raise ValueError("`target` and `inputs` hold no samples")
    if weights is None:
        w = np.ones(y.size)
    else:
        w = _to_numpy(weights, "weights")
        if w.shape != shape:
            raise ValueError(
                f"`weights` has shape {tuple(w.shape)} but the inputs have shape {tuple(shape)}"
            )
        w = w.reshape(-1)
        if (w < 0).any():
            i = int(np.argmax(w < 0))
            raise ValueError(f"`weights` must be >= 0, but weights[{i}] = {w[i]:.6g}")
        if not (w > 0).any():
            raise ValueError("`weights` are all zero; at least one sample must carry weight")
    data = {name: array.reshape(-1) for name, array in arrays.items()}
    return data, y.reshape(-1), w


def _to_numpy(value: Any, what: str) -> np.ndarray:
    """A float64 numpy copy of a tensor/array/sequence; raises naming ``what`` on bad values."""
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise ValueError(f"`{what}` must be real, got a complex tensor")
        value = value.detach().to("cpu", torch.float64).numpy()
    try:
        array = np.asarray(value)
    except Exception as error:
        raise TypeError(
            f"`{what}` must be a tensor or an array, got {type(value).__name__}"
        ) from error
    if np.iscomplexobj(array):
        raise ValueError(f"`{what}` must be real, got complex values")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"`{what}` must hold numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        index = np.unravel_index(int(np.argmax(bad)), array.shape)
        at = index[0] if len(index) == 1 else tuple(int(i) for i in index)
        raise ValueError(
            f"`{what}` has {int(bad.sum())} non-finite value(s) (NaN or inf), the first at index "
            f"{at}; drop or impute those samples before the regression"
        )
    return array


def check_threshold_mode(mode: Any, optimizer: Any = "stlsq") -> str:
    """The threshold mode, checked; modes other than ``"share"`` need STLSQ."""
    if mode not in THRESHOLD_MODES:
        raise ValueError(
            f"`threshold_mode` must be one of {', '.join(map(repr, THRESHOLD_MODES))}, got {mode!r}"
        )
    if mode != "share" and not (isinstance(optimizer, str) and optimizer.lower() == "stlsq"):
        raise ValueError(
            f"threshold_mode={mode!r} reads the threshold as sequentially thresholded least "
            f"squares does, so it needs optimizer='stlsq', got optimizer={optimizer!r}; use "
            "threshold_mode='share' with other optimisers"
        )
    return mode


def check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise TypeError(f"`threshold` must be a number >= 0, got {threshold!r}")
    if not math.isfinite(threshold) or threshold < 0:
        raise ValueError(f"`threshold` must be finite and >= 0, got {threshold!r}")
    return float(threshold)


# -- selection and refit --------------------------------------------------------------------------


def select_support(
    design: Design, threshold: float, optimizer: str | Any, options: Mapping[str, Any] | None
) -> np.ndarray:
    """Runs the PySINDy optimiser on the scaled problem; returns the selected terms (bool mask)."""
    support = np.zeros(len(design.names), dtype=bool)
    model = make_optimizer(optimizer, threshold, options)
    columns = np.flatnonzero(design.usable)
    if design.target_rms == 0 or columns.size == 0:
        return support  # a zero target (or a library that is zero on every sample): nothing to fit
    with warnings.catch_warnings():
        # "eliminated all coefficients" and convergence notices: the refit below settles both
        warnings.simplefilter("ignore")
        model.fit(design.matrix[:, columns], design.rhs)
    coef = np.asarray(model.coef_, dtype=np.float64).reshape(-1)
    support[columns] = (coef != 0) & np.isfinite(coef)
    return support


def refit(
    design: Design, support: np.ndarray, threshold: float, mode: str = "share"
) -> tuple[np.ndarray, np.ndarray]:
    """Least squares on the support, pruning terms below ``threshold`` (read as ``mode`` says)
    until none is.

    Returns the scaled coefficients (= relative sizes with sign) and the final support.
    """
    support = support.copy()
    while True:
        c = least_squares(design.matrix, design.rhs, support)
        keep = support & _large_enough(design, c, threshold, mode) & (c != 0)
        if (keep == support).all():
            break
        support = keep
    if support.sum() > 1 and np.linalg.matrix_rank(design.matrix[:, support]) < support.sum():
        warnings.warn(
            "the selected library terms "
            f"{[n for n, s in zip(design.names, support) if s]} are linearly dependent on these "
            "samples, so their coefficients are not unique; remove the redundant terms from the "
            "library",
            stacklevel=3,
        )
    return c, support


def _large_enough(design: Design, scaled: np.ndarray, threshold: float, mode: str) -> np.ndarray:
    """Which terms pass the threshold, from the scaled coefficients (relative sizes)."""
    if mode == "share":
        return np.abs(scaled) >= threshold
    size = np.zeros_like(scaled)  # |coefficient| in the data's units
    usable = design.usable
    size[usable] = np.abs(scaled[usable]) * design.target_rms / design.col_rms[usable]
    if mode == "absolute":
        return size >= threshold
    return size >= threshold * size.max() if size.max() > 0 else np.zeros(len(size), dtype=bool)


def least_squares(matrix: np.ndarray, rhs: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Unregularised least-squares coefficients on the support (zeros elsewhere)."""
    c = np.zeros(matrix.shape[1])
    if support.any():
        c[support] = np.linalg.lstsq(matrix[:, support], rhs, rcond=None)[0]
    return c


def make_expression(
    design: Design, scaled: np.ndarray, support: np.ndarray, threshold: float
) -> SparseExpression:
    """Undoes the scaling; computes the weighted R² on the original samples."""
    coefficients = np.zeros_like(scaled)
    coefficients[support] = scaled[support] * design.target_rms / design.col_rms[support]
    prediction = design.columns[:, support] @ coefficients[support]
    terms = {design.terms[j]: float(coefficients[j]) for j in np.flatnonzero(support)}
    sizes = {design.names[j]: float(abs(scaled[j])) for j in np.flatnonzero(support)}
    return SparseExpression(
        terms,
        design.variables,
        r2=r_squared(design.target, prediction, design.weights),
        threshold=threshold,
        relative_sizes=sizes,
    )


def r_squared(y: np.ndarray, prediction: np.ndarray, w: np.ndarray) -> float:
    """Weighted coefficient of determination ``1 - SS_res / SS_tot``.

    For a constant target (``SS_tot = 0``): 1.0 if the prediction is exact, else 0.0.
    """
    total = w.sum()
    residual = float((w * (y - prediction) ** 2).sum())
    mean = float((w * y).sum() / total)
    spread = float((w * (y - mean) ** 2).sum())
    scale = float((w * y**2).sum()) + float((w * prediction**2).sum())
    if spread <= 1e-28 * scale or spread == 0:
        return 1.0 if residual <= 1e-24 * max(scale, 1e-300) else 0.0
    return 1.0 - residual / spread


# -- optimisers -----------------------------------------------------------------------------------


def optimizer_names() -> dict[str, str]:
    """PySINDy's optimisers usable here: lower-case name -> class name."""
    from pysindy import optimizers

    return {
        name.lower(): name
        for name in optimizers.__all__
        if name not in _NOT_OPTIMISERS and hasattr(optimizers, name)
    }


def make_optimizer(optimizer: str | Any, threshold: float, options: Mapping[str, Any] | None):
    """A fresh PySINDy optimiser whose own threshold matches the relative ``threshold``."""
    try:
        from pysindy import optimizers
        from sklearn.base import clone
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "sparse regression needs PySINDy: `pip install 'torchnde[discovery]'`"
        ) from error
    if not isinstance(optimizer, str):
        if options:
            raise ValueError(
                "`optimizer_options` applies to an optimiser given by name; configure the "
                "optimiser instance itself instead"
            )
        if not isinstance(optimizer, optimizers.BaseOptimizer):
            raise TypeError(
                "`optimizer` must be a PySINDy optimiser name such as 'stlsq' or an instance of "
                f"pysindy.optimizers.BaseOptimizer, got {type(optimizer).__name__}"
            )
        return clone(optimizer)
    names = optimizer_names()
    key = optimizer.lower()
    if key not in names:
        known = ", ".join(repr(n) for n in sorted(names))
        raise ValueError(
            f"`optimizer` {optimizer!r} is not a PySINDy optimiser; choose one of {known}"
        )
    options = dict(options or {})
    cls = getattr(optimizers, names[key])
    if key == "stlsq":
        _refuse(options, "threshold")
        options = {"alpha": DEFAULT_RIDGE, "unbias": False, **options, "threshold": threshold}
    elif key == "sr3":
        options = {"unbias": False, **options}
        nu = float(options.get("relax_coeff_nu", 1.0))
        regularizer = str(options.get("regularizer", "L0")).lower()
        if regularizer == "l0":  # hard threshold at sqrt(2 * lam * nu)
            _refuse(options, "reg_weight_lam")
            options["reg_weight_lam"] = threshold**2 / (2 * nu)
        elif regularizer == "l1":  # soft threshold at lam * nu
            _refuse(options, "reg_weight_lam")
            options["reg_weight_lam"] = threshold / nu
    try:
        return cls(**options)
    except TypeError as error:
        raise ValueError(f"`optimizer_options` do not fit {cls.__name__}: {error}") from None


def _refuse(options: Mapping[str, Any], key: str) -> None:
    if key in options:
        raise ValueError(
            f"`optimizer_options` sets {key!r}, which the relative threshold determines; pass "
            "`threshold=` instead"
        )
