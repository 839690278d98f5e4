"""`promptopt report` and `promptopt run --report` on a real short run of the embedded model: every section is
there, the per-case rows are the store's, the plots are inline SVG, nothing is fetched from elsewhere, and headless
Chromium renders the page."""
from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess

import pytest
import torch
from click.testing import CliRunner

from promptopt.case import ToolCall, choice_text
from promptopt.cli import main
from promptopt.runs.report import run_report
from promptopt.runs.store import Store
from tests.html_tables import external_references, table_rows
from tests.support import share_weights, write_jsonl

pytestmark = pytest.mark.model

TOOLS = [{"type": "function", "function": {"name": name, "description": description,
                                           "parameters": {"type": "object", "properties": {}}}}
         for name, description in (("get_order_status", "Where the user's order is and when it arrives"),
                                   ("find_stores", "Shops near the user, with opening hours"),
                                   ("get_promotions", "Today's discounts and coupons"))]
PROMPT = ("You are the assistant of a grocery app. Reply <b>kindly</b> & briefly.\n\n<!-- protected -->\nNever "
          "ask for card numbers or passwords.\n<!-- /protected -->\n\nTools: get_order_status, find_stores, "
          "get_promotions.\n")
CASES = [
    ("where is my order", "get_order_status", "en"), ("我的订单到哪了", "get_order_status", "zh"),
    ("has my parcel shipped yet", "get_order_status", "en"), ("快递什么时候到", "get_order_status", "zh"),
    ("the delivery is late, where is it", "get_order_status", "en"),
    ("closest shop to me", "find_stores", "en"), ("附近有门店吗", "find_stores", "zh"),
    ("is there a store downtown", "find_stores", "en"), ("你们几点关门", "find_stores", "zh"),
    ("any shop open near the station", "find_stores", "en"),
    ("any discounts today", "get_promotions", "en"), ("今天有什么优惠", "get_promotions", "zh"),
    ("coupons for fruit?", "get_promotions", "en"), ("有没有满减活动", "get_promotions", "zh"),
    ("what's on sale this week", "get_promotions", "en"),
    ("hello there", None, "en"), ("谢谢你", None, "zh"), ("tell me a joke", None, "en"),
    ("你是机器人吗", None, "zh"), ("good morning", None, "en"),
]
CONTEXT = [{"role": "user", "content": "我上周买了草莓"},
           {"role": "assistant", "content": "好的，有什么可以帮您？"}]


@pytest.fixture(scope="module")
def reported(tmp_path_factory, embedded):
    """One short demos run on the embedded model through `promptopt run --report`: its store, run id and page."""
    folder = tmp_path_factory.mktemp("report")
    records = [{"query": query, "expected": {"tool": tool}, "label": "bad" if index % 3 else "good",
                "tags": [language, "multi-turn" if index % 4 == 1 else "single-turn"],
                "context": CONTEXT if index % 4 == 1 else []}
               for index, (query, tool, language) in enumerate(CASES)]
    case_file = write_jsonl(folder / "cases.jsonl", records)
    (folder / "tools.json").write_text(json.dumps(TOOLS), encoding="utf-8")
    (folder / "prompt.md").write_text(PROMPT, encoding="utf-8")
    db = f"sqlite:///{folder / 'store.db'}"
    page = folder / "report.html"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy 2-core machine two threads wait on each other: 10x slower, same answers
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(folder / "response-cache"))
            share_weights(monkeypatch, embedded)
            result = CliRunner().invoke(main, [
                "run", "--cases", str(case_file), "--tools", str(folder / "tools.json"), "--prompt",
                str(folder / "prompt.md"), "--steps", "2", "--n-demos", "4", "--candidates", "2",
                "--db", db, "--json", "--report", str(page)])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout.strip().splitlines()[-1])["run_id"]
    return {"store": Store(db), "db": db, "run_id": run_id, "path": page, "html": page.read_text(encoding="utf-8"),
            "stderr": result.stderr}


def test_run_writes_the_report_and_says_where(reported):
    assert f"wrote {reported['path']}" in reported["stderr"]
    assert reported["html"].startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in reported["html"]


def test_every_section_is_there_with_inline_svg_plots(reported):
    page = reported["html"]
    for anchor, title in (("result", "Result"), ("trajectory", "Search trajectory"),
                          ("confusion", "Confusion on the test split"), ("cases", "Test cases, seed vs. winner"),
                          ("diff", "Prompt diff, seed")):
        assert f'<section id="{anchor}">' in page and f"<h2>{title}" in page
        assert f'href="#{anchor}"' in page
    sections = dict(re.findall(r'<section id="(\w+)">(.*?)</section>', page, re.S))
    assert sections["trajectory"].count("<svg") == 1 and sections["confusion"].count("<svg") == 1
    assert "seed prompt:" in sections["confusion"] and "winner:" in sections["confusion"]
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page


def test_result_table_is_the_run_report(reported):
    report = run_report(reported["store"], reported["run_id"])
    rows = table_rows(reported["html"], "result-table")
    assert [row["cells"][0] for row in rows] == ["seed prompt", "winner"]
    for row, key in zip(rows, ("seed", "winner")):
        assert row["cells"][1] == f"{100 * report[key]['test_accuracy']:.1f}%"
        low, high = report[key]["ci95"]
        assert row["cells"][2] == f"[{100 * low:.1f}, {100 * high:.1f}]"
    assert f"paired exact McNemar p on {report['test_cases']} test cases" in reported["html"]
    assert f"<b>{report['model_calls']}</b>" in reported["html"]


