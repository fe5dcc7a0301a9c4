"""ControlTerm noise types: how the diffusion meets the Brownian increment (general, leading axes
shared, diagonal, scalar, additive), on tensors, trees and batches; the shape errors; to_ode."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import torchnde as tn

F64 = torch.float64
torch.manual_seed(0)


def _bm(shape, batch_axis=None, levy=None):
    return tn.BrownianGrid(
        0.0, 1.0, shape, steps=4, seed=1, dtype=F64, batch_axis=batch_axis, levy_area=levy
    )


def _prod(noise, path, vf, y, batched=False):
    """``prod(vf, dW)`` after ``check`` has seen the state, with dW one increment of the path."""
    term = tn.ControlTerm(lambda t, y, a: vf, path, noise=noise)
    term.check(vf, y, batched)
    t0, t1 = torch.tensor(0.0, dtype=F64), torch.tensor(0.25, dtype=F64)
    if batched and path.batched:
        t0, t1 = t0.expand(y.shape[0] if torch.is_tensor(y) else 3), t1.expand_as(t0)
    dw = path.increment(t0, t1)
    return term.prod(vf, dw), dw, term


# ------------------------------------------------------------------------------------------------
# the products


def test_general_noise_contracts_every_channel_axis():
    """State (3,), path (2, 2): ``dy_i = Σ_cd g[i, c, d] dW[c, d]``."""
    g = torch.randn(3, 2, 2, dtype=F64)
    out, dw, _ = _prod("general", _bm((2, 2)), g, torch.zeros(3, dtype=F64))
    torch.testing.assert_close(out, torch.einsum("icd,cd->i", g, dw))


def test_leading_axes_shared_with_the_path_make_one_matrix_per_row():
    """State (batch, d) with a path (batch, m), torchsde's layout for a batch inside one problem:
    ``g`` returns (batch, d, m) and row b uses its own increment, ``dy[b] = g[b] @ dW[b]``."""
    g = torch.randn(4, 3, 2, dtype=F64)
    out, dw, _ = _prod("general", _bm((4, 2)), g, torch.zeros(4, 3, dtype=F64))
    torch.testing.assert_close(out, torch.einsum("bij,bj->bi", g, dw))


def test_the_state_decides_between_shared_axes_and_full_contraction():
    """The same g of shape (4, 4, 2) and path (4, 2) mean different things for a state (4, 4)
    (rows share the path's leading axis) and a state (4,) (contract both path axes)."""
    g = torch.randn(4, 4, 2, dtype=F64)
    path = _bm((4, 2))
    shared, dw, term = _prod("general", path, g, torch.zeros(4, 4, dtype=F64))
    torch.testing.assert_close(shared, torch.einsum("aij,aj->ai", g, dw))
    term.check(g, torch.zeros(4, dtype=F64), False)
    torch.testing.assert_close(term.prod(g, dw), torch.einsum("iaj,aj->i", g, dw))


def test_diagonal_noise_is_the_general_product_with_a_diagonal_matrix():
    g = torch.randn(4, 3, dtype=F64)
    y = torch.zeros(4, 3, dtype=F64)
    path = _bm((4, 3))
    diagonal, dw, _ = _prod("diagonal", path, g, y)
    general, _, _ = _prod("general", path, torch.diag_embed(g), y)
    torch.testing.assert_close(diagonal, general)
    torch.testing.assert_close(diagonal, g * dw)


def test_diagonal_noise_on_a_tuple_splits_a_flat_path_in_flatten_order():
    """Leaves (2,) and (2, 3) with a path (8,): entries 0–1 drive the first, 2–7 the second."""
    g = (torch.randn(2, dtype=F64), torch.randn(2, 3, dtype=F64))
    y = (torch.zeros(2, dtype=F64), torch.zeros(2, 3, dtype=F64))
    out, dw, _ = _prod("diagonal", _bm((8,)), g, y)
    assert isinstance(out, tuple)
    torch.testing.assert_close(out[0], g[0] * dw[:2])
    torch.testing.assert_close(out[1], g[1] * dw[2:].reshape(2, 3))


def test_diagonal_noise_on_a_dict_follows_key_order():
    g = {"b": torch.randn(3, dtype=F64), "a": torch.randn(1, dtype=F64)}
    y = {"b": torch.zeros(3, dtype=F64), "a": torch.zeros(1, dtype=F64)}
    out, dw, _ = _prod("diagonal", _bm((4,)), g, y)
    torch.testing.assert_close(out["b"], g["b"] * dw[:3])
    torch.testing.assert_close(out["a"], g["a"] * dw[3:])


@pytest.mark.parametrize(("state", "path_shape"), [((4, 3), (4, 1)), ((3,), (1,))])
def test_scalar_noise_broadcasts_its_one_channel(state, path_shape):
    g = torch.randn(*state, 1, dtype=F64)
    out, dw, _ = _prod("scalar", _bm(path_shape), g, torch.zeros(state, dtype=F64))
    expected = g[..., 0] * (dw if len(state) > 1 else dw[0])
    torch.testing.assert_close(out, expected)


def test_additive_noise_multiplies_like_general_noise():
    g = torch.randn(4, 3, 2, dtype=F64)
    y = torch.zeros(4, 3, dtype=F64)
    additive, dw, _ = _prod("additive", _bm((4, 2)), g, y)
    torch.testing.assert_close(additive, torch.einsum("bij,bj->bi", g, dw))


def test_batched_paths_meet_their_own_samples_under_batch_axis_0():
    """Under batch_axis=0 a batched path (one per sample) meets each sample's row; an unbatched
    path is shared by every sample."""
    y = torch.zeros(3, 2, dtype=F64)
    g = torch.randn(3, 2, 4, dtype=F64)
    out, dw, _ = _prod("general", _bm((3, 4), batch_axis=0), g, y, batched=True)
    assert dw.shape == (3, 4)
    torch.testing.assert_close(out, torch.einsum("bij,bj->bi", g, dw))
    d = torch.randn(3, 2, dtype=F64)
    out, dw, _ = _prod("diagonal", _bm((3, 2), batch_axis=0), d, y, batched=True)
    torch.testing.assert_close(out, d * dw)
    out, dw, _ = _prod("diagonal", _bm((2,)), d, y, batched=True)
    assert dw.shape == (2,)
    torch.testing.assert_close(out, d * dw[None])


def test_prod_before_check_infers_the_layout_from_the_diffusion():
    """``prod`` called directly (no solve has checked the shapes) gives the same numbers."""
    cases = (
        ("general", torch.randn(4, 3, 2, dtype=F64), (4, 2), (4, 3)),
        ("general", torch.randn(3, 2, 2, dtype=F64), (2, 2), (3,)),
        ("diagonal", torch.randn(4, 3, dtype=F64), (4, 3), (4, 3)),
        ("scalar", torch.randn(4, 3, 1, dtype=F64), (4, 1), (4, 3)),
    )
    for noise, g, path_shape, state in cases:
        path = _bm(path_shape)
        dw = path.increment(torch.tensor(0.0, dtype=F64), torch.tensor(0.5, dtype=F64))
        fresh = tn.ControlTerm(_constant(g), path, noise=noise).prod(g, dw)
        checked = tn.ControlTerm(_constant(g), path, noise=noise)
        checked.check(g, torch.zeros(state, dtype=F64), False)
        torch.testing.assert_close(fresh, checked.prod(g, dw))


def _constant(value):
    def g(t, y, args):
        return value

    return g


class _Ops(TorchDispatchMode):
    """Records the ATen operations run, apart from views and metadata."""

    VIEWS: ClassVar[set[str]] = {
        "view",
        "_unsafe_view",
        "unsqueeze",
        "squeeze",
        "expand",
        "reshape",
        "t",
        "alias",
    }

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in self.VIEWS:
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    ("noise", "g_shape", "path_shape", "op"),
    [("diagonal", (64, 16), (64, 16), "mul"), ("general", (64, 16, 8), (64, 8), "bmm")],
)
def test_the_fast_paths_are_one_operation(noise, g_shape, path_shape, op):
    """Diagonal noise is one elementwise product, the shared-axes form one batched matrix
    product: nothing else runs on the data (the B5 benchmark's hot path)."""
    g = torch.randn(*g_shape)
    path = tn.BrownianGrid(0.0, 1.0, path_shape, steps=4, seed=2)
    term = tn.ControlTerm(lambda t, y, a: g, path, noise=noise)
    term.check(
        g, torch.zeros(path_shape[:-1] + g_shape[-2:-1] if noise == "general" else g_shape), False
    )
    dw = path.increment(torch.tensor(0.0), torch.tensor(0.25))
    with _Ops() as mode:
        term.prod(g, dw)
    assert mode.ops == [op]


