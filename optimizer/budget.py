"""The search budget: model calls, tokens, dollars and wall-clock seconds for the whole run.

Calls are reserved before any work starts, so the call limit is never passed. Tokens and dollars are only known
once calls return, so they are added afterwards and checked before the next piece of work: a run stops at most
one batch past those limits. Every call the search makes counts, cached or not, so a re-run of a finished run
takes exactly the same path; the report says how many calls were new and what they really cost.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

from promptopt.models.base import CallRecord


class BudgetExhausted(RuntimeError):
    """The next piece of work would exceed the budget; the search stops with the incumbent it has."""


@dataclass(frozen=True)
class Limits:
    """The search's limits: model calls, wall-clock seconds, tokens (in + out) and dollars; None = unlimited."""

    calls: int | None = None
    seconds: float | None = None
    tokens: int | None = None
    usd: float | None = None


class Budget:
    """Counts model calls, tokens, dollars and elapsed seconds against their limits."""

    def __init__(self, limits: Limits | None = None) -> None:
        limits = limits or Limits()
        self.max_calls = limits.calls
        self.max_seconds = limits.seconds
        self.max_tokens = limits.tokens
        self.max_usd = limits.usd
        self.calls = 0
        self.tokens = 0
        self.usd = 0.0
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
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            raise BudgetExhausted(f"token budget: {self.tokens} of {self.max_tokens} used")
        if self.max_usd is not None and self.usd >= self.max_usd:
            raise BudgetExhausted(f"dollar budget: ${self.usd:.4f} of ${self.max_usd:.4f} used")
        self.calls += calls

    def spend(self, records: Iterable[CallRecord]) -> None:
        """Add the tokens and the list-price cost of finished calls (cached ones included)."""
        for record in records:
            self.tokens += record.tokens_in + record.tokens_out
            self.usd += record.cost_usd
