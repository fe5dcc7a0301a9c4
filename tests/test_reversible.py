"""ReversibleHeun and ReversibleAdjoint: orders, exact reversibility, gradients equal to direct
backpropagation, and memory that does not grow with the number of steps."""

from __future__ import annotations

import itertools
import math

import pytest
import solver_db
import torch
from torch import nn

import torchnde as tn
from torchnde._problem import Problem
from torchnde._pytree import StateSpec

F64 = torch.float64


# small tensors: one intra-op thread is fastest (conftest.one_thread restores it after)
pytestmark = pytest.mark.usefixtures("one_thread")


def _slope(hs, errors) -> float:
    xs = [math.log(h) for h in hs]
    ys = [math.log(e) for e in errors]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


# ------------------------------------------------------------------------------------------------
# the solver


@pytest.mark.parametrize("problem", solver_db.ORDER_PROBLEMS, ids=lambda p: p.name)
def test_order_two_on_odes(problem):
    y0 = torch.tensor(problem.y0, dtype=F64)
    exact = problem.exact(torch.tensor(problem.t1, dtype=F64))
    hs, errors = [], []
    for k in range(4, 10):
        h = problem.t1 / 2**k
        sol = tn.solve(tn.ODETerm(problem.vf), tn.ReversibleHeun(), 0.0, problem.t1, y0, dt0=h)
        hs.append(h)
        errors.append(float((sol.ys[-1] - exact).abs().max()))
    slope, data = solver_db.observed_order(hs, errors, floor=1e-12)
    assert abs(slope - 2) < 0.3, f"slope {slope:.2f} on {data}"


def test_error_estimate_is_second_order_and_drives_pid():
    """One step from the same state: the estimate ½P(v1 - v0) shrinks like h²; under a PID
    controller the solve meets its tolerance."""
    problem = solver_db.SECH
    y0 = torch.tensor(problem.y0, dtype=F64)
    spec = StateSpec.from_tree(y0, False)
    prob = Problem(tn.ODETerm(problem.vf), spec, None, None, F64)
    solver = tn.ReversibleHeun()
    t0 = torch.zeros(1, dtype=F64)
    state = solver.carry(y0[None], solver.init(prob, t0, y0[None])[0])
    hs = [0.1 / 2**k for k in range(5)]
    est = [float(solver.step(prob, t0, t0 + h, y0[None], state).y_error.abs().max()) for h in hs]
    assert abs(_slope(hs, est) - solver.error_order) < 0.2
    sol = tn.solve(
        tn.ODETerm(problem.vf),
        tn.ReversibleHeun(),
        0.0,
        problem.t1,
        y0,
        controller=tn.PIDController(rtol=1e-6, atol=1e-8),
    )
    error = float((sol.ys[-1] - problem.exact(torch.tensor(problem.t1, dtype=F64))).abs().max())
    assert error < 1e-4
    assert int(sol.stats["num_steps"]) < 20_000


def _sde_levels(term, y0, ks):
    """Solutions at steps 2^-k on one path: strong order from differences of consecutive levels
    (|y_h - y_{h/2}| = O(h^p) when |y_h - y| = O(h^p)), no finer reference solve needed."""
    sols = [
        tn.solve(term, tn.ReversibleHeun(), 0.0, 1.0, y0, dt0=2.0**-k, batch_axis=0).ys[:, -1]
        for k in ks
    ]
    errors = [float((a - b).norm(dim=-1).mean()) for a, b in itertools.pairwise(sols)]
    return [2.0**-k for k in ks[:-1]], errors


def _general_diffusion(t, y, args):
    """Two noises meeting both components nonlinearly: non-commutative noise."""
    u, v = y[:, 0], y[:, 1]
    row0 = torch.stack([torch.cos(v), torch.sin(u)], dim=-1)
    row1 = torch.stack([torch.full_like(u, 0.3), torch.cos(u + v)], dim=-1)
    return 0.7 * torch.stack([row0, row1], dim=1)


