"""Synthetic observations from a fully known system."""

from __future__ import annotations

from collections.abc import Sequence

import sympy
import torch

from .._saveat import SaveAt
from .._solve import solve
from ..controllers import PIDController
from ..solvers import Dopri5
from ..terms import ODETerm
from ._equations import parse_expression, parse_system
from ._model import HybridModel
from ._spec import Observations, SyntheticData, SystemSpec

__all__ = ["simulate", "true_trajectory"]


def _true_model(data: SyntheticData, states: Sequence[str]) -> HybridModel:
    system = SystemSpec(
        states=tuple(states), equations=dict(data.equations), constants=dict(data.parameters)
    )
    names = [*states, system.time, *data.parameters]
    symbols = {name: sympy.Symbol(name, real=True) for name in names}
    for state, text in data.equations.items():  # a generating system is fully known
        parse_expression(
            text, f"the synthetic data's equation for `{state}`", symbols, allow_networks=False
        )
    return HybridModel(parse_system(system))


def _initial(data: SyntheticData, states: Sequence[str]) -> torch.Tensor:
    missing = [s for s in states if s not in data.initial]
    if missing:
        raise ValueError(
            f"the synthetic data's `initial` has no value for the state `{missing[0]}`; give one "
            "for every state"
        )
    return torch.tensor([float(data.initial[s]) for s in states], dtype=torch.float64)


@torch.no_grad()
def true_trajectory(data: SyntheticData, states: Sequence[str], ts: torch.Tensor) -> torch.Tensor:
    """The exact (noise-free) solution of the generating system at times ``ts`` (from
    ``data.t_start``), to tolerance 1e-10; ``(T, states)``."""
    model = _true_model(data, states)
    ts = ts.to(torch.float64)
    sol = solve(
        ODETerm(model),
        Dopri5(),
        float(data.t_start),
        float(ts[-1]),
        _initial(data, states),
        controller=PIDController(rtol=1e-10, atol=1e-10),
        saveat=SaveAt(ts=ts),
        max_steps=1_000_000,
    )
    return sol.ys


def simulate(data: SyntheticData, states: Sequence[str]) -> Observations:
    """Observe the generating system on ``[t_start, t_end]`` at ``n_points`` times (a grid, or
    uniform random times with ``irregular``), add Gaussian noise whose standard deviation is
    ``noise`` times each state's standard deviation over the window (``noise_relative_to="std"``)
    or times the mean of its absolute value (``"mean"``), and drop a fraction ``missing`` of the
    values (never at the first time).

    Args:
        data: the generating system and how it is observed.
        states: the state names, in column order.

    Returns:
        :class:`Observations` with ``truth=data``.
    """
    if data.n_points < 2:
        raise ValueError(f"`n_points` must be at least 2, got {data.n_points}")
    if not data.t_end > data.t_start:
        raise ValueError(f"`t_end`={data.t_end} must be after `t_start`={data.t_start}")
    if data.noise < 0 or not 0 <= data.missing < 1:
        raise ValueError("`noise` must be ≥ 0 and `missing` in [0, 1)")
    gen = torch.Generator().manual_seed(int(data.seed))
    if data.irregular:
        inner = torch.rand(data.n_points - 2, generator=gen, dtype=torch.float64).sort().values
        ts = torch.cat(
            [torch.zeros(1, dtype=torch.float64), inner, torch.ones(1, dtype=torch.float64)]
        )
        ts = data.t_start + (data.t_end - data.t_start) * ts
    else:
        ts = torch.linspace(data.t_start, data.t_end, data.n_points, dtype=torch.float64)
    clean = true_trajectory(data, states, ts)
    size = clean.std(dim=0) if data.noise_relative_to == "std" else clean.abs().mean(dim=0)
    noise = data.noise * size * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    ys = clean + noise
    if data.missing:
        drop = torch.rand(ys.shape, generator=gen, dtype=torch.float64) < data.missing
        drop[0] = False
        ys = ys.masked_fill(drop, float("nan"))
    return Observations(ts=ts, ys=ys, states=tuple(states), truth=data)
