"""Control paths through observations: they reproduce the data, have the smoothness they advertise,
impute missing values as documented, refuse bad input by name, and drive CDEs whose solutions and
gradients are right."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import CubicSpline as ScipyCubicSpline

import torchnde as tn
from torchnde.paths import AbstractInterpolation

F64 = torch.float64
NAN = float("nan")


def _data(length=8, channels=3, seed=0, dtype=F64):
    gen = torch.Generator().manual_seed(seed)
    gaps = 0.2 + torch.rand(length - 1, generator=gen, dtype=F64)  # irregular times
    ts = torch.cat([torch.zeros(1, dtype=F64), gaps.cumsum(0)]) - 0.3
    xs = torch.randn(length, channels, generator=gen, dtype=F64).to(dtype)
    return ts, xs


def _piecewise_cubic(ts, xs, batch_axis=None):
    """A PiecewiseCubic rebuilt from a natural spline's saved coefficients."""
    return tn.PiecewiseCubic(ts, tn.NaturalCubicSpline(ts, xs, batch_axis).coeffs, batch_axis)


KINDS = {
    "linear": tn.LinearInterpolation,
    "natural": tn.NaturalCubicSpline,
    "hermite": tn.HermiteCubicSpline,
    "pieces": _piecewise_cubic,
}
CUBICS = ["natural", "hermite", "pieces"]


def _between(ts, per_piece=7):
    """Times strictly inside every piece."""
    w = torch.linspace(0.05, 0.95, per_piece, dtype=ts.dtype)
    return (ts[:-1, None] + w * ts.diff()[:, None]).reshape(-1)


# ------------------------------------------------------------------------------------------------
# the data and the smoothness


@pytest.mark.parametrize("kind", list(KINDS))
def test_paths_reproduce_the_observations_at_their_times(kind):
    ts, xs = _data()
    path = KINDS[kind](ts, xs)
    assert isinstance(path, AbstractInterpolation) and path.shape == (3,) and not path.batched
    torch.testing.assert_close(path.evaluate(ts), xs, rtol=0, atol=1e-14)
    for i in range(len(ts)):  # one 0-dim query at a time, as a solve makes them
        torch.testing.assert_close(path.evaluate(ts[i]), xs[i], rtol=0, atol=1e-14)


