"""Tasks: what a target model is asked to do with a case. Bundled tasks ship their tools, seed prompt and cases."""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from promptopt.tasks.tool_routing import ToolRoutingTask

TASKS = {"tool-routing": ToolRoutingTask}
BUNDLED_CASE_FILES = ("bad_cases.jsonl", "good_cases.jsonl")


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
        seed_prompt=(folder / "system_prompt.md").read_text(encoding="utf-8"),
        case_files=[folder / f for f in BUNDLED_CASE_FILES],
    )


def load_tools(path: str | Path) -> list[dict[str, Any]]:
    """Read tools in OpenAI function schema (a JSON list; bare `{name, description, parameters}` are wrapped)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise TaskFileError(f"{path}: cannot read tools file: {error}") from None
    except json.JSONDecodeError as error:
        raise TaskFileError(f"{path}:{error.lineno}: invalid JSON: {error.msg}") from None
    if isinstance(data, dict) and "tools" in data:
        data = data["tools"]
    if not isinstance(data, list) or not data:
        raise TaskFileError(f"{path}: expected a non-empty JSON list of tools")
    tools = []
    for index, tool in enumerate(data):
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise TaskFileError(f"{path}: tool #{index + 1} has no function name")
        tools.append({"type": "function", "function": function})
    names = [t["function"]["name"] for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TaskFileError(f"{path}: duplicate tool names: {', '.join(duplicates)}")
    return tools


def load_prompt(path: str | Path) -> str:
    """Read a system prompt file as UTF-8 text."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TaskFileError(f"{path}: cannot read prompt file: {error}") from None
    if not text.strip():
        raise TaskFileError(f"{path}: the prompt file is empty")
    return text
