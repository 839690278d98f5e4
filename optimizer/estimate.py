"""What a run will cost before it starts (`promptopt run --estimate`): task-model calls, tokens and dollars.

Calls are an upper bound from the split sizes, the loop's fixed work (seed on the training sample and on
validation, the best candidate of each step on validation, seed and winner on test) and the strategy's own
`expected_calls`. Tokens are rough: about four characters per token for ASCII text and one per other character
(Chinese), for the system prompt, the tool schemas (sent with every API call) and each case's messages."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from promptopt.case import Case
from promptopt.models.pricing import PriceTable
from promptopt.optimizer.loop import RunConfig
from promptopt.optimizer.strategy import Strategy

REPLY_TOKENS = 20


@dataclass(frozen=True)
class Estimate:
    calls: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    price_known: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def rough_tokens(text: str) -> int:
    """A tokenizer-free token count: ASCII characters / 4 plus one per other character."""
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return (ascii_chars + 3) // 4 + (len(text) - ascii_chars)


def estimate_run(config: RunConfig, strategy: Strategy, cases: Sequence[Case], split_sizes: dict[str, int],
                 seed_prompt: str, tools: list[dict[str, Any]], prices: PriceTable) -> Estimate:
    """Upper-bound calls and rough tokens and cost of a run with `config` over `cases`."""
    n_train, n_val, n_test = split_sizes["train"], split_sizes["val"], split_sizes["test"]
    calls = (min(config.seed_train_sample, n_train) + n_val + config.steps * n_val + 2 * n_test
             + strategy.expected_calls(n_train, config.steps))
    per_case = sum(rough_tokens(c.query) + sum(rough_tokens(m.get("content") or "") for m in c.context)
                   for c in cases) / max(len(cases), 1)
    per_call = rough_tokens(seed_prompt) + rough_tokens(json.dumps(tools, ensure_ascii=False)) + per_case
    tokens_in, tokens_out = int(calls * per_call), calls * REPLY_TOKENS
    return Estimate(calls=calls, tokens_in=tokens_in, tokens_out=tokens_out,
                    cost_usd=prices.cost(config.model, tokens_in, tokens_out),
                    price_known=prices.price(config.model) is not None)
