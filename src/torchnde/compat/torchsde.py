"""torchsde 0.2.6's interface, translated onto :func:`torchnde.solve`.

Switch with one import line::

    from torchnde.compat.torchsde import sdeint, sdeint_adjoint, BrownianInterval

The SDE object is torchsde's: anything with ``noise_type`` (``"diagonal"``, ``"additive"``,
``"scalar"``, ``"general"``), ``sde_type`` (``"ito"``, ``"stratonovich"``) and methods ``f(t, y)``
(drift, ``(batch, d)``) and ``g(t, y)`` (diffusion: ``(batch, d)`` for diagonal noise,
``(batch, d, m)`` otherwise), or ``f_and_g(t, y)`` returning both; ``names={"drift": ...,
"diffusion": ..., "drift_and_diffusion": ..., "prior_drift": ...}`` renames them. ``y0`` is
``(batch, d)``, ``ts`` strictly increasing, and the result ``(len(ts), batch, d)``. Every call is
one :func:`torchnde.solve` of ``MultiTerm(ODETerm(drift), ControlTerm(diffusion, brownian,
noise=noise_type))``; nothing is solved here.

Methods (torchsde name → torchnde solver; the defaults are torchsde's):

=========================  ============================  ==========================================
``euler``                  ``EulerMaruyama``             Itô; default for general noise
``milstein``               ``Milstein``                  Itô or Stratonovich; not general noise;
                                                         ``options={'grad_free': True}``:
                                                         ``Milstein(derivative_free=True)``
``srk``                    ``SRA1`` / ``SRI``            Itô; additive / diagonal or scalar
                                                         noise (strong order 1.5); the default
``midpoint``               ``Midpoint``                  Stratonovich; the Stratonovich default
``heun``                   ``Heun``                      Stratonovich
``euler_heun``             ``EulerHeun``                 Stratonovich
``reversible_heun``        ``ReversibleHeun``            Stratonovich; with ``sdeint_adjoint`` its
                                                         gradients are exact
``log_ode``                ``LogODEMidpoint``            Stratonovich; needs ``bm`` with
                                                         ``'davie'`` or ``'foster'`` Lévy area
``adjoint_reversible_heun``  (``ReversibleAdjoint``)     only as ``adjoint_method``
=========================  ============================  ==========================================

The Brownian motion: ``bm=None`` draws a fresh path, as torchsde does — with fixed steps that
divide ``[ts[0], ts[-1]]`` a :class:`torchnde.BrownianGrid` on the step grid (sampled once, O(1)
per step), otherwise a :class:`torchnde.VirtualBrownianTree`. To fix the path pass a
:class:`BrownianInterval` (this module's, with torchsde's constructor and structure: a tree of
intervals split where it is queried, so its path depends on the order of queries as torchsde's
does; ``halfway_tree=True`` gives the order-independent :class:`torchnde.VirtualBrownianTree`),
or a torchsde Brownian object (``torchsde.BrownianInterval``,
``BrownianPath``, ``BrownianTree``), which is queried exactly as torchsde's solvers query it, so
the same object gives the same increments to both libraries.

Fixed steps (``adaptive=False``) are torchsde's: ``t0, t0 + dt, t0 + 2dt, …`` accumulated in the
dtype of ``ts`` and cut at ``ts[-1]``, with outputs between steps linearly interpolated; so with the
same Brownian increments the results agree with torchsde's to rounding (float64: 1e-15). With
``bm=None`` and ``dt`` dividing the interval the steps are the exact times ``t0 + k·dt`` instead
(the same times up to the rounding of the accumulation).

Deviations from torchsde, each deliberate:

* **Adaptive steps** (``adaptive=True``) come from :class:`torchnde.PIDController`: on the
  solver's own error estimate where it has one (``srk`` on additive noise: SRA1; ``heun``: run as
  ``HeunEuler``, the same steps with an embedded Euler estimate; ``reversible_heun``), otherwise
  on torchsde's estimate, one step against two half steps (:class:`torchnde.StepDoubling`).
  Steps land on every time in ``ts`` (torchsde interpolates linearly). A step that would have to
  shrink below ``dt_min`` fails with :class:`torchnde.SolveError` (torchsde accepts it with a
  warning).
* **Lévy-area approximations** ``"davie"`` and ``"foster"`` (``return_A=True``) have the
  variances of Davie's and Foster's papers (``h²/12`` and ``h²/20 + h(H_i² + H_j²)/5`` for the
  added normal, so ``Var A = h²/4`` as for the true Lévy area); torchsde adds twice Davie's
  variance and a different constant in Foster's.
* **Unsupported input raises** instead of being ignored: unknown keyword arguments (torchsde
  warns), unknown ``options`` or ``names`` keys, ``extra_solver_state`` for a method without one,
  and a diffusion given only as a product (``g_prod``/``f_and_g_prod``): torchnde's terms need
  the matrix ``g``.
* **sdeint_adjoint** runs :class:`torchnde.ReversibleAdjoint` for ``reversible_heun`` (with the
  default ``adjoint_method``): exact gradients of the forward steps, where torchsde's are exact
  only when ``ts`` falls on the step grid. Otherwise it runs :class:`torchnde.BacksolveAdjoint`,
  the stochastic adjoint on the same Brownian path, whose backward solve retraces the forward
  steps in reverse (torchsde steps back from each ``ts[i]`` by ``dt``): the gradients agree with
  torchsde's to the accuracy of either. ``adjoint_method`` may be ``midpoint``, ``heun``,
  ``reversible_heun`` or (additive noise) ``euler``; ``milstein``, ``euler_heun`` and
  ``adjoint_adaptive=True`` raise. An Itô SDE with non-additive noise is solved in its
  Stratonovich form (drift ``f - ½ Σ_j (∂g_j/∂y) g_j``, by autograd) with a Stratonovich method
  (``euler`` → ``euler_heun``, ``milstein`` → Stratonovich Milstein, the same numbers; ``srk`` →
  Stratonovich Milstein, strong order 1.0 instead of 1.5), and its Itô ``adjoint_method`` names
  (``euler``, ``milstein``) become the Stratonovich default, ``midpoint``.
  ``adjoint_params=None`` works for any ``sde`` (torchnde finds the tensors it uses); torchsde
  requires an ``nn.Module`` then.
* **A torchsde BrownianInterval built without ``dt``** shapes its tree from the statistics of
  its first queries, so its path depends on the order of queries; ``sdeint_adjoint`` queries the
  whole interval once before stepping, so it draws a different (equally valid) path from such an
  object than torchsde's ``sdeint_adjoint`` would. Build it with ``dt=`` (or
  ``halfway_tree=True``) to share the path exactly.
* **Seeds.** ``entropy=None`` (and ``bm=None``) draws a fresh seed from the operating system
  (torchsde: from NumPy's global generator), never from torch's global generator, so a solve
  does not change the random numbers a model draws afterwards; pass ``entropy`` (or ``bm``) to
  reproduce a path. The paths themselves differ from torchsde's for the same ``entropy``: results
  agree in distribution, not sample by sample.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import struct
import sys
import types as _types_module
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import (
    DEFAULT_MAX_STEPS,
    AbstractAdjoint,
    AbstractPath,
    AbstractSolver,
    BacksolveAdjoint,
    BrownianGrid,
    ControlTerm,
    DirectAdjoint,
    MultiTerm,
    ODETerm,
    PIDController,
    ReversibleAdjoint,
    SaveAt,
    SolveError,
    Status,
    StepDoubling,
    StepTo,
    VirtualBrownianTree,
    solve,
)
from .. import solvers as _solvers
from ..paths import BrownianIntervalTree

__all__ = [
    "BaseBrownian",
    "BaseSDE",
    "BrownianInterval",
    "BrownianPath",
    "BrownianTree",
    "ReverseBrownian",
    "SDEIto",
    "SDEStratonovich",
    "brownian_interval_like",
    "sdeint",
    "sdeint_adjoint",
]  # `settings` and `types` are modules, attributes here (and `torchsde.settings` in a shim)

NOISE_TYPES = ("diagonal", "additive", "scalar", "general")
SDE_TYPES = ("ito", "stratonovich")
LEVY_AREA_APPROXIMATIONS = ("none", "space-time", "davie", "foster")


@dataclass(frozen=True)
class _Method:
    """A torchsde method name as a torchnde solver."""

    solver: str  # torchnde class name
    sde_types: tuple[str, ...]
    noise_types: tuple[str, ...] = NOISE_TYPES
    levy_area: bool = False  # needs the space-time Lévy area
    area: bool = False  # needs a Lévy-area approximation (davie or foster)
    options: tuple[str, ...] = ()


#: torchsde method name → the torchnde solver that runs it
METHODS: dict[str, _Method] = {
    "euler": _Method("EulerMaruyama", ("ito",)),
    "milstein": _Method(
        "Milstein",
        ("ito", "stratonovich"),
        ("additive", "diagonal", "scalar"),
        options=("grad_free",),
    ),
    # SRA1 on additive noise, SRI on diagonal and scalar noise (see `_solver`)
    "srk": _Method("SRA1", ("ito",), ("additive", "diagonal", "scalar"), levy_area=True),
    "midpoint": _Method("Midpoint", ("stratonovich",)),
    "heun": _Method("Heun", ("stratonovich",)),
    "euler_heun": _Method("EulerHeun", ("stratonovich",)),
    "reversible_heun": _Method("ReversibleHeun", ("stratonovich",)),
    "log_ode": _Method("LogODEMidpoint", ("stratonovich",), levy_area=True, area=True),
}

_NEAREST = {  # what to use instead, by SDE type
    "ito": "'euler' (any noise) or 'milstein' (diagonal, scalar or additive noise)",
    "stratonovich": "'midpoint', 'heun', 'euler_heun', 'reversible_heun' or 'milstein'",
}


# ------------------------------------------------------------------------------------------------
# torchsde.settings and torchsde.types: the constants and type aliases user code imports


class _Names(type):
    """torchsde's ``ContainerMeta``: a class of string constants that lists and contains them."""

    def all(cls) -> list[str]:
        return sorted(getattr(cls, x) for x in dir(cls) if not x.startswith("__"))

    def __str__(cls) -> str:
        return str(cls.all())

    def __contains__(cls, item: object) -> bool:
        return item in cls.all()


