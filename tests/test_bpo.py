"""BPO with a scripted optimizer model and a scripted task model, on a real SQLite store: feedback groups, pair
construction and filtering, the stored analysis, the chat-format export, preference import, and rewrites."""
from __future__ import annotations

import importlib
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from promptopt.cli import main
from promptopt.evaluators.tool_call import ToolCallEvaluator
from promptopt.optimizer.loop import RunConfig, run_optimization
from promptopt.optimizer.strategies.bpo import BpoStrategy
from promptopt.optimizer.strategies.bpo.pairs import (
    REWRITER_SYSTEM,
    export_jsonl,
    pair_rejection,
    read_chat_pairs,
    read_preferences,
    split_reply,
)
from promptopt.optimizer.strategies.bpo.rewriter import Rewriter, retrieve
from promptopt.runs.case_import import CaseFileError
from promptopt.runs.store import Store
from promptopt.runs.tables import ModelCallRow
from promptopt.tasks.tool_routing import ToolRoutingTask
from tests.fakes import PROTECTED, SEED, TOOLS, FakeWriter, RuleRouter, prompt_with
from tests.support import write_jsonl

ANALYSIS = "Step 1: the bad responses all chose none. Step 2: the prompt never says when to call a tool."

BPO_COMMANDS = importlib.import_module("promptopt.cli.bpo")
"""The module (`promptopt.cli.bpo` as an attribute is the command group it defines)."""


def tagged(prompt: str) -> str:
    return f"{ANALYSIS}\n<PROMPT>{prompt}</PROMPT>"


class BpoScript(FakeWriter):
    """Answers analysis requests from `analyses` in turn and rewrite requests from `rewrites` in turn; records
    both kinds of request."""

    name = "scripted-optimizer"

    def __init__(self, analyses: list[str], rewrites: list[str]) -> None:
        self.analyses, self.rewrites = list(analyses), list(rewrites)
        self.analysis_requests: list[str] = []
        self.rewrite_requests: list[list[dict[str, str]]] = []

    def reply(self, messages, temperature, sample_index):
        if messages[0]["content"] == REWRITER_SYSTEM:
            self.rewrite_requests.append(messages)
            return self.rewrites.pop(0)
        self.analysis_requests.append(messages[0]["content"])
        return self.analyses.pop(0)


def run_bpo(store, cases, script, **options):
    strategy = BpoStrategy(**options)
    return run_optimization(store, ToolRoutingTask(tools=TOOLS), SEED, cases, RuleRouter(cases), strategy,
                            ToolCallEvaluator(), RunConfig(steps=1, max_broken=0), optimizer_model=script)


def test_pairs_are_filtered_stored_and_rewrites_accepted(store, scripted_cases):
    script = BpoScript(
        analyses=[tagged(prompt_with(1)),                                  # kept
                  tagged(prompt_with(4) + "Be extremely thorough. " * 40),  # length ratio > 3
                  tagged(prompt_with(2).replace("manage_cart", "the cart")),  # a tool dropped
                  tagged(SEED),                                            # identical to the original
                  tagged(prompt_with(1)),                                  # duplicate of the first
                  "I think the prompt is fine."],                           # no improved prompt
        rewrites=[prompt_with(3, 1), prompt_with(2, 2), prompt_with(3, 1)])
    report = run_bpo(store, scripted_cases, script, mode="aggressive", samples=3, feedback_groups=6, group_size=2)
    run_id = report["run_id"]

    # each group shows wrong cases (chosen vs right) and right ones, and asks for reasoning, then tags
    request = script.analysis_requests[0]
    assert request.count("Bad response: answer without a tool") == 2 and request.count("It should have been: call") == 2
    assert request.count("Good response: answer without a tool") == 2
    assert "step by step" in request and "<PROMPT>" in request and "manage_cart" in request
    assert "protected section of 1 line(s)" in request and "No medical advice" not in request  # described, not shown

    pairs = Store(store.url).bpo_pairs(run_id, kept_only=False)
    assert [p.kept for p in pairs] == [True, False, False, False, False, False]
    assert [p.rejection.split(":")[0] for p in pairs[1:]] == [
        "length ratio outside [0.5, 3.0]", "no longer names tool(s)",
        "identical to the original", "duplicate of an earlier pair", "no improved prompt in the reply"]
    # a pair holds the editable texts: the protected region is neither shown nor learnt
    assert pairs[0].analysis == ANALYSIS and pairs[0].original == SEED.replace(PROTECTED, "").strip()
    assert pairs[0].optimized == prompt_with(1).replace(PROTECTED, "").strip()
    assert pairs[0].source == "store-feedback" and len(pairs[0].details["wrong_case_ids"]) == 2
    assert [p.id for p in store.bpo_pairs(run_id)] == [pairs[0].id]

    # the prompted rewriter is shown the kept pair as a demonstration, then the incumbent
    (rewrite,) = {json.dumps(r) for r in script.rewrite_requests}
    rewrite = json.loads(rewrite)
    assert [m["role"] for m in rewrite] == ["system", "user", "assistant", "user"]
    assert rewrite[2]["content"] == pairs[0].optimized and rewrite[3]["content"] == pairs[0].original

    # aggressive: three samples, the duplicate dropped, both others scored; the best (3 rules) is accepted
    candidates = [c for c in store.candidates(run_id) if c.operator == "bpo-prompted"]
    assert len(candidates) == 2
    assert all(c.details["pair_ids"] == [p.id for p in pairs] and c.details["mode"] == "aggressive" for c in candidates)
    assert all(c.parent_ids == [report["seed"]["candidate_id"]] for c in candidates)
    winner = store.candidate(report["winner"]["candidate_id"])
    assert winner.prompt == prompt_with(3, 1) and winner.status == "accepted"  # spliced back as the seed is laid out
    assert report["winner"]["test_accuracy"] > report["seed"]["test_accuracy"]
    step = store.steps(run_id)[1]
    assert step.details["summary"].startswith("bpo: 6 feedback group(s) -> 1 of 6 pairs kept")
    assert "3 aggressive rewrite(s) from the prompted rewriter: 2 scored, 0 invalid, 1 duplicates" in \
        step.details["summary"]

    # export: chat format, kept pairs only, reads back
    exported = export_jsonl([(p.original, p.optimized) for p in store.bpo_pairs(run_id)])
    (line,) = exported.splitlines()
    assert [m["role"] for m in json.loads(line)["messages"]] == ["system", "user", "assistant"]


