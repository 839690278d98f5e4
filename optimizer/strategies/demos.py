"""The demos strategy: few-shot examples from training cases, appended to the system prompt.

The first step's first set is drawn like the training cases (each tool in proportion); every other set covers
every tool (and "no tool") once, then spends the rest of its slots on the most confused pairs of the incumbent (a
case of the expected tool it got wrong, and a case of the tool it wrongly chose). Demos come from training cases
(`demo_pool`) outside the run's seed training sample where there are any, and candidate sets are scored on that
sample (less any case that is a demo this step), where the incumbent's results are already known: the incumbent is
not scored again, and a model that calibrates itself per prompt on that sample scores it once per prompt; only
sets better than the incumbent there are returned, best first, for the loop's acceptance test. Later steps mutate
the incumbent's set towards its new errors.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence

from promptopt.case import Case
from promptopt.optimizer.candidates import Candidate
from promptopt.optimizer.options import Option
from promptopt.optimizer.prompt_text import render_demos
from promptopt.optimizer.scorer import accuracy
from promptopt.optimizer.splits import stratified_sample
from promptopt.optimizer.strategy import Proposal, SearchContext, SearchSize, StrategyBase

MAX_DEMO_CHARS = 80


def demo_pool(train: Sequence[Case]) -> list[Case]:
    """The training cases demos are drawn from: short requests, single-turn ones only unless most cases are
    multi-turn (then a demo shows the turns before the request; on a task such as SGD, where nine cases in ten have
    context, single-turn demos cover half the tools and never "no tool")."""
    short = [c for c in train if len(c.query) <= MAX_DEMO_CHARS]
    single = [c for c in short if not c.context]
    return single if 2 * sum(1 for c in train if not c.context) >= len(train) else short


class DemosStrategy(StrategyBase):
    """Searches over a few demo sets per step (see the module docstring)."""

    name = "demos"
    options = (
        Option("n_demos", int, 22, "examples per candidate prompt", minimum=1),
        Option("candidates", int, 3, "demo sets per step", minimum=1),
    )
    n_demos: int
    candidates: int

    def expected_calls(self, size: SearchSize) -> int:
        """Per step: each candidate set on the seed's training sample."""
        return size.steps * self.candidates * size.incumbent_sample

    def propose(self, context: SearchContext, step: int) -> list[Proposal]:
        incumbent = context.incumbent
        base = incumbent.details.get("base_prompt", incumbent.prompt)
        current = list(incumbent.details.get("demo_case_ids", []))
        train = {c.id: c for c in context.train}
        confusions = Counter(
            (train[i].expected.name, r.output.name) for i, r in context.incumbent_train.items()
            if not r.passed and i in train
        )
        pool = demo_pool(context.train)
        sets: list[list[int]] = [] if current else [self._stratified(context, pool)]
        for _ in range(self.candidates * 3):
            chosen = self._select(context, pool, confusions, current)
            if chosen and sorted(chosen) not in [sorted(s) for s in sets]:
                sets.append(chosen)
            if len(sets) == self.candidates:
                break
        registered = []
        for chosen in sets:
            candidate = Candidate(
                prompt=render_demos(base, [train[i] for i in chosen]),
                operator="demos" if not current else "demos-mutate",
                parent_ids=[incumbent.id] if incumbent.id is not None else [],
                rationale=self._rationale(confusions),
                details={"base_prompt": base, "demo_case_ids": chosen},
            )
            if context.register(candidate, step) is None:
                registered.append(candidate)
        if not registered:
            return []
        shown = {i for c in registered for i in c.details["demo_case_ids"]}
        sample = [c for c in context.train if c.id in context.incumbent_train and c.id not in shown]
        baseline = accuracy({c.id: context.incumbent_train[c.id] for c in sample})
        return context.rank_against_incumbent(registered, sample, baseline, step)

    def _stratified(self, context: SearchContext, pool: list[Case]) -> list[int]:
        """A first set drawn like the training cases (each tool in proportion, every tool at least once), from
        outside the seed's training sample where possible: the set that moved the embedded model most reliably."""
        outside = [c for c in pool if c.id not in context.incumbent_train]
        chosen = stratified_sample(outside if len(outside) >= self.n_demos else pool, self.n_demos, context.rng)
        return [chosen[i].id for i in context.rng.permutation(len(chosen))]

    def _select(self, context: SearchContext, pool: list[Case], confusions: Counter, current: list[int]
                ) -> list[int]:
        """Pick demo case ids from `pool`: keep part of the current set, then coverage, then confused pairs."""
        rng = context.rng
        by_tool: dict[str, list[Case]] = defaultdict(list)
        for case in pool:
            by_tool[case.expected.name].append(case)
        chosen: list[int] = []

        def take(tool: str) -> None:
            pool = [c.id for c in by_tool.get(tool, []) if c.id not in chosen]
            unscored = [i for i in pool if i not in context.incumbent_train]
            if pool:
                chosen.append(int(rng.choice(unscored or pool)))

        if current:
            keep = max(0, len(current) - max(1, len(current) // 4))
            chosen.extend(int(i) for i in rng.choice(current, size=keep, replace=False))
        else:
            for tool in [*context.tool_names, "none"]:
                take(tool)
        pairs = [pair for pair, _ in confusions.most_common()]
        index = 0
        while len(chosen) < self.n_demos and pairs and index < 4 * self.n_demos:
            expected, predicted = pairs[index % len(pairs)]
            take(expected if index % 2 == 0 else predicted)
            index += 1
        tools = sorted(by_tool)
        while len(chosen) < self.n_demos and any(c.id not in chosen for t in tools for c in by_tool[t]):
            take(tools[int(rng.integers(len(tools)))])
        order = rng.permutation(len(chosen))
        return [chosen[i] for i in order]

    @staticmethod
    def _rationale(confusions: Counter) -> str:
        top = ", ".join(f"{e}->{p} x{n}" for (e, p), n in confusions.most_common(5))
        return f"few-shot demos covering every tool and the most confused pairs ({top or 'no errors'})"

