"""Resuming a run that did not finish. The search is deterministic for a given config, seed, cases and model
answers, and every model call is in the response cache as soon as it returns, so a run is resumed by searching
again from the start under its own id, through `ResumedStore`: a store that treats what the run already stored as
a replay log. Nothing is stored twice, and the budget counts exactly what the uninterrupted run counted."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy import select, update

from promptopt.models.base import CallRecord
from promptopt.runs.heartbeat import STALE_AFTER, heartbeat_interval
from promptopt.runs.report import RunNotFound
from promptopt.runs.store import BpoPairRecord, EvaluationRecord, Store, call_values
from promptopt.runs.tables import (
    BpoPairRow,
    CandidateRow,
    EvaluationRow,
    ModelCallRow,
    RunCaseRow,
    RunRow,
    StepRow,
    utcnow,
)
from promptopt.runs.writer_lock import run_status, writer_alive


class ResumeError(ValueError):
    """A run that cannot be resumed; the message says why and what to do instead."""


class ResumeDiverged(ResumeError):
    """The replay asked for something the stored run did not (another candidate, another pair): the run cannot
    be continued from what it stored."""


@dataclass(frozen=True)
class StoredRun:
    """What resuming a run reads back: its row (config and tools), seed prompt, and cases in the order given."""

    run: RunRow
    seed_prompt: str
    case_ids: list[int]
    splits: dict[int, str]


def load_resumable(store: Store, run_id: str) -> StoredRun:
    """The stored run `run_id`, if it can be resumed (interrupted or failed); `ResumeError` says why not. The
    resumer then takes the run's writer lock (`hold_writer`), which refuses a writer that started meanwhile."""
    run = store.run(run_id)
    if run is None:
        raise RunNotFound(run_id)
    status = run_status(store, run)
    if status == "finished":
        raise ResumeError(f"run {run_id} is finished; there is nothing to resume (promptopt export {run_id})")
    if status == "running" and writer_alive(store, run):
        raise ResumeError(f"run {run_id} is being written by {run.writer} (it holds the run's writer lock, even if "
                          "paused or waiting for the store); stop that process first, or let it finish")
    if status == "running":
        raise ResumeError(f"run {run_id} is still running (it wrote its heartbeat in the last "
                          f"{STALE_AFTER * heartbeat_interval():g} s); stop it first, or wait that long if its "
                          "process is gone")
    seed = next((c for c in store.candidates(run_id) if c.operator == "seed"), None)
    if seed is None:
        raise ResumeError(f"run {run_id} stopped before its seed prompt was stored; start it again instead")
    order = run_case_order(store, run_id)
    return StoredRun(run, seed.prompt, [case_id for case_id, _ in order], dict(order))


def run_case_order(store: Store, run_id: str) -> list[tuple[int, str]]:
    """(case id, split) of a run's cases in the order the run was given them; by case id for runs stored before
    the order was kept (the order of a first import, which is that of its file)."""
    with store.session() as session:
        rows = list(session.scalars(select(RunCaseRow).where(RunCaseRow.run_id == run_id)))
    if any(row.position is None for row in rows):
        rows.sort(key=lambda row: row.case_id)
    else:
        rows.sort(key=lambda row: row.position)
    return [(row.case_id, row.split) for row in rows]


