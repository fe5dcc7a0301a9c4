"""``torchnde.compat.torchcde`` against torchcde 0.2.5 itself.

Coefficients and interpolations must agree to rounding; ``cdeint`` on a fixed grid too; adaptive
solves choose their steps differently (see :mod:`torchnde.compat.torchdiffeq`), so they are
compared through their error against a tight reference.
"""

from __future__ import annotations

import pytest
import torch

from torchnde.compat import torchcde as nc

tc = pytest.importorskip("torchcde")

F64 = torch.float64
NAN = float("nan")

pytestmark = [
    pytest.mark.filterwarnings("ignore:odeint_adjoint:UserWarning"),
    pytest.mark.usefixtures("one_thread"),
]


def _data(batch=(2, 3), length=9, channels=4, seed=0, nan=True):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch, length, channels, generator=gen, dtype=F64).cumsum(-2) * 0.4
    t = (0.3 + 0.4 * torch.rand(length, generator=gen, dtype=F64)).cumsum(0)  # irregular
    if nan:
        x[..., 2, 0] = NAN  # inside
        x[..., :2, 1] = NAN  # at the start
        x[..., -3:, 3] = NAN  # at the end
        x[0, ..., 4:6, 2] = NAN  # two in a row, some samples only
    return x, t


COEFFS = [
    "linear_interpolation_coeffs",
    "natural_cubic_coeffs",
    "natural_cubic_spline_coeffs",
    "hermite_cubic_coefficients_with_backward_differences",
]


def _close(ours, theirs, rtol=1e-10, atol=1e-10):
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    torch.testing.assert_close(ours, theirs, rtol=rtol, atol=atol)


# ------------------------------------------------------------------------------------------------
# coefficients and interpolations


@pytest.mark.parametrize("name", COEFFS)
@pytest.mark.parametrize("given_t", [True, False])
def test_coefficients_equal_torchcde(name, given_t):
    x, t = _data()
    t = t if given_t else None
    _close(getattr(nc, name)(x, t), getattr(tc, name)(x, t))
    x1, _ = _data(batch=(), nan=False)  # no batch axis, no missing value
    _close(getattr(nc, name)(x1.float(), None), getattr(tc, name)(x1.float(), None), 1e-5, 1e-5)


def test_a_channel_without_observations_is_the_zero_path_as_in_torchcde():
    x, t = _data()
    x[1, 2, :, 0] = NAN
    for name in COEFFS:
        _close(getattr(nc, name)(x, t), getattr(tc, name)(x, t))


def test_rectilinear_coefficients_equal_torchcde():
    x, _ = _data(batch=(3,))
    x[..., 1] = torch.tensor([0.0, 0.5, 1.5, 1.7, 2.0, 3.0, 3.5, 3.5, 3.5], dtype=F64)
    _close(
        nc.linear_interpolation_coeffs(x, rectilinear=1),
        tc.linear_interpolation_coeffs(x, rectilinear=1),
    )
    x[..., 0, 2] = NAN  # a missing start: both warn that backward-filling is not causal
    with pytest.warns(UserWarning, match="not causal"):
        ours = nc.linear_interpolation_coeffs(x, rectilinear=1)
    with pytest.warns(UserWarning, match="not causal"):
        theirs = tc.linear_interpolation_coeffs(x, rectilinear=1)
    _close(ours, theirs)


@pytest.mark.parametrize("kind", ["linear", "natural", "hermite"])
def test_interpolations_evaluate_like_torchcde(kind):
    x, t = _data()
    if kind == "linear":
        make, coeffs = "LinearInterpolation", nc.linear_interpolation_coeffs(x, t)
    else:
        fn = "natural_cubic_coeffs" if kind == "natural" else COEFFS[-1]
        make, coeffs = "CubicSpline", getattr(nc, fn)(x, t)
    ours, theirs = getattr(nc, make)(coeffs, t), getattr(tc, make)(coeffs, t)
    _close(ours.grid_points, theirs.grid_points)
    _close(ours.interval, theirs.interval)
    inside = torch.linspace(float(t[0]), float(t[-1]), 41, dtype=F64)
    for q in (inside, t, t[3], inside[:40].reshape(8, 5)):  # 1-D, knots, 0-dim, 2-D
        _close(ours.evaluate(q), theirs.evaluate(q))
        _close(ours.derivative(q), theirs.derivative(q), rtol=1e-9, atol=1e-9)  # left at knots
    assert isinstance(ours, nc.InterpolationBase)


