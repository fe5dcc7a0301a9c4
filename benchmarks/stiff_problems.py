"""The stiff test set shared by ``tests/test_stiff_set.py`` and the stiff benchmark.

Seven problems in the standard forms of Hairer & Wanner, *Solving Ordinary Differential Equations
II* (2nd ed., 1996, §IV.1 and §IV.10) and of the IVP test set of Mazzia & Magherini (Bari, release
2.4, 2008), each as one vector field written once against a small array namespace, so that the
very same formula runs in torch (for torchnde), NumPy (for SciPy) and JAX (for diffrax):

=================  ====  ======================  =========================================
problem            size  interval                note
=================  ====  ======================  =========================================
``robertson``      3     [0, 1e5]                Robertson's kinetics (HW II, eq. IV.1.3)
``robertson_long`` 3     [0, 1e11]               the test set's interval, on a log grid
``vanderpol``      2     [0, 3000]               ``x'' = μ(1 - x²)x' - x``, μ = 1000, y0 = (2, 0)
``hires``          8     [0, 321.8122]           plant physiology (Schäfer 1975)
``orego``          3     [0, 360]                the Oregonator (Field & Noyes 1974)
``pollution``      20    [0, 60]                 Verwer's air pollution model, 25 reactions
``e5``             4     [0, 1e13]               chemical pyrolysis (Enright et al. 1975)
=================  ====  ======================  =========================================

Every field is autonomous, maps ``y: (..., n)`` to ``(..., n)`` (any leading batch shape, so it
serves ``batch_axis=0`` unchanged) and is written for autograd and ``torch.func.jacfwd``: no
in-place operation on its input, no ``.item()``, constants following ``y``'s dtype and device.
Each problem also has its analytic Jacobian ``(..., n, n)``.

**The error norm.** Accuracy is measured in one mixed relative/absolute norm per problem,

    err(y, ref) = max_i |y_i − ref_i| / (|ref_i| + scale),

so a component larger than the problem's ``scale`` is measured relatively and a smaller one
absolutely against ``scale``. A solve "within 10× the tolerance" has ``err ≤ 10 · rtol`` when it
was run with ``rtol`` and ``atol = rtol · scale`` (:meth:`StiffProblem.atol`): then
``err ≤ 10 rtol`` is exactly ``|y_i − ref_i| ≤ 10 (atol + rtol |ref_i|)`` for every component.
The scales reproduce the settings of issue 15's reference points (SciPy Radau 188 / 919 / 156
steps on Robertson / Van der Pol / HIRES at rtol 1e-6 come with atol 1e-10 / 1e-6 / 1e-8).

**References.** ``reference_ts``/``reference_t1`` are float64 numbers computed once, offline, by
``python -m benchmarks.stiff_reference`` with SciPy's ``solve_ivp(method="Radau", rtol=1e-12)``,
integrating from one output time to the next, and stored in ``benchmarks/stiff_reference_values.py``.
Where the test set publishes a reference at ``t1`` it is kept here too (``published``), and the
tests check our reference against it.

**E5.** Its components y2 and y3 fall to about 1e-22 by t = 1e13, while y2 − y3 − y4 = 0 holds
exactly. In float64 the difference y2 − y3 is lost to round-off in the early phase where y2 and y3
are near 1e-10: every float64 solve of the standard four-variable form we ran (SciPy Radau and BDF
at rtol 1e-3 … 1e-12) ends, for t ≥ 1e11, with y2 and y3 wrong by 50–250 %. The stored reference
therefore solves the same equations in the variables (y1, y2, y4) with y3 = y2 − y4, which keeps
the conservation law exactly (Radau at rtol 1e-11, 1e-12 and 1e-13 agree to 2e-12 relative there,
and late in time y2 = y3 → 1/(M C t), as the equations imply once y1 and y4 are gone). The test
set's published value at 1e13 is within 7e-4 (relative) of it, and itself breaks the conservation
law by 1.4e-3 relative. Solvers integrate E5 over the whole interval [0, 1e13], but their accuracy
is measured at t = 1e5 (``accuracy_t``), where y1 has fallen to 0.4 % of y1(0) and round-off is
still far below every tolerance of the set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "E5_CONSTANTS",
    "JAX",
    "NUMPY",
    "PROBLEMS",
    "TORCH",
    "Ops",
    "StiffProblem",
    "mixed_error",
    "problem",
]


# ------------------------------------------------------------------------------------------------
# the array namespaces a field is written against


@dataclass(frozen=True)
class Ops:
    """The few array operations the fields use, for one library.

    Attributes:
        name: ``"torch"``, ``"numpy"`` or ``"jax"``.
        stack: stacks arrays along a new axis ``axis`` (default the last).
        full_like: an array shaped like ``x`` filled with ``value``.
        const: a NumPy constant converted to ``like``'s library, dtype and device (cached).
    """

    name: str
    stack: Callable[..., Any]
    full_like: Callable[[Any, float], Any]
    const: Callable[[np.ndarray, Any], Any]


def _torch_ops() -> Ops:
    import torch

    # keyed by the constant's id; the constant is kept in the entry, so an id cannot be reused
    cache: dict[tuple[int, Any, Any], tuple[np.ndarray, Any]] = {}

    def const(c: np.ndarray, like: Any) -> Any:
        key = (id(c), like.dtype, like.device)
        hit = cache.get(key)
        if hit is None or hit[0] is not c:
            hit = cache[key] = (c, torch.as_tensor(c, dtype=like.dtype, device=like.device))
        return hit[1]

    return Ops(
        "torch",
        lambda xs, axis=-1: torch.stack(list(xs), dim=axis),
        torch.full_like,
        const,
    )


def _numpy_ops() -> Ops:
    return Ops(
        "numpy",
        lambda xs, axis=-1: np.stack(list(xs), axis=axis),
        np.full_like,
        lambda c, like: c.astype(like.dtype, copy=False),
    )


class _LazyJax:
    """The JAX namespace, imported only when a JAX field is built (JAX is optional)."""

    _ops: Ops | None = None

    def get(self) -> Ops:
        if self._ops is None:
            import jax.numpy as jnp

            self._ops = Ops(
                "jax",
                lambda xs, axis=-1: jnp.stack(list(xs), axis=axis),
                jnp.full_like,
                lambda c, like: jnp.asarray(c, dtype=like.dtype),
            )
        return self._ops


TORCH = _torch_ops()
NUMPY = _numpy_ops()
JAX = _LazyJax()


def _matrix(ops: Ops, rows: Sequence[Sequence[Any]]) -> Any:
    """A ``(..., n, n)`` Jacobian from its rows of ``(...)`` entries."""
    return ops.stack([ops.stack(row) for row in rows], axis=-2)


# ------------------------------------------------------------------------------------------------
# the problems


@dataclass(frozen=True)
class StiffProblem:
    """One problem of the stiff test set.

    Attributes:
        name: short name (``"hires"``).
        title: what it models, with its source.
        rhs: ``rhs(y, ops) -> dy/dt`` for ``y: (..., n)``, written against :class:`Ops`.
        jac: ``jac(y, ops) -> ∂f/∂y`` with shape ``(..., n, n)``.
        y0: the initial state.
        t1: the end of the interval (every problem starts at ``t0 = 0``).
        ts: the output times (increasing, in ``(0, t1]``, ending at ``t1``).
        scale: the norm's absolute floor; a solve at ``rtol`` uses ``atol = rtol · scale``.
        reference_atol: SciPy Radau's ``atol`` for the stored reference (its ``rtol`` is 1e-12).
        published: the test set's reference value at ``t1`` (``None`` where it publishes none
            for this interval), to check the definitions and our reference against.
        invariant: optional ``(weights, value)``: ``weights · y`` is conserved and equals ``value``.
        accuracy_t: the output time at which a solve's accuracy is measured (default ``t1``;
            E5 only: see the module's notes).
    """

    name: str
    title: str
    rhs: Callable[[Any, Ops], Any]
    jac: Callable[[Any, Ops], Any]
    y0: tuple[float, ...]
    t1: float
    ts: tuple[float, ...]
    scale: float
    reference_atol: float
    published: tuple[float, ...] | None = None
    invariant: tuple[tuple[float, ...], float] | None = None
    accuracy_t: float | None = None
    t0: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.ts[-1] != self.t1 or self.check_t not in self.ts:
            raise ValueError(f"{self.name}: ts must end at t1 and contain accuracy_t")

    @property
    def size(self) -> int:
        return len(self.y0)

    @property
    def check_t(self) -> float:
        """The time at which accuracy is measured: ``accuracy_t``, or ``t1``."""
        return self.t1 if self.accuracy_t is None else self.accuracy_t

    def atol(self, rtol: float) -> float:
        """The absolute tolerance that goes with ``rtol`` in this problem's norm."""
        return rtol * self.scale

    # --- the field in each library ---------------------------------------------------------------

    def torch_field(self) -> Callable[[Any, Any, Any], Any]:
        """``f(t, y, args)`` for torchnde: ``y: (n,)`` or ``(batch, n)``."""
        rhs = self.rhs

        def f(t: Any, y: Any, args: Any = None) -> Any:
            return rhs(y, TORCH)

        f.__name__ = f"{self.name}_field"
        return f

    def torch_jacobian(self) -> Callable[[Any, Any, Any], Any]:
        """``J(t, y, args) = ∂f/∂y`` in torch: ``(n, n)`` or ``(batch, n, n)``."""
        jac = self.jac

        def J(t: Any, y: Any, args: Any = None) -> Any:
            return jac(y, TORCH)

        return J

    def numpy_field(self) -> Callable[[float, np.ndarray], np.ndarray]:
        """``f(t, y)`` for SciPy's ``solve_ivp``."""
        rhs = self.rhs
        return lambda t, y: rhs(y, NUMPY)

    def numpy_jacobian(self) -> Callable[[float, np.ndarray], np.ndarray]:
        """``J(t, y)`` for SciPy's ``solve_ivp(jac=...)``."""
        jac = self.jac
        return lambda t, y: jac(y, NUMPY)

    def jax_field(self) -> Callable[[Any, Any, Any], Any]:
        """``f(t, y, args)`` for diffrax (needs JAX)."""
        rhs, ops = self.rhs, JAX.get()
        return lambda t, y, args: rhs(y, ops)

    def y0_tensor(self, dtype: Any = None, device: Any = None) -> Any:
        """``y0`` as a torch tensor (float64 unless told)."""
        import torch

        return torch.tensor(self.y0, dtype=dtype or torch.float64, device=device)

    # --- references --------------------------------------------------------------------------

    @property
    def reference_ts(self) -> np.ndarray:
        """The reference solution at :attr:`ts`, ``(len(ts), n)`` (stored numbers)."""
        return np.array(_reference(self.name)["ys"], dtype=np.float64)

    @property
    def reference_t1(self) -> np.ndarray:
        """The reference solution at ``t1``, ``(n,)``."""
        return self.reference_ts[-1]

    @property
    def reference_check(self) -> np.ndarray:
        """The reference solution at :attr:`check_t`, ``(n,)``."""
        return self.reference_ts[self.ts.index(self.check_t)]

    def error(self, y: Any) -> float:
        """:func:`mixed_error` of a state at :attr:`check_t` against the reference."""
        return mixed_error(y, self.reference_check, self.scale)


