"""Rusch & Mishra 2021, human activity recognition (HAR-2, 97.2 %), here on the UEA BasicMotions
set that aeon ships: a coRNN classifies four activities from a wrist-worn accelerometer and
gyroscope."""

from __future__ import annotations

from torchnde.reproduce import Entry, Outcome, Row, RunContext, mean_spread

from . import _rnn_tasks as tasks
from ._classify import accuracy, train_classifier


def _settings(quick: bool) -> dict:
    if quick:
        return dict(hidden=16, epochs=2, batch=8)
    return dict(hidden=64, epochs=100, batch=8)


def run(ctx: RunContext, seed: int) -> dict[str, float]:
    from torchnde.data import load_uea
    from torchnde.nn import CoRNN, Recurrent

    cfg = _settings(ctx.quick)
    split = load_uea("BasicMotions")
    x_train, x_test = tasks.standardise(split.x_train, split.x_test)
    metrics = {}
    for name, model in (
        ("cornn", Recurrent(CoRNN(6, cfg["hidden"], dt=0.1, gamma=1.0, epsilon=1.0), 4)),
        ("gru", tasks.TorchRNN("gru", 6, cfg["hidden"], 4)),
    ):
        ctx.progress.reset(total=cfg["epochs"] * -(-len(split.y_train) // cfg["batch"]))
        ctx.progress.set_description(name)
        metrics[f"seconds_{name}"] = train_classifier(
            model, x_train, split.y_train, epochs=cfg["epochs"], progress=ctx.progress,
            batch=cfg["batch"],
        )  # fmt: skip
        metrics[f"acc_{name}"] = accuracy(model, x_test, split.y_test)
        ctx.log(f"  seed {seed} {name}: {metrics[f'acc_{name}']:.4f}")
    return metrics


def summarise(per_seed: list[dict[str, float]], ctx: RunContext) -> Outcome:
    cornn, gru = tasks.column(per_seed, "acc_cornn"), tasks.column(per_seed, "acc_gru")
    rows = [
        Row("test accuracy, coRNN", "97.2 % (HAR-2)", mean_spread(cornn, scale=100, unit="%")),
        Row("test accuracy, GRU (same width)", "—", mean_spread(gru, scale=100, unit="%")),
        Row(
            "training wall time (coRNN, GRU)",
            "—",
            f"{mean_spread(tasks.column(per_seed, 'seconds_cornn'), unit='s')}, "
            f"{mean_spread(tasks.column(per_seed, 'seconds_gru'), unit='s')}",
        ),
    ]
    return Outcome(
        rows=rows,
        criterion_met=bool(tasks.mean(cornn) >= 0.95),
        details={"acc_cornn": cornn, "acc_gru": gru},
    )


ENTRY = Entry(
    name="cornn-basic-motions",
    title="coRNN on BasicMotions (standing in for HAR-2)",
    paper=tasks.CORNN_PAPER,
    paper_result="HAR-2 (binary human activity recognition): coRNN 97.2 % test accuracy",
    data=(
        "UEA BasicMotions as shipped by aeon (6-channel accelerometer and gyroscope, 4 "
        "activities, 40 training and 40 test series of 100 steps), channels standardised with "
        "the training statistics: a small human-activity set available offline"
    ),
    criterion="coRNN's mean test accuracy >= 95 % (GRU of the same width alongside)",
    run=run,
    summarise=summarise,
    seeds=3,
    extras=("aeon",),
)
