"""What a run will cost before it starts (`promptopt run --estimate`): model calls, tokens and dollars.

Calls are an upper bound from the split sizes, the loop's fixed work (seed on the training sample and on
validation, the best candidate of each step on validation, seed and winner on test) and the strategy's own
`expected_calls`, plus the calls evaluators make per scored case (an LLM judge: one) and the optimizer model's
calls the strategy declares (`expected_optimizer_work`, each at its full reply budget), all of which the run's
budget counts too, each priced at its own model. Tokens are rough: about four characters per token for ASCII text
and one per other character (Chinese), for the system prompt, the tool schemas (sent with every API call) and each
case's messages."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from promptopt.case import Case
from promptopt.models.pricing import PriceTable
from promptopt.optimizer.loop import RunConfig
from promptopt.optimizer.strategy import OptimizerWork, SearchSize, Strategy

REPLY_TOKENS = 20
JUDGE_REPLY_TOKENS = 60


@dataclass(frozen=True)
class Estimate:
    calls: int
    """All model calls the budget counts: the task model's, the evaluators' (`judge_calls`) and the optimizer
    model's (`optimizer_calls`)."""
    judge_calls: int
    optimizer_calls: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    price_known: bool
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def rough_tokens(text: str) -> int:
    """A tokenizer-free token count: ASCII characters / 4 plus one per other character."""
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return (ascii_chars + 3) // 4 + (len(text) - ascii_chars)


def estimate_run(config: RunConfig, strategy: Strategy, cases: Sequence[Case], split_sizes: dict[str, int],
                 seed_prompt: str, tools: list[dict[str, Any]], prices: PriceTable,
                 judge_calls_per_case: int = 0, judge_prompt_tokens: int = 0) -> Estimate:
    """Upper-bound calls and rough tokens and cost of a run with `config` over `cases`; an evaluator that calls a
    model `judge_calls_per_case` times per scored case (with instructions of `judge_prompt_tokens`) adds those
    calls, priced at the judge model (else the task model)."""
    n_train, n_val, n_test = split_sizes["train"], split_sizes["val"], split_sizes["test"]
    size = SearchSize(train=n_train, steps=config.steps, incumbent_sample=min(config.seed_train_sample, n_train))
    task_calls = (size.incumbent_sample + n_val + config.steps * n_val + 2 * n_test
                  + strategy.expected_calls(size))
    per_case = sum(rough_tokens(c.query) + sum(rough_tokens(m.get("content") or "") for m in c.context)
                   for c in cases) / max(len(cases), 1)
    per_call = rough_tokens(seed_prompt) + rough_tokens(json.dumps(tools, ensure_ascii=False)) + per_case
    task_in, task_out = int(task_calls * per_call), task_calls * REPLY_TOKENS
    judge_calls = task_calls * judge_calls_per_case
    judge_in, judge_out = int(judge_calls * (judge_prompt_tokens + per_case)), judge_calls * JUDGE_REPLY_TOKENS
    judge_model = config.judge_model or config.model
    declared = getattr(strategy, "expected_optimizer_work", None)
    work: OptimizerWork = declared(size) if declared else OptimizerWork()
    # a request shows the prompt, the tools and a handful of cases; its reply may use its whole budget
    optimizer_in = int(work.calls * (per_call + 8 * per_case))
    optimizer_out = work.calls * work.reply_tokens
    priced = [config.model] + ([judge_model] if judge_calls else []) + ([config.optimizer_model] if work.calls else [])
    price_known = all(prices.price(model) is not None for model in priced)
    cost = (prices.cost(config.model, task_in, task_out) + prices.cost(judge_model, judge_in, judge_out)
            + prices.cost(config.optimizer_model, optimizer_in, optimizer_out))
    seed_calls = size.incumbent_sample + n_val
    warnings = () if config.budget_calls is None or config.budget_calls >= seed_calls else (
        f"--budget-calls {config.budget_calls} cannot cover scoring the seed prompt ({seed_calls} calls: "
        f"{size.incumbent_sample} training, {n_val} validation cases), so no candidate could be tried",)
    return Estimate(calls=task_calls + judge_calls + work.calls, judge_calls=judge_calls,
                    optimizer_calls=work.calls, tokens_in=task_in + judge_in + optimizer_in,
                    tokens_out=task_out + judge_out + optimizer_out, cost_usd=cost, price_known=price_known,
                    warnings=warnings)
