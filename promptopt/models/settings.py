"""Which model to use, where, and with which key: command-line flags, then the config file, then the standard
`OPENAI_*` variables, then the default (`embedded`, the local model). Task and optimizer model resolve
separately. The key stays out of `repr` and out of everything promptopt stores. A config section's `backend`
names a backend kind from `promptopt.models.registry` (a plugin's, say); without it the model and URL decide."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlparse

from promptopt.run_settings import SETTINGS

EMBEDDED = "embedded"
OPENAI = "openai"
ROLES = ("task_model", "optimizer_model", "judge_model")
ROLE_SETTINGS = dict(zip(ROLES, ("model", "optimizer_model", "judge_model")))
"""The run setting that names each role's model (`model` for the task model)."""
FLAGS = {role: SETTINGS[name].flags[0] for role, name in ROLE_SETTINGS.items()}
"""The run flag that names each role's model (`--model` for the task model)."""
MAX_MODEL_NAME = 128
"""The longest model name the store records with each model call (`model_calls.model`)."""
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def embedded_name(name: str) -> bool:
    """Whether a model name selects the embedded model: `embedded`, or `embedded:NAME` for one of its weights."""
    return name == EMBEDDED or name.startswith(EMBEDDED + ":")


class ModelSettingsError(ValueError):
    """Settings that cannot reach a model (a remote endpoint without a key, an unknown option)."""


def check_model_name(name: str, where: str) -> None:
    """Refuse a model name longer than the store records (`where`: the flag or config key that gave it), before a
    run writes anything: SQLite would keep it, PostgreSQL would fail at the run's first model call."""
    if len(name) > MAX_MODEL_NAME:
        raise ModelSettingsError(f"{where}: the model name is {len(name):,} characters long; the store records "
                                 f"names of at most {MAX_MODEL_NAME}")


@dataclass(frozen=True)
class ModelSettings:
    """How to reach one model, and which backend kind serves it (`kind`); `model == "embedded"` (or `embedded:NAME`)
    without a base URL or backend is the local model."""

    model: str = EMBEDDED
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    tool_protocol: str = "auto"
    backend: str | None = None

    @property
    def kind(self) -> str:
        """The registry kind that builds this backend: `backend` when given, else `embedded` for the local model
        and `openai` for any endpoint."""
        if self.backend:
            return self.backend
        return EMBEDDED if embedded_name(self.model) and self.base_url is None else OPENAI

    @property
    def local(self) -> bool:
        """Whether these settings select the embedded local model."""
        return self.kind == EMBEDDED

    def public(self) -> dict[str, Any]:
        """What a run records about this model: name, URL, protocol and any explicit backend; never the key."""
        public = {"model": self.model, "base_url": self.base_url, "tool_protocol": self.tool_protocol}
        return {**public, "backend": self.backend} if self.backend else public


def resolve_model_settings(role: str, model: str | None = None, base_url: str | None = None,
                           api_key: str | None = None, config: Mapping[str, Any] | None = None,
                           environ: Mapping[str, str] | None = None, require_key: bool = True,
                           backend: str | None = None) -> ModelSettings:
    """Settings for `role` (`task_model`, `optimizer_model` or `judge_model`) from flags, config and environment; a remote
    OpenAI-compatible endpoint without a key is an error unless `require_key` is False (estimates call nothing).
    The `OPENAI_*` variables apply only when no other backend kind is named."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    env = os.environ if environ is None else environ
    section = dict((config or {}).get(role) or {})
    unknown = set(section) - {"model", "base_url", "api_key", "api_key_env", "timeout_s", "tool_protocol", "backend"}
    if unknown:
        raise ModelSettingsError(f"config {role}: unknown keys {', '.join(sorted(unknown))}")
    kind = backend or section.get("backend") or None
    openai_env = kind in (None, OPENAI)
    name = model or section.get("model") or EMBEDDED
    check_model_name(str(name), FLAGS[role] if model else f"config {role}.model")
    url = base_url or section.get("base_url")
    if url is None and not embedded_name(name) and openai_env:
        url = env.get("OPENAI_BASE_URL") or None
    key = api_key
    if key is None and section.get("api_key_env"):
        key = env.get(section["api_key_env"])
    key = key or section.get("api_key") or (env.get("OPENAI_API_KEY") if openai_env and (not embedded_name(name) or url)
                                            else None)
    settings = ModelSettings(model=name, base_url=url, api_key=key or None,
                             timeout_s=float(section.get("timeout_s", 60.0)),
                             tool_protocol=section.get("tool_protocol", "auto"), backend=kind)
    if require_key and settings.kind == OPENAI and not settings.api_key and not _is_local(settings.base_url):
        where = settings.base_url or "https://api.openai.com/v1"
        raise ModelSettingsError(
            f"{role.replace('_', ' ')} {name!r} at {where} needs an API key: set OPENAI_API_KEY, or "
            f"`api_key_env` in the config file's {role} section")
    return settings


def _is_local(url: str | None) -> bool:
    return url is not None and (urlparse(url).hostname or "") in LOCAL_HOSTS
