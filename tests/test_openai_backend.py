"""The OpenAI-compatible backend through the real `openai` SDK against real local HTTP servers: a scripted
responder behind `promptopt.server.ChatServer`, with injected latency and faults."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptopt.api import optimize
from promptopt.case import NO_TOOL
from promptopt.chat_request import ChatRequestError
from promptopt.cli import main
from promptopt.models import load_model, resolve_model_settings
from promptopt.models.choices_support import says_no_choices
from promptopt.models.openai_compat import Endpoint, OpenAICompatibleModel, parse_text_protocol
from promptopt.models.pricing import PriceFileError, load_prices
from promptopt.models.response_cache import ResponseCache
from promptopt.models.retry import RetryPolicy
from promptopt.models.settings import ModelSettingsError
from promptopt.runs.store import Store
from promptopt.server import ChatServer, FaultPlan
from tests.fakes import ExamplesRouter
from tests.support import send_json

FAST_RETRY = RetryPolicy(attempts=10, base_s=0.01, cap_s=0.05)
SECRET = "sk-test-SECRET-0123456789"


class RejectingTools(ExamplesRouter):
    """An endpoint without tool calling: a request carrying `tools` is a 400."""

    def respond(self, request):
        if request.get("tools"):
            raise ValueError("tools are not supported")
        return super().respond(request)


def backend(server: ChatServer, cache_dir: Path | None = None, **kwargs) -> OpenAICompatibleModel:
    return OpenAICompatibleModel(Endpoint("scripted", server.base_url, SECRET, timeout_s=kwargs.pop("timeout_s", 0.5)),
                                 retry=kwargs.pop("retry", FAST_RETRY),
                                 cache=ResponseCache(cache_dir) if cache_dir else None, **kwargs)


def conversations(queries):
    return [[{"role": "user", "content": q}] for q in queries]


def test_native_tool_calls_are_parsed_and_missing_calls_mean_none(expected, task):
    query = next(q for q, t in expected.items() if t == "get_order_status")
    with ChatServer(ExamplesRouter(expected)) as server:
        model = backend(server)
        shown = model.route('User: where is my order\nAssistant: {"name": "get_order_status"}', task.tools, conversations([query]), True)[0]
        hidden = model.route("no examples here", task.tools, conversations([query]), True)[0]
    assert shown.call.name == "get_order_status" and shown.call.arguments == {"q": "x"} and not shown.error
    assert hidden.call.name == NO_TOOL and not hidden.error
    assert shown.record.tokens_in == 40 and shown.record.tokens_out == 8 and shown.record.attempts == 1


@pytest.mark.parametrize("kind", ["rate_limit", "server_error", "stall", "malformed"])
def test_each_fault_kind_is_retried_until_the_call_succeeds(expected, task, kind):
    queries = [q for q, t in expected.items() if t != NO_TOOL][:12]
    prompt = "\n".join(f'Assistant: {{"name": "{t}"}}' for t in {t for t in expected.values() if t != NO_TOOL})
    faults = FaultPlan(rate=0.5, kinds=(kind,), stall_s=1.0, retry_after_s=0.2, seed=3)
    with ChatServer(ExamplesRouter(expected), faults=faults) as server:
        routed = backend(server, concurrency=4).route(prompt, task.tools, conversations(queries))
        injected = server.injected[kind]
    assert injected > 0
    assert [r.call.name for r in routed] == [expected[q] for q in queries]
    assert not any(r.error for r in routed)
    assert sum(r.record.attempts - 1 for r in routed) == injected


def test_retry_after_is_honoured(expected, task):
    query = next(iter(expected))
    faults = FaultPlan(rate=1.0, kinds=("rate_limit",), retry_after_s=0.4)
    with ChatServer(ExamplesRouter(expected), faults=faults) as server:
        started = time.perf_counter()
        routed = backend(server, retry=RetryPolicy(attempts=3, base_s=0.0, cap_s=0.0)).route(
            "p", task.tools, conversations([query]))[0]
        elapsed = time.perf_counter() - started
    assert routed.record.attempts == 3 and routed.record.status == 429
    assert elapsed >= 0.8  # two waits of the advertised 0.4 s, though the policy's own backoff is zero


def test_a_call_failing_every_retry_fails_that_evaluation_visibly_not_the_run(tmp_path, bundled_case_file, expected):
    faults = FaultPlan(rate=0.3, kinds=("server_error",), seed=1)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    messages = []
    with ChatServer(ExamplesRouter(expected), faults=faults) as server:
        model = backend(server, retry=RetryPolicy(attempts=1, base_s=0.0, cap_s=0.0))
        result = optimize(cases=[bundled_case_file], model=model, db=db, steps=1, progress=messages.append)
    report = result.report
    assert report["status"] == "finished"
    assert 0 < report["failed_calls"] < report["model_calls"]
    assert any("failed after retries" in m and "500" in m for m in messages)
    store = Store(db)
    failed = [e for e in store.evaluations(report["seed"]["candidate_id"]).values() if e.error]
    assert failed and not any(e.passed for e in failed)
    assert any(e.error.startswith("InternalServerError 500") for e in failed)


def test_a_run_whose_every_call_fails_is_a_failed_run_not_a_zero_score(tmp_path, bundled_case_file, expected):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with ChatServer(ExamplesRouter(expected)) as server:  # a wrong URL: every call is a 404, as a bad key is a 401
        result = CliRunner().invoke(main, ["run", "--cases", str(bundled_case_file), "--model", "scripted",
                                           "--base-url", server.base_url.replace("/v1", "/nowhere"), "--db", db,
                                           "--quiet"])
    assert result.exit_code == 1
    assert "every task-model call failed" in result.output and "NotFoundError 404" in result.output
    (run,) = Store(db).runs()
    assert run.status == "failed" and "every task-model call failed" in run.error


def test_client_errors_are_not_retried(expected, task):
    with ChatServer(ExamplesRouter(expected)) as server:
        model = OpenAICompatibleModel(Endpoint("scripted", server.base_url.replace("/v1", "/nowhere"), SECRET),
                                      retry=FAST_RETRY)
        routed = model.route("p", task.tools, conversations(["hi"]))[0]
    assert routed.error.startswith("NotFoundError 404") and routed.record.attempts == 1


def test_endpoint_without_tool_calling_falls_back_to_the_text_protocol(expected, task):
    query = next(q for q, t in expected.items() if t == "find_stores")
    responder = RejectingTools(expected)
    with ChatServer(responder) as server:
        model = backend(server)
        routed = model.route('User: any store near me\nAssistant: {"name": "find_stores"}', task.tools, conversations([query]), True)[0]
    assert model.tool_protocol == "text"
    assert routed.call.name == "find_stores" and routed.call.arguments == {"q": 1} and not routed.error


def test_text_protocol_parsing():
    names = {"find_stores", "get_order_status"}
    assert parse_text_protocol('get_order_status {"order_id": "A1"}', names).arguments == {"order_id": "A1"}
    assert parse_text_protocol("I would call `find_stores`.", names).name == "find_stores"
    assert parse_text_protocol("none, just chatting", names).name == NO_TOOL
    assert parse_text_protocol("", names).name == NO_TOOL


def test_run_with_30_percent_faults_ends_with_the_fault_free_winner(tmp_path, bundled_case_file, expected):
    outcomes = []
    for rate in (0.0, 0.3):
        faults = FaultPlan(rate=rate, stall_s=1.0, retry_after_s=0.02, seed=7)
        with ChatServer(ExamplesRouter(expected), faults=faults) as server:
            model = backend(server, concurrency=8)
            result = optimize(cases=[bundled_case_file], model=model, db=f"sqlite:///{tmp_path / f'{rate}.db'}",
                              steps=2)
            outcomes.append((result, sum(server.injected.values())))
    (clean, no_faults), (faulty, injected) = outcomes
    assert no_faults == 0 and injected > 50
    assert faulty.report["failed_calls"] == 0
    assert faulty.best_prompt == clean.best_prompt != clean.seed_prompt
    assert faulty.best_accuracy == clean.best_accuracy > clean.seed_accuracy
    assert faulty.report["model_calls"] == clean.report["model_calls"]


def test_rerunning_a_finished_run_makes_no_new_calls(tmp_path, bundled_case_file, expected):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    runner = CliRunner()
    with ChatServer(ExamplesRouter(expected)) as server:
        args = ["run", "--cases", str(bundled_case_file), "--model", "scripted", "--base-url", server.base_url,
                "--db", db, "--json", "--quiet"]
        first = json.loads(runner.invoke(main, args, catch_exceptions=False).output.strip().splitlines()[-1])
        requests = server.requests
        second = runner.invoke(main, args[:-2], catch_exceptions=False).output
        again = json.loads(runner.invoke(main, args, catch_exceptions=False).output.strip().splitlines()[-1])
        assert server.requests == requests
    assert first["new_model_calls"] == first["model_calls"] > 0
    assert again["new_model_calls"] == 0 and again["cache_hits"] == again["model_calls"] == first["model_calls"]
    assert "(0 new," in second
    assert again["winner"] == first["winner"]


def test_sampled_completions_keep_one_cache_entry_per_sample(tmp_path, expected):
    messages = [{"role": "user", "content": "write a prompt"}]
    with ChatServer(ExamplesRouter(expected)) as server:
        model = backend(server, cache_dir=tmp_path / "cache")
        first = model.generate_many([messages] * 3, temperature=1.0)
        assert server.requests == 1  # one call with n=3
        again = backend(server, cache_dir=tmp_path / "cache").generate_many([messages] * 3, temperature=1.0)
        assert server.requests == 1
        model.generate(messages, temperature=0.0)
        model.generate(messages, temperature=0.0)
        assert server.requests == 2
    assert all(r.record.cache_hit for r in again) and not any(r.record.cache_hit for r in first)


class Sampler:
    """A sampling endpoint: each choice names the seed it was drawn with (the server asks choice i with seed + i),
    10 prompt tokens counted once and 3 per choice; `n_asked` lists the `n` of every request it answered."""

    model_name = "scripted"

    def __init__(self) -> None:
        self.n_asked: list[int] = []

    def respond(self, request):
        self.n_asked.append(int(request.get("n") or 1))
        return {"role": "assistant", "content": f"sample drawn with seed {request.get('seed')}"}, 10, 3


class RefusingN(Sampler):
    """An endpoint without `n`: more than one choice is OpenAI's 400 naming the param."""

    def respond(self, request):
        if int(request.get("n") or 1) > 1:
            raise ChatRequestError(400, "n: only 1 choice is supported by this endpoint", param="n",
                                   code="invalid_value")
        return super().respond(request)


