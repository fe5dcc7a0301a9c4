"""Compatibility facades: the interfaces of other libraries, translated onto :func:`torchnde.solve`.

* :mod:`torchnde.compat.torchdiffeq` — ``odeint``, ``odeint_adjoint``, ``odeint_event`` and
  ``odeint_dense`` with torchdiffeq 0.2.5's signatures, method names and options.

Switching is one import line: ``from torchnde.compat.torchdiffeq import odeint``. The facades are
thin translations, never a second implementation: every solve runs through :func:`torchnde.solve`.
"""

from . import torchdiffeq

__all__ = ["torchdiffeq"]
