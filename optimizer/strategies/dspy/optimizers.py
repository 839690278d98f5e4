"""The DSPy optimizers promptopt runs through the bridge: COPRO, MIPROv2, BootstrapFewShotWithRandomSearch and
GEPA, each with its declared options and their DSPy names."""
from __future__ import annotations

from typing import Any

from promptopt.optimizer.options import Option, OptionError
from promptopt.optimizer.strategies.dspy.bridge import (CANDIDATES, COMMON_OPTIONS, LABELED_DEMOS, N_DEMOS,
                                                         DspyStrategy, metric)
from promptopt.optimizer.strategy import SearchSize


class DspyCopro(DspyStrategy):
    """COPRO: `candidates` (breadth) instructions per round for `depth` rounds, each scored on the sample."""

    name, dspy_optimizer = "dspy-copro", "COPRO"
    options = (CANDIDATES, Option("depth", int, 2, "COPRO's rounds of proposals (its breadth is --candidates)",
                                  minimum=1), *COMMON_OPTIONS)
    candidates: int
    depth: int

    def __init__(self, **given: Any) -> None:
        super().__init__(**given)
        if self.candidates < 2:
            raise OptionError("dspy-copro needs at least 2 candidates (COPRO's breadth)")

    @property
    def settings(self) -> dict[str, Any]:
        return {"breadth": self.candidates, "depth": self.depth}

    def _programs(self) -> int:
        return self.candidates * (self.depth + 1)

    def _compile(self, dspy, program, examples, train, val, seed, lm):
        copro = dspy.COPRO(prompt_model=lm, metric=metric(), breadth=self.candidates, depth=self.depth,
                           init_temperature=self.temperature)
        return copro.compile(program, trainset=examples, eval_kwargs={"num_threads": 1, "display_progress": False})


class DspyMipro(DspyStrategy):
    """MIPROv2 without `auto`: `candidates` instruction and demo-set candidates, `trials` Bayesian-search trials."""

    name, dspy_optimizer = "dspy-mipro", "MIPROv2"
    options = (CANDIDATES, Option("trials", int, 4, "MIPROv2's search trials", minimum=1), N_DEMOS, LABELED_DEMOS,
               *COMMON_OPTIONS)
    candidates: int
    trials: int
    n_demos: int
    labeled_demos: int

    @property
    def settings(self) -> dict[str, Any]:
        return {"num_candidates": self.candidates, "num_trials": self.trials,
                "max_bootstrapped_demos": self.n_demos, "max_labeled_demos": self.labeled_demos}

    def _programs(self) -> int:
        return self.candidates + self.trials + 2

    def _compile(self, dspy, program, examples, train, val, seed, lm):
        mipro = dspy.MIPROv2(metric=metric(), prompt_model=lm, task_model=lm, auto=None,
                             num_candidates=self.candidates, max_bootstrapped_demos=self.n_demos,
                             max_labeled_demos=self.labeled_demos, num_threads=1, seed=seed,
                             init_temperature=self.temperature, verbose=False, track_stats=False)
        return mipro.compile(program, trainset=train, valset=val or train, num_trials=self.trials,
                             minibatch=False, program_aware_proposer=False, data_aware_proposer=False)


class DspyBootstrap(DspyStrategy):
    """BootstrapFewShotWithRandomSearch: `candidates` random demo programs (plus DSPy's three fixed ones) with up
    to `n_demos` bootstrapped and `labeled_demos` labelled demos, the best on DSPy's validation part kept."""

    name, dspy_optimizer = "dspy-bootstrap", "BootstrapFewShotWithRandomSearch"
    options = (CANDIDATES, N_DEMOS, LABELED_DEMOS, *COMMON_OPTIONS)
    candidates: int
    n_demos: int
    labeled_demos: int

    @property
    def settings(self) -> dict[str, Any]:
        return {"num_candidate_programs": self.candidates, "max_bootstrapped_demos": self.n_demos,
                "max_labeled_demos": self.labeled_demos}

    def _programs(self) -> int:
        return self.candidates + 4

    def _compile(self, dspy, program, examples, train, val, seed, lm):
        search = dspy.BootstrapFewShotWithRandomSearch(
            metric=metric(), max_bootstrapped_demos=self.n_demos, max_labeled_demos=self.labeled_demos,
            num_candidate_programs=self.candidates, num_threads=1)
        return search.compile(program, trainset=train, valset=val or train)


class DspyGepa(DspyStrategy):
    """GEPA: reflective instruction evolution spending at most `max_metric_calls` metric calls."""

    name, dspy_optimizer = "dspy-gepa", "GEPA"
    options = (Option("max_metric_calls", int, 60, "GEPA's budget of metric calls (one case under one prompt "
                      "each)", minimum=1), *COMMON_OPTIONS)
    max_metric_calls: int

    @property
    def settings(self) -> dict[str, Any]:
        return {"max_metric_calls": self.max_metric_calls}

    def expected_calls(self, size: SearchSize) -> int:
        """GEPA's metric calls plus the result on the training sample."""
        return size.steps * (self.max_metric_calls + min(self.train_sample, size.train))

    def _compile(self, dspy, program, examples, train, val, seed, lm):
        gepa = dspy.GEPA(metric=metric(), max_metric_calls=self.max_metric_calls, reflection_lm=lm,
                         num_threads=1, seed=seed, track_stats=False, use_merge=False)
        return gepa.compile(program, trainset=train, valset=val or train)
