"""BrownianIntervalTree: the law of what it returns whatever the order of the queries (the split
at any point is the exact conditional law), consistency and reproducibility of repeated,
reversed, evicted and split queries, its balanced shape under a solve's steps, and a solve
driven by it.

Statistical checks use fixed seeds and 5-sigma bands from the sample size, as in
``test_brownian.py``.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
from scipy import stats
from test_brownian import assert_law, assert_uncorrelated

import torchnde
from torchnde.paths import BrownianIntervalTree

F64 = torch.float64

pytestmark = pytest.mark.usefixtures("one_thread")


def tree(shape=(3,), *, seed=0, levy=None, dtype=F64, **kwargs):
    return BrownianIntervalTree(0.0, 1.0, shape, seed=seed, levy_area=levy, dtype=dtype, **kwargs)


def combine(w1, h1, w2, h2, len1, len2):
    """(W, H) over the union of two adjacent intervals."""
    total = len1 + len2
    return w1 + w2, (len1 * h1 + len2 * h2) / total + (len2 * w1 - len1 * w2) / (2 * total)


# ------------------------------------------------------------------------------------------------
# the law


@pytest.mark.parametrize("r", [0.5, 0.3, 1e-3, 1 - 1e-4])
def test_a_split_anywhere_gives_independent_halves_with_the_right_laws(r):
    """Splitting the root at ``r``: (W1, H1, W2, H2) must be independent N(0, r), N(0, r/12),
    N(0, q), N(0, q/12) — which holds only if the children are drawn from the exact conditional
    law given the root's (W, H) (the root's own law is fixed)."""
    n = 20000
    path = tree((n,), seed=1, levy="space-time")
    w1, h1 = path.levy_increment(0.0, r)
    w2, h2 = path.levy_increment(r, 1.0)
    q = 1 - r
    parts = {"W1": (w1, r), "H1": (h1, r / 12), "W2": (w2, q), "H2": (h2, q / 12)}
    for name, (x, var) in parts.items():
        assert_law(x, var, f"{name} at r={r}")
    for (a, (x, _)), (b, (y, _)) in itertools.combinations(parts.items(), 2):
        assert_uncorrelated(x, y, f"{a}, {b} at r={r}")
    w, h = path.levy_increment(0.0, 1.0)
    cw, ch = combine(w1, h1, w2, h2, r, q)
    torch.testing.assert_close(cw, w, rtol=0, atol=1e-13)
    torch.testing.assert_close(ch, h, rtol=0, atol=1e-12)


@pytest.mark.parametrize("levy", [None, "space-time"])
def test_random_queries_in_any_order_keep_the_brownian_law(levy):
    """Thirty random intervals queried in turn (each splitting the tree where the previous ones
    left it): every increment N(0, h), every H N(0, h/12) independent of W, and the two halves
    of a further split add up exactly."""
    n = 20000
    path = tree((n,), seed=2, levy=levy)
    rng = random.Random(0)
    for _ in range(30):
        a, b = sorted(rng.random() for _ in range(2))
        if levy is None:
            w = path.increment(a, b)
        else:
            w, h = path.levy_increment(a, b)
            assert_law(h, (b - a) / 12, f"H on [{a:.3f}, {b:.3f}]")
            assert_uncorrelated(w, h, "W and H")
        assert_law(w, b - a, f"W on [{a:.3f}, {b:.3f}]")
        m = a + (b - a) * rng.random()
        if levy is None:
            torch.testing.assert_close(
                path.increment(a, m) + path.increment(m, b), w, rtol=0, atol=1e-12
            )
        else:
            w1, h1 = path.levy_increment(a, m)
            w2, h2 = path.levy_increment(m, b)
            cw, ch = combine(w1, h1, w2, h2, m - a, b - m)
            torch.testing.assert_close(cw, w, rtol=0, atol=1e-12)
            torch.testing.assert_close(ch, h, rtol=0, atol=1e-12)


def test_successive_increments_are_iid_normal_and_add_up():
    """A solve's pattern: 256 steps of one path (8 samples x 2 channels) are iid N(0, h) by
    Kolmogorov–Smirnov, neighbours uncorrelated, and they sum to the whole increment."""
    path = tree((8, 2), seed=3)
    grid = torch.linspace(0, 1, 257, dtype=F64)
    w = torch.stack([path.increment(a, b) for a, b in itertools.pairwise(grid)])
    z = w / math.sqrt(1 / 256)
    assert stats.kstest(z.reshape(-1).numpy(), "norm").pvalue > 1e-3
    assert_uncorrelated(z[:-1], z[1:], "successive increments")
    torch.testing.assert_close(w.sum(0), path.increment(0.0, 1.0), rtol=0, atol=1e-12)


@pytest.mark.parametrize("levy", [None, "space-time"])
def test_conditioned_on_its_end_value_it_is_the_brownian_bridge(levy):
    n = 20000
    w1 = torch.randn(n, dtype=F64, generator=torch.Generator().manual_seed(4))
    h1 = None if levy is None else torch.zeros(n, dtype=F64)
    path = tree((n,), seed=4, levy=levy, w1=w1, h1=h1)
    torch.testing.assert_close(path.increment(0.0, 1.0), w1, rtol=0, atol=0)
    s = 0.3
    part = path.increment(0.0, s)
    # given W(1) = w1 (and H = 0 with Lévy area) the bridge's value at s is normal around its
    # conditional mean
    mean = s * w1 + (0 if levy is None else 6 * s * (1 - s) * h1)
    var = s * (1 - s) if levy is None else s * (1 - s) * (1 - 3 * s * (1 - s))
    assert_law(part - mean, var, "bridge residual")
    torch.testing.assert_close(part + path.increment(s, 1.0), w1, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# one path, however it is queried


@pytest.mark.parametrize("levy", [None, "space-time"])
def test_same_seed_and_queries_give_the_same_path_and_repeats_agree(levy):
    queries = [(0.1, 0.7), (0.2, 0.25), (0.0, 1.0), (0.65, 0.9), (0.3, 0.3001)]

    def run(seed, cache_size=45):
        path = tree((5, 2), seed=seed, levy=levy, cache_size=cache_size)
        return path, [path._query(a, b, levy is not None) for a, b in queries]

    path, first = run(7)
    _, again = run(7)
    _, other = run(8)
    _, small_cache = run(7, cache_size=1)  # every node recomputed from its ancestors
    for x, y, z, s in zip(first, again, other, small_cache):
        assert torch.equal(x[0], y[0]) and torch.equal(x[0], s[0])
        assert not torch.equal(x[0], z[0])
        if levy is not None:
            assert torch.equal(x[1], y[1]) and torch.equal(x[1], s[1])
    # repeated, reversed and evicted: the same values
    for (a, b), x in zip(queries, first):
        path._cache.clear()
        w, h = path._query(a, b, levy is not None)
        back = path._query(b, a, levy is not None)
        assert torch.equal(w, x[0]) and torch.equal(back[0], -w)
        if levy is not None:
            assert torch.equal(h, x[1]) and torch.equal(back[1], h)


def test_zero_width_queries_and_times_as_tensors():
    path = tree((4,), seed=5, levy="space-time")
    w, h = path.levy_increment(torch.tensor(0.5, dtype=F64), torch.tensor(0.5, dtype=F64))
    assert torch.equal(w, torch.zeros(4, dtype=F64)) and torch.equal(h, torch.zeros(4, dtype=F64))
    t = torch.tensor([0.25, 0.25], dtype=F64)
    both = path.increment(t, t + 0.5)
    assert both.shape == (2, 4)
    torch.testing.assert_close(both[0], path.increment(0.25, 0.75), rtol=0, atol=0)
    with pytest.raises(ValueError, match="VirtualBrownianTree"):
        path.increment(torch.tensor([0.1, 0.2], dtype=F64), torch.tensor([0.3, 0.4], dtype=F64))


def test_a_solves_steps_build_a_balanced_tree():
    """Sequential steps split leaves at their midpoints while they are wider than 16 steps, so
    the depth stays about log2(1/(16 dt)) + 16 however many steps, forwards or backwards; with
    ``dt`` given the same holds for the first query too."""

    def depth(node):
        if node.mid is None:
            return 0
        return 1 + max(depth(node.left), depth(node.right))

    steps = 2000
    for kwargs in ({}, {"dt": 1 / steps}):
        path = tree((2,), seed=6, **kwargs)
        grid = [k / steps for k in range(steps + 1)]
        forward = [path.increment(a, b) for a, b in itertools.pairwise(grid)]
        assert depth(path._root) <= math.log2(steps / 16) + 18
        path._cache.clear()
        for (a, b), w in zip(reversed(list(itertools.pairwise(grid))), reversed(forward)):
            assert torch.equal(path.increment(a, b), w)


def test_a_query_one_ulp_wide_far_from_zero_ends():
    """Midpoints that round onto a leaf's end are not used: the leaf is split at the query."""
    path = BrownianIntervalTree(1e6, 1e6 + 1, (3,), seed=11, dtype=F64)
    a = 1e6 + 0.5
    b = math.nextafter(a, 2e6)
    w = path.increment(a, b)
    assert torch.isfinite(w).all() and float(w.abs().max()) < 1e-3
    whole = path.increment(1e6, a) + w + path.increment(b, 1e6 + 1)
    torch.testing.assert_close(whole, path.increment(1e6, 1e6 + 1), rtol=0, atol=1e-12)