def mixed_error(y: Any, ref: Any, scale: float) -> float:
    """``max_i |y_i − ref_i| / (|ref_i| + scale)``: relative above ``scale``, absolute below it.

    Args:
        y: the computed state (torch tensor, NumPy or JAX array, any shape ``(..., n)``).
        ref: the reference, broadcastable to ``y``.
        scale: the absolute floor (the problem's :attr:`StiffProblem.scale`).

    Returns:
        The largest weighted error over all entries; ``inf`` if ``y`` is not finite.
    """
    y = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if not np.all(np.isfinite(y)):
        return float("inf")
    return float(np.max(np.abs(y - ref) / (np.abs(ref) + scale)))


# --- Robertson --------------------------------------------------------------------------------
# y1' = -0.04 y1 + 1e4 y2 y3,  y2' = 0.04 y1 - 1e4 y2 y3 - 3e7 y2²,  y3' = 3e7 y2²


def _robertson(y: Any, ops: Ops) -> Any:
    y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
    slow, fast = 0.04 * y1 - 1e4 * y2 * y3, 3e7 * y2 * y2
    return ops.stack([-slow, slow - fast, fast])


def _robertson_jac(y: Any, ops: Ops) -> Any:
    y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
    c = lambda v: ops.full_like(y1, v)  # noqa: E731
    return _matrix(
        ops,
        [
            [c(-0.04), 1e4 * y3, 1e4 * y2],
            [c(0.04), -1e4 * y3 - 6e7 * y2, -1e4 * y2],
            [c(0.0), 6e7 * y2, c(0.0)],
        ],
    )


