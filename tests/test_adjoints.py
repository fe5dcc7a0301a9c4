"""Gradients: every adjoint against finite differences (gradcheck, float64) and against each other."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

import torchnde as tn

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TIGHT = tn.PIDController(rtol=1e-11, atol=1e-12)
ADJOINTS = {
    "direct": tn.DirectAdjoint(),
    "checkpoint": tn.CheckpointAdjoint(checkpoints=3),
    "backsolve": tn.BacksolveAdjoint(rtol=1e-11, atol=1e-12),
}


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _field(weight):
    def f(t, y, args):
        scale, forcing = args
        t = t.reshape(-1, *([1] * (y.ndim - 1))) if t.ndim else t
        return torch.tanh(y @ weight.T) * scale + torch.sin(t) * forcing

    return f


@pytest.mark.parametrize("name", list(ADJOINTS))
@pytest.mark.parametrize("batch_axis", [None, 0])
@pytest.mark.parametrize("backwards", [False, True])
def test_gradcheck_against_finite_differences(name, batch_axis, backwards):
    """y0, args and all three kinds of time (t0, t1, ts), forwards and backwards in time."""
    torch.manual_seed(0)
    f = _field(torch.randn(2, 2) * 0.5)
    adjoint = ADJOINTS[name]

    def solve(y0, scale, forcing, t0, t1, ts):
        start, end, saves = (t1, t0, ts.flip(0)) if backwards else (t0, t1, ts)
        sol = tn.solve(
            tn.ODETerm(f),
            tn.Dopri5(),
            start,
            end,
            y0,
            args=(scale, forcing),
            controller=TIGHT,
            saveat=tn.SaveAt(t0=True, ts=saves, t1=True),
            adjoint=adjoint,
            batch_axis=batch_axis,
        )
        return sol.ys

    inputs = (
        torch.randn(2, 2, requires_grad=True),
        torch.tensor(0.8, requires_grad=True),
        torch.tensor(0.3, requires_grad=True),
        torch.tensor(0.1, requires_grad=True),
        torch.tensor(1.2, requires_grad=True),
        torch.tensor([0.4, 0.9], requires_grad=True),
    )
    assert torch.autograd.gradcheck(solve, inputs, atol=1e-6, rtol=1e-5, fast_mode=True)


class _MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 3))

    def forward(self, t, y, args):
        return self.net(y)


def _module_grads(adjoint, batch_axis=None, tuple_state=False):
    torch.manual_seed(1)
    model = _MLP()
    y0 = torch.randn(4, 3, requires_grad=True)
    term = tn.ODETerm(model)
    if tuple_state:
        term = tn.ODETerm(lambda t, y, a: (model(t, y[0], a), -y[1] * 0.5))
        state = (y0, y0.detach() ** 2)
    else:
        state = y0
    sol = tn.solve(
        term,
        tn.Tsit5() if hasattr(tn, "Tsit5") else tn.Dopri5(),
        0.0,
        1.0,
        state,
        controller=TIGHT,
        saveat=tn.SaveAt(ts=torch.linspace(0.25, 1, 4)),
        adjoint=adjoint,
        batch_axis=batch_axis,
    )
    ys = sol.ys[0] if tuple_state else sol.ys
    loss = (ys**2).sum() + ys[..., 0].sum()
    return torch.autograd.grad(loss, [y0, *model.parameters()]), sol


@pytest.mark.parametrize("batch_axis", [None, 0])
@pytest.mark.parametrize("tuple_state", [False, True])
def test_adjoints_agree_on_module_parameters(batch_axis, tuple_state):
    reference, _ = _module_grads(ADJOINTS["direct"], batch_axis, tuple_state)
    for name in ("checkpoint", "backsolve"):
        grads, sol = _module_grads(ADJOINTS[name], batch_axis, tuple_state)
        for g, r in zip(grads, reference):
            torch.testing.assert_close(g, r, atol=1e-7, rtol=1e-6)
        assert int(sol.stats["nfe_backward"].sum()) > 0


def test_checkpoint_gradient_equals_direct_to_rounding():
    """Checkpointing recomputes the same operations: the same gradient, not an approximation."""
    reference, _ = _module_grads(ADJOINTS["direct"])
    for checkpoints in (1, 2, 5, None):
        grads, _ = _module_grads(tn.CheckpointAdjoint(checkpoints=checkpoints))
        for g, r in zip(grads, reference):
            torch.testing.assert_close(g, r, atol=1e-12, rtol=1e-10)


def test_closure_tensor_is_found():
    """A tensor the vector field closes over (not a module parameter) still gets its gradient."""
    w = torch.tensor([[-0.5, 1.0], [-1.0, -0.3]], requires_grad=True)
    y0 = torch.tensor([1.0, 0.5])
    grads = {}
    for name, adjoint in ADJOINTS.items():
        sol = tn.solve(
            tn.ODETerm(lambda t, y, a: w @ y),
            tn.Dopri5(),
            0.0,
            1.0,
            y0,
            controller=TIGHT,
            adjoint=adjoint,
        )
        (grads[name],) = torch.autograd.grad(sol.ys.sum(), [w])
    # exact: d/dW of 1ᵀ exp(W) y0 is the Fréchet derivative of expm, by finite differences
    eps = 1e-6
    fd = torch.zeros(2, 2)
    for i in range(2):
        for j in range(2):
            e = torch.zeros(2, 2)
            e[i, j] = eps
            w0 = w.detach()
            fd[i, j] = (
                (torch.linalg.matrix_exp(w0 + e) @ y0).sum()
                - (torch.linalg.matrix_exp(w0 - e) @ y0).sum()
            ) / (2 * eps)
    for g in grads.values():
        torch.testing.assert_close(g, fd, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("adjoint_cls", [tn.CheckpointAdjoint, tn.BacksolveAdjoint])
def test_explicit_params_that_miss_a_tensor_is_an_error(adjoint_cls):
    used = torch.tensor(0.7, requires_grad=True)
    other = torch.tensor(1.0, requires_grad=True)
    with pytest.raises(ValueError, match="params"):
        tn.solve(
            tn.ODETerm(lambda t, y, a: -used * y),
            tn.Dopri5(),
            0.0,
            1.0,
            torch.ones(2),
            controller=TIGHT,
            adjoint=adjoint_cls(params=[other]),
        )


def test_backsolve_refuses_what_it_cannot_differentiate():
    y0 = torch.ones(2, requires_grad=True)
    term = tn.ODETerm(lambda t, y, a: -y)
    with pytest.raises(ValueError, match="steps"):
        tn.solve(
            term,
            tn.Dopri5(),
            0.0,
            1.0,
            y0,
            controller=TIGHT,
            saveat=tn.SaveAt(steps=True),
            adjoint=tn.BacksolveAdjoint(),
        )
    with pytest.raises(ValueError, match="events"):
        tn.solve(
            term,
            tn.Dopri5(),
            0.0,
            1.0,
            y0,
            controller=TIGHT,
            event=tn.Event(lambda t, y, a: y[0] - 0.5),
            adjoint=tn.BacksolveAdjoint(),
        )
    with pytest.raises(ValueError, match=r"per-sample|shared"):
        tn.solve(
            term,
            tn.Dopri5(),
            0.0,
            torch.tensor([1.0, 2.0]),
            torch.ones(2, 1),
            controller=TIGHT,
            adjoint=tn.BacksolveAdjoint(),
            batch_axis=0,
        )
    path = tn.LinearInterpolation(torch.linspace(0, 1, 5), torch.randn(5, 1))
    with pytest.raises(ValueError, match="t1"):  # a CDE: no time gradients
        tn.solve(
            tn.ControlTerm(lambda t, y, a: y[..., None], path),
            tn.Dopri5(),
            0.0,
            torch.tensor(1.0, requires_grad=True),
            y0,
            controller=TIGHT,
            adjoint=tn.BacksolveAdjoint(),
        )


def test_checkpoint_differentiates_through_a_terminal_event():
    """A ball thrown up: the state at the event y[0] = 0 depends on the event time."""
    g = torch.tensor(9.81, requires_grad=True)
    v0 = torch.tensor(5.0, requires_grad=True)

    def run(adjoint):
        y0 = torch.stack([torch.zeros(()), v0])
        sol = tn.solve(
            tn.ODETerm(lambda t, y, a: torch.stack([y[1], -a])),
            tn.Dopri5(),
            0.0,
            10.0,
            y0 + torch.tensor([1e-3, 0.0]),
            args=g,
            controller=TIGHT,
            event=tn.Event(lambda t, y, a: y[0], direction=-1),
            adjoint=adjoint,
        )
        return torch.autograd.grad(sol.ys[-1, 1], [g, v0])

    direct = run(tn.DirectAdjoint())
    checkpoint = run(tn.CheckpointAdjoint(checkpoints=2))
    for a, b in zip(direct, checkpoint):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-8)
    # analytic: the landing speed is -sqrt(v0² + 2 g h) with h = 1e-3
    h = 1e-3
    speed = math.sqrt(25.0 + 2 * 9.81 * h)
    torch.testing.assert_close(direct[0], torch.tensor(-h / speed), atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(direct[1], torch.tensor(-5.0 / speed), atol=1e-8, rtol=1e-6)


def test_complex_state_gradients_agree():
    omega = torch.tensor(1.3, requires_grad=True)
    y0 = torch.tensor([1.0 + 0.5j, -0.2 + 1.0j], dtype=torch.complex128, requires_grad=True)
    grads = {}
    for name, adjoint in ADJOINTS.items():
        sol = tn.solve(
            tn.ODETerm(lambda t, y, a: 1j * a * y - 0.1 * y),
            tn.Dopri5(),
            0.0,
            1.0,
            y0,
            args=omega,
            controller=TIGHT,
            adjoint=adjoint,
            saveat=tn.SaveAt(ts=[0.5, 1.0]),
        )
        loss = (sol.ys.real**2).sum() + sol.ys.imag.sum()
        grads[name] = torch.autograd.grad(loss, [y0, omega])
    for name in ("checkpoint", "backsolve"):
        for a, b in zip(grads[name], grads["direct"]):
            torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-7)


def _backsolve_run(model, y0, **adjoint):
    """A Dopri5 solve of ``dy/dt = model(y)`` on [0, 2] differentiated by ``BacksolveAdjoint``
    (rtol 1e-6, atol 1e-8, plus ``adjoint``): the backward evaluations and the parameters'
    gradients of ``sum(y(2))``."""
    sol = tn.solve(
        tn.ODETerm(lambda t, y, a: model(y)),
        tn.Dopri5(),
        0.0,
        2.0,
        y0,
        controller=tn.PIDController(rtol=1e-6, atol=1e-8),
        adjoint=tn.BacksolveAdjoint(rtol=1e-6, atol=1e-8, **adjoint),
    )
    grads = torch.autograd.grad(sol.ys.sum(), list(model.parameters()))
    return int(sol.stats["nfe_backward"]), grads


def test_seminorm_saves_backward_steps():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 4))
    y0 = torch.randn(8, 4)
    nfe = {seminorm: _backsolve_run(model, y0, seminorm=seminorm)[0] for seminorm in (True, False)}
    assert nfe[True] < nfe[False]


def test_backsolve_norm_replaces_the_seminorm_and_sees_the_augmented_parts():
    """``norm(y, a, g)`` gets the scaled error split like the augmented state; the RMS of y and
    a alone is the seminorm (same steps), and a norm ten times larger takes more steps."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 4))
    params = list(model.parameters())
    y0 = torch.randn(3, 4)
    seen = []

    def rms_ya(y, a, g):
        seen.append((tuple(y.shape), tuple(a.shape), [tuple(x.shape) for x in g]))
        return torch.cat([y.reshape(-1), a.reshape(-1)]).pow(2).mean().sqrt()

    nfe_semi, g_semi = _backsolve_run(model, y0, seminorm=True)
    nfe_user, g_user = _backsolve_run(model, y0, norm=rms_ya)
    nfe_large, g_large = _backsolve_run(model, y0, norm=lambda y, a, g: 10 * rms_ya(y, a, g))
    assert seen[0] == ((1, 12), (1, 12), [tuple(p.shape) for p in params])  # flat, no batch axis
    assert nfe_user == nfe_semi and nfe_large > nfe_user
    for a, b, c in zip(g_semi, g_user, g_large):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-6)
    with pytest.raises(TypeError, match="norm"):
        tn.BacksolveAdjoint(norm="seminorm")


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("fixed", [False, True])
def test_backsolve_on_step_sees_every_backward_step(fixed, reverse):
    """``on_step`` is called once per attempted backward step, in the problem's time (also for a
    solve backwards in time): the accepted ones tile the interval from its end back to its start
    (a fixed-step forward solve is replayed step for step), with the state at each step's
    start."""
    weight = torch.tensor([[0.3, -1.0], [1.0, 0.2]], requires_grad=True)
    start, end = (1.0, 0.0) if reverse else (0.0, 1.0)
    steps = []

    def on_step(t0, t1, parts, accepted):
        y, _, g = parts
        steps.append((float(t0), float(t1), accepted, y.clone(), len(g)))

    if fixed:
        kwargs = {"dt0": 0.1 * (end - start)}
    else:
        kwargs = {"controller": tn.PIDController(rtol=1e-7, atol=1e-9)}
    sol = tn.solve(
        tn.ODETerm(lambda t, y, args: torch.tanh(y @ weight.T)),
        tn.RK4() if fixed else tn.Dopri5(),
        start,
        end,
        torch.tensor([1.0, 2.0]),
        adjoint=tn.BacksolveAdjoint(on_step=on_step),
        **kwargs,
    )
    sol.ys.sum().backward()
    accepted = [s for s in steps if s[2]]
    assert accepted[0][0] == end and accepted[-1][1] == pytest.approx(start, abs=1e-6)
    assert all(b[0] == a[1] for a, b in itertools.pairwise(accepted))
    assert all(s[4] == 1 for s in steps)
    torch.testing.assert_close(accepted[0][3][0], sol.ys[-1])  # y at the backward start
    if fixed:
        size = 0.1 * (start - end)
        assert len(steps) == 10 and all(s[1] - s[0] == pytest.approx(size) for s in steps)
    with pytest.raises(TypeError, match="on_step"):
        tn.BacksolveAdjoint(on_step=3)


