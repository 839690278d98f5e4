"""Runs side by side on the test cases they share: each winner's accuracy there with its 95% interval, the paired
exact McNemar test of each winner against the first run's, and what each run cost (calls, dollars, wall time)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from promptopt.runs.formats import dollars, duration, interval, p_value, percent
from promptopt.runs.heartbeat import wall_seconds
from promptopt.runs.report import RunNotFound, run_report
from promptopt.runs.store import Store
from promptopt.runs.writer_lock import run_status
from promptopt.statistics import mcnemar_exact, wilson_interval

COLUMNS = ("run", "strategy", "model", "winner accuracy", "95% CI", "vs first: +/-", "paired p", "calls", "cost",
           "wall time")
"""The comparison table's columns, as the text table and the HTML page show them."""
NUMERIC_COLUMNS = (3, 4, 5, 6, 7, 8, 9)


class NothingToCompare(ValueError):
    """The runs cannot be compared: fewer than two, one not finished, or no test case they all share."""


@dataclass(frozen=True)
class ComparedRun:
    """One run's winner on the common test cases, against the first run's winner (`better`: cases it gets right
    and the first run's winner wrong; `worse`: the other way round; `p_value`: None for the first run), and what
    the whole run cost."""

    run_id: str
    strategy: str
    model: str
    passed: int
    accuracy: float
    ci95: tuple[float, float]
    better: int
    worse: int
    p_value: float | None
    own_test_cases: int
    own_test_accuracy: float | None
    model_calls: int
    cost_usd: float
    wall_seconds: float


@dataclass(frozen=True)
class Comparison:
    """The runs, in the order given, on `common_case_ids` (the test cases every run's winner was scored on)."""

    common_case_ids: list[int]
    runs: list[ComparedRun]

    def rows(self) -> list[list[str]]:
        """The table under `COLUMNS`, one row of text per run (the first run has no paired p against itself)."""
        total = len(self.common_case_ids)
        return [[run.run_id, run.strategy, run.model, f"{percent(run.accuracy)} ({run.passed}/{total})",
                 interval(run.ci95), "–" if index == 0 else f"+{run.better}/-{run.worse}",
                 "–" if run.p_value is None else p_value(run.p_value), str(run.model_calls), dollars(run.cost_usd),
                 duration(run.wall_seconds)] for index, run in enumerate(self.runs)]

    def to_json(self) -> dict[str, Any]:
        return {"common_test_cases": len(self.common_case_ids), "common_case_ids": self.common_case_ids,
                "runs": [{**asdict(run), "ci95": list(run.ci95)} for run in self.runs]}


def compare_runs(store: Store, run_ids: Sequence[str]) -> Comparison:
    """Compare finished runs' winners on their common test cases (raises `RunNotFound`, `NothingToCompare`)."""
    if len(run_ids) < 2:
        raise NothingToCompare("give at least two runs to compare")
    repeated = sorted({run_id for run_id in run_ids if list(run_ids).count(run_id) > 1})
    if repeated:
        raise NothingToCompare(f"run {repeated[0]} is given more than once")
    passed_by_run: list[dict[int, bool]] = []
    for run_id in run_ids:
        run = store.run(run_id)
        if run is None:
            raise RunNotFound(run_id)
        status = run_status(store, run)
        if status != "finished":
            raise NothingToCompare(f"run {run_id} is {status}: only a finished run has a winner scored on its test "
                                   "split")
        test_ids = {cid for cid, split in store.run_splits(run_id).items() if split == "test"}
        winner = store.evaluations(run.winner_candidate_id)
        passed_by_run.append({cid: row.passed for cid, row in winner.items() if cid in test_ids})
    common = sorted(set.intersection(*(set(passed) for passed in passed_by_run)))
    if not common:
        raise NothingToCompare(f"runs {', '.join(run_ids)} share no test case: compare runs made on the same cases "
                               "(the same case files and --seed give the same test split)")
    first = passed_by_run[0]
    return Comparison(common, [_compared(store, run_id, passed, first, common, index == 0)
                               for index, (run_id, passed) in enumerate(zip(run_ids, passed_by_run))])


def _compared(store: Store, run_id: str, passed: dict[int, bool], first: dict[int, bool], common: list[int],
              is_first: bool) -> ComparedRun:
    """One run's row: its winner on the common cases against the first run's, and the run's own totals."""
    report = run_report(store, run_id)
    run = store.run(run_id)
    right = sum(passed[cid] for cid in common)
    better = sum(passed[cid] and not first[cid] for cid in common)
    worse = sum(first[cid] and not passed[cid] for cid in common)
    return ComparedRun(
        run_id=run_id, strategy=report["strategy"], model=str((run.config or {}).get("model", "")),
        passed=right, accuracy=right / len(common), ci95=wilson_interval(right, len(common)), better=better,
        worse=worse, p_value=None if is_first else mcnemar_exact(better, worse),
        own_test_cases=report["test_cases"], own_test_accuracy=report["winner"]["test_accuracy"],
        model_calls=report["model_calls"], cost_usd=report["cost_usd"], wall_seconds=wall_seconds(run, report["status"]))