# --- Van der Pol, μ = 1000, unscaled: x'' = μ (1 - x²) x' - x ---------------------------------

MU = 1000.0


def _vanderpol(y: Any, ops: Ops) -> Any:
    x, v = y[..., 0], y[..., 1]
    return ops.stack([v, MU * (1 - x * x) * v - x])


def _vanderpol_jac(y: Any, ops: Ops) -> Any:
    x, v = y[..., 0], y[..., 1]
    return _matrix(
        ops,
        [[ops.full_like(x, 0.0), ops.full_like(x, 1.0)], [-2 * MU * x * v - 1, MU * (1 - x * x)]],
    )


# --- HIRES: linear part A y + b, one bilinear reaction 280 y6 y8 ------------------------------

_HIRES_A = np.array(
    [
        [-1.71, 0.43, 8.32, 0, 0, 0, 0, 0],
        [1.71, -8.75, 0, 0, 0, 0, 0, 0],
        [0, 0, -10.03, 0.43, 0.035, 0, 0, 0],
        [0, 8.32, 1.71, -1.12, 0, 0, 0, 0],
        [0, 0, 0, 0, -1.745, 0.43, 0.43, 0],
        [0, 0, 0, 0.69, 1.71, -0.43, 0.69, 0],
        [0, 0, 0, 0, 0, 0, -1.81, 0],
        [0, 0, 0, 0, 0, 0, 1.81, 0],
    ]
)
_HIRES_B = np.array([0.0007, 0, 0, 0, 0, 0, 0, 0])
_HIRES_E = np.array([0, 0, 0, 0, 0, -1.0, 1.0, -1.0])  # where 280 y6 y8 enters
_HIRES_K = 280.0
_HIRES_AT = np.ascontiguousarray(_HIRES_A.T)


