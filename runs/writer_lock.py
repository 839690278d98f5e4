"""One writer per run. The process writing a run holds a lock that the operating system or the database releases
the moment that process dies: on SQLite an exclusive `flock` on a file beside the database
(`<db>-writers/<run id>.lock`), on PostgreSQL a session advisory lock. A run stored as `running` whose lock is free
has lost its writer and is shown `interrupted`; one whose lock is held is running, even when its heartbeat is
stale (a paused process, a store locked by another connection), and `--resume` refuses to start a second writer.
Where the lock cannot be seen (another database, a platform without `flock`, a run stored before writer locks)
the heartbeat decides, as before."""
from __future__ import annotations

import contextlib
import os
import socket
import threading
import zlib
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import text
from sqlalchemy.engine import Connection

from promptopt.runs.engine import StoreError
from promptopt.runs.heartbeat import shown_status
from promptopt.runs.store import Store
from promptopt.runs.tables import RunRow

try:
    import fcntl
except ImportError:  # Windows: no flock; the heartbeat decides there
    fcntl = None  # type: ignore[assignment]

ADVISORY_NAMESPACE = 0x706F7074
"""The first key of promptopt's PostgreSQL advisory locks ("popt"); the second is the run id's CRC-32."""


class RunHasWriter(StoreError):
    """Another live process is writing the run; the message names it."""


def this_writer() -> str:
    """How a writer names itself in the store: its process id and host."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


_held: dict[tuple[str, str], list[Any]] = {}
"""Locks this process holds, by (store URL, run id): [count, release]. Taking a held one again only counts."""
_held_guard = threading.Lock()


@contextlib.contextmanager
def hold_writer(store: Store, run_id: str) -> Iterator[None]:
    """Hold run `run_id`'s writer lock for the block and record this process as its writer; `RunHasWriter` when
    another process holds it. Re-entrant within a process (a resume holds it from its check to its end)."""
    key = (store.url, run_id)
    with _held_guard:
        first = key not in _held
        if first:
            _held[key] = [0, _take(store, run_id)]
        _held[key][0] += 1
    try:
        if first:
            store.update_run(run_id, writer=this_writer())
        yield
    finally:
        with _held_guard:
            _held[key][0] -= 1
            if _held[key][0] == 0:
                release = _held.pop(key)[1]
                if release is not None:
                    release()


@contextlib.contextmanager
def hold_writers(store: Store, run_ids: list[str]) -> Iterator[None]:
    """Hold the writer locks of every run in `run_ids` for the block (so none starts while they are deleted, say)."""
    with contextlib.ExitStack() as stack:
        for run_id in run_ids:
            stack.enter_context(hold_writer(store, run_id))
        yield


def writer_alive(store: Store, run: RunRow) -> bool | None:
    """Whether the process writing `run` is alive (its lock is held); None where the lock cannot be seen."""
    if not run.writer:
        return None
    dialect = store.engine.dialect.name
    if dialect == "sqlite":
        path = _lock_path(store, run.id)
        if path is None:  # in memory: only this process sees the store
            return (store.url, run.id) in _held
        return None if fcntl is None else _file_lock_held(path)
    if dialect == "postgresql":
        with store.engine.connect() as connection:
            return bool(connection.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = :namespace "
                "AND objid = :key AND objsubid = 2 AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"),
                {"namespace": ADVISORY_NAMESPACE, "key": _advisory_key(run.id)}).scalar())
    return None


def run_status(store: Store, run: RunRow) -> str:
    """The status to show for `run`: the stored one, except that a `running` run whose writer is gone is
    `interrupted` (by its writer lock where it can be seen, else by its heartbeat)."""
    if run.status != "running":
        return run.status
    alive = writer_alive(store, run)
    if alive is None:
        return shown_status(run)
    return "running" if alive else "interrupted"


def _take(store: Store, run_id: str) -> Any:
    """Take the lock for this process; returns how to release it (None where there is nothing to release)."""
    dialect = store.engine.dialect.name
    if dialect == "sqlite":
        path = _lock_path(store, run_id)
        return None if path is None or fcntl is None else _take_file_lock(path, store, run_id)
    if dialect == "postgresql":
        return _take_advisory_lock(store, run_id)
    return None


def _lock_path(store: Store, run_id: str) -> Path | None:
    """The lock file of a run in a SQLite file store; None for an in-memory one (one process sees it)."""
    database = store.engine.url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database).with_name(Path(database).name + "-writers") / f"{run_id}.lock"


def _take_file_lock(path: Path, store: Store, run_id: str) -> Any:
    path.parent.mkdir(exist_ok=True)
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise RunHasWriter(_refusal(store, run_id)) from None
        try:
            same = os.fstat(handle).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file its last holder removed between our open and our lock
            break
        os.close(handle)

    def release() -> None:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(handle)

    return release


def _file_lock_held(path: Path) -> bool:
    try:
        handle = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(handle)
    return False


def _advisory_key(run_id: str) -> int:
    return zlib.crc32(run_id.encode()) & 0x7FFFFFFF


def _take_advisory_lock(store: Store, run_id: str) -> Any:
    connection: Connection = store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    taken = connection.execute(text("SELECT pg_try_advisory_lock(:namespace, :key)"),
                               {"namespace": ADVISORY_NAMESPACE, "key": _advisory_key(run_id)}).scalar()
    if not taken:
        connection.close()
        raise RunHasWriter(_refusal(store, run_id))

    def release() -> None:
        with contextlib.suppress(Exception):
            connection.execute(text("SELECT pg_advisory_unlock(:namespace, :key)"),
                               {"namespace": ADVISORY_NAMESPACE, "key": _advisory_key(run_id)})
        connection.close()

    return release


def _refusal(store: Store, run_id: str) -> str:
    run = store.run(run_id)
    writer = run.writer if run is not None and run.writer else "another process"
    return (f"run {run_id} is being written by {writer} (it holds the run's writer lock, even if paused); stop that "
            "process first, or wait for it to finish")
