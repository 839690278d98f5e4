"""A run's search trajectory from the store: every candidate's training and validation score by step, and the
incumbent's validation score after each step."""
from __future__ import annotations

from dataclasses import dataclass

from promptopt.runs.store import Store


@dataclass(frozen=True)
class CandidateScores:
    """One candidate's place in the search: its step, operator, fate, and the share of the training and
    validation cases it was scored on that it passed (None: not scored on that split)."""

    candidate_id: int
    step: int
    operator: str
    status: str
    rejection: str
    train: float | None
    train_cases: int
    val: float | None
    val_cases: int

    @property
    def accepted(self) -> bool:
        """Accepted as the incumbent (the seed counts: it is the first incumbent)."""
        return self.status == "accepted"


def candidate_scores(store: Store, run_id: str) -> list[CandidateScores]:
    """Every candidate of the run, in the order they were proposed, with its training and validation scores."""
    splits = store.run_splits(run_id)
    scored = []
    for candidate in store.candidates(run_id):
        by_split: dict[str, list[bool]] = {"train": [], "val": []}
        for case_id, evaluation in store.evaluations(candidate.id).items():
            split = splits.get(case_id, "")
            if split in by_split:
                by_split[split].append(evaluation.passed)
        train, val = by_split["train"], by_split["val"]
        scored.append(CandidateScores(candidate.id, candidate.step, candidate.operator, candidate.status,
                                      candidate.rejection, _share(train), len(train), _share(val), len(val)))
    return scored


def incumbent_by_step(store: Store, run_id: str) -> list[tuple[int, float]]:
    """(step, the incumbent's validation score after it), for the steps that have one."""
    return [(step.step, step.val_accuracy) for step in store.steps(run_id) if step.val_accuracy >= 0]


def _share(passed: list[bool]) -> float | None:
    return sum(passed) / len(passed) if passed else None
