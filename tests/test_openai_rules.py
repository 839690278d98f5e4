"""OpenAI's request rules, enforced by the local server and kept by everything promptopt sends: a case whose
context holds an earlier tool call and its result (from an OpenAI log, a ShareGPT file, a case file or a store
written before) reaches the endpoint as an assistant `tool_calls` message answered by `tool` messages with its ids;
the strict `ChatServer` refuses what OpenAI refuses, with OpenAI's error body, through the real `openai` SDK; and a
run switches to the text protocol only when the endpoint says it has no tool calling, saying so once."""
from __future__ import annotations

import hashlib
import json
from csv import writer
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner

from promptopt.api import import_case_files
from promptopt.case import Case, ToolCall
from promptopt.chat_messages import TOOL_RESULT_PREFIX, normalize_context
from promptopt.chat_request import ChatRequestError, check_messages
from promptopt.cli import main
from promptopt.models.openai_compat import Endpoint, OpenAICompatibleModel
from promptopt.models.retry import RetryPolicy
from promptopt.models.tool_support import says_no_tool_calling
from promptopt.runs.case_import import CaseFileError
from promptopt.runs.store import Store
from promptopt.runs.tables import CaseRow
from promptopt.server import ChatServer
from tests.fakes import ExamplesRouter
from tests.scripted_runs import Stalling, interrupted_at_first_call, run_command
from tests.support import write_jsonl

POINTS = {"type": "function", "function": {"name": "get_member_points", "arguments": "{}"}}
TOOL = {"type": "function", "function": {"name": "get_member_points", "description": "Member points.",
                                         "parameters": {"type": "object", "properties": {}}}}
VALID = {"model": "scripted", "tools": [TOOL], "messages": [
    {"role": "system", "content": "You help shoppers."},
    {"role": "user", "content": "how many points do I have?"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_a", **POINTS}, {"id": "call_b", **POINTS}]},
    {"role": "tool", "tool_call_id": "call_a", "content": '{"points": 120}'},
    {"role": "tool", "tool_call_id": "call_b", "content": '{"points": 120}'},
    {"role": "assistant", "content": "You have 120 points."},
    {"role": "user", "content": "and what can I buy with them?"}]}


class Echo:
    """Answers every request with a short text."""

    model_name = "scripted"

    def respond(self, request):
        return {"role": "assistant", "content": "ok"}, 10, 2


def changed(path: str, value) -> dict:
    """`VALID` with the value at `path` (`messages.3.tool_call_id`) replaced, or removed when `value` is ...;
    a list index past the end appends."""
    body = json.loads(json.dumps(VALID))
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = body
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    elif isinstance(node, list) and last == len(node):
        node.append(value)
    else:
        node[last] = value
    return body


def client(server: ChatServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0)


@pytest.fixture(scope="module")
def strict():
    with ChatServer(Echo()) as server:
        yield server


def test_a_valid_conversation_with_tool_calls_is_answered_with_n_choices(strict):
    reply = client(strict).chat.completions.create(**{**VALID, "n": 3, "temperature": 2, "tool_choice": "auto"})
    assert [c.index for c in reply.choices] == [0, 1, 2] and reply.choices[2].message.content == "ok"
    assert reply.usage.prompt_tokens == 10 and reply.usage.completion_tokens == 6


@pytest.mark.parametrize("path, value, param, words", [
    ("messages.3.tool_call_id", ..., "messages[3].tool_call_id", "missing"),
    ("messages.3.tool_call_id", "call_zzz", "messages[3].tool_call_id", "no call 'call_zzz' awaits"),
    ("messages.2.tool_calls", [{"id": "call_a", **POINTS}], "messages[4].tool_call_id", "preceding message"),
    ("messages.4", {"role": "user", "content": "hm"}, "messages[2].tool_calls", "not answered: call_b"),
    ("messages.2.tool_calls.0.id", ..., "messages[2].tool_calls[0].id", "missing"),
    ("messages.2.tool_calls.0.type", "tool", "messages[2].tool_calls[0].type", "must be 'function'"),
    ("messages.2.tool_calls.0.function.name", ..., "messages[2].tool_calls[0].function.name", "missing"),
    ("messages.2.tool_calls.0.function.arguments", {}, "messages[2].tool_calls[0].function.arguments", "string"),
    ("messages.1.content", None, "messages[1].content", "missing"),
    ("messages.7", {"role": "assistant", "content": None, "tool_calls": [{"id": "c", **POINTS}]},
     "messages[7].tool_calls", "not answered: c"),
    ("tools.0.type", ..., "tools[0].type", "must be 'function'"),
    ("tools.0.function.name", "get member points", "tools[0].function.name", "does not match pattern"),
    ("tools.0.function.parameters", {"type": "string"}, "tools[0].function.parameters", "type: \"object\""),
    ("tools.0.function.parameters", {"type": "object", "properties": 5}, "tools[0].function.parameters",
     "invalid schema"),
    ("tools", ..., "tool_choice", "only allowed when 'tools' are specified"),
    ("n", 0, "n", "at least 1"),
    ("n", 1.5, "n", "must be an integer"),
    ("n", 129, "n", "at most 128"),
    ("temperature", 2.5, "temperature", "from 0 to 2"),
    ("temperature", -0.1, "temperature", "from 0 to 2"),
])
def test_each_rule_openai_enforces_is_refused_naming_its_param(strict, path, value, param, words):
    body = {**changed(path, value), "tool_choice": "auto"}
    with pytest.raises(openai.BadRequestError) as refused:
        client(strict).chat.completions.create(**body)
    assert refused.value.param == param and refused.value.body["type"] == "invalid_request_error"
    assert refused.value.body["message"].startswith(f"{param}: ") and words in refused.value.body["message"]
    assert refused.value.code


LEGACY = [{"role": "user", "content": "我有多少积分？"}, {"role": "assistant", "content": "get_member_points({})"},
          {"role": "tool", "content": '{"points": 120}'}, {"role": "assistant", "content": "您有 120 积分。"}]
"""A context as stores before normalisation held it: the call as assistant text, its result without an id."""


@pytest.mark.parametrize("context", [
    LEGACY,
    [{"role": "assistant", "content": "Let me check."}, {"role": "tool", "content": "42"}],
    [{"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "a", "arguments": {"x": 1}}},
                                                           {"id": "k", "function": {"name": "b", "arguments": "{}"}}]},
     {"role": "tool", "tool_call_id": "k", "content": "r"}, {"role": "user", "content": "next"}],
    [{"role": "assistant", "content": "", "function_call": {"name": "a", "arguments": "{}"}},
     {"role": "function", "name": "a", "content": "r"}],
    [{"role": "assistant", "content": None, "tool_calls": [{"id": "x", **POINTS}, {"id": "x", **POINTS}]},
     {"role": "tool", "content": "1"}, {"role": "tool", "content": "2"}, {"role": "tool", "content": "3"}],
    [{"role": "assistant", "content": "get_member_points({})"}, {"role": "user", "content": "no result was logged"}],
], ids=["legacy-text-call", "result-of-an-unknown-call", "unanswered-call", "function-call", "repeated-ids",
        "text-call-without-result"])
