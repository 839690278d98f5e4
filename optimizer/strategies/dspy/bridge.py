"""The DSPy bridge: DSPy's optimizers (COPRO, MIPROv2, BootstrapFewShotWithRandomSearch, GEPA) searching for
the system prompt on promptopt's task, models, cache and budget.

DSPy optimizes a program with one `Predict` whose instructions are the editable text of the incumbent's prompt
(`PromptParts`: its tool list, protected regions and examples cut out) and whose output is the tool. Its forward
does not ask an LM for the tool: it renders the predictor's instructions and demos into a system prompt (the
instructions spliced back into the fixed parts, the demos under `## Examples` as the demos strategy writes them)
and scores the case with promptopt's shared scorer, so every task-model call is cached, charged and stored, and every prompt DSPy tries
is validated and stored as a `dspy-*-trial` candidate (an invalid one fails its cases without a model call).
DSPy's own LM (the proposer or reflection model) is an engine over `SearchContext.ask_optimizer`. DSPy sees a
stratified sample of the training split, part of it as its own validation set; promptopt's validation and test
splits stay out of its sight. One step runs the optimizer once; its program, rendered as a plain prompt, is
scored on that training sample and handed to the loop's acceptance like any other candidate.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from promptopt.case import Case
from promptopt.config import home_dir
from promptopt.optimizer.budget import BudgetExhausted
from promptopt.optimizer.candidates import Candidate
from promptopt.optimizer.options import Option
from promptopt.optimizer.scorer import CaseResult, accuracy
from promptopt.optimizer.splits import stratified_sample
from promptopt.optimizer.strategy import Proposal, SearchContext, SearchSize, StrategyBase

INSTALL_HINT = "the DSPy strategies need DSPy: pip install dspy (or pip install 'promptopt[dspy]')"


def import_dspy() -> Any:
    """The `dspy` module, set up to cache under promptopt's home and not to fetch litellm's price map."""
    os.environ.setdefault("DSPY_CACHEDIR", str(home_dir() / "dspy-cache"))
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import dspy
    except ImportError as error:
        raise RuntimeError(INSTALL_HINT) from error
    return dspy


@contextlib.contextmanager
def dspy_output_hidden() -> Any:
    """Keep DSPy's own output (its INFO log of trials, warnings about its proposer's inputs, progress bars and
    prints) off the terminal while it runs: promptopt reports each step itself and stores DSPy's figures in the
    step's notes. Its errors still end the step with their message."""
    logger = logging.getLogger("dspy")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        logger.setLevel(level)


def gepa_missing() -> bool:
    """Whether DSPy is installed without GEPA (looked up without importing DSPy, which takes a second)."""
    spec = importlib.util.find_spec("dspy")
    if spec is None or not spec.submodule_search_locations:
        return False
    has_module = any((Path(p) / "teleprompt" / "gepa").is_dir() for p in spec.submodule_search_locations)
    return not has_module or importlib.util.find_spec("gepa") is None


COMMON_OPTIONS = (
    Option("train_sample", int, 24, "training cases DSPy sees (half of them as its own validation set)", minimum=1),
    Option("temperature", float, 1.0, "sampling temperature of DSPy's proposer", minimum=0),
    Option("reply_tokens", int, 256, "longest reply DSPy's proposer may write", minimum=1),
)
CANDIDATES = Option("candidates", int, 3, "instruction or program candidates", minimum=1)
N_DEMOS = Option("n_demos", int, 4, "bootstrapped demos per program", minimum=0)
LABELED_DEMOS = Option("labeled_demos", int, 4, "labelled demos per program", minimum=0)


