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


def test_learnable_parameters_are_made_in_the_models_dtype():
    """0.1 stays 0.1 in float64 (not 0.10000000149 through float32)."""
    model = HybridModel(LV_SYSTEM)
    assert model.params["theta"].dtype == F64 and model.params["theta"].item() == 0.1
    assert model.parameter_values() == {"theta": 0.1}
    single = HybridModel(LV_SYSTEM, dtype=torch.float32)
    assert single.params["theta"].dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in single.parameters())


class _Known(nn.Module):
    """A stand-in network with a known closed form of several outputs, counting its calls."""

    def __init__(self, *columns):
        super().__init__()
        self.columns = columns
        self.calls = 0

    def forward(self, u):
        self.calls += 1
        return torch.stack([f(u) for f in self.columns], -1)


def test_the_compiled_field_is_the_equations_with_functions_time_parameters_and_networks():
    """Checked against sympy's own numeric evaluation of the same text, at random states."""
    import sympy

    system = SystemSpec(
        states=("x", "v"),
        equations={
            "x": "v + k*sin(t) - NN(x, v)*exp(-x**2/2)",
            "v": "-w**2*sqrt(x**2 + 1) + c*v**3/(1 + abs(x)) + pi*NN(x, v)",
        },
        constants={"w": 1.3, "c": 0.1},
        parameters={"k": 0.7},
        networks={"NN": NetworkSpec()},
    )
    model = HybridModel(system, networks={"NN": _Known(lambda u: u[..., 0] * u[..., 1])})
    x, v, t = sympy.symbols("x v t", real=True)
    env = {"x": x, "v": v, "t": t, "k": 0.7, "w": 1.3, "c": 0.1, "NN": lambda a, b: a * b}
    exact = [
        sympy.lambdify((t, x, v), sympy.sympify(system.equations[s], locals=env)) for s in "xv"
    ]
    y = torch.randn(50, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    time = torch.tensor(0.37, dtype=F64)
    out = model(time, y)
    expected = torch.tensor(
        [[f(0.37, float(a), float(b)) for f in exact] for a, b in y.tolist()], dtype=F64
    )
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    # differentiable in the state and the learnable parameter (float64 finite differences)
    theta = model.params["k"]
    torch.autograd.gradcheck(lambda y_: model(time, y_), (y[:4].clone().requires_grad_(),))
    out.sum().backward()
    assert theta.grad is not None and torch.isfinite(theta.grad)


def test_user_names_cannot_clash_with_the_generated_code():
    system = SystemSpec(
        states=("torch", "y", "nets"),
        equations={"torch": "-params*torch", "y": "t*nets", "nets": "y - _t0"},
        constants={"_t0": 2.0},
        parameters={"params": 0.5},
        time="t",
    )
    model = HybridModel(system)
    state = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    out = model(torch.tensor(4.0, dtype=F64), state)
    torch.testing.assert_close(out, torch.tensor([-0.5, 12.0, 0.0], dtype=F64))
    constant = HybridModel(SystemSpec(states=("x",), equations={"x": "2 + k"}, parameters={"k": 1}))
    batch = constant(torch.tensor(0.0, dtype=F64), torch.zeros(3, 1, dtype=F64))
    torch.testing.assert_close(batch, torch.full((3, 1), 3.0, dtype=F64))


def test_a_network_with_two_outputs_feeds_two_equations_evaluated_once():
    system = SystemSpec(
        states=("x", "y"),
        equations={"x": "alpha*x + NN(x, y)[0]", "y": "NN(x, y)[1] - theta*y"},
        constants={"alpha": 1.1},
        parameters={"theta": 0.4},
        networks={"NN": NetworkSpec()},
    )
    net = _Known(lambda u: -0.4 * u[..., 0] * u[..., 1], lambda u: 0.1 * u[..., 0] * u[..., 1])
    model = HybridModel(system, networks={"NN": net})
    net.calls = 0
    y = torch.tensor([[10.0, 10.0], [2.0, 3.0]], dtype=F64)
    out = model(torch.tensor(0.0, dtype=F64), y)
    assert net.calls == 1  # one evaluation feeds both equations
    x_, y_ = y.unbind(-1)
    torch.testing.assert_close(
        out, torch.stack([1.1 * x_ - 0.4 * x_ * y_, 0.1 * x_ * y_ - 0.4 * y_], -1)
    )
    assert set(model.network_outputs(torch.tensor(0.0, dtype=F64), y)) == {"NN[0]", "NN[1]"}
    # the default network gets as many outputs as the equations index, each scaled by its state
    default = HybridModel(system)
    assert default.nets["NN"].out_scale.shape == (2,)
    ts = torch.linspace(0, 10, 5, dtype=F64)
    default.set_scales(ts, torch.tensor([[30.0, 5.0]], dtype=F64).expand(5, 2))
    torch.testing.assert_close(default.nets["NN"].out_scale, torch.tensor([30.0, 5.0], dtype=F64))


@pytest.mark.parametrize(
    ("equations", "outputs", "message"),
    [
        (
            {"x": "alpha*x + NN1(x, y)", "y": "NN2(x, y) - theta*y"},
            2,
            r"equation for `x` uses `NN1\(x, y\)` as one number, but the network `NN1` returns 2 "
            r"outputs; pick an output in the equations \(NN1\(x, y\)\[0\], NN1\(x, y\)\[1\]\)",
        ),
        (
            {"x": "alpha*x + NN1(x, y)[0]", "y": "NN2(x, y) + NN1(x, y)[2]"},
            2,
            r"equation for `y` uses `NN1\(x, y\)\[2\]`, but the network `NN1` returns 2 outputs",
        ),
    ],
)
def test_a_network_whose_outputs_do_not_match_its_calls_is_refused_naming_the_equation(
    equations, outputs, message
):
    system = SystemSpec(
        states=("x", "y"),
        equations=equations,
        constants={"alpha": 1.1},
        parameters={"theta": 0.1},
        networks={"NN1": NetworkSpec(), "NN2": NetworkSpec()},
    )
    with pytest.raises(ValueError, match=message):
        HybridModel(system, networks={"NN1": nn.Linear(2, outputs)})


def test_a_plain_and_an_indexed_call_of_one_network_are_refused():
    spec = SystemSpec(
        states=("x", "y"),
        equations={"x": "NN(x, y)", "y": "NN(x, y)[1]"},
        networks={"NN": NetworkSpec()},
    )
    with pytest.raises(EquationError, match=r"equation for `x` calls `NN` without an output index"):
        parse_system(spec)


def test_user_networks_are_used_as_given_or_scaled_when_wrapped():
    from torchnde.hybrid import ScaledNetwork

    plain = nn.Linear(2, 1)
    model = HybridModel(LV_SYSTEM, networks={"NN1": plain})
    assert model.nets["NN1"] is plain
    ts = torch.linspace(0, 15, 4, dtype=F64)
    ys = torch.tensor([[30.0, 10.0]], dtype=F64).expand(4, 2)
    model.set_scales(ts, ys)  # nothing to scale on a plain module; the MLP of NN2 is scaled
    torch.testing.assert_close(model.nets["NN2"].in_scale, torch.tensor([30.0, 10.0], dtype=F64))
    wrapped = ScaledNetwork(nn.Linear(2, 1), inputs=2, output_scale=3.0)
    model = HybridModel(LV_SYSTEM, networks={"NN1": wrapped})
    model.set_scales(ts, ys)
    torch.testing.assert_close(wrapped.in_scale, torch.tensor([30.0, 10.0], dtype=F64))
    torch.testing.assert_close(wrapped.out_scale, torch.tensor([3.0], dtype=F64))  # fixed: kept
    u = torch.tensor([[15.0, 5.0]], dtype=F64)
    torch.testing.assert_close(wrapped(u), 3.0 * wrapped.network(u / torch.tensor([30.0, 10.0])))
    fixed = HybridModel(
        SystemSpec(
            **{
                **LV_SYSTEM.__dict__,
                "networks": {"NN1": NetworkSpec(input_scale=(1, 2)), "NN2": NetworkSpec()},
            }
        )
    )
    fixed.set_scales(ts, ys)
    torch.testing.assert_close(fixed.nets["NN1"].in_scale, torch.tensor([1.0, 2.0], dtype=F64))
    with pytest.raises(ValueError, match="`input_scale` must be a positive number"):
        NetworkSpec(input_scale=-1.0)


def test_a_network_factory_builds_the_users_network(tmp_path):
    (tmp_path / "nets.py").write_text(
        "import torch\n"
        "def tiny(inputs, outputs):\n"
        "    return torch.nn.Sequential(torch.nn.Linear(inputs, 4), torch.nn.Tanh(),\n"
        "                               torch.nn.Linear(4, outputs))\n"
    )
    spec = NetworkSpec(factory=f"{tmp_path / 'nets.py'}:tiny", output_scale=2.0)
    system = SystemSpec(**{**LV_SYSTEM.__dict__, "networks": {"NN1": spec, "NN2": NetworkSpec()}})
    model = HybridModel(system)
    net = model.nets["NN1"]
    assert isinstance(net.network, nn.Sequential) and net.network[0].in_features == 2
    assert net.out_scale.item() == 2.0 and net.network[0].weight.dtype == F64
    for factory, error, message in [
        (f"{tmp_path / 'nets.py'}:missing", ValueError, "has no function 'missing'"),
        ("nope.py:f", ImportError, "cannot import 'nope.py'"),
    ]:
        networks = {"NN1": NetworkSpec(factory=factory), "NN2": NetworkSpec()}
        with pytest.raises(error, match=message):
            HybridModel(SystemSpec(**{**LV_SYSTEM.__dict__, "networks": networks}))


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
