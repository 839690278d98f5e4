"""Progress of long phases (scoring cases, search steps, loading a model), for a person at a terminal or a CI log.

A `Progress` is called with a message, as the Python API's `progress=callable` always was, and it also counts
phases whose size is known, with counts and time left:

    with progress.counter("seed train", total=48, unit="cases") as count:
        for chunk in chunks:
            ...
            count.advance(len(chunk))

Code handed a plain callable instead uses the module's `counter(progress, label, total)`: it returns the
object's own counter when it has one, else one that says `label done/total unit` through the callable (at the
end, and on the way at most every tenth of the phase, so advancing unit by unit is fine).

Code that is not handed a progress object (loading or converting the embedded model's weights) counts through
`current()`, the progress of the command being run (silent outside the command line):

    from promptopt.progress import current

    with current().counter("converting weights", total=len(tensors), unit="tensors") as count:
        for tensor in tensors:
            ...
            count.advance()

What is shown depends on `terminal_progress(verbosity)`: nothing (`--quiet`); tqdm bars on stderr when it is a
terminal; plain lines otherwise (CI, pipes, tests), never carriage returns. Per-batch figures are logged at
debug level (the `promptopt` logger), which the command line shows with `--verbose`.
"""
from __future__ import annotations

import contextlib
import enum
import os
import sys
import time
from typing import Callable, ContextManager, Iterator, Protocol, TextIO

from tqdm import tqdm

Say = Callable[[str], None]
"""Anything called with a progress message: a `Progress`, `print`, or `list.append` in a test."""


class Verbosity(enum.IntEnum):
    """How much a command prints besides its result: `--quiet`, the default, `--verbose`."""

    QUIET = 0
    NORMAL = 1
    VERBOSE = 2


class Counter(Protocol):
    """A phase being counted: `advance(n)` when `n` more of its units are done."""

    def advance(self, n: int = 1) -> None: ...


class _Uncounted:
    """A counter that shows nothing."""

    def advance(self, n: int = 1) -> None:
        """Nothing to show."""


class Progress:
    """Silent progress (`--quiet`, and `current()` outside a command): messages and counters show nothing."""

    verbose = False

    def __call__(self, message: str) -> None:
        """Show a progress message (here: nothing)."""

    @contextlib.contextmanager
    def counter(self, label: str, total: int, unit: str = "cases") -> Iterator[Counter]:
        """Count a phase of `total` units (here: silently)."""
        yield _Uncounted()


class LineProgress(Progress):
    """Plain lines on a stream, `[  12.3s] message`; a counter says `label done/total unit`, with the time left
    while it is not done, at its end and at most every tenth of the way."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = False) -> None:
        self.stream = stream
        self.verbose = verbose
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        """Print `message` with the seconds since the command started."""
        self.write(f"[{time.monotonic() - self.started:6.1f}s] {message}")

    def write(self, line: str) -> None:
        """One line on the stream (stderr unless given)."""
        stream = self.stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()

    @contextlib.contextmanager
    def counter(self, label: str, total: int, unit: str = "cases") -> Iterator[Counter]:
        """A counter that prints a line at the end of the phase and on the way (see `_CountLines`)."""
        yield _CountLines(self, label, total, unit)


class _CountLines:
    """`label done/total unit`, and about how long is left, as a line when the phase ends and on the way at most
    every tenth of it (or every `QUIET_S` seconds), so a phase counted unit by unit does not flood a CI log."""

    QUIET_S = 30.0

    def __init__(self, say: Say, label: str, total: int, unit: str) -> None:
        self.say, self.label, self.total, self.unit = say, label, total, unit
        self.done = self.said = 0
        self.started = self.said_at = time.monotonic()

    def advance(self, n: int = 1) -> None:
        """Count `n` more; say where the phase is when that is news."""
        self.done += n
        now = time.monotonic()
        if self.done < self.total and self.done - self.said < self.total / 10 and now - self.said_at < self.QUIET_S:
            return
        self.said, self.said_at = self.done, now
        left = ""
        if 0 < self.done < self.total:
            left = f", about {duration_text((now - self.started) * (self.total - self.done) / self.done)} left"
        self.say(f"{self.label} {self.done}/{self.total} {self.unit}{left}".strip())


class BarProgress(LineProgress):
    """tqdm bars with counts, rate and ETA on a terminal; messages are printed above the bars."""

    def write(self, line: str) -> None:
        """One line above any bar."""
        tqdm.write(line, file=self.stream or sys.stderr)

    @contextlib.contextmanager
    def counter(self, label: str, total: int, unit: str = "cases") -> Iterator[Counter]:
        """A bar that disappears when the phase is done (the messages say how it went); none for an empty phase."""
        if total <= 0:
            yield _Uncounted()
            return
        stream = self.stream or sys.stderr
        sized = _columns(stream) > 0  # a terminal that reports no width (0 columns) would get no bar at all
        bar = tqdm(total=total, desc=label, unit=f" {unit}", file=stream, leave=False, mininterval=0.2,
                   dynamic_ncols=sized, ncols=None if sized else 100)
        try:
            yield _Bar(bar)
        finally:
            bar.close()


class _Bar:
    """A tqdm bar as a `Counter`."""

    def __init__(self, bar: tqdm) -> None:
        self.bar = bar

    def advance(self, n: int = 1) -> None:
        """Move the bar `n` units."""
        self.bar.update(n)


def _columns(stream: TextIO) -> int:
    """The width of the terminal `stream` writes to; 0 when it reports none."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def terminal_progress(verbosity: Verbosity = Verbosity.NORMAL, stream: TextIO | None = None) -> Progress:
    """The progress a command shows on `stream` (stderr): nothing when quiet, bars on a terminal, else lines."""
    if verbosity == Verbosity.QUIET:
        return Progress()
    target = stream or sys.stderr
    verbose = verbosity == Verbosity.VERBOSE
    isatty = getattr(target, "isatty", None)
    kind = BarProgress if isatty is not None and isatty() else LineProgress
    return kind(stream, verbose)


def counter(progress: Say | None, label: str, total: int, unit: str = "cases",
            say_counts: bool = True) -> ContextManager[Counter]:
    """`progress`'s own counter when it has one; for a plain callable, one that says `label done/total unit` as it
    goes (nothing when `say_counts` is False: the caller's own messages already say it)."""
    own = getattr(progress, "counter", None)
    if own is not None:
        return own(label, total, unit)
    if progress is None or not say_counts:
        return contextlib.nullcontext(_Uncounted())
    return contextlib.nullcontext(_CountLines(progress, label, total, unit))


_current: list[Progress] = [Progress()]


def current() -> Progress:
    """The progress of the command being run (see `showing`); silent when none is."""
    return _current[-1]


@contextlib.contextmanager
def showing(progress: Progress) -> Iterator[Progress]:
    """Make `progress` what `current()` returns while the block runs."""
    _current.append(progress)
    try:
        yield progress
    finally:
        _current.remove(progress)


def duration_text(seconds: float) -> str:
    """`4.2s`, `42s`, `3m05s` or `1h02m`."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
