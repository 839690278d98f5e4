"""The LLM judge: a chat model reads the case, the output and a rubric, and answers with a verdict and its
rationale. Any configured model backend can judge (calls go out with role `judge`, through the response cache);
the scorer charges them to the run's budget and stores them. The rationale becomes the feedback. A reply with
no readable verdict, or a failed call, is a failed evaluation that says so, never an exception."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

from promptopt.case import Case, ToolCall
from promptopt.chat_messages import message_text
from promptopt.evaluators.base import Score
from promptopt.models.base import ModelBackend

DEFAULT_RUBRIC = ("The assistant handles the user's latest message correctly: it calls the expected tool (or no "
                  "tool when none is expected) with arguments that mean the same as the expected ones, and any "
                  "reply text is accurate and helpful.")
JUDGE_INSTRUCTIONS = (
    "You are a strict evaluator of an AI assistant. Judge the assistant's output against the rubric.\n\n"
    "Rubric:\n{rubric}\n\n"
    "Answer with one JSON object and nothing else:\n"
    '{{"verdict": "pass" or "fail", "score": a number from 0 to 1, "rationale": "one or two sentences"}}'
)
_VERDICT = re.compile(r"verdict\W{0,4}(pass|fail)", re.I)
_SCORE = re.compile(r"score\W{0,4}([01](?:\.\d+)?|\.\d+)\b", re.I)
_RATIONALE = re.compile(r"rationale\W{0,4}(.+)", re.I | re.S)
_JSON = re.compile(r"\{.*\}", re.S)


def parse_judgement(text: str) -> tuple[float, str] | None:
    """(value, rationale) from a judge's reply, or None when it holds no verdict or score in [0, 1].

    A JSON object `{"verdict", "score", "rationale"}` is read first, else `verdict: pass` / `score: 0.4` /
    `rationale: ...` lines. `pass` scores 1; `fail` scores the given score when it is below 1, else 0."""
    data: dict[str, Any] = {}
    found = _JSON.search(text)
    if found:
        try:
            loaded = json.loads(found.group(0))
            data = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            data = {}
    verdict = str(data.get("verdict", "")).strip().lower() or (m.group(1).lower() if (m := _VERDICT.search(text)) else "")
    score: Any = data.get("score")
    if score is None and (m := _SCORE.search(text)):
        score = m.group(1)
    try:
        score = float(score) if score is not None else None
    except (TypeError, ValueError):
        score = None
    if score is not None and not 0.0 <= score <= 1.0:
        score = None
    rationale = str(data.get("rationale") or "").strip()
    if not rationale and not data and (m := _RATIONALE.search(text)):
        rationale = m.group(1).strip()
    if verdict == "pass":
        return 1.0, rationale
    if verdict == "fail":
        return (score if score is not None and score < 1.0 else 0.0), rationale
    if score is not None:
        return score, rationale
    return None


def load_rubric(rubric: str | Path | None) -> str | None:
    """The rubric text: the contents of `rubric` when it names an existing file, else `rubric` itself."""
    if rubric is None:
        return None
    path = Path(rubric)
    try:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    except OSError:
        pass
    return str(rubric)


def describe(call: ToolCall) -> str:
    """A tool call as the judge reads it."""
    tool = "no tool" if call.is_none else f"tool {call.name} with arguments {json.dumps(call.arguments, ensure_ascii=False)}"
    return f"{tool}; reply text: {json.dumps(call.text, ensure_ascii=False)}" if call.text else tool


class JudgeEvaluator:
    """Asks `model` for a verdict on each (case, output) under `rubric`, all of a batch concurrently."""

    name = "judge"
    model_calls_per_case = 1

    def __init__(self, model: ModelBackend, rubric: str | None = None, max_tokens: int = 256) -> None:
        self.model = model
        self.rubric = (rubric or DEFAULT_RUBRIC).strip()
        self.max_tokens = max_tokens

    def messages(self, case: Case, output: ToolCall) -> list[dict[str, str]]:
        """The judge's request for one case."""
        conversation = "\n".join(f"{m['role']}: {message_text(m)}" for m in case.messages())
        return [{"role": "system", "content": JUDGE_INSTRUCTIONS.format(rubric=self.rubric)},
                {"role": "user", "content": f"Conversation:\n{conversation}\n\nExpected: {describe(case.expected)}\n"
                                            f"Assistant's output: {describe(output)}"}]

    def __call__(self, case: Case, output: ToolCall) -> Score:
        return self.evaluate_many([case], [output])[0]

    def evaluate_many(self, cases: Sequence[Case], outputs: Sequence[ToolCall]) -> list[Score]:
        """One judge call per case, sent together; each score carries its call for the budget and the store."""
        if not cases:
            return []
        requests = [self.messages(case, output) for case, output in zip(cases, outputs)]
        completions = self.model.generate_many(requests, temperature=0.0, max_tokens=self.max_tokens, role="judge")
        scores = []
        for completion in completions:
            calls = (completion.record,)
            if completion.error:
                scores.append(Score(0.0, f"judge call failed: {completion.error}", calls=calls))
                continue
            parsed = parse_judgement(completion.text)
            if parsed is None:
                reply = " ".join(completion.text.split())[:160]
                scores.append(Score(0.0, f"judge reply had no verdict, counted as a failure: {reply!r}", calls=calls))
                continue
            value, rationale = parsed
            scores.append(Score(value, f"judge: {rationale or 'no rationale given'}", calls=calls))
        return scores
