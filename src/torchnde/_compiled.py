"""The compiled solve: ``solve(..., compile=True)``.

Three ways of running the loop under :func:`torch.compile` (``fullgraph=True``, static shapes):

* **step mode** — the branch-free part of a step (:func:`~torchnde._loop.attempt`: propose, step,
  error estimate, controller, accept/reject, statuses and statistics) is one compiled call per
  step; the event and save phases and the ``while any sample runs`` test stay in Python. It
  works with everything the eager loop does (events, dense output, every adjoint and its hooks)
  and autograd goes through it (AOTAutograd's backward of each step).
* **loop mode** — with autograd off (``torch.no_grad()``, inference), no events, jumps, dense
  output or per-step saving, the whole adaptive loop, saving at ``ts`` included, is one
  :func:`torch.while_loop` in one compiled program. Autograd is never used through it: in
  PyTorch 2.13, the gradient of a compiled ``while_loop`` whose body closes over a parameter
  counted only the last iteration (``w`` cubed by three iterations gave ``dw = 0.5`` instead of
  ``1.5``), so loop mode runs only where no gradient is recorded.
* **chunk mode** — with autograd on and otherwise as loop mode: the loop's body unrolled
  :data:`CHUNK` times per compiled call (a finished sample's passes change nothing), called
  until no sample runs. Autograd goes through the unrolled passes; the ``while any sample runs``
  test is one host check per chunk. Where a solve has events, jumps, dense output or per-step
  records, autograd uses step mode.

Compiled functions are cached per *structure*: the mode, the backend, the classes of the term
(with its vector fields' code, or their module classes), solver and controller
(:func:`cache_key`). Each structure gets a function of its own (its
own copy of the code object, hence its own TorchDynamo cache), whose guards then decide whether
a call reuses a compiled graph (same shapes, dtypes, devices, callables and constants) or
compiles another. :func:`compile_info` lists the structures with their compilations, the seconds
the compiling calls took and the calls so far; :func:`clear_compiled` forgets them.
"""

from __future__ import annotations

import dataclasses
import time
import types
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

from ._loop import Context, LoopState, Recorder, StepInfo, attempt
from .terms import walk

__all__ = ["clear_compiled", "compile_info", "resolve_backend"]

_BACKENDS = ("inductor", "aot_eager", "eager")


@dataclass
class _Entry:
    """One structure's compiled function and what it cost."""

    key: tuple
    fn: Any = None
    #: why the whole loop could not be captured (loop mode then falls back to step mode)
    failed: str | None = None
    compiles: int = 0
    compile_ids: set = dataclasses.field(default_factory=set)
    #: chunk mode: per carry signature, the carried tensors the loop makes require grad
    settled: dict = dataclasses.field(default_factory=dict)
    compile_seconds: float = 0.0
    calls: int = 0


_CACHE: dict[tuple, _Entry] = {}
#: the most elements of any input of a compiled loop that counts as tiny (see `_cached_entry`)
_TINY = 256


#: ``tanh(x) / x`` on ``|x| < _TANH_SMALL`` as a polynomial in ``x²`` (a least-squares fit at
#: Chebyshev nodes, relative error 1.4e-10: far below float32's rounding)
_TANH_POLY = (
    0.9999999998591093,
    -0.3333332975719742,
    0.13333184541017182,
    -0.05394488784392532,
    0.02169275506434218,
    -0.008161230697393709,
    0.0021303085539091256,
)
_TANH_SMALL = 0.625


def _tanh(x: torch.Tensor) -> Any:
    """``tanh`` of a float32 CPU tensor for inductor: ``sign(x)·(1 − 2/(exp(2|x|) + 1))``, and
    for ``|x| < 0.625``, where that form loses digits, ``x·P(x²)`` (:data:`_TANH_POLY`). Within
    1.3 ulp of the true value (inductor's ``tanh``: 1 ulp, PyTorch's eager one 0.5), and
    inductor's code for it runs about twice as fast as for its ``tanh`` (0.67 against 1.5 ns a
    number; B1's neural ODE compiled: 20 → 16.4 ms, ``benchmarks.compiled_bench``). Signed
    zeros, infinities and NaN come out as ``tanh``'s. Elsewhere (GPU, other dtypes) inductor's
    own ``tanh``. (Not ``expm1``: inductor's C++ ``expm1`` is ``exp(x) − 1``, which loses every
    digit for tiny ``x``.)"""
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return NotImplemented
    a = x.abs()
    u = x * x
    p = _TANH_POLY[-1]
    for c in reversed(_TANH_POLY[:-1]):
        p = p * u + c
    large = 1.0 - 2.0 / (torch.exp(a * 2.0) + 1.0)  # |x| >= 0.625 there, so x is not ±0
    return torch.where(a < _TANH_SMALL, x * p, torch.where(x < 0, -large, large))


