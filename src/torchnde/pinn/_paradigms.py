"""Training paradigms: plain whole-domain training, curriculum regularisation, sequence-to-sequence
time marching and causal training, each a sequence of phases reported one by one."""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..training._checks import check_count, check_positive
from ._conditions import InitialCondition, Observations
from ._loss import CausalWeights
from ._problem import PDEProblem
from ._result import PhaseStatus

__all__ = [
    "AbstractParadigm",
    "Causal",
    "Curriculum",
    "PiecewiseInTime",
    "Plain",
    "TimeMarching",
]


class AbstractParadigm(abc.ABC):
    """How a problem is trained: which phases, in which order, each building on the last.

    A paradigm is a frozen dataclass; :meth:`run` calls ``runner.phase(...)`` for each phase
    (see :class:`~torchnde.pinn.PhaseRunner`).
    """

    name: ClassVar[str]

    def check(self, problem: PDEProblem) -> None:
        """Raise if the paradigm does not fit ``problem``."""

    @abc.abstractmethod
    def run(self, runner: Any) -> None:
        """Train the phases."""

    def describe(self) -> dict[str, Any]:
        """The paradigm as plain data."""
        return {"name": self.name, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class Plain(AbstractParadigm):
    """Train on the whole domain at the target coefficients at once (the usual PINN)."""

    name: ClassVar[str] = "plain"

    def run(self, runner):
        runner.phase("whole domain", "plain", {}, runner.problem)


@dataclass(frozen=True)
class Curriculum(AbstractParadigm):
    """Curriculum regularisation (Krishnapriyan, Gholami, Zhe, Kirby & Mahoney, *Characterizing
    possible failure modes in physics-informed neural networks*, NeurIPS 2021, §4): train at
    an easy value of one coefficient first, then at harder ones, each stage warm-started from the
    previous weights, ending at the problem's own value.

    A guard keeps the curriculum from advancing past a stage that has not converged: with a
    ``tolerance``, a stage whose final loss is above it is trained again (``retries`` times,
    from where it stopped), then, if ``refine`` allows, the step is halved (a stage between the
    last converged value and this one, from the last converged weights); if it still has not
    converged the curriculum stops there, and the report says where and why.

    Args:
        coefficient: the coefficient scheduled, e.g. ``"beta"``.
        values: its values stage by stage; the last must be the problem's own value.
        tolerance: the loss a stage must reach to count as converged; None: no guard.
        retries: extra budgets a stage gets before the step is halved.
        refine: how many times a step may be halved.
    """

    name: ClassVar[str] = "curriculum"
    coefficient: str
    values: Sequence[float]
    tolerance: float | None = None
    retries: int = 0
    refine: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.coefficient, str):
            raise TypeError(f"`coefficient` must be a name, got {self.coefficient!r}")
        values = tuple(self.values) if isinstance(self.values, Sequence) else None
        if not values or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in values
        ):
            raise ValueError(
                f"`values` must be a non-empty list of finite numbers, got {self.values!r}"
            )
        object.__setattr__(self, "values", tuple(float(v) for v in values))
        if self.tolerance is not None:
            check_positive(self.tolerance, "tolerance")
        check_count(self.retries, "retries", minimum=0)
        check_count(self.refine, "refine", minimum=0)

    def check(self, problem):
        if self.coefficient not in problem.coefficients:
            known = ", ".join(problem.coefficients) or "none"
            raise ValueError(
                f"the curriculum schedules {self.coefficient!r}, which is not a known coefficient "
                f"of the problem (known: {known})"
            )
        target = problem.coefficients[self.coefficient]
        if not math.isclose(self.values[-1], target, rel_tol=1e-12, abs_tol=1e-12):
            raise ValueError(
                f"the curriculum must end at the problem's {self.coefficient}={target:g}, but its "
                f"last value is {self.values[-1]:g}; append {target:g} to `values`"
            )

    def run(self, runner):
        queue = list(self.values)
        refinements = self.refine
        last_good: int | None = None  # phase index of the last converged stage
        while queue:
            value = queue.pop(0)
            result = self._stage(runner, value, retry=0)
            for attempt in range(1, self.retries + 1):
                if result.ok or result.status is PhaseStatus.NONFINITE:
                    break
                result = self._stage(runner, value, retry=attempt)
            if result.ok:
                last_good = result.index
                continue
            if result.status is PhaseStatus.NONFINITE:
                runner.stop(f"{self.coefficient}={value:g}: {result.message}")
                return
            if refinements and last_good is not None:
                refinements -= 1
                previous = runner.phases[last_good].settings[self.coefficient]
                queue[:0] = [(previous + value) / 2, value]
                runner.restore(last_good)
                continue
            runner.stop(
                f"the curriculum did not advance past {self.coefficient}={value:g}: "
                f"{result.message}"
            )
            return

    def _stage(self, runner, value: float, retry: int):
        name = f"{self.coefficient}={value:g}" + (f" (retry {retry})" if retry else "")
        problem = runner.problem.with_coefficients(**{self.coefficient: value})
        return runner.phase(
            name, "curriculum", {self.coefficient: value}, problem, tolerance=self.tolerance
        )


