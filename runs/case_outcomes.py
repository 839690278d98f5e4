"""What became of each held-out test case from the seed prompt to the winner (fixed, broken, still wrong, still
right), and the expected-vs-chosen tool counts behind the report's confusion matrices."""
from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass

from promptopt.case import NO_TOOL, Case, ToolCall
from promptopt.runs.store import Store
from promptopt.runs.tables import EvaluationRow, RunRow

OUTCOMES = ("fixed", "broken", "still wrong", "still right")
LANGUAGE_TAGS = frozenset("ar de en es fr hi id it ja ko nl pl pt ru sv th tr uk vi zh".split())
"""Case tags read as the case's language (ISO 639-1 codes); a case without one is told by its script."""


@dataclass(frozen=True)
class HeldOutCase:
    """One test case under the seed prompt and under the winner."""

    case: Case
    seed: EvaluationRow
    winner: EvaluationRow

    @property
    def outcome(self) -> str:
        """fixed (the winner gets it right, the seed did not), broken, still wrong or still right."""
        return OUTCOMES[[(False, True), (True, False), (False, False), (True, True)].index(
            (self.seed.passed, self.winner.passed))]

    @property
    def language(self) -> str:
        return case_language(self.case)


def held_out_cases(store: Store, run: RunRow) -> list[HeldOutCase]:
    """The run's test cases that both the seed and the winner were scored on (the cases `run_report` counts), in
    the run's split order."""
    seed = store.evaluations(run.seed_candidate_id) if run.seed_candidate_id else {}
    winner = store.evaluations(run.winner_candidate_id) if run.winner_candidate_id else {}
    test_ids = [cid for cid, split in store.run_splits(run.id).items() if split == "test"]
    scored = [cid for cid in test_ids if cid in seed and cid in winner]
    return [HeldOutCase(case, seed[case.id], winner[case.id]) for case in store.cases(scored)]


def chosen(evaluation: EvaluationRow) -> ToolCall:
    """What the model chose in a stored evaluation."""
    return ToolCall(evaluation.predicted_tool, evaluation.predicted_arguments or {}, evaluation.predicted_text or "")


def confusion(outcomes: list[HeldOutCase], prompt: str) -> tuple[list[str], list[list[int]]]:
    """Tool names (expected or chosen, `none` last) and counts[expected][chosen] under `prompt` (seed or winner)."""
    pairs = Counter((o.case.expected.name, getattr(o, prompt).predicted_tool) for o in outcomes)
    names = sorted({name for pair in pairs for name in pair}, key=lambda name: (name == NO_TOOL, name))
    return names, [[pairs[(expected, choice)] for choice in names] for expected in names]


def case_language(case: Case) -> str:
    """The case's language: a language-code tag (`zh`, `en`), else the script most of its query is written in
    (`zh` for Han, `ja` for kana, `ko` for Hangul, else the script, e.g. `latin script`)."""
    tagged = [tag for tag in case.tags if tag.lower() in LANGUAGE_TAGS]
    if tagged:
        return tagged[0].lower()
    scripts = Counter(unicodedata.name(ch, "UNKNOWN").split()[0] for ch in case.query if ch.isalpha())
    if scripts["HIRAGANA"] or scripts["KATAKANA"]:
        return "ja"
    if scripts["HANGUL"]:
        return "ko"
    if scripts["CJK"]:
        return "zh"
    return f"{scripts.most_common(1)[0][0].lower()} script" if scripts else "unknown"
