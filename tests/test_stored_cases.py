"""Optimizing the cases already in the store: a production log imported and labelled, then `run --source`,
`check --source --junit` and `export` take exactly its cases (not the others stored beside them), `cases export`
writes them back as a file that imports as the same cases, and `cases delete` refuses cases a run used. On SQLite
and on PostgreSQL, against a scripted OpenAI-compatible endpoint through the real client."""
from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ElementTree

import pytest
from click.testing import CliRunner

from promptopt.cli import main
from promptopt.runs.case_import import read_cases
from promptopt.runs.store import Store
from promptopt.server import ChatServer
from tests.fakes import ExamplesRouter
from tests.support import write_jsonl


@pytest.fixture
def gateway_log(tmp_path, task, bundled_cases):
    """An OpenAI gateway log of 24 single-turn requests with production's (wrong) tool call, and a labels CSV that
    gives each turn its expected tool; the scripted answers by query."""
    picked = bundled_cases[:48:2]
    records, labels = [], [["record", "turn", "expected_tool", "expected_arguments"]]
    for line, case in enumerate(picked, start=1):
        call = {"id": "call_1", "type": "function", "function": {"name": "find_stores", "arguments": "{}"}}
        records.append({"messages": [{"role": "system", "content": "You are a grocery assistant."},
                                     {"role": "user", "content": case.query}],
                        "tools": task.tools,
                        "response": {"role": "assistant", "content": None, "tool_calls": [call]}})
        labels.append([line, 1, case.expected.name, json.dumps(dict(case.expected.arguments))])
    log = write_jsonl(tmp_path / "gateway.jsonl", records)
    labels_file = tmp_path / "labels.csv"
    with labels_file.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(labels)
    return log, labels_file, {c.query: c.expected.name for c in bundled_cases}


def cli(*args: str):
    result = CliRunner().invoke(main, list(args))
    return result


def test_a_labelled_log_goes_from_import_to_run_check_and_export(tmp_path, task, gateway_log, store_url):
    log, labels, expected = gateway_log
    good = next(path for path in task.case_files if path.name == "good_cases.jsonl")
    assert cli("cases", "import", str(good), "--db", store_url).exit_code == 0  # other cases in the same store
    imported = cli("cases", "import", str(log), "--labels", str(labels), "--db", store_url)
    assert imported.exit_code == 0, imported.output
    store = Store(store_url)
    from_log = {c.id for c in store.cases() if c.source.startswith("gateway.jsonl:")}
    assert len(from_log) == 24 and store.count_cases() > 24
    with ChatServer(ExamplesRouter(expected)) as server:
        endpoint = ["--model", "scripted", "--base-url", server.base_url, "--api-key", "k", "--db", store_url]
        ran = cli("run", "--source", "gateway.jsonl", "--steps", "1", "--no-cache", "--json", *endpoint)
        assert ran.exit_code == 0, ran.output
        run_id = json.loads(ran.output.strip().splitlines()[-1])["run_id"]
        assert set(store.run_splits(run_id)) == from_log

        prompt = tmp_path / "winner.md"
        exported = cli("export", run_id, "--db", store_url)
        assert exported.exit_code == 0, exported.output
        prompt.write_text(exported.output, encoding="utf-8")
        junit = tmp_path / "check.xml"
        checked = cli("check", str(prompt), "--source", "gateway.jsonl", "--junit", str(junit), "--json",
                      "--no-cache", *endpoint)
    assert checked.exit_code in (0, 1), checked.output
    summary = json.loads(checked.output.strip().splitlines()[-1])
    assert summary["cases"] == 24
    assert int(ElementTree.parse(junit).getroot().find("testsuite").get("tests")) == 25  # 24 cases, thresholds


def test_cases_export_writes_a_file_that_imports_as_the_same_cases(tmp_path, task, store_url):
    bad = next(path for path in task.case_files if path.name == "bad_cases.jsonl")
    assert cli("cases", "import", str(bad), "--db", store_url).exit_code == 0
    store = Store(store_url)
    original = {c.content_hash(): c for c in store.cases()}
    for name in ("again.jsonl", "again.csv"):
        written = cli("cases", "export", "--source", "bad_cases.jsonl", "-o", str(tmp_path / name), "--db", store_url)
        assert written.exit_code == 0, written.output
        back = read_cases(tmp_path / name, task.tools)
        assert {c.content_hash() for c in back} == set(original)
        assert all((c.label, c.tags, c.source) == (original[c.content_hash()].label, original[c.content_hash()].tags,
                                                   original[c.content_hash()].source) for c in back)
        reimported = cli("cases", "import", str(tmp_path / name), "--db", store_url)
        assert f"0 new, {len(original)} already stored" in reimported.output
    only_bad = cli("cases", "export", "--label", "bad", "--db", store_url)
    assert only_bad.exit_code == 0
    assert [json.loads(line)["label"] for line in only_bad.output.splitlines()] == ["bad"] * len(original)
    nothing = cli("cases", "export", "--source", "no-such-file.jsonl", "--db", store_url)
    assert nothing.exit_code == 1 and "no stored case matches --source no-such-file.jsonl" in nothing.output


