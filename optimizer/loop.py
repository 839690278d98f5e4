"""The run loop: split, evaluate the seed, let the strategy propose, accept only real improvements, and report
seed vs. winner on the held-out test split. Every step is written to the store as it happens."""
from __future__ import annotations

from dataclasses import asdict, fields, make_dataclass
from typing import Any, Sequence

import numpy as np

from promptopt.case import Case
from promptopt.evaluators.base import Evaluator
from promptopt.models.base import ModelBackend
from promptopt.models.response_cache import calls_for_run
from promptopt.optimizer.acceptance import decide
from promptopt.optimizer.budget import Budget, BudgetExhausted
from promptopt.optimizer.candidates import Candidate, validation_problem
from promptopt.optimizer.scorer import CaseResult, Scorer, accuracy, outage
from promptopt.optimizer.splits import require_every_split, split_cases, stratified_sample
from promptopt.optimizer.strategy import SearchContext, Strategy
from promptopt.progress import Say, counter
from promptopt.run_settings import SETTINGS, stored_settings
from promptopt.runs.lifecycle import recorded_run
from promptopt.runs.search_writes import SearchWrites
from promptopt.runs.store import Store
from promptopt.tasks.tool_routing import ToolRoutingTask


class RunFailed(RuntimeError):
    """The run cannot give a result (every task-model call failed, say); it is stored as failed with the reason."""