def _hires(y: Any, ops: Ops) -> Any:
    r = _HIRES_K * y[..., 5:6] * y[..., 7:8]
    return y @ ops.const(_HIRES_AT, y) + ops.const(_HIRES_B, y) + r * ops.const(_HIRES_E, y)


def _hires_jac(y: Any, ops: Ops) -> Any:
    # ∂(280 y6 y8)/∂y = 280 (y8 e6 + y6 e8)
    zero = ops.full_like(y[..., 0], 0.0)
    grad_r = [zero] * 8
    grad_r[5], grad_r[7] = _HIRES_K * y[..., 7], _HIRES_K * y[..., 5]
    grad_r = ops.stack(grad_r)  # (..., 8)
    e = ops.const(_HIRES_E, y)
    return ops.const(_HIRES_A, y) + e[:, None] * grad_r[..., None, :]


# --- OREGO (the Oregonator) ----------------------------------------------------------------

_OREGO_K = (77.27, 8.375e-6, 0.161)


def _orego(y: Any, ops: Ops) -> Any:
    s, q, w = _OREGO_K
    y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
    return ops.stack([s * (y2 + y1 * (1 - q * y1 - y2)), (y3 - (1 + y1) * y2) / s, w * (y1 - y3)])


def _orego_jac(y: Any, ops: Ops) -> Any:
    s, q, w = _OREGO_K
    y1, y2 = y[..., 0], y[..., 1]
    c = lambda v: ops.full_like(y1, v)  # noqa: E731
    return _matrix(
        ops,
        [
            [s * (1 - y2 - 2 * q * y1), s * (1 - y1), c(0.0)],
            [-y2 / s, -(1 + y1) / s, c(1 / s)],
            [c(w), c(0.0), c(-w)],
        ],
    )


