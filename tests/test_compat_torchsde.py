"""``torchnde.compat.torchsde`` against torchsde 0.2.6 itself.

Driven by one Brownian path (a torchsde ``BrownianInterval`` with a fixed ``entropy``, built
afresh for each library so both query it from scratch), every method both libraries have must
give torchsde's numbers to rounding: same steps, same increments, same linear interpolation to
the output times. Where the samples differ (``bm=None``, or this module's own
``BrownianInterval``), the laws must agree: moments of the terminal value against the exact
moments of the discretised process, and a two-sample Kolmogorov–Smirnov test against torchsde.
"""

from __future__ import annotations

import math

import pytest
import torch

import torchnde
from torchnde.compat import torchsde as nde

tsde = pytest.importorskip("torchsde")
stats = pytest.importorskip("scipy.stats")

F64 = torch.float64
BATCH, D = 4, 3
TS = torch.tensor([0.0, 0.33, 0.7, 1.0], dtype=F64)  # output times off the step grid


# small tensors: one intra-op thread is fastest (conftest.one_thread restores it after)
pytestmark = pytest.mark.usefixtures("one_thread")


class SDE(torch.nn.Module):
    """A small nonlinear SDE of each noise type. For diagonal and scalar noise ``g_i`` depends on
    ``y_i`` alone (commutative noise, the case Milstein is for); additive noise does not depend
    on ``y`` (nor on ``t``, where SRA1's published stage and torchnde's differ)."""

    def __init__(self, noise_type: str, sde_type: str, m: int = 2):
        super().__init__()
        self.noise_type, self.sde_type = noise_type, sde_type
        gen = torch.Generator().manual_seed(0)
        self.a = torch.nn.Parameter(torch.linspace(-1.0, 0.5, D, dtype=F64))
        self.b = torch.nn.Parameter(torch.linspace(0.2, 0.6, D, dtype=F64))
        self.mix = torch.nn.Parameter(0.3 * torch.randn(D, m, generator=gen, dtype=F64))

    def f(self, t, y):
        return self.a * y + 0.1 * torch.sin(3 * t) * y.cos()

    def g(self, t, y):
        if self.noise_type == "diagonal":
            return self.b * torch.cos(y)
        if self.noise_type == "scalar":
            return (self.b * torch.cos(y))[..., None]
        if self.noise_type == "additive":
            return self.mix.expand(y.shape[0], -1, -1)
        return torch.tanh(y)[..., None] * self.mix


def noise_size(noise_type: str) -> int:
    return {"diagonal": D, "scalar": 1}.get(noise_type, 2)


def shared_bm(noise_type: str, levy: bool = False, dtype=F64, entropy: int = 3, dt=None):
    """torchsde's BrownianInterval; with ``dt`` its tree no longer depends on the order of the
    queries (which the adjoint's extra whole-interval query would change)."""
    return tsde.BrownianInterval(
        0.0,
        1.0,
        size=(BATCH, noise_size(noise_type)),
        dtype=dtype,
        entropy=entropy,
        dt=dt,
        levy_area_approximation="space-time" if levy else "none",
    )


Y0 = torch.rand(BATCH, D, generator=torch.Generator().manual_seed(1), dtype=F64)

BOTH = [  # (noise type, sde type, method): every combination both libraries run
    *[(n, "ito", "euler") for n in ("diagonal", "scalar", "additive", "general")],
    *[(n, "ito", "milstein") for n in ("diagonal", "scalar", "additive")],
    *[(n, "ito", "milstein_grad_free") for n in ("diagonal", "scalar")],
    *[(n, "ito", "srk") for n in ("diagonal", "scalar", "additive")],
    *[(n, "stratonovich", "milstein_grad_free") for n in ("diagonal", "scalar")],
    *[
        (n, "stratonovich", m)
        for n in ("diagonal", "scalar", "additive", "general")
        for m in ("midpoint", "heun", "euler_heun", "reversible_heun")
    ],
    *[(n, "stratonovich", "milstein") for n in ("diagonal", "scalar", "additive")],
]