def test_dtype_follows_the_state_and_float32_matches_the_law():
    path = BrownianIntervalTree(0.0, 1.0, (20000,), seed=8)
    assert path.increment(0.0, 0.5).dtype == torch.float32
    path.adopt_dtype(F64)
    w = path.increment(0.0, 0.5)
    assert w.dtype == F64
    assert_law(w, 0.5, "after adopting float64")


# ------------------------------------------------------------------------------------------------
# driving a solve


def test_a_solve_of_dy_equal_dw_returns_the_path_forwards_and_backwards():
    """``dy = dW``: any solver returns the path's own increments, at every saved time, and a
    backwards solve over the same path reads the same increments with the opposite sign."""
    path = tree((3, 2), seed=9)
    term = torchnde.ControlTerm(lambda t, y, args: torch.ones_like(y), path, noise="diagonal")
    ts = torch.linspace(0, 1, 5, dtype=F64)
    y0 = torch.zeros(3, 2, dtype=F64)
    sol = torchnde.solve(
        term, torchnde.EulerMaruyama(), 0.0, 1.0, y0, dt0=1 / 64, saveat=torchnde.SaveAt(ts=ts)
    )
    for t, y in zip(ts, sol.ys):
        torch.testing.assert_close(y, path.increment(0.0, float(t)), rtol=0, atol=1e-12)
    back = torchnde.solve(term, torchnde.EulerMaruyama(), 1.0, 0.0, y0, dt0=-1 / 64)
    torch.testing.assert_close(back.ys[-1], -path.increment(0.0, 1.0), rtol=0, atol=1e-12)