@pytest.mark.parametrize(
    ("noise", "order"), [("general", 0.5), ("additive", 1.0)], ids=["general", "additive"]
)
def test_strong_order_on_sdes(noise, order):
    batch = 256
    path = tn.BrownianGrid(0.0, 1.0, (batch, 2), steps=2**8, seed=1, batch_axis=0, dtype=F64)
    if noise == "general":
        diffusion = _general_diffusion
    else:

        def diffusion(t, y, args):
            return torch.tensor([[0.8, 0.0], [0.3, 0.5]], dtype=F64).expand(y.shape[0], 2, 2)

    term = tn.MultiTerm(tn.ODETerm(lambda t, y, a: -torch.sin(y)), tn.ControlTerm(diffusion, path))
    hs, errors = _sde_levels(term, torch.full((batch, 2), 0.5, dtype=F64), list(range(2, 9)))
    slope = _slope(hs, errors)
    assert abs(slope - order) < 0.2, f"strong order {slope:.2f}, expected {order}: {errors}"


def test_converges_to_the_stratonovich_solution():
    """Geometric Brownian motion dy = μy dt + σy ∘ dW: y = y0 exp(μt + σW), not the Itô
    y0 exp((μ - σ²/2)t + σW)."""
    batch, mu, sigma = 256, 0.5, 0.8
    path = tn.BrownianGrid(0.0, 1.0, (batch, 1), steps=2**8, seed=0, batch_axis=0, dtype=F64)
    term = tn.MultiTerm(
        tn.ODETerm(lambda t, y, a: mu * y),
        tn.ControlTerm(lambda t, y, a: sigma * y[..., None], path),
    )
    y0 = torch.ones(batch, 1, dtype=F64)
    w = path.increment(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64))
    stratonovich = torch.exp(mu + sigma * w)
    ito = torch.exp(mu - sigma**2 / 2 + sigma * w)
    hs = [2.0**-k for k in range(3, 9)]
    errors = []
    for h in hs:
        y1 = tn.solve(term, tn.ReversibleHeun(), 0.0, 1.0, y0, dt0=h, batch_axis=0).ys[:, -1]
        errors.append(float((y1 - stratonovich).abs().mean()))
    assert _slope(hs, errors) > 0.5, errors
    assert errors[-1] < 0.01
    assert float((y1 - ito).abs().mean()) > 0.3


