"""A physics-informed problem: the domain, the residual (a plain Python function), the
conditions, the coefficients (known, scheduled or learnable) and, where there is one, a
reference solution to measure the error against."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..training._checks import nearest
from ._conditions import AbstractCondition, HardFace, Periodic
from ._derivatives import Derivatives
from ._domain import Domain

__all__ = ["Coefficients", "PDEProblem", "Residual"]

#: ``residual(u, d, p) -> (n,) or (n, equations)``
Residual = Callable[[Any, Derivatives, "Coefficients"], torch.Tensor]
#: ``reference(axes, coefficients) -> grid of values`` (see :class:`PDEProblem`)
Reference = Callable[[Mapping[str, torch.Tensor], Mapping[str, float]], torch.Tensor]


class Coefficients(Mapping):
    """The coefficients a residual reads, ``p["beta"]``: numbers for known ones, the live
    parameters for learnable ones. A missing name raises an error listing the known names."""

    def __init__(self, values: Mapping[str, Any]):
        self._values = dict(values)

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            raise KeyError(
                f"the residual asked for coefficient {name!r}{nearest(str(name), self._values)}, "
                f"which the problem does not define; known: {', '.join(self._values) or 'none'}. "
                "Add it to PDEProblem(coefficients=...) or (learnable=...)"
            )
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Coefficients({self._values!r})"


@dataclass(frozen=True)
class PDEProblem:
    """A PDE (or system) to solve with a physics-informed network.

    The residual is a plain function ``residual(u, d, p)``: ``u`` is the network's output at the
    collocation points, ``(n,)`` for one output or a dict name -> ``(n,)`` for several; ``d`` is
    the :class:`Derivatives` helper (``d(u, "x", "x")`` is u_xx, ``d["x"]`` the coordinate);
    ``p`` the :class:`Coefficients`. It returns the residual, ``(n,)`` or ``(n, equations)``
    (a tuple of ``(n,)`` tensors is stacked), zero where the equation holds.

    Args:
        domain: the :class:`Domain`.
        residual: the residual function.
        conditions: initial/boundary conditions and observations.
        coefficients: known coefficients, name -> value (a curriculum changes one per stage).
        learnable: unknown coefficients (an inverse problem), name -> initial guess; they are
            trained with the network from :class:`Observations`.
        outputs: the names of the network's outputs.
        reference: the reference solution where one is known: ``reference(axes, coefficients)``
            gets per coordinate a 1-D tensor of grid values and returns the solution on that
            grid, shape ``[len(axes[name]) for name in domain.names]`` (plus a trailing axis of
            outputs when there are several), or None.
        name: shown in reports.

    Example:
        >>> problem = PDEProblem(
        ...     Domain({"x": Interval(0, 2 * pi, periodic=True), "t": (0, 1)}, time="t"),
        ...     residual=lambda u, d, p: d(u, "t") + p["beta"] * d(u, "x"),
        ...     conditions=[InitialCondition(torch.sin), Periodic("x")],
        ...     coefficients={"beta": 30.0})
    """

    domain: Domain
    residual: Residual
    conditions: Sequence[AbstractCondition] = ()
    coefficients: Mapping[str, float] = field(default_factory=dict)
    learnable: Mapping[str, float] = field(default_factory=dict)
    outputs: Sequence[str] = ("u",)
    reference: Reference | None = None
    name: str = "pde"

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        if not isinstance(self.domain, Domain):
            raise TypeError(f"`domain` must be a Domain, got {type(self.domain).__name__}")
        if not callable(self.residual):
            raise TypeError(
                f"`residual` must be a function (u, d, p) -> tensor, got {self.residual!r}"
            )
        outputs = (self.outputs,) if isinstance(self.outputs, str) else tuple(self.outputs)
        if not outputs or len(set(outputs)) != len(outputs):
            raise ValueError(f"`outputs` must be distinct names, got {self.outputs!r}")
        set_field(self, "outputs", outputs)
        conditions = tuple(self.conditions)
        for k, condition in enumerate(conditions):
            if not isinstance(condition, AbstractCondition):
                raise TypeError(
                    f"`conditions[{k}]` must be a condition such as InitialCondition(...), got "
                    f"{condition!r}"
                )
            condition.check(self.domain, outputs)
        terms = [c.term for c in conditions if not c.hard]
        twice = {t for t in terms if terms.count(t) > 1}
        if twice or "residual" in terms:
            name = next(iter(twice)) if twice else "residual"
            raise ValueError(
                f"two loss terms are named {name!r}; give the conditions distinct name=..."
            )
        set_field(self, "conditions", conditions)
        set_field(self, "coefficients", _numbers(self.coefficients, "coefficients"))
        set_field(self, "learnable", _numbers(self.learnable, "learnable"))
        both = set(self.coefficients) & set(self.learnable)
        if both:
            raise ValueError(
                f"{sorted(both)} are both known `coefficients` and `learnable`; keep each in one"
            )
        if self.reference is not None and not callable(self.reference):
            raise TypeError(f"`reference` must be a function or None, got {self.reference!r}")

    # ----------------------------------------------------------------------------- derived

    @property
    def soft_terms(self) -> tuple[str, ...]:
        """The loss terms: ``"residual"`` and each soft condition's."""
        return ("residual", *(c.term for c in self.conditions if not c.hard))

    def with_coefficients(self, **values: float) -> PDEProblem:
        """The same problem with some known coefficients changed."""
        for name in values:
            if name not in self.coefficients:
                raise ValueError(
                    f"{name!r} is not a known coefficient of the problem"
                    f"{nearest(name, self.coefficients)}; known: {', '.join(self.coefficients)}"
                )
        return dataclasses.replace(self, coefficients={**self.coefficients, **values})

    def replace(self, **changes: Any) -> PDEProblem:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def hard_faces(self) -> list[HardFace]:
        """The sides fixed by hard conditions."""
        return [f for c in self.conditions for f in c.hard_faces(self.domain, self.outputs)]

    def hard_periodic(self) -> tuple[str, ...]:
        """The coordinates made periodic by the network's input."""
        return tuple(c.coordinate for c in self.conditions if isinstance(c, Periodic) and c.hard)

    def evaluate_residual(
        self, model: torch.nn.Module, points: torch.Tensor, coefficients: Coefficients
    ) -> torch.Tensor:
        """The residual at ``points`` ``(n, dim)`` as ``(n, equations)``."""
        points = points.detach().requires_grad_(True)
        out = model(points)
        u = (
            out[:, 0]
            if len(self.outputs) == 1
            else {n: out[:, j] for j, n in enumerate(self.outputs)}
        )
        value = self.residual(u, Derivatives(points, self.domain.names), coefficients)
        return self._check_residual(value, points.shape[0])

    def _check_residual(self, value: object, n: int) -> torch.Tensor:
        name = getattr(self.residual, "__name__", repr(self.residual))
        if (
            isinstance(value, tuple | list)
            and value
            and all(isinstance(v, torch.Tensor) for v in value)
        ):
            shapes = {tuple(v.shape) for v in value}
            if shapes != {(n,)}:
                raise ValueError(
                    f"the residual `{name}` returned a tuple of tensors of shapes {sorted(shapes)}; "
                    f"each must be ({n},), one value per collocation point"
                )
            value = torch.stack(list(value), dim=-1)
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"the residual `{name}` must return a tensor, got {type(value).__name__}"
            )
        if value.shape == (n,):
            return value.unsqueeze(-1)
        if value.dim() == 2 and value.shape[0] == n:
            return value
        raise ValueError(
            f"the residual `{name}` returned shape {tuple(value.shape)} at {n} collocation "
            f"points; it must be ({n},) (one equation) or ({n}, equations). A common cause: a "
            "coefficient or source given as a column (n, 1) instead of (n,); use u[:, 0] or "
            ".squeeze(-1)"
        )


def _numbers(values: object, name: str) -> dict[str, float]:
    if not isinstance(values, Mapping):
        raise TypeError(f"`{name}` must be a mapping of name -> number, got {values!r}")
    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"`{name}[{key!r}]` must be a number, got {value!r}")
        out[str(key)] = float(value)
    return out
