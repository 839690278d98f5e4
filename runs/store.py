"""The store: every case, run, candidate, evaluation, model call and BPO pair, in any SQLAlchemy database.

SQLite at `~/.promptopt/promptopt.db` by default (see `promptopt.config`), or PostgreSQL (`promptopt[postgres]`).
Writes happen as the run goes, each in its own short transaction, so a killed run leaves everything up to its
last step and processes sharing a store wait for each other (up to `PROMPTOPT_DB_TIMEOUT`) instead of failing.
"""
from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable, Sequence

from sqlalchemy import Integer, delete, exists, func, insert, select
from sqlalchemy import case as sql_case
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from promptopt.case import Case, ToolCall
from promptopt.case_selection import CaseSelection, SelectionError
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
    StagedCaseRow,
    StepRow,
    store_problem,
    utcnow,
)


def installed_version() -> str:
    """The installed promptopt's version, as a run records it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("promptopt")
    except PackageNotFoundError:
        return ""


__all__ = ["Store", "StoreBusy", "StoreError", "CaseRejected", "ImportResult", "EvaluationRecord", "BpoPairRecord"]

IMPORT_BATCH = 500
"""Cases staged per transaction by an import, and hashes looked up per query."""
STALE_STAGING = timedelta(days=1)
"""Staged rows this old belong to an import that was killed; the next import to publish sweeps them."""
MAX_REPORTED = 20
_CASE_FIELDS = [column.name for column in CaseRow.__table__.columns if column.name not in ("id", "created_at")]
_INSERTS = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}


@dataclass(frozen=True)
class ImportResult:
    """Store ids of an imported file's cases, in file order, and how many were new: added by this import."""

    case_ids: list[int]
    new: int

    @property
    def distinct(self) -> int:
        """How many different cases the import held (a file may hold one case twice)."""
        return len(set(self.case_ids))

    @property
    def existing(self) -> int:
        """How many of them were stored already, by an earlier import or a concurrent one."""
        return self.distinct - self.new


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