@pytest.mark.parametrize("kind", ["ode", "sde"])
def test_inverse_undoes_the_steps_to_rounding(kind):
    """200 steps forwards, then 200 inverse steps: back at (y0, ŷ0 = y0) to rounding."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    y0 = torch.randn(1, 3, dtype=F64)
    term = tn.ODETerm(lambda t, y, a: net(y))
    if kind == "sde":
        path = tn.BrownianGrid(0.0, 1.0, (2,), steps=200, seed=2, dtype=F64)
        diffusion = tn.ControlTerm(
            lambda t, y, a: 0.5 * torch.tanh(y)[..., None].expand(1, 3, 2), path
        )
        term = tn.MultiTerm(term, diffusion)
    spec = StateSpec.from_tree(y0, False)
    problem = Problem(term, spec, None, None, F64)
    solver = tn.ReversibleHeun()
    times = torch.linspace(0, 1, 201, dtype=F64)[:, None]
    y = y0.reshape(1, -1)
    state = solver.carry(y, solver.init(problem, times[0], y)[0])
    with torch.no_grad():
        for i in range(200):
            result = solver.step(problem, times[i], times[i + 1], y, state)
            y, state = result.y1, result.state
        assert float((y - y0.reshape(1, -1)).abs().max()) > 0.1  # it moved
        for i in range(199, -1, -1):
            y, state = solver.backward_step(problem, times[i], times[i + 1], y, state)
    scale = 200 * torch.finfo(F64).eps
    assert float((y - y0.reshape(1, -1)).abs().max()) < scale
    assert float((state[0] - y0.reshape(1, -1)).abs().max()) < scale


# ------------------------------------------------------------------------------------------------
# the adjoint: gradients equal to direct backpropagation


class _Drift(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 3))

    def forward(self, t, y, args):
        return self.net(y) * args


class _Diffusion(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(3, 6)

    def forward(self, t, y, args):
        return 0.4 * torch.tanh(self.net(y)).reshape(*y.shape, 2)


def _gradients(adjoint, kind, adaptive, batch_axis, tuple_state=False):
    torch.manual_seed(0)
    drift, diffusion = _Drift().double(), _Diffusion().double()
    batch = 3
    y0 = torch.randn(batch, 3, dtype=F64, requires_grad=True)
    scale = torch.tensor(0.8, dtype=F64, requires_grad=True)
    term = tn.ODETerm(drift)
    if tuple_state:
        term = tn.ODETerm(lambda t, y, a: (drift(t, y[0], a), -y[1] * a))
    if kind == "sde":
        shape = (batch, 2) if batch_axis == 0 else (2,)
        path = (
            tn.VirtualBrownianTree(
                0.0, 1.0, shape, tol=1e-4, seed=4, batch_axis=batch_axis, dtype=F64
            )
            if adaptive
            else tn.BrownianGrid(
                0.0, 1.0, shape, steps=64, seed=4, batch_axis=batch_axis, dtype=F64
            )
        )
        term = tn.MultiTerm(term, tn.ControlTerm(diffusion, path))
    # SDE error estimates are O(dt), not O(dt²): looser tolerances keep the steps few
    tol = (1e-3, 1e-3) if kind == "sde" else (1e-4, 1e-6)
    controller = tn.PIDController(rtol=tol[0], atol=tol[1]) if adaptive else None
    sol = tn.solve(
        term,
        tn.ReversibleHeun(),
        0.0,
        1.0,
        (y0, y0.detach() ** 2) if tuple_state else y0,
        args=scale,
        dt0=None if adaptive else 1 / 64,
        controller=controller,
        saveat=tn.SaveAt(t0=True, ts=torch.tensor([0.3, 0.55, 0.8], dtype=F64), t1=True),
        adjoint=adjoint,
        batch_axis=batch_axis,
    )
    ys = sol.ys[0] if tuple_state else sol.ys
    loss = (ys**2).sum() + ys[..., 0].sum()
    inputs = [y0, scale, *drift.parameters()] + (
        list(diffusion.parameters()) if kind == "sde" else []
    )
    return torch.autograd.grad(loss, inputs), sol


@pytest.mark.parametrize("batch_axis", [None, 0])
@pytest.mark.parametrize("adaptive", [False, True], ids=["constant", "adaptive"])
@pytest.mark.parametrize("kind", ["ode", "sde"])
def test_gradients_equal_direct(kind, adaptive, batch_axis):
    """With respect to y0, args and module parameters, to float64 rounding."""
    direct, _ = _gradients(tn.DirectAdjoint(), kind, adaptive, batch_axis)
    reversible, sol = _gradients(tn.ReversibleAdjoint(), kind, adaptive, batch_axis)
    for g, r in zip(reversible, direct):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)
    assert int(sol.stats["num_steps"].max()) > 20
    # one vector-field evaluation per accepted step backwards, plus one at the end
    assert torch.equal(sol.stats["nfe_backward"], sol.stats["num_accepted"] + 1)


def test_gradients_equal_direct_on_a_tuple_state():
    direct, _ = _gradients(tn.DirectAdjoint(), "ode", True, None, tuple_state=True)
    reversible, _ = _gradients(tn.ReversibleAdjoint(), "ode", True, None, tuple_state=True)
    for g, r in zip(reversible, direct):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def _time_gradients(adjoint, controller, backwards, batch_axis):
    w = torch.tensor([[-0.4, 1.0], [-1.0, -0.3]], dtype=F64)

    def f(t, y, a):
        t = t[:, None] if t.ndim else t
        return torch.tanh(y @ w.T) * a + torch.sin(3 * t)

    y0 = torch.tensor([[1.0, 0.5], [0.2, -0.4]], dtype=F64, requires_grad=True)
    a = torch.tensor(0.7, dtype=F64, requires_grad=True)
    t0 = torch.tensor(0.1, dtype=F64, requires_grad=True)
    t1 = torch.tensor(1.3, dtype=F64, requires_grad=True)
    ts = torch.tensor([0.45, 0.9], dtype=F64, requires_grad=True)
    start, end, saves = (t1, t0, ts.flip(0)) if backwards else (t0, t1, ts)
    adaptive = isinstance(controller, tn.PIDController)
    sol = tn.solve(
        tn.ODETerm(f),
        tn.ReversibleHeun(),
        start,
        end,
        y0 if batch_axis == 0 else y0[0],
        args=a,
        dt0=None if adaptive else (-0.05 if backwards else 0.05),
        controller=controller,
        saveat=tn.SaveAt(ts=saves, t1=True),
        adjoint=adjoint,
        batch_axis=batch_axis,
    )
    loss = (sol.ys**2).sum() + sol.ys.sum()
    return torch.autograd.grad(loss, [y0, a, t0, t1, ts])


@pytest.mark.parametrize("batch_axis", [None, 0])
@pytest.mark.parametrize("backwards", [False, True], ids=["forwards", "backwards"])
@pytest.mark.parametrize("adaptive", [False, True], ids=["constant", "adaptive"])
def test_time_gradients_equal_direct(adaptive, backwards, batch_axis):
    """t0, t1 and SaveAt(ts): the discrete gradients, through the step times the controller chose."""
    controller = tn.PIDController(rtol=1e-4, atol=1e-6) if adaptive else None
    direct = _time_gradients(tn.DirectAdjoint(), controller, backwards, batch_axis)
    reversible = _time_gradients(tn.ReversibleAdjoint(), controller, backwards, batch_axis)
    for g, r in zip(reversible, direct):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-11)
    assert all(float(g.abs().max()) > 0 for g in direct)


def test_gradcheck_against_finite_differences():
    """y0, args, t0, t1 and ts, on an ODE and on an SDE over a fixed path, against finite
    differences (constant steps: the discretisation does not move with the inputs)."""
    w = torch.tensor([[-0.5, 1.0], [-1.0, -0.3]], dtype=F64)
    path = tn.BrownianGrid(0.0, 2.0, (1,), steps=40, seed=5, dtype=F64)

    def run(y0, a, t0, t1, ts, sde):
        drift = tn.ODETerm(lambda t, y, args: torch.tanh(w @ y) * args + torch.cos(t))
        term = drift
        if sde:
            term = tn.MultiTerm(drift, tn.ControlTerm(lambda t, y, args: 0.3 * y[:, None], path))
        sol = tn.solve(
            term,
            tn.ReversibleHeun(),
            t0,
            t1,
            y0,
            args=a,
            dt0=0.05,
            saveat=tn.SaveAt(ts=ts, t1=True),
            adjoint=tn.ReversibleAdjoint(),
        )
        return sol.ys

    def leaf(x):
        return torch.tensor(x, dtype=F64, requires_grad=True)

    # save times inside steps: at a step's end the linear dense output has a kink in t0
    ode_inputs = (leaf([1.0, 0.5]), leaf(0.8), leaf(0.1), leaf(1.23), leaf([0.43, 0.87]))
    assert torch.autograd.gradcheck(lambda *x: run(*x, False), ode_inputs, atol=1e-7, rtol=1e-6)
    # on a grid path the times are fixed grid points: differentiate y0 and args
    t0, t1, ts = (torch.tensor(x, dtype=F64) for x in (0.0, 1.0, [0.5]))
    sde_inputs = (leaf([1.0, 0.5]), leaf(0.8))
    assert torch.autograd.gradcheck(
        lambda y0, a: run(y0, a, t0, t1, ts, True), sde_inputs, atol=1e-7, rtol=1e-6
    )


# ------------------------------------------------------------------------------------------------
# memory


class _Held:
    """A tensor autograd saved, counted while the graph holds it."""

    __slots__ = ("meter", "size", "tensor")

    def __init__(self, meter, tensor):
        self.meter, self.tensor = meter, tensor.detach()
        self.size = tensor.numel() * tensor.element_size()
        meter.live += self.size
        meter.peak = max(meter.peak, meter.live)

    def __del__(self):
        self.meter.live -= self.size


class _SavedBytes:
    """Live and peak bytes of the tensors autograd holds for backward (forward and backward
    passes alike), through ``saved_tensors_hooks``."""

    def __init__(self):
        self.live = 0
        self.peak = 0

    def pack(self, tensor):
        return _Held(self, tensor)

    @staticmethod
    def unpack(held):
        return held.tensor


def _peak_saved_bytes(adjoint, steps):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 8)).double()
    y0 = torch.randn(16, 8, dtype=F64, requires_grad=True)
    meter = _SavedBytes()
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        sol = tn.solve(
            tn.ODETerm(lambda t, y, a: net(y)),
            tn.ReversibleHeun(),
            0.0,
            1.0,
            y0,
            dt0=1 / steps,
            adjoint=adjoint,
        )
        sol.ys.sum().backward()
    return meter.peak


def test_memory_does_not_grow_with_the_steps():
    """The most memory autograd holds at once: one step's graph for ReversibleAdjoint, however
    many steps; the whole solve's for DirectAdjoint."""
    reversible = [_peak_saved_bytes(tn.ReversibleAdjoint(), n) for n in (20, 200)]
    direct = [_peak_saved_bytes(tn.DirectAdjoint(), n) for n in (20, 200)]
    assert reversible[1] == reversible[0]
    assert direct[1] > 8 * direct[0]
    assert reversible[1] < direct[0]


