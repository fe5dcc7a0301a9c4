"""Conditions a physics-informed network must meet besides its equation: initial, Dirichlet,
Neumann and periodic conditions and observations. Each is a loss term (soft); initial, Dirichlet
and periodic conditions can also be built into the network (hard), so they hold exactly."""

from __future__ import annotations

import abc
import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ._derivatives import partial
from ._domain import SIDES, Domain
from ._sampling import AbstractSampler, Grid, Uniform

__all__ = [
    "AbstractCondition",
    "Dirichlet",
    "HardFace",
    "InitialCondition",
    "Neumann",
    "Observations",
    "Periodic",
    "PreparedCondition",
]

Value = float | torch.Tensor | Callable[..., Any]


# -- values -----------------------------------------------------------------------------------------


def evaluate_value(
    value: Value, coordinates: Mapping[str, torch.Tensor], width: int, label: str
) -> torch.Tensor:
    """A condition's target values at ``n`` points: shape ``(n, width)``.

    ``value`` is a number, a tensor of ``n`` (or ``n × width``) values, or a callable taking
    some of the coordinates as keyword arguments (by name: ``lambda x: torch.sin(x)``).
    """
    any_column = next(iter(coordinates.values()))
    n, dtype, device = any_column.shape[0], any_column.dtype, any_column.device
    if callable(value) and not isinstance(value, torch.Tensor):
        result = value(**_accepted(value, coordinates, label))
    else:
        result = value
    if isinstance(result, bool) or result is None:
        raise TypeError(f"{label}: the value must be a number or a tensor, got {result!r}")
    if isinstance(result, int | float):
        return torch.full((n, width), float(result), dtype=dtype, device=device)
    if not isinstance(result, torch.Tensor):
        raise TypeError(
            f"{label}: the value must be a number or a tensor, got {type(result).__name__}"
        )
    result = result.to(dtype=dtype, device=device)
    if result.dim() == 0:
        return result.expand(n, width).clone()
    if result.shape == (n,) and width == 1:
        return result.reshape(n, 1)
    if result.shape == (n, width):
        return result
    expected = f"({n},)" if width == 1 else f"({n}, {width})"
    raise ValueError(
        f"{label}: the value has shape {tuple(result.shape)} at {n} points, expected {expected} "
        "(one value per point" + ("" if width == 1 else " and output") + ")"
    )


def _accepted(function: Callable, coordinates: Mapping[str, torch.Tensor], label: str) -> dict:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # builtins without a signature: give everything
        return dict(coordinates)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(coordinates)
    arguments = {}
    for name, parameter in parameters.items():
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            raise TypeError(
                f"{label}: the value function must take coordinates by name, e.g. "
                "`lambda x: torch.sin(x)`"
            )
        if name in coordinates:
            arguments[name] = coordinates[name]
        elif parameter.default is inspect.Parameter.empty:
            raise TypeError(
                f"{label}: the value function asks for {name!r}, which is not a coordinate here; "
                f"it may take {', '.join(coordinates)}"
            )
    return arguments


# -- conditions -------------------------------------------------------------------------------------


class PreparedCondition(abc.ABC):
    """A condition's points and targets for one training phase; :meth:`loss` is its term."""

    term: str

    @abc.abstractmethod
    def loss(self, model: torch.nn.Module) -> torch.Tensor:
        """The mean squared mismatch, a 0-dim tensor."""

    @property
    def value_points(self) -> torch.Tensor | None:
        """The points at which the loss needs the model's values only (no derivatives), or None
        when it needs more. Conditions that have them are evaluated in one network pass
        together (see :meth:`loss_from_values`)."""
        return None

    def loss_from_values(self, out: torch.Tensor) -> torch.Tensor:
        """The term from the model's output ``out`` at :attr:`value_points`."""
        raise NotImplementedError(f"{type(self).__name__} needs more than the model's values")


@dataclass(frozen=True)
class HardFace:
    """One side of the domain where a condition is built into the network: the value there,
    as a function of the points projected onto the side, ``(n, d) -> (n, len(outputs))``, and
    which side (``"low"`` or ``"high"``) of its coordinate it is."""

    column: int
    position: float
    length: float
    outputs: tuple[int, ...]
    value: Callable[[torch.Tensor], torch.Tensor]
    side: str = "low"