# ------------------------------------------------------------------------------------------------
# the same path: the same numbers


@pytest.mark.parametrize(("noise", "sde_type", "method"), BOTH)
def test_methods_match_torchsde_on_the_same_brownian_path(noise, sde_type, method):
    sde = SDE(noise, sde_type)
    levy = method == "srk"
    options = {}
    if method == "milstein_grad_free":
        method, options = "milstein", {"grad_free": True}
    kwargs = dict(method=method, dt=0.01, options=options)
    ours = nde.sdeint(sde, Y0, TS, bm=shared_bm(noise, levy), **kwargs)
    theirs = tsde.sdeint(sde, Y0, TS, bm=shared_bm(noise, levy), **kwargs)
    assert ours.shape == theirs.shape == (len(TS), BATCH, D)
    assert torch.equal(ours[0], Y0)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_one_output_time_is_the_initial_state():
    sde = SDE("diagonal", "ito")
    ours, theirs = nde.sdeint(sde, Y0, TS[:1]), tsde.sdeint(sde, Y0, TS[:1])
    assert ours.shape == theirs.shape == (1, BATCH, D) and torch.equal(ours, theirs)


def test_times_as_a_list_and_renamed_drift():
    class Renamed(SDE):
        def drift(self, t, y):
            return SDE.f(self, t, y)

        f = None  # only the renamed drift exists

    sde = Renamed("diagonal", "ito")
    ours = nde.sdeint(
        sde, Y0, TS.tolist(), bm=shared_bm("diagonal"), method="milstein", names={"drift": "drift"}
    )
    theirs = tsde.sdeint(
        SDE("diagonal", "ito"), Y0, TS, bm=shared_bm("diagonal"), method="milstein"
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_float32_times_give_torchsdes_accumulated_steps():
    """torchsde accumulates ``t + dt`` in the dtype of ``ts``; float32 steps of 0.01 drift off
    the decimal grid, and the increments follow the times actually used."""
    sde = SDE("diagonal", "ito").float()
    y0, ts = Y0.float(), torch.tensor([0.0, 0.5, 1.0])
    bm = lambda: shared_bm("diagonal", dtype=torch.float32, dt=0.01)  # noqa: E731
    ours = nde.sdeint(sde, y0, ts, bm=bm(), method="euler", dt=0.01)
    theirs = tsde.sdeint(sde, y0, ts, bm=bm(), method="euler", dt=0.01)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


def test_grid_accumulates_like_torchsde():
    for dtype in (torch.float32, F64):
        for dt in (1e-3, 0.07, 1 / 3):
            ts = torch.tensor([0.3, 2.1], dtype=dtype)
            current, times = ts[0], [ts[0].item()]
            while current < ts[-1]:  # torchsde's loop
                current = min(current + dt, ts[-1])
                times.append(current.item())
            assert nde._grid(ts, dt).tolist() == times


def test_default_methods_are_torchsdes():
    """torchsde's defaults: midpoint (Stratonovich), srk (Itô additive, diagonal, scalar), euler
    (Itô general)."""
    expected = {
        ("stratonovich", "diagonal"): "midpoint",
        ("stratonovich", "general"): "midpoint",
        ("ito", "additive"): "srk",
        ("ito", "general"): "euler",
        ("ito", "diagonal"): "srk",
        ("ito", "scalar"): "srk",
    }
    for (sde_type, noise), method in expected.items():
        sde = SDE(noise, sde_type)
        levy = method == "srk"
        default = nde.sdeint(sde, Y0, TS, bm=shared_bm(noise, levy), dt=0.01)
        named = tsde.sdeint(sde, Y0, TS, bm=shared_bm(noise, levy), method=method, dt=0.01)
        torch.testing.assert_close(default, named, rtol=1e-12, atol=1e-12)


class OnlyFG(torch.nn.Module):
    """The diagonal SDE through ``f_and_g`` only, under other method names."""

    noise_type, sde_type = "diagonal", "stratonovich"

    def __init__(self, sde: SDE):
        super().__init__()
        self.sde = sde
        self.calls = 0

    def both(self, t, y):
        self.calls += 1
        return self.sde.f(t, y), self.sde.g(t, y)


def test_f_and_g_and_names():
    sde = SDE("diagonal", "stratonovich")
    only = OnlyFG(sde)
    names = {"drift_and_diffusion": "both"}
    ours = nde.sdeint(only, Y0, TS, bm=shared_bm("diagonal"), method="heun", dt=0.01, names=names)
    theirs = tsde.sdeint(sde, Y0, TS, bm=shared_bm("diagonal"), method="heun", dt=0.01)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    # one f_and_g per stage: Heun has two stages per step, 100 steps, plus the first call
    assert only.calls <= 2 * 100 + 2


class Posterior(SDE):
    def h(self, t, y):  # the prior drift
        return -y


@pytest.mark.parametrize("noise", ["diagonal", "general"])
def test_logqp_matches_torchsde(noise):
    sde = Posterior(noise, "ito")
    m = noise_size(noise)

    def bm():  # the log-ratio channel is one more state channel (and noise channel if diagonal)
        size = (BATCH, m + 1 if noise == "diagonal" else m)
        return tsde.BrownianInterval(0.0, 1.0, size=size, dtype=F64, entropy=5)

    ours = nde.sdeint(sde, Y0, TS, bm=bm(), method="euler", dt=0.01, logqp=True, extra=True)
    theirs = tsde.sdeint(sde, Y0, TS, bm=bm(), method="euler", dt=0.01, logqp=True, extra=True)
    assert len(ours) == 3 and ours[2] == () == theirs[2]
    assert ours[0].shape == (len(TS), BATCH, D) and ours[1].shape == (len(TS) - 1, BATCH)
    for a, b in zip(ours[:2], theirs[:2]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert bool((ours[1] > 0).all())  # a KL rate integrated over time


# ------------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize(
    ("noise", "sde_type", "method"),
    [("diagonal", "ito", "milstein"), ("general", "stratonovich", "midpoint")],
)
def test_sdeint_gradients_match_torchsde(noise, sde_type, method):
    sde = SDE(noise, sde_type)
    y0 = Y0.clone().requires_grad_(True)
    grads = []
    for sdeint in (nde.sdeint, tsde.sdeint):
        ys = sdeint(sde, y0, TS, bm=shared_bm(noise), method=method, dt=0.01)
        inputs = (y0, *sde.parameters())
        grads.append(torch.autograd.grad((ys * ys).sum(), inputs, materialize_grads=True))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_reversible_adjoint_gives_the_direct_gradient():
    """torchsde's adjoint_reversible_heun is exact only when ``ts`` falls on the step grid; ours
    is exact always: it equals backpropagation through the forward steps."""
    sde = SDE("general", "stratonovich")
    y0 = Y0.clone().requires_grad_(True)
    inputs = (y0, *sde.parameters())

    def grad(fn, **kw):
        ys = fn(sde, y0, TS, bm=shared_bm("general"), method="reversible_heun", dt=0.01, **kw)
        return torch.autograd.grad((ys**2).sum(), inputs, materialize_grads=True)

    direct = grad(tsde.sdeint)
    ours = grad(nde.sdeint_adjoint)
    theirs = grad(tsde.sdeint_adjoint)
    for a, b, c in zip(ours, direct, theirs):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)
        torch.testing.assert_close(c, b, rtol=1e-5, atol=1e-6)  # torchsde: approximately