class _StoredConfig:
    """What `RunConfig` adds to its declared fields: the stored form and back."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> Any:
        """The config `to_json` stored (keys a later version added take their defaults; those an earlier version
        wrote under other names are read under today's), for resuming a run."""
        stored = dict(stored)
        stored.setdefault("options", stored.pop("strategy_options", {}))
        for name, value in (stored.pop("limits", None) or {}).items():
            stored.setdefault(f"budget_{name}", value)
        stored.setdefault("min_gain", 0.0)  # runs stored before the minimum gain accepted any gain
        stored.setdefault("alpha", None)  # runs stored before the significance rule accepted on the gain alone
        values = {f.name: stored[f.name] for f in fields(cls) if f.name in stored}
        values["splits"] = tuple(values.get("splits") or SETTINGS["splits"].default)
        return cls(**values)


RunConfig = make_dataclass(
    "RunConfig", [s.as_field(s.config_default) for s in stored_settings()], bases=(_StoredConfig,), namespace={
        "__doc__": "Everything that decides a run's outcome, one field per stored run setting "
                   "(`promptopt.run_settings`), models resolved to their names and URLs, never API keys; stored "
                   "with the run.",
        "__module__": __name__})


def run_optimization(store: Store, task: ToolRoutingTask, seed_prompt: str, cases: Sequence[Case],
                     model: ModelBackend, strategy: Strategy, evaluator: Evaluator, config: RunConfig,
                     progress: Say | None = None, optimizer_model: ModelBackend | None = None,
                     splits: dict[int, str] | None = None, writes: SearchWrites | None = None) -> dict[str, Any]:
    """Run one optimization over stored `cases` and return its report (see `promptopt.runs.report`).

    `model` is the task model whose prompt is optimized; `optimizer_model` writes prompts for the strategies
    that need one (None: the task model). `splits` (case id -> train / val / test) replaces the seeded split, and
    `writes` the store's search writes, as a resumed run reuses its stored split through its replay
    (`ResumedStore`). Ctrl-C or SIGTERM stores the run as interrupted (`RunInterrupted`)."""
    say = progress or (lambda message: None)
    problem = validation_problem(seed_prompt, seed_prompt, [], config.max_chars)
    if problem:
        raise ValueError(f"the seed prompt cannot be used: {problem}")
    splits = splits or split_cases(cases, config.seed, config.splits)
    require_every_split(splits)
    writes = writes or store
    by_split = {name: [c for c in cases if splits[c.id] == name] for name in ("train", "val", "test")}
    with recorded_run(store, task.name, strategy.name, config.to_json(), task.tools, splits, [c.id for c in cases],
                      seed_prompt, writes) as run, calls_for_run(run.run_id, model, optimizer_model):
        say(f"run {run.run_id}: {len(cases)} cases -> train {len(by_split['train'])}, val {len(by_split['val'])}, "
            f"test {len(by_split['test'])}")
        scorer = Scorer(task, model, evaluator, writes, run.run_id, Budget.of(config), say)
        seed = Candidate(prompt=seed_prompt, operator="seed", id=run.seed_id)
        winner = _search(writes, run.run_id, scorer, strategy, seed, by_split, config, say,
                         optimizer_model or model)
        say("scoring seed and winner on the held-out test split")
        scorer.score(seed.id, seed.prompt, by_split["test"], "test seed", charge=False)
        scorer.score(winner.id, winner.prompt, by_split["test"], "test winner", charge=False)
        return run.finish(winner.id)


def _search(writes: SearchWrites, run_id: str, scorer: Scorer, strategy: Strategy, seed: Candidate,
            by_split: dict[str, list[Case]], config: RunConfig, say: Say, optimizer_model: ModelBackend
            ) -> Candidate:
    """Propose -> validate -> score -> accept, for `config.steps` steps or until the budget runs out."""
    rng = np.random.default_rng(config.seed)
    train, val = by_split["train"], by_split["val"]
    good_ids = {c.id for c in val if c.label == "good"}
    incumbent, step = seed, 0
    incumbent_val: dict[int, CaseResult] = {}
    try:
        material = stratified_sample(train, config.seed_train_sample, rng)
        calibration = _calibrate(scorer, seed.prompt, material, say)
        incumbent_train: dict[int, CaseResult] = scorer.score(seed.id, seed.prompt, material, "seed train")
        incumbent_val = scorer.score(seed.id, seed.prompt, val, "seed val")
        _require_answers({**incumbent_train, **incumbent_val})
        writes.add_step(run_id, 0, seed.id, accuracy(incumbent_val), "seed prompt",
                        scorer.with_notices(calibration) or None)
        say(f"seed: train {accuracy(incumbent_train):.1%}, validation {accuracy(incumbent_val):.1%}")
        with counter(say, "search", config.steps, "steps", say_counts=False) as steps_done:
            for step in range(1, config.steps + 1):
                context = SearchContext(
                    writes=writes, scorer=scorer, run_id=run_id, rng=rng, seed_prompt=seed.prompt, tool_names=scorer.task.tool_names, train=train,
                    incumbent=incumbent, incumbent_train=incumbent_train, max_chars=config.max_chars,
                    optimizer_model=optimizer_model,
                )
                proposals = strategy.propose(context, step)
                for held in (p for p in proposals if p.rejection):
                    writes.set_candidate_status(held.candidate.id, held.status, held.rejection)
                proposals = [p for p in proposals if not p.rejection]
                if context.notes.get("summary"):
                    say(f"step {step}: {context.notes['summary']}")
                if not proposals:
                    message = context.notes.get("summary") or \
                        "no valid candidate beat the incumbent on the strategy's training sample"
                    message = f"{message}; no candidate to validate"
                    writes.add_step(run_id, step, incumbent.id, accuracy(incumbent_val), message,
                                    scorer.with_notices(context.notes))
                    say(f"step {step}: {message}")
                    steps_done.advance()
                    continue
                best = proposals[0]
                for other in proposals[1:]:
                    writes.set_candidate_status(other.candidate.id, "evaluated",
                                               "a better candidate was tried this step")
                candidate_val = scorer.score(best.candidate.id, best.candidate.prompt, val, f"step {step} val")
                decision = decide(incumbent_val, candidate_val, good_ids, config.max_broken, config.alpha,
                                  config.min_gain, config.max_broken_share)
                writes.set_candidate_status(best.candidate.id, "accepted" if decision.accepted else "rejected",
                                           "" if decision.accepted else decision.reason)
                if decision.accepted:
                    incumbent, incumbent_val, incumbent_train = best.candidate, candidate_val, best.train_results
                verdict = "accepted" if decision.accepted else "rejected"
                writes.add_step(run_id, step, incumbent.id, accuracy(incumbent_val), f"{verdict}: {decision.reason}",
                               scorer.with_notices(context.notes))
                say(f"step {step}: best of {len(proposals)} (train {best.train_accuracy:.1%}) {verdict}: "
                    f"{decision.reason}")
                steps_done.advance()
    except BudgetExhausted as error:
        say(f"budget exhausted, stopping the search: {error}")
        writes.add_step(run_id, step, incumbent.id, accuracy(incumbent_val) if incumbent_val else -1.0,
                       f"budget exhausted: {error}", scorer.with_notices(None))
    return incumbent


def _calibrate(scorer: Scorer, prompt: str, material: list[Case], say: Say) -> dict[str, Any]:
    """Let a task model that calibrates its routing (the embedded native router's "answer in text" gate) do so on
    the seed's training sample, once, before anything is scored; what it set is stored with step 0."""
    calibrate = getattr(scorer.model, "calibrate", None)
    if calibrate is None or not material:
        return {}
    calibration = calibrate(prompt, scorer.task.tools, [c.messages() for c in material],
                            [c.expected.name for c in material])
    if calibration:
        say("calibrated the task model on the seed's training sample: " +
            ", ".join(f"{k} {v}" for k, v in calibration.items()))
    return calibration


def _require_answers(results: dict[int, CaseResult]) -> None:
    """Stop a run whose every task-model call failed: its scores would read as a 0 % prompt, not as an outage."""
    problem = outage(list(results.values()))
    if problem:
        raise RunFailed(problem)

