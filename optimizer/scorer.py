"""The shared scorer: runs the task model on cases under a candidate prompt, evaluates, caches, charges the
budget and writes every evaluation and model call to the store as it goes."""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

from promptopt.case import Case, ToolCall
from promptopt.evaluators.base import Evaluator, component_names, evaluate_all, model_calls_per_case
from promptopt.models.base import CallRecord, Completion, ModelBackend, Routed
from promptopt.optimizer.budget import Budget
from promptopt.progress import Counter, Say, counter
from promptopt.runs.search_writes import SearchWrites
from promptopt.runs.store import EvaluationRecord
from promptopt.tasks.tool_routing import ToolRoutingTask

CHUNK = 32
# A concurrent backend gets chunks of this many calls per slot, so the pause between chunks (evaluating,
# writing to the store) is rare next to the time the calls take.
CALLS_PER_SLOT = 8
LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseResult:
    """One case scored under one prompt."""

    case_id: int
    output: ToolCall
    score: float
    passed: bool
    feedback: str
    error: str = ""
    scores: dict[str, float] | None = None
    """Each component evaluator's value, by name (a single evaluator: its own name)."""
    seconds: float = field(default=0.0, compare=False)
    """How long the case's model call took (0 when the response cache answered); not part of the result."""


class Scorer:
    """Scores prompts on cases; the same (prompt, case) is never run twice in a run."""

    def __init__(self, task: ToolRoutingTask, model: ModelBackend, evaluator: Evaluator, store: SearchWrites,
                 run_id: str, budget: Budget, progress: Say | None = None) -> None:
        self.task, self.model, self.evaluator = task, model, evaluator
        self.store, self.run_id, self.budget = store, run_id, budget
        self.progress = progress or (lambda message: None)
        self._cache: dict[tuple[str, int], CaseResult] = {}
        self._stored: set[tuple[int, int]] = set()
        self._notices: list[str] = []

    def score(self, candidate_id: int, prompt: str, cases: Sequence[Case], label: str = "",
              charge: bool = True) -> dict[int, CaseResult]:
        """Results for `cases` under `prompt`, keyed by case id. `charge=False` is for the final report only."""
        cases = list({c.id: c for c in cases}.values())
        todo = [c for c in cases if (prompt, c.id) not in self._cache]
        if todo and charge:
            # a judge's calls are reserved with the task model's, before any is made
            self.budget.charge(len(todo) * (1 + model_calls_per_case(self.evaluator)))
        size = max(CHUNK, CALLS_PER_SLOT * getattr(self.model, "concurrency", 1))
        chunks = [todo[start:start + size] for start in range(0, len(todo), size)]
        # two chunks are in flight at once: the next one's calls fill the slots the current one frees while it
        # drains, and its answers are evaluated and stored while later calls are still out
        pool = ThreadPoolExecutor(max_workers=2)
        try:
            with counter(self.progress, label, len(todo)) as count:
                self._score_chunks(pool, candidate_id, prompt, chunks, label, charge, count)
        except BaseException:
            # interrupted (Ctrl-C, SIGTERM) or failed: never wait for the chunk still out, its calls may hang
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        self._save(candidate_id, prompt, [c for c in cases if (candidate_id, c.id) not in self._stored], [])
        return {c.id: self._cache[(prompt, c.id)] for c in cases}

    def _score_chunks(self, pool: ThreadPoolExecutor, candidate_id: int, prompt: str, chunks: list[list[Case]],
                      label: str, charge: bool, count: Counter) -> None:
        """Run the chunks on `pool`, two at a time, evaluating and storing each as it comes back."""
        pending = [pool.submit(self.task.run, self.model, prompt, chunk) for chunk in chunks[:2]]
        for index, chunk in enumerate(chunks):
            started = time.monotonic()
            routed = pending.pop(0).result()
            self.announce(routed)
            if index + 2 < len(chunks):
                pending.append(pool.submit(self.task.run, self.model, prompt, chunks[index + 2]))
            calls = [r.record for r in routed] + self._record(prompt, chunk, routed, label)
            if charge:
                self.budget.spend(calls)
            self._save(candidate_id, prompt, chunk, calls)
            count.advance(len(chunk))
            LOGGER.debug("%s: batch %d of %d: %d cases, %d passed, %d model calls (%d from cache, %d failed), "
                         "tokens in %d, out %d; %.2fs waiting for answers", label or "scoring", index + 1,
                         len(chunks), len(chunk), sum(self._cache[(prompt, c.id)].passed for c in chunk), len(calls),
                         sum(c.cache_hit for c in calls), sum(bool(c.error) for c in calls),
                         sum(c.tokens_in for c in calls), sum(c.tokens_out for c in calls),
                         time.monotonic() - started)

    def announce(self, answers: Sequence[Routed | Completion]) -> None:
        """Say each backend notice (a switch of tool protocol, of one call per sample) as it comes, and keep it
        for the run's steps."""
        for answer in answers:
            if answer.notice:
                self.progress(answer.notice)
                self._notices.append(answer.notice)

    def with_notices(self, details: dict[str, Any] | None) -> dict[str, Any] | None:
        """A step's details with the backend notices said since the last step (a switch of tool protocol), which
        are then forgotten, so the run keeps what was said about how its model was asked (`details` as given when
        there are none)."""
        notices, self._notices = self._notices, []
        return {**(details or {}), "notices": notices} if notices else details

    def _record(self, prompt: str, chunk: Sequence[Case], routed: Sequence[Routed], label: str) -> list[CallRecord]:
        """Evaluate a chunk's answers into the cache (in one batch where the evaluator can); a failed call is a
        failed evaluation, said out loud. Returns the model calls the evaluator made (a judge's)."""
        answered = [(case, answer) for case, answer in zip(chunk, routed) if not answer.error]
        scores = evaluate_all(self.evaluator, [c for c, _ in answered], [a.call for _, a in answered])
        for (case, answer), score in zip(answered, scores):
            self._cache[(prompt, case.id)] = CaseResult(case.id, answer.call, score.value, score.passed,
                                                        score.feedback,
                                                        scores=dict(score.parts or {self.evaluator.name: score.value}),
                                                        seconds=answer.record.latency_s)
        for case, answer in zip(chunk, routed):
            if answer.error:
                self._cache[(prompt, case.id)] = CaseResult(
                    case.id, answer.call, 0.0, False, f"model call failed: {answer.error}", answer.error,
                    scores={name: 0.0 for name in component_names(self.evaluator)}, seconds=answer.record.latency_s)
        failed = [answer.error for answer in routed if answer.error]
        if failed:
            self.progress(f"{label}: {len(failed)} model call(s) failed after retries; counted as wrong, "
                          f"first error: {failed[0]}")
        return [call for score in scores for call in score.calls]

    def _save(self, candidate_id: int, prompt: str, cases: Sequence[Case], calls: list) -> None:
        if not cases and not calls:
            return
        records = [
            EvaluationRecord(case_id=c.id, output=r.output, score=r.score, passed=r.passed, feedback=r.feedback,
                             evaluator=self.evaluator.name, error=r.error, scores=r.scores)
            for c in cases
            for r in [self._cache[(prompt, c.id)]]
        ]
        self.store.add_evaluations(candidate_id, records, calls, self.run_id)
        self._stored.update((candidate_id, c.id) for c in cases)


def outage(results: Sequence[CaseResult]) -> str | None:
    """Why these results say nothing about the prompt: every task-model call failed (with the first error)."""
    errors = [r.error for r in results if r.error]
    if results and len(errors) == len(results):
        return f"every task-model call failed ({len(errors)} calls); the first error: {errors[0]}"
    return None


def accuracy(results: dict[int, CaseResult]) -> float:
    """Share of passed cases; 0 for no cases."""
    return sum(r.passed for r in results.values()) / len(results) if results else 0.0