def _decompositions() -> dict:
    """Inductor's decompositions, with :func:`_tanh` for ``aten.tanh``."""
    from torch._inductor.decomposition import select_decomp_table

    return {**select_decomp_table(), torch.ops.aten.tanh.default: _tanh}


def resolve_backend(compile: bool | str) -> str | None:
    """The ``torch.compile`` backend named by ``solve``'s ``compile`` argument (None: eager)."""
    if compile is False or compile is None:
        return None
    if compile is True:
        return "inductor"
    if isinstance(compile, str) and compile in _BACKENDS:
        return compile
    raise ValueError(
        f"`compile` must be True, False or a torch.compile backend name among "
        f"{', '.join(map(repr, _BACKENDS))}; got {compile!r}"
    )


def check(solver: Any, controller: Any, backend: str | None) -> None:
    """Refuse, naming the fix, a solver or controller whose step cannot be compiled whole."""
    if backend is None:
        return
    for what, obj in (("solver", solver), ("controller", controller)):
        if not getattr(obj, "supports_compile", False):
            raise ValueError(
                f"compile={backend!r}: the {what} {type(obj).__name__}() cannot be compiled "
                "(its step makes decisions on tensor values in Python, e.g. Newton iterations or "
                "Brownian-tree queries); the compiled solve supports the explicit Runge-Kutta "
                "methods with ConstantStepSize or PIDController. Use compile=False for this "
                f"{what}"
            )


def cache_key(mode: str, ctx: Context) -> tuple:
    """The structure a compiled function is cached for."""
    terms = tuple(
        (type(t).__qualname__, *(_code(getattr(t, name, None)) for name in ("f", "g")))
        for t in walk(ctx.problem.term)
    )
    return (
        mode,
        ctx.compiled,
        terms,
        type(ctx.solver).__qualname__,
        type(ctx.controller).__qualname__,
    )


def _code(fn: Any) -> Any:
    """What identifies a vector field across calls: a function's code (a fresh lambda or closure
    per call keeps it), a module's class, else its type."""
    if fn is None:
        return None
    code = getattr(fn, "__code__", None)
    if code is not None:
        return f"{code.co_filename}:{code.co_firstlineno}:{code.co_name}"
    return type(fn).__qualname__


def compile_info() -> list[dict[str, Any]]:
    """The compiled solves cached so far: per structure (mode, backend, term, solver and
    controller classes), the number of graphs compiled, the seconds the calls that compiled
    took (compile time plus one run), and the calls."""
    return [
        {
            "mode": e.key[0],
            "backend": e.key[1],
            "terms": e.key[2],
            "solver": e.key[3],
            "controller": e.key[4],
            "compiles": e.compiles,
            "compile_seconds": e.compile_seconds,
            "calls": e.calls,
            "failed": e.failed,
        }
        for e in _CACHE.values()
    ]


def clear_compiled() -> None:
    """Forget every compiled solve (the next compiled solve of each structure compiles again)."""
    _CACHE.clear()


def _entry(mode: str, ctx: Context, target: types.FunctionType) -> _Entry:
    entry = ctx.compiled_entries.get(mode)
    if entry is None:  # once per solve, not per step
        entry = ctx.compiled_entries[mode] = _cached_entry(mode, ctx, target)
    return entry


