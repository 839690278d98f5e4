"""Stopping a run, with real `promptopt run` processes against a scripted endpoint: Ctrl-C and SIGTERM against a
hanging endpoint stop it within seconds and leave the run `interrupted`; a run killed with SIGKILL is shown as
interrupted once its heartbeat is stale, and `--resume` ends it exactly as an uninterrupted run ends."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptopt.cli import main
from promptopt.runs.heartbeat import shown_status
from promptopt.runs.store import Store
from promptopt.server import ChatServer
from tests.fakes import ExamplesRouter
from tests.scripted_runs import (
    Stalling,
    differences,
    integrity_ok,
    interrupted_at_first_call,
    resume_command,
    run_command,
    scripted_task,
    snapshot,
    start,
    wait_until,
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_run_against_a_hanging_endpoint_within_seconds(tmp_path, signum):
    case_file, expected = scripted_task(tmp_path)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    responder = Stalling(expected)
    with ChatServer(responder) as server:
        process, err, elapsed = interrupted_at_first_call(run_command(db, case_file, server.base_url), responder, signum)
    assert elapsed < 5, f"took {elapsed:.1f} s to stop"
    assert process.returncode == 128 + signum, err
    (run,) = Store(db).runs()
    assert run.status == "interrupted" and run.finished_at is not None
    assert f"promptopt run --resume {run.id}" in err


RUN_FLAGS = ("--steps", "3", "--concurrency", "4", "--json")
REPLAY_DIFFERS = ("run_id",)
"""All a resumed run's result line may differ in: calls its killed process made, cached and never stored count as
the calls they were (spent, not cache hits), so calls, cache hits and dollars equal the uninterrupted run's."""


@pytest.fixture
def endpoint(tmp_path):
    """A scripted endpoint slowed enough that a run takes seconds, and a case file it knows."""
    case_file, expected = scripted_task(tmp_path, every=4)
    with ChatServer(ExamplesRouter(expected), latency_s=0.03) as server:
        yield case_file, server


def priced(folder: Path) -> dict[str, str]:
    """An environment whose config file gives the scripted model a list price, so dollars are counted."""
    config = folder / "prices.json"
    config.write_text('{"prices": {"scripted": {"input": 2.5, "output": 10.0}}}', encoding="utf-8")
    return {"PROMPTOPT_CONFIG": str(config)}


def finish(command: list[str], cache: Path) -> dict:
    """Run `command` to its end with its own response cache; its JSON result line."""
    process = start(command, {"PROMPTOPT_CACHE_DIR": str(cache), **priced(cache.parent)})
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_a_killed_run_is_shown_interrupted_and_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, endpoint):
    case_file, server = endpoint
    url = server.base_url
    monkeypatch.setenv("PROMPTOPT_HEARTBEAT_S", "0.2")
    reference_db, db = (f"sqlite:///{tmp_path / name}" for name in ("reference.db", "killed.db"))
    reference = finish(run_command(reference_db, case_file, url, *RUN_FLAGS), tmp_path / "reference-cache")
    store = Store(db)
    process = start(run_command(db, case_file, url, *RUN_FLAGS),
                    {"PROMPTOPT_CACHE_DIR": str(tmp_path / "cache"), **priced(tmp_path)})
    cached = lambda: sum(1 for _ in (tmp_path / "cache").rglob("*.json"))  # noqa: E731
    try:
        run_id = wait_until(lambda: next((r.id for r in store.runs() if any(s.step >= 1 for s in store.steps(r.id))),
                                         None), 60, "the run's first step")
        # killed while calls it made (and cached) are not stored yet: the resume must count them as spent
        wait_until(lambda: cached() > store.call_totals(run_id)["model_calls"], 60, "calls cached but not stored",
                   every_s=0.001)
    finally:
        process.kill()
        process.communicate()
    assert store.run(run_id).status == "running" and cached() > store.call_totals(run_id)["model_calls"]
    wait_until(lambda: shown_status(store.run(run_id)) == "interrupted", 10, "the heartbeat to go stale")
    assert integrity_ok(db)
    expected = snapshot(reference_db, reference["run_id"])
    assert differences(snapshot(db, run_id), expected, finished=False) == (0, 0)

    runner = CliRunner()
    shown = runner.invoke(main, ["runs", "show", run_id, "--db", db])
    assert "(interrupted)" in shown.output and f"resume with: promptopt run --resume {run_id}" in shown.output
    refused = runner.invoke(main, ["export", run_id, "--db", db])
    assert refused.exit_code == 1 and "is interrupted, not finished" in refused.output
    incumbent = runner.invoke(main, ["export", run_id, "--incumbent", "--db", db])
    assert incumbent.exit_code == 0 and incumbent.output == store.candidate(store.steps(run_id)[-1].incumbent_id).prompt

    stored_calls = len(snapshot(db, run_id)["calls"])
    requests_before = server.requests
    resumed = finish(resume_command(db, run_id, "--json"), tmp_path / "cache")
    # the cache answers every call the killed run stored (and any it made after): none is asked again
    assert resumed["run_id"] == run_id and server.requests - requests_before <= reference["model_calls"] - stored_calls
    assert {k: v for k, v in resumed.items() if k not in REPLAY_DIFFERS} == \
        {k: v for k, v in reference.items() if k not in REPLAY_DIFFERS}
    got = snapshot(db, run_id)
    assert got == expected and differences(got, expected) == (0, 0)
    assert integrity_ok(db)
    exported = runner.invoke(main, ["export", run_id, "--db", db])
    assert exported.exit_code == 0 and exported.output == store.candidate(store.run(run_id).winner_candidate_id).prompt


def test_a_run_resumes_against_its_endpoint_moved_with_base_url(tmp_path):
    case_file, expected = scripted_task(tmp_path)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    responder = Stalling(expected)
    with ChatServer(responder) as old:
        interrupted_at_first_call(run_command(db, case_file, old.base_url), responder)
    (run,) = Store(db).runs()
    with ChatServer(ExamplesRouter(expected)) as moved:
        resumed = finish(resume_command(db, run.id, "--json", "--base-url", moved.base_url), tmp_path / "cache")
    assert resumed["run_id"] == run.id
    finished = Store(db).run(run.id)
    assert finished.status == "finished" and finished.config["base_url"] == old.base_url
