"""SQLAlchemy tables of the store: cases (and the staging table imports write to first), runs and their splits,
candidates, evaluations, steps, model calls, BPO feedback pairs; and the length limits a case must fit."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from promptopt.case import Case
from promptopt.models.settings import MAX_MODEL_NAME
from promptopt.strict_json import unstorable

MAX_TOOL_NAME = 128
"""Longest tool name the store holds (expected, actual and predicted tools)."""
MAX_LABEL = 8
MAX_SOURCE = 256
"""Longest case `source` the store holds."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite gives it back without its time zone)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    pass


class CaseFields:
    """The columns of a stored case, shared by `cases` and the staging table imports write to first."""

    query: Mapped[str] = mapped_column(Text)
    context: Mapped[list[Any]] = mapped_column(JSON, default=list)
    expected_tool: Mapped[str] = mapped_column(String(MAX_TOOL_NAME))
    expected_arguments: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    expected_text: Mapped[str] = mapped_column(Text, default="")
    actual_tool: Mapped[str | None] = mapped_column(String(MAX_TOOL_NAME), nullable=True)
    actual_arguments: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    label: Mapped[str] = mapped_column(String(MAX_LABEL))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(MAX_SOURCE), default="")
    imported_from: Mapped[str] = mapped_column(Text, default="")


class CaseRow(CaseFields, Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StagedCaseRow(CaseFields, Base):
    """A new case an import has written but not yet published. Imports stage in small transactions, then move
    their rows into `cases` in one statement: other writers never wait long, and a failed import adds no case."""

    __tablename__ = "staged_cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    import_id: Mapped[str] = mapped_column(String(32), index=True)
    position: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    staged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    task: Mapped[str] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="running")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tools: Mapped[list[Any]] = mapped_column(JSON, default=list)
    seed_candidate_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    winner_candidate_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, default=utcnow)
    """Written every few seconds while the run's process is alive (see `promptopt.runs.heartbeat`); NULL in
    stores written before heartbeats."""
    promptopt_version: Mapped[str] = mapped_column(String(32), default="")
    """The promptopt version that created the run; empty for runs stored before it was kept."""
    writer: Mapped[str] = mapped_column(Text, default="")
    """The process writing the run ("pid N on HOST"), as it holds the run's writer lock (`runs.writer_lock`);
    empty for runs stored before writer locks."""
    mlflow_run_id: Mapped[str] = mapped_column(String(64), default="")
    """The MLflow run this run is tracked as (`--track`, `runs.mlflow_tracking`), so a resumed run continues it;
    empty for a run never tracked."""


class RunCaseRow(Base):
    __tablename__ = "run_cases"
    __table_args__ = (UniqueConstraint("run_id", "case_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    split: Mapped[str] = mapped_column(String(8))
    position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The case's place in the order the run was given its cases (a resumed run replays them in it); NULL in
    stores written before resuming."""


class CandidateRow(Base):
    __tablename__ = "candidates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    operator: Mapped[str] = mapped_column(String(64))
    parent_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    rationale: Mapped[str] = mapped_column(Text, default="")
    prompt: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="proposed")
    rejection: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EvaluationRow(Base):
    __tablename__ = "evaluations"
    __table_args__ = (UniqueConstraint("candidate_id", "case_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    predicted_tool: Mapped[str] = mapped_column(String(MAX_TOOL_NAME))
    predicted_arguments: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    predicted_text: Mapped[str] = mapped_column(Text, default="")
    score: Mapped[float] = mapped_column(Float)
    passed: Mapped[bool] = mapped_column(Boolean)
    feedback: Mapped[str] = mapped_column(Text, default="")
    evaluator: Mapped[str] = mapped_column(String(64))
    scores: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    """Each component evaluator's value (name -> score) when the evaluator is composed; NULL in older stores."""
    error: Mapped[str] = mapped_column(Text, default="")


class StepRow(Base):
    __tablename__ = "steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    incumbent_id: Mapped[int] = mapped_column(Integer)
    val_accuracy: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelCallRow(Base):
    __tablename__ = "model_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), index=True, nullable=True)
    role: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(MAX_MODEL_NAME))
    tokens_in: Mapped[int] = mapped_column(Integer)
    tokens_out: Mapped[int] = mapped_column(Integer)
    latency_s: Mapped[float] = mapped_column(Float)
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BpoPairRow(Base):
    """One BPO feedback pair: an original prompt and the optimizer model's improved version, with its analysis
    and whether the paper's filters kept it (`rejection` says why not)."""

    __tablename__ = "bpo_pairs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), index=True, nullable=True)
    source: Mapped[str] = mapped_column(String(32))
    original: Mapped[str] = mapped_column(Text)
    optimized: Mapped[str] = mapped_column(Text, default="")
    analysis: Mapped[str] = mapped_column(Text, default="")
    kept: Mapped[bool] = mapped_column(Boolean, default=False)
    rejection: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def store_problem(case: Case) -> str | None:
    """Why the store cannot hold `case` ("field: message"): a text longer than its column, a NUL character, a lone
    surrogate or a number that is not finite (`unstorable`; PostgreSQL refuses them where SQLite may not). Checked
    before any write, so every store refuses the same input in the same words."""
    found = unstorable(_case_json(case))
    if found:
        return f"{found[0][0]}: {found[0][1]}"
    for field, value, limit in _case_texts(case):
        if len(value) > limit:
            return f"{field}: at most {limit} characters, got {len(value)}"
    return None


def _case_json(case: Case) -> dict[str, Any]:
    """A case as its case-file record, so that `unstorable` names fields as the case file does."""
    return {"query": case.query, "context": list(case.context), "expected": case.expected.to_json(),
            "actual": case.actual.to_json() if case.actual is not None else None, "label": case.label,
            "tags": list(case.tags), "source": case.source}


def _case_texts(case: Case) -> list[tuple[str, str, int]]:
    """Each length-limited text column a case is stored in: its case-file field name, value and length limit."""
    texts = [("expected.tool", case.expected.name, MAX_TOOL_NAME)]
    if case.actual is not None:
        texts.append(("actual.tool", case.actual.name, MAX_TOOL_NAME))
    return [*texts, ("label", case.label, MAX_LABEL), ("source", case.source, MAX_SOURCE)]
