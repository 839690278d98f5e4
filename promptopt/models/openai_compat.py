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

Generation asks for the sampled replies to one prompt (a step's samples) in one call with `n`; an endpoint that
refuses `n` (`choices_support`) or answers with fewer choices switches the backend to one call per sample, with
a one-line notice, in the same way.
"""
from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Coroutine, Sequence, TypeVar

from promptopt.case import NO_TOOL, ToolCall
from promptopt.models.base import CallRecord, Completion, Routed
from promptopt.models.choices_support import choices_refusal
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
    the failure says it has no tool calling, `choices_refused` when it says it takes no `n`, and `notice` a line
    to show once (the switch of protocol, or to one call per sample)."""

    message: dict[str, Any]
    record: CallRecord
    error: str = ""
    tools_refused: str = ""
    notice: str = ""
    choices_refused: str = ""


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
        self.choices_per_call = True  # samples of one prompt asked as one call with `n`, until the endpoint refuses
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
        """Several completions concurrently; repeated identical messages are distinct samples, numbered from
        `first_sample`, each cached as its own entry (so a later run or a resumed one finds each sample).

        Sampled (temperature > 0), the uncached samples of the same messages are asked for in one call with `n`
        (the reply's choices are the samples, in order), unless the endpoint has refused `n`: a 400 naming `n`,
        or a reply with fewer choices than asked, switches this backend to one call per sample for good (the
        choices a short reply did bring are kept), and the first completion after the switch carries a one-line
        notice of it. One call's usage is split evenly among its samples (prompt and completion tokens alike,
        the remainder to the first samples), so the records add up to what the endpoint counted and priced; its
        latency is divided among them the same way, and its retries are counted once, on the first sample.
        Greedy (temperature 0), the same messages are asked once and that answer serves every copy (recorded,
        for the copies, as the cache hits a repeat of the call would be): `n` would only repeat it."""
        seen: dict[str, int] = {}
        groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for position, messages in enumerate(requests):
            key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
            index = seen[key] = seen.get(key, first_sample - 1) + 1
            groups.setdefault(key, []).append((position, self._request(messages, temperature, max_tokens, index)))
        coroutines = [self._samples([request for _, request in samples], role) if temperature > 0
                      else self._copies(samples[0][1], len(samples), role) for samples in groups.values()]
        replies: list[Reply | None] = [None] * len(requests)
        for samples, answered in zip(groups.values(), self._run(self._gather(coroutines))):
            for (position, _), reply in zip(samples, answered):
                replies[position] = reply
        return [Completion(text=r.message.get("content") or "", record=r.record, error=r.error, notice=r.notice)
                for r in replies if r is not None]

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
        cached = self._cached(cache_request, role)
        if cached is not None:
            return cached
        posted = await self._post({k: v for k, v in request.items() if not k.startswith("_")}, role, _first_message)
        if isinstance(posted, Reply):
            return posted
        body, message, attempts, latency = posted
        usage = body.get("usage") or {}
        tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        record = CallRecord(role=role, model=self.name, tokens_in=tokens_in, tokens_out=tokens_out,
                            latency_s=latency, attempts=attempts,
                            cost_usd=self.prices.cost(self.name, tokens_in, tokens_out))
        if self.cache is not None:
            self.cache.put(cache_request, {"choices": [{"message": message}], "usage": usage})
        return Reply(message=message, record=record)

    def _cached(self, cache_request: dict[str, Any], role: str) -> Reply | None:
        """The cache's answer to `cache_request`, recorded as a cache hit; None when it has none."""
        cached = self.cache.get(cache_request) if self.cache is not None else None
        if cached is None:
            return None
        usage = cached.response.get("usage") or {}
        tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        record = CallRecord.from_cache(role, self.name, tokens_in, tokens_out,
                                       self.prices.cost(self.name, tokens_in, tokens_out), cached.paid_by_this_run)
        return Reply(message=_first_message(cached.response), record=record)

    async def _post(self, payload: dict[str, Any], role: str,
                    read: Callable[[Any], T]) -> tuple[dict[str, Any], T, int, float] | Reply:
        """POST `payload` with retries: (body, what `read` takes from it, tries, seconds), or the failed `Reply`
        after the last try (a body `read` cannot take counts as a failed try)."""
        started = time.perf_counter()
        attempt = 0
        async with self._limit():
            while True:
                attempt += 1
                try:
                    # the SDK's raw POST: same transport, auth and error types as `chat.completions.create`,
                    # without re-validating the request through its typed params (milliseconds per call)
                    body = await self._client_for_loop().post("/chat/completions", body=payload, cast_to=object)
                    return body, read(body), attempt, time.perf_counter() - started
                except Exception as failure:  # the SDK's errors, and bodies that are not what they claim
                    if attempt >= self.retry.attempts or not is_retryable(failure):
                        latency = time.perf_counter() - started
                        record = CallRecord(role=role, model=self.name, tokens_in=0, tokens_out=0, latency_s=latency,
                                            attempts=attempt, error=_describe(failure, self.endpoint.api_key),
                                            status=status_code(failure) or 0)
                        return Reply(message={}, record=record, error=record.error,
                                     tools_refused=tool_calling_refusal(failure),
                                     choices_refused=choices_refusal(failure) if "n" in payload else "")
                    await asyncio.sleep(self.retry.delay(attempt, failure, self._rng))

    async def _samples(self, requests: list[dict[str, Any]], role: str) -> list[Reply]:
        """The samples of one prompt (`requests` differ only in their sample index and seed): each from the cache
        when it has it, the rest from one call with `n` while the endpoint takes it, else one call each."""
        replies: list[Reply | None] = [self._cached({**r, "base_url": self.endpoint.base_url}, role)
                                       for r in requests]
        missing = [i for i, reply in enumerate(replies) if reply is None]
        notice = ""
        if len(missing) > 1 and self.choices_per_call:
            answered, notice = await self._chat_choices([requests[i] for i in missing], role)
            for i, reply in zip(missing, answered):
                replies[i] = reply
            missing = missing[len(answered):]
        for i, reply in zip(missing, await self._gather([self._chat(requests[i], role) for i in missing])):
            replies[i] = reply
        done = [reply for reply in replies if reply is not None]
        if notice:
            done[0] = replace(done[0], notice=notice)
        return done

    async def _chat_choices(self, requests: list[dict[str, Any]], role: str) -> tuple[list[Reply], str]:
        """One call for the samples `requests` (the first's request with `n`): a reply per sample it answered, in
        order, each cached under its own sample's request; and the notice when this call switched the backend to
        one call per sample (then the samples it did not answer are left to the caller)."""
        count = len(requests)
        payload = {k: v for k, v in requests[0].items() if not k.startswith("_")}
        posted = await self._post({**payload, "n": count}, role, _messages)
        if isinstance(posted, Reply):
            if posted.choices_refused:
                return [], self._switch_to_separate_calls(role, posted.choices_refused)
            return [replace(posted, record=replace(posted.record, latency_s=posted.record.latency_s / count,
                                                   attempts=posted.record.attempts if i == 0 else 1))
                    for i in range(count)], ""
        body, messages, attempts, latency = posted
        messages = messages[:count]
        notice = "" if len(messages) == count else self._switch_to_separate_calls(
            role, f"asked for n={count} choices, the reply has {len(messages)}")
        usage = body.get("usage") or {}
        shares_in = _shares(int(usage.get("prompt_tokens") or 0), len(messages))
        shares_out = _shares(int(usage.get("completion_tokens") or 0), len(messages))
        replies = []
        for i, (request, message) in enumerate(zip(requests, messages)):
            tokens_in, tokens_out = shares_in[i], shares_out[i]
            record = CallRecord(role=role, model=self.name, tokens_in=tokens_in, tokens_out=tokens_out,
                                latency_s=latency / len(messages), attempts=attempts if i == 0 else 1,
                                cost_usd=self.prices.cost(self.name, tokens_in, tokens_out))
            if self.cache is not None:
                self.cache.put({**request, "base_url": self.endpoint.base_url},
                               {"choices": [{"message": message}],
                                "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                                          "total_tokens": tokens_in + tokens_out}})
            replies.append(Reply(message=message, record=record))
        return replies, notice

    async def _copies(self, request: dict[str, Any], count: int, role: str) -> list[Reply]:
        """A greedy request asked `count` times: one call, its answer for every copy (the copies recorded as the
        cache hits a repeat of the call would be; a failure is every copy's, counted as one call's tries)."""
        reply = await self._chat(request, role)
        if reply.error:
            copy = replace(reply, record=replace(reply.record, latency_s=0.0, attempts=0))
        else:
            record = reply.record
            copy = Reply(message=reply.message, record=CallRecord.from_cache(
                role, self.name, record.tokens_in, record.tokens_out, record.cost_usd))
        return [reply, *[copy] * (count - 1)]

    def _switch_to_separate_calls(self, role: str, refusal: str) -> str:
        """Ask for each sample in its own call from now on; the line saying so, for the first caller only (calls
        in flight together may all meet the refusal); the run says it and stores it with its step."""
        if not self.choices_per_call:
            return ""
        self.choices_per_call = False
        return (f"{role} model {self.name}: the endpoint takes no n (several choices per call) "
                f"({refusal.splitlines()[0][:200]}); asking for each sample in its own call for the rest of this run")

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


def _messages(body: Any) -> list[dict[str, Any]]:
    """The messages of every choice of a reply, in the order of their `index`."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not choices or not all(isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices):
        raise ValueError("response has no choices with a message")
    ordered = sorted(choices, key=lambda c: c["index"]) if all(isinstance(c.get("index"), int) for c in choices) \
        else choices
    return [c["message"] for c in ordered]


def _shares(total: int, parts: int) -> list[int]:
    """`total` split into `parts` whole shares as even as can be, the larger ones first."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)] if parts else []


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
