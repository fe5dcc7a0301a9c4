"""States: a tensor or a (nested) tuple/list/dict of tensors; float32, float64, complex64,
complex128; outputs follow the input's structure, dtype and device.

The problems have known solutions: the harmonic oscillator split across leaves,
``x = cos t, v = -sin t``, and the rotation ``y' = iωy``, ``y = y0 e^{iωt}``.
"""

from __future__ import annotations

import math
from collections import namedtuple

import pytest
import torch

import torchnde
from torchnde import ODETerm, PIDController, SaveAt, Status

F64 = torch.float64
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TS = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
COS, SIN = torch.cos(TS), torch.sin(TS)
PID = PIDController(rtol=1e-10, atol=1e-12)

Phase = namedtuple("Phase", ["x", "v"])


def _solve(f, y0, **kwargs):
    kwargs.setdefault("controller", PID)
    kwargs.setdefault("saveat", SaveAt(ts=TS))
    return torchnde.solve(ODETerm(f), torchnde.Dopri5(), 0.0, 2.0, y0, **kwargs)


def test_tuple_state():
    sol = _solve(
        lambda t, y, a: (y[1], -y[0]), (torch.ones(3, dtype=F64), torch.zeros(3, dtype=F64))
    )
    assert isinstance(sol.ys, tuple) and len(sol.ys) == 2
    assert sol.ys[0].shape == (3, 3)
    torch.testing.assert_close(sol.ys[0], COS[:, None].expand(3, 3), rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(sol.ys[1], -SIN[:, None].expand(3, 3), rtol=1e-8, atol=1e-9)


def test_namedtuple_and_list_states():
    sol = _solve(
        lambda t, y, a: Phase(y.v, -y.x),
        Phase(torch.tensor(1.0, dtype=F64), torch.tensor(0.0, dtype=F64)),
    )
    assert isinstance(sol.ys, Phase) and sol.ys.x.shape == (3,)
    torch.testing.assert_close(sol.ys.x, COS, rtol=1e-8, atol=1e-9)
    sol = _solve(
        lambda t, y, a: [y[1], -y[0]], [torch.ones(1, dtype=F64), torch.zeros(1, dtype=F64)]
    )
    assert isinstance(sol.ys, list)
    torch.testing.assert_close(sol.ys[1][:, 0], -SIN, rtol=1e-8, atol=1e-9)


def test_nested_dict_state_with_mixed_shapes():
    """Leaves of different shapes, including 0-dim, in a dict holding a tuple."""

    def f(t, y, args):
        return {
            "osc": (y["osc"][1], -y["osc"][0]),
            "decay": -y["decay"],
            "scalar": 2 * torch.ones_like(y["scalar"]),
        }

    y0 = {
        "osc": (torch.ones(2, 2, dtype=F64), torch.zeros(2, 2, dtype=F64)),
        "decay": torch.full((4,), 3.0, dtype=F64),
        "scalar": torch.tensor(1.0, dtype=F64),
    }
    sol = _solve(f, y0)
    assert list(sol.ys) == ["osc", "decay", "scalar"]
    assert sol.ys["osc"][0].shape == (3, 2, 2) and sol.ys["scalar"].shape == (3,)
    torch.testing.assert_close(sol.ys["osc"][0][:, 1, 1], COS, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(sol.ys["decay"][:, 0], 3 * torch.exp(-TS), rtol=1e-8, atol=0)
    torch.testing.assert_close(sol.ys["scalar"], 1 + 2 * TS, rtol=1e-12, atol=0)


def test_batched_tree_state():
    y0 = {"x": torch.tensor([1.0, 2.0], dtype=F64), "v": torch.zeros(2, dtype=F64)}
    sol = _solve(lambda t, y, a: {"x": y["v"], "v": -y["x"]}, y0, batch_axis=0)
    assert sol.ys["x"].shape == (2, 3) and sol.ts.shape == (2, 3)
    torch.testing.assert_close(sol.ys["x"], torch.stack([COS, 2 * COS]), rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(sol.ys["v"], torch.stack([-SIN, -2 * SIN]), rtol=1e-8, atol=1e-9)


def test_args_pass_through_untouched():
    marker = {"rate": torch.tensor(0.5, dtype=F64), "note": "anything"}
    seen = []

    def f(t, y, args):
        seen.append(args)
        return -args["rate"] * y

    sol = _solve(f, torch.ones(1, dtype=F64), args=marker)
    assert all(a is marker for a in seen)
    torch.testing.assert_close(sol.ys[:, 0], torch.exp(-0.5 * TS), rtol=1e-8, atol=0)


# ------------------------------------------------------------------------------------------------
# dtypes and devices

REAL_TOL = {torch.float32: 2e-5, torch.float64: 1e-8}
TIME_DTYPE = {
    torch.float32: torch.float32,
    torch.float64: torch.float64,
    torch.complex64: torch.float32,
    torch.complex128: torch.float64,
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_real_dtypes(dtype, device):
    tol = REAL_TOL[dtype]
    y0 = torch.tensor([1.0, -2.0], dtype=dtype, device=device)
    sol = torchnde.solve(
        ODETerm(lambda t, y, a: -t * y),  # y = y0 exp(-t²/2)
        torchnde.Dopri5(),
        0.0,
        2.0,
        y0,
        controller=PIDController(rtol=tol / 10, atol=tol / 100),
        saveat=SaveAt(ts=TS.to(dtype), t1=True, dense=True),
    )
    assert sol.ys.dtype == dtype and sol.ys.device == y0.device
    assert sol.ts.dtype == TIME_DTYPE[dtype] and sol.ts.device == y0.device
    times = torch.cat([TS, torch.tensor([2.0], dtype=F64)])
    exact = torch.exp(-(times**2) / 2)[:, None] * torch.tensor([1.0, -2.0], dtype=F64)
    torch.testing.assert_close(sol.ys.cpu().double(), exact, rtol=tol, atol=tol)
    dense = sol.evaluate(torch.tensor(1.5, dtype=TIME_DTYPE[dtype], device=device))
    assert dense.dtype == dtype and dense.device == y0.device
    torch.testing.assert_close(
        dense.cpu().double(), exact[0] / exact[0, 0] * math.exp(-1.125), rtol=tol, atol=tol
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_rotation(dtype, device):
    """y' = iωy: y(t) = y0 e^{iωt}; modulus conserved to tolerance."""
    omega = 3.0
    tol = 2e-5 if dtype == torch.complex64 else 1e-8
    y0 = torch.tensor([1.0 + 0.5j, -0.25j], dtype=dtype, device=device)
    sol = torchnde.solve(
        ODETerm(lambda t, y, a: 1j * omega * y),
        torchnde.Dopri5(),
        0.0,
        2.0,
        y0,
        controller=PIDController(rtol=tol / 10, atol=tol / 100),
        saveat=SaveAt(ts=TS.to(TIME_DTYPE[dtype]), t1=True),
    )
    assert sol.ys.dtype == dtype and sol.ys.device == y0.device
    assert sol.ts.dtype == TIME_DTYPE[dtype]
    times = torch.cat([TS, torch.tensor([2.0], dtype=F64)])
    exact = y0.cpu().to(torch.complex128) * torch.exp(1j * omega * times)[:, None]
    torch.testing.assert_close(sol.ys.cpu().to(torch.complex128), exact, rtol=tol, atol=tol)
    assert sol.statuses == [Status.SUCCESS]


def test_complex_state_with_a_real_time_tensor():
    """A float64 t1 tensor with a complex64 state: times promote, the state keeps its dtype."""
    y0 = torch.tensor([1.0 + 0.0j], dtype=torch.complex64)
    sol = torchnde.solve(
        ODETerm(lambda t, y, a: 1j * y),
        torchnde.Dopri5(),
        0.0,
        torch.tensor(math.pi, dtype=F64),
        y0,
        controller=PIDController(rtol=1e-6, atol=1e-7),
    )
    assert sol.ys.dtype == torch.complex64 and sol.ts.dtype == F64
    torch.testing.assert_close(
        sol.ys[0, 0], torch.tensor(-1.0 + 0.0j, dtype=torch.complex64), rtol=1e-5, atol=1e-5
    )


def test_python_save_times_take_the_state_dtype():
    """`SaveAt(ts=[...])` with Python numbers must not promote a float32 solve to float64 times
    (the vector field would then see float64 `t` and return float64)."""
    y0 = torch.ones(3, dtype=torch.float32)

    def f(t, y, args):
        return torch.cos(t) * y  # float32 only if t is float32

    sol = torchnde.solve(
        torchnde.ODETerm(f),
        torchnde.Dopri5(),
        0.0,
        1.0,
        y0,
        controller=torchnde.PIDController(rtol=1e-5, atol=1e-7),
        saveat=torchnde.SaveAt(ts=[0.25, 0.5, 1.0]),
    )
    assert sol.ts.dtype == torch.float32 and sol.ys.dtype == torch.float32
    expected = torch.exp(torch.sin(torch.tensor([0.25, 0.5, 1.0])))
    torch.testing.assert_close(sol.ys[:, 0], expected, rtol=1e-4, atol=0)
