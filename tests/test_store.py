"""The store shared by several processes, on SQLite and on PostgreSQL: concurrent imports of the same cases agree,
a writer waits for another's lock (up to PROMPTOPT_DB_TIMEOUT) instead of failing, a failed import adds nothing,
and both databases refuse what they cannot hold with the same words, before anything is written."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from promptopt.api import import_case_files
from promptopt.case import Case, ToolCall
from promptopt.cli import main
from promptopt.runs import store as store_module
from promptopt.runs.case_import import CaseFileError
from promptopt.runs.store import CaseRejected, Store
from promptopt.runs.tables import MAX_SOURCE, MAX_TOOL_NAME, StagedCaseRow
from tests.support import ROOT, case_record, write_jsonl

NUL_MESSAGE = "contains a NUL character (\\u0000), which the store cannot hold"

IMPORTER = """
import json, sys, time
from pathlib import Path
from promptopt.case import Case, ToolCall
from promptopt.runs.store import Store
url, count, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
cases = [Case(query=f"query {i}", expected=ToolCall("none")) for i in range(count)]
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
print(json.dumps(Store(url).import_cases(cases).case_ids), flush=True)
"""

HOLDER = """
import sys, time
from promptopt.case import Case, ToolCall
from promptopt.runs.store import Store
from promptopt.runs.tables import CaseRow
url, seconds = sys.argv[1], float(sys.argv[2])
case = Case(query="query 0", expected=ToolCall("none"))
store = Store(url)
with store.session() as session, session.begin():
    session.add(CaseRow(content_hash=case.content_hash(), query=case.query, expected_tool="none", label="bad"))
    session.flush()
    print("holding", flush=True)
    time.sleep(seconds)