@pytest.mark.parametrize(
    ("noise", "sde_type", "method", "kwargs"),
    [
        ("general", "stratonovich", "midpoint", {}),
        ("additive", "ito", "euler", {}),
        ("scalar", "stratonovich", "reversible_heun", {"adjoint_method": "heun"}),
        ("diagonal", "ito", "milstein", {}),  # the Itô adjoint: the Stratonovich form's
        ("scalar", "ito", "milstein", {}),
    ],
)
def test_stochastic_adjoint_agrees_with_torchsdes(noise, sde_type, method, kwargs):
    """BacksolveAdjoint and torchsde's adjoint solve the same adjoint SDE on the same path, with
    slightly different backward steps: both approach backpropagation through the forward steps
    as dt shrinks (first order), and each other. torchsde's is accurate only when the times
    ``ts`` fall on its step grid; ours also when they do not (dt = 0.004)."""
    sde = SDE(noise, sde_type)
    y0 = Y0.clone().requires_grad_(True)
    inputs = (y0, *sde.parameters())

    def grad(fn, dt, **kw):
        ys = fn(sde, y0, TS, bm=shared_bm(noise, dt=dt), method=method, dt=dt, **kw)
        return torch.autograd.grad((ys**2).sum(), inputs, materialize_grads=True)

    def rel(a, b):
        return max(((x - y).norm() / y.norm().clamp(min=1e-30)).item() for x, y in zip(a, b))

    errors = {}
    for dt in (0.01, 0.004, 0.002):
        ours = grad(nde.sdeint_adjoint, dt, **kwargs)
        errors[dt] = rel(ours, grad(tsde.sdeint, dt))
    assert errors[0.002] < errors[0.01] / 2.5 and errors[0.004] < errors[0.01] / 1.5, errors
    theirs = grad(tsde.sdeint_adjoint, 0.002, **kwargs)
    # Itô (diagonal, dt = 0.002): torchsde's adjoint is 3.6e-3 from ours, ours 1.4e-3 from
    # backpropagation through torchsde's forward steps
    bound = errors[0.01] if sde_type == "ito" and noise != "additive" else 2 * errors[0.002]
    assert rel(ours, theirs) < bound, (rel(ours, theirs), errors)


