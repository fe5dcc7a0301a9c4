"""One sequence runner for every recurrent cell (:func:`run_cell`, :class:`Recurrent`), and the
same trained cell integrated by any torchnde solver instead of its own scheme
(:func:`integrate_cell`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import solve as _solve
from ..controllers import ConstantStepSize
from ..solvers import AbstractSolver
from ..terms import ODETerm
from ._cells import AbstractRecurrentCell, State

__all__ = ["Recurrent", "SequenceOutput", "integrate_cell", "run_cell", "sequence_mask"]


@dataclass
class SequenceOutput:
    """What :func:`run_cell` returns.

    Attributes:
        outputs: every step's hidden output, ``(batch, T, hidden)`` (batch-first) or ``(T,
            batch, hidden)`` (time-first); zeros after a sequence's end; ``None`` when
            ``return_all=False``.
        last: each sequence's hidden output after its last valid step, ``(batch, hidden)``.
        state: the final state (every state vector), frozen after each sequence's end.
    """

    outputs: torch.Tensor | None
    last: torch.Tensor
    state: State


def sequence_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``(batch, steps)`` boolean mask, ``True`` for the first ``lengths[i]`` steps of row i."""
    if not isinstance(lengths, torch.Tensor) or lengths.ndim != 1:
        raise ValueError(f"`lengths` must be a 1-D tensor (one per sequence), got {lengths!r}")
    if lengths.is_floating_point() or lengths.is_complex():
        raise TypeError(f"`lengths` must hold integers, got dtype {lengths.dtype}")
    if len(lengths) and (int(lengths.min()) < 1 or int(lengths.max()) > steps):
        raise ValueError(
            f"`lengths` must lie in [1, {steps}] (the sequence length), got min "
            f"{int(lengths.min())}, max {int(lengths.max())}"
        )
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


def _check(cell, inputs, batch_first) -> tuple[int, int]:
    if not isinstance(cell, AbstractRecurrentCell):
        raise TypeError(
            f"`cell` must be a torchnde recurrent cell (CoRNN, LEM, ...), got {type(cell).__name__}"
        )
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 3:
        layout = "(batch, T, input)" if batch_first else "(T, batch, input)"
        raise ValueError(
            f"`inputs` must be a tensor shaped {layout}, got "
            f"{getattr(inputs, 'shape', type(inputs).__name__)}"
        )
    if inputs.shape[-1] != cell.input_size:
        raise ValueError(
            f"`inputs` has {inputs.shape[-1]} channels but the cell takes input_size="
            f"{cell.input_size}"
        )
    batch, steps = (inputs.shape[0], inputs.shape[1]) if batch_first else inputs.shape[1::-1]
    return batch, steps


def _mask_of(lengths, mask, batch, steps, device) -> torch.Tensor | None:
    if lengths is not None and mask is not None:
        raise ValueError("give `lengths` or `mask`, not both")
    if lengths is not None:
        mask = sequence_mask(lengths.to(device), steps)
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.shape != (batch, steps):
        raise ValueError(
            f"`mask` must be a (batch, T) = ({batch}, {steps}) tensor, got "
            f"{getattr(mask, 'shape', type(mask).__name__)}"
        )
    return mask.to(device=device, dtype=torch.bool)


def run_cell(
    cell: AbstractRecurrentCell,
    inputs: torch.Tensor,
    *,
    state: State | None = None,
    batch_first: bool = True,
    lengths: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    return_all: bool = True,
) -> SequenceOutput:
    """Run ``cell`` over a sequence with its own scheme.

    The input projections of all steps are computed in one product and the per-sequence
    matrices once (``cell.project``, ``cell.prepare``); the loop then takes one ``cell.step`` per
    input: the same work as a hand-written loop of the cell's arithmetic.

    Args:
        cell: a recurrent cell.
        inputs: ``(batch, T, input)`` (``batch_first=True``) or ``(T, batch, input)``.
        state: the initial state (default zeros).
        batch_first: the layout of ``inputs`` and of ``outputs``.
        lengths: ``(batch,)`` valid lengths, for sequences padded at the end; or
        mask: ``(batch, T)`` booleans, ``True`` where a step is real. A masked step leaves the
            state unchanged and outputs zeros.
        return_all: keep every step's output (else only ``last`` and ``state``).

    Returns:
        A :class:`SequenceOutput`.
    """
    batch, steps = _check(cell, inputs, batch_first)
    seq = inputs.transpose(0, 1) if batch_first else inputs  # (T, batch, input)
    projected = cell.project(seq)
    ctx = cell.prepare()
    # unbind, not projected[k]: indexing's backward writes a full-size zero tensor per step
    # (O(T²) work over a sequence), unbind's stacks the T gradients once
    per_step = projected.unbind(0)
    if state is None:
        state = cell.initial_state(batch, projected)
    keep = _mask_of(lengths, mask, batch, steps, inputs.device)
    outs: list[torch.Tensor] = []
    if keep is None:
        for k in range(steps):
            state = cell.step(state, per_step[k], ctx)
            if return_all:
                outs.append(cell.output(state))
    else:
        keep_t = keep.T.unsqueeze(-1).unbind(0)  # T of (batch, 1)
        for k in range(steps):
            new = cell.step(state, per_step[k], ctx)
            state = tuple(torch.where(keep_t[k], a, b) for a, b in zip(new, state))
            if return_all:
                outs.append(cell.output(state) * keep_t[k])
    outputs = None
    if return_all:
        outputs = torch.stack(outs, dim=1 if batch_first else 0)
    return SequenceOutput(outputs, cell.output(state), state)


