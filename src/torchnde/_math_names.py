"""The mathematical functions that equation and term strings may use, by name (sympy only, so
that parsing equations needs neither numpy nor PySINDy)."""

from __future__ import annotations

from typing import Any

import sympy

__all__ = ["MATH_FUNCTIONS"]

#: shared by torchnde.hybrid (equations) and torchnde.discovery (library terms)
MATH_FUNCTIONS: dict[str, Any] = {
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "asin": sympy.asin,
    "acos": sympy.acos,
    "atan": sympy.atan,
    "sinh": sympy.sinh,
    "cosh": sympy.cosh,
    "tanh": sympy.tanh,
    "exp": sympy.exp,
    "log": sympy.log,
    "sqrt": sympy.sqrt,
    "Abs": sympy.Abs,
    "abs": sympy.Abs,
    "sign": sympy.sign,
}
