"""The Python API: the same run as `promptopt run`, from a script."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from promptopt.case import Case
from promptopt.case_selection import CaseSelection
from promptopt.config import load_config
from promptopt.evaluators.base import Evaluator, model_calls_per_case
from promptopt.evaluators.judge import DEFAULT_RUBRIC, JUDGE_INSTRUCTIONS, load_rubric
from promptopt.evaluators.registry import EvaluatorSettings, available, build_evaluator
from promptopt.models import ModelBackend, ModelSettings, load_model, resolve_model_settings
from promptopt.models.pricing import PriceTable, load_prices
from promptopt.models.settings import FLAGS, ROLE_SETTINGS, check_model_name
from promptopt.optimizer import make_strategy
from promptopt.optimizer.estimate import Estimate, estimate_run, rough_tokens
from promptopt.optimizer.loop import RunConfig, run_optimization
from promptopt.optimizer.splits import require_every_split, split_cases
from promptopt.optimizer.strategy import Strategy
from promptopt.request import RunRequest
from promptopt.runs.case_import import CaseFileError, Problem, csv_rows, json_records
from promptopt.runs.log_import import ParsedFile, read_source
from promptopt.runs.mlflow_tracking import tracked, tracking_uri
from promptopt.runs.resume import ResumedStore, ResumeError, StoredRun, load_resumable
from promptopt.runs.store import ImportResult, Store
from promptopt.runs.tables import store_problem
from promptopt.runs.writer_lock import hold_writer
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


def import_case_files(store: Store, paths: Sequence[str | Path], tools: list[dict[str, Any]],
                      fmt: str = "auto") -> list[Case]:
    """Validate every file first, then import them all, all or nothing; returns the stored cases.

    `fmt` is `auto`, `cases` or a production log format (`openai`, `sharegpt`: only its labelled turns import).
    Raises `CaseFileError` (file, line, field) before anything is written if any file has a problem, a case the
    store cannot hold (`store_problem`: a source or tool name too long, a NUL character) included."""
    result = import_parsed(store, [read_source(path, tools, fmt) for path in paths])
    return store.cases(list(dict.fromkeys(result.case_ids)))


def import_parsed(store: Store, files: Sequence[ParsedFile]) -> ImportResult:
    """Import files already read (`read_source`), all or nothing; returns the cases' ids and how many of them this
    import added (the others were stored already, by an earlier import or a concurrent one)."""
    _refuse_unstorable_cases(files)
    parsed = [case for file in files for case in file.cases]
    return store.import_cases(parsed, imported_from=", ".join(file.path for file in files))


def _refuse_unstorable_cases(files: Sequence[ParsedFile]) -> None:
    """Raise `CaseFileError` naming file and line of every parsed case the store could not hold."""
    problems: list[Problem] = []
    for file in files:
        found = [(index, problem) for index, case in enumerate(file.cases) if (problem := store_problem(case))]
        lines = (file.lines if file.lines is not None else _record_lines(file.path)) if found else []
        for index, problem in found:
            field, _, message = problem.partition(": ")
            problems.append(Problem(file.path, lines[index], field, message))
    if problems:
        raise CaseFileError(problems)


def _record_lines(path: str | Path) -> list[int]:
    """The line of each record of a case file `read_cases` accepted (one case per record, numbered as it does)."""
    text = Path(path).read_bytes().decode("utf-8-sig")
    records = csv_rows(str(path), text)[1] if Path(path).suffix.lower() == ".csv" else json_records(str(path), text)
    return [record[0] for record in records if not isinstance(record, Problem)]


@dataclass(frozen=True)
class _Setup:
    """Everything a run needs, resolved from the request, the bundled task and the config file."""

    tools: list[dict[str, Any]]
    seed_prompt: str
    case_files: list[str | Path]
    task_settings: ModelSettings
    optimizer_settings: ModelSettings
    prices: PriceTable
    strategy: Strategy
    config: RunConfig


def _named(model: Any) -> str | None:
    """A model given by name; None for a backend object (or nothing)."""
    return model if isinstance(model, str) else None


def _setup(request: RunRequest, require_key: bool = True) -> _Setup:
    if request.task not in TASKS:
        raise ValueError(f"unknown task {request.task!r}; known tasks: {', '.join(TASKS)}")
    _check_model_names(request)
    strategy = make_strategy(request.strategy, request.options)
    bundled = bundled_task(request.task)
    file_config = load_config(request.config_file)
    task_settings = resolve_model_settings("task_model", _named(request.model), request.base_url, request.api_key,
                                           file_config, require_key=require_key)
    optimizer_settings = resolve_model_settings("optimizer_model", _named(request.optimizer_model),
                                                request.optimizer_base_url, request.optimizer_api_key, file_config,
                                                require_key=require_key)
    config = RunConfig(**{f.name: getattr(request, f.name) for f in fields(RunConfig) if hasattr(request, f.name)})
    config.steps, config.options = request.steps_to_run, dict(request.options)
    config.model, config.base_url = task_settings.model, task_settings.base_url
    config.optimizer_model, config.optimizer_base_url = optimizer_settings.model, optimizer_settings.base_url
    config.judge_model = None  # the judge's, once `_evaluator` builds one
    return _Setup(tools=load_tools(request.tools) if request.tools else bundled.tools,
                  seed_prompt=load_prompt(request.prompt) if request.prompt else bundled.seed_prompt,
                  case_files=_case_files(request, bundled.case_files),
                  task_settings=task_settings, optimizer_settings=optimizer_settings,
                  prices=load_prices(extra=file_config.get("prices")), strategy=strategy, config=config)


def _case_files(request: RunRequest, bundled: Sequence[Path]) -> list[str | Path]:
    """The request's case files; the task's bundled ones only when it names neither files nor stored cases."""
    if request.cases or _selection(request):
        return list(request.cases or ())
    return list(bundled)


def _selection(request: RunRequest) -> CaseSelection:
    """The stored cases the request selects (`--source`, `--tag`, `--label`); empty when it selects none."""
    return CaseSelection.of(request.sources, request.tags, request.labels)


def _with_selected(store: Store, given: list[Case], selection: CaseSelection) -> list[Case]:
    """`given` (the case files' cases) and then the stored cases `selection` takes, each case once."""
    if not selection:
        return given
    known = {case.id for case in given}
    return given + [case for case in store.select_cases(selection) if case.id not in known]


def _check_model_names(request: RunRequest) -> None:
    """Refuse a model name the store cannot record before anything is written: the judge's is otherwise resolved
    only once the cases are imported, and a backend object's is never resolved."""
    for role, setting in ROLE_SETTINGS.items():
        given = getattr(request, setting)
        if isinstance(given, str):
            check_model_name(given, FLAGS[role])
        elif given is not None:
            check_model_name(given.name, f"{setting}= (the backend's name)")


def optimize(request: RunRequest | None = None, progress: Callable[[str], None] | None = None,
             **keywords: Any) -> RunResult:
    """Import the request's cases (default: the task's bundled cases), optimize the system prompt and return the
    result. Pass a `RunRequest`, or its fields as keywords (`strategy="opro", budget_calls=500`); any other keyword
    is a strategy option (`n_demos=8`). Everything is recorded in the store under the returned `run_id`."""
    request = RunRequest.build(request, **keywords)
    setup = _setup(request)
    config = setup.config
    store = Store(request.db)
    stored = _with_selected(store, import_case_files(store, setup.case_files, setup.tools), _selection(request))
    given_task = _named(request.model) is None and request.model is not None
    backend = request.model if given_task else \
        load_model(setup.task_settings, request.concurrency, request.cache, setup.prices)
    if request.optimizer_model is not None and _named(request.optimizer_model) is None:
        optimizer_backend = request.optimizer_model
    elif setup.optimizer_settings == setup.task_settings:
        optimizer_backend = backend
    else:
        optimizer_backend = load_model(setup.optimizer_settings, request.concurrency, request.cache, setup.prices)
    if given_task:
        config.model, config.base_url = backend.name, None
    evaluator = _evaluator(request, setup, None if given_task else backend)
    config.evaluator = evaluator.name
    config.check_arguments = request.check_arguments or bool(getattr(evaluator, "check_arguments", False))
    report = run_optimization(
        store, TASKS[request.task](tools=setup.tools, check_arguments=config.check_arguments), setup.seed_prompt,
        stored, backend, setup.strategy, evaluator, config, progress, optimizer_backend,
        writes=tracked(store, store, tracking_uri(request.track, request.config_file)),
    )
    winner = store.candidate(report["winner"]["candidate_id"])
    return RunResult(run_id=report["run_id"], report=report, best_prompt=winner.prompt, seed_prompt=setup.seed_prompt)


def resume(run_id: str, db: str | None = None, progress: Callable[[str], None] | None = None, *,
           api_key: str | None = None, optimizer_api_key: str | None = None, concurrency: int | None = None,
           config_file: str | Path | None = None, model: ModelBackend | None = None,
           optimizer_model: ModelBackend | None = None, base_url: str | None = None,
           optimizer_base_url: str | None = None, track: str | None = None) -> RunResult:
    """Continue run `run_id` (interrupted or failed) to the result an uninterrupted run would have given: same
    config, split, seed prompt, tools and budget, the response cache answering every call already made. Keys come
    from the arguments, config file or environment (they are never stored); the model names and URLs come from
    the stored config (`base_url` / `optimizer_base_url` reach the same models where their endpoint has moved), or
    pass the backend objects the run was started with. `track` (else the config file, else $MLFLOW_TRACKING_URI) is
    the MLflow tracking URI; a run tracked before continues its MLflow run. Raises `ResumeError` when it cannot."""
    store = Store(db)
    stored = load_resumable(store, run_id)
    with hold_writer(store, run_id):  # from here on no other process can write the run
        return _resumed(store, stored, progress, model, optimizer_model, (api_key, optimizer_api_key),
                        (base_url, optimizer_base_url), concurrency, config_file, track)


def _resumed(store: Store, stored: StoredRun, progress: Callable[[str], None] | None, model: ModelBackend | None,
             optimizer_model: ModelBackend | None, keys: tuple[str | None, str | None],
             moved: tuple[str | None, str | None], concurrency: int | None,
             config_file: str | Path | None, track: str | None) -> RunResult:
    """`resume`'s work, once the run's writer lock is held."""
    run_id = stored.run.id
    config = RunConfig.from_json(stored.run.config)
    evaluator = _stored_evaluator(stored, config)
    if model is not None and model.name != config.model:
        raise ResumeError(f"run {run_id} was made with the model {config.model!r}, not {model.name!r}")
    task_backend, optimizer_backend = _resumed_backends(config, model, optimizer_model, keys, moved,
                                                        concurrency or config.concurrency, config_file)
    replay = ResumedStore(store, run_id)
    if progress:
        progress(f"resuming run {run_id}: {replay.describe()}")
    report = run_optimization(
        store, TASKS[config.task](tools=stored.run.tools, check_arguments=config.check_arguments), stored.seed_prompt,
        store.cases(stored.case_ids), task_backend, make_strategy(config.strategy, config.options),
        evaluator, config, progress, optimizer_backend, splits=stored.splits,
        writes=tracked(replay, store, tracking_uri(track, config_file)),
    )
    winner = store.candidate(report["winner"]["candidate_id"])
    return RunResult(run_id=run_id, report=report, best_prompt=winner.prompt, seed_prompt=stored.seed_prompt)


def _resumed_backends(config: RunConfig, model: ModelBackend | None, optimizer_model: ModelBackend | None,
                      keys: tuple[str | None, str | None], moved: tuple[str | None, str | None], concurrency: int,
                      config_file: str | Path | None) -> tuple[ModelBackend, ModelBackend]:
    """Task and optimizer backends of a resumed run: the objects given, else built from the stored names and URLs
    (or the URLs in `moved`, task and optimizer, where given) with keys from `keys` (task, optimizer), the config
    file or the environment; shared when `optimize` shared them."""
    file_config = load_config(config_file)
    prices = load_prices(extra=file_config.get("prices"))

    def build(role: str, name: str, base_url: str | None, key: str | None) -> ModelBackend:
        return load_model(resolve_model_settings(role, name, base_url, key, file_config), concurrency, True, prices)

    task_backend = model or build("task_model", config.model, moved[0] or config.base_url, keys[0])
    if optimizer_model is None and (config.optimizer_model, config.optimizer_base_url) == (config.model,
                                                                                           config.base_url):
        optimizer_model = task_backend
    return task_backend, optimizer_model or build("optimizer_model", config.optimizer_model,
                                                  moved[1] or config.optimizer_base_url, keys[1])


def _stored_evaluator(stored: StoredRun, config: RunConfig) -> Evaluator:
    """The run's evaluator, rebuilt from its stored name; only a registry name whose settings the store keeps."""
    name = config.evaluator
    if name == "judge" or name not in available():
        raise ResumeError(
            f"cannot resume run {stored.run.id}: its evaluator {name!r} cannot be rebuilt from the store (only a "
            "single named evaluator can: not a combination, a Python callable, or the judge, whose rubric and "
            "endpoint are not stored); start the run again instead")
    settings = EvaluatorSettings.of(config, tools=stored.run.tools, judge_model=None)
    return build_evaluator([name], settings)


def _evaluator(request: RunRequest, setup: _Setup, task_backend: ModelBackend | None) -> Evaluator:
    """The run's evaluator; the judge's model is resolved like the task model's, only when a judge is used, and
    shares the task model's backend when the settings are the same (`task_backend`: None when it was given)."""

    def judge_backend() -> ModelBackend:
        if request.judge_model is not None and _named(request.judge_model) is None:
            setup.config.judge_model = request.judge_model.name
            return request.judge_model
        settings = resolve_model_settings("judge_model", request.judge_model, request.judge_base_url,
                                          request.judge_api_key, load_config(request.config_file))
        setup.config.judge_model = settings.model
        if task_backend is not None and settings == setup.task_settings:
            return task_backend
        return load_model(settings, request.concurrency, request.cache, setup.prices)

    settings = EvaluatorSettings.of(request, tools=setup.tools, rubric=load_rubric(request.rubric),
                                    judge_model=judge_backend)
    return build_evaluator(request.evaluators, settings, request.all_must_pass)


def estimate(request: RunRequest | None = None, **keywords: Any) -> Estimate:
    """Expected model calls (the task model's and a judge's), tokens and dollars of the same `optimize` call,
    without calling any model or writing to the store (case files are still validated)."""
    request = RunRequest.build(request, **keywords)
    setup = _setup(request, require_key=False)
    files = [read_source(path, setup.tools) for path in setup.case_files]
    _refuse_unstorable_cases(files)
    parsed = [case for file in files for case in file.cases]
    if _selection(request):  # read from the store, never written: an estimate imports nothing
        parsed += Store(request.db).select_cases(_selection(request))
    unique = list({c.content_hash(): c for c in parsed}.values())
    numbered = [replace(c, id=i + 1) for i, c in enumerate(unique)]
    splits = split_cases(numbered, request.seed, setup.config.splits)
    require_every_split(splits)
    sizes = {name: sum(1 for split in splits.values() if split == name) for name in ("train", "val", "test")}
    rubric_text = load_rubric(request.rubric)
    # built only to count its model calls: the judge gets no model, since an estimate calls none
    counted = build_evaluator(request.evaluators, EvaluatorSettings.of(request, tools=setup.tools, rubric=rubric_text,
                                                                       judge_model=lambda: None),
                              request.all_must_pass)
    judge_calls = model_calls_per_case(counted)
    if judge_calls:
        setup.config.judge_model = resolve_model_settings(
            "judge_model", _named(request.judge_model), request.judge_base_url, None,
            load_config(request.config_file), require_key=False).model
    judge_tokens = rough_tokens(JUDGE_INSTRUCTIONS.format(rubric=rubric_text or DEFAULT_RUBRIC)) if judge_calls else 0
    return estimate_run(setup.config, setup.strategy, numbered, sizes, setup.seed_prompt, setup.tools, setup.prices,
                        judge_calls, judge_tokens)
