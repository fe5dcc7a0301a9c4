"""Sequence data for the recurrent cells: the adding problem, pixel-by-pixel 8×8 digits (ordered
or permuted), FitzHugh–Nagumo trajectories, MNIST-1D (``mnist1d``'s generator) and the UEA/UCR
sets that ``aeon`` ships. Nothing is downloaded."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch

from ._digits import load_digits
from ._split import Split

__all__ = ["adding_problem", "fitzhugh_nagumo", "load_mnist1d", "load_uea", "pixel_digits"]


def _generator(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator().manual_seed(seed)


def _count(name: str, value, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"`{name}` must be an int >= {least}, got {value!r}")
    return value


def adding_problem(
    n: int, length: int, *, seed: int | None = None, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """The adding problem (Hochreiter & Schmidhuber 1997): each sequence has two channels, values
    uniform in [0, 1] and a marker that is 1 at exactly two steps, one in each half; the target
    is the sum of the two marked values. Predicting the mean 1 scores the trivial MSE 1/6 ≈
    0.167 (the variance of a sum of two uniforms).

    Returns:
        ``x: (n, length, 2)`` and ``y: (n,)``.
    """
    n, length = _count("n", n), _count("length", length, 2)
    gen = _generator(seed)
    values = torch.rand(n, length, generator=gen, dtype=torch.float64)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=gen)
    second = torch.randint(half, length, (n,), generator=gen)
    marker = torch.zeros(n, length, dtype=torch.float64)
    rows = torch.arange(n)
    marker[rows, first] = 1.0
    marker[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return torch.stack([values, marker], dim=2).to(dtype), y.to(dtype)


def pixel_digits(
    *,
    permuted: bool = False,
    permutation_seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Split:
    """scikit-learn's 8×8 digits read pixel by pixel: sequences ``(n, 64, 1)`` in row-major order
    (the 8×8 stand-in for sequential MNIST), or under one fixed permutation of the 64 pixels
    (``permuted=True``: permuted sequential MNIST's analogue, which breaks the locality an RNN
    could exploit). The split is :func:`load_digits`' (1347 training / 450 test).

    Args:
        permuted: apply the permutation.
        permutation_seed: its seed (the same permutation for training and test).
        dtype, device: of the inputs.
    """
    split = load_digits(dtype=dtype, device=device)
    order = torch.arange(64)
    if permuted:
        order = torch.randperm(64, generator=torch.Generator().manual_seed(permutation_seed))
    order = order.to(split.x_train.device)
    return Split(
        split.x_train[:, order].unsqueeze(-1),
        split.y_train,
        split.x_test[:, order].unsqueeze(-1),
        split.y_test,
    )


def _pair(name: str, value) -> tuple[float, float]:
    """``(low, high)`` with finite ``low <= high`` (a number ``c`` means the point ``(c, c)``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    ok = isinstance(value, (tuple, list)) and len(value) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or not all(math.isfinite(v) for v in value) or value[0] > value[1]:
        raise ValueError(
            f"`{name}` must be a finite number or a range (low, high) with low <= high, got "
            f"{value!r}"
        )
    return float(value[0]), float(value[1])


def fitzhugh_nagumo(
    n: int,
    steps: int,
    *,
    dt: float = 0.5,
    epsilon: float = 0.08,
    a: float = 0.7,
    b: float = 0.8,
    current: float | None = None,
    v0: float | tuple[float, float] = (-2.0, 2.0),
    w0: float | tuple[float, float] = (-1.0, 1.5),
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Trajectories of the FitzHugh–Nagumo neuron driven by a current,

        v' = v - v³/3 - w + I(t),    w' = ε (v + a - b w),

    a fast–slow (multiscale for small ε) excitable system: spikes of ``v`` on a slow recovery
    ``w``. By default each trajectory has its own smooth current ``I(t) = c + d sin(ω t + φ)``
    (c in [0.2, 0.8], d in [0, 0.4], ω in [0.05, 0.3]); ``current=I`` holds it constant instead,
    the same for every trajectory. The initial state is drawn uniformly from ``v0 × w0`` (a
    number fixes that coordinate). Solved with RK4 at ``dt/10`` (torchnde), sampled every ``dt``.

    Rusch et al. (2022, LEM)'s task is ``fitzhugh_nagumo(n, 1001, dt=0.4, epsilon=1/50,
    current=0.5, v0=(-1, 1), w0=0)``: a relaxation oscillation (period ≈ 90 time units) whose
    slow ``w`` a network reading only ``v`` has to carry in memory.

    Args:
        n, steps: trajectories and samples per trajectory (``t = 0, dt, …, (steps-1) dt``).
        dt: sampling interval.
        epsilon, a, b: the model's constants (ε: the ratio of the slow to the fast time scale).
        current: a constant current ``I`` (``None``: the random smooth currents above).
        v0, w0: the initial ``v`` and ``w``: a range ``(low, high)`` to draw from, or a number.
        seed: of the draws (``None``: torch's global generator).
        dtype: of the returned tensors (the solve runs in float64).

    Returns:
        ``ts: (steps,)``, ``current: (n, steps, 1)`` and ``states: (n, steps, 2)`` (``v``, ``w``).
    """
    from .. import RK4, ODETerm, SaveAt, solve

    n, steps = _count("n", n), _count("steps", steps, 2)
    v_range, w_range = _pair("v0", v0), _pair("w0", w0)
    if current is not None:
        _pair("current", current)  # a finite number
    gen = _generator(seed)

    def draw(low, high, shape=(n,)):
        return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)

    if current is None:
        c, d, omega, phase = draw(0.2, 0.8), draw(0.0, 0.4), draw(0.05, 0.3), draw(0, 2 * math.pi)

        def drive(t):
            return c + d * torch.sin(omega * t + phase)
    else:
        constant = torch.full((n,), float(current), dtype=torch.float64)

        def drive(t):
            return constant

    y0 = torch.stack([draw(*v_range), draw(*w_range)], dim=1)

    def field(t, y, args):
        v, w = y[:, 0], y[:, 1]
        return torch.stack([v - v**3 / 3 - w + drive(t), epsilon * (v + a - b * w)], dim=1)

    ts = dt * torch.arange(steps, dtype=torch.float64)
    sol = solve(
        ODETerm(field), RK4(), 0.0, float(ts[-1]), y0, dt0=dt / 10, saveat=SaveAt(ts=ts),
        max_steps=10 * steps + 10,
    )  # fmt: skip
    states = sol.ys.transpose(0, 1)
    cur = torch.stack([drive(t) for t in ts], dim=1).unsqueeze(-1)
    return ts.to(dtype), cur.to(dtype), states.to(dtype)


def load_mnist1d(
    *, seed: int = 42, samples: int = 5000, dtype: torch.dtype = torch.float32
) -> Split:
    """MNIST-1D (Greydanus 2020) generated on the spot by ``mnist1d.data.make_dataset`` (never its
    downloader): 40-step univariate sequences of ten templates under shifts, scaling, shear and
    correlated noise, ``x: (n, 40, 1)``; the package's default 80/20 split.

    Raises:
        ImportError: ``mnist1d`` is missing (``pip install 'torchnde[models]'``).
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise ImportError(
            "MNIST-1D is generated by the `mnist1d` package; install it with "
            "`pip install 'torchnde[models]'` (or `pip install mnist1d`)"
        ) from None
    args = get_dataset_args()
    args.seed, args.num_samples = seed, _count("samples", samples, 10)
    data = make_dataset(args)

    def tensor(key, kind=dtype):
        return torch.as_tensor(data[key]).to(kind)

    return Split(
        tensor("x").unsqueeze(-1),
        tensor("y", torch.int64),
        tensor("x_test").unsqueeze(-1),
        tensor("y_test", torch.int64),
    )


UEA_SETS = ("BasicMotions", "GunPoint", "JapaneseVowels")


def _aeon_folder(name: str) -> Path:
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the {name} data set ships with the `aeon` package; install it with "
            "`pip install 'torchnde[models]'` (or `pip install aeon`)"
        )
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name


def _read_ts(path: Path) -> tuple[list[torch.Tensor], list[str]]:
    """A ``.ts`` file (sktime/aeon format): one series per line, dimensions separated by ':',
    values by ',', the class label last."""
    series, labels = [], []
    data = False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not data:
            data = line.lower() == "@data"
            continue
        *dims, label = line.split(":")
        values = [[float(v) if v != "?" else math.nan for v in d.split(",")] for d in dims]
        series.append(torch.tensor(values, dtype=torch.float64).T)  # (T, channels)
        labels.append(label.strip())
    return series, labels


def _pad(series: list[torch.Tensor], length: int) -> torch.Tensor:
    out = torch.full((len(series), length, series[0].shape[1]), math.nan, dtype=torch.float64)
    for i, s in enumerate(series):
        out[i, : s.shape[0]] = s
    return out


def load_uea(name: str, *, dtype: torch.dtype = torch.float32) -> Split:
    """A UEA/UCR classification set as ``aeon`` ships it (read from its data folder, without
    importing aeon's loaders): ``x: (n, T, channels)``, NaN after the end of a shorter series,
    labels ``0..k-1`` in sorted order of the class names; the archive's own train/test split.

    Args:
        name: ``"BasicMotions"`` (6-channel accelerometer/gyroscope, 4 activities, 40/40 series
            of 100 steps), ``"GunPoint"`` (1 channel, 2 classes, 50/150 of 150) or
            ``"JapaneseVowels"`` (12 channels, 9 speakers, 270/370 of 7–29 steps).
        dtype: of the inputs.
    """
    if name not in UEA_SETS:
        raise ValueError(f"`name` must be one of {UEA_SETS} (shipped by aeon), got {name!r}")
    folder = _aeon_folder(name)
    train, train_labels = _read_ts(folder / f"{name}_TRAIN.ts")
    test, test_labels = _read_ts(folder / f"{name}_TEST.ts")
    classes = sorted(set(train_labels))
    index = {c: i for i, c in enumerate(classes)}
    length = max(s.shape[0] for s in train + test)
    return Split(
        _pad(train, length).to(dtype),
        torch.tensor([index[c] for c in train_labels]),
        _pad(test, length).to(dtype),
        torch.tensor([index[c] for c in test_labels]),
    )
