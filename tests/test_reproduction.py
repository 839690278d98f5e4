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
from tests.fakes import OPTIONS, RUNS, ScriptedModel
from tests.support import ROOT

GOLDEN = ROOT / "tests" / "golden" / "reproduction.json"


def snapshot(store_url: str, strategy: str, model: ScriptedModel) -> dict:
    from promptopt.runs.store import Store

    options = dict(RUNS[strategy])
    result = optimize(strategy=strategy, model=model, optimizer_model=model, db=store_url, **OPTIONS, **options)
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
