"""The protocol every search strategy implements, the small base class that gives a strategy its declared options,
and the context the run loop hands it each step."""
from __future__ import annotations

from collections import Counter
from dataclasses import InitVar, dataclass, field
from typing import Any, Callable, ClassVar, Protocol, Sequence

import numpy as np

from promptopt.case import Case
from promptopt.models.base import Completion, ModelBackend
from promptopt.optimizer.candidates import Candidate, validation_problem
from promptopt.optimizer.options import Option, resolve_options
from promptopt.optimizer.prompt_parts import PromptParts
from promptopt.optimizer.prompt_text import normalized
from promptopt.optimizer.scorer import CaseResult, Scorer, accuracy
from promptopt.runs.search_writes import SearchWrites
from promptopt.runs.store import BpoPairRecord
from promptopt.runs.tables import BpoPairRow


@dataclass(frozen=True)
class SearchSize:
    """What a strategy's task-model calls depend on: training cases, steps, and how many training cases the
    incumbent is scored on (the loop's seed training sample)."""

    train: int
    steps: int
    incumbent_sample: int


@dataclass(frozen=True)
class OptimizerWork:
    """What a strategy asks of the optimizer model over a run (for `--estimate`): calls at most, and the reply
    budget of each (the most it may write: an upper bound on output tokens)."""

    calls: int = 0
    reply_tokens: int = 0


def reasons_text(reasons: Counter) -> str:
    """` (2x reason; 1x other)`, most frequent first, or nothing."""
    return " (" + "; ".join(f"{n}x {r}" for r, n in reasons.most_common()) + ")" if reasons else ""


@dataclass
class Tally:
    """What became of a step's proposals before evaluation: failed calls, duplicates, invalid (with why), scored."""

    samples: int = 0
    failed: int = 0
    duplicates: int = 0
    invalid: int = 0
    scored: int = 0
    reasons: Counter = field(default_factory=Counter)

    def why(self) -> str:
        return reasons_text(self.reasons)

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "failed": self.failed, "duplicates": self.duplicates,
                "invalid": self.invalid, "scored": self.scored, "invalid_reasons": dict(self.reasons)}


@dataclass
class Proposal:
    """A registered candidate with its results on the training cases it was scored on. A strategy that holds a
    candidate back says why in `rejection`; the engine then records it with `status` instead of validating it."""

    candidate: Candidate
    train_results: dict[int, CaseResult]
    rejection: str = ""
    status: str = "rejected"

    @property
    def train_accuracy(self) -> float:
        return accuracy(self.train_results)


class RunArtifacts:
    """A strategy's own data, kept with the run: BPO's feedback pairs (stored, and replayed on resume)."""

    def __init__(self, writes: SearchWrites, run_id: str) -> None:
        self._writes, self._run_id = writes, run_id

    def add_bpo_pairs(self, pairs: Sequence[BpoPairRecord]) -> list[int]:
        """Store this run's pairs (kept and rejected); their ids in order."""
        return self._writes.add_bpo_pairs(self._run_id, pairs)

    def bpo_pairs(self) -> list[BpoPairRow]:
        """The kept pairs of every run, as this run had them at this point of its search."""
        return self._writes.bpo_pairs()


