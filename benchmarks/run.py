"""Run the benchmark cases side by side: ``python -m benchmarks.run [--case B1 ...] [--repeats N]
[--quick] [--threads N]``. See ``benchmarks/README.md`` for what each case measures."""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time

import torch

from ._common import Options, print_case, run_case

#: case name → module (each has ``build(opts) -> Case``; ``MEM`` has ``main(opts)``)
CASES = {
    "B1": "benchmarks.b1_forward",
    "B2": "benchmarks.b2_backward",
    "B3": "benchmarks.b3_vanderpol",
    "B4": "benchmarks.b4_fixed_step",
    "B5": "benchmarks.b5_sde",
    "B6": "benchmarks.b6_cde",
    "B7": "benchmarks.b7_hybrid",
    "B8": "benchmarks.b8_cnf",
    "B9": "benchmarks.b9_odenet",
    "B10": "benchmarks.b10_recurrent",
    "MEM": "benchmarks.memory",
    "PINN": "benchmarks.pinn_deepxde",
    "STIFF": "benchmarks.stiff_bench",
    "COMPILED": "benchmarks.compiled_bench",
    "COMPACT": "benchmarks.compact_bench",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument(
        "--case",
        nargs="+",
        choices=sorted(CASES),
        default=list(CASES),
        help="cases to run (default: all)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed rounds per case (default: per case)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    parser.add_argument("--quick", action="store_true", help="smaller problems, 2 rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default=None,
        help="cpu: this thread's CPU time (default with one thread); wall: elapsed time",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.repeats is not None and args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    torch.set_num_threads(args.threads)
    clock = args.clock or ("cpu" if args.threads == 1 else "wall")
    if clock == "cpu" and args.threads != 1:
        raise SystemExit("--clock cpu measures one thread: use it with --threads 1")
    opts = Options(args.repeats, args.warmup, args.quick, args.threads, clock)
    import torchnde

    from ._libraries import torchdiffeq, torchode

    def version(mod):
        return "not installed" if mod is None else getattr(mod, "__version__", "?")

    print(
        f"torchnde {torchnde.__version__} | torch {torch.__version__} | torchdiffeq "
        f"{version(torchdiffeq)} | torchode {version(torchode)} | python "
        f"{platform.python_version()} | {platform.machine()}"
    )
    rounds = "each case's default number of" if opts.repeats is None else str(opts.repeats)
    clock_name = "thread CPU time" if opts.clock == "cpu" else "wall-clock time"
    print(
        f"threads: torch.set_num_threads({torch.get_num_threads()}); clock: {clock_name}; "
        f"warm-up runs: {opts.warmup}; times are medians of {rounds} rounds"
        f"{' (quick: smaller problems)' if opts.quick else ''}"
    )
    print(
        "columns: ratio = time / the faster of torchdiffeq and torchode; steps = attempted steps; "
        "nfe = vector-field calls on the batch (nfe bwd: during backward()); limit = time of "
        "the same field calls alone; overhead = time / limit"
    )
    start = time.perf_counter()
    for name in args.case:
        module = importlib.import_module(CASES[name])
        if name in ("MEM", "PINN", "STIFF", "COMPILED", "COMPACT"):  # their own tables
            module.main(opts)
            continue
        case = module.build(opts)
        rows = run_case(case, opts)
        print_case(case, rows)
        sys.stdout.flush()
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