# --- Pollution: 25 mass-action reactions among 20 species (Verwer 1994) ---------------------
# Each reaction: (rate constant, reactants (0-based), {species: net change}); the rate is
# k · Π y[reactant]. Species: NO2, NO, O3P, O3, HO2, OH, HCHO, CO, ALD, MEO2, C2O3, CO2, PAN,
# CH3O, HNO3, O1D, SO2, SO4, NO3, N2O5 (indices 0..19).

_POLLUTION_REACTIONS: tuple[tuple[float, tuple[int, ...], dict[int, int]], ...] = (
    (0.35, (0,), {0: -1, 1: 1, 2: 1}),
    (26.6, (1, 3), {1: -1, 3: -1, 0: 1}),
    (1.23e4, (4, 1), {4: -1, 1: -1, 0: 1, 5: 1}),
    (8.6e-4, (6,), {6: -1, 4: 2, 7: 1}),
    (8.2e-4, (6,), {6: -1, 7: 1}),
    (1.5e4, (6, 5), {6: -1, 5: -1, 4: 1, 7: 1}),
    (1.3e-4, (8,), {8: -1, 4: 1, 7: 1, 9: 1}),
    (2.4e4, (8, 5), {8: -1, 5: -1, 10: 1}),
    (1.65e4, (10, 1), {10: -1, 1: -1, 0: 1, 9: 1, 11: 1}),
    (9.0e3, (10, 0), {10: -1, 0: -1, 12: 1}),
    (0.022, (12,), {12: -1, 10: 1, 0: 1}),
    (1.2e4, (9, 1), {9: -1, 1: -1, 13: 1, 0: 1}),
    (1.88, (13,), {13: -1, 6: 1, 4: 1}),
    (1.63e4, (0, 5), {0: -1, 5: -1, 14: 1}),
    (4.8e6, (2,), {2: -1, 3: 1}),
    (3.5e-4, (3,), {3: -1, 15: 1}),
    (0.0175, (3,), {3: -1, 2: 1}),
    (1.0e8, (15,), {15: -1, 5: 2}),
    (4.44e11, (15,), {15: -1, 2: 1}),
    (1.24e3, (16, 5), {16: -1, 5: -1, 17: 1, 4: 1}),
    (2.1, (18,), {18: -1, 1: 1}),
    (5.78, (18,), {18: -1, 0: 1, 2: 1}),
    (0.0474, (0, 3), {0: -1, 3: -1, 18: 1}),
    (1.78e3, (18, 0), {18: -1, 0: -1, 19: 1}),
    (3.12, (19,), {19: -1, 18: 1, 0: 1}),
)


def _pollution_tables() -> tuple[np.ndarray, ...]:
    n, m = 20, len(_POLLUTION_REACTIONS)
    k = np.array([r[0] for r in _POLLUTION_REACTIONS])
    first = np.array([r[1][0] for r in _POLLUTION_REACTIONS])
    # a unimolecular reaction's "second reactant" is the constant 1 (index n of an extended y)
    second = np.array([r[1][1] if len(r[1]) == 2 else n for r in _POLLUTION_REACTIONS])
    stoich = np.zeros((m, n))  # reaction j changes species i by stoich[j, i]
    for j, (_, _, change) in enumerate(_POLLUTION_REACTIONS):
        for i, c in change.items():
            stoich[j, i] = c
    one_hot = np.eye(n + 1)[:, :n]  # row n (the constant) is zero
    return k, first, second, stoich, one_hot[first], one_hot[second]


