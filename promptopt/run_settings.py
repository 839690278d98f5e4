"""Every run setting, declared once: name, type, default, help and flag. `promptopt run` and `check` make their
flags from these declarations, `RunRequest` (the Python API) its fields, the run's stored config (`RunConfig`) its
fields and `--estimate` its inputs; one name per setting from the flag (`--budget-calls`) to the code that uses it
(`budget_calls`). A strategy's own options are declared the same way by the strategy (`promptopt.optimizer.options`).

Add a run setting: declare it here, then read it where it is used (`config.NAME` in the engine, `request.NAME` at
the front door, `EvaluatorSettings.NAME` for an evaluator). Nothing else names it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.config import default_db_url
from promptopt.markup import DEFAULT_MAX_CHARS

UNSET = object()
"""`Setting.stored_default` when the stored config takes the same default as the request."""


@dataclass(frozen=True)
class Setting:
    """One run setting.

    `type` converts and checks values (`int`, `float`, `str`, `bool`, `Path`, `dict`, `tuple`, or `object` for a
    model given by name or as a backend); `flag` is the command-line flag (`""`: `--name-with-dashes`; None: no
    flag, Python API or engine only), `aliases` further flags; a `bool` with `switch` has a `--no-` form.
    `minimum` / `maximum` bound numbers (exclusive with `open_below` / `open_above`); `multiple` flags repeat.
    `request`: a field of `RunRequest`; `stored`: a field of the run's stored config (what decides the outcome,
    never a key), with `stored_default` where it differs (a model resolved to its name). `resumable`: may be given
    with `--resume`. `secret`: never shown or stored. `formerly`: earlier Python names, refused with a pointer here.
    `choices_from`: `module:ATTRIBUTE` whose keys are the allowed values (read by the command line only)."""

    name: str
    type: Any
    default: Any
    help: str
    flag: str | None = ""
    aliases: tuple[str, ...] = ()
    switch: bool = False
    minimum: float | None = None
    maximum: float | None = None
    open_below: bool = False
    open_above: bool = False
    multiple: bool = False
    metavar: str | None = None
    request: bool = True
    stored: bool = False
    stored_default: Any = UNSET
    resumable: bool = False
    secret: bool = False
    formerly: tuple[str, ...] = ()
    choices_from: str = ""

    @property
    def flags(self) -> list[str]:
        """The command-line flags, the declared one first; empty when the setting has none."""
        if self.flag is None:
            return []
        main = self.flag or "--" + self.name.replace("_", "-")
        return [f"{main}/--no-{main[2:]}" if self.switch and "/" not in main else main, *self.aliases]

    def as_field(self, default: Any = UNSET) -> tuple[str, Any, Any]:
        """The setting as a generated dataclass field (`RunRequest`, `RunConfig`), with `default` where that class
        takes another (a dict setting starts empty in both)."""
        if self.type is dict:
            return self.name, Any, field(default_factory=dict)
        return self.name, Any, field(default=self.default if default is UNSET else default, repr=not self.secret)

    @property
    def config_default(self) -> Any:
        """The default of the stored config's field."""
        return self.default if self.stored_default is UNSET else self.stored_default


def _budget(name: str, kind: type, what: str, minimum: float, open_below: bool = False) -> Setting:
    return Setting(f"budget_{name}", kind, None, f"Stop searching after this many {what}.", minimum=minimum,
                   open_below=open_below, stored=True, formerly=(f"max_{name}",))


