"""Read case files (JSON Lines or CSV) into validated `Case` records.

Every problem is reported with file, line and field; a file with any problem yields no cases at all, so an
import is all-or-nothing. The format is documented in the README ("Case files").
"""
from __future__ import annotations

import csv
import difflib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from promptopt.case import LABELS, NO_TOOL, Case, ToolCall
from promptopt.chat_messages import context_problems
from promptopt.strict_json import loads, unstorable

MAX_QUERY_CHARS = 8_000
"""The longest query a case may hold; the task model reads it once per case and candidate."""
MAX_CONTEXT_CHARS = 32_000
"""The most characters a case's context messages may hold together."""

MAX_REPORTED = 20
CSV_COLUMNS = ("query", "context", "expected_tool", "expected_arguments", "actual_tool", "actual_arguments",
               "label", "tags", "source", "expected_text")
CASE_FIELDS = ("query", "context", "expected", "actual", "label", "tags", "source")
"""The fields of a case record; any other is refused (a typo would otherwise be dropped without a word)."""
CALL_FIELDS = ("tool", "arguments", "text")
"""The fields of `expected` and `actual`."""


@dataclass(frozen=True)
class Problem:
    path: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class CaseFileError(ValueError):
    """A case file that cannot be imported; `problems` lists every reason, each with file, line and field."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        shown = [str(p) for p in problems[:MAX_REPORTED]]
        if len(problems) > MAX_REPORTED:
            shown.append(f"... and {len(problems) - MAX_REPORTED} more problems")
        super().__init__("\n".join(shown))


def read_cases(path: str | Path, tools: Sequence[dict[str, Any]]) -> list[Case]:
    """Parse and validate a `.jsonl`/`.json` or `.csv` case file against the task's tools."""
    path = Path(path)
    name = str(path)
    text = read_text(path)
    records = _csv_records(name, text) if path.suffix.lower() == ".csv" else json_records(name, text)
    problems = [p for p in records if isinstance(p, Problem)]
    cases: list[Case] = []
    validator = CaseValidator(tools)
    for item in records:
        if isinstance(item, Problem):
            continue
        line, data = item
        case = validator.case(name, line, data, problems)
        if case is not None:
            cases.append(case)
    if not problems and not cases:
        problems.append(Problem(name, None, None, "the file holds no cases"))
    if problems:
        raise CaseFileError(problems)
    return cases


