"""Reading and checking one chat-completions request for `promptopt serve`: every malformed request is a clear
4xx answer (never a dropped connection or a 500), and the body is bounded before it is read."""
from __future__ import annotations

import json
from typing import Any, BinaryIO, Collection, Mapping

DEFAULT_MAX_BODY = 1 << 20
ROLES = ("system", "user", "assistant", "tool", "developer")


class ChatRequestError(ValueError):
    """A request the server answers with `status` and an OpenAI-style error body."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.kind}}


def read_body(headers: Mapping[str, str], stream: BinaryIO, max_bytes: int = DEFAULT_MAX_BODY) -> bytes:
    """The request body, read only when its declared length is a number from 0 to `max_bytes`."""
    declared = headers.get("content-length")
    if declared is None:
        raise ChatRequestError(411, "a Content-Length header is required")
    if not declared.strip().isdigit():
        raise ChatRequestError(400, f"Content-Length must be a non-negative integer, got {declared!r}")
    length = int(declared)
    if length > max_bytes:
        raise ChatRequestError(413, f"the body is {length} bytes; this server takes at most {max_bytes}")
    body = stream.read(length)
    if len(body) < length:
        raise ChatRequestError(400, f"the body ended after {len(body)} of {length} bytes")
    return body


def parse_request(raw: bytes, models: Collection[str]) -> dict[str, Any]:
    """The request as a dict, once it is a JSON object asking one of `models` with well-formed messages and
    tools; anything else raises `ChatRequestError` (400, or 404 for a model this server does not serve)."""
    try:
        request = json.loads(raw or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ChatRequestError(400, f"the body is not JSON: {error}") from None
    if not isinstance(request, dict):
        raise ChatRequestError(400, f"the body must be a JSON object, not {type(request).__name__}")
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise ChatRequestError(400, "model is required")
    if model not in models:
        raise ChatRequestError(404, f"model {model!r} is not served here; served: {', '.join(sorted(models))}",
                               "model_not_found")
    _check_messages(request.get("messages"))
    _check_tools(request.get("tools"))
    if request.get("stream"):
        raise ChatRequestError(400, "streaming is not supported by promptopt serve")
    for name in ("temperature", "max_tokens", "seed"):
        value = request.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ChatRequestError(400, f"{name} must be a number")
    return request


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise ChatRequestError(400, "messages must be a non-empty list")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ChatRequestError(400, f"messages[{index}]: an object with a role among {', '.join(ROLES)}")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise ChatRequestError(400, f"messages[{index}].content must be a string or a list of parts")
        if isinstance(content, list) and not all(isinstance(part, dict) for part in content):
            raise ChatRequestError(400, f"messages[{index}].content: every part must be an object")


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise ChatRequestError(400, "tools must be a list")
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise ChatRequestError(400, f"tools[{index}]: expected {{\"type\": \"function\", \"function\": "
                                        "{\"name\": ...}}")
        if "parameters" in function and not isinstance(function["parameters"], dict):
            raise ChatRequestError(400, f"tools[{index}].function.parameters must be an object")
