"""The CI gate's measurement: one prompt scored on cases through the engine's scorer, recorded in the store as a
finished run of strategy `check`, and judged against the gate's thresholds (good cases broken, accuracy)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from promptopt.case import Case
from promptopt.evaluators.base import Evaluator
from promptopt.models.base import ModelBackend
from promptopt.optimizer.budget import Budget
from promptopt.optimizer.loop import RunConfig
from promptopt.optimizer.scorer import CaseResult, Scorer, outage
from promptopt.runs.lifecycle import recorded_run
from promptopt.runs.store import Store
from promptopt.statistics import wilson_interval
from promptopt.tasks.tool_routing import ToolRoutingTask

STRATEGY = "check"
"""The strategy name a check's run is stored under, so `promptopt runs list` tells checks from searches."""



@dataclass(frozen=True)
class Thresholds:
    """When a check fails: more than `max_broken` good cases wrong, or accuracy below `min_accuracy` (0-1)."""

    max_broken: int = 0
    min_accuracy: float | None = None


@dataclass(frozen=True)
class CaseOutcome:
    """One case under the checked prompt: the stored case and its scored result."""

    case: Case
    result: CaseResult

    @property
    def passed(self) -> bool:
        return self.result.passed

    @property
    def broken(self) -> bool:
        """A previously-good case (label `good`) the prompt gets wrong."""
        return self.case.label == "good" and not self.passed

    @property
    def fixed(self) -> bool:
        """A case production got wrong (label `bad`) that the prompt gets right."""
        return self.case.label == "bad" and self.passed


@dataclass
class CheckResult:
    """A finished check: every case's outcome, the thresholds, the model calls it made and its run id."""

    run_id: str
    outcomes: list[CaseOutcome]
    thresholds: Thresholds
    calls: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return sum(o.passed for o in self.outcomes) / len(self.outcomes) if self.outcomes else 0.0

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(sum(o.passed for o in self.outcomes), len(self.outcomes))

    def labelled(self, label: str) -> list[CaseOutcome]:
        return [o for o in self.outcomes if o.case.label == label]

    @property
    def broken(self) -> list[CaseOutcome]:
        return [o for o in self.outcomes if o.broken]

    @property
    def fixed(self) -> list[CaseOutcome]:
        return [o for o in self.outcomes if o.fixed]

    @property
    def failures(self) -> list[str]:
        """Why the check fails (empty when it passes)."""
        reasons = []
        problem = outage([o.result for o in self.outcomes])
        if problem:
            reasons.append(problem)
        if len(self.broken) > self.thresholds.max_broken:
            reasons.append(f"{len(self.broken)} previously-good case(s) broken, {self.thresholds.max_broken} allowed")
        minimum = self.thresholds.min_accuracy
        if minimum is not None and self.accuracy < minimum:
            reasons.append(f"accuracy {self.accuracy:.1%} is below the minimum {minimum:.1%}")
        return reasons

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def verdict(self) -> str:
        """`PASS: ...` or `FAIL: ...`, with the reason in one line."""
        if self.failures:
            return "FAIL: " + "; ".join(self.failures)
        minimum = self.thresholds.min_accuracy
        floor = f"minimum {minimum:.1%}" if minimum is not None else "no minimum"
        return (f"PASS: {len(self.broken)} previously-good case(s) broken ({self.thresholds.max_broken} allowed), "
                f"accuracy {self.accuracy:.1%} ({floor})")


def check_prompt(store: Store, task: ToolRoutingTask, prompt: str, cases: Sequence[Case], model: ModelBackend,
                 evaluator: Evaluator, config: RunConfig, thresholds: Thresholds,
                 progress: Callable[[str], None] | None = None) -> CheckResult:
    """Score `prompt` on the stored `cases` with the shared scorer (cached, charged, every evaluation and call
    stored) in a run of strategy `check` whose cases are all its test split, so `promptopt runs show` reports it."""
    if not cases:
        raise ValueError("no cases to check")
    stored_config = replace(config, strategy=STRATEGY, steps=0, max_broken=thresholds.max_broken).to_json()
    with recorded_run(store, task.name, STRATEGY, stored_config, task.tools, {c.id: "test" for c in cases}, (),
                      prompt) as run:
        scorer = Scorer(task, model, evaluator, store, run.run_id, Budget.of(config), progress)
        results = scorer.score(run.seed_id, prompt, cases, "check")
        result = CheckResult(run.run_id, [CaseOutcome(c, results[c.id]) for c in cases], thresholds)
        store.add_step(run.run_id, 0, run.seed_id, -1.0, f"check {result.verdict}", scorer.with_notices(None))
        run.finish(run.seed_id)
    result.calls = store.call_totals(run.run_id)
    return result
