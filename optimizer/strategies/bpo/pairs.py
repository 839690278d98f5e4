"""BPO pairs (Cheng et al. 2023, "Black-Box Prompt Optimization"): feedback groups, the optimizer model's
step-by-step analysis and rewrite of each, the paper-style filters, preference-data import and the chat-format
export the rewriter is trained on.

A feedback group is one prompt with outcomes under it: from the store, cases the prompt gets right (with the
expected tool) and wrong (with the expected and the chosen tool); from a preference file, a good and a bad
response. The optimizer model compares them, reasons step by step about why the prompt led to the bad ones,
and writes an improved prompt between <PROMPT> tags. It is shown and writes the prompt's editable text only
(`PromptParts`: tool list, protected regions and examples are described, never copied), so a pair holds editable
texts, original -> improved, and the rewriter learns and writes those. A pair is kept only if it passes the
filters in `pair_rejection`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from promptopt.case import NO_TOOL, Case
from promptopt.markup import DEFAULT_MAX_CHARS
from promptopt.models.base import Completion
from promptopt.optimizer.candidates import validation_problem
from promptopt.optimizer.prompt_parts import PromptParts
from promptopt.optimizer.prompt_text import PROMPT_TAGS, first_tagged, normalized
from promptopt.optimizer.scorer import CaseResult
from promptopt.runs.case_import import CaseFileError, Problem, jsonl_records
from promptopt.runs.store import BpoPairRecord

STORE_FEEDBACK, PREFERENCE_IMPORT = "store-feedback", "preference-import"
MIN_LENGTH_RATIO, MAX_LENGTH_RATIO = 0.5, 3.0

# (requests, temperature, max_tokens) -> one completion per request
Ask = Callable[[Sequence[list[dict[str, str]]], float, int], list[Completion]]

ANALYSIS_REQUEST = (
    "You improve the system prompts of AI assistants. Below is a system prompt and how responses under it "
    "turned out: good ones that should stay good, and bad ones next to what the response should have been.\n\n"
    "System prompt:\n{prompt}\n\n{fixed}{feedback}\n\n"
    "First compare the good and the bad responses and reason step by step about why the prompt led to the bad "
    "ones. Then write an improved system prompt that keeps what works and fixes what does not.{constraints} "
    "Write your reasoning first, then the improved prompt, starting with {open} and ending with {close}."
)
TOOL_CONSTRAINT = " It must still name every tool: {tools}."

REWRITER_SYSTEM = ("Rewrite the system prompt the user sends into a better one: clearer, more specific about "
                   "what to do in each situation, with every tool name and protected section kept. Reply with "
                   "the improved system prompt only.")


@dataclass(frozen=True)
class Outcome:
    """One response under a prompt: the request it answered (may be empty), what was right, and what was
    given instead (None when the prompt got it right)."""

    request: str
    good: str
    bad: str | None = None


@dataclass
class FeedbackGroup:
    """A prompt and outcomes under it, the material of one BPO pair."""

    prompt: str
    source: str
    outcomes: list[Outcome]
    details: dict[str, Any] = field(default_factory=dict)


def feedback_from_results(prompt: str, cases: Sequence[Case], results: dict[int, CaseResult], groups: int,
                          per_side: int, rng: Any) -> list[FeedbackGroup]:
    """Up to `groups` groups of `per_side` wrong and `per_side` right cases of `prompt`, sampled with `rng`;
    none when the prompt gets no case wrong."""
    scored = [c for c in cases if c.id in results]
    wrong = [c for c in scored if not results[c.id].passed]
    right = [c for c in scored if results[c.id].passed]
    made = []
    for _ in range(groups if wrong else 0):
        picks_wrong = [wrong[int(i)] for i in rng.permutation(len(wrong))[:per_side]]
        picks_right = [right[int(i)] for i in rng.permutation(len(right))[:per_side]]
        outcomes = [Outcome(c.transcript(), _tool(c.expected.name)) for c in picks_right]
        outcomes += [Outcome(c.transcript(), _tool(c.expected.name), _tool(results[c.id].output.name))
                     for c in picks_wrong]
        made.append(FeedbackGroup(prompt, STORE_FEEDBACK, outcomes,
                                  {"right_case_ids": [c.id for c in picks_right],
                                   "wrong_case_ids": [c.id for c in picks_wrong]}))
    return made


def analysis_request(group: FeedbackGroup, tool_names: Sequence[str]) -> str:
    """The optimizer model's request for one group: outcomes, then analysis and an improved prompt in tags."""
    blocks = []
    for outcome in group.outcomes:
        lines = [f"Request:\n{outcome.request}"] if outcome.request else []
        if outcome.bad is None:
            lines.append(f"Good response: {outcome.good}")
        else:
            lines += [f"Bad response: {outcome.bad}", f"It should have been: {outcome.good}"]
        blocks.append("\n".join(lines))
    parts = PromptParts.of(group.prompt, tool_names)
    named = [name for name in tool_names if name in parts.editable]
    constraints = TOOL_CONSTRAINT.format(tools=", ".join(named)) if named else ""
    note = parts.note()
    fixed = f"{note}\n\n" if note else ""
    return ANALYSIS_REQUEST.format(prompt=parts.editable, fixed=fixed, feedback="\n\n".join(blocks),
                                   constraints=constraints, open=PROMPT_TAGS[0], close=PROMPT_TAGS[1])