def test_any_context_normalises_to_what_openai_accepts(context):
    normal = normalize_context(context)
    check_messages([*normal, {"role": "user", "content": "now?"}])
    assert normalize_context(normal) == normal
    assert Case("now?", ToolCall(), context=tuple(context)).content_hash() == \
        Case("now?", ToolCall(), context=normal).content_hash()


def test_a_legacy_context_becomes_a_real_call_with_a_made_up_id():
    user, call, result, reply = normalize_context(LEGACY)
    assert call == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1_0", "type": "function", "function": {"name": "get_member_points", "arguments": "{}"}}]}
    assert result == {"role": "tool", "tool_call_id": "call_1_0", "content": '{"points": 120}'}
    assert (user, reply) == (LEGACY[0], LEGACY[3])
    orphan = normalize_context([{"role": "tool", "content": "42"}])
    assert orphan == ({"role": "user", "content": TOOL_RESULT_PREFIX + "42"},)


def log_records(cases: list[Case], first: int) -> list[dict]:
    """A gateway log: each record asks about points (a tool call, with or without ids, once with a second call in
    parallel), then the case's query, corrected to its expected call."""
    records = []
    for index, case in enumerate(cases, start=first):
        calls = [dict(POINTS, **({"id": f"call_{index:03d}"} if index % 2 else {}))]
        if index % 5 == 0:
            calls.append({"id": f"promo_{index}", "type": "function",
                          "function": {"name": "get_promotions", "arguments": '{"category": "水果"}'}})
        results = [{"role": "tool", "content": '{"points": 120}', **({"tool_call_id": c["id"]} if "id" in c else {})}
                   for c in calls]
        records.append({"messages": [
            {"role": "system", "content": "你是鲜达超市的购物助手。"}, {"role": "user", "content": "我有多少积分？"},
            {"role": "assistant", "content": None, "tool_calls": calls}, *results,
            {"role": "assistant", "content": "您有 120 积分。"}, {"role": "user", "content": case.query}],
            "response": {"role": "assistant", "content": "好的"}, "expected": case.expected.to_json()})
    return records


