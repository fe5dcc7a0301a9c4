"""Hybrid models: the equation parser, the model as a vector field, synthetic data, and the
discovery workflow on the lecture's Lotka–Volterra problem."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchnde as tn
from torchnde.hybrid import (
    EquationError,
    HybridModel,
    NetworkSpec,
    SyntheticData,
    SystemSpec,
    parse_system,
    simulate,
)

F64 = torch.float64

LV_SYSTEM = SystemSpec(
    states=("x", "y"),
    equations={"x": "alpha*x + NN1(x, y)", "y": "NN2(x, y) - theta*y"},
    constants={"alpha": 1.1},
    parameters={"theta": 0.1},
    networks={"NN1": NetworkSpec(), "NN2": NetworkSpec()},
)
LV_TRUTH = dict(
    equations={"x": "alpha*x - beta*x*y", "y": "gamma*x*y - delta*y"},
    parameters=dict(alpha=1.1, beta=0.4, gamma=0.1, delta=0.4),
    initial=dict(x=10.0, y=10.0),
)


# ------------------------------------------------------------------------------------------------
# the parser


@pytest.mark.parametrize(
    "equations, message",
    [
        (
            {"x": "alpha*x + NN1(x, y)", "y": "NN2(x, y) - thetaa*y"},
            r"undefined symbol `thetaa`.*`theta`",
        ),
        ({"x": "alpha*x + NN3(x, y)", "y": "NN2(x, y)"}, r"calls `NN3`.*declared network"),
        ({"x": "alpha*x + sinn(x)", "y": "NN2(x, y)"}, r"calls `sinn`.*`sin`"),
        ({"x": "alpha*x +* NN1(x, y)", "y": "NN2(x, y)"}, r"equation for `x` does not parse"),
        ({"x": "NN1(x*y, y)", "y": "NN2(x, y)"}, r"network `NN1` takes `x\*y`"),
        ({"x": "NN1(x, y)", "y": "NN1(y, x)"}, r"one list of inputs"),
        ({"x": "NN1(x, y)"}, r"state `y` has no equation"),
        ({"x": "NN1(x, y)", "y": "NN2(x, y)", "z": "x"}, r"`z`, which is not a state"),
        ({"x": "", "y": "NN2(x, y)"}, r"equation for `x` is empty"),
    ],
)
def test_bad_equations_are_named(equations, message):
    spec = SystemSpec(
        states=("x", "y"),
        equations=equations,
        constants={"alpha": 1.1},
        parameters={"theta": 0.1},
        networks={"NN1": NetworkSpec(), "NN2": NetworkSpec()},
    )
    with pytest.raises(EquationError, match=message):
        parse_system(spec)


def test_bad_names_are_refused():
    with pytest.raises(EquationError, match="declared twice"):
        parse_system(
            SystemSpec(
                states=("x",), equations={"x": "-k*x"}, constants={"k": 1.0}, parameters={"k": 2.0}
            )
        )
    with pytest.raises(EquationError, match="reserved"):
        parse_system(SystemSpec(states=("sin",), equations={"sin": "-sin"}))
    with pytest.raises(EquationError, match="no equation calls"):
        parse_system(
            SystemSpec(states=("x",), equations={"x": "-x"}, networks={"NN": NetworkSpec()})
        )


def test_names_sympy_would_take_for_its_own_are_plain_symbols():
    """S, I, E, N, Q are sympy objects by default; here they are the user's states."""
    spec = SystemSpec(
        states=("S", "I", "E", "N"),
        equations={"S": "-beta*S*I/N", "I": "beta*S*I/N - E", "E": "I", "N": "0*N"},
        constants={"beta": 0.5},
    )
    model = HybridModel(spec)
    y = torch.tensor([0.9, 0.1, 0.0, 1.0], dtype=F64)
    torch.testing.assert_close(
        model(torch.tensor(0.0, dtype=F64), y),
        torch.tensor([-0.045, 0.045, 0.1, 0.0], dtype=F64),
    )