class AbstractCondition(abc.ABC):
    """A condition on the solution. Subclasses are frozen dataclasses."""

    #: whether this condition type can be built into the network
    can_be_hard: bool = False

    @property
    @abc.abstractmethod
    def term(self) -> str:
        """The name of its loss term."""

    @abc.abstractmethod
    def check(self, domain: Domain, outputs: Sequence[str]) -> None:
        """Raise if the condition does not fit the domain (a side it does not have)."""

    @abc.abstractmethod
    def prepare(
        self,
        domain: Domain,
        outputs: Sequence[str],
        n: int,
        seed: int,
        dtype: torch.dtype,
        device: torch.device | None,
    ) -> PreparedCondition:
        """Its points (about ``n`` per side) and targets for one phase."""

    def hard_faces(self, domain: Domain, outputs: Sequence[str]) -> list[HardFace]:
        """The sides this condition fixes when hard."""
        return []

    def output_columns(self, outputs: Sequence[str]) -> tuple[int, ...]:
        """The columns of the network's output this condition sets (its ``output``, or all)."""
        output = getattr(self, "output", None)
        if output is None:
            return tuple(range(len(outputs)))
        if output not in outputs:
            raise ValueError(
                f"{self.term}: output {output!r} is not one of the problem's outputs "
                f"{tuple(outputs)}"
            )
        return (list(outputs).index(output),)

    def _check_hard(self) -> None:
        if getattr(self, "hard", False) and not self.can_be_hard:
            raise ValueError(
                f"{type(self).__name__} conditions have no hard form (no output transform "
                "enforces them in general); use hard=False"
            )


def _check_sampler(sampler: object, label: str) -> AbstractSampler:
    if not isinstance(sampler, AbstractSampler):
        raise TypeError(f"{label}: `sampler` must be a sampler such as Grid(), got {sampler!r}")
    return sampler


def _face_points(
    domain: Domain,
    fixed: Mapping[str, float],
    n: int,
    sampler: AbstractSampler,
    seed: int,
    dtype: torch.dtype,
    device,
) -> torch.Tensor:
    """``n`` points of the domain with the coordinates in ``fixed`` held at their values."""
    free = [name for name in domain.names if name not in fixed]
    unit = sampler.unit(n, [domain[name].periodic for name in free], seed)
    columns = []
    free_index = {name: i for i, name in enumerate(free)}
    rows = unit.shape[0]
    for name in domain.names:
        interval = domain[name]
        if name in fixed:
            columns.append(torch.full((rows,), float(fixed[name]), dtype=torch.float64))
        else:
            columns.append(interval.low + unit[:, free_index[name]] * interval.length)
    return torch.stack(columns, dim=-1).to(dtype=dtype, device=device)


@dataclass
class _PointTargets(PreparedCondition):
    term: str
    points: torch.Tensor
    targets: torch.Tensor
    columns: tuple[int, ...]

    def loss(self, model):
        return self.loss_from_values(model(self.points))

    @property
    def value_points(self):
        return self.points

    def loss_from_values(self, out):
        first, count = self.columns[0], len(self.columns)
        if self.columns == tuple(range(first, first + count)):  # a slice: a view, no gather
            out = out[:, first : first + count]
        else:
            out = out[:, list(self.columns)]
        return (out - self.targets).square().mean()


