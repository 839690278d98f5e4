"""The backend registry: a toy backend, registered in process or offered by a (fake) installed package's
`promptopt.models` entry point, comes out of `load_model` without any other file changing."""
from __future__ import annotations

import textwrap
from importlib import metadata

import pytest

from promptopt.case import ToolCall
from promptopt.models import ModelSettings, load_model, resolve_model_settings
from promptopt.models import registry
from promptopt.models.base import CallRecord, Completion, Routed
from promptopt.models.embedded import EmbeddedModel
from promptopt.models.openai_compat import OpenAICompatibleModel

TOOLS = [{"type": "function", "function": {"name": "find_stores", "parameters": {}}}]


class ToyBackend:
    """Routes every conversation to the first tool and echoes the last message as its generation."""

    def __init__(self, settings, concurrency, cache, prices) -> None:
        self.name = f"toy:{settings.model}"
        self.settings, self.concurrency, self.cache, self.prices = settings, concurrency, cache, prices

    def route(self, system_prompt, tools, conversations, check_arguments=False):
        return [Routed(ToolCall(tools[0]["function"]["name"]), CallRecord("task", self.name, 1, 1, 0.0))
                for _ in conversations]

    def generate(self, messages, temperature=0.0, max_tokens=256, role="optimizer"):
        return messages[-1]["content"], CallRecord(role, self.name, 1, 1, 0.0)

    def generate_many(self, requests, temperature=1.0, max_tokens=512, role="optimizer", first_sample=0):
        return [Completion(*self.generate(messages, role=role)) for messages in requests]


@pytest.fixture
def toy_registered():
    registry.register("toy", ToyBackend)
    yield
    registry.unregister("toy")


def test_registered_backend_comes_from_load_model(toy_registered):
    model = load_model(ModelSettings(model="echo", backend="toy"), concurrency=3, cache=False, prices="table")
    assert isinstance(model, ToyBackend) and model.name == "toy:echo"
    assert (model.concurrency, model.cache, model.prices) == (3, None, "table")
    assert model.route("be brief", TOOLS, [[{"role": "user", "content": "stores?"}]])[0].call.name == "find_stores"
    assert registry.available()["toy"].source == registry.IN_PROCESS


def test_config_section_names_the_backend_and_needs_no_openai_key(toy_registered):
    config = {"task_model": {"backend": "toy", "model": "echo"}}
    env = {"OPENAI_BASE_URL": "https://x.test/v1", "OPENAI_API_KEY": "sk-openai"}
    settings = resolve_model_settings("task_model", config=config, environ=env)
    assert (settings.kind, settings.base_url, settings.api_key) == ("toy", None, None)
    assert settings.public()["backend"] == "toy"
    assert isinstance(load_model(settings), ToyBackend)
    assert resolve_model_settings("task_model", model="echo", backend="toy", environ={}).kind == "toy"


def test_plugin_entry_point_is_found_and_cannot_take_a_built_in_name(tmp_path, monkeypatch):
    (tmp_path / "promptopt_toy_backend.py").write_text(textwrap.dedent("""
        from promptopt.models.base import CallRecord

        class Toy:
            name = "toy-plugin"

            def __init__(self, settings, concurrency, cache, prices):
                self.model = settings.model

            def generate(self, messages, temperature=0.0, max_tokens=256, role="optimizer"):
                return "hi", CallRecord(role, self.name, 1, 1, 0.0)
    """), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    entries = [metadata.EntryPoint("toy-plugin", "promptopt_toy_backend:Toy", registry.ENTRY_POINT_GROUP),
               metadata.EntryPoint("openai", "promptopt_toy_backend:Toy", registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry.metadata, "entry_points",
                        lambda group: [e for e in entries if e.group == group])
    with pytest.warns(UserWarning, match="model backend 'openai' from promptopt_toy_backend:Toy .* is ignored: "
                                         "built-in already has that name"):
        model = load_model(ModelSettings(model="m", backend="toy-plugin"), cache=False)
    assert type(model).__name__ == "Toy" and model.model == "m"
    with pytest.warns(UserWarning):
        assert registry.available()["openai"].source == registry.BUILT_IN


def test_built_in_kinds_unknown_kinds_and_reserved_names():
    assert isinstance(load_model(ModelSettings(), cache=False), EmbeddedModel)
    endpoint = ModelSettings(model="gpt-4o", base_url="http://127.0.0.1:9/v1")
    assert endpoint.kind == "openai" and isinstance(load_model(endpoint, cache=False), OpenAICompatibleModel)
    with pytest.raises(registry.UnknownBackend, match="unknown model backend 'nowhere'; available: embedded, openai"):
        load_model(ModelSettings(model="m", backend="nowhere"))
    with pytest.raises(ValueError, match="built in"):
        registry.register("embedded", ToyBackend)
