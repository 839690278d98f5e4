"""Whether a run is alive. A running run writes a heartbeat every few seconds (`PROMPTOPT_HEARTBEAT_S`, default 5)
from a daemon thread; a run still stored as `running` whose heartbeat is older than three intervals, or missing,
belongs to a process that died (kill -9, a crash, a lost machine) and is shown as `interrupted`."""
from __future__ import annotations

import contextlib
import threading
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from promptopt.runs.engine import StoreError, env_seconds
from promptopt.runs.tables import RunRow, as_utc, utcnow

HEARTBEAT_ENV = "PROMPTOPT_HEARTBEAT_S"
DEFAULT_INTERVAL_S = 5.0
STALE_AFTER = 3
"""A heartbeat older than this many intervals means the run's process is gone."""


def heartbeat_interval() -> float:
    """Seconds between heartbeats: `$PROMPTOPT_HEARTBEAT_S`, default 5."""
    return env_seconds(HEARTBEAT_ENV, DEFAULT_INTERVAL_S)


def heartbeat_age(run: RunRow, now: datetime | None = None) -> float | None:
    """Seconds since the run's last heartbeat; None when it has none (a store written before heartbeats)."""
    if run.heartbeat_at is None:
        return None
    return ((now or utcnow()) - as_utc(run.heartbeat_at)).total_seconds()


def shown_status(run: RunRow, now: datetime | None = None) -> str:
    """The stored status, except that a `running` run whose heartbeat is stale or missing is `interrupted`."""
    if run.status != "running":
        return run.status
    age = heartbeat_age(run, now)
    return "interrupted" if age is None or age > STALE_AFTER * heartbeat_interval() else "running"


def wall_seconds(run: RunRow, status: str, now: datetime | None = None) -> float:
    """Seconds from the run's start to its end: when it finished, else now while it is alive (`status`, as shown,
    is `running`), else its last heartbeat (a resumed run's time includes the pause)."""
    end = run.finished_at
    if end is None:
        end = (now or utcnow()) if status == "running" else run.heartbeat_at or now or utcnow()
    return max(0.0, (as_utc(end) - as_utc(run.created_at)).total_seconds())


class Heartbeat:
    """Writes a run's heartbeat when entered and then every interval from a daemon thread, until exited. A beat
    the store refuses (busy, unreachable) is skipped: the next one tries again."""

    def __init__(self, store: Any, run_id: str, interval_s: float | None = None) -> None:
        self.store, self.run_id = store, run_id
        self.interval_s = interval_s or heartbeat_interval()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_until_stopped, name="promptopt-heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()

    def beat(self) -> None:
        """Write the heartbeat now (only that column, so it never undoes a status written meanwhile)."""
        with contextlib.suppress(StoreError, SQLAlchemyError):
            self.store.update_run(self.run_id, heartbeat_at=utcnow())

    def _beat_until_stopped(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat()
