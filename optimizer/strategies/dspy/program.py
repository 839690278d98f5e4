"""The DSPy side of the DSPy bridge: the routing program DSPy optimizes, the metric, and the engine that sends
DSPy's optimizer-model calls through promptopt. Imports dspy; only the bridge imports it,
and only once a DSPy strategy runs."""
from __future__ import annotations

import json
import re
import threading
from typing import Any, Callable

import dspy
from dspy.lm15 import Message, Response, TextPart, Usage

from promptopt.case import Case, ToolCall
from promptopt.optimizer.prompt_parts import PromptParts
from promptopt.optimizer.prompt_text import render_demos
from promptopt.optimizer.scorer import CaseResult

INVALID_PROMPT = "invalid-prompt"
FIELD_MARKER = re.compile(r"\[\[ ## (\w+) ## \]\]")
OUTPUT_FIELDS = re.compile(r"Your output fields are:\n(.*?)(?:\nAll interactions|\Z)", re.S)
JSON_OUTPUTS = "Outputs will be a JSON object"


class RouteSignature(dspy.Signature):
    """Route the user's request to one tool."""

    request: str = dspy.InputField(desc="the user's latest message")
    tool: str = dspy.OutputField(desc="the tool to call, or none")


class RoutingProgram(dspy.Module):
    """One predictor whose instructions (the editable part of the system prompt) and demos make the prompt;
    `forward` routes through promptopt's task model via `evaluate` instead of asking an LM for the tool."""

    def __init__(self, instructions: str, evaluate: "CaseEvaluator") -> None:
        super().__init__()
        self.route = dspy.Predict(RouteSignature.with_instructions(instructions))
        self.evaluate = evaluate

    def forward(self, request: str, case_id: int) -> dspy.Prediction:
        """The tool chosen for case `case_id` under the prompt this program renders; traced like `Predict`."""
        result = self.evaluate(self.route, case_id)
        tool = result.output.name if result is not None else INVALID_PROMPT
        traced = dspy.Prediction(tool=tool)
        trace = dspy.settings.trace
        if trace is not None and dspy.settings.max_trace_size > 0:
            if len(trace) >= dspy.settings.max_trace_size:
                trace.pop(0)
            trace.append((self.route, {"request": request}, traced))
        passed = bool(result is not None and result.passed)
        feedback = result.feedback if result is not None else "the prompt failed validation"
        return dspy.Prediction(tool=tool, passed=passed, feedback=feedback)


class CaseEvaluator:
    """Turns a predictor's state into a system prompt and scores one case under it through `score_case`.

    `render` gives the prompt; `score_case(prompt, case)` returns the case's result, or None when the prompt
    fails validation. Shared by every copy DSPy makes of the program (deep copies return this object)."""

    def __init__(self, cases: dict[int, Case], render: Callable[[str, list[Any]], str],
                 score_case: Callable[[str, Case], CaseResult | None]) -> None:
        self.cases = cases
        self.render = render
        self.score_case = score_case
        self.calls = 0
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict) -> "CaseEvaluator":
        return self

    def prompt(self, predictor: dspy.Predict) -> str:
        """The system prompt a predictor stands for: its instructions plus its demos."""
        return self.render(predictor.signature.instructions, list(predictor.demos))

    def __call__(self, predictor: dspy.Predict, case_id: int) -> CaseResult | None:
        with self._lock:
            self.calls += 1
            return self.score_case(self.prompt(predictor), self.cases[int(case_id)])


def demo_cases(demos: list[Any]) -> list[Case]:
    """DSPy demos (bootstrapped traces or labelled examples) as cases that `render_demos` writes out."""
    cases = []
    for demo in demos:
        request, tool = demo.get("request"), demo.get("tool")
        if request and tool and tool != INVALID_PROMPT:
            cases.append(Case(query=str(request), expected=ToolCall(str(tool))))
    return cases


def prompt_renderer(parts: PromptParts) -> Callable[[str, list[Any]], str]:
    """Renders (instructions, demos) as a system prompt: the instructions spliced into the incumbent's fixed parts
    (its base prompt again while they are its editable text unchanged), then the demos under `## Examples`, as
    the demos strategy writes them."""

    def render(instructions: str, demos: list[Any]) -> str:
        return render_demos(parts.splice(instructions), demo_cases(demos))

    return render


def routing_metric(gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None,
                   pred_trace: Any = None) -> Any:
    """Pass/fail of promptopt's evaluator; GEPA's feedback calls also get the evaluator's feedback text."""
    score = 1.0 if getattr(pred, "passed", False) else 0.0
    if pred_name is not None:
        return dspy.Prediction(score=score, feedback=getattr(pred, "feedback", "") or "")
    return score


def as_fields(text: str, system: str) -> str:
    """A reply in the format DSPy's adapter asked for (field markers, or a JSON object): returned as is when it
    has that format, else every output field the request asked for gets the whole reply (a small model's free
    text becomes a proposal that promptopt's validation then judges, instead of a parse error that stops the
    optimizer)."""
    listed = OUTPUT_FIELDS.search(system)
    names = re.findall(r"^\d+\. `(\w+)`", listed.group(1), re.M) if listed else []
    if not names:
        return text
    if JSON_OUTPUTS in system:
        try:
            if isinstance(json.loads(text.strip()), dict):
                return text
        except ValueError:
            pass
        return json.dumps({name: text.strip() for name in names}, ensure_ascii=False)
    if FIELD_MARKER.search(text):
        return text
    return "".join(f"[[ ## {name} ## ]]\n{text.strip()}\n\n" for name in names) + "[[ ## completed ## ]]\n"


class OptimizerEngine:
    """A DSPy engine (`complete(Request) -> Response`) over `ask(messages, temperature, max_tokens, sample)`:
    promptopt's optimizer model with its budget, cache and stored calls. DSPy asks for n samples by sending the
    same request n times; each repeat gets the next sample index, so samples differ and a re-run repeats them."""

    def __init__(self, ask: Callable[[list[dict[str, str]], float, int, int], str], temperature: float,
                 reply_tokens: int) -> None:
        self.ask = ask
        self.temperature = temperature
        self.reply_tokens = reply_tokens
        self.calls = 0
        self._samples: dict[str, int] = {}

    def complete(self, request: Any) -> Response:
        """One completion for a DSPy request."""
        system = request.system if isinstance(request.system, str) or request.system is None else \
            "".join(part.text for part in request.system)
        messages = ([{"role": "system", "content": system}] if system else []) + \
            [{"role": m.role, "content": m.text or ""} for m in request.messages]
        temperature = request.config.temperature if request.config.temperature is not None else self.temperature
        max_tokens = min(request.config.max_tokens or self.reply_tokens, self.reply_tokens)
        key = json.dumps([messages, temperature], sort_keys=True, ensure_ascii=False)
        sample = self._samples.get(key, 0)
        self._samples[key] = sample + 1
        self.calls += 1
        text = as_fields(self.ask(messages, temperature, max_tokens, sample), system or "")
        return Response(id=None, model="promptopt-optimizer", message=Message.assistant([TextPart(text)]),
                        finish_reason="stop", usage=Usage(input_tokens=0, output_tokens=0, total_tokens=0))

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        """Nothing to release: promptopt owns the model."""