def _cached_entry(mode: str, ctx: Context, target: types.FunctionType) -> _Entry:
    key = cache_key(mode, ctx)
    entry = _CACHE.get(key)
    if entry is None:
        entry = _Entry(key)
        # a code object of its own: TorchDynamo caches (and limits recompilations) per code object
        code = target.__code__.replace(co_name=f"{target.__name__}_{len(_CACHE)}")
        fresh = types.FunctionType(code, target.__globals__, code.co_name, target.__defaults__)
        inner = torch._dynamo.lookup_backend(ctx.compiled)

        def backend(gm, example_inputs):
            # once per graph: TorchDynamo may restart an analysis and call the backend again
            # for the same frame compilation
            compile_id = torch._guards.CompileContext.current_compile_id()
            if compile_id not in entry.compile_ids:
                entry.compiles += 1
                if compile_id is not None:
                    entry.compile_ids.add(compile_id)
            if ctx.compiled != "inductor":
                return inner(gm, example_inputs)
            # Inductor's C++ wrapper. In loop mode, the while_loop's iterations run in the
            # wrapper, and a C++ one costs about half of the Python one per iteration (Van der
            # Pol, one sample, 196 steps: 11.7 -> 5.1 ms, `benchmarks.compiled_bench`); a
            # compiled step's forward and backward gain too (a 22-sample hybrid model through
            # Tsit5: forward 8.4 -> 7.0 ms, backward 4.4 -> 3.5 ms). For a tiny loop,
            # concatenations (the packed carry, a field's `stack`) are computed inside the
            # step's kernel rather than into buffers of their own, which each iteration would
            # allocate (one sample: 3.6 -> 2.2 ms); for larger ones that recomputes too much
            # (1024 samples: 43 -> 200 ms).
            from torch._inductor import config as inductor_config

            tiny = mode == "loop" and all(
                x.numel() <= _TINY for x in example_inputs if isinstance(x, torch.Tensor)
            )
            from torch._inductor.compile_fx import compile_fx

            with inductor_config.patch(cpp_wrapper=True, force_pointwise_cat=tiny):
                return compile_fx(gm, example_inputs, decompositions=_decompositions())

        entry.fn = torch.compile(fresh, backend=backend, fullgraph=True, dynamic=False)
        _CACHE[key] = entry
    return entry


def _call(entry: _Entry, *args: Any) -> Any:
    before = entry.compiles
    start = time.perf_counter()
    out = entry.fn(*args)
    if entry.compiles != before:
        entry.compile_seconds += time.perf_counter() - start
    entry.calls += 1
    return out


# ------------------------------------------------------------------------------------------------
# step mode


def _step(ctx: Context, st: LoopState) -> tuple[LoopState, StepInfo]:
    return attempt(ctx, st)


def normalise(st: LoopState) -> LoopState:
    """``st`` with every tensor in standard (contiguous) strides: a compiled graph is specialised
    to its inputs' strides, and the first state's times are often expanded (stride 0), which
    would compile the step twice."""

    def fix(x):
        if isinstance(x, torch.Tensor) and x.stride() != _contiguous_strides(x.shape):
            return x.clone(memory_format=torch.contiguous_format)
        return x

    return LoopState(**pytree.tree_map(fix, _fields(st)))


def _contiguous_strides(shape) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def compiled_attempt(ctx: Context, st: LoopState) -> tuple[LoopState, StepInfo]:
    """:func:`~torchnde._loop.attempt` as one compiled call. Under autograd, a step from a state
    that does not require grad (from a constant start, until the first accepted step) runs
    eagerly: a compiled graph is specialised to whether its inputs require grad, and would
    compile a second time for it (the demo's training: 8 compilations -> 5)."""
    if torch.is_grad_enabled() and not st.y.requires_grad:
        return attempt(ctx, st)
    return _call(_entry("step", ctx, _step), ctx, st)


# ------------------------------------------------------------------------------------------------
# loop mode


def loop_applies(ctx: Context, rec: Recorder) -> bool:
    """Whether the whole loop can be compiled (as one ``while_loop``, or in chunks under
    autograd): no event, jump, dense output or per-step record."""
    return (
        ctx.compiled is not None
        and not ctx.events
        and ctx.jumps is None
        and not rec.steps
        and not rec.dense
    )


