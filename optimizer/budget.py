"""The search budget: model calls, tokens, dollars and wall-clock seconds for the whole run.

Calls are reserved before any work starts, so the call limit is never passed. Tokens and dollars are only known
once calls return, so they are added afterwards and checked before the next piece of work: a run stops at most
one batch past those limits. Every call the search makes counts, cached or not, so a re-run of a finished run
takes exactly the same path; the report says how many calls were new and what they really cost.
"""
from __future__ import annotations

import time
from typing import Any, Iterable

from promptopt.models.base import CallRecord


class BudgetExhausted(RuntimeError):
    """The next piece of work would exceed the budget; the search stops with the incumbent it has."""


class Budget:
    """Counts model calls, tokens, dollars and elapsed seconds against the run's `budget_calls`, `budget_tokens`,
    `budget_usd` and `budget_seconds` (None: unlimited)."""

    def __init__(self, budget_calls: int | None = None, budget_seconds: float | None = None,
                 budget_tokens: int | None = None, budget_usd: float | None = None) -> None:
        self.budget_calls, self.budget_seconds = budget_calls, budget_seconds
        self.budget_tokens, self.budget_usd = budget_tokens, budget_usd
        self.calls = 0
        self.tokens = 0
        self.usd = 0.0
        self.started = time.monotonic()

    @classmethod
    def of(cls, config: Any) -> "Budget":
        """The budget a run's config sets (its `budget_*` settings)."""
        return cls(config.budget_calls, config.budget_seconds, config.budget_tokens, config.budget_usd)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def charge(self, calls: int) -> None:
        """Reserve `calls` model calls, or raise `BudgetExhausted` without reserving anything."""
        if self.budget_calls is not None and self.calls + calls > self.budget_calls:
            raise BudgetExhausted(f"call budget: {self.calls} of {self.budget_calls} used, {calls} more needed")
        if self.budget_seconds is not None and self.elapsed > self.budget_seconds:
            raise BudgetExhausted(f"time budget: {self.elapsed:.0f}s of {self.budget_seconds:.0f}s used")
        if self.budget_tokens is not None and self.tokens >= self.budget_tokens:
            raise BudgetExhausted(f"token budget: {self.tokens} of {self.budget_tokens} used")
        if self.budget_usd is not None and self.usd >= self.budget_usd:
            raise BudgetExhausted(f"dollar budget: ${self.usd:.4f} of ${self.budget_usd:.4f} used")
        self.calls += calls

    def spend(self, records: Iterable[CallRecord]) -> None:
        """Add the tokens and the list-price cost of finished calls (cached ones included)."""
        for record in records:
            self.tokens += record.tokens_in + record.tokens_out
            self.usd += record.cost_usd
