"""B10 — recurrent cells over a sequence, forward + backward: each torchnde cell run by the shared
sequence runner (``torchnde.nn.Recurrent``: ``run_cell`` and a linear readout of the last state)
against the same cell's arithmetic written out in a bare Python loop (the limit: the runner's
overhead), and torch's ``nn.GRU`` / ``nn.LSTM`` of the same width (the peers)."""

from __future__ import annotations

import torch

from torchnde.nn import LEM, CoRNN, LipschitzRNN, Recurrent

from ._common import Case, Contestant, Counts, Options, Row, _Counter

BATCH, HIDDEN, INPUT = 64, 128, 2


def _hand_cornn(cell: CoRNN, readout):
    """coRNN's IMEX step written out."""
    w_in, b_in = cell.inp.weight, cell.inp.bias
    w_y, w_z = cell.w_y.weight, cell.w_z.weight
    dt, gamma, eps = cell.dt, cell.gamma, cell.epsilon

    def run(x):  # x: (batch, T, input)
        p = (x @ w_in.T + b_in).transpose(0, 1).unbind(0)
        y = z = x.new_zeros(x.shape[0], HIDDEN)
        for pk in p:
            drive = torch.tanh(pk + y @ w_y.T + z @ w_z.T)
            z = (z + dt * (drive - gamma * y)) / (1 + dt * eps)
            y = y + dt * z
        return readout(y)

    return run


def _hand_lem(cell: LEM, readout):
    """LEM's step written out."""
    w_in, b_in, w_y, w_z, n, dt = (
        cell.inp.weight, cell.inp.bias, cell.rec_y.weight, cell.rec_z.weight, HIDDEN, cell.dt,
    )  # fmt: skip

    def run(x):
        p = (x @ w_in.T + b_in).transpose(0, 1).unbind(0)
        y = z = x.new_zeros(x.shape[0], n)
        for pk in p:
            g = pk[:, : 3 * n] + y @ w_y.T
            dt1 = dt * torch.sigmoid(g[:, :n])
            dt2 = dt * torch.sigmoid(g[:, n : 2 * n])
            z = (1 - dt1) * z + dt1 * torch.tanh(g[:, 2 * n :])
            y = (1 - dt2) * y + dt2 * torch.tanh(pk[:, 3 * n :] + z @ w_z.T)
        return readout(y)

    return run


def _hand_lipschitz(cell: LipschitzRNN, readout):
    """The Lipschitz RNN's Euler step written out, its matrices built once per sequence."""
    w_in, b_in, dt = cell.inp.weight, cell.inp.bias, cell.dt

    def run(x):
        a, w = cell.matrices()
        p = (x @ w_in.T + b_in).transpose(0, 1).unbind(0)
        h = x.new_zeros(x.shape[0], HIDDEN)
        for pk in p:
            h = h + dt * (h @ a.T + torch.tanh(h @ w.T + pk))
        return readout(h)

    return run


def build(opts: Options) -> Case:
    length = 50 if opts.quick else 200
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, length, INPUT, generator=gen)
    target = torch.randn(BATCH, 1, generator=gen)
    counter = _Counter()  # the cells are not vector fields: nothing to count
    contestants, bare = [], {}

    def step_of(model_call, params):
        def run(probe):
            for p in params:
                p.grad = None
            loss = (model_call(x) - target).pow(2).mean()
            probe()
            loss.backward()
            return loss

        return run

    def counts(result, calls, steps):
        return Counts(str(length), length)

    for name, cell, hand in (
        ("CoRNN", CoRNN(INPUT, HIDDEN, dt=0.034, gamma=1.3, epsilon=12.7), _hand_cornn),
        ("LEM", LEM(INPUT, HIDDEN, dt=1.0), _hand_lem),
        ("LipschitzRNN", LipschitzRNN(INPUT, HIDDEN, dt=0.03), _hand_lipschitz),
    ):
        model = Recurrent(cell, 1)
        params = list(model.parameters())
        by_hand = hand(cell, model.readout)
        label = f"{name}: hand-written loop"
        bare[label] = lambda by_hand=by_hand, params=params: step_of(by_hand, params)(lambda: None)
        contestants.append(
            Contestant(
                "torchnde",
                f"{name} Recurrent",
                step_of(model, params),
                counts,
                lambda n, per_call, label=label: per_call[label],
                counter,
            )
        )
    for kind, cls in (("GRU", torch.nn.GRU), ("LSTM", torch.nn.LSTM)):
        rnn, readout = cls(INPUT, HIDDEN, batch_first=True), torch.nn.Linear(HIDDEN, 1)

        def call(x, rnn=rnn, readout=readout):
            return readout(rnn(x)[0][:, -1])

        params = [*rnn.parameters(), *readout.parameters()]
        contestants.append(
            Contestant(
                "torch",
                f"nn.{kind}",
                step_of(call, params),
                counts,
                lambda n, pc: float("nan"),
                counter,
                "peer",
            )
        )
    skipped: list[Row] = []
    return Case(
        name="B10",
        title="recurrent cells: sequence forward + backward",
        setup=[
            f"batch {BATCH}, T = {length} steps, {INPUT} input channels, hidden {HIDDEN}, "
            "float32; loss MSE of a linear readout of the last state, backward() to every "
            "parameter",
            "torchnde: Recurrent(cell, 1) (run_cell: one input projection for the sequence, one "
            "cell.step per input); limit: the same cell's arithmetic in a bare Python loop",
            "peers: torch.nn.GRU / nn.LSTM of the same width (fused C++ cells) with the same "
            "readout",
        ],
        contestants=contestants,
        skipped=skipped,
        bare=bare,
        bare_calls=1,
        default_rounds=7,
        targets={"overhead": 1.2},
        notes=[
            "overhead = the runner's time / the hand-written loop's: the target is <= 1.2",
            "ratio = time / the faster of GRU and LSTM (information: torch's cells are fused "
            "kernels, ours are a few tensor operations each)",
            "one thread: these small tensors run several times faster single-threaded on a "
            "shared 2-core machine than with torch's default thread count",
        ],
    )
