"""COMPILED — torchnde's compiled solve (``solve(..., compile=True)``) against its eager loop and
diffrax (jitted), side by side in one process, as issue 13 asks.

Problems (Dopri5, rtol 1e-6, atol 1e-8, 10 save times; inference under ``torch.no_grad()``
except ``b2`` and ``train``, which take a gradient):

* ``vdp1`` — Van der Pol μ = 10 on [0, 10] from (2, 0), one problem (B3 with batch 1);
* ``vdp1024`` — the same for 1024 initial conditions uniform in [-2, 2]² with per-sample step
  control (B3: torchnde ``batch_axis=0``; diffrax under ``jax.vmap``);
* ``mlp`` — B1's neural ODE (``nn.Linear`` layers 32→64→64→32, tanh, batch 256, weights
  N(0, 2.5²/fan_in), seed 0) in float32, one step size for the batch (diffrax: the same weights
  in ``jax.numpy``);
* ``b2`` — B1's neural ODE with gradients (B2): the loss ``sum(w * ys)`` for a fixed random
  ``w`` and its gradient with respect to the network's weights (torchnde: ``DirectAdjoint``,
  the loop compiled in chunks of unrolled passes under autograd; diffrax:
  ``jax.value_and_grad`` under ``jax.jit``, its default ``RecursiveCheckpointAdjoint``);
* ``train`` — one training iteration of the demo's kind (autograd on): the hybrid Lotka–Volterra
  field ``(1.1x + NN1(x, y), NN2(x, y) − θy)`` with two 2→32→32→1 tanh networks, 22 windows
  of 8 observations solved together by Tsit5 at a fixed step 0.1 over [0, 0.7], float32; the
  time is the forward solve plus the gradient of the mean squared error with respect to the
  networks and θ (torchnde: ``DirectAdjoint``, the loop compiled in chunks of unrolled passes
  under autograd; diffrax:
  ``jax.value_and_grad`` under ``jax.jit``, its default ``RecursiveCheckpointAdjoint``).

Rows: torchnde eager (the default loop), torchnde compiled (inductor; the whole loop is one
``torch.while_loop``, or for ``train`` calls of 8 unrolled passes; ``tanh`` as in
``torchnde._compiled._tanh``), torchode on ``vdp1024`` (per-sample steps, as in B3), diffrax
``diffeqsolve`` under ``jax.jit`` (``PIDController`` with the
same tolerances; its default safety factors differ slightly, so step counts can differ by a
few). Compile time (the first call, minus one run) is printed apart and excluded from the
medians. Clock: process CPU time, one torch thread, one XLA thread.

``python -m benchmarks.compiled_bench [--problems vdp1 vdp1024 mlp b2 train] [--repeats N]``, or
``python -m benchmarks.run --case COMPILED``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import torch

import torchnde

RTOL, ATOL = 1e-6, 1e-8
PROBLEMS = ("vdp1", "vdp1024", "mlp", "b2", "train")


def _vdp(t, y, mu):
    x, v = y[..., 0], y[..., 1]
    return torch.stack([v, mu * (1 - x * x) * v - x], -1)


def _mlp_weights(dtype):
    gen = torch.Generator().manual_seed(0)
    sizes = [(32, 64), (64, 64), (64, 32)]
    return [
        (
            torch.randn(o, i, generator=gen, dtype=dtype) * 2.5 / i**0.5,
            torch.randn(o, generator=gen, dtype=dtype) * 0.1,
        )
        for i, o in sizes
    ]


def _mlp_module(dtype) -> torch.nn.Sequential:
    """B1's field as users write it (``nn.Linear`` layers), with :func:`_mlp_weights`. (A field
    computing ``y @ w.T`` on closed-over weights is not captured as one ``while_loop``: TorchDynamo
    lifts ``w`` and ``w.T`` as aliased inputs, and the solve falls back to compiled steps.)"""
    layers = []
    for k, (w, b) in enumerate(_mlp_weights(dtype)):
        linear = torch.nn.Linear(w.shape[1], w.shape[0], dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(w)
            linear.bias.copy_(b)
        layers += [linear, torch.nn.Tanh()] if k < 2 else [linear]
    return torch.nn.Sequential(*layers)


def _hybrid_nets() -> torch.nn.ModuleList:
    gen = torch.Generator().manual_seed(0)
    nets = torch.nn.ModuleList()
    for _ in range(2):
        layers = [torch.nn.Linear(2, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32)]
        layers += [torch.nn.Tanh(), torch.nn.Linear(32, 1)]
        net = torch.nn.Sequential(*layers)
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        nets.append(net)
    return nets


def _train_data():
    """(y0 (22, 2), ts (8,), target (22, 8, 2)) of the ``train`` problem."""
    gen = torch.Generator().manual_seed(1)
    y0 = 5 + 10 * torch.rand(22, 2, generator=gen)
    ts = torch.linspace(0.0, 0.7, 8)
    return y0, ts, y0[:, None, :] + torch.randn(22, 8, 2, generator=gen)


def _train_runner(compile: bool | str) -> Callable[[], torchnde.Solution]:
    nets, theta = _hybrid_nets(), torch.nn.Parameter(torch.tensor(0.1))
    y0, ts, target = _train_data()

    def field(t, y, args):
        x, v = y[..., :1], y[..., 1:]
        return torch.cat([1.1 * x + nets[0](y), nets[1](y) - theta * v], -1)

    term = torchnde.ODETerm(field)

    def run():
        sol = torchnde.solve(term, torchnde.Tsit5(), 0.0, 0.7, y0, dt0=0.1,
                             saveat=torchnde.SaveAt(ts=ts), compile=compile)  # fmt: skip
        loss = (sol.ys.transpose(0, 1) - target).square().mean()
        nets.zero_grad()
        theta.grad = None
        loss.backward()
        return sol

    return run


def _problem(name: str):
    """(field, y0, t1, ts, args, batch_axis) for torchnde."""
    if name.startswith("vdp"):
        batch = 1 if name == "vdp1" else 1024
        if batch == 1:
            y0 = torch.tensor([2.0, 0.0], dtype=torch.float64)
        else:
            gen = torch.Generator().manual_seed(0)
            y0 = torch.rand(batch, 2, generator=gen, dtype=torch.float64) * 4 - 2
        ts = torch.linspace(0.0, 10.0, 10, dtype=torch.float64)
        return _vdp, y0, 10.0, ts, 10.0, (None if batch == 1 else 0)
    net = _mlp_module(torch.float32)

    def mlp(t, y, args):
        return net(y)

    mlp.net = net

    y0 = torch.randn(256, 32, generator=torch.Generator().manual_seed(1))
    ts = torch.linspace(0.0, 1.0, 10)
    return mlp, y0, 1.0, ts, None, None


def _b2_weights() -> torch.Tensor:
    """The fixed ``w`` of the ``b2`` loss ``sum(w * ys)``: ``(10, 256, 32)``."""
    return torch.randn(10, 256, 32, generator=torch.Generator().manual_seed(2))


def _b2_runner(compile: bool | str) -> Callable[[], torchnde.Solution]:
    field, y0, t1, ts, _, _ = _problem("mlp")
    net, w = field.net, _b2_weights()
    term, solver = torchnde.ODETerm(field), torchnde.Dopri5()
    controller = torchnde.PIDController(rtol=RTOL, atol=ATOL)

    def run():
        sol = torchnde.solve(term, solver, 0.0, t1, y0, saveat=torchnde.SaveAt(ts=ts),
                             controller=controller, compile=compile)  # fmt: skip
        net.zero_grad()
        (w * sol.ys).sum().backward()
        run.grads = [p.grad.clone() for p in net.parameters()]
        return sol

    return run


def _torch_runner(name: str, compile: bool | str) -> Callable[[], torchnde.Solution]:
    if name == "train":
        return _train_runner(compile)
    if name == "b2":
        return _b2_runner(compile)
    field, y0, t1, ts, args, batch_axis = _problem(name)
    term, solver = torchnde.ODETerm(field), torchnde.Dopri5()
    controller = torchnde.PIDController(rtol=RTOL, atol=ATOL)

    def run():
        with torch.no_grad():
            return torchnde.solve(
                term,
                solver,
                0.0,
                t1,
                y0,
                args=args,
                saveat=torchnde.SaveAt(ts=ts),
                controller=controller,
                batch_axis=batch_axis,
                compile=compile,
            )

    return run


def _jax_mlp(layers, y):
    """The tanh MLP of ``layers`` (``(weight, bias)`` pairs as jax arrays) applied to ``y``."""
    import jax.numpy as jnp

    for k, (w, b) in enumerate(layers):
        y = y @ w.T + b
        if k < len(layers) - 1:
            y = jnp.tanh(y)
    return y


def _jax_mlp_weights(jnp) -> list:
    """:func:`_mlp_weights` (float32) as jax arrays."""
    return [
        (jnp.asarray(w.numpy()), jnp.asarray(b.numpy())) for w, b in _mlp_weights(torch.float32)
    ]


def _diffrax_runner(name: str):
    try:
        import diffrax
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    if name == "train":
        return _diffrax_train(diffrax, jax, jnp)
    if name == "b2":
        return _diffrax_b2(diffrax, jax, jnp)
    _, y0, t1, ts, args, batch_axis = _problem(name)
    if name.startswith("vdp"):

        def vf(t, y, mu):
            x, v = y[..., 0], y[..., 1]
            return jnp.stack([v, mu * (1 - x * x) * v - x], -1)

    else:
        weights = _jax_mlp_weights(jnp)

        def vf(t, y, _):
            return _jax_mlp(weights, y)

    def one(y):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(vf),
            diffrax.Dopri5(),
            0.0,
            t1,
            None,
            y,
            args=args,
            saveat=diffrax.SaveAt(ts=jnp.asarray(ts.numpy())),
            stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL),
            max_steps=10_000,
        )
        return sol.ys, sol.stats["num_steps"]

    fn = jax.jit(jax.vmap(one) if batch_axis == 0 else one)
    y = jnp.asarray(y0.numpy())

    def run():
        out = fn(y)
        jax.block_until_ready(out)
        return out

    return run


def _diffrax_b2(diffrax, jax, jnp):
    """``b2`` in diffrax: the same weights, loss and tolerances."""
    _, y0, t1, ts, _, _ = _problem("mlp")
    params = _jax_mlp_weights(jnp)
    w, y, ts = (jnp.asarray(x.numpy()) for x in (_b2_weights(), y0, ts))

    def loss(p):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, layers: _jax_mlp(layers, y)), diffrax.Dopri5(), 0.0, t1, None, y, args=p,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL), max_steps=1000,
        )  # fmt: skip
        return jnp.sum(w * sol.ys), (sol.ys, sol.stats["num_steps"])

    fn = jax.jit(jax.value_and_grad(loss, has_aux=True))

    def run():
        (_, (ys, steps)), grads = fn(params)
        jax.block_until_ready(grads)
        return ys, steps

    return run


def _diffrax_train(diffrax, jax, jnp):
    """The ``train`` iteration in diffrax: the same networks, data and steps."""
    params = [
        [(jnp.asarray(m.weight.detach().numpy()), jnp.asarray(m.bias.detach().numpy()))
         for m in net if isinstance(m, torch.nn.Linear)]
        for net in _hybrid_nets()
    ] + [jnp.asarray(0.1, dtype=jnp.float32)]  # fmt: skip
    y0, ts, target = (jnp.asarray(x.numpy()) for x in _train_data())

    def vf(t, y, p):
        x, v = y[..., :1], y[..., 1:]
        return jnp.concatenate([1.1 * x + _jax_mlp(p[0], y), _jax_mlp(p[1], y) - p[2] * v], -1)

    def loss(p):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(vf), diffrax.Tsit5(), 0.0, 0.7, 0.1, y0, args=p,
            saveat=diffrax.SaveAt(ts=ts), max_steps=64,
        )  # fmt: skip
        ys = jnp.swapaxes(sol.ys, 0, 1)
        return jnp.mean((ys - target) ** 2), (sol.ys, sol.stats["num_steps"])

    fn = jax.jit(jax.value_and_grad(loss, has_aux=True))

    def run():
        (_, (ys, steps)), grads = fn(params)
        jax.block_until_ready(grads)
        return ys, steps

    return run


def _torchode_runner(name: str):
    """torchode on the batched Van der Pol problem (per-sample steps), as in B3."""
    try:
        import torchode
    except ImportError:
        return None
    if name != "vdp1024":
        return None
    _, y0, _, ts, mu, _ = _problem(name)
    term = torchode.ODETerm(lambda t, y: _vdp(t, y, mu))
    step = torchode.Dopri5(term=term)
    controller = torchode.IntegralController(atol=ATOL, rtol=RTOL, term=term)
    solver = torchode.AutoDiffAdjoint(step, controller)
    t_eval = ts.expand(y0.shape[0], -1)

    def run():
        with torch.no_grad():
            return solver.solve(torchode.InitialValueProblem(y0=y0, t_eval=t_eval))

    return run


def _time(run, repeats: int) -> tuple[float, float, float]:
    """(first-call seconds, median ms, spread) of CPU time."""
    start = time.process_time()
    run()
    first = time.process_time() - start
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    med = statistics.median(times)
    return first, med * 1e3, (max(times) - min(times)) / med if med else 0.0


def main(opts=None, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compiled_bench")
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=list(PROBLEMS))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args([] if opts is not None else argv)
    if opts is not None:
        args.repeats = getattr(opts, "repeats", None) or args.repeats
    torch.set_num_threads(1)
    print("== COMPILED: torchnde eager vs compiled (inductor) vs diffrax (jit); CPU time, 1 thread")
    for name in args.problems:
        print(f"\n{name}")
        print(
            f"   {'contestant':<24} {'steps':>8} {'median ms':>10} {'spread':>7} {'compile s':>10}"
        )
        rows = {}
        for label, run in (
            ("torchnde eager", _torch_runner(name, False)),
            ("torchnde compiled", _torch_runner(name, True)),
            ("diffrax (jit)", _diffrax_runner(name)),
            ("torchode", _torchode_runner(name)),
        ):
            if run is None:
                if label != "torchode" or name == "vdp1024":
                    print(f"   {label:<24} (not installed)")
                continue
            first, med, spread = _time(run, args.repeats)
            out = run()
            if isinstance(out, torchnde.Solution):
                steps = int(out.stats["num_steps"].max())
                ys = out.ys
            elif label == "torchode":
                steps = int(out.stats["n_steps"].max())
                ys = out.ys
            else:
                steps = int(out[1].max())
                ys = torch.as_tensor(out[0].__array__())
            rows[label] = (med, ys, getattr(run, "grads", None))
            compile_s = max(first - med / 1e3, 0.0) if label != "torchnde eager" else 0.0
            print(
                f"   {label:<24} {steps:>8} {med:>10.2f} {spread:>6.0%} {compile_s:>10.1f}"
                if label != "torchnde eager"
                else f"   {label:<24} {steps:>8} {med:>10.2f} {spread:>6.0%} {'':>10}"
            )
        if "torchnde compiled" in rows:
            eager, comp = rows["torchnde eager"], rows["torchnde compiled"]
            diff = float((eager[1] - comp[1]).detach().abs().max())
            line = f"   compiled/eager {comp[0] / eager[0]:.3f} (max |diff| {diff:.1e}"
            if eager[2] is not None:
                worst = max(
                    float((a - b).abs().max() / b.abs().max()) for a, b in zip(comp[2], eager[2])
                )
                line += f"; gradients: largest relative difference {worst:.1e}"
            line += ")"
            if "diffrax (jit)" in rows:
                line += f"; compiled/diffrax {comp[0] / rows['diffrax (jit)'][0]:.2f}"
                line += f"; eager/diffrax {eager[0] / rows['diffrax (jit)'][0]:.1f}"
            if "torchode" in rows:
                line += f"; compiled/torchode {comp[0] / rows['torchode'][0]:.2f}"
            print(line)


if __name__ == "__main__":
    main()