def test_adjoint_methods_that_cannot_solve_the_adjoint_sde_are_refused():
    for bad, match in (("milstein", "product"), ("log_ode", "cannot solve")):
        with pytest.raises(ValueError, match=match):
            nde.sdeint_adjoint(SDE("diagonal", "stratonovich"), Y0, TS, adjoint_method=bad)


# ------------------------------------------------------------------------------------------------
# in distribution


class GBM(torch.nn.Module):
    """Geometric Brownian motion ``dX = μX dt + σX dW`` (Itô), diagonal noise."""

    noise_type, sde_type = "diagonal", "ito"
    mu, sigma = 0.5, 0.8

    def f(self, t, y):
        return self.mu * y

    def g(self, t, y):
        return self.sigma * y


def test_fresh_paths_leave_torchs_random_stream_alone():
    """``bm=None`` and ``entropy=None`` draw their seeds elsewhere: the numbers torch draws next
    (a model's initialisation) do not depend on whether a solve ran; two fresh paths differ."""
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    first = nde.sdeint(SDE("diagonal", "ito"), Y0, TS, method="euler", dt=0.05)
    nde.BrownianInterval(0.0, 1.0, size=(2, 2))
    assert torch.equal(torch.rand(3), expected)
    second = nde.sdeint(SDE("diagonal", "ito"), Y0, TS, method="euler", dt=0.05)
    assert not torch.equal(first, second)


