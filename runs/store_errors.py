"""What a store failure tells the user: one line naming the store (its URL, password hidden) and a cause they can
act on (not a URL, the server unreachable, the login refused, no such database, not a promptopt store, the disk
full), made from the driver's error where the store meets the database (`runs/engine.py`)."""
from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
"""OS errors that mean the disk (or the user's quota on it) is full."""
NEARLY_FULL_BYTES = 1 << 20
"""Free space below which SQLite's "disk I/O error" is reported as a full disk (SQLite says only that when it cannot
grow the memory file its connections share)."""
SQLITE_CAUSES = {
    13: "the disk is full (database or disk is full)",
    26: "not a promptopt store (the file is not a database)",
    11: "not a promptopt store, or a damaged one (database disk image is malformed)",
    14: "cannot open the database file",
    8: "the database file is read-only",
    10: "disk I/O error",
}
"""SQLite's primary result codes (SQLITE_FULL, NOTADB, CORRUPT, CANTOPEN, READONLY, IOERR) and what they mean here."""
POSTGRES_DISK_FULL = "53100"
SQLITE_IOERR = 10
URL_EXAMPLE = "sqlite:///PATH/promptopt.db or postgresql://USER@HOST/DATABASE"


class StoreError(Exception):
    """A store that cannot be opened or written; the message is meant for the user as it is."""


class StoreBusy(StoreError):
    """Another process held a lock the store needed for longer than `PROMPTOPT_DB_TIMEOUT` seconds."""


def store_failure(url: str, error: BaseException, connecting: bool = False) -> StoreError | None:
    """The one-line `StoreError` for `error` met by the store at `url` when its cause lies outside promptopt (the
    URL, the server, the login, the file, the disk), or None for any other error, which stays as it is. `connecting`
    says the error came while opening a connection, where any database error is such a cause."""
    cause = _cause(url, error, connecting)
    return StoreError(f"store {shown_url(url)}: {cause}") if cause else None


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` is the OS saying the disk (or the quota) is full."""
    return isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS


def disk_full_message(error: OSError) -> str:
    """One line for a write that did not fit on the disk, naming the file when the OS did."""
    where = f" writing {error.filename}" if error.filename else ""
    return f"the disk is full{where} ({error.strerror or 'no space left on device'})"


def shown_url(url: str) -> str:
    """`url` as it may be printed: without its password, saying so when it had one."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        hidden = re.sub(r"(?<=://)([^/@:]*):[^/@]*@", r"\1@", url)
        return hidden + (" (password hidden)" if hidden != url else "")
    secret_keys = [key for key in parsed.query if "password" in key.lower()]
    hidden = parsed.password is not None or bool(secret_keys)
    shown = parsed._replace(password=None).difference_update_query(secret_keys)
    return shown.render_as_string(hide_password=False) + (" (password hidden)" if hidden else "")


def _cause(url: str, error: BaseException, connecting: bool) -> str | None:
    if isinstance(error, NoSuchModuleError):
        return f"no database dialect for {url.partition('://')[0]}:// (use {URL_EXAMPLE})"
    if isinstance(error, (ArgumentError, ValueError)):
        return f"not a database URL (use {URL_EXAMPLE})"
    if isinstance(error, OSError):
        if is_disk_full(error):
            return disk_full_message(error)
        return f"{error.strerror}: {error.filename}" if error.strerror and error.filename else str(error)
    driver_error = error.orig if isinstance(error, DBAPIError) else error
    code = getattr(driver_error, "sqlite_errorcode", None)
    if code is not None:
        return _sqlite_cause(url, code & 0xFF) or (_first_line(driver_error) if connecting else None)
    if getattr(driver_error, "sqlstate", None) == POSTGRES_DISK_FULL:
        return "the database server's disk is full"
    if connecting:
        return _connection_cause(url, _first_line(driver_error))
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return f"lost the connection to the database server ({_first_line(driver_error)})"
    return None


def _sqlite_cause(url: str, code: int) -> str | None:
    cause = SQLITE_CAUSES.get(code)
    if code == SQLITE_IOERR and _nearly_full(url):
        return f"the disk is full ({cause})"
    return cause


def _nearly_full(url: str) -> bool:
    """Whether the disk of the SQLite file at `url` has (almost) no space left."""
    try:
        folder = Path(make_url(url).database or ".").expanduser().parent
        return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
    except (ArgumentError, ValueError, OSError):
        return False


def _connection_cause(url: str, message: str) -> str:
    """Why a connection could not be opened, from the driver's message (PostgreSQL's server says why after FATAL)."""
    detail = message.partition("FATAL:")[2].strip() or message.rpartition("failed: ")[2].strip() or message
    if "connection refused" in detail.lower():
        parsed = make_url(url)
        return f"connection refused (is the database server running on {parsed.host}:{parsed.port or 'its port'}?)"
    if "password authentication failed" in detail:
        user = detail.rpartition(" for user ")[2]
        return f"authentication failed for user {user} (wrong password?)"
    database = re.fullmatch(r'database "(.*)" does not exist', detail)
    if database:
        return f'no such database "{database.group(1)}"'
    return f"cannot connect ({detail})"


def _first_line(error: Any) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
