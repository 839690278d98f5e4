"""The embedded backend: a small local model on CPU through transformers (`embedded_weights` has the sources).

Qwen2.5-Coder-0.5B (the default) routes natively: tool calls scored through its own chat template with a calibrated
"answer in text" gate (`native_routing`). SmolLM2-135M routes with the noisy channel (Min et al. 2022): each choice
(tool name or `none`) is written as `"{choice}: "` at the start of the user's last message and the message's own
tokens are scored, so the pick is the choice under which the model best predicts what the user said; a 135M model
scoring the reply directly (`choice_logprobs`) answers `none` almost always whatever the prompt. Scoring is packed
(`packed_scoring`: the system prompt's key/value cache reused, each conversation's choices packed into one
sequence); `reference_scoring` is the slow yardstick. Arguments are filled by a short greedy generation.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
import zlib
from typing import Any, Callable, Sequence

import numpy as np

from promptopt.case import NO_TOOL, ToolCall
from promptopt.models.base import CallRecord, Completion, Routed
from promptopt.models.embedded_weights import WeightsSource, require_embedded_libraries, weights_source
from promptopt.models.native_routing import (
    calibrate_gate,
    call_branches,
    decide,
    distinguishing_prefixes,
    routing_tools,
)
from promptopt.models.packed_scoring import PrefixCache, Row, cache_keyword, encode_prefix, score_rows
from promptopt.models.reference_scoring import score_rows_naive
from promptopt.models.response_cache import Cached, ResponseCache
from promptopt.models.settings import ModelSettings
from promptopt.models.tool_text import parse_json_object, render_tool_section, template_messages, tool_names

END_OF_TURN = "<|im_end|>"
CHANNEL_TAG = "{choice}: "
CHANNEL_SLOT = "\x00"
# Part of every cached routing answer's key: change it whenever routing would choose differently.
ROUTING_METHOD = {"channel": "channel-v1", "native": "native-v2"}


class EmbeddedModel:
    """The local backend (`weights`: a key of `embedded_weights.SOURCES`, default Qwen2.5-Coder-0.5B); weights
    load on first use. `gate_bias` is the native router's "answer in text" threshold until `calibrate` is given
    labelled cases; from then on each prompt gets its own threshold, fitted on those cases under that prompt."""

    name = "embedded"

    def __init__(self, batch_size: int = 8, model: Any = None, tokenizer: Any = None,
                 cache: ResponseCache | None = None, weights: str | None = None, generation_rows: int = 16) -> None:
        self.batch_size = batch_size
        self.generation_rows = generation_rows  # the most rows one batched `generate` decodes together
        self.cache = cache
        self.source: WeightsSource = weights_source(weights)
        self.gate_bias = 0.0
        self._calibration: tuple[list[list[dict[str, str]]], list[str]] | None = None
        self._calibration_key = ""
        self._biases: dict[str, float] = {}
        self._model = model
        self._tokenizer = tokenizer
        self._lock = threading.RLock()  # one caller at a time: torch state and the fast tokenizer are shared
        self._prefix: PrefixCache | None = None
        self._native_memo: dict[str, np.ndarray] = {}  # raw native scores under the current prefix, by conversation

    def _load(self) -> None:
        if self._model is None:
            from promptopt.models.embedded_weights import load_embedded
            from promptopt.progress import current

            self._model, self._tokenizer = load_embedded(self.source.key, say=current())

    @property
    def tokenizer(self) -> Any:
        self._load()
        return self._tokenizer

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _template(self, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Chat messages as this model's template takes them: earlier calls as its own tool-call turns where the
        template writes them (Qwen2.5's), else as text."""
        native = "tool_calls" in str(getattr(self.tokenizer, "chat_template", "") or "")
        return template_messages(messages, native)

    def _system_text(self, system_prompt: str, tools: Sequence[dict[str, Any]] | None = None) -> str:
        """The system turn as the chat template renders it (with the tool list when `tools` are given)."""
        return self.tokenizer.apply_chat_template([{"role": "system", "content": system_prompt}], tools=tools,
                                                  tokenize=False)

    def _suffix_text(self, system_prompt: str, conversation: list[dict[str, str]],
                     tools: Sequence[dict[str, Any]] | None = None) -> str:
        """The conversation rendered after the system turn, ending with the assistant's turn opener."""
        prefix = self._system_text(system_prompt, tools)
        full = self.tokenizer.apply_chat_template(
            [{"role": "system", "content": system_prompt}, *self._template(conversation)], tools=tools, tokenize=False,
            add_generation_prompt=True
        )
        if not full.startswith(prefix):
            raise RuntimeError("chat template does not render the system turn as a prefix")
        return full[len(prefix):]

    def _prefix_cache(self, system_prompt: str, tools: Sequence[dict[str, Any]] | None = None) -> PrefixCache:
        """Encode the system turn once; later calls with the same prompt reuse it."""
        text = self._system_text(system_prompt, tools)
        if self._prefix is None or self._prefix.text != text:
            self._prefix = encode_prefix(self._model, text, self._encode(text))
            self._native_memo.clear()
        return self._prefix

    def choice_logprobs(
        self, system_prompt: str, conversations: Sequence[list[dict[str, str]]], choices: Sequence[str]
    ) -> np.ndarray:
        """Log-probability of each choice (plus end of turn) as the reply to each conversation, packed."""
        return self._score(system_prompt, self._reply_rows, conversations, choices)

    def channel_logprobs(
        self, system_prompt: str, conversations: Sequence[list[dict[str, str]]], choices: Sequence[str]
    ) -> np.ndarray:
        """Log-probability of each conversation's last user message given each choice (the noisy channel).

        The choice is written at the start of the last user turn as `"{choice}: "`; only the message's own tokens
        (and its end of turn) are scored.
        """
        return self._score(system_prompt, self._channel_rows, conversations, choices)

    def choice_logprobs_naive(
        self, system_prompt: str, conversations: Sequence[list[dict[str, str]]], choices: Sequence[str]
    ) -> np.ndarray:
        """Reference for `choice_logprobs`: one full forward per (conversation, choice). Slow; for checks."""
        return self._score(system_prompt, self._reply_rows, conversations, choices, naive=True)

    def channel_logprobs_naive(
        self, system_prompt: str, conversations: Sequence[list[dict[str, str]]], choices: Sequence[str]
    ) -> np.ndarray:
        """Reference for `channel_logprobs`: one full forward per (conversation, choice). Slow; for checks."""
        return self._score(system_prompt, self._channel_rows, conversations, choices, naive=True)

    def native_logprobs(self, system_prompt: str, tools: Sequence[dict[str, Any]],
                        conversations: Sequence[list[dict[str, str]]], naive: bool = False) -> np.ndarray:
        """Per conversation, the log-probability of the model opening a call to each tool, then to the reply
        pseudo-tool (`native_routing`); rows scored before under the same prompt come from memory. `naive`: the
        slow reference, one forward per branch."""
        routed_tools = routing_tools(tools)
        branches = [(ids, 0) for ids in distinguishing_prefixes(
            [self._encode(text) for text in call_branches(tool_names(tools))])]
        with self._lock:
            self._load()
            if naive:
                system_ids = self._encode(self._system_text(system_prompt, routed_tools))
                return score_rows_naive(self._model, system_ids, [
                    (self._encode(self._suffix_text(system_prompt, c, routed_tools)), branches) for c in conversations])
            prefix = self._prefix_cache(system_prompt, routed_tools)
            keys = [json.dumps(c, sort_keys=True, ensure_ascii=False) for c in conversations]
            todo = [i for i, key in enumerate(keys) if key not in self._native_memo]
            rows = [(self._encode(self._suffix_text(system_prompt, conversations[i], routed_tools)), branches)
                    for i in todo]
            for i, scores in zip(todo, score_rows(self._model, prefix, rows, self.batch_size) if rows else []):
                self._native_memo[keys[i]] = scores
            return np.array([self._native_memo[key] for key in keys]).reshape(len(keys), len(branches))

    def calibrate(self, system_prompt: str, tools: Sequence[dict[str, Any]],
                  conversations: Sequence[list[dict[str, str]]], expected: Sequence[str]) -> dict[str, Any]:
        """Fit the native router's gate on labelled (training) conversations: from now on every prompt's gate is
        the bias that routes these cases best under that prompt (demos or rules move the call-or-not margins a
        lot, so one bias for all prompts would judge candidates by the seed's). Says what was set; the channel
        router has nothing to calibrate."""
        if self.source.routing != "native" or not conversations:
            return {}
        self._calibration = ([list(c) for c in conversations], list(expected))
        self._calibration_key = hashlib.sha256(
            json.dumps(self._calibration, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]
        self._biases.clear()
        return {"gate_bias": self._bias_for(system_prompt, tools), "calibration_cases": len(conversations)}

    def _bias_for(self, system_prompt: str, tools: Sequence[dict[str, Any]]) -> float:
        """The gate for `system_prompt`: fitted on the calibration cases under it (once), else `gate_bias`."""
        if self._calibration is None:
            return self.gate_bias
        key = json.dumps([system_prompt, list(tools)], sort_keys=True, ensure_ascii=False)
        if key not in self._biases:
            conversations, expected = self._calibration
            scores = self.native_logprobs(system_prompt, tools, conversations)
            self._biases[key] = round(calibrate_gate(scores, tool_names(tools), expected), 4)
        return self._biases[key]

    def _score(self, system_prompt: str, make_rows: Callable[..., list[Row]],
               conversations: Sequence[list[dict[str, str]]], choices: Sequence[str],
               naive: bool = False) -> np.ndarray:
        """Score the rows `make_rows` builds: packed over the cached system turn, or by the naive reference."""
        with self._lock:
            self._load()
            if naive:
                system_ids = self._encode(self._system_text(system_prompt))
                return score_rows_naive(self._model, system_ids, make_rows(system_prompt, conversations, choices))
            prefix = self._prefix_cache(system_prompt)
            return score_rows(self._model, prefix, make_rows(system_prompt, conversations, choices), self.batch_size)

    def _reply_rows(
        self, system_prompt: str, conversations: Sequence[list[dict[str, str]]], choices: Sequence[str]
    ) -> list[Row]:
        """Per conversation: the rendered turns up to the assistant opener, and each choice + end of turn."""
        choice_ids = [self._encode(choice + END_OF_TURN) for choice in choices]
        return [(self._encode(self._suffix_text(system_prompt, c)), [(ids, 0) for ids in choice_ids])
                for c in conversations]

    def _channel_rows(
        self, system_prompt: str, conversations: Sequence[list[dict[str, str]]], choices: Sequence[str]
    ) -> list[Row]:
        """One channel row per conversation."""
        return [self._channel_row(system_prompt, c, choices) for c in conversations]

    def _channel_row(self, system_prompt: str, conversation: list[dict[str, str]], choices: Sequence[str]) -> Row:
        """The shared head (earlier turns and the user turn opener) and, per choice, its tokens and scored start."""
        *context, last = conversation
        if last.get("role") != "user":
            raise ValueError("channel scoring needs a conversation that ends with a user message")
        head_text = self._suffix_text(system_prompt, [*context, {"role": "user", "content": CHANNEL_SLOT}])
        head_text = head_text[:head_text.index(CHANNEL_SLOT)]
        branches = []
        for choice in choices:
            tag = CHANNEL_TAG.format(choice=choice)
            tag_ids = self._encode(tag)
            ids = self._encode(tag + last["content"] + END_OF_TURN)
            start = 0
            while start < min(len(tag_ids), len(ids)) and tag_ids[start] == ids[start]:
                start += 1
            branches.append((ids, start))
        return self._encode(head_text), branches

    def route(
        self,
        system_prompt: str,
        tools: Sequence[dict[str, Any]],
        conversations: Sequence[list[dict[str, str]]],
        check_arguments: bool = False,
    ) -> list[Routed]:
        """Pick the choice (tool or `none`) under which the last user message is likeliest; optionally fill args.

        With a response cache, conversations already answered under the same prompt, tools and method come
        from it (recorded as cache hits) and only the rest are scored."""
        requests = [self._route_request(system_prompt, tools, c, check_arguments) for c in conversations]
        answers: list[Cached | None] = [self.cache.get(r) if self.cache else None for r in requests]
        missing = [i for i, answer in enumerate(answers) if answer is None]
        fresh: list[Routed] = []
        if missing:  # a fully cached chunk need not wait for the model behind another thread's fresh one
            with self._lock:
                fresh = self._route_fresh(system_prompt, tools, [conversations[i] for i in missing], check_arguments)
        results: list[Routed | None] = [None] * len(conversations)
        for i, routed in zip(missing, fresh):
            results[i] = routed
            if self.cache is not None:
                self.cache.put(requests[i], {"name": routed.call.name, "arguments": dict(routed.call.arguments),
                                             "tokens_in": routed.record.tokens_in})
        for i, answer in enumerate(answers):
            if answer is not None:
                stored = answer.response
                record = CallRecord.from_cache("task", self.name, int(stored["tokens_in"]), 1,
                                               paid_by_this_run=answer.paid_by_this_run)
                results[i] = Routed(call=ToolCall(stored["name"], stored["arguments"]), record=record)
        return [r for r in results if r is not None]

    def _route_request(self, system_prompt: str, tools: Sequence[dict[str, Any]],
                       conversation: list[dict[str, str]], check_arguments: bool) -> dict[str, Any]:
        """What decides one routing answer, as a response-cache key."""
        request = {"backend": self.name, "weights": self.source.gguf_name,
                   "method": ROUTING_METHOD[self.source.routing], "system": system_prompt,
                   # the key keeps its first name so responses cached before the rename still answer
                   "tools": list(tools), "messages": conversation, "fill_arguments": check_arguments}
        if self.source.routing != "native":
            return request
        return {**request, "gate": self._calibration_key or self.gate_bias}

    def _route_fresh(
        self,
        system_prompt: str,
        tools: Sequence[dict[str, Any]],
        conversations: Sequence[list[dict[str, str]]],
        check_arguments: bool,
    ) -> list[Routed]:
        if not conversations:
            return []
        started = time.perf_counter()
        if self.source.routing == "native":
            bias = self._bias_for(system_prompt, tools)
            names = decide(self.native_logprobs(system_prompt, tools, conversations), tool_names(tools), bias)
            full_prompt, rendered_tools = system_prompt, routing_tools(tools)
        else:
            choices = [*tool_names(tools), NO_TOOL]
            full_prompt, rendered_tools = f"{system_prompt}\n\n{render_tool_section(tools)}", None
            scores = self.channel_logprobs(full_prompt, conversations, choices)
            names = [choices[int(np.argmax(row))] for row in scores]
        share = (time.perf_counter() - started) / len(conversations)
        prompt_tokens = len(self._encode(self._system_text(full_prompt, rendered_tools)))
        results = []
        for name, conversation in zip(names, conversations):
            tokens_in = prompt_tokens + len(self._encode(self._suffix_text(full_prompt, conversation, rendered_tools)))
            arguments: dict[str, Any] = {}
            latency = share
            if check_arguments and name != NO_TOOL:
                began = time.perf_counter()
                schema = next(t for t in tools if t["function"]["name"] == name)
                arguments = self.generate_arguments(system_prompt, schema, conversation)
                latency += time.perf_counter() - began
            record = CallRecord(role="task", model=self.name, tokens_in=tokens_in, tokens_out=1, latency_s=latency)
            results.append(Routed(call=ToolCall(name=name, arguments=arguments), record=record))
        return results

    def generate_arguments(
        self, system_prompt: str, tool: dict[str, Any], conversation: list[dict[str, str]], max_tokens: int = 48
    ) -> dict[str, Any]:
        """Generate the JSON arguments for the chosen tool; unknown keys and unparsable output are dropped."""
        function = tool["function"]
        properties = function.get("parameters", {}).get("properties", {})
        system = (
            f"{system_prompt}\n\n## Tool\n{json.dumps(function, ensure_ascii=False)}\n"
            "Reply with the JSON arguments for this tool, using only what the user said."
        )
        opener = "{"
        text = self._complete([{"role": "system", "content": system}, *conversation], opener, max_tokens, 0.0)[0]
        return {k: v for k, v in parse_json_object(opener + text).items() if k in properties}

    def generate_many(self, requests: Sequence[list[dict[str, str]]], temperature: float = 1.0,
                      max_tokens: int = 512, role: str = "optimizer", first_sample: int = 0) -> list[Completion]:
        """Completions for `requests`, batched: the samples of identical messages are decoded together.

        Repeated identical requests are distinct samples, numbered from `first_sample` (a caller that asks for one
        sample at a time counts them). With a response cache, a sample answered before (same messages, sampling
        and sample index) is not generated again and is recorded as a cache hit; the rest are generated together:

        - sampled (temperature > 0), messages asked several times: the prompt is encoded once, its key/value
          cache copied to one row per uncached sample, and the rows decoded in one `generate` (at most
          `generation_rows` rows a call).
        - messages asked once, and greedy (temperature 0) messages however often (every sample of them is the
          same text): one row per distinct messages, distinct messages left-padded and decoded together in one
          `generate`; greedy texts equal one greedy `generate` per request.

        torch is seeded once per call from the call's messages and their first sample index, so the same requests
        give the same texts on every run (not the texts of one seed per sample, as before batching).

        Each sample gets its own `CallRecord`: `tokens_in` the prompt's tokens, `tokens_out` its own row's tokens up
        to and including its end of turn (not the padded length), and `latency_s` the batched call's wall time
        divided evenly among the samples it answered, so the records' latencies still add up to the time spent."""
        completions: list[Completion | None] = [None] * len(requests)
        groups: dict[str, list[tuple[int, int, dict[str, Any]]]] = {}  # messages -> (position, sample, cache key)
        seen: dict[str, int] = {}
        for position, messages in enumerate(requests):
            key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
            index = seen[key] = seen.get(key, first_sample - 1) + 1
            request = {"backend": self.name, "weights": self.source.gguf_name, "method": "generate-v1",
                       "messages": messages, "temperature": temperature, "max_tokens": max_tokens, "_sample": index}
            answer = self.cache.get(request) if self.cache is not None else None
            if answer is None:
                groups.setdefault(key, []).append((position, index, request))
                continue
            stored = answer.response
            record = CallRecord.from_cache(role, self.name, int(stored["tokens_in"]), int(stored["tokens_out"]),
                                           paid_by_this_run=answer.paid_by_this_run)
            completions[position] = Completion(text=stored["text"], record=record)
        if groups:
            messages_of = {key: requests[samples[0][0]] for key, samples in groups.items()}
            # one row per prompt asked once (and per greedy prompt: its copies are the same text), decoded together
            alone = [key for key, samples in groups.items() if temperature == 0 or len(samples) == 1]
            for start in range(0, len(alone), self.generation_rows):
                chunk = alone[start:start + self.generation_rows]
                began = time.perf_counter()
                seed = zlib.crc32(chunk[0].encode("utf-8")) + groups[chunk[0]][0][1] if len(chunk) == 1 else \
                    zlib.crc32("\n".join(f"{key}\x00{groups[key][0][1]}" for key in chunk).encode("utf-8"))
                rows = self._padded_rows([messages_of[key] for key in chunk], max_tokens, temperature, seed)
                samples = [sample for key in chunk for sample in groups[key]]
                answers = [row for key, row in zip(chunk, rows) for _ in groups[key]]
                self._answer(completions, samples, answers, time.perf_counter() - began, role)
            # the samples of a prompt asked several times: its rows decoded together after one encoding of it
            for key, samples in groups.items():
                if key in alone:
                    continue
                for start in range(0, len(samples), self.generation_rows):
                    chunk = samples[start:start + self.generation_rows]
                    began = time.perf_counter()
                    seed = zlib.crc32(key.encode("utf-8")) + chunk[0][1]
                    rows = self._sample_rows(messages_of[key], len(chunk), max_tokens, temperature, seed)
                    self._answer(completions, chunk, rows, time.perf_counter() - began, role)
        return [c for c in completions if c is not None]

    def _answer(self, completions: list[Completion | None], samples: Sequence[tuple[int, int, dict[str, Any]]],
                rows: Sequence[tuple[str, int, int]], seconds: float, role: str) -> None:
        """Put each generated (text, tokens in, tokens out) at its sample's position, and in the cache; the call's
        `seconds` are divided evenly among its samples."""
        for (position, _, request), (text, tokens_in, tokens_out) in zip(samples, rows):
            record = CallRecord(role=role, model=self.name, tokens_in=tokens_in, tokens_out=tokens_out,
                                latency_s=seconds / len(samples))
            if self.cache is not None:
                self.cache.put(request, {"text": text, "tokens_in": tokens_in, "tokens_out": tokens_out})
            completions[position] = Completion(text=text, record=record)

    def _prompt_ids(self, messages: list[dict[str, str]], opener: str = "") -> list[int]:
        """The chat template's tokens for `messages`, up to the assistant turn opener (and `opener`)."""
        text = self.tokenizer.apply_chat_template(self._template(messages), tokenize=False,
                                                  add_generation_prompt=True)
        return self._encode(text + opener)

    def _end_ids(self) -> list[int]:
        """The tokens that end a reply: the generation config's end-of-sequence ids (Qwen2.5-Instruct:
        `<|im_end|>`) and the tokenizer's."""
        configured = getattr(getattr(self._model, "generation_config", None), "eos_token_id", None)
        ids = list(configured) if isinstance(configured, (list, tuple)) else [configured]
        ids.append(self.tokenizer.eos_token_id)
        return list(dict.fromkeys(i for i in ids if i is not None))

    def _rows_out(self, new: Any, prompt_tokens: Sequence[int]) -> list[tuple[str, int, int]]:
        """Per generated row (new tokens only, finished rows filled after their end): the text, the prompt's
        tokens, and the row's own tokens up to and including its first end token."""
        ends = set(self._end_ids())
        rows = []
        for row, tokens_in in zip(new.tolist(), prompt_tokens):
            length = next((i + 1 for i, token in enumerate(row) if token in ends), len(row))
            rows.append((self.tokenizer.decode(row[:length], skip_special_tokens=True), tokens_in, length))
        return rows

    def _sample_rows(self, messages: list[dict[str, str]], rows: int, max_tokens: int, temperature: float,
                     seed: int) -> list[tuple[str, int, int]]:
        """`rows` continuations of one prompt decoded together, after one encoding of the prompt: its key/value
        cache (all but its last token) is computed once and repeated for each row. Sampled from `seed`, or greedy
        at temperature 0 (every row then equals one greedy `generate` of the prompt)."""
        import torch

        with self._lock:
            self._load()
            ids = torch.tensor([self._prompt_ids(messages)])
            sampling = _sampling(temperature)
            with torch.inference_mode():
                torch.manual_seed(seed)
                shared: dict[str, Any] = {}
                if ids.shape[1] > 1:
                    # the decoder alone: the prompt's logits are not needed, and the head over every prompt
                    # position would cost as much as a fifth of the encoding
                    encoded = self._model.model(input_ids=ids[:, :-1], use_cache=True)
                    cache = getattr(encoded, "cache", None)
                    cache = encoded.past_key_values if cache is None else cache
                    if rows > 1:
                        cache.batch_repeat_interleave(rows)
                    shared[cache_keyword(self._model)] = cache
                batch = ids.expand(rows, -1)
                out = self._model.generate(input_ids=batch, attention_mask=torch.ones_like(batch),
                                           max_new_tokens=max_tokens, pad_token_id=self._end_ids()[0],
                                           **shared, **sampling)
            return self._rows_out(out[:, ids.shape[1]:], [ids.shape[1]] * rows)

    def _padded_rows(self, conversations: Sequence[list[dict[str, str]]], max_tokens: int,
                     temperature: float = 0.0, seed: int = 0) -> list[tuple[str, int, int]]:
        """One continuation of each of distinct prompts, decoded together: left-padded (the pad masked out, so each
        row reads only its own tokens, at its own positions), one `generate`; greedy (each row then equals one
        greedy `generate` of its prompt) or sampled from `seed`."""
        import torch

        with self._lock:
            self._load()
            prompts = [self._prompt_ids(messages) for messages in conversations]
            width = max(len(ids) for ids in prompts)
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self._end_ids()[0]
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
            sampling = _sampling(temperature)
            with torch.inference_mode():
                torch.manual_seed(seed)
                out = self._model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_tokens,
                                           pad_token_id=self._end_ids()[0], **sampling)
            return self._rows_out(out[:, width:], [len(p) for p in prompts])

    def _complete(
        self, messages: list[dict[str, str]], opener: str, max_tokens: int, temperature: float, seed: int = 0
    ) -> tuple[str, int, int]:
        """Greedy (or sampled, from `seed`) continuation after the assistant turn opener; text and token counts."""
        import torch

        with self._lock:
            self._load()
            torch.manual_seed(seed)
            ids = torch.tensor([self._prompt_ids(messages, opener)])
            sampling = _sampling(temperature)
            with torch.inference_mode():
                out = self._model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=max_tokens,
                    pad_token_id=self.tokenizer.eos_token_id,
                    **sampling,
                )
            new = out[0, ids.shape[1]:]
            return self.tokenizer.decode(new, skip_special_tokens=True), ids.shape[1], len(new)

    def generate(
        self, messages: list[dict[str, str]], temperature: float = 0.0, max_tokens: int = 256, role: str = "optimizer",
        seed: int = 0,
    ) -> tuple[str, CallRecord]:
        """One chat completion from the local model (sampled from `seed` when temperature > 0)."""
        began = time.perf_counter()
        text, tokens_in, tokens_out = self._complete(messages, "", max_tokens, temperature, seed)
        record = CallRecord(role=role, model=self.name, tokens_in=tokens_in, tokens_out=tokens_out,
                            latency_s=time.perf_counter() - began)
        return text, record


def _sampling(temperature: float) -> dict[str, Any]:
    """`generate`'s sampling arguments: sampled at `temperature` when it is above 0, else greedy."""
    return {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}


def from_settings(settings: ModelSettings, concurrency: int, cache: ResponseCache | None,
                  prices: Any) -> EmbeddedModel:
    """The registry's factory for `embedded` (`embedded:NAME` picks the weights): the local model with the response
    cache; it serves one call at a time and costs nothing, so `concurrency` and `prices` do not apply. Without its
    libraries (a plain install) it says how to get them before any work starts."""
    require_embedded_libraries()
    return EmbeddedModel(cache=cache, weights=settings.model.partition(":")[2] or None)
