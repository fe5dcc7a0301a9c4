"""The compiled solve (``solve(..., compile=...)``): the same answers, statuses, statistics and
gradients as the eager loop, compiled once per structure.

The suite compiles with the ``"eager"`` backend: TorchDynamo captures the same graphs as under
``"inductor"`` (the whole ``while_loop`` in loop mode, unrolled passes in chunk mode, one
step in step mode: what fails to capture fails here too) and runs them without code generation,
which costs minutes of compile time per structure on a 2-core machine; the gradient tests use
``"aot_eager"``, so AOTAutograd builds the backward as inductor does. The same checks under inductor:
``TORCHNDE_COMPILE_BACKEND=inductor pytest tests/test_compiled.py``.
"""

from __future__ import annotations

import os

import pytest
import torch

import torchnde as tn
from torchnde import Status

pytestmark = pytest.mark.xdist_group("compiled")  # one process: the compiled cache is shared

BACKEND = os.environ.get("TORCHNDE_COMPILE_BACKEND", "eager")
GRAD_BACKEND = os.environ.get("TORCHNDE_COMPILE_BACKEND", "aot_eager")
F64 = torch.float64


def _vdp(t, y, mu):
    x, v = y[..., 0], y[..., 1]
    return torch.stack([v, mu * (1 - x**2) * v - x], -1)


def _info(mode, solver="Dopri5", field=""):
    rows = [
        r
        for r in tn.compile_info()
        if r["mode"] == mode and r["solver"] == solver and field in str(r["terms"])
    ]
    return rows[0] if rows else None


def _same(a, b, rtol=1e-12):
    torch.testing.assert_close(a, b, rtol=rtol, atol=1e-12, equal_nan=True)


def test_the_whole_adaptive_loop_compiled_equals_eager_and_compiles_once():
    """Loop mode (no autograd): values at t0, ts and t1, statuses and every statistic as the
    eager loop's; a second solve of the same structure (a new term object, another y0 and
    other save times) reuses the compiled loop."""
    ts = torch.linspace(0, 6, 7, dtype=F64)
    kw = dict(
        args=5.0,
        controller=tn.PIDController(rtol=1e-6, atol=1e-8),
        saveat=tn.SaveAt(t0=True, ts=ts, t1=True),
    )
    y0 = torch.tensor([2.0, 0.0], dtype=F64)
    eager = tn.solve(tn.ODETerm(_vdp), tn.Dopri5(), 0.0, 6.0, y0, **kw)
    with torch.no_grad():
        compiled = tn.solve(tn.ODETerm(_vdp), tn.Dopri5(), 0.0, 6.0, y0, compile=BACKEND, **kw)
    _same(compiled.ys, eager.ys)
    _same(compiled.ts, eager.ts)
    assert compiled.statuses == eager.statuses == [Status.SUCCESS]
    for name, value in eager.stats.items():
        assert int(compiled.stats[name]) == int(value), name
    info = _info("loop", field="_vdp")
    assert info is not None and info["compiles"] == 1 and info["calls"] == 1
    # same structure, other values: no recompilation
    kw["saveat"] = tn.SaveAt(t0=True, ts=ts * 0.9, t1=True)
    y1 = torch.tensor([1.0, 0.5], dtype=F64)
    again = tn.solve(tn.ODETerm(_vdp), tn.Dopri5(), 0.0, 6.0, y1, **kw)
    with torch.no_grad():
        fast = tn.solve(tn.ODETerm(_vdp), tn.Dopri5(), 0.0, 6.0, y1, compile=BACKEND, **kw)
    _same(fast.ys, again.ys)
    info = _info("loop", field="_vdp")
    assert info["compiles"] == 1 and info["calls"] == 2