def _names(name: str, **values: str) -> type:
    return _Names(name, (), dict(values))


def _module(name: str, doc: str, **values: Any) -> _types_module.ModuleType:
    module = _types_module.ModuleType(f"{__name__}.{name}", doc)
    module.__dict__.update(values)
    sys.modules.setdefault(module.__name__, module)
    return module


#: ``torchsde.settings``: the names of methods, noise types, SDE types, Lévy-area approximations
settings = _module(
    "settings",
    "torchsde's settings: the string constants of its arguments.",
    METHODS=_names(
        "METHODS",
        euler="euler",
        milstein="milstein",
        srk="srk",
        midpoint="midpoint",
        reversible_heun="reversible_heun",
        adjoint_reversible_heun="adjoint_reversible_heun",
        heun="heun",
        log_ode_midpoint="log_ode",
        euler_heun="euler_heun",
    ),
    NOISE_TYPES=_names(
        "NOISE_TYPES", general="general", diagonal="diagonal", scalar="scalar", additive="additive"
    ),
    SDE_TYPES=_names("SDE_TYPES", ito="ito", stratonovich="stratonovich"),
    LEVY_AREA_APPROXIMATIONS=_names(
        "LEVY_AREA_APPROXIMATIONS",
        none="none",
        space_time="space-time",
        davie="davie",
        foster="foster",
    ),
    METHOD_OPTIONS=_names("METHOD_OPTIONS", grad_free="grad_free"),
)

_Tensors = typing.Sequence[torch.Tensor]
_Modules = typing.Sequence[torch.nn.Module]
#: ``torchsde.types``: the type aliases of torchsde's signatures
types = _module(
    "types",
    "torchsde's type aliases.",
    Any=typing.Any,
    Callable=typing.Callable,
    Dict=dict,
    Optional=typing.Optional,
    Sequence=typing.Sequence,
    Tuple=tuple,
    Union=typing.Union,
    Tensor=torch.Tensor,
    Tensors=_Tensors,
    TensorOrTensors=torch.Tensor | _Tensors,
    Scalar=float | torch.Tensor,
    Vector=typing.Sequence[float] | torch.Tensor,
    Module=torch.nn.Module,
    Modules=_Modules,
    ModuleOrModules=torch.nn.Module | _Modules,
    Size=torch.Size,
    Sizes=typing.Sequence[torch.Size],
)


# ------------------------------------------------------------------------------------------------
# SDE base classes (torchsde's, for code that subclasses them)


class BaseSDE(torch.nn.Module):
    """torchsde's ``BaseSDE``: an ``nn.Module`` with checked ``noise_type`` and ``sde_type``."""

    def __init__(self, noise_type: str, sde_type: str):
        super().__init__()
        if noise_type not in NOISE_TYPES:
            raise ValueError(f"Expected noise type in {list(NOISE_TYPES)}, but found {noise_type}")
        if sde_type not in SDE_TYPES:
            raise ValueError(f"Expected sde type in {list(SDE_TYPES)}, but found {sde_type}")
        self.noise_type = noise_type
        self.sde_type = sde_type


class SDEIto(BaseSDE):
    """An Itô SDE (torchsde's ``SDEIto``)."""

    def __init__(self, noise_type: str):
        super().__init__(noise_type=noise_type, sde_type="ito")


class SDEStratonovich(BaseSDE):
    """A Stratonovich SDE (torchsde's ``SDEStratonovich``)."""

    def __init__(self, noise_type: str):
        super().__init__(noise_type=noise_type, sde_type="stratonovich")


# ------------------------------------------------------------------------------------------------
# Brownian motion


def _scalar(name: str, value: Any) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"`{name}` must be a float or a 0-dim tensor, got {value.shape}")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a float or a 0-dim tensor, got {type(value).__name__}")
    return float(value)


class BaseBrownian:
    """Base of this module's Brownian motions: torchsde's query interface
    ``bm(ta, tb, return_U=False, return_A=False)`` on a torchnde path (``bm.path``)."""

    path: AbstractPath
    _t0: float
    _w0: torch.Tensor | None = None
    _approximation: str = "none"

    def __call__(self, ta: Any, tb: Any = None, return_U: bool = False, return_A: bool = False):
        """``W(tb) - W(ta)`` (with ``tb=None``: ``W(ta)``, the path's value); with ``return_U``
        also ``U = ∫_ta^tb (W(s) - W(ta)) ds``, torchsde's form of the space-time Lévy area; with
        ``return_A`` also the Davie or Foster approximation of the Lévy area
        (:meth:`torchnde.VirtualBrownianTree.area_increment`), shaped ``(*size, size[-1])``
        (zeros shaped like ``W`` when ``size`` has fewer than two axes, as in torchsde)."""
        point = tb is None
        if point:
            warnings.warn(
                f"{type(self).__name__} is optimised for interval-based queries, not point "
                "evaluation.",
                stacklevel=2,
            )
            ta, tb = self._t0, ta
        ta = self._clamp("ta", _scalar("ta", ta))
        tb = self._clamp("ta" if point else "tb", _scalar("tb", tb))
        if ta > tb:
            raise RuntimeError(f"Query times ta={ta:.3f} and tb={tb:.3f} must respect ta <= tb.")
        if (return_U or return_A) and self._approximation == "none":
            raise ValueError(
                f"return_U={return_U}, return_A={return_A} needs a Lévy area: build the Brownian "
                "motion with levy_area_approximation='space-time' (U) or 'davie'/'foster' (U, A)"
            )
        if return_A and self._approximation == "space-time":
            raise ValueError(
                "return_A=True needs levy_area_approximation='davie' or 'foster' (this motion "
                "has 'space-time', which gives U only)"
            )
        t_a = torch.tensor(ta, dtype=torch.float64)
        t_b = torch.tensor(tb, dtype=torch.float64)
        if not (return_U or return_A):
            w = self.path.increment(t_a, t_b)
            if point and self._w0 is not None:
                w = w + self._w0
            return w
        if return_A:
            w, h, a = self._area(t_a, t_b)
        else:
            w, h = self.path.levy_increment(t_a, t_b)
        out = [w]
        if return_U:
            out.append((tb - ta) * (0.5 * w + h))
        if return_A:
            out.append(a)
        return tuple(out)

    def _area(self, ta: torch.Tensor, tb: torch.Tensor):
        if len(self._size) < 2:  # torchsde: a scalar or one axis is a batch of 1-d motions
            w, h = self.path.levy_increment(ta, tb)
            return w, h, torch.zeros_like(w)
        return self.path.area_increment(ta, tb, self._approximation)

    def _clamp(self, name: str, t: float) -> float:
        """torchsde's out-of-range queries: a warning, then the nearest end."""
        if t < self._t0:
            warnings.warn(
                f"Should have {name}>=t0 but got {name}={t} and t0={self._t0}.", stacklevel=3
            )
            return self._t0
        if t > self._t1:
            warnings.warn(
                f"Should have {name}<=t1 but got {name}={t} and t1={self._t1}.", stacklevel=3
            )
            return self._t1
        return t

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._size)

    def size(self) -> tuple[int, ...]:
        return self.shape

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def levy_area_approximation(self) -> str:
        return self._approximation

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(t0={self._t0:.3f}, t1={self._t1:.3f}, size={self.shape}, "
            f"dtype={self.dtype}, device={self.device!r}, entropy={self._entropy}, "
            f"levy_area_approximation={self._approximation!r})"
        )

    def _build(
        self,
        t0: Any,
        t1: Any,
        size: Any,
        dtype: torch.dtype | None,
        device: Any,
        entropy: int | None,
        tol: float,
        levy_area_approximation: str,
        w: torch.Tensor | None = None,
        h: torch.Tensor | None = None,
        *,
        interval: bool = False,
        dt: float | None = None,
        cache_size: int | None = 45,
    ) -> None:
        t0, t1 = _scalar("t0", t0), _scalar("t1", t1)
        if not t0 < t1:
            raise ValueError(f"Initial time {t0} should be less than terminal time {t1}.")
        if size is None:
            raise ValueError(
                "Must specify `size`, the shape of each Brownian sample, e.g. "
                "(batch, noise_channels) (or give `W`)."
            )
        if levy_area_approximation not in LEVY_AREA_APPROXIMATIONS:
            raise ValueError(
                f"`levy_area_approximation` must be one of {list(LEVY_AREA_APPROXIMATIONS)}, but "
                f"got {levy_area_approximation!r}."
            )
        if tol < 0:
            raise ValueError("`tol` should be non-negative.")
        if entropy is None:
            entropy = _fresh_seed()
        self._t0, self._t1 = t0, t1
        self._size = tuple(int(s) for s in size)
        self._dtype = torch.get_default_dtype() if dtype is None else dtype
        self._device = torch.device("cpu") if device is None else torch.device(device)
        self._entropy = int(entropy)
        self._approximation = levy_area_approximation
        levy_area = None if levy_area_approximation == "none" else "space-time"
        if interval:  # torchsde's BrownianInterval: split where queried, order-dependent
            self.path = BrownianIntervalTree(
                t0,
                t1,
                self._size,
                seed=self._entropy,
                levy_area=levy_area,
                dtype=self._dtype,
                device=self._device,
                dt=dt,
                cache_size=cache_size,
                w1=w,
                h1=h if levy_area is not None else None,
            )
            return
        # torchsde's tol=0 is "resolve to floating-point accuracy"; the tree's resolution is a
        # time (increments between its dyadic points are exact in law), here 2^-20 (t1 - t0)
        self.path = VirtualBrownianTree(
            t0,
            t1,
            self._size,
            tol=tol if tol > 0 else (t1 - t0) * 2.0**-20,
            seed=self._entropy,
            levy_area=None if levy_area_approximation == "none" else "space-time",
            dtype=self._dtype,
            device=self._device,
            w1=w,
            h1=h if levy_area_approximation != "none" else None,
        )

    @property
    def entropy(self) -> int:
        return self._entropy