@dataclass(frozen=True)
class InitialCondition(AbstractCondition):
    """``u(x, t0) = value(x)`` on the low side of the time coordinate.

    Args:
        value: a number, or a function of the spatial coordinates by name
            (``lambda x: torch.sin(x)``) returning ``(n,)`` values, or ``(n, outputs)`` when it
            sets several outputs at once.
        output: the output it sets (a name); None: all of them.
        hard: build it into the network, ``u = value(x) + (t - t0) / (t1 - t0) · N(x, t)``, so it
            holds exactly and has no loss term.
        sampler: where its points lie along space (default: an even grid).
        name: its loss term's name.
    """

    value: Value
    output: str | None = None
    hard: bool = False
    sampler: AbstractSampler = field(default_factory=Grid)
    name: str = "initial"

    can_be_hard = True

    def __post_init__(self) -> None:
        _check_sampler(self.sampler, "InitialCondition")
        self._check_hard()

    @property
    def term(self) -> str:
        return self.name

    def check(self, domain, outputs):
        if domain.time is None:
            raise ValueError(
                "an InitialCondition needs a time coordinate, but the domain has none; give "
                "Domain(..., time='t'), or use Dirichlet on that coordinate's low side"
            )
        self.output_columns(outputs)

    def prepare(self, domain, outputs, n, seed, dtype, device):
        points = _face_points(
            domain, {domain.time: domain[domain.time].low}, n, self.sampler, seed, dtype, device
        )
        columns = self.output_columns(outputs)
        space = {name: points[:, domain.index(name)] for name in domain.space}
        targets = evaluate_value(self.value, space, len(columns), f"InitialCondition {self.name!r}")
        return _PointTargets(self.name, points, targets.detach(), columns)

    def hard_faces(self, domain, outputs):
        if not self.hard:
            return []
        columns = self.output_columns(outputs)
        label = f"InitialCondition {self.name!r}"

        def value(points: torch.Tensor) -> torch.Tensor:
            space = {name: points[:, domain.index(name)] for name in domain.space}
            return evaluate_value(self.value, space, len(columns), label)

        interval = domain[domain.time]
        return [
            HardFace(
                domain.index(domain.time), interval.low, interval.length, columns, value, "low"
            )
        ]


def _sides(side: str) -> tuple[str, ...]:
    return SIDES if side == "both" else (side,)


@dataclass(frozen=True)
class Dirichlet(AbstractCondition):
    """``u = value`` on the ``side`` (``"low"``, ``"high"`` or ``"both"``) of ``coordinate``.

    Args:
        coordinate: the coordinate whose side it is.
        side: ``"low"``, ``"high"`` or ``"both"``.
        value: a number, or a function of the coordinates by name returning ``(n,)`` values.
        output: the output it sets; None: all.
        hard: build it into the network (``u = G + D · N`` with ``D`` vanishing on the side and
            ``G`` equal to the value there); exact, no loss term.
        sampler: where its points lie along the side (default: uniform random).
        name: its loss term's name (default ``dirichlet_<coordinate>``).
    """

    coordinate: str
    side: str = "both"
    value: Value = 0.0
    output: str | None = None
    hard: bool = False
    sampler: AbstractSampler = field(default_factory=Uniform)
    name: str | None = None

    can_be_hard = True

    def __post_init__(self) -> None:
        _check_sampler(self.sampler, "Dirichlet")
        self._check_hard()

    @property
    def term(self) -> str:
        return self.name or f"dirichlet_{self.coordinate}"

    def check(self, domain, outputs):
        for side in _sides(self.side):
            domain.check_side(self.coordinate, side, f"Dirichlet({self.coordinate!r}, {side!r})")
        self.output_columns(outputs)

    def _position(self, domain: Domain, side: str) -> float:
        interval = domain[self.coordinate]
        return interval.low if side == "low" else interval.high

    def prepare(self, domain, outputs, n, seed, dtype, device):
        columns = self.output_columns(outputs)
        pieces = []
        for k, side in enumerate(_sides(self.side)):
            fixed = {self.coordinate: self._position(domain, side)}
            pieces.append(_face_points(domain, fixed, n, self.sampler, seed + k, dtype, device))
        points = torch.cat(pieces)
        targets = evaluate_value(
            self.value, domain.columns(points), len(columns), f"Dirichlet {self.term!r}"
        )
        return _PointTargets(self.term, points, targets.detach(), columns)

    def hard_faces(self, domain, outputs):
        if not self.hard:
            return []
        columns = self.output_columns(outputs)
        label = f"Dirichlet {self.term!r}"

        def value(points: torch.Tensor) -> torch.Tensor:
            return evaluate_value(self.value, domain.columns(points), len(columns), label)

        interval = domain[self.coordinate]
        return [
            HardFace(
                domain.index(self.coordinate),
                self._position(domain, side),
                interval.length,
                columns,
                value,
                side,
            )
            for side in _sides(self.side)
        ]


