"""`promptopt check`, the CI gate, on real SQLite stores against a scripted OpenAI-compatible endpoint: the seed
passes, a prompt that breaks good cases fails and lists them, the accuracy floor, JUnit XML and --json."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from promptopt.cli import main
from promptopt.runs.case_import import read_cases
from promptopt.runs.store import Store
from promptopt.server import ChatServer
from promptopt.optimizer.prompt_text import render_demo
from tests.fakes import ExamplesRouter
from tests.support import write_jsonl

GOOD_TOOLS = ("get_order_status", "find_stores", "get_promotions")
BAD_TOOLS = ("manage_cart", "get_member_points")


@pytest.fixture(scope="module")
def picked(task):
    """Two good cases for each of GOOD_TOOLS and for "no tool", two bad ones for each of BAD_TOOLS."""
    wanted = {**{("good", t): 2 for t in (*GOOD_TOOLS, "none")}, **{("bad", t): 2 for t in BAD_TOOLS}}
    chosen = []
    for path in task.case_files:
        for case in read_cases(path, task.tools):
            key = (case.label, case.expected.name)
            if wanted.get(key) and not case.context:
                wanted[key] -= 1
                chosen.append(case)
    return chosen


@pytest.fixture
def case_file(tmp_path, picked):
    return write_jsonl(tmp_path / "cases.jsonl", [{"query": c.query, "expected": c.expected.to_json(),
                                                   "actual": c.actual.to_json() if c.actual else None,
                                                   "label": c.label} for c in picked])


@pytest.fixture
def endpoint(picked):
    with ChatServer(ExamplesRouter({c.query: c.expected.name for c in picked})) as server:
        yield server.base_url


@pytest.fixture
def prompts(tmp_path, task, picked):
    """Prompt files: `seed` shows an example call for every good case's tool; `breaking` drops get_promotions's;
    `fixing` adds manage_cart's; `unpaired` has a protection marker that does not pair up."""

    def write(name: str, tools: tuple[str, ...]) -> str:
        lines = [render_demo(c) for c in picked if c.expected.name in tools]
        path = tmp_path / f"{name}.md"
        path.write_text(task.seed_prompt.rstrip() + "\n\n## Examples\n" + "\n".join(lines) + "\n", encoding="utf-8")
        return str(path)

    unpaired = tmp_path / "unpaired.md"
    unpaired.write_text("Route the request.\n<!-- protected -->\nNever share card numbers.\n", encoding="utf-8")
    return {"seed": write("seed", GOOD_TOOLS), "breaking": write("breaking", GOOD_TOOLS[:2]),
            "fixing": write("fixing", (*GOOD_TOOLS, "manage_cart")), "unpaired": str(unpaired)}


@pytest.fixture
def check(tmp_path, endpoint):
    db = f"sqlite:///{tmp_path / 'store.db'}"

    def invoke(prompt: str, *flags: str):
        return CliRunner().invoke(main, ["check", prompt, "--model", "scripted", "--base-url", endpoint, "--db", db,
                                         "--quiet", *flags])

    invoke.db = db
    return invoke


def last_json(result) -> dict:
    return json.loads(result.output.strip().splitlines()[-1])


def test_the_seed_passes_and_is_stored_as_a_finished_check_run(check, prompts, case_file):
    result = check(prompts["seed"], "--cases", str(case_file))
    assert result.exit_code == 0, result.output
    assert "PASS: 0 previously-good case(s) broken (0 allowed), accuracy 66.7% (no minimum)" in result.output
    assert "good cases broken            0 of 8 (0 allowed)" in result.output
    assert "accuracy                  66.7%   95% CI [39.1, 86.2]" in result.output
    run_id = result.output.splitlines()[0].rsplit("run ", 1)[1]
    run = Store(check.db).run(run_id)
    assert run.strategy == "check" and run.status == "finished"
    assert run.summary["seed"]["test_accuracy"] == pytest.approx(8 / 12) and run.summary["model_calls"] == 12
    shown = CliRunner().invoke(main, ["runs", "show", run_id, "--db", check.db])
    assert shown.exit_code == 0 and "strategy check  (finished)" in shown.output


def test_a_prompt_that_breaks_good_cases_fails_and_lists_them(check, prompts, case_file, picked):
    result = check(prompts["breaking"], "--cases", str(case_file))
    assert result.exit_code == 1, result.output
    assert "FAIL: 2 previously-good case(s) broken, 0 allowed" in result.output.splitlines()[-1]
    broken = [line for line in result.output.splitlines() if line.startswith("  case ")]
    queries = [c.query for c in picked if c.label == "good" and c.expected.name == "get_promotions"]
    assert len(broken) == 2 and all("expected get_promotions, the prompt chose no tool" in line for line in broken)
    assert all(json.dumps(q, ensure_ascii=False) in "\n".join(broken) for q in queries)
    allowed = check(prompts["breaking"], "--max-broken", "2")
    assert allowed.exit_code == 0 and allowed.output.splitlines()[-1].startswith("PASS: 2 previously-good")


