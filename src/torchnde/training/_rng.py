"""Seeding and saving every random number generator a training step may draw from: Python's
``random``, NumPy's global generator (when NumPy is installed), torch's CPU generator and, when
CUDA is in use, every CUDA generator."""

from __future__ import annotations

import random
from typing import Any

import torch

try:
    import numpy
except ImportError:  # NumPy is optional
    numpy = None

__all__ = ["capture_rng_state", "restore_rng_state", "seed_everything"]

#: NumPy's legacy generator takes seeds below 2**32
MAX_SEED = 2**32 - 1


def check_seed(seed: object, name: str = "seed") -> int:
    """Return ``seed`` if it is an int in ``[0, 2**32)``, else raise naming ``name``."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`{name}` must be an int, got {seed!r} of type {type(seed).__name__}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"`{name}` must lie in [0, 2**32 - 1], got {seed}")
    return seed


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA).

    Call it before building a model so that its initial parameters are reproducible too.

    Args:
        seed: an int in ``[0, 2**32)``.
    """
    check_seed(seed)
    random.seed(seed)
    if numpy is not None:
        numpy.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """The state of every generator, as tensors, lists and numbers (loadable with
    ``torch.load(weights_only=True)``)."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": None,
        "torch": torch.get_rng_state(),
        "cuda": None,
    }
    if numpy is not None:
        kind, keys, position, has_gauss, cached = numpy.random.get_state()
        state["numpy"] = {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(numpy.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put every generator back into a state from :func:`capture_rng_state`."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss"]))
    if numpy is not None and state["numpy"] is not None:
        saved = state["numpy"]
        numpy.random.set_state(
            (
                saved["kind"],
                saved["keys"].numpy().astype(numpy.uint32),
                saved["position"],
                saved["has_gauss"],
                saved["cached_gaussian"],
            )
        )
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:  # another machine: restore the devices both have
            for index, device_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(device_state, index)