class PiecewiseInTime(nn.Module):
    """The time-marching predictor: block ``k``'s model on ``[edges[k], edges[k + 1]]``.

    Args:
        models: one model per block.
        edges: the block boundaries, ``len(models) + 1`` increasing times.
        column: the time coordinate's column in the points.
    """

    def __init__(self, models: Sequence[nn.Module], edges: Sequence[float], column: int):
        super().__init__()
        if len(edges) != len(models) + 1:
            raise ValueError("`edges` must hold one more time than there are models")
        self.blocks = nn.ModuleList(models)
        self.register_buffer("edges", torch.tensor(list(edges), dtype=torch.float64))
        self.column = column

    def block_of(self, t: torch.Tensor) -> torch.Tensor:
        """The block index of each time (a time on an edge belongs to the earlier block)."""
        inner = self.edges[1:-1].to(t.dtype)
        return torch.bucketize(t.contiguous(), inner, right=False)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        which = self.block_of(points[:, self.column])
        parts = []
        order = []
        for k, block in enumerate(self.blocks):
            rows = (which == k).nonzero().squeeze(-1)
            if rows.numel():
                parts.append(block(points[rows]))
                order.append(rows)
        out = torch.cat(parts)
        return out[torch.argsort(torch.cat(order))]


class _ModelAt:
    """An initial condition's value taken from the previous block's model at time ``t``.

    The previous model is frozen, and a block evaluates this value again and again at the same
    points (its collocation and condition points, the evaluation grid); each previous model in
    turn takes its own initial value from the block before it. Evaluated afresh, block ``k``
    would pass through all ``k - 1`` earlier networks at every loss evaluation. So the value at
    a point set, and each derivative along the space coordinates that autograd asks for, is
    computed once (through the earlier networks) and kept (:class:`_Frozen`): the cost of a
    block stays flat along the march, and the values and derivatives are those of the model.
    ``cache=False`` evaluates the model every time (for tests)."""

    def __init__(
        self,
        model: nn.Module,
        names: Sequence[str],
        time: str,
        t: float,
        columns,
        cache: bool = True,
    ):
        self.model = model
        self.names = tuple(names)
        self.time = time
        self.t = t
        self.columns = list(columns)
        self.space = tuple(name for name in self.names if name != time)
        self.frozen = _Frozen(self._evaluate) if cache else None

    def __call__(self, **coordinates: torch.Tensor) -> torch.Tensor:
        space = torch.stack([coordinates[name] for name in self.space], dim=-1)
        out = self._evaluate(space) if self.frozen is None else self.frozen(space)
        return out[:, 0] if out.shape[1] == 1 else out

    def _evaluate(self, space: torch.Tensor) -> torch.Tensor:
        """The model's outputs ``(n, len(columns))`` at the space points ``(n, s)`` and ``t``."""
        columns = dict(zip(self.space, space.unbind(-1)))
        columns[self.time] = torch.full_like(space[:, 0], self.t)
        points = torch.stack([columns[name] for name in self.names], dim=-1)
        return self.model(points)[:, self.columns]


