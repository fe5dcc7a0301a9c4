"""The result of a solve: :class:`Solution` and :class:`Status`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["Solution", "Status"]


class Status(enum.IntEnum):
    """How a solve ended, per sample."""

    #: reached ``t1``
    SUCCESS = 0
    #: stopped at a terminal event (a success)
    EVENT = 1
    #: ran out of ``max_steps`` before reaching ``t1``
    MAX_STEPS = 2
    #: the step size had to fall below ``dtmin`` (or below floating-point resolution)
    DTMIN = 3
    #: the state or the vector field became NaN or infinite
    NONFINITE = 4
    #: the solver could not complete a step even at the smallest step size (an implicit method's
    #: Newton iteration did not converge)
    NONCONVERGENCE = 5

    @property
    def ok(self) -> bool:
        return self in (Status.SUCCESS, Status.EVENT)


@dataclass
class Solution:
    """Everything a solve returns.

    Attributes:
        ts: the times of the saved values (user times), ``(times,)`` or ``(batch, times)``.
        ys: the saved values: the state's tree with leaves ``(times, ...)`` or
            ``(batch, times, ...)``. Values a failed sample never reached are NaN.
        stats: per-sample counts (tensors, ``()`` or ``(batch,)``): ``num_steps`` (attempted),
            ``num_accepted``, ``num_rejected``, ``nfe`` (vector-field evaluations, forward) and
            ``nfe_backward`` (filled in by the backward pass of checkpointing and backsolve
            adjoints), plus the solver's own (implicit methods: ``num_jacobians``,
            ``num_factorisations``, ``num_newton_iterations``).
        status: a :class:`Status` code per sample, as a ``()`` or ``(batch,)`` int64 tensor.
        messages: per sample, why it failed (empty string for a success).
        event_t: time of the terminal event per sample (NaN where none fired), if events were given.
        event_index: which event fired per sample (``-1`` where none), if events were given.
        event_crossings: per non-terminal event, the recorded crossing times, NaN-padded,
            ``(crossings,)`` or ``(batch, crossings)``.
        fail_t: per sample, the time a failed sample had reached when it stopped (its message
            says why), NaN for a success; ``()`` or ``(batch,)``.
    """

    ts: torch.Tensor | None
    ys: Any
    stats: dict[str, torch.Tensor]
    status: torch.Tensor
    messages: list[str]
    event_t: torch.Tensor | None = None
    event_index: torch.Tensor | None = None
    event_crossings: list[torch.Tensor] = field(default_factory=list)
    fail_t: torch.Tensor | None = None
    _dense: Any = field(default=None, repr=False)
    _next_dt: Any = field(default=None, repr=False)  # the step size the solve would take next

    @property
    def succeeded(self) -> torch.Tensor:
        """Per-sample bool: the sample reached ``t1`` or a terminal event."""
        return self.status <= Status.EVENT

    @property
    def ok(self) -> bool:
        """Whether every sample succeeded."""
        return bool(self.succeeded.all())

    @property
    def statuses(self) -> list[Status]:
        """The status of each sample as :class:`Status` values."""
        return [Status(int(s)) for s in self.status.reshape(-1)]

    def evaluate(self, t: torch.Tensor | float) -> Any:
        """The dense solution at time(s) ``t`` (needs ``SaveAt(dense=True)``).

        ``t`` may be a scalar, ``(times,)``, or per sample ``(batch,)``/``(batch, times)`` under
        ``batch_axis=0``. Returns the state's tree with leaves shaped ``t.shape + state shape``
        (with the batch axis first when batched).
        """
        if self._dense is None:
            raise ValueError(
                "this solution has no dense output; solve with `saveat=SaveAt(dense=True)`"
            )
        return self._dense.evaluate(t)
