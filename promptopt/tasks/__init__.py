"""Tasks: what a target model is asked to do with a case. Bundled tasks ship their tools, seed prompt and cases."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from promptopt.case import NO_TOOL
from promptopt.markup import DEFAULT_MAX_CHARS, unpaired_marker
from promptopt.strict_json import NUL_MESSAGE, loads, unstorable
from promptopt.tasks.tool_routing import ToolRoutingTask

TASKS = {"tool-routing": ToolRoutingTask}
BUNDLED_CASE_FILES = ("bad_cases.jsonl", "good_cases.jsonl")
TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
"""What OpenAI allows as a function name."""
_SPACE = re.compile(r"[ \t\n\r]*")


class TaskFileError(ValueError):
    """A tools or prompt file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class BundledTask:
    """A task as shipped in `datasets/`: its tools, seed system prompt and case files."""

    name: str
    tools: list[dict[str, Any]]
    seed_prompt: str
    case_files: list[Path]


def bundled_task(name: str) -> BundledTask:
    """The bundled data of task `name` (e.g. `tool-routing`)."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    folder = Path(str(resources.files("promptopt.datasets") / name))
    return BundledTask(
        name=name,
        tools=load_tools(folder / "tools.json"),
        seed_prompt=load_prompt(folder / "system_prompt.md"),
        case_files=[folder / f for f in BUNDLED_CASE_FILES],
    )


def load_tools(path: str | Path) -> list[dict[str, Any]]:
    """Read tools in OpenAI function schema (a JSON list; bare `{name, description, parameters}` are wrapped);
    a malformed tool raises `TaskFileError` naming the file, the tool's line and its index."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = loads(text)
    except (OSError, UnicodeDecodeError) as error:
        raise TaskFileError(f"{path}: cannot read tools file: {error}") from None
    except json.JSONDecodeError as error:
        raise TaskFileError(f"{path}:{error.lineno}: invalid JSON: {error.msg}") from None
    if isinstance(data, dict) and "tools" in data:
        data = data["tools"]
    if not isinstance(data, list) or not data:
        raise TaskFileError(f"{path}: expected a non-empty JSON list of tools")
    lines = _tool_lines(text)
    names: list[str] = []
    for index, tool in enumerate(data):
        problem = _tool_problem(tool, names)
        if problem:
            where = f"{path}:{lines[index]}" if index < len(lines) else str(path)
            raise TaskFileError(f"{where}: tool #{index + 1}: {problem}")
        names.append(tool.get("function", tool)["name"])
    return [{"type": "function", "function": tool.get("function", tool)} for tool in data]


def _tool_problem(tool: Any, earlier: Sequence[str]) -> str | None:
    """Why one entry of a tools file cannot be offered to a model, or None; `earlier` are the names before it."""
    if not isinstance(tool, dict):
        return "must be a JSON object"
    unfit = unstorable(tool)
    if unfit:
        return f"{unfit[0][0]}: {unfit[0][1]}"
    if tool.get("type", "function") != "function":
        return f'type must be "function", got {tool["type"]!r}'
    function = tool.get("function", tool)
    if not isinstance(function, dict):
        return "function must be a JSON object"
    name = function.get("name")
    if not isinstance(name, str) or not name:
        return "has no function name"
    if not TOOL_NAME.fullmatch(name):
        return f"function name {name!r} must be 1 to 64 letters, digits, _ or - (what OpenAI allows)"
    if name.lower() == NO_TOOL:
        return f"function name {name!r} is reserved: {NO_TOOL!r} is the answer that calls no tool"
    if name in earlier:
        return f"duplicate tool name {name!r} (also tool #{earlier.index(name) + 1})"
    return _schema_problem(name, function)


def _schema_problem(name: str, function: dict[str, Any]) -> str | None:
    """Why a function's `description` or `parameters` are malformed, or None."""
    if "description" in function and not isinstance(function["description"], str):
        return f"{name}: description must be a string"
    parameters = function.get("parameters", {})
    if not isinstance(parameters, dict):
        return f"{name}: parameters must be a JSON object (a JSON schema), got {json.dumps(parameters)[:40]}"
    if not isinstance(parameters.get("properties", {}), dict):
        return f"{name}: parameters.properties must be a JSON object"
    return None


def _tool_lines(text: str) -> list[int]:
    """The line each tool starts on in a tools file's JSON text (the top-level list, or the list under "tools")."""
    decoder = json.JSONDecoder()
    index = _skip(text, 0)
    if text.startswith("{", index):
        index = _member_start(text, index, "tools", decoder)
    if index < 0 or not text.startswith("[", index):
        return []
    lines: list[int] = []
    index = _skip(text, index + 1)
    while index < len(text) and text[index] != "]":
        lines.append(text.count("\n", 0, index) + 1)
        index = _after_value(text, index, decoder)
    return lines


def _member_start(text: str, index: int, key: str, decoder: json.JSONDecoder) -> int:
    """Where the value of member `key` (the last one, as `json.loads` keeps) of the object at `index` starts; -1
    when there is none."""
    found, index = -1, _skip(text, index + 1)
    while text.startswith('"', index):
        name, end = decoder.raw_decode(text, index)
        index = _skip(text, _skip(text, end) + 1)
        found = index if name == key else found
        index = _after_value(text, index, decoder)
    return found


def _after_value(text: str, index: int, decoder: json.JSONDecoder) -> int:
    """The index after the JSON value at `index`, its trailing comma and the whitespace around them."""
    index = _skip(text, decoder.raw_decode(text, index)[1])
    return _skip(text, index + 1) if text.startswith(",", index) else index


def _skip(text: str, index: int) -> int:
    """The index after the JSON whitespace at `index`."""
    return _SPACE.match(text, index).end()


def load_prompt(path: str | Path) -> str:
    """Read a seed system prompt (UTF-8), refusing one that is empty, holds a NUL character, is longer than
    `DEFAULT_MAX_CHARS` or has a protection marker that does not pair up (naming the file and the line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TaskFileError(f"{path}: cannot read prompt file: {error}") from None
    return checked_prompt(text, str(path))


def checked_prompt(text: str, where: str) -> str:
    """`text` as a system prompt read from `where` (a file, a registered prompt), refused as `load_prompt` refuses
    a prompt file's text, naming `where` and the line."""
    if not text.strip():
        raise TaskFileError(f"{where}: the prompt is empty")
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise TaskFileError(f"{where}:{line}: the prompt {NUL_MESSAGE}")
    if len(text) > DEFAULT_MAX_CHARS:
        raise TaskFileError(f"{where}: the prompt is too long: {len(text):,} characters, the limit is "
                            f"{DEFAULT_MAX_CHARS:,}")
    unpaired = unpaired_marker(text)
    if unpaired:
        raise TaskFileError(f"{where}:{unpaired[0]}: {unpaired[1]}")
    return text
