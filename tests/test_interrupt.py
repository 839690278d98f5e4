"""Stopping a run: Ctrl-C and SIGTERM against a hanging endpoint stop `promptopt run` within seconds and leave the
run `interrupted`, with the command that resumes it."""
from __future__ import annotations

import signal
import time

import pytest

from promptopt.runs.store import Store
from promptopt.server import ChatServer
from tests.scripted_runs import Stalling, run_command, scripted_task, start


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_run_against_a_hanging_endpoint_within_seconds(tmp_path, signum):
    case_file, expected = scripted_task(tmp_path)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    responder = Stalling(expected)
    with ChatServer(responder) as server:
        process = start(run_command(db, case_file, server.base_url))
        try:
            assert responder.arrived.wait(60), process.stderr.read() if process.poll() is not None else ""
            sent = time.monotonic()
            process.send_signal(signum)
            _, err = process.communicate(timeout=30)
            elapsed = time.monotonic() - sent
        finally:
            responder.release.set()
            process.kill()
    assert elapsed < 5, f"took {elapsed:.1f} s to stop"
    assert process.returncode == 128 + signum, err
    (run,) = Store(db).runs()
    assert run.status == "interrupted" and run.finished_at is not None
    assert f"promptopt run --resume {run.id}" in err
