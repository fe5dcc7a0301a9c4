"""Dense output: the solution anywhere in ``[t0, t1]``, from each step's interpolant."""

from __future__ import annotations

from typing import Any

import torch

from ._problem import Problem
from ._pytree import tree_map

__all__ = ["DenseOutput"]


class DenseOutput:
    """Piecewise-polynomial solution assembled from the recorded steps.

    Args:
        problem: for the state layout and time direction.
        matrix: the solver's interpolation matrix ``(rows, degree + 1)``.
        records: per loop iteration ``(t0, dt, reached, rows)``: ``reached`` is where the step
            ended (``t0`` for a rejected step), ``rows`` ``(batch, R, n)``.
        t_start, t_stop: internal start and end times ``(batch,)`` of the valid range.
    """

    def __init__(
        self,
        problem: Problem,
        matrix: torch.Tensor,
        records: list[tuple[torch.Tensor, ...]],
        t_start: torch.Tensor,
        t_stop: torch.Tensor,
    ):
        self.problem = problem
        self.matrix = matrix
        self.t_start = t_start
        self.t_stop = t_stop
        if records:
            self.t0 = torch.stack([r[0] for r in records], dim=1)  # (batch, M)
            self.dt = torch.stack([r[1] for r in records], dim=1)
            self.reached = torch.stack([r[2] for r in records], dim=1).contiguous()
            self.rows = torch.stack([r[3] for r in records], dim=1)  # (batch, M, R, n)
        else:
            self.rows = None

    def evaluate(self, t: Any) -> Any:
        problem = self.problem
        spec = problem.spec
        batch = spec.batch
        tau = torch.as_tensor(t, dtype=self.t_start.dtype, device=self.t_start.device)
        query_shape = tau.shape
        if spec.batched and tau.ndim >= 1 and tau.shape[0] == batch:
            tq = tau.reshape(batch, -1)
            per_sample = True
        else:
            tq = tau.reshape(1, -1).expand(batch, -1)
            per_sample = False
        if problem.direction is not None:
            tq = tq * problem.direction[:, None]
        lo = self.t_start[:, None]
        hi = self.t_stop[:, None]
        tol = 1e-6 * (hi - lo).abs().clamp(min=1e-30)
        outside = ((tq < lo - tol) | (tq > hi + tol)) & torch.isfinite(hi)
        if bool(outside.any()):
            user = tq if problem.direction is None else tq * problem.direction[:, None]
            bad = user[outside][0]
            raise ValueError(
                f"`evaluate(t)`: t={float(bad):g} lies outside the solved interval; "
                "evaluate within [t0, t1] (or the time the solve reached)"
            )
        n = spec.size
        if self.rows is None:  # no steps were taken: the solution is constant
            raise ValueError("`evaluate(t)`: the solve took no steps (t0 == t1)")
        steps = self.reached.shape[1]
        idx = torch.searchsorted(self.reached, tq.contiguous(), right=False).clamp(max=steps - 1)
        t0 = self.t0.gather(1, idx)
        dt = self.dt.gather(1, idx)
        safe = torch.where(dt == 0, torch.ones_like(dt), dt)
        theta = ((tq - t0) / safe).clamp(0.0, 1.0)  # (batch, Q)
        rows_r, rows_n = self.rows.shape[2], self.rows.shape[3]
        gathered = self.rows.gather(
            1, idx[:, :, None, None].expand(-1, -1, rows_r, rows_n)
        )  # (batch, Q, R, n)
        powers = theta[..., None] ** torch.arange(self.matrix.shape[1], device=theta.device)
        weights = (powers.to(self.matrix.dtype) @ self.matrix.T).to(gathered.dtype)
        values = (weights[..., None] * gathered).sum(dim=2)  # (batch, Q, n)
        if spec.batched:
            lead = query_shape[1:] if per_sample else query_shape
            out = values.reshape(batch, -1, n)
            tree = spec.unflatten_series(out)
            return tree_map(lambda x: x.reshape(batch, *lead, *x.shape[2:]), tree)
        tree = spec.unflatten_series(values.reshape(1, -1, n))
        return tree_map(lambda x: x.reshape((*query_shape, *x.shape[1:])), tree)