def test_the_samples_of_one_prompt_are_one_call_with_n_and_each_is_cached(tmp_path):
    messages = [{"role": "user", "content": "write a prompt"}]
    responder = Sampler()
    with ChatServer(responder) as server:
        first = backend(server, cache_dir=tmp_path / "cache").generate_many([messages] * 3, temperature=1.0)
        assert server.requests == 1 and set(responder.n_asked) == {3}
        again = backend(server, cache_dir=tmp_path / "cache").generate_many([messages] * 3, temperature=1.0)
        assert server.requests == 1
        more = backend(server, cache_dir=tmp_path / "cache").generate_many([messages] * 4, temperature=1.0)
        assert server.requests == 2 and responder.n_asked[-1] == 1  # only sample 3 was missing: asked alone
    assert len({c.text for c in first}) == 3 and not any(c.error or c.notice for c in first)
    assert [c.text for c in again] == [c.text for c in more[:3]] == [c.text for c in first]
    assert all(c.record.cache_hit for c in again) and not any(c.record.cache_hit for c in first)
    # the call's usage (10 prompt tokens counted once, 3 x 3 completion tokens) split among its samples
    assert [(c.record.tokens_in, c.record.tokens_out) for c in first] == [(4, 3), (3, 3), (3, 3)]
    assert [(c.record.tokens_in, c.record.tokens_out) for c in again] == [(4, 3), (3, 3), (3, 3)]
    assert [c.record.attempts for c in first] == [1, 1, 1]


