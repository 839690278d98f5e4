"""The kill soak: `promptopt run` against a scripted endpoint is killed with SIGKILL at random points, resumed with
`--resume` (which may be killed again), and every run, once finished, must have stored exactly what an
uninterrupted run of the same config stores. After each kill the store must pass SQLite's integrity check, the run
must be shown as interrupted once its heartbeat is stale, `export` must refuse it, and what it stored must be a
prefix of the uninterrupted run's rows. Shared by `tests/test_kill_soak.py` and `benchmarks/kill_soak.py`."""
from __future__ import annotations

import contextlib
import os
import random
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from promptopt.runs.export import RunNotFinished, export_prompt
from promptopt.runs.heartbeat import HEARTBEAT_ENV, shown_status
from promptopt.runs.store import Store
from promptopt.server import ChatServer
from tests.fakes import ExamplesRouter
from tests.scripted_runs import (
    differences,
    integrity_ok,
    resume_command,
    run_command,
    scripted_task,
    snapshot,
    start,
    wait_until,
)

RUN_FLAGS = ("--steps", "3", "--concurrency", "4")
HEARTBEAT_S = 0.1


@dataclass
class SoakResult:
    """What the soak saw: kills made, kills whose run was later resumed to the uninterrupted result, rows lost or
    duplicated (both must be 0), and what went wrong, in words."""

    kills: int = 0
    resumed_ok: int = 0
    lost: int = 0
    duplicated: int = 0
    runs: int = 0
    kill_points: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"kills": self.kills, "resumed_ok": self.resumed_ok, "lost": self.lost, "duplicated": self.duplicated}


