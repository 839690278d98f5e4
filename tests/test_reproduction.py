"""A run with the same seed reproduces the same candidates, steps and report: every strategy's path on the
bundled task, with scripted task and optimizer models, is compared with a snapshot taken before the code was
restructured (`tests/golden/reproduction.json`; rewrite it with PROMPTOPT_WRITE_GOLDEN=1 only for a change
that is meant to alter the search)."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from promptopt.api import optimize
from promptopt.runs.case_import import read_cases
from tests.conftest import ROOT
from tests.fakes import FakeRouter, FakeWriter

GOLDEN = ROOT / "tests" / "golden" / "reproduction.json"
RUNS = {
    "demos": dict(steps=2, n_demos=8, candidates=3),
    "opro": dict(steps=2, candidates=4, train_sample=16),
    "apo": dict(steps=1, beam_width=2, minibatch=16, gradients=2, paraphrases=1, max_successors=3,
                eval_budget=8, pull_size=8),
    "bpo": dict(steps=1, mode="aggressive", samples=2),
    "dspy-copro": dict(steps=1, candidates=2, depth=1, train_sample=12),
    "dspy-bootstrap": dict(steps=1, candidates=2, n_demos=2, labeled_demos=2, train_sample=12),
}


def digest(*parts: str) -> int:
    return int(hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:8], 16)


class ScriptedModel(FakeRouter, FakeWriter):
    """Routes a case right when the prompt shows its query or the rule line its hash picks, half the time when
    the prompt has a demo line of its tool, and a quarter of the time otherwise (else to a hashed tool); writes
    the bundled seed prompt plus a hashed rule line for any generation request."""

    name = "scripted"
    reply_tokens = (20, 10)

    def __init__(self, task) -> None:
        self.answers = {c.query: c.expected.name for path in task.case_files for c in read_cases(path, task.tools)}
        self.names = [t["function"]["name"] for t in task.tools] + ["none"]
        self.seed_prompt = task.seed_prompt

    def choose(self, system_prompt, conversation):
        query = conversation[-1]["content"]
        h, expected = digest(system_prompt, query), self.answers[query]
        right = (query in system_prompt or f"Rule {digest(query) % 5}:" in system_prompt
                 or (f"\n{expected}: " in system_prompt and h % 2 == 0) or h % 4 == 0)
        return expected if right else self.names[h % len(self.names)]

    def reply(self, messages, temperature, sample_index):
        h = digest(json.dumps(messages, ensure_ascii=False), str(temperature), str(sample_index))
        return f"{self.seed_prompt.rstrip()}\nRule {h % 5}: read the request carefully."


def snapshot(store_url: str, strategy: str, model: ScriptedModel) -> dict:
    from promptopt.runs.store import Store

    options = dict(RUNS[strategy])
    result = optimize(strategy=strategy, model=model, optimizer_model=model, db=store_url, seed=3, cache=False, max_broken=1000,
                      **options)
    store = Store(store_url)
    report = {k: v for k, v in result.report.items() if k not in ("run_id",)}
    candidates = [
        {"step": c.step, "operator": c.operator, "status": c.status, "rejection": c.rejection,
         "prompt": hashlib.sha256(c.prompt.encode()).hexdigest()[:16]}
        for c in store.candidates(result.run_id)
    ]
    return {"report": report, "candidates": candidates}


@pytest.mark.parametrize("strategy", list(RUNS))
def test_same_seed_reproduces_the_recorded_search(tmp_path, task, strategy):
    got = snapshot(f"sqlite:///{tmp_path / 'store.db'}", strategy, ScriptedModel(task))
    golden = json.loads(GOLDEN.read_text(encoding="utf-8")) if GOLDEN.exists() else {}
    if os.environ.get("PROMPTOPT_WRITE_GOLDEN"):
        golden[strategy] = got
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    assert got == golden[strategy]
