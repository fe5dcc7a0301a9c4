"""Where the residual and the conditions are enforced: collocation samplers (grid, uniform random,
Latin hypercube, Sobol) and residual-based adaptive refinement."""

from __future__ import annotations

import abc
import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..training._checks import check_count, nearest

__all__ = [
    "SAMPLERS",
    "AbstractSampler",
    "Grid",
    "LatinHypercube",
    "ResidualRefinement",
    "Sobol",
    "Uniform",
    "sampler_by_name",
]


class AbstractSampler(abc.ABC):
    """Draws points of the unit cube; the domain maps them onto its box.

    Subclasses are frozen dataclasses with a ``name`` and implement :meth:`unit`.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def unit(self, n: int, periodic: Sequence[bool], seed: int) -> torch.Tensor:
        """``n`` points of ``[0, 1]^d`` (float64, shape ``(n, d)`` with ``d = len(periodic)``);
        a sampler may return a nearby count where only that fills its pattern (a grid)."""

    def describe(self) -> dict[str, Any]:
        """The sampler as plain data."""
        return {"name": self.name, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class Grid(AbstractSampler):
    """An even tensor grid: about ``n ** (1 / d)`` points per coordinate (so ``round(n ** (1 /
    d)) ** d`` points in all), ends included except the high end of a periodic coordinate."""

    name: ClassVar[str] = "grid"

    def unit(self, n, periodic, seed):
        d = len(periodic)
        if d == 0:
            return torch.zeros(1, 0, dtype=torch.float64)
        per_axis = max(2, round(n ** (1.0 / d)))
        axes = [
            torch.linspace(0.0, 1.0, per_axis + int(p), dtype=torch.float64)[:per_axis]
            for p in periodic
        ]
        grids = torch.meshgrid(*axes, indexing="ij")
        return torch.stack([g.reshape(-1) for g in grids], dim=-1)


@dataclass(frozen=True)
class Uniform(AbstractSampler):
    """Independent uniform random points."""

    name: ClassVar[str] = "uniform"

    def unit(self, n, periodic, seed):
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(n, len(periodic), generator=generator, dtype=torch.float64)


@dataclass(frozen=True)
class LatinHypercube(AbstractSampler):
    """Latin hypercube points (McKay, Beckman & Conover 1979): each coordinate's ``n`` strata
    hold one point each (``scipy.stats.qmc.LatinHypercube``)."""

    name: ClassVar[str] = "latin_hypercube"

    def unit(self, n, periodic, seed):
        qmc = _qmc()
        if not periodic:
            return torch.zeros(n, 0, dtype=torch.float64)
        return torch.from_numpy(qmc.LatinHypercube(d=len(periodic), seed=seed).random(n))


@dataclass(frozen=True)
class Sobol(AbstractSampler):
    """Scrambled Sobol' points (a low-discrepancy sequence; ``scipy.stats.qmc.Sobol``). Best
    balanced when ``n`` is a power of two.

    Args:
        scramble: Owen scrambling (randomised by the seed); False gives the plain sequence.
    """

    name: ClassVar[str] = "sobol"
    scramble: bool = True

    def unit(self, n, periodic, seed):
        qmc = _qmc()
        if not periodic:
            return torch.zeros(n, 0, dtype=torch.float64)
        engine = qmc.Sobol(d=len(periodic), scramble=self.scramble, seed=seed)
        with warnings.catch_warnings():  # the balance warning for n not a power of two
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(engine.random(n))


def _qmc() -> Any:
    try:
        from scipy.stats import qmc
    except ImportError:
        raise ImportError(
            "Latin hypercube and Sobol sampling need scipy: `pip install scipy`, or use "
            "Uniform() or Grid()"
        ) from None
    return qmc


#: sampler names (configs and :func:`sampler_by_name`)
SAMPLERS: dict[str, type[AbstractSampler]] = {
    cls.name: cls for cls in (Grid, Uniform, LatinHypercube, Sobol)
}


def sampler_by_name(name: str | AbstractSampler) -> AbstractSampler:
    """A sampler from its name (``grid``, ``uniform``, ``latin_hypercube``, ``sobol``)."""
    if isinstance(name, AbstractSampler):
        return name
    if not isinstance(name, str):
        raise TypeError(f"a sampler must be a name or a sampler object, got {name!r}")
    key = name.lower().replace("-", "_")
    if key not in SAMPLERS:
        raise ValueError(
            f"unknown sampler {name!r}{nearest(key, SAMPLERS)}; valid: {', '.join(SAMPLERS)}"
        )
    return SAMPLERS[key]()


@dataclass(frozen=True)
class ResidualRefinement:
    """Residual-based adaptive refinement (RAR; Lu, Meng, Mao & Karniadakis, *DeepXDE*, SIAM
    Review 2021): after a phase is trained, draw ``candidates`` fresh points, add the ``add``
    where the residual is largest to the collocation set, and train again with ``stages``
    (the phase's own stages if None); ``rounds`` times.

    Args:
        rounds: refinement rounds per phase.
        candidates: fresh points scored per round.
        add: points added per round.
        stages: the optimiser stages of each refinement round (a list of
            :class:`torchnde.training.Stage`); None: the phase's.
    """

    rounds: int = 1
    candidates: int = 10_000
    add: int = 100
    stages: tuple | None = None

    def __post_init__(self) -> None:
        check_count(self.rounds, "rounds")
        check_count(self.candidates, "candidates")
        check_count(self.add, "add")
        if self.add > self.candidates:
            raise ValueError(
                f"`add`={self.add} cannot exceed `candidates`={self.candidates}: the added "
                "points are chosen among the candidates"
            )
        if self.stages is not None:
            object.__setattr__(self, "stages", tuple(self.stages))

    @staticmethod
    def select(candidates: torch.Tensor, residual: torch.Tensor, add: int) -> torch.Tensor:
        """The ``add`` rows of ``candidates`` ``(m, d)`` with the largest ``|residual|``
        (``(m,)`` or ``(m, k)``; several equations count by their summed squares)."""
        score = residual.detach().square()
        if score.dim() > 1:
            score = score.sum(dim=tuple(range(1, score.dim())))
        score = torch.where(torch.isfinite(score), score, torch.full_like(score, math.inf))
        return candidates[torch.topk(score, min(add, score.numel())).indices]

    def describe(self) -> dict[str, Any]:
        """As plain data."""
        return {
            "rounds": self.rounds,
            "candidates": self.candidates,
            "add": self.add,
            "stages": None if self.stages is None else [s.describe() for s in self.stages],
        }
