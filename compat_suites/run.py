"""Run torchdiffeq's, torchsde's or torchcde's own test suite (or an example script) against
torchnde's facade, or against the installed library itself for the baseline.

The peers' tests are not part of torchnde and nothing is fetched here: give a checkout of the
peer's repository (``--src``), or a folder holding checkouts named ``torchdiffeq``, ``torchsde``
and ``torchcde`` (``--src-root``). The tests are copied to a temporary folder (adjusted only as
``PEERS[...].adjust`` says, each adjustment printed) and run by pytest in a subprocess whose
``sys.path`` starts with ``compat_suites/shims``, where ``import torchdiffeq`` gives
``torchnde.compat.torchdiffeq`` (``--library`` leaves the shims out, so the installed library
runs). Counts are per subtest, or per test where a test has none (``plugin/compat_count.py``)::

    python compat_suites/run.py --peer torchdiffeq --src ~/src/torchdiffeq
    python compat_suites/run.py --peer all --src-root ~/src --failures
    python compat_suites/run.py --peer torchcde --src ~/src/torchcde --library
    python compat_suites/run.py --peer torchdiffeq --src ~/src/torchdiffeq -- -k gradient -x
    python compat_suites/run.py --peer torchdiffeq --src ~/src/torchdiffeq \\
        --example ode_demo --compare -- --niters 200

``--example NAME`` runs ``examples/NAME.py`` (``example/`` for torchcde) with the arguments after
``--`` under ``--seed`` (Python's, NumPy's and torch's generators); ``--compare`` runs it through the library and then the
facade and prints both outputs' last lines.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHIMS = HERE / "shims"
PLUGIN = HERE / "plugin"


@dataclass(frozen=True)
class Peer:
    """How one peer's suite is laid out and run.

    Attributes:
        tests: the tests folder in the peer's checkout.
        copy: other folders the tests need (copied beside ``tests``).
        pytest_args: arguments that select the peer's test files.
        adjust: ``(file, old, new, why)`` text replacements made in the copied tests.
        examples: the folder of example scripts.
    """

    tests: str
    copy: tuple[str, ...] = ()
    pytest_args: tuple[str, ...] = ()
    adjust: tuple[tuple[str, str, str, str], ...] = field(default=())
    examples: str = "examples"


PEERS: dict[str, Peer] = {
    "torchdiffeq": Peer(
        tests="tests",
        pytest_args=("-o", "python_files=*_tests.py", "--ignore=tests/run_all.py"),
        adjust=(
            (
                "tests/problems.py",
                "'rk4', 'explicit_adams', 'implicit_adams')",
                "'rk4')",
                "the Adams methods are left out of FIXED_METHODS (torchnde has no multistep "
                "methods; issue 12)",
            ),
        ),
    ),
    "torchsde": Peer(tests="tests"),
    "torchcde": Peer(tests="test", copy=("example",), examples="example"),
}


def _source(args: argparse.Namespace, name: str) -> Path:
    src = Path(args.src) if args.src else Path(args.src_root) / name
    src = src.expanduser().resolve()
    if not (src / PEERS[name].tests).is_dir():
        raise SystemExit(
            f"{src} has no {PEERS[name].tests}/ folder: --src must be a checkout of {name}'s "
            f"repository (or --src-root a folder holding one named {name!r})"
        )
    return src


def _prepare(name: str, src: Path, work: Path) -> None:
    peer = PEERS[name]
    for folder in (peer.tests, *peer.copy):
        if (src / folder).is_dir():
            shutil.copytree(src / folder, work / folder)
    for file, old, new, why in peer.adjust:
        path = work / file
        text = path.read_text()
        if old not in text:
            raise SystemExit(f"cannot adjust {file}: {old!r} not found (another version?)")
        path.write_text(text.replace(old, new))
        print(f"  [{name}] adjusted {file}: {why}")


def _env(facade: bool, count_json: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    paths = ([str(SHIMS)] if facade else []) + [str(PLUGIN)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    if count_json is not None:
        env["COMPAT_COUNT_JSON"] = str(count_json)
    return env


def _which(name: str, env: dict[str, str]) -> str:
    code = f"import {name}; print({name}.__name__, {name}.__file__)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return (out.stdout or out.stderr).strip().splitlines()[-1]


def run_suite(name: str, src: Path, facade: bool, extra: list[str], show: bool) -> dict:
    """Run one peer's suite; returns the plugin's counts."""
    with tempfile.TemporaryDirectory(prefix=f"compat-{name}-") as tmp:
        work = Path(tmp)
        _prepare(name, src, work)
        count_json = work / "counts.json"
        env = _env(facade, count_json)
        print(f"  [{name}] testing {_which(name, env)}")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "compat_count", "-p", "no:cacheprovider"]
        cmd += [
            "--rootdir",
            str(work),
            "--continue-on-collection-errors",
            *PEERS[name].pytest_args,
            *extra,
        ]
        if not any(not a.startswith("-") and (work / a).exists() for a in extra):
            cmd.append(PEERS[name].tests)
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=not show, text=True)
        if not count_json.exists():
            sys.stdout.write((proc.stdout or "")[-5000:] + (proc.stderr or "")[-3000:])
            raise SystemExit(f"{name}: pytest ended (rc={proc.returncode}) before counting")
        return json.loads(count_json.read_text())


def _summary(name: str, mode: str, counts: dict, failures: bool) -> None:
    passed, failed, skipped = counts["passed"], counts["failed"], counts["skipped"]
    total = passed + failed
    share = f"{100 * passed / total:.1f}%" if total else "n/a"
    print(f"{name} ({mode}): {passed} passed, {failed} failed, {skipped} skipped — {share} pass")
    if failures and counts["failures"]:
        groups: dict[str, list[str]] = collections.defaultdict(list)
        for f in counts["failures"]:
            key = re.sub(r"0x[0-9a-f]+|\d+\.\d+(e[-+]?\d+)?", "#", f["message"])[:160]
            groups[key].append(f"{f['test'].split('::', 1)[-1]} {f['subtest']}".strip())
        for key, tests in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            print(f"  {len(tests):4d} × {key}")
            for test in tests[:3]:
                print(f"         e.g. {test}")


def run_example(name: str, src: Path, example: str, facade: bool, seed: int, extra: list[str]):
    """Run one example script under a fixed seed; returns its output."""
    folder = src / PEERS[name].examples
    script = folder / f"{example}.py"
    if not script.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.py")))
        raise SystemExit(f"no example {example!r} in {folder}; there are: {known}")
    code = (
        "import random, runpy, sys, numpy, torch; seed = int(sys.argv[1]); "
        "random.seed(seed); numpy.random.seed(seed); torch.manual_seed(seed); "
        "sys.argv = sys.argv[2:]; sys.path.insert(0, __import__('os').path.dirname(sys.argv[0])); "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    with tempfile.TemporaryDirectory(prefix=f"compat-{name}-example-") as tmp:
        shutil.copytree(folder, Path(tmp) / "examples")
        path = Path(tmp) / "examples" / script.name
        cmd = [sys.executable, "-c", code, str(seed), str(path), *extra]
        proc = subprocess.run(cmd, cwd=tmp, env=_env(facade), capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", choices=[*PEERS, "all"], required=True)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--src", help="a checkout of the peer's repository")
    where.add_argument("--src-root", help="a folder holding checkouts named like the peers")
    parser.add_argument("--library", action="store_true", help="test the installed library")
    parser.add_argument("--failures", action="store_true", help="list failures by message")
    parser.add_argument("--show", action="store_true", help="show pytest's own output")
    parser.add_argument("--example", help="run this example script instead of the tests")
    parser.add_argument("--compare", action="store_true", help="example: library, then facade")
    parser.add_argument("--seed", type=int, default=0, help="example: random/numpy/torch seed")
    parser.add_argument("--lines", type=int, default=8, help="example: output lines shown")
    args = parser.parse_args(argv)
    names = list(PEERS) if args.peer == "all" else [args.peer]
    if args.src and len(names) > 1:
        parser.error("--peer all needs --src-root (a folder holding one checkout per peer)")
    status = 0
    for name in names:
        src = _source(args, name)
        if args.example:
            modes = [False, True] if args.compare else [not args.library]
            for facade in modes:
                rc, out = run_example(name, src, args.example, facade, args.seed, extra)
                label = "facade" if facade else "library"
                print(f"--- {name} {args.example} ({label}, seed {args.seed}): exit {rc}")
                print("\n".join(out.rstrip().splitlines()[-args.lines :]))
                status |= rc != 0
            continue
        mode = "library" if args.library else "facade"
        counts = run_suite(name, src, not args.library, extra, args.show)
        _summary(name, mode, counts, args.failures)
        status |= counts["failed"] > 0
    return status


if __name__ == "__main__":
    sys.exit(main())
