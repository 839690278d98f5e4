"""One writer per run, with real `promptopt run` processes: a run paused past three heartbeats (SIGSTOP, or a store
write-locked by another connection) is still shown running, `--resume` refuses to start a second writer and names
the live one, and once the pause ends the run finishes with no error stored. On SQLite and on PostgreSQL."""
from __future__ import annotations

import contextlib
import signal
import sqlite3
import sys
import time
from typing import Callable, ContextManager

import pytest
from click.testing import CliRunner

from promptopt.cli import main
from promptopt.runs.heartbeat import shown_status
from promptopt.runs.store import Store
from promptopt.runs.writer_lock import RunHasWriter, hold_writer, run_status
from promptopt.server import ChatServer
from tests.scripted_runs import Stalling, resume_command, run_command, scripted_task, start, wait_until

HEARTBEAT_S = 0.3


@contextlib.contextmanager
def stopped(process) -> ContextManager[None]:
    """The process paused (SIGSTOP) for the block, then continued."""
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


def write_locked(db: str) -> Callable[[object], ContextManager[None]]:
    """A pause made by another connection holding the SQLite store's write lock for the block."""

    @contextlib.contextmanager
    def hold(_process) -> ContextManager[None]:
        connection = sqlite3.connect(db.removeprefix("sqlite:///"), isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            connection.execute("COMMIT")
            connection.close()

    return hold


def paused_run_survives(tmp_path, monkeypatch, db: str, pause: Callable[[object], ContextManager[None]]) -> None:
    """A run stalled at its first model call, paused past three heartbeats: shown running, resume refused with the
    writer named; after the pause it finishes cleanly."""
    monkeypatch.setenv("PROMPTOPT_HEARTBEAT_S", str(HEARTBEAT_S))
    case_file, expected = scripted_task(tmp_path, every=6)
    store = Store(db)
    responder = Stalling(expected)
    with ChatServer(responder) as server:
        process = start(run_command(db, case_file, server.base_url),
                        {"PROMPTOPT_CACHE_DIR": str(tmp_path / "cache"), "PROMPTOPT_HEARTBEAT_S": str(HEARTBEAT_S)})
        try:
            assert responder.arrived.wait(60), process.stderr.read() if process.poll() is not None else ""
            run_id = wait_until(lambda: next((r.id for r in store.runs() if r.writer), None), 30, "the run's writer")
            with pause(process):
                time.sleep(4 * HEARTBEAT_S)
                run = store.run(run_id)
                assert shown_status(run) == "interrupted"  # the heartbeat alone would have called it dead
                assert run_status(store, run) == "running"
                listed = CliRunner().invoke(main, ["runs", "list", "--db", db])
                assert run_id in listed.output and "running" in listed.output and "interrupted" not in listed.output
                refused = CliRunner().invoke(main, ["run", "--resume", run_id, "--db", db])
                assert refused.exit_code == 1, refused.output
                assert f"pid {process.pid} on" in refused.output and "Traceback" not in refused.output
            responder.release.set()
            out, err = process.communicate(timeout=120)
        finally:
            responder.release.set()
            process.kill()
    assert process.returncode == 0, err
    finished = Store(db).run(run_id)
    assert finished.status == "finished" and finished.error == ""
    assert run_status(store, finished) == "finished"


def test_a_run_waiting_for_a_write_lock_keeps_its_writer(tmp_path, monkeypatch):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    paused_run_survives(tmp_path, monkeypatch, db, write_locked(db))


def test_a_stopped_run_keeps_its_writer(tmp_path, monkeypatch, store_url):
    paused_run_survives(tmp_path, monkeypatch, store_url, stopped)


def test_a_killed_writer_frees_the_run_at_once(tmp_path):
    """The lock goes with its process: a killed run is interrupted at once (no heartbeat wait) and resumable."""
    db = f"sqlite:///{tmp_path / 'store.db'}"
    case_file, expected = scripted_task(tmp_path, every=6)
    store = Store(db)
    responder = Stalling(expected)
    with ChatServer(responder) as server:
        process = start(run_command(db, case_file, server.base_url), {"PROMPTOPT_CACHE_DIR": str(tmp_path / "c")})
        try:
            assert responder.arrived.wait(60)
            run_id = wait_until(lambda: next((r.id for r in store.runs() if r.writer), None), 30, "the run's writer")
        finally:
            process.kill()
            process.communicate()
            responder.release.set()
        run = store.run(run_id)
        assert run.status == "running" and shown_status(run) == "running"  # its heartbeat is still fresh
        assert run_status(store, run) == "interrupted"
        resumed = start(resume_command(db, run_id), {"PROMPTOPT_CACHE_DIR": str(tmp_path / "c")})
        _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert store.run(run_id).status == "finished"


HOLDER = """
import sys, time
from promptopt.runs.store import Store
from promptopt.runs.writer_lock import hold_writer
store = Store(sys.argv[1])
with hold_writer(store, sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_writer_is_refused_while_the_first_lives(store_url):
    """Taking a run's writer lock that another live process holds fails with one line naming that process; once
    it is gone the lock is free, and within one process taking it again only nests."""
    store = Store(store_url)
    run_id = store.create_run("tool-routing", "demos", {}, [], {})
    holder = start([sys.executable, "-c", HOLDER, store_url, run_id])
    try:
        assert holder.stdout.readline().strip() == "held", holder.stderr.read()
        assert run_status(store, store.run(run_id)) == "running"
        with pytest.raises(RunHasWriter, match=f"run {run_id} is being written by pid {holder.pid} on "):
            with hold_writer(store, run_id):
                pass
    finally:
        holder.kill()
        holder.communicate()
    assert run_status(store, store.run(run_id)) == "interrupted"
    with hold_writer(store, run_id):
        with hold_writer(store, run_id):
            assert run_status(store, store.run(run_id)) == "running"
        assert run_status(store, store.run(run_id)) == "running"
    assert run_status(store, store.run(run_id)) == "interrupted"


def test_an_in_memory_store_sees_its_own_writer():
    """Only this process can see an in-memory store, so its held locks are its writers."""
    store = Store("sqlite://")
    run_id = store.create_run("tool-routing", "demos", {}, [], {})
    with hold_writer(store, run_id):
        assert run_status(store, store.run(run_id)) == "running"
    assert run_status(store, store.run(run_id)) == "interrupted"