def test_euler_maruyama_moments_and_law_match_torchsde(monkeypatch):
    """Euler–Maruyama on GBM is the product of ``1 + μh + σΔW``: its mean and second moment are
    known exactly, ``(1 + μh)^n`` and ``((1 + μh)² + σ²h)^n``; samples from a fresh path
    (``bm=None``) must match them, and the law of torchsde's samples (two-sample KS test)."""
    monkeypatch.setattr(nde, "_fresh_seed", lambda: 12345)  # a fixed "fresh" path
    torch.manual_seed(0)
    n, h, samples = 50, 0.02, 20_000
    y0 = torch.ones(samples, 1, dtype=F64)
    ts = torch.tensor([0.0, 1.0], dtype=F64)
    ours = nde.sdeint(GBM(), y0, ts, method="euler", dt=h)[-1, :, 0]
    theirs = tsde.sdeint(GBM(), y0, ts, method="euler", dt=h)[-1, :, 0]
    mean = (1 + GBM.mu * h) ** n
    second = ((1 + GBM.mu * h) ** 2 + GBM.sigma**2 * h) ** n
    sd = math.sqrt(second - mean**2)
    assert abs(ours.mean().item() - mean) < 4 * sd / math.sqrt(samples)
    # the sample second moment's standard error, from the fourth moment of the product
    fourth = ((1 + GBM.mu * h) ** 4 + 6 * (1 + GBM.mu * h) ** 2 * GBM.sigma**2 * h
              + 3 * GBM.sigma**4 * h * h) ** n  # fmt: skip
    assert abs((ours**2).mean().item() - second) < 4 * math.sqrt(fourth - second**2 / samples)
    assert stats.ks_2samp(ours.numpy(), theirs.numpy()).pvalue > 1e-3


def test_own_brownian_interval_has_brownian_statistics():
    """This module's ``BrownianInterval`` (an interval tree): increments over the steps are
    independent ``N(0, dt)``, the same from the same ``entropy``, and ``return_U`` gives
    torchsde's ``U = ∫(W - W_a)``, whose space-time Lévy area ``U/h - W/2`` is ``N(0, h/12)``
    independent of ``W``."""
    bm = nde.BrownianInterval(0.0, 1.0, size=(20_000, 1), dtype=F64, entropy=11,
                              levy_area_approximation="space-time")  # fmt: skip
    again = nde.BrownianInterval(0.0, 1.0, size=(20_000, 1), dtype=F64, entropy=11,
                                 levy_area_approximation="space-time")  # fmt: skip
    a, b = 0.25, 0.375
    w, u = bm(a, b, return_U=True)
    assert torch.equal(w, again(a, b))
    h = b - a
    levy = u / h - w / 2
    se = 4 / math.sqrt(w.numel())
    assert abs(w.var().item() / h - 1) < se * math.sqrt(2) and abs(w.mean().item()) < se * h**0.5
    assert abs(levy.var().item() / (h / 12) - 1) < se * math.sqrt(2)
    assert abs(torch.corrcoef(torch.cat([w, levy], 1).T)[0, 1].item()) < se
    # additivity and independence of adjacent increments
    w1, w2 = bm(a, 0.3), bm(0.3, b)
    torch.testing.assert_close(w1 + w2, w, rtol=1e-9, atol=1e-9)
    assert abs(torch.corrcoef(torch.cat([w1, w2], 1).T)[0, 1].item()) < se
    assert stats.kstest((w / h**0.5).flatten().numpy(), "norm").pvalue > 1e-3
    # BrownianPath / BrownianTree: point queries start at w0
    w0 = torch.full((3, 2), 5.0, dtype=F64)
    for path in (nde.BrownianPath(0.0, w0), nde.BrownianTree(0.0, w0, entropy=1)):
        torch.testing.assert_close(path(0.5) - w0, path(0.0, 0.5), rtol=0, atol=1e-12)


