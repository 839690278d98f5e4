"""The real embedded SmolLM2 model: packed scoring equals the naive reference, routing, argument filling and
batched generation (equal to one generate per request when greedy)."""
from __future__ import annotations

import numpy as np
import pytest

from promptopt.case import NO_TOOL
from promptopt.config import model_cache_dir
from promptopt.models.tool_text import parse_json_object, tool_names

CONVERSATIONS = [
    [{"role": "user", "content": "where is my order FM202611030417?"}],
    [{"role": "user", "content": "有草莓吗"}, {"role": "assistant", "content": "有的，丹东草莓 39 元一盒。"},
     {"role": "user", "content": "加两盒到购物车"}],
    [{"role": "user", "content": "thanks, bye"}],
]


@pytest.mark.parametrize("method", ["choice_logprobs", "channel_logprobs"])
def test_packed_scores_equal_one_forward_per_choice(embedded, task, method):
    choices = [*tool_names(task.tools), NO_TOOL]
    prompt = "You are FreshMart's assistant. Pick a tool."
    packed = getattr(embedded, method)(prompt, CONVERSATIONS, choices)
    naive = getattr(embedded, f"{method}_naive")(prompt, CONVERSATIONS, choices)
    assert packed.shape == (3, len(choices))
    assert np.abs(packed - naive).max() < 1e-3
    assert (packed.argmax(1) == naive.argmax(1)).all()


def test_route_picks_a_known_choice_and_accounts_for_it(embedded, task):
    routed = embedded.route(task.seed_prompt, task.tools, CONVERSATIONS)
    assert len(routed) == 3
    assert {r.call.name for r in routed} <= {*tool_names(task.tools), NO_TOOL}
    assert all(r.record.role == "task" and r.record.tokens_in > 200 for r in routed)


def test_cached_routing_answers_repeat_without_scoring(embedded, task, tmp_path, monkeypatch):
    from promptopt.models.embedded import EmbeddedModel
    from promptopt.models.response_cache import ResponseCache

    model = EmbeddedModel(model=embedded._model, tokenizer=embedded._tokenizer, cache=ResponseCache(tmp_path))
    first = model.route(task.seed_prompt, task.tools, CONVERSATIONS[:2])
    other_prompt = model.route(task.seed_prompt + "\nBe brief.", task.tools, CONVERSATIONS[:1])
    assert not other_prompt[0].record.cache_hit
    monkeypatch.setattr(model, "channel_logprobs", lambda *a: pytest.fail("a cached answer was scored again"))
    again = model.route(task.seed_prompt, task.tools, CONVERSATIONS[:2])
    assert [r.call for r in again] == [r.call for r in first]
    assert all(r.record.cache_hit for r in again) and not any(r.record.cache_hit for r in first)
    assert [r.record.tokens_in for r in again] == [r.record.tokens_in for r in first]


def test_cached_generations_repeat_per_sample_without_generating(embedded, tmp_path, monkeypatch):
    from promptopt.models.embedded import EmbeddedModel
    from promptopt.models.response_cache import ResponseCache

    model = EmbeddedModel(model=embedded._model, tokenizer=embedded._tokenizer, cache=ResponseCache(tmp_path))
    ask = [{"role": "user", "content": "Name a fruit."}]
    first = model.generate_many([ask, ask], temperature=1.0, max_tokens=6)
    for name in ("_complete", "_sample_rows", "_padded_rows"):
        monkeypatch.setattr(model, name, lambda *a, **k: pytest.fail("a cached generation ran again"))
    again = model.generate_many([ask, ask], temperature=1.0, max_tokens=6)
    assert [c.text for c in again] == [c.text for c in first]
    assert all(c.record.cache_hit for c in again) and not any(c.record.cache_hit for c in first)
    monkeypatch.undo()
    third = model.generate_many([ask], temperature=1.0, max_tokens=6, first_sample=2)
    assert not third[0].record.cache_hit


ASKS = [
    [{"role": "user", "content": "Name a fruit."}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Write a haiku about tea, please."}],
    [{"role": "user", "content": "Say hi."}],
]


def test_batched_greedy_generations_equal_one_generate_per_request(embedded):
    """Distinct prompts decoded together (left-padded) and repeated ones answered once give, token for token, what
    one greedy `generate` per request gives; so do rows decoded from one shared encoding of the prompt."""
    fruit, haiku, hi = ASKS
    requests = [fruit, haiku, fruit, hi]
    sequential = [embedded._complete(messages, "", 10, 0.0) for messages in requests]
    batched = embedded.generate_many(requests, temperature=0.0, max_tokens=10)
    assert [(c.text, c.record.tokens_in, c.record.tokens_out) for c in batched] == sequential
    assert embedded._sample_rows(haiku, 3, 10, 0.0, seed=0) == [sequential[1]] * 3


def test_samples_of_one_prompt_are_one_generate_call_and_repeat_across_runs(embedded, monkeypatch):
    calls = []
    generate = embedded._model.generate
    monkeypatch.setattr(embedded._model, "generate", lambda **k: calls.append(len(k["input_ids"])) or generate(**k))
    fruit, haiku, hi = ASKS
    requests = [fruit, hi, fruit, haiku, fruit]
    first = embedded.generate_many(requests, temperature=1.0, max_tokens=8)
    assert sorted(calls) == [2, 3]  # the prompts asked once together, the three samples of the other together
    again = embedded.generate_many(requests, temperature=1.0, max_tokens=8)
    assert [c.text for c in again] == [c.text for c in first]
    assert len({first[0].text, first[2].text, first[4].text}) > 1
    assert [c.record.tokens_in for c in first] == [len(embedded._prompt_ids(m)) for m in requests]
    assert all(1 <= c.record.tokens_out <= 8 and not c.record.cache_hit and c.record.latency_s > 0 for c in first)


def test_generated_arguments_keep_only_schema_keys(embedded, task):
    cart = next(t for t in task.tools if t["function"]["name"] == "manage_cart")
    arguments = embedded.generate_arguments(task.seed_prompt, cart, CONVERSATIONS[1])
    assert isinstance(arguments, dict)
    assert set(arguments) <= set(cart["function"]["parameters"]["properties"])


def test_converted_weights_are_cached(embedded):
    folder = model_cache_dir() / embedded.source.cache_name
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


@pytest.mark.parametrize("text, parsed", [
    ('"action": "add", "quantity": 2} and more', {}),
    ('{"action": "add", "quantity": 2} and more', {"action": "add", "quantity": 2}),
    ('{"a": {"b": 1}}', {"a": {"b": 1}}),
    ('{"a": 1', {}),
    ("[1, 2]", {}),
])
def test_parse_json_object(text, parsed):
    assert parse_json_object(text) == parsed