# ------------------------------------------------------------------------------------------------
# statuses and refusals


def test_failed_samples_keep_their_status_and_the_others_their_gradients():
    """A sample that blows up is flagged NONFINITE; the others' gradients are those of solving
    them alone (direct backpropagation of the whole batch gives NaN for the shared parameter)."""

    def run(adjoint, y0):
        p = torch.tensor(1.5, dtype=F64, requires_grad=True)
        y0 = torch.tensor(y0, dtype=F64, requires_grad=True)
        sol = tn.solve(
            tn.ODETerm(lambda t, y, a: a * y**2),
            tn.ReversibleHeun(),
            0.0,
            1.0,
            y0,
            args=p,
            dt0=0.01,
            adjoint=adjoint,
            throw=False,
            batch_axis=0,
        )
        return sol, torch.autograd.grad(sol.ys[:2].sum(), [y0, p])

    sol, reversible = run(tn.ReversibleAdjoint(), [[0.2], [0.5], [4.0]])
    assert sol.status.tolist() == [0, 0, int(tn.Status.NONFINITE)]
    assert "NaN/inf" in sol.messages[2]
    _, alone = run(tn.DirectAdjoint(), [[0.2], [0.5]])
    torch.testing.assert_close(reversible[0][:2], alone[0], rtol=1e-10, atol=0)
    assert float(reversible[0][2]) == 0
    torch.testing.assert_close(reversible[1], alone[1], rtol=1e-10, atol=0)


