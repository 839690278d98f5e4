"""Read production logs (OpenAI chat-completions JSON Lines, ShareGPT) into the `Case` records case files give.

Each assistant reply to a user message is a turn: that message is the query, the messages before it the context
(as OpenAI messages an endpoint accepts: earlier calls as `tool_calls`, their results as `tool` messages answering
them, `chat_messages.normalize_context`), and production's call the `actual`. A turn becomes a case once it has
an expected output (a correction in the log or a row of a labels CSV); the others come back as unlabelled. Every problem is reported with file and line, and
any problem means no cases at all, as for case files (README: "Production logs").
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from promptopt.case import NO_TOOL, Case
from promptopt.chat_messages import arguments_text, normalize_context
from promptopt.runs.case_import import (
    CaseFileError,
    CaseValidator,
    Problem,
    csv_rows,
    json_records,
    read_cases,
    read_text,
)
from promptopt.strict_json import loads

FORMATS = ("auto", "cases", "openai", "sharegpt")
LABEL_COLUMNS = ("record", "turn", "query", "actual_tool", "actual_arguments", "expected_tool",
                 "expected_arguments", "expected_text")
TEMPLATE_COLUMNS = ("record", "turn", "query", "actual_tool", "actual_arguments", "expected_tool",
                    "expected_arguments")
OPENAI_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
                "tool": "tool", "function": "tool"}
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "function_call": "assistant", "observation": "tool", "tool": "tool"}

LabelKey = tuple[int, "int | None"]
Report = Callable[[str | None, str], None]


@dataclass(frozen=True)
class Message:
    """One log message, read: where it is in the record, its role and text, the tool calls it made
    (`{"tool", "arguments"}`) with the log's ids for them, and for a tool result the id of the call it answers."""

    where: str
    role: str
    content: str
    calls: tuple[dict[str, Any], ...] = ()
    expected: Any = None
    call_ids: tuple[str | None, ...] = ()
    answers: str | None = None

    @property
    def call(self) -> dict[str, Any] | None:
        """The first call the message made (production's routing choice), if any."""
        return self.calls[0] if self.calls else None

    def as_context(self) -> dict[str, Any]:
        """The message as an OpenAI chat message (ids the log lacks are made up when the context is normalised)."""
        if self.role == "tool":
            return {"role": "tool", "content": self.content, **({"tool_call_id": self.answers} if self.answers else {})}
        if not self.calls:
            return {"role": self.role, "content": self.content}
        ids = self.call_ids or (None,) * len(self.calls)
        return {"role": self.role, "content": self.content or None, "tool_calls": [
            {**({"id": given} if given else {}), "type": "function",
             "function": {"name": call["tool"], "arguments": arguments_text(call["arguments"])}}
            for call, given in zip(self.calls, ids)]}


@dataclass(frozen=True)
class Turn:
    """An assistant reply to a user message: the case it makes, less the expected output unless the log has one."""

    record: int
    number: int
    query: str
    context: tuple[dict[str, Any], ...]
    actual: dict[str, Any]
    expected: Any = None
    expected_where: str = "expected"


@dataclass(frozen=True)
class Label:
    """An expected output for one turn from a labels CSV row (`line`) or typed in (`line` None)."""

    path: str
    line: int | None
    expected: dict[str, Any]


@dataclass(frozen=True)
class ParsedFile:
    """A case file or log read into cases: the line of each case (None for case files) and unlabelled turns."""

    path: str
    cases: list[Case]
    lines: list[int] | None = None
    unlabelled: list[Turn] = field(default_factory=list)


def resolve_format(path: str | Path, fmt: str = "auto") -> str:
    """`cases`, `openai` or `sharegpt`: `fmt` itself, or for `auto` the keys of the file's first JSON record."""
    if fmt != "auto":
        return fmt
    if Path(path).suffix.lower() == ".csv":
        return "cases"
    records = [r for r in json_records(str(path), read_text(path)) if not isinstance(r, Problem)]
    first = records[0][1] if records else None
    if isinstance(first, dict) and "conversations" in first:
        return "sharegpt"
    if isinstance(first, dict) and {"messages", "choices", "response", "request"} & set(first):
        return "openai"
    return "cases"


