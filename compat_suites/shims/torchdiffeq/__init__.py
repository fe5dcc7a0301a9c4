"""``import torchdiffeq`` as torchnde's facade, for running torchdiffeq's own tests and examples.

A shim for compat_suites/run.py only (never installed): with ``compat_suites/shims`` first on
``sys.path``, ``import torchdiffeq`` gives :mod:`torchnde.compat.torchdiffeq`, and ``import torchdiffeq.NAME``
gives the facade's public submodule ``NAME`` (e.g. none yet) if it has one.
"""

import sys

import torchnde.compat.torchdiffeq as _facade

sys.modules[__name__] = _facade
for _name, _value in vars(_facade).items():
    is_module = type(_value) is type(sys)
    if is_module and not _name.startswith("_") and _value.__name__.startswith("torchnde."):
        sys.modules.setdefault(f"{__name__}.{_name}", _value)
