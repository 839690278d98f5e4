"""Export a run's winning system prompt, exactly as it should be deployed; or, asked explicitly, the incumbent of a
run that did not finish."""
from __future__ import annotations

import json

from promptopt.markup import strip_markers
from promptopt.runs.report import RunNotFound, run_provenance, run_report
from promptopt.runs.store import Store
from promptopt.runs.tables import RunRow
from promptopt.runs.writer_lock import run_status

FORMATS = ("md", "txt", "json")


class RunNotFinished(ValueError):
    """The run did not finish, so it has no winner to export; the message says how to resume it or take its
    incumbent."""


def export_prompt(store: Store, run_id: str, fmt: str = "md", incumbent: bool = False) -> str:
    """`md`: the prompt as is (protection markers kept, so it can be optimized again); `txt`: without the
    markers; `json`: the prompt with its run, lineage and scores. A run that did not finish is refused
    (`RunNotFinished`) unless `incumbent` asks for its best prompt so far."""
    run = store.run(run_id)
    if run is None:
        raise RunNotFound(run_id)
    status = run_status(store, run)
    if status != "finished" and not incumbent:
        raise RunNotFinished(f"run {run_id} is {status}, not finished, so it has no winner: resume it with "
                             f"`promptopt run --resume {run_id}`, or export its incumbent with --incumbent")
    candidate_id = run.winner_candidate_id if status == "finished" else _incumbent_id(store, run)
    if candidate_id is None:
        raise RunNotFinished(f"run {run_id} stopped before its seed prompt was stored; there is nothing to export")
    candidate = store.candidate(candidate_id)
    if fmt == "md":
        return candidate.prompt
    if fmt == "txt":
        return strip_markers(candidate.prompt)
    if fmt == "json":
        report = run.summary or run_report(store, run_id)
        return json.dumps({
            "run_id": run_id, "task": run.task, "strategy": run.strategy, "candidate_id": candidate.id,
            "operator": candidate.operator, "parent_ids": candidate.parent_ids, "rationale": candidate.rationale,
            "system_prompt": candidate.prompt, "seed": report.get("seed"), "winner": report.get("winner"),
            "p_value": report.get("p_value"), "status": status, "provenance": run_provenance(run),
        }, ensure_ascii=False, indent=2) + "\n"
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _incumbent_id(store: Store, run: RunRow) -> int | None:
    """The candidate an unfinished run would have gone on from: the last step's incumbent, else its seed."""
    steps = store.steps(run.id)
    return steps[-1].incumbent_id if steps else run.seed_candidate_id