def read_source(path: str | Path, tools: Sequence[dict[str, Any]], fmt: str = "auto",
                labels: Mapping[LabelKey, Label] | None = None) -> ParsedFile:
    """A case file or production log as validated cases; raises `CaseFileError` listing every problem."""
    kind = resolve_format(path, fmt)
    if kind == "cases":
        return ParsedFile(str(path), read_cases(path, tools))
    return read_log(path, tools, kind, labels or {})


def read_log(path: str | Path, tools: Sequence[dict[str, Any]], kind: str,
             labels: Mapping[LabelKey, Label]) -> ParsedFile:
    """The log's labelled turns as cases (a labels row wins over the log's correction) and its unlabelled turns."""
    name = str(path)
    turns, problems = log_turns(path, kind)
    chosen = _match_labels(name, turns, labels, problems)
    validator = CaseValidator(tools)
    cases: list[Case] = []
    lines: list[int] = []
    unlabelled: list[Turn] = []
    for turn in turns:
        label = chosen.get((turn.record, turn.number))
        if label is None and turn.expected is None:
            unlabelled.append(turn)
            continue
        case = _case(validator, name, kind, turn, label, problems)
        if case is not None:
            cases.append(case)
            lines.append(turn.record)
    if problems:
        raise CaseFileError(problems)
    return ParsedFile(name, cases, lines, unlabelled)


def log_turns(path: str | Path, kind: str) -> tuple[list[Turn], list[Problem]]:
    """Every turn of an `openai` or `sharegpt` log, and the problems of its records (file and line)."""
    name = str(path)
    records = json_records(name, read_text(path))
    problems = [r for r in records if isinstance(r, Problem)]
    turns: list[Turn] = []
    for record in records:
        if isinstance(record, Problem):
            continue
        line, data = record

        def report(where: str | None, message: str, line: int = line) -> None:
            problems.append(Problem(name, line, where, message))

        messages = _openai_messages(data, report) if kind == "openai" else _sharegpt_messages(data, report)
        turns += _record_turns(line, messages, data.get("expected") if isinstance(data, dict) else None, report)
    if not records:
        problems.append(Problem(name, None, None, "the file holds no records"))
    elif not turns and not problems:
        problems.append(Problem(name, None, None, "the file holds no assistant reply to a user message"))
    return turns, problems


def _openai_messages(data: Any, report: Report) -> list[Message]:
    """The request's messages then the response's message, normalised; [] after reporting a malformed record."""
    if not isinstance(data, dict):
        report(None, "each line must be a JSON object")
        return []
    where, messages = "messages", data.get("messages")
    if messages is None and isinstance(data.get("request"), dict):
        where, messages = "request.messages", data["request"].get("messages")
    if not isinstance(messages, list):
        report(where, "missing" if messages is None else "must be a list of chat messages")
        return []
    found = [(f"{where}[{i}]", m) for i, m in enumerate(messages)]
    reply = _openai_reply(data, report)
    found += [reply] if reply else []
    normalised = [_openai_message(w, m, report) for w, m in found]
    return [m for m in normalised if m is not None]


def _openai_reply(data: dict[str, Any], report: Report) -> tuple[str, Any] | None:
    """(where, message) of the completion's first choice (`choices` or `response`), if the record has one."""
    where, value = "choices", data.get("choices")
    if value is None:
        where, value = "response", data.get("response")
        if value is None:
            return None
        if isinstance(value, str):
            return where, {"role": "assistant", "content": value}
        if isinstance(value, dict) and "choices" not in value:
            return where, {"role": "assistant", **value}
        where, value = "response.choices", value.get("choices") if isinstance(value, dict) else None
    if not isinstance(value, list) or not value or not isinstance(value[0], dict):
        report(where, "must be a non-empty list of choices")
        return None
    return f"{where}[0].message", value[0].get("message")


def _openai_message(where: str, message: Any, report: Report) -> Message | None:
    """One chat message normalised (content parts joined, first tool call parsed), or None after a report."""
    if not isinstance(message, dict) or message.get("role") not in OPENAI_ROLES:
        report(where, f"must be a message with a role ({', '.join(OPENAI_ROLES)})")
        return None
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    if content is not None and not isinstance(content, str):
        report(f"{where}.content", "must be a string, a list of parts or null")
        return None
    given = message.get("tool_calls") or ([{"function": message["function_call"]}]
                                          if message.get("function_call") else [])
    if not isinstance(given, list):
        report(f"{where}.tool_calls", "must be a list of tool calls")
        return None
    calls = [_call(c.get("function") if isinstance(c, dict) else None, f"{where}.tool_calls[{i}].function", report)
             for i, c in enumerate(given)]
    if any(call is None for call in calls):
        return None
    ids = tuple(c.get("id") if isinstance(c.get("id"), str) else None for c in given)
    answers = message.get("tool_call_id")
    return Message(where, OPENAI_ROLES[message["role"]], content or "", tuple(calls), message.get("expected"), ids,
                   answers if isinstance(answers, str) else None)


