"""Shared test setup.

The solver database lives in ``solver_db.py`` next to this file; tests import it as ``solver_db``.
Nothing here changes global state (default dtype, threads, seeds) for other test files: tests that
need float64 build float64 tensors explicitly; a module that wants one intra-op thread uses the
``one_thread`` fixture, which restores the thread count afterwards.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # so `import solver_db` works under any pytest import mode
    sys.path.insert(0, _HERE)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test (small tensors run fastest so, and a busy machine hurts
    them least); the previous count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
