"""Kill soak: `promptopt run` against a scripted local endpoint, killed with SIGKILL at random points of its search
and resumed with `--resume` (resumed runs are killed too), until `--kills` kills. Every run, once finished, must
have stored exactly what an uninterrupted run of the same config stores (candidates, evaluations, model calls,
steps, report with its calls, cache hits and dollars at a list price given to the scripted model); after every kill the store must pass SQLite's integrity check, the run must show as interrupted
once its heartbeat is stale, and `export` must refuse it. Prints each kill and run, the figures, and one JSON line
`{"kills", "resumed_ok", "lost", "duplicated"}`. Needs the test extras (`pip install -e '.[test]'`).

    python benchmarks/kill_soak.py [--kills 50] [--seed 0] [--latency-ms 10]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.soak import Soak  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=10.0, help="The scripted endpoint's delay per call.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="promptopt-soak-") as folder:
        soak = Soak(Path(folder), args.kills, args.seed, args.latency_ms / 1000, log=print)
        result = soak.run()
    points = result.kill_points or [0.0]
    print(f"\n{result.kills} kills over {result.runs} finished runs in {result.seconds:.0f} s; kill points "
          f"{min(points):.2f} to {max(points):.2f} s into the search (median {statistics.median(points):.2f} s, "
          f"the uninterrupted search took {soak.window:.2f} s)")
    print(f"kills resumed to the uninterrupted result: {result.resumed_ok}; rows lost {result.lost}, "
          f"duplicated {result.duplicated}")
    for problem in result.problems:
        print(f"problem: {problem}")
    print(json.dumps(result.to_json()))


if __name__ == "__main__":
    main()
