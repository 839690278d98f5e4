"""A store that cannot be used stops any command with one line naming the store (password hidden) and the cause, exit
1, no traceback: an unreachable PostgreSQL, a refused login, no such database, a URL that is not one, a file that
is not a store."""
from __future__ import annotations

import importlib.util

import pytest
from click.testing import CliRunner

from promptopt.case import Case, ToolCall
from promptopt.cli import main
from promptopt.runs.store import Store
from tests.postgres import PASSWORD_ROLE, free_port

URL_EXAMPLE = "use sqlite:///PATH/promptopt.db or postgresql://USER@HOST/DATABASE"


def one_line(result) -> str:
    """The one line a command that failed cleanly printed (exit 1, no exception escaped, nothing else on stderr)."""
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


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