@dataclass
class _NormalDerivative(PreparedCondition):
    term: str
    points: torch.Tensor
    signs: torch.Tensor
    targets: torch.Tensor
    column: int
    outputs: tuple[int, ...]

    def loss(self, model):
        points = self.points.detach().requires_grad_(True)
        out = model(points)
        total = 0.0
        for k, j in enumerate(self.outputs):
            normal = self.signs * partial(out[:, j], points, self.column)
            total = total + (normal - self.targets[:, k]).square().mean()
        return total / len(self.outputs)


@dataclass(frozen=True)
class Neumann(AbstractCondition):
    """``∂u/∂n = value`` on the ``side`` of ``coordinate``, ``n`` the outward normal (so
    ``-∂u/∂x`` on the low side, ``+∂u/∂x`` on the high side). Soft only.

    Args:
        coordinate, side, value, output, sampler: as for :class:`Dirichlet`.
        name: its loss term's name (default ``neumann_<coordinate>``).
    """

    coordinate: str
    side: str = "both"
    value: Value = 0.0
    output: str | None = None
    hard: bool = False
    sampler: AbstractSampler = field(default_factory=Uniform)
    name: str | None = None

    def __post_init__(self) -> None:
        _check_sampler(self.sampler, "Neumann")
        self._check_hard()

    @property
    def term(self) -> str:
        return self.name or f"neumann_{self.coordinate}"

    def check(self, domain, outputs):
        for side in _sides(self.side):
            domain.check_side(self.coordinate, side, f"Neumann({self.coordinate!r}, {side!r})")
        self.output_columns(outputs)

    def prepare(self, domain, outputs, n, seed, dtype, device):
        columns = self.output_columns(outputs)
        interval = domain[self.coordinate]
        pieces, signs = [], []
        for k, side in enumerate(_sides(self.side)):
            position = interval.low if side == "low" else interval.high
            fixed = {self.coordinate: position}
            piece = _face_points(domain, fixed, n, self.sampler, seed + k, dtype, device)
            pieces.append(piece)
            signs.append(torch.full((piece.shape[0],), -1.0 if side == "low" else 1.0))
        points = torch.cat(pieces)
        targets = evaluate_value(
            self.value, domain.columns(points), len(columns), f"Neumann {self.term!r}"
        )
        return _NormalDerivative(
            self.term,
            points,
            torch.cat(signs).to(dtype=dtype, device=device),
            targets.detach(),
            domain.index(self.coordinate),
            columns,
        )


@dataclass
class _PeriodicPairs(PreparedCondition):
    term: str
    low: torch.Tensor
    high: torch.Tensor
    column: int
    derivatives: int
    outputs: tuple[int, ...]

    def loss(self, model):
        points = torch.cat([self.low, self.high]).detach().requires_grad_(self.derivatives > 0)
        return self._loss(points, model(points))

    @property
    def value_points(self):
        return torch.cat([self.low, self.high]) if self.derivatives == 0 else None

    def loss_from_values(self, out):
        return self._loss(None, out)

    def _loss(self, points, out):
        n = self.low.shape[0]
        total = 0.0
        for j in self.outputs:
            value = out[:, j]
            for order in range(self.derivatives + 1):
                if order:
                    value = partial(value, points, self.column)
                total = total + (value[:n] - value[n:]).square().mean()
        return total / len(self.outputs)


