"""`promptopt serve`: an OpenAI-compatible HTTP server (`/v1/chat/completions`, `/v1/models`) in front of a
responder, by default the embedded model (Qwen2.5-Coder-0.5B-Instruct), so any OpenAI client (the SDK, DSPy,
curl) can use the local model.

A request with `tools` is routed the way the embedded backend routes (its native tool-call scores with the
calibrated gate, or SmolLM2's channel log-likelihood over the tool names and none) and answered with a tool call,
or with plain content when no tool fits; a request without tools is answered by generation. For testing clients
the server can add a fixed latency and inject faults at a given rate (429 with Retry-After, 500, a stalled reply,
a malformed body), drawn from a seeded generator.
"""
from __future__ import annotations

import hmac
import json
import random
import select
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Protocol

from promptopt.chat_messages import message_text
from promptopt.chat_request import DEFAULT_MAX_BODY, ChatRequestError, parse_request, read_body

FAULT_KINDS = ("rate_limit", "server_error", "stall", "malformed")
DEFAULT_MAX_TOKENS = 256
"""The completion tokens a reply may take when the request names no limit (kept short: the embedded model
writes on a CPU)."""
QUEUE_POLL_S = 0.05
"""How often a queued request looks whether its client is still there."""


class Responder(Protocol):
    """Answers one chat-completions request body with (assistant message, prompt tokens, completion tokens),
    writing at most `completion_limit(request)` completion tokens."""

    model_name: str

    def respond(self, request: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
        ...


@dataclass
class FaultPlan:
    """Inject a fault into `rate` of the requests, the kind drawn uniformly from `kinds`; a stall sleeps
    `stall_s` before answering (longer than the client's timeout, so the client sees a timeout)."""

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    retry_after_s: float = 0.05
    stall_s: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"fault kinds must be among {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("fault rate must be between 0 and 1")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def draw(self) -> str | None:
        with self._lock:
            if self._rng.random() >= self.rate:
                return None
            return self._rng.choice(self.kinds)


class EmbeddedResponder:
    """The embedded model behind the server: tool requests are routed, others generated."""

    model_name = "embedded"

    def __init__(self, check_arguments: bool = True) -> None:
        from promptopt.models.embedded import EmbeddedModel

        self.model = EmbeddedModel()
        self.check_arguments = check_arguments

    def respond(self, request: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
        messages = [_served(m) for m in request.get("messages", [])]
        tools = request.get("tools") or []
        if tools and request.get("tool_choice") != "none":
            system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
            conversation = [m for m in messages if m["role"] != "system"]
            routed = self.model.route(system, tools, [conversation], self.check_arguments)[0]
            if routed.call.name != "none":
                call = {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                        "function": {"name": routed.call.name,
                                     "arguments": json.dumps(routed.call.arguments, ensure_ascii=False)}}
                return {"role": "assistant", "content": None, "tool_calls": [call]}, routed.record.tokens_in, 1
            return {"role": "assistant", "content": "none"}, routed.record.tokens_in, 1
        text, record = self.model.generate(messages, temperature=float(request.get("temperature") or 0.0),
                                           max_tokens=completion_limit(request), role="task",
                                           seed=int(request.get("seed") or 0))
        return {"role": "assistant", "content": text}, record.tokens_in, record.tokens_out


def _served(message: dict[str, Any]) -> dict[str, Any]:
    """A request message as the embedded model reads it: `developer` as `system`, content as text (content-part
    lists joined), tool calls and the ids of tool results kept for its chat template."""
    role = "system" if message["role"] == "developer" else message["role"]
    served = {"role": role, "content": message_text({"content": message.get("content")})}
    return {**served, **{k: message[k] for k in ("tool_calls", "tool_call_id") if k in message}}


def completion_limit(request: dict[str, Any]) -> int:
    """The completion tokens a reply to `request` may take: `max_completion_tokens` (OpenAI's newer name) or
    `max_tokens`, else `DEFAULT_MAX_TOKENS`."""
    return int(request.get("max_completion_tokens") or request.get("max_tokens") or DEFAULT_MAX_TOKENS)


def finish_reason(message: dict[str, Any], completion_tokens: int, limit: int) -> str:
    """Why a reply ended, as OpenAI says it: `tool_calls` for a call, `length` when it took all the tokens it
    was allowed (so it was cut), else `stop`."""
    if message.get("tool_calls"):
        return "tool_calls"
    return "length" if completion_tokens >= limit else "stop"


def _choices(responder: Responder, request: dict[str, Any],
             abandoned: Callable[[], bool]) -> tuple[list[dict[str, Any]], int, int] | None:
    """The request's `n` choices (default 1), each the responder's answer to it (choice i > 0 asks with seed + i,
    so sampled choices differ); the prompt counted once, the completions summed, as OpenAI counts them. None
    when the client is `abandoned` before the next choice: nobody would read the rest."""
    choices, tokens_in, tokens_out = [], 0, 0
    for index in range(int(request.get("n") or 1)):
        if index and abandoned():
            return None
        asked = request if index == 0 else {**request, "seed": int(request.get("seed") or 0) + index}
        message, tokens_in, completion = responder.respond(asked)
        tokens_out += completion
        choices.append({"index": index, "message": message,
                        "finish_reason": finish_reason(message, completion, completion_limit(request))})
    return choices, tokens_in, tokens_out


def client_gone(connection: socket.socket) -> bool:
    """Whether the client closed its side (so a queued request need not be answered)."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class ChatServer:
    """A threaded HTTP server speaking the OpenAI chat-completions API for one responder: at most `workers`
    requests are answered at once and `queue` more wait, each at most `queue_timeout_s`; beyond either a request
    gets 503 with Retry-After, and a queued request whose client left is dropped at once. A connection that
    sends (or reads) nothing for `idle_timeout_s` is closed (None: never). A token limit over `max_tokens_cap` is
    refused with OpenAI's 400. With `api_key`, requests must carry it as a bearer token. Only `models` (default:
    the responder's) are answered."""

    def __init__(self, responder: Responder, host: str = "127.0.0.1", port: int = 0, latency_s: float = 0.0,
                 faults: FaultPlan | None = None, log: Callable[[str], None] | None = None, workers: int = 64,
                 queue: int = 64, api_key: str | None = None, max_body: int = DEFAULT_MAX_BODY,
                 models: tuple[str, ...] = (), queue_timeout_s: float = 60.0, idle_timeout_s: float | None = 30.0,
                 max_tokens_cap: int = 4096) -> None:
        if workers < 1 or queue < 0:
            raise ValueError("workers must be at least 1 and queue at least 0")
        if queue_timeout_s <= 0 or (idle_timeout_s is not None and idle_timeout_s <= 0) or max_tokens_cap < 1:
            raise ValueError("the queue and idle timeouts must be positive and max_tokens_cap at least 1")
        self.responder = responder
        self.latency_s = latency_s
        self.faults = faults or FaultPlan()
        self.log = log or (lambda line: None)
        self.api_key = api_key
        self.max_body = max_body
        self.queue_timeout_s = queue_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_tokens_cap = max_tokens_cap
        self.models = set(models or (responder.model_name,))
        self._admitted = threading.BoundedSemaphore(workers + queue)
        self._working = threading.Semaphore(workers)
        self.requests = 0
        self.injected: dict[str, int] = {kind: 0 for kind in FAULT_KINDS}
        self._counter = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "ChatServer":
        """Serve on a background thread (for tests and benchmarks)."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "ChatServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # one send per answer, no Nagle delay: headers and body written separately would wait ~40 ms for
            # the client's delayed ACK on every keep-alive request
            disable_nagle_algorithm = True
            wbufsize = 1 << 16
            timeout = server.idle_timeout_s  # a silent connection is closed and its thread ends

            def log_message(self, format: str, *args: Any) -> None:
                server.log(f"{self.address_string()} {format % args}")

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                if self.path.rstrip("/") in ("/v1/models", "/models"):
                    self._json(200, {"object": "list", "data": [
                        {"id": name, "object": "model", "owned_by": "promptopt"} for name in sorted(server.models)]})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

            def do_POST(self) -> None:
                try:
                    raw = read_body(self.headers, self.rfile, server.max_body)
                except ChatRequestError as error:
                    self.close_connection = True  # the unread body would be taken for the next request
                    self._json(error.status, error.body())
                    return
                if not self._authorized():
                    return
                if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                    self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                try:
                    request = parse_request(raw, server.models, server.max_tokens_cap)
                except ChatRequestError as error:
                    self._json(error.status, error.body())
                    return
                if completion_limit(request) > server.max_tokens_cap:  # no limit named; the default is above the cap
                    request = {**request, "max_tokens": server.max_tokens_cap}
                if not server._admitted.acquire(blocking=False):
                    self._busy("the server is busy; try again shortly")
                    return
                try:
                    if self._wait_for_worker():
                        try:
                            self._answer(request)
                        finally:
                            server._working.release()
                finally:
                    server._admitted.release()

            def _wait_for_worker(self) -> bool:
                """Wait in the queue for a worker (True once one is taken), looking every `QUEUE_POLL_S` whether
                the client is still there: one that left frees its place at once and its request is never worked
                on; one that waited `queue_timeout_s` gets 503, so no place is held for ever."""
                deadline = time.monotonic() + server.queue_timeout_s
                while not client_gone(self.connection):
                    if server._working.acquire(timeout=max(0.0, min(QUEUE_POLL_S, deadline - time.monotonic()))):
                        if not client_gone(self.connection):
                            return True
                        server._working.release()
                        break
                    if time.monotonic() >= deadline:
                        self._busy(f"the request waited {server.queue_timeout_s:g} s in the queue; try again shortly")
                        return False
                self.log_message("client left while queued; its request is dropped")
                self.close_connection = True
                return False

            def _busy(self, message: str) -> None:
                """503 with Retry-After: the server cannot take the request now."""
                self._json(503, {"error": {"message": message, "type": "server_busy", "param": None, "code": None}},
                           {"Retry-After": "1"})

            def _authorized(self) -> bool:
                """With an API key set, a request without it gets 401 (compared in constant time)."""
                if server.api_key is None:
                    return True
                given = self.headers.get("authorization") or ""
                if hmac.compare_digest(given.encode(), f"Bearer {server.api_key}".encode()):
                    return True
                self._json(401, {"error": {"message": "missing or wrong API key", "type": "invalid_api_key"}})
                return False

            def _answer(self, request: dict[str, Any]) -> None:
                with server._counter:
                    server.requests += 1
                fault = server.faults.draw()
                if fault:
                    with server._counter:
                        server.injected[fault] += 1
                if server.latency_s:
                    time.sleep(server.latency_s)
                if fault == "rate_limit":
                    self._json(429, {"error": {"message": "rate limited (injected)", "type": "rate_limit"}},
                               {"Retry-After": f"{server.faults.retry_after_s:g}"})
                    return
                if fault == "server_error":
                    self._json(500, {"error": {"message": "server error (injected)", "type": "server_error"}})
                    return
                if fault == "stall":
                    time.sleep(server.faults.stall_s)
                try:
                    answered = _choices(server.responder, request, lambda: client_gone(self.connection))
                except ValueError as error:  # the request asks for something the responder cannot do
                    refusal = error if isinstance(error, ChatRequestError) else ChatRequestError(400, str(error))
                    self._json(refusal.status, refusal.body())
                    return
                except Exception as error:  # the responder's failure is the client's 500, not a dead server
                    self._json(500, {"error": {"message": f"{type(error).__name__}: {error}", "type": "server_error",
                                               "param": None, "code": None}})
                    return
                if answered is None:
                    self.log_message("client left while its choices were written; the rest are dropped")
                    self.close_connection = True
                    return
                choices, tokens_in, tokens_out = answered
                body = {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:16]}", "object": "chat.completion",
                    "created": int(time.time()), "model": request["model"], "choices": choices,
                    "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                              "total_tokens": tokens_in + tokens_out},
                }
                if fault == "malformed":
                    text = json.dumps(body)
                    self._send(200, text[: len(text) // 2].encode(), {"Content-Type": "application/json"})
                    return
                self._json(200, body)

            def _json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                self._send(status, json.dumps(body, ensure_ascii=False).encode("utf-8"),
                           {"Content-Type": "application/json", **(headers or {})})

            def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout it asked for); nothing to answer

        return Handler
