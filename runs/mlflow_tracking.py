"""MLflow: a run logged as an MLflow run while it goes (`--track URI`), a winner registered as a version of a prompt
in MLflow's Prompt Registry (`export --to mlflow:NAME`), and a registered prompt read back (`check mlflow:NAME/1`).

Tracking never breaks a run: every MLflow call of a run goes through one guard, whose first failure (mlflow not
installed, a server that does not answer) is one warning, after which the run is no longer tracked; promptopt's
own store keeps everything either way. mlflow is imported only here and only when used, so a run without
tracking never loads it."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

from tqdm import tqdm

from promptopt.config import load_config
from promptopt.markup import protected_regions
from promptopt.progress import Say
from promptopt.runs.export import export_prompt
from promptopt.runs.search_writes import SearchWrites
from promptopt.runs.store import Store
from promptopt.runs.store_errors import shown_url
from promptopt.runs.tables import as_utc

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

MLFLOW_INSTALL = "pip install 'promptopt[mlflow]'"
REGISTRY_PREFIX = "mlflow:"
"""How a prompt in MLflow's Prompt Registry is named where promptopt takes a prompt: `mlflow:NAME/VERSION` or
`mlflow:NAME@ALIAS`; and where `export --to` takes a destination: `mlflow:NAME`."""
CONFIG_KEY = "track"
"""The config file's key for the tracking URI (after `--track`, before `$MLFLOW_TRACKING_URI`)."""
DEFAULT_EXPERIMENT = "promptopt"
"""The MLflow experiment runs are logged under, unless `$MLFLOW_EXPERIMENT_NAME` names another."""
RUN_ID_TAG = "promptopt.run_id"
STEPS_TAG = "promptopt.steps_logged"
"""How many of the run's stored steps the MLflow run has as metrics, so a resumed run logs each step once."""
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
"""MLflow's HTTP retry and timeout settings while promptopt calls it (its defaults retry for minutes); a variable
the user set is left as set."""
END_STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
"""promptopt's final run statuses as MLflow's."""
T = TypeVar("T")


class RegistryError(ValueError):
    """A prompt that cannot be registered or read from MLflow's Prompt Registry; the message says why, in one line."""


def tracking_uri(given: str | None, config_file: Any = None) -> str | None:
    """The MLflow tracking URI: `given` (`--track`), else the config file's `track`, else `$MLFLOW_TRACKING_URI`;
    None when none is set (the run is not tracked)."""
    configured = load_config(config_file).get(CONFIG_KEY)
    return given or (configured if isinstance(configured, str) else None) or os.environ.get("MLFLOW_TRACKING_URI") \
        or None


def tracked(writes: SearchWrites, store: Store, uri: str | None, warn: Say | None = None) -> SearchWrites:
    """`writes` that also log the run to MLflow at `uri` as it is written (as is when `uri` is None); the one
    warning tracking may give goes to `warn` (default: a `warning:` line on stderr)."""
    if not uri:
        return writes
    return _TrackedWrites(writes, _Tracker(uri, store, warn or _warn_on_stderr))


def is_registry_reference(text: str) -> bool:
    """Whether `text` names a prompt in MLflow's Prompt Registry (`mlflow:NAME/VERSION`, `mlflow:NAME@ALIAS`)."""
    return str(text).startswith(REGISTRY_PREFIX)


def register_prompt(store: Store, run_id: str, destination: str, uri: str | None, fmt: str = "md",
                    incumbent: bool = False) -> tuple[str, int]:
    """Register the prompt `export_prompt` writes for the run as a new version of the prompt `destination`
    (`mlflow:NAME`) in MLflow's Prompt Registry at `uri`, tagged with where it came from and how it scored; returns
    (name, version). `RegistryError` when it cannot."""
    name = destination.removeprefix(REGISTRY_PREFIX)
    if not is_registry_reference(destination) or not name or "/" in name or "@" in name:
        raise RegistryError(f"--to takes {REGISTRY_PREFIX}NAME (a prompt name in MLflow's Prompt Registry), got "
                            f"{destination!r}")
    if fmt == "json":
        raise RegistryError("--to mlflow:NAME registers the prompt itself: use --format md (the default) or txt")
    text = export_prompt(store, run_id, fmt, incumbent)
    run = store.run(run_id)
    regions = protected_regions(text if fmt == "md" else export_prompt(store, run_id, "md", incumbent))
    tags = _prompt_tags(run, len(regions), fmt)
    message = f"promptopt run {run_id}"
    if "promptopt.test_accuracy" in tags:
        message += (f": test accuracy {tags['promptopt.test_accuracy']} (seed {tags['promptopt.seed_test_accuracy']}),"
                    f" p = {tags['promptopt.p_value']}")
    client = _registry_client(uri)
    with _mlflow_limits(), _registry_errors(uri):
        version = client.register_prompt(name=name, template=text, commit_message=message, tags=tags)
    return name, int(version.version)