def _fresh_seed() -> int:
    """A seed for a fresh path that leaves torch's global random stream untouched (torchsde draws
    its seeds from NumPy's, so a model's initialisation does not depend on whether sdeint ran)."""
    return secrets.randbits(63)


class BrownianInterval(BaseBrownian):
    """torchsde's ``BrownianInterval``: a tree of intervals split where it is queried
    (``torchnde.paths.BrownianIntervalTree``), or with ``halfway_tree=True`` a
    :class:`torchnde.VirtualBrownianTree`.

    As in torchsde, the default path depends on the order of the queries: the same ``entropy``
    and the same sequence of queries give the same values, and once an interval has been queried
    it keeps its values (the backward pass and rejected steps see the forward solve's path), but
    another order of queries draws another (equally Brownian) path. ``halfway_tree=True`` makes
    the increment over any interval a function of ``entropy`` and the interval alone (dyadic
    bisection down to ``tol``), at a cost of one normal per channel per level and query end.

    Args:
        t0, t1: the interval the motion lives on.
        size: the shape of one sample, ``(batch, noise_channels)`` for :func:`sdeint` (default:
            the shape of ``W``).
        dtype, device: of the increments (default: those of ``W``, else torch's default dtype
            and the CPU).
        entropy: the seed (default: fresh, drawn without touching torch's random stream).
        dt: the expected step size: leaves are split at their midpoints down to about ``16 dt``
            (without it, down to 16 widths of each query), which keeps the tree balanced.
        cache_size: how many intervals' values are kept (torchsde's default 45; ``None``: all).
        pool_size: accepted, without effect (torchsde's seed pool).
        halfway_tree: the query-order independent :class:`torchnde.VirtualBrownianTree`.
        tol: with ``halfway_tree=True``, the time resolution, absolute as in torchsde; ``0``
            (the default) means ``2^-20 (t1 - t0)``. Without it the path is exact at any times.
        levy_area_approximation: ``"none"``, ``"space-time"`` (``return_U``, needed by
            ``method="srk"``), ``"davie"`` or ``"foster"`` (also ``return_A``).
        W: the increment over ``[t0, t1]``: the motion is then the Brownian bridge to it.
        H: with a Lévy area, the space-time Lévy area over ``[t0, t1]`` to condition on too.
    """

    def __init__(
        self,
        t0: Any = 0.0,
        t1: Any = 1.0,
        size: tuple[int, ...] | None = None,
        dtype: torch.dtype | None = None,
        device: Any = None,
        entropy: int | None = None,
        dt: Any = None,
        tol: float = 0.0,
        pool_size: int = 8,
        cache_size: int | None = 45,
        halfway_tree: bool = False,
        levy_area_approximation: str = "none",
        W: torch.Tensor | None = None,
        H: torch.Tensor | None = None,
    ):
        for name, value in (("W", W), ("H", H)):
            if value is not None and not isinstance(value, torch.Tensor):
                raise TypeError(f"`{name}` must be a tensor, got {type(value).__name__}")
        if W is not None:
            size = W.shape if size is None else size
            dtype = W.dtype if dtype is None else dtype
            device = W.device if device is None else device
        if H is not None and W is None:
            raise ValueError("`H` (the space-time Lévy area over [t0, t1]) needs `W` as well")
        self._build(
            t0,
            t1,
            size,
            dtype,
            device,
            entropy,
            _scalar("tol", tol),
            levy_area_approximation,
            W,
            H,
            interval=not halfway_tree,
            dt=None if dt is None else _scalar("dt", dt),
            cache_size=cache_size,
        )


class BrownianPath(BaseBrownian):
    """torchsde's ``BrownianPath(t0, w0)``: a Brownian motion on ``[t0, t0 + 1]`` started at
    ``w0`` (its shape, dtype and device are the samples'): as in torchsde, a tree of intervals
    split where it is queried that keeps every interval's values. ``window_size`` is unused, as
    in torchsde."""

    def __init__(self, t0: Any, w0: torch.Tensor, window_size: int = 8):
        if not isinstance(w0, torch.Tensor):
            raise TypeError(f"`w0` must be a tensor, got {type(w0).__name__}")
        t0 = _scalar("t0", t0)
        self._w0 = w0
        self._build(
            t0,
            t0 + 1,
            w0.shape,
            w0.dtype,
            w0.device,
            None,
            0.0,
            "none",
            interval=True,
            cache_size=None,
        )


class BrownianTree(BaseBrownian):
    """torchsde's ``BrownianTree(t0, w0, t1=None, w1=None, entropy=None, tol=1e-6, …)``: a
    Brownian motion on ``[t0, t1]`` (default ``t0 + 1``) started at ``w0``, reproducible from
    ``entropy``; with ``w1`` it ends at ``w1`` (the Brownian bridge). ``pool_size``,
    ``cache_depth`` and ``safety`` have no effect, as in torchsde."""

    def __init__(
        self,
        t0: Any,
        w0: torch.Tensor,
        t1: Any = None,
        w1: torch.Tensor | None = None,
        entropy: int | None = None,
        tol: float = 1e-6,
        pool_size: int = 24,
        cache_depth: int = 9,
        safety: float | None = None,
    ):
        if not isinstance(w0, torch.Tensor):
            raise TypeError(f"`w0` must be a tensor, got {type(w0).__name__}")
        if w1 is not None and not isinstance(w1, torch.Tensor):
            raise TypeError(f"`w1` must be a tensor, got {type(w1).__name__}")
        t0 = _scalar("t0", t0)
        t1 = t0 + 1 if t1 is None else _scalar("t1", t1)
        self._w0 = w0
        w = None if w1 is None else w1 - w0
        self._build(t0, t1, w0.shape, w0.dtype, w0.device, entropy, _scalar("tol", tol), "none", w)


