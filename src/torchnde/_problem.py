"""The problem as the step loop sees it: flat states, forward internal time.

The loop and the solvers work on a flat state ``y: (batch, n)`` and an internal time ``τ`` that
always increases; :class:`Problem` turns those into the user's tree and the user's time
``t = direction · τ`` before calling the term, and flattens what comes back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from ._pytree import StateSpec, take_rows
from .terms import AbstractTerm

__all__ = ["Problem"]


class Problem:
    """A term with its arguments, bound to a state layout and an integration direction.

    Args:
        term: the equation.
        spec: how the state tree maps to ``(batch, n)``.
        args: passed through to the vector fields.
        direction: ``None`` when every sample integrates forwards, else ``(batch,)`` of ``±1``.
        time_dtype: the dtype of times handed to the vector field (default: the state's real
            dtype).

    Internal times are ``(batch,)`` tensors, or Python floats when the loop runs in host mode
    (no batch axis); the vector field always receives a tensor.
    """

    def __init__(
        self,
        term: AbstractTerm,
        spec: StateSpec,
        args: Any,
        direction: torch.Tensor | None,
        time_dtype: torch.dtype | None = None,
    ):
        self.term = term
        self.spec = spec
        self.args = args
        self.direction = direction
        if time_dtype is None:
            time_dtype = torch.empty((), dtype=spec.dtype).real.dtype
        self.time_dtype = time_dtype
        #: the direction as a number when every sample shares it (``-1.0`` for a backwards solve
        #: of one problem): the factor from internal to user time in the loop's host mode
        self.sign = 1.0 if direction is None or spec.batched else float(direction.reshape(-1)[0])
        #: ``dy/dt = vf``: the control is time itself, so ``prod(vf, dt) = vf · dt``
        self.ode = term.ode
        self._times: dict[float, torch.Tensor] = {}
        self._memo: dict[Any, Any] = {}
        #: ``(rtol, atol)`` of the step-size controller, if it has them: the tolerances an
        #: implicit method's Newton iteration is held to by default
        self.tolerances: tuple[float, float] | None = None
        #: whether the step-size controller adapts the steps (a failed step is retried shorter)
        self.adaptive = True

    def user_time(self, tau: torch.Tensor | float) -> torch.Tensor:
        """Internal ``(batch,)`` time → the user's time (0-dim without a batch axis)."""
        if not isinstance(tau, torch.Tensor):  # host mode: remember the last two times made
            cache = self._times
            if tau in cache:
                return cache[tau]
            t = torch.scalar_tensor(tau * self.sign, dtype=self.time_dtype, device=self.spec.device)
            if len(cache) > 1:
                cache.pop(next(iter(cache)))
            cache[tau] = t
            return t
        t = tau if self.direction is None else tau * self.direction
        return t if self.spec.batched else t.reshape(())

    def vf(self, tau: torch.Tensor, y: torch.Tensor) -> Any:
        """The term's vector field at internal time ``tau: (batch,)`` and flat ``y: (batch, n)``."""
        return self.term.vf(self.user_time(tau), self.spec.unflatten(y), self.args)

    def contr(self, tau0: torch.Tensor | float, tau1: torch.Tensor | float) -> Any:
        if self.ode and not isinstance(tau0, torch.Tensor):  # host mode: the step as a number
            return (tau1 - tau0) * self.sign
        return self.term.contr(self.user_time(tau0), self.user_time(tau1))

    def prod(self, vf: Any, control: Any) -> torch.Tensor:
        """``prod(vf, control)`` flattened to ``(batch, n)``."""
        if self.ode and isinstance(vf, torch.Tensor):  # the ODE product on one tensor, inlined
            scale = (
                control[:, None] if isinstance(control, torch.Tensor) and control.ndim else control
            )
            return self.spec.flatten(vf) * scale
        return self.spec.flatten(self.term.prod(vf, control))

    def fold(self, control: Any) -> float | None:
        """The number ``s`` when ``prod(vf, control) == s · vf`` (an ODE in host mode), so a
        solver may fold it into its coefficients; ``None`` otherwise."""
        return control if self.ode and not isinstance(control, torch.Tensor) else None

    def flat(self, vf: Any) -> torch.Tensor:
        """A vector field value shaped like the state, flattened to ``(batch, n)``."""
        return self.spec.flatten(vf)

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """A value computed once per solve and remembered (e.g. whether a solver must keep the
        graph of a derivative): ``compute()`` the first time ``key`` is asked for."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def with_args(self, args: Any) -> Problem:
        return Problem(self.term, self.spec, args, self.direction, self.time_dtype)

    def restricted(self, idx: torch.Tensor) -> Problem:
        """The problem of the samples ``idx`` of a batch (a compacted solve): the state layout,
        the directions and the ``args`` leaves whose first axis is the batch, taken at ``idx``."""
        spec = dataclasses.replace(self.spec, batch=int(idx.shape[0]))
        direction = None if self.direction is None else self.direction[idx]
        args = take_rows(self.args, idx, self.spec.batch)
        problem = Problem(self.term, spec, args, direction, self.time_dtype)
        problem.tolerances, problem.adaptive = self.tolerances, self.adaptive
        return problem

    def with_direction(self, direction: torch.Tensor | None) -> Problem:
        return Problem(self.term, self.spec, self.args, direction, self.time_dtype)
