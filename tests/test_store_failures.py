"""A store that cannot be used stops any command with one line naming the store (password hidden) and the cause, exit
1, no traceback (`--verbose` adds it): an unreachable PostgreSQL, a refused login, no such database, a URL that is
not one, a file that is not a store, and a real full disk (a small tmpfs, `tests/full_disk.py`) under an import, a
run, and a run's response cache, after which the run can be resumed. Also: Ctrl-C while the command line loads
is one line and exit 130, and `cases import` counts its own cases while another process writes the store."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from promptopt.case import Case, ToolCall
from promptopt.cli import main
from promptopt.runs.store import Store
from promptopt.server import ChatServer
from tests.fakes import ExamplesRouter
from tests.postgres import PASSWORD_ROLE, free_port
from tests.scripted_runs import resume_command, run_command, scripted_task
from tests.support import ROOT, case_record, interruptible, write_jsonl

URL_EXAMPLE = "use sqlite:///PATH/promptopt.db or postgresql://USER@HOST/DATABASE"
DISK_FULL = re.compile(r"Error: store sqlite:///\S+/store\.db: the disk is full \((database or disk is full|disk I/O "
                       r"error)\)")

HOLDER = """
import sys, time
from promptopt.case import Case, ToolCall
from promptopt.runs.store import Store
from promptopt.runs.tables import CaseRow
store = Store(sys.argv[1])
with store.session() as session, session.begin():
    for i in range(3):
        case = Case(query=f"held {i}", expected=ToolCall("none"))
        session.add(CaseRow(content_hash=case.content_hash(), query=case.query, expected_tool="none", label="bad"))
    session.flush()
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def one_line(result) -> str:
    """The one line a command that failed cleanly printed (exit 1, no exception escaped, nothing else on stderr)."""
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def cli(*args: str, env: dict[str, str] | None = None, inside=None) -> subprocess.CompletedProcess:
    """`python -m promptopt.cli ARGS` in its own process, as a user runs it (`inside`: a small disk's namespace)."""
    command = [sys.executable, "-m", "promptopt.cli", *args]
    return run(inside.command(command) if inside else command, env)


def run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def one_line_from_process(done: subprocess.CompletedProcess) -> str:
    """The one line a process that failed cleanly printed on stderr: exit 1, no traceback."""
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def run_status(db: str, env: dict[str, str], inside=None) -> tuple[str, str]:
    """The newest run's id and status, as `promptopt runs list` shows them."""
    listed = cli("runs", "list", "--json", "--db", db, env=env, inside=inside)
    assert listed.returncode == 0, listed.stderr
    newest = json.loads(listed.stdout.splitlines()[0])
    return newest["run_id"], newest["status"]


def test_a_wrong_password_is_one_line_that_never_shows_it(postgres_cluster):
    url = postgres_cluster.login_url("postgres", "not-the-password")
    result = CliRunner().invoke(main, ["cases", "list", "--db", url])
    assert one_line(result) == (
        f"Error: store postgresql://{PASSWORD_ROLE}@127.0.0.1:{postgres_cluster.port}/postgres (password hidden): "
        f'authentication failed for user "{PASSWORD_ROLE}" (wrong password?)')
    assert "not-the-password" not in result.output


def test_an_unknown_database_is_one_line(postgres_cluster):
    url = postgres_cluster.url("no_such_store")
    result = CliRunner().invoke(main, ["runs", "list", "--db", url])
    assert one_line(result) == f'Error: store {url}: no such database "no_such_store"'


@pytest.mark.skipif(importlib.util.find_spec("psycopg") is None, reason="psycopg is not installed")
def test_a_server_that_refuses_the_connection_is_one_line():
    port = free_port()
    result = CliRunner().invoke(main, ["cases", "list", "--db", f"postgresql://someone:s3cret@127.0.0.1:{port}/db"])
    assert one_line(result) == (f"Error: store postgresql://someone@127.0.0.1:{port}/db (password hidden): connection "
                                f"refused (is the database server running on 127.0.0.1:{port}?)")
    assert "s3cret" not in result.output


def test_a_db_that_is_not_a_url_is_one_line():
    result = CliRunner().invoke(main, ["runs", "list", "--db", "notaurl"])
    assert one_line(result) == f"Error: store notaurl: not a database URL ({URL_EXAMPLE})"


def test_a_garbage_file_is_not_a_store(tmp_path):
    path = tmp_path / "store.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    result = CliRunner().invoke(main, ["cases", "list", "--db", f"sqlite:///{path}"])
    assert one_line(result) == f"Error: store sqlite:///{path}: not a promptopt store (the file is not a database)"


def test_a_truncated_store_is_one_line(tmp_path):
    db, path = f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "store.db"
    store = Store(db)
    store.import_cases([Case(query=f"query {i}", expected=ToolCall("none")) for i in range(500)])
    store.engine.dispose()  # the last connection to close moves the write-ahead log into the file
    assert path.stat().st_size > 40000 and not (tmp_path / "store.db-wal").exists()
    path.write_bytes(path.read_bytes()[:20000])
    result = CliRunner().invoke(main, ["cases", "list", "--db", db])
    assert one_line(result) == (f"Error: store {db}: not a promptopt store, or a damaged one (database disk image is "
                                "malformed)")


