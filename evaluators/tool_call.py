"""Tool-call evaluators: the right tool, then the right arguments.

Score: 0 when the tool (or "no tool") is wrong; 1 when it is right and every expected argument matches;
otherwise 0.5 + 0.5 x the share of expected arguments that match. Only arguments the case expects are
checked, so extra arguments in the output cost nothing, and an optional argument absent on both sides is fine.

With the task's tools, comparison follows each argument's JSON schema:
- an expected value may be a list of acceptable values, as in BFCL's answers (`["cm", ""]`; `""` means the
  argument may be left out). For an `array` parameter the alternatives are a list of lists (`[["a", "b"]]`);
  for any other parameter a list is always a list of alternatives. Without a schema a list is a list value;
- lists are compared in order for an `array` parameter unless its schema has `"uniqueItems": true` (a set);
  without a schema they are compared order-free, as before;
- an expected value equal to the schema's `default` also matches an omitted argument.
Values are compared after `normalise_value`.
"""
from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from typing import Any, Sequence

from promptopt.case import Case, ToolCall
from promptopt.evaluators.base import Score

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_MONTHS = {name: number for number, names in enumerate(
    [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",), ("jun", "june"),
     ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
     ("dec", "december")], start=1) for name in names}
_YMD = re.compile(r"^(\d{4})\s*(?:[-/.]|年)\s*(\d{1,2})\s*(?:[-/.]|月)\s*(\d{1,2})\s*日?$")
_DMY = re.compile(r"^(\d{1,2})(?:st|nd|rd|th)?\s+([a-z]+)\.?,?\s+(\d{4})$")
_MDY = re.compile(r"^([a-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})$")
OMITTED = ""
"""In a list of acceptable values, the argument may be left out."""


def iso_date(text: str) -> str | None:
    """`text` as an ISO date ("2026-11-23") when it is an unambiguous calendar date, else None.

    Accepts 2026-11-23, 2026/11/23, 2026.11.23, 2026年11月23日, 23 Nov 2026, November 23, 2026 (case-folded
    text); day/month orders that depend on the locale (11/23/2026) are left alone."""
    match = _YMD.match(text)
    if match:
        year, month, day = (int(g) for g in match.groups())
    else:
        match = _DMY.match(text)
        if match:
            day, month_name, year = int(match[1]), match[2], int(match[3])
        else:
            match = _MDY.match(text)
            if not match:
                return None
            month_name, day, year = match[1], int(match[2]), int(match[3])
        if month_name not in _MONTHS:
            return None
        month = _MONTHS[month_name]
    try:
        return dt.date(year, month, day).isoformat()
    except ValueError:
        return None


def normalise_value(value: Any, ordered: bool = False) -> Any:
    """Canonical form for comparison: text NFKC-normalised, case-folded, whitespace collapsed; dates as ISO
    dates; numbers and numeric strings as floats ("50" == 50 == 50.0); "true"/"false" as booleans; lists
    order-free unless `ordered`."""
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
        return iso_date(text) or text
    if isinstance(value, (list, tuple)):
        items = (normalise_value(v, ordered) for v in value)
        return ("list", *items) if ordered else tuple(sorted(items, key=repr))
    if isinstance(value, dict):
        return tuple(sorted((str(k), normalise_value(v, ordered)) for k, v in value.items()))
    return value


def values_match(expected: Any, actual: Any, schema: dict[str, Any] | None = None) -> bool:
    """Whether two argument values are the same after normalisation; `schema` (the parameter's JSON schema)
    decides whether list order matters."""
    ordered = _is_array(schema) and not schema.get("uniqueItems", False)
    a, b = normalise_value(expected, ordered), normalise_value(actual, ordered)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def acceptable_values(expected: Any, schema: dict[str, Any] | None) -> list[Any] | None:
    """The alternatives an expected value lists (BFCL style), or None when it is a single value."""
    if not isinstance(expected, list) or not expected or schema is None:
        return None
    if _is_array(schema):
        return list(expected) if all(isinstance(v, list) or v == OMITTED for v in expected) else None
    return list(expected)


def argument_matches(expected: Any, present: bool, actual: Any, schema: dict[str, Any] | None) -> bool:
    """Whether an output argument (`present` says whether it was given at all) matches what the case expects."""
    alternatives = acceptable_values(expected, schema)
    if alternatives is None:
        alternatives = [expected]
    if present:
        return any(values_match(option, actual, schema) for option in alternatives)
    if OMITTED in alternatives:
        return True
    default = (schema or {}).get("default")
    return "default" in (schema or {}) and any(values_match(option, default, schema) for option in alternatives)


def parameter_schemas(tools: Sequence[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Each tool's `parameters` JSON schema by tool name (OpenAI function schema or bare functions)."""
    schemas = {}
    for tool in tools or ():
        function = tool.get("function", tool)
        schemas[function["name"]] = function.get("parameters") or {}
    return schemas


def _is_array(schema: dict[str, Any] | None) -> bool:
    kind = (schema or {}).get("type")
    return kind == "array" or (isinstance(kind, list) and "array" in kind)


class ToolCallEvaluator:
    """Checks the tool name and, unless `check_arguments` is off, each expected argument; `tools` (the task's,
    OpenAI function schema) make the argument comparison follow each parameter's schema."""

    name = "tool_call"

    def __init__(self, check_arguments: bool = True, tools: Sequence[dict[str, Any]] | None = None,
                 name: str | None = None) -> None:
        self.check_arguments = check_arguments
        self.schemas = parameter_schemas(tools)
        if name:
            self.name = name

    def __call__(self, case: Case, output: ToolCall) -> Score:
        expected = case.expected
        if output.name != expected.name:
            return Score(0.0, f"expected {expected.name}, got {output.name}")
        if not self.check_arguments or not expected.arguments:
            return Score(1.0, f"correct: {expected.name}")
        properties = self.schemas.get(expected.name, {}).get("properties", {})
        wrong = []
        for key, value in expected.arguments.items():
            present = key in output.arguments
            if argument_matches(value, present, output.arguments.get(key), properties.get(key)):
                continue
            wanted = f"one of {value!r}" if acceptable_values(value, properties.get(key)) else repr(value)
            wrong.append(f"{key}={output.arguments[key]!r} (expected {wanted})" if present
                         else f"{key} missing (expected {wanted})")
        if not wrong:
            return Score(1.0, f"correct: {expected.name} with its arguments")
        matched = len(expected.arguments) - len(wrong)
        return Score(0.5 + 0.5 * matched / len(expected.arguments), f"{expected.name} right; " + "; ".join(wrong))
