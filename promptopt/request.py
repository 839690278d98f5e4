"""A run request: everything `promptopt run` and `promptopt.optimize` / `promptopt.estimate` take, as one typed
object. The command line builds it from its flags; scripts pass one or the same names as keywords."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Sequence

from promptopt.optimizer.budget import Limits
from promptopt.optimizer.strategies import default_steps


@dataclass
class RunRequest:
    """What to optimize and how. `cases`, `prompt` and `tools` are files (default: the task's bundled ones); `db`
    is a SQLAlchemy URL (default: the SQLite file in `~/.promptopt`). `model`, `optimizer_model` and
    `judge_model` are names (`embedded`, the default, is the local model; any other name or a base URL is an
    OpenAI-compatible endpoint) or backends you built. `evaluators` lists what scores each output: names of
    built-ins or plugins (`"judge=0.5"` gives a weight), evaluator objects, plain callables `(case, output) ->
    Score | float | bool`, or (evaluator, weight) pairs. `max_calls`, `max_seconds`, `max_tokens` and `max_usd`
    limit the search; `options` are the strategy's own (see `promptopt run --help`)."""

    task: str = "tool-routing"
    cases: Sequence[str | Path] | None = None
    prompt: str | Path | None = None
    tools: str | Path | None = None
    strategy: str = "demos"
    options: dict[str, Any] = field(default_factory=dict)
    steps: int | None = None
    seed: int = 0
    model: Any = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    optimizer_model: Any = None
    optimizer_base_url: str | None = None
    optimizer_api_key: str | None = field(default=None, repr=False)
    judge_model: Any = None
    judge_base_url: str | None = None
    judge_api_key: str | None = field(default=None, repr=False)
    concurrency: int = 8
    cache: bool = True
    config_file: str | Path | None = None
    db: str | None = None
    max_calls: int | None = None
    max_seconds: float | None = None
    max_tokens: int | None = None
    max_usd: float | None = None
    max_broken: int = 2
    alpha: float | None = None
    min_gain: float = 0.03
    check_arguments: bool = False
    evaluators: Sequence[Any] | None = None
    all_must_pass: bool = False
    pattern: str | None = None
    rubric: str | Path | None = None

    @classmethod
    def build(cls, request: RunRequest | None = None, **keywords: Any) -> RunRequest:
        """`request` (or a default one) with `keywords` applied: a field's name sets the field, any other name
        is a strategy option."""
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in keywords.items() if k in names}
        options = {k: v for k, v in keywords.items() if k not in names}
        built = replace(request or cls(), **known)
        if options:
            built.options = {**built.options, **options}
        return built

    @property
    def limits(self) -> Limits:
        return Limits(calls=self.max_calls, seconds=self.max_seconds, tokens=self.max_tokens, usd=self.max_usd)

    @property
    def steps_to_run(self) -> int:
        """`steps`, or the strategy's own default."""
        return self.steps if self.steps is not None else default_steps(self.strategy)

