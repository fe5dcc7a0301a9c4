"""Find the tensors a vector field depends on, so that adjoints that own their backward pass can
return gradients for them — and refuse, loudly, when they cannot."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from .._loop import Context
from .._pytree import tree_leaves

__all__ = ["grad_inputs"]


def _modules_of(fn: Any, depth: int = 3, seen: set | None = None) -> list[nn.Module]:
    """Modules reachable from a callable: itself, its bound ``self`` (or the modules that object's
    ``torchnde_modules()`` lists), the arguments of a partial, and its closure — following
    callables found there (a wrapper around the user's function, such as
    :meth:`~torchnde.ControlTerm.to_ode`'s) up to ``depth`` levels."""
    seen = set() if seen is None else seen
    if id(fn) in seen:
        return []
    seen.add(id(fn))
    if isinstance(fn, nn.Module):
        return [fn]
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, nn.Module):
        return [owner]
    # an adapter around the user's model (the compat facades' wrappers) names the modules it
    # calls: their unused parameters count too, as in the library the facade stands in for
    modules = getattr(owner, "torchnde_modules", None)
    if callable(modules):
        return list(modules())
    if depth == 0:
        return []
    if isinstance(fn, functools.partial):
        inner = [fn.func, *fn.args, *fn.keywords.values()]
    else:
        inner = []
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                inner.append(cell.cell_contents)
            except ValueError:  # empty cell
                continue
    found = []
    for content in inner:
        if isinstance(content, nn.Module) or callable(content):
            found += _modules_of(content, depth - 1, seen)
    return found


def _graph_leaves(outputs: Iterable[torch.Tensor], stop: set) -> list[torch.Tensor]:
    """Leaf tensors requiring grad that ``outputs`` were computed from, not looking past the
    autograd nodes in ``stop`` (the ``grad_fn`` of tensors passed in ``args``)."""
    seen: set = set()
    leaves: dict[int, torch.Tensor] = {}
    todo = [o.grad_fn for o in outputs if o.grad_fn is not None]
    todo += [o for o in outputs if o.grad_fn is None and o.requires_grad]
    while todo:
        node = todo.pop()
        if isinstance(node, torch.Tensor):  # an output that is itself a leaf
            leaves[id(node)] = node
            continue
        if node is None or node in seen or node in stop:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if isinstance(variable, torch.Tensor):
            leaves[id(variable)] = variable
            continue
        todo.extend(n for n, _ in node.next_functions)
    return list(leaves.values())


def _dedupe(tensors: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    out: dict[int, torch.Tensor] = {}
    for t in tensors:
        out.setdefault(id(t), t)
    return list(out.values())


def grad_inputs(
    ctx: Context,
    y0: torch.Tensor,
    params: Sequence[torch.Tensor] | None,
    adjoint_name: str,
) -> list[torch.Tensor]:
    """The tensors (other than the state and the times) whose gradients the adjoint must return.

    These are the tensors in ``args`` that require grad, then either the explicit ``params`` or,
    when ``params`` is None, the parameters of modules the term calls plus every other leaf tensor
    requiring grad that one evaluation of the equation (vector field times the control over the
    whole interval, so a path's data count) and of every event condition touches.

    Raises ``ValueError`` when explicit ``params`` miss a tensor the equation uses.
    """
    problem = ctx.problem
    arg_tensors = [
        x for x in tree_leaves(problem.args) if isinstance(x, torch.Tensor) and x.requires_grad
    ]
    # non-leaf tensors in args or in explicit params are inputs in their own right: the search
    # for what the equation uses stops at them (it does not walk back through their history)
    given = [p for p in (params or ()) if isinstance(p, torch.Tensor)]
    stop = {x.grad_fn for x in [*arg_tensors, *given] if x.grad_fn is not None}
    t0, t1 = ctx.t0.detach(), ctx.t_end.detach()
    with torch.enable_grad():
        # a state that requires grad, as in the backward solve, so a field that differentiates
        # with respect to it (e.g. an Itô-to-Stratonovich correction, ∂g/∂y·g) uses it rather
        # than a leaf of its own, which would be taken for a parameter; not a leaf itself, so
        # the search stops at it
        y = y0.detach().requires_grad_(True).clone()
        stop.add(y.grad_fn)
        outputs = [problem.prod(problem.vf(t0, y), problem.contr(t0, t1))]
        user_t, user_y = problem.user_time(t0), problem.spec.unflatten(y)
        outputs += [ev.cond(user_t, user_y, problem.args) for ev in ctx.events]
    used = _graph_leaves(
        [o for o in outputs if isinstance(o, torch.Tensor) and o.requires_grad], stop
    )
    arg_ids = {id(x) for x in arg_tensors}
    if params is not None:
        given = list(params)
        for i, p in enumerate(given):
            if not isinstance(p, torch.Tensor):
                raise TypeError(
                    f"`{adjoint_name}(params=...)` must hold tensors, item {i} is {type(p).__name__}"
                )
        known = arg_ids | {id(p) for p in given}
        missing = [leaf for leaf in used if id(leaf) not in known]
        if missing:
            shapes = ", ".join(f"{tuple(m.shape)}" for m in missing[:3])
            raise ValueError(
                f"the vector field uses {len(missing)} tensor(s) that require grad (shapes {shapes}) "
                f"but are not in `{adjoint_name}(params=...)`, so their gradient would be silently "
                "lost; add them to `params`, or pass them through `args`, or leave `params=None` "
                "to let torchnde find them"
            )
        return _dedupe([*arg_tensors, *(p for p in given if p.requires_grad)])
    module_params = [
        p
        for fn in problem.term.callables()
        for module in _modules_of(fn)
        for p in module.parameters()
        if p.requires_grad
    ]
    return _dedupe([*arg_tensors, *module_params, *(u for u in used if id(u) not in arg_ids)])