def test_default_times_and_float32_like_torchcde():
    x, _ = _data(nan=False)
    x = x.float()
    ours = nc.CubicSpline(nc.natural_cubic_coeffs(x))
    theirs = tc.CubicSpline(tc.natural_cubic_coeffs(x))
    q = torch.linspace(0, 8, 17)
    _close(ours.evaluate(q), theirs.evaluate(q), 1e-5, 1e-5)
    _close(ours.derivative(q), theirs.derivative(q), 1e-4, 1e-4)
    assert ours.evaluate(1.5).dtype == torch.float32  # Python times are cast, as in torchcde


@pytest.mark.parametrize("kind", ["linear", "natural", "hermite"])
def test_outside_the_data_the_end_pieces_continue_as_in_torchcde(kind):
    """Before the first and after the last knot the value and derivative are torchcde's: the end
    pieces continued (linear pieces linearly, cubic pieces as cubics)."""
    x, t = _data(nan=False)
    coeffs = {
        "linear": lambda lib: lib.linear_interpolation_coeffs(x, t),
        "natural": lambda lib: lib.natural_cubic_coeffs(x, t),
        "hermite": lambda lib: lib.hermite_cubic_coefficients_with_backward_differences(x, t),
    }[kind]
    cls = "LinearInterpolation" if kind == "linear" else "CubicSpline"
    ours, theirs = getattr(nc, cls)(coeffs(nc), t), getattr(tc, cls)(coeffs(tc), t)
    outside = torch.tensor([t[0] - 2.0, t[0] - 0.25, t[-1] + 0.5, t[-1] + 3.0], dtype=F64)
    for s in [*outside, outside]:
        _close(ours.evaluate(s), theirs.evaluate(s))
        _close(ours.derivative(s), theirs.derivative(s))


def test_two_points_make_a_line():
    """torchcde's natural cubic coefficients of two points: the line through them."""
    x = torch.tensor([[1.0, -2.0], [3.0, 0.5]], dtype=F64)
    t = torch.tensor([0.5, 2.5], dtype=F64)
    for name in ("natural_cubic_coeffs", "natural_cubic_spline_coeffs"):
        ours = getattr(nc, name)(x, t)
        _close(ours, getattr(tc, name)(x, t))
        spline = nc.CubicSpline(ours, t)
        for s in (0.0, 1.5, 4.0):
            _close(spline.evaluate(s), x[0] + (s - 0.5) * (x[1] - x[0]) / 2.0)


def test_misc_helpers_agree_with_torchcde():
    torch.manual_seed(0)
    for size in (1, 2, 5):
        diag = torch.randn(3, size, dtype=F64) + 4.0
        upper, lower = torch.randn(3, size - 1, dtype=F64), torch.randn(3, size - 1, dtype=F64)
        b = torch.randn(3, size, dtype=F64)
        x = nc.misc.tridiagonal_solve(b, upper, diag, lower)
        matrix = torch.diag_embed(diag) + torch.diag_embed(upper, 1) + torch.diag_embed(lower, -1)
        _close((matrix @ x[..., None])[..., 0], b)
    x = torch.randn(2, 6, 3)
    x[x < 0.1] = float("nan")
    for axis in (-2, -1, 0):
        ours, theirs = nc.misc.forward_fill(x, axis), tc.misc.forward_fill(x, axis)
        assert torch.equal(ours.nan_to_num(7.0), theirs.nan_to_num(7.0))
    xs = [torch.rand(2, 3) for _ in range(3)]
    assert torch.equal(nc.misc.cheap_stack(xs, 1), torch.stack(xs, 1))
    with pytest.raises(AssertionError):  # torchcde's exception type, and also a ValueError
        nc.linear_interpolation_coeffs(
            torch.tensor([[0.0, 1.0], [float("nan"), 2.0]]), rectilinear=0
        )


# ------------------------------------------------------------------------------------------------
# cdeint


