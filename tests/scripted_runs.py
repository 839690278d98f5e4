"""Real `python -m promptopt.cli run` processes against a scripted local endpoint (`ChatServer` with
`ExamplesRouter`): what the interruption, resume and kill-soak tests and `benchmarks/kill_soak.py` share."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from sqlalchemy import select

from promptopt.runs.case_import import read_cases
from promptopt.runs.store import Store
from promptopt.runs.tables import ModelCallRow
from promptopt.tasks import bundled_task
from tests.fakes import ExamplesRouter
from tests.support import ROOT, interruptible, write_jsonl

T = TypeVar("T")


def scripted_task(folder: Path, every: int = 2) -> tuple[Path, dict[str, str]]:
    """A case file of every `every`-th bundled single-turn case, and the scripted endpoint's answers (query -> tool)."""
    task = bundled_task("tool-routing")
    cases = [c for path in task.case_files for c in read_cases(path, task.tools) if not c.context][::every]
    records = [{"query": c.query, "expected": c.expected.to_json(), "label": c.label} for c in cases]
    return write_jsonl(folder / "cases.jsonl", records), {c.query: c.expected.name for c in cases}


class Stalling(ExamplesRouter):
    """A hanging endpoint: every request waits until `release` is set (or two minutes pass)."""

    def __init__(self, expected: dict[str, str]) -> None:
        super().__init__(expected)
        self.arrived = threading.Event()
        self.release = threading.Event()

    def respond(self, request: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
        self.arrived.set()
        self.release.wait(120)
        return super().respond(request)


def run_command(db: str, case_file: Path, base_url: str, *extra: str) -> list[str]:
    """`promptopt run` on `case_file` with the scripted model at `base_url`."""
    return [sys.executable, "-m", "promptopt.cli", "run", "--cases", str(case_file), "--model", "scripted",
            "--base-url", base_url, "--db", db, "--quiet", *extra]


def resume_command(db: str, run_id: str, *extra: str) -> list[str]:
    """`promptopt run --resume RUN_ID`."""
    return [sys.executable, "-m", "promptopt.cli", "run", "--resume", run_id, "--db", db, "--quiet", *extra]


def start(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `command` in the repository, with this process's environment plus `env`."""
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, preexec_fn=interruptible)


def interrupted_at_first_call(command: list[str], responder: Stalling, signum: int = signal.SIGINT
                              ) -> tuple[subprocess.Popen, str, float]:
    """Start `command` against `responder`'s endpoint, send it `signum` once its first model call has arrived, and
    wait for it to stop: the process, its stderr and the seconds it took to stop after the signal."""
    process = start(command)
    try:
        assert responder.arrived.wait(60), process.stderr.read() if process.poll() is not None else ""
        sent = time.monotonic()
        process.send_signal(signum)
        _, err = process.communicate(timeout=30)
        return process, err, time.monotonic() - sent
    finally:
        responder.release.set()
        process.kill()


def wait_until(check: Callable[[], T], timeout_s: float, what: str, every_s: float = 0.05) -> T:
    """The first true value `check` returns, polling; `AssertionError` naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def integrity_ok(db: str) -> bool:
    """SQLite's own check of the store file."""
    with sqlite3.connect(db.removeprefix("sqlite:///")) as connection:
        return connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def snapshot(db: str, run_id: str) -> dict[str, Any]:
    """What a run stored, comparable across stores and runs: candidate ids become their positions in the run, and
    the report leaves out the run id (a resumed run must equal an uninterrupted one in everything else, calls,
    cache hits and dollars included)."""
    store = Store(db)
    candidates = store.candidates(run_id)
    position = {c.id: index for index, c in enumerate(candidates)}
    with store.session() as session:
        calls = list(session.execute(select(ModelCallRow.role, ModelCallRow.model, ModelCallRow.tokens_in,
                                            ModelCallRow.tokens_out, ModelCallRow.error, ModelCallRow.cache_hit)
                                     .where(ModelCallRow.run_id == run_id).order_by(ModelCallRow.id)))
    report = store.run(run_id).summary or {}
    return {
        "status": store.run(run_id).status,
        "report": _positions(report, position),
        "candidates": [(c.step, c.operator, c.status, c.rejection, c.prompt, [position.get(p) for p in c.parent_ids])
                       for c in candidates],
        "evaluations": [(position[c.id], e.case_id, e.predicted_tool, e.passed, e.score, e.error)
                        for c in candidates for e in store.evaluations(c.id).values()],
        "calls": [tuple(call) for call in calls],
        "steps": [(s.step, position.get(s.incumbent_id), s.val_accuracy, s.message) for s in store.steps(run_id)],
    }


def _positions(report: dict[str, Any], position: dict[int, int]) -> dict[str, Any]:
    """`report` without what differs between equal runs, candidate ids as positions."""
    kept = {k: v for k, v in report.items() if k != "run_id"}
    for key in ("seed", "winner"):
        if key in kept:
            kept[key] = {**kept[key], "candidate_id": position.get(kept[key]["candidate_id"])}
    kept["steps"] = [{**s, "incumbent_id": position.get(s["incumbent_id"])} for s in kept.get("steps", [])]
    return kept


def differences(got: dict[str, Any], reference: dict[str, Any], finished: bool = True) -> tuple[int, int]:
    """(lost, duplicated) rows of `got` against `reference`: candidates, evaluations, model calls and steps. A run
    that did not finish (`finished` False) may lack rows, not have others; a finished one must have them all."""
    lost = duplicated = 0
    for kind in ("candidates", "calls", "steps"):
        mine, theirs = got[kind], reference[kind]
        same = 0
        while same < min(len(mine), len(theirs)) and _same_row(kind, mine[same], theirs[same], finished):
            same += 1
        duplicated += len(mine) - same
        lost += (len(theirs) - same) if finished else 0
    mine, theirs = _keyed(got["evaluations"]), _keyed(reference["evaluations"])
    duplicated += len(got["evaluations"]) - len(mine) + sum(1 for key in mine if mine[key] != theirs.get(key))
    lost += sum(1 for key in theirs if key not in mine) if finished else 0
    return lost, duplicated


def _same_row(kind: str, mine: tuple, theirs: tuple, finished: bool) -> bool:
    """Rows are the same; a candidate of an unfinished run may still await its final status."""
    if kind == "candidates" and not finished:
        return mine[:2] + mine[4:] == theirs[:2] + theirs[4:]
    return mine == theirs


def _keyed(evaluations: list[tuple]) -> dict[tuple, tuple]:
    return {(row[0], row[1]): row[2:] for row in evaluations}