def test_greedy_copies_of_one_prompt_are_one_call_without_n(tmp_path):
    messages = [{"role": "user", "content": "judge this"}]
    responder = Sampler()
    with ChatServer(responder) as server:
        replies = backend(server).generate_many([messages] * 3, temperature=0.0)
        assert server.requests == 1 and responder.n_asked == [1]
    assert len({c.text for c in replies}) == 1
    assert [c.record.cache_hit for c in replies] == [False, True, True]


def test_an_endpoint_refusing_n_gets_one_call_per_sample_from_then_on_said_once(tmp_path):
    messages = [{"role": "user", "content": "write a prompt"}]
    responder = RefusingN()
    with ChatServer(responder) as server:
        model = backend(server, cache_dir=tmp_path / "cache")
        first = model.generate_many([messages] * 3, temperature=1.0)
        assert server.requests == 4  # the refused call with n=3, then three calls
        later = model.generate_many([[{"role": "user", "content": "another"}]] * 2, temperature=1.0)
        assert server.requests == 6 and responder.n_asked == [1] * 5
    assert not model.choices_per_call
    assert not any(c.error for c in [*first, *later]) and len({c.text for c in first}) == 3
    notices = [c.notice for c in [*first, *later] if c.notice]
    assert len(notices) == 1 and "takes no n" in notices[0] and "only 1 choice" in notices[0]
    assert first[0].notice