def sharegpt_records(cases: list[Case]) -> list[dict]:
    """ShareGPT conversations: an order lookup (`function_call`, `observation`), then the case's query, corrected."""
    call = json.dumps({"name": "get_order_status", "arguments": {"order_id": "FM88"}})
    return [{"conversations": [
        {"from": "human", "value": "查一下订单 FM88"}, {"from": "function_call", "value": call},
        {"from": "observation", "value": '{"status": "已签收"}'}, {"from": "gpt", "value": "您的订单已签收。"},
        {"from": "human", "value": case.query},
        {"from": "gpt", "value": "好的", "expected": case.expected.to_json()}]} for case in cases]


@pytest.fixture
def logs(tmp_path, bundled_cases):
    """An OpenAI log and a ShareGPT file of 40 cases each whose context holds a tool call and its result, and the
    scripted endpoint's answers (query -> tool)."""
    picked = bundled_cases[::3][:80]
    gateway = write_jsonl(tmp_path / "gateway.jsonl", log_records(picked[:40], 1))
    sharegpt = write_jsonl(tmp_path / "sharegpt.jsonl", sharegpt_records(picked[40:]))
    return [str(gateway), str(sharegpt)], {c.query: c.expected.name for c in picked}


class ContextChecking(ExamplesRouter):
    """The scripted endpoint, noting each earlier tool call it is shown (as an assistant `tool_calls` message with
    the `tool` messages after it) and each text-protocol request; tool-less requests without a tool list (the
    optimizer's) get the seed prompt back with an example call of every tool."""

    def __init__(self, expected: dict[str, str], seed_prompt: str = "", tools: tuple[str, ...] = ()) -> None:
        super().__init__(expected)
        self.seed_prompt, self.tools = seed_prompt, tools
        self.calls_shown: list[tuple[dict, list[dict]]] = []
        self.text_protocol = 0

    def respond(self, request):
        messages = request["messages"]
        for index, message in enumerate(messages):
            if message.get("tool_calls"):
                answers = [m for m in messages[index + 1:index + 1 + len(message["tool_calls"])]]
                self.calls_shown.append((message, answers))
        system = "\n".join(m["content"] for m in messages if m["role"] == "system")
        if not request.get("tools") and "## Tools" in system:
            self.text_protocol += 1
        elif not request.get("tools") and self.seed_prompt:
            examples = "\n".join(f'User: ...\nAssistant: {{"name": "{tool}"}}' for tool in self.tools)
            prompt = f"<PROMPT>{self.seed_prompt.rstrip()}\n{examples}\n</PROMPT>"
            return {"role": "assistant", "content": prompt}, 50, 40
        return super().respond(request)

    def assert_every_call_arrived_answered(self) -> None:
        assert self.calls_shown, "no request carried an earlier tool call"
        for call, answers in self.calls_shown:
            assert [a["tool_call_id"] for a in answers] == [c["id"] for c in call["tool_calls"]]
            assert all(a["role"] == "tool" for a in answers)


def refused(lines: list[str]) -> list[str]:
    """The server's access-log lines of requests it answered with 4xx."""
    return [line for line in lines if '" 4' in line]


def last_json(result) -> dict:
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.output.strip().splitlines()[-1])


def test_runs_and_checks_on_imported_tool_contexts_send_only_what_openai_accepts(tmp_path, logs, task):
    files, expected = logs
    db = f"sqlite:///{tmp_path / 'store.db'}"
    responder = ContextChecking(expected, task.seed_prompt, tuple(t["function"]["name"] for t in task.tools))
    lines: list[str] = []
    cases = [flag for path in files for flag in ("--cases", path)]
    with ChatServer(responder, log=lines.append) as server:
        model = ["--model", "scripted", "--base-url", server.base_url, "--db", db]
        demos = CliRunner().invoke(main, ["run", *cases, *model, "--steps", "1", "--json"])
        opro = CliRunner().invoke(main, ["run", *cases, *model, "--strategy", "opro", "--steps", "1", "--candidates",
                                         "2", "--train-sample", "16", "--optimizer-model", "scripted",
                                         "--optimizer-base-url", server.base_url, "--json"])
        prompt = tmp_path / "prompt.md"
        prompt.write_text(task.seed_prompt, encoding="utf-8")
        check = CliRunner().invoke(main, ["check", str(prompt), *cases, *model, "--json"])
    assert refused(lines) == []
    responder.assert_every_call_arrived_answered()
    assert responder.text_protocol == 0
    for result in (demos, opro, check):
        assert "text protocol" not in result.output
    demos, opro, check = last_json(demos), last_json(opro), last_json(check)
    assert demos["failed_calls"] == opro["failed_calls"] == 0 and demos["test_cases"] > 0
    assert opro["candidates"] >= 1 and opro["winner"]["test_accuracy"] > opro["seed"]["test_accuracy"]
    assert Store(db).count_cases() == 80
    stored = Store(db).cases()
    assert all(c.context[1]["tool_calls"] and c.context[2]["role"] == "tool" for c in stored)