def test_compiled_loop_keeps_per_sample_statuses_under_a_batch():
    """batch_axis=0 with per-sample steps: a sample that runs out of steps ends MAX_STEPS with NaN
    outputs, the others are solved, exactly as in the eager loop (tuple state)."""
    y0 = (
        torch.tensor([[2.0], [0.5], [1.0]], dtype=F64),
        torch.tensor([[0.0], [0.0], [-40.0]], dtype=F64),
    )

    def field(t, y, mu):
        x, v = y
        return v, mu * (1 - x**2) * v - x

    kw = dict(
        args=torch.tensor([[5.0], [1.0], [30.0]], dtype=F64),
        controller=tn.PIDController(rtol=1e-5, atol=1e-7),
        saveat=tn.SaveAt(ts=torch.linspace(0, 4, 5, dtype=F64)),
        max_steps=60,
        throw=False,
        batch_axis=0,
    )
    eager = tn.solve(tn.ODETerm(field), tn.Dopri5(), 0.0, 4.0, y0, **kw)
    with torch.no_grad():
        compiled = tn.solve(tn.ODETerm(field), tn.Dopri5(), 0.0, 4.0, y0, compile=BACKEND, **kw)
    assert eager.statuses.count(Status.MAX_STEPS) >= 1  # the check below means something
    assert compiled.statuses == eager.statuses
    for a, b in zip(compiled.ys, eager.ys):
        _same(a, b)
    for name, value in eager.stats.items():
        assert torch.equal(compiled.stats[name], value), name


@pytest.mark.parametrize("batched", [True, False])
def test_compiled_loop_saves_every_time_of_a_step_that_spans_several(batched):
    """The compiled loop writes one save time per sample and iteration, and a sample whose step
    holds several waits for them without being stepped: with far more save times than steps
    (samples of different speeds, one that runs out of steps), values, statuses and every
    statistic are the eager loop's."""
    ts = torch.linspace(0.0, 4.0, 41, dtype=F64)
    if batched:
        y0 = torch.tensor([[2.0, 0.0], [0.5, 0.0], [1.0, -3.0]], dtype=F64)
        args = torch.tensor([[0.2], [1.0], [8.0]], dtype=F64)
        kw = dict(controller=tn.PIDController(rtol=1e-3, atol=1e-5), batch_axis=0, max_steps=25)
    else:
        y0, args = torch.tensor([2.0, 0.0], dtype=F64), 0.5
        kw = dict(dt0=0.35)

    def field(t, y, mu):
        return _vdp(t, y, mu[..., 0] if isinstance(mu, torch.Tensor) else mu)

    kw.update(args=args, saveat=tn.SaveAt(ts=ts, t1=True), throw=False)
    with torch.no_grad():
        eager = tn.solve(tn.ODETerm(field), tn.Dopri5(), 0.0, 4.0, y0, **kw)
        compiled = tn.solve(tn.ODETerm(field), tn.Dopri5(), 0.0, 4.0, y0, compile=BACKEND, **kw)
    assert int(eager.stats["num_accepted"].min()) < len(ts) // 2  # steps hold several saves
    if batched:
        assert Status.MAX_STEPS in eager.statuses and Status.SUCCESS in eager.statuses
    assert compiled.statuses == eager.statuses
    _same(compiled.ys, eager.ys)
    for name, value in eager.stats.items():
        assert torch.equal(torch.as_tensor(compiled.stats[name]), torch.as_tensor(value)), name
    info = _info("loop", field="field")
    assert info is not None and info["failed"] is None


def test_compiled_chunks_give_the_eager_gradients():
    """Chunk mode (autograd on): the loop runs as calls of unrolled passes, and the gradients
    with respect to a parameter and y0 are the eager ones (fixed steps, a dict state)."""
    w = torch.tensor([[0.1, -1.0], [1.0, -0.2]], dtype=F64, requires_grad=True)

    def field(t, y, args):
        return {"z": torch.tanh(y["z"] @ w.T)}

    y0 = {"z": torch.tensor([1.0, 0.5], dtype=F64, requires_grad=True)}
    kw = dict(dt0=0.05, saveat=tn.SaveAt(ts=torch.tensor([0.3, 1.0], dtype=F64)))
    grads = []
    for compile in (False, GRAD_BACKEND):
        sol = tn.solve(tn.ODETerm(field), tn.RK4(), 0.0, 1.0, y0, compile=compile, **kw)
        grads.append(torch.autograd.grad(sol.ys["z"].square().sum(), (w, y0["z"])))
    for a, b in zip(*grads):
        _same(a, b)
    assert _info("chunk", "RK4")["compiles"] == 1