class _Frozen:
    """A fixed row-wise function ``f: (n, s) -> (n, c)`` (each row's output depends only on
    that row) whose values and partial derivatives are kept per point set.

    ``frozen(x)`` has the value ``f(x)``, and autograd differentiates it as ``f``, to any order:
    the derivative along coordinate ``i`` of the node for the multi-index ``α`` is the node for
    ``α + (i,)`` (:class:`_FrozenValue`), whose values are computed by autograd through ``f``
    the first time they are needed at a point set and then reused. A point set is recognised by
    its values (``torch.equal``); the last few are kept per node.
    """

    size = 4  # point sets kept per derivative

    def __init__(self, fn):
        self.fn = fn
        self._values: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _FrozenValue.apply(x, self, ())

    def value(self, x: torch.Tensor, index: tuple[int, ...]) -> torch.Tensor:
        """``∂^index f`` at ``x`` (no graph), computed once per point set."""
        kept = self._values.setdefault(index, [])
        for points, values in kept:
            if points.shape == x.shape and torch.equal(points, x):
                return values
        values = self._compute(x, index)
        kept.append((x.detach().clone(), values))
        del kept[: -self.size]
        return values

    def _compute(self, x: torch.Tensor, index: tuple[int, ...]) -> torch.Tensor:
        with torch.enable_grad():
            points = x.detach().requires_grad_(True)
            out = self.fn(points)
            for i in index:
                columns = []
                for c in range(out.shape[1]):
                    if not out.requires_grad:  # constant along the space coordinates
                        columns.append(torch.zeros_like(out[:, c]))
                        continue
                    (grad,) = torch.autograd.grad(
                        out[:, c].sum(), points, create_graph=True, allow_unused=True
                    )
                    columns.append(torch.zeros_like(out[:, c]) if grad is None else grad[:, i])
                out = torch.stack(columns, dim=-1)
        return out.detach()


class _FrozenValue(torch.autograd.Function):
    """``∂^index f(x)`` from the cache of ``frozen``, differentiable in ``x`` through the next
    derivatives' nodes."""

    @staticmethod
    def forward(ctx, x, frozen, index):
        ctx.save_for_backward(x)
        ctx.frozen, ctx.index = frozen, index
        return frozen.value(x.detach(), index).clone()  # the kept tensor stays graph-free

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        parts = [
            (grad_output * _FrozenValue.apply(x, ctx.frozen, (*ctx.index, i))).sum(-1)
            for i in range(x.shape[-1])
        ]
        return torch.stack(parts, dim=-1), None, None


@dataclass(frozen=True)
class TimeMarching(AbstractParadigm):
    """Sequence-to-sequence learning by time marching (Krishnapriyan et al. 2021, §4): the time
    span is cut into blocks learnt one after another; each block's initial condition is the
    previous block's prediction at its end, and its network starts from the previous block's
    weights (inputs are scaled over the whole span, so the warm start continues the previous
    solution). Each block gets the full stage budget and collocation points; the report gives
    each block's error and the error so far.

    Args:
        blocks: the number of equal blocks; or
        block: the length of each block (the span must be a whole number of them).
        tolerance: a block has converged when its final loss is at most this; one that has
            not is trained again (``retries`` times, from where it stopped), then stops the
            march (None: no guard).
        retries: extra budgets a block above the tolerance gets.
        rescale: scale each block's network inputs over the block's own box (time ``[t_k,
            t_{k+1}]`` to ``[−1, 1]``) instead of the whole span's, where a block is a sliver
            ``2/blocks`` wide; the warm start then starts from the previous block's weights
            without continuing its solution.
    """

    name: ClassVar[str] = "time_marching"
    blocks: int | None = None
    block: float | None = None
    tolerance: float | None = None
    retries: int = 0
    rescale: bool = False

    def __post_init__(self) -> None:
        if (self.blocks is None) == (self.block is None):
            raise ValueError("give exactly one of `blocks` (a count) and `block` (a length)")
        if self.blocks is not None:
            check_count(self.blocks, "blocks")
        if self.block is not None:
            check_positive(self.block, "block")
        if self.tolerance is not None:
            check_positive(self.tolerance, "tolerance")
        check_count(self.retries, "retries", minimum=0)
        if not isinstance(self.rescale, bool):
            raise TypeError(f"`rescale` must be True or False, got {self.rescale!r}")
        if self.retries and self.tolerance is None:
            raise ValueError("`retries` needs a `tolerance` (the loss a block must reach)")

    def edges(self, problem: PDEProblem) -> list[float]:
        """The block boundaries over the problem's time span."""
        interval = problem.domain[problem.domain.time]
        count = self.blocks
        if count is None:
            ratio = interval.length / self.block
            count = round(ratio)
            if count < 1 or abs(ratio - count) > 1e-9 * max(1.0, ratio):
                raise ValueError(
                    f"`block`={self.block:g} does not divide the time span "
                    f"[{interval.low:g}, {interval.high:g}] into whole blocks; use blocks=N"
                )
        step = interval.length / count
        return [interval.low + k * step for k in range(count)] + [interval.high]

    def check(self, problem):
        if problem.domain.time is None:
            raise ValueError("time marching needs a time coordinate (Domain(..., time='t'))")
        if not any(isinstance(c, InitialCondition) for c in problem.conditions):
            raise ValueError("time marching needs an InitialCondition to hand from block to block")
        self.edges(problem)

    def run(self, runner):
        problem = runner.problem
        domain = problem.domain
        edges = self.edges(problem)
        column = domain.index(domain.time)
        models: list[nn.Module] = []
        for k in range(len(edges) - 1):
            low, high = edges[k], edges[k + 1]
            block = problem.replace(
                domain=domain.restrict(domain.time, low, high),
                conditions=self._conditions(problem, runner.model if k else None, low, high),
            )

            def so_far(model, k=k, high=high):
                predictor = PiecewiseInTime([*models, model], edges[: k + 2], column)
                return runner.error(predictor, problem, (edges[0], high))

            name = f"block {k + 1}/{len(edges) - 1}: t∈[{low:.3g}, {high:.3g}]"
            for attempt in range(self.retries + 1):
                result = runner.phase(
                    name + (f" (retry {attempt})" if attempt else ""),
                    "block",
                    {"t0": low, "t1": high},
                    block,
                    scaling=block.domain if self.rescale else domain,
                    sample_key=k,
                    tolerance=self.tolerance,
                    so_far=so_far,
                )
                if result.ok or result.status is PhaseStatus.NONFINITE:
                    break
            models.append(runner.model)
            for p in runner.model.parameters():
                p.requires_grad_(False)
            if not result.ok:
                runner.stop(f"block {k + 1} ended {result.status.value}: {result.message}")
                return
        runner.predictor = PiecewiseInTime(models, edges, column)

    @staticmethod
    def _conditions(problem: PDEProblem, previous: nn.Module | None, low: float, high: float):
        """The block's conditions: the initial condition taken from the previous block's model
        (after the first block), observations cut to the block's time span."""
        domain = problem.domain
        out = []
        for condition in problem.conditions:
            if isinstance(condition, InitialCondition) and previous is not None:
                columns = condition.output_columns(problem.outputs)
                value = _ModelAt(previous, domain.names, domain.time, low, columns)
                condition = dataclasses.replace(condition, value=value)
            elif isinstance(condition, Observations):
                condition = _within(condition, domain, low, high)
                if condition is None:
                    continue
            out.append(condition)
        return out


