"""The store: every case, run, candidate, evaluation, model call and BPO pair, in any SQLAlchemy database.

SQLite at `~/.promptopt/promptopt.db` by default (see `promptopt.config`), or PostgreSQL (`promptopt[postgres]`).
Writes happen as the run goes, each in its own short transaction, so a killed run leaves everything up to its
last step and processes sharing a store wait for each other (up to `PROMPTOPT_DB_TIMEOUT`) instead of failing.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from sqlalchemy import Integer, func, insert, select
from sqlalchemy import case as sql_case
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from promptopt.case import Case, ToolCall
from promptopt.config import default_db_url
from promptopt.models.base import CallRecord
from promptopt.runs.engine import StoreBusy, StoreError, create_schema, open_engine
from promptopt.runs.tables import (
    BpoPairRow,
    CandidateRow,
    CaseRow,
    EvaluationRow,
    ModelCallRow,
    RunCaseRow,
    RunRow,
    StepRow,
    utcnow,
)

__all__ = ["Store", "StoreBusy", "StoreError", "ImportResult", "EvaluationRecord", "BpoPairRecord"]


@dataclass(frozen=True)
class ImportResult:
    """Store ids of an imported file's cases, in file order, and how many were new."""

    case_ids: list[int]
    new: int

    @property
    def existing(self) -> int:
        return len(set(self.case_ids)) - self.new


@dataclass(frozen=True)
class EvaluationRecord:
    """One scored case under one candidate, as the scorer hands it to the store."""

    case_id: int
    output: ToolCall
    score: float
    passed: bool
    feedback: str
    evaluator: str
    error: str = ""
    scores: dict[str, float] | None = None


@dataclass(frozen=True)
class BpoPairRecord:
    """A BPO pair as pair construction hands it to the store: `kept` is False when a filter rejected it, and
    `rejection` says which."""

    source: str
    original: str
    optimized: str
    analysis: str
    kept: bool
    rejection: str = ""
    details: dict[str, Any] | None = None