# ------------------------------------------------------------------------------------------------
# shape errors name the diffusion, the noise type, the expected and the actual shapes


def _zero(t, y, args):
    return y * 0 if torch.is_tensor(y) else tuple(v * 0 for v in y)


def _solve_with(g, path, noise, y0):
    term = tn.MultiTerm(tn.ODETerm(_zero), tn.ControlTerm(g, path, noise=noise))
    return tn.solve(term, tn.EulerMaruyama(), 0.0, 1.0, y0, dt0=0.25)


def test_a_general_diffusion_of_the_wrong_shape_is_named():
    def sigma(t, y, a):
        return y

    with pytest.raises(ValueError) as err:
        _solve_with(sigma, _bm((2,)), "general", torch.ones(3, dtype=F64))
    msg = str(err.value)
    for part in ("`sigma`", "noise='general'", "returned shape (3,)", "expected (3, 2)"):
        assert part in msg, msg


def test_shared_leading_axes_are_offered_in_the_message():
    def sigma(t, y, a):
        return torch.ones(4, 3, 5, dtype=F64)

    with pytest.raises(ValueError, match=r"expected \(4, 3, 4, 2\) or \(4, 3, 2\)"):
        _solve_with(sigma, _bm((4, 2)), "general", torch.ones(4, 3, dtype=F64))


