"""The ODE-derived recurrent cells: each step against its continuous right-hand side solved by a
torchnde solver (equal to rounding where the scheme is the same, first-order convergence where
it is the paper's own IMEX/fused scheme), the Lipschitz RNN's spectral structure, the noisy
RNN's Euler–Maruyama step, the sequence runner's layouts and masks, gradients, and a short
training run."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch

import torchnde as tn
from torchnde.nn import (
    CTRNN,
    LEM,
    LTC,
    CoRNN,
    LipschitzRNN,
    NoisyRNN,
    Recurrent,
    TanhRNN,
    integrate_cell,
    perturb_inputs,
    run_cell,
    structured_matrix,
)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small cells run much faster on one thread (and a shared machine hurts them least)."""


@pytest.fixture
def inputs():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(4, 7, 3, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize(
    "make, solver, substeps",
    [
        (lambda: LipschitzRNN(3, 5, dt=0.1), tn.Euler(), 1),
        (lambda: LipschitzRNN(3, 5, dt=0.1, scheme="rk2"), tn.Heun(), 1),
        (lambda: CTRNN(3, 5, dt=0.5, unfolds=3), tn.Euler(), 3),
        (lambda: TanhRNN(3, 5), tn.Euler(), 1),
        (lambda: NoisyRNN(3, 5, dt=0.1).eval(), tn.Euler(), 1),
    ],
)
def test_step_equals_solver_with_the_same_scheme(make, solver, substeps, inputs):
    torch.manual_seed(1)
    cell = make().double()
    own = run_cell(cell, inputs)
    solved = integrate_cell(cell, inputs, solver, substeps=substeps)
    torch.testing.assert_close(own.outputs, solved.outputs, rtol=0, atol=1e-13)


def _refine(cell, k):
    """The same cell with its scheme's step divided by k (input held k steps)."""
    fine = copy.deepcopy(cell)
    if hasattr(fine, "unfolds"):
        fine.unfolds = k
        return fine, 1
    fine.dt = cell.dt / k
    return fine, k


@pytest.mark.parametrize(
    "make",
    [
        lambda: CoRNN(3, 5, dt=0.1, gamma=2.0, epsilon=1.0),
        lambda: LEM(3, 5, dt=0.1),
        lambda: LTC(3, 5, dt=0.2, unfolds=1),
    ],
)
def test_imex_and_fused_schemes_converge_at_first_order(make, inputs):
    """The paper's schemes are first order: halving the step halves the error against the
    continuous right-hand side solved by Dopri5 at 1e-10."""
    torch.manual_seed(2)
    cell = make().double()
    ref = integrate_cell(
        cell, inputs, tn.Dopri5(), controller=tn.PIDController(rtol=1e-10, atol=1e-12), dt0=None
    ).outputs
    errors = []
    for k in (2, 4, 8, 16):
        fine, repeat = _refine(cell, k)
        out = run_cell(fine, inputs.repeat_interleave(repeat, dim=1)).outputs
        errors.append((out[:, repeat - 1 :: repeat] - ref).abs().max().item())
    orders = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
    assert all(abs(p - 1.0) < 0.15 for p in orders), (errors, orders)


def test_cornn_imex_step_by_hand():
    cell = CoRNN(2, 3, dt=0.1, gamma=2.0, epsilon=3.0).double()
    y, z, u = torch.randn(4, 3).double(), torch.randn(4, 3).double(), torch.randn(4, 2).double()
    new_y, new_z = cell((u), (y, z))
    drive = torch.tanh(cell.w_y(y) + cell.w_z(z) + cell.inp(u))
    # the implicit damping: z_n = z + dt (drive - γ y - ε z_n)
    residual = new_z - (z + 0.1 * (drive - 2.0 * y - 3.0 * new_z))
    assert residual.abs().max() < 1e-14
    torch.testing.assert_close(new_y, y + 0.1 * new_z, rtol=0, atol=1e-14)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.75, 1.0])