def read_text(path: str | Path) -> str:
    """The UTF-8 text of a file; `CaseFileError` (with the line of a bad byte) when it cannot be read or decoded."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise CaseFileError([Problem(name, None, None, f"cannot read file: {error.strerror or error}")]) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise CaseFileError([Problem(name, line, None, f"not UTF-8 text (byte 0x{raw[error.start]:02x}); "
                                                        "save the file as UTF-8")]) from None


def json_records(name: str, text: str) -> list[tuple[int, Any] | Problem]:
    """The records of a JSON Lines text, or of a JSON array (as ShareGPT exports come): (line, value) each, the
    line where the record starts, or a Problem naming the bad line."""
    if not text.lstrip().startswith("["):
        return jsonl_records(name, text)
    try:
        values = loads(text)
    except json.JSONDecodeError as error:
        return [Problem(name, error.lineno, None, f"invalid JSON: {error.msg} (column {error.colno})")]
    return list(zip(_element_lines(text), values))


def _element_lines(text: str) -> list[int]:
    """The line on which each element of the JSON array `text` (already known to be valid) starts."""
    decoder, lines = json.JSONDecoder(), []
    index, line, counted = text.index("[") + 1, 1, 0
    while True:
        while text[index] in " \t\r\n,":
            index += 1
        if text[index] == "]":
            return lines
        line += text.count("\n", counted, index)
        counted = index
        lines.append(line)
        index = decoder.raw_decode(text, index)[1]


def jsonl_records(name: str, text: str) -> list[tuple[int, Any] | Problem]:
    """Each non-blank line of a JSON Lines text as (line number, value), or a Problem naming the bad line."""
    records: list[tuple[int, Any] | Problem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, loads(line)))
        except json.JSONDecodeError as error:
            records.append(Problem(name, number, None, f"invalid JSON: {error.msg} (column {error.colno})"))
    return records


def _csv_records(name: str, text: str) -> list[tuple[int, Any] | Problem]:
    """Each CSV row as (line number, a record shaped like a JSON line), or a Problem naming the bad line."""
    columns, rows = csv_rows(name, text)
    problems: list[tuple[int, Any] | Problem] = list(_header_problems(name, columns))
    if problems:
        return problems
    return [row if isinstance(row, Problem) else _csv_row(name, *row) for row in rows]


def csv_rows(name: str, text: str) -> tuple[list[str], list[tuple[int, dict[str, str]] | Problem]]:
    """A CSV text's header and each row after it as (line where the row ends, {column: cell}), or a Problem naming
    the line: a row with fewer or more cells than the header, a quote never closed, anything `csv` cannot read."""
    reader = csv.reader(io.StringIO(text), strict=True)
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, str]] | Problem] = []
    start = 1
    try:
        for cells in reader:
            if cells and header is None:
                header = cells
            elif cells and len(cells) != len(header or ()):
                rows.append(Problem(name, reader.line_num, None, _width_problem(len(cells), len(header or ()))))
            elif cells:
                rows.append((reader.line_num, dict(zip(header or (), cells))))
            start = reader.line_num + 1
    except csv.Error as error:
        message = (f"a quote opened in this row is never closed (the file ends at line {reader.line_num})"
                   if "unexpected end of data" in str(error) else f"cannot read CSV: {error}")
        rows.append(Problem(name, start, None, message))
    return header or [], rows


def _width_problem(cells: int, columns: int) -> str:
    """Why a row with `cells` cells does not fit a header of `columns` columns, and the likely cause."""
    if cells > columns:
        return f"{cells - columns} more field(s) than the header's {columns} columns (a comma in an unquoted cell?)"
    return f"{columns - cells} fewer field(s) than the header's {columns} columns (a missing comma?)"


def _header_problems(name: str, columns: Sequence[str]) -> list[Problem]:
    """Unknown, repeated and missing columns of a CSV header (line 1): their cells would be dropped or misread."""
    known = ", ".join(CSV_COLUMNS)
    problems = [Problem(name, 1, None, f"unknown column {c!r}; the known columns are: {known}")
                for c in columns if c not in CSV_COLUMNS]
    problems += [Problem(name, 1, None, f"column {c!r} appears more than once")
                 for c in dict.fromkeys(c for c in columns if columns.count(c) > 1)]
    if columns:
        problems += [Problem(name, 1, c, "missing column") for c in ("query", "expected_tool") if c not in columns]
    return problems


def _csv_row(name: str, line: int, row: dict[str, str]) -> tuple[int, Any] | Problem:
    """One CSV row as (line, record), or a Problem: a cell of invalid JSON."""
    data: dict[str, Any] = {"query": row.get("query"), "label": row.get("label") or None,
                            "source": row.get("source") or ""}
    try:
        data["context"] = loads(row["context"]) if row.get("context") else []
        data["expected"] = {"tool": row.get("expected_tool") or None,
                            "arguments": loads(row["expected_arguments"]) if row.get("expected_arguments") else {},
                            "text": row.get("expected_text") or ""}
        if row.get("actual_tool") or row.get("actual_arguments"):
            data["actual"] = {"tool": row.get("actual_tool") or None,
                              "arguments": loads(row["actual_arguments"]) if row.get("actual_arguments") else {}}
    except json.JSONDecodeError as error:
        return Problem(name, line, None, f"invalid JSON in a column: {error.msg}")
    tags = row.get("tags") or ""
    data["tags"] = [t.strip() for t in tags.replace(",", ";").split(";") if t.strip()]
    return line, data


def _text_problems(data: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(field, message) for every text or number the store cannot hold (`unstorable`: a NUL character, say) and a
    query or context over its limit."""
    found: list[tuple[str | None, str]] = [(field or None, message) for field, message in unstorable(data)]
    query = data.get("query")
    if isinstance(query, str) and len(query) > MAX_QUERY_CHARS:
        found.append(("query", f"too long: {len(query):,} characters, the limit is {MAX_QUERY_CHARS:,}"))
    context = data.get("context")
    if isinstance(context, list):
        size = sum(len(m["content"]) for m in context if isinstance(m, dict) and isinstance(m.get("content"), str))
        if size > MAX_CONTEXT_CHARS:
            found.append(("context", f"too long: its messages hold {size:,} characters, the limit is "
                                     f"{MAX_CONTEXT_CHARS:,}"))
    return found


