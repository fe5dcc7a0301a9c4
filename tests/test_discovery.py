"""torchnde.discovery: sparse symbolic regression.

Known sparse laws are sampled along trajectories computed with torchnde.solve (so library columns
are as correlated as in real use) and must come back with the right terms: exactly from clean
samples, within a few percent from noisy ones or ones carrying a smooth, network-like error.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import sympy
import torch

pytest.importorskip("pysindy")

import torchnde
from torchnde.discovery import (
    SparseExpression,
    as_terms,
    compare_terms,
    polynomial_library,
    select_model,
    sparse_regression,
)

# Lotka–Volterra of the seed lecture: dx/dt = 1.1 x - 0.4 x y, dy/dt = 0.1 x y - 0.4 y, x0 = y0 = 10
LV = (1.1, 0.4, 0.1, 0.4)
LV_PERIOD = 14.34  # from (10, 10): y returns to 10 upward at t = 14.34


def _trajectory(field, y0, t1, n):
    ts = torch.linspace(0.0, t1, n, dtype=torch.float64)
    sol = torchnde.solve(
        torchnde.ODETerm(field),
        torchnde.Dopri5(),
        0.0,
        t1,
        torch.tensor(y0, dtype=torch.float64),
        dt0=0.01,
        saveat=torchnde.SaveAt(ts=ts),
        controller=torchnde.PIDController(rtol=1e-10, atol=1e-10),
        max_steps=100_000,
    )
    return ts.numpy(), sol.ys.numpy()


@pytest.fixture(scope="module")
def orbit():
    """One period and a bit of the Lotka–Volterra orbit, 150 samples: t, x, y."""
    alpha, beta, gamma, delta = LV

    def field(t, z, args):
        x, y = z[..., 0], z[..., 1]
        return torch.stack([alpha * x - beta * x * y, gamma * x * y - delta * y], -1)

    t, z = _trajectory(field, [10.0, 10.0], 1.2 * LV_PERIOD, 150)
    return t, z[:, 0], z[:, 1]


@pytest.fixture(scope="module")
def pendulum():
    """A damped pendulum x'' = -sin(x) - 0.3 x' from x = 2.5 rad at rest, 200 samples: t, x, v."""

    def field(t, z, args):
        x, v = z[..., 0], z[..., 1]
        return torch.stack([v, -torch.sin(x) - 0.3 * v], -1)

    t, z = _trajectory(field, [2.5, 0.0], 20.0, 200)
    return t, z[:, 0], z[:, 1]


def _rms(v):
    return float(np.sqrt(np.mean(np.asarray(v) ** 2)))


LV_LAWS = {
    "-0.4*x*y": lambda x, y: -0.4 * x * y,
    "0.1*x*y - 0.4*y": lambda x, y: 0.1 * x * y - 0.4 * y,
}


# -- recovery ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("law", list(LV_LAWS))
def test_clean_samples_give_the_law_exactly(orbit, law):
    _t, x, y = orbit
    expr = sparse_regression({"x": x, "y": y}, LV_LAWS[law](x, y), degree=2)
    truth = as_terms(law)
    assert set(expr.terms) == set(truth)
    for term, c in truth.items():
        assert expr.terms[term] == pytest.approx(c, rel=1e-9)
    assert expr.r2 == pytest.approx(1.0, abs=1e-12)
    difference = as_terms(expr.sympy - sympy.sympify(law))  # the sympy form is the same law
    assert all(abs(c) < 1e-9 for c in difference.values())


