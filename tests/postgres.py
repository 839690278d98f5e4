"""A throwaway PostgreSQL 15 cluster for the store tests: `initdb` into a temporary folder, `pg_ctl start` on a free
port of 127.0.0.1 (as the `postgres` user when the tests run as root, since initdb refuses root), one fresh database
per test, and `pg_ctl stop` at the end. Every role logs in without a password but `PASSWORD_ROLE`, whose login needs
its password (`PASSWORD`), for the tests of a refused login. Tests that need it skip, saying why, where PostgreSQL
or psycopg is missing. `$PROMPTOPT_PG_BIN` names another folder of PostgreSQL programs."""
from __future__ import annotations

import importlib.util
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("PROMPTOPT_PG_BIN", "/usr/lib/postgresql/15/bin"))
PASSWORD_ROLE, PASSWORD = "promptopt_login", "right-password"


def unavailable() -> str | None:
    """Why no cluster can be started here, or None when one can."""
    if not (PG_BIN / "initdb").exists():
        return f"no initdb in {PG_BIN} (apt-get install postgresql)"
    if importlib.util.find_spec("psycopg") is None:
        return "psycopg is not installed (pip install 'promptopt[postgres]')"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run initdb as"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """One running cluster in its own folder; `new_database()` hands out an empty database's SQLAlchemy URL."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="promptopt-pg-"))
        self.port = free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.names = (f"store_{n}" for n in itertools.count(1))

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self.prefix, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}\n{self._log()}")

    def _log(self) -> str:
        log = self.folder / "server.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def start(self) -> None:
        data = self.folder / "data"
        self._run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        hba = data / "pg_hba.conf"
        hba.write_text(f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n{hba.read_text()}")
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.folder / "server.log"),
                  "-w", "start")
        self._execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'")

    def stop(self) -> None:
        if (self.folder / "data" / "postmaster.pid").exists():
            subprocess.run([*self.prefix, str(PG_BIN / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate",
                            "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def login_url(self, database: str, password: str) -> str:
        """The URL of `database` for `PASSWORD_ROLE`, logging in with `password`."""
        return f"postgresql://{PASSWORD_ROLE}:{password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = next(self.names)
        self._execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def _execute(self, statement: str) -> None:
        """Run one statement as the superuser, outside a transaction."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as connection:
            connection.execute(statement)


@pytest.fixture(scope="session")
def postgres_cluster():
    """A running cluster for the whole session (skips, saying why, where none can be started)."""
    reason = unavailable()
    if reason:
        pytest.skip(f"PostgreSQL not available: {reason}")
    cluster = Cluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str:
    """The URL of a fresh, empty store: a new SQLite file, or a new database in the session's PostgreSQL cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_cluster").new_database()
