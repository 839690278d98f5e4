"""Export a run's winning system prompt, exactly as it should be deployed."""
from __future__ import annotations

import json

from promptopt.optimizer.candidates import strip_markers
from promptopt.runs.report import RunNotFound, run_report
from promptopt.runs.store import Store

FORMATS = ("md", "txt", "json")


def export_prompt(store: Store, run_id: str, fmt: str = "md") -> str:
    """`md`: the prompt as is (protection markers kept, so it can be optimized again); `txt`: without the
    markers; `json`: the prompt with its run, lineage and scores."""
    run = store.run(run_id)
    if run is None:
        raise RunNotFound(run_id)
    if run.winner_candidate_id is None:
        raise ValueError(f"run {run_id} has no winner yet (status {run.status})")
    candidate = store.candidate(run.winner_candidate_id)
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
            "p_value": report.get("p_value"),
        }, ensure_ascii=False, indent=2) + "\n"
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