def test_every_rewrite_invalid_is_said_plainly(store, scripted_cases):
    script = BpoScript(analyses=["no tags here"], rewrites=["You help shoppers."])
    report = run_bpo(store, scripted_cases, script, feedback_groups=1)
    assert report["status"] == "finished" and report["winner"]["candidate_id"] == report["seed"]["candidate_id"]
    step = store.steps(report["run_id"])[1]
    assert "0 of 1 pairs kept (1x no improved prompt in the reply)" in step.message
    assert "1 stable rewrite(s) from the prompted rewriter: 0 scored, 1 invalid (1x no longer names tool(s))" in \
        step.message
    assert step.message.endswith("no candidate to validate")


def test_pair_filters():
    original = "Route requests to get_order_status or find_stores, and answer in the language of the user.\n" + PROTECTED
    longer = original + " Say which tool fits."
    assert pair_rejection(original, longer, ["get_order_status"]) is None
    assert pair_rejection(original, "  " + original + "\n", []) == "identical to the original"
    assert pair_rejection(original, "Route requests.", []).startswith("length ratio outside [0.5, 3.0]: 0.")
    assert pair_rejection(original, PROTECTED, []) == "no improved prompt in the reply"
    assert pair_rejection(original, longer.replace("find_stores", "stores"), ["find_stores"]) == \
        "no longer names tool(s): find_stores"
    assert split_reply("why\n<PROMPT>better</PROMPT>") == ("why", "better")
    assert split_reply("just prose") == ("just prose", "")


def test_retrieval_prefers_similar_originals():
    pairs = [("cooking recipes dinner", "a"), ("order delivery status", "b"), ("delivery order tracking", "c")]
    assert retrieve(pairs, "where is my order delivery status", 2) == [("delivery order tracking", "c"),
                                                              ("order delivery status", "b")]


def test_preference_import_and_chat_pairs(tmp_path):
    good = write_jsonl(tmp_path / "prefs.jsonl", [
        {"prompt": "Be helpful.", "good": "I checked your order: it arrives at 5.", "bad": "Sure!",
         "request": "where is my order"}])
    (group,) = read_preferences(good)
    assert group.source == "preference-import" and group.outcomes[1].bad == "Sure!"
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Be helpful.", "good": "x", "bad": "y"},
                                               {"prompt": "Be helpful.", "bad": "y"}])
    with pytest.raises(CaseFileError, match=r"bad.jsonl:2: good: missing"):
        read_preferences(bad)
    exported = tmp_path / "pairs.jsonl"
    exported.write_text(export_jsonl([("old prompt", "new prompt")]), encoding="utf-8")
    assert read_chat_pairs(exported) == [("old prompt", "new prompt")]