def _sharegpt_messages(data: Any, report: Report) -> list[Message]:
    """A ShareGPT record's turns normalised (`function_call` as the assistant's call, `observation` as a tool)."""
    if not isinstance(data, dict):
        report(None, "each line must be a JSON object")
        return []
    turns = data.get("conversations")
    if not isinstance(turns, list):
        report("conversations", "missing" if turns is None else "must be a list of turns")
        return []
    messages = [_sharegpt_message(f"conversations[{i}]", t, report) for i, t in enumerate(turns)]
    return [m for m in messages if m is not None]


def _sharegpt_message(where: str, turn: Any, report: Report) -> Message | None:
    """One ShareGPT turn normalised, or None after a report."""
    if not isinstance(turn, dict) or turn.get("from") not in SHAREGPT_ROLES:
        report(f"{where}.from", f"must be one of {', '.join(SHAREGPT_ROLES)}")
        return None
    value = turn.get("value")
    if turn["from"] == "function_call":
        if isinstance(value, str):
            try:
                value = loads(value)
            except json.JSONDecodeError as error:
                report(f"{where}.value", f"invalid JSON in a function call: {error.msg}")
                return None
        call = _call(value, f"{where}.value", report)
        return None if call is None else Message(where, "assistant", "", (call,), turn.get("expected"))
    if not isinstance(value, str):
        report(f"{where}.value", "must be a string")
        return None
    return Message(where, SHAREGPT_ROLES[turn["from"]], value, (), turn.get("expected"))


def _call(function: Any, where: str, report: Report) -> dict[str, Any] | None:
    """`{"tool", "arguments"}` from `{"name", "arguments"}` (arguments: an object or its JSON), or None after a
    report."""
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        report(where, 'must be a call like {"name": "tool", "arguments": {...}}')
        return None
    arguments = function.get("arguments") or {}
    if isinstance(arguments, str):
        try:
            arguments = loads(arguments)
        except json.JSONDecodeError as error:
            report(f"{where}.arguments", f"invalid JSON: {error.msg}")
            return None
    if not isinstance(arguments, dict):
        report(f"{where}.arguments", "must be a JSON object")
        return None
    return {"tool": function["name"], "arguments": arguments}


def _record_turns(line: int, messages: list[Message], correction: Any, report: Report) -> list[Turn]:
    """The record's turns: each assistant message right after a user message; `correction` goes to the last."""
    turns: list[Turn] = []
    for index, message in enumerate(messages):
        if message.role != "assistant":
            continue
        if index == 0 or messages[index - 1].role != "user":
            if message.expected is not None:
                report(f"{message.where}.expected", "only an assistant reply to a user message can be corrected")
            continue
        context = normalize_context(m.as_context() for m in messages[: index - 1] if m.role != "system")
        actual = message.call or {"tool": None, "arguments": {}}
        turns.append(Turn(line, len(turns) + 1, messages[index - 1].content, context, actual, message.expected,
                          f"{message.where}.expected"))
    if correction is not None:
        if not turns:
            report("expected", "the record has no assistant reply to a user message to correct")
        elif turns[-1].expected is not None:
            report("expected", f"the last turn already has a correction ({turns[-1].expected_where})")
        else:
            turns[-1] = replace(turns[-1], expected=correction, expected_where="expected")
    return turns


def _match_labels(name: str, turns: list[Turn], labels: Mapping[LabelKey, Label],
                  problems: list[Problem]) -> dict[tuple[int, int], Label]:
    """Each label keyed by the turn it names (no turn: the record's last); a label naming no turn is a problem."""
    last: dict[int, int] = {}
    for turn in turns:
        last[turn.record] = max(last.get(turn.record, 0), turn.number)
    chosen: dict[tuple[int, int], Label] = {}
    for (record, number), label in labels.items():
        if record not in last:
            problems.append(Problem(label.path, label.line, "record",
                                    f"{name} has no record with an assistant turn on line {record}"))
        elif number is not None and not 1 <= number <= last[record]:
            problems.append(Problem(label.path, label.line, "turn",
                                    f"the record on line {record} of {name} has {last[record]} turn(s), not {number}"))
        else:
            chosen[(record, number or last[record])] = label
    return chosen


