"""Brownian paths: the statistics of the increments and Lévy areas, consistency of repeated,
reversed, split and batched queries, the grid path's contract, and an SDE solved through them.

Every statistical check uses a fixed seed and a 5-sigma band computed from the sample size, so a
test fails only when the law is wrong (or, with probability ~1e-6, by chance for a new seed).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import stats

import torchnde
from torchnde import BrownianGrid, VirtualBrownianTree

F64 = torch.float64
KINDS = ["grid", "tree"]


# small tensors: one intra-op thread is fastest (conftest.one_thread restores it after)
pytestmark = pytest.mark.usefixtures("one_thread")


def make(kind, t0=0.0, t1=1.0, shape=(3,), *, seed=0, levy=None, dtype=F64, batch_axis=None):
    """A path of either kind: the grid has cells of 2^-8, the tree leaves of 2^-9 (dyadic times
    with denominators up to 256 are on both)."""
    if kind == "grid":
        steps = round((t1 - t0) * 256)
        return BrownianGrid(
            t0,
            t1,
            shape,
            steps=steps,
            seed=seed,
            levy_area=levy,
            dtype=dtype,
            batch_axis=batch_axis,
        )
    return VirtualBrownianTree(
        t0, t1, shape, tol=2**-9, seed=seed, levy_area=levy, dtype=dtype, batch_axis=batch_axis
    )


def T(x, n=None, dtype=F64):
    t = torch.as_tensor(x, dtype=dtype)
    return t if n is None else t.expand(n).clone()


def assert_law(x: torch.Tensor, var: float, what: str = ""):
    """Sample mean 0 and variance ``var`` within 5 standard errors (x: independent samples)."""
    x = x.reshape(-1).to(F64)
    n = x.numel()
    assert abs(float(x.mean())) < 5 * math.sqrt(var / n), f"{what}: mean {float(x.mean()):.3g}"
    ratio = float((x * x).mean()) / var
    assert abs(ratio - 1) < 5 * math.sqrt(2 / n), f"{what}: variance ratio {ratio:.4f}"


def assert_uncorrelated(x: torch.Tensor, y: torch.Tensor, what: str = ""):
    x, y = x.reshape(-1).to(F64), y.reshape(-1).to(F64)
    r = float(torch.corrcoef(torch.stack([x, y]))[0, 1])
    assert abs(r) < 5 / math.sqrt(x.numel()), f"{what}: correlation {r:.4f}"


# ------------------------------------------------------------------------------------------------
# the law of the increments


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("levy", [None, "space-time"])
def test_increments_have_mean_zero_and_variance_h_per_channel(kind, levy):
    n = 4000
    path = make(kind, shape=(n, 3), seed=1, levy=levy, batch_axis=0)
    for a, b in [(0.25, 0.75), (0.0, 1.0), (0.5, 0.5 + 2**-8), (0.375, 0.4375)]:
        w = path.increment(T(a, n), T(b, n))
        assert w.shape == (n, 3)
        for c in range(3):
            assert_law(w[:, c], b - a, f"{kind} channel {c} on [{a}, {b}]")
    if kind == "tree":  # ends off the dyadic grid, far above tol: still N(0, h)
        w = path.increment(T(0.1234, n), T(0.7071, n))
        assert_law(w, 0.7071 - 0.1234, "tree off the dyadic points")


@pytest.mark.parametrize("kind", KINDS)
def test_disjoint_increments_channels_and_samples_are_independent(kind):
    n = 4000
    path = make(kind, shape=(n, 2), seed=2, batch_axis=0)
    w1 = path.increment(T(0.25, n), T(0.5, n))
    w2 = path.increment(T(0.5, n), T(0.75, n))
    w3 = path.increment(T(0.0, n), T(2**-8, n))  # a deep node against a coarse one
    assert_uncorrelated(w1, w2, "adjacent intervals")
    assert_uncorrelated(w1, w3, "far intervals")
    assert_uncorrelated(w1[:, 0], w1[:, 1], "channels")
    assert_uncorrelated(w1[:-1], w1[1:], "neighbouring samples")
    # the squares too (independence, not only zero correlation)
    assert_uncorrelated(w1**2, w2**2, "squares of adjacent intervals")


@pytest.mark.parametrize("kind", KINDS)
def test_one_paths_successive_increments_are_iid_normal(kind):
    """Kolmogorov–Smirnov on 256 successive increments of 16 paths (8 samples x 2 channels),
    and no correlation between neighbours: the path is Brownian along time, not only across
    samples."""
    path = make(kind, shape=(8, 2), seed=3, batch_axis=0)
    grid = torch.linspace(0, 1, 257, dtype=F64)
    w = torch.stack([path.increment(T(a, 8), T(b, 8)) for a, b in itertools.pairwise(grid)])
    z = w / math.sqrt(1 / 256)
    assert stats.kstest(z.reshape(-1).numpy(), "norm").pvalue > 1e-3
    assert_uncorrelated(z[:-1], z[1:], "successive increments")
    # and the sum of the increments is the increment over the whole interval
    total = path.increment(T(0.0, 8), T(1.0, 8))
    torch.testing.assert_close(w.sum(0), total, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("interval", [(0.0, 1.0), (0.5, 0.5 + 2**-8)])
def test_kolmogorov_smirnov_of_increments_and_levy_areas(kind, interval):
    n = 10000
    a, b = interval
    h = b - a
    path = make(kind, shape=(n,), seed=4, levy="space-time", batch_axis=0)
    w, hh = path.levy_increment(T(a, n), T(b, n))
    assert stats.kstest((w / math.sqrt(h)).numpy(), "norm").pvalue > 1e-3
    assert stats.kstest((hh / math.sqrt(h / 12)).numpy(), "norm").pvalue > 1e-3


# ------------------------------------------------------------------------------------------------
# space-time Lévy area


def combine(w1, h1, w2, h2, len1, len2):
    """(W, H) over the union of two adjacent intervals (the rule in the module docstring)."""
    total = len1 + len2
    return w1 + w2, (len1 * h1 + len2 * h2) / total + (len2 * w1 - len1 * w2) / (2 * total)


@pytest.mark.parametrize("kind", KINDS)
def test_levy_area_has_variance_h_over_12_and_is_independent_of_w(kind):
    n = 8000
    path = make(kind, shape=(n,), seed=5, levy="space-time", batch_axis=0)
    for a, b in [(0.0, 1.0), (0.25, 0.3125), (0.5, 0.5 + 2**-8)]:
        w, h = path.levy_increment(T(a, n), T(b, n))
        assert_law(h, (b - a) / 12, f"{kind} H on [{a}, {b}]")
        assert_uncorrelated(w, h, "W and H")
        assert_uncorrelated(w**2, h**2, "W² and H²")
    # disjoint intervals: independent areas
    _, h1 = path.levy_increment(T(0.0, n), T(0.5, n))
    w2, h2 = path.levy_increment(T(0.5, n), T(1.0, n))
    assert_uncorrelated(h1, h2, "areas of the two halves")
    assert_uncorrelated(h1, w2, "area of one half and increment of the other")


@pytest.mark.parametrize("kind", KINDS)
def test_levy_area_combines_exactly_over_splits(kind):
    path = make(kind, shape=(4,), seed=6, levy="space-time")
    # dyadic splits (on the grid); the tree also at arbitrary points, inside one leaf too
    splits = [(0.0, 0.5, 1.0), (0.125, 0.25, 0.875), (0.25, 0.2578125, 0.265625)]
    if kind == "tree":
        splits += [(0.1, 0.37, 0.9), (0.3, 0.30001, 0.30002), (0.0, 0.123456, 1.0)]
    for a, m, b in splits:
        w1, h1 = path.levy_increment(T(a), T(m))
        w2, h2 = path.levy_increment(T(m), T(b))
        w, h = path.levy_increment(T(a), T(b))
        cw, ch = combine(w1, h1, w2, h2, m - a, b - m)
        torch.testing.assert_close(cw, w, rtol=0, atol=1e-13)
        torch.testing.assert_close(ch, h, rtol=0, atol=1e-12)


def test_tree_levy_area_is_the_time_integral_of_its_own_path():
    """H = (1/h)∫(W_u - W_a) du - W/2, the integral by Simpson's rule on the tree's leaves (the
    path is a parabola on each leaf, so Simpson is exact there)."""
    path = VirtualBrownianTree(0.0, 1.0, (2,), tol=2**-6, seed=7, levy_area="space-time", dtype=F64)
    a, b = 0.25, 0.75
    ts = torch.linspace(a, b, 2 * 32 + 1, dtype=F64)  # two Simpson panels per leaf of 1/64
    ws = path.increment(T(0.0).expand(ts.shape[0]), ts) - path.increment(T(0.0), T(a))
    integral = (ws[0:-1:2] + 4 * ws[1::2] + ws[2::2]).sum(0) * (ts[1] - ts[0]) / 3
    w, h = path.levy_increment(T(a), T(b))
    torch.testing.assert_close(w, ws[-1], rtol=0, atol=1e-14)
    torch.testing.assert_close(h, integral / (b - a) - w / 2, rtol=0, atol=1e-13)


@pytest.mark.parametrize("kind", KINDS)
def test_levy_increment_needs_levy_area(kind):
    path = make(kind)
    with pytest.raises(ValueError, match='levy_area="space-time"'):
        path.levy_increment(T(0.0), T(0.5))
    with pytest.raises(ValueError, match='levy_area="space-time"'):
        torchnde.LinearInterpolation(torch.linspace(0, 1, 3), torch.zeros(3, 1)).levy_increment(
            T(0.0), T(0.5)
        )


# ------------------------------------------------------------------------------------------------
# one path, however it is queried


@pytest.mark.parametrize("kind", KINDS)
def test_additivity_across_splits(kind):
    path = make(kind, shape=(5,), seed=8)
    points = [0.0, 0.25, 0.5078125, 0.75, 1.0]
    if kind == "tree":
        points = sorted([*points, 0.1, 0.3333, 0.33331, 0.9])
    for s, t, u in zip(points, points[1:], points[2:]):
        whole = path.increment(T(s), T(u))
        torch.testing.assert_close(
            path.increment(T(s), T(t)) + path.increment(T(t), T(u)), whole, rtol=0, atol=1e-14
        )
    # float32: to float32 precision
    path32 = make(kind, shape=(5,), seed=8, dtype=torch.float32)
    parts = sum(path32.increment(T(s), T(t)) for s, t in itertools.pairwise(points))
    torch.testing.assert_close(parts, path32.increment(T(0.0), T(1.0)), rtol=0, atol=2e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("levy", [None, "space-time"])
def test_same_seed_same_path_other_seed_other_path(kind, levy):
    def sample(seed):
        path = make(kind, shape=(2000,), seed=seed, levy=levy, batch_axis=0)
        return path.increment(T(0.25, 2000), T(0.75, 2000))

    a, b, c = sample(11), sample(11), sample(12)
    assert torch.equal(a, b)
    assert_uncorrelated(a, c, "paths from two seeds")
    big = sample(2**40 + 11)  # seeds above 32 bits count
    assert_uncorrelated(a, big, "seeds that differ above bit 32")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("levy", [None, "space-time"])
def test_repeated_reversed_and_reordered_queries_agree(kind, levy):
    path = make(kind, shape=(3,), seed=9, levy=levy)
    query = path.levy_increment if levy else path.increment
    first = query(T(0.25), T(0.5))
    path.increment(T(0.0), T(1.0))  # other queries in between change nothing
    path.increment(T(0.75), T(0.5))
    again = query(T(0.25), T(0.5))
    back = query(T(0.5), T(0.25))
    if levy:
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
        assert torch.equal(back[0], -first[0])  # W changes sign
        assert torch.equal(back[1], first[1])  # H does not (the area of the reversed path)
    else:
        assert torch.equal(first, again)
        assert torch.equal(back, -first)
    # a fresh path with the same seed, queried in another order
    fresh = make(kind, shape=(3,), seed=9, levy=levy)
    fresh.increment(T(0.5), T(1.0))
    got = (fresh.levy_increment if levy else fresh.increment)(T(0.25), T(0.5))
    torch.testing.assert_close(got, first, rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("levy", [None, "space-time"])
def test_batched_queries_equal_each_sample_queried_alone(kind, levy):
    """Each sample's increment depends only on its own times (vectorised per-sample queries);
    an unbatched path at (batch,) times equals the same path queried at each pair alone."""
    n = 6
    path = make(kind, shape=(n, 2), seed=10, levy=levy, batch_axis=0)
    query = path.levy_increment if levy else path.increment
    ta = torch.tensor([0.0, 0.125, 0.25, 0.5, 0.75, 0.5], dtype=F64)
    tb = torch.tensor([1.0, 0.25, 0.375, 0.5, 0.5, 0.625], dtype=F64)  # one empty, one reversed
    base = query(ta, tb)
    for i in range(n):
        other_a, other_b = ta.roll(1), tb.roll(2)  # every other sample asks something else
        other_a[i], other_b[i] = ta[i], tb[i]
        got = query(other_a, other_b)
        for x, y in zip(base if levy else [base], got if levy else [got]):
            torch.testing.assert_close(y[i], x[i], rtol=0, atol=1e-15)
    assert float((base[0] if levy else base)[3].abs().max()) == 0.0  # empty interval
    one = make(kind, shape=(2,), seed=10, levy=levy)
    q1 = one.levy_increment if levy else one.increment
    together = q1(ta, tb)
    for i in range(n):
        alone = q1(ta[i], tb[i])
        for x, y in zip(together if levy else [together], alone if levy else [alone]):
            torch.testing.assert_close(y, x[i], rtol=0, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_and_float64_paths_agree(kind):
    p64 = make(kind, shape=(3, 4), seed=13, levy="space-time")
    p32 = make(kind, shape=(3, 4), seed=13, levy="space-time", dtype=torch.float32)
    for a, b in [(0.0, 1.0), (0.25, 0.2578125)]:
        w64, h64 = p64.levy_increment(T(a), T(b))
        w32, h32 = p32.levy_increment(T(a, dtype=torch.float32), T(b, dtype=torch.float32))
        assert w32.dtype == h32.dtype == torch.float32 and w64.dtype == F64
        assert w32.shape == (3, 4)
        scale = math.sqrt(b - a)
        torch.testing.assert_close(w32.double(), w64, rtol=0, atol=1e-5 * scale)
        torch.testing.assert_close(h32.double(), h64, rtol=0, atol=1e-5 * scale)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_path_equals_cpu_path(kind):
    cpu = make(kind, shape=(64, 3), seed=14, levy="space-time", batch_axis=0)
    gpu = type(cpu)(
        0.0,
        1.0,
        (64, 3),
        seed=14,
        levy_area="space-time",
        dtype=F64,
        device="cuda",
        batch_axis=0,
        **({"steps": 256} if kind == "grid" else {"tol": 2**-9}),
    )
    ta, tb = torch.full((64,), 0.25, dtype=F64), torch.full((64,), 0.5, dtype=F64)
    for x, y in zip(cpu.levy_increment(ta, tb), gpu.levy_increment(ta.cuda(), tb.cuda())):
        assert y.device.type == "cuda"
        torch.testing.assert_close(y.cpu(), x, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# below the tree's resolution; the grid's contract


def test_tree_is_linear_below_tol_and_a_parabola_with_levy_area():
    """Between the dyadic points at spacing <= tol the path is its conditional mean: a straight
    line (increments proportional to the length), or a parabola with Lévy area (constant second
    differences)."""
    tol = 2**-8
    lin = VirtualBrownianTree(0.0, 1.0, (3,), tol=tol, seed=15, dtype=F64)
    par = VirtualBrownianTree(0.0, 1.0, (3,), tol=tol, seed=15, levy_area="space-time", dtype=F64)
    assert lin.depth == 8
    ts = 0.5 + tol * torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9], dtype=F64)  # inside one leaf
    w = torch.stack([lin.increment(T(0.5), t) for t in ts])
    slopes = (w[1:] - w[:-1]) / (0.2 * tol)
    torch.testing.assert_close(slopes, slopes[:1].expand_as(slopes), rtol=1e-9, atol=0)
    w = torch.stack([par.increment(T(0.5), t) for t in ts])
    second = w[2:] - 2 * w[1:-1] + w[:-2]
    torch.testing.assert_close(second, second[:1].expand_as(second), rtol=1e-7, atol=1e-15)
    assert float(second.abs().max()) > 0
    # W(t) itself: the increment from the start, W(t0) = 0
    torch.testing.assert_close(
        par.evaluate(ts), torch.stack([par.increment(T(0.0), t) for t in ts])
    )
    assert float(par.evaluate(T(0.0)).abs().max()) == 0.0


def test_tree_depth_follows_tol():
    assert VirtualBrownianTree(0.0, 1.0, (1,), tol=1e-3).depth == 10  # 2^-10 <= 1e-3
    assert VirtualBrownianTree(0.0, 2.0, (1,), tol=0.5).depth == 2  # absolute tol
    assert VirtualBrownianTree(0.0, 1.0, (1,), tol=2.0).depth == 0
    with pytest.raises(ValueError, match="tol"):
        VirtualBrownianTree(0.0, 1.0, (1,), tol=1e-20)


def test_deep_tree_keeps_the_law_and_agrees_with_itself():
    """Depth 40: node numbers above 2^32 are hashed in full (no int64 overflow, no collisions)."""
    n = 4000
    path = VirtualBrownianTree(0.0, 1.0, (n,), tol=2**-40, seed=18, dtype=F64, batch_axis=0)
    ta = torch.rand(n, dtype=F64, generator=torch.Generator().manual_seed(0)) * 0.9
    w = path.increment(ta, ta + 1e-9)
    assert_law(w, 1e-9, "deep tree")
    one = VirtualBrownianTree(0.0, 1.0, (2,), tol=2**-40, seed=18, dtype=F64)
    together = one.increment(ta[:3], ta[:3] + 1e-9)
    for i in range(3):
        torch.testing.assert_close(one.increment(ta[i], ta[i] + 1e-9), together[i])


def test_grid_rejects_off_grid_queries_with_the_fix():
    path = BrownianGrid(0.0, 1.0, (2,), steps=100, seed=0)
    with pytest.raises(ValueError, match=r"not one of its grid points.*VirtualBrownianTree"):
        path.increment(T(0.0), T(0.015))
    with pytest.raises(ValueError, match="not one of its grid points"):
        path.increment(T(0.0, 3), torch.tensor([0.01, 0.02, 0.0301], dtype=F64))
    with pytest.raises(ValueError, match="not one of its grid points"):
        path.increment(T(0.0), T(1.01))  # outside
    # float32 rounding of grid points is accepted, and reads the grid point
    t32 = torch.tensor(0.01, dtype=torch.float32) * 37
    torch.testing.assert_close(path.increment(T(0.0), t32), path.increment(T(0.0), T(0.37)))
    with pytest.raises(ValueError, match="`dt`"):
        BrownianGrid(0.0, 1.0, (2,), dt=0.3)
    assert BrownianGrid(0.0, 1.0, (2,), dt=0.1).steps == 10


def test_grid_same_w_with_or_without_levy_area_and_one_cell_area():
    plain = BrownianGrid(0.0, 1.0, (5,), steps=8, seed=3, dtype=F64)
    levy = BrownianGrid(0.0, 1.0, (5,), steps=8, seed=3, levy_area="space-time", dtype=F64)
    w, h = levy.levy_increment(T(0.25), T(0.375))
    assert torch.equal(w, plain.increment(T(0.25), T(0.375)))
    assert float(h.abs().max()) > 0
    w0, h0 = levy.levy_increment(T(0.5), T(0.5))
    assert float(w0.abs().max()) == float(h0.abs().max()) == 0.0


# ------------------------------------------------------------------------------------------------
# through solve


def gbm_terms(path, mu, sigma):
    def drift(t, y, args):
        return mu * y

    def diffusion(t, y, args):  # (batch, 1) state, one noise channel per sample
        return (sigma * y).unsqueeze(-1)

    return torchnde.MultiTerm(torchnde.ODETerm(drift), torchnde.ControlTerm(diffusion, path))


@pytest.mark.parametrize("kind", KINDS)
def test_euler_maruyama_converges_strongly_on_geometric_brownian_motion(kind):
    """dy = mu y dt + sigma y dW, y(0) = 1: y(1) = exp(mu - sigma²/2 + sigma W(1)) from the same
    path. Euler on MultiTerm(ODETerm, ControlTerm) is Euler–Maruyama: strong order 1/2."""
    n, mu, sigma = 1000, 0.5, 1.0
    if kind == "grid":
        path = BrownianGrid(0.0, 1.0, (n, 1), steps=64, seed=16, dtype=F64, batch_axis=0)
    else:
        path = VirtualBrownianTree(0.0, 1.0, (n, 1), tol=2**-9, seed=16, dtype=F64, batch_axis=0)
    exact = torch.exp(mu - sigma**2 / 2 + sigma * path.increment(T(0.0, n), T(1.0, n)))
    errors, dts = [], [2.0**-k for k in range(2, 7)]
    for dt in dts:
        sol = torchnde.solve(
            gbm_terms(path, mu, sigma),
            torchnde.Euler(),
            0.0,
            1.0,
            torch.ones(n, 1, dtype=F64),
            dt0=dt,
            batch_axis=0,
        )
        errors.append(float((sol.ys[:, -1] - exact).abs().mean()))
    slope = torch.linalg.lstsq(
        torch.tensor([[math.log(d), 1.0] for d in dts], dtype=F64),
        torch.tensor(errors, dtype=F64).log()[:, None],
    ).solution[0, 0]
    assert abs(float(slope) - 0.5) < 0.2, (errors, float(slope))
    assert errors[-1] < errors[0] / 2


def test_solve_refuses_a_path_that_does_not_cover_it():
    y0 = torch.ones(4, 1, dtype=F64)
    tree = VirtualBrownianTree(0.0, 1.0, (4, 1), seed=0, dtype=F64, batch_axis=0)
    with pytest.raises(ValueError, match=r"VirtualBrownianTree.*\[0, 1\].*\[0, 2\]"):
        torchnde.solve(
            gbm_terms(tree, 0.1, 0.2), torchnde.Euler(), 0.0, 2.0, y0, dt0=0.1, batch_axis=0
        )
    # per-sample intervals: one sample starts before the path
    with pytest.raises(ValueError, match=r"\[-0.5, 1\]"):
        torchnde.solve(
            gbm_terms(tree, 0.1, 0.2),
            torchnde.Euler(),
            torch.tensor([0.0, -0.5, 0.0, 0.0], dtype=F64),
            1.0,
            y0,
            dt0=0.1,
            batch_axis=0,
        )
    grid = BrownianGrid(0.0, 1.0, (4, 1), steps=10, seed=0, dtype=F64, batch_axis=0)
    with pytest.raises(ValueError, match=r"`t1`=0.55 is not a grid point.*VirtualBrownianTree"):
        torchnde.solve(
            gbm_terms(grid, 0.1, 0.2), torchnde.Euler(), 0.0, 0.55, y0, dt0=0.05, batch_axis=0
        )
    # a step that leaves the grid, inside the solve
    with pytest.raises(ValueError, match="not one of its grid points"):
        torchnde.solve(
            gbm_terms(grid, 0.1, 0.2), torchnde.Euler(), 0.0, 1.0, y0, dt0=0.15, batch_axis=0
        )


def test_backwards_solve_reads_the_path_backwards():
    """Solving dy = dW from 1 back to 0 gives y(0) = y(1) - (W(1) - W(0))."""
    path = VirtualBrownianTree(0.0, 1.0, (3,), seed=17, dtype=F64)

    def one(t, y, args):
        return torch.eye(3, dtype=F64)

    y1 = torch.zeros(3, dtype=F64)
    for p in (path, BrownianGrid(0.0, 1.0, (3,), steps=8, seed=17, dtype=F64)):
        sol = torchnde.solve(
            torchnde.ControlTerm(one, p), torchnde.Euler(), 1.0, 0.0, y1, dt0=-0.125
        )
        torch.testing.assert_close(sol.ys[-1], -p.increment(T(0.0), T(1.0)), rtol=0, atol=1e-13)


# ------------------------------------------------------------------------------------------------
# bad arguments


@pytest.mark.parametrize("cls", [BrownianGrid, VirtualBrownianTree])
def test_bad_arguments_name_the_argument(cls):
    extra = {"steps": 4} if cls is BrownianGrid else {}
    with pytest.raises(ValueError, match="t0 < t1"):
        cls(1.0, 0.0, (2,), **extra)
    with pytest.raises(ValueError, match="levy_area"):
        cls(0.0, 1.0, (2,), levy_area="space-time-time", **extra)
    with pytest.raises(ValueError, match="batch size"):
        cls(0.0, 1.0, (), batch_axis=0, **extra)
    with pytest.raises(TypeError, match="seed"):
        cls(0.0, 1.0, (2,), seed=1.5, **extra)
    with pytest.raises(TypeError, match="dtype"):
        cls(0.0, 1.0, (2,), dtype=torch.int64, **extra)
    path = cls(0.0, 1.0, (3, 2), batch_axis=0, **extra)
    assert path.shape == (2,) and path.batched
    with pytest.raises(ValueError, match="batch size 3"):
        path.increment(T(0.0, 4), T(0.5, 4))


# ---- Lévy-area approximations and the conditioned tree --------------------------------------


@pytest.mark.parametrize("approximation", ["davie", "foster"])
def test_levy_area_approximations_have_the_levy_area_moments(approximation):
    """Davie's and Foster's approximations: antisymmetric, mean 0 and the Lévy area's variance
    h²/4 off the diagonal; Foster's conditional variance given H is h²/20 + h(H_i² + H_j²)/5
    (checked through E[(A - (H_i W_j - W_i H_j))² / σ²(H)] = 1); Davie's is h²/12."""
    n, h = 40_000, 0.5
    path = VirtualBrownianTree(0.0, 2.0, (n, 3), tol=1e-2, seed=11, levy_area="space-time",
                               dtype=F64)  # fmt: skip
    w, hh, a = path.area_increment(torch.tensor(0.3), torch.tensor(0.3 + h), approximation)
    assert a.shape == (n, 3, 3)
    torch.testing.assert_close(a, -a.transpose(-1, -2), rtol=0, atol=0)
    off = a[:, 0, 1]
    band = 5 / math.sqrt(n)
    assert abs(off.mean().item()) / math.sqrt(h * h / 4) < band
    assert abs(off.var().item() / (h * h / 4) - 1) < 5 * math.sqrt(2 / n) * 3  # 4th moment > 3
    mean = hh[:, 0] * w[:, 1] - w[:, 0] * hh[:, 1]
    if approximation == "foster":
        var = h * h / 20 + h * (hh[:, 0] ** 2 + hh[:, 1] ** 2) / 5
    else:
        var = torch.full_like(mean, h * h / 12)
    ratio = ((off - mean) ** 2 / var).mean().item()
    assert abs(ratio - 1) < 5 * math.sqrt(2 / n)
    # the same query gives the same area; backwards it changes sign
    _, _, again = path.area_increment(torch.tensor(0.3), torch.tensor(0.3 + h), approximation)
    assert torch.equal(a, again)
    _, _, back = path.area_increment(torch.tensor(0.3 + h), torch.tensor(0.3), approximation)
    torch.testing.assert_close(back, -a, rtol=1e-12, atol=1e-12)