class ResumedStore:
    """`store`'s search writes (`SearchWrites`) as the replayed run makes them: the i-th candidate registered is the
    i-th stored one (same prompt, else `ResumeDiverged`), stored evaluations are not written again (but redone where
    their call had failed), the first model calls, steps and BPO pairs the run stored stand for the replay's first
    ones, and everything past them is written as usual. Status updates go to `store` unchanged; reads go to the
    store itself, not through this."""

    def __init__(self, store: Store, run_id: str) -> None:
        self._store, self.run_id = store, run_id
        with store.session() as session:
            self._candidates = list(session.execute(
                select(CandidateRow.id, CandidateRow.operator, CandidateRow.prompt)
                .where(CandidateRow.run_id == run_id).order_by(CandidateRow.id)))
            self._evaluated = {(candidate_id, case_id): bool(error) for candidate_id, case_id, error in session.execute(
                select(EvaluationRow.candidate_id, EvaluationRow.case_id, EvaluationRow.error)
                .join(CandidateRow, CandidateRow.id == EvaluationRow.candidate_id)
                .where(CandidateRow.run_id == run_id))}
            self._calls = list(session.execute(select(ModelCallRow.id, ModelCallRow.error)
                                               .where(ModelCallRow.run_id == run_id).order_by(ModelCallRow.id)))
            self._steps = len(list(session.scalars(select(StepRow.id).where(StepRow.run_id == run_id))))
            self._pairs = list(session.execute(select(BpoPairRow.id, BpoPairRow.optimized)
                                               .where(BpoPairRow.run_id == run_id).order_by(BpoPairRow.id)))
        self._replayed = {"candidates": 0, "calls": 0, "steps": 0, "pairs": 0}

    def describe(self) -> str:
        """What the replay will find stored, for the progress log."""
        return (f"replaying {len(self._candidates)} candidates, {len(self._evaluated)} evaluations, "
                f"{len(self._calls)} model calls and {self._steps} steps already stored (the response cache "
                "answers the calls already made)")

    def create_run(self, task: str, strategy: str, config: dict[str, Any], tools: list[Any],
                   splits: dict[int, str], order: Sequence[int] = ()) -> str:
        """The resumed run's own id; it is running again."""
        self._store.update_run(self.run_id, status="running", error="", finished_at=None, heartbeat_at=utcnow())
        return self.run_id

    def update_run(self, run_id: str, **values: Any) -> None:
        """Status, winner and summary updates are the store's own (the last one written wins)."""
        self._store.update_run(run_id, **values)

    def set_candidate_status(self, candidate_id: int, status: str, rejection: str = "") -> None:
        """A stored candidate's status is rewritten with the replay's verdict, the same as the run's."""
        self._store.set_candidate_status(candidate_id, status, rejection)

    def add_candidate(self, run_id: str, step: int, prompt: str, operator: str, *args: Any, **kwargs: Any) -> int:
        """The stored candidate the replay has reached (checked to be the same prompt), else a new one."""
        index = self._next("candidates", len(self._candidates))
        if index is None:
            return self._store.add_candidate(run_id, step, prompt, operator, *args, **kwargs)
        candidate_id, stored_operator, stored_prompt = self._candidates[index]
        if (stored_operator, stored_prompt) != (operator, prompt):
            raise ResumeDiverged(
                f"cannot resume run {self.run_id}: the run took another path (its candidate {candidate_id}, "
                f"number {index + 1}, is not the one the replay proposes; did the cases, the cache or the "
                "model's answers change?); start it again instead")
        return candidate_id

    def add_evaluations(self, candidate_id: int, records: Sequence[EvaluationRecord],
                        calls: Sequence[CallRecord], run_id: str, replace: bool = False) -> None:
        """Evaluations not yet stored, and those stored with a failed call (redone), with the calls past the log."""
        stored = [self._evaluated.get((candidate_id, r.case_id)) for r in records]
        fresh = [r for r, failed in zip(records, stored) if failed is None or failed]
        for record in fresh:
            self._evaluated[(candidate_id, record.case_id)] = bool(record.error)
        self._store.add_evaluations(candidate_id, fresh, self._past_log(calls, run_id), run_id,
                                    replace=any(stored))

    def add_calls(self, run_id: str | None, calls: Sequence[CallRecord]) -> None:
        """The optimizer's calls past the log."""
        self._store.add_calls(run_id, self._past_log(calls, run_id))

    def add_step(self, run_id: str, *args: Any, **kwargs: Any) -> None:
        """A step past the log (the steps it holds are the replay's first ones)."""
        if self._next("steps", self._steps) is None:
            self._store.add_step(run_id, *args, **kwargs)

    def add_bpo_pairs(self, run_id: str | None, pairs: Sequence[BpoPairRecord]) -> list[int]:
        """The stored pairs' ids for the pairs the log holds (checked to be the same), new ids for the rest."""
        ids = []
        for position, pair in enumerate(pairs):
            index = self._next("pairs", len(self._pairs))
            if index is None:
                return ids + self._store.add_bpo_pairs(run_id, pairs[position:])
            pair_id, optimized = self._pairs[index]
            if optimized != pair.optimized:
                raise ResumeDiverged(f"cannot resume run {self.run_id}: the run took another path (its BPO pair "
                                     f"{pair_id} is not the one the replay builds); start it again instead")
            ids.append(pair_id)
        return ids

    def bpo_pairs(self, run_id: str | None = None, kept_only: bool = True) -> list[BpoPairRow]:
        """The pairs the run saw at this point: while the log still holds pairs of this run, those stored before
        the next of them."""
        rows = self._store.bpo_pairs(run_id, kept_only)
        replayed = self._replayed["pairs"]
        if replayed < len(self._pairs):
            rows = [row for row in rows if row.id < self._pairs[replayed][0]]
        return rows

    def _next(self, kind: str, logged: int) -> int | None:
        """The log position of the replay's next `kind` (advancing it), or None once past the log."""
        index = self._replayed[kind]
        if index >= logged:
            return None
        self._replayed[kind] = index + 1
        return index

    def _past_log(self, calls: Sequence[CallRecord], run_id: str | None) -> list[CallRecord]:
        """The calls the log does not hold; logged calls that had failed are rewritten with the replay's."""
        fresh = []
        for call in calls:
            index = self._next("calls", len(self._calls))
            if index is None:
                fresh.append(call)
            elif self._calls[index][1] and call.error != self._calls[index][1]:
                self._rewrite_call(self._calls[index][0], call, run_id)
        return fresh

    def _rewrite_call(self, row_id: int, call: CallRecord, run_id: str | None) -> None:
        """Overwrite a logged call that had failed with the replay's (which the cache could not answer)."""
        values = {k: v for k, v in call_values(run_id, call).items() if k != "created_at"}
        with self._store.session() as session, session.begin():
            session.execute(update(ModelCallRow).where(ModelCallRow.id == row_id).values(**values))