class CaseRejected(StoreError, ValueError):
    """Cases the store cannot hold (see `store_problem`); `problems` lists (index in the import, "field: message")."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        self.problems = problems
        shown = [f"case {index + 1}: {message}" for index, message in problems[:MAX_REPORTED]]
        if len(problems) > MAX_REPORTED:
            shown.append(f"... and {len(problems) - MAX_REPORTED} more problems")
        super().__init__("\n".join(shown))


class CasesInUse(ValueError):
    """Cases a run used, so they cannot be deleted without breaking that run."""


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
        """Store the cases not yet stored (by content hash); return every case's id, in order.

        Raises `CaseRejected` before any write if a case does not fit (`store_problem`). New cases are staged
        `IMPORT_BATCH` at a time, each batch its own short transaction, so other writers wait seconds at most;
        then they are published in one statement, so a failed import adds no case. Concurrent imports of the
        same cases all succeed with the same ids: a case another import published first is skipped, not refused."""
        _refuse_unstorable(cases)
        digests = [case.content_hash() for case in cases]
        ids = self._case_ids(set(digests))
        fresh: dict[str, Case] = {}
        for digest, case in zip(digests, cases):
            if digest not in ids:
                fresh.setdefault(digest, case)
        new = self._publish(list(fresh.items()), imported_from) if fresh else 0
        ids.update(self._case_ids(set(fresh)))
        return ImportResult(case_ids=[ids[digest] for digest in digests], new=new)

    def _case_ids(self, digests: set[str]) -> dict[str, int]:
        """Stored case ids by content hash, for those of `digests` that are stored."""
        ordered = sorted(digests)
        found: dict[str, int] = {}
        with self.session() as session:
            for start in range(0, len(ordered), IMPORT_BATCH):
                chunk = ordered[start:start + IMPORT_BATCH]
                query = select(CaseRow.content_hash, CaseRow.id).where(CaseRow.content_hash.in_(chunk))
                found.update((digest, case_id) for digest, case_id in session.execute(query))
        return found

    def _publish(self, fresh: list[tuple[str, Case]], imported_from: str) -> int:
        """Stage `fresh` (hash, case) pairs batch by batch, then move them into `cases`; how many were added.
        On any failure (Ctrl-C included) this import's staged rows are removed and the error is raised."""
        import_id = uuid.uuid4().hex
        written = False
        try:
            for start in range(0, len(fresh), IMPORT_BATCH):
                self._stage(import_id, start, fresh[start:start + IMPORT_BATCH], imported_from)
                written = True
            return self._move_staged(import_id)
        except BaseException:
            if written:
                self._unstage(import_id)
            raise

    def _stage(self, import_id: str, start: int, batch: list[tuple[str, Case]], imported_from: str) -> None:
        """Write one batch of an import's new cases to the staging table, in one short transaction."""
        rows = [dict(_case_values(case, digest, imported_from), import_id=import_id, position=start + offset)
                for offset, (digest, case) in enumerate(batch)]
        with self.session() as session, session.begin():
            session.execute(insert(StagedCaseRow), rows)

    def _move_staged(self, import_id: str) -> int:
        """Publish an import's staged cases in one transaction, clear them (and stale ones); how many were added."""
        with self.session() as session, session.begin():
            added = session.connection().execute(_publish_statement(self.engine.dialect.name, import_id)).rowcount
            session.execute(delete(StagedCaseRow).where(StagedCaseRow.import_id == import_id))
            session.execute(delete(StagedCaseRow).where(StagedCaseRow.staged_at < utcnow() - STALE_STAGING))
        return added

    def _unstage(self, import_id: str) -> None:
        """Remove what a failed import staged, if the store lets us (what stays is never read, and is swept later)."""
        with contextlib.suppress(SQLAlchemyError, StoreError), self.session() as session, session.begin():
            session.execute(delete(StagedCaseRow).where(StagedCaseRow.import_id == import_id))

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

    def select_cases(self, selection: CaseSelection) -> list[Case]:
        """The stored cases `selection` takes, in store order; `SelectionError` when it takes none."""
        with self.session() as session:
            query = select(CaseRow).order_by(CaseRow.id)
            if selection.labels:
                query = query.where(CaseRow.label.in_(selection.labels))
            chosen = [case for row in session.scalars(query)
                      if selection.matches(case := _case(row), row.imported_from or "")]
        if not chosen:
            raise SelectionError(f"no stored case matches {selection.describe()} (see `promptopt cases list`)")
        return chosen

    def case_hashes(self, ids: Iterable[int]) -> dict[int, str]:
        """The content hash each of the cases `ids` was stored under (what makes a case the same case)."""
        with self.session() as session:
            rows = session.execute(select(CaseRow.id, CaseRow.content_hash).where(CaseRow.id.in_(list(ids))))
            return {case_id: digest for case_id, digest in rows}

    def delete_cases(self, ids: Sequence[int]) -> int:
        """Delete the cases `ids`, all or none: `CasesInUse` when a run used any of them (its split, scores and
        report need them; delete the run first). Returns how many were deleted."""
        with self.session() as session, session.begin():
            used = session.execute(select(RunCaseRow.case_id, RunCaseRow.run_id)
                                   .where(RunCaseRow.case_id.in_(list(ids))).limit(1)).first()
            if used is not None:
                raise CasesInUse(f"case {used[0]} is used by run {used[1]}: delete that run first "
                                 f"(promptopt runs delete {used[1]}); nothing was deleted")
            return session.execute(delete(CaseRow).where(CaseRow.id.in_(list(ids)))).rowcount

    def case(self, case_id: int) -> Case | None:
        with self.session() as session:
            row = session.get(CaseRow, case_id)
            return _case(row) if row else None

    def count_cases(self) -> int:
        with self.session() as session:
            return session.scalar(select(func.count(CaseRow.id))) or 0

    # runs
    def create_run(self, task: str, strategy: str, config: dict[str, Any], tools: list[Any],
                   splits: dict[int, str], order: Sequence[int] = ()) -> str:
        """Record a new run with its configuration, the split of every case and the cases' order (case ids)."""
        run_id = uuid.uuid4().hex[:12]
        positions = {case_id: index for index, case_id in enumerate(order)}
        with self.session() as session, session.begin():
            session.add(RunRow(id=run_id, task=task, strategy=strategy, config=config, tools=tools,
                               promptopt_version=installed_version()))
            session.flush()
            session.add_all(RunCaseRow(run_id=run_id, case_id=cid, split=split, position=positions.get(cid))
                            for cid, split in splits.items())
        return run_id

    def run(self, run_id: str) -> RunRow | None:
        with self.session() as session:
            return session.get(RunRow, run_id)

    def runs(self, limit: int = 20) -> list[RunRow]:
        with self.session() as session:
            return list(session.scalars(select(RunRow).order_by(RunRow.created_at.desc()).limit(limit)))

    def run_ids_starting(self, prefix: str) -> list[str]:
        """The ids of the stored runs that start with `prefix` (at most 10)."""
        with self.session() as session:
            return list(session.scalars(select(RunRow.id).where(RunRow.id.startswith(prefix, autoescape=True))
                                        .order_by(RunRow.id).limit(10)))

    def case_counts(self, run_ids: Sequence[str]) -> dict[str, int]:
        """How many cases each of `run_ids` was given."""
        with self.session() as session:
            rows = session.execute(select(RunCaseRow.run_id, func.count(RunCaseRow.id))
                                   .where(RunCaseRow.run_id.in_(list(run_ids))).group_by(RunCaseRow.run_id))
            return {run_id: count for run_id, count in rows}

    def delete_run(self, run_id: str) -> None:
        """Delete a run and everything it stored (candidates, their evaluations, steps, model calls, BPO pairs,
        its split), in one transaction; its cases stay."""
        with self.session() as session, session.begin():
            candidates = select(CandidateRow.id).where(CandidateRow.run_id == run_id).scalar_subquery()
            session.execute(delete(EvaluationRow).where(EvaluationRow.candidate_id.in_(candidates)))
            for table in (CandidateRow, StepRow, ModelCallRow, BpoPairRow, RunCaseRow):
                session.execute(delete(table).where(table.run_id == run_id))
            session.execute(delete(RunRow).where(RunRow.id == run_id))

    def run_splits(self, run_id: str) -> dict[int, str]:
        with self.session() as session:
            rows = session.scalars(select(RunCaseRow).where(RunCaseRow.run_id == run_id).order_by(RunCaseRow.id))
            return {r.case_id: r.split for r in rows}

    def update_run(self, run_id: str, **values: Any) -> None:
        with self.session() as session, session.begin():
            row = session.get(RunRow, run_id)
            for key, value in values.items():
                setattr(row, key, value)
            if values.get("status") in ("finished", "failed", "interrupted"):
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
                        calls: Sequence[CallRecord], run_id: str, replace: bool = False) -> None:
        """Store a batch of evaluations and the model calls that produced them, atomically; `replace` first
        removes stored evaluations of the same cases (a resumed run redoing evaluations whose call had failed)."""
        with self.session() as session, session.begin():
            if records and replace:
                session.execute(delete(EvaluationRow).where(EvaluationRow.candidate_id == candidate_id,
                                                            EvaluationRow.case_id.in_([r.case_id for r in records])))
            if records:
                session.execute(insert(EvaluationRow), [
                    {"candidate_id": candidate_id, "case_id": r.case_id, "predicted_tool": r.output.name,
                     "predicted_arguments": dict(r.output.arguments), "predicted_text": r.output.text,
                     "score": r.score, "passed": r.passed, "feedback": r.feedback, "evaluator": r.evaluator,
                     "scores": r.scores, "error": r.error}
                    for r in records
                ])
            if calls:
                session.execute(insert(ModelCallRow), [call_values(run_id, c) for c in calls])

    def evaluations(self, candidate_id: int) -> dict[int, EvaluationRow]:
        """A candidate's evaluations keyed by case id."""
        with self.session() as session:
            rows = session.scalars(select(EvaluationRow).where(EvaluationRow.candidate_id == candidate_id))
            return {r.case_id: r for r in rows}

    def add_calls(self, run_id: str | None, calls: Sequence[CallRecord]) -> None:
        if not calls:
            return
        with self.session() as session, session.begin():
            session.execute(insert(ModelCallRow), [call_values(run_id, c) for c in calls])

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