_POL_K, _POL_FIRST, _POL_SECOND, _POL_S, _POL_D1, _POL_D2 = _pollution_tables()
_POL_D1T, _POL_D2T = np.ascontiguousarray(_POL_D1.T), np.ascontiguousarray(_POL_D2.T)
_POL_ST = np.ascontiguousarray(_POL_S.T)
_POL_UNI = (_POL_SECOND == 20).astype(np.float64)  # 1 where the second factor is the constant


def _pollution_factors(y: Any, ops: Ops) -> tuple[Any, Any]:
    """The two factors of every rate, ``(..., 25)`` each (the second is 1 when unimolecular),
    gathered by matrix products so the field has no index tensors to move between devices."""
    a = y @ ops.const(_POL_D1T, y)
    b = y @ ops.const(_POL_D2T, y) + ops.const(_POL_UNI, y)
    return a, b


def _pollution(y: Any, ops: Ops) -> Any:
    a, b = _pollution_factors(y, ops)
    return (ops.const(_POL_K, y) * a * b) @ ops.const(_POL_S, y)


def _pollution_jac(y: Any, ops: Ops) -> Any:
    # ∂r_j/∂y = k_j (b_j e_first + a_j e_second), then J = Sᵀ ∂r/∂y
    a, b = _pollution_factors(y, ops)
    k = ops.const(_POL_K, y)
    dr = (k * b)[..., :, None] * ops.const(_POL_D1, y) + (k * a)[..., :, None] * ops.const(
        _POL_D2, y
    )
    return ops.const(_POL_ST, y) @ dr


# --- E5 (chemical pyrolysis) -----------------------------------------------------------------

E5_CONSTANTS = (7.89e-10, 1.1e7, 1.13e3, 1.0e6)  # A, B, C, M


def _e5(y: Any, ops: Ops) -> Any:
    A, B, C, M = E5_CONSTANTS
    y1, y2, y3, y4 = y[..., 0], y[..., 1], y[..., 2], y[..., 3]
    r1, r2, r3, r4 = A * y1, B * y1 * y3, M * C * y2 * y3, C * y4
    return ops.stack([-r1 - r2, r1 - r3, r1 - r2 - r3 + r4, r2 - r4])


def _e5_jac(y: Any, ops: Ops) -> Any:
    A, B, C, M = E5_CONSTANTS
    y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
    c = lambda v: ops.full_like(y1, v)  # noqa: E731
    return _matrix(
        ops,
        [
            [-A - B * y3, c(0.0), -B * y1, c(0.0)],
            [c(A), -M * C * y3, -M * C * y2, c(0.0)],
            [A - B * y3, -M * C * y3, -B * y1 - M * C * y2, c(C)],
            [B * y3, c(0.0), B * y1, c(-C)],
        ],
    )


def _decades(lo: int, hi: int) -> tuple[float, ...]:
    return tuple(10.0**k for k in range(lo, hi + 1))


