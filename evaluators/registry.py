"""Evaluators by name: the built-ins and whatever installed packages register under the entry point group
`promptopt.evaluators`, plus `build_evaluator`, which turns names, objects and callables (with weights) into
the one evaluator a run uses."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field, fields
from importlib import metadata
from typing import Any, Callable, Sequence

from promptopt.evaluators.base import Evaluator
from promptopt.evaluators.callables import as_evaluator
from promptopt.evaluators.composite import AllMustPass, WeightedEvaluator
from promptopt.evaluators.json_schema import JsonSchemaEvaluator
from promptopt.evaluators.text import TextEvaluator
from promptopt.evaluators.tool_call import ToolCallEvaluator
from promptopt.plugins import plugin_entry_points

ENTRY_POINT_GROUP = "promptopt.evaluators"
BUILT_IN = "built-in"


class EvaluatorError(ValueError):
    """Evaluators that cannot be built as asked (a bad weight, a name given twice, weights with all-must-pass)."""


class UnknownEvaluator(EvaluatorError):
    """An evaluator name that is neither built in nor registered by an installed plugin."""


@dataclass(frozen=True)
class EvaluatorSettings:
    """What evaluators may need when they are built: the task's tools, tool_call's argument switch, the text
    evaluators' pattern, the judge's rubric and model (a backend, or a function that makes one when needed)."""

    tools: Sequence[dict[str, Any]] = ()
    check_arguments: bool = False
    pattern: str | None = None
    rubric: str | None = None
    judge_model: Any = field(default=None, repr=False)

    @classmethod
    def of(cls, run: Any, **given: Any) -> "EvaluatorSettings":
        """The settings a run request or stored config holds under the same names (`check_arguments`, `pattern`,
        ...), with `given` (resolved values: tools, the rubric's text, the judge's model) taking precedence."""
        taken = {f.name: getattr(run, f.name) for f in fields(cls) if f.name not in given and hasattr(run, f.name)}
        return cls(**taken, **given)

    def judge_backend(self) -> Any:
        """The judge's model backend, made on first need."""
        if self.judge_model is None:
            from promptopt.models import load_model

            return load_model("embedded")
        return self.judge_model() if callable(self.judge_model) and not hasattr(self.judge_model, "generate_many") \
            else self.judge_model


@dataclass(frozen=True)
class EvaluatorInfo:
    """One available evaluator: its name, where it comes from (built-in or a distribution) and what it does."""

    name: str
    source: str
    description: str
    build: Callable[[EvaluatorSettings], Evaluator] = field(repr=False)


def _judge(settings: EvaluatorSettings) -> Evaluator:
    from promptopt.evaluators.judge import JudgeEvaluator

    return JudgeEvaluator(settings.judge_backend(), settings.rubric)


BUILT_INS = {
    "tool_call": ("the right tool (0 or 1); with --check-arguments also its arguments (partial credit); the default",
                  lambda s: ToolCallEvaluator(check_arguments=s.check_arguments, tools=s.tools)),
    "tool_name": ("the right tool or none, arguments ignored",
                  lambda s: ToolCallEvaluator(check_arguments=False, tools=s.tools, name="tool_name")),
    "arguments": ("the right tool and each expected argument, normalised per its schema (BFCL-style alternatives)",
                  lambda s: ToolCallEvaluator(check_arguments=True, tools=s.tools, name="arguments")),
    "exact": ("reply text equals expected.text (or --pattern), case and whitespace ignored",
              lambda s: TextEvaluator("exact", s.pattern)),
    "contains": ("reply text contains expected.text (or --pattern), case and whitespace ignored",
                 lambda s: TextEvaluator("contains", s.pattern)),
    "regex": ("reply text matches the regular expression --pattern (or expected.text)",
              lambda s: TextEvaluator("regex", s.pattern)),
    "json_schema": ("the called tool's arguments are valid under its JSON schema",
                    lambda s: JsonSchemaEvaluator(s.tools)),
    "judge": ("an LLM judge's verdict under --rubric (--judge-model), its rationale as feedback", _judge),
}