def test_own_brownian_interval_drives_a_strong_order_check():
    """Driven by one ``BrownianInterval``, ``srk`` (SRA1) on an additive-noise SDE converges
    to the fine solution much faster than Euler–Maruyama, and ``adaptive=True`` stays within its
    tolerance of it."""

    class OU(torch.nn.Module):
        noise_type, sde_type = "additive", "ito"

        def f(self, t, y):
            return -torch.sin(y)

        def g(self, t, y):
            return torch.full((y.shape[0], 1, 1), 0.7, dtype=y.dtype)

    y0 = torch.full((200, 1), 0.5, dtype=F64)
    ts = torch.tensor([0.0, 1.0], dtype=F64)
    bm = nde.BrownianInterval(0.0, 1.0, size=(200, 1), dtype=F64, entropy=2,
                              levy_area_approximation="space-time")  # fmt: skip
    fine = nde.sdeint(OU(), y0, ts, bm=bm, method="srk", dt=2**-10)[-1]
    errors = {}
    for method in ("euler", "srk"):
        coarse = nde.sdeint(OU(), y0, ts, bm=bm, method=method, dt=2**-4)[-1]
        errors[method] = (coarse - fine).abs().mean().item()
    assert errors["srk"] < errors["euler"] / 5, errors
    adaptive = nde.sdeint(OU(), y0, ts, bm=bm, method="srk", adaptive=True, rtol=1e-4, atol=1e-4)
    assert (adaptive[-1] - fine).abs().max().item() < 1e-2


# ------------------------------------------------------------------------------------------------
# bad input


class WrongShape(SDE):
    def g(self, t, y):
        return torch.ones(BATCH, D, 5, dtype=F64)


def test_errors_name_the_argument_and_the_fix():
    diag = SDE("diagonal", "ito")
    strat = SDE("diagonal", "stratonovich")
    general = SDE("general", "ito")
    cases = [
        (lambda: nde.sdeint(strat, Y0, TS, method="euler"), ValueError, "euler_heun"),
        (lambda: nde.sdeint(diag, Y0, TS, method="midpoint"), ValueError, "milstein"),
        (lambda: nde.sdeint(general, Y0, TS, method="milstein"), ValueError, "noise type"),
        (lambda: nde.sdeint(strat, Y0, TS, bm=shared_bm("diagonal", True), method="log_ode"),
         ValueError, "foster"),
        (lambda: nde.sdeint(strat, Y0, TS, method="rk4"), ValueError, "Expected method"),
        (lambda: nde.sdeint(strat, Y0, TS, method="adjoint_reversible_heun"), ValueError,
         "adjoint_method"),
        (lambda: nde.sdeint(diag, Y0, TS, method="euler", options={"x": 1}), ValueError,
         "takes no options"),
        (lambda: nde.sdeint(diag, Y0, TS, names={"drfit": "f"}), ValueError, "drift"),
        (lambda: nde.sdeint(diag, Y0[0], TS), ValueError, "2-dimensional"),
        (lambda: nde.sdeint(diag, Y0, TS.flip(0)), ValueError, "strictly increasing"),
        (lambda: nde.sdeint(strat, Y0, TS, method="reversible_heun", extra=True), ValueError,
         "extra"),
        (lambda: nde.sdeint(diag, Y0, TS, bm=shared_bm("diagonal"), extra_solver_state=(Y0,)),
         ValueError, "extra_solver_state"),
        (lambda: nde.sdeint(diag, Y0[:2], TS, bm=shared_bm("diagonal")), ValueError, "Batch"),
        (lambda: nde.sdeint(SDE("scalar", "ito"), Y0, TS, bm=shared_bm("general")), ValueError,
         "scalar"),
        (lambda: nde.sdeint(SDE("additive", "ito"), Y0, TS, bm=shared_bm("additive"),
                            method="srk"), ValueError, "space-time"),
        (lambda: nde.sdeint(diag, Y0, TS, bm=torch.zeros(4, 3)), TypeError, "BrownianInterval"),
        (lambda: nde.sdeint(diag, Y0, TS, bm=shared_bm("general")), ValueError,
         r"Diagonal noise.*size=\(4, 3\)"),
        (lambda: nde.sdeint(WrongShape("general", "ito"), Y0, TS, bm=shared_bm("general")),
         ValueError, r"`WrongShape.g`.*\(4, 3, 5\)"),
        (lambda: nde.sdeint(diag, Y0, TS, method="euler", unknown=1), TypeError, "unknown"),
        (lambda: nde.sdeint_adjoint(strat, Y0, TS, method="midpoint",
                                    adjoint_method="adjoint_reversible_heun"), ValueError,
         "reversible_heun"),
    ]  # fmt: skip
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


