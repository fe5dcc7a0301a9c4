"""Choosing the threshold: sweep it, refit each distinct support, score the candidates."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._expression import SparseExpression
from ._regression import (
    Design,
    build_design,
    check_threshold,
    check_threshold_mode,
    least_squares,
    make_expression,
    refit,
    select_support,
)

__all__ = ["Candidate", "ModelSelection", "select_model"]

CRITERIA = ("cv", "aic", "bic")
#: a relative residual below this (squared: 1e-10 of the target's RMS) counts as an exact fit, so
#: exact fits tie and the sparsest wins instead of round-off deciding
_EXACT = 1e-20


@dataclass(frozen=True)
class Candidate:
    """One distinct model of a threshold sweep.

    Attributes:
        expression: the refitted expression.
        threshold: the smallest swept threshold that selected it (``inf`` for the empty model when
            no swept threshold selected it).
        score: its value of the criterion (lower is better).
    """

    expression: SparseExpression
    threshold: float
    score: float


@dataclass(frozen=True)
class ModelSelection:
    """The result of :func:`select_model`.

    Attributes:
        best: the chosen expression (lowest score; ties go to fewer terms).
        candidates: every distinct model of the sweep, fewest terms first.
        criterion: the criterion used.
    """

    best: SparseExpression
    candidates: tuple[Candidate, ...]
    criterion: str

    def __str__(self) -> str:
        lines = [f"{'terms':>5}  {'threshold':>9}  {self.criterion + ' score':>12}  expression"]
        for c in self.candidates:
            mark = " <- best" if c.expression is self.best else ""
            lines.append(
                f"{len(c.expression):>5}  {c.threshold:>9.3g}  {c.score:>12.6g}  {c.expression}{mark}"
            )
        return "\n".join(lines)


def select_model(
    inputs: Mapping[str, Any],
    target: Any,
    *,
    criterion: str = "cv",
    thresholds: Iterable[float] | None = None,
    threshold_mode: str = "share",
    folds: int = 5,
    degree: int | None = None,
    library: Iterable[Any] | None = None,
    optimizer: str | Any = "stlsq",
    optimizer_options: Mapping[str, Any] | None = None,
    weights: Any = None,
) -> ModelSelection:
    """Sweeps the relative threshold of :func:`sparse_regression` and picks a model by a criterion.

    Every threshold gives a support (the refitted, pruned selection of :func:`sparse_regression`);
    each distinct support, plus the empty model, is a candidate scored by ``criterion`` on the
    scaled problem (unit-RMS columns and target, weighted rows); the lowest score wins and ties go
    to the sparser model. Criteria (Mangan et al. 2017, "Model selection for dynamical systems via
    sparse regression and information criteria", Proc. R. Soc. A 473, 20170009):

    - ``"cv"`` (default): blocked K-fold cross-validation. The samples are cut, in the order given,
      into ``folds`` contiguous blocks; each block is predicted by the support refitted on the
      others; the score is the held-out sum of squares relative to the target's. Along a
      trajectory with errors smooth in time, an extra term that only absorbs the error of one
      stretch predicts another stretch badly, which interleaved folds would not reveal. Each block
      must still contain samples where every true term matters: a transient trajectory whose
      informative part lies in one block defeats it (use samples covering the range, e.g. a full
      period of an oscillation).
    - ``"aic"``: corrected Akaike criterion, ``n ln(RSS/n) + 2k + 2k(k+1)/(n-k-1)``.
    - ``"bic"``: Bayesian criterion, ``n ln(RSS/n) + k ln n``.

    AIC and BIC assume independent errors; with smooth, correlated errors and many samples they
    favour extra terms. Residuals below ``1e-10`` of the target's RMS count as exact.

    **Which to use.** Every criterion measures how well a model predicts the *target*; none can
    tell a learned function's systematic error from physics, so on a network's output they tend to
    keep small extra terms that fit the network's error (on Lotka–Volterra interaction terms
    learned by small MLPs, blocked CV kept spurious terms in about a third of the runs, BIC more
    often). There, the fixed relative threshold of :func:`sparse_regression` (a prior that a term
    must matter) is the robust choice; use :func:`select_model` for measured data with independent
    noise, or print the result to see the trade-off between sparsity and fit.

    Args:
        inputs, target, degree, library, optimizer, optimizer_options, weights: as for
            :func:`sparse_regression`.
        criterion: ``"cv"``, ``"aic"`` or ``"bic"``.
        thresholds: the thresholds to sweep (default: 21 values from 0.01 to 1,
            logarithmically spaced; below 1% of the target's RMS, terms tend to model the error
            of a learned function rather than the function). Required with
            ``threshold_mode="absolute"``, whose thresholds carry the data's units.
        threshold_mode: how the thresholds are read, as for :func:`sparse_regression`.
        folds: the number of blocks for ``"cv"``, ``>= 2``.

    Returns:
        A :class:`ModelSelection` with ``best`` and every ``candidates`` and its score.
    """
    if criterion not in CRITERIA:
        raise ValueError(
            f"`criterion` must be one of {', '.join(map(repr, CRITERIA))}, got {criterion!r}"
        )
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"`folds` must be an integer >= 2, got {folds!r}")
    mode = check_threshold_mode(threshold_mode, optimizer)
    if thresholds is None and mode == "absolute":
        raise ValueError(
            "threshold_mode='absolute' needs `thresholds` (in the units of the coefficients), "
            "e.g. thresholds=[0.01, 0.03, 0.1]"
        )
    grid = np.geomspace(0.01, 1.0, 21) if thresholds is None else list(thresholds)
    grid = sorted(check_threshold(t) for t in grid)
    if not grid:
        raise ValueError("`thresholds` is empty; give at least one threshold")
    design = build_design(inputs, target, degree=degree, library=library, weights=weights)
    if criterion == "cv" and design.weights.size < 2 * folds:
        raise ValueError(
            f"`folds={folds}` needs at least {2 * folds} samples, got {design.weights.size}"
        )
    found: dict[tuple[bool, ...], tuple[float, np.ndarray]] = {}
    for threshold in grid:
        if mode == "share":
            support = select_support(design, threshold, optimizer, optimizer_options)
        else:
            support = design.usable.copy()
        c, support = refit(design, support, threshold, mode)
        found.setdefault(tuple(support), (threshold, c))
    found.setdefault((False,) * len(design.names), (math.inf, np.zeros(len(design.names))))
    candidates = []
    for key, (threshold, c) in found.items():
        support = np.array(key, dtype=bool)
        score = _score(design, support, c, criterion, folds)
        expression = make_expression(design, c, support, threshold)
        candidates.append(Candidate(expression, threshold, score))
    candidates.sort(key=lambda cand: (len(cand.expression), cand.threshold))
    best = min(candidates, key=lambda cand: (cand.score, len(cand.expression)))
    return ModelSelection(best=best.expression, candidates=tuple(candidates), criterion=criterion)


def _score(design: Design, support: np.ndarray, c: np.ndarray, criterion: str, folds: int) -> float:
    if criterion == "cv":
        return _blocked_cv(design.matrix, design.rhs, support, folds)
    n = design.num_samples
    k = int(support.sum())
    rss = max(float(((design.rhs - design.matrix @ c) ** 2).sum()), _EXACT)
    fit = n * math.log(rss / n)
    if criterion == "bic":
        return fit + k * math.log(n)
    correction = 2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf
    return fit + 2 * k + correction


def _blocked_cv(matrix: np.ndarray, rhs: np.ndarray, support: np.ndarray, folds: int) -> float:
    """Held-out sum of squares over contiguous blocks, relative to ``|rhs|^2 = 1``."""
    total = 0.0
    for block in _blocks(len(rhs), folds):
        train = np.ones(len(rhs), dtype=bool)
        train[block] = False
        c = least_squares(matrix[train], rhs[train], support)
        total += float(((rhs[block] - matrix[block] @ c) ** 2).sum())
    return max(total, _EXACT)


def _blocks(n: int, folds: int) -> Sequence[np.ndarray]:
    return np.array_split(np.arange(n), folds)
