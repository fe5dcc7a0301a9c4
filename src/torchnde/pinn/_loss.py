"""The physics-informed loss: the residual's mean square plus each soft condition's, with fixed
or adaptive weights, and optionally causal weights on the residual along time."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..training._checks import check_count, check_positive, nearest
from ._conditions import PreparedCondition
from ._problem import Coefficients, PDEProblem

__all__ = ["AdaptiveWeights", "CausalWeights", "PhaseLoss", "check_weights"]


@dataclass(frozen=True)
class AdaptiveWeights:
    """Condition weights set from gradient norms, by learning-rate annealing (Wang, Teng &
    Perdikaris, *Understanding and mitigating gradient flow pathologies in physics-informed
    neural networks*, SIAM J. Sci. Comput. 2021, Algorithm 1): every ``every`` steps of a
    first-order stage,

    ``λ̂_i = max_θ |∇_θ L_residual| / mean_θ |∇_θ L_i|``, ``λ_i ← (1 − α) λ_i + α λ̂_i``.

    The residual's weight stays 1. Weights are frozen during L-BFGS stages (a moving objective
    would break its line search and curvature pairs).

    Args:
        every: steps between updates.
        alpha: the update's share, in (0, 1].
        initial: starting weights, term -> value (default 1 for every term).
    """

    every: int = 100
    alpha: float = 0.9
    initial: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        check_count(self.every, "every")
        check_positive(self.alpha, "alpha")
        if self.alpha > 1:
            raise ValueError(f"`alpha` must lie in (0, 1], got {self.alpha}")


@dataclass(frozen=True)
class CausalWeights:
    """Causal training (Wang, Sankaran & Perdikaris, *Respecting causality is all you need for
    training physics-informed neural networks*, arXiv:2203.07404, 2022): the time span is cut
    into ``bins`` slices with mean squared residuals ``L_1 … L_M``; slice ``i`` is weighted by
    ``w_i = exp(−ε Σ_{k<i} L_k)`` (not differentiated), so later times count only once earlier
    ones are resolved. The residual term is ``mean_i w_i L_i``.

    Args:
        epsilon: the causality parameter ε.
        bins: the number of time slices.
    """

    epsilon: float = 1.0
    bins: int = 32

    def __post_init__(self) -> None:
        check_positive(self.epsilon, "epsilon")
        check_count(self.bins, "bins", minimum=2)

    def weights(self, slice_losses: torch.Tensor) -> torch.Tensor:
        """``w`` ``(M,)`` from the slices' losses ``(M,)``."""
        before = torch.cumsum(slice_losses.detach(), 0) - slice_losses.detach()
        return torch.exp(-self.epsilon * before)


def check_weights(weights: Mapping[str, float] | None, terms: Sequence[str]) -> dict[str, float]:
    """Fixed weights for ``terms`` (1 where not given); unknown names raise naming the terms."""
    weights = dict(weights or {})
    for name, value in weights.items():
        if name not in terms:
            raise ValueError(
                f"`weights` names {name!r}, which is not a loss term{nearest(str(name), terms)}; "
                f"the terms are {', '.join(terms)}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ValueError(f"`weights[{name!r}]` must be a number >= 0, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"`weights[{name!r}]` must be finite, got {value!r}")
    return {term: float(weights.get(term, 1.0)) for term in terms}


class PhaseModule(nn.Module):
    """What the trainer trains in one phase: the model, plus the loss weights and the phase's
    counters as buffers, so checkpoints hold them and a resumed run continues them bitwise."""

    def __init__(self, model: nn.Module, weights: Sequence[float]):
        super().__init__()
        self.model = model
        dtype = next(model.parameters()).dtype
        device = next(model.parameters()).device
        self.register_buffer("weights", torch.tensor(list(weights), dtype=dtype, device=device))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("stage", torch.zeros((), dtype=torch.int64))


