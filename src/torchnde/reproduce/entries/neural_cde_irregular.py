"""Kidger et al. 2020: neural CDEs classify irregularly sampled, partially observed series.

Two data sets, each with points dropped at random per series (the paper's protocol on
CharacterTrajectories), so every series has its own irregular observation times:

* spirals turning clockwise or anticlockwise (``torchnde.data.spirals``, 100 points each, noise
  0.05), half of the points of every spiral dropped;
* JapaneseVowels (UEA archive, shipped with the ``aeon`` package: 270 training and 370 test
  utterances of 12 LPC cepstrum coefficients, 7–26 frames, 9 speakers), 30 % of the frames of
  every utterance dropped, channels standardised on the training set.

The model (:class:`torchnde.nn.NeuralCDE`): time as a channel, a causal cubic Hermite path on the
observation-index clock (per-sample times), hidden state 32, a field MLP of width 64, one RK4
step per observation interval, a linear readout of the final state, cross-entropy, Adam.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from torchnde.reproduce import Entry, Outcome, Row, RunContext, mean_spread


def _settings(quick: bool) -> dict:
    if quick:
        return dict(spiral_train=48, spiral_test=48, spiral_epochs=2, vowel_epochs=1, batch=16)
    return dict(spiral_train=1000, spiral_test=500, spiral_epochs=10, vowel_epochs=60, batch=32)


def _drop(ts: torch.Tensor, xs: torch.Tensor, keep: float, gen: torch.Generator):
    """Keep a random fraction of each series' observations (at least 2): per-sample times
    ``(n, kept)`` and values ``(n, kept, channels)``; series with fewer observed frames are padded
    past their end (times ``t_last + 1, …``, NaN values). ``ts: (n, T)``, ``xs: (n, T, c)`` with NaN
    after each series' end."""
    n = xs.shape[0]
    lengths = (~torch.isnan(xs).all(dim=-1)).sum(dim=1)
    kept = [max(2, round(keep * int(m))) for m in lengths]
    width = max(kept)
    out_t = torch.empty(n, width, dtype=ts.dtype)
    out_x = torch.full((n, width, xs.shape[2]), float("nan"), dtype=xs.dtype)
    for i in range(n):
        idx = torch.randperm(int(lengths[i]), generator=gen)[: kept[i]].sort().values
        out_t[i, : kept[i]] = ts[i, idx]
        out_x[i, : kept[i]] = xs[i, idx]
        out_t[i, kept[i] :] = ts[i, idx[-1]] + torch.arange(1, width - kept[i] + 1, dtype=ts.dtype)
    return out_t, out_x


def _spirals(n: int, seed: int, gen: torch.Generator):
    from torchnde.data import spirals

    t, xy, labels = spirals(n, points=100, noise=0.05, seed=seed)
    ts, xs = _drop(t.expand(n, -1), xy, 0.5, gen)
    return ts, xs, labels


def _read_ts(path) -> tuple[torch.Tensor, torch.Tensor]:
    """A UEA ``.ts`` file of variable-length multivariate series: ``xs (n, T_max, channels)``
    (NaN after each series' end) and labels ``(n,)`` from 0."""
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
        series.append(torch.tensor([[float(v) for v in d.split(",")] for d in dims]).T)
        labels.append(int(label) - 1)
    length = max(s.shape[0] for s in series)
    xs = torch.full((len(series), length, series[0].shape[1]), float("nan"))
    for i, s in enumerate(series):
        xs[i, : s.shape[0]] = s
    return xs, torch.tensor(labels)


