"""The rules strategy: routing rules induced from the incumbent's training confusions, no prompt-writing model needed.

For each confused pair (expected A, chose B) on the training cases, one short rule names the right choice, the wrong
one and quotes a few of the training requests it was about, written in those requests' language (English or
Chinese templates; others fall back to English). Rules go into a `## Routing rules` section at the end of the
editable prompt (replacing an earlier one), so demos and protected regions stay as they are. Candidates differ in
how many pairs they cover and how many requests each rule quotes; they are scored on a shared sample of training
cases not quoted by any of them, and only those better than the incumbent there go on to validation.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Sequence

from promptopt.case import NO_TOOL, Case
from promptopt.optimizer.candidates import Candidate
from promptopt.optimizer.options import Option
from promptopt.optimizer.scorer import CaseResult, accuracy
from promptopt.optimizer.splits import stratified_sample
from promptopt.optimizer.strategy import Proposal, SearchContext, SearchSize, StrategyBase

RULES_HEADER = "## Routing rules"
MAX_QUOTE_CHARS = 60
_CJK = re.compile(r"[\u3400-\u9fff]")
_SECTION = re.compile(r"\n*^## Routing rules\n(?:^- .*\n?)*", re.M)


def language(text: str) -> str:
    """`zh` when at least a fifth of the letters are CJK ideographs, else `en` (the two templates we write)."""
    letters = [ch for ch in text if ch.isalpha()]
    return "zh" if letters and len(_CJK.findall(text)) * 5 >= len(letters) else "en"


def confusions(train: Sequence[Case], results: dict[int, CaseResult]) -> dict[tuple[str, str], list[Case]]:
    """Failing training cases grouped by (expected choice, chosen choice), most frequent pair first."""
    pairs: dict[tuple[str, str], list[Case]] = defaultdict(list)
    for case in train:
        result = results.get(case.id)  # type: ignore[arg-type]
        if result is not None and not result.passed and result.output.name != case.expected.name:
            pairs[(case.expected.name, result.output.name)].append(case)
    return dict(sorted(pairs.items(), key=lambda item: -len(item[1])))


def write_rule(expected: str, chosen: str, quoted: Sequence[Case]) -> str:
    """One rule line in the quoted requests' majority language."""
    quotes = [" ".join(c.query.split())[:MAX_QUOTE_CHARS] for c in quoted]
    if Counter(language(q) for q in quotes).most_common(1)[0][0] == "zh":
        right = "不调用工具，直接回复" if expected == NO_TOOL else f"调用 {expected}"
        wrong = "不要直接回复" if chosen == NO_TOOL else f"不要调用 {chosen}"
        return f"- 像{'、'.join(f'「{q}」' for q in quotes)}这样的请求：{right}，{wrong}。"
    right = "reply directly without a tool" if expected == NO_TOOL else f"call {expected}"
    wrong = "do not just reply" if chosen == NO_TOOL else f"not {chosen}"
    return f"- Requests like {'; '.join(repr(q) for q in quotes)}: {right}, {wrong}."


def with_rules(prompt: str, rules: Sequence[str]) -> str:
    """`prompt` with its routing-rules section (if any) replaced by `rules`."""
    base = _SECTION.sub("", prompt).rstrip()
    return f"{base}\n\n{RULES_HEADER}\n" + "\n".join(rules) + "\n" if rules else base + "\n"


class RulesStrategy(StrategyBase):
    """Searches over rule sets induced from confusions (see the module docstring)."""

    name = "rules"
    options = (
        Option("max_rules", int, 8, "most confused pairs the largest rule set covers", minimum=1),
        Option("quotes", int, 2, "training requests quoted per rule", minimum=1),
        Option("candidates", int, 3, "rule sets per step (covering more pairs each)", minimum=1),
        Option("train_sample", int, 48, "training cases each set is scored on before validation", minimum=1),
    )
    max_rules: int
    quotes: int
    candidates: int
    train_sample: int

    def expected_calls(self, size: SearchSize) -> int:
        """Per step: the incumbent and each candidate set on the training sample."""
        return size.steps * (1 + self.candidates) * min(self.train_sample, size.train)

    def propose(self, context: SearchContext, step: int) -> list[Proposal]:
        pairs = confusions(context.train, context.incumbent_train)
        if not pairs:
            return []
        ordered = list(pairs.items())
        counts = sorted({max(1, round(self.max_rules * (k + 1) / self.candidates)) for k in range(self.candidates)})
        registered, quoted_ids = [], set()
        for count in counts:
            chosen = ordered[:count]
            rules = []
            for (expected, wrong), cases in chosen:
                picks = [cases[int(i)] for i in context.rng.permutation(len(cases))[:self.quotes]]
                quoted_ids.update(c.id for c in picks)
                rules.append(write_rule(expected, wrong, picks))
            candidate = Candidate(
                prompt=with_rules(context.incumbent.prompt, rules), operator="rules",
                parent_ids=[context.incumbent.id] if context.incumbent.id is not None else [],
                rationale="routing rules for the most confused pairs: " + ", ".join(
                    f"{e}->{w} x{len(c)}" for (e, w), c in chosen),
                details={"pairs": [[e, w, len(c)] for (e, w), c in chosen]},
            )
            if context.register(candidate, step) is None:
                registered.append(candidate)
        if not registered:
            return []
        sample = stratified_sample([c for c in context.train if c.id not in quoted_ids], self.train_sample,
                                   context.rng)
        incumbent_results = context.score(context.incumbent.id, context.incumbent.prompt, sample,
                                          label=f"step {step} incumbent")
        return context.rank_against_incumbent(registered, sample, accuracy(incumbent_results), step)