@pytest.mark.parametrize("law", list(LV_LAWS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_samples_give_the_support_and_coefficients_within_3_percent(orbit, law, seed):
    t, x, y = orbit
    clean = LV_LAWS[law](x, y)
    noisy = clean + 0.05 * _rms(clean) * np.random.default_rng(seed).standard_normal(len(t))
    expr = sparse_regression({"x": x, "y": y}, noisy)
    comparison = compare_terms(expr, law)
    assert comparison.same_support, str(comparison)
    assert comparison.max_relative_error < 0.03, str(comparison)
    assert 0.99 < expr.r2 < 0.999  # the noise, 5% of the RMS, is left unexplained


@pytest.mark.parametrize("law", list(LV_LAWS))
@pytest.mark.parametrize(
    "error",
    [
        # relative error slowly varying along the orbit (a network that is 5% off in places)
        lambda t, x, y, f: 0.05 * f * np.cos(0.9 * t),
        # a smooth function of the state, as a network's approximation error is
        lambda t, x, y, f: 0.04 * _rms(f) * np.tanh(x / 3 - y / 5),
    ],
    ids=["relative-in-time", "function-of-state"],
)
def test_a_smooth_network_like_error_keeps_the_support(orbit, law, error):
    # Such errors correlate with the library columns along the orbit (an error that is a
    # function of the state is exactly what extra terms could absorb): the relative threshold
    # must still reject the extra terms and the refit keep the coefficients within a few percent.
    t, x, y = orbit
    f = LV_LAWS[law](x, y)
    expr = sparse_regression({"x": x, "y": y}, f + error(t, x, y, f))
    comparison = compare_terms(expr, law)
    assert comparison.same_support, str(comparison)
    assert comparison.max_relative_error < 0.05, str(comparison)


@pytest.mark.parametrize(
    ("law", "noise"), [("-0.3*v", 0.0), ("-0.5*sin(x) - 0.3*v", 0.0), ("-0.5*sin(x) - 0.3*v", 0.03)]
)
def test_custom_library_with_trigonometric_terms(pendulum, law, noise):
    t, x, v = pendulum
    f = sympy.lambdify(sympy.symbols("x v"), sympy.sympify(law), "numpy")(x, v)
    f = f + noise * _rms(f) * np.random.default_rng(3).standard_normal(len(t))
    library = ["1", "x", "v", "sin(x)", "cos(x)", "x*v", "v**2", "x**2", "sin(x)*v"]
    expr = sparse_regression({"x": x, "v": v}, f, library=library)
    comparison = compare_terms(expr, law)
    assert comparison.same_support, str(comparison)
    assert comparison.max_relative_error < (1e-9 if noise == 0 else 0.03), str(comparison)


def test_polynomial_library_extended_with_custom_terms(pendulum):
    _t, x, v = pendulum
    library = [*polynomial_library(["x", "v"], 2), "sin(x)", "cos(x)"]
    expr = sparse_regression({"x": x, "v": v}, -np.sin(x) - 0.3 * v, library=library)
    assert expr.terms == pytest.approx({"sin(x)": -1.0, "v": -0.3}, rel=1e-9)


def test_sr3_and_an_optimizer_instance_recover_the_law(orbit):
    import pysindy

    _t, x, y = orbit
    f = 0.1 * x * y - 0.4 * y
    for optimizer in ["sr3", "SR3", pysindy.STLSQ(threshold=0.1, alpha=1e-6)]:
        expr = sparse_regression({"x": x, "y": y}, f, optimizer=optimizer)
        assert compare_terms(expr, "0.1*x*y - 0.4*y").max_relative_error < 1e-9
        assert compare_terms(expr, "0.1*x*y - 0.4*y").same_support
    l1 = sparse_regression(
        {"x": x, "y": y}, f, optimizer="sr3", optimizer_options={"regularizer": "L1"}
    )
    assert compare_terms(l1, "0.1*x*y - 0.4*y").matches(rtol=1e-9)


# -- the threshold ----------------------------------------------------------------------------------


def _coefficient_for_relative_size(x, y, size):
    """a > 0 such that the term a*y of x*y + a*y has |a| rms(y) / rms(x*y + a*y) = size."""
    lo, hi = 0.0, 100.0
    for _ in range(200):
        a = 0.5 * (lo + hi)
        lo, hi = (a, hi) if a * _rms(y) / _rms(x * y + a * y) < size else (lo, a)
    return 0.5 * (lo + hi)


@pytest.mark.parametrize(("size", "kept"), [(0.105, True), (0.095, False)])
def test_threshold_is_relative_to_the_target_rms(orbit, size, kept):
    _t, x, y = orbit
    a = _coefficient_for_relative_size(x, y, size)
    expr = sparse_regression({"x": x, "y": y}, x * y + a * y, threshold=0.1)
    assert ("y" in expr.terms) is kept
    if kept:
        assert expr.terms == pytest.approx({"x*y": 1.0, "y": a}, rel=1e-9)
        assert expr.relative_sizes["y"] == pytest.approx(size, rel=1e-9)
    else:  # x*y alone, refitted by least squares
        assert list(expr.terms) == ["x*y"]
        assert expr.terms["x*y"] == pytest.approx(
            float(np.dot(x * y, x * y + a * y) / np.dot(x * y, x * y))
        )


def _pysindy_stlsq(x, y, target, threshold):
    """PySINDy's STLSQ (no ridge, unbiased) on the raw degree-2 library of the same samples."""
    import pysindy as ps

    library = ps.PolynomialLibrary(degree=2).fit(np.c_[x, y])
    columns = np.asarray(library.transform(np.c_[x, y]))
    names = [n.replace("^", "**").replace(" ", "*") for n in library.get_feature_names(["x", "y"])]
    optimizer = ps.STLSQ(threshold=threshold, alpha=0.0, max_iter=100).fit(columns, target)
    coefficients = np.asarray(optimizer.coef_).reshape(-1)
    return {n: float(c) for n, c in zip(names, coefficients) if c != 0}


@pytest.mark.parametrize("threshold", [0.005, 0.05, 0.3])
def test_absolute_threshold_mode_is_pysindys_stlsq_threshold(orbit, threshold):
    """The same samples and threshold give PySINDy's STLSQ result, term for term."""
    _t, x, y = orbit
    noise = np.random.default_rng(3).normal(size=x.shape)
    target = 0.1 * x * y - 0.4 * y + 0.02 * x**2 + 0.05 * _rms(x * y) * noise
    ours = sparse_regression(
        {"x": x, "y": y}, target, degree=2, threshold=threshold, threshold_mode="absolute"
    )
    theirs = _pysindy_stlsq(x, y, target, threshold)
    assert set(ours.terms) == set(theirs)
    assert ours.terms == pytest.approx(theirs, rel=1e-7, abs=1e-10)
    assert all(abs(c) >= threshold for c in ours.terms.values())


@pytest.mark.parametrize(
    ("threshold", "support"), [(0.01, {"x*y", "y", "x**2"}), (0.1, {"x*y", "y"})]
)
def test_largest_threshold_mode_is_relative_to_the_largest_coefficient(orbit, threshold, support):
    """Every kept coefficient is at least ``threshold`` times the largest; the result is PySINDy's
    STLSQ at the absolute threshold ``threshold * max |c|``."""
    _t, x, y = orbit
    target = 0.1 * x * y - 0.4 * y + 0.02 * x**2
    ours = sparse_regression(
        {"x": x, "y": y}, target, degree=2, threshold=threshold, threshold_mode="largest"
    )
    assert set(ours.terms) == support
    largest = max(abs(c) for c in ours.terms.values())
    assert all(abs(c) >= threshold * largest for c in ours.terms.values())
    theirs = _pysindy_stlsq(x, y, target, threshold * largest)
    assert ours.terms == pytest.approx(theirs, rel=1e-7, abs=1e-10)
    # the default mode reads the same number as a share of the target's RMS instead
    share = sparse_regression({"x": x, "y": y}, target, degree=2, threshold=threshold)
    assert all(s >= threshold for s in share.relative_sizes.values())


def test_threshold_modes_other_than_share_need_stlsq(orbit):
    _t, x, y = orbit
    with pytest.raises(ValueError, match=r"threshold_mode='absolute'.*optimizer='stlsq'"):
        sparse_regression({"x": x, "y": y}, x * y, threshold_mode="absolute", optimizer="sr3")
    with pytest.raises(ValueError, match="`threshold_mode` must be one of"):
        sparse_regression({"x": x, "y": y}, x * y, threshold_mode="relative")
    with pytest.raises(ValueError, match="needs `thresholds`"):
        select_model({"x": x, "y": y}, x * y, threshold_mode="absolute")


def test_every_kept_term_meets_the_threshold_with_its_final_coefficient(orbit):
    t, x, y = orbit
    f = -0.4 * x * y + 0.2 * _rms(x * y) * np.sin(0.7 * t)  # an error big enough to add terms
    for threshold in [0.01, 0.03, 0.1, 0.3]:
        expr = sparse_regression({"x": x, "y": y}, f, threshold=threshold)
        columns = {"1": np.ones_like(x), "x": x, "y": y, "x**2": x**2, "x*y": x * y, "y**2": y**2}
        for term, c in expr.terms.items():
            size = abs(c) * _rms(columns[term]) / _rms(f)
            assert size == pytest.approx(expr.relative_sizes[term], rel=1e-9)
            assert size >= threshold


def test_selection_does_not_depend_on_units_or_sample_count(orbit):
    t, x, y = orbit
    f = 0.1 * x * y - 0.4 * y + 0.05 * _rms(x * y) * np.cos(t)
    base = sparse_regression({"x": x, "y": y}, f)
    # x in other units (x -> 1000 x), the target in other units, every sample repeated 3 times
    scaled = sparse_regression(
        {"x": np.repeat(1000 * x, 3), "y": np.repeat(y, 3)}, np.repeat(1e-3 * f, 3)
    )
    assert set(scaled.terms) == set(base.terms)
    for term, c in base.terms.items():
        units = 1e-3 / 1000 ** sympy.degree(sympy.sympify(term), sympy.Symbol("x"))
        assert scaled.terms[term] == pytest.approx(units * c, rel=1e-9)


def test_weights_remove_outliers_and_2d_samples_are_flattened(orbit):
    _t, x, y = orbit
    f = -0.4 * x * y
    corrupted = f.copy()
    corrupted[::10] += 50.0
    weights = np.ones_like(f)
    weights[::10] = 0.0
    assert not compare_terms(sparse_regression({"x": x, "y": y}, corrupted), "-0.4*x*y").matches(
        0.01
    )
    expr = sparse_regression(
        {"x": x.reshape(10, 15), "y": torch.tensor(y.reshape(10, 15))},
        torch.tensor(corrupted.reshape(10, 15)),
        weights=weights.reshape(10, 15),
    )
    assert expr.terms == pytest.approx({"x*y": -0.4}, rel=1e-9)
    assert expr.r2 == pytest.approx(1.0, abs=1e-12)


def test_an_empty_selection_is_a_valid_answer(orbit):
    _t, x, y = orbit
    f = -0.4 * x * y
    expr = sparse_regression({"x": x, "y": y}, f, threshold=1.5)  # one exact term has size 1
    assert expr.terms == {}
    assert len(expr) == 0
    assert str(expr) == "0"
    assert expr.sympy == 0
    np.testing.assert_array_equal(expr({"x": x, "y": y}), np.zeros_like(x))
    # R² of the zero function: 1 - sum(f^2) / sum((f - mean f)^2)
    assert expr.r2 == pytest.approx(1 - np.sum(f**2) / np.sum((f - f.mean()) ** 2))
    zero = sparse_regression({"x": x, "y": y}, np.zeros_like(x))
    assert zero.terms == {} and zero.r2 == 1.0


def test_linearly_dependent_library_terms_warn(pendulum):
    _t, x, v = pendulum
    with pytest.warns(UserWarning, match="linearly dependent"):
        sparse_regression(
            {"x": x, "v": v}, 1.0 + 0 * x, library=["1", "sin(x)**2", "cos(x)**2"], threshold=0.0
        )


# -- model selection --------------------------------------------------------------------------------


@pytest.mark.parametrize("criterion", ["cv", "aic", "bic"])
def test_select_model_finds_the_law_under_independent_noise(orbit, criterion):
    t, x, y = orbit
    f = 0.1 * x * y - 0.4 * y
    noisy = f + 0.05 * _rms(f) * np.random.default_rng(7).standard_normal(len(t))
    selection = select_model({"x": x, "y": y}, noisy, criterion=criterion)
    assert compare_terms(selection.best, "0.1*x*y - 0.4*y").matches(rtol=0.03)
    assert min(selection.candidates, key=lambda c: c.score).expression is selection.best
    assert any(len(c.expression) == 0 for c in selection.candidates)
    assert [len(c.expression) for c in selection.candidates] == sorted(
        len(c.expression) for c in selection.candidates
    )
    assert "<- best" in str(selection)


def test_select_model_prefers_the_sparsest_exact_fit(orbit):
    _t, x, y = orbit
    selection = select_model({"x": x, "y": y}, -0.4 * x * y, thresholds=[1e-6, 0.1])
    assert selection.best.terms == pytest.approx({"x*y": -0.4}, rel=1e-9)


# -- the expression object --------------------------------------------------------------------------


def test_evaluation_numpy_torch_and_module_agree_and_are_differentiable():
    expr = SparseExpression({"x*y": -0.4, "sin(x)": 0.5, "1": 0.25}, variables=("x", "y"))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=20), rng.normal(size=20)
    exact = -0.4 * x * y + 0.5 * np.sin(x) + 0.25
    np.testing.assert_allclose(expr({"x": x, "y": y}), exact, rtol=1e-14)
    assert isinstance(expr({"x": x, "y": y}), np.ndarray)

    xt = torch.tensor(x, requires_grad=True)
    yt = torch.tensor(y)
    out = expr({"x": xt, "y": yt, "unused": yt})
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.detach().numpy(), exact, rtol=1e-14)
    (grad_x,) = torch.autograd.grad(out.sum(), xt)
    np.testing.assert_allclose(grad_x.numpy(), -0.4 * y + 0.5 * np.cos(x), rtol=1e-14)

    module = expr.to_torch(dtype=torch.float64)
    np.testing.assert_allclose(module({"x": xt, "y": yt}).detach().numpy(), exact, rtol=1e-14)
    module({"x": xt, "y": yt}).sum().backward()
    # d/dc_j sum_i (sum_k c_k term_k(x_i)) = sum_i term_j(x_i)
    expected = {"x*y": np.sum(x * y), "sin(x)": np.sum(np.sin(x)), "1": 20.0}
    for name, grad in zip(module.term_names, module.coefficients.grad):
        assert float(grad) == pytest.approx(expected[name], rel=1e-12)

    def f(c, x_):
        return torch.func.functional_call(module, {"coefficients": c}, ({"x": x_, "y": yt},))

    c0 = module.coefficients.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (c0, xt.detach().clone().requires_grad_()))


