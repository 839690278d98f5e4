"""OpenAI-compatible endpoints (OpenAI, DeepSeek, Qwen, vLLM, Ollama, `promptopt serve` …) through the official
`openai` SDK's async client.

Calls run on one background event loop (so the backend also works from Jupyter or any running loop), at most
`concurrency` at a time. Each call is looked up in the on-disk response cache first, retried on transient
failures with the policy in `promptopt.models.retry` (the SDK's own retries are off, so every wait is ours and
visible), and leaves a `CallRecord` with tokens, latency, cost, cache hit, attempts and, when the last try
failed, the error. A failed call never raises out of `route`: that conversation comes back with `error` set.

Routing uses native tool calling (`tools=` with the task's schemas; no call means `none`). Endpoints without
tool calling get the text protocol instead (`TEXT_PROTOCOL`): the tool list is appended to the system prompt
and the reply's first word names the tool, followed by optional JSON arguments. With `tool_protocol="auto"`,
the first refusal of a request carrying `tools` that says the endpoint has no tool calling (`tool_support`)
switches the backend to the text protocol for good, and the conversation it came with carries a one-line notice
of it; a 400 about the request itself (a message, a schema) is that call's failure and switches nothing.
"""
from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Coroutine, Sequence, TypeVar

from promptopt.case import NO_TOOL, ToolCall
from promptopt.models.base import CallRecord, Completion, Routed
from promptopt.models.pricing import PriceTable, load_prices
from promptopt.models.response_cache import ResponseCache
from promptopt.models.retry import RetryPolicy, is_retryable, status_code
from promptopt.models.settings import ModelSettings
from promptopt.models.tool_support import tool_calling_refusal
from promptopt.models.tool_text import parse_json_object, tool_names

T = TypeVar("T")

TEXT_PROTOCOL = (
    "## Tools\n"
    "Answer with exactly one line: the name of the one tool to call followed by its JSON arguments, for example\n"
    '{example} {{"key": "value"}}\n'
    "or the single word none when no tool fits.\n"
    "{listing}"
)
TOOL_PROTOCOLS = ("auto", "native", "text")


@dataclass(frozen=True)
class Endpoint:
    """Where a model is served. The key is kept out of `repr` and out of every record promptopt writes."""

    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0

    def public(self) -> dict[str, Any]:
        """What may be stored with a run: model and URL, never the key."""
        return {"model": self.model, "base_url": self.base_url}


@dataclass
class Reply:
    """One chat completion (or its failure) with its accounting; `tools_refused` holds the endpoint's words when
    the failure says it has no tool calling, and `notice` a line to show once (the switch of protocol)."""

    message: dict[str, Any]
    record: CallRecord
    error: str = ""
    tools_refused: str = ""
    notice: str = ""


