"""Model backends. `embedded` is the local Qwen2.5-Coder-0.5B-Instruct and the default; anything else is reached
through an OpenAI-compatible endpoint (`promptopt.models.openai_compat`) unless its settings name another backend
kind from the registry (`promptopt.models.registry`: built-ins and `promptopt.models` entry points)."""
from __future__ import annotations

from typing import Any

from promptopt.models.base import CallRecord, ModelBackend, Routed
from promptopt.models.settings import EMBEDDED, ModelSettings, ModelSettingsError, resolve_model_settings


def load_model(settings: ModelSettings | str = EMBEDDED, concurrency: int = 8, cache: bool = True,
               prices: Any = None) -> ModelBackend:
    """The backend for `settings` (or a bare model name), built by the registry entry its `kind` names: the
    embedded model, an OpenAI-compatible client with `concurrency` calls in flight, or a plugin's; with the
    on-disk response cache (unless `cache` is False) and `prices`."""
    from promptopt.config import response_cache_dir
    from promptopt.models.registry import create_backend
    from promptopt.models.response_cache import ResponseCache

    if isinstance(settings, str):
        settings = resolve_model_settings("task_model", model=settings)
    response_cache = ResponseCache(response_cache_dir()) if cache else None
    return create_backend(settings, concurrency, response_cache, prices)


__all__ = ["CallRecord", "EMBEDDED", "ModelBackend", "ModelSettings", "ModelSettingsError", "Routed", "load_model",
           "resolve_model_settings"]
