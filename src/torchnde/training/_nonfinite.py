"""Non-finite losses, gradients and parameters: how they are found (one fused reduction over all
tensors, one host sync), what the trainer does about them (the ``nonfinite`` policy) and the
errors and warnings it gives.

A gradient can be NaN while the loss is finite: ``sqrt(y**2)`` is finite at ``y = 0`` but
autograd evaluates its derivative there as ``inf * 0 = nan``, and such a NaN, applied by the
optimiser, silently turns every parameter it touches into NaN. So the trainer checks the gradients
themselves after every backward pass, never only the loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._checks import nearest

__all__ = [
    "NONFINITE_POLICIES",
    "NonFiniteError",
    "NonFiniteStepWarning",
    "check_policy",
    "nonfinite_names",
]

#: what the trainer does with a step whose loss or gradient is not finite
NONFINITE_POLICIES = ("skip", "raise")

#: the likely causes of a non-finite gradient under a finite loss, and the fixes
GRADIENT_HINT = (
    "Likely cause: an operation in the model or loss_fn whose derivative is infinite or "
    "undefined at the current values (sqrt or abs at 0, log or 1/x at 0, x**p with 0 < p < 1 "
    "at 0, acos/asin at ±1), or an overflow in the backward pass. Find it with "
    "`torch.autograd.set_detect_anomaly(True)`, then make the expression smooth there (e.g. "
    "`torch.sqrt(y**2 + eps)` instead of `torch.sqrt(y**2)`); a lower learning rate does not "
    "cure a NaN derivative"
)
LOSS_HINT = (
    "Lower the learning rate, clip gradients with Stage(max_grad_norm=...), or check loss_fn "
    "and the data (a window whose solve overflows, NaN in the targets)"
)


class NonFiniteError(FloatingPointError):
    """Training stopped on a non-finite loss, gradient or parameter.

    Attributes:
        step: the step (1-based, counted over the whole run) where it stopped.
        stage_index: its stage (0-based).
        optimizer: the stage's optimiser name.
        what: ``"loss"``, ``"gradient"`` or ``"parameters"``.
        parameters: the names of the parameters whose gradient (``what="gradient"``) or value
            (``what="parameters"``) was not finite.
        skipped: every step of the run skipped so far (1-based), this one included.
        checkpoint: the last checkpoint written (intact, finite), or None.
    """

    def __init__(
        self,
        message: str,
        *,
        step: int,
        stage_index: int,
        optimizer: str,
        what: str,
        parameters: Sequence[str] = (),
        skipped: Sequence[int] = (),
        checkpoint=None,
    ):
        super().__init__(message)
        self.step = step
        self.stage_index = stage_index
        self.optimizer = optimizer
        self.what = what
        self.parameters = list(parameters)
        self.skipped = list(skipped)
        self.checkpoint = checkpoint


class NonFiniteStepWarning(RuntimeWarning):
    """A training step was skipped because its loss or gradient was not finite (the trainer's
    ``nonfinite="skip"`` policy); the parameters were left as they were."""


def check_policy(nonfinite: object) -> str:
    """``nonfinite`` if it is one of :data:`NONFINITE_POLICIES`."""
    if not isinstance(nonfinite, str) or nonfinite not in NONFINITE_POLICIES:
        hint = nearest(nonfinite, NONFINITE_POLICIES) if isinstance(nonfinite, str) else ""
        raise ValueError(
            f"`nonfinite` must be 'skip' or 'raise', got {nonfinite!r}{hint}: 'skip' leaves out "
            "the update of a step whose loss or gradient is NaN/inf, 'raise' stops at once"
        )
    return nonfinite


def nonfinite_names(names: Sequence[str], tensors: Sequence[torch.Tensor | None]) -> list[str]:
    """The names of the tensors (None entries skipped) that hold a NaN or an infinity.

    One fused max-abs reduction per device (``torch._foreach_norm`` with ``ord=inf``, which
    neither overflows nor hides a NaN) and one host sync; the names are looked up only when
    something is wrong.
    """
    groups: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for name, tensor in zip(names, tensors):
        if tensor is not None and tensor.numel() > 0 and not tensor.is_sparse:
            groups.setdefault(tensor.device, []).append((name, tensor.detach()))
    bad: list[str] = []
    for entries in groups.values():
        norms = torch._foreach_norm([tensor for _, tensor in entries], ord=math.inf)
        finite = torch.isfinite(torch.stack(norms))  # stack promotes mixed dtypes
        if not bool(finite.all()):
            bad += [name for (name, _), ok in zip(entries, finite.tolist()) if not ok]
    return bad


def backticked(names: Sequence[str], limit: int = 6) -> str:
    """```a`, `b` and 3 more``."""
    shown = ", ".join(f"`{name}`" for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def step_span(steps: Sequence[int]) -> str:
    """``step 4`` or ``steps 4-8`` for a run of consecutive steps."""
    return f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}-{steps[-1]}"