class _LoopThread:
    """A private asyncio loop on a daemon thread; synchronous callers submit coroutines and wait."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="promptopt-openai", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()


class OpenAICompatibleModel:
    """A chat model behind an OpenAI-compatible HTTP API, usable as task model and as optimizer model."""

    def __init__(self, endpoint: Endpoint, concurrency: int = 8, retry: RetryPolicy | None = None,
                 cache: ResponseCache | None = None, prices: PriceTable | None = None,
                 tool_protocol: str = "auto", seed: int | None = 0) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if tool_protocol not in TOOL_PROTOCOLS:
            raise ValueError(f"tool protocol must be one of {', '.join(TOOL_PROTOCOLS)}")
        self.endpoint = endpoint
        self.name = endpoint.model
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.cache = cache
        self.prices = prices or load_prices()
        self.tool_protocol = tool_protocol
        self.seed = seed
        self._rng = random.Random(seed)
        self._runner: _LoopThread | None = None
        self._runner_lock = threading.Lock()
        self._client: Any = None
        self._semaphore: asyncio.Semaphore | None = None

    # synchronous surface (the ModelBackend protocol)
    def route(self, system_prompt: str, tools: Sequence[dict[str, Any]],
              conversations: Sequence[list[dict[str, str]]], check_arguments: bool = False) -> list[Routed]:
        """Ask the endpoint which tool fits each conversation, all conversations concurrently."""
        replies = self._run(self._gather([self._route_one(system_prompt, tools, c) for c in conversations]))
        names = set(tool_names(tools))
        routed = []
        for reply in replies:
            call = ToolCall(NO_TOOL) if reply.error else self._tool_call(reply.message, names)
            if not check_arguments:
                call = ToolCall(call.name, text=call.text)
            routed.append(Routed(call=call, record=reply.record, error=reply.error, notice=reply.notice))
        return routed

    def generate(self, messages: list[dict[str, str]], temperature: float = 0.0, max_tokens: int = 256,
                 role: str = "optimizer", sample_index: int = 0) -> tuple[str, CallRecord]:
        """One chat completion; raises `RuntimeError` when it failed after the last retry."""
        reply = self._run(self._chat(self._request(messages, temperature, max_tokens, sample_index), role))
        if reply.error:
            raise RuntimeError(f"{self.name}: {reply.error}")
        return reply.message.get("content") or "", reply.record

    def generate_many(self, requests: Sequence[list[dict[str, str]]], temperature: float = 1.0,
                      max_tokens: int = 512, role: str = "optimizer", first_sample: int = 0) -> list[Completion]:
        """Several completions concurrently (sample i of identical messages is cached as its own entry);
        sample indices start at `first_sample`."""
        seen: dict[str, int] = {}
        coroutines = []
        for messages in requests:
            key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
            index = seen[key] = seen.get(key, first_sample - 1) + 1
            coroutines.append(self._chat(self._request(messages, temperature, max_tokens, index), role))
        replies = self._run(self._gather(coroutines))
        return [Completion(text=r.message.get("content") or "", record=r.record, error=r.error) for r in replies]

    def close(self) -> None:
        """Close the HTTP client and stop the loop thread."""
        with self._runner_lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            if self._client is not None:
                runner.run(self._client.close())
            runner.loop.call_soon_threadsafe(runner.loop.stop)
            self._client = None
            self._semaphore = None

    # requests
    def _request(self, messages: list[dict[str, Any]], temperature: float, max_tokens: int,
                 sample_index: int = 0, tools: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
        request: dict[str, Any] = {"model": self.endpoint.model, "messages": messages, "temperature": temperature,
                                   "max_tokens": max_tokens}
        if self.seed is not None:
            # sample i of the same messages asks for its own seed, so samples differ but a re-run repeats them
            request["seed"] = self.seed + (sample_index if temperature > 0 else 0)
        if tools:
            request["tools"] = list(tools)
            request["tool_choice"] = "auto"
        if temperature > 0:
            request["_sample"] = sample_index
        return request

    async def _route_one(self, system_prompt: str, tools: Sequence[dict[str, Any]],
                         conversation: list[dict[str, Any]]) -> Reply:
        notice = ""
        if self.tool_protocol != "text":
            messages = [{"role": "system", "content": system_prompt}, *conversation]
            reply = await self._chat(self._request(messages, 0.0, 256, tools=tools), "task")
            if self.tool_protocol == "native" or not reply.tools_refused:
                return reply
            notice = self._switch_to_text(reply.tools_refused)
        system = f"{system_prompt}\n\n{render_text_protocol(tools)}"
        reply = await self._chat(self._request([{"role": "system", "content": system}, *conversation], 0.0, 256),
                                 "task")
        return replace(reply, notice=notice)

    def _switch_to_text(self, refusal: str) -> str:
        """Route with the text protocol from now on; the line saying so, for the first caller only (calls in
        flight together may all meet the refusal)."""
        if self.tool_protocol == "text":
            return ""
        self.tool_protocol = "text"
        return (f"task model {self.name}: the endpoint has no tool calling ({refusal.splitlines()[0][:200]}); "
                "routing with the text protocol (tools listed in the system prompt) for the rest of this run")

    @staticmethod
    def _tool_call(message: dict[str, Any], names: set[str]) -> ToolCall:
        calls = message.get("tool_calls") or []
        text = message.get("content") or ""
        if calls:
            function = calls[0].get("function") or {}
            return ToolCall(function.get("name") or NO_TOOL, parse_json_object(function.get("arguments") or ""), text)
        routed = parse_text_protocol(text, names)
        return ToolCall(routed.name, routed.arguments, text)

    # the call itself
    async def _chat(self, request: dict[str, Any], role: str) -> Reply:
        cache_request = {**request, "base_url": self.endpoint.base_url}
        cached = self.cache.get(cache_request) if self.cache is not None else None
        if cached is not None:
            usage = cached.response.get("usage") or {}
            tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            record = CallRecord.from_cache(role, self.name, tokens_in, tokens_out,
                                           self.prices.cost(self.name, tokens_in, tokens_out), cached.paid_by_this_run)
            return Reply(message=_first_message(cached.response), record=record)
        payload = {k: v for k, v in request.items() if not k.startswith("_")}
        started = time.perf_counter()
        attempt = 0
        async with self._limit():
            while True:
                attempt += 1
                try:
                    # the SDK's raw POST: same transport, auth and error types as `chat.completions.create`,
                    # without re-validating the request through its typed params (milliseconds per call)
                    body = await self._client_for_loop().post("/chat/completions", body=payload, cast_to=object)
                    message = _first_message(body)
                    break
                except Exception as failure:  # the SDK's errors, and bodies that are not what they claim
                    if attempt >= self.retry.attempts or not is_retryable(failure):
                        latency = time.perf_counter() - started
                        record = CallRecord(role=role, model=self.name, tokens_in=0, tokens_out=0, latency_s=latency,
                                            attempts=attempt, error=_describe(failure, self.endpoint.api_key),
                                            status=status_code(failure) or 0)
                        return Reply(message={}, record=record, error=record.error,
                                     tools_refused=tool_calling_refusal(failure))
                    await asyncio.sleep(self.retry.delay(attempt, failure, self._rng))
        usage = body.get("usage") or {}
        tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        record = CallRecord(role=role, model=self.name, tokens_in=tokens_in, tokens_out=tokens_out,
                            latency_s=time.perf_counter() - started, attempts=attempt,
                            cost_usd=self.prices.cost(self.name, tokens_in, tokens_out))
        if self.cache is not None:
            self.cache.put(cache_request, {"choices": [{"message": message}], "usage": usage})
        return Reply(message=message, record=record)

    # plumbing
    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run on the backend's one event loop, made by the first caller: callers on several threads (the scorer
        keeps two chunks in flight) must share it, since its semaphore and HTTP client belong to that loop."""
        with self._runner_lock:
            if self._runner is None:
                self._runner = _LoopThread()
            runner = self._runner
        return runner.run(coroutine)

    @staticmethod
    async def _gather(coroutines: Sequence[Awaitable[T]]) -> list[T]:
        return list(await asyncio.gather(*coroutines))

    def _limit(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrency)
        return self._semaphore

    def _client_for_loop(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.AsyncOpenAI(api_key=self.endpoint.api_key or "not-needed",
                                              base_url=self.endpoint.base_url, timeout=self.endpoint.timeout_s,
                                              max_retries=0)
        return self._client


def from_settings(settings: ModelSettings, concurrency: int, cache: ResponseCache | None,
                  prices: PriceTable | None) -> OpenAICompatibleModel:
    """The registry's factory for `openai`: a client for the endpoint `settings` describe."""
    endpoint = Endpoint(settings.model, settings.base_url, settings.api_key, settings.timeout_s)
    return OpenAICompatibleModel(endpoint, concurrency=concurrency, cache=cache, prices=prices,
                                 tool_protocol=settings.tool_protocol)


def render_text_protocol(tools: Sequence[dict[str, Any]]) -> str:
    """The tool section for endpoints without native tool calling."""
    lines = []
    for tool in tools:
        function = tool["function"]
        parameters = ", ".join(function.get("parameters", {}).get("properties", {}))
        lines.append(f"- {function['name']}({parameters}): {function.get('description', '')}".rstrip(": "))
    lines.append(f"- {NO_TOOL}: no tool fits; answer directly")
    example = tool_names(tools)[0] if tools else NO_TOOL
    return TEXT_PROTOCOL.format(example=example, listing="\n".join(lines))


def parse_text_protocol(text: str, names: set[str]) -> ToolCall:
    """The tool named by a text-protocol reply: its first word that is a tool name (else `none`), and the first
    JSON object after it as arguments."""
    for word in text.replace("`", " ").replace("(", " ").split():
        word = word.strip(".,:;\"'")
        if word in names:
            rest = text[text.index(word) + len(word):]
            return ToolCall(word, parse_json_object(rest))
        if word.lower() == NO_TOOL:
            break
    return ToolCall(NO_TOOL)


def _first_message(body: Any) -> dict[str, Any]:
    choices = body.get("choices") if isinstance(body, dict) else None
    if not choices or not isinstance(choices[0].get("message"), dict):
        raise ValueError("response has no choices[0].message")
    return choices[0]["message"]


def _describe(error: BaseException, secret: str | None = None) -> str:
    """The first line of a failed call's error, with the API key cut out: some endpoints echo the key they were
    sent, and this text is stored and printed."""
    code = status_code(error)
    text = str(error).splitlines()[0] if str(error) else ""
    if secret:
        text = text.replace(secret, "[redacted]")
    return f"{type(error).__name__}{f' {code}' if code else ''}: {text}"[:300]