class Func(torch.nn.Module):
    """``(..., hidden) -> (..., hidden, channels)``."""

    def __init__(self, hidden=3, channels=4, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.linear = torch.nn.Linear(hidden, hidden * channels).double()
        self.hidden, self.channels = hidden, channels

    def forward(self, t, z):
        return torch.tanh(self.linear(z)).view(*z.shape[:-1], self.hidden, self.channels)


def _controls(x, t):
    return {
        "linear": lambda lib: lib.LinearInterpolation(lib.linear_interpolation_coeffs(x, t), t),
        "natural": lambda lib: lib.CubicSpline(lib.natural_cubic_coeffs(x, t), t),
        "hermite": lambda lib: lib.CubicSpline(getattr(lib, COEFFS[-1])(x, t), t),
    }


@pytest.mark.parametrize("kind", ["linear", "natural", "hermite"])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(method="rk4", options=dict(step_size=0.25)),
        dict(method="euler", options=dict(step_size=0.1)),
        dict(method="midpoint", options=dict(step_size=0.2)),
    ],
    ids=["rk4", "euler", "midpoint"],
)
def test_fixed_grid_cdeint_equals_torchcde(kind, kwargs):
    x, t = _data()
    make = _controls(x, t)[kind]
    func = Func()
    z0 = torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    ours = nc.cdeint(make(nc), func, z0, t[::2], adjoint=False, **kwargs)
    theirs = tc.cdeint(make(tc), func, z0, t[::2], adjoint=False, **kwargs)
    assert ours.shape == (2, 3, 5, 3)
    _close(ours, theirs, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("kind", ["linear", "hermite"])
@pytest.mark.parametrize("tight", [False, True])
def test_adaptive_cdeint_as_accurate_as_torchcde(kind, tight):
    """The default (dopri5, rtol 1e-4, atol 1e-6), and rtol 1e-8 stopping at the knots."""
    x, t = _data(batch=(2,), length=6, nan=False)
    make = _controls(x, t)[kind]
    func = Func()
    z0 = torch.randn(2, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    kwargs = dict(rtol=1e-8, atol=1e-10, options=dict(jump_t=t)) if tight else {}
    ref = tc.cdeint(
        make(tc), func, z0, t, adjoint=False, rtol=1e-11, atol=1e-12, options=dict(jump_t=t)
    )
    ours = nc.cdeint(make(nc), func, z0, t, adjoint=False, **kwargs)
    theirs = tc.cdeint(make(tc), func, z0, t, adjoint=False, **kwargs)
    err_ours, err_theirs = (ours - ref).abs().max(), (theirs - ref).abs().max()
    rtol = 1e-8 if tight else 1e-4
    assert err_ours <= 5 * max(err_theirs, rtol), (err_ours, err_theirs)


def test_gradients_equal_torchcde():
    """Backpropagation through a fixed grid: equal to rounding. The adjoint: to its tolerance, and
    here the coefficients get their gradient without being named in ``adjoint_params``."""
    x, t = _data(batch=(2,), length=6, nan=False)
    func = Func()
    params = list(func.parameters())
    z0 = torch.randn(2, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    grads = {}
    for lib in (nc, tc):
        for adjoint in (False, True):
            coeffs = lib.hermite_cubic_coefficients_with_backward_differences(x, t)
            coeffs.requires_grad_(True)
            X = lib.CubicSpline(coeffs, t)
            if not adjoint:
                kw = dict(method="rk4", options=dict(step_size=0.1))
            elif lib is tc:
                kw = dict(rtol=1e-5, atol=1e-7, adjoint_params=(*params, coeffs))
            else:
                kw = dict(rtol=1e-5, atol=1e-7)
            z = lib.cdeint(X, func, z0, t[[0, 3]], adjoint=adjoint, **kw)
            grads[lib, adjoint] = torch.autograd.grad(z[..., -1, :].pow(2).sum(), [coeffs, *params])
    for a, b in zip(grads[nc, False], grads[tc, False]):
        _close(a, b, rtol=1e-10, atol=1e-10)
    for a, b in zip(grads[nc, True], grads[tc, True]):
        _close(a, b, rtol=5e-3, atol=5e-4)
    assert grads[nc, True][0].abs().max() > 0.1


class ProdFunc(Func):
    def prod(self, t, z, dxdt):
        return (self(t, z) @ dxdt.unsqueeze(-1)).squeeze(-1)


def test_tuple_states_and_func_prod_like_torchcde():
    x, t = _data(batch=(2,), nan=False)
    kwargs = dict(method="rk4", options=dict(step_size=0.5))
    z0 = torch.randn(2, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    prod = ProdFunc()
    outs = []
    for lib in (nc, tc):
        X = lib.CubicSpline(lib.natural_cubic_coeffs(x, t), t)
        single = lib.cdeint(X, prod, z0, t, adjoint=False, **kwargs)
        pair = lib.TupleControl(
            X, lib.LinearInterpolation(lib.linear_interpolation_coeffs(x, t), t)
        )
        func = Func()
        both = lib.cdeint(
            pair,
            lambda s, z, f=func: (f(s, z[0]), f(s, z[1])),
            (z0, -z0),
            t,
            adjoint=False,
            **kwargs,
        )
        outs.append((single, *both))
    for a, b in zip(*outs):
        _close(a, b, rtol=1e-11, atol=1e-11)


# ------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("adjoint", [False, True])
def test_torchsde_backend_is_torchcdes(adjoint):
    """backend='torchsde' solves the same equation with torchsde's zero-noise solvers, as
    torchcde does: the same numbers for a fixed-step method, the same discrete gradients, and
    under the adjoint (a different discretisation of the continuous adjoint in each library)
    gradients within 1e-2 of torchcde's (measured: 3.2e-3 at most; each is within 1e-2 of the
    discrete gradients at dt = 0.02)."""
    x, t = _data(batch=(2,), nan=False)
    results = []
    for lib in (nc, tc):
        func = Func()
        X = lib.CubicSpline(lib.natural_cubic_coeffs(x, t), t)
        z0 = torch.full((2, 3), 0.1, dtype=F64, requires_grad=True)
        out = lib.cdeint(
            X, func, z0, t, adjoint=adjoint, backend="torchsde", method="midpoint", dt=0.02
        )
        grads = torch.autograd.grad(out.square().sum(), (z0, *func.parameters()))
        results.append((out, grads))
    _close(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
    tol = 1e-2 if adjoint else 1e-10
    for ours, theirs in zip(results[0][1], results[1][1]):
        _close(ours, theirs, rtol=tol, atol=tol)


def test_what_is_not_supported_is_refused_with_the_alternative():
    x, t = _data(batch=(2,), nan=False)
    X = nc.CubicSpline(nc.natural_cubic_coeffs(x, t), t)
    z0 = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ValueError, match="Unrecognised backend"):
        nc.cdeint(X, Func(), z0, t, backend="jax")
    with pytest.raises(ValueError, match="method='rk4'"):
        nc.cdeint(X, Func(), z0, t, method="implicit_adams")
    with pytest.raises(NotImplementedError, match="signatory"):
        nc.logsig_windows(x, 2, 1.0)


def test_bad_shapes_and_data_are_named():
    x, t = _data(batch=(2,), nan=False)
    X = nc.CubicSpline(nc.natural_cubic_coeffs(x, t), t)
    with pytest.raises(ValueError, match="same number of hidden channels"):
        nc.cdeint(X, lambda s, z: torch.zeros(2, 5, 4, dtype=F64), torch.zeros(2, 3, dtype=F64), t)
    with pytest.raises(ValueError, match="same number of input channels"):
        nc.cdeint(X, Func(channels=2), torch.zeros(2, 3, dtype=F64), t)
    with pytest.raises(ValueError, match="batch dimensions"):
        nc.cdeint(X, Func(), torch.zeros(4, 3, dtype=F64), t)
    with pytest.raises(ValueError, match="'derivative' method"):
        nc.cdeint(object(), Func(), torch.zeros(2, 3, dtype=F64), t)
    with pytest.raises(ValueError, match="Passed invalid coeffs"):
        nc.CubicSpline(torch.zeros(8, 7, dtype=F64))
    with pytest.raises(ValueError, match="time dimension of X must equal the length of t"):
        nc.natural_cubic_coeffs(x, t[:-1])
    with pytest.raises(ValueError, match="strictly increasing"):
        nc.hermite_cubic_coefficients_with_backward_differences(x, t.flip(0))
    with pytest.raises(ValueError, match=r"`rectilinear` must be the index of the time channel"):
        nc.linear_interpolation_coeffs(x, rectilinear=4)
    x[0, 3, 1] = NAN
    with pytest.raises(ValueError, match="nan values in the time column"):
        nc.linear_interpolation_coeffs(x, rectilinear=1)