def test_a_run_on_tool_contexts_resumes_with_only_valid_requests(tmp_path, logs):
    files, expected = logs
    db = f"sqlite:///{tmp_path / 'store.db'}"
    stalling = Stalling(expected)
    with ChatServer(stalling) as old:
        interrupted_at_first_call(run_command(db, Path(files[0]), old.base_url, "--cases", files[1]), stalling)
    (run,) = Store(db).runs()
    assert run.status == "interrupted"
    responder, lines = ContextChecking(expected), []
    with ChatServer(responder, log=lines.append) as moved:
        result = CliRunner().invoke(main, ["run", "--resume", run.id, "--db", db, "--base-url", moved.base_url,
                                           "--json"])
    assert result.exit_code == 0, result.output
    assert last_json(result)["failed_calls"] == 0 and Store(db).run(run.id).status == "finished"
    assert refused(lines) == [] and responder.text_protocol == 0
    responder.assert_every_call_arrived_answered()


class RejectingTools(ContextChecking):
    """An endpoint without tool calling: a request carrying `tools` is a 400 saying so."""

    def respond(self, request):
        if request.get("tools"):
            raise ValueError("tools are not supported")
        return super().respond(request)


def test_an_endpoint_without_tool_calling_switches_once_and_says_so(tmp_path, logs):
    files, expected = logs
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with ChatServer(RejectingTools(expected)) as server:
        result = CliRunner().invoke(main, ["run", *[f for p in files for f in ("--cases", p)], "--model", "scripted",
                                           "--base-url", server.base_url, "--db", db, "--steps", "1", "--json",
                                           "--concurrency", "8"])
    said = [line for line in result.output.splitlines() if "text protocol" in line]
    assert result.exit_code == 0, result.output
    assert len(said) == 1 and "tools are not supported" in said[0], said
    report = last_json(result)
    assert report["failed_calls"] == 0
    (seed_step, *_) = Store(db).steps(report["run_id"])
    assert seed_step.details["notices"] == [said[0].split("] ", 1)[-1]]


class StricterEndpoint(ContextChecking):
    """An endpoint that refuses a request for a rule of its own, naming a message, as OpenAI does."""

    def respond(self, request):
        raise ChatRequestError(400, "messages[3].tool_call_id: missing", param="messages[3].tool_call_id",
                               code="missing_required_parameter")


def test_a_refusal_of_the_request_itself_fails_that_call_and_switches_nothing(task):
    with ChatServer(StricterEndpoint({})) as server:
        model = OpenAICompatibleModel(Endpoint("scripted", server.base_url, "k"), retry=RetryPolicy(attempts=1))
        first, second = (model.route("p", task.tools, [[{"role": "user", "content": "hi"}]])[0] for _ in range(2))
    assert model.tool_protocol == "auto" and not first.notice and not second.notice
    assert first.error.startswith("BadRequestError 400") and "messages[3].tool_call_id" in first.error
    assert second.error == first.error


@pytest.mark.parametrize("status, message, param, switch", [
    (400, "tools are not supported", None, True),
    (400, "registry.ollama.ai/library/gemma:2b does not support tools", None, True),
    (400, "deepseek-reasoner does not support Function Calling", None, True),
    (400, "Unsupported parameter: 'tools' is not supported with this model.", "tools", True),
    (400, '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set', None, True),
    (400, "tools param requires --jinja flag", None, True),
    (400, "Missing parameter 'tool_call_id': messages with role 'tool' must have a 'tool_call_id'.",
     "messages.[3].tool_call_id", False),
    (400, "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
          "'tool_calls'.", "messages.[3].role", False),
    (400, "messages[3].tool_call_id: missing", None, False),
    (400, "Invalid schema for function 'get_points': [] is not of type 'object'", "tools[0].function.parameters",
     False),
    (400, "This model's maximum context length is 8192 tokens", "messages", False),
    (500, "tools are not supported", None, False),
])
def test_only_a_refusal_of_tool_calling_itself_reads_as_no_tool_calling(status, message, param, switch):
    assert says_no_tool_calling(status, message, param) is switch