class ReverseBrownian:
    """torchsde's ``ReverseBrownian(bm)``: ``bm`` read backwards in time, ``W'(ta, tb) =
    bm(-tb, -ta)`` (for solving ``-t`` forwards, as a reversed SDE does)."""

    def __init__(self, base_brownian: Any):
        self.base_brownian = base_brownian

    def __call__(self, ta: Any, tb: Any = None, return_U: bool = False, return_A: bool = False):
        return self.base_brownian(-tb, -ta, return_U=return_U, return_A=return_A)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_brownian={self.base_brownian})"

    @property
    def dtype(self) -> torch.dtype:
        return self.base_brownian.dtype

    @property
    def device(self) -> torch.device:
        return self.base_brownian.device

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.base_brownian.shape)

    @property
    def levy_area_approximation(self) -> str:
        return self.base_brownian.levy_area_approximation


def brownian_interval_like(
    y: torch.Tensor,
    t0: Any = 0.0,
    t1: Any = 1.0,
    size: tuple[int, ...] | None = None,
    dtype: torch.dtype | None = None,
    device: Any = None,
    **kwargs: Any,
) -> BrownianInterval:
    """torchsde's ``brownian_interval_like``: a :class:`BrownianInterval` with the size, dtype and
    device of ``y`` (each overridable)."""
    return BrownianInterval(
        t0=t0,
        t1=t1,
        size=y.shape if size is None else size,
        dtype=y.dtype if dtype is None else dtype,
        device=y.device if device is None else device,
        **kwargs,
    )