def test_diffusion_only_as_a_product_is_refused():
    class ProdOnly(torch.nn.Module):
        noise_type, sde_type = "general", "ito"

        def f(self, t, y):
            return -y

        def g_prod(self, t, y, v):
            return v.sum(-1, keepdim=True).expand_as(y)

    with pytest.raises(ValueError, match="diffusion matrix"):
        nde.sdeint(ProdOnly(), Y0, TS, bm=shared_bm("general"))


def test_bm_must_cover_the_solve():
    bm = tsde.BrownianInterval(0.0, 0.5, size=(BATCH, D), dtype=F64, entropy=1)
    with pytest.raises(ValueError, match="t1=1"):
        nde.sdeint(SDE("diagonal", "ito"), Y0, TS, bm=bm, method="euler")


def test_torchnde_solvers_behind_the_method_names():
    assert isinstance(nde._solver(_setup("euler"), False), torchnde.EulerMaruyama)
    milstein = nde._solver(_setup("milstein", "stratonovich"), False)
    assert isinstance(milstein, torchnde.Milstein) and milstein.interpretation == "stratonovich"
    assert isinstance(nde._solver(_setup("heun", "stratonovich"), True), torchnde.HeunEuler)
    assert isinstance(nde._solver(_setup("srk"), False), torchnde.SRI)
    doubled = nde._solver(_setup("milstein"), True)
    assert isinstance(doubled, torchnde.StepDoubling)
    assert isinstance(doubled.solver, torchnde.Milstein)


def _setup(method, sde_type="ito"):
    sde = SDE("diagonal", sde_type)
    setup, _ = nde._setup(sde, Y0, TS, None, method, None, None, False, False)
    return setup


def test_sdeint_adjoint_differentiates_every_parameter_of_a_module_sde():
    """As torchsde does: the parameters of an SDE module that require grad are inputs of the
    adjoint even when the drift and diffusion do not use them (zero gradients), also through the
    Itô-to-Stratonovich wrapper; a used parameter gets its gradient."""

    class SDE(torch.nn.Module):
        noise_type, sde_type = "diagonal", "ito"

        def __init__(self):
            super().__init__()
            self.rate = torch.nn.Parameter(torch.tensor(0.3, dtype=torch.float64))
            self.unused = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))

        def f(self, t, y):
            return -self.rate * y

        def g(self, t, y):
            return 0.1 * torch.sin(y)

    sde = SDE()
    y0 = torch.full((4, 3), 0.5, dtype=torch.float64)
    ts = torch.tensor([0.0, 0.5], dtype=torch.float64)
    bm = nde.BrownianInterval(0.0, 0.5, size=(4, 3), dtype=torch.float64, entropy=1)
    ys = nde.sdeint_adjoint(sde, y0, ts, bm=bm, method="milstein", dt=0.05)
    ys[-1].sum().backward()
    assert sde.unused.grad is not None and torch.equal(sde.unused.grad, torch.zeros(3).double())
    assert sde.rate.grad is not None and float(sde.rate.grad) < 0  # decay lowers the sum
    sde.rate.requires_grad_(False)  # nothing used requires grad: still differentiable, zeros
    sde.unused.grad = None
    ys = nde.sdeint_adjoint(sde, y0, ts, bm=bm, method="milstein", dt=0.05)
    ys[-1].sum().backward()
    assert torch.equal(sde.unused.grad, torch.zeros(3).double())
