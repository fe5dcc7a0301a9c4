"""``torchnde.compat.torchdiffeq`` against torchdiffeq 0.2.5 itself.

Adaptive methods choose their steps differently (see the module's docstring), so their values are
compared through the error against a tight reference; fixed-grid methods on the same grid must
agree to rounding.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import torchnde
from torchnde.compat import torchdiffeq as nde

td = pytest.importorskip("torchdiffeq")
_misc = pytest.importorskip("torchdiffeq._impl.misc")

F64 = torch.float64


def pendulum(t, y):
    """A damped, driven pendulum: nonlinear and time-dependent."""
    return torch.stack([y[1], -torch.sin(y[0]) - 0.1 * y[1] + 0.5 * torch.cos(t)])


Y0 = torch.tensor([1.0, 0.0], dtype=F64)
T = torch.linspace(0.0, 3.0, 7, dtype=F64)


# small tensors: one intra-op thread is fastest (conftest.one_thread restores it after)
pytestmark = pytest.mark.usefixtures("one_thread")


def reference(t=T, y0=Y0, func=pendulum):
    return td.odeint(func, y0, t, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------------------------
# methods


ADAPTIVE = {"dopri5": 1e-8, "bosh3": 1e-6, "fehlberg2": 1e-4, "adaptive_heun": 1e-4}


@pytest.mark.parametrize("method", list(ADAPTIVE))
@pytest.mark.parametrize("reverse", [False, True])
def test_adaptive_methods_as_accurate_as_torchdiffeq(method, reverse):
    rtol = ADAPTIVE[method]
    t = T.flip(0) if reverse else T
    kw = {"rtol": rtol, "atol": rtol * 1e-2, "method": method}
    ours = nde.odeint(pendulum, Y0, t, **kw)
    theirs = td.odeint(pendulum, Y0, t, **kw)
    ref = reference(t)
    assert ours.shape == (len(t), 2) and ours.dtype == F64
    assert torch.equal(ours[0], Y0)
    err_ours = (ours - ref).abs().max().item()
    err_theirs = (theirs - ref).abs().max().item()
    # same tolerance, same accuracy (global errors of a few hundred rtol at most)
    assert err_ours <= 5 * max(err_theirs, rtol), (err_ours, err_theirs)
    assert err_ours <= 500 * rtol


def test_dopri8_agrees_or_names_dopri5():
    if not hasattr(torchnde, "Dopri8"):
        with pytest.raises(ValueError, match="dopri5"):
            nde.odeint(pendulum, Y0, T, method="dopri8")
        return
    ours = nde.odeint(pendulum, Y0, T, method="dopri8", rtol=1e-10, atol=1e-12)
    theirs = td.odeint(pendulum, Y0, T, method="dopri8", rtol=1e-10, atol=1e-12)
    ref = td.odeint(pendulum, Y0, T, rtol=1e-13, atol=1e-15)
    assert (ours - ref).abs().max().item() < 1e-9
    # torchdiffeq's values between its long eighth-order steps come from a quartic: about 1e-7
    assert (ours - theirs).abs().max().item() < 1e-5


@pytest.mark.parametrize(
    ("method", "stages"), [("dopri5", 7), ("bosh3", 4), ("fehlberg2", 3), ("adaptive_heun", 2)]
)
def test_adaptive_methods_evaluate_at_torchdiffeqs_stage_times(method, stages):
    """With the same first step, the first step's stages sit at the same times ``t0 + c_i h``:
    the method names map to the same Butcher tableaux."""
    stage_times = []
    for odeint in (nde.odeint, td.odeint):
        times = []

        def f(t, y, times=times):
            times.append(float(t))
            return -y

        t = torch.tensor([0.0, 0.5], dtype=F64)
        odeint(f, Y0, t, method=method, rtol=1e-3, atol=1e-3, options={"first_step": 0.25})
        stage_times.append(times[1:stages])  # after f(t0, y0)
    assert stage_times[0] == pytest.approx(stage_times[1], rel=1e-12)


FIXED = ["euler", "midpoint", "heun2", "heun3", "rk4"]


@pytest.mark.parametrize("method", FIXED)
@pytest.mark.parametrize("reverse", [False, True])
def test_fixed_grid_methods_match_torchdiffeq_to_rounding(method, reverse):
    t = torch.linspace(0.0, 3.0, 31, dtype=F64)
    t = t.flip(0) if reverse else t
    ours = nde.odeint(pendulum, Y0, t, method=method)
    theirs = td.odeint(pendulum, Y0, t, method=method)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_rk4_is_kuttas_three_eighths_rule():
    def f(t, y):
        return t * y + y**2

    y0 = torch.tensor([0.3], dtype=F64)
    h = 0.5
    k1 = f(0.0, y0)
    k2 = f(h / 3, y0 + h * k1 / 3)
    k3 = f(2 * h / 3, y0 + h * (k2 - k1 / 3))
    k4 = f(h, y0 + h * (k1 - k2 + k3))
    three_eighths = y0 + h * (k1 + 3 * k2 + 3 * k3 + k4) / 8
    c2 = f(h / 2, y0 + h * k1 / 2)
    c3 = f(h / 2, y0 + h * c2 / 2)
    classic = y0 + h * (k1 + 2 * c2 + 2 * c3 + f(h, y0 + h * c3)) / 6
    out = nde.odeint(f, y0, torch.tensor([0.0, h], dtype=F64), method="rk4")[-1]
    torch.testing.assert_close(out, three_eighths, rtol=1e-15, atol=1e-15)
    assert (out - classic).abs().item() > 1e-6


@pytest.mark.parametrize("interp", ["linear", "cubic"])
@pytest.mark.parametrize("reverse", [False, True])
def test_step_size_grid_and_interpolation_match_torchdiffeq(interp, reverse):
    t = torch.tensor([0.0, 0.33, 1.0, 1.7, 2.05], dtype=F64)  # mostly off the 0.07 grid
    t = 2.05 - t if reverse else t
    options = {"step_size": 0.07, "interp": interp}
    for method in ("euler", "rk4"):
        ours = nde.odeint(pendulum, Y0, t, method=method, options=options)
        theirs = td.odeint(pendulum, Y0, t, method=method, options=options)
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    # the two interpolations differ between grid points, so the option is honoured
    lin = nde.odeint(pendulum, Y0, t, method="rk4", options={"step_size": 0.07})
    cub = nde.odeint(pendulum, Y0, t, method="rk4", options={"step_size": 0.07, "interp": "cubic"})
    assert (lin - cub).abs().max().item() > 1e-5


def test_grid_constructor_matches_torchdiffeq():
    def grid(func, y0, t):
        return t[0] + (t[-1] - t[0]) * torch.linspace(0, 1, 41, dtype=t.dtype) ** 2

    options = {"grid_constructor": grid}
    ours = nde.odeint(pendulum, Y0, T, method="midpoint", options=options)
    theirs = td.odeint(pendulum, Y0, T, method="midpoint", options=options)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="grid_constructor"):
        nde.odeint(
            pendulum, Y0, T, method="euler", options={"grid_constructor": lambda f, y, t: t[1:]}
        )


# ------------------------------------------------------------------------------------------------
# states, dtypes, shapes


def test_tuple_state_shapes_values_and_default_norm():
    def f(t, y):
        x, v = y
        return [v.sum() * torch.ones(()), -x * v]  # a list is accepted, as by torchdiffeq

    y0 = (torch.tensor(1.0, dtype=F64), torch.tensor([0.5, -0.2, 0.1], dtype=F64))
    ours = nde.odeint(f, y0, T, rtol=1e-9, atol=1e-11)
    theirs = td.odeint(f, y0, T, rtol=1e-9, atol=1e-11)
    assert isinstance(ours, tuple) and [o.shape for o in ours] == [(7,), (7, 3)]
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-8)
    # the default error norm of a tuple state is torchdiffeq's: the largest RMS of its tensors
    explicit = nde.odeint(f, y0, T, rtol=1e-5, atol=1e-7, options={"norm": _misc._mixed_norm})
    default = nde.odeint(f, y0, T, rtol=1e-5, atol=1e-7)
    flat = {"norm": lambda y: torch.cat([x.reshape(-1) for x in y]).pow(2).mean().sqrt()}
    rms = nde.odeint(f, y0, T, rtol=1e-5, atol=1e-7, options=flat)
    assert all(torch.equal(a, b) for a, b in zip(explicit, default))
    assert any(not torch.equal(a, b) for a, b in zip(rms, default))


def test_user_norm_receives_the_state_shape():
    seen = []

    def linf(x):
        seen.append(tuple(x.shape))
        return x.abs().max()

    y0 = torch.tensor([[1.0, 0.5], [0.2, -0.3]], dtype=F64)
    ours = nde.odeint(lambda t, y: -y, y0, T, options={"norm": linf})
    theirs = td.odeint(lambda t, y: -y, y0, T, options={"norm": linf})
    assert set(seen) == {(2, 2)}
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("t_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_float32_state(t_dtype, method):
    seen = set()

    def f(t, y):
        seen.add(t.dtype)
        return pendulum(t, y)

    y0, t = Y0.float(), T.to(t_dtype)
    ours = nde.odeint(f, y0, t, method=method, rtol=1e-5, atol=1e-6)
    theirs = td.odeint(pendulum, y0, t, method=method, rtol=1e-5, atol=1e-6)
    assert ours.dtype == torch.float32 and seen == {torch.float32}  # t arrives in y's dtype
    torch.testing.assert_close(ours, theirs, rtol=2e-4, atol=2e-5)


def test_single_output_time_returns_y0():
    out = nde.odeint(pendulum, Y0, torch.tensor([0.5], dtype=F64))
    assert out.shape == (1, 2) and torch.equal(out[0], Y0)


# ------------------------------------------------------------------------------------------------
# gradients


class Field(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)
        ).double()

    def forward(self, t, y):
        return self.net(y) * torch.cos(t)


def _grads(odeint, func, y0, **kw):
    out = odeint(func, y0, T, **kw)
    return torch.autograd.grad((out**2).sum(), [y0, *func.parameters()])


@pytest.mark.parametrize(
    ("kw", "tol"),
    [
        ({"rtol": 1e-10, "atol": 1e-12}, 1e-7),
        ({"method": "rk4", "options": {"step_size": 0.1}}, 1e-12),
    ],
)
def test_module_gradients_match_torchdiffeq(kw, tol):
    func = Field()
    y0 = torch.tensor([[0.5, -0.3], [0.1, 0.2]], dtype=F64, requires_grad=True)
    for a, b in zip(_grads(nde.odeint, func, y0, **kw), _grads(td.odeint, func, y0, **kw)):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("adjoint_options", [None, {"norm": "seminorm"}])
def test_odeint_adjoint_gradients_match_torchdiffeq(adjoint_options):
    func = Field()
    y0 = torch.tensor([[0.5, -0.3], [0.1, 0.2]], dtype=F64, requires_grad=True)
    kw = {"rtol": 1e-9, "atol": 1e-11, "adjoint_options": adjoint_options}
    ours = _grads(nde.odeint_adjoint, func, y0, **kw)
    theirs = _grads(td.odeint_adjoint, func, y0, **kw)
    direct = _grads(nde.odeint, func, y0, rtol=1e-9, atol=1e-11)
    for a, b, c in zip(ours, theirs, direct):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(a, c, rtol=1e-6, atol=1e-7)


def test_odeint_adjoint_tuple_state_with_explicit_params():
    func = Field()

    def f(t, y):
        return func(t, y[0]), -y[1] * y[0].sum()

    y0 = torch.tensor([[0.5, -0.3], [0.1, 0.2]], dtype=F64, requires_grad=True)
    w0 = torch.tensor(0.7, dtype=F64, requires_grad=True)
    inputs = [y0, w0, *func.parameters()]
    grads = []
    for odeint_adjoint in (nde.odeint_adjoint, td.odeint_adjoint):
        y, w = odeint_adjoint(
            f, (y0, w0), T, rtol=1e-9, atol=1e-11, adjoint_params=tuple(func.parameters())
        )
        assert y.shape == (7, 2, 2) and w.shape == (7,)
        grads.append(torch.autograd.grad(y.sum() + (w**2).sum(), inputs))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# options


def test_first_step_sets_the_first_step():
    times = []

    def f(t, y):
        times.append(float(t))
        return -y

    nde.odeint(f, Y0, T, options={"first_step": 0.01})
    assert min(s for s in times if s > 0) == pytest.approx(0.2 * 0.01, rel=1e-12)  # dopri5's c2


def test_max_num_steps_is_a_per_interval_bound_and_fails_loudly():
    kw = {"rtol": 1e-6, "atol": 1e-8, "options": {"max_num_steps": 12}}
    # about 16 steps over [0, 3]: 12 are not enough for one interval, plenty for each of 30
    t = torch.linspace(0.0, 3.0, 31, dtype=F64)
    for odeint in (nde.odeint, td.odeint):
        odeint(pendulum, Y0, t, **kw)
    with pytest.raises(AssertionError, match="max_num_steps"):
        td.odeint(pendulum, Y0, t[[0, -1]], **kw)
    with pytest.raises(torchnde.SolveError, match="max_num_steps"):
        nde.odeint(pendulum, Y0, t[[0, -1]], **kw)


@pytest.mark.parametrize("option", ["jump_t", "step_t"])
def test_jump_t_and_step_t_land_steps_on_a_kink(option):
    times = []

    def f(t, y):  # dy/dt = |t - 1|: y(2) = 1; the kink at t = 1 defeats the error estimate
        times.append(float(t))
        return (t - 1).abs() * torch.ones_like(y)

    y0, t = torch.zeros(1, dtype=F64), torch.tensor([0.0, 2.0], dtype=F64)
    kw = {"rtol": 1e-8, "atol": 1e-10}
    plain = nde.odeint(f, y0, t, **kw)
    n_plain = len(times)
    times.clear()
    landed = nde.odeint(f, y0, t, options={option: torch.tensor([1.0])}, **kw)
    # steps land on the kink (a jump is stepped over from one float before it to one after it)
    assert any(abs(x - 1.0) < 1e-12 for x in times) and len(times) < n_plain / 2
    assert abs(landed[-1].item() - 1.0) < 1e-13 < abs(plain[-1].item() - 1.0)
    theirs = td.odeint(f, y0, t, options={option: torch.tensor([1.0])}, **kw)
    torch.testing.assert_close(landed, theirs, rtol=1e-12, atol=1e-12)


def test_min_step_fails_loudly_instead_of_accepting_inaccurate_steps():
    def stiff(t, y):
        return -1000.0 * (y - torch.cos(t))

    y0 = torch.tensor([0.0], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.raises(torchnde.SolveError, match="min_step"):
        nde.odeint(stiff, y0, t, rtol=1e-8, atol=1e-10, options={"min_step": 0.01})


# ------------------------------------------------------------------------------------------------
# events


def _event_problem():
    def f(t, y):
        return pendulum(t, y)

    return f, (lambda t, y: y[0] - 0.2)


@pytest.mark.parametrize("reverse", [False, True])
def test_event_fn_in_odeint_matches_torchdiffeq(reverse):
    f, event_fn = _event_problem()
    t = torch.tensor([0.0, -1.0 if reverse else 1.0], dtype=F64)  # the event lies beyond t[1]
    kw = {"rtol": 1e-10, "atol": 1e-12, "event_fn": event_fn}
    if reverse:
        kw["event_fn"] = lambda t, y: y[0] - 1.5
    et, ys = nde.odeint(f, Y0, t, **kw)
    et_td, ys_td = td.odeint(f, Y0, t, **kw)
    assert abs(et.item()) > 1.0 and et.shape == () and ys.shape == (2, 2)
    assert et.item() == pytest.approx(et_td.item(), abs=1e-9)
    torch.testing.assert_close(ys, ys_td, rtol=1e-8, atol=1e-8)
    assert abs(kw["event_fn"](et, ys[-1]).item()) < 1e-10


def test_multi_component_event_and_tuple_state():
    def f(t, y):
        return y[1], -y[0]

    y0 = (torch.tensor(1.0, dtype=F64), torch.tensor(0.0, dtype=F64))

    def event_fn(t, y):  # the first of x = 0.5 (t = π/3) and t = 2
        return torch.stack([y[0] - 0.5, 2.0 - t])

    kw = {"rtol": 1e-10, "atol": 1e-12, "event_fn": event_fn}
    et, (x, _) = nde.odeint(f, y0, torch.tensor([0.0, 1.0], dtype=F64), **kw)
    et_td, _ = td.odeint(f, y0, torch.tensor([0.0, 1.0], dtype=F64), **kw)
    assert x.shape == (2,) and et.item() == pytest.approx(math.pi / 3, abs=1e-9)
    assert et.item() == pytest.approx(et_td.item(), abs=1e-9)
    assert x[-1].item() == pytest.approx(0.5, abs=1e-9)


def test_fixed_grid_event():
    f, event_fn = _event_problem()
    t = torch.tensor([0.0, 1.0], dtype=F64)
    exact, _ = nde.odeint(f, Y0, t, event_fn=event_fn, rtol=1e-11, atol=1e-13)
    cubic = {"step_size": 0.01, "interp": "cubic"}
    et, _ = nde.odeint(f, Y0, t, event_fn=event_fn, method="rk4", options=cubic, atol=1e-12)
    et_td, _ = td.odeint(f, Y0, t, event_fn=event_fn, method="rk4", options=cubic, atol=1e-12)
    assert et.item() == pytest.approx(et_td.item(), abs=1e-10)  # same cubic interpolant
    # torchdiffeq's default linear interpolation places the event less accurately than ours
    et_lin, _ = td.odeint(f, Y0, t, event_fn=event_fn, method="rk4", options={"step_size": 0.01})
    assert abs(et.item() - exact.item()) < 1e-8 < abs(et_lin.item() - exact.item()) < 1e-4
    with pytest.raises(ValueError, match="step_size"):
        nde.odeint(f, Y0, t, event_fn=event_fn, method="rk4")


class Oscillator(torch.nn.Module):
    """y'' = -θ y from y = 1, y' = 0: the first zero is at π / (2 √θ)."""

    def __init__(self, theta=1.3):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor(theta, dtype=F64))

    def forward(self, t, y):
        return torch.stack([y[1], -self.theta * y[0]])