def integrate_cell(
    cell: AbstractRecurrentCell,
    inputs: torch.Tensor,
    solver: AbstractSolver,
    *,
    substeps: int = 1,
    state: State | None = None,
    batch_first: bool = True,
    **solve_kwargs,
) -> SequenceOutput:
    """Run ``cell`` over a sequence by integrating its continuous right-hand side
    ``cell.vector_field`` with a torchnde ``solver`` instead of the cell's own scheme: each input
    is held for the cell's ``dt`` and that interval is one :func:`torchnde.solve` with
    ``substeps`` constant steps (or an adaptive ``controller`` passed through ``solve_kwargs``).

    The link between a trained recurrent network and its ODE: the same weights, another
    discretisation (``Euler`` with ``substeps=1`` reproduces an Euler-stepped cell to rounding;
    finer or higher-order solves approach the continuous model).

    Returns:
        A :class:`SequenceOutput` with every step's output.
    """
    batch, steps = _check(cell, inputs, batch_first)
    if isinstance(substeps, bool) or not isinstance(substeps, int) or substeps < 1:
        raise ValueError(f"`substeps` must be a positive int, got {substeps!r}")
    seq = inputs.transpose(0, 1) if batch_first else inputs
    if state is None:
        state = cell.initial_state(batch, seq)
    solve_kwargs.setdefault("controller", ConstantStepSize())
    solve_kwargs.setdefault("dt0", cell.dt / substeps)
    term = ODETerm(cell.vector_field)
    outs = []
    for k in range(steps):
        sol = _solve(term, solver, 0.0, cell.dt, tuple(state), args=seq[k], **solve_kwargs)
        state = tuple(leaf[-1] for leaf in sol.ys)
        outs.append(cell.output(state))
    outputs = torch.stack(outs, dim=1 if batch_first else 0)
    return SequenceOutput(outputs, cell.output(state), state)


class Recurrent(nn.Module):
    """A recurrent cell over whole sequences, with an optional linear readout.

    Args:
        cell: a recurrent cell (:class:`CoRNN`, :class:`LEM`, :class:`LipschitzRNN`, ...).
        output_size: the readout's size (``None``: no readout, return hidden outputs).
        batch_first: the layout of inputs and per-step outputs.
        return_all: return every step's (read-out) output; else only the last valid one.

    ``forward(inputs, lengths=None, mask=None)`` returns ``(batch, output)`` (last) or
    ``(batch, T, output)`` (all, batch-first).
    """

    def __init__(
        self,
        cell: AbstractRecurrentCell,
        output_size: int | None = None,
        *,
        batch_first: bool = True,
        return_all: bool = False,
    ):
        super().__init__()
        if not isinstance(cell, AbstractRecurrentCell):
            raise TypeError(f"`cell` must be a torchnde recurrent cell, got {type(cell).__name__}")
        self.cell = cell
        self.readout = None if output_size is None else nn.Linear(cell.hidden_size, output_size)
        self.batch_first = bool(batch_first)
        self.return_all = bool(return_all)

    def forward(self, inputs, lengths=None, mask=None):
        out = run_cell(
            self.cell,
            inputs,
            batch_first=self.batch_first,
            lengths=lengths,
            mask=mask,
            return_all=self.return_all,
        )
        h = out.outputs if self.return_all else out.last
        return h if self.readout is None else self.readout(h)
