"""A run request: everything `promptopt run` and `promptopt.optimize` / `promptopt.estimate` take, as one object
whose fields are the run settings that `promptopt.run_settings` declares (see there for each one's type, default
and help). The command line builds it from its flags; scripts pass one or the same names as keywords."""
from __future__ import annotations

from dataclasses import fields, make_dataclass, replace
from typing import Any

from promptopt.optimizer.strategies import default_steps
from promptopt.run_settings import RENAMED, request_settings


class _Request:
    """What `RunRequest` adds to its declared fields."""

    @classmethod
    def build(cls, request: Any = None, **keywords: Any) -> Any:
        """`request` (or a default one) with `keywords` applied: a setting's name sets it, any other name is a
        strategy option. A setting's earlier name (`max_calls`) is refused with the name to use."""
        renamed = [f"{old}= is now {RENAMED[old]}=" for old in keywords if old in RENAMED]
        if renamed:
            raise TypeError("renamed run setting(s): " + "; ".join(renamed))
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in keywords.items() if k in names}
        options = {k: v for k, v in keywords.items() if k not in names}
        built = replace(request or cls(), **known)
        if options:
            built.options = {**built.options, **options}
        return built

    @property
    def steps_to_run(self) -> int:
        """`steps`, or the strategy's own default."""
        return self.steps if self.steps is not None else default_steps(self.strategy)


RunRequest = make_dataclass(
    "RunRequest", [s.as_field() for s in request_settings()], bases=(_Request,), namespace={
        "__doc__": "What to optimize and how: one field per run setting (`promptopt.run_settings.RUN_SETTINGS`). "
                   "`cases`, `prompt` and `tools` are files (default: the task's bundled ones); `model`, "
                   "`optimizer_model` and `judge_model` are names or backends you built; `evaluators` lists "
                   "names, evaluator objects, callables `(case, output) -> Score | float | bool` or (evaluator, "
                   "weight) pairs; `options` are the strategy's own.",
        "__module__": __name__})
