"""Compatibility facades: the interfaces of other libraries, translated onto :func:`torchnde.solve`.

* :mod:`torchnde.compat.torchdiffeq` — ``odeint``, ``odeint_adjoint``, ``odeint_event`` and
  ``odeint_dense`` with torchdiffeq 0.2.5's signatures, method names and options.
* :mod:`torchnde.compat.torchcde` — ``cdeint``, the coefficient functions and the interpolation
  classes of torchcde 0.2.5, on torchnde's control paths.
* :mod:`torchnde.compat.torchsde` — ``sdeint``, ``sdeint_adjoint`` and the Brownian motions
  ``BrownianInterval``/``BrownianPath``/``BrownianTree`` with torchsde 0.2.6's signatures, method
  names and defaults.

Switching is one import line: ``from torchnde.compat.torchdiffeq import odeint``. The facades are
thin translations, never a second implementation: every solve runs through :func:`torchnde.solve`.
"""

from . import torchcde, torchdiffeq, torchsde

__all__ = ["torchcde", "torchdiffeq", "torchsde"]
