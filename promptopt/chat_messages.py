"""A case's context as OpenAI chat messages that an OpenAI endpoint accepts: earlier tool calls as assistant
`tool_calls` with ids, their results as `tool` messages answering those ids.

Context enters promptopt in many shapes: OpenAI logs (ids present or not), ShareGPT `function_call` /
`observation` turns, hand-written case files, and stores written before this module, which held a call as assistant
text (`get_member_points({})`) and its result as a `tool` message without `tool_call_id`. `normalize_context`
turns any of them into one valid form (never raising, so old stored rows always read); `context_problems` is the
strict check of a case file's context; `hash_form` is what a case's content hash sees, the same for a context
stored before normalisation and for its normalised form, so re-imports still dedupe; `message_text` renders a
message for people and for text prompts.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping

CONTEXT_ROLES = ("system", "user", "assistant", "tool")
TOOL_RESULT_PREFIX = "[tool result] "
"""How a tool result whose call is unknown is kept: as a user message starting with this (OpenAI refuses a tool
message that answers no call)."""
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
"""OpenAI's rule for a function name."""
_TEXT_CALL = re.compile(r"^\s*([a-zA-Z0-9_-]{1,64})\s*\((.*)\)\s*$", re.DOTALL)

Message = dict[str, Any]


def call_id(turn: int, index: int) -> str:
    """The id made up for the `index`-th call of the context's `turn`-th message when the source gave none."""
    return f"call_{turn}_{index}"


def arguments_text(arguments: Any) -> str:
    """Tool-call arguments as OpenAI sends them: a JSON string (a string is kept as it is)."""
    if isinstance(arguments, str):
        return arguments
    return json.dumps({} if arguments is None else arguments, ensure_ascii=False)


def call_text(name: str, arguments: Any) -> str:
    """A call written out as text, `name({...})`, the form stores before normalisation held."""
    parsed = _parsed_arguments(arguments)
    shown = json.dumps(parsed, ensure_ascii=False) if parsed is not None else arguments_text(arguments)
    return f"{name}({shown})"


def message_text(message: Mapping[str, Any]) -> str:
    """A message's text for a transcript: its content, then each tool call it makes as `name({...})`."""
    content = message.get("content")
    text = content if isinstance(content, str) else _parts_text(content)
    calls = [call_text(*_name_and_arguments(call)) for call in _calls(message)]
    return "\n".join(part for part in [text, *calls] if part)


def normalize_context(messages: Iterable[Mapping[str, Any]]) -> tuple[Message, ...]:
    """`messages` as context an OpenAI endpoint accepts (followed by a user message): each tool call in an
    assistant's `tool_calls` with an id (`call_<turn>_<index>` where none is given), each tool result a `tool`
    message answering one, a call written as text and answered by a tool message turned into a real call, a call
    left unanswered written out as text, and a result answering no call kept as a user message. Idempotent."""
    given = [dict(m) for m in messages if isinstance(m, Mapping)]
    out: list[Message] = []
    pending: list[str] = []
    owner = -1
    for position, message in enumerate(given):
        role = message.get("role")
        if role in ("tool", "function"):
            out.append(_tool_result(message, pending))
            continue
        _close(out, owner, pending)
        pending, owner = [], -1
        if role == "assistant":
            following = given[position + 1].get("role") if position + 1 < len(given) else None
            message = _assistant(message, len(out), following in ("tool", "function"))
            pending, owner = [c["id"] for c in message.get("tool_calls", [])], len(out)
        out.append(message)
    _close(out, owner, pending)
    return tuple(out)


def hash_form(context: Iterable[Mapping[str, Any]]) -> list[Message]:
    """What a case's content hash sees of its context: each call-making assistant message as its text (or its
    first call written out), tool results as role and text, ids left out; the form stores held before
    normalisation, so a stored case and the same case normalised hash alike."""
    form: list[Message] = []
    for message in context:
        role, content = message.get("role"), message.get("content")
        calls = _calls(message)
        if role == "assistant" and calls:
            form.append({"role": "assistant", "content": content or call_text(*_name_and_arguments(calls[0]))})
        elif role == "tool":
            form.append({"role": "tool", "content": content})
        elif role == "user" and isinstance(content, str) and content.startswith(TOOL_RESULT_PREFIX):
            form.append({"role": "tool", "content": content[len(TOOL_RESULT_PREFIX):]})
        else:
            form.append(dict(message))
    return form


def context_problems(context: Any) -> list[tuple[str, str]]:
    """(field, message) for each way a case file's `context` is not a list of chat messages promptopt can send:
    a role outside `CONTEXT_ROLES`, content that is not text (null is allowed only beside tool calls), a malformed
    tool call or `tool_call_id`."""
    if not isinstance(context, list):
        return [("context", 'must be a list of {"role": "user"|"assistant", "content": "..."} messages')]
    problems: list[tuple[str, str]] = []
    for index, message in enumerate(context):
        where = f"context[{index}]"
        if not isinstance(message, dict) or message.get("role") not in CONTEXT_ROLES:
            problems.append((where, f'must be a message {{"role": {"|".join(CONTEXT_ROLES)}, "content": "..."}}'))
            continue
        calls = message.get("tool_calls")
        if calls is not None:
            problems += _tool_call_problems(f"{where}.tool_calls", calls, message["role"])
        content = message.get("content")
        if not isinstance(content, str) and not (content is None and message["role"] == "assistant" and calls):
            problems.append((f"{where}.content", "must be a string (null only beside tool_calls)"))
        if "tool_call_id" in message and not isinstance(message["tool_call_id"], str):
            problems.append((f"{where}.tool_call_id", "must be a string"))
    return problems