def test_cli_preference_import_is_all_or_nothing_and_export(tmp_path, monkeypatch):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    bad = write_jsonl(tmp_path / "prefs.jsonl", [{"prompt": "Be helpful.", "good": "x", "bad": "y"}, ["oops"]])
    result = CliRunner().invoke(main, ["bpo", "pairs", "import", str(bad), "--db", db])
    assert result.exit_code == 1 and f"{bad}:2: each line must be a JSON object" in result.output
    assert Store(db).bpo_pairs(kept_only=False) == []

    script = BpoScript(analyses=[tagged("Be helpful to shoppers: answer what they asked.")], rewrites=[])
    monkeypatch.setattr(BPO_COMMANDS, "load_optimizer", lambda *args, **kwargs: script)
    good = write_jsonl(tmp_path / "good.jsonl", [{"prompt": "Be helpful to shoppers.", "good": "x", "bad": "y"}])
    result = CliRunner().invoke(main, ["bpo", "pairs", "import", str(good), "--db", db])
    assert result.exit_code == 0, result.output
    assert "1 preference(s): 1 pair kept, 0 rejected" in result.output
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["bpo", "pairs", "export", "-o", str(out), "--db", db])
    assert result.exit_code == 0 and read_chat_pairs(out) == [
        ("Be helpful to shoppers.", "Be helpful to shoppers: answer what they asked.")]


def test_run_with_a_fine_tuned_rewriter_charges_its_calls(store, scripted_cases, monkeypatch, tmp_path):
    class FineTuned(BpoScript):
        name = "rewriter:scripted"

    rewriter_model = FineTuned(analyses=[], rewrites=[prompt_with(2, 5)])
    monkeypatch.setattr("promptopt.optimizer.strategies.bpo.load_rewriter",
                        lambda path: Rewriter("fine-tuned", rewriter_model, source=str(path)))
    script = BpoScript(analyses=[tagged(prompt_with(1))], rewrites=[])
    report = run_bpo(store, scripted_cases, script, feedback_groups=1, rewriter=str(tmp_path))
    (candidate,) = [c for c in store.candidates(report["run_id"]) if c.operator == "bpo-fine-tuned"]
    assert candidate.details["source"] == str(tmp_path) and candidate.details["demonstrations"] == 0
    assert [m["role"] for m in rewriter_model.rewrite_requests[0]] == ["system", "user"]
    assert store.candidate(report["winner"]["candidate_id"]).prompt == prompt_with(2, 5)
    assert not script.rewrite_requests
    with store.session() as session:
        models = session.scalars(select(ModelCallRow.model).where(ModelCallRow.role == "optimizer")).all()
    assert sorted(models) == ["rewriter:scripted", "scripted-optimizer"]


def test_cli_rewrite_and_strategy_options(tmp_path, monkeypatch):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    prompt_file = tmp_path / "system.md"
    prompt_file.write_text(SEED, encoding="utf-8")
    script = BpoScript(analyses=[], rewrites=[prompt_with(1, 1), "You help shoppers.", prompt_with(2, 2)])
    monkeypatch.setattr(BPO_COMMANDS, "load_optimizer", lambda *args, **kwargs: script)
    out = tmp_path / "better.md"
    result = CliRunner().invoke(main, ["bpo", "rewrite", str(prompt_file), "--mode", "aggressive", "--samples", "3",
                                       "-o", str(out), "--db", db])
    assert result.exit_code == 0, result.output
    assert "rewrite refused: no longer names tool(s)" in result.output
    assert (tmp_path / "better.1.md").read_text() == prompt_with(1, 1)  # the protected region spliced back
    assert (tmp_path / "better.2.md").read_text() == prompt_with(2, 2)

    runner = CliRunner()
    refused = runner.invoke(main, ["run", "--strategy", "demos", "--mode", "aggressive", "--db", db])
    assert refused.exit_code == 2 and "--mode do(es) not apply to --strategy demos" in refused.output
    refused = runner.invoke(main, ["run", "--strategy", "bpo", "--samples", "3", "--db", db])
    assert refused.exit_code == 2 and "stable mode takes one sample" in refused.output


def test_cli_rewrite_refuses_a_prompt_with_unpaired_markers_before_any_model_call(tmp_path, monkeypatch):
    prompt_file = tmp_path / "system.md"
    prompt_file.write_text("You help shoppers.\n<!-- protected -->\nNo medical advice.\n", encoding="utf-8")

    def no_model(*args, **kwargs):
        raise AssertionError("the optimizer model was loaded")

    monkeypatch.setattr(BPO_COMMANDS, "load_optimizer", no_model)
    result = CliRunner().invoke(main, ["bpo", "rewrite", str(prompt_file), "--db", f"sqlite:///{tmp_path / 's.db'}"])
    assert result.exit_code == 1 and f"{prompt_file}:2: opening <!-- protected --> marker" in result.output