def test_lipschitz_matrices_have_the_structure(beta):
    gen = torch.Generator().manual_seed(3)
    m = torch.randn(12, 12, generator=gen, dtype=torch.float64)
    gamma = 0.5
    a = structured_matrix(m, beta, gamma)
    sym, skew = (a + a.T) / 2, (a - a.T) / 2
    eye = torch.eye(12, dtype=torch.float64)
    torch.testing.assert_close(sym, (1 - beta) * (m + m.T) - gamma * eye)
    torch.testing.assert_close(skew, beta * (m - m.T))
    # the symmetric part's spectrum is the scaled spectrum of M + Mᵀ shifted by -γ
    lam = torch.linalg.eigvalsh(m + m.T)
    lam_sym = torch.linalg.eigvalsh(sym)
    assert lam_sym.max() <= (1 - beta) * lam.max() - gamma + 1e-10
    assert lam_sym.min() >= (1 - beta) * lam.min() - gamma - 1e-10
    # hence every eigenvalue's real part (a Rayleigh quotient of the symmetric part) too
    real = torch.linalg.eigvals(a).real
    assert real.max() <= lam_sym.max() + 1e-10
    if beta == 1.0:
        torch.testing.assert_close(real, torch.full_like(real, -gamma))


def test_skew_lipschitz_flow_decays_exactly_at_rate_gamma():
    """β = 1: ḣ = A h has ‖h(t)‖ = e^{-γt}‖h(0)‖ (the symmetric part of A is exactly -γI)."""
    gen = torch.Generator().manual_seed(4)
    a = structured_matrix(torch.randn(6, 6, generator=gen, dtype=torch.float64), 1.0, 0.3)
    h0 = torch.randn(6, dtype=torch.float64, generator=gen)
    sol = tn.solve(
        tn.ODETerm(lambda t, h, args: a @ h),
        tn.Dopri5(),
        0.0,
        2.0,
        h0,
        controller=tn.PIDController(rtol=1e-11, atol=1e-12),
    )
    assert abs(sol.ys[-1].norm() / h0.norm() - math.exp(-0.6)) < 1e-8


def test_noisy_rnn_step_is_euler_maruyama_with_the_same_increments():
    torch.manual_seed(5)
    cell = NoisyRNN(3, 4, dt=0.1, sigma_additive=0.3, sigma_multiplicative=0.5).double()
    h = torch.randn(6, 4, dtype=torch.float64)
    u = torch.randn(6, 3, dtype=torch.float64)
    bm = tn.BrownianGrid(0.0, 0.1, (6, 4), steps=1, seed=7, dtype=torch.float64)
    sde = tn.MultiTerm(
        tn.ODETerm(cell.vector_field),
        tn.ControlTerm(lambda t, y, args: cell.diffusion(t, y, args), bm, noise="diagonal"),
    )
    sol = tn.solve(sde, tn.EulerMaruyama(), 0.0, 0.1, (h,), args=u, dt0=0.1)
    dw = bm.increment(torch.tensor(0.0), torch.tensor(0.1))
    (ours,) = cell.step_with_increment((h,), cell.project(u), cell.prepare(), dw)
    torch.testing.assert_close(ours, sol.ys[0][-1], rtol=0, atol=1e-14)
    # written out: σ = ε(σ₁ I + σ₂ diag f) with f the drift (Lim et al.), not diag h
    a, w = cell.lipschitz.matrices()
    f = h @ a.T + torch.tanh(h @ w.T + cell.lipschitz.inp(u))
    by_hand = h + 0.1 * f + cell.epsilon * (0.3 + 0.5 * f) * dw
    torch.testing.assert_close(ours, by_hand, rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="`u`"):
        cell.diffusion(0.0, (h,), None)


def test_noisy_rnn_noise_is_on_in_training_and_off_in_eval():
    torch.manual_seed(6)
    cell = NoisyRNN(3, 4, dt=0.1, epsilon=1.0)
    x = torch.randn(2, 20, 3)
    a, b = run_cell(cell, x).outputs, run_cell(cell, x).outputs
    assert (a - b).abs().max() > 1e-3
    # variance of one step's noise is ε²(σ₁ + σ₂ h)² dt: at h = 0 it is σ₁² dt
    cell.sigma_multiplicative = 0.0
    h0 = (torch.zeros(20000, 4),)
    p = torch.zeros(20000, 4)
    (h1,) = cell.step(h0, p, cell.prepare())
    assert abs(h1.var().item() / (0.1**2 * 0.1) - 1) < 0.05
    cell.eval()
    det = LipschitzRNN(3, 4, dt=0.1)
    det.load_state_dict(cell.lipschitz.state_dict())
    torch.testing.assert_close(run_cell(cell, x).outputs, run_cell(det, x).outputs)
    cell.noise_in_eval = True
    assert (run_cell(cell, x).outputs - run_cell(det, x).outputs).abs().max() > 1e-3