def test_the_stored_cases_are_checked_without_cases_and_filtered_by_label(check, prompts, case_file):
    assert check(prompts["seed"], "--cases", str(case_file)).exit_code == 0
    everything = last_json(check(prompts["fixing"], "--json"))
    assert everything["cases"] == 12 and everything["fixed"] == 2 and everything["passed"]
    good = last_json(check(prompts["seed"], "--label", "good", "--json"))
    assert good["cases"] == good["good"] == 8 and good["accuracy"] == 1.0 and good["bad"] == 0
    assert good["model_calls"] == 8 and good["new_model_calls"] == 0  # answered from the response cache


def test_min_accuracy_fails_below_and_passes_at_or_above_the_measured_accuracy(check, prompts, case_file):
    below = check(prompts["seed"], "--cases", str(case_file), "--min-accuracy", "70%")
    assert below.exit_code == 1 and "FAIL: accuracy 66.7% is below the minimum 70.0%" in below.output
    assert check(prompts["seed"], "--min-accuracy", "0.6").exit_code == 0
    assert check(prompts["seed"], "--min-accuracy", "66%").exit_code == 0
    for wrong in ("150%", "1.5", "most"):
        refused = check(prompts["seed"], "--min-accuracy", wrong)
        assert refused.exit_code == 2 and "is not a fraction from 0 to 1" in refused.output


def test_junit_xml_fails_only_the_regressions(check, prompts, case_file, tmp_path):
    """A testcase per case; failures are the broken good cases and the thresholds, each said once; the bad cases
    the prompt still gets wrong pass, saying so in their output."""
    report = tmp_path / "report.xml"
    result = check(prompts["breaking"], "--cases", str(case_file), "--junit", str(report))
    assert result.exit_code == 1
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite.get("name") == "promptopt check"
    testcases = suite.findall("testcase")
    assert len(testcases) == 13 and suite.get("tests") == "13"
    failures = [f for case in testcases for f in case.findall("failure")]
    assert [f.get("type") for f in failures] == ["broken", "broken", "threshold"] and suite.get("failures") == "3"
    assert all(f.get("message") not in (f.text or "") for f in failures)  # said once, not twice
    still_wrong = [case.find("system-out").text for case in testcases if case.find("system-out") is not None]
    assert len(still_wrong) == 4 and all(text.startswith("still wrong (a bad case") for text in still_wrong)
    times = [float(case.get("time")) for case in testcases]  # each case's model call, as CI dashboards show
    assert all(t >= 0 for t in times) and sum(times[:-1]) > 0 and float(suite.get("time")) > 0
    assert testcases[-1].get("name") == "thresholds"
    passing = tmp_path / "passing.xml"
    assert check(prompts["seed"], "--junit", str(passing)).exit_code == 0
    assert ET.parse(passing).getroot().find("testsuite/testcase[@name='thresholds']").find("failure") is None


def test_json_prints_one_object_as_the_last_line(check, prompts, case_file):
    summary = last_json(check(prompts["breaking"], "--cases", str(case_file), "--json"))
    assert summary["passed"] is False and summary["verdict"].startswith("FAIL: 2 previously-good")
    assert summary["cases"] == 12 and summary["broken"] == 2 and len(summary["broken_case_ids"]) == 2
    assert summary["accuracy"] == pytest.approx(0.5) and summary["model_calls"] == 12
    assert summary["max_broken"] == 0 and summary["min_accuracy"] is None and summary["run_id"]


def test_bad_inputs_are_one_line_errors_that_exit_2_not_1(check, prompts, case_file, tmp_path):
    unpaired = check(prompts["unpaired"], "--cases", str(case_file))
    assert unpaired.exit_code == 2 and unpaired.output.startswith("Error: ") and "unpaired.md:2" in unpaired.output
    missing = check(str(tmp_path / "nope.md"), "--cases", str(case_file))
    assert missing.exit_code == 2 and "cannot read prompt file" in missing.output
    empty = check(prompts["seed"])
    assert empty.exit_code == 2 and "no cases to check in the store" in empty.output
    bad_cases = write_jsonl(tmp_path / "bad.jsonl", [{"query": "hi", "expected": {"tool": "call_taxi"}}])
    refused = check(prompts["seed"], "--cases", str(bad_cases))
    assert refused.exit_code == 2 and "nothing was imported" in refused.output
    assert Store(check.db).count_cases() == 0