def test_a_diagonal_diffusion_returning_a_matrix_is_named():
    def sigma(t, y, a):
        return torch.diag_embed(y)

    with pytest.raises(ValueError) as err:
        _solve_with(sigma, _bm((3,)), "diagonal", torch.ones(3, dtype=F64))
    msg = str(err.value)
    for part in ("`sigma`", "noise='diagonal'", "returned shape (3, 3)", "expected (3,)"):
        assert part in msg, msg
    assert "noise='general'" in msg


def test_a_diagonal_path_of_the_wrong_shape_is_named():
    with pytest.raises(ValueError, match=r"one channel per state entry, shaped \(3,\).*\(2,\)"):
        _solve_with(lambda t, y, a: y, _bm((2,)), "diagonal", torch.ones(3, dtype=F64))


def test_scalar_noise_needs_one_channel():
    with pytest.raises(ValueError, match=r"noise='scalar'.*one channel.*\(2,\)"):
        _solve_with(lambda t, y, a: y[:, None], _bm((2,)), "scalar", torch.ones(3, dtype=F64))


def test_additive_noise_of_the_wrong_shape_is_named():
    with pytest.raises(ValueError, match=r"noise='additive'\) returned shape \(3,\)"):
        _solve_with(
            lambda t, y, a: torch.ones(3, dtype=F64),
            _bm((2,)),
            "additive",
            torch.ones(3, dtype=F64),
        )


def test_an_unknown_noise_type_lists_the_known_ones():
    with pytest.raises(ValueError, match="'general', 'diagonal', 'scalar', 'additive'"):
        tn.ControlTerm(lambda t, y, a: y, _bm((2,)), noise="multiplicative")


def test_a_diffusion_of_the_wrong_dtype_or_structure_is_named():
    with pytest.raises(TypeError, match=r"dtype torch\.float32"):
        _solve_with(lambda t, y, a: y.float(), _bm((3,)), "diagonal", torch.ones(3, dtype=F64))
    y0 = (torch.ones(2, dtype=F64), torch.ones(1, dtype=F64))
    with pytest.raises(ValueError, match=r"ControlTerm, noise='diagonal'\) returned Tensor"):
        _solve_with(lambda t, y, a: y[0], _bm((3,)), "diagonal", y0)


# ------------------------------------------------------------------------------------------------
# the rest of the term


def test_to_ode_keeps_the_noise_type():
    """Driven by the smooth path X(t) = t·c, the increment form and the derivative form
    ``g ⊙ c`` (diagonal) or ``g @ c`` per row (shared axes) take the same Euler steps."""
    ts = torch.linspace(0.0, 1.0, 3, dtype=F64)
    for noise, c, g, y0 in (
        (
            "diagonal",
            torch.tensor([1.0, -2.0], dtype=F64),
            lambda t, y, a: torch.sin(y),
            torch.ones(2, dtype=F64),
        ),
        (
            "general",
            torch.tensor([[1.0, 0.5], [-1.0, 2.0], [0.3, 0.0]], dtype=F64),
            lambda t, y, a: torch.stack([torch.cos(y), y], dim=-1),
            torch.ones(3, 4, dtype=F64),
        ),
    ):
        path = tn.LinearInterpolation(ts, ts.reshape(-1, *([1] * c.ndim)) * c)
        term = tn.ControlTerm(g, path, noise=noise)
        increments = tn.solve(term, tn.Euler(), 0.0, 1.0, y0, dt0=0.125).ys
        derivative = tn.solve(term.to_ode(), tn.Euler(), 0.0, 1.0, y0, dt0=0.125).ys
        torch.testing.assert_close(increments, derivative, rtol=0, atol=1e-14)


def test_sde_noise_tells_sdes_from_cdes():
    smooth = tn.LinearInterpolation(torch.linspace(0, 1, 3), torch.randn(3, 2))
    drift = tn.ODETerm(lambda t, y, a: -y)
    assert tn.terms.sde_noise(drift) is None
    assert tn.terms.sde_noise(tn.ControlTerm(lambda t, y, a: y, smooth)) is None
    sde = tn.MultiTerm(drift, tn.ControlTerm(lambda t, y, a: y, _bm((2,)), noise="diagonal"))
    assert tn.terms.sde_noise(sde) == "diagonal"


def test_repr_shows_a_noise_type_other_than_general():
    def sigma(t, y, a):
        return y

    assert "noise='diagonal'" in repr(tn.ControlTerm(sigma, _bm((2,)), noise="diagonal"))
    assert "noise" not in repr(tn.ControlTerm(sigma, _bm((2,))))