def _refuse_unstorable(cases: Sequence[Case]) -> None:
    """Raise `CaseRejected` naming every case the store cannot hold, before anything is written."""
    problems = [(index, problem) for index, case in enumerate(cases) if (problem := store_problem(case))]
    if problems:
        raise CaseRejected(problems)


def _case_values(case: Case, digest: str, imported_from: str) -> dict[str, Any]:
    return {
        "content_hash": digest, "query": case.query, "context": list(case.context),
        "expected_tool": case.expected.name, "expected_arguments": dict(case.expected.arguments),
        "expected_text": case.expected.text, "actual_tool": case.actual.name if case.actual else None,
        "actual_arguments": dict(case.actual.arguments) if case.actual else None,
        "label": case.label, "tags": list(case.tags), "source": case.source, "imported_from": imported_from,
    }


def _publish_statement(dialect: str, import_id: str) -> Any:
    """INSERT into `cases` the import's staged rows, in file order, skipping hashes already stored. Where the
    database can (SQLite, PostgreSQL), a row another import publishes meanwhile is skipped too, not an error.
    The row count is kept: it is how many cases this import added."""
    staged = StagedCaseRow
    rows = (select(*[staged.__table__.c[name] for name in _CASE_FIELDS], staged.staged_at)
            .where(staged.import_id == import_id,
                   ~exists().where(CaseRow.content_hash == staged.content_hash))
            .order_by(staged.position))
    statement = _INSERTS.get(dialect, insert)(CaseRow).from_select([*_CASE_FIELDS, "created_at"], rows)
    if dialect in _INSERTS:
        statement = statement.on_conflict_do_nothing(index_elements=[CaseRow.content_hash])
    return statement.execution_options(preserve_rowcount=True)


def _case(row: CaseRow) -> Case:
    actual = ToolCall(row.actual_tool, row.actual_arguments or {}) if row.actual_tool is not None else None
    expected = ToolCall(row.expected_tool, row.expected_arguments or {}, row.expected_text or "")
    return Case(query=row.query, expected=expected,
                context=tuple(row.context or ()), actual=actual, label=row.label, tags=tuple(row.tags or ()),
                source=row.source, id=row.id)


def call_values(run_id: str | None, call: CallRecord) -> dict[str, Any]:
    """A model call as the values of its `model_calls` row."""
    return {"run_id": run_id, "role": call.role, "model": call.model, "tokens_in": call.tokens_in,
            "tokens_out": call.tokens_out, "latency_s": call.latency_s, "cache_hit": call.cache_hit,
            "cost_usd": call.cost_usd, "attempts": call.attempts, "error": call.error, "created_at": utcnow()}
