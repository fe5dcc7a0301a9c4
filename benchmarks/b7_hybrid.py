"""B7 — a hybrid model from equation text against the same field written by hand.

The demo's Lotka–Volterra hybrid model, ``dx/dt = alpha*x + NN1(x, y)``, ``dy/dt = NN2(x, y) -
theta*y`` (two MLPs 2→32→32→1, tanh, with the input and output scaling of the default networks,
float64), as :class:`torchnde.hybrid.HybridModel` builds it from text, and as a hand-written
``nn.Module`` calling the very same network modules and parameter:

    x, y = state.unbind(-1)
    torch.stack((1.1 * x + nn1(state)[..., 0], nn2(state)[..., 0] - theta * y), -1)

Rows: one field evaluation on the demo's 144 training windows (state ``(144, 2)``; timed as 50
calls), and one training step of the demo (the 144 windows of 8 observations solved with RK4,
dt 0.1, from learnt initial states, the windows' loss, ``backward()``). Target: the hybrid
model within 1.2× of the hand-written field on both. An extra row times the evaluation the
hybrid model had before its equations were compiled into one function (one lambdified function
per equation), for the before/after comparison.
"""

from __future__ import annotations

import torch
from torch import nn

import torchnde
from torchnde.hybrid import HybridModel, NetworkSpec, SyntheticData, SystemSpec, simulate
from torchnde.training import MultipleShooting, TrajectoryWindows

from ._common import Case, Contestant, Counts, Options, _Counter

CALLS = 50
SYSTEM = SystemSpec(
    states=("x", "y"),
    equations={"x": "alpha*x + NN1(x, y)", "y": "NN2(x, y) - theta*y"},
    constants={"alpha": 1.1},
    parameters={"theta": 0.1},
    networks={"NN1": NetworkSpec(hidden=32), "NN2": NetworkSpec(hidden=32)},
)
DATA = SyntheticData(
    equations={"x": "alpha*x - beta*x*y", "y": "gamma*x*y - delta*y"},
    parameters={"alpha": 1.1, "beta": 0.4, "gamma": 0.1, "delta": 0.4},
    initial={"x": 10.0, "y": 10.0},
    t_end=15.0,
    n_points=151,
    noise=0.05,
)


class _Counted(nn.Module):
    """Counts the calls of a field (one Python increment per call, alike for both rows)."""

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field
        self.counter = _Counter()

    def forward(self, t, y, args=None):
        self.counter.calls += 1
        return self.field(t, y, args)


class HandWritten(nn.Module):
    """The same equations written by hand, on the hybrid model's own networks and parameter."""

    def __init__(self, model: HybridModel):
        super().__init__()
        self.nn1 = model.nets["NN1"]
        self.nn2 = model.nets["NN2"]
        self.theta = model.params["theta"]

    def forward(self, t, y, args=None):
        x, v = y.unbind(-1)
        return torch.stack(
            (1.1 * x + self.nn1(y)[..., 0], self.nn2(y)[..., 0] - self.theta * v), dim=-1
        )


class PerEquation(nn.Module):
    """How HybridModel evaluated the equations before they were compiled into one function (for
    the before/after row): one sympy-lambdified function per equation, the networks' inputs
    gathered and stacked per call, the outputs stacked."""

    def __init__(self, model: HybridModel):
        super().__init__()
        import sympy
        from sympy.core.function import AppliedUndef

        self.model = model
        parsed = model.parsed
        spec = parsed.spec
        constants = {parsed.symbols[k]: float(v) for k, v in spec.constants.items()}
        outputs = {name: f"_{name}_output" for name in parsed.networks}
        names = [spec.time, *spec.states, *spec.parameters, *outputs.values()]
        symbols = [sympy.Symbol(a, real=True) for a in names]
        self.fns = []
        for state in spec.states:
            expr = parsed.equations[state].subs(constants)
            calls = {
                c: sympy.Symbol(outputs[c.func.__name__], real=True)
                for c in expr.atoms(AppliedUndef)
            }
            self.fns.append(sympy.lambdify(symbols, expr.subs(calls), modules="torch"))

    def forward(self, t, y, args=None):
        model = self.model
        parsed = model.parsed
        columns = y.unbind(-1)
        env = {parsed.spec.time: t, **dict(zip(model.states, columns))}
        outputs = []
        for name, inputs in parsed.networks.items():
            stacked = torch.stack(torch.broadcast_tensors(*(env[a] for a in inputs)), dim=-1)
            outputs.append(model.nets[name](stacked)[..., 0])
        values = (t, *columns, *(model.params[p] for p in parsed.spec.parameters), *outputs)
        out = []
        for fn in self.fns:
            value = fn(*values)
            if not isinstance(value, torch.Tensor) or value.shape != columns[0].shape:
                value = torch.as_tensor(value, dtype=y.dtype).expand_as(columns[0])
            out.append(value)
        return torch.stack(out, dim=-1)


def build(opts: Options) -> Case:
    torch.manual_seed(0)
    observations = simulate(DATA, SYSTEM.states)
    model = HybridModel(SYSTEM)
    model.set_scales(observations.ts, observations.ys)
    hand = HandWritten(model)
    windows = TrajectoryWindows(
        observations.ts, observations.ys, 8, solver=torchnde.RK4(), dt0=0.1, autonomous=True
    )
    state = windows.y0.clone()
    t = torch.tensor(0.0, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(t, state), hand(t, state), rtol=0, atol=0)

    def bare() -> None:
        with torch.no_grad():
            hand(t, state)

    def limit(n: Counts, per_call: dict[str, float]) -> float:
        return n.nfe * per_call["fwd"]

    def counts(result, calls: int, steps: int) -> Counts:
        return Counts("—", calls)

    before = PerEquation(model)
    contestants = []
    rows = (
        ("torchnde", "HybridModel", model, "main"),
        ("by hand", "hand-written", hand, "peer"),
        ("torchnde", "per equation (before)", before, "extra"),
    )
    for library, name, field, role in rows:
        counted = _Counted(field)

        def calls_run(probe, counted=counted):
            with torch.no_grad():
                for _ in range(CALLS):
                    counted(t, state)
            probe()

        shooting = MultipleShooting(counted, windows)

        def step_run(probe, shooting=shooting):
            loss = shooting.loss()
            probe()
            loss.backward()
            shooting.zero_grad(set_to_none=True)
            return loss

        contestants.append(
            Contestant(
                library,
                f"{name}, {CALLS} calls",
                calls_run,
                counts,
                limit,
                counted.counter,
                role,
                group="calls",
            )
        )
        contestants.append(
            Contestant(
                library,
                f"{name}, train step",
                step_run,
                counts,
                limit,
                counted.counter,
                role,
                group="step",
            )
        )
    return Case(
        name="B7",
        title="a hybrid model from equation text vs the same field by hand",
        setup=[
            "Lotka–Volterra hybrid model of the demo (2 MLPs 2→32→32→1, tanh, scaled), float64",
            f"calls: {CALLS} evaluations on the {windows.count} windows' states ({windows.count}, 2), "
            "no_grad; step: the demo's training step (RK4, dt 0.1, windows of 8 observations, "
            "multiple shooting, loss and backward())",
        ],
        contestants=contestants,
        bare={"fwd": bare},
        default_rounds=7,
        targets={"ratio": 1.2},
        notes=[
            "ratio = time / the hand-written field's time in the same group",
            "per equation (before): the evaluation HybridModel had before it compiled the "
            "equations into one function",
        ],
    )