def test_runner_layouts_masks_and_last(inputs):
    torch.manual_seed(7)
    cell = CoRNN(3, 5, dt=0.1).double()
    first = run_cell(cell, inputs)
    time_first = run_cell(cell, inputs.transpose(0, 1), batch_first=False)
    torch.testing.assert_close(first.outputs, time_first.outputs.transpose(0, 1))
    lengths = torch.tensor([1, 3, 7, 5])
    masked = run_cell(cell, inputs, lengths=lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = run_cell(cell, inputs[i : i + 1, :n])
        torch.testing.assert_close(masked.last[i], alone.last[0])
        torch.testing.assert_close(masked.outputs[i, :n], alone.outputs[0])
        assert masked.outputs[i, n:].abs().max() == 0 if n < 7 else True
    only_last = run_cell(cell, inputs, return_all=False)
    assert only_last.outputs is None
    torch.testing.assert_close(only_last.last, first.outputs[:, -1])


def test_runner_refuses_bad_input(inputs):
    cell = CoRNN(3, 5)
    with pytest.raises(ValueError, match="inputs"):
        run_cell(cell, inputs[0])
    with pytest.raises(ValueError, match="input_size"):
        run_cell(cell, inputs[..., :2].float())
    with pytest.raises(ValueError, match="lengths"):
        run_cell(cell, inputs.float(), lengths=torch.tensor([0, 1, 2, 3]))
    with pytest.raises(TypeError, match="cell"):
        run_cell(torch.nn.GRUCell(3, 5), inputs.float())
    with pytest.raises(ValueError, match="beta"):
        LipschitzRNN(3, 5, beta=1.5)
    with pytest.raises(ValueError, match="scheme"):
        LipschitzRNN(3, 5, scheme="rk4")
    with pytest.raises(ValueError, match="dt"):
        CoRNN(3, 5, dt=0.0)
    with pytest.raises(ValueError, match="kind"):
        perturb_inputs(inputs, "pink", 0.1)


@pytest.mark.parametrize("make", [CoRNN, LEM, LipschitzRNN, LTC, CTRNN])
def test_gradients_through_the_runner(make):
    torch.manual_seed(8)
    cell = make(2, 3).double()
    x = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: run_cell(cell, x).outputs.sum(), (x,))


def test_perturbations():
    gen = torch.Generator().manual_seed(9)
    x = torch.rand(200, 100, generator=gen)
    white = perturb_inputs(x, "white", 0.2, generator=gen) - x
    assert abs(white.std().item() - 0.2) < 0.01
    mult = perturb_inputs(torch.ones(200, 100), "multiplicative", 0.3, generator=gen)
    assert abs(mult.std().item() - 0.3) < 0.01
    sp = perturb_inputs(x, "salt-and-pepper", 0.1, generator=gen)
    changed = sp != x
    assert abs(changed.float().mean().item() - 0.1) < 0.01
    assert set(sp[changed].unique().tolist()) <= {x.min().item(), x.max().item()}


@pytest.mark.parametrize(
    "make",
    [
        lambda: CoRNN(1, 16, dt=0.2, gamma=1.0, epsilon=1.0),
        lambda: LEM(1, 16, dt=0.5),
        lambda: LipschitzRNN(1, 16, dt=0.2),
        lambda: LipschitzRNN(1, 16, dt=0.2, scheme="rk2"),
        lambda: NoisyRNN(1, 16, dt=0.2, sigma_additive=0.1, sigma_multiplicative=0.1),
        lambda: LTC(1, 16, dt=0.5, unfolds=2),
        lambda: CTRNN(1, 16, dt=0.5, unfolds=2),
    ],
    ids=["cornn", "lem", "lipschitz-euler", "lipschitz-rk2", "noisy", "ltc", "ctrnn"],
)
def test_a_short_training_run_lowers_the_loss(make):
    """Each cell learns to output the running mean of its input: the loss drops at least 5x in
    150 Adam steps (measured: 14-117x; the noisy RNN trained with its noise, judged without)."""
    torch.manual_seed(10)
    model = Recurrent(make(), 1, return_all=True)
    x = torch.randn(64, 20, 1)
    target = x.cumsum(1) / torch.arange(1, 21).view(1, 20, 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(150):
        loss = (model(x) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = (model.eval()(x) - target).pow(2).mean().item()
    assert final < losses[0] / 5, (losses[::30], final)
