"""Small pytrees of tensors: the state ``y`` may be a tensor, or a (nested) tuple, list or dict of them.

The step loop works on one flat tensor ``(batch, n)``; this module converts between the user's tree
and that flat form. A single-tensor state converts by ``reshape`` alone (no copy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["StateSpec", "tree_leaves", "tree_map", "tree_structure_str", "tree_where"]


def tree_leaves(tree: Any) -> list[Any]:
    """The leaves of ``tree`` in a fixed order (dict keys in insertion order)."""
    if isinstance(tree, (tuple, list)):
        return [leaf for child in tree for leaf in tree_leaves(child)]
    if isinstance(tree, dict):
        return [leaf for child in tree.values() for leaf in tree_leaves(child)]
    return [tree]


def _rebuild(tree: Any, leaves: Sequence[Any], pos: int = 0) -> tuple[Any, int]:
    if isinstance(tree, (tuple, list)):
        out = []
        for child in tree:
            value, pos = _rebuild(child, leaves, pos)
            out.append(value)
        if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # namedtuple
            return type(tree)(*out), pos
        return type(tree)(out), pos
    if isinstance(tree, dict):
        out_d = {}
        for key, child in tree.items():
            out_d[key], pos = _rebuild(child, leaves, pos)
        return out_d, pos
    return leaves[pos], pos + 1


def tree_unflatten(template: Any, leaves: Sequence[Any]) -> Any:
    """Build a tree shaped like ``template`` from ``leaves``."""
    return _rebuild(template, leaves)[0]


def tree_map(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Apply ``fn`` leafwise over trees of the same structure."""
    leaves = [fn(*xs) for xs in zip(tree_leaves(tree), *(tree_leaves(r) for r in rest))]
    return tree_unflatten(tree, leaves)


def take_rows(tree: Any, idx: torch.Tensor, batch: int) -> Any:
    """The rows ``idx`` of every tensor leaf whose first axis has length ``batch`` (other leaves
    unchanged): a tree's part for some samples of a batch."""

    def take(leaf):
        if isinstance(leaf, torch.Tensor) and leaf.ndim and leaf.shape[0] == batch:
            return leaf[idx]
        return leaf

    return tree_map(take, tree)


def tree_structure_str(tree: Any) -> str:
    """A short readable description of a tree's structure and leaf shapes, for error messages."""
    if isinstance(tree, (tuple, list)):
        inner = ", ".join(tree_structure_str(c) for c in tree)
        return (
            f"({inner},)"
            if isinstance(tree, tuple) and len(tree) == 1
            else (f"({inner})" if isinstance(tree, tuple) else f"[{inner}]")
        )
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{k!r}: {tree_structure_str(v)}" for k, v in tree.items()) + "}"
    if isinstance(tree, torch.Tensor):
        return f"Tensor{tuple(tree.shape)}:{str(tree.dtype).replace('torch.', '')}"
    return type(tree).__name__


def same_structure(a: Any, b: Any) -> bool:
    """Whether two trees have the same containers (types, lengths and dict keys)."""
    if isinstance(a, (tuple, list)):
        return (
            isinstance(b, (tuple, list))
            and type(a) is type(b)
            and len(a) == len(b)
            and all(same_structure(x, y) for x, y in zip(a, b))
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and list(a.keys()) == list(b.keys())
            and all(same_structure(a[k], b[k]) for k in a)
        )
    return not isinstance(b, (tuple, list, dict))


@dataclass(frozen=True)
class StateSpec:
    """How a state tree maps onto a flat ``(batch, n)`` tensor.

    ``shapes`` are the leaf shapes *without* the batch axis when ``batched``; ``batch`` is 1 when
    there is no batch axis (the whole state is one problem).
    """

    template: Any
    shapes: tuple[torch.Size, ...]
    numels: tuple[int, ...]
    batch: int
    batched: bool
    dtype: torch.dtype
    device: torch.device

    @property
    def size(self) -> int:
        return sum(self.numels)

    @property
    def single(self) -> bool:
        return len(self.shapes) == 1

    @classmethod
    def from_tree(cls, tree: Any, batched: bool) -> StateSpec:
        leaves = tree_leaves(tree)
        first = leaves[0]
        batch = first.shape[0] if batched else 1
        shapes = tuple(leaf.shape[1:] if batched else leaf.shape for leaf in leaves)
        numels = tuple(int(torch.Size(s).numel()) for s in shapes)
        return cls(tree, shapes, numels, batch, batched, first.dtype, first.device)

    def flatten(self, tree: Any) -> torch.Tensor:
        """``tree`` (leaves shaped like the state) → ``(batch, n)``."""
        if isinstance(tree, torch.Tensor):
            return tree.reshape(self.batch, -1)
        leaves = tree_leaves(tree)
        if len(leaves) == 1:
            return leaves[0].reshape(self.batch, -1)
        return torch.cat([leaf.reshape(self.batch, -1) for leaf in leaves], dim=1)

    def unflatten(self, flat: torch.Tensor) -> Any:
        """``(batch, n)`` → the state's tree."""
        lead = (self.batch,) if self.batched else ()
        if isinstance(self.template, torch.Tensor):
            return flat.reshape((*lead, *self.shapes[0]))
        if len(self.shapes) == 1:
            return tree_unflatten(self.template, [flat.reshape((*lead, *self.shapes[0]))])
        parts = torch.split(flat, self.numels, dim=1)
        return tree_unflatten(
            self.template, [p.reshape((*lead, *s)) for p, s in zip(parts, self.shapes)]
        )

    def unflatten_series(self, flat: torch.Tensor) -> Any:
        """``(batch, time, n)`` → tree with leaves ``(batch, time, ...)`` or ``(time, ...)``."""
        steps = flat.shape[1]
        parts = [flat] if len(self.shapes) == 1 else torch.split(flat, self.numels, dim=2)
        if self.batched:
            leaves = [p.reshape(self.batch, steps, *s) for p, s in zip(parts, self.shapes)]
        else:
            leaves = [p.reshape(steps, *s) for p, s in zip(parts, self.shapes)]
        return tree_unflatten(self.template, leaves)


def tree_where(mask: torch.Tensor, new: Any, old: Any) -> Any:
    """Per-sample select between two trees whose leaves have a leading ``(batch,)`` axis, or any
    shape when ``mask`` has a single element (no batch axis)."""
    if mask.numel() == 1:
        m = mask.reshape(())
        return tree_map(lambda a, b: torch.where(m, a, b), new, old)

    def select(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if not isinstance(a, torch.Tensor) or a.ndim == 0 or a.shape[0] != mask.shape[0]:
            return a  # not per sample: the new value
            return a
        return torch.where(mask.reshape(-1, *([1] * (a.ndim - 1))), a, b)

    return tree_map(select, new, old)
