"""The search budget: model calls and wall-clock seconds, checked before any work is started."""
from __future__ import annotations

import time


class BudgetExhausted(RuntimeError):
    """The next piece of work would exceed the budget; the search stops with the incumbent it has."""


class Budget:
    """Counts model calls against `max_calls` and elapsed time against `max_seconds` (None = unlimited)."""

    def __init__(self, max_calls: int | None = None, max_seconds: float | None = None) -> None:
        self.max_calls = max_calls
        self.max_seconds = max_seconds
        self.calls = 0
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def charge(self, calls: int) -> None:
        """Reserve `calls` model calls, or raise `BudgetExhausted` without reserving anything."""
        if self.max_calls is not None and self.calls + calls > self.max_calls:
            raise BudgetExhausted(f"call budget: {self.calls} of {self.max_calls} used, {calls} more needed")
        if self.max_seconds is not None and self.elapsed > self.max_seconds:
            raise BudgetExhausted(f"time budget: {self.elapsed:.0f}s of {self.max_seconds:.0f}s used")
        self.calls += calls