@pytest.mark.parametrize("interface", ["odeint", "odeint_adjoint"])
@pytest.mark.parametrize("reverse_time", [False, True])
def test_odeint_event_gradients(interface, reverse_time):
    func = Oscillator()
    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    results = []
    for lib in (nde, td):
        et, ys = lib.odeint_event(
            func,
            y0,
            torch.tensor(0.0, dtype=F64),
            event_fn=lambda t, y: y[0],
            reverse_time=reverse_time,
            odeint_interface=getattr(lib, interface),
            rtol=1e-10,
            atol=1e-12,
        )
        (g_t,) = torch.autograd.grad(et, func.theta, retain_graph=True)
        (g_v,) = torch.autograd.grad(ys[-1][1], func.theta)
        results.append((et.item(), g_t.item(), g_v.item()))
    theta = 1.3
    sign = -1.0 if reverse_time else 1.0
    assert results[0][0] == pytest.approx(sign * math.pi / (2 * math.sqrt(theta)), abs=1e-9)
    assert results[0][1] == pytest.approx(-sign * math.pi / 4 * theta**-1.5, rel=1e-6)
    for ours, theirs in zip(results[0], results[1]):
        assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-9)


def test_odeint_adjoint_event_holds_the_event_time_fixed_like_torchdiffeq():
    func = Oscillator()
    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    grads = []
    for lib in (nde, td):
        _, ys = lib.odeint_adjoint(func, y0, t, event_fn=lambda t, y: y[0], rtol=1e-10, atol=1e-12)
        grads.append(torch.autograd.grad(ys[-1][1], func.theta)[0].item())
    assert grads[0] == pytest.approx(grads[1], rel=1e-6)


