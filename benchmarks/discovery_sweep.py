"""The acceptance sweep of the main job (issue 14): ``torchnde run`` as a scientist uses it, on
data it was not tuned for.

Lotka–Volterra (dx/dt = 1.1x − 0.4xy, dy/dt = 0.1xy − 0.4y from x = y = 10), observed with the
library (``simulate``) and handed to ``torchnde run`` as a CSV file, so the run does not know the
truth; the shipped config changed only in its data and training settings. Each case varies the
data seed, the network seed, the noise (5% or 10%, of each state's standard deviation or of its
mean), the window ([0, 15] or [0, 20]) and the training settings (window length, multiple
shooting, step, threshold, selection, schedule). A case passes when the run recovers exactly the
x·y terms (NN1 = −0.4·x·y, NN2 = 0.1·x·y) within 5% (5% noise) or 10% (10% noise). Then the
pendulum and SIR configs, each on 5 data and network seeds (synthetic data, scored by the run).

Also the failure reported in issue 14, exactly: the exact solution on [0, 20] at 101 points plus
Gaussian noise of 5% of each state's mean (numpy ``default_rng(11)``), windows of 11 with multiple
shooting, a step of 0.05.

    python -m benchmarks.discovery_sweep                  # everything (about 40 CPU-minutes)
    python -m benchmarks.discovery_sweep --only issue lv  # some groups: issue, lv, pendulum, sir
    python -m benchmarks.discovery_sweep --jobs 2 --out runs/sweep

Each run is a subprocess with one thread; ``--jobs`` run at a time. The table (markdown) is
printed and written to ``OUT/sweep.md``; every run folder stays in ``OUT``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchnde.cli._main import shipped_config
from torchnde.hybrid import SyntheticData, simulate, true_trajectory

LV_TRUTH = {
    "equations": {"x": "alpha*x - beta*x*y", "y": "gamma*x*y - delta*y"},
    "parameters": {"alpha": 1.1, "beta": 0.4, "gamma": 0.1, "delta": 0.4},
    "initial": {"x": 10.0, "y": 10.0},
}
LV_TERMS = {"NN1": {"x*y": -0.4}, "NN2": {"x*y": 0.1}}


@dataclass(frozen=True)
class Case:
    """One run of the sweep."""

    name: str
    group: str
    noise: float = 0.05
    relative_to: str = "std"
    data_seed: int = 0
    seed: int = 0
    t_end: float = 15.0
    n_points: int = 151
    training: dict[str, Any] = field(default_factory=dict)
    discovery: dict[str, Any] = field(default_factory=dict)
    config: str = "lotka_volterra"

    @property
    def tolerance(self) -> float:
        return 0.05 if self.noise <= 0.05 else 0.10


def lv(name, noise, relative_to, data_seed, seed, t_end, n_points, training, discovery=None):
    return Case(
        name, "lv", noise, relative_to, data_seed, seed, t_end, n_points, training, discovery or {}
    )


#: seeds of our own: neither the demo's (0) nor the issue's (11)
LV_CASES = [
    lv("lv-01", 0.05, "std", 101, 7, 15.0, 151, {"window": 8, "dt": 0.1}),
    lv("lv-02", 0.05, "mean", 102, 8, 20.0, 101, {"window": 11, "multiple_shooting": True, "dt": 0.05}),
    lv("lv-03", 0.10, "std", 103, 9, 20.0, 101, {"window": 11, "multiple_shooting": True, "dt": 0.05}),
    lv("lv-04", 0.10, "mean", 104, 10, 15.0, 151, {"window": 8, "multiple_shooting": True, "dt": 0.1}),
    lv("lv-05", 0.05, "std", 105, 12, 20.0, 201, {"window": 15, "dt": 0.05}, {"threshold": 0.05}),
    lv("lv-06", 0.05, "mean", 106, 13, 15.0, 151, {"window": 11, "multiple_shooting": True, "dt": None}, {"threshold": 0.15, "select": False}),
    lv("lv-07", 0.10, "std", 107, 14, 15.0, 151, {"window": 15, "multiple_shooting": True, "dt": 0.05, "schedule": "cosine"}, {"select": False}),
    lv("lv-08", 0.10, "mean", 108, 15, 20.0, 101, {"window": 8, "dt": 0.1}),
    lv("lv-09", 0.05, "std", 109, 16, 20.0, 101, {"window": 11, "multiple_shooting": True, "dt": 0.1}, {"threshold": 0.2, "select": False}),
    lv("lv-10", 0.05, "mean", 110, 17, 15.0, 101, {"window": 11, "dt": 0.05, "schedule": "cosine"}),
    lv("lv-11", 0.10, "std", 111, 18, 20.0, 151, {"window": 11, "multiple_shooting": True, "dt": 0.05}, {"threshold_mode": "largest", "threshold": 0.05}),
    lv("lv-12", 0.10, "mean", 112, 19, 15.0, 151, {"window": 11, "multiple_shooting": True, "dt": 0.1}),
]  # fmt: skip

ISSUE_CASE = Case(
    "issue-14",
    "issue",
    noise=0.05,
    relative_to="mean",
    data_seed=11,
    seed=0,
    t_end=20.0,
    n_points=101,
    training={"window": 11, "multiple_shooting": True, "dt": 0.05},
)

#: the issue's data with other network seeds and the selection off ("wrong on 2 of 3 seeds")
ISSUE_VARIANTS = [
    Case(
        f"issue-14-s{seed}",
        "issue",
        noise=0.05,
        relative_to="mean",
        data_seed=11,
        seed=seed,
        t_end=20.0,
        n_points=101,
        training={"window": 11, "multiple_shooting": True, "dt": 0.05},
        discovery={"select": False},
    )
    for seed in (1, 2, 3)
]

#: the shipped configs as shipped (noise 2% of each state's std), on seeds of the sweep's own
SHIPPED_CASES = [
    Case(f"{config}-{k}", config, noise=0.02, data_seed=200 + k, seed=300 + k, config=config)
    for config in ("pendulum", "sir")
    for k in range(1, 6)
]


# -- data and configs -------------------------------------------------------------------------------


def write_lv_csv(case: Case, path: Path) -> None:
    """Observations made by the library, written as a scientist's CSV (the truth stays here).

    The issue's case uses its exact recipe: numpy ``default_rng(data_seed)`` Gaussian noise on
    the exact solution; the others the library's ``simulate``."""
    data = SyntheticData(
        **LV_TRUTH,
        t_end=case.t_end,
        n_points=case.n_points,
        noise=case.noise,
        noise_relative_to=case.relative_to,
        seed=case.data_seed,
    )
    if case.group == "issue":
        ts = torch.linspace(0.0, case.t_end, case.n_points, dtype=torch.float64)
        clean = true_trajectory(data, ("x", "y"), ts).numpy()
        rng = np.random.default_rng(case.data_seed)
        ys = clean + rng.normal(size=clean.shape) * case.noise * np.abs(clean).mean(axis=0)
        ts = ts.numpy()
    else:
        obs = simulate(data, ("x", "y"))
        ts, ys = obs.ts.numpy(), obs.ys.numpy()
    lines = ["t,x,y", *(f"{t:.10g},{x:.12g},{y:.12g}" for t, (x, y) in zip(ts, ys))]
    path.write_text("\n".join(lines) + "\n")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def write_config(case: Case, folder: Path) -> Path:
    """The shipped config with its data and training settings replaced as the case says."""
    text = shipped_config(case.config).read_text()
    text = re.sub(r"(?m)^seed = \d+", f"seed = {case.seed}", text, count=1)
    if case.group in ("lv", "issue"):
        csv = folder / f"{case.name}.csv"
        write_lv_csv(case, csv)
        start = text.index("\n[data.synthetic]") + 1
        end = text.index("\n[", start) + 1
        text = text[:start] + f'[data.csv]\npath = "{csv}"\ntime_column = "t"\n\n' + text[end:]
    else:
        text = re.sub(
            r"(?m)^(\[data\.synthetic\][^\[]*?)^seed = \d+", rf"\g<1>seed = {case.data_seed}", text
        )
        text = re.sub(  # the noise the table shows is the noise the run gets
            r"(?m)^(\[data\.synthetic\][^\[]*?)^noise = [0-9.eE+-]+",
            rf"\g<1>noise = {case.noise!r}",
            text,
        )
    text = _set(text, "training", case.training)
    text = _set(text, "discovery", case.discovery)
    text = _set(text, "forecast", {"blackbox": False})  # not scored here; saves a third
    path = folder / f"{case.name}.toml"
    path.write_text(text)
    return path