"""


def start(snippet: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", snippet, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out


def wait_for(process: subprocess.Popen, line: str) -> None:
    got = process.stdout.readline().strip()
    if got != line:
        process.kill()
        pytest.fail(f"expected {line!r} from the helper process, got {got!r}: {process.stderr.read()}")


def numbered_cases(count: int) -> list[Case]:
    return [Case(query=f"query {i}", expected=ToolCall("none")) for i in range(count)]


def staged_rows(store: Store) -> int:
    with store.session() as session:
        return session.scalar(select(func.count(StagedCaseRow.id)))


def test_sqlite_store_is_in_wal_mode(store):
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_concurrent_imports_of_the_same_new_cases_agree(store_url, tmp_path):
    go = tmp_path / "go"
    importers = [start(IMPORTER, store_url, "1200", str(go)) for _ in range(2)]
    for importer in importers:
        wait_for(importer, "ready")
    go.touch()
    first, second = (json.loads(finish(importer).splitlines()[-1]) for importer in importers)
    assert first == second
    assert len(set(first)) == 1200
    store = Store(store_url)
    assert store.count_cases() == 1200 and staged_rows(store) == 0
    assert [case.query for case in store.cases(first[:3])] == ["query 0", "query 1", "query 2"]


def test_an_import_waits_for_a_writer_holding_the_lock(store_url, monkeypatch):
    holder = start(HOLDER, store_url, "6")
    wait_for(holder, "holding")
    monkeypatch.setenv("PROMPTOPT_DB_TIMEOUT", "20")
    started = time.monotonic()
    result = Store(store_url).import_cases(numbered_cases(3))
    waited = time.monotonic() - started
    finish(holder)
    assert waited > 3
    assert result.new == 2 and len(set(result.case_ids)) == 3
    assert Store(store_url).count_cases() == 3


def test_a_lock_held_past_the_timeout_is_a_one_line_error(store_url, tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "cases.jsonl", [case_record("query 0", None), case_record("query 1", None)])
    holder = start(HOLDER, store_url, "60")
    wait_for(holder, "holding")
    monkeypatch.setenv("PROMPTOPT_DB_TIMEOUT", "1")
    result = CliRunner().invoke(main, ["cases", "import", str(path), "--db", store_url])
    holder.kill()
    holder.communicate(timeout=60)
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        "Error: the store is busy: another process held a lock it needed for over 1 s "
        "(try again, or wait longer with PROMPTOPT_DB_TIMEOUT=SECONDS)"]
    store = Store(store_url)
    assert store.count_cases() == 0 and staged_rows(store) == 0


def test_an_import_that_fails_midway_adds_nothing(store_url, monkeypatch):
    store = Store(store_url)
    monkeypatch.setattr(store_module, "IMPORT_BATCH", 2)
    stage, calls = Store._stage, []

    def stage_then_fail(self, *args):
        calls.append(args)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        stage(self, *args)

    monkeypatch.setattr(Store, "_stage", stage_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        store.import_cases(numbered_cases(7))
    assert store.count_cases() == 0 and staged_rows(store) == 0
    monkeypatch.setattr(Store, "_stage", stage)
    result = store.import_cases(numbered_cases(7))
    assert result.new == 7 and store.count_cases() == 7


def test_what_a_store_cannot_hold_is_refused_the_same_way_on_every_store(store_url, tmp_path, task):
    records = [case_record("fine", None, source="s" * MAX_SOURCE),
               case_record("where is my order", "get_order_status", source="s" * (MAX_SOURCE + 1)),
               case_record("any deals?", "get_promotions", actual={"tool": "t" * (MAX_TOOL_NAME + 1)})]
    path = write_jsonl(tmp_path / "cases.jsonl", records)
    store = Store(store_url)
    with pytest.raises(CaseFileError) as refused:
        import_case_files(store, [path], task.tools)
    assert str(refused.value).splitlines() == [
        f"{path}:2: source: at most {MAX_SOURCE} characters, got {MAX_SOURCE + 1}",
        f"{path}:3: actual.tool: at most {MAX_TOOL_NAME} characters, got {MAX_TOOL_NAME + 1}"]
    with_nul = write_jsonl(tmp_path / "nul.jsonl", [case_record("fine", None), case_record("a\x00b", None)])
    with pytest.raises(CaseFileError) as refused:
        import_case_files(store, [with_nul], task.tools)
    assert str(refused.value) == f"{with_nul}:2: query: {NUL_MESSAGE}"
    with pytest.raises(CaseRejected) as rejected:
        store.import_cases([Case(query="fine", expected=ToolCall("none")), Case(query="a\x00b", expected=ToolCall())])
    assert str(rejected.value) == f"case 2: query: {NUL_MESSAGE}"
    assert store.count_cases() == 0
    assert import_case_files(store, [write_jsonl(tmp_path / "ok.jsonl", records[:1])], task.tools)[0].source == \
        "s" * MAX_SOURCE


def test_csv_refusals_name_the_line(store, tmp_path, task):
    path = tmp_path / "cases.csv"
    long_source = "s" * (MAX_SOURCE + 1)
    path.write_text(f'query,expected_tool,source\nhello,none,\n"two\nlines",none,{long_source}\n', encoding="utf-8")
    with pytest.raises(CaseFileError, match=rf"cases\.csv:4: source: at most {MAX_SOURCE} characters"):
        import_case_files(store, [path], task.tools)


def test_a_missing_driver_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    result = CliRunner().invoke(main, ["cases", "list", "--db", "postgresql://someone@127.0.0.1:9/nowhere"])
    assert result.exit_code == 1
    assert result.output.splitlines() == ["Error: the store's database driver is not installed (psycopg, for "
                                          "postgresql+psycopg://): pip install 'promptopt[postgres]'"]


def test_a_bad_timeout_setting_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTOPT_DB_TIMEOUT", "soon")
    result = CliRunner().invoke(main, ["runs", "list", "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 1
    assert result.output.splitlines() == ["Error: PROMPTOPT_DB_TIMEOUT must be a positive number of seconds, got 'soon'"]


def test_a_bare_postgresql_url_uses_psycopg(postgres_cluster):
    url = postgres_cluster.new_database().replace("postgresql+psycopg://", "postgresql://")
    store = Store(url)
    assert store.engine.dialect.driver == "psycopg"
    assert store.import_cases(numbered_cases(2)).new == 2


def test_opening_a_store_while_another_process_writes_its_fresh_file_waits_instead_of_failing(tmp_path):
    """Switching a new file to WAL needs a lock SQLite will not wait for while another connection is mid-write (two
    processes opening a fresh store at once): opening the store retries instead of failing at once."""
    path = tmp_path / "fresh.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE other (x)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO other VALUES (1)")
    release = threading.Timer(1.0, lambda: writer.execute("COMMIT"))
    release.start()
    started = time.monotonic()
    store = Store(f"sqlite:///{path}")
    release.join()
    assert time.monotonic() - started >= 0.9
    assert store.count_cases() == 0
    writer.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
