"""How long the command line takes to start: `promptopt --help`, `promptopt run --help` and `promptopt runs list`
on an empty store, each the median of `--repeat` fresh processes. Lazy imports keep torch, transformers and
scipy.stats out of these paths; on busy cores every figure grows. Ends with one JSON line
`{"help_s", "run_help_s", "runs_list_s"}`.

    python benchmarks/cli_startup.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def seconds(command: list[str], repeat: int) -> float:
    """The median wall time of `repeat` runs of `command`."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "promptopt.cli"]
    with tempfile.TemporaryDirectory() as folder:
        db = f"sqlite:///{Path(folder) / 'store.db'}"
        figures = {"help_s": seconds([*cli, "--help"], args.repeat),
                   "run_help_s": seconds([*cli, "run", "--help"], args.repeat),
                   "runs_list_s": seconds([*cli, "runs", "list", "--db", db], args.repeat)}
    for name, value in figures.items():
        print(f"{name:12} {value:.2f} s (median of {args.repeat})")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
