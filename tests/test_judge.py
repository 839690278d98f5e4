"""The LLM judge through the real `openai` SDK against a scripted judge behind a real local HTTP server."""
from __future__ import annotations

import json

from promptopt.api import optimize
from promptopt.case import Case, ToolCall
from promptopt.evaluators.judge import JudgeEvaluator, parse_judgement
from promptopt.models.openai_compat import Endpoint, OpenAICompatibleModel
from promptopt.models.response_cache import ResponseCache
from promptopt.runs.case_import import read_cases
from promptopt.runs.tables import ModelCallRow
from promptopt.runs.store import Store
from promptopt.server import ChatServer
from tests.fakes import ReplyRouter


class ScriptedJudge:
    """Passes an output whose tool is the expected one, fails it otherwise, with a rationale naming both; with
    `garbled`, answers prose without any verdict."""

    model_name = "judge-scripted"

    def __init__(self, garbled: bool = False) -> None:
        self.garbled = garbled
        self.requests = 0

    def respond(self, request):
        self.requests += 1
        text = request["messages"][-1]["content"]
        expected = text.split("Expected: ")[1].split("\n")[0]
        output = text.split("Assistant's output: ")[1]
        if self.garbled:
            return {"role": "assistant", "content": "I think it is probably fine, hard to say."}, 50, 9
        same = expected.split(";")[0].split(" with ")[0] == output.split(";")[0].split(" with ")[0]
        reply = {"verdict": "pass" if same else "fail", "score": 1 if same else 0.2,
                 "rationale": f"wanted {expected.split(' with ')[0]}, saw {output.split(' with ')[0]}"}
        return {"role": "assistant", "content": json.dumps(reply)}, 60, 20


def test_parse_judgement_reads_json_and_lines_and_refuses_prose():
    assert parse_judgement('{"verdict": "fail", "score": 0.3, "rationale": "wrong tool"}') == (0.3, "wrong tool")
    assert parse_judgement("Verdict: PASS\nRationale: the tool fits") == (1.0, "the tool fits")
    assert parse_judgement("score: 0.6") == (0.6, "")
    assert parse_judgement("score: 7 out of 10") is None
    assert parse_judgement("looks fine to me") is None


def test_judge_rationale_is_feedback_calls_are_budgeted_stored_and_cached(tmp_path, small_case_file, task):
    cases = read_cases(small_case_file, task.tools)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    judge = ScriptedJudge()
    with ChatServer(judge) as server:
        run = lambda: optimize(cases=[small_case_file], model=ReplyRouter(cases), db=db, steps=1,
                               evaluators=["tool_name", "judge"], all_must_pass=True, rubric="Right tool only.",
                               judge_model="judge-scripted", judge_base_url=server.base_url, budget_calls=400)
        first = run()
        requests_after_first = judge.requests
        second = run()
    store = Store(db)
    evaluations = store.evaluations(first.report["seed"]["candidate_id"]).values()
    assert evaluations and all(e.passed and e.scores == {"tool_name": 1.0, "judge": 1.0} for e in evaluations)
    assert all("judge: wanted tool" in e.feedback or "judge: wanted no tool" in e.feedback for e in evaluations)
    with store.session() as session:
        calls = session.query(ModelCallRow).filter_by(run_id=first.run_id, role="judge").all()
    evaluated = sum(len(store.evaluations(c.id)) for c in store.candidates(first.run_id))
    assert len(calls) == evaluated == requests_after_first and all(c.model == "judge-scripted" for c in calls)
    assert first.report["tokens_in"] >= 60 * len(calls)
    assert judge.requests == requests_after_first  # the re-run's verdicts all came from the response cache
    assert second.report["cache_hits"] >= len(calls) and second.report["new_model_calls"] <= second.report["model_calls"] - len(calls)
    assert store.run(first.run_id).config["judge_model"] == "judge-scripted"


def test_judge_calls_count_against_the_call_budget(tmp_path, small_case_file, task):
    cases = read_cases(small_case_file, task.tools)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with ChatServer(ScriptedJudge()) as server:
        result = optimize(cases=[small_case_file], model=ReplyRouter(cases), db=db, steps=1, evaluators=["judge"],
                          judge_model="judge-scripted", judge_base_url=server.base_url, budget_calls=40)
    # 22 seed training cases need 22 task calls and 22 judge calls: more than 40, so nothing is spent
    # (without the judge, 40 calls cover the seed's training and validation scoring)
    assert [s["message"] for s in result.report["steps"]] == \
        ["budget exhausted: call budget: 0 of 40 used, 44 more needed"]


def test_a_reply_without_verdict_is_a_failed_evaluation_not_a_crash(tmp_path):
    with ChatServer(ScriptedJudge(garbled=True)) as server:
        model = OpenAICompatibleModel(Endpoint("judge-scripted", server.base_url, "k"),
                                      cache=ResponseCache(tmp_path / "cache"))
        score = JudgeEvaluator(model)(Case("where is my order", ToolCall("get_order_status")), ToolCall("get_order_status"))
    assert score.value == 0.0 and "no verdict" in score.feedback and "probably fine" in score.feedback
    assert score.calls[0].role == "judge"