class PhaseLoss:
    """``loss(module, batch)`` for :class:`~torchnde.training.Trainer`: the weighted sum of the
    phase's terms. It remembers the terms of each step's first evaluation (the loss the trainer
    reports) in :attr:`last_terms`.

    Args:
        problem: the phase's problem (its coefficients already set).
        points: the collocation points ``(n, dim)``.
        conditions: the soft conditions, prepared.
        adaptive: adaptive weights, or None for fixed ones.
        causal: causal weights, or None.
        first_order: per stage, whether its optimiser is first-order (adaptive weights move
            only then).
        cached: per stage, whether to keep recent evaluations to answer torch's L-BFGS
            evaluating its accepted point again at the start of each call (see
            ``_Evaluations``); default: the stages that are not first-order. Not needed where
            the trainer runs the iterations in stretches (``Trainer(fuse_lbfgs=True)``).
    """

    def __init__(
        self,
        problem: PDEProblem,
        points: torch.Tensor,
        conditions: Sequence[PreparedCondition],
        *,
        adaptive: AdaptiveWeights | None = None,
        causal: CausalWeights | None = None,
        first_order: Sequence[bool] = (True,),
        cached: Sequence[bool] | None = None,
    ):
        self.problem = problem
        self.points = points
        self.conditions = list(conditions)
        self.terms = ("residual", *(c.term for c in self.conditions))
        self.adaptive = adaptive
        self.causal = causal
        self.first_order = list(first_order)
        self.cached = [not f for f in self.first_order] if cached is None else list(cached)
        self.last_terms: dict[str, float] | None = None
        self.evaluations = 0  # loss evaluations so far (L-BFGS line searches take several)
        self.last_causal_min: float | None = None
        self._seen: list[tuple[float, dict[str, float]]] = []  # (loss, terms) per evaluation
        self._record = True
        self._cache: _Evaluations | None = None
        if causal is not None:
            self._bins = _time_bins(problem, points, causal.bins)
        self._value_points, self._value_rows = _merged_value_points(self.conditions)

    def coefficients(self, model: nn.Module) -> Coefficients:
        """The coefficients the residual reads: known values and the model's learnable ones."""
        learnable = getattr(model, "coefficients", {})
        return Coefficients({**self.problem.coefficients, **dict(learnable.items())})

    def residual_term(self, model: nn.Module) -> torch.Tensor:
        """The residual's mean square (causally weighted if so configured)."""
        residual = self.problem.evaluate_residual(model, self.points, self.coefficients(model))
        squares = residual.square().sum(dim=-1)
        if self.causal is None:
            return squares.mean()
        bins = self.causal.bins
        totals = torch.zeros(bins, dtype=squares.dtype, device=squares.device)
        totals = totals.index_add(0, self._bins, squares)
        counts = torch.bincount(self._bins, minlength=bins).clamp_min(1).to(squares.dtype)
        slices = totals / counts
        weights = self.causal.weights(slices)
        self.last_causal_min = float(weights.min())
        return (weights * slices).mean()

    def evaluate(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Every term, name -> 0-dim tensor. The conditions that need only the model's values
        share one network pass over all their points (fewer, larger operations than a pass
        each)."""
        values = {"residual": self.residual_term(model)}
        if self._value_points is not None:
            out = model(self._value_points)
            for condition, (start, stop) in self._value_rows:
                values[condition.term] = condition.loss_from_values(out[start:stop])
        for condition in self.conditions:
            if condition.term not in values:
                values[condition.term] = condition.loss(model)
        return {name: values[name] for name in self.terms}

    def __call__(self, module: PhaseModule, batch: torch.Tensor | None = None) -> torch.Tensor:
        cache = self._cache_for(module)
        hit = None if cache is None else cache.lookup(module.weights)
        if hit is not None:
            if self._record:
                self.last_terms = dict(hit.terms)
                self._record = False
            self._seen.append((hit.value, hit.terms))
            return cache.answer(hit)
        self.evaluations += 1
        values = self.evaluate(module.model)
        if self._record:
            if self._adaptive_due(module):
                self._update_weights(module, values)
            self._record = False
            record = True
        else:
            record = False
        stacked = torch.stack([values[name] for name in self.terms])
        terms = dict(zip(self.terms, stacked.detach().tolist()))  # one host sync for all terms
        if record:
            self.last_terms = terms
        loss = (module.weights * stacked).sum()
        value = float(loss.detach())  # the value the trainer reports, bitwise
        if len(self._seen) >= _SEEN_LIMIT:  # nobody asks for terms_at: keep the latest
            del self._seen[: _SEEN_LIMIT // 2]
        self._seen.append((value, terms))
        if cache is not None:
            cache.pending(module.weights, loss.detach(), terms, value)
        return loss

    def terms_at(self, value: float) -> dict[str, float]:
        """The terms of the latest evaluation whose loss was ``value`` (the loss a trainer step
        reports: under ``Trainer(fuse_lbfgs=True)`` several steps are reported after one call
        of L-BFGS, each the value of one of its evaluations); earlier evaluations are then
        forgotten. The terms of the step's first evaluation if none matches."""
        for index in range(len(self._seen) - 1, -1, -1):
            if self._seen[index][0] == value:
                terms = self._seen[index][1]
                del self._seen[:index]
                return dict(terms)
        self._seen.clear()
        return dict(self.last_terms or {})

    def _cache_for(self, module: PhaseModule) -> _Evaluations | None:
        """The cache of recent evaluations while an L-BFGS stage runs, else None."""
        stage = min(int(module.stage), len(self.cached) - 1)
        if not self.cached[stage]:
            return None
        if self._cache is None or self._cache.module is not module:
            self._cache = _Evaluations(module)
        return self._cache

    def close(self) -> None:
        """Release the evaluation cache (and its hooks on the parameters)."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def step_done(self) -> None:
        """The trainer finished a step: record the terms of the next step's first evaluation."""
        self._record = True

    def _adaptive_due(self, module: PhaseModule) -> bool:
        if self.adaptive is None or len(self.terms) < 2:
            return False
        stage = min(int(module.stage), len(self.first_order) - 1)
        return self.first_order[stage] and int(module.steps) % self.adaptive.every == 0

    def _update_weights(self, module: PhaseModule, values: Mapping[str, torch.Tensor]) -> None:
        params = [p for p in module.parameters() if p.requires_grad]
        norms = {}
        for name in self.terms:
            grads = torch.autograd.grad(values[name], params, retain_graph=True, allow_unused=True)
            flat = [
                torch.zeros_like(p).reshape(-1) if g is None else g.reshape(-1)
                for g, p in zip(grads, params)
            ]  # a parameter a term does not use has a zero gradient there
            norms[name] = torch.cat(flat).abs()
        reference = norms["residual"].max()
        alpha = self.adaptive.alpha
        with torch.no_grad():
            for k, name in enumerate(self.terms[1:], start=1):
                mean = norms[name].mean()
                if not (torch.isfinite(mean) and mean > 0 and torch.isfinite(reference)):
                    continue
                module.weights[k] = (1 - alpha) * module.weights[k] + alpha * reference / mean


#: evaluations whose terms :meth:`PhaseLoss.terms_at` can still find
_SEEN_LIMIT = 20_000


def _merged_value_points(
    conditions: Sequence[PreparedCondition],
) -> tuple[torch.Tensor | None, list[tuple[PreparedCondition, tuple[int, int]]]]:
    """The points of every condition that needs only the model's values, stacked (None if
    fewer than two such conditions), and each one's rows in the stack."""
    parts, rows, start = [], [], 0
    for condition in conditions:
        points = condition.value_points
        if points is None:
            continue
        parts.append(points.detach())
        rows.append((condition, (start, start + points.shape[0])))
        start += points.shape[0]
    if len(parts) < 2:
        return None, []
    return torch.cat(parts), rows


def _time_bins(problem: PDEProblem, points: torch.Tensor, bins: int) -> torch.Tensor:
    domain = problem.domain
    if domain.time is None:
        raise ValueError(
            "causal weights need a time coordinate; the problem's domain has none (give "
            "Domain(..., time='t'))"
        )
    interval = domain[domain.time]
    fraction = (points[:, domain.index(domain.time)].double() - interval.low) / interval.length
    return (fraction * bins).floor().clamp(0, bins - 1).to(torch.int64)


class _Replay(torch.autograd.Function):
    """The value of a stored evaluation as a function of the parameters, whose backward pass
    hands back the stored gradients (scaled by the incoming gradient): one graph node instead
    of evaluating the network again."""

    @staticmethod
    def forward(ctx, loss, grads, *params):
        ctx.grads = grads
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_output):
        return (None, None, *(grad_output * g for g in ctx.grads))