def test_to_torch_refits_coefficients_by_gradient_descent(orbit):
    _t, x, y = orbit
    data = {"x": torch.tensor(x), "y": torch.tensor(y)}
    target = torch.tensor(0.1 * x * y - 0.4 * y)
    start = SparseExpression({"x*y": 0.05, "y": -0.2}, ("x", "y"))
    module = start.to_torch(torch.float64)
    optimiser = torch.optim.LBFGS(module.parameters(), max_iter=50, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = ((module(data) - target) ** 2).mean()
        loss.backward()
        return loss

    optimiser.step(closure)
    assert module.to_expression().terms == pytest.approx({"x*y": 0.1, "y": -0.4}, rel=1e-6)


def test_terms_sympy_and_str_are_canonical_and_readable():
    expr = SparseExpression({"y*x": -0.401, "2*y": 0.05, "x^2": 1.0, "1": 0.3}, ("x", "y"))
    assert expr.terms == {"x*y": -0.401, "y": 0.1, "x**2": 1.0, "1": 0.3}
    assert str(expr) == "-0.401*x*y + 0.1*y + x**2 + 0.3"
    x, y = sympy.symbols("x y")
    assert sympy.simplify(expr.sympy - (-0.401 * x * y + 0.1 * y + x**2 + 0.3)) == 0
    assert "-0.401*x*y" in repr(expr)
    assert pickle.loads(pickle.dumps(expr)) == expr
    module = pickle.loads(pickle.dumps(expr.to_torch()))
    assert module.to_expression().terms == pytest.approx(expr.terms)


def test_with_coefficients_keeps_the_terms():
    expr = SparseExpression({"x*y": -0.4, "y": 0.1}, ("x", "y"))
    assert expr.with_coefficients({"y": 0.2}).terms == {"x*y": -0.4, "y": 0.2}
    assert expr.with_coefficients(torch.tensor([1.0, 2.0])).terms == {"x*y": 1.0, "y": 2.0}
    assert expr.with_coefficients([0.0, 2.0]).terms == {"x*y": 0.0, "y": 2.0}
    with pytest.raises(ValueError, match=r"'x\*\*2'.*not terms"):
        expr.with_coefficients({"x**2": 1.0})
    with pytest.raises(ValueError, match="3 values but the expression has 2 terms"):
        expr.with_coefficients([1.0, 2.0, 3.0])


def test_as_terms_round_trip_and_expansion():
    rng = np.random.default_rng(1)
    library = polynomial_library(["x", "y"], 3)
    for _ in range(5):
        chosen = rng.choice(len(library), size=3, replace=False)
        terms = {str(library[j]): float(rng.normal()) for j in chosen}
        expr = SparseExpression(terms, ("x", "y"))
        assert as_terms(expr.sympy, ["x", "y"]) == pytest.approx(terms, rel=1e-12)
        assert as_terms(str(expr.sympy)) == pytest.approx(terms, rel=1e-12)
    assert as_terms("-0.4*x*y") == {"x*y": -0.4}
    assert as_terms("0.1*x*(y - 4)") == pytest.approx({"x*y": 0.1, "x": -0.4})
    assert as_terms("-0.5*sin(x) + 2 - 2") == {"sin(x)": -0.5}
    beta, x, y = sympy.symbols("beta x y")
    assert as_terms((-beta * x * y).subs(beta, 0.4), ["x", "y"]) == pytest.approx({"x*y": -0.4})
    assert as_terms({"y*x": 2, "x*y": 1, "1": 0.5}, ["x", "y"]) == {"x*y": 3.0, "1": 0.5}


def test_compare_terms_reports_missing_extra_and_errors():
    comparison = compare_terms({"x*y": -0.42, "x": 0.01}, "-0.4*x*y + 0.1*y")
    assert comparison.missing == ("y",)
    assert comparison.extra == ("x",)
    assert not comparison.same_support
    assert comparison.relative_errors == pytest.approx({"x*y": 0.05, "y": 1.0})
    assert comparison.max_relative_error == pytest.approx(1.0)
    assert not comparison.matches(rtol=0.1)
    good = compare_terms(SparseExpression({"x*y": -0.404}, ("x", "y")), "-0.4*y*x")
    assert good.same_support and good.max_relative_error == pytest.approx(0.01)
    assert good.matches(0.02) and not good.matches(0.005)


# -- bad input ----------------------------------------------------------------------------------------

_X = np.linspace(1.0, 2.0, 30)
_Y = np.linspace(0.5, 3.0, 30)


def _nan_at(array, index, value=math.nan):
    array = array.copy()
    array[index] = value
    return array


BAD_CALLS = {
    "name clashes with a function": (
        lambda: sparse_regression({"sin": _X}, _Y),
        ["'sin'", "clashes", "rename"],
    ),
    "name is not an identifier": (
        lambda: sparse_regression({"x y": _X}, _Y),
        ["'x y'", "identifier"],
    ),
    "no inputs": (lambda: sparse_regression({}, _Y), ["`inputs`", "no variables"]),
    "inputs of different lengths": (
        lambda: sparse_regression({"x": _X, "y": _Y[:20]}, _Y),
        ["inputs['y']", "(20,)", "(30,)"],
    ),
    "target of another length": (
        lambda: sparse_regression({"x": _X}, _Y[:10]),
        ["`target`", "(10,)", "(30,)"],
    ),
    "NaN in an input": (
        lambda: sparse_regression({"x": _X, "y": _nan_at(_Y, 4)}, _Y),
        ["inputs['y']", "non-finite", "index 4"],
    ),
    "inf in the target": (
        lambda: sparse_regression({"x": _X}, _nan_at(_Y, 7, math.inf)),
        ["`target`", "non-finite", "index 7"],
    ),
    "NaN in the weights": (
        lambda: sparse_regression({"x": _X}, _Y, weights=_nan_at(np.ones(30), 2)),
        ["`weights`", "non-finite", "index 2"],
    ),
    "negative weights": (
        lambda: sparse_regression({"x": _X}, _Y, weights=_nan_at(np.ones(30), 3, -1.0)),
        ["`weights`", ">= 0", "weights[3]"],
    ),
    "all-zero weights": (
        lambda: sparse_regression({"x": _X}, _Y, weights=np.zeros(30)),
        ["`weights`", "all zero"],
    ),
    "library term with an unknown variable": (
        lambda: sparse_regression({"x": _X, "y": _Y}, _Y, library=["x", "x*z"]),
        ["'x*z'", "z", "not a variable", "x, y"],
    ),
    "library term with an unknown function": (
        lambda: sparse_regression({"x": _X}, _Y, library=["foo(x)"]),
        ["'foo(x)'", "unknown function", "foo", "sin"],
    ),
    "library term that does not parse": (
        lambda: sparse_regression({"x": _X}, _Y, library=["x**"]),
        ["'x**'", "does not parse"],
    ),
    "duplicate library terms": (
        lambda: sparse_regression({"x": _X}, _Y, library=["x", "2*x"]),
        ["'x'", "'2*x'", "same term"],
    ),
    "library term not finite on the samples": (
        lambda: sparse_regression({"x": _X - 1.5}, _Y, library=["x", "log(x)"]),
        ["'log(x)'", "not finite", "x="],
    ),
    "empty library": (lambda: sparse_regression({"x": _X}, _Y, library=[]), ["`library`", "empty"]),
    "degree and library": (
        lambda: sparse_regression({"x": _X}, _Y, degree=2, library=["x"]),
        ["`degree`", "`library`", "not both"],
    ),
    "negative degree": (lambda: sparse_regression({"x": _X}, _Y, degree=-1), ["`degree`", ">= 0"]),
    "negative threshold": (
        lambda: sparse_regression({"x": _X}, _Y, threshold=-0.1),
        ["`threshold`", ">= 0", "-0.1"],
    ),
    "NaN threshold": (
        lambda: sparse_regression({"x": _X}, _Y, threshold=math.nan),
        ["`threshold`"],
    ),
    "fewer samples than terms": (
        lambda: sparse_regression({"x": _X[:3], "y": _Y[:3]}, _Y[:3], degree=2),
        ["3 weighted samples", "6 library terms", "fewer terms"],
    ),
    "unknown optimiser": (
        lambda: sparse_regression({"x": _X}, _Y, optimizer="lasso"),
        ["`optimizer`", "'lasso'", "'stlsq'", "'sr3'"],
    ),
    "threshold in the optimiser options": (
        lambda: sparse_regression({"x": _X}, _Y, optimizer_options={"threshold": 0.5}),
        ["`optimizer_options`", "'threshold'", "`threshold=`"],
    ),
    "optimiser options that do not fit": (
        lambda: sparse_regression({"x": _X}, _Y, optimizer_options={"bogus": 1}),
        ["`optimizer_options`", "STLSQ", "bogus"],
    ),
    "bad criterion": (
        lambda: select_model({"x": _X}, _Y, criterion="r2"),
        ["`criterion`", "'cv'", "'r2'"],
    ),
    "too few samples for the folds": (
        lambda: select_model({"x": _X[:9]}, _Y[:9], degree=1, folds=5),
        ["`folds=5`", "10 samples"],
    ),
    "evaluation without a variable": (
        lambda: SparseExpression({"x*y": 1.0}, ("x", "y"))({"x": _X}),
        ["`inputs`", "'y'", "x, y"],
    ),
    "as_terms with a parameter left in": (
        lambda: as_terms("-beta*x*y", ["x", "y"]),
        ["beta", "not a variable"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_input_raises_a_value_error_naming_it(case):
    call, pieces = BAD_CALLS[case]
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    for piece in pieces:
        assert piece in message, f"{piece!r} missing from: {message}"


def test_bad_types_raise_type_errors():
    with pytest.raises(TypeError, match="`inputs` must be a dict"):
        sparse_regression([_X], _Y)
    with pytest.raises(TypeError, match="`library` must be a list"):
        sparse_regression({"x": _X}, _Y, library="x*y")
    with pytest.raises(TypeError, match="`threshold` must be a number"):
        sparse_regression({"x": _X}, _Y, threshold="0.1")
    with pytest.raises(TypeError, match="`target` must hold numbers"):
        sparse_regression({"x": _X}, np.array(["a"] * 30))