def test_cases_delete_refuses_cases_a_run_used(tmp_path, store_url, small_case_file, task, bundled_cases):
    expected = {c.query: c.expected.name for c in bundled_cases}
    with ChatServer(ExamplesRouter(expected)) as server:
        ran = cli("run", "--cases", str(small_case_file), "--model", "scripted", "--base-url", server.base_url,
                  "--api-key", "k", "--steps", "1", "--no-cache", "--db", store_url)
    assert ran.exit_code == 0, ran.output
    store = Store(store_url)
    count = store.count_cases()
    refused = cli("cases", "delete", "--source", "small.jsonl", "--yes", "--db", store_url)
    assert refused.exit_code == 1 and "is used by run" in refused.output and "nothing was deleted" in refused.output
    assert store.count_cases() == count
    other = write_jsonl(tmp_path / "other.jsonl", [{"query": "where is the nearest store", "expected": {
        "tool": "find_stores", "arguments": {}}, "label": "bad", "tags": ["scratch"]}])
    assert cli("cases", "import", str(other), "--db", store_url).exit_code == 0
    deleted = cli("cases", "delete", "--tag", "scratch", "--yes", "--db", store_url)
    assert deleted.exit_code == 0 and "deleted 1 case(s)" in deleted.output
    assert store.count_cases() == count


def test_runs_are_listed_taken_by_id_prefix_and_deleted(tmp_path, store_url, small_case_file, bundled_cases):
    expected = {c.query: c.expected.name for c in bundled_cases}
    with ChatServer(ExamplesRouter(expected)) as server:
        for _ in range(2):
            ran = cli("run", "--cases", str(small_case_file), "--model", "scripted", "--base-url", server.base_url,
                      "--api-key", "k", "--steps", "1", "--no-cache", "--json", "--db", store_url)
            assert ran.exit_code == 0, ran.output
    first, second = (run.id for run in reversed(Store(store_url).runs()))
    listed = cli("runs", "list", "--db", store_url)
    header, *rows = listed.output.splitlines()
    assert header.split()[:6] == ["RUN", "STARTED", "STATUS", "STRATEGY", "MODEL", "CASES"]
    assert len(rows) == 2 and all("finished" in row and "scripted" in row for row in rows)
    entries = [json.loads(line) for line in cli("runs", "list", "--json", "--db", store_url).output.splitlines()]
    assert [e["run_id"] for e in entries] == [second, first] and {e["cases"] for e in entries} == {44}  # small.jsonl's cases
    shown = cli("runs", "show", first[:6], "--db", store_url)
    assert shown.exit_code == 0 and f"run {first}" in shown.output
    assert cli("export", first[:6], "--db", store_url).output == cli("export", first, "--db", store_url).output
    deleted = cli("runs", "delete", first[:6], "--yes", "--db", store_url)
    assert deleted.exit_code == 0 and "deleted 1 run(s)" in deleted.output
    assert [run.id for run in Store(store_url).runs()] == [second]
    assert cli("runs", "show", first, "--db", store_url).exit_code == 1
    assert cli("cases", "delete", "--source", "small.jsonl", "--yes", "--db", store_url).exit_code == 1  # run 2's


def test_a_prefix_two_runs_share_is_refused(store):
    ids = [store.create_run("tool-routing", "demos", {}, [], {}) for _ in range(17)]  # two share a first digit
    shared = next(run_id[0] for run_id in ids if sum(other[0] == run_id[0] for other in ids) > 1)
    refused = cli("runs", "show", shared, "--db", store.url)
    assert refused.exit_code == 1 and f"run id '{shared}' is the start of" in refused.output
    assert "give more of it" in refused.output
    missing = cli("runs", "show", "zz", "--db", store.url)
    assert missing.exit_code == 1 and "no run 'zz'" in missing.output


def test_labelling_y_takes_productions_call_as_right(tmp_path, task):
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_order_status", "arguments": json.dumps({"order_id": "FM123"})}}
    log = write_jsonl(tmp_path / "log.jsonl", [
        {"messages": [{"role": "user", "content": "where is my order FM123?"}], "tools": task.tools,
         "response": {"role": "assistant", "content": None, "tool_calls": [call]}},
        {"messages": [{"role": "user", "content": "any deals on milk?"}], "tools": task.tools,
         "response": {"role": "assistant", "content": None, "tool_calls": [call]}}])
    db = f"sqlite:///{tmp_path / 'store.db'}"
    # turn 1: production was right; turn 2: another tool, whose arguments default to {} (not production's)
    result = CliRunner().invoke(main, ["cases", "label", str(log), "--db", db], input="y\nget_promotions\n\n")
    assert result.exit_code == 0, result.output
    stored = {c.query: c for c in Store(db).cases()}
    right = stored["where is my order FM123?"]
    assert right.label == "good" and right.expected.name == "get_order_status"
    assert right.expected.arguments == {"order_id": "FM123"}
    wrong = stored["any deals on milk?"]
    assert wrong.label == "bad" and wrong.expected.name == "get_promotions" and wrong.expected.arguments == {}


def test_show_json_and_export_json_say_where_the_result_came_from(tmp_path, small_case_file, bundled_cases):
    expected = {c.query: c.expected.name for c in bundled_cases}
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with ChatServer(ExamplesRouter(expected)) as server:
        ran = cli("run", "--cases", str(small_case_file), "--model", "scripted", "--base-url", server.base_url,
                  "--api-key", "k", "--steps", "1", "--no-cache", "--json", "--seed", "4", "--db", db)
    run_id = json.loads(ran.output.strip().splitlines()[-1])["run_id"]
    shown = json.loads(cli("runs", "show", run_id, "--json", "--db", db).output)["provenance"]
    exported = json.loads(cli("export", run_id, "--format", "json", "--db", db).output)["provenance"]
    assert shown == exported
    assert shown["model"] == "scripted" and shown["base_url"] == server.base_url and shown["seed"] == 4
    assert shown["strategy"] == "demos" and isinstance(shown["options"], dict)
    assert shown["started_at"] < shown["finished_at"] and shown["promptopt_version"]
    assert "k" not in json.dumps(shown).split('"')  # never a key