@pytest.mark.parametrize("mode", ["chunk", "step"])
def test_training_from_a_constant_start_compiles_once(mode):
    """Training a field from data (``y0`` a constant, the parameters require grad): the first
    step's state does not require grad, the later ones do. Chunk mode runs eager passes until
    that settles, step mode (here because of dense output) runs such steps eagerly, so each
    compiles once over two solves, with the eager gradients."""
    w = torch.tensor([[0.1, -1.0], [1.0, -0.2]], dtype=F64, requires_grad=True)

    def field(t, y, args):
        return torch.tanh(y @ w.T)

    y0 = torch.tensor([1.0, 0.5], dtype=F64)
    saveat = tn.SaveAt(ts=torch.tensor([0.3, 1.0], dtype=F64), dense=mode == "step")
    kw = dict(saveat=saveat, controller=tn.PIDController(rtol=1e-6, atol=1e-8))
    grads = []
    for compile in (False, GRAD_BACKEND, GRAD_BACKEND):
        sol = tn.solve(tn.ODETerm(field), tn.Tsit5(), 0.0, 1.0, y0, compile=compile, **kw)
        grads.append(torch.autograd.grad(sol.ys.square().sum(), w)[0])
    _same(grads[1], grads[0])
    _same(grads[2], grads[0])
    info = _info(mode, "Tsit5")
    assert info["compiles"] == 1
    if mode == "step":
        assert info["calls"] == 2 * (sol.stats["num_steps"] - 1)


def test_compiled_chunks_of_a_batch_give_the_eager_gradients():
    """Chunk mode with per-sample step control, samples of different speeds, and save times
    that several steps span: values, statistics and gradients are the eager ones."""
    mu = torch.tensor(2.0, dtype=F64, requires_grad=True)
    y0 = torch.tensor([[2.0, 0.0], [0.5, 0.1], [-1.0, 1.0]], dtype=F64)
    kw = dict(
        args=mu,
        saveat=tn.SaveAt(ts=torch.linspace(0.0, 3.0, 41, dtype=F64)),
        controller=tn.PIDController(rtol=1e-6, atol=1e-8),
        batch_axis=0,
    )
    out = []
    for compile in (False, GRAD_BACKEND):
        sol = tn.solve(tn.ODETerm(_vdp), tn.Dopri5(), 0.0, 3.0, y0, compile=compile, **kw)
        out.append((sol, torch.autograd.grad(sol.ys.square().sum(), mu)[0]))
    (eager, g_eager), (comp, g_comp) = out
    _same(comp.ys.detach(), eager.ys.detach(), rtol=1e-10)
    for name in ("num_steps", "num_accepted", "nfe"):
        assert torch.equal(comp.stats[name], eager.stats[name])
    _same(g_comp, g_eager, rtol=1e-10)
    assert _info("chunk", "Dopri5", "_vdp")["compiles"] == 1


def test_compiled_steps_with_events_and_dense_output_equal_eager():
    """Events and dense output keep the eager event and save phases around the compiled step."""
    event = tn.Event(lambda t, y, args: y[0], terminal=True)

    def fall(t, y, args):
        return torch.stack([y[1], torch.full_like(y[0], -9.81)])

    y0 = torch.tensor([10.0, 0.0], dtype=F64)
    kw = dict(
        controller=tn.PIDController(rtol=1e-8, atol=1e-10),
        saveat=tn.SaveAt(dense=True, t1=True),
        event=event,
    )
    eager = tn.solve(tn.ODETerm(fall), tn.Dopri5(), 0.0, 5.0, y0, **kw)
    with torch.no_grad():
        compiled = tn.solve(tn.ODETerm(fall), tn.Dopri5(), 0.0, 5.0, y0, compile=BACKEND, **kw)
    assert compiled.statuses == eager.statuses == [Status.EVENT]
    _same(compiled.event_t, eager.event_t)
    assert abs(float(compiled.event_t) - (20 / 9.81) ** 0.5) < 1e-8
    t = torch.tensor([0.3, 1.1], dtype=F64)
    _same(compiled.evaluate(t), eager.evaluate(t))