def load_registered_prompt(reference: str, uri: str | None) -> str:
    """The text of the registered prompt `reference` (`mlflow:NAME/VERSION` or `mlflow:NAME@ALIAS`) in MLflow's
    Prompt Registry at `uri`, exactly as registered. `RegistryError` when it cannot be read."""
    name, separator, version = _parse_reference(reference)
    client = _registry_client(uri)
    with _mlflow_limits(), _registry_errors(uri):
        if separator == "@":
            found = client.get_prompt_version_by_alias(name, version)
        else:
            found = client.get_prompt_version(name, version)
    if found is None:
        raise RegistryError(f"no prompt {reference!r} in MLflow's Prompt Registry at {shown_url(uri or '')}")
    if not isinstance(found.template, str):
        raise RegistryError(f"{reference} is a chat prompt (a list of messages), not a system prompt's text")
    return found.template


class _Tracker:
    """One promptopt run as an MLflow run: started (or, for a resumed run, continued) when the run is created, a
    metric row per stored step, the test figures and artifacts at the end. Every MLflow call goes through `_call`."""

    def __init__(self, uri: str, store: Store, warn: Say) -> None:
        self.uri, self.store, self.warn = uri, store, warn
        self.client: MlflowClient | None = None
        self.mlflow_run_id = ""
        self.steps_logged = 0
        self.off = False

    def start(self, run_id: str) -> None:
        """Create the MLflow run (parameters, the promptopt run id as a tag; its id stored with the run), or
        continue the one a resumed run was tracked as."""
        run = self.store.run(run_id)
        self.client = self._call(lambda: _client(self.uri))
        if run.mlflow_run_id:
            self.mlflow_run_id = run.mlflow_run_id
            tags = self._call(lambda: self.client.get_run(run.mlflow_run_id).data.tags) or {}
            self.steps_logged = int(tags.get(STEPS_TAG, 0))
            self._call(lambda: self.client.update_run(run.mlflow_run_id, status="RUNNING"))
            return
        created = self._call(lambda: self._create(run_id, run.config or {}, run.promptopt_version))
        if created:
            self.mlflow_run_id = created
            self.store.update_run(run_id, mlflow_run_id=created)

    def log_steps(self, run_id: str) -> None:
        """Log the stored steps the MLflow run does not have yet: the incumbent's validation accuracy, the step's
        candidates (proposed, valid, accepted) and the run's calls, tokens and cost so far."""
        if self.off or not self.mlflow_run_id:
            return
        steps = self.store.steps(run_id)
        if len(steps) <= self.steps_logged:
            return
        candidates = [c for c in self.store.candidates(run_id) if c.operator != "seed"]
        totals = self.store.call_totals(run_id)
        metrics = []
        for index in range(self.steps_logged, len(steps)):
            step = steps[index]
            figures = {"model_calls": totals["model_calls"], "tokens": totals["tokens_in"] + totals["tokens_out"],
                       "cost_usd": totals["cost_usd"]}
            if step.val_accuracy >= 0:
                figures["val_accuracy"] = step.val_accuracy
            if all(earlier.step != step.step for earlier in steps[:index]):  # a step's candidates, counted once
                made = [c for c in candidates if c.step == step.step]
                figures.update(candidates_proposed=len(made),
                               candidates_valid=sum(c.status != "invalid" for c in made),
                               candidates_accepted=sum(c.status == "accepted" for c in made))
            moment = int(as_utc(step.created_at).timestamp() * 1000)
            metrics += [(key, float(value), moment, step.step) for key, value in figures.items()]
        self._call(lambda: self._log_batch(metrics, {STEPS_TAG: str(len(steps))}))
        if not self.off:
            self.steps_logged = len(steps)

    def end(self, run_id: str, status: str) -> None:
        """End the MLflow run with promptopt's status; a finished run's test figures and its report and winning
        prompt as artifacts first."""
        if self.off or not self.mlflow_run_id:
            return
        self.log_steps(run_id)
        if status == "finished":
            self._call(lambda: self._log_result(run_id))
        self._call(lambda: self.client.set_terminated(self.mlflow_run_id, END_STATUS[status]))

    def _create(self, run_id: str, config: dict[str, Any], version: str) -> str:
        """A new MLflow run for `run_id` with its parameters; its MLflow id."""
        from mlflow.entities import Param

        experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        experiment = self.client.get_experiment_by_name(experiment_name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(experiment_name)
        created = self.client.create_run(experiment_id, tags={RUN_ID_TAG: run_id}, run_name=f"promptopt {run_id}")
        params = [Param(key, str(value)) for key, value in _parameters(config, version).items()]
        self.client.log_batch(created.info.run_id, params=params)
        return created.info.run_id

    def _log_result(self, run_id: str) -> None:
        """The finished run's test figures (seed and winner with their intervals, p), its HTML report and its
        winning prompt as `promptopt export` writes it."""
        from promptopt.runs.html_report import render_report

        report = self.store.run(run_id).summary or {}
        moment = int(time.time() * 1000)
        figures = {"p_value": report.get("p_value"), "test_cases": report.get("test_cases"),
                   "fixed": report.get("fixed"), "broken": report.get("broken")}
        for key in ("seed", "winner"):
            row = report.get(key) or {}
            low, high = row.get("ci95") or (None, None)
            figures.update({f"{key}_test_accuracy": row.get("test_accuracy"), f"{key}_test_ci95_low": low,
                            f"{key}_test_ci95_high": high})
        self._log_batch([(key, float(value), moment, 0) for key, value in figures.items() if value is not None])
        self.client.log_text(self.mlflow_run_id, render_report(self.store, run_id), "report.html")
        self.client.log_text(self.mlflow_run_id, export_prompt(self.store, run_id), "prompt.md")

    def _log_batch(self, metrics: list[tuple[str, float, int, int]], tags: dict[str, str] | None = None) -> None:
        """Metrics as (key, value, milliseconds, step), and tags, in one MLflow call."""
        from mlflow.entities import Metric, RunTag

        self.client.log_batch(self.mlflow_run_id, metrics=[Metric(*metric) for metric in metrics],
                              tags=[RunTag(key, value) for key, value in (tags or {}).items()])

    def _call(self, call: Callable[[], T]) -> T | None:
        """`call()`, unless tracking is off; its first failure is the run's one tracking warning and turns
        tracking off (None is returned then)."""
        if self.off:
            return None
        try:
            with _mlflow_limits():
                return call()
        except Exception as error:  # noqa: BLE001 (tracking must never break a run, whatever MLflow raises)
            self.off = True
            self.warn(f"MLflow tracking at {shown_url(self.uri)} stopped: {_one_line(error)}; the run goes on, and "
                      "promptopt's store keeps all of it")
            return None


class _TrackedWrites:
    """A run's search writes (`SearchWrites`), passed on unchanged, that also tell the tracker when the run is
    created, when a step is stored and how the run ends."""

    def __init__(self, writes: SearchWrites, tracker: _Tracker) -> None:
        self._writes, self._tracker = writes, tracker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writes, name)

    def create_run(self, *args: Any, **kwargs: Any) -> str:
        """Create (or, resumed, reopen) the run, then its MLflow run."""
        run_id = self._writes.create_run(*args, **kwargs)
        self._tracker.start(run_id)
        return run_id

    def add_step(self, run_id: str, *args: Any, **kwargs: Any) -> None:
        """Store the step, then log the steps MLflow does not have yet."""
        self._writes.add_step(run_id, *args, **kwargs)
        self._tracker.log_steps(run_id)

    def update_run(self, run_id: str, **values: Any) -> None:
        """Store the update; one that ends the run ends its MLflow run too."""
        self._writes.update_run(run_id, **values)
        if values.get("status") in END_STATUS:
            self._tracker.end(run_id, values["status"])


