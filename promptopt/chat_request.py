"""Reading and checking one chat-completions request for `promptopt serve` and the test server: every request
OpenAI would refuse is refused here too, with OpenAI's 400 error body naming the offending `param`, so a client
tested against this server is not surprised by the real service; every malformed request is a clear 4xx answer
(never a dropped connection or a 500), and the body is bounded before it is read."""
from __future__ import annotations

import json
from typing import Any, BinaryIO, Collection, Mapping

from promptopt.chat_messages import TOOL_NAME

DEFAULT_MAX_BODY = 1 << 20
ROLES = ("system", "user", "assistant", "tool", "developer")
MAX_CHOICES = 128
"""OpenAI's largest `n`."""


class ChatRequestError(ValueError):
    """A request the server answers with `status` and OpenAI's error body (`message`, `type`, `param`, `code`)."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI answers an error with."""
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}}


def _refuse(param: str, message: str, code: str = "invalid_value") -> ChatRequestError:
    """A 400 naming `param`, its message starting with the param as OpenAI's do."""
    return ChatRequestError(400, f"{param}: {message}", param=param, code=code)


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


def parse_request(raw: bytes, models: Collection[str], max_tokens_cap: int | None = None) -> dict[str, Any]:
    """The request as a dict, once it is a JSON object asking one of `models` that OpenAI would accept (a token
    limit at most `max_tokens_cap`); anything else raises `ChatRequestError` (400 naming the param, or 404 for a
    model this server does not serve)."""
    try:
        request = json.loads(raw or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ChatRequestError(400, f"the body is not JSON: {error}") from None
    if not isinstance(request, dict):
        raise ChatRequestError(400, f"the body must be a JSON object, not {type(request).__name__}")
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise ChatRequestError(400, "model is required", param="model", code="missing_required_parameter")
    if model not in models:
        raise ChatRequestError(404, f"model {model!r} is not served here; served: {', '.join(sorted(models))}",
                               "invalid_request_error", "model", "model_not_found")
    check_request(request, max_tokens_cap)
    if request.get("stream"):
        raise ChatRequestError(400, "streaming is not supported by promptopt serve", param="stream")
    return request


def check_request(request: Mapping[str, Any], max_tokens_cap: int | None = None) -> None:
    """Raise `ChatRequestError` for the first rule of OpenAI's chat completions `request` breaks: the messages
    and their order, the tools and `tool_choice`, the sampling parameters, and the token limit (one of its two
    names, at most `max_tokens_cap` when given, as a model's own limit is)."""
    check_messages(request.get("messages"))
    _check_tools(request.get("tools"))
    _check_tool_choice(request.get("tool_choice"), request.get("tools"))
    _check_number(request, "temperature", 0, 2)
    _check_number(request, "top_p", 0, 1)
    for name in ("frequency_penalty", "presence_penalty"):
        _check_number(request, name, -2, 2)
    for name, low in (("max_tokens", 1), ("max_completion_tokens", 1), ("n", 1), ("seed", None)):
        _check_integer(request, name, low, MAX_CHOICES if name == "n" else None)
    _check_token_limit(request, max_tokens_cap)


def check_messages(messages: Any) -> None:
    """OpenAI's rules for `messages`: a non-empty list of messages with known roles and text content; a `tool`
    message answers, by `tool_call_id`, a call of the assistant message before it; every call an assistant makes
    is answered before the next message that is not a tool result; each call has an `id`, `type` "function", a
    function name and its arguments as a string."""
    if not isinstance(messages, list) or not messages:
        raise _refuse("messages", "must be a non-empty list", "invalid_type")
    pending: dict[str, int] = {}
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _refuse(where, "must be a message object", "invalid_type")
        if message.get("role") not in ROLES:
            raise _refuse(f"{where}.role", f"must be one of {', '.join(ROLES)}")
        role = message["role"]
        if role != "tool" and pending:
            owner = min(pending.values())
            raise _refuse(f"messages[{owner}].tool_calls",
                          "an assistant message with 'tool_calls' must be followed by tool messages responding to "
                          f"each 'tool_call_id'; not answered: {', '.join(pending)}")
        _check_content(where, message)
        if role == "tool":
            _check_tool_result(where, message, pending)
        elif role == "assistant" and message.get("tool_calls") is not None:
            pending = {call_id: index for call_id in _check_tool_calls(where, message["tool_calls"])}
    if pending:
        raise _refuse(f"messages[{min(pending.values())}].tool_calls",
                      f"tool calls must be answered by tool messages; not answered: {', '.join(pending)}")


def _check_content(where: str, message: dict[str, Any]) -> None:
    """Content is text or a list of parts; null only for an assistant message that makes calls."""
    content = message.get("content")
    if content is None:
        if message["role"] == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            return
        raise _refuse(f"{where}.content", "missing: a string or a list of parts is required",
                      "missing_required_parameter")
    if not isinstance(content, (str, list)):
        raise _refuse(f"{where}.content", "must be a string or a list of parts", "invalid_type")
    if isinstance(content, list) and not all(isinstance(part, dict) for part in content):
        raise _refuse(f"{where}.content", "every part must be an object", "invalid_type")


def _check_tool_result(where: str, message: dict[str, Any], pending: dict[str, int]) -> None:
    """A tool message names, by `tool_call_id`, a call still waiting for its answer."""
    call_id = message.get("tool_call_id")
    if call_id is None:
        raise _refuse(f"{where}.tool_call_id", "missing: messages with role 'tool' must have a 'tool_call_id'",
                      "missing_required_parameter")
    if not isinstance(call_id, str):
        raise _refuse(f"{where}.tool_call_id", "must be a string", "invalid_type")
    if call_id not in pending:
        raise _refuse(f"{where}.tool_call_id", f"messages with role 'tool' must be a response to a preceding "
                                               f"message with 'tool_calls'; no call {call_id!r} awaits an answer")
    del pending[call_id]


def _check_tool_calls(where: str, calls: Any) -> list[str]:
    """The ids of an assistant message's `tool_calls`, once each is a well-formed function call."""
    if not isinstance(calls, list) or not calls:
        raise _refuse(f"{where}.tool_calls", "must be a non-empty list of tool calls", "invalid_type")
    ids = []
    for number, call in enumerate(calls):
        at = f"{where}.tool_calls[{number}]"
        if not isinstance(call, dict):
            raise _refuse(at, "must be an object", "invalid_type")
        if not isinstance(call.get("id"), str) or not call["id"]:
            raise _refuse(f"{at}.id", "missing: every tool call needs an id", "missing_required_parameter")
        if call.get("type") != "function":
            raise _refuse(f"{at}.type", "must be 'function'")
        function = call.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise _refuse(f"{at}.function.name", "missing: every tool call names its function",
                          "missing_required_parameter")
        if not isinstance(function.get("arguments"), str):
            raise _refuse(f"{at}.function.arguments", "must be a string (the arguments as JSON)", "invalid_type")
        ids.append(call["id"])
    return ids


def _check_tools(tools: Any) -> None:
    """`tools`: a non-empty list of `{"type": "function", "function": {"name", "parameters"}}`, names by OpenAI's
    rule, parameters a JSON Schema of an object."""
    if tools is None:
        return
    if not isinstance(tools, list) or not tools:
        raise _refuse("tools", "must be a list of at least one tool", "invalid_type")
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _refuse(f"{where}.function", 'expected {"type": "function", "function": {"name": ...}}',
                          "missing_required_parameter")
        if tool.get("type") != "function":
            raise _refuse(f"{where}.type", "must be 'function'")
        if not TOOL_NAME.match(function["name"]):
            raise _refuse(f"{where}.function.name", "string does not match pattern '^[a-zA-Z0-9_-]{1,64}$'")
        if "parameters" in function:
            _check_parameters(f"{where}.function.parameters", function["name"], function["parameters"])


def _check_parameters(where: str, name: str, parameters: Any) -> None:
    """A function's `parameters`: a valid JSON Schema whose type is `object`."""
    from jsonschema import SchemaError, validators

    if not isinstance(parameters, dict):
        raise _refuse(where, f"must be an object (a JSON Schema) for function {name!r}", "invalid_type")
    if parameters.get("type", "object") != "object":
        raise _refuse(where, f"invalid schema for function {name!r}: schema must be a JSON Schema of "
                             f"'type: \"object\"', got 'type: {json.dumps(parameters.get('type'))}'",
                      "invalid_function_parameters")
    try:
        validators.validator_for(parameters).check_schema(parameters)
    except SchemaError as error:
        raise _refuse(where, f"invalid schema for function {name!r}: {error.message}",
                      "invalid_function_parameters") from None


def _check_tool_choice(choice: Any, tools: Any) -> None:
    """`tool_choice` only with tools: `none`, `auto`, `required`, or a function among them."""
    if choice is None:
        return
    if not tools:
        raise _refuse("tool_choice", "'tool_choice' is only allowed when 'tools' are specified")
    if choice in ("none", "auto", "required"):
        return
    names = {t["function"]["name"] for t in tools}
    function = choice.get("function") if isinstance(choice, dict) else None
    if not isinstance(function, dict) or choice.get("type") != "function" or function.get("name") not in names:
        raise _refuse("tool_choice", "must be 'none', 'auto', 'required' or "
                                     '{"type": "function", "function": {"name": <one of the tools>}}')


def _check_number(request: Mapping[str, Any], name: str, low: float, high: float) -> None:
    """A number from `low` to `high`, when given."""
    value = request.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _refuse(name, "must be a number", "invalid_type")
    if not low <= value <= high:
        code = "decimal_below_min_value" if value < low else "decimal_above_max_value"
        raise _refuse(name, f"must be from {low:g} to {high:g}, got {value:g}", code)


def _check_token_limit(request: Mapping[str, Any], cap: int | None) -> None:
    """`max_tokens` or its newer name `max_completion_tokens`, not both, and at most `cap`: OpenAI refuses both
    at once, and a limit over the model's with a 400 rather than writing less than was asked."""
    if request.get("max_tokens") is not None and request.get("max_completion_tokens") is not None:
        raise ChatRequestError(400, "Setting 'max_tokens' and 'max_completion_tokens' at the same time is not "
                                    "supported.", param="max_tokens", code="invalid_parameter_combination")
    for name in ("max_tokens", "max_completion_tokens"):
        value = request.get(name)
        if cap is not None and value is not None and value > cap:
            raise ChatRequestError(400, f"{name} is too large: {value}. This model supports at most {cap} "
                                        f"completion tokens, whereas you provided {value}.", param=name,
                                   code="invalid_value")


def _check_integer(request: Mapping[str, Any], name: str, low: int | None, high: int | None) -> None:
    """An integer from `low` to `high` (either may be open), when given."""
    value = request.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise _refuse(name, "must be an integer", "invalid_type")
    if low is not None and value < low:
        raise _refuse(name, f"must be at least {low}, got {value}", "integer_below_min_value")
    if high is not None and value > high:
        raise _refuse(name, f"must be at most {high}, got {value}", "integer_above_max_value")