def _tool_call_problems(where: str, calls: Any, role: str) -> list[tuple[str, str]]:
    """Problems of one message's `tool_calls`: only an assistant's, a list of function calls with a name and
    JSON-object arguments."""
    if role != "assistant":
        return [(where, "only an assistant message makes tool calls")]
    if not isinstance(calls, list):
        return [(where, "must be a list of tool calls")]
    problems = []
    for index, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or \
                not TOOL_NAME.match(function["name"]):
            problems.append((f"{where}[{index}].function", 'must be {"name": "tool", "arguments": "{...}"} '
                                                          "with a name of 1 to 64 letters, digits, _ or -"))
        elif _parsed_arguments(function.get("arguments") or {}) is None:
            problems.append((f"{where}[{index}].function.arguments", "must be a JSON object or its JSON text"))
        elif "id" in call and not isinstance(call["id"], str):
            problems.append((f"{where}[{index}].id", "must be a string"))
        elif call.get("type", "function") != "function":
            problems.append((f"{where}[{index}].type", 'must be "function"'))
    return problems


def _assistant(message: Message, turn: int, answered: bool) -> Message:
    """An assistant message with its calls in OpenAI form (ids filled in); a text call answered by the next
    message becomes a real call."""
    calls = _calls(message)
    if not calls and answered:
        parsed = _text_call(message.get("content"))
        if parsed is not None:
            calls, message = [{"function": {"name": parsed[0], "arguments": parsed[1]}}], {**message, "content": None}
    message.pop("function_call", None)
    if not calls:
        message.pop("tool_calls", None)
        return message
    used: set[str] = set()
    normal = []
    for index, call in enumerate(calls):
        name, arguments = _name_and_arguments(call)
        given = call.get("id")
        identifier = given if isinstance(given, str) and given and given not in used else call_id(turn, index)
        used.add(identifier)
        normal.append({"id": identifier, "type": "function",
                       "function": {"name": name, "arguments": arguments_text(arguments)}})
    return {**message, "content": message.get("content") or None, "tool_calls": normal}


def _tool_result(message: Message, pending: list[str]) -> Message:
    """A tool result answering one of `pending` (its own id when that is one, else the first), which it takes
    off the list; with nothing pending, the result as a user message."""
    content = message.get("content")
    text = content if isinstance(content, str) else _parts_text(content)
    if not pending:
        return {"role": "user", "content": TOOL_RESULT_PREFIX + text}
    given = message.get("tool_call_id")
    answered = given if given in pending else pending[0]
    pending.remove(answered)
    return {"role": "tool", "tool_call_id": answered, "content": text}


def _close(out: list[Message], owner: int, pending: list[str]) -> None:
    """Calls of `out[owner]` nobody answered (`pending`) leave its `tool_calls` and are written into its text."""
    if owner < 0 or not pending:
        return
    message = out[owner]
    kept = [c for c in message["tool_calls"] if c["id"] not in pending]
    dropped = [call_text(*_name_and_arguments(c)) for c in message["tool_calls"] if c["id"] in pending]
    text = "\n".join(part for part in [message.get("content") or "", *dropped] if part)
    out[owner] = {**{k: v for k, v in message.items() if k != "tool_calls"}, "content": text,
                  **({"tool_calls": kept} if kept else {})}


def _calls(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The well-formed calls a message makes (`tool_calls`, or the older `function_call`); malformed ones are
    left out."""
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        legacy = message.get("function_call")
        calls = [{"function": legacy}] if isinstance(legacy, dict) else []
    return [call for call in calls if isinstance(call, dict) and isinstance(call.get("function"), dict)
            and isinstance(call["function"].get("name"), str) and call["function"]["name"]]


def _name_and_arguments(call: Mapping[str, Any]) -> tuple[str, Any]:
    function = call.get("function") or {}
    return function.get("name") or "", function.get("arguments")


def _text_call(content: Any) -> tuple[str, dict[str, Any]] | None:
    """(name, arguments) of a call written as text, `name({...})` or `name()`; None for any other text."""
    match = _TEXT_CALL.match(content) if isinstance(content, str) else None
    if match is None:
        return None
    arguments = _parsed_arguments(match.group(2).strip() or "{}")
    return None if arguments is None else (match.group(1), arguments)


def _parsed_arguments(arguments: Any) -> dict[str, Any] | None:
    """Arguments as a dict (from a dict or its JSON text); None when they are neither."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None:
        return {}
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _parts_text(content: Any) -> str:
    """Content given as a list of parts, as text; anything else that is not text, as nothing."""
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return ""