class _TorchsdeBrownian(AbstractPath):
    """A torchsde Brownian object (``BrownianInterval``, ``BrownianPath``, ``BrownianTree``) as a
    torchnde path: increments are its ``bm(ta, tb)``, queried exactly as torchsde's solvers query
    it (backwards intervals are negated forward queries)."""

    batched = False

    def __init__(self, bm: Any):
        self.bm = bm
        self.shape = tuple(bm.shape)
        approx = getattr(bm, "levy_area_approximation", "none")
        self.levy_area = None if approx == "none" else "space-time"

    def _span(self) -> tuple[float, float] | None:
        inner = getattr(self.bm, "_interval", self.bm)
        start, end = getattr(inner, "_start", None), getattr(inner, "_end", None)
        return None if start is None or end is None else (float(start), float(end))

    def validate_span(self, t0: Any, t1: Any) -> None:
        span = self._span()
        if span is None:
            return
        lo, hi = sorted((float(torch.as_tensor(t0).min()), float(torch.as_tensor(t1).max())))
        if lo < span[0] or hi > span[1]:
            raise ValueError(
                f"the Brownian motion `bm` ({type(self.bm).__name__}) lives on [{span[0]:g}, "
                f"{span[1]:g}], but the solve runs over [{lo:g}, {hi:g}]; build it with "
                f"t0={lo:g}, t1={hi:g}"
            )

    def increment(self, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
        a, b = float(t0), float(t1)
        return self.bm(a, b) if a <= b else -self.bm(b, a)

    def levy_increment(self, t0: torch.Tensor, t1: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.levy_area is None:
            raise ValueError(
                f"the Brownian motion `bm` ({type(self.bm).__name__}) has no Lévy area; build "
                "it with levy_area_approximation='space-time'"
            )
        a, b = float(t0), float(t1)
        if a <= b:
            w, u = self.bm(a, b, return_U=True)
            return w, u / (b - a) - 0.5 * w
        # reversed interval: W_{b,a} = -W_{a,b}; H is symmetric under time reversal with W negated
        w, u = self.bm(b, a, return_U=True)
        return -w, u / (a - b) - 0.5 * w

    def area_increment(self, t0: Any, t1: Any, approximation: str = "foster"):
        """``(W, H, A)`` from the object's own ``return_A`` (its own approximation)."""
        a, b = float(t0), float(t1)
        lo, hi = min(a, b), max(a, b)
        w, u, area = self.bm(lo, hi, return_U=True, return_A=True)
        h = u / (hi - lo) - 0.5 * w if hi > lo else torch.zeros_like(w)
        return (w, h, area) if a <= b else (-w, h, -area)

    def __repr__(self) -> str:
        return f"torchsde {self.bm!r}"


def _is_torchsde_brownian(bm: Any) -> bool:
    try:
        import torchsde
    except ImportError:
        return False
    return isinstance(bm, torchsde.BaseBrownian)


# ------------------------------------------------------------------------------------------------
# the SDE object: drift and diffusion as torchnde vector fields

_NAME_KEYS = (
    "drift",
    "diffusion",
    "prior_drift",
    "drift_and_diffusion",
    "drift_and_diffusion_prod",
)
_DEFAULT_NAMES = {
    "drift": "f",
    "diffusion": "g",
    "prior_drift": "h",
    "drift_and_diffusion": "f_and_g",
    "drift_and_diffusion_prod": "f_and_g_prod",
}


def _stable_division(a: torch.Tensor, b: torch.Tensor, epsilon: float = 1e-7) -> torch.Tensor:
    """``a / b`` with ``|b|`` kept at least ``epsilon`` (torchsde's, for the logqp penalty)."""
    b = torch.where(b.abs().detach() > epsilon, b, torch.full_like(b, epsilon) * b.sign())
    return a / b


class _SDEFunctions:
    """The user's drift and diffusion, called as torchsde calls them: ``f(t, y)`` with ``t`` a
    0-dim tensor in the dtype of ``ts``.

    With only ``f_and_g``, the drift's call keeps its diffusion for the diffusion's call at the
    same ``(t, y)`` (the two terms of a step evaluate at the very same objects), so each stage
    costs one ``f_and_g``.
    """

    def __init__(self, sde: Any, names: dict[str, str] | None, time_dtype: torch.dtype):
        names = dict(_DEFAULT_NAMES, **(names or {}))
        self.sde = sde
        self.time_dtype = time_dtype
        self.f = getattr(sde, names["drift"], None)
        self.g = getattr(sde, names["diffusion"], None)
        self.f_and_g = getattr(sde, names["drift_and_diffusion"], None)
        self.h = getattr(sde, names["prior_drift"], None)
        self.names = names
        self._kept: tuple[Any, Any, torch.Tensor] | None = None
        if self.f is None and self.f_and_g is None:
            raise ValueError(
                f"sde must define the drift `{names['drift']}(t, y)` or "
                f"`{names['drift_and_diffusion']}(t, y)`" + self._renamed_hint()
            )
        if self.g is None and self.f_and_g is None:
            product = names["drift_and_diffusion_prod"]
            has_prod = hasattr(sde, "g_prod") or hasattr(sde, product)
            raise ValueError(
                f"sde must define the diffusion `{names['diffusion']}(t, y)` or "
                f"`{names['drift_and_diffusion']}(t, y)`"
                + (
                    f"; torchnde's terms need the diffusion matrix, a product `g_prod`/`{product}` "
                    "alone is not enough"
                    if has_prod
                    else ""
                )
                + self._renamed_hint()
            )

    def torchnde_modules(self) -> list[torch.nn.Module]:
        """The user's SDE if it is a module: ``sdeint_adjoint`` differentiates with respect to all
        its parameters that require grad, used or not, as torchsde does."""
        return [self.sde] if isinstance(self.sde, torch.nn.Module) else []

    def _renamed_hint(self) -> str:
        return "; use `names={...}` to point at methods with other names"

    def _t(self, t: torch.Tensor) -> torch.Tensor:
        return t if t.dtype == self.time_dtype else t.to(self.time_dtype)

    def drift(self, t: torch.Tensor, y: torch.Tensor, args: Any = None) -> torch.Tensor:
        t = self._t(t)
        if self.f is not None:
            return self.f(t, y)
        f, g = self.f_and_g(t, y)
        self._kept = (t, y, g)
        return f

    def diffusion(self, t: torch.Tensor, y: torch.Tensor, args: Any = None) -> torch.Tensor:
        t = self._t(t)
        if self.g is not None:
            return self.g(t, y)
        kept, self._kept = self._kept, None
        if kept is not None and kept[1] is y and bool(kept[0] is t or torch.equal(kept[0], t)):
            return kept[2]
        return self.f_and_g(t, y)[1]


class _LogqpFunctions:
    """torchsde's ``logqp=True``: the state gains a last channel ``∫ ½|u|² dt`` with
    ``u = g⁻¹ (f - h)`` (the KL divergence rate between the posterior and prior SDEs); its
    diffusion is zero."""

    def torchnde_modules(self) -> list[torch.nn.Module]:
        return self.base.torchnde_modules()

    def __init__(self, base: _SDEFunctions, noise_type: str):
        if base.h is None or base.f is None or base.g is None:
            raise AttributeError(
                "If using logqp then drift, diffusion and prior drift must all be specified "
                f"(`{base.names['drift']}`, `{base.names['diffusion']}` and "
                f"`{base.names['prior_drift']}`)."
            )
        self.base = base
        self.f, self.g = base.f, base.g
        self.diagonal = noise_type == "diagonal"

    def drift(self, t: torch.Tensor, y: torch.Tensor, args: Any = None) -> torch.Tensor:
        b = self.base
        t = b._t(t)
        x = y[:, :-1]
        f, g, h = b.f(t, x), b.g(t, x), b.h(t, x)
        if self.diagonal:
            u = _stable_division(f - h, g)
        else:
            u = torch.bmm(torch.linalg.pinv(g), (f - h).unsqueeze(-1)).squeeze(-1)
        return torch.cat([f, 0.5 * (u**2).sum(dim=1, keepdim=True)], dim=1)

    def diffusion(self, t: torch.Tensor, y: torch.Tensor, args: Any = None) -> torch.Tensor:
        x = y[:, :-1]
        g = self.base.g(self.base._t(t), x)
        if self.diagonal:
            return torch.cat([g, g.new_zeros(g.shape[0], 1)], dim=1)
        return torch.cat([g, g.new_zeros(g.shape[0], 1, g.shape[2])], dim=1)


class _StratonovichForm:
    """An Itô SDE written in Stratonovich form, for the stochastic adjoint: the same diffusion,
    and the drift ``f - ½ Σ_j (∂g_j/∂y) g_j`` (``g_j`` the ``j``-th noise column; for diagonal
    noise ``½ g_i ∂g_i/∂y_i`` per entry). The correction's derivatives keep their graph, so the
    adjoint (which differentiates the drift) sees second derivatives of ``g``."""

    def __init__(self, base: Any, noise_type: str):
        self.base = base
        self.f, self.g = base.f, base.g
        self.noise_type = noise_type

    def torchnde_modules(self) -> list[torch.nn.Module]:
        return self.base.torchnde_modules()

    @property
    def names(self) -> dict[str, str]:
        inner = self.base.base if isinstance(self.base, _LogqpFunctions) else self.base
        return inner.names

    def drift(self, t: torch.Tensor, y: torch.Tensor, args: Any = None) -> torch.Tensor:
        return self.base.drift(t, y, args) - 0.5 * self._correction(t, y)

    def diffusion(self, t: torch.Tensor, y: torch.Tensor, args: Any = None) -> torch.Tensor:
        return self.base.diffusion(t, y, args)

    def _correction(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = y if y.requires_grad else y.detach().requires_grad_(True)
            g = self.base.diffusion(t, x)
            if not g.requires_grad:  # g depends on nothing differentiable: no correction
                return torch.zeros_like(y)
            if self.noise_type == "diagonal":  # Σ_i g_i ∂g_i/∂y_j = g_j ∂g_j/∂y_j
                (out,) = torch.autograd.grad(g, x, g, create_graph=True, allow_unused=True)
                return torch.zeros_like(y) if out is None else out
            return sum(_jvp(g[..., j], x, g[..., j]) for j in range(g.shape[-1]))


def _jvp(out: torch.Tensor, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(∂out/∂x) v`` by differentiating a vector–Jacobian product in its cotangent (two
    reverse passes), keeping the graph."""
    cotangent = torch.zeros_like(out, requires_grad=True)
    (vjp,) = torch.autograd.grad(out, x, cotangent, create_graph=True, allow_unused=True)
    if vjp is None:
        return torch.zeros_like(x)
    (jv,) = torch.autograd.grad(vjp, cotangent, v, create_graph=True, allow_unused=True)
    return torch.zeros_like(x) if jv is None else jv


#: the Stratonovich method that solves an Itô SDE's Stratonovich form under sdeint_adjoint
_STRATONOVICH_FOR = {"euler": "euler_heun", "milstein": "milstein", "srk": "milstein"}


def _as_stratonovich(setup: _Setup) -> _Setup:
    """An Itô ``setup`` with non-additive noise as its Stratonovich form (see
    :class:`_StratonovichForm`) and the nearest Stratonovich method."""
    return dataclasses.replace(
        setup,
        functions=_StratonovichForm(setup.functions, setup.noise_type),
        sde_type="stratonovich",
        method=_STRATONOVICH_FOR[setup.method],
        options={},
    )


# ------------------------------------------------------------------------------------------------
# checking the arguments (torchsde's contract)


@dataclass
class _Setup:
    """One torchsde call, checked and translated."""

    sde: Any
    functions: Any  # _SDEFunctions or _LogqpFunctions
    y0: torch.Tensor  # (batch, d), with the logqp channel appended when logqp
    ts: torch.Tensor  # (T,)
    noise_type: str
    sde_type: str
    method: str
    noise_size: int
    batch: int
    logqp: bool
    options: dict[str, Any] = field(default_factory=dict)
    #: the Lévy-area approximation of ``bm`` (or torchsde's default for ``log_ode``)
    approximation: str = "foster"


def _check_sde(sde: Any) -> tuple[str, str]:
    if not hasattr(sde, "noise_type"):
        raise ValueError("sde does not have the attribute noise_type.")
    if sde.noise_type not in NOISE_TYPES:
        raise ValueError(f"Expected noise type in {list(NOISE_TYPES)}, but found {sde.noise_type}.")
    if not hasattr(sde, "sde_type"):
        raise ValueError("sde does not have the attribute sde_type.")
    if sde.sde_type not in SDE_TYPES:
        raise ValueError(f"Expected sde type in {list(SDE_TYPES)}, but found {sde.sde_type}.")
    return sde.noise_type, sde.sde_type


def _check_names(names: Any) -> dict[str, str] | None:
    if names is None:
        return None
    if not isinstance(names, dict):
        raise TypeError(f"`names` must be a dict or None, got {type(names).__name__}")
    for key, value in names.items():
        if key not in _NAME_KEYS:
            raise ValueError(
                f"names[{key!r}] is not a method torchsde renames; the keys are "
                f"{', '.join(map(repr, _NAME_KEYS))}"
            )
        if not isinstance(value, str):
            raise TypeError(f"names[{key!r}] must be a method name (str), got {value!r}")
    return dict(names)


def _default_method(sde_type: str, noise_type: str) -> str:
    """torchsde's defaults."""
    if sde_type == "stratonovich":
        return "midpoint"
    return "euler" if noise_type == "general" else "srk"


def _check_method(method: Any, sde_type: str, noise_type: str, adjoint: bool = False) -> str:
    if method == "adjoint_reversible_heun" and not adjoint:
        raise ValueError(
            "adjoint_reversible_heun can only be used for adjoint_method (with "
            "method='reversible_heun' in sdeint_adjoint)."
        )
    if method not in METHODS:
        known = [*METHODS, "adjoint_reversible_heun"]
        raise ValueError(f"Expected method in {known}, but found {method!r}.")
    spec = METHODS[method]
    if sde_type not in spec.sde_types:
        raise ValueError(
            f"SDE is of type {sde_type} but method {method!r} is for type "
            f"{' or '.join(spec.sde_types)}; for {sde_type} SDEs use {_NEAREST[sde_type]}"
        )
    if noise_type not in spec.noise_types:
        if method == "srk":
            hint = "use method='euler' (general noise: strong order 0.5)"
        else:
            hint = f"use {_NEAREST[sde_type]} without milstein"
        raise ValueError(
            f"SDE has noise type {noise_type} but method {method!r} only supports noise types "
            f"{list(spec.noise_types)}; {hint}"
        )
    return method


def _check_options(method: str, options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"`options` must be a dict or None, got {type(options).__name__}")
    allowed = METHODS[method].options if method in METHODS else ()
    for key in options:
        if key not in allowed:
            accepted = f"accepts {', '.join(map(repr, allowed))}" if allowed else "takes no options"
            raise ValueError(f"unknown option {key!r} for method {method!r}, which {accepted}")
    return dict(options)


def _check_ts(ts: Any, y0: torch.Tensor) -> torch.Tensor:
    if not isinstance(ts, torch.Tensor):
        if not isinstance(ts, (tuple, list)) or not all(
            isinstance(t, (float, int)) and not isinstance(t, bool) for t in ts
        ):
            raise ValueError("Evaluation times `ts` must be a 1-D Tensor or list/tuple of floats.")
        ts = torch.tensor(ts, dtype=y0.dtype, device=y0.device)
    if ts.ndim != 1 or ts.numel() == 0:
        raise ValueError(
            f"Evaluation times `ts` must be a non-empty 1-D tensor, got shape {tuple(ts.shape)}"
        )
    if not ts.is_floating_point():
        raise TypeError(f"Evaluation times `ts` must be floating point, got {ts.dtype}")
    if ts.requires_grad:
        raise ValueError("`ts` must not require gradient.")
    if ts.numel() > 1:
        steps = ts.diff()
        if not bool((steps > 0).all()):
            i = int(torch.nonzero(steps <= 0)[0])
            raise ValueError(
                f"Evaluation times `ts` must be strictly increasing, but ts[{i}]={ts[i].item():g} "
                f"and ts[{i + 1}]={ts[i + 1].item():g}; sort them with `ts.sort()` and drop repeats"
            )
    if ts.device != y0.device:
        ts = ts.to(y0.device)
    return ts


def _no_grad_number(name: str, value: Any, positive: bool = True) -> float:
    if isinstance(value, torch.Tensor) and value.requires_grad:
        raise ValueError(f"`{name}` must not require gradient.")
    number = _scalar(name, value)
    if math.isnan(number) or (positive and number <= 0):
        raise ValueError(f"`{name}` must be a positive number, got {number:g}")
    return number


def _noise_size(functions: Any, noise_type: str, ts: torch.Tensor, y0: torch.Tensor, bm: Any):
    """The number of Brownian channels ``m``: from ``bm``, else the diffusion's shape."""
    if bm is not None:
        return int(bm.shape[1])
    if noise_type == "diagonal":
        return int(y0.shape[1])
    with torch.no_grad():
        g = functions.diffusion(ts[0], y0)
    if not isinstance(g, torch.Tensor) or g.ndim != 3:
        shape = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
        raise ValueError(
            f"Diffusion must be of shape (batch, state_channels, noise_channels) for "
            f"{noise_type} noise, but got {shape}."
        )
    return int(g.shape[2])


def _check_bm(bm: Any, batch: int, state: int, noise_type: str) -> None:
    if bm is None:
        return
    if not isinstance(bm, (BaseBrownian, ReverseBrownian)) and not _is_torchsde_brownian(bm):
        raise TypeError(
            "`bm` must be a BrownianInterval, BrownianPath or BrownianTree (this module's or "
            f"torchsde's), got {type(bm).__name__}"
        )
    if len(bm.shape) != 2:
        raise ValueError(f"`bm` must be of shape (batch, noise_channels), got {tuple(bm.shape)}.")
    if bm.shape[0] != batch:
        raise ValueError(
            f"Batch sizes not consistent: `y0` has batch {batch}, `bm` has shape {tuple(bm.shape)}."
        )
    if noise_type == "diagonal" and bm.shape[1] != state:
        raise ValueError(
            f"Diagonal noise needs one Brownian channel per state channel: `y0` has {state}, "
            f"`bm` has shape {tuple(bm.shape)}; build it with size=({batch}, {state})."
        )
    if noise_type == "scalar" and bm.shape[1] != 1:
        raise ValueError(
            f"The Brownian motion for scalar SDEs must be of dimension 1, `bm` has shape "
            f"{tuple(bm.shape)}."
        )


def _setup(sde, y0, ts, bm, method, options, names, logqp, adaptive) -> tuple[_Setup, Any]:
    noise_type, sde_type = _check_sde(sde)
    names = _check_names(names)
    if not isinstance(y0, torch.Tensor):
        raise ValueError("`y0` must be a torch.Tensor.")
    if y0.dim() != 2:
        raise ValueError(
            f"`y0` must be a 2-dimensional tensor of shape (batch, channels), got shape "
            f"{tuple(y0.shape)}; add a batch axis with `y0[None]`"
        )
    ts = _check_ts(ts, y0)
    method = _default_method(sde_type, noise_type) if method is None else method
    if adaptive and method == "euler" and noise_type != "additive":  # torchsde warns first
        warnings.warn(
            "Numerical solution is not guaranteed to converge to the correct solution when using "
            "adaptive time-stepping with the Euler--Maruyama method with non-additive noise.",
            stacklevel=3,
        )
    method = _check_method(method, sde_type, noise_type)
    options = _check_options(method, options)
    functions: Any = _SDEFunctions(sde, names, ts.dtype)
    if logqp:
        functions = _LogqpFunctions(functions, noise_type)
        y0 = torch.cat((y0, y0.new_zeros(size=(y0.size(0), 1))), dim=1)
    _check_bm(bm, y0.shape[0], y0.shape[1], noise_type)
    m = _noise_size(functions, noise_type, ts, y0, bm)
    if noise_type == "scalar" and m != 1:
        raise ValueError(
            f"Scalar noise must have only one channel; the diffusion has {m} noise channels."
        )
    setup = _Setup(
        sde=sde,
        functions=functions,
        y0=y0,
        ts=ts,
        noise_type=noise_type,
        sde_type=sde_type,
        method=method,
        noise_size=m,
        batch=y0.shape[0],
        logqp=logqp,
        options=options,
    )
    if bm is not None and bm.levy_area_approximation in ("davie", "foster"):
        setup.approximation = bm.levy_area_approximation
    return setup, bm


# ------------------------------------------------------------------------------------------------
# building the solve: path, term, solver, steps


def _round_f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def _grid(ts: torch.Tensor, dt: float) -> torch.Tensor:
    """torchsde's fixed steps: ``next = min(current + dt, ts[-1])`` from ``ts[0]``, accumulated
    in the dtype of ``ts``. In float32 the sum of two float32 numbers is exact in a Python float
    (or below half an ulp of the larger), so rounding it once gives torch's float32 sum."""
    if ts.dtype == torch.float64:
        rnd = float
    elif ts.dtype == torch.float32:
        rnd = _round_f32
    else:
        raise TypeError(f"`ts` must be float32 or float64, got {ts.dtype}")
    t, end, h = rnd(ts[0].item()), rnd(ts[-1].item()), rnd(dt)
    if not rnd(t + h) > t:
        raise ValueError(f"`dt`={dt:g} is too small to advance from ts[0]={t:g}")
    times = [t]
    while t < end:
        t = min(rnd(t + h), end)
        times.append(t)
    return torch.tensor(times, dtype=ts.dtype, device=ts.device)


def _uniform_steps(ts: torch.Tensor, dt: float) -> int | None:
    """The number of steps when ``dt`` divides ``[ts[0], ts[-1]]`` (as :class:`BrownianGrid`
    accepts it), else None."""
    span = float(ts[-1]) - float(ts[0])
    n = round(span / dt)
    if n >= 1 and abs(n * dt - span) <= 1e-9 * span:
        return n
    return None


def _user_path(setup: _Setup, bm: Any, needs_levy: bool) -> AbstractPath:
    """The path of a Brownian motion the user passed."""
    if needs_levy and bm.levy_area_approximation == "none":
        raise ValueError(
            f"method={setup.method!r} requires one of ['space-time', 'davie', 'foster'] set as the "
            "`levy_area_approximation` on the Brownian motion; build `bm` with "
            "levy_area_approximation='space-time'"
        )
    if METHODS[setup.method].area and bm.levy_area_approximation not in ("davie", "foster"):
        raise ValueError(
            f"method={setup.method!r} requires one of ['davie', 'foster'] set as the "
            "`levy_area_approximation` on the Brownian motion; build `bm` with "
            "levy_area_approximation='foster'"
        )
    if isinstance(bm, BaseBrownian):
        return bm.path
    return _TorchsdeBrownian(bm)


def _tree(setup: _Setup, needs_levy: bool, tol: float) -> AbstractPath:
    """A fresh :class:`torchnde.VirtualBrownianTree` over ``[ts[0], ts[-1]]``."""
    ts = setup.ts
    return VirtualBrownianTree(
        float(ts[0]),
        float(ts[-1]),
        (setup.batch, setup.noise_size),
        tol=tol,
        seed=_fresh_seed(),
        levy_area="space-time" if needs_levy else None,
        dtype=setup.y0.dtype,
        device=setup.y0.device,
    )


def _terms(setup: _Setup, path: AbstractPath) -> MultiTerm:
    fns = setup.functions
    names = fns.names if isinstance(fns, _StratonovichForm) else None
    names = names or (fns.base if isinstance(fns, _LogqpFunctions) else fns).names
    sde, logqp = type(setup.sde).__name__, " (logqp)" if setup.logqp else ""
    drift_name = names["drift"] if fns.f is not None else names["drift_and_diffusion"]
    diffusion_name = names["diffusion"] if fns.g is not None else names["drift_and_diffusion"]
    drift = _named(fns.drift, f"{sde}.{drift_name}{logqp}")
    diffusion = _named(fns.diffusion, f"{sde}.{diffusion_name}{logqp}")
    return MultiTerm(ODETerm(drift), ControlTerm(diffusion, path, noise=setup.noise_type))


def _named(fn: Callable, name: str) -> Callable:
    def call(t, y, args):
        return fn(t, y, args)

    call.__name__ = name
    return call


def _solver(setup: _Setup, adaptive: bool) -> AbstractSolver:
    """The torchnde solver of the method; under ``adaptive=True`` its embedded pair where it
    has one (``heun``: HeunEuler; ``srk`` on additive noise: SRA1), else the method wrapped in
    :class:`torchnde.StepDoubling` (torchsde's one-step-against-two-half-steps estimate)."""
    name = METHODS[setup.method].solver
    if setup.method == "srk" and setup.noise_type != "additive":
        name = "SRI"
    if adaptive:
        name = _ADAPTIVE.get(setup.method, name)
    cls = getattr(_solvers, name)
    if setup.method == "milstein":
        grad_free = bool(setup.options.get("grad_free", False))
        solver = cls(interpretation=setup.sde_type, derivative_free=grad_free)
    elif setup.method == "log_ode":
        solver = cls(approximation=setup.approximation)
    else:
        solver = cls()
    if not adaptive or solver.error_order is not None:
        return solver
    return StepDoubling(solver)


#: solvers that replace a method's under ``adaptive=True``: an embedded pair with the same
#: propagated solution
_ADAPTIVE = {"heun": "HeunEuler"}


@dataclass
class _Plan:
    """How the solve steps, saves, and which path drives it."""

    path: AbstractPath
    controller: Any
    dt0: float | None
    saveat: SaveAt
    max_steps: int
    t0: torch.Tensor
    t1: torch.Tensor
    grid: torch.Tensor | None = None  # fixed steps: the step times
    at: torch.Tensor | None = None  # the grid cell of each output time
    lo: torch.Tensor | None = None  # where the values at its ends are saved
    hi: torch.Tensor | None = None


def _plan(setup: _Setup, bm: Any, dt, adaptive: bool, rtol, atol, dt_min) -> _Plan | None:
    """How to solve; None when there is nothing to solve (one output time)."""
    ts = setup.ts
    needs_levy = METHODS[setup.method].levy_area
    dt = _no_grad_number("dt", dt)
    dt_min = _no_grad_number("dt_min", dt_min)
    if len(ts) == 1:
        return None
    if adaptive:
        rtol = _no_grad_number("rtol", rtol, positive=False)
        atol = _no_grad_number("atol", atol, positive=False)
        span = float(ts[-1] - ts[0])
        path = (
            _tree(setup, needs_levy, tol=dt_min / 1024)
            if bm is None
            else _user_path(setup, bm, needs_levy)
        )
        controller = PIDController(
            rtol=rtol, atol=atol, dtmin=dt_min, step_ts=ts.detach().to(torch.float64)
        )
        max_steps = max(DEFAULT_MAX_STEPS, 4 * math.ceil(span / dt_min))
        return _Plan(path, controller, min(dt, span), SaveAt(ts=ts), max_steps, ts[0], ts[-1])
    steps = _uniform_steps(ts, dt) if bm is None else None
    if steps is not None:
        # a fresh path on the exact uniform grid t0 + k·dt (torchsde accumulates the same times
        # in the dtype of ts: they differ by rounding), sampled once: O(1) per step
        t0, t1 = float(ts[0]), float(ts[-1])
        path = BrownianGrid(
            t0,
            t1,
            (setup.batch, setup.noise_size),
            steps=steps,
            seed=_fresh_seed(),
            levy_area="space-time" if needs_levy else None,
            dtype=setup.y0.dtype,
            device=setup.y0.device,
        )
        grid = torch.arange(steps + 1, dtype=torch.float64, device=ts.device) * ((t1 - t0) / steps)
        grid = grid + t0
        grid[-1] = t1
    else:
        # torchsde's own steps, so that a shared Brownian object gives the same increments;
        # float64, so that the loop does not merge a last step of a few float32 ulps
        grid = _grid(ts, dt).to(torch.float64)
        path = (
            _tree(setup, needs_levy, tol=dt * 2.0**-10)
            if bm is None
            else _user_path(setup, bm, needs_levy)
        )
    # torchsde steps past an output time and interpolates linearly between the grid values
    # around it: save those grid values only
    where = ts.to(grid.dtype)
    hi = torch.searchsorted(grid, where, right=False).clamp(1, len(grid) - 1)
    lo = hi - 1
    need = torch.unique(torch.cat([lo, hi]))
    return _Plan(
        path,
        StepTo(grid),
        None,
        SaveAt(ts=grid[need]),
        len(grid) - 1,
        grid[0],
        grid[-1],
        grid=grid,
        at=lo,
        lo=torch.searchsorted(need, lo),
        hi=torch.searchsorted(need, hi),
    )


def _outputs(setup: _Setup, plan: _Plan, ys: torch.Tensor) -> torch.Tensor:
    """``(len(ts), batch, d)`` from the saved values: torchsde's linear interpolation between the
    two grid values around each output time."""
    if plan.grid is None:
        return ys
    grid, ts = plan.grid, setup.ts.to(plan.grid.dtype)
    t_lo, t_hi = grid[plan.at], grid[plan.at + 1]
    width = t_hi - t_lo
    w_lo = ((t_hi - ts) / width).to(ys.dtype)[:, None, None]
    w_hi = ((ts - t_lo) / width).to(ys.dtype)[:, None, None]
    out = w_lo * ys[plan.lo] + w_hi * ys[plan.hi]
    return torch.cat([setup.y0[None], out[1:]])  # ts[0] is y0 itself, as in torchsde


def _integrate(setup: _Setup, plan: _Plan | None, solver: AbstractSolver, adjoint: AbstractAdjoint):
    if plan is None:
        return setup.y0[None].clone()
    try:
        sol = solve(
            _terms(setup, plan.path),
            solver,
            plan.t0,
            plan.t1,
            setup.y0,
            dt0=plan.dt0,
            saveat=plan.saveat,
            controller=plan.controller,
            adjoint=adjoint,
            max_steps=plan.max_steps,
        )
    except SolveError as err:
        message = str(err)
        if Status.DTMIN in err.solution.statuses:
            message += "\n(torchnde.compat.torchsde: `dt_min` sets the smallest step)"
        raise SolveError(message, err.solution, err.failed) from None
    return _outputs(setup, plan, sol.ys)


def _returns(setup: _Setup, ys: torch.Tensor, extra: bool) -> Any:
    """torchsde's return value: ``ys``, then the log-ratio increments with ``logqp``, then the
    solver's extra state with ``extra``."""
    out: list[Any] = []
    if setup.logqp:
        ys, log_ratio = ys.split((ys.size(2) - 1, 1), dim=2)
        out = [ys, (log_ratio[1:] - log_ratio[:-1]).squeeze(dim=2)]
    else:
        out = [ys]
    if extra:
        out.append(())
    return out[0] if len(out) == 1 else tuple(out)


def _check_extra(setup: _Setup, extra: bool, extra_solver_state: Any) -> None:
    if extra_solver_state is not None and len(tuple(extra_solver_state)) > 0:
        raise ValueError(
            "`extra_solver_state` cannot be given: torchnde's solvers keep no state between "
            "calls; pass None"
        )
    if extra and setup.method == "reversible_heun":
        raise ValueError(
            "extra=True with method='reversible_heun' (returning its internal (f, g, z) state) "
            "is not supported by torchnde; drop extra, or use sdeint_adjoint for its exact "
            "gradients"
        )


# ------------------------------------------------------------------------------------------------
# the public functions


def sdeint(
    sde: Any,
    y0: torch.Tensor,
    ts: torch.Tensor | list[float] | tuple[float, ...],
    bm: Any = None,
    method: str | None = None,
    dt: float | torch.Tensor = 1e-3,
    adaptive: bool = False,
    rtol: float = 1e-5,
    atol: float = 1e-4,
    dt_min: float = 1e-5,
    options: dict[str, Any] | None = None,
    names: dict[str, str] | None = None,
    logqp: bool = False,
    extra: bool = False,
    extra_solver_state: Any = None,
) -> Any:
    """Solve an SDE and return its values at ``ts`` (torchsde's ``sdeint``); gradients flow by
    backpropagation through the solver's operations (:class:`torchnde.DirectAdjoint`).

    Args:
        sde: the SDE object (see the module docstring): ``noise_type``, ``sde_type``, ``f``,
            ``g`` (or ``f_and_g``).
        y0: the initial state, ``(batch, d)``.
        ts: strictly increasing output times (a tensor, or a list of floats); ``ts[0]`` is the
            start.
        bm: the Brownian motion, of shape ``(batch, m)``: a :class:`BrownianInterval` /
            :class:`BrownianPath` / :class:`BrownianTree` of this module or of torchsde; ``None``
            draws a fresh path.
        method: see the module's table; ``None`` picks torchsde's default for the SDE's types.
        dt: the step (fixed steps), or the first step (``adaptive=True``).
        adaptive: control the step size with :class:`torchnde.PIDController` (``rtol``, ``atol``,
            ``dt_min``).
        options: ``{'grad_free': False}`` for ``milstein``; no other method takes options.
        names: other method names for the drift/diffusion (keys ``drift``, ``diffusion``,
            ``drift_and_diffusion``, ``prior_drift``, ``drift_and_diffusion_prod``).
        logqp: also return the log-ratio penalty increments ``(len(ts) - 1, batch)`` (needs the
            prior drift ``h``).
        extra: also return the solver's extra state (``()``: torchnde's solvers keep none).
        extra_solver_state: must be None.

    Returns:
        ``ys`` shaped ``(len(ts), batch, d)``; with ``logqp`` ``(ys, log_ratio)``; with ``extra``
        the extra state is appended.
    """
    setup, bm = _setup(sde, y0, ts, bm, method, options, names, logqp, adaptive)
    _check_extra(setup, extra, extra_solver_state)
    plan = _plan(setup, bm, dt, adaptive, rtol, atol, dt_min)
    ys = _integrate(setup, plan, _solver(setup, adaptive), DirectAdjoint())
    return _returns(setup, ys, extra)


def _default_adjoint_method(setup: _Setup) -> str:
    """torchsde's default backward method for the forward one (for Itô SDEs only additive noise
    gets this far, whose default is ``euler``)."""
    if setup.method == "reversible_heun":
        return "adjoint_reversible_heun"
    if setup.sde_type == "stratonovich":
        return "midpoint"
    return "milstein" if setup.noise_type == "diagonal" else "euler"


def _adjoint(
    setup: _Setup,
    adjoint_method: Any,
    adjoint_adaptive: bool,
    adjoint_rtol: Any,
    adjoint_atol: Any,
    adjoint_options: Any,
    adjoint_params: Any,
) -> AbstractAdjoint:
    """torchsde's adjoint arguments as a torchnde adjoint."""
    adjoint_method = _default_adjoint_method(setup) if adjoint_method is None else adjoint_method
    params = None
    if adjoint_params is not None:
        params = tuple(p for p in adjoint_params if p.requires_grad)
    if adjoint_method == "adjoint_reversible_heun":
        if setup.method != "reversible_heun":
            raise ValueError(
                "adjoint_method='adjoint_reversible_heun' undoes the steps of "
                f"method='reversible_heun' exactly, but method={setup.method!r}; use "
                "method='reversible_heun', or another adjoint_method such as 'midpoint'"
            )
        if adjoint_options:
            raise ValueError(
                f"adjoint_options {sorted(adjoint_options)} have no meaning for the reversible "
                "adjoint, which retraces the forward steps exactly; drop them"
            )
        if adjoint_adaptive:
            raise ValueError(
                "adjoint_adaptive=True has no meaning for adjoint_method='adjoint_reversible_heun': "
                "the backward pass retraces the forward steps exactly (adaptive ones too); drop it"
            )
        return ReversibleAdjoint(params=params)
    return _backsolve(
        setup, adjoint_method, adjoint_adaptive, adjoint_rtol, adjoint_atol, adjoint_options, params
    )


#: torchsde adjoint method name → the torchnde solver of the backward solve (it must work on any
#: term: a Runge–Kutta method or ReversibleHeun)
_ADJOINT_SOLVERS = {
    "euler": "Euler",
    "midpoint": "Midpoint",
    "heun": "Heun",
    "reversible_heun": "ReversibleHeun",
}


def _backsolve(setup, adjoint_method, adaptive, rtol, atol, options, params) -> AbstractAdjoint:
    """:class:`torchnde.BacksolveAdjoint`: the Stratonovich adjoint SDE over the same path."""
    # an Itô SDE with non-additive noise arrives here in Stratonovich form (`_as_stratonovich`)
    if adjoint_method not in _ADJOINT_SOLVERS:
        known = ", ".join(repr(m) for m in [*_ADJOINT_SOLVERS, "adjoint_reversible_heun"])
        hint = (
            " (it needs the diffusion matrix of the adjoint SDE, which is only available as a "
            "product)"
            if adjoint_method in ("milstein", "srk", "euler_heun")
            else ""
        )
        raise ValueError(
            f"adjoint_method={adjoint_method!r} cannot solve the adjoint SDE{hint}; use one of "
            f"{known}"
        )
    if adjoint_method == "euler" and setup.noise_type != "additive":
        raise ValueError(
            "adjoint_method='euler' converges to the Itô solution of the adjoint SDE, which is "
            "Stratonovich; use adjoint_method='midpoint' (the default) or 'heun'"
        )
    if adaptive:
        raise ValueError(
            "adjoint_adaptive=True: torchnde's backward solve retraces the forward steps in "
            "reverse (so it queries the Brownian motion only where the forward pass did); drop "
            "it, and set the accuracy with `dt` (or adaptive=True for the forward solve)"
        )
    if options:
        raise ValueError(
            f"adjoint_options {sorted(options)}: adjoint_method={adjoint_method!r} takes no "
            "options; drop them"
        )
    solver = getattr(_solvers, _ADJOINT_SOLVERS[adjoint_method])()
    return BacksolveAdjoint(solver=solver, params=params)


def sdeint_adjoint(
    sde: Any,
    y0: torch.Tensor,
    ts: torch.Tensor | list[float] | tuple[float, ...],
    bm: Any = None,
    method: str | None = None,
    adjoint_method: str | None = None,
    dt: float | torch.Tensor = 1e-3,
    adaptive: bool = False,
    adjoint_adaptive: bool = False,
    rtol: float = 1e-5,
    adjoint_rtol: float = 1e-5,
    atol: float = 1e-4,
    adjoint_atol: float = 1e-4,
    dt_min: float = 1e-5,
    options: dict[str, Any] | None = None,
    adjoint_options: dict[str, Any] | None = None,
    adjoint_params: Any = None,
    names: dict[str, str] | None = None,
    logqp: bool = False,
    extra: bool = False,
    extra_solver_state: Any = None,
) -> Any:
    """:func:`sdeint` with gradients that do not store the forward solve (torchsde's
    ``sdeint_adjoint``).

    ``method='reversible_heun'`` (with the default ``adjoint_method='adjoint_reversible_heun'``)
    runs :class:`torchnde.ReversibleAdjoint`: the backward pass undoes the forward steps in closed
    form, so the gradients are those of the forward computation itself, to rounding. Other
    methods run :class:`torchnde.BacksolveAdjoint` (the stochastic adjoint of Li et al., 2020:
    the adjoint SDE solved backwards on the same Brownian path), whose gradients approximate the
    true ones to the accuracy of the backward solve.

    Args:
        sde, y0, ts, bm, method, dt, adaptive, rtol, atol, dt_min: as in :func:`sdeint`.
        options, names, logqp, extra, extra_solver_state: as in :func:`sdeint`.
        adjoint_method: the backward method: ``adjoint_reversible_heun`` (the default for
            ``reversible_heun``), ``midpoint`` (the default otherwise), ``heun``,
            ``reversible_heun``, or ``euler`` (additive noise; torchsde's default for Itô SDEs
            other than diagonal noise, whose ``milstein`` default is not available here).
        adjoint_adaptive: must be False (the backward solve retraces the forward steps).
        adjoint_rtol, adjoint_atol: accepted for torchsde's signature; they act only with
            ``adjoint_adaptive``, as in torchsde.
        adjoint_options: must be empty (no backward method here takes options).
        adjoint_params: the tensors to return gradients for besides ``y0``; ``None`` finds them
            (any ``sde``, not only an ``nn.Module``).
    """
    setup, bm = _setup(sde, y0, ts, bm, method, options, names, logqp, adaptive)
    _check_extra(setup, extra, extra_solver_state)
    if setup.sde_type == "ito" and setup.noise_type != "additive":
        setup = _as_stratonovich(setup)
        if adjoint_method in ("euler", "milstein", "srk"):  # Itô names: the Stratonovich default
            adjoint_method = None
            adjoint_options = None
    _no_grad_number("adjoint_rtol", adjoint_rtol, positive=False)
    _no_grad_number("adjoint_atol", adjoint_atol, positive=False)
    if adjoint_options is not None and not isinstance(adjoint_options, dict):
        raise TypeError(
            f"`adjoint_options` must be a dict or None, got {type(adjoint_options).__name__}"
        )
    adjoint = _adjoint(
        setup,
        adjoint_method,
        adjoint_adaptive,
        adjoint_rtol,
        adjoint_atol,
        dict(adjoint_options or {}),
        adjoint_params,
    )
    plan = _plan(setup, bm, dt, adaptive, rtol, atol, dt_min)
    ys = _integrate(setup, plan, _solver(setup, adaptive), adjoint)
    return _returns(setup, ys, extra)