# ------------------------------------------------------------------------------------------------
# the model


def test_hybrid_model_evaluates_known_physics_plus_networks():
    class Product(nn.Module):  # a "network" that is exactly -0.4*x*y
        def forward(self, u):
            return -0.4 * u[..., :1] * u[..., 1:]

    class Zero(nn.Module):
        def forward(self, u):
            return torch.zeros_like(u[..., :1])

    model = HybridModel(LV_SYSTEM, networks={"NN1": Product(), "NN2": Zero()})
    y = torch.tensor([[10.0, 10.0], [2.0, 3.0]], dtype=F64)
    out = model(torch.tensor(0.0, dtype=F64), y)
    expected = torch.stack([1.1 * y[:, 0] - 0.4 * y[:, 0] * y[:, 1], -0.1 * y[:, 1]], -1)
    torch.testing.assert_close(out, expected)
    # a solver, and gradients to the learnable parameter through it
    sol = tn.solve(tn.ODETerm(model), tn.RK4(), 0.0, 0.5, y[0], dt0=0.01)
    sol.ys.sum().backward()
    assert model.params["theta"].grad is not None and model.params["theta"].grad != 0


def test_default_networks_are_scaled_and_start_near_the_known_physics():
    model = HybridModel(LV_SYSTEM)
    ts = torch.linspace(0, 15, 10, dtype=F64)
    ys = torch.tensor([[30.0, 10.0]], dtype=F64).expand(10, 2)
    model.set_scales(ts, ys)
    torch.testing.assert_close(model.nets["NN1"].in_scale, torch.tensor([30.0, 10.0], dtype=F64))
    torch.testing.assert_close(model.nets["NN1"].out_scale, torch.tensor([20.0], dtype=F64))
    out = model.network_outputs(torch.tensor(0.0, dtype=F64), ys)
    assert out["NN1"].shape == (10,)
    assert out["NN1"].abs().max() < 0.2 * 20.0  # a small last layer: close to zero at the start


# ------------------------------------------------------------------------------------------------
# synthetic data


def test_simulate_observes_the_true_solution_with_the_noise_asked_for():
    data = SyntheticData(**LV_TRUTH, t_end=15.0, n_points=301, noise=0.05, seed=3)
    obs = simulate(data, ("x", "y"))
    clean = simulate(SyntheticData(**LV_TRUTH, t_end=15.0, n_points=301, noise=0.0), ("x", "y"))
    residual = (obs.ys - clean.ys) / clean.ys.std(dim=0)
    assert abs(float(residual.std()) - 0.05) < 0.006
    assert obs.truth is data
    # the first point, x0 = y0 = 10, exactly in the noise-free data
    torch.testing.assert_close(clean.ys[0], torch.tensor([10.0, 10.0], dtype=F64))


def test_simulate_irregular_times_and_missing_values():
    data = SyntheticData(**LV_TRUTH, t_end=5.0, n_points=50, irregular=True, missing=0.2, seed=1)
    obs = simulate(data, ("x", "y"))
    assert obs.ts[0] == 0.0 and obs.ts[-1] == 5.0 and bool((obs.ts.diff() > 0).all())
    assert not bool((obs.ts.diff() - obs.ts.diff().mean()).abs().max() < 1e-9)
    missing = torch.isnan(obs.ys).float().mean()
    assert 0.1 < missing < 0.3 and bool(torch.isfinite(obs.ys[0]).all())


def test_simulate_refuses_networks_and_missing_initial_values():
    with pytest.raises(EquationError, match="networks are not allowed"):
        simulate(
            SyntheticData(equations={"x": "NN(x)"}, parameters={}, initial={"x": 1.0}, t_end=1.0),
            ("x",),
        )
    with pytest.raises(ValueError, match="initial"):
        simulate(SyntheticData(equations={"x": "-x"}, parameters={}, initial={}, t_end=1.0), ("x",))


# ------------------------------------------------------------------------------------------------
# the workflow
