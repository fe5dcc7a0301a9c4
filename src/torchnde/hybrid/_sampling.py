"""Where the networks are evaluated for the sparse regression: at states the data support.

A network is only trained where the training windows' solutions go. Evaluating it along one long
solve of the fitted model, from the first observation, can follow the model onto another orbit
and far outside the data, so that the regression fits the networks' extrapolation and reports a
convincing, wrong law. The samples here lie on the fitted solutions of windows that cover the
observations, each solved from its own (possibly learnt) initial state. A sample where an input
of a network lies outside the observed range of that input (a window started from a noisy
observation can leave it) is left out of that network's regression; the fraction left out is
reported, with a warning where it is not negligible.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..training import TrajectoryWindows
from ._equations import ParsedSystem
from ._result import EXTRAPOLATION_LIMIT, Sampling
from ._spec import Observations

__all__ = ["ExtrapolationWarning", "data_ranges", "sample_windows", "sampling_report"]


class ExtrapolationWarning(UserWarning):
    """The networks were evaluated for the regression where they were not trained (outside the
    observed range of their inputs): the recovered law there is the networks' extrapolation."""


@torch.no_grad()
def sample_windows(
    field: nn.Module, windows: TrajectoryWindows, starts: torch.Tensor, samples: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """States along the fitted solutions of windows that cover the observations.

    Args:
        field: the fitted vector field.
        windows: the training windows.
        starts: ``(W, states)`` every window's initial state (learnt, or its observation).
        samples: about how many states to return.

    Returns:
        ``(ts, states, count)``: the times ``(N,)`` in increasing order, the states
        ``(N, states)`` (a window's points from where the next window starts are left to that
        window, and failed solves are dropped) and the number of windows used.
    """
    cover = windows.covering()
    points = max(2, math.ceil(samples / len(cover)) + 1)
    ys = windows.solve(field, starts[cover], cover, points=points)
    times = windows.times_at(cover, points)
    keep = torch.ones(times.shape, dtype=torch.bool, device=times.device)
    keep[:-1] = times[:-1] < times[1:, :1]  # the next window takes over where it starts
    keep &= torch.isfinite(ys).all(dim=-1)
    return times[keep], ys[keep], len(cover)


def data_ranges(observations: Observations, time: str) -> dict[str, tuple[float, float]]:
    """The observed ``(min, max)`` of every state (missing values ignored) and of the time."""
    ranges = {}
    for j, state in enumerate(observations.states):
        column = observations.ys[:, j]
        column = column[torch.isfinite(column)]
        ranges[state] = (float(column.min()), float(column.max()))
    ranges[time] = (float(observations.ts[0]), float(observations.ts[-1]))
    return ranges


def sampling_report(
    parsed: ParsedSystem,
    observations: Observations,
    ts: torch.Tensor,
    states: torch.Tensor,
    windows: int,
) -> Sampling:
    """Which samples lie inside the data's range, per network call (those the regression uses)
    and overall, with the warning when many do not."""
    time = parsed.spec.time
    ranges = data_ranges(observations, time)
    env = {time: ts, **dict(zip(parsed.states, states.unbind(-1)))}
    outside_of = {
        name: (env[name] < low) | (env[name] > high) for name, (low, high) in ranges.items()
    }
    count = max(int(ts.shape[0]), 1)
    per_call, inside = {}, {}
    for call, (network, _) in parsed.calls.items():
        mask = torch.zeros(ts.shape, dtype=torch.bool, device=ts.device)
        for name in parsed.networks[network]:
            mask |= outside_of[name]
        per_call[call] = float(mask.sum()) / count
        inside[call] = ~mask
    any_state = torch.zeros(ts.shape, dtype=torch.bool, device=ts.device)
    for state in parsed.states:
        any_state |= outside_of[state]
    overall = float(any_state.sum()) / count
    return Sampling(
        ts=ts,
        states=states,
        windows=windows,
        ranges=ranges,
        outside=per_call,
        fraction_outside=overall,
        warning=_warning(per_call, ranges, parsed),
        inside=inside,
    )


def _warning(per_call: dict[str, float], ranges, parsed: ParsedSystem) -> str | None:
    bad = {call: share for call, share in per_call.items() if share > EXTRAPOLATION_LIMIT}
    if not bad:
        return None
    shares = ", ".join(f"{100 * share:.1f}% of {call}'s" for call, share in bad.items())
    names = sorted({n for call in bad for n in parsed.networks[parsed.calls[call][0]]})
    where = ", ".join(f"{n} in [{ranges[n][0]:.4g}, {ranges[n][1]:.4g}]" for n in names)
    return (
        f"the fitted model leaves the data: {shares} samples on the windows' fitted solutions "
        f"lie outside the data's range ({where}), where the networks were not trained on data; "
        "they were left out of the regression, but check the fit on the training window (a "
        "poor fit, or windows started from noisy observations: try multiple_shooting = true)"
    )
