"""Runs that did not finish, in process with scripted models: a run writes a heartbeat while alive, one whose
heartbeat went stale is shown as interrupted, `runs show` says what an unfinished run has and how to resume it
(never a seed-vs-winner verdict), `export` refuses it unless asked for its incumbent, and stores written before
heartbeats gain the new columns."""
from __future__ import annotations

import time

from click.testing import CliRunner
from sqlalchemy import inspect, text

from promptopt.api import optimize
from promptopt.cli import main
from promptopt.runs.heartbeat import Heartbeat, shown_status
from promptopt.runs.store import Store
from promptopt.runs.writer_lock import run_status
from tests.fakes import OPTIONS, RUNS, ScriptedModel, interrupted_run

DEMOS_CALLS = 933
"""Model calls of the uninterrupted demos run (`tests/golden/reproduction.json`); its first step ends at 426, its
second at 683."""


def test_ctrl_c_stores_the_run_as_interrupted(tmp_path, task):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    run = Store(db).run(interrupted_run(db, task, "demos", 100))
    assert run.status == "interrupted" and run.finished_at is not None and "interrupted" in run.error


def test_a_stale_heartbeat_shows_a_running_run_as_interrupted(store, monkeypatch):
    monkeypatch.setenv("PROMPTOPT_HEARTBEAT_S", "0.1")
    run_id = store.create_run("tool-routing", "demos", {}, [], {})
    with Heartbeat(store, run_id):
        time.sleep(0.5)
        assert shown_status(store.run(run_id)) == "running"
    time.sleep(0.5)
    assert store.run(run_id).status == "running" and shown_status(store.run(run_id)) == "interrupted"


def test_an_interrupted_run_is_shown_and_exported_as_unfinished(tmp_path, task):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    run_id = interrupted_run(db, task, "demos", int(0.6 * DEMOS_CALLS))
    runner = CliRunner()
    listed = runner.invoke(main, ["runs", "list", "--db", db])
    assert run_id in listed.output and "interrupted" in listed.output
    shown = runner.invoke(main, ["runs", "show", run_id, "--db", db])
    assert shown.exit_code == 0, shown.output
    assert "1 of 2 step(s) done; incumbent candidate 3, validation 38.4%" in shown.output
    assert f"resume with: promptopt run --resume {run_id}" in shown.output
    assert "McNemar" not in shown.output and "stays the winner" not in shown.output
    refused = runner.invoke(main, ["export", run_id, "--db", db])
    assert refused.exit_code == 1 and refused.output.count("\n") == 1
    assert "interrupted, not finished" in refused.output and f"--resume {run_id}" in refused.output
    exported = runner.invoke(main, ["export", run_id, "--incumbent", "--db", db])
    assert exported.exit_code == 0 and exported.output == Store(db).candidate(3).prompt


def test_an_older_store_gains_the_columns_later_versions_added(store_url, task):
    with Store(store_url).engine.begin() as connection:
        connection.execute(text("ALTER TABLE runs DROP COLUMN heartbeat_at"))
        connection.execute(text("ALTER TABLE runs DROP COLUMN writer"))
        connection.execute(text("ALTER TABLE runs DROP COLUMN promptopt_version"))
        connection.execute(text("ALTER TABLE runs DROP COLUMN mlflow_run_id"))
        connection.execute(text("ALTER TABLE run_cases DROP COLUMN position"))
        connection.execute(text("INSERT INTO runs (id, task, strategy, status, config, tools, summary, error, "
                                "created_at) VALUES ('old', 'tool-routing', 'demos', 'running', '{}', '[]', '{}', "
                                "'', CURRENT_TIMESTAMP)"))
    upgraded = Store(store_url)
    assert "heartbeat_at" in {c["name"] for c in inspect(upgraded.engine).get_columns("runs")}
    assert "position" in {c["name"] for c in inspect(upgraded.engine).get_columns("run_cases")}
    assert upgraded.run("old").heartbeat_at is None and shown_status(upgraded.run("old")) == "interrupted"
    assert upgraded.run("old").writer == "" and run_status(upgraded, upgraded.run("old")) == "interrupted"
    assert upgraded.run("old").mlflow_run_id == ""
    result = optimize(model=ScriptedModel(task), db=store_url, **OPTIONS, **RUNS["demos"])
    assert upgraded.run(result.run_id).heartbeat_at is not None