class Store:
    """Typed access to the promptopt database."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_db_url()
        self.engine: Engine = open_engine(self.url)
        create_schema(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        return self._session()

    # cases
    def import_cases(self, cases: Sequence[Case], imported_from: str = "") -> ImportResult:
        """Insert cases not yet stored (by content hash) in one transaction; return every case's id."""
        ids: list[int] = []
        new = 0
        with self.session() as session, session.begin():
            known = {}
            for case in cases:
                digest = case.content_hash()
                if digest not in known:
                    known[digest] = session.scalar(select(CaseRow.id).where(CaseRow.content_hash == digest))
                if known[digest] is None:
                    row = _case_row(case, digest, imported_from)
                    session.add(row)
                    session.flush()
                    known[digest] = row.id
                    new += 1
                ids.append(known[digest])
        return ImportResult(case_ids=ids, new=new)

    def cases(self, ids: Iterable[int] | None = None, label: str | None = None, limit: int | None = None) -> list[Case]:
        """Stored cases, optionally only `ids` (in that order) or one label."""
        with self.session() as session:
            query = select(CaseRow).order_by(CaseRow.id)
            if label:
                query = query.where(CaseRow.label == label)
            if ids is not None:
                wanted = list(ids)
                rows = {r.id: r for r in session.scalars(query.where(CaseRow.id.in_(wanted)))}
                return [_case(rows[i]) for i in wanted if i in rows]
            if limit:
                query = query.limit(limit)
            return [_case(r) for r in session.scalars(query)]

    def case(self, case_id: int) -> Case | None:
        with self.session() as session:
            row = session.get(CaseRow, case_id)
            return _case(row) if row else None

    def count_cases(self) -> int:
        with self.session() as session:
            return session.scalar(select(func.count(CaseRow.id))) or 0

    # runs
    def create_run(self, task: str, strategy: str, config: dict[str, Any], tools: list[Any],
                   splits: dict[int, str]) -> str:
        """Record a new run with its configuration and the split of every case."""
        run_id = uuid.uuid4().hex[:12]
        with self.session() as session, session.begin():
            session.add(RunRow(id=run_id, task=task, strategy=strategy, config=config, tools=tools))
            session.flush()
            session.add_all(RunCaseRow(run_id=run_id, case_id=cid, split=split) for cid, split in splits.items())
        return run_id

    def run(self, run_id: str) -> RunRow | None:
        with self.session() as session:
            return session.get(RunRow, run_id)

    def runs(self, limit: int = 20) -> list[RunRow]:
        with self.session() as session:
            return list(session.scalars(select(RunRow).order_by(RunRow.created_at.desc()).limit(limit)))

    def run_splits(self, run_id: str) -> dict[int, str]:
        with self.session() as session:
            rows = session.scalars(select(RunCaseRow).where(RunCaseRow.run_id == run_id).order_by(RunCaseRow.id))
            return {r.case_id: r.split for r in rows}

    def update_run(self, run_id: str, **values: Any) -> None:
        with self.session() as session, session.begin():
            row = session.get(RunRow, run_id)
            for key, value in values.items():
                setattr(row, key, value)
            if values.get("status") in ("finished", "failed"):
                row.finished_at = utcnow()

    # candidates and evaluations
    def add_candidate(self, run_id: str, step: int, prompt: str, operator: str, parent_ids: Sequence[int] = (),
                      rationale: str = "", status: str = "proposed", rejection: str = "",
                      details: dict[str, Any] | None = None) -> int:
        with self.session() as session, session.begin():
            row = CandidateRow(run_id=run_id, step=step, prompt=prompt, operator=operator, parent_ids=list(parent_ids),
                               rationale=rationale, status=status, rejection=rejection, details=details or {})
            session.add(row)
            session.flush()
            return row.id

    def set_candidate_status(self, candidate_id: int, status: str, rejection: str = "") -> None:
        with self.session() as session, session.begin():
            row = session.get(CandidateRow, candidate_id)
            row.status = status
            row.rejection = rejection

    def candidate(self, candidate_id: int) -> CandidateRow | None:
        with self.session() as session:
            return session.get(CandidateRow, candidate_id)

    def candidates(self, run_id: str) -> list[CandidateRow]:
        with self.session() as session:
            query = select(CandidateRow).where(CandidateRow.run_id == run_id).order_by(CandidateRow.id)
            return list(session.scalars(query))

    def add_evaluations(self, candidate_id: int, records: Sequence[EvaluationRecord],
                        calls: Sequence[CallRecord], run_id: str) -> None:
        """Store a batch of evaluations and the model calls that produced them, atomically."""
        with self.session() as session, session.begin():
            if records:
                session.execute(insert(EvaluationRow), [
                    {"candidate_id": candidate_id, "case_id": r.case_id, "predicted_tool": r.output.name,
                     "predicted_arguments": dict(r.output.arguments), "predicted_text": r.output.text,
                     "score": r.score, "passed": r.passed, "feedback": r.feedback, "evaluator": r.evaluator,
                     "scores": r.scores, "error": r.error}
                    for r in records
                ])
            if calls:
                session.execute(insert(ModelCallRow), [_call_values(run_id, c) for c in calls])

    def evaluations(self, candidate_id: int) -> dict[int, EvaluationRow]:
        """A candidate's evaluations keyed by case id."""
        with self.session() as session:
            rows = session.scalars(select(EvaluationRow).where(EvaluationRow.candidate_id == candidate_id))
            return {r.case_id: r for r in rows}

    def add_calls(self, run_id: str | None, calls: Sequence[CallRecord]) -> None:
        if not calls:
            return
        with self.session() as session, session.begin():
            session.execute(insert(ModelCallRow), [_call_values(run_id, c) for c in calls])

    def call_totals(self, run_id: str) -> dict[str, Any]:
        """Model calls of a run: count, tokens, dollars spent (cache hits cost nothing), cache hits, failures."""
        with self.session() as session:
            row = session.execute(
                select(func.count(ModelCallRow.id), func.coalesce(func.sum(ModelCallRow.tokens_in), 0),
                       func.coalesce(func.sum(ModelCallRow.tokens_out), 0),
                       func.coalesce(func.sum(sql_case((ModelCallRow.cache_hit, 0.0), else_=ModelCallRow.cost_usd)), 0.0),
                       func.coalesce(func.sum(func.cast(ModelCallRow.cache_hit, Integer)), 0),
                       func.coalesce(func.sum(sql_case((ModelCallRow.error != "", 1), else_=0)), 0))
                .where(ModelCallRow.run_id == run_id)
            ).one()
        return {"model_calls": row[0], "tokens_in": int(row[1]), "tokens_out": int(row[2]),
                "cost_usd": float(row[3]), "cache_hits": int(row[4]), "new_model_calls": row[0] - int(row[4]),
                "failed_calls": int(row[5])}

    # steps
    def add_step(self, run_id: str, step: int, incumbent_id: int, val_accuracy: float, message: str,
                 details: dict[str, Any] | None = None) -> None:
        with self.session() as session, session.begin():
            session.add(StepRow(run_id=run_id, step=step, incumbent_id=incumbent_id, val_accuracy=val_accuracy,
                                message=message, details=dict(details or {})))

    def steps(self, run_id: str) -> list[StepRow]:
        with self.session() as session:
            return list(session.scalars(select(StepRow).where(StepRow.run_id == run_id).order_by(StepRow.id)))

    # BPO pairs
    def add_bpo_pairs(self, run_id: str | None, pairs: Sequence[BpoPairRecord]) -> list[int]:
        """Store pairs (kept and rejected) in one transaction; return their ids in order."""
        with self.session() as session, session.begin():
            rows = [BpoPairRow(run_id=run_id, source=p.source, original=p.original, optimized=p.optimized,
                               analysis=p.analysis, kept=p.kept, rejection=p.rejection, details=dict(p.details or {}))
                    for p in pairs]
            session.add_all(rows)
            session.flush()
            return [row.id for row in rows]

    def bpo_pairs(self, run_id: str | None = None, kept_only: bool = True) -> list[BpoPairRow]:
        """Stored BPO pairs, oldest first: one run's or all, only the kept ones unless `kept_only` is False."""
        with self.session() as session:
            query = select(BpoPairRow).order_by(BpoPairRow.id)
            if run_id is not None:
                query = query.where(BpoPairRow.run_id == run_id)
            if kept_only:
                query = query.where(BpoPairRow.kept.is_(True))
            return list(session.scalars(query))


