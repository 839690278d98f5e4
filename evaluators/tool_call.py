"""Tool-call evaluator: the right tool, then the right arguments.

Score: 0 when the tool (or "no tool") is wrong; 1 when it is right and every expected argument matches;
otherwise 0.5 + 0.5 x the share of expected arguments that match. Only arguments the case expects are
checked, so extra arguments in the output cost nothing. Values are compared after `normalise_value`.
"""
from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from promptopt.case import Case, ToolCall
from promptopt.evaluators.base import Score

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def normalise_value(value: Any) -> Any:
    """Canonical form for comparison: text NFKC-normalised, case-folded, whitespace collapsed; numbers and
    numeric strings as floats ("50" == 50 == 50.0); "true"/"false" as booleans; lists order-free."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = " ".join(unicodedata.normalize("NFKC", value).casefold().split())
        if _NUMBER.match(text):
            return float(text)
        if text in ("true", "false"):
            return text == "true"
        return text
    if isinstance(value, (list, tuple)):
        return tuple(sorted((normalise_value(v) for v in value), key=repr))
    if isinstance(value, dict):
        return tuple(sorted((str(k), normalise_value(v)) for k, v in value.items()))
    return value


def values_match(expected: Any, actual: Any) -> bool:
    a, b = normalise_value(expected), normalise_value(actual)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


class ToolCallEvaluator:
    """Checks the tool name and, unless `check_arguments` is off, each expected argument."""

    name = "tool_call"

    def __init__(self, check_arguments: bool = True) -> None:
        self.check_arguments = check_arguments

    def __call__(self, case: Case, output: ToolCall) -> Score:
        expected = case.expected
        if output.name != expected.name:
            return Score(0.0, f"expected {expected.name}, got {output.name}")
        if not self.check_arguments or not expected.arguments:
            return Score(1.0, f"correct: {expected.name}")
        wrong = []
        for key, value in expected.arguments.items():
            if key not in output.arguments:
                wrong.append(f"{key} missing (expected {value!r})")
            elif not values_match(value, output.arguments[key]):
                wrong.append(f"{key}={output.arguments[key]!r} (expected {value!r})")
        if not wrong:
            return Score(1.0, f"correct: {expected.name} with its arguments")
        matched = len(expected.arguments) - len(wrong)
        return Score(0.5 + 0.5 * matched / len(expected.arguments), f"{expected.name} right; " + "; ".join(wrong))
