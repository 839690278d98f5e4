"""What a search writes to the store, declared once: the live `Store` and the resumed run's `ResumedStore` both
implement it (tests/test_resume.py compares their method sets), so a write the replay does not mirror cannot be
written twice on resume by omission. The one read here, the BPO pairs a run had seen, depends on how far a replay
has come."""
from __future__ import annotations

from typing import Any, Protocol, Sequence

from promptopt.models.base import CallRecord
from promptopt.runs.store import BpoPairRecord, EvaluationRecord
from promptopt.runs.tables import BpoPairRow


class SearchWrites(Protocol):
    """The store as the run loop, its scorer and its strategies write it."""

    def create_run(self, task: str, strategy: str, config: dict[str, Any], tools: list[Any],
                   splits: dict[int, str], order: Sequence[int] = ()) -> str:
        ...

    def update_run(self, run_id: str, **values: Any) -> None:
        ...

    def add_candidate(self, run_id: str, step: int, prompt: str, operator: str, parent_ids: Sequence[int] = (),
                      rationale: str = "", status: str = "proposed", rejection: str = "",
                      details: dict[str, Any] | None = None) -> int:
        ...

    def set_candidate_status(self, candidate_id: int, status: str, rejection: str = "") -> None:
        ...

    def add_evaluations(self, candidate_id: int, records: Sequence[EvaluationRecord],
                        calls: Sequence[CallRecord], run_id: str, replace: bool = False) -> None:
        ...

    def add_calls(self, run_id: str | None, calls: Sequence[CallRecord]) -> None:
        ...

    def add_step(self, run_id: str, step: int, incumbent_id: int, val_accuracy: float, message: str,
                 details: dict[str, Any] | None = None) -> None:
        ...

    def add_bpo_pairs(self, run_id: str | None, pairs: Sequence[BpoPairRecord]) -> list[int]:
        ...

    def bpo_pairs(self, run_id: str | None = None, kept_only: bool = True) -> list[BpoPairRow]:
        ...


SEARCH_WRITES = tuple(name for name in vars(SearchWrites) if not name.startswith("_"))
"""The protocol's method names."""