@dataclass(frozen=True)
class _Layout:
    """How a :class:`LoopState` maps to the tensors a ``while_loop`` carries: the flattened
    fields' tree, which leaves are tensors, and the non-tensor leaves (constants)."""

    spec: Any
    tensor_pos: tuple[int, ...]
    constants: tuple[Any, ...]

    @classmethod
    def of(cls, st: LoopState) -> tuple[_Layout, list[torch.Tensor]]:
        leaves, spec = pytree.tree_flatten(_fields(st))
        pos = tuple(i for i, x in enumerate(leaves) if isinstance(x, torch.Tensor))
        constants = tuple(None if i in pos else x for i, x in enumerate(leaves))
        return cls(spec, pos, constants), [leaves[i] for i in pos]

    def state(self, carry) -> LoopState:
        leaves = list(self.constants)
        for i, x in zip(self.tensor_pos, carry):
            leaves[i] = x
        return LoopState(**pytree.tree_unflatten(leaves, self.spec))

    def carry(self, st: LoopState) -> list[torch.Tensor]:
        leaves, _ = pytree.tree_flatten(_fields(st))
        return [leaves[i] for i in self.tensor_pos]


def _fields(st: LoopState) -> dict[str, Any]:
    return {f.name: getattr(st, f.name) for f in dataclasses.fields(st)}


def _loop(ctx: Context, layout: _Layout, save_ts: torch.Tensor | None, *carry):
    """Loop mode: the whole loop as one ``while_loop`` (no autograd)."""
    cond, body = _parts(ctx, layout, save_ts)
    return _packed_while_loop(cond, body, carry)


def _chunk(ctx: Context, layout: _Layout, save_ts: torch.Tensor | None, k: int, *carry):
    """Chunk mode: ``k`` passes of the loop's body, unrolled (a finished sample's passes change
    nothing), so that autograd goes through them."""
    _, body = _parts(ctx, layout, save_ts)
    for _ in range(k):
        carry = body(*carry)
    return carry


def _batched_saving(save_ts: torch.Tensor | None) -> bool:
    return save_ts is not None and save_ts.shape[0] > 1


def _parts(ctx: Context, layout: _Layout, save_ts: torch.Tensor | None):
    """``(cond, body)`` of the loop over the carry ``(ts_out, *extra, *state)``: the values
    saved at ``ts`` so far, what a batch's saving keeps (:func:`_extra`) and the loop state."""
    if _batched_saving(save_ts):
        return _saving_parts(ctx, layout, save_ts)

    def cond(ts_out, *carry):
        return layout.state(carry).running.any()

    def body(ts_out_in, *carry_in):
        st, info = attempt(ctx, layout.state(carry_in))
        ts_out = ts_out_in
        if save_ts is not None:  # one sample: every save time inside its step, with no branch
            inside = info.accepted[:, None] & (save_ts > info.t0[:, None])
            inside = inside & (save_ts <= info.t1[:, None])
            values = _interpolate(ctx.dense_matrix, info.rows(ctx), info.t0, info.t1, save_ts)
            ts_out = torch.where(inside[:, :, None], values, ts_out_in)
        return _unaliased((ts_out, *layout.carry(st)), (ts_out_in, *carry_in))

    return cond, body


def _extra(ctx: Context, st: LoopState, save_ts: torch.Tensor | None) -> list[torch.Tensor]:
    """What the loop of a batch saving at ``ts`` carries besides the state: per sample, the
    save times written so far and its last accepted step (``t0``, ``t1``, dense rows)."""
    if not _batched_saving(save_ts):
        return []
    written = (save_ts <= ctx.t0[:, None]).sum(dim=1)  # the saves at t0 are done (Recorder)
    rows = st.y.new_zeros(save_ts.shape[0], ctx.dense_matrix.shape[0], st.y.shape[1])
    return [written, ctx.t0.clone(), ctx.t0.clone(), rows]