def _vowels(gen: torch.Generator):
    """JapaneseVowels as aeon ships it (read from aeon's data folder, without importing aeon's
    loaders, which pull in numba): padded, standardised, 30 % of the frames dropped."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("aeon")
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "JapaneseVowels"
    x_train, y_train = _read_ts(folder / "JapaneseVowels_TRAIN.ts")
    x_test, y_test = _read_ts(folder / "JapaneseVowels_TEST.ts")
    mean = torch.nanmean(x_train, dim=(0, 1))
    std = torch.sqrt(torch.nanmean((x_train - mean) ** 2, dim=(0, 1)))
    out = []
    for xs, ys in ((x_train, y_train), (x_test, y_test)):
        frames = torch.arange(xs.shape[1], dtype=torch.float32) / 10.0  # frame index, scaled
        ts, kept = _drop(frames.expand(xs.shape[0], -1), (xs - mean) / std, 0.7, gen)
        out.append((ts, kept, ys))
    return out


def _model(channels: int, classes: int):
    import torchnde as tn
    from torchnde.nn._cde import NeuralCDE

    return NeuralCDE(channels, 32, classes, solver=tn.RK4(), dt0=1.0)


def _train(model, data, epochs, cfg, ctx, gen, label) -> float:
    ts, xs, ys = data
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    steps = epochs * math.ceil(len(ys) / cfg["batch"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-4)
    start = time.process_time()
    for _ in range(epochs):
        order = torch.randperm(len(ys), generator=gen)
        for k in range(0, len(ys), cfg["batch"]):
            b = order[k : k + cfg["batch"]]
            loss = nn.functional.cross_entropy(model(ts[b], xs[b]), ys[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            ctx.progress.update(1)
        ctx.progress.set_postfix(data=label, loss=f"{loss.item():.3f}")
    return time.process_time() - start


def _accuracy(model, data) -> float:
    ts, xs, ys = data
    with torch.no_grad():
        return (model(ts, xs).argmax(dim=1) == ys).float().mean().item()


def run(ctx: RunContext, seed: int) -> dict[str, float]:
    cfg = _settings(ctx.quick)
    gen = torch.Generator().manual_seed(seed)
    spiral_train = _spirals(cfg["spiral_train"], 100 + seed, gen)
    spiral_test = _spirals(cfg["spiral_test"], 900 + seed, gen)
    (v_train, v_test) = _vowels(gen)
    if ctx.quick:
        v_train = tuple(x[:32] for x in v_train)
        v_test = tuple(x[:32] for x in v_test)
    batches = math.ceil(cfg["spiral_train"] / cfg["batch"]) * cfg["spiral_epochs"]
    batches += math.ceil(len(v_train[2]) / cfg["batch"]) * cfg["vowel_epochs"]
    ctx.progress.reset(total=batches)
    spiral = _model(2, 2)
    spiral_seconds = _train(spiral, spiral_train, cfg["spiral_epochs"], cfg, ctx, gen, "spirals")
    vowels = _model(12, 9)
    vowel_seconds = _train(vowels, v_train, cfg["vowel_epochs"], cfg, ctx, gen, "vowels")
    return {
        "spirals_accuracy": _accuracy(spiral, spiral_test),
        "vowels_accuracy": _accuracy(vowels, v_test),
        "spirals_cpu_seconds": spiral_seconds,
        "vowels_cpu_seconds": vowel_seconds,
    }


def summarise(per_seed: list[dict[str, float]], ctx: RunContext) -> Outcome:
    def col(key):
        return [m[key] for m in per_seed]

    spirals, vowels = col("spirals_accuracy"), col("vowels_accuracy")
    rows = [
        Row(
            "spirals cw vs ccw, 50 % dropped: test accuracy",
            "—",
            mean_spread(spirals, scale=100, unit="%"),
            note="criterion ≥ 95 %",
        ),
        Row(
            "JapaneseVowels, 30 % dropped: test accuracy",
            "98.8 % on CharacterTrajectories, 30 % dropped",
            mean_spread(vowels, scale=100, unit="%"),
            note="criterion ≥ 90 %",
        ),
        Row(
            "training CPU time: spirals / JapaneseVowels",
            "—",
            f"{mean_spread(col('spirals_cpu_seconds'), unit='s')} / "
            f"{mean_spread(col('vowels_cpu_seconds'), unit='s')}",
        ),
    ]
    mean_s, mean_v = sum(spirals) / len(spirals), sum(vowels) / len(vowels)
    return Outcome(
        rows=rows,
        criterion_met=mean_s >= 0.95 and mean_v >= 0.90,
        details={"spirals_mean": mean_s, "vowels_mean": mean_v},
    )


ENTRY = Entry(
    name="neural-cde-irregular",
    title="Neural CDEs on irregularly sampled series with dropped points",
    paper=(
        "Kidger, Morrill, Foster & Lyons (2020). Neural controlled differential equations for "
        "irregular time series. NeurIPS."
    ),
    paper_result="CharacterTrajectories test accuracy with 30 % / 50 % / 70 % dropped: 98.8 / 98.8 / 98.6 %",
    data=(
        "generated cw/ccw spirals (50 % of points dropped), and UEA JapaneseVowels as shipped "
        "by aeon (30 % dropped): CharacterTrajectories is not shipped offline; JapaneseVowels "
        "is a UEA multivariate set of the same kind (variable-length trajectories, one label)"
    ),
    criterion="spirals >= 95 % and JapaneseVowels >= 90 % test accuracy (means over seeds)",
    run=run,
    summarise=summarise,
    seeds=3,
    extras=("aeon",),
)