def test_verbose_adds_the_traceback(small_case_file):
    result = CliRunner().invoke(main, ["cases", "import", str(small_case_file), "--db", "notaurl", "--verbose"])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):" and "ArgumentError" in result.stderr
    assert lines[-1] == f"Error: store notaurl: not a database URL ({URL_EXAMPLE})"


def test_an_import_on_a_full_disk_is_one_line_and_adds_nothing(small_disk, tmp_path):
    disk = small_disk(4096)
    db = f"sqlite:///{disk.path}/store.db"
    records = [case_record(f"where is order {i}? " + "please check it " * 10, "get_order_status") for i in range(2000)]
    cases = write_jsonl(tmp_path / "cases.jsonl", records)
    assert cli("cases", "list", "--db", db, inside=disk).returncode == 0
    disk.fill(leave_bytes=64 * 1024)
    assert DISK_FULL.fullmatch(one_line_from_process(cli("cases", "import", str(cases), "--db", db, inside=disk)))
    disk.free()
    again = cli("cases", "import", str(cases), "--db", db, inside=disk)
    assert again.stdout.splitlines() == ["2000 cases in 1 file(s): 2000 new, 0 already stored"], again.stderr


def test_a_run_on_a_full_disk_is_one_line_and_can_be_resumed(small_disk, tmp_path):
    disk = small_disk(4096)
    db = f"sqlite:///{disk.path}/store.db"
    cases, expected = scripted_task(tmp_path, every=4)
    env = {"PROMPTOPT_HEARTBEAT_S": "0.2"}
    disk.fill(leave_bytes=500 * 1024)  # room for the store and its cases, not for the run's evaluations
    with ChatServer(ExamplesRouter(expected)) as server:
        failed = run(disk.command(run_command(db, cases, server.base_url, "--steps", "1")), env)
        assert DISK_FULL.fullmatch(one_line_from_process(failed))
        disk.free()
        run_id, status = run_status(db, env, inside=disk)
        assert status in ("failed", "interrupted")  # `interrupted` when the store could not even take `failed`
        resumed = run(disk.command(resume_command(db, run_id, "--base-url", server.base_url)), env)
    assert resumed.returncode == 0, resumed.stderr
    assert run_status(db, env, inside=disk) == (run_id, "finished")


def test_a_full_response_cache_fails_the_run_in_one_line_and_it_can_be_resumed(small_disk, tmp_path):
    disk = small_disk(64)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    cases, expected = scripted_task(tmp_path, every=4)
    full_cache = {"PROMPTOPT_CACHE_DIR": str(disk.path / "cache")}
    with ChatServer(ExamplesRouter(expected)) as server:
        failed = run(disk.command(run_command(db, cases, server.base_url, "--steps", "1")), full_cache)
        line = one_line_from_process(failed)
        assert re.fullmatch(rf"Error: the disk is full writing {disk.path}/cache/\w\w/\w+\.json \(No space left on "
                            r"device\)", line), line
        run_id, status = run_status(db, {})
        assert status == "failed"
        resumed = run(resume_command(db, run_id, "--base-url", server.base_url))
    assert resumed.returncode == 0, resumed.stderr
    assert run_status(db, {}) == (run_id, "finished")


def test_ctrl_c_while_the_command_line_loads_is_one_line_and_exit_130(tmp_path):
    """`-X importtime` says which module has just loaded: the interrupt comes while the command line's imports
    are still under way (numpy loads well before the last of them)."""
    process = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "promptopt.cli", "runs", "list", "--db",
                                f"sqlite:///{tmp_path / 'store.db'}"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    for line in process.stderr:
        if line.rstrip().endswith(" numpy"):
            process.send_signal(signal.SIGINT)
            break
    out, err = process.communicate(timeout=120)
    assert [line for line in err.splitlines() if not line.startswith("import time:")] == ["interrupted"]
    assert process.returncode == 130 and out == ""


def test_an_import_counts_its_own_cases_while_another_process_writes(tmp_path, monkeypatch):
    """Another process holds the write lock with 3 cases of its own when the import starts, and commits them while
    the import waits: the store gains 7 cases during the import, 4 of them this import's."""
    db = f"sqlite:///{tmp_path / 'store.db'}"
    cases = write_jsonl(tmp_path / "cases.jsonl", [case_record(f"query {i}", None) for i in range(4)])
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, db, "3"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding", holder.stderr.read()
    monkeypatch.setenv("PROMPTOPT_DB_TIMEOUT", "60")
    result = CliRunner().invoke(main, ["cases", "import", str(cases), "--db", db])
    holder.communicate(timeout=60)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["4 cases in 1 file(s): 4 new, 0 already stored"]


def test_ctrl_c_in_any_command_is_one_line_and_exit_130(monkeypatch, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "cases", interrupted)
    result = CliRunner().invoke(main, ["cases", "list", "--db", f"sqlite:///{tmp_path / 'store.db'}"])
    assert result.exit_code == 130 and result.output == "interrupted\n"