class DspyStrategy(StrategyBase):
    """Runs one DSPy optimizer per step (see the module docstring); subclasses choose it and its knobs, and
    `settings` names them as DSPy does."""

    name = "dspy"
    dspy_optimizer = ""
    """The DSPy optimizer's own name (COPRO, MIPROv2 ...)."""
    options = COMMON_OPTIONS
    train_sample: int
    temperature: float
    reply_tokens: int

    @property
    def settings(self) -> dict[str, Any]:
        """The optimizer's own settings under DSPy's names (stored with the step)."""
        raise NotImplementedError

    def expected_calls(self, size: SearchSize) -> int:
        """Task-model calls: every program DSPy evaluates on its cases, and the result on the training sample."""
        return size.steps * (self._programs() + 1) * min(self.train_sample, size.train)

    def _programs(self) -> int:
        """An upper bound on the programs DSPy evaluates on its whole sample in one run."""
        raise NotImplementedError

    def propose(self, context: SearchContext, step: int) -> list[Proposal]:
        dspy = import_dspy()
        from promptopt.optimizer.strategies.dspy.program import (
            CaseEvaluator,
            OptimizerEngine,
            RoutingProgram,
            prompt_renderer,
        )

        incumbent = context.incumbent
        base = incumbent.details.get("base_prompt", incumbent.prompt)
        parts = context.parts(base)
        editable = parts.editable
        render = prompt_renderer(parts)
        pool = stratified_sample(context.train, self.train_sample, context.rng)
        trials = _Trials(context, step, self.name, {render(editable, []): incumbent.id})
        evaluator = CaseEvaluator({c.id: c for c in pool}, render, trials.score_case)
        engine = OptimizerEngine(trials.ask, self.temperature, self.reply_tokens)
        lm = dspy.LM(f"local/{getattr(context.optimizer_model, 'name', 'optimizer')}", engine=engine, cache=False)
        examples = [dspy.Example(request=c.query, case_id=c.id, tool=c.expected.name).with_inputs("request", "case_id")
                    for c in pool]
        order = context.rng.permutation(len(examples))
        half = max(1, len(examples) // 2)
        train, val = [examples[int(i)] for i in order[:half]], [examples[int(i)] for i in order[half:]] or None
        failure = ""
        program = None
        try:
            with dspy.context(lm=lm, max_errors=1), dspy_output_hidden():
                program = self._compile(dspy, RoutingProgram(editable, evaluator), examples, train, val,
                                        int(context.rng.integers(2**31)), lm)
        except BudgetExhausted:
            raise
        except Exception as error:  # noqa: BLE001 - DSPy's failure ends this step, not the run
            if trials.exhausted is not None:
                raise trials.exhausted from error
            failure = f"{type(error).__name__}: {error}"
        if trials.exhausted is not None:
            raise trials.exhausted
        notes = {"optimizer": self.dspy_optimizer, "settings": {"train_sample": len(pool), **self.settings},
                 "dspy_train_cases": len(train), "dspy_val_cases": len(val or []),
                 "evaluations": evaluator.calls, "optimizer_calls": engine.calls,
                 "trial_prompts": trials.count, "invalid_trials": trials.invalid}
        proposals: list[Proposal] = []
        if program is None:
            outcome = f"DSPy stopped: {failure}"
        else:
            proposals, outcome = self._proposal(context, step, program, evaluator, render, pool, notes)
        notes["outcome"] = outcome
        context.notes["dspy"] = notes
        context.notes["summary"] = (
            f"{self.name}: {evaluator.calls} DSPy evaluations, {engine.calls} optimizer calls, {trials.count} "
            f"prompts tried ({trials.invalid} invalid); {outcome}")
        return [*proposals, *trials.held_back()]

    def _proposal(self, context: SearchContext, step: int, program: Any, evaluator: Any, render: Any,
                  pool: list[Case], notes: dict[str, Any]) -> tuple[list[Proposal], str]:
        """The optimized program as one registered, scored candidate (or why there is none)."""
        predictor = program.route
        prompt = evaluator.prompt(predictor)
        if prompt == context.incumbent.prompt:
            return [], "its program is the incumbent's prompt"
        by_query = {c.query: c.id for c in context.train}
        instructions = predictor.signature.instructions
        candidate = Candidate(
            prompt=prompt, operator=self.name, parent_ids=[context.incumbent.id] if context.incumbent.id else [],
            rationale=f"DSPy {self.dspy_optimizer}: instructions and {len(predictor.demos)} demo(s) of its best program",
            details={"base_prompt": render(instructions, []), "instructions": instructions,
                     "demo_case_ids": [by_query.get(str(d.get("request"))) for d in predictor.demos],
                     "dspy": {k: v for k, v in notes.items()}},
        )
        if context.register(candidate, step) is not None:
            return [], "its program's prompt failed validation"
        results = context.score(candidate.id, prompt, pool, label=f"step {step} {self.name} train")
        proposal = Proposal(candidate, results)
        return [proposal], f"its program scores {accuracy(results):.1%} on {len(pool)} training cases"

    def _compile(self, dspy: Any, program: Any, examples: list, train: list, val: list | None, seed: int,
                 lm: Any) -> Any:
        raise NotImplementedError


class _Trials:
    """The prompts DSPy tries: each validated and stored once as a candidate, then scored case by case through
    the shared scorer; remembers budget exhaustion, which DSPy would otherwise count as a failed example."""

    def __init__(self, context: SearchContext, step: int, name: str, known: dict[str, int | None]) -> None:
        self.context, self.step, self.name = context, step, name
        self.ids: dict[str, int | None] = dict(known)
        self.candidates: dict[str, Candidate] = {}
        self.exhausted: BudgetExhausted | None = None
        self.count = 0
        self.invalid = 0

    def score_case(self, prompt: str, case: Case) -> CaseResult | None:
        """The case's result under `prompt`, or None when the prompt fails validation."""
        if self.exhausted is not None:
            raise self.exhausted
        if prompt not in self.ids:
            trial = Candidate(prompt=prompt, operator=f"{self.name}-trial",
                              parent_ids=[self.context.incumbent.id] if self.context.incumbent.id else [],
                              rationale="a program DSPy evaluated during its search")
            valid = self.context.register(trial, self.step) is None
            self.ids[prompt] = trial.id if valid else None
            if valid:
                self.candidates[prompt] = trial
            self.count += 1
            self.invalid += not valid
        candidate_id = self.ids[prompt]
        if candidate_id is None:
            return None
        try:
            return self.context.score(candidate_id, prompt, [case], label=f"step {self.step} {self.name}")[case.id]
        except BudgetExhausted as error:
            self.exhausted = error
            raise

    def ask(self, messages: list[dict[str, str]], temperature: float, max_tokens: int, sample: int) -> str:
        """One optimizer-model completion (sample `sample` of these messages); a failed call is an empty reply."""
        if self.exhausted is not None:
            raise self.exhausted
        try:
            reply = self.context.ask_optimizer([messages], temperature, max_tokens, first_sample=sample)[0]
        except BudgetExhausted as error:
            self.exhausted = error
            raise
        return "" if reply.error else reply.text

    def held_back(self) -> list[Proposal]:
        """The valid trial prompts, held back as evaluated, so only the step's result goes on to acceptance."""
        return [Proposal(candidate, {}, rejection="a program DSPy evaluated during its search", status="evaluated")
                for candidate in self.candidates.values() if candidate.id != self.context.incumbent.id]


def metric() -> Any:
    """DSPy's metric over promptopt's evaluation (imports DSPy)."""
    from promptopt.optimizer.strategies.dspy.program import routing_metric

    return routing_metric
