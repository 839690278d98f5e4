"""Tool schemas as text, shared by every backend and the server: tool names, the tool list the embedded model
reads after its system prompt, earlier tool calls and results as a local chat template takes them, and the
JSON-object parsing that turns a model's reply into tool arguments."""
from __future__ import annotations

import json
from typing import Any, Sequence

from promptopt.case import NO_TOOL
from promptopt.chat_messages import message_text

TOOL_SECTION_HEADER = "## Tools\nReply with the name of exactly one tool, or none when no tool fits."


def tool_names(tools: Sequence[dict[str, Any]]) -> list[str]:
    """Names of OpenAI-schema tools, in order."""
    return [tool["function"]["name"] for tool in tools]


def render_tool_section(tools: Sequence[dict[str, Any]]) -> str:
    """The tool list the local model sees after the system prompt (API backends pass `tools=` instead)."""
    lines = [TOOL_SECTION_HEADER]
    for tool in tools:
        description = (tool["function"].get("description") or "").split(". ")[0].rstrip(".")
        lines.append(f"- {tool['function']['name']}: {description}")
    lines.append(f"- {NO_TOOL}: no tool, answer directly")
    return "\n".join(lines)


def parse_json_object(text: str) -> dict[str, Any]:
    """The first balanced JSON object in `text`, or `{}` when there is none that parses."""
    depth, start = 0, text.find("{")
    if start < 0:
        return {}
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                try:
                    value = json.loads(text[start:index + 1])
                except json.JSONDecodeError:
                    return {}
                return value if isinstance(value, dict) else {}
    return {}


def template_messages(messages: Sequence[dict[str, Any]], native_calls: bool) -> list[dict[str, Any]]:
    """OpenAI chat messages as a local model's chat template renders them: content as text; an assistant's
    `tool_calls` with their arguments as objects for a template that writes calls itself (`native_calls`, as
    Qwen2.5's does), else written into the message's text; tool results as `tool` messages."""
    rendered = []
    for message in messages:
        calls = message.get("tool_calls") or []
        if message.get("role") == "assistant" and calls and native_calls:
            written = [{"type": "function", "function": {"name": c["function"]["name"],
                                                         "arguments": parse_json_object(c["function"]["arguments"])}}
                       for c in calls]
            rendered.append({"role": "assistant", "content": message_text({"content": message.get("content")}),
                             "tool_calls": written})
        else:
            rendered.append({"role": message.get("role"), "content": message_text(message)})
    return rendered
