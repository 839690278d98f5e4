"""Whether an endpoint's refusal of a request carrying `tools` says that it has no tool calling (so routing must
use the text protocol), as opposed to a refusal of something in the request itself: a message out of order, a
missing `tool_call_id`, a bad schema. Only the first kind may switch a run's protocol; the second is a failed call
that is shown and counted, never a silent change of how every later case is asked."""
from __future__ import annotations

import re
from typing import Any

from promptopt.models.retry import status_code

REFUSAL_STATUSES = (400, 422)
TOOL_PARAMS = ("tools", "tool_choice", "parallel_tool_calls", "functions", "function_call")
"""Request parameters that exist only for tool calling: a refusal naming one refuses tool calling itself."""
_TOOLS = r"(tools?|tool[ _-]?(calls?|calling|use|choice)|function[ _-]?(calls?|calling)|functions)"
NO_TOOL_CALLING = re.compile(
    rf"\b{_TOOLS}\b.{{0,60}}\b(not|n't|un)[ -]?(supported|available|enabled|allowed)\b"
    rf"|\b(does not|doesn't|do not|don't|cannot|can't)\s+(support|use|handle)\s+{_TOOLS}\b"
    r"|--enable-auto-tool-choice|--tool-call-parser|--jinja",
    re.IGNORECASE | re.DOTALL)
"""What endpoints without tool calling answer: "tools are not supported" (and OpenAI's reasoning previews),
Ollama's "does not support tools", DeepSeek's "does not support Function Calling", vLLM's "auto tool choice requires
--enable-auto-tool-choice", llama.cpp's "tools param requires --jinja flag"."""


def says_no_tool_calling(status: int, message: str, param: str | None) -> bool:
    """Whether a refusal (`status`, the error's `message` and `param`) says the endpoint has no tool calling."""
    if status not in REFUSAL_STATUSES:
        return False
    if (param or "").startswith("messages") or "tool_call_id" in message:
        return False
    return param in TOOL_PARAMS or bool(NO_TOOL_CALLING.search(message))


def tool_calling_refusal(error: BaseException) -> str:
    """The endpoint's own words when `error` (the SDK's, for a request carrying `tools`) says it has no tool
    calling; '' for any other failure."""
    message, param = error_detail(error)
    return message if says_no_tool_calling(status_code(error) or 0, message, param) else ""


def error_detail(error: BaseException) -> tuple[str, str | None]:
    """The error body's `message` and `param` (OpenAI's shape), else the error's text and no param."""
    body: Any = getattr(error, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if isinstance(body, dict):
        param = body.get("param")
        return str(body.get("message") or error), param if isinstance(param, str) else None
    return str(error), None