def _solve(solver, adjoint, y0=None, **kwargs):
    y0 = torch.ones(2, dtype=F64, requires_grad=True) if y0 is None else y0
    options = dict(dt0=0.1)
    options.update(kwargs)
    return tn.solve(
        tn.ODETerm(lambda t, y, a: -y), solver, 0.0, 1.0, y0, adjoint=adjoint, **options
    )


def test_refusals_name_the_fix():
    with pytest.raises(ValueError, match=r"ReversibleHeun\(\)"):
        _solve(tn.Heun(), tn.ReversibleAdjoint())
    with pytest.raises(ValueError, match="dense"):
        _solve(tn.ReversibleHeun(), tn.ReversibleAdjoint(), saveat=tn.SaveAt(dense=True))
    with pytest.raises(ValueError, match="events"):
        _solve(
            tn.ReversibleHeun(),
            tn.ReversibleAdjoint(),
            event=tn.Event(lambda t, y, a: y[0] - 0.5),
        )
    with pytest.raises(ValueError, match="step_ts"):
        _solve(
            tn.ReversibleHeun(),
            tn.ReversibleAdjoint(),
            dt0=None,
            controller=tn.PIDController(rtol=1e-4, atol=1e-6, jump_ts=[0.5]),
        )
    with pytest.raises(ValueError, match="ReversibleAdjoint"):
        _solve(tn.ReversibleHeun(), tn.CheckpointAdjoint())


def test_step_saves_are_differentiated():
    """SaveAt(steps=True): every accepted step's value, equal to direct's gradient."""
    grads = []
    for adjoint in (tn.DirectAdjoint(), tn.ReversibleAdjoint()):
        y0 = torch.tensor([1.0, -0.5], dtype=F64, requires_grad=True)
        sol = _solve(
            tn.ReversibleHeun(),
            adjoint,
            y0,
            dt0=None,
            controller=tn.PIDController(rtol=1e-4, atol=1e-6),
            saveat=tn.SaveAt(steps=True),
        )
        weights = torch.arange(sol.ys.shape[0], dtype=F64)[:, None]
        grads.append(torch.autograd.grad((sol.ys * weights).sum(), y0)[0])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=0)
