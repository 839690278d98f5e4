"""`promptopt serve`: the embedded model behind the OpenAI chat-completions API, used through the real `openai`
SDK, for a short end-to-end run, and as the command a user starts."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import openai
import pytest

from promptopt.api import optimize
from promptopt.case import NO_TOOL
from promptopt.markup import protected_regions
from promptopt.runs.case_import import read_cases
from promptopt.runs.store import Store
from tests.support import case_record, write_jsonl

pytestmark = pytest.mark.model


def test_sdk_gets_tool_calls_text_and_the_model_list(server, task, embedded):
    client = openai.OpenAI(base_url=server.base_url, api_key="unused")
    assert [m.id for m in client.models.list().data] == ["embedded"]
    queries = ["我的订单到哪了 单号FM2024", "hello, how are you today?"]
    local = embedded.route("You are a shop assistant.", task.tools, [[{"role": "user", "content": q}] for q in queries])
    for query, expected in zip(queries, local):
        reply = client.chat.completions.create(
            model="embedded", tools=task.tools,
            messages=[{"role": "system", "content": "You are a shop assistant."}, {"role": "user", "content": query}])
        message = reply.choices[0].message
        served = message.tool_calls[0].function.name if message.tool_calls else NO_TOOL
        assert served == expected.call.name
        assert reply.usage.prompt_tokens == expected.record.tokens_in
    text = client.chat.completions.create(model="embedded", max_tokens=8,
                                          messages=[{"role": "user", "content": "Say hello."}])
    assert text.choices[0].message.content and text.usage.completion_tokens <= 8


def test_short_run_against_the_served_model(server, tmp_path, task, embedded):
    picked, seen = [], set()
    for path in task.case_files:
        for case in read_cases(path, task.tools):
            if case.expected.name not in seen and not case.context and len(case.query) < 40:
                seen.add(case.expected.name)
                picked.append(case)
    case_file = write_jsonl(tmp_path / "cases.jsonl", [case_record(c.query, c.expected.name) for c in picked])
    cases = read_cases(case_file, task.tools)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    result = optimize(cases=[case_file], model="embedded", base_url=server.base_url, db=db, steps=1, n_demos=4,
                      candidates=1)
    report = result.report
    assert report["status"] == "finished" and report["failed_calls"] == 0
    assert report["model_calls"] == server.requests > 0
    seed_local = embedded.route(result.seed_prompt, task.tools, [c.messages() for c in cases])
    stored = Store(db).evaluations(report["seed"]["candidate_id"])
    by_query = {c.query: r.call.name for c, r in zip(cases, seed_local)}
    store_cases = {c.id: c for c in Store(db).cases(stored)}
    assert {store_cases[i].query: e.predicted_tool for i, e in stored.items()} == \
        {store_cases[i].query: by_query[store_cases[i].query] for i in stored}


def test_promptopt_serve_command_answers_the_sdk(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "promptopt.cli", "serve", "--port", "0", "--no-arguments"],
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stderr.readline()
        match = re.search(r"at (http://\S+)", line)
        assert match, line
        client = openai.OpenAI(base_url=match.group(1), api_key="unused", timeout=120)
        reply = client.chat.completions.create(model="embedded", max_tokens=4,
                                               messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content is not None
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_opro_run_with_the_served_model_as_optimizer(server, tmp_path, small_case_file):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    messages = []
    result = optimize(cases=[small_case_file], strategy="opro", optimizer_model="embedded",
                      optimizer_base_url=server.base_url, db=db, steps=1, candidates=2, reply_tokens=48,
                      train_sample=8, progress=messages.append)
    report = result.report
    assert report["status"] == "finished"
    store = Store(db)
    (step,) = [s for s in store.steps(result.run_id) if s.step == 1]
    assert "<PROMPT>" in step.details["meta_prompt"] and "score:" in step.details["meta_prompt"]
    assert step.details["samples"]["samples"] == 2
    assert "opro: 2 samples from the optimizer model" in step.details["summary"]
    assert any("opro: 2 samples" in m for m in messages)
    opro = [c for c in store.candidates(result.run_id) if c.operator == "opro"]
    assert all(c.details["raw_reply"] for c in opro)
    # whatever the small model wrote, a candidate it made keeps the seed's protected region (spliced back)
    seed_regions = protected_regions(result.seed_prompt)
    assert all(protected_regions(c.prompt) == seed_regions for c in opro if c.prompt)
    assert all(c.rejection for c in opro if c.status == "invalid")


def test_apo_run_with_the_served_model_as_optimizer(server, tmp_path, small_case_file):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    result = optimize(cases=[small_case_file], strategy="apo", optimizer_model="embedded",
                      optimizer_base_url=server.base_url, db=db, steps=1, beam_width=1, minibatch=8, gradients=1,
                      error_sample=2, paraphrases=1, max_successors=2, eval_budget=3, pull_size=4, reply_tokens=40)
    assert result.report["status"] == "finished"
    store = Store(db)
    (step,) = [s for s in store.steps(result.run_id) if s.step == 1]
    assert step.details["apo"]["gradients"] == 1 and "apo:" in step.message
    successors = [c for c in store.candidates(result.run_id) if c.operator.startswith("apo")]
    assert successors
    for candidate in successors:
        assert candidate.details["gradient"] and candidate.details["parent"] == result.report["seed"]["candidate_id"]
        assert candidate.parent_ids == [candidate.details["parent"]]
    assert sum(step.details["bandit"]["pulls"]) <= 3
