"""The protocol every search strategy implements, and the context the run loop hands it each step."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from promptopt.case import Case
from promptopt.models.base import Completion, ModelBackend
from promptopt.optimizer.candidates import Candidate, validation_problem
from promptopt.optimizer.scorer import CaseResult, Scorer, accuracy
from promptopt.runs.store import Store


@dataclass
class SearchContext:
    """What a strategy may use: the training cases, the incumbent and its training results, the shared scorer
    (budgeted, cached, stored), the optimizer model (through `ask_optimizer`), `register`, which validates and
    stores each proposal, and `notes`, stored with the step (what the optimizer model was shown, say)."""

    run_id: str
    store: Store
    scorer: Scorer
    rng: np.random.Generator
    seed_prompt: str
    tool_names: list[str]
    train: list[Case]
    incumbent: Candidate
    incumbent_train: dict[int, CaseResult]
    max_chars: int
    options: dict[str, Any]
    optimizer_model: ModelBackend | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def register(self, candidate: Candidate, step: int) -> Candidate | None:
        """Store the proposal; return it with its id if it may be evaluated, None if validation rejects it."""
        problem = validation_problem(candidate.prompt, self.seed_prompt, self.tool_names, self.max_chars)
        candidate.id = self.store.add_candidate(
            self.run_id, step, candidate.prompt, candidate.operator, candidate.parent_ids, candidate.rationale,
            status="invalid" if problem else "proposed", rejection=problem or "", details=candidate.details,
        )
        return None if problem else candidate

    def ask_optimizer(self, requests: Sequence[list[dict[str, str]]], temperature: float,
                      max_tokens: int, first_sample: int = 0, model: ModelBackend | None = None) -> list[Completion]:
        """Completions from the optimizer model (or `model`, such as a fine-tuned rewriter), charged to the run's
        budget and stored as optimizer calls. `first_sample` numbers the samples of repeated requests from there
        (a caller asking for one sample at a time passes how many it already has, so it gets a new one)."""
        model = model or self.optimizer_model
        if model is None:
            raise RuntimeError("this run has no optimizer model")
        budget = self.scorer.budget
        budget.charge(len(requests))
        more = {"first_sample": first_sample} if first_sample else {}
        completions = model.generate_many(requests, temperature=temperature, max_tokens=max_tokens,
                                          role="optimizer", **more)
        records = [c.record for c in completions]
        budget.spend(records)
        self.store.add_calls(self.run_id, records)
        return completions


@dataclass
class Proposal:
    """A registered candidate with its results on the training cases it was scored on."""

    candidate: Candidate
    train_results: dict[int, CaseResult]

    @property
    def train_accuracy(self) -> float:
        return accuracy(self.train_results)


class Strategy(Protocol):
    """Proposes candidates for one step and returns them ranked best-first by their training score."""

    name: str

    def propose(self, context: SearchContext, step: int) -> Sequence[Proposal]:
        ...

    def expected_calls(self, n_train: int, steps: int) -> int:
        """Task-model calls the strategy itself makes over `steps` steps (for `--estimate`); an upper bound."""
        ...