def _case_row(case: Case, digest: str, imported_from: str) -> CaseRow:
    return CaseRow(
        content_hash=digest, query=case.query, context=list(case.context), expected_tool=case.expected.name,
        expected_arguments=dict(case.expected.arguments), expected_text=case.expected.text,
        actual_tool=case.actual.name if case.actual else None,
        actual_arguments=dict(case.actual.arguments) if case.actual else None,
        label=case.label, tags=list(case.tags), source=case.source, imported_from=imported_from,
    )


def _case(row: CaseRow) -> Case:
    actual = ToolCall(row.actual_tool, row.actual_arguments or {}) if row.actual_tool is not None else None
    expected = ToolCall(row.expected_tool, row.expected_arguments or {}, row.expected_text or "")
    return Case(query=row.query, expected=expected,
                context=tuple(row.context or ()), actual=actual, label=row.label, tags=tuple(row.tags or ()),
                source=row.source, id=row.id)


def _call_values(run_id: str | None, call: CallRecord) -> dict[str, Any]:
    return {"run_id": run_id, "role": call.role, "model": call.model, "tokens_in": call.tokens_in,
            "tokens_out": call.tokens_out, "latency_s": call.latency_s, "cache_hit": call.cache_hit,
            "cost_usd": call.cost_usd, "attempts": call.attempts, "error": call.error, "created_at": utcnow()}