@dataclass
class SearchContext:
    """What a strategy may use, and nothing more: the training cases, the incumbent and its training results,
    `score` (charged to the budget, cached and stored, on training cases only), the optimizer model (through
    `ask_optimizer`), `admit` / `register`, which validate and store proposals, `score_replies`, `rng`,
    `artifacts` for data of its own, and `notes`, stored with the step (what the optimizer model was shown). The
    store and the scorer behind them are not reachable from here."""

    writes: InitVar[SearchWrites]
    scorer: InitVar[Scorer]
    run_id: InitVar[str]
    rng: np.random.Generator
    seed_prompt: str
    tool_names: list[str]
    train: list[Case]
    incumbent: Candidate
    incumbent_train: dict[int, CaseResult]
    max_chars: int
    optimizer_model: ModelBackend | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self, writes: SearchWrites, scorer: Scorer, run_id: str) -> None:
        self._writes, self._scorer, self._run_id = writes, scorer, run_id
        self._train_ids = {case.id for case in self.train}
        self.artifacts = RunArtifacts(writes, run_id)

    def score(self, candidate_id: int, prompt: str, cases: Sequence[Case], label: str = "") -> dict[int, CaseResult]:
        """Results of `prompt` (stored as candidate `candidate_id`) on training `cases`, keyed by case id, charged to
        the run's budget; a case outside the training split is refused (validation and test are the engine's)."""
        outside = [case.id for case in cases if case.id not in self._train_ids]
        if outside:
            raise ValueError(f"a strategy scores training cases only; not in the training split: {outside[:5]}")
        return self._scorer.score(candidate_id, prompt, cases, label=label)

    def parts(self, prompt: str) -> PromptParts:
        """`prompt` cut into the text an optimizer may rewrite and the fixed parts a rewrite is spliced back into
        (`PromptParts`): the one way every strategy shows a prompt to the optimizer model and reads its reply."""
        return PromptParts.of(prompt, self.tool_names)

    def register(self, candidate: Candidate, step: int) -> str | None:
        """Store the proposal (its id is set) and return why it may not be evaluated, or None when it may."""
        problem = validation_problem(candidate.prompt, self.seed_prompt, self.tool_names, self.max_chars)
        candidate.id = self._writes.add_candidate(
            self._run_id, step, candidate.prompt, candidate.operator, candidate.parent_ids, candidate.rationale,
            status="invalid" if problem else "proposed", rejection=problem or "", details=candidate.details,
        )
        return problem

    def admit(self, candidates: Sequence[Candidate], step: int, seen: set[str], tally: Tally) -> list[Candidate]:
        """The candidates that are new (not in `seen`, normalised; added to it) and valid, registered in order;
        duplicates and invalid ones are counted in `tally`."""
        admitted = []
        for candidate in candidates:
            key = normalized(candidate.prompt)
            if key in seen:
                tally.duplicates += 1
                continue
            seen.add(key)
            problem = self.register(candidate, step)
            if problem:
                tally.invalid += 1
                tally.reasons[problem.split(":")[0]] += 1
                continue
            admitted.append(candidate)
        return admitted

    def score_replies(self, replies: Sequence[Completion], build: Callable[[int, str], Candidate],
                      cases: Sequence[Case], step: int, label: Callable[[int], str], seen: set[str]
                      ) -> tuple[list[Proposal], Tally]:
        """Optimizer replies -> candidates (`build(index, text)`) -> new, valid ones scored on `cases`, one at a
        time, so a budget that runs out leaves no unscored candidate behind. In the order they were scored."""
        tally = Tally(samples=len(replies))
        proposals = []
        for index, reply in enumerate(replies):
            if reply.error:
                tally.failed += 1
                continue
            for candidate in self.admit([build(index, reply.text)], step, seen, tally):
                results = self.score(candidate.id, candidate.prompt, cases, label=label(index))
                proposals.append(Proposal(candidate, results))
                tally.scored += 1
        return proposals, tally

    def rank_against_incumbent(self, candidates: Sequence[Candidate], cases: Sequence[Case], baseline: float,
                               step: int) -> list[Proposal]:
        """Each candidate scored on `cases`; one not better there than the incumbent's `baseline` accuracy is held
        back with why. Best first."""
        proposals = [Proposal(c, self.score(c.id, c.prompt, cases, label=f"step {step} train"))
                     for c in candidates]
        for proposal in proposals:
            if proposal.train_accuracy <= baseline:
                proposal.rejection = (f"not better than the incumbent on the training sample "
                                      f"({proposal.train_accuracy:.1%} vs {baseline:.1%})")
        return sorted(proposals, key=lambda p: -p.train_accuracy)

    def ask_optimizer(self, requests: Sequence[list[dict[str, str]]], temperature: float,
                      max_tokens: int, first_sample: int = 0, model: ModelBackend | None = None) -> list[Completion]:
        """Completions from the optimizer model (or `model`, such as a fine-tuned rewriter), charged to the run's
        budget and stored as optimizer calls. `first_sample` numbers the samples of repeated requests from there
        (a caller asking for one sample at a time passes how many it already has, so it gets a new one)."""
        model = model or self.optimizer_model
        if model is None:
            raise RuntimeError("this run has no optimizer model")
        budget = self._scorer.budget
        budget.charge(len(requests))
        more = {"first_sample": first_sample} if first_sample else {}
        completions = model.generate_many(requests, temperature=temperature, max_tokens=max_tokens,
                                          role="optimizer", **more)
        self._scorer.announce(completions)
        records = [c.record for c in completions]
        budget.spend(records)
        self._writes.add_calls(self._run_id, records)
        return completions


class Strategy(Protocol):
    """Proposes candidates for one step and returns them ranked best-first by their training score."""

    name: str
    options: Sequence[Option]
    default_steps: int

    def propose(self, context: SearchContext, step: int) -> Sequence[Proposal]:
        ...

    def expected_calls(self, size: SearchSize) -> int:
        """Task-model calls the strategy itself makes (for `--estimate`); an upper bound."""
        ...

    def expected_optimizer_work(self, size: SearchSize) -> OptimizerWork:
        """Optimizer-model calls the strategy makes (for `--estimate`); an upper bound."""
        ...


class StrategyBase:
    """A strategy's declared `options` become attributes of the same names, from the values given or the defaults;
    an option it does not declare is refused (`OptionError`)."""

    name: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    default_steps: ClassVar[int] = 1
    commands: ClassVar[str] = ""
    """`module:attribute` of a click command group the strategy adds to the command line (e.g. `promptopt bpo`)."""

    def __init__(self, **given: Any) -> None:
        for name, value in resolve_options(self.name, self.options, given).items():
            setattr(self, name, value)

    def expected_optimizer_work(self, size: SearchSize) -> OptimizerWork:
        """None, unless the strategy says otherwise: structural strategies write prompts without a model."""
        return OptimizerWork()