def _set(text: str, table: str, values: dict[str, Any]) -> str:
    """Set (or remove, for None) keys of ``[table]`` in TOML text (before any [quick] table)."""
    head = text.index(f"\n[{table}]") + 1
    end = text.find("\n[", head + 1)
    end = len(text) if end < 0 else end + 1
    body = text[head:end]
    for key, value in values.items():
        pattern = rf"(?m)^#?\s*{key} = [^\n]*\n"
        body = re.sub(pattern, "", body)
        if value is not None:
            body = body.rstrip("\n") + f"\n{key} = {_toml_value(value)}\n"
    return text[:head] + body + ("\n" if not body.endswith("\n\n") else "") + text[end:]


# -- running and scoring ----------------------------------------------------------------------------


def run_case(case: Case, out: Path) -> dict[str, Any]:
    config = write_config(case, out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "torchnde", "run", str(config), "--out", str(out / "runs"),
         "--no-progress", "--threads", "1"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    (out / f"{case.name}.log").write_text(done.stdout + done.stderr)
    found = re.findall(r"^run folder: (.+)$", done.stdout, re.M)
    if done.returncode != 0 or not found:
        return {"case": case, "error": (done.stderr or done.stdout).strip()[-300:], "wall": seconds}
    metrics = json.loads((Path(found[-1]) / "metrics.json").read_text())
    return {"case": case, "metrics": metrics, "wall": seconds, "folder": found[-1]}


def score(result: dict[str, Any]) -> dict[str, Any]:
    """Recovered terms, coefficient errors against the truth, and whether the case passes."""
    case = result["case"]
    if "error" in result:
        return {"passed": False, "summary": "run failed: " + result["error"]}
    metrics = result["metrics"]
    terms = metrics["recovered_terms"]
    if case.group in ("lv", "issue"):
        truth = LV_TERMS
    else:
        truth = {k: v["true_terms"] for k, v in metrics["recovery"].items()}
    if not metrics.get("law_found", True) or not terms:
        return {"passed": False, "summary": "no sparse law found", "errors": {}}
    errors = {}
    exact = True
    for network, true in truth.items():
        got = terms.get(network, {})
        exact &= set(got) == set(true or {})
        for term, value in (true or {}).items():
            if term in got:
                errors[f"{network} {term}"] = abs(got[term] - value) / abs(value)
    worst = max(errors.values(), default=float("inf"))
    passed = exact and worst <= case.tolerance
    return {"passed": passed, "exact": exact, "worst": worst, "errors": errors}


def _fmt_terms(terms: dict[str, dict[str, float]]) -> str:
    parts = []
    for network, found in terms.items():
        body = " + ".join(f"{c:.4g}·{t}" for t, c in found.items()) or "0"
        parts.append(f"{network} = {body}")
    return "; ".join(parts).replace("+ -", "− ")


def table(results: list[dict[str, Any]]) -> str:
    header = (
        "| case | noise | t_end, points | window (schedule) | shooting | dt | selection | net seed, "
        "data seed | recovered | max coef. error | tolerance | passed | wall s |"
    )
    lines = [header, "|" + "---|" * 13]
    for result in results:
        case = result["case"]
        s = score(result)
        t = case.training
        d = case.discovery
        selection = ("on" if d.get("select", True) else "off") + (
            f", {d.get('threshold_mode', 'share')} {d.get('threshold', 0.1):g}"
        )
        if "error" in result:
            recovered = s["summary"]
        elif not result["metrics"].get("law_found", True):
            recovered = "no sparse law found"
        else:
            recovered = _fmt_terms(result["metrics"]["recovered_terms"])
        window = (
            t.get("window", "cfg")
            if "schedule" not in t
            else f"{t.get('window', 'cfg')}, {t['schedule']} lr"
        )
        dt = ("median" if t["dt"] is None else t["dt"]) if "dt" in t else "cfg"
        worst = s.get("worst")
        lines.append(
            f"| {case.name} | {100 * case.noise:g}% of {case.relative_to} | {case.t_end:g}, "
            f"{case.n_points} | {window} | {'on' if t.get('multiple_shooting') else 'off'} | "
            f"{dt} | {selection} | {case.seed}, {case.data_seed} | {recovered} | "
            f"{'—' if worst is None or worst == float('inf') else f'{100 * worst:.2f}%'} | "
            f"{100 * case.tolerance:g}% | {'**yes**' if s['passed'] else '**NO**'} | "
            f"{result['wall']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.discovery_sweep", description=__doc__
    )
    parser.add_argument("--only", nargs="+", default=["issue", "lv", "pendulum", "sir"])
    parser.add_argument("--cases", nargs="+", default=None, help="case names, e.g. lv-03")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--out", default="runs/sweep", help="where configs, CSVs and runs go")
    args = parser.parse_args(argv)
    every = [ISSUE_CASE, *ISSUE_VARIANTS, *LV_CASES, *SHIPPED_CASES]
    cases = [c for c in every if c.group in args.only]
    if args.cases:
        cases = [c for c in cases if c.name in args.cases]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda c: run_case(c, out), cases))
    text = table(results)
    passed = sum(score(r)["passed"] for r in results)
    text += f"\n\n{passed} of {len(results)} cases passed.\n"
    (out / "sweep.md").write_text(text)
    print(text)
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
