"""Model backends. `embedded` is the local SmolLM2-135M-Instruct and the default; anything else is reached
through an OpenAI-compatible endpoint (`promptopt.models.openai_compat`)."""
from __future__ import annotations

from typing import Any

from promptopt.models.base import CallRecord, ModelBackend, Routed
from promptopt.models.settings import EMBEDDED, ModelSettings, ModelSettingsError, resolve_model_settings


def load_model(settings: ModelSettings | str = EMBEDDED, concurrency: int = 8, cache: bool = True,
               prices: Any = None) -> ModelBackend:
    """The backend for `settings` (or a bare model name): the embedded model, or an OpenAI-compatible client
    with `concurrency` calls in flight, the on-disk response cache (unless `cache` is False) and `prices`."""
    from promptopt.config import response_cache_dir
    from promptopt.models.response_cache import ResponseCache

    if isinstance(settings, str):
        settings = resolve_model_settings("task_model", model=settings)
    response_cache = ResponseCache(response_cache_dir()) if cache else None
    if settings.local:
        from promptopt.models.embedded import EmbeddedModel

        return EmbeddedModel(cache=response_cache)
    from promptopt.models.openai_compat import Endpoint, OpenAICompatibleModel

    endpoint = Endpoint(settings.model, settings.base_url, settings.api_key, settings.timeout_s)
    return OpenAICompatibleModel(endpoint, concurrency=concurrency, cache=response_cache, prices=prices,
                                 tool_protocol=settings.tool_protocol)


__all__ = ["CallRecord", "EMBEDDED", "ModelBackend", "ModelSettings", "ModelSettingsError", "Routed", "load_model",
           "resolve_model_settings"]