def available() -> dict[str, EvaluatorInfo]:
    """Every evaluator that can be named: built-ins first, then plugins. A plugin cannot take a built-in's name:
    it is left out with a warning that names its distribution, so its author learns why it never runs."""
    found = {name: EvaluatorInfo(name, BUILT_IN, description, build)
             for name, (description, build) in BUILT_INS.items()}
    for entry, source in plugin_entry_points(ENTRY_POINT_GROUP, "evaluator", dict.fromkeys(found, BUILT_IN)):
        found[entry.name] = EvaluatorInfo(entry.name, source, _describe_plugin(entry), _plugin_builder(entry))
    return found


def create(name: str, settings: EvaluatorSettings | None = None) -> Evaluator:
    """The evaluator called `name`; `UnknownEvaluator` lists what is available."""
    known = available()
    if name not in known:
        raise UnknownEvaluator(f"unknown evaluator {name!r}; available: {', '.join(known)} "
                               "(see `promptopt evaluators list`)")
    return known[name].build(settings or EvaluatorSettings())


def parse_spec(spec: str) -> tuple[str, float | None]:
    """`NAME`, `NAME=WEIGHT` or `NAME:WEIGHT` as (name, weight); the weight is None when not given."""
    for separator in ("=", ":"):
        if separator in spec:
            name, _, weight = spec.partition(separator)
            try:
                value = float(weight)
            except ValueError:
                raise EvaluatorError(f"evaluator {spec!r}: the weight after {separator!r} must be a number") from None
            if value <= 0:
                raise EvaluatorError(f"evaluator {spec!r}: the weight must be positive")
            return name.strip(), value
    return spec.strip(), None


def build_evaluator(items: Sequence[Any] | None, settings: EvaluatorSettings | None = None,
                    all_must_pass: bool = False) -> Evaluator:
    """One evaluator from `items`: names or specs (`"judge=0.5"`), evaluator objects, plain callables
    `(case, output) -> Score | float | bool`, or (any of these, weight) pairs. One item is used as is; several
    are combined by weighted mean, or with `all_must_pass` so that every one must pass. None: `tool_call`."""
    settings = settings or EvaluatorSettings()
    weighted: list[tuple[Evaluator, float]] = []
    for item in items or ["tool_call"]:
        weight: float | None = None
        if isinstance(item, tuple):
            item, weight = item
        if isinstance(item, str):
            item, spec_weight = parse_spec(item)
            weight = spec_weight if spec_weight is not None else weight
            evaluator = create(item, settings)
        else:
            evaluator = as_evaluator(item)
        if weight is not None and all_must_pass:
            raise EvaluatorError("weights have no meaning when all evaluators must pass; drop them or the flag")
        weighted.append((evaluator, 1.0 if weight is None else float(weight)))
    if len(weighted) == 1 and not all_must_pass:
        return weighted[0][0]
    try:
        return AllMustPass([e for e, _ in weighted]) if all_must_pass else WeightedEvaluator(weighted)
    except ValueError as error:
        raise EvaluatorError(str(error)) from None


def _plugin_builder(entry: metadata.EntryPoint) -> Callable[[EvaluatorSettings], Evaluator]:
    def build(settings: EvaluatorSettings) -> Evaluator:
        target = entry.load()
        if inspect.isclass(target):
            accepts_tools = "tools" in inspect.signature(target).parameters
            target = target(tools=list(settings.tools)) if accepts_tools else target()
        return as_evaluator(target, name=entry.name)

    return build


def _describe_plugin(entry: metadata.EntryPoint) -> str:
    try:
        target = entry.load()
    except Exception as error:  # a broken plugin is listed with its error, not allowed to break the listing
        return f"cannot be loaded: {type(error).__name__}: {error}"
    doc = inspect.getdoc(target) or ""
    return doc.strip().splitlines()[0] if doc.strip() else entry.value
