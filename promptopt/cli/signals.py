"""How the command line stops on Ctrl-C. `promptopt run` (also on SIGTERM): the run is stored as interrupted, one
line says how to resume it, and the process exits at once instead of waiting for model calls still in flight (their
worker threads would otherwise hold interpreter exit until their timeouts and retries ran out). While the command
line loads (its imports take seconds): one line and exit 130, not a traceback of whatever import was running."""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any, Iterator

import click

_received = {"signal": int(signal.SIGINT)}
INTERRUPTED_EXIT = 128 + int(signal.SIGINT)


def _terminate(signum: int, _frame: Any) -> None:
    """SIGTERM handler: stop the way Ctrl-C does, so the run is marked before the process goes."""
    _received["signal"] = signum
    raise KeyboardInterrupt


@contextlib.contextmanager
def exit_on_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt inside the block; on either, say what became of the run and exit with
    128 + the signal's number."""
    installed = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if installed else None
    try:
        yield
    except KeyboardInterrupt as error:
        click.echo(interrupted_message(getattr(error, "run_id", None)), err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + _received["signal"])
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """Around the command line's imports: Ctrl-C there prints "interrupted" and exits 130 (by `SystemExit`, so the
    console script or `python -m` ends quietly)."""
    try:
        yield
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
        raise SystemExit(INTERRUPTED_EXIT) from None


def interrupted_message(run_id: str | None) -> str:
    """The line printed when a run is stopped."""
    if run_id is None:
        return "interrupted; no run was stored as interrupted (see `promptopt runs list`)"
    return f"interrupted: run {run_id} is stored as interrupted; resume it with: promptopt run --resume {run_id}"