def test_compile_refuses_what_it_cannot_capture():
    term, y0 = tn.ODETerm(lambda t, y, a: -y), torch.ones(2)
    with pytest.raises(ValueError, match=r"Kvaerno5\(\) cannot be compiled.*compile=False"):
        tn.solve(term, tn.Kvaerno5(), 0.0, 1.0, y0, dt0=0.1, compile=True)
    with pytest.raises(ValueError, match=r"`compile` must be True, False or .*'inductor'"):
        tn.solve(term, tn.RK4(), 0.0, 1.0, y0, dt0=0.1, compile="fast")


def test_clear_compiled_forgets_the_cache():
    with torch.no_grad():
        tn.solve(tn.ODETerm(lambda t, y, a: -y), tn.Euler(), 0.0, 1.0, torch.ones(2), dt0=0.5)
        tn.solve(
            tn.ODETerm(lambda t, y, a: -y),
            tn.Euler(),
            0.0,
            1.0,
            torch.ones(2),
            dt0=0.5,
            compile=BACKEND,
        )
    assert _info("loop", "Euler") is not None
    tn.clear_compiled()
    assert tn.compile_info() == []


def test_a_loop_that_cannot_be_captured_whole_falls_back_to_compiled_steps():
    """A field that uses ``w.T`` in every stage lifts that tensor into the while_loop twice, which
    TorchDynamo refuses (aliased inputs of a higher-order op): the solve warns once, compiles
    step by step instead and gives the eager answer; the structure is not tried again."""
    w = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=F64)

    def rotate(t, y, args):
        return y @ w.T

    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    kw = dict(dt0=0.1, saveat=tn.SaveAt(ts=torch.tensor([0.5, 1.0], dtype=F64)))
    eager = tn.solve(tn.ODETerm(rotate), tn.Midpoint(), 0.0, 1.0, y0, **kw)
    with torch.no_grad(), pytest.warns(UserWarning, match="each step is compiled instead"):
        compiled = tn.solve(tn.ODETerm(rotate), tn.Midpoint(), 0.0, 1.0, y0, compile=BACKEND, **kw)
    _same(compiled.ys, eager.ys)
    assert _info("loop", "Midpoint", "rotate")["failed"]
    with torch.no_grad():
        again = tn.solve(tn.ODETerm(rotate), tn.Midpoint(), 0.0, 1.0, y0, compile=BACKEND, **kw)
    _same(again.ys, eager.ys)


def _compilable_solvers():
    return sorted(
        name
        for name, cls in vars(tn).items()
        if isinstance(cls, type)
        and issubclass(cls, tn.AbstractSolver)
        and getattr(cls, "supports_compile", False)
        and not name.startswith("Abstract")
    )


def _oscillator_state(layout: str, batched: bool):
    """A damped oscillator's state as a tensor, a tuple or a dict, with or without a batch."""
    x = torch.tensor([1.0, 0.5, -0.8], dtype=F64) if batched else torch.tensor(1.0, dtype=F64)
    v = torch.zeros_like(x) + 0.3
    if layout == "tensor":
        return torch.stack([x, v], -1)
    return (x, v) if layout == "tuple" else {"x": x, "v": v}


def _leaves(tree):
    if isinstance(tree, dict):
        return list(tree.values())
    return list(tree) if isinstance(tree, tuple) else [tree]


def _oscillator(t, y, args):
    if isinstance(y, torch.Tensor):
        x, v = y[..., 0], y[..., 1]
        return torch.stack([v, -x - 0.1 * v * torch.cos(t)], -1)
    x, v = (y["x"], y["v"]) if isinstance(y, dict) else y
    out = (v, -x - 0.1 * v * torch.cos(t))
    return {"x": out[0], "v": out[1]} if isinstance(y, dict) else out