# ------------------------------------------------------------------------------------------------
# odeint_dense


def test_odeint_dense():
    dense = nde.odeint_dense(
        pendulum, Y0, torch.tensor(0.0, dtype=F64), torch.tensor(3.0, dtype=F64)
    )
    dense_td = td.odeint_dense(
        pendulum, Y0, torch.tensor(0.0, dtype=F64), torch.tensor(3.0, dtype=F64)
    )
    for s in (0.0, 0.7, 2.9):
        s = torch.tensor(s, dtype=F64)
        assert dense(s).shape == (2,)
        torch.testing.assert_close(dense(s), dense_td(s), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(dense(T), reference(), rtol=1e-6, atol=1e-7)  # 1-D t_eval too
    backwards = nde.odeint_dense(pendulum, Y0, 0.0, -2.0, rtol=1e-9, atol=1e-11)
    t_back = torch.tensor([0.0, -0.5, -2.0], dtype=F64)
    torch.testing.assert_close(backwards(t_back), reference(t_back), rtol=1e-7, atol=1e-8)


# ------------------------------------------------------------------------------------------------
# what is not supported says so


@pytest.mark.parametrize(
    ("method", "alternative"),
    [
        ("explicit_adams", "rk4"),
        ("implicit_adams", "dopri5"),
        ("fixed_adams", "rk4"),
    ],
)
def test_unavailable_methods_name_an_alternative(method, alternative):
    with pytest.raises(ValueError, match=method) as info:
        nde.odeint(pendulum, Y0, T, method=method)
    assert alternative in str(info.value)


def test_unknown_method():
    with pytest.raises(ValueError, match="dopri5"):
        nde.odeint(pendulum, Y0, T, method="rk45")


@pytest.mark.parametrize(
    ("kw", "names"),
    [
        ({"options": {"step_size": 0.1}}, ["step_size", "first_step"]),
        ({"method": "euler", "options": {"max_num_steps": 10}}, ["max_num_steps", "dopri5"]),
        ({"method": "euler", "options": {"norm": _misc._rms_norm}}, ["norm", "dopri5"]),
        ({"options": {"stepsize": 0.1}}, ["stepsize", "first_step"]),
        ({"method": "rk4", "options": {"perturb": 1}}, ["perturb", "True or False"]),
        ({"method": "rk4", "options": {"interp": "quadratic"}}, ["interp", "cubic"]),
        ({"options": {"norm": "seminorm"}}, ["norm", "adjoint_options"]),
        ({"rtol": torch.tensor([1e-6, 1e-7])}, ["rtol", "float"]),
        ({"atol": (1e-6, 1e-7)}, ["atol", "float"]),
        ({"options": {"dfactor": 1.5}}, ["dfactor"]),
    ],
)
def test_options_without_meaning_raise(kw, names):
    with pytest.raises((ValueError, TypeError)) as info:
        nde.odeint(pendulum, Y0, T, **kw)
    for name in names:
        assert name in str(info.value)


class _Counting(torch.nn.Module):
    """``dy/dt = -y`` recording torchdiffeq's solver callbacks."""

    def __init__(self):
        super().__init__()
        self.calls = {"step": [], "accept": [], "reject": []}

    def forward(self, t, y):
        return -y

    def callback_step(self, t0, y0, dt):
        self.calls["step"].append((float(t0), y0.clone(), float(dt)))

    def callback_accept_step(self, t0, y0, dt):
        self.calls["accept"].append(float(t0))

    def callback_reject_step(self, t0, y0, dt):
        self.calls["reject"].append(float(t0))


def test_callbacks_are_called_per_step():
    """Fixed grid: one callback_step per grid step, with the step's start, state and size;
    adaptive: every attempt is accepted or rejected, and the accepted ones tile [t0, t1]."""
    y0 = torch.tensor([1.0, 2.0], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    func = _Counting()
    with pytest.warns(UserWarning, match="callback_accept_step"):
        out = nde.odeint(func, y0, t, method="euler", options={"step_size": 0.25})
    steps = func.calls["step"]
    assert [s[0] for s in steps] == [0.0, 0.25, 0.5, 0.75] and {s[2] for s in steps} == {0.25}
    torch.testing.assert_close(steps[-1][1], y0 * 0.75**3)  # the state at the step's start
    torch.testing.assert_close(out[-1], y0 * 0.75**4)
    func = _Counting()
    nde.odeint(func, y0, t.flip(0), rtol=1e-8, atol=1e-10)
    steps, accepted = func.calls["step"], func.calls["accept"]
    assert len(steps) == len(accepted) + len(func.calls["reject"]) and accepted
    sizes = [s[2] for s in steps if s[0] in accepted]
    assert all(h < 0 for h in sizes) and sum(sizes) == pytest.approx(-1.0, abs=1e-12)


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_adjoint_callbacks_see_every_backward_step(method):
    """callback_*_adjoint are called on the backward solve's steps, with torchdiffeq's augmented
    state (t, y, adj_y, *adj_params): a fixed grid is replayed step by step in reverse; adaptive
    steps are each accepted or rejected, and the accepted ones tile [t1, t0]."""
    func = Field()
    calls = {"step": [], "accept": [], "reject": []}
    func.callback_step_adjoint = lambda t0, y0, dt: calls["step"].append((float(t0), y0, float(dt)))
    func.callback_accept_step_adjoint = lambda t0, y0, dt: calls["accept"].append(float(t0))
    func.callback_reject_step_adjoint = lambda t0, y0, dt: calls["reject"].append(float(t0))
    y0 = torch.tensor([0.5, -0.3], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    kwargs = {"options": {"step_size": 0.125}} if method == "rk4" else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = nde.odeint_adjoint(func, y0, t, method=method, **kwargs)
    assert not calls["step"]  # the forward solve does not call them
    out.sum().backward()
    params = list(func.parameters())
    t_adj, y, adj_y, *adj_params = calls["step"][0][1]
    assert t_adj.shape == () and y.shape == adj_y.shape == (2,)
    assert [g.shape for g in adj_params] == [p.shape for p in params]
    steps = calls["step"]
    if method == "rk4":
        assert [s[0] for s in steps] == [1.0 - 0.125 * k for k in range(8)]
        assert {s[2] for s in steps} == {-0.125} and not calls["accept"]
        assert any("callback_accept_step_adjoint" in str(w.message) for w in caught)
    else:
        assert len(steps) == len(calls["accept"]) + len(calls["reject"])
        sizes = [dt for t0, _, dt in steps if t0 in calls["accept"]]
        assert sum(sizes) == pytest.approx(-1.0, abs=1e-12) and all(h < 0 for h in sizes)


def test_scipy_solver_values_and_gradient():
    """SciPy's solvers reach the exact solution of a linear system (both directions, tuple
    states); odeint_adjoint gives them the gradient of the exact flow."""
    a = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=F64)
    t = torch.linspace(0.0, 3.0, 7, dtype=F64)
    y0 = torch.tensor([2.0, 0.5], dtype=F64, requires_grad=True)
    exact = torch.stack([torch.linalg.matrix_exp(a.T * s) @ y0 for s in t])
    for solver in ("LSODA", "RK45", "DOP853", "Radau", "BDF", "RK23"):
        out = nde.odeint(
            lambda s, y: y @ a, y0, t, method="scipy_solver", options={"solver": solver}
        )
        assert not out.requires_grad
        torch.testing.assert_close(out, exact.detach(), rtol=2e-5, atol=2e-5)
    back = nde.odeint(lambda s, y: y @ a, y0, t.flip(0), method="scipy_solver")
    want_back = torch.linalg.matrix_exp(-3.0 * a.T) @ y0.detach()
    torch.testing.assert_close(back[-1], want_back, rtol=2e-5, atol=2e-5)
    pair = nde.odeint(
        lambda s, y: (y[1], -y[0]),
        (torch.tensor(1.0), torch.tensor([0.0])),
        t,
        method="scipy_solver",
    )
    assert pair[0].dtype == torch.float32 and pair[1].shape == (7, 1)
    torch.testing.assert_close(pair[0], torch.cos(t).float(), rtol=1e-5, atol=1e-5)
    out = nde.odeint_adjoint(lambda s, y: y @ a, y0, t, method="scipy_solver", adjoint_params=())
    (grad,) = torch.autograd.grad(out.square().sum(), y0)
    (want,) = torch.autograd.grad(exact.square().sum(), y0)
    torch.testing.assert_close(grad, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="solver"):
        nde.odeint(lambda s, y: -y, Y0, T, method="scipy_solver", options={"solver": "rk4"})


def test_bad_t():
    with pytest.raises(ValueError, match="strictly increasing or decreasing"):
        nde.odeint(pendulum, Y0, torch.tensor([0.0, 1.0, 0.5], dtype=F64))
    with pytest.raises(ValueError, match=r"len\(t\) == 2"):
        nde.odeint(pendulum, Y0, T, event_fn=lambda t, y: y[0])


@pytest.mark.parametrize("seminorm", [False, True])
@pytest.mark.parametrize("tuple_state", [False, True])
def test_adjoint_norm_on_grad_fn_is_torchdiffeqs(seminorm, tuple_state):
    """``grad_fn.adjoint_options['norm']`` is the norm torchdiffeq builds (the same value on the
    same augmented state) and the backward solve calls it, even when replaced after the forward
    solve."""
    func = Field()
    params = tuple(func.parameters())
    if tuple_state:
        y0 = (torch.tensor(0.5, dtype=F64), torch.tensor([[0.5, -0.3], [0.1, 0.2]], dtype=F64))

        def f(t, y):
            return -y[0], func(t, y[1])
    else:
        y0, f = torch.tensor([[0.5, -0.3], [0.1, 0.2]], dtype=F64), func
    kwargs = {"adjoint_params": params}
    if seminorm:
        kwargs["adjoint_options"] = {"norm": "seminorm"}

    def node(out):
        return (
            out[0].grad_fn.next_functions[0][0].next_functions[0][0] if tuple_state else out.grad_fn
        )

    ours = node(nde.odeint_adjoint(f, y0, T, **kwargs)).adjoint_options["norm"]
    out = td.odeint_adjoint(f, y0, T, **kwargs)
    theirs = node(out).adjoint_options["norm"]
    n = 5 if tuple_state else 4
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        state = (
            torch.randn((), generator=gen, dtype=F64),
            *(torch.randn(s, generator=gen, dtype=F64) for s in [(n,), (n,)] if tuple_state),
            *(torch.randn(y0.shape, generator=gen, dtype=F64) for _ in range(2) if not tuple_state),
            *(torch.randn(p.shape, generator=gen, dtype=F64) for p in params),
        )
        torch.testing.assert_close(ours(state), torch.as_tensor(theirs(state), dtype=F64))
    seen = []
    out = nde.odeint_adjoint(f, y0, T, **kwargs)
    default = node(out).adjoint_options["norm"]
    node(out).adjoint_options["norm"] = lambda x: seen.append(len(x)) or default(x)
    (out[1] if tuple_state else out).sum().backward()
    assert seen and set(seen) == {3 + len(params)}


def test_user_adjoint_norm_is_called_and_matters():
    """A user's adjoint norm receives torchdiffeq's tuple (a tuple state split into its tensors)
    and sets the backward steps: ten times the norm, more steps, the same gradient."""
    func = Field()
    y0 = (torch.tensor(0.5, dtype=F64), torch.tensor([[0.5, -0.3], [0.1, 0.2]], dtype=F64))
    y0[1].requires_grad_(True)
    shapes = []

    def norm(x):
        shapes.append(tuple(tuple(part.shape) for part in x))
        return torch.stack([part.abs().max() for part in x if part.numel()]).max()

    calls = [0]

    def f(t, y):
        calls[0] += 1
        return -y[0], func(t, y[1])

    grads, nfe = [], []
    for scale in (1.0, 10.0):
        adjoint_options = {"norm": lambda x, s=scale: s * norm(x)}
        out = nde.odeint_adjoint(f, y0, T, rtol=1e-7, atol=1e-9, adjoint_options=adjoint_options)
        forward = calls[0]
        grads.append(torch.autograd.grad(out[1].sum(), y0[1])[0])
        nfe.append(calls[0] - forward)
    params = [tuple(p.shape) for p in func.parameters()]
    assert shapes[0] == ((), (), (2, 2), (), (2, 2), *params)
    assert nfe[1] > nfe[0]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)
    with pytest.raises(TypeError, match="adjoint_options\\['norm'\\]"):
        nde.odeint_adjoint(func, y0[1], T, adjoint_options={"norm": "max"})


def test_odeint_adjoint_options_that_cannot_be_honoured():
    func = Field()
    y0 = torch.tensor([0.5, -0.3], dtype=F64)
    with pytest.raises(ValueError, match="first_step"):
        nde.odeint_adjoint(func, y0, T, adjoint_options={"first_step": 0.1})
    with pytest.raises(ValueError, match="adjoint_options"):
        nde.odeint_adjoint(func, y0, T, options={"first_step": 0.1}, adjoint_method="bosh3")
    with pytest.warns(UserWarning, match="first_step"):  # inherited: forward only, and said so
        nde.odeint_adjoint(func, y0, T, options={"first_step": 0.1})
    # a fixed-grid forward solve with an adaptive backward solve is fine
    out = nde.odeint_adjoint(
        func,
        y0,
        T,
        method="rk4",
        options={"step_size": 0.1},
        adjoint_method="dopri5",
        adjoint_options={},
    )
    assert out.shape == (7, 2)


@pytest.mark.parametrize("method", ["rk4", "midpoint", "euler"])
def test_fixed_grid_odeint_adjoint_agrees_with_torchdiffeqs(method):
    """A fixed-grid odeint_adjoint steps back through the forward grid (with save times on it,
    torchdiffeq's backward grid from ``adjoint_options['step_size']`` is the same). Both are
    discretisations of the continuous adjoint: they must differ from each other by far less than
    either differs from the exact gradient (the two formulations agree to a higher order)."""

    def grads(lib, method, step):
        func = Field()
        y0 = torch.tensor([0.5, -0.3], dtype=F64, requires_grad=True)
        out = lib.odeint_adjoint(func, y0, T, method=method, options={"step_size": step})
        return torch.cat(
            [
                g.reshape(-1)
                for g in torch.autograd.grad(out.square().sum(), (y0, *func.parameters()))
            ]
        )

    exact = grads(td, "rk4", 1 / 256)
    ours, theirs = grads(nde, method, 0.125), grads(td, method, 0.125)
    error = float((theirs - exact).abs().max())
    assert error > 0 and float((ours - theirs).abs().max()) <= 0.1 * error


def test_perturb_samples_each_step_on_its_own_side():
    """options['perturb']=True: a field with a jump at a grid time is evaluated on the side of
    the step being taken (the step starting there sees the right limit, a stage at the end of a
    step the left one), forwards and in odeint_adjoint's backward solve."""

    def jump_at_half(closed_left):
        def f(t, x):
            inside = t <= 0.5 if closed_left else t < 0.5
            return torch.where(inside, 1.0, 2.0).to(x.dtype) * torch.ones_like(x)

        return f

    x0 = torch.zeros(1, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    euler = {"step_size": 0.5}
    plain = nde.odeint(jump_at_half(True), x0, t, method="euler", options=euler)
    moved = nde.odeint(
        jump_at_half(True), x0, t, method="euler", options={**euler, "perturb": True}
    )
    assert float(plain[-1]) == 1.0 and float(moved[-1]) == 1.5  # 0.5·1 + 0.5·f(0.5±)
    half = torch.tensor([0.0, 0.5], dtype=F64)
    heun = {"step_size": 0.5, "perturb": True}
    assert float(nde.odeint(jump_at_half(False), x0, half, method="heun2")[-1]) == 0.75
    assert float(nde.odeint(jump_at_half(False), x0, half, method="heun2", options=heun)[-1]) == 0.5
    seen = []

    def record(s, x):
        seen.append(float(s))
        return -x

    x0 = torch.ones(2, dtype=F64, requires_grad=True)
    out = nde.odeint_adjoint(record, x0, t, method="rk4", options=heun, adjoint_params=())
    assert 0.0 not in seen and 0.5 not in seen and 1.0 not in seen
    seen.clear()
    out.sum().backward()
    assert seen and 0.5 not in seen and 1.0 not in seen
    torch.testing.assert_close(
        x0.grad, torch.full((2,), 1.0 + math.exp(-1.0), dtype=F64), rtol=1e-3, atol=0
    )


def test_odeint_adjoint_event_time_is_differentiable():
    """odeint_adjoint with event_fn: the event time has a gradient, and the gradients are those
    of torchdiffeq's odeint_event through its odeint_adjoint (implicit function theorem)."""

    class Spring(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Parameter(torch.tensor(0.7, dtype=F64))

        def forward(self, t, y):
            return torch.stack([y[1], -self.a * y[0]])

    def grads(lib, run):
        func = Spring()
        y0 = torch.tensor([1.0, 0.0], dtype=F64, requires_grad=True)
        event_t, ys = run(lib, func, y0)
        return torch.cat(
            [g.reshape(-1) for g in torch.autograd.grad(event_t + ys[-1].sum(), (y0, func.a))]
        )

    def ours(lib, func, y0):
        t = torch.tensor([0.0, 1.0], dtype=F64)
        return lib.odeint_adjoint(
            func, y0, t, event_fn=lambda s, y: y[0] - 0.2, rtol=1e-10, atol=1e-12
        )

    def theirs(lib, func, y0):
        return lib.odeint_event(
            func,
            y0,
            torch.tensor(0.0, dtype=F64),
            event_fn=lambda s, y: y[0] - 0.2,
            odeint_interface=lib.odeint_adjoint,
            rtol=1e-10,
            atol=1e-12,
        )

    want = grads(td, theirs)
    torch.testing.assert_close(grads(nde, ours), want, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(grads(nde, theirs), want, rtol=1e-7, atol=1e-9)
