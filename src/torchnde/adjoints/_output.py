"""Stack what a solve saved into ``(batch, times, n)``, in the order t0, ts, steps, t1."""

from __future__ import annotations

import torch

from .._loop import Context, LoopState, Recorder
from .._solution import Status

__all__ = ["assemble"]


def assemble(ctx: Context, plan, st: LoopState, rec: Recorder, y0: torch.Tensor):
    """Return ``(ys, ts)``: saved values ``(batch, T, n)`` and their internal times ``(batch, T)``.
    Values a sample never reached are NaN."""
    ys, ts = [], []
    if plan.t0:
        ys.append(y0[:, None])
        ts.append(ctx.t0[:, None])
    if plan.ts is not None:
        ys.append(rec.ts_values)
        ts.append(plan.ts)
    if plan.steps:
        y_steps, t_steps = _steps(rec, y0)
        ys.append(y_steps)
        ts.append(t_steps)
    if plan.t1:
        ok = st.status <= int(Status.EVENT)
        nan = torch.full_like(st.y, float("nan"))
        ys.append(torch.where(ok[:, None], st.y, nan)[:, None])
        ts.append(torch.where(ok, st.t, ctx.t_end)[:, None])
    if not ys:
        batch, n = y0.shape
        return y0.new_zeros(batch, 0, n), ctx.t0.new_zeros(batch, 0)
    return torch.cat(ys, dim=1), torch.cat(ts, dim=1)


def _steps(rec: Recorder, y0: torch.Tensor):
    """Every accepted step, left-aligned per sample and NaN-padded."""
    batch, n = y0.shape
    if not rec.step_records:
        return y0.new_zeros(batch, 0, n), y0.new_zeros(batch, 0).real
    t = torch.stack([r[0] for r in rec.step_records], dim=1)  # (batch, M)
    y = torch.stack([r[1] for r in rec.step_records], dim=1)  # (batch, M, n)
    acc = torch.stack([r[2] for r in rec.step_records], dim=1)
    pos = acc.long().cumsum(dim=1) - 1
    width = int(acc.sum(dim=1).max())
    b_idx, m_idx = torch.nonzero(acc, as_tuple=True)
    p_idx = pos[b_idx, m_idx]
    y_out = torch.full((batch, width, n), float("nan"), dtype=y.dtype, device=y.device)
    t_out = torch.full((batch, width), float("nan"), dtype=t.dtype, device=t.device)
    y_out = y_out.index_put((b_idx, p_idx), y[b_idx, m_idx])
    t_out = t_out.index_put((b_idx, p_idx), t[b_idx, m_idx])
    return y_out, t_out
