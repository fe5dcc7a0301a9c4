"""One explicit Runge–Kutta step under ``torch.compile(fullgraph=True)``.

The compile-ready unit is ``torchnde._loop.attempt(ctx, state)`` (propose → step → accept/reject →
commit, with no Python decision on tensor values). It is compiled whole, with no graph break, and
run for several attempts of a batched adaptive solve, both accepted and rejected ones, against
eager execution; the compiled function must also not recompile from one attempt to the next (the
loop will call it thousands of times).
"""

from __future__ import annotations

import pytest
import torch

import torchnde
from torchnde import _loop
from torchnde._problem import Problem
from torchnde._pytree import StateSpec
from torchnde._run import SavePlan, build

F64 = torch.float64


def make_loop(solver, controller, f, y0, t0, t1, dt0, batched=True):
    """A Context and the first LoopState, built as ``torchnde.solve`` builds them."""
    spec = StateSpec.from_tree(y0, batched)
    problem = Problem(torchnde.ODETerm(f), spec, None, None)
    batch = spec.batch
    tau0 = torch.full((batch,), t0, dtype=F64)
    tau1 = torch.full((batch,), t1, dtype=F64)
    plan = SavePlan(False, True, None, False, False)
    prep = build(
        problem,
        solver,
        controller,
        tau0,
        tau1,
        spec.flatten(y0),
        plan=plan,
        dt0=torch.full((batch,), dt0, dtype=F64),
        max_steps=1000,
        host=False,
    )
    state = _loop.init_state(prep.ctx, prep.y0, prep.dt0, prep.solver_state, prep.nfe0)
    return prep.ctx, state


def logistic(t, y, args):
    return (1 + t)[:, None] * y * (1 - y)


FIELDS = (
    "t",
    "y",
    "t_next",
    "running",
    "status",
    "num_steps",
    "num_accepted",
    "num_rejected",
    "nfe",
)


@pytest.mark.slow
def test_attempt_compiles_fullgraph_and_matches_eager():
    y0 = torch.tensor([[0.5, 0.25], [0.1, 0.9]], dtype=F64)
    # dt0 = 0.3 is too large for rtol=1e-6: the first attempts are rejected, then accepted
    ctx, state = make_loop(
        torchnde.Bosh3(), torchnde.PIDController(rtol=1e-6, atol=1e-8), logistic, y0, 0.0, 2.0, 0.3
    )
    compiled = torch.compile(_loop.attempt, fullgraph=True)
    torch._dynamo.reset()
    try:
        try:
            st_c, info_c = compiled(ctx, state)
        except Exception as exc:  # report the graph break precisely
            explanation = torch._dynamo.explain(_loop.attempt)(ctx, state)
            pytest.fail(f"fullgraph compile failed: {exc!r}\nbreaks: {explanation.break_reasons}")
        st_e, info_e = _loop.attempt(ctx, state)
        accepted = [info_e.accepted.clone()]
        with torch._dynamo.config.patch(error_on_recompile=True):
            for _ in range(6):
                for name in FIELDS:
                    torch.testing.assert_close(
                        getattr(st_c, name),
                        getattr(st_e, name),
                        rtol=1e-11,  # inductor's pow in the step-size factor differs by ulps
                        atol=0,
                        msg=lambda m, name=name: f"{name}: {m}",
                    )
                assert torch.equal(info_c.accepted, info_e.accepted)
                st_c, info_c = compiled(ctx, st_c)
                st_e, info_e = _loop.attempt(ctx, st_e)
                accepted.append(info_e.accepted.clone())
        history = torch.stack(accepted)
        assert history.any() and not history.all()  # both outcomes were compiled and compared
    finally:
        torch._dynamo.reset()
