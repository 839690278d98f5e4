"""The Python API: the same run as `promptopt run`, from a script."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from promptopt.case import Case
from promptopt.evaluators.tool_call import ToolCallEvaluator
from promptopt.models import EMBEDDED, ModelBackend, load_model
from promptopt.optimizer import make_strategy
from promptopt.optimizer.loop import RunConfig, run_optimization
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


def optimize(
    task: str = "tool-routing",
    cases: Sequence[str | Path] | None = None,
    prompt: str | Path | None = None,
    tools: str | Path | None = None,
    strategy: str = "demos",
    steps: int = RunConfig.steps,
    seed: int = RunConfig.seed,
    model: str | ModelBackend = EMBEDDED,
    db: str | None = None,
    max_calls: int | None = None,
    max_seconds: float | None = None,
    max_broken: int = RunConfig.max_broken,
    alpha: float | None = None,
    fill_arguments: bool = False,
    progress: Callable[[str], None] | None = None,
    **strategy_options: Any,
) -> RunResult:
    """Import `cases` (default: the task's bundled cases), optimize the system prompt and return the result.

    `prompt` and `tools` are files (default: the bundled task's); `db` is a SQLAlchemy URL (default: the
    SQLite file in `~/.promptopt`). Everything is recorded in the store under the returned `run_id`."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    bundled = bundled_task(task)
    tool_list = load_tools(tools) if tools else bundled.tools
    seed_prompt = load_prompt(prompt) if prompt else bundled.seed_prompt
    store = Store(db)
    stored = import_case_files(store, list(cases) if cases else bundled.case_files, tool_list)
    backend = load_model(model) if isinstance(model, str) else model
    config = RunConfig(task=task, strategy=strategy, model=backend.name, steps=steps, seed=seed, max_calls=max_calls,
                       max_seconds=max_seconds, max_broken=max_broken, alpha=alpha, fill_arguments=fill_arguments,
                       strategy_options=strategy_options)
    report = run_optimization(
        store, TASKS[task](tools=tool_list, fill_arguments=fill_arguments), seed_prompt, stored, backend,
        make_strategy(strategy, strategy_options), ToolCallEvaluator(check_arguments=fill_arguments), config,
        progress,
    )
    winner = store.candidate(report["winner"]["candidate_id"])
    return RunResult(run_id=report["run_id"], report=report, best_prompt=winner.prompt, seed_prompt=seed_prompt)