def _saving_parts(ctx: Context, layout: _Layout, save_ts: torch.Tensor):
    """The loop of a batch saving at ``ts``: one save time per sample and iteration, no branch.

    Each iteration first writes the next unwritten save time of each sample if it lies inside
    that sample's last accepted step (kept in the carry: its ``t0``, ``t1`` and dense rows),
    then steps. A sample whose last step holds further save times waits (it is not stepped in
    this iteration: state, controller and statistics untouched) until they are written, and the
    loop runs until no sample runs or waits. The steps, and so the results, are those of the
    eager loop. A ``torch.cond`` around the save (interpolate only when some sample saves, at
    every save time only when some sample has several in its step) cost more than the
    interpolation itself: it splits the fused step kernel and materialises its operands
    (Van der Pol, 1024 samples, 10 save times: 100 ms with it, 55 ms without,
    ``benchmarks.compiled_bench``)."""

    def cond(ts_out, written, t0, t1, rows, *carry):
        return layout.state(carry).running.any() | _due(save_ts, written, t1)[1].any()

    def body(ts_out_in, written_in, t0_in, t1_in, rows_in, *carry_in):
        first, due = _due(save_ts, written_in, t1_in)
        values = _interpolate(ctx.dense_matrix, rows_in, t0_in, t1_in, save_ts.gather(1, first))
        column = torch.arange(save_ts.shape[1], device=first.device) == first
        ts_out = torch.where((due[:, None] & column)[:, :, None], values, ts_out_in)
        written = written_in + due.to(written_in.dtype)
        wait = _due(save_ts, written, t1_in)[1]
        before = layout.state(carry_in)
        st, info = attempt(ctx, dataclasses.replace(before, running=before.running & ~wait))
        st = _hold(st, before, wait)
        acc = info.accepted
        t0 = torch.where(acc, info.t0, t0_in)
        t1 = torch.where(acc, info.t1, t1_in)
        rows = torch.where(acc[:, None, None], info.rows(ctx), rows_in)
        outs = (ts_out, written, t0, t1, rows, *layout.carry(st))
        return _unaliased(outs, (ts_out_in, written_in, t0_in, t1_in, rows_in, *carry_in))

    return cond, body


def _packed_while_loop(cond, body, carry):
    """``torch.while_loop(cond, body, carry)`` with the carried tensors packed into one flat
    tensor per dtype and device. Inductor's wrapper allocates every output of the body afresh
    in each iteration (about 0.3 µs each with the C++ wrapper): a loop state of a few dozen
    small tensors cost more in allocations than its arithmetic."""
    groups: dict[tuple, list[int]] = {}
    for i, x in enumerate(carry):
        groups.setdefault((x.dtype, x.device), []).append(i)
    order = list(groups.values())
    sizes = [[carry[i].numel() for i in idx] for idx in order]

    def pack(xs):
        return tuple(torch.cat([xs[i].reshape(-1) for i in idx]) for idx in order)

    def unpack(flats):
        xs: list[Any] = [None] * len(carry)
        for idx, size, flat in zip(order, sizes, flats):
            for i, part in zip(idx, torch.split(flat, size)):
                xs[i] = part.view(carry[i].shape)
        return xs

    def packed_cond(*flats):
        return cond(*unpack(flats))

    def packed_body(*flats):
        return pack(body(*unpack(flats)))

    return unpack(torch.while_loop(packed_cond, packed_body, pack(carry)))


def _due(save_ts, written, t1):
    """``(first, due)``: each sample's next unwritten save column ``(batch, 1)`` (clamped), and
    whether that save time lies inside its last accepted step (which ends at ``t1``)."""
    count = save_ts.shape[1]
    first = written.clamp(max=count - 1)[:, None]
    return first, (written < count) & (save_ts.gather(1, first)[:, 0] <= t1)


def _hold(new: LoopState, old: LoopState, wait: torch.Tensor) -> LoopState:
    """``new`` with the waiting samples' rows of every per-sample tensor taken from ``old``."""

    def pick(n, o):
        if not isinstance(n, torch.Tensor):
            return n
        if n.ndim == 0 or n.shape[0] != wait.shape[0]:  # a solver sharing state across samples
            raise NotImplementedError(f"a per-sample loop state of shape {tuple(n.shape)}")
        return torch.where(wait.view(-1, *(1,) * (n.ndim - 1)), o, n)

    return LoopState(**pytree.tree_map(pick, _fields(new), _fields(old)))


def _unaliased(outs, inputs):
    """A while_loop's body may not return its inputs unchanged (aliasing)."""
    return tuple(o.clone() if any(o is i for i in inputs) else o.contiguous() for o in outs)


def _interpolate(matrix, rows, t0, t1, save_ts):
    """The dense output ``(batch, T, n)`` at times ``save_ts: (batch, T)`` inside the steps
    ``[t0, t1]``, written as element-wise products and sums that inductor fuses into the step's
    kernel (:func:`~torchnde._loop.interpolate`'s ``pow`` by a tensor of exponents, matrix
    product and batched product of small matrices cost a millisecond each per step at batch
    1024)."""
    t0, t1 = t0[:, None], t1[:, None]
    dt = t1 - t0
    safe = torch.where(dt == 0, torch.ones_like(dt), dt)
    theta = ((save_ts - t0) / safe).clamp(0, 1).to(matrix.dtype)  # (batch, T)
    power = torch.ones_like(theta)
    weights = 0.0
    for p in range(matrix.shape[1]):  # Σ_p θ^p M[r, p]: (batch, T, R)
        weights = weights + power[:, :, None] * matrix[:, p]
        power = power * theta
    return (weights.to(rows.dtype)[:, :, :, None] * rows[:, None]).sum(2)