class OneChoice(BaseHTTPRequestHandler):
    """An endpoint that ignores `n`: every reply has one choice."""

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        OneChoice.asked.append(request.get("n"))
        send_json(self, 200, {"choices": [{"index": 0, "message": {"role": "assistant",
                                                                   "content": f"seed {request.get('seed')}"}}],
                              "usage": {"prompt_tokens": 10, "completion_tokens": 3}})

    def log_message(self, *args) -> None:
        pass


def test_an_endpoint_answering_fewer_choices_than_n_keeps_them_and_asks_the_rest_alone():
    OneChoice.asked = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), OneChoice)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        model = OpenAICompatibleModel(Endpoint("scripted", f"http://127.0.0.1:{server.server_address[1]}/v1", SECRET),
                                      retry=FAST_RETRY)
        replies = model.generate_many([[{"role": "user", "content": "write a prompt"}]] * 3, temperature=1.0)
    finally:
        server.shutdown()
    assert OneChoice.asked[0] == 3 and sorted(OneChoice.asked[1:], key=str) == [None, None]
    assert [c.text for c in replies] == ["seed 0", "seed 1", "seed 2"]
    assert [bool(c.notice) for c in replies] == [True, False, False] and "the reply has 1" in replies[0].notice


@pytest.mark.parametrize("status, message, param, refused", [
    (400, "n: only 1 choice is supported", "n", True),
    (400, "Only n=1 is supported", None, True),
    (422, "Unrecognized request arguments supplied: n", None, True),
    (400, "'n' is not supported with this model", None, True),
    (400, "messages[0].content: missing", "messages[0].content", False),
    (400, "model: nano is not available", None, False),
    (500, "n must be 1", None, False),
])
def test_only_a_refusal_naming_n_reads_as_no_n(status, message, param, refused):
    assert says_no_choices(status, message, param) is refused


