"""The embedded backend: SmolLM2-135M-Instruct on CPU through transformers.

It routes by log-likelihood: every tool name (and `none`), followed by the end-of-turn token, is scored as the
assistant's reply. The system prompt is encoded once per candidate and its key/value cache reused; all choices
of several conversations are packed into one sequence per conversation (a tree attention mask keeps the
choices apart) so one forward scores a whole batch. Arguments are filled by a short greedy generation.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from promptopt.case import NO_TOOL, ToolCall
from promptopt.models.base import CallRecord, Routed

END_OF_TURN = "<|im_end|>"
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


@dataclass
class PrefixCache:
    """Key/value states of one encoded system prompt, reused for every conversation scored under it."""

    text: str
    length: int
    layers: list[tuple[Any, Any]]


class EmbeddedModel:
    """The local SmolLM2 backend; weights load on first use."""

    name = "embedded"

    def __init__(self, batch_size: int = 8, model: Any = None, tokenizer: Any = None) -> None:
        self.batch_size = batch_size
        self._model = model
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        self._prefix: PrefixCache | None = None

    def _load(self) -> None:
        if self._model is None:
            from promptopt.models.embedded_weights import load_embedded

            self._model, self._tokenizer = load_embedded()

    @property
    def tokenizer(self) -> Any:
        self._load()
        return self._tokenizer

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _system_text(self, system_prompt: str) -> str:
        return self.tokenizer.apply_chat_template([{"role": "system", "content": system_prompt}], tokenize=False)

    def _suffix_text(self, system_prompt: str, conversation: list[dict[str, str]]) -> str:
        """The conversation rendered after the system turn, ending with the assistant's turn opener."""
        prefix = self._system_text(system_prompt)
        full = self.tokenizer.apply_chat_template(
            [{"role": "system", "content": system_prompt}, *conversation], tokenize=False, add_generation_prompt=True
        )
        if not full.startswith(prefix):
            raise RuntimeError("chat template does not render the system turn as a prefix")
        return full[len(prefix):]

    def _prefix_cache(self, system_prompt: str) -> PrefixCache:
        """Encode the system turn once; later calls with the same prompt reuse it."""
        import torch

        text = self._system_text(system_prompt)
        if self._prefix is not None and self._prefix.text == text:
            return self._prefix
        ids = torch.tensor([self._encode(text)])
        with torch.inference_mode():
            out = self._model.model(input_ids=ids, use_cache=True)
        cache = out.past_key_values
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        self._prefix = PrefixCache(text=text, length=ids.shape[1], layers=layers)
        return self._prefix

    def choice_logprobs(
        self, system_prompt: str, conversations: Sequence[list[dict[str, str]]], choices: Sequence[str]
    ) -> np.ndarray:
        """Log-probability of each choice (plus end of turn) as the reply to each conversation, packed."""
        with self._lock:
            self._load()
            prefix = self._prefix_cache(system_prompt)
            choice_ids = [self._encode(choice + END_OF_TURN) for choice in choices]
            suffixes = [self._encode(self._suffix_text(system_prompt, c)) for c in conversations]
            scores = np.zeros((len(conversations), len(choices)))
            for start in range(0, len(suffixes), self.batch_size):
                batch = suffixes[start:start + self.batch_size]
                scores[start:start + len(batch)] = self._score_packed(prefix, batch, choice_ids)
            return scores

    def _score_packed(self, prefix: PrefixCache, suffixes: list[list[int]], choice_ids: list[list[int]]) -> np.ndarray:
        import torch
        from transformers import DynamicCache

        batch, plen = len(suffixes), prefix.length
        width = max(len(s) for s in suffixes) + sum(len(c) for c in choice_ids)
        ids = torch.zeros((batch, width), dtype=torch.long)
        positions = torch.zeros((batch, width), dtype=torch.long)
        mask = torch.zeros((batch, 1, width, plen + width), dtype=torch.bool)
        mask[:, :, :, :plen] = True
        gather_rows: list[list[tuple[int, int]]] = []
        for row, suffix in enumerate(suffixes):
            n = len(suffix)
            ids[row, :n] = torch.tensor(suffix)
            positions[row, :n] = plen + torch.arange(n)
            mask[row, 0, :n, plen:plen + n] = torch.tril(torch.ones(n, n, dtype=torch.bool))
            offset = n
            pairs = []
            for tokens in choice_ids:
                k = len(tokens)
                ids[row, offset:offset + k] = torch.tensor(tokens)
                positions[row, offset:offset + k] = plen + n + torch.arange(k)
                mask[row, 0, offset:offset + k, plen:plen + n] = True
                mask[row, 0, offset:offset + k, plen + offset:plen + offset + k] = torch.tril(
                    torch.ones(k, k, dtype=torch.bool)
                )
                # token t of this choice is predicted from the token before it
                pairs.extend((n - 1 if t == 0 else offset + t - 1, tokens[t]) for t in range(k))
                offset += k
            for pad in range(offset, width):
                mask[row, 0, pad, plen + pad] = True
            gather_rows.append(pairs)
        cache = DynamicCache([(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in prefix.layers])
        with torch.inference_mode():
            hidden = self._model.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
            ).last_hidden_state
            rows = torch.tensor([r for r, pairs in enumerate(gather_rows) for _ in pairs])
            cols = torch.tensor([p for pairs in gather_rows for p, _ in pairs])
            targets = torch.tensor([t for pairs in gather_rows for _, t in pairs])
            logprobs = torch.log_softmax(self._model.lm_head(hidden[rows, cols]).float(), dim=-1)
            token_scores = logprobs[torch.arange(len(targets)), targets].numpy()
        out = np.zeros((batch, len(choice_ids)))
        cursor = 0
        for row in range(batch):
            for j, tokens in enumerate(choice_ids):
                out[row, j] = token_scores[cursor:cursor + len(tokens)].sum()
                cursor += len(tokens)
        return out

    def choice_logprobs_naive(
        self, system_prompt: str, conversations: Sequence[list[dict[str, str]]], choices: Sequence[str]
    ) -> np.ndarray:
        """Reference scorer: one full forward per (conversation, choice). Slow; for benchmarks and tests."""
        import torch

        with self._lock:
            self._load()
            scores = np.zeros((len(conversations), len(choices)))
            system_ids = self._encode(self._system_text(system_prompt))
            for i, conversation in enumerate(conversations):
                context = system_ids + self._encode(self._suffix_text(system_prompt, conversation))
                for j, choice in enumerate(choices):
                    tokens = self._encode(choice + END_OF_TURN)
                    ids = torch.tensor([context + tokens])
                    with torch.inference_mode():
                        logits = self._model(input_ids=ids).logits[0].float()
                    logprobs = torch.log_softmax(logits[len(context) - 1:-1], dim=-1)
                    scores[i, j] = logprobs[torch.arange(len(tokens)), torch.tensor(tokens)].sum().item()
            return scores

    def route(
        self,
        system_prompt: str,
        tools: Sequence[dict[str, Any]],
        conversations: Sequence[list[dict[str, str]]],
        fill_arguments: bool = False,
    ) -> list[Routed]:
        """Pick the most likely tool name (or `none`) for each conversation; optionally generate arguments."""
        choices = [*tool_names(tools), NO_TOOL]
        full_prompt = f"{system_prompt}\n\n{render_tool_section(tools)}"
        started = time.perf_counter()
        scores = self.choice_logprobs(full_prompt, conversations, choices)
        share = (time.perf_counter() - started) / max(len(conversations), 1)
        prompt_tokens = len(self._encode(self._system_text(full_prompt)))
        results = []
        for i, conversation in enumerate(conversations):
            name = choices[int(np.argmax(scores[i]))]
            tokens_in = prompt_tokens + len(self._encode(self._suffix_text(full_prompt, conversation)))
            arguments: dict[str, Any] = {}
            latency = share
            if fill_arguments and name != NO_TOOL:
                began = time.perf_counter()
                schema = next(t for t in tools if t["function"]["name"] == name)
                arguments = self.fill_arguments(system_prompt, schema, conversation)
                latency += time.perf_counter() - began
            record = CallRecord(role="task", model=self.name, tokens_in=tokens_in, tokens_out=1, latency_s=latency)
            results.append(Routed(call=ToolCall(name=name, arguments=arguments), record=record))
        return results

    def fill_arguments(
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

    def _complete(
        self, messages: list[dict[str, str]], opener: str, max_tokens: int, temperature: float
    ) -> tuple[str, int, int]:
        """Greedy (or sampled) continuation after the assistant turn opener; returns text and token counts."""
        import torch

        with self._lock:
            self._load()
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + opener
            ids = torch.tensor([self._encode(text)])
            sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
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
        self, messages: list[dict[str, str]], temperature: float = 0.0, max_tokens: int = 256, role: str = "optimizer"
    ) -> tuple[str, CallRecord]:
        """One chat completion from the local model."""
        began = time.perf_counter()
        text, tokens_in, tokens_out = self._complete(messages, "", max_tokens, temperature)
        record = CallRecord(role=role, model=self.name, tokens_in=tokens_in, tokens_out=tokens_out,
                            latency_s=time.perf_counter() - began)
        return text, record


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