@dataclass
class _Evaluation:
    flat: torch.Tensor  # the parameters it was taken at, flattened into one vector
    weights: torch.Tensor
    loss: torch.Tensor
    terms: dict[str, float]
    grads: list[torch.Tensor | None]
    value: float  # the loss as a Python float

    def surrogate(self, params: Sequence[torch.Tensor]) -> torch.Tensor:
        """A tensor with this evaluation's loss as its value and its gradients as its gradient:
        what the trainer's backward pass needs, without evaluating the network again."""
        return _Replay.apply(self.loss, tuple(self.grads), *params)


class _Evaluations:
    """The last few loss evaluations of an L-BFGS stage, each with the parameters it was taken
    at and the gradients the trainer's backward pass produced.

    torch's L-BFGS evaluates the loss again at the start of every ``step()`` although its line
    search has just evaluated that very point; with one iteration per trainer step (so that a
    checkpoint may fall between any two) that doubled the cost of an iteration. A lookup finds
    an evaluation at bitwise the same parameters and loss weights and answers with its value and
    gradients, so the iterates are bitwise those of the uncached run."""

    size = 6

    def __init__(self, module: PhaseModule):
        self.module = module
        self.params = [p for p in module.parameters() if p.requires_grad]
        self._index = {id(p): k for k, p in enumerate(self.params)}
        self.entries: list[_Evaluation] = []
        self._waiting: _Evaluation | None = None
        self._flat: torch.Tensor | None = None  # the current parameters, flattened
        self._handles = [p.register_post_accumulate_grad_hook(self._collect) for p in self.params]

    def lookup(self, weights: torch.Tensor) -> _Evaluation | None:
        self._waiting = None
        self._flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        for entry in reversed(self.entries):
            if (
                all(g is not None for g in entry.grads)
                and torch.equal(entry.weights, weights)
                and torch.equal(entry.flat, self._flat)
            ):
                return entry
        return None

    def answer(self, entry: _Evaluation) -> torch.Tensor:
        """The surrogate of a stored evaluation (see :meth:`_Evaluation.surrogate`)."""
        return entry.surrogate(self.params)

    def close(self) -> None:
        """Remove the gradient hooks from the parameters."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.entries = []

    def pending(
        self, weights: torch.Tensor, loss: torch.Tensor, terms: dict[str, float], value: float
    ) -> None:
        flat = self._flat
        if flat is None:  # not looked up first: flatten now
            flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        entry = _Evaluation(
            flat, weights.detach().clone(), loss, terms, [None] * len(self.params), value
        )
        self.entries = [*self.entries[-(self.size - 1) :], entry]
        self._waiting = entry
        self._flat = None

    def _collect(self, parameter: torch.Tensor) -> None:
        entry = self._waiting
        if entry is None or parameter.grad is None:
            return
        k = self._index.get(id(parameter))
        if k is not None:
            entry.grads[k] = parameter.grad.detach().clone()
