"""Plain Python callables as evaluators: `(case, output) -> Score | float | bool`."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from promptopt.case import Case, ToolCall
from promptopt.evaluators.base import Score


def to_score(result: Any, name: str) -> Score:
    """A callable's answer as a `Score`: a `Score` as is, True/False as 1/0, a number as the value."""
    if isinstance(result, Score):
        score = result
    elif isinstance(result, bool):
        score = Score(1.0 if result else 0.0, f"{name}: {'pass' if result else 'fail'}")
    elif isinstance(result, (int, float)):
        score = Score(float(result), f"{name}: {float(result):.3g}")
    else:
        raise TypeError(f"evaluator {name!r} returned {type(result).__name__}; expected a Score, a number or a bool")
    if not 0.0 <= score.value <= 1.0:
        raise ValueError(f"evaluator {name!r} returned {score.value}, outside [0, 1]")
    return score


class CallableEvaluator:
    """Wraps any `(case, output)` callable (a function, or a plugin's evaluator object) under `name`; its batch
    method and declared model calls are used when it has them."""

    def __init__(self, function: Callable[[Case, ToolCall], Any], name: str) -> None:
        self.function = function
        self.name = name
        self.check_arguments = bool(getattr(function, "check_arguments", False))
        self.model_calls_per_case = int(getattr(function, "model_calls_per_case", 0) or 0)
        if hasattr(function, "evaluate_many"):
            self.evaluate_many = self._evaluate_many

    def __call__(self, case: Case, output: ToolCall) -> Score:
        return to_score(self.function(case, output), self.name)

    def _evaluate_many(self, cases: Sequence[Case], outputs: Sequence[ToolCall]) -> list[Score]:
        return [to_score(result, self.name) for result in self.function.evaluate_many(cases, outputs)]


def as_evaluator(candidate: Any, name: str | None = None) -> Any:
    """An evaluator from an evaluator object (kept as is) or a plain callable (wrapped, named after itself)."""
    if not callable(candidate):
        raise TypeError(f"an evaluator must be callable as (case, output); got {type(candidate).__name__}")
    if name is None and isinstance(getattr(candidate, "name", None), str):
        return candidate
    label = name or getattr(candidate, "__name__", None) or type(candidate).__name__
    return CallableEvaluator(candidate, label)
