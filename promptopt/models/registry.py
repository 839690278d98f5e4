"""Model backends by kind, each a factory `(settings, concurrency, cache, prices) -> ModelBackend`: the built-ins,
`register`ed ones and `promptopt.models` entry points, so a new backend is one module plus one entry."""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

from promptopt.models.base import ModelBackend
from promptopt.models.response_cache import ResponseCache
from promptopt.models.settings import EMBEDDED, OPENAI, ModelSettings, ModelSettingsError
from promptopt.plugins import plugin_entry_points

ENTRY_POINT_GROUP = "promptopt.models"
BUILT_IN = "built-in"
IN_PROCESS = "registered in this process"

BackendFactory = Callable[[ModelSettings, int, ResponseCache | None, Any], ModelBackend]

# kind -> "module:factory" (entry point syntax), imported on first use so naming a kind loads neither torch nor
# the openai SDK
BUILT_INS = {
    EMBEDDED: "promptopt.models.embedded:from_settings",
    OPENAI: "promptopt.models.openai_compat:from_settings",
}
_registered: dict[str, BackendFactory] = {}


class UnknownBackend(ModelSettingsError):
    """A backend kind that is neither built in, registered in this process, nor provided by an installed plugin."""


@dataclass(frozen=True)
class BackendInfo:
    """One available backend kind: where it comes from (built-in, this process, a distribution), its target
    (`module:factory`) and how to load its factory."""

    kind: str
    source: str
    target: str
    load: Callable[[], BackendFactory] = field(repr=False)


def register(kind: str, factory: BackendFactory) -> None:
    """Make `factory` build the backend `kind` in this process (for code not installed as a package); a
    built-in kind cannot be replaced."""
    if kind in BUILT_INS:
        raise ValueError(f"model backend {kind!r} is built in; register yours under another name")
    _registered[kind] = factory


def unregister(kind: str) -> None:
    """Forget a kind given to `register` (nothing happens when there is none)."""
    _registered.pop(kind, None)


def available() -> dict[str, BackendInfo]:
    """Every backend kind that can be named: built-ins, then this process's, then plugins; a plugin with a taken
    name is left out with a warning that names its distribution, so its author learns why it never runs."""
    found = {kind: BackendInfo(kind, BUILT_IN, target, metadata.EntryPoint(kind, target, ENTRY_POINT_GROUP).load)
             for kind, target in BUILT_INS.items()}
    for kind, factory in _registered.items():
        target = f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', repr(factory))}"
        found[kind] = BackendInfo(kind, IN_PROCESS, target, lambda factory=factory: factory)
    taken = {kind: info.source for kind, info in found.items()}
    for entry, source in plugin_entry_points(ENTRY_POINT_GROUP, "model backend", taken):
        found[entry.name] = BackendInfo(entry.name, source, entry.value, entry.load)
    return found


def create_backend(settings: ModelSettings, concurrency: int = 8, cache: ResponseCache | None = None,
                   prices: Any = None) -> ModelBackend:
    """The backend `settings.kind` names, from its factory; `UnknownBackend` lists the kinds available."""
    known = available()
    if settings.kind not in known:
        raise UnknownBackend(f"unknown model backend {settings.kind!r}; available: {', '.join(known)}")
    return known[settings.kind].load()(settings, concurrency, cache, prices)