def test_cde_gradient_reaches_the_path_data():
    """The observations a control path interpolates are differentiable through every adjoint
    that supports control terms."""
    torch.manual_seed(3)
    ts = torch.linspace(0, 1, 6)
    xs = torch.randn(6, 2, requires_grad=True)
    weight = torch.randn(3, 3, 2) * 0.3

    def g(t, z, a):
        return torch.tanh(torch.einsum("ijc,j->ic", weight, z))

    grads = {}
    for name in ("direct", "checkpoint"):
        path = tn.LinearInterpolation(ts, xs)
        sol = tn.solve(
            tn.ControlTerm(g, path),
            tn.RK4(),
            0.0,
            1.0,
            torch.ones(3),
            dt0=0.05,
            adjoint=ADJOINTS[name],
        )
        (grads[name],) = torch.autograd.grad(sol.ys.sum(), [xs])
    torch.testing.assert_close(grads["checkpoint"], grads["direct"], atol=1e-12, rtol=1e-10)
    assert grads["direct"].abs().sum() > 0


def test_backsolve_after_a_fixed_step_forward_solve_may_solve_backwards_adaptively():
    """A fixed-step forward solve may name an adaptive backward solver (with its own tolerances)
    instead of replaying the forward grid: the gradient is then the exact one to that tolerance."""
    y0 = torch.ones(2, requires_grad=True)
    term = tn.ODETerm(lambda t, y, a: -y)
    sol = tn.solve(
        term,
        tn.RK4(),
        0.0,
        1.0,
        y0,
        dt0=0.01,
        adjoint=tn.BacksolveAdjoint(solver=tn.Dopri5(), rtol=1e-10, atol=1e-12),
    )
    (grad,) = torch.autograd.grad(sol.ys.sum(), y0)
    torch.testing.assert_close(grad, torch.full((2,), math.exp(-1.0)), rtol=1e-8, atol=0)