def _unknown_fields(data: dict[Any, Any], known: Sequence[str], prefix: str = "") -> list[tuple[str, str]]:
    """(field, message) for each key of `data` not in `known`, suggesting the known field it is closest to."""
    found = []
    for key in map(str, data):
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"the fields are: {', '.join(known)}"
            found.append((prefix + key, f"unknown field; {hint}"))
    return found


class CaseValidator:
    """Checks one decoded record against the case format and the task's tools (production logs reuse it)."""

    def __init__(self, tools: Sequence[dict[str, Any]]) -> None:
        self.parameters = {
            t["function"]["name"]: set((t["function"].get("parameters") or {}).get("properties", {})) for t in tools
        }

    def case(self, name: str, line: int, data: Any, problems: list[Problem]) -> Case | None:
        """The record as a `Case`, or None after appending its problems (file `name`, `line`) to `problems`."""
        before = len(problems)

        def problem(field: str | None, message: str) -> None:
            problems.append(Problem(name, line, field, message))

        if not isinstance(data, dict):
            problem(None, "each line must be a JSON object")
            return None
        for field, message in [*_unknown_fields(data, CASE_FIELDS), *_text_problems(data)]:
            problem(field, message)
        query = data.get("query")
        if not isinstance(query, str) or not query.strip():
            problem("query", "missing" if query is None else "must be a non-empty string")
        context = data.get("context") or []
        for field, message in context_problems(context):
            problem(field, message)
        expected = self._tool_call(data.get("expected"), "expected", problem, required=True)
        actual = self._tool_call(data.get("actual"), "actual", problem, required=False)
        label = data.get("label")
        if label is None:
            label = "good" if actual is not None and expected is not None and actual == expected else "bad"
        elif label not in LABELS:
            problem("label", f"must be one of {', '.join(LABELS)}, got {label!r}")
        tags = data.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            problem("tags", "must be a list of strings")
        source = data.get("source") or ""
        if not isinstance(source, str):
            problem("source", "must be a string")
        if len(problems) > before or expected is None:
            return None
        return Case(query=query, expected=expected, context=tuple(dict(m) for m in context), actual=actual,
                    label=label, tags=tuple(tags), source=source)

    def _tool_call(self, value: Any, field: str, problem: Any, required: bool) -> ToolCall | None:
        if value is None:
            if required:
                problem(field, 'missing (use {"tool": null} for "no tool")')
            return None
        if not isinstance(value, dict) or "tool" not in value:
            problem(field, 'must be an object like {"tool": "name" or null, "arguments": {...}}')
            return None
        unknown = _unknown_fields(value, CALL_FIELDS, f"{field}.")
        for where, message in unknown:
            problem(where, message)
        if unknown:
            return None
        tool = value.get("tool")
        arguments = value.get("arguments") or {}
        text = value.get("text") or ""
        if not isinstance(text, str):
            problem(f"{field}.text", "must be a string (the assistant's expected reply)")
            return None
        if tool is not None and not isinstance(tool, str):
            problem(f"{field}.tool", "must be a tool name or null")
            return None
        if not isinstance(arguments, dict):
            problem(f"{field}.arguments", "must be an object")
            return None
        name = tool or NO_TOOL
        if field == "expected" and name != NO_TOOL:
            if name not in self.parameters:
                problem(f"{field}.tool", f"unknown tool {name!r}; the task's tools are: {', '.join(sorted(self.parameters))}")
                return None
            unknown = sorted(set(arguments) - self.parameters[name])
            if unknown:
                problem(f"{field}.arguments", f"{name} has no parameter {', '.join(map(repr, unknown))}")
                return None
        return ToolCall(name=name, arguments=arguments, text=text)