@pytest.mark.parametrize("kind", list(KINDS))
def test_float32_data_with_float64_times(kind):
    ts, xs = _data(dtype=torch.float32)
    path = KINDS[kind](ts, xs)
    q = _between(ts)
    values = path.evaluate(q)
    assert values.dtype == torch.float32 and path.derivative(q).dtype == torch.float32
    ref = KINDS[kind](ts, xs.double()).evaluate(q)
    torch.testing.assert_close(values.double(), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_paths_are_constant_outside_the_observations(kind):
    ts, xs = _data()
    path = KINDS[kind](ts, xs)
    before = torch.tensor([-10.0, float(ts[0]) - 1e-9], dtype=F64)
    after = torch.tensor([float(ts[-1]) + 1e-9, 50.0], dtype=F64)
    torch.testing.assert_close(path.evaluate(before), xs[:1].expand(2, 3), rtol=0, atol=1e-8)
    torch.testing.assert_close(path.evaluate(after), xs[-1:].expand(2, 3), rtol=0, atol=1e-8)
    assert (path.derivative(torch.cat([before, after])) == 0).all()
    # at the end knots the derivative is the inside piece's
    inside = path.derivative(ts[[0, -1]])
    assert (inside != 0).all()


@pytest.mark.parametrize("kind", list(KINDS))
def test_derivative_matches_finite_differences_of_the_values(kind):
    ts, xs = _data()
    path = KINDS[kind](ts, xs)
    q = _between(ts)
    h = 1e-6
    fd = (path.evaluate(q + h) - path.evaluate(q - h)) / (2 * h)
    torch.testing.assert_close(path.derivative(q), fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", [*KINDS, "rectilinear"])
def test_increment_is_the_difference_of_values(kind):
    ts, xs = _data()
    path = tn.RectilinearInterpolation(ts, xs) if kind == "rectilinear" else KINDS[kind](ts, xs)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        a, b = (torch.rand(2, generator=gen, dtype=F64) * 4 - 1).unbind()
        torch.testing.assert_close(
            path.increment(a, b), path.evaluate(b) - path.evaluate(a), rtol=0, atol=1e-14
        )
        torch.testing.assert_close(path.increment(b, a), -path.increment(a, b))


@pytest.mark.parametrize("kind", CUBICS)
def test_cubic_paths_are_continuously_differentiable_at_the_knots(kind):
    ts, xs = _data()
    path = KINDS[kind](ts, xs)
    inner = ts[1:-1]
    left, right = path.derivative(inner, left=True), path.derivative(inner)
    torch.testing.assert_close(left, right, rtol=1e-10, atol=1e-10)
    eps = 1e-11
    jump = path.evaluate(inner + eps) - path.evaluate(inner - eps)
    assert jump.abs().max() < 1e-9


def test_linear_path_has_one_sided_derivatives_at_the_knots():
    ts, xs = _data()
    path = tn.LinearInterpolation(ts, xs)
    chords = xs.diff(dim=0) / ts.diff()[:, None]
    torch.testing.assert_close(path.derivative(ts[1:-1]), chords[1:])
    torch.testing.assert_close(path.derivative(ts[1:-1], left=True), chords[:-1])
    torch.testing.assert_close(path.derivative(_between(ts, 3)), chords.repeat_interleave(3, 0))


def _second_derivative_at_knots(path, ts):
    """X'' at the start (2c) and end (2c + 6dh) of every piece, from the coefficients."""
    c, d = path.coeffs[:, 2], path.coeffs[:, 3]
    h = ts.diff()[:, None]
    return 2 * c, 2 * c + 6 * d * h


def test_natural_spline_is_twice_differentiable_with_zero_curvature_at_the_ends():
    ts, xs = _data(length=10)
    path = tn.NaturalCubicSpline(ts, xs)
    start, end = _second_derivative_at_knots(path, ts)
    torch.testing.assert_close(end[:-1], start[1:], rtol=1e-10, atol=1e-10)  # C2 inside
    torch.testing.assert_close(start[0], torch.zeros(3, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(end[-1], torch.zeros(3, dtype=F64), rtol=0, atol=1e-11)
    assert start.abs().max() > 0.5  # the test can fail: the curvature is not zero everywhere


def test_natural_spline_matches_scipy():
    ts, xs = _data(length=12)
    q = torch.linspace(float(ts[0]), float(ts[-1]), 101, dtype=F64)
    ref = ScipyCubicSpline(ts.numpy(), xs.numpy(), bc_type="natural")
    path = tn.NaturalCubicSpline(ts, xs)
    np.testing.assert_allclose(path.evaluate(q).numpy(), ref(q.numpy()), rtol=0, atol=1e-13)
    np.testing.assert_allclose(path.derivative(q).numpy(), ref(q.numpy(), 1), rtol=0, atol=1e-12)


def test_natural_spline_is_exact_on_natural_spline_data():
    """A natural cubic spline sampled at its knots and at points between them is the natural
    spline through those samples (it is cubic on the finer pieces, C2 and natural)."""
    ts, xs = _data(length=6)
    coarse = ScipyCubicSpline(ts.numpy(), xs.numpy(), bc_type="natural")
    fine = torch.sort(torch.cat([ts, _between(ts, 2)]))[0]
    path = tn.NaturalCubicSpline(fine, torch.from_numpy(coarse(fine.numpy())))
    q = _between(fine, 5)
    np.testing.assert_allclose(path.evaluate(q).numpy(), coarse(q.numpy()), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", list(KINDS))
def test_paths_are_exact_on_linear_data(kind):
    ts, _ = _data()
    slope = torch.tensor([1.5, -2.0, 0.25], dtype=F64)
    line = lambda t: 0.3 + t[..., None] * slope  # noqa: E731
    path = KINDS[kind](ts, line(ts))
    q = _between(ts)
    torch.testing.assert_close(path.evaluate(q), line(q), rtol=0, atol=1e-13)
    torch.testing.assert_close(path.derivative(q), slope.expand(len(q), 3), rtol=0, atol=1e-12)


def test_piecewise_cubic_is_exact_on_a_cubic():
    ts = torch.tensor([0.0, 0.4, 1.0, 1.7], dtype=F64)
    p = lambda t: 1 - 2 * t + 0.5 * t**2 + 0.75 * t**3  # noqa: E731
    dp = lambda t: -2 + t + 2.25 * t**2  # noqa: E731
    t0 = ts[:-1]
    coeffs = torch.stack([p(t0), dp(t0), 0.5 + 2.25 * t0, torch.full_like(t0, 0.75)], dim=1)
    path = tn.PiecewiseCubic(ts, coeffs[:, :, None])
    q = _between(ts)
    torch.testing.assert_close(path.evaluate(q)[:, 0], p(q), rtol=0, atol=1e-14)
    torch.testing.assert_close(path.xs[:, 0], p(ts), rtol=0, atol=1e-14)


def test_hermite_slopes_at_the_knots_are_backward_differences():
    ts, xs = _data()
    path = tn.HermiteCubicSpline(ts, xs)
    chords = xs.diff(dim=0) / ts.diff()[:, None]
    torch.testing.assert_close(path.derivative(ts[1:]), chords, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(path.derivative(ts[0]), chords[0])


def test_hermite_spline_is_causal_and_the_natural_spline_is_not():
    """Changing the observations after t_k leaves the Hermite path on [t_0, t_k] unchanged."""
    ts, xs = _data(length=10)
    k = 5
    later = xs.clone()
    later[k + 1 :] += 3.0
    q = torch.linspace(float(ts[0]), float(ts[k]), 200, dtype=F64)
    for cls, causal in ((tn.HermiteCubicSpline, True), (tn.NaturalCubicSpline, False)):
        a, b = cls(ts, xs), cls(ts, later)
        same = torch.equal(a.evaluate(q), b.evaluate(q)) and torch.equal(
            a.derivative(q), b.derivative(q)
        )
        assert same is causal, cls.__name__
    # and the piece ending at t_{k+1} does see x_{k+1}
    q_next = torch.linspace(float(ts[k]) + 1e-3, float(ts[k + 1]), 5, dtype=F64)
    h_a, h_b = tn.HermiteCubicSpline(ts, xs), tn.HermiteCubicSpline(ts, later)
    assert not torch.allclose(h_a.evaluate(q_next), h_b.evaluate(q_next))


def test_rectilinear_moves_time_then_channels():
    ts, xs = _data(length=5, channels=2)
    path = tn.RectilinearInterpolation(ts, xs)
    assert path.shape == (3,)
    torch.testing.assert_close(path.knots, torch.arange(9, dtype=F64) / 2)
    i = torch.arange(5, dtype=F64)
    torch.testing.assert_close(path.evaluate(i), torch.cat([ts[:, None], xs], dim=1))
    half = path.evaluate(i[:-1] + 0.5)  # time has moved on, the channels have not
    torch.testing.assert_close(half, torch.cat([ts[1:, None], xs[:-1]], dim=1))
    quarter = path.derivative(i[:-1] + 0.25)  # time channel moving alone at speed 2 Δt
    torch.testing.assert_close(quarter[:, 0], 2 * ts.diff())
    assert (quarter[:, 1:] == 0).all()
    three_q = path.derivative(i[:-1] + 0.75)
    assert (three_q[:, 0] == 0).all()
    torch.testing.assert_close(three_q[:, 1:], 2 * xs.diff(dim=0))


# ------------------------------------------------------------------------------------------------
# missing values


def test_linear_interpolation_imputes_missing_values_per_channel():
    ts = torch.tensor([0.0, 1.0, 3.0, 4.0, 6.0], dtype=F64)
    xs = torch.tensor([[NAN, 1.0], [2.0, NAN], [NAN, NAN], [5.0, 4.0], [NAN, 0.0]], dtype=F64)
    path = tn.LinearInterpolation(ts, xs)
    expected = torch.tensor(
        # channel 0: nearest at the ends, linear in time between 2 (t=1) and 5 (t=4)
        # channel 1: linear in time between 1 (t=0) and 4 (t=4)
        [[2.0, 1.0], [2.0, 1.75], [4.0, 3.25], [5.0, 4.0], [5.0, 0.0]],
        dtype=F64,
    )
    torch.testing.assert_close(path.xs, expected)
    torch.testing.assert_close(path.evaluate(ts), expected)
    herm = tn.HermiteCubicSpline(ts, xs)  # Hermite builds on the same imputed values
    torch.testing.assert_close(herm.xs, expected)
    torch.testing.assert_close(
        herm.evaluate(_between(ts)), tn.HermiteCubicSpline(ts, expected).evaluate(_between(ts))
    )


def test_natural_spline_skips_missing_values_of_each_channel():
    ts, xs = _data(length=9, channels=2)
    xs[[0, 3, 4], 0] = NAN  # channel 0: a missing start (filled as a knot) and two inside
    xs[-2:, 1] = NAN  # channel 1: a missing end
    path = tn.NaturalCubicSpline(ts, xs)
    q = torch.linspace(float(ts[0]), float(ts[-1]), 77, dtype=F64)
    for c in range(2):
        x = xs[:, c].clone()
        observed = ~torch.isnan(x)
        first, last = observed.nonzero()[0, 0], observed.nonzero()[-1, 0]
        x[:first], x[last + 1 :] = x[first], x[last]  # the ends take the nearest observation
        keep = ~torch.isnan(x)
        ref = ScipyCubicSpline(ts[keep].numpy(), x[keep].numpy(), bc_type="natural")
        np.testing.assert_allclose(path.evaluate(q)[:, c].numpy(), ref(q.numpy()), atol=1e-12)
        np.testing.assert_allclose(path.xs[:, c].numpy(), ref(ts.numpy()), atol=1e-12)


def test_rectilinear_forward_fills_missing_values():
    ts = torch.tensor([0.0, 1.0, 2.5, 3.0], dtype=F64)
    xs = torch.tensor([[NAN, 1.0], [2.0, NAN], [NAN, NAN], [5.0, 4.0]], dtype=F64)
    path = tn.RectilinearInterpolation(ts, xs)
    expected = torch.tensor([[2.0, 1.0], [2.0, 1.0], [2.0, 1.0], [5.0, 4.0]], dtype=F64)
    torch.testing.assert_close(path.xs, expected)


@pytest.mark.parametrize("kind", ["linear", "natural", "hermite", "rectilinear"])
def test_a_channel_without_observations_is_named(kind):
    cls = tn.RectilinearInterpolation if kind == "rectilinear" else KINDS[kind]
    ts, xs = _data(channels=3)
    xs[:, 2] = NAN
    with pytest.raises(ValueError, match=r"channel 2 of `xs` has no observation.*xs\[:, 2\] = 0"):
        cls(ts, xs)
    xb = torch.randn(4, 8, 3, dtype=F64)
    xb[1, :, 0] = NAN
    with pytest.raises(ValueError, match=r"channel 0 of sample 1 of `xs`"):
        cls(ts, xb, batch_axis=0)
    if kind != "rectilinear":  # several channel axes: the channel is named by its index tuple
        x2 = torch.randn(8, 2, 3, dtype=F64)
        x2[:, 1, 2] = NAN
        with pytest.raises(ValueError, match=r"channel \[1, 2\]"):
            cls(ts, x2)


@pytest.mark.parametrize("kind", ["linear", "natural", "hermite", "rectilinear"])
def test_bad_times_are_refused_by_name(kind):
    cls = tn.RectilinearInterpolation if kind == "rectilinear" else KINDS[kind]
    ts, xs = _data()
    bad = ts.clone()
    bad[3] = NAN
    with pytest.raises(ValueError, match=r"`ts` has a non-finite time ts\[3\]"):
        cls(bad, xs)
    bad = ts.clone()
    bad[4] = bad[2]
    with pytest.raises(ValueError, match=r"`ts` must be .*ts\[4\].*follows ts\[3\].*sort"):
        cls(bad, xs)
    tb = ts.expand(2, -1).clone()
    tb[1, 5] = tb[1, 4] - 1
    with pytest.raises(ValueError, match=r"ts\[1, 5\]"):
        cls(tb, xs.expand(2, -1, -1))


def test_rectilinear_accepts_repeated_times_and_other_bad_input_is_refused():
    ts, xs = _data(length=5, channels=2)
    padded = torch.cat([ts[:3], ts[2:3], ts[2:3]])  # padding: the last time repeated
    path = tn.RectilinearInterpolation(padded, xs)
    assert path.evaluate(torch.tensor(4.0, dtype=F64))[0] == ts[2]
    with pytest.raises(ValueError, match="exactly one channel axis"):
        tn.RectilinearInterpolation(ts, torch.randn(5, 2, 2, dtype=F64))
    with pytest.raises(ValueError, match=r"infinite value at xs\[1, 0\]"):
        tn.LinearInterpolation(ts, torch.tensor([[0.0, 1], [np.inf, 1], [0, 1], [0, 1], [0, 1]]))
    with pytest.raises(ValueError, match="axis 1 holds the four coefficients"):
        tn.PiecewiseCubic(ts, torch.randn(4, 3, 2, dtype=F64))
    with pytest.raises(ValueError, match="at least two observation times"):
        tn.NaturalCubicSpline(ts[:1], xs[:1])
    with pytest.raises(TypeError, match="`xs` must be real floating point"):
        tn.HermiteCubicSpline(ts, torch.ones(5, 2, dtype=torch.int64))


# ------------------------------------------------------------------------------------------------
# batches


@pytest.mark.parametrize("kind", [*KINDS, "rectilinear"])
def test_a_batched_path_is_each_sample_alone(kind):
    """Per-sample times and data (and NaNs): the batched path queried at per-sample times equals
    each sample's own path."""
    cls = tn.RectilinearInterpolation if kind == "rectilinear" else KINDS[kind]
    gen = torch.Generator().manual_seed(5)
    ts = torch.sort(torch.rand(4, 7, generator=gen, dtype=F64) * 3, dim=1)[0]
    xs = torch.randn(4, 7, 2, generator=gen, dtype=F64)
    if kind != "pieces":
        xs[1, 2, 0] = xs[3, 0, 1] = NAN
    path = cls(ts, xs, batch_axis=0)
    assert path.batched and path.shape == ((3,) if kind == "rectilinear" else (2,))
    q = torch.rand(4, generator=gen, dtype=F64) * 3
    one = cls(ts[2], xs[2])
    for b in range(4):
        alone = cls(ts[b], xs[b])
        torch.testing.assert_close(path.evaluate(q)[b], alone.evaluate(q[b]), rtol=0, atol=1e-14)
        torch.testing.assert_close(path.derivative(q)[b], alone.derivative(q[b]), rtol=0, atol=0)
    # shared times given once
    shared = cls(ts[2], xs, batch_axis=0)
    torch.testing.assert_close(shared.evaluate(q)[2], one.evaluate(q[2]), rtol=0, atol=1e-14)
    assert shared.evaluate(q[0]).shape == (4, *path.shape)  # a 0-dim time for every sample


# ------------------------------------------------------------------------------------------------
# CDEs driven by these paths


def _tanh_field(hidden=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(hidden, hidden, generator=gen, dtype=F64) * 0.8
    return lambda t, z, args: torch.tanh(z @ w.T + torch.sin(3 * t))


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("form", ["increments", "to_ode"])
def test_a_cde_driven_by_time_is_the_ode(kind, form):
    """dz = g(z) dX with X(t) = t (time as the only channel) is dz/dt = g(z)."""
    ts = torch.tensor([0.0, 0.3, 0.45, 1.1, 1.6, 2.0], dtype=F64)
    path = KINDS[kind](ts, ts[:, None])
    f = _tanh_field()
    term = tn.ControlTerm(lambda t, z, a: f(t, z, a)[:, None], path)
    term = term.to_ode() if form == "to_ode" else term
    kwargs = dict(
        controller=tn.PIDController(rtol=1e-10, atol=1e-12),
        saveat=tn.SaveAt(ts=torch.linspace(0, 2, 5, dtype=F64)),
    )
    z0 = torch.tensor([0.5, -1.0], dtype=F64)
    cde = tn.solve(term, tn.Dopri5(), 0.0, 2.0, z0, **kwargs)
    ode = tn.solve(tn.ODETerm(f), tn.Dopri5(), 0.0, 2.0, z0, **kwargs)
    torch.testing.assert_close(cde.ys, ode.ys, rtol=0, atol=1e-9)
    assert (ode.ys[-1] - z0).abs().max() > 0.1


def test_a_rectilinear_cde_sees_time_through_channel_0():
    """With g zero on the data channels, the rectilinear CDE at s = i is the ODE at t_i."""
    ts, xs = _data(length=6, channels=2)
    path = tn.RectilinearInterpolation(ts, xs)
    f = _tanh_field()

    def g(t, z, a):
        out = torch.zeros(2, 3, dtype=F64)
        out[:, 0] = f(ts[0], z, a)  # an autonomous field (time enters as a channel)
        return out

    z0 = torch.tensor([0.5, -1.0], dtype=F64)
    cde = tn.solve(
        tn.ControlTerm(g, path),
        tn.Dopri5(),
        0.0,
        5.0,
        z0,
        controller=tn.PIDController(rtol=1e-10, atol=1e-12, jump_ts=path.knots),
        saveat=tn.SaveAt(ts=path.observation_knots),
    )
    ode = tn.solve(
        tn.ODETerm(lambda t, z, a: f(ts[0], z, a)),
        tn.Dopri5(),
        ts[0],
        ts[-1],
        z0,
        controller=tn.PIDController(rtol=1e-10, atol=1e-12),
        saveat=tn.SaveAt(ts=ts),
    )
    torch.testing.assert_close(cde.ys, ode.ys, rtol=0, atol=1e-8)


def _cde_loss(kind, adjoint=None, adaptive=False):
    """Loss of a small neural CDE as a function of (data, field weight): RK4 on 6 steps, or
    Dopri5 at tight tolerances stopping at the knots."""
    ts = torch.tensor([0.0, 0.4, 0.7, 1.3, 1.5, 2.0], dtype=F64)
    if adaptive:
        solver, controller = tn.Dopri5(), tn.PIDController(rtol=1e-9, atol=1e-10, jump_ts=ts)
    else:
        solver, controller = tn.RK4(), tn.StepTo(torch.linspace(0, 2, 7, dtype=F64))

    def loss(xs, weight):
        path = KINDS[kind](ts, xs)

        def g(t, z, a):  # (hidden, channels)
            return torch.tanh(torch.einsum("hkc,k->hc", weight, z) + 0.1 * t)

        sol = tn.solve(
            tn.ControlTerm(g, path).to_ode(),
            solver,
            0.0,
            2.0,
            torch.tensor([0.3, -0.2, 0.5], dtype=F64),
            controller=controller,
            adjoint=adjoint or tn.DirectAdjoint(),
        )
        return sol.ys[-1]

    return ts, loss


@pytest.mark.parametrize("kind", ["linear", "natural", "hermite"])
def test_cde_gradients_match_finite_differences(kind):
    """gradcheck of the solution w.r.t. the observations (with a missing value) and the field."""
    gen = torch.Generator().manual_seed(2)
    _, loss = _cde_loss(kind)
    xs = torch.randn(6, 2, generator=gen, dtype=F64)
    xs[2, 1] = NAN  # imputed: its gradient is zero, the others flow through the imputation
    weight = torch.randn(3, 3, 2, generator=gen, dtype=F64) * 0.5
    xs.requires_grad_(True)
    weight.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, w: loss(torch.where(torch.isnan(xs), NAN, x), w),
        (torch.nan_to_num(xs.detach()).requires_grad_(True), weight),
        atol=1e-7,
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "adjoint",
    [tn.CheckpointAdjoint(checkpoints=2), tn.BacksolveAdjoint(rtol=1e-9, atol=1e-10)],
    ids=["checkpoint", "backsolve"],
)
def test_adjoints_that_recompute_the_field_reach_the_spline_data(adjoint):
    """Checkpointing and backsolve differentiate the field piece by piece, walking back through
    the spline's construction many times; the data gradient still equals direct backprop."""
    gen = torch.Generator().manual_seed(4)
    xs = torch.randn(6, 2, generator=gen, dtype=F64, requires_grad=True)
    weight = torch.randn(3, 3, 2, generator=gen, dtype=F64) * 0.5
    weight.requires_grad_(True)
    _, loss = _cde_loss("natural", adaptive=True)
    direct = torch.autograd.grad(loss(xs, weight).sum(), (xs, weight))
    _, other_loss = _cde_loss("natural", adjoint=adjoint, adaptive=True)
    other = torch.autograd.grad(other_loss(xs, weight).sum(), (xs, weight))
    tol = 1e-12 if isinstance(adjoint, tn.CheckpointAdjoint) else 1e-6
    for a, b in zip(other, direct):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_a_batched_cde_is_each_sample_alone():
    """batch_axis=0 with per-sample observation times: each sample's solution is its own."""
    gen = torch.Generator().manual_seed(6)
    ts = torch.sort(torch.rand(3, 6, generator=gen, dtype=F64) * 2, dim=1)[0]
    ts[:, 0], ts[:, -1] = 0.0, 2.0
    xs = torch.randn(3, 6, 2, generator=gen, dtype=F64)
    weight = torch.randn(3, 3, 2, generator=gen, dtype=F64) * 0.5

    def g(t, z, a):
        return torch.tanh(torch.einsum("hkc,...k->...hc", weight, z))

    z0 = torch.tensor([[0.3, -0.2, 0.5]], dtype=F64).expand(3, 3)
    kw = dict(controller=tn.StepTo(torch.linspace(0, 2, 41, dtype=F64)))
    path = tn.HermiteCubicSpline(ts, xs, batch_axis=0)
    sol = tn.solve(tn.ControlTerm(g, path).to_ode(), tn.RK4(), 0.0, 2.0, z0, batch_axis=0, **kw)
    for b in range(3):
        alone = tn.HermiteCubicSpline(ts[b], xs[b])
        one = tn.solve(tn.ControlTerm(g, alone).to_ode(), tn.RK4(), 0.0, 2.0, z0[b], **kw)
        torch.testing.assert_close(sol.ys[b], one.ys, rtol=0, atol=1e-14)
    assert (sol.ys[0] - sol.ys[1]).abs().max() > 0.01


def test_double_backward_through_the_path_data():
    """A gradient penalty on the data gradient (create_graph=True) differentiates correctly with
    respect to the field weights (central finite differences)."""
    ts = torch.linspace(0, 2, 6, dtype=F64)
    gen = torch.Generator().manual_seed(8)
    xs0 = torch.randn(6, 2, generator=gen, dtype=F64)
    w0 = torch.randn(3, 3, 2, generator=gen, dtype=F64) * 0.5

    def penalty(w, create):
        xs = xs0.clone().requires_grad_(True)
        path = tn.NaturalCubicSpline(ts, xs)
        g = lambda t, z, a: torch.tanh(torch.einsum("hkc,k->hc", w, z))  # noqa: E731
        term = tn.ControlTerm(g, path).to_ode()
        sol = tn.solve(term, tn.RK4(), 0.0, 2.0, torch.ones(3, dtype=F64), dt0=0.25)
        (gx,) = torch.autograd.grad(sol.ys.sum(), xs, create_graph=create)
        return (gx**2).sum()

    w = w0.clone().requires_grad_(True)
    (gw,) = torch.autograd.grad(penalty(w, True), w)
    eps, i = 1e-6, (0, 1, 1)
    plus, minus = w0.clone(), w0.clone()
    plus[i] += eps
    minus[i] -= eps
    fd = (penalty(plus, False) - penalty(minus, False)) / (2 * eps)
    torch.testing.assert_close(gw[i], fd, rtol=1e-6, atol=1e-8)
    assert gw.abs().max() > 0.1