def test_levy_area_approximation_arguments():
    path = VirtualBrownianTree(0.0, 1.0, (2,), seed=0)
    with pytest.raises(ValueError, match="levy_area"):
        path.area_increment(torch.tensor(0.0), torch.tensor(0.5), "davie")
    path = VirtualBrownianTree(0.0, 1.0, (2,), seed=0, levy_area="space-time")
    with pytest.raises(ValueError, match="approximation"):
        path.area_increment(torch.tensor(0.0), torch.tensor(0.5), "wiktorsson")
    scalar = VirtualBrownianTree(0.0, 1.0, (), seed=0, levy_area="space-time")
    w, _, a = scalar.area_increment(torch.tensor(0.0), torch.tensor(0.5), "davie")
    assert a.shape == w.shape == () and a.item() == 0.0


@pytest.mark.parametrize("levy", [None, "space-time"])
def test_tree_conditioned_on_its_end_value_is_the_brownian_bridge(levy):
    """W(t1) - W(t0) = w1 exactly; in between W(s) ~ N(w1 s/T, s(T - s)/T) (time from t0), and
    the two halves still add up to w1."""
    n, T, s = 40_000, 2.0, 0.75
    w1 = torch.randn(n, generator=torch.Generator().manual_seed(5), dtype=F64)
    path = VirtualBrownianTree(0.0, T, (n,), tol=1e-2, seed=3, w1=w1, dtype=F64, levy_area=levy)
    t0, ts, t1 = torch.tensor(0.0), torch.tensor(s), torch.tensor(T)
    torch.testing.assert_close(path.increment(t0, t1), w1, rtol=0, atol=1e-12)
    first = path.increment(t0, ts)
    torch.testing.assert_close(first + path.increment(ts, t1), w1, rtol=0, atol=1e-12)
    z = (first - w1 * s / T) / math.sqrt(s * (T - s) / T)
    assert stats.kstest(z.numpy(), "norm").pvalue > 1e-5
    batched = VirtualBrownianTree(0.0, T, (4, 2), seed=3, w1=torch.ones(4, 2), batch_axis=0)
    torch.testing.assert_close(batched.increment(t0, t1), torch.ones(4, 2))
    with pytest.raises(ValueError, match="w1"):
        VirtualBrownianTree(0.0, T, (4, 2), w1=torch.ones(4))
