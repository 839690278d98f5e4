"""The evaluator protocol: `(case, output) -> Score`, a value in [0, 1] with one line of feedback.

An evaluator may also offer `evaluate_many(cases, outputs) -> list[Score]` (the scorer then hands it a whole
chunk at once, which lets a judge call its model concurrently) and declare `model_calls_per_case`, the model
calls one evaluation may make, so the scorer can reserve them in the run's budget before they are made.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from promptopt.case import Case, ToolCall
from promptopt.models.base import CallRecord


@dataclass(frozen=True)
class Score:
    """How well one output did on one case; `feedback` explains it in a line (it feeds gradients and reports).

    `parts` holds each component's value when the evaluator is composed (name -> value); `calls` are the model
    calls the evaluation made (a judge's), which the scorer charges to the budget and stores."""

    value: float
    feedback: str
    parts: Mapping[str, float] = field(default_factory=dict)
    calls: tuple[CallRecord, ...] = ()

    @property
    def passed(self) -> bool:
        return self.value >= 1.0


class Evaluator(Protocol):
    """Scores a task output against a case."""

    name: str

    def __call__(self, case: Case, output: ToolCall) -> Score:
        ...


def evaluate_all(evaluator: Evaluator, cases: Sequence[Case], outputs: Sequence[ToolCall]) -> list[Score]:
    """Scores of `outputs` on `cases`, through the evaluator's batch method when it has one."""
    batch = getattr(evaluator, "evaluate_many", None)
    if batch is not None:
        return list(batch(cases, outputs))
    return [evaluator(case, output) for case, output in zip(cases, outputs)]


def component_names(evaluator: Any) -> list[str]:
    """The names a composed evaluator reports in `Score.parts`; a plain evaluator reports only itself."""
    return list(getattr(evaluator, "component_names", None) or [evaluator.name])


def model_calls_per_case(evaluator: Any) -> int:
    """Model calls one evaluation may make (0 for evaluators that call no model)."""
    return int(getattr(evaluator, "model_calls_per_case", 0) or 0)
