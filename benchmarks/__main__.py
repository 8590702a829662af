"""Run one benchmark, or all of them in one report.

    python3 -m benchmarks NAME [options]     one benchmark with its own options (NAME --help lists them)
    python3 -m benchmarks [all] [--smoke]    every benchmark at its default sizes (--smoke: tiny sizes)
    python3 -m benchmarks --list             the benchmarks, one line each
"""
import ast
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from lib.utils.cli import ArgumentParser
from lib.utils.exit_codes import ExitCode

from .utils import cpu_name

# Benchmark name: its options in `all` (detect's default precisions, fp32 bf16 int8 on the CPU, need none).
BENCHMARKS = {
    "detect": [],
    "deploy": [],
    "quantize": [],
    "train": [],
    "distributed": [],
    "targets": [],
    "nms": [],
    "loader": [],
    "evaluation": [],
    "fddb": [],
    "anonymize": [],
    "memory": [],
    "pipeline": [],
}
ROOT = Path(__file__).resolve().parents[1]


def summary(name):
    """First line of a benchmark's docstring, read without importing it."""
    source = Path(__file__).with_name(f"{name}.py").read_text()
    return ast.get_docstring(ast.parse(source)).splitlines()[0]


def run_all(smoke):
    """Each benchmark in a fresh process, as it runs alone, then a table of outcomes; the exit code
    (SOME_FAILED when any benchmark failed)."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA GPU"
    print(f"benchmarks on {cpu_name()} ({os.cpu_count()} CPUs), {gpu}, torch {torch.__version__}"
          + (", smoke sizes" if smoke else ""))
    results = {}
    for name, options in BENCHMARKS.items():
        args = [name, *options] + (["--smoke"] if smoke else [])
        print(f"\n== {name}: {summary(name)}\n$ python3 -m benchmarks {' '.join(args)}", flush=True)
        start = time.perf_counter()
        code = subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT).returncode
        results[name] = (code, time.perf_counter() - start)
    print("\n== summary")
    for name, (code, seconds) in results.items():
        print(f"{name:<12} {'ok' if code == ExitCode.OK else f'FAILED (exit {code})':<16} {seconds:7.1f} s")
    return ExitCode.SOME_FAILED if any(code for code, _ in results.values()) else ExitCode.OK


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in BENCHMARKS:
        importlib.import_module(f".{argv[0]}", __package__).main(argv[1:])
        return ExitCode.OK
    parser = ArgumentParser(prog="python3 -m benchmarks", description=__doc__.splitlines()[0],
                            usage="%(prog)s [NAME [options] | all [--smoke] | --list]",
                            epilog="benchmarks: " + ", ".join(BENCHMARKS))
    parser.add_argument("name", nargs="?", choices=["all", *BENCHMARKS], default="all",
                        help="all (the default) or one benchmark, followed by its options")
    parser.add_argument("--smoke", action="store_true", help="run every benchmark at its tiny size")
    parser.add_argument("--list", action="store_true", help="name the benchmarks, one line each")
    args = parser.parse_args(argv)
    if args.name != "all":
        parser.error(f"options go after the benchmark's name: python3 -m benchmarks {args.name} [options]")
    if args.list:
        for name in BENCHMARKS:
            print(f"{name:<12} {summary(name)}")
        return ExitCode.OK
    return run_all(args.smoke)


if __name__ == "__main__":
    sys.exit(main())