def _parameters(config: dict[str, Any], version: str) -> dict[str, Any]:
    """A run's stored settings as MLflow parameters: each strategy option as `option.NAME`; unset ones left out."""
    params = {key: value for key, value in config.items() if key != "options" and value is not None}
    params.update({f"option.{key}": value for key, value in (config.get("options") or {}).items()})
    if version:
        params["promptopt_version"] = version
    return params


def _prompt_tags(run: Any, regions: int, fmt: str) -> dict[str, str]:
    """Where a registered prompt came from and how it scored: the promptopt run (and MLflow run), the seed's and
    winner's test accuracy with the winner's 95 % interval, p, the task model, and how many protected regions it
    kept (byte-identical to the seed's, as every candidate must)."""
    summary = run.summary or {}
    winner, seed = summary.get("winner") or {}, summary.get("seed") or {}
    tags = {RUN_ID_TAG: run.id, "promptopt.model": str((run.config or {}).get("model")),
            "promptopt.protected_regions": str(regions), "promptopt.format": fmt}
    if winner:
        low, high = winner.get("ci95") or (None, None)
        tags.update({"promptopt.test_accuracy": _figure(winner.get("test_accuracy")),
                     "promptopt.test_ci95": f"[{_figure(low)}, {_figure(high)}]",
                     "promptopt.seed_test_accuracy": _figure(seed.get("test_accuracy")),
                     "promptopt.p_value": _figure(summary.get("p_value"))})
    if run.mlflow_run_id:
        tags["promptopt.mlflow_run_id"] = run.mlflow_run_id
    return tags