@pytest.mark.parametrize("solver, order", [(tn.RK4(), 4), (tn.Euler(), 1)])
def test_backsolve_after_constant_steps_replays_the_grid_and_converges_to_the_exact_gradient(
    solver, order
):
    """With constant steps (or a backward solver without an error estimate) the continuous
    adjoint steps back through the forward grid with the same method: its gradient converges to
    the discrete one at the method's order as the step shrinks."""
    w = torch.tensor([[0.2, -1.0], [1.0, 0.1]], dtype=torch.float64, requires_grad=True)
    ts = torch.linspace(0, 2, 5, dtype=torch.float64)
    gaps = []
    for h in (0.1, 0.05):
        grads = []
        for adjoint in (tn.DirectAdjoint(), tn.BacksolveAdjoint()):
            y0 = torch.tensor([1.0, 0.5], dtype=torch.float64, requires_grad=True)
            sol = tn.solve(
                tn.ODETerm(lambda t, y, a: torch.tanh(y @ w.T)),
                solver,
                0.0,
                2.0,
                y0,
                dt0=h,
                saveat=tn.SaveAt(ts=ts),
                adjoint=adjoint,
            )
            grads.append(
                torch.cat([g.reshape(-1) for g in torch.autograd.grad(sol.ys.sum(), (y0, w))])
            )
        gaps.append(float((grads[0] - grads[1]).abs().max()))
    assert gaps[1] < gaps[0] / 2 ** (order - 0.3)