def _within(data: Observations, domain, low: float, high: float) -> Observations | None:
    """The observations whose time lies in ``[low, high]`` (None if there are none)."""
    points = data.matrix(domain)
    t = points[:, domain.index(domain.time)]
    keep = ((t >= low - 1e-12) & (t <= high + 1e-12)).nonzero().squeeze(-1)
    if keep.numel() == 0:
        return None
    return dataclasses.replace(data, points=points[keep], values=data.values[keep])


@dataclass(frozen=True)
class Causal(AbstractParadigm):
    """Causal training (Wang, Sankaran & Perdikaris 2022) as a schedule of stages with a
    growing causality parameter ε, each warm-started from the last: small ε lets later times
    count early, large ε insists that earlier times are resolved first. The report gives the
    smallest causal weight at the end of each stage (near 1: every time slice is resolved).

    Args:
        epsilons: ε stage by stage (Wang et al. use 1e-2 … 1e2).
        bins: the time slices.
    """

    name: ClassVar[str] = "causal"
    epsilons: Sequence[float] = (1e-2, 1e-1, 1.0, 10.0, 100.0)
    bins: int = 32

    def __post_init__(self) -> None:
        epsilons = tuple(self.epsilons)
        if not epsilons:
            raise ValueError("`epsilons` must hold at least one value")
        for value in epsilons:
            check_positive(value, "epsilons[...]")
        object.__setattr__(self, "epsilons", tuple(float(v) for v in epsilons))
        check_count(self.bins, "bins", minimum=2)

    def check(self, problem):
        if problem.domain.time is None:
            raise ValueError("causal training needs a time coordinate (Domain(..., time='t'))")

    def run(self, runner):
        for epsilon in self.epsilons:
            result = runner.phase(
                f"causal ε={epsilon:g}",
                "causal",
                {"epsilon": epsilon},
                runner.problem,
                causal=CausalWeights(epsilon, self.bins),
            )
            if not result.ok:
                runner.stop(f"causal ε={epsilon:g} ended {result.status.value}: {result.message}")
                return