RUN_SETTINGS: tuple[Setting, ...] = (
    Setting("task", str, "tool-routing", "What the model does with each case.", stored=True,
            choices_from="promptopt.tasks:TASKS"),
    Setting("cases", Path, None, "Case file (.jsonl or .csv; repeatable). Default: the task's bundled bad and good "
            "cases.", multiple=True),
    Setting("sources", str, None, "Also take the stored cases from this source (repeatable; a glob): the log or case "
            "file they were imported from, or a log turn's FILE:RECORD#TURN. Without --cases, only the selected "
            "cases are used.", flag="--source", multiple=True, metavar="PATTERN"),
    Setting("tags", str, None, "Take stored cases with this tag (repeatable: any of them; with --source or --label, "
            "narrows them).", flag="--tag", multiple=True, metavar="TAG"),
    Setting("labels", str, None, "Take stored cases with this label, bad or good (repeatable).", flag="--label",
            multiple=True, metavar="LABEL"),
    Setting("prompt", Path, None, "Seed system prompt file. Default: the task's bundled prompt."),
    Setting("tools", Path, None, "Tools in OpenAI function schema (JSON list). Default: the task's bundled tools."),
    Setting("strategy", str, "demos", "Search strategy (see `promptopt run --help` for the list), or module:Class "
            "for your own. Its options are the flags that name it, or -o KEY=VALUE.", metavar="NAME", stored=True),
    Setting("options", dict, None, "The strategy's own options by name (see its flags).", flag=None, stored=True),
    Setting("steps", int, None, "Search steps (APO: rounds; DSPy: runs of its optimizer) [default: the "
            "strategy's].", minimum=1, stored=True, stored_default=1),
    Setting("seed", int, 0, "Random seed for splits and sampling.", stored=True),
    Setting("model", object, None, "Task model (the one whose prompt is optimized): 'embedded' (the local "
            "Qwen2.5-Coder-0.5B-Instruct, the default) or any model name an OpenAI-compatible endpoint serves.",
            stored=True, stored_default="embedded"),
    Setting("base_url", str, None, "OpenAI-compatible endpoint of --model (default: config file, then "
            "$OPENAI_BASE_URL, then OpenAI).", stored=True, resumable=True),
    Setting("api_key", str, None, "Key for --base-url (default: config file, then $OPENAI_API_KEY; prefer the "
            "variable: flags show up in shell history). Never stored.", resumable=True, secret=True),
    Setting("optimizer_model", object, None, "Model that writes prompts (opro, apo, bpo); same choices as --model. "
            "Default: embedded.", stored=True, stored_default="embedded"),
    Setting("optimizer_base_url", str, None, "OpenAI-compatible endpoint of --optimizer-model.", stored=True,
            resumable=True),
    Setting("optimizer_api_key", str, None, "Key for --optimizer-base-url (like --api-key).", resumable=True,
            secret=True),
    Setting("concurrency", int, 8, "API calls in flight at once (OpenAI-compatible models).", minimum=1,
            stored=True, resumable=True),
    Setting("cache", bool, True, "Answer repeated requests from the on-disk response cache ($PROMPTOPT_CACHE_DIR "
            "or ~/.promptopt/cache), so re-running a finished run calls no model.", switch=True),
    Setting("config_file", Path, None, "JSON config file with task_model / optimizer_model settings and prices "
            "(default: $PROMPTOPT_CONFIG or ~/.promptopt/config.json when present).", flag="--config",
            resumable=True),
    Setting("db", str, None, f"SQLAlchemy database URL of the store (default: $PROMPTOPT_DB or {default_db_url()}).",
            resumable=True),
    Setting("track", str, None, "MLflow tracking URI to log the run to (http://HOST:PORT of a tracking server, or "
            "sqlite:///FILE): parameters, metrics by step, the test figures, the report and the winning prompt; an "
            "unreachable one is one warning, never a failed run. Default: the config file's `track`, then "
            "$MLFLOW_TRACKING_URI; needs promptopt[mlflow].", metavar="URI", resumable=True),
    _budget("calls", int, "model calls (the final test scoring is not counted)", 1),
    _budget("tokens", int, "tokens (in + out, cached calls included)", 1),
    _budget("usd", float, "dollars at list price (see the README's price table)", 0, open_below=True),
    _budget("seconds", float, "seconds of wall time", 1),
    Setting("alpha", float, 0.05, "Evidence a candidate needs to replace the incumbent: it must be better on "
            "validation by the exact one-sided McNemar test at p < ALPHA, so one case in a small validation set "
            "never suffices (1: any gain).", minimum=0, maximum=1, open_below=True, stored=True),
    Setting("max_broken", int, None, "Previously-good validation cases a candidate may break, as an exact count "
            "(0: none) [default: up to --max-broken-share of the good validation cases].", minimum=0, stored=True),
    Setting("max_broken_share", float, 0.1, "Without --max-broken: the share of the good validation cases a "
            "candidate may break (weighed against the bad cases it fixes by --alpha).", minimum=0, maximum=1,
            stored=True),
    Setting("min_gain", float, 0.0, "Also require this validation accuracy gain over the incumbent, as a fraction "
            "(0.03 = 3 points).", minimum=0, maximum=1, stored=True),
    Setting("check_arguments", bool, False, "Also generate and check tool arguments (slow on the embedded model).",
            switch=True, aliases=("--arguments/--no-arguments",), stored=True),
    Setting("evaluators", str, None, "What scores each output (repeatable): a built-in or plugin name, optionally "
            "weighted as NAME=0.5 or NAME:0.5; several are averaged by weight. See `promptopt evaluators list`. "
            "Default: tool_call.", flag="--evaluator", multiple=True, metavar="NAME[=WEIGHT]"),
    Setting("all_must_pass", bool, False, "With several --evaluator: a case passes only if every evaluator passes "
            "(score: the lowest)."),
    Setting("pattern", str, None, "exact / contains / regex: the reference text or regular expression for every "
            "case (default: each case's expected.text).", stored=True),
    Setting("rubric", str, None, "judge: the rubric, as text or a file holding it (default: right tool, arguments "
            "and reply).", metavar="TEXT|FILE"),
    Setting("judge_model", object, None, "judge: the model that judges; same choices as --model. Default: config "
            "file, then embedded.", stored=True),
    Setting("judge_base_url", str, None, "OpenAI-compatible endpoint of --judge-model."),
    Setting("judge_api_key", str, None, "Key for --judge-base-url (like --api-key).", secret=True),
    Setting("evaluator", str, "tool_call", "The run's evaluator as built (its name; a combination's joined "
            "names).", flag=None, request=False, stored=True),
    Setting("splits", tuple, (0.5, 0.25, 0.25), "Train, validation and test shares of the cases.", flag=None,
            request=False, stored=True),
    Setting("seed_train_sample", int, 48, "Training cases the seed prompt (and each incumbent) is scored on.",
            flag=None, request=False, stored=True),
    Setting("max_chars", int, DEFAULT_MAX_CHARS, "The longest candidate prompt, in characters.", flag=None,
            request=False, stored=True),
)

SETTINGS = {setting.name: setting for setting in RUN_SETTINGS}
RENAMED = {old: setting.name for setting in RUN_SETTINGS for old in setting.formerly}
"""Earlier Python names of settings (`max_calls`), refused with the name to use."""


def stored_settings() -> list[Setting]:
    return [s for s in RUN_SETTINGS if s.stored]


def request_settings() -> list[Setting]:
    return [s for s in RUN_SETTINGS if s.request]