class Soak:
    """One soak in `folder`: a scripted endpoint, a reference run, then runs killed and resumed until `kills`."""

    def __init__(self, folder: Path, kills: int, seed: int = 0, latency_s: float = 0.01,
                 log: Callable[[str], None] = lambda line: None) -> None:
        self.folder, self.kills, self.log = folder, kills, log
        self.rng = random.Random(seed)
        self.latency_s = latency_s
        self.db = f"sqlite:///{folder / 'soak.db'}"
        prices = folder / "prices.json"  # a list price for the scripted model, so dollars are compared too
        prices.write_text('{"prices": {"scripted": {"input": 2.5, "output": 10.0}}}', encoding="utf-8")
        self.env = {"PROMPTOPT_CACHE_DIR": str(folder / "cache"), HEARTBEAT_ENV: str(HEARTBEAT_S),
                    "PROMPTOPT_CONFIG": str(prices)}
        self.result = SoakResult()

    def run(self) -> SoakResult:
        """Soak until `kills` kills, finish the last run, and say what was seen."""
        started = time.monotonic()
        case_file, expected = scripted_task(self.folder, every=4)
        with _heartbeat_setting(), ChatServer(ExamplesRouter(expected), latency_s=self.latency_s) as server:
            # a killed client resets its connections: expected here, so not printed as the server's errors
            server._httpd.handle_error = lambda request, address: None
            self.command = run_command(self.db, case_file, server.base_url, *RUN_FLAGS)
            self.reference, self.window = self._reference(case_file, server.base_url)
            self.store = Store(self.db)
            run_id, kills_in_run = None, 0
            while self.result.kills < self.kills:
                run_id, kills_in_run = self._step(run_id, kills_in_run)
            if run_id is not None:
                self._finish(run_id, kills_in_run)
        self.result.seconds = time.monotonic() - started
        return self.result

    def _reference(self, case_file: Path, base_url: str) -> tuple[dict[str, Any], float]:
        """The uninterrupted run (its own store and cache), and how long its search took."""
        db = f"sqlite:///{self.folder / 'reference.db'}"
        process = start(run_command(db, case_file, base_url, *RUN_FLAGS),
                        {**self.env, "PROMPTOPT_CACHE_DIR": str(self.folder / "reference-cache")})
        _, err = process.communicate(timeout=300)
        if process.returncode != 0:
            raise RuntimeError(f"the reference run failed:\n{err}")
        (run,) = Store(db).runs()
        seconds = (_aware(run.finished_at) - _aware(run.created_at)).total_seconds()
        self.log(f"reference run {run.id}: {seconds:.1f} s of search")
        return snapshot(db, run.id), seconds

    def _step(self, run_id: str | None, kills_in_run: int) -> tuple[str | None, int]:
        """Start (or resume) a run and kill it at a random point of its search; the run to go on with."""
        known = {r.id for r in self.store.runs(limit=1000)}
        if run_id is None:  # a new run gets a cache of its own, so it calls the endpoint as a first run does
            self.env["PROMPTOPT_CACHE_DIR"] = str(self.folder / f"cache-{len(known)}")
        begun = datetime.now(timezone.utc)
        process = start(resume_command(self.db, run_id) if run_id else self.command, self.env)
        live = self._wait_for_search(process, run_id, known, begun)
        delay = self.rng.uniform(0.0, self.window)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.kill()
        _, err = process.communicate()
        run_id = run_id or live or self._newest(known)
        if process.returncode == 0:
            self._finish(run_id, kills_in_run, already=True)
            return None, 0
        if process.returncode != -9:
            self.result.problems.append(f"run {run_id}: exit {process.returncode}: {err.strip()[-500:]}")
            return None, 0
        self.result.kills += 1
        self.result.kill_points.append(delay)
        if run_id is None:
            self.log(f"kill {self.result.kills}: before a run was stored")
            return None, 0
        if self.store.run(run_id).status == "finished":  # killed on its way out: nothing left to resume
            self.log(f"kill {self.result.kills}: run {run_id}, already finished")
            self._finish(run_id, kills_in_run + 1, already=True)
            return None, 0
        self._check_killed(run_id)
        return run_id, kills_in_run + 1

    def _wait_for_search(self, process: subprocess.Popen, run_id: str | None, known: set[str],
                         begun: datetime) -> str | None:
        """The run id once the process has begun searching (a new run stored, or the resumed one beating)."""

        def searching() -> str | None:
            if process.poll() is not None:
                return "exited"
            if run_id is not None:
                beat = self.store.run(run_id).heartbeat_at
                return run_id if beat is not None and _aware(beat) >= begun else None
            return self._newest(known)

        found = wait_until(searching, 120, "the run to begin its search", every_s=0.02)
        return None if found == "exited" else found

    def _newest(self, known: set[str]) -> str | None:
        fresh = [r.id for r in self.store.runs(limit=1000) if r.id not in known]
        return fresh[0] if fresh else None

    def _check_killed(self, run_id: str) -> None:
        """After a kill: a sound store, the run shown interrupted once stale, export refused, no row astray."""
        run = wait_until(lambda: (r := self.store.run(run_id)) and shown_status(r) == "interrupted" and r, 10,
                         "the heartbeat to go stale")
        problems = self.result.problems
        if run.status != "running":
            problems.append(f"run {run_id}: stored as {run.status} after SIGKILL")
        if not integrity_ok(self.db):
            problems.append(f"run {run_id}: integrity check failed")
        try:
            export_prompt(self.store, run_id)
            problems.append(f"run {run_id}: export did not refuse an interrupted run")
        except RunNotFinished:
            pass
        lost, duplicated = differences(snapshot(self.db, run_id), self.reference, finished=False)
        self.result.duplicated += duplicated
        self.log(f"kill {self.result.kills}: run {run_id}, {len(self.store.steps(run_id))} step rows stored"
                 + (f", {duplicated} rows astray" if duplicated else ""))

    def _finish(self, run_id: str, kills_in_run: int, already: bool = False) -> None:
        """Resume the run to its end (unless it ended) and compare it with the uninterrupted run."""
        if not already:
            process = start(resume_command(self.db, run_id), self.env)
            _, err = process.communicate(timeout=300)
            if process.returncode != 0:
                self.result.problems.append(f"resuming run {run_id}: exit {process.returncode}: {err[-500:]}")
                return
        got = snapshot(self.db, run_id)
        lost, duplicated = differences(got, self.reference)
        self.result.lost += lost
        self.result.duplicated += duplicated
        self.result.runs += 1
        same = got == self.reference and integrity_ok(self.db)
        if same:
            self.result.resumed_ok += kills_in_run
        else:
            unlike = [key for key in got if got[key] != self.reference[key]]
            unlike += [f"report.{key}" for key in got["report"] if got["report"][key] != self.reference["report"].get(key)]
            self.result.problems.append(f"run {run_id}: ended unlike the uninterrupted run ({lost} rows lost, "
                                        f"{duplicated} duplicated; differs in {', '.join(unlike) or 'integrity'})")
        self.log(f"run {run_id} finished after {kills_in_run} kill(s): {'same' if same else 'DIFFERENT'}")


@contextlib.contextmanager
def _heartbeat_setting() -> Iterator[None]:
    """This process reads heartbeats with the interval the soaked processes write them at."""
    previous = os.environ.get(HEARTBEAT_ENV)
    os.environ[HEARTBEAT_ENV] = str(HEARTBEAT_S)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(HEARTBEAT_ENV)
        else:
            os.environ[HEARTBEAT_ENV] = previous


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive UTC datetimes."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
