"""Composed evaluators: a weighted mean of several, or "all must pass". Both report every component's value in
`Score.parts`, so a run's evaluations can be broken down per evaluator."""
from __future__ import annotations

from typing import Any, Sequence

from promptopt.case import Case, ToolCall
from promptopt.evaluators.base import Evaluator, Score, component_names, evaluate_all, model_calls_per_case

MAX_NAME = 64


class _Composite:
    """Runs every part (in batch where a part can) and collects their values and model calls."""

    def __init__(self, parts: Sequence[Evaluator], joiner: str) -> None:
        if not parts:
            raise ValueError("a composed evaluator needs at least one part")
        names = [part.name for part in parts]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"evaluator {', '.join(duplicates)} given more than once")
        self.parts = list(parts)
        self.component_names = [name for part in parts for name in component_names(part)]
        self.model_calls_per_case = sum(model_calls_per_case(part) for part in parts)
        self.check_arguments = any(getattr(part, "check_arguments", False) for part in parts)
        self.name = joiner.join(names)[:MAX_NAME]

    def __call__(self, case: Case, output: ToolCall) -> Score:
        return self._combine([part(case, output) for part in self.parts])

    def evaluate_many(self, cases: Sequence[Case], outputs: Sequence[ToolCall]) -> list[Score]:
        """Each part scores the whole batch, then the scores are combined case by case."""
        by_part = [evaluate_all(part, cases, outputs) for part in self.parts]
        return [self._combine([scores[i] for scores in by_part]) for i in range(len(cases))]

    def _combine(self, scores: list[Score]) -> Score:
        raise NotImplementedError

    def _parts(self, scores: list[Score]) -> dict[str, float]:
        values: dict[str, float] = {}
        for part, score in zip(self.parts, scores):
            values.update(score.parts or {part.name: score.value})
        return values

    @staticmethod
    def _calls(scores: list[Score]) -> tuple[Any, ...]:
        return tuple(call for score in scores for call in score.calls)


class WeightedEvaluator(_Composite):
    """The weighted mean of its parts' values; feedback joins every part's feedback. It passes only when every
    part scores 1."""

    def __init__(self, parts: Sequence[tuple[Evaluator, float]]) -> None:
        if any(weight <= 0 for _, weight in parts):
            raise ValueError("evaluator weights must be positive")
        super().__init__([part for part, _ in parts], "+")
        self.weights = [float(weight) for _, weight in parts]

    def _combine(self, scores: list[Score]) -> Score:
        value = sum(w * s.value for w, s in zip(self.weights, scores)) / sum(self.weights)
        feedback = " | ".join(f"{part.name}: {score.feedback}" for part, score in zip(self.parts, scores))
        return Score(min(1.0, value), feedback, self._parts(scores), self._calls(scores))


class AllMustPass(_Composite):
    """Scores 1 only when every part passes; otherwise the lowest part's value, with the failing parts'
    feedback."""

    def __init__(self, parts: Sequence[Evaluator]) -> None:
        super().__init__(parts, "&")

    def _combine(self, scores: list[Score]) -> Score:
        failing = [(part, score) for part, score in zip(self.parts, scores) if not score.passed]
        if not failing:
            return Score(1.0, "all passed: " + " | ".join(f"{p.name}: {s.feedback}" for p, s in zip(self.parts, scores)),
                         self._parts(scores), self._calls(scores))
        feedback = " | ".join(f"{part.name}: {score.feedback}" for part, score in failing)
        return Score(min(s.value for s in scores), feedback, self._parts(scores), self._calls(scores))