def _case(validator: CaseValidator, name: str, kind: str, turn: Turn, label: Label | None,
          problems: list[Problem]) -> Case | None:
    """The turn checked as a case file record would be; problems point at the log line or the labels row."""
    data = {"query": turn.query, "context": list(turn.context), "actual": turn.actual, "tags": [kind],
            "expected": label.expected if label else turn.expected,
            "source": f"{Path(name).name[:200]}:{turn.record}#{turn.number}"}
    found: list[Problem] = []
    case = validator.case(name, turn.record, data, found)
    problems += [_relocate(p, turn, label) for p in found]
    return case


def _relocate(problem: Problem, turn: Turn, label: Label | None) -> Problem:
    """A validator problem pointed at where its field came from: the labels row, the correction, or the turn."""
    field = problem.field or ""
    if field.startswith("expected") and label is not None:
        return Problem(label.path, label.line, field.replace("expected.", "expected_") if "." in field
                       else "expected_tool", problem.message)
    if field.startswith("expected"):
        return Problem(problem.path, problem.line, turn.expected_where + field[len("expected"):], problem.message)
    return Problem(problem.path, problem.line, f"turn {turn.number} {field}".strip(), problem.message)


def read_labels(path: str | Path) -> dict[LabelKey, Label]:
    """A labels CSV (`record`, `turn`, `expected_tool`, `expected_arguments`) keyed by (record line, turn).

    Rows with an empty `expected_tool` are left out (still to label); `none` means "answer without a tool"."""
    name = str(path)
    columns, rows = csv_rows(name, read_text(path))
    problems = [Problem(name, 1, None, f"unknown column {c!r}; the known columns are: {', '.join(LABEL_COLUMNS)}")
                for c in columns if c not in LABEL_COLUMNS]
    problems += [Problem(name, 1, c, "missing column") for c in ("record", "expected_tool") if c not in columns]
    if problems:
        raise CaseFileError(problems)
    labels: dict[LabelKey, Label] = {}
    for row in rows:
        if isinstance(row, Problem):
            problems.append(row)
        else:
            _label_row(name, *row, labels, problems)
    if problems:
        raise CaseFileError(problems)
    return labels


def _label_row(name: str, line: int, row: dict[str, str], labels: dict[LabelKey, Label],
               problems: list[Problem]) -> None:
    """Add one labels CSV row to `labels`, or its problems to `problems`."""
    tool = (row.get("expected_tool") or "").strip()
    if not tool:
        return
    record, turn = _positive(row.get("record")), _positive(row.get("turn"))
    if record is None:
        problems.append(Problem(name, line, "record", "must be the line number of a record in the log"))
    if turn is None and (row.get("turn") or "").strip():
        problems.append(Problem(name, line, "turn", "must be a turn number (1 for the first) or empty for the last"))
    try:
        arguments = loads(row.get("expected_arguments") or "{}")
    except json.JSONDecodeError as error:
        problems.append(Problem(name, line, "expected_arguments", f"invalid JSON: {error.msg}"))
        return
    if record is None or (turn is None and (row.get("turn") or "").strip()):
        return
    if (record, turn) in labels:
        problems.append(Problem(name, line, None, f"a second label for record {record}, turn {turn or 'last'}"))
        return
    labels[(record, turn)] = Label(name, line, {"tool": None if tool == NO_TOOL else tool, "arguments": arguments,
                                                "text": row.get("expected_text") or ""})


def _positive(cell: Any) -> int | None:
    """The cell as a positive integer, or None."""
    text = (cell or "").strip() if isinstance(cell, str) else ""
    return int(text) if text.isdigit() and int(text) > 0 else None


def write_label_template(path: str | Path, turns: Sequence[Turn]) -> None:
    """A labels CSV listing the unlabelled turns, with `expected_tool` and `expected_arguments` left to fill."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(TEMPLATE_COLUMNS)
        for turn in turns:
            writer.writerow([turn.record, turn.number, turn.query, turn.actual["tool"] or NO_TOOL,
                             json.dumps(turn.actual["arguments"], ensure_ascii=False), "", ""])