def run_loop(ctx: Context, st: LoopState, rec: Recorder) -> LoopState | None:
    """Run the loop from ``st`` until no sample runs, compiled whole: with autograd off as one
    ``while_loop`` (loop mode), with autograd on as calls of :data:`CHUNK` unrolled passes
    (chunk mode, :func:`_chunks`). The values saved at ``ts`` go to ``rec``. None (with a
    warning, once per structure) when TorchDynamo cannot capture the loop; the caller then runs
    it step by step."""
    grad = torch.is_grad_enabled()
    mode = "chunk" if grad else "loop"
    entry = _entry(mode, ctx, _chunk if grad else _loop)
    if entry.failed is not None:
        return None
    layout, state = _Layout.of(st)
    if rec.ts_out is None:
        ts_out, save_ts = st.y.new_zeros(0), None
    else:  # without the padding column (standard strides: a while_loop checks them)
        ts_out = rec.ts_out[:, :-1]
        save_ts = rec.save_ts[:, :-1].clone(memory_format=torch.contiguous_format)
    carry = [
        x.clone(memory_format=torch.contiguous_format)
        for x in (ts_out, *_extra(ctx, st, save_ts), *state)
    ]
    try:
        if grad:
            carry = _chunks(entry, ctx, layout, save_ts, carry)
        else:
            carry = _call(entry, ctx, layout, save_ts, *carry)
    except torch._dynamo.exc.TorchDynamoException as error:
        entry.failed = str(error).strip().splitlines()[0][:300]
        warnings.warn(
            f"compile: the solve's loop could not be captured whole ({mode} mode; "
            f"{type(error).__name__}: {entry.failed}); each step is compiled instead (this "
            "structure will not be tried again; see torchnde.compile_info())",
            stacklevel=5,
        )
        return None
    if save_ts is not None:
        rec.ts_out = torch.cat([carry[0], rec.ts_out[:, -1:]], dim=1)
    return layout.state(carry[len(carry) - len(state) :])


#: passes of the loop per compiled call in chunk mode (autograd on). A training iteration of
#: the demo's kind (`benchmarks.compiled_bench`, ``train``: 7 steps) takes 4.4 ms with 8 passes
#: (eager 16 ms, one compiled call per step 14 ms; a first version with 4 passes per call took
#: 9 ms); compiling costs about 50 s cold, 7 s with a warm inductor cache, on a 2-core machine.
CHUNK = 8


def _chunks(entry: _Entry, ctx: Context, layout: _Layout, save_ts, carry: list) -> list:
    """Chunk mode's driver: calls of :data:`CHUNK` compiled passes until no sample runs.

    A compiled graph is specialised to which of its inputs require grad, and the loop changes
    that: a constant start does not require grad, its successors do (and the saved values once
    written). On a structure's first solve, eager passes run until the pattern is settled, and
    the entry learns which carried tensors the loop turns into ones that require grad. Later
    solves start with those as leaves that require grad (their gradient is never read: the
    originals did not ask for one), so they run compiled from the first pass and compile once.
    """
    cond, body = _parts(ctx, layout, save_ts)
    signature = tuple((x.dtype, x.shape, x.requires_grad) for x in carry)
    settled = entry.settled.get(signature)
    if settled is None:
        while bool(cond(*carry)):
            before = [x.requires_grad for x in carry]
            carry = list(body(*carry))
            if [x.requires_grad for x in carry] == before:
                break
        entry.settled[signature] = {
            i for i, (x, s) in enumerate(zip(carry, signature)) if x.requires_grad and not s[2]
        }
    else:
        carry = [x.detach().requires_grad_() if i in settled else x for i, x in enumerate(carry)]
    while bool(cond(*carry)):
        carry = list(_call(entry, ctx, layout, save_ts, CHUNK, *carry))
    return carry