@dataclass(frozen=True)
class Periodic(AbstractCondition):
    """``u`` (and its first ``derivatives`` derivatives along ``coordinate``) equal on the low and
    high sides of a periodic coordinate.

    Args:
        coordinate: a coordinate whose :class:`Interval` is ``periodic=True``.
        derivatives: how many derivatives must match too (soft form).
        output: the output it applies to; None: all.
        hard: feed the network ``cos`` and ``sin`` of ``2π k (x - low) / L`` instead of ``x``, so
            the output and all its derivatives are periodic exactly; no loss term.
        sampler: where its pairs of points lie along the other coordinates.
        name: its loss term's name (default ``periodic_<coordinate>``).
    """

    coordinate: str
    derivatives: int = 0
    output: str | None = None
    hard: bool = False
    sampler: AbstractSampler = field(default_factory=Grid)
    name: str | None = None

    can_be_hard = True

    def __post_init__(self) -> None:
        _check_sampler(self.sampler, "Periodic")
        if isinstance(self.derivatives, bool) or not isinstance(self.derivatives, int):
            raise TypeError(f"Periodic `derivatives` must be an int, got {self.derivatives!r}")
        if self.derivatives < 0:
            raise ValueError(f"Periodic `derivatives` must be >= 0, got {self.derivatives}")

    @property
    def term(self) -> str:
        return self.name or f"periodic_{self.coordinate}"

    def check(self, domain, outputs):
        interval = domain[self.coordinate]
        if not interval.periodic:
            raise ValueError(
                f"Periodic({self.coordinate!r}) needs a periodic coordinate, but "
                f"{self.coordinate!r} is not; build it as Interval(low, high, periodic=True)"
            )
        if self.hard and self.output is not None:
            raise ValueError(
                f"a hard Periodic({self.coordinate!r}) applies to all outputs (it changes the "
                "network's input); drop output= or use hard=False"
            )
        self.output_columns(outputs)

    def prepare(self, domain, outputs, n, seed, dtype, device):
        interval = domain[self.coordinate]
        low = _face_points(
            domain, {self.coordinate: interval.low}, n, self.sampler, seed, dtype, device
        )
        high = low.clone()
        high[:, domain.index(self.coordinate)] = interval.high
        return _PeriodicPairs(
            self.term,
            low,
            high,
            domain.index(self.coordinate),
            self.derivatives,
            self.output_columns(outputs),
        )


@dataclass(frozen=True)
class Observations(AbstractCondition):
    """Measured values of the solution at given points (data; with learnable coefficients, an
    inverse problem). Soft only.

    Args:
        points: ``(n, dim)`` points in the domain's column order, or name -> ``(n,)``.
        values: ``(n,)`` values (or ``(n, outputs)``).
        output: the output measured; None: all.
        name: its loss term's name.
    """

    points: torch.Tensor | Mapping[str, torch.Tensor]
    values: torch.Tensor
    output: str | None = None
    hard: bool = False
    name: str = "data"

    def __post_init__(self) -> None:
        self._check_hard()
        if not isinstance(self.values, torch.Tensor):
            raise TypeError(
                f"Observations `values` must be a tensor, got {type(self.values).__name__}"
            )

    @property
    def term(self) -> str:
        return self.name

    def matrix(self, domain: Domain) -> torch.Tensor:
        """The points as ``(n, dim)`` in the domain's column order."""
        points = self.points
        if isinstance(points, Mapping):
            missing = [name for name in domain.names if name not in points]
            extra = [name for name in points if name not in domain.names]
            if missing or extra:
                raise ValueError(
                    f"Observations {self.name!r}: points must give every coordinate "
                    f"({', '.join(domain.names)}); missing {missing}, unknown {extra}"
                )
            points = torch.stack([torch.as_tensor(points[name]) for name in domain.names], -1)
        if (
            not isinstance(points, torch.Tensor)
            or points.dim() != 2
            or points.shape[1] != domain.dim
        ):
            shape = (
                tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
            )
            raise ValueError(
                f"Observations {self.name!r}: points must be (n, {domain.dim}) with columns "
                f"{domain.names}, got {shape}"
            )
        return points

    def check(self, domain, outputs):
        points = self.matrix(domain)
        columns = self.output_columns(outputs)
        n = points.shape[0]
        if self.values.shape not in ((n,), (n, len(columns))):
            raise ValueError(
                f"Observations {self.name!r}: values must be ({n},) or ({n}, {len(columns)}) for "
                f"{n} points, got {tuple(self.values.shape)}"
            )
        low, high = domain.bounds(torch.float64)
        inside = (points.double() >= low - 1e-9) & (points.double() <= high + 1e-9)
        if not bool(inside.all()):
            row = int((~inside.all(dim=1)).nonzero()[0])
            raise ValueError(
                f"Observations {self.name!r}: point {row} {points[row].tolist()} lies outside "
                f"the domain {domain!r}"
            )

    def prepare(self, domain, outputs, n, seed, dtype, device):
        columns = self.output_columns(outputs)
        points = self.matrix(domain).to(dtype=dtype, device=device)
        values = self.values.to(dtype=dtype, device=device).reshape(points.shape[0], len(columns))
        return _PointTargets(self.name, points, values, columns)


def replace(condition: AbstractCondition, **changes: Any) -> AbstractCondition:
    """A copy of ``condition`` with some fields changed."""
    return dataclasses.replace(condition, **changes)