@pytest.mark.parametrize("index", range(len(_compilable_solvers())))
def test_every_compilable_solver_runs_its_whole_loop_compiled_as_eager(index):
    """The solver database: every explicit solver that declares ``supports_compile``, adaptive
    when it has an error estimate and with constant steps otherwise, over tensor, tuple and dict
    states with and without a batch axis (rotated through the solvers), compiled whole (loop
    mode) gives the eager values, statuses and statistics."""
    name = _compilable_solvers()[index]
    solver = getattr(tn, name)()
    layout = ("tensor", "tuple", "dict")[index % 3]
    batched = index % 2 == 0
    y0 = _oscillator_state(layout, batched)
    kw = dict(
        saveat=tn.SaveAt(t0=True, ts=torch.linspace(0.0, 3.0, 4, dtype=F64), t1=True),
        batch_axis=0 if batched else None,
    )
    if solver.error_order is not None:
        kw["controller"] = tn.PIDController(rtol=1e-6, atol=1e-8)
    else:
        kw["dt0"] = 0.05
    with torch.no_grad():
        eager = tn.solve(tn.ODETerm(_oscillator), solver, 0.0, 3.0, y0, **kw)
        compiled = tn.solve(tn.ODETerm(_oscillator), solver, 0.0, 3.0, y0, compile=BACKEND, **kw)
    for a, b in zip(_leaves(compiled.ys), _leaves(eager.ys)):
        _same(a, b, rtol=1e-10)
    assert compiled.statuses == eager.statuses
    for stat, value in eager.stats.items():
        assert torch.equal(torch.as_tensor(compiled.stats[stat]), torch.as_tensor(value)), stat
    info = _info("loop", name, "_oscillator")
    assert info is not None and info["failed"] is None and info["calls"] >= 1


def _ulps(value: torch.Tensor, exact: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``|value − exact|`` in units in the last place of ``exact`` rounded to ``dtype``."""
    near = exact.to(dtype).abs()
    ulp = (torch.nextafter(near, torch.full_like(near, float("inf"))) - near).double()
    return (value.double() - exact).abs() / ulp


def test_compiled_tanh_is_within_two_ulps_of_the_exact_value():
    """Inductor computes float32 ``tanh`` on CPU as ``sign(x)·(1 − 2/(exp(2|x|) + 1))``, or
    ``x·P(x²)`` for small ``|x|`` (faster there than its own ``tanh``): within 2 ulp of the
    exact value across the range, tiny arguments included, as written and as inductor compiles
    it; signed zeros, infinities and NaN as ``tanh``'s."""
    import shutil

    from torch._inductor.compile_fx import compile_fx

    from torchnde._compiled import _decompositions, _tanh

    assert _decompositions()[torch.ops.aten.tanh.default] is _tanh
    xs = torch.linspace(-20.0, 20.0, 400_001, dtype=F64)
    xs = torch.cat([xs, torch.logspace(-40, 1, 4001, dtype=F64), -torch.logspace(-40, 1, 4001)])
    xs = xs.float()
    exact = torch.tanh(xs.double())
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-45, -50.0])
    ways = [_tanh]
    if shutil.which("c++") or shutil.which("g++"):  # inductor's C++ backend needs a compiler
        ways.append(
            torch.compile(
                torch.tanh,
                fullgraph=True,
                backend=lambda gm, args: compile_fx(gm, args, decompositions=_decompositions()),
            )
        )
    for tanh in ways:
        worst = float(_ulps(tanh(xs), exact, torch.float32).max())
        assert worst <= 2.0, (tanh, worst)
        out = tanh(special)
        torch.testing.assert_close(out, torch.tanh(special), rtol=0, atol=0, equal_nan=True)
        assert torch.equal(torch.signbit(out[:2]), torch.tensor([False, True]))
    for other in (torch.float64, torch.float16, torch.bfloat16, torch.complex64):
        assert _tanh(torch.zeros(3, dtype=other)) is NotImplemented