def test_backsolve_takes_non_leaf_params_and_gives_the_direct_gradient():
    """A parameter computed from a leaf (e.g. a path's coefficients from data requiring grad)
    may be passed in ``params``: the adjoint stops its search there, keeps its history across
    the backward solve's evaluations, and the gradient reaches the leaf as DirectAdjoint's does."""
    raw = torch.tensor([0.3, -0.7], dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    grads = []
    for backsolve in (False, True):
        w = 2.0 * raw  # non-leaf

        def field(t, y, args, w=w):
            return torch.tanh(w * y) - 0.1 * y

        adjoint = (
            tn.BacksolveAdjoint(rtol=1e-10, atol=1e-12, params=[w])
            if backsolve
            else tn.DirectAdjoint()
        )
        sol = tn.solve(
            tn.ODETerm(field),
            tn.Dopri5(),
            0.0,
            1.0,
            y0,
            controller=tn.PIDController(rtol=1e-10, atol=1e-12),
            adjoint=adjoint,
        )
        (grad,) = torch.autograd.grad(sol.ys.square().sum(), raw)
        grads.append(grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-9)


def test_float32_tuple_state_with_float64_times_requiring_grad_saves_and_differentiates():
    """float32 leaves with float64 save times that require grad: values stay float32 and the
    gradient with respect to the times is each leaf's slope (d y/d t = f(y) at the save time)."""
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
    y0 = (torch.ones(2, dtype=torch.float32), torch.zeros(1, dtype=torch.float32))
    sol = tn.solve(
        tn.ODETerm(lambda t, y, a: (-y[0], y[1] + 1)),
        tn.Dopri5(),
        0.0,
        1.0,
        y0,
        saveat=tn.SaveAt(ts=t),
        controller=tn.PIDController(rtol=1e-6, atol=1e-8),
    )
    assert [x.dtype for x in sol.ys] == [torch.float32, torch.float32]
    (grad,) = torch.autograd.grad(sol.ys[0].sum() + sol.ys[1].sum(), t)
    expected = -2 * torch.exp(-t.detach()) + torch.exp(t.detach())  # 2 leaves e^-t, 1 of e^t - 1
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-4)
