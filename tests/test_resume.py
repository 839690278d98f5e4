"""Resuming runs in process, with scripted models: a run interrupted at any point (or failed) and resumed stores
exactly what an uninterrupted run stores, for every strategy; what cannot be resumed is refused in words."""
from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from promptopt.api import optimize, resume
from promptopt.case import ToolCall
from promptopt.cli import main
from promptopt.models.base import CallRecord, Routed
from promptopt.optimizer.loop import RunFailed
from promptopt.runs.heartbeat import Heartbeat
from promptopt.runs.lifecycle import RunInterrupted
from promptopt.runs.resume import ResumeDiverged, ResumeError
from promptopt.runs.store import Store
from promptopt.runs.writer_lock import hold_writer
from tests.fakes import OPTIONS, RUNS, Interrupting, ScriptedModel, interrupted_run


class Failing(ScriptedModel):
    """An endpoint that is down: every routing call fails after its retries."""

    def route(self, system_prompt, tools, conversations, check_arguments=False):
        record = CallRecord("task", self.name, 0, 0, 0.0, error="APIConnectionError: down")
        return [Routed(ToolCall("none"), record, error=record.error) for _ in conversations]


def stored(db: str, run_id: str) -> dict:
    """Everything a run stored, but its id and timings: report, candidates, evaluations, calls, steps, pairs."""
    store = Store(db)
    report = {k: v for k, v in store.run(run_id).summary.items() if k != "run_id"}
    candidates = store.candidates(run_id)
    return {
        "report": report,
        "candidates": [(c.id, c.step, c.operator, c.status, c.rejection, c.prompt, c.parent_ids, c.details)
                       for c in candidates],
        "evaluations": {c.id: sorted((e.case_id, e.predicted_tool, e.passed, e.score, e.error)
                                     for e in store.evaluations(c.id).values()) for c in candidates},
        "calls": [tuple(row) for row in store.session().execute(text(
            "SELECT role, model, tokens_in, tokens_out, error, cache_hit FROM model_calls WHERE run_id = :r "
            "ORDER BY id"), {"r": run_id})],
        "steps": [(s.step, s.incumbent_id, s.val_accuracy, s.message, s.details) for s in store.steps(run_id)],
        "pairs": [(p.original, p.optimized, p.kept, p.rejection) for p in store.bpo_pairs(run_id, kept_only=False)],
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, task) -> dict:
    """Each strategy's uninterrupted run: what it stored, and how many model calls it made."""
    done = {}
    for strategy, options in RUNS.items():
        db = f"sqlite:///{tmp_path_factory.mktemp(strategy) / 'store.db'}"
        model = ScriptedModel(task)
        result = optimize(strategy=strategy, model=model, optimizer_model=model, db=db, **OPTIONS, **options)
        done[strategy] = stored(db, result.run_id)
    return done


@pytest.mark.parametrize("strategy", list(RUNS))
@pytest.mark.parametrize("share", [0.02, 0.4, 0.95])
def test_a_run_interrupted_anywhere_resumes_to_what_an_uninterrupted_run_stores(tmp_path, task, uninterrupted,
                                                                               strategy, share):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    reference = uninterrupted[strategy]
    run_id = interrupted_run(db, task, strategy, max(1, int(share * len(reference["calls"]))))
    assert Store(db).run(run_id).status == "interrupted"
    model = ScriptedModel(task)
    result = resume(run_id, db, model=model, optimizer_model=model)
    assert result.run_id == run_id and result.report["status"] == "finished"
    assert stored(db, run_id) == reference


def test_a_run_resumed_again_and_again_still_ends_the_same(tmp_path, task, uninterrupted):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    reference = uninterrupted["opro"]
    run_id = interrupted_run(db, task, "opro", 5)
    for stop_at in (40, 90, 150):
        model = Interrupting(task, stop_at)
        with pytest.raises(RunInterrupted):
            resume(run_id, db, model=model, optimizer_model=model)
    model = ScriptedModel(task)
    resume(run_id, db, model=model, optimizer_model=model)
    assert stored(db, run_id) == reference


def test_a_failed_run_resumes_once_the_endpoint_answers(tmp_path, task, uninterrupted):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with pytest.raises(RunFailed):
        optimize(strategy="demos", model=Failing(task), db=db, **OPTIONS, **RUNS["demos"])
    (run,) = Store(db).runs()
    assert run.status == "failed"
    resume(run.id, db, model=ScriptedModel(task))
    assert stored(db, run.id) == uninterrupted["demos"]


def test_a_replay_that_takes_another_path_is_refused_in_words(tmp_path, task, uninterrupted):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    run_id = interrupted_run(db, task, "opro", int(0.9 * len(uninterrupted["opro"]["calls"])))
    other = ScriptedModel(task)
    other.seed_prompt += "\nSomething else."
    with pytest.raises(ResumeDiverged, match="took another path"):
        resume(run_id, db, model=ScriptedModel(task), optimizer_model=other)
    assert Store(db).run(run_id).status == "failed"


def test_what_cannot_be_resumed_is_refused(tmp_path, task):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    model = ScriptedModel(task)
    finished = optimize(model=model, db=db, **OPTIONS, **RUNS["demos"]).run_id
    with pytest.raises(ResumeError, match="is finished"):
        resume(finished, db, model=model)
    run_id = interrupted_run(db, task, "demos", 30)
    store = Store(db)
    with pytest.raises(ResumeError, match="was made with the model 'scripted', not 'other'"):
        other = ScriptedModel(task)
        other.name = "other"
        resume(run_id, db, model=other)
    store.update_run(run_id, config={**store.run(run_id).config, "evaluator": "judge"})
    with pytest.raises(ResumeError, match="evaluator 'judge' cannot be rebuilt"):
        resume(run_id, db, model=model)
    store.update_run(run_id, status="running")
    with hold_writer(store, run_id):
        with pytest.raises(ResumeError, match=f"is being written by pid {os.getpid()} on "):
            resume(run_id, db, model=model)
    store.update_run(run_id, writer="")  # as stored before writer locks: the heartbeat decides
    with Heartbeat(store, run_id):
        with pytest.raises(ResumeError, match="still running"):
            resume(run_id, db, model=model)


def test_resume_refuses_flags_that_would_change_the_search(tmp_path):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    result = CliRunner().invoke(main, ["run", "--resume", "abc", "--steps", "2", "--n-demos", "3", "--db", db])
    assert result.exit_code == 2
    assert "cannot be given with it: --steps, --n-demos" in result.output
    missing = CliRunner().invoke(main, ["run", "--resume", "abc", "--concurrency", "2", "--db", db])
    assert missing.exit_code == 1 and "no run 'abc'" in missing.output
