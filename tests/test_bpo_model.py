"""BPO on the real embedded model: `promptopt bpo train` fine-tunes it on a few pairs and the saved rewriter
rewrites a prompt; a short `--strategy bpo` run with `promptopt serve` as the optimizer endpoint stores its pairs
and rewrites."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from promptopt.api import optimize
from promptopt.cli import main
from promptopt.optimizer.prompt_parts import PromptParts
from promptopt.optimizer.strategies.bpo.pairs import export_jsonl
from promptopt.optimizer.strategies.bpo.rewriter import MODES, load_rewriter
from promptopt.runs.store import Store

pytestmark = pytest.mark.model

TOOLS = ["get_order_status", "find_stores", "get_promotions", "manage_cart"]


def small_pairs() -> list[tuple[str, str]]:
    """Eight short pairs with one pattern: the rewrite says when to call the tool the original only lists."""
    pairs = []
    for tone in ("Be brief.", "Be kind."):
        for tool in TOOLS:
            pairs.append((f"You are a shop assistant. Tools: {tool}. {tone}",
                          f"You are a shop assistant. Call {tool} when the user asks for it; otherwise answer "
                          f"without a tool. {tone}"))
    return pairs


def test_bpo_train_lowers_loss_and_saves_a_rewriter(tmp_path):
    pairs_file = tmp_path / "pairs.jsonl"
    pairs_file.write_text(export_jsonl(small_pairs()), encoding="utf-8")
    out = tmp_path / "rewriter"
    result = CliRunner().invoke(main, ["bpo", "train", "--pairs", str(pairs_file), "--steps", "10",
                                       "--max-length", "128", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "step 10/10: loss" in result.output and "start loss" in result.output
    metadata = json.loads((out / "rewriter.json").read_text())
    assert metadata["method"] == "lora" and metadata["pairs"] == 8 and len(metadata["losses"]) == 10
    assert metadata["end_loss"] < metadata["start_loss"]

    rewriter = load_rewriter(out)
    (completion,) = rewriter.rewrite("You are a shop assistant. Tools: find_stores. Be brief.", MODES["stable"],
                                     max_tokens=12)
    assert rewriter.kind == "fine-tuned" and not completion.error and completion.text.strip()


def test_bpo_run_with_the_served_model_as_optimizer(server, tmp_path, small_case_file, task):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    result = optimize(cases=[small_case_file], strategy="bpo", optimizer_model="embedded",
                      optimizer_base_url=server.base_url, db=db, steps=1, feedback_groups=1, group_size=2,
                      reply_tokens=24)
    assert result.report["status"] == "finished"
    store = Store(db)
    (pair,) = store.bpo_pairs(result.run_id, kept_only=False)
    names = [t["function"]["name"] for t in task.tools]
    assert pair.source == "store-feedback" and pair.original == PromptParts.of(result.seed_prompt, names).editable
    assert pair.details["raw_reply"] and (pair.kept or pair.rejection)
    rewrites = [c for c in store.candidates(result.run_id) if c.operator == "bpo-prompted"]
    assert len(rewrites) == 1 and rewrites[0].details["pair_ids"] == [pair.id]
    assert rewrites[0].status != "proposed" and (rewrites[0].status != "invalid" or rewrites[0].rejection)
    (step,) = [s for s in store.steps(result.run_id) if s.step == 1]
    summary = step.details["summary"]
    assert "bpo: 1 feedback group(s) -> " in summary and "1 stable rewrite(s) from the prompted" in summary