def test_euler_maruyama_converges_strongly_on_geometric_brownian_motion():
    """GBM ``dy = μy dt + σy dW`` against its exact solution on the same path: the mean error
    falls about like dt^(1/2) (order 0.5, fitted over four step sizes)."""
    mu, sigma, n = 0.5, 0.8, 2000
    path = tree((n, 1), seed=10)
    terms = torchnde.MultiTerm(
        torchnde.ODETerm(lambda t, y, args: mu * y),
        torchnde.ControlTerm(lambda t, y, args: sigma * y, path, noise="diagonal"),
    )
    y0 = torch.ones(n, 1, dtype=F64)
    exact = torch.exp((mu - sigma**2 / 2) + sigma * path.increment(0.0, 1.0))
    dts = [2.0**-k for k in (4, 5, 6, 7)]
    errors = []
    for dt in dts:
        sol = torchnde.solve(terms, torchnde.EulerMaruyama(), 0.0, 1.0, y0, dt0=dt)
        errors.append(float((sol.ys[-1] - exact).abs().mean()))
    slope = stats.linregress([math.log(d) for d in dts], [math.log(e) for e in errors]).slope
    assert 0.35 < slope < 0.75, (slope, errors)


# ------------------------------------------------------------------------------------------------
# bad input


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="`dt`"):
        tree(dt=0.0)
    with pytest.raises(ValueError, match="`cache_size`"):
        tree(cache_size=0)
    with pytest.raises(ValueError, match="`w1`"):
        tree((3,), w1=torch.zeros(4))
    with pytest.raises(ValueError, match="`h1`"):
        tree((3,), w1=torch.zeros(3), h1=torch.zeros(3))
    with pytest.raises(ValueError, match="t0 < t1"):
        BrownianIntervalTree(1.0, 0.0, (3,))
    with pytest.raises(ValueError, match='levy_area="space-time"'):
        tree().levy_increment(0.0, 0.5)