def test_stores_written_before_keep_deduping_and_send_valid_context(tmp_path, bundled_cases, task):
    case = bundled_cases[0]
    record = log_records([case], 2)[0]  # even: the log gives no ids, as in the issue
    log = write_jsonl(tmp_path / "gateway.jsonl", [record])
    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(db)
    old = {"query": case.query, "context": LEGACY, "expected": case.expected.to_json()}  # as the old import stored
    digest = hashlib.sha256(json.dumps(old, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
    with store.session() as session, session.begin():
        session.add(CaseRow(content_hash=digest, query=case.query, context=old["context"],
                            expected_tool=case.expected.name, expected_arguments=dict(case.expected.arguments),
                            label="bad", tags=["openai"], source="gateway.jsonl:1#2"))
    (stored,) = store.cases()
    assert stored.context == normalize_context(LEGACY)
    again = import_case_files(store, [log], task.tools)
    assert store.count_cases() == 1 and again[0].id == stored.id
    responder, lines = ContextChecking({case.query: case.expected.name}), []
    prompt = tmp_path / "prompt.md"
    prompt.write_text(task.seed_prompt, encoding="utf-8")
    with ChatServer(responder, log=lines.append) as server:
        result = CliRunner().invoke(main, ["check", str(prompt), "--model", "scripted", "--base-url",
                                           server.base_url, "--db", db, "--json"])
    assert refused(lines) == [] and last_json(result)["cases"] == 1
    responder.assert_every_call_arrived_answered()


def test_case_files_take_openai_tool_calls_and_legacy_text_and_refuse_malformed_calls(tmp_path, task):
    openai_form = [{"role": "user", "content": "points?"},
                   {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", **POINTS}]},
                   {"role": "tool", "tool_call_id": "c1", "content": "120"}]
    path = write_jsonl(tmp_path / "cases.jsonl", [
        {"query": "and now?", "context": openai_form, "expected": {"tool": None}},
        {"query": "and then?", "context": LEGACY, "expected": {"tool": None}}])
    csv = tmp_path / "cases.csv"
    with csv.open("w", encoding="utf-8", newline="") as handle:
        writer(handle).writerows([["query", "context", "expected_tool"], ["and later?", json.dumps(LEGACY), ""]])
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    first, legacy, from_csv = import_case_files(store, [path, csv], task.tools)
    assert first.context[1]["tool_calls"][0]["id"] == "c1" and first.context[2]["tool_call_id"] == "c1"
    assert legacy.context == from_csv.context == normalize_context(LEGACY)
    broken = [{"role": "assistant", "content": None, "tool_calls": [{"function": {"arguments": "{}"}}]},
              {"role": "tool", "content": None}]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"query": "q", "context": broken, "expected": {"tool": None}}])
    with pytest.raises(CaseFileError) as error:
        import_case_files(store, [bad], task.tools)
    assert f"{bad}:1: context[0].tool_calls[0].function: must be" in str(error.value)
    assert f"{bad}:1: context[1].content: must be a string" in str(error.value)


def test_the_embedded_default_renders_earlier_calls_as_its_own_tool_call_turns(task):
    from promptopt.models.embedded import EmbeddedModel

    model = EmbeddedModel(weights="qwen2.5-coder-0.5b")
    conversation = [*normalize_context(LEGACY), {"role": "user", "content": "我能用积分换什么？"}]
    routed = model.route("你是鲜达超市的购物助手。", task.tools, [conversation])[0]
    assert routed.call.name and not routed.error
    rendered = model._suffix_text("你是鲜达超市的购物助手。", conversation)
    assert '<tool_call>\n{"name": "get_member_points", "arguments": {}}\n</tool_call>' in rendered
    assert '<tool_response>\n{"points": 120}\n</tool_response>' in rendered


def test_serve_passes_earlier_tool_calls_and_results_to_the_model(server, task):
    def ask(result: str):
        context = normalize_context([*LEGACY[:2], {"role": "tool", "content": result}])
        return client(server).chat.completions.create(
            model="embedded", tools=task.tools, messages=[*context, {"role": "user", "content": "帮我把草莓加入购物车"}])

    short, long = ask('{"points": 120}'), ask('{"points": 120, "expiring": "2026-12-31", "tier": "gold member"}')
    assert long.usage.prompt_tokens > short.usage.prompt_tokens  # the model read the result, not a dropped turn