def pair_rejection(original: str, rewrite: str, tool_names: Sequence[str],
                   max_chars: int = DEFAULT_MAX_CHARS) -> str | None:
    """Why the pair (`original` prompt -> `rewrite` of its editable text) must be dropped, or None.

    As in the paper, pairs whose rewrite is not a plausible improvement are filtered out: identical to the
    original's editable text (nothing to learn), or a length ratio rewrite/original outside [0.5, 3.0]: one
    under half the length has dropped content, one over three times it has nearly always copied the analysis or
    rambled (the paper's filter targets the same two failures: degenerate and verbose rewrites). Last, the
    rewrite spliced back into the original's fixed parts must pass the normal candidate validation (every tool
    still named, the length cap)."""
    parts = PromptParts.of(original, tool_names)
    text = parts.clean(rewrite)
    if not text:
        return "no improved prompt in the reply"
    if normalized(text) == normalized(parts.editable):
        return "identical to the original"
    ratio = len(text) / max(len(parts.editable), 1)
    if not MIN_LENGTH_RATIO <= ratio <= MAX_LENGTH_RATIO:
        return f"length ratio outside [{MIN_LENGTH_RATIO}, {MAX_LENGTH_RATIO}]: {ratio:.2f}"
    return validation_problem(parts.splice(text), original, tool_names, max_chars)


def construct_pairs(groups: Sequence[FeedbackGroup], ask: Ask, tool_names: Sequence[str], temperature: float = 0.0,
                    max_tokens: int = 1024, max_chars: int = DEFAULT_MAX_CHARS) -> list[BpoPairRecord]:
    """One optimizer call per group; each reply split into analysis and improved editable text, then filtered.
    Duplicates of an earlier pair of the batch are rejected too. Pairs hold editable texts (see the module
    docstring)."""
    if not groups:
        return []
    replies = ask([[{"role": "user", "content": analysis_request(g, tool_names)}] for g in groups], temperature,
                  max_tokens)
    pairs, seen = [], set()
    for group, reply in zip(groups, replies):
        parts = PromptParts.of(group.prompt, tool_names)
        analysis, optimized = split_reply(reply.text)
        optimized = parts.clean(optimized)
        rejection = f"optimizer call failed: {reply.error}" if reply.error else \
            pair_rejection(group.prompt, optimized, tool_names, max_chars)
        key = (parts.editable, normalized(optimized))
        if rejection is None and key in seen:
            rejection = "duplicate of an earlier pair"
        seen.add(key)
        pairs.append(BpoPairRecord(source=group.source, original=parts.editable, optimized=optimized,
                                   analysis=analysis, kept=rejection is None, rejection=rejection or "",
                                   details={**group.details, "raw_reply": reply.text[:4000]}))
    return pairs


def split_reply(reply: str) -> tuple[str, str]:
    """(analysis, improved prompt): the text before the first <PROMPT> tag and the text inside the tags; a
    reply without the tag has no improved prompt."""
    if PROMPT_TAGS[0] not in reply:
        return reply.strip(), ""
    return reply.split(PROMPT_TAGS[0], 1)[0].strip(), first_tagged(reply)


def chat_example(original: str, optimized: str) -> dict[str, Any]:
    """One pair in chat format, as exported and as the rewriter is trained and prompted."""
    return {"messages": [{"role": "system", "content": REWRITER_SYSTEM}, {"role": "user", "content": original},
                         {"role": "assistant", "content": optimized}]}


def export_jsonl(pairs: Sequence[tuple[str, str]]) -> str:
    """(original, optimized) pairs as JSON Lines in chat format."""
    return "".join(json.dumps(chat_example(o, p), ensure_ascii=False) + "\n" for o, p in pairs)


def read_chat_pairs(path: str | Path) -> list[tuple[str, str]]:
    """(original, optimized) pairs from an exported chat-format JSONL file; any bad line fails the whole file."""
    def pair(data: Any) -> tuple[str, str] | str:
        messages = data.get("messages") if isinstance(data, dict) else None
        if not isinstance(messages, list):
            return 'expected {"messages": [...]}'
        by_role = {m.get("role"): m.get("content") for m in messages if isinstance(m, dict)}
        if not isinstance(by_role.get("user"), str) or not isinstance(by_role.get("assistant"), str):
            return "messages need a user (original) and an assistant (optimized) message with text content"
        return by_role["user"], by_role["assistant"]

    return _read_jsonl(path, pair, "pairs")


def read_preferences(path: str | Path) -> list[FeedbackGroup]:
    """Preference data from JSONL, one `{"prompt", "good", "bad"}` object a line (optional `request`: what the
    responses answered), as feedback groups; a file with any problem yields nothing."""
    def group(data: Any) -> FeedbackGroup | str:
        if not isinstance(data, dict):
            return "each line must be a JSON object"
        for key in ("prompt", "good", "bad"):
            if not isinstance(data.get(key), str) or not data[key].strip():
                return f"{key}: {'missing' if key not in data else 'must be a non-empty string'}"
        request = data.get("request", "")
        if not isinstance(request, str):
            return "request: must be a string"
        return FeedbackGroup(data["prompt"], PREFERENCE_IMPORT,
                             [Outcome(request, data["good"]), Outcome(request, data["good"], data["bad"])])

    return _read_jsonl(path, group, "preferences")


def _read_jsonl(path: str | Path, parse: Callable[[Any], Any], what: str) -> list[Any]:
    """Parse every line with `parse` (a value, or a problem message); all problems raise `CaseFileError`."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise CaseFileError([Problem(name, None, None, f"cannot read file: {error}")]) from None
    items, problems = [], []
    for record in jsonl_records(name, text):
        if isinstance(record, Problem):
            problems.append(record)
            continue
        number, data = record
        value = parse(data)
        if isinstance(value, str):
            problems.append(Problem(name, number, None, value))
        else:
            items.append(value)
    if not problems and not items:
        problems.append(Problem(name, None, None, f"the file holds no {what}"))
    if problems:
        raise CaseFileError(problems)
    return items


def _tool(name: str) -> str:
    return f"call {name}" if name != NO_TOOL else "answer without a tool"