def _figure(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _parse_reference(reference: str) -> tuple[str, str, str]:
    """(name, "/" or "@", version or alias) of `mlflow:NAME/VERSION` or `mlflow:NAME@ALIAS`."""
    body = str(reference).removeprefix(REGISTRY_PREFIX)
    for separator in ("@", "/"):
        name, found, version = body.rpartition(separator)
        if found and name and version and (separator == "@" or version.isdigit()):
            return name, separator, version
    raise RegistryError(f"a registered prompt is {REGISTRY_PREFIX}NAME/VERSION or {REGISTRY_PREFIX}NAME@ALIAS, got "
                        f"{reference!r}")


def _client(uri: str) -> MlflowClient:
    """An MLflow client on `uri` for tracking and the registry, without touching MLflow's process-wide settings."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise RegistryError(f"mlflow is not installed: {MLFLOW_INSTALL}") from None
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _registry_client(uri: str | None) -> MlflowClient:
    """A client on the registry at `uri`; `RegistryError` when there is none to use."""
    if not uri:
        raise RegistryError("no MLflow tracking URI: give --track URI, set `track` in the config file or "
                            "$MLFLOW_TRACKING_URI")
    return _client(uri)


@contextlib.contextmanager
def _registry_errors(uri: str | None) -> Iterator[None]:
    """Any failure of the registry as one-line `RegistryError`."""
    try:
        yield
    except RegistryError:
        raise
    except Exception as error:  # noqa: BLE001 (MLflow raises many kinds; each is reported the same way)
        raise RegistryError(f"MLflow's Prompt Registry at {shown_url(uri or '')}: {_one_line(error)}") from None


@contextlib.contextmanager
def _mlflow_limits() -> Iterator[None]:
    """While promptopt calls MLflow: short HTTP retries and timeouts (a variable the user set wins) and MLflow's
    info logging (database setup) off the terminal; all restored afterwards."""
    with contextlib.suppress(ImportError):
        import mlflow  # noqa: F401 (imported first: its import sets its loggers' levels, which are lowered below)
    saved = {name: os.environ.get(name) for name in HTTP_LIMITS}
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    for name, value in HTTP_LIMITS.items():
        os.environ.setdefault(name, value)
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _one_line(error: BaseException) -> str:
    """An error as one short line: its first line, at most 300 characters."""
    if isinstance(error, ImportError):
        return f"mlflow is not installed: {MLFLOW_INSTALL}"
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return text if len(text) <= 300 else text[:299] + "…"


def _warn_on_stderr(message: str) -> None:
    """A `warning:` line on stderr, above any progress bar."""
    tqdm.write(f"warning: {message}", file=sys.stderr)