def test_accounting_is_stored_and_the_key_is_never_written(tmp_path, bundled_case_file, expected, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    db_path = tmp_path / "store.db"
    messages = []
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"prices": {"scripted": {"input": 1000.0, "output": 2000.0}}}))
    with ChatServer(ExamplesRouter(expected)) as server:
        result = optimize(cases=[bundled_case_file], model="scripted", base_url=server.base_url,
                          db=f"sqlite:///{db_path}", config_file=config, progress=messages.append)
    report = result.report
    expected_cost = (report["tokens_in"] * 1000.0 + report["tokens_out"] * 2000.0) / 1e6
    assert report["cost_usd"] == pytest.approx(expected_cost) and report["cost_usd"] > 0
    assert report["tokens_in"] == 40 * report["model_calls"]
    stored = Store(f"sqlite:///{db_path}").run(result.run_id)
    assert stored.config["model"] == "scripted" and stored.config["base_url"] == server.base_url
    cache_dir = Path(__import__("os").environ["PROMPTOPT_CACHE_DIR"])
    written = [db_path.read_bytes()] + [p.read_bytes() for p in cache_dir.rglob("*.json")]
    exported = CliRunner().invoke(main, ["export", result.run_id, "--format", "json", "--db", f"sqlite:///{db_path}"])
    assert len(written) > 1
    for blob in [*written, exported.output.encode(), "\n".join(messages).encode(), repr(result).encode()]:
        assert SECRET.encode() not in blob


def test_token_and_dollar_budgets_stop_the_search(tmp_path, bundled_case_file, expected):
    with ChatServer(ExamplesRouter(expected)) as server:
        model = backend(server)
        result = optimize(cases=[bundled_case_file], model=model, db=f"sqlite:///{tmp_path / 'a.db'}", budget_tokens=2000)
    assert any("token budget" in s["message"] for s in result.report["steps"])
    assert result.best_prompt == result.seed_prompt


def test_settings_precedence_and_missing_key():
    config = {"task_model": {"model": "deepseek-chat", "base_url": "https://api.deepseek.com",
                             "api_key_env": "DEEPSEEK_API_KEY"}}
    env = {"OPENAI_API_KEY": "sk-openai", "DEEPSEEK_API_KEY": "sk-deep", "OPENAI_BASE_URL": "https://x.test/v1"}
    from_config = resolve_model_settings("task_model", config=config, environ=env)
    assert (from_config.model, from_config.base_url, from_config.api_key) == \
        ("deepseek-chat", "https://api.deepseek.com", "sk-deep")
    flagged = resolve_model_settings("task_model", model="qwen-plus", base_url="https://q.test/v1", api_key="k",
                                     config=config, environ=env)
    assert (flagged.model, flagged.base_url, flagged.api_key) == ("qwen-plus", "https://q.test/v1", "k")
    from_env = resolve_model_settings("optimizer_model", model="gpt-4o", config=config, environ=env)
    assert (from_env.base_url, from_env.api_key) == ("https://x.test/v1", "sk-openai")
    assert resolve_model_settings("task_model", environ=env).local
    assert "sk-" not in repr(from_config)
    with pytest.raises(ModelSettingsError, match="OPENAI_API_KEY"):
        resolve_model_settings("task_model", model="gpt-4o", environ={})
    local = resolve_model_settings("task_model", model="embedded", base_url="http://127.0.0.1:8400/v1", environ={})
    assert not local.local and local.api_key is None
    assert load_model(local).name == "embedded"


def test_price_table(tmp_path):
    prices = load_prices()
    assert prices.cost("gpt-4o-mini-2024-07-18", 1_000_000, 0) == pytest.approx(0.15)
    assert prices.cost("my-own-model", 10**6, 10**6) == 0.0 and prices.price("my-own-model") is None
    custom = tmp_path / "prices.json"
    custom.write_text(json.dumps({"my-own-model": {"input": 1, "output": 3}}))
    assert load_prices(custom).cost("my-own-model", 10**6, 10**6) == pytest.approx(4.0)
    custom.write_text(json.dumps({"my-own-model": {"input": "cheap"}}))
    with pytest.raises(PriceFileError, match="my-own-model"):
        load_prices(custom)