def test_case_rows_are_the_stores_test_cases_seed_vs_winner(reported):
    store, run = reported["store"], reported["store"].run(reported["run_id"])
    seed, winner = store.evaluations(run.seed_candidate_id), store.evaluations(run.winner_candidate_id)
    test_ids = [cid for cid, split in store.run_splits(run.id).items() if split == "test"]
    rows = table_rows(reported["html"], "case-table")
    assert [int(row["attributes"]["data-case-id"]) for row in rows] == test_ids
    outcomes = []
    for row, case in zip(rows, store.cases(test_ids)):
        cells = row["cells"]
        assert cells[0] == str(case.id) and cells[1] == case.query
        assert cells[3] == choice_text(case.expected)
        assert cells[4] == choice_text(ToolCall(seed[case.id].predicted_tool), seed[case.id].error)
        assert cells[5] == choice_text(ToolCall(winner[case.id].predicted_tool), winner[case.id].error)
        before, after = seed[case.id].passed, winner[case.id].passed
        expected = {(False, True): "fixed", (True, False): "broken", (False, False): "still wrong",
                    (True, True): "still right"}[(before, after)]
        assert cells[6] == row["attributes"]["data-outcome"] == expected
        assert row["attributes"]["data-language"] == case.tags[0] == cells[7]
        assert json.loads(row["attributes"]["data-tags"]) == list(case.tags)
        if case.context:
            assert "我上周买了草莓" in cells[2]
        outcomes.append(expected)
    report = run_report(store, run.id)
    assert outcomes.count("fixed") == report["fixed"] and outcomes.count("broken") == report["broken"]


def test_filters_offer_every_outcome_and_the_test_cases_languages_and_tags(reported):
    store, page = reported["store"], reported["html"]
    test_ids = [cid for cid, split in store.run_splits(reported["run_id"]).items() if split == "test"]
    tags = {tag for case in store.cases(test_ids) for tag in case.tags}
    for value in ("fixed", "broken", "still wrong", "still right", *tags):
        assert f'<option value="{value}">' in page
    script = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert len(script) == 1 and script[0][0] == "" and "filter-outcome" in script[0][1]


def test_prompt_diff_marks_the_protected_region(reported):
    store, run = reported["store"], reported["store"].run(reported["run_id"])
    diff = dict(re.findall(r'<section id="(\w+)">(.*?)</section>', reported["html"], re.S))["diff"]
    protected = re.findall(r'<div class="line (\w+) protected">.*?</div>', diff)
    assert len(protected) == 3 and set(protected) == {"same"}
    assert diff.count('<span class="tag">protected</span>') == 2
    if run.winner_candidate_id == run.seed_candidate_id:
        assert "nothing changed" in diff
    for line in store.candidate(run.winner_candidate_id).prompt.splitlines():
        assert html.escape(line) in diff


def test_user_text_is_shown_as_text_not_markup(reported):
    assert "Reply &lt;b&gt;kindly&lt;/b&gt; &amp; briefly." in reported["html"]
    assert "<b>kindly</b>" not in reported["html"]


def test_nothing_is_fetched_from_elsewhere(reported):
    page = reported["html"]
    assert external_references(page) == []
    assert "<link" not in page and "<iframe" not in page and not re.search(r"<script[^>]*\ssrc=", page)


def test_report_command_writes_the_same_page_and_refuses_unknown_runs(reported, tmp_path):
    out = tmp_path / "again.html"
    result = CliRunner().invoke(main, ["report", reported["run_id"], "-o", str(out), "--db", reported["db"], "-q"])
    assert result.exit_code == 0 and result.output == ""
    strip_date = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC")
    assert strip_date.sub("", out.read_text(encoding="utf-8")) == strip_date.sub("", reported["html"])
    missing = CliRunner().invoke(main, ["report", "nope", "-o", str(tmp_path / "x.html"), "--db", reported["db"]])
    assert missing.exit_code == 1 and missing.output.strip().splitlines()[-1] == "Error: no run 'nope' in the store"
    assert not (tmp_path / "x.html").exists()


def chromium() -> str:
    """The headless browser's binary; the test skips, saying why, where there is none."""
    found = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                  if shutil.which(name)), None)
    if found is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install chromium)")
    return found


def test_headless_chromium_renders_the_report(reported, tmp_path):
    shot = tmp_path / "report.png"
    completed = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                                "--window-size=1280,2400", "--hide-scrollbars", reported["path"].as_uri()],
                               capture_output=True, text=True, timeout=120)
    assert shot.exists(), completed.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 2400)
    assert len(data) > 60_000  # a blank page of that size is a few kilobytes


def test_the_outcome_filter_hides_the_other_rows_in_a_browser(reported, tmp_path):
    rows = table_rows(reported["html"], "case-table")
    wanted = rows[0]["attributes"]["data-outcome"]
    picked = tmp_path / "picked.html"
    picked.write_text(reported["html"].replace("</body>", (
        '<script>var pick = document.getElementById("filter-outcome"); pick.value = "%s";'
        ' pick.dispatchEvent(new Event("change"));</script></body>') % wanted), encoding="utf-8")
    completed = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                                picked.as_uri()], capture_output=True, text=True, timeout=120)
    shown = [row for row in table_rows(completed.stdout, "case-table") if "hidden" not in row["attributes"]]
    assert shown and [row["cells"][0] for row in shown] == [
        row["cells"][0] for row in rows if row["attributes"]["data-outcome"] == wanted]
    assert f'id="case-count" class="note">{len(shown)} of {len(rows)} cases<' in completed.stdout
