"""The evaluator protocol: `(case, output) -> Score`, a value in [0, 1] with one line of feedback."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from promptopt.case import Case, ToolCall


@dataclass(frozen=True)
class Score:
    """How well one output did on one case; `feedback` explains it in a line (it feeds gradients and reports)."""

    value: float
    feedback: str

    @property
    def passed(self) -> bool:
        return self.value >= 1.0


class Evaluator(Protocol):
    """Scores a task output against a case."""

    name: str

    def __call__(self, case: Case, output: ToolCall) -> Score:
        ...
