"""The Python API: the same run as `promptopt run`, from a script."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from promptopt.case import Case
from promptopt.config import load_config
from promptopt.evaluators.base import Evaluator, model_calls_per_case
from promptopt.evaluators.judge import DEFAULT_RUBRIC, JUDGE_INSTRUCTIONS, load_rubric
from promptopt.evaluators.registry import EvaluatorSettings, build_evaluator
from promptopt.models import ModelBackend, ModelSettings, load_model, resolve_model_settings
from promptopt.models.pricing import PriceTable, load_prices
from promptopt.optimizer import default_steps, make_strategy
from promptopt.optimizer.estimate import Estimate, estimate_run, rough_tokens
from promptopt.optimizer.loop import RunConfig, run_optimization
from promptopt.optimizer.splits import split_cases
from promptopt.runs.case_import import read_cases
from promptopt.runs.store import Store
from promptopt.tasks import TASKS, bundled_task, load_prompt, load_tools


@dataclass
class RunResult:
    """A finished run: its report (from the store), the winning prompt and the seed it started from."""

    run_id: str
    report: dict[str, Any]
    best_prompt: str
    seed_prompt: str

    @property
    def seed_accuracy(self) -> float:
        return self.report["seed"]["test_accuracy"]

    @property
    def best_accuracy(self) -> float:
        return self.report["winner"]["test_accuracy"]

    @property
    def p_value(self) -> float:
        return self.report["p_value"]


def import_case_files(store: Store, paths: Sequence[str | Path], tools: list[dict[str, Any]]) -> list[Case]:
    """Validate every file first, then import them all in one transaction; returns the stored cases.

    Raises `CaseFileError` (file, line, field) before anything is written if any file has a problem."""
    parsed = [case for path in paths for case in read_cases(path, tools)]
    result = store.import_cases(parsed, imported_from=", ".join(str(p) for p in paths))
    unique = list(dict.fromkeys(result.case_ids))
    return store.cases(unique)


@dataclass(frozen=True)
class _Setup:
    """Everything a run needs, resolved from the arguments, the bundled task and the config file."""

    task: str
    tools: list[dict[str, Any]]
    seed_prompt: str
    case_files: list[str | Path]
    task_settings: ModelSettings
    optimizer_settings: ModelSettings
    prices: PriceTable
    config: RunConfig


def _setup(task: str, cases: Sequence[str | Path] | None, prompt: str | Path | None, tools: str | Path | None,
           strategy: str, model: str | None, base_url: str | None, api_key: str | None,
           optimizer_model: str | None, optimizer_base_url: str | None, optimizer_api_key: str | None,
           config_file: str | Path | None, config_values: dict[str, Any], require_key: bool = True) -> _Setup:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    bundled = bundled_task(task)
    file_config = load_config(config_file)
    task_settings = resolve_model_settings("task_model", model, base_url, api_key, file_config,
                                           require_key=require_key)
    optimizer_settings = resolve_model_settings("optimizer_model", optimizer_model, optimizer_base_url,
                                                optimizer_api_key, file_config, require_key=require_key)
    config = RunConfig(task=task, strategy=strategy, model=task_settings.model, base_url=task_settings.base_url,
                       optimizer_model=optimizer_settings.model, optimizer_base_url=optimizer_settings.base_url,
                       **config_values)
    return _Setup(task=task, tools=load_tools(tools) if tools else bundled.tools,
                  seed_prompt=load_prompt(prompt) if prompt else bundled.seed_prompt,
                  case_files=list(cases) if cases else list(bundled.case_files), task_settings=task_settings,
                  optimizer_settings=optimizer_settings, prices=load_prices(extra=file_config.get("prices")),
                  config=config)


def optimize(
    task: str = "tool-routing",
    cases: Sequence[str | Path] | None = None,
    prompt: str | Path | None = None,
    tools: str | Path | None = None,
    strategy: str = "demos",
    steps: int | None = None,
    seed: int = RunConfig.seed,
    model: str | ModelBackend | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    optimizer_model: str | ModelBackend | None = None,
    optimizer_base_url: str | None = None,
    optimizer_api_key: str | None = None,
    concurrency: int = RunConfig.concurrency,
    cache: bool = True,
    config_file: str | Path | None = None,
    db: str | None = None,
    max_calls: int | None = None,
    max_seconds: float | None = None,
    max_tokens: int | None = None,
    max_usd: float | None = None,
    max_broken: int = RunConfig.max_broken,
    alpha: float | None = None,
    fill_arguments: bool = False,
    evaluators: Sequence[Any] | None = None,
    all_must_pass: bool = False,
    pattern: str | None = None,
    rubric: str | Path | None = None,
    judge_model: str | ModelBackend | None = None,
    judge_base_url: str | None = None,
    judge_api_key: str | None = None,
    progress: Callable[[str], None] | None = None,
    **strategy_options: Any,
) -> RunResult:
    """Import `cases` (default: the task's bundled cases), optimize the system prompt and return the result.

    `prompt` and `tools` are files (default: the bundled task's); `db` is a SQLAlchemy URL (default: the
    SQLite file in `~/.promptopt`). `model` / `optimizer_model` name the task and optimizer models
    (`embedded`, the default, is the local SmolLM2; any other name, or a `base_url`, is an OpenAI-compatible
    endpoint), or are backends you built. `evaluators` lists what scores each output: names of built-ins or
    plugins (`"judge=0.5"` gives a weight), evaluator objects, plain callables `(case, output) -> Score | float |
    bool`, or (evaluator, weight) pairs; several are averaged by weight, or must all pass with `all_must_pass`.
    `pattern` is the text evaluators' reference, `rubric` (text or a file) the judge's; `judge_model` (with
    `judge_base_url`, `judge_api_key`) is resolved like `model`, or a backend. Everything is recorded in the
    store under the returned `run_id`."""
    steps = steps if steps is not None else default_steps(strategy)
    values = dict(steps=steps, seed=seed, concurrency=concurrency, max_calls=max_calls, max_seconds=max_seconds,
                  max_tokens=max_tokens, max_usd=max_usd, max_broken=max_broken, alpha=alpha,
                  fill_arguments=fill_arguments, strategy_options=strategy_options)
    setup = _setup(task, cases, prompt, tools, strategy, None if not isinstance(model, str) else model, base_url,
                   api_key, None if not isinstance(optimizer_model, str) else optimizer_model, optimizer_base_url,
                   optimizer_api_key, config_file, values)
    config = setup.config
    store = Store(db)
    stored = import_case_files(store, setup.case_files, setup.tools)
    backend = model if model is not None and not isinstance(model, str) else \
        load_model(setup.task_settings, concurrency, cache, setup.prices)
    if optimizer_model is not None and not isinstance(optimizer_model, str):
        optimizer_backend = optimizer_model
    elif setup.optimizer_settings == setup.task_settings:
        optimizer_backend = backend
    else:
        optimizer_backend = load_model(setup.optimizer_settings, concurrency, cache, setup.prices)
    if not isinstance(model, (str, type(None))):
        config.model, config.base_url = backend.name, None
    evaluator = _evaluator(setup, evaluators, all_must_pass, pattern, rubric, judge_model, judge_base_url,
                           judge_api_key, fill_arguments, backend if isinstance(model, (str, type(None))) else None,
                           concurrency, cache, config_file)
    config.evaluator = evaluator.name
    config.fill_arguments = fill_arguments or bool(getattr(evaluator, "needs_arguments", False))
    report = run_optimization(
        store, TASKS[task](tools=setup.tools, fill_arguments=config.fill_arguments), setup.seed_prompt, stored,
        backend, make_strategy(strategy, strategy_options), evaluator, config, progress, optimizer_backend,
    )
    winner = store.candidate(report["winner"]["candidate_id"])
    return RunResult(run_id=report["run_id"], report=report, best_prompt=winner.prompt, seed_prompt=setup.seed_prompt)


def _evaluator(setup: _Setup, evaluators: Sequence[Any] | None, all_must_pass: bool, pattern: str | None,
               rubric: str | Path | None, judge_model: str | ModelBackend | None, judge_base_url: str | None,
               judge_api_key: str | None, fill_arguments: bool, task_backend: ModelBackend | None, concurrency: int,
               cache: bool, config_file: str | Path | None) -> Evaluator:
    """The run's evaluator; the judge's model is resolved like the task model's, only when a judge is used, and
    shares the task model's backend when the settings are the same (`task_backend`: None when it was given)."""

    def judge_backend() -> ModelBackend:
        if judge_model is not None and not isinstance(judge_model, str):
            setup.config.judge_model = judge_model.name
            return judge_model
        settings = resolve_model_settings("judge_model", judge_model, judge_base_url, judge_api_key,
                                          load_config(config_file))
        setup.config.judge_model = settings.model
        if task_backend is not None and settings == setup.task_settings:
            return task_backend
        return load_model(settings, concurrency, cache, setup.prices)

    settings = EvaluatorSettings(tools=setup.tools, check_arguments=fill_arguments, pattern=pattern,
                                 rubric=load_rubric(rubric), judge_model=judge_backend)
    return build_evaluator(evaluators, settings, all_must_pass)


def estimate(
    task: str = "tool-routing",
    cases: Sequence[str | Path] | None = None,
    prompt: str | Path | None = None,
    tools: str | Path | None = None,
    strategy: str = "demos",
    steps: int | None = None,
    seed: int = RunConfig.seed,
    model: str | None = None,
    base_url: str | None = None,
    config_file: str | Path | None = None,
    evaluators: Sequence[Any] | None = None,
    all_must_pass: bool = False,
    pattern: str | None = None,
    rubric: str | Path | None = None,
    judge_model: str | None = None,
    judge_base_url: str | None = None,
    **strategy_options: Any,
) -> Estimate:
    """Expected model calls (the task model's and a judge's), tokens and dollars of the same `optimize` call,
    without calling any model or writing to the store (case files are still validated)."""
    steps = steps if steps is not None else default_steps(strategy)
    values = dict(steps=steps, seed=seed, strategy_options=strategy_options)
    setup = _setup(task, cases, prompt, tools, strategy, model, base_url, None, None, None, None, config_file, values,
                   require_key=False)
    parsed = [case for path in setup.case_files for case in read_cases(path, setup.tools)]
    unique = list({c.content_hash(): c for c in parsed}.values())
    numbered = [replace(c, id=i + 1) for i, c in enumerate(unique)]
    splits = split_cases(numbered, seed, setup.config.splits)
    sizes = {name: sum(1 for split in splits.values() if split == name) for name in ("train", "val", "test")}
    rubric_text = load_rubric(rubric)
    # built only to count its model calls: the judge gets no model, since an estimate calls none
    counted = build_evaluator(evaluators, EvaluatorSettings(tools=setup.tools, pattern=pattern, rubric=rubric_text,
                                                            judge_model=lambda: None), all_must_pass)
    judge_calls = model_calls_per_case(counted)
    if judge_calls:
        setup.config.judge_model = resolve_model_settings("judge_model", judge_model, judge_base_url, None,
                                                          load_config(config_file), require_key=False).model
    judge_tokens = rough_tokens(JUDGE_INSTRUCTIONS.format(rubric=rubric_text or DEFAULT_RUBRIC)) if judge_calls else 0
    return estimate_run(setup.config, make_strategy(strategy, strategy_options), numbered, sizes, setup.seed_prompt,
                        setup.tools, setup.prices, judge_calls, judge_tokens)
