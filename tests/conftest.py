"""Shared test setup.

The solver database lives in ``solver_db.py`` next to this file; tests import it as ``solver_db``.
Nothing here changes global state (default dtype, threads, seeds) for other test files: tests that
need float64 build float64 tensors explicitly.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # so `import solver_db` works under any pytest import mode
    sys.path.insert(0, _HERE)
