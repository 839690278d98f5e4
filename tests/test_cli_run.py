"""`promptopt run` end to end on the real embedded model (a small case file), then export and inspection."""
from __future__ import annotations

import json

from click.testing import CliRunner

from promptopt.cli import main
from promptopt.runs.report import run_report
from promptopt.runs.store import Store


def test_run_json_export_and_show(tmp_path, small_case_file, shared_weights):
    db = f"sqlite:///{tmp_path / 'run.db'}"
    runner = CliRunner()
    result = runner.invoke(main, ["run", "--cases", str(small_case_file), "--steps", "1", "--n-demos", "6",
                                  "--db", db, "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    for key in ("run_id", "seed", "winner", "p_value", "fixed", "broken", "model_calls"):
        assert key in summary
    store = Store(db)
    report = run_report(store, summary["run_id"])
    assert report["status"] == "finished"
    assert summary["seed"]["test_accuracy"] == report["seed"]["test_accuracy"]
    assert summary["winner"]["ci95"] == report["winner"]["ci95"]
    assert summary["model_calls"] == report["model_calls"] > 0
    assert report["candidates"] >= 1

    out = tmp_path / "best_prompt.md"
    exported = runner.invoke(main, ["export", summary["run_id"], "-o", str(out), "--db", db])
    assert exported.exit_code == 0, exported.output
    winner = store.candidate(report["winner"]["candidate_id"])
    assert out.read_text(encoding="utf-8") == winner.prompt
    as_json = runner.invoke(main, ["export", summary["run_id"], "--format", "json", "--db", db])
    assert json.loads(as_json.output)["system_prompt"] == winner.prompt

    shown = runner.invoke(main, ["runs", "show", summary["run_id"], "--db", db])
    assert "test accuracy" in shown.output and "McNemar" in shown.output
    listed = runner.invoke(main, ["runs", "list", "--db", db])
    assert summary["run_id"] in listed.output


def test_unknown_run_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["export", "nope", "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 1 and "no run 'nope'" in result.output


def test_bad_case_file_stops_run_before_any_work(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "hi", "expected": {"tool": "teleport"}}\n', encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(main, ["run", "--cases", str(bad), "--db", db])
    assert result.exit_code == 1
    assert f"{bad}:1: expected.tool: unknown tool 'teleport'" in result.output
    assert Store(db).count_cases() == 0 and Store(db).runs() == []
