"""The shared scorer: runs the task model on cases under a candidate prompt, evaluates, caches, charges the
budget and writes every evaluation and model call to the store as it goes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from promptopt.case import Case, ToolCall
from promptopt.evaluators.base import Evaluator
from promptopt.models.base import ModelBackend
from promptopt.optimizer.budget import Budget
from promptopt.runs.store import EvaluationRecord, Store
from promptopt.tasks.tool_routing import ToolRoutingTask

CHUNK = 32


@dataclass(frozen=True)
class CaseResult:
    """One case scored under one prompt."""

    case_id: int
    output: ToolCall
    score: float
    passed: bool
    feedback: str
    error: str = ""


Progress = Callable[[str], None]


class Scorer:
    """Scores prompts on cases; the same (prompt, case) is never run twice in a run."""

    def __init__(self, task: ToolRoutingTask, model: ModelBackend, evaluator: Evaluator, store: Store,
                 run_id: str, budget: Budget, progress: Progress | None = None) -> None:
        self.task, self.model, self.evaluator = task, model, evaluator
        self.store, self.run_id, self.budget = store, run_id, budget
        self.progress = progress or (lambda message: None)
        self._cache: dict[tuple[str, int], CaseResult] = {}
        self._stored: set[tuple[int, int]] = set()

    def score(self, candidate_id: int, prompt: str, cases: Sequence[Case], label: str = "",
              charge: bool = True) -> dict[int, CaseResult]:
        """Results for `cases` under `prompt`, keyed by case id. `charge=False` is for the final report only."""
        todo = [c for c in cases if (prompt, c.id) not in self._cache]
        if todo and charge:
            self.budget.charge(len(todo))
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            routed = self.task.run(self.model, prompt, chunk)
            for case, answer in zip(chunk, routed):
                if answer.error:
                    result = CaseResult(case.id, answer.call, 0.0, False, f"model call failed: {answer.error}",
                                        answer.error)
                else:
                    score = self.evaluator(case, answer.call)
                    result = CaseResult(case.id, answer.call, score.value, score.passed, score.feedback)
                self._cache[(prompt, case.id)] = result
            failed = sum(1 for answer in routed if answer.error)
            if failed:
                self.progress(f"{label}: {failed} model call(s) failed after retries; counted as wrong, "
                              f"first error: {next(a.error for a in routed if a.error)}")
            if charge:
                self.budget.spend(r.record for r in routed)
            self._save(candidate_id, prompt, chunk, [r.record for r in routed])
            self.progress(f"{label} {min(start + CHUNK, len(todo))}/{len(todo)} cases".strip())
        self._save(candidate_id, prompt, [c for c in cases if (candidate_id, c.id) not in self._stored], [])
        return {c.id: self._cache[(prompt, c.id)] for c in cases}

    def _save(self, candidate_id: int, prompt: str, cases: Sequence[Case], calls: list) -> None:
        if not cases and not calls:
            return
        records = [
            EvaluationRecord(case_id=c.id, output=r.output, score=r.score, passed=r.passed, feedback=r.feedback,
                             evaluator=self.evaluator.name, error=r.error)
            for c in cases
            for r in [self._cache[(prompt, c.id)]]
        ]
        self.store.add_evaluations(candidate_id, records, calls, self.run_id)
        self._stored.update((candidate_id, c.id) for c in cases)


def accuracy(results: dict[int, CaseResult]) -> float:
    """Share of passed cases; 0 for no cases."""
    return sum(r.passed for r in results.values()) / len(results) if results else 0.0