def test_estimate_prints_calls_tokens_and_cost_without_calling_anything(bundled_case_file):
    result = CliRunner().invoke(main, ["run", "--cases", str(bundled_case_file), "--model", "gpt-4o-mini", "--estimate",
                                       "--json"], env={"OPENAI_API_KEY": ""})
    assert result.exit_code == 0, result.output
    estimate = json.loads(result.output.strip().splitlines()[-1])
    assert estimate["calls"] > 100 and estimate["tokens_in"] > estimate["calls"] * 100
    assert estimate["cost_usd"] > 0 and estimate["price_known"]
    assert estimate["judge_calls"] == 0


def test_estimate_counts_a_judges_calls_as_the_budget_does(bundled_case_file):
    """A judge scores every case the task model answers, so it doubles the calls the budget will count."""
    base = ["run", "--cases", str(bundled_case_file), "--model", "gpt-4o-mini", "--estimate", "--json"]
    plain = json.loads(CliRunner().invoke(main, base, env={"OPENAI_API_KEY": ""}).output.strip().splitlines()[-1])
    result = CliRunner().invoke(main, [*base, "--evaluator", "tool_name", "--evaluator", "judge",
                                       "--judge-model", "gpt-4o"], env={"OPENAI_API_KEY": ""})
    assert result.exit_code == 0, result.output
    judged = json.loads(result.output.strip().splitlines()[-1])
    assert judged["judge_calls"] == plain["calls"] and judged["calls"] == 2 * plain["calls"]
    assert judged["tokens_in"] > plain["tokens_in"] and judged["cost_usd"] > plain["cost_usd"]
    text = CliRunner().invoke(main, [*base[:-1], "--evaluator", "judge"], env={"OPENAI_API_KEY": ""})
    assert f"expected model calls: at most {2 * plain['calls']} (of them {plain['calls']} the judge's)" in text.output


def test_estimate_counts_and_prices_the_optimizer_models_calls(bundled_case_file):
    """OPRO's samples are optimizer calls the budget counts, each at its full reply budget, at the optimizer's price."""
    base = ["run", "--cases", str(bundled_case_file), "--model", "gpt-4o-mini", "--strategy", "opro", "--steps", "3",
            "--candidates", "4", "--estimate", "--json"]

    def estimate(*more: str) -> dict:
        result = CliRunner().invoke(main, [*base, *more], env={"OPENAI_API_KEY": ""})
        assert result.exit_code == 0, result.output
        return json.loads(result.output.strip().splitlines()[-1])

    cheap, dear = estimate("--optimizer-model", "gpt-4o-mini"), estimate("--optimizer-model", "gpt-4o")
    assert cheap["optimizer_calls"] == dear["optimizer_calls"] == 3 * 4
    assert cheap["tokens_out"] >= 12 * 1024 and dear["cost_usd"] > cheap["cost_usd"]
    demos = estimate("--strategy", "demos")
    assert demos["optimizer_calls"] == 0
    short = CliRunner().invoke(main, [*base[:-1], "--budget-calls", "10"], env={"OPENAI_API_KEY": ""})
    assert "warning: --budget-calls 10 cannot cover scoring the seed prompt" in short.output


class EchoKey401(BaseHTTPRequestHandler):
    """An endpoint that refuses every call and echoes the key it was sent, as some gateways do."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        send_json(self, 401, {"error": {"message": f"Incorrect API key provided: {self.headers.get('authorization')}",
                                        "type": "invalid_request_error"}})

    def log_message(self, *args) -> None:
        pass


def test_a_key_echoed_by_the_endpoint_is_neither_stored_nor_printed(tmp_path, bundled_case_file, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoKey401)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    db_path = tmp_path / "store.db"
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    try:
        result = CliRunner().invoke(main, ["run", "--cases", str(bundled_case_file), "--model", "scripted",
                                           "--base-url", f"http://127.0.0.1:{server.server_address[1]}/v1",
                                           "--db", f"sqlite:///{db_path}"])
    finally:
        server.shutdown()
    assert result.exit_code == 1 and "AuthenticationError 401" in result.output and "[redacted]" in result.output
    assert SECRET not in result.output
    assert SECRET.encode() not in db_path.read_bytes()
