"""Domains of physics-informed problems: products of intervals (an interval, a rectangle, space ×
time), each coordinate named and optionally periodic, one of them optionally time."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch

from ..training._checks import nearest

__all__ = ["SIDES", "Domain", "Interval"]

#: the two ends of a coordinate's interval
SIDES = ("low", "high")


@dataclass(frozen=True)
class Interval:
    """A closed interval ``[low, high]`` of one coordinate.

    Args:
        low, high: the ends, finite, ``low < high``.
        periodic: the solution repeats with period ``high - low`` in this coordinate: it has no
            boundary there (a :class:`Periodic` condition, soft or hard, ties the two ends), and
            grids leave out the end ``high`` (it is the point ``low`` again).
    """

    low: float
    high: float
    periodic: bool = False

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(
                    f"Interval `{name}` must be a number, got {value!r} of type "
                    f"{type(value).__name__}"
                )
            if not math.isfinite(value):
                raise ValueError(f"Interval `{name}` must be finite, got {value}")
            object.__setattr__(self, name, float(value))
        if not self.high > self.low:
            raise ValueError(
                f"an Interval needs low < high, got low={self.low:g}, high={self.high:g}; swap them"
            )
        if not isinstance(self.periodic, bool):
            raise TypeError(f"Interval `periodic` must be True or False, got {self.periodic!r}")

    @property
    def length(self) -> float:
        """``high - low``."""
        return self.high - self.low


class Domain:
    """A box: the product of named intervals, e.g. space × time.

    Points of the domain are tensors of shape ``(n, dim)`` whose columns are the coordinates in
    the order given here. A coordinate's boundary has two sides, ``"low"`` and ``"high"``;
    periodic coordinates have none.

    Args:
        coordinates: name -> :class:`Interval` (or a ``(low, high)`` pair), in the order of the
            point columns. Names must be Python identifiers: residuals and condition values
            receive the coordinates as keyword arguments.
        time: the name of the time coordinate, if one is time: initial conditions sit on its
            low side, time marching splits it, causal weights follow it.

    Example:
        >>> from math import pi
        >>> domain = Domain({"x": Interval(0, 2 * pi, periodic=True), "t": (0, 1)}, time="t")
        >>> domain.names, domain.dim, domain.space
        (('x', 't'), 2, ('x',))
    """

    def __init__(self, coordinates: Mapping[str, Interval | tuple], time: str | None = None):
        if not isinstance(coordinates, Mapping) or not coordinates:
            raise TypeError(
                "`coordinates` must be a non-empty mapping of name -> Interval, e.g. "
                f"{{'x': Interval(0, 1), 't': Interval(0, 1)}}, got {coordinates!r}"
            )
        intervals = {}
        for name, interval in coordinates.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(
                    f"coordinate name {name!r} must be a Python identifier such as 'x' or 't' "
                    "(residuals and condition values receive coordinates as keyword arguments)"
                )
            if isinstance(interval, tuple | list) and len(interval) == 2:
                interval = Interval(*interval)
            if not isinstance(interval, Interval):
                raise TypeError(
                    f"coordinate {name!r} must be an Interval or a (low, high) pair, got "
                    f"{interval!r}"
                )
            intervals[name] = interval
        self._intervals = intervals
        if time is not None:
            self._check_name(time, "time")
            if intervals[time].periodic:
                raise ValueError(f"the time coordinate {time!r} cannot be periodic")
        self.time = time

    # ----------------------------------------------------------------------------- structure

    @property
    def names(self) -> tuple[str, ...]:
        """The coordinate names, in column order."""
        return tuple(self._intervals)

    @property
    def dim(self) -> int:
        """The number of coordinates."""
        return len(self._intervals)

    @property
    def space(self) -> tuple[str, ...]:
        """The coordinates other than time."""
        return tuple(name for name in self._intervals if name != self.time)

    def __getitem__(self, name: str) -> Interval:
        self._check_name(name, "coordinate")
        return self._intervals[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._intervals)

    def index(self, name: str) -> int:
        """The column of coordinate ``name``."""
        self._check_name(name, "coordinate")
        return self.names.index(name)

    def items(self):
        """``(name, Interval)`` pairs in column order."""
        return self._intervals.items()

    def _check_name(self, name: object, what: str) -> None:
        if name not in self._intervals:
            raise ValueError(
                f"the domain has no coordinate {name!r} (for `{what}`){nearest(str(name), self)}; "
                f"its coordinates are {', '.join(self.names)}"
            )

    def check_side(self, name: str, side: str, condition: str) -> None:
        """Raise unless the domain has a boundary on ``side`` of coordinate ``name``.

        Args:
            condition: the condition asking, named in the error.
        """
        self._check_name(name, f"{condition}.coordinate")
        if side not in SIDES:
            raise ValueError(
                f"{condition}: side must be 'low', 'high' or 'both', got {side!r}"
                f"{nearest(str(side), (*SIDES, 'both'))}"
            )
        if self._intervals[name].periodic:
            raise ValueError(
                f"{condition} is on the {side} side of {name!r}, but {name!r} is periodic and "
                f"has no boundary; use Periodic({name!r}) instead, or make the interval "
                "non-periodic"
            )

    # ----------------------------------------------------------------------------- derived domains

    def restrict(self, name: str, low: float, high: float) -> Domain:
        """The same domain with coordinate ``name`` cut down to ``[low, high]`` (time blocks)."""
        interval = self[name]
        if low < interval.low - 1e-12 or high > interval.high + 1e-12:
            raise ValueError(
                f"[{low:g}, {high:g}] is not inside {name!r}'s interval "
                f"[{interval.low:g}, {interval.high:g}]"
            )
        coordinates = dict(self._intervals)
        coordinates[name] = Interval(low, high, interval.periodic)
        return Domain(coordinates, time=self.time)

    # ----------------------------------------------------------------------------- points

    def bounds(self, dtype: torch.dtype, device: torch.device | str | None = None):
        """``(low, high)``: two tensors of shape ``(dim,)``."""
        low = torch.tensor([i.low for i in self._intervals.values()], dtype=dtype, device=device)
        high = torch.tensor([i.high for i in self._intervals.values()], dtype=dtype, device=device)
        return low, high

    def scale(self, unit: torch.Tensor) -> torch.Tensor:
        """Points of the unit cube ``(n, dim)`` mapped into the domain."""
        low, high = self.bounds(unit.dtype, unit.device)
        return low + unit * (high - low)

    def grid(
        self,
        counts: Mapping[str, int],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per coordinate, ``counts[name]`` evenly spaced values (a periodic coordinate leaves
        out its high end, which is its low end again)."""
        axes = {}
        for name, interval in self._intervals.items():
            if name not in counts:
                raise ValueError(
                    f"the grid needs a number of points for every coordinate; {name!r} is "
                    f"missing from {dict(counts)!r}"
                )
            count = counts[name]
            if isinstance(count, bool) or not isinstance(count, int) or count < 2:
                raise ValueError(f"grid count for {name!r} must be an int >= 2, got {count!r}")
            values = torch.linspace(
                interval.low,
                interval.high,
                count + interval.periodic,
                dtype=torch.float64,
                device=device,
            )[:count]
            axes[name] = values.to(dtype)
        return axes

    def mesh(self, axes: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The points ``(n, dim)`` of the grid with these axes (``indexing="ij"``, so reshaping
        values of the points to ``[len(axes[name]) for name in names]`` gives the grid)."""
        grids = torch.meshgrid(*(axes[name] for name in self.names), indexing="ij")
        return torch.stack([g.reshape(-1) for g in grids], dim=-1)

    def columns(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        """``points`` ``(n, dim)`` as name -> ``(n,)`` columns."""
        return {name: points[..., i] for i, name in enumerate(self.names)}

    # ----------------------------------------------------------------------------- misc

    def describe(self) -> dict:
        """The domain as plain data (for reports and checkpoints)."""
        return {
            "coordinates": {
                name: {"low": i.low, "high": i.high, "periodic": i.periodic}
                for name, i in self._intervals.items()
            },
            "time": self.time,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Domain) and self.describe() == other.describe()

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        parts = [
            f"{name}=[{i.low:g}, {i.high:g}]{' periodic' if i.periodic else ''}"
            for name, i in self._intervals.items()
        ]
        time = f", time={self.time!r}" if self.time else ""
        return f"Domain({', '.join(parts)}{time})"
