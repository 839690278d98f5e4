"""Opening a store's database: the driver, how long a writer waits for another's lock (`PROMPTOPT_DB_TIMEOUT`),
SQLite's WAL mode, the schema, and the one-line errors for a missing driver, a lock that could not be had and a
store that failed for a reason outside promptopt (`store_errors.py`: a bad URL, the server, the login, the file,
a full disk), raised as `StoreError` wherever the database is used."""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.engine.interfaces import ExceptionContext
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError, ProgrammingError

from promptopt.runs.store_errors import StoreBusy, StoreError, store_failure
from promptopt.runs.tables import Base

DEFAULT_TIMEOUT_S = 30.0
POSTGRES_INSTALL = "pip install 'promptopt[postgres]'"
DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}
"""Bare schemes and the driver promptopt installs for them (`promptopt[postgres]` brings psycopg 3)."""
SQLITE_BUSY, SQLITE_LOCKED = 5, 6
POSTGRES_LOCK_NOT_AVAILABLE = "55P03"


def env_seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment variable `name` (unset or empty: `default`)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise StoreError(f"{name} must be a positive number of seconds, got {raw!r}")
    return seconds


def lock_timeout() -> float:
    """Seconds a writer waits for another's lock before giving up: `$PROMPTOPT_DB_TIMEOUT`, default 30."""
    return env_seconds("PROMPTOPT_DB_TIMEOUT", DEFAULT_TIMEOUT_S)


def with_driver(url: str) -> str:
    """`url` with promptopt's driver named when it names none (`postgresql://` means psycopg 3, not psycopg2)."""
    scheme, separator, rest = url.partition("://")
    return f"{DEFAULT_DRIVERS[scheme]}://{rest}" if separator and scheme in DEFAULT_DRIVERS else url


def open_engine(url: str) -> Engine:
    """An engine on `url` whose writers wait up to `lock_timeout()` seconds for a lock, then raise `StoreBusy`, and
    whose failures from outside promptopt (`store_failure`) raise a one-line `StoreError` naming the store."""
    timeout = lock_timeout()
    given, url = url, with_driver(url)
    try:
        backend = make_url(url).get_backend_name()
        if backend == "sqlite" and url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": timeout} if backend == "sqlite" else {})
    except ModuleNotFoundError as error:
        raise StoreError(_missing_driver(url, error.name or str(error))) from None
    except (ArgumentError, ValueError, OSError) as error:
        raise (store_failure(given, error) or error) from error
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif backend == "postgresql":
        event.listen(engine, "connect", _postgres_lock_timeout(timeout))
    event.listen(engine, "handle_error", _store_errors(given, timeout))
    return engine


def create_schema(engine: Engine, attempts: int = 3) -> None:
    """Create missing tables and columns. Retried: processes opening a fresh store at once race to create the
    same tables, and the loser's retry finds them made."""
    for attempt in range(1, attempts + 1):
        try:
            Base.metadata.create_all(engine)
            _add_missing_columns(engine)
            return
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == attempts:
                raise
            time.sleep(0.1 * attempt)


def _missing_driver(url: str, module: str) -> str:
    scheme = url.partition("://")[0]
    install = POSTGRES_INSTALL if module.split(".")[0] == "psycopg" else f"pip install {module}"
    return f"the store's database driver is not installed ({module}, for {scheme}://): {install}"


def _store_errors(url: str, timeout: float) -> Callable[[ExceptionContext], None]:
    """A `handle_error` hook that turns a lock wait past `timeout` into `StoreBusy` (SQLite and PostgreSQL), and a
    failure from outside promptopt into a one-line `StoreError` naming the store at `url`."""

    def check(context: ExceptionContext) -> None:
        if _is_lock_timeout(context.original_exception):
            raise StoreBusy(f"the store is busy: another process held a lock it needed for over {timeout:g} s "
                            "(try again, or wait longer with PROMPTOPT_DB_TIMEOUT=SECONDS)") from None
        if isinstance(context.sqlalchemy_exception, DBAPIError):
            failure = store_failure(url, context.sqlalchemy_exception, connecting=context.connection is None)
            if failure is not None:
                raise failure

    return check


def _is_lock_timeout(error: BaseException) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)
    return getattr(error, "sqlstate", None) == POSTGRES_LOCK_NOT_AVAILABLE


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL, so readers never block the writer and the writer never blocks readers; and foreign keys enforced.
    Switching a fresh file to WAL needs a lock SQLite does not wait for (its busy handler is skipped there), so
    processes opening a new store at once retry it until the lock timeout."""
    cursor = connection.cursor()
    deadline = time.monotonic() + lock_timeout()
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except Exception as error:
            if not _is_lock_timeout(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _postgres_lock_timeout(timeout: float) -> Callable[[Any, Any], None]:
    """A `connect` hook that makes PostgreSQL give up a lock wait after `timeout` (by default it waits forever)."""

    def configure(connection: Any, _record: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {max(1, round(timeout * 1000))}")
        connection.commit()

    return configure


def _add_missing_columns(engine: Engine) -> None:
    """Bring a store written by an older promptopt up to date: add the columns later versions introduced
    (all have defaults), so existing runs stay readable."""
    inspector = inspect(engine)
    with engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            present = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in present:
                    continue
                default = column.default.arg if column.default is not None and column.default.is_scalar else None
                kind = column.type.compile(dialect=engine.dialect)
                connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind} "
                                        f"DEFAULT {_sql_literal(default)}"))


def _sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)
