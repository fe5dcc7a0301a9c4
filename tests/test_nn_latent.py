"""ODE-RNNs and latent ODEs: the hidden state follows the exact flow between observations and
jumps through the cell at them; per-sample times give each sample what it would get alone;
missing values and end padding change nothing they should not; the latent ODE's decoder is the
field's solution, its ELBO's KL matches torch.distributions, and the errors name the argument."""

from __future__ import annotations

import pytest
import torch

import torchnde as tn
from torchnde.nn._latent import ODERNN, LatentODE

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


class LinearField(torch.nn.Module):
    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.a = torch.nn.Parameter(a)

    def forward(self, t, h, args):
        return h @ self.a.T


def make_rnn(hidden: int = 3, steps: int = 1, seed: int = 0) -> ODERNN:
    torch.manual_seed(seed)
    return ODERNN(2, hidden, steps=steps).double()


def series(batch: int = 4, length: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    ts = torch.rand(batch, length, generator=gen, dtype=F64).cumsum(dim=1)
    xs = torch.randn(batch, length, 2, generator=gen, dtype=F64)
    return ts, xs


def test_hidden_state_follows_the_exact_flow_between_observations_and_jumps_at_them():
    a = torch.tensor([[-0.3, 1.0, 0.0], [-1.0, -0.3, 0.2], [0.0, 0.1, -0.5]], dtype=F64)
    rnn = ODERNN(2, 3, LinearField(a), steps=40).double()
    ts = torch.tensor([0.0, 0.7, 1.9], dtype=F64)
    xs = torch.randn(2, 3, 2, dtype=F64)
    hs, last = rnn(ts, xs)
    h = torch.zeros(2, 3, dtype=F64)
    ones = torch.ones(2, 2, dtype=F64)
    for i in range(3):
        if i:
            h = h @ torch.linalg.matrix_exp(a * (ts[i] - ts[i - 1])).T
        h = rnn.cell(torch.cat([xs[:, i], ones], dim=-1), h)
        torch.testing.assert_close(hs[:, i], h, rtol=0, atol=1e-8)  # RK4, 40 steps
    torch.testing.assert_close(last, h)
    # read backwards and solved on to t=-0.5: the flow runs backwards in time
    _, back = rnn(ts, xs, reverse=True, t_end=-0.5)
    h = torch.zeros(2, 3, dtype=F64)
    for i in (2, 1, 0):
        if i < 2:
            h = h @ torch.linalg.matrix_exp(a * (ts[i] - ts[i + 1])).T
        h = rnn.cell(torch.cat([xs[:, i], ones], dim=-1), h)
    h = h @ torch.linalg.matrix_exp(a * (-0.5 - ts[0])).T
    torch.testing.assert_close(back, h, rtol=0, atol=1e-7)


def test_per_sample_times_give_each_sample_its_own_run():
    rnn = make_rnn()
    ts, xs = series()
    hs, last = rnn(ts, xs)
    for b in range(ts.shape[0]):
        hs_b, last_b = rnn(ts[b], xs[b : b + 1])
        torch.testing.assert_close(hs[b], hs_b[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(last[b], last_b[0], rtol=1e-10, atol=1e-12)


def test_missing_values_and_end_padding():
    rnn = make_rnn(steps=40)
    ts, xs = series(batch=2, length=5)
    # an observation with nothing observed is skipped: the state just flows through it (up to
    # the discretisation: two solves of 40 RK4 steps against one)
    full = xs.clone()
    full[0, 2] = float("nan")
    _, with_gap = rnn(ts, full)
    keep = [0, 1, 3, 4]
    _, without = rnn(ts[:, keep], xs[:, keep])
    torch.testing.assert_close(with_gap[0], without[0], rtol=0, atol=1e-8)
    # padding a series by repeating its last time with nothing observed changes nothing
    ts_pad = torch.cat([ts, ts[:, -1:].expand(2, 3)], dim=1)
    xs_pad = torch.cat([xs, torch.full((2, 3, 2), float("nan"), dtype=F64)], dim=1)
    _, padded = rnn(ts_pad, xs_pad)
    _, plain = rnn(ts, xs)
    torch.testing.assert_close(padded, plain, rtol=1e-12, atol=1e-12)
    # a partly observed point feeds the mask to the cell
    part = xs.clone()
    part[1, 3, 0] = float("nan")
    _, h_part = rnn(ts, part)
    assert not torch.allclose(h_part[1], plain[1])
    torch.testing.assert_close(h_part[0], plain[0])


def test_latent_ode_decoder_is_the_fields_solution_and_the_elbo_terms():
    torch.manual_seed(0)
    model = LatentODE(2, 4, controller=tn.PIDController(rtol=1e-9, atol=1e-9)).double()
    ts, xs = series(batch=3, length=5)
    ts_pred = torch.linspace(0.0, 3.0, 7, dtype=F64)
    out = model(ts, xs, ts_pred=ts_pred, sample=False)
    assert out.pred.shape == (3, 7, 2) and out.zs.shape == (3, 7, 4)
    torch.testing.assert_close(out.z0, out.mean)
    ref = tn.solve(
        tn.ODETerm(model.field),
        tn.Dopri5(),
        0.0,
        3.0,
        out.z0,
        saveat=tn.SaveAt(ts=ts_pred),
        controller=tn.PIDController(rtol=1e-10, atol=1e-10),
    ).ys.transpose(0, 1)
    torch.testing.assert_close(out.zs, ref, rtol=0, atol=1e-7)
    torch.testing.assert_close(out.pred, model.readout(ref), rtol=0, atol=1e-7)
    # per-sample prediction times: each sample decoded on its own grid
    per = model(ts, xs, ts_pred=ts, sample=False)
    for b in range(3):
        alone = model(ts[b], xs[b : b + 1], ts_pred=ts[b], sample=False)
        torch.testing.assert_close(per.pred[b], alone.pred[0], rtol=1e-6, atol=1e-8)
    # the loss: Gaussian likelihood of the observed targets and KL(q || N(0, I))
    target = torch.randn(3, 7, 2, dtype=F64)
    target[0, 1] = float("nan")
    loss = model.loss(out, target, kl_weight=0.5)
    mask = ~torch.isnan(target)
    normal = torch.distributions.Normal(out.pred[mask], model.obs_std)
    q = torch.distributions.Normal(out.mean, out.std)
    p = torch.distributions.Normal(torch.zeros_like(out.mean), torch.ones_like(out.std))
    kl = torch.distributions.kl_divergence(q, p).sum()
    want = -(normal.log_prob(target[mask]).sum() - 0.5 * kl) / mask.sum()
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.cell.parameters())


def test_errors_name_the_argument():
    rnn = make_rnn()
    ts, xs = series()
    with pytest.raises(ValueError, match="`xs` must be"):
        rnn(ts, xs[0])
    with pytest.raises(ValueError, match="`ts` must be shaped"):
        rnn(ts[:, :3], xs)
    with pytest.raises(ValueError, match="non-decreasing"):
        rnn(ts.flip(1), xs)
    with pytest.raises(ValueError, match="`mask` must be shaped"):
        rnn(ts, xs, torch.ones(4, 6))
    bad = xs.clone()
    bad[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="infinite"):
        rnn(ts, bad)
    with pytest.raises(ValueError, match="hidden_size"):
        ODERNN(2, 0)
    with pytest.raises(ValueError, match="target"):
        model = LatentODE(2, 3).double()
        model.loss(model(ts, xs, sample=False), torch.zeros(4, 5, 2, dtype=F64))