PROBLEMS: dict[str, StiffProblem] = {
    p.name: p
    for p in (
        StiffProblem(
            "robertson",
            "Robertson's autocatalytic reaction (Hairer & Wanner II, §IV.1), to t = 1e5",
            _robertson,
            _robertson_jac,
            (1.0, 0.0, 0.0),
            1e5,
            _decades(-5, 5),
            scale=1e-4,
            reference_atol=1e-20,
            invariant=((1.0, 1.0, 1.0), 1.0),
        ),
        StiffProblem(
            "robertson_long",
            "Robertson's reaction on the test set's interval [0, 1e11] (Mazzia & Magherini)",
            _robertson,
            _robertson_jac,
            (1.0, 0.0, 0.0),
            1e11,
            _decades(-5, 11),
            scale=1e-4,
            reference_atol=1e-20,
            published=(0.2083340149701255e-7, 0.8333360770334713e-13, 0.9999999791665050),
            invariant=((1.0, 1.0, 1.0), 1.0),
        ),
        StiffProblem(
            "vanderpol",
            "Van der Pol, x'' = mu (1 - x^2) x' - x with mu = 1000, y0 = (2, 0) (unscaled time)",
            _vanderpol,
            _vanderpol_jac,
            (2.0, 0.0),
            3000.0,
            tuple(float(t) for t in range(300, 3001, 300)),
            scale=1.0,
            reference_atol=1e-14,
        ),
        StiffProblem(
            "hires",
            "HIRES, high irradiance response of plant morphogenesis (Schäfer 1975; test set)",
            _hires,
            _hires_jac,
            (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057),
            321.8122,
            (1.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 321.8122),
            scale=1e-2,
            reference_atol=1e-16,
            published=(
                0.7371312573325668e-3,
                0.1442485726316185e-3,
                0.5888729740967575e-4,
                0.1175651343283149e-2,
                0.2386356198831331e-2,
                0.6238968252742796e-2,
                0.2849998395185769e-2,
                0.2850001604814231e-2,
            ),
        ),
        StiffProblem(
            "orego",
            "OREGO, the Oregonator model of the Belousov-Zhabotinskii reaction (test set)",
            _orego,
            _orego_jac,
            (1.0, 2.0, 3.0),
            360.0,
            tuple(float(t) for t in range(30, 361, 30)),
            scale=1.0,
            reference_atol=1e-12,
            published=(0.1000814870318523e1, 0.1228178521549917e4, 0.1320554942846706e3),
        ),
        StiffProblem(
            "pollution",
            "Pollution, 25 reactions among 20 species of the RIVM air pollution model (Verwer 1994)",
            _pollution,
            _pollution_jac,
            tuple(
                {1: 0.2, 3: 0.04, 6: 0.1, 7: 0.3, 8: 0.01, 16: 0.007}.get(i, 0.0) for i in range(20)
            ),
            60.0,
            (1e-3, 1e-2, 0.1, 1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0),
            scale=1e-4,
            reference_atol=1e-20,
            published=(
                0.5646255480022769e-1,
                0.1342484130422339e0,
                0.4139734331099427e-8,
                0.5523140207484359e-2,
                0.2018977262302196e-6,
                0.1464541863493966e-6,
                0.7784249118997964e-1,
                0.3245075353396018e0,
                0.7494013383880406e-2,
                0.1622293157301561e-7,
                0.1135863833257075e-7,
                0.2230505975721359e-2,
                0.2087162882798630e-3,
                0.1396921016840158e-4,
                0.8964884856898295e-2,
                0.4352846369330103e-17,
                0.6899219696263405e-2,
                0.1007803037365946e-3,
                0.1772146513969984e-5,
                0.5682943292316392e-4,
            ),
        ),
        StiffProblem(
            "e5",
            "E5, chemical pyrolysis (Enright, Hull & Lindberg 1975; test set), to t = 1e13",
            _e5,
            _e5_jac,
            (1.76e-3, 0.0, 0.0, 0.0),
            1e13,
            _decades(-5, 13),
            scale=1e-20,
            reference_atol=1e-36,
            published=(
                0.1152903278711829e-290,
                0.8867655517642120e-22,
                0.8854814626268838e-22,
                0.0,
            ),
            invariant=((0.0, 1.0, -1.0, -1.0), 0.0),
            accuracy_t=1e5,
        ),
    )
}


def problem(name: str) -> StiffProblem:
    """The problem called ``name``; a ``ValueError`` names the known ones."""
    if name not in PROBLEMS:
        raise ValueError(f"no stiff problem {name!r}; the set has {sorted(PROBLEMS)}")
    return PROBLEMS[name]


def _reference(name: str) -> dict[str, Any]:
    from .stiff_reference_values import REFERENCES

    if name not in REFERENCES:
        raise ValueError(
            f"no stored reference for {name!r}: run `python -m benchmarks.stiff_reference {name}`"
        )
    return REFERENCES[name]
