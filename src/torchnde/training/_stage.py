"""Stages of an optimiser schedule (e.g. Adam, then L-BFGS) and their learning-rate schedules."""

from __future__ import annotations

import abc
import dataclasses
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ._checks import check_count, check_positive, nearest

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "AbstractSchedule",
    "CosineSchedule",
    "ExponentialSchedule",
    "Stage",
    "StepSchedule",
]

#: optimiser names a :class:`Stage` accepts
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "lbfgs": torch.optim.LBFGS,
}

#: L-BFGS defaults that differ from torch's: one iteration per step (so a checkpoint can fall
#: between any two iterations) with a strong-Wolfe line search of up to 25 evaluations
LBFGS_DEFAULTS: dict[str, Any] = {"max_iter": 1, "max_eval": 25, "line_search_fn": "strong_wolfe"}


class AbstractSchedule(abc.ABC):
    """A learning-rate schedule over one stage (a frozen dataclass that builds a torch
    ``LRScheduler``, stepped once after every optimiser step)."""

    name: ClassVar[str]

    @abc.abstractmethod
    def build(
        self, optimizer: torch.optim.Optimizer, steps: int
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """The torch scheduler for ``optimizer`` over a stage of ``steps`` steps."""

    def describe(self) -> dict[str, Any]:
        """The schedule as plain data (for checkpoints and logs)."""
        return {"name": self.name, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class CosineSchedule(AbstractSchedule):
    """Cosine annealing from the stage's ``lr`` down to ``min_lr`` at its last step
    (Loshchilov & Hutter, *SGDR*, ICLR 2017, without restarts).

    Args:
        min_lr: the learning rate at the end of the stage.
    """

    name: ClassVar[str] = "cosine"
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        check_positive(self.min_lr, "min_lr", allow_zero=True)

    def build(self, optimizer, steps):
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=steps, eta_min=self.min_lr
        )


@dataclass(frozen=True)
class StepSchedule(AbstractSchedule):
    """Multiply the learning rate by ``gamma`` every ``every`` steps.

    Args:
        every: steps between decays; None: a third of the stage (at least 1).
        gamma: the factor, in (0, 1].
    """

    name: ClassVar[str] = "step"
    every: int | None = None
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.every is not None:
            check_count(self.every, "every")
        _check_factor(self.gamma)

    def build(self, optimizer, steps):
        every = self.every if self.every is not None else max(1, steps // 3)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=every, gamma=self.gamma)


@dataclass(frozen=True)
class ExponentialSchedule(AbstractSchedule):
    """Multiply the learning rate by ``gamma`` after every step.

    Args:
        gamma: the factor, in (0, 1]; None: the one that brings the rate to 1% of its start by
            the end of the stage, ``0.01 ** (1 / steps)``.
    """

    name: ClassVar[str] = "exponential"
    gamma: float | None = None

    def __post_init__(self) -> None:
        if self.gamma is not None:
            _check_factor(self.gamma)

    def build(self, optimizer, steps):
        gamma = self.gamma if self.gamma is not None else 0.01 ** (1.0 / steps)
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)


def _check_factor(gamma: object) -> None:
    check_positive(gamma, "gamma")
    if gamma > 1:
        raise ValueError(f"`gamma` must lie in (0, 1] (a decay factor), got {gamma}")


#: schedule names a :class:`Stage` accepts as a string (each with its default settings)
SCHEDULES: dict[str, type[AbstractSchedule]] = {
    cls.name: cls for cls in (CosineSchedule, StepSchedule, ExponentialSchedule)
}


@dataclass(frozen=True)
class Stage:
    """One stage of an optimiser schedule: an optimiser run for up to ``steps`` steps.

    A *step* is one ``optimizer.step(closure)``: for first-order optimisers one gradient
    evaluation; for L-BFGS one quasi-Newton iteration (``max_iter=1``) including its strong-Wolfe
    line search, so several loss evaluations. Checkpoints and resumption happen between steps.

    Args:
        optimizer: one of ``"adam"``, ``"adamw"``, ``"sgd"``, ``"rmsprop"``, ``"lbfgs"``
            (case and ``-``/``_`` ignored).
        steps: the most optimiser steps this stage takes.
        lr: the (initial) learning rate; None: the optimiser's own default.
        scheduler: None (a constant rate), a name from :data:`SCHEDULES` (``"cosine"``,
            ``"step"``, ``"exponential"``, with default settings) or a schedule object such as
            ``CosineSchedule(min_lr=1e-4)``.
        patience: early stopping: end the stage once the monitored loss (the validation loss if
            the trainer has one, else the training loss) has failed to improve on its best by
            more than ``min_delta`` this many times in a row. None: never stop early.
        min_delta: the smallest decrease that counts as an improvement.
        max_grad_norm: clip the gradient's total 2-norm to this before each step (first-order
            optimisers only). None: no clipping.
        options: further keyword arguments of the torch optimiser, e.g. ``{"betas": (0.9,
            0.99)}`` or ``{"history_size": 50}``. L-BFGS defaults to ``max_iter=1,
            max_eval=25, line_search_fn="strong_wolfe"``.

    Example:
        >>> stages = [Stage("adam", steps=300, lr=1e-2, scheduler="cosine"),
        ...           Stage("lbfgs", steps=200, lr=1.0, patience=20, min_delta=1e-9)]
    """

    optimizer: str
    steps: int
    lr: float | None = None
    scheduler: str | AbstractSchedule | None = None
    patience: int | None = None
    min_delta: float = 0.0
    max_grad_norm: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        set_field(self, "optimizer", _check_optimizer_name(self.optimizer))
        check_count(self.steps, "steps")
        if self.lr is not None:
            check_positive(self.lr, "lr")
        set_field(self, "scheduler", _check_scheduler(self.scheduler))
        if self.patience is not None:
            check_count(self.patience, "patience")
        check_positive(self.min_delta, "min_delta", allow_zero=True)
        if self.max_grad_norm is not None:
            check_positive(self.max_grad_norm, "max_grad_norm")
            if self.optimizer == "lbfgs":
                raise ValueError(
                    "`max_grad_norm` cannot be used with optimizer='lbfgs': L-BFGS needs the "
                    "true gradient for its curvature pairs and line search; drop max_grad_norm"
                )
        set_field(self, "options", _check_options(self.optimizer, self.options))

    def build_optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """The torch optimiser of this stage over ``params``."""
        options = dict(self.options)
        if self.optimizer == "lbfgs":
            options = {**LBFGS_DEFAULTS, **options}
        if self.lr is not None:
            options["lr"] = self.lr
        return OPTIMIZERS[self.optimizer](params, **options)

    def build_scheduler(
        self, optimizer: torch.optim.Optimizer
    ) -> torch.optim.lr_scheduler.LRScheduler | None:
        """The learning-rate scheduler of this stage, or None for a constant rate."""
        if self.scheduler is None:
            return None
        return self.scheduler.build(optimizer, self.steps)

    def describe(self) -> dict[str, Any]:
        """The stage as plain data (stored in checkpoints to check a resumed run)."""
        return {
            "optimizer": self.optimizer,
            "steps": self.steps,
            "lr": self.lr,
            "scheduler": None if self.scheduler is None else self.scheduler.describe(),
            "patience": self.patience,
            "min_delta": self.min_delta,
            "max_grad_norm": self.max_grad_norm,
            "options": {key: repr(value) for key, value in sorted(self.options.items())},
        }


def _check_optimizer_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(
            f"`optimizer` must be a name such as 'adam', got {name!r} of type {type(name).__name__}"
        )
    key = name.lower().replace("-", "").replace("_", "")
    if key not in OPTIMIZERS:
        raise ValueError(
            f"unknown `optimizer`={name!r}{nearest(key, OPTIMIZERS)}; valid names: "
            f"{', '.join(sorted(OPTIMIZERS))}"
        )
    return key


def _check_scheduler(scheduler: object) -> AbstractSchedule | None:
    if scheduler is None or isinstance(scheduler, AbstractSchedule):
        return scheduler
    if isinstance(scheduler, str):
        key = scheduler.lower()
        if key in ("constant", "none"):
            return None
        if key not in SCHEDULES:
            raise ValueError(
                f"unknown `scheduler`={scheduler!r}{nearest(key, SCHEDULES)}; valid names: "
                f"{', '.join(sorted(SCHEDULES))}, or None for a constant rate"
            )
        return SCHEDULES[key]()
    raise TypeError(
        f"`scheduler` must be None, a name ({', '.join(sorted(SCHEDULES))}) or a schedule such "
        f"as CosineSchedule(), got {scheduler!r}"
    )


def _check_options(optimizer: str, options: object) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise TypeError(f"`options` must be a mapping of keyword arguments, got {options!r}")
    accepted = [
        name
        for name in inspect.signature(OPTIMIZERS[optimizer].__init__).parameters
        if name not in ("self", "params")
    ]
    for key in options:
        if key == "lr":
            raise ValueError("give the learning rate as Stage(lr=...), not in `options`")
        if key not in accepted:
            raise ValueError(
                f"`options` has {key!r}, which the {optimizer!r} optimiser does not take"
                f"{nearest(str(key), accepted)}; valid: "
                f"{', '.join(name for name in accepted if name != 'lr')}"
            )
    return dict(options)
