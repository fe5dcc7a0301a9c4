"""What a discovery run is made of, as plain frozen dataclasses (the command's TOML config is
validated into these; Python users build them directly)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "DiscoverySpec",
    "ForecastSpec",
    "NetworkSpec",
    "Observations",
    "RunSpec",
    "SyntheticData",
    "SystemSpec",
    "TrainingSpec",
]

ACTIVATIONS = ("tanh", "relu", "gelu", "silu", "softplus", "sigmoid")
#: how the noise of synthetic data is sized: a fraction of each state's standard deviation over
#: the window, or of the mean of its absolute value
NOISE_RELATIVE_TO = ("std", "mean")
#: how the sparsity threshold is read (see :func:`torchnde.discovery.sparse_regression`)
THRESHOLD_MODES = ("share", "largest", "absolute")


def check_scale(value: Any, name: str) -> float | tuple[float, ...] | None:
    """A network's input or output scale: None (from the data), a positive number, or a
    sequence of positive numbers (one per input or output); returns it as a float or tuple."""
    if value is None:
        return None
    values = value if isinstance(value, list | tuple) else (value,)
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise ValueError(
                f"`{name}` must be a positive number or a list of them (one per input or "
                f"output), or None to take it from the data; got {value!r}"
            )
        out.append(float(v))
    if not out:
        raise ValueError(f"`{name}` is an empty list; give one value per input, or None")
    return tuple(out) if isinstance(value, list | tuple) else out[0]


@dataclass(frozen=True)
class NetworkSpec:
    """A multilayer perceptron standing for an unknown term.

    Its inputs are divided by ``input_scale`` and its output multiplied by ``output_scale`` (see
    :class:`MLP`), so that the network works on numbers of order one whatever the units.

    Args:
        hidden: width of each hidden layer.
        depth: number of hidden layers.
        activation: one of ``tanh``, ``relu``, ``gelu``, ``silu``, ``softplus``, ``sigmoid``.
        input_scale: None: from the data (the largest absolute value of each input state, the
            time span for the time); a number for every input, or one number per input.
        output_scale: None: from the data (the size of the state whose equation calls it over a
            tenth of the time span); a number for every output, or one per output.
        factory: your own network instead of the MLP: ``"package.module:function"`` or
            ``"path/to/file.py:function"``, a function called as ``function(inputs, outputs)``
            that returns an ``nn.Module`` mapping ``(..., inputs)`` to ``(..., outputs)``; it is
            wrapped in :class:`ScaledNetwork` with the scales above (``hidden``, ``depth`` and
            ``activation`` do not apply).
    """

    hidden: int = 32
    depth: int = 2
    activation: str = "tanh"
    input_scale: float | tuple[float, ...] | None = None
    output_scale: float | tuple[float, ...] | None = None
    factory: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.hidden, int) or self.hidden < 1:
            raise ValueError(f"`hidden` must be a positive int, got {self.hidden!r}")
        if not isinstance(self.depth, int) or self.depth < 0:
            raise ValueError(f"`depth` must be an int ≥ 0, got {self.depth!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"`activation` must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
            )
        object.__setattr__(self, "input_scale", check_scale(self.input_scale, "input_scale"))
        object.__setattr__(self, "output_scale", check_scale(self.output_scale, "output_scale"))
        if self.factory is not None and (
            not isinstance(self.factory, str) or self.factory.count(":") < 1
        ):
            raise ValueError(
                f'`factory` must be "package.module:function" or "file.py:function", got '
                f"{self.factory!r}"
            )


@dataclass(frozen=True)
class SystemSpec:
    """A hybrid model written as text: known physics plus networks for the unknown terms.

    Args:
        states: the state names, in the order of the data columns.
        equations: for each state, the right-hand side of ``d state/dt``, e.g.
            ``{"x": "alpha*x + NN1(x, y)", "y": "NN2(x, y) - theta*y"}``. A call ``NAME(args)`` of
            a declared network is that network applied to those arguments (states, or the time);
            known functions are ``sin``, ``cos``, ``exp``, ``log``, ``sqrt``, ``tanh``, ….
        constants: known parameters and their values.
        parameters: learnable parameters and their initial values.
        networks: the networks, by name, with their settings (``NetworkSpec()`` for defaults).
        time: the name of time in the equations.
    """

    states: tuple[str, ...]
    equations: dict[str, str]
    constants: dict[str, float] = field(default_factory=dict)
    parameters: dict[str, float] = field(default_factory=dict)
    networks: dict[str, NetworkSpec] = field(default_factory=dict)
    time: str = "t"


@dataclass(frozen=True)
class SyntheticData:
    """Data generated from a fully known system (so recoveries can be scored against the truth).

    Args:
        equations: the true right-hand sides, every term known, e.g.
            ``{"x": "alpha*x - beta*x*y", "y": "gamma*x*y - delta*y"}``.
        parameters: values of the symbols in ``equations``.
        initial: the initial state.
        t_end: end of the observed (training) window.
        n_points: number of observation times.
        t_start: start of the window.
        noise: measurement noise: Gaussian with standard deviation ``noise`` times each state's
            standard deviation over the window, or times the mean of its absolute value (see
            ``noise_relative_to``).
        irregular: draw the observation times uniformly at random instead of on a grid.
        missing: fraction of individual observations dropped (NaN).
        seed: seed of the noise, the times and the dropped values.
        noise_relative_to: ``"std"`` (each state's standard deviation over the window) or
            ``"mean"`` (the mean of each state's absolute value): what ``noise`` is a fraction of.
    """

    equations: dict[str, str]
    parameters: dict[str, float]
    initial: dict[str, float]
    t_end: float
    n_points: int = 151
    t_start: float = 0.0
    noise: float = 0.05
    irregular: bool = False
    missing: float = 0.0
    seed: int = 0
    noise_relative_to: str = "std"

    def __post_init__(self) -> None:
        if self.noise_relative_to not in NOISE_RELATIVE_TO:
            raise ValueError(
                f"`noise_relative_to` must be one of {', '.join(map(repr, NOISE_RELATIVE_TO))}, "
                f"got {self.noise_relative_to!r}: the noise is a fraction of each state's "
                "standard deviation ('std') or of its mean absolute value ('mean')"
            )


@dataclass(frozen=True)
class Observations:
    """Measured trajectories of the states.

    Args:
        ts: observation times ``(T,)``, strictly increasing.
        ys: observations ``(T, states)``; NaN marks a missing value.
        states: the state names (columns of ``ys``).
        truth: the generating system when it is known (synthetic data), for scoring.
    """

    ts: torch.Tensor
    ys: torch.Tensor
    states: tuple[str, ...]
    truth: SyntheticData | None = None


@dataclass(frozen=True)
class TrainingSpec:
    """How the hybrid model is fitted: windows of consecutive observations, each solved from its
    first observation, the loss the mean squared error (scaled per state) over the window.

    Args:
        window: observations per window.
        solver: a torchnde solver name (``rk4``, ``tsit5``, ``dopri5``, …).
        dt: step size for fixed-step solvers (default: the median observation spacing).
        rtol, atol: tolerances for adaptive solvers.
        adam_steps, adam_lr: the Adam stage.
        schedule: the Adam stage's learning-rate schedule, as in
            :class:`torchnde.training.Stage`: None (constant), a name (``"cosine"``, ``"step"``,
            ``"exponential"``) or a schedule object such as ``CosineSchedule(min_lr=1e-4)``.
        lbfgs_steps: the L-BFGS stage that follows (0 to skip).
        batch_size: windows per step (``None``: all of them).
        multiple_shooting: learn each window's initial state (starting from its observation)
            instead of trusting the noisy observation.
        checkpoint_every: steps between checkpoints.
        patience: early stopping patience in steps (``None``: off).
    """

    window: int = 8
    solver: str = "rk4"
    dt: float | None = None
    rtol: float = 1e-6
    atol: float = 1e-8
    adam_steps: int = 300
    adam_lr: float = 1e-2
    schedule: Any = None
    lbfgs_steps: int = 200
    batch_size: int | None = None
    multiple_shooting: bool = False
    checkpoint_every: int = 50
    patience: int | None = None


@dataclass(frozen=True)
class DiscoverySpec:
    """How closed forms are recovered for the networks.

    The networks are evaluated where the data are: along the fitted solutions of the training
    windows (each from its own, possibly learnt, initial state), never along one long solve of the
    fitted model, which can drift away from the data and sample the networks' extrapolation.

    Args:
        degree: polynomial library degree (used when ``library`` is None).
        library: explicit candidate terms, e.g. ``["x", "x*y", "sin(x)"]``.
        threshold: the sparsity threshold, read as ``threshold_mode`` says.
        threshold_mode: ``"share"`` (a term must carry at least ``threshold`` of the target's RMS;
            the default), ``"largest"`` (a coefficient must be at least ``threshold`` times the
            largest one in magnitude) or ``"absolute"`` (a coefficient must be at least
            ``threshold`` in magnitude, PySINDy's ``STLSQ(threshold=...)``); see
            :func:`torchnde.discovery.sparse_regression`.
        samples: states sampled along the windows' fitted solutions, where the networks are
            evaluated for the regression.
        refit_steps: L-BFGS steps refitting the recovered equations' coefficients on the training
            windows (with each window's initial state learnt too); terms whose refitted
            coefficients fall below the threshold are then dropped and the rest refitted again
            (as many steps).
        trajectory_steps: L-BFGS steps then fitting them, with the initial state, to the whole
            observed trajectory at once (0 to skip).
        select: regress at ``threshold`` × 1, 2, 3 and 5, refit each candidate's coefficients on
            the windows (``select_steps`` L-BFGS steps, from the window initial states of the
            hybrid model's fit) and keep the sparsest candidate whose loss against the data lies
            within one standard error of the best candidate's; False: use ``threshold`` alone.
        select_steps: those refitting steps.
        max_loss_ratio: the chosen law explains the data when, refitted with its own window
            initial states, its loss on the windows is at most this many times the hybrid
            model's; otherwise the run reports "no sparse law found; the hybrid model stands"
            instead of an equation.
    """

    degree: int = 2
    library: tuple[str, ...] | None = None
    threshold: float = 0.1
    threshold_mode: str = "share"
    samples: int = 400
    refit_steps: int = 100
    trajectory_steps: int = 30
    select: bool = True
    select_steps: int = 20
    max_loss_ratio: float = 2.0

    def __post_init__(self) -> None:
        if self.threshold_mode not in THRESHOLD_MODES:
            raise ValueError(
                f"`threshold_mode` must be one of {', '.join(map(repr, THRESHOLD_MODES))}, got "
                f"{self.threshold_mode!r}"
            )
        if not (isinstance(self.max_loss_ratio, int | float) and self.max_loss_ratio >= 1):
            raise ValueError(
                f"`max_loss_ratio` must be a number >= 1 (how many times the hybrid model's loss "
                f"a recovered law may reach), got {self.max_loss_ratio!r}"
            )


@dataclass(frozen=True)
class ForecastSpec:
    """The forecast past the training window, and the black-box baseline.

    Args:
        horizon: length of the forecast window as a multiple of the training window's length.
        blackbox: also train a purely neural ODE ``dy/dt = MLP(y)`` on the same data.
        blackbox_network: its network.
        blackbox_adam_steps, blackbox_lbfgs_steps: its training stages.
    """

    horizon: float = 2.0
    blackbox: bool = True
    blackbox_network: NetworkSpec = field(default_factory=lambda: NetworkSpec(hidden=64, depth=2))
    blackbox_adam_steps: int = 300
    blackbox_lbfgs_steps: int = 100


@dataclass(frozen=True)
class RunSpec:
    """A whole discovery run."""

    name: str
    system: SystemSpec
    training: TrainingSpec = field(default_factory=TrainingSpec)
    discovery: DiscoverySpec = field(default_factory=DiscoverySpec)
    forecast: ForecastSpec = field(default_factory=ForecastSpec)
    seed: int = 0
