"""`promptopt report`: one self-contained HTML page about a run, from the store. The result table (`run_report`),
the search trajectory, the test split's confusion matrices, every test case seed vs. winner (filterable), the
prompt diff with protected regions marked, and the per-evaluator scores."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from importlib.metadata import version
from typing import Any

from promptopt.case import Case, ToolCall, choice_text
from promptopt.markup import MARKER
from promptopt.runs.case_outcomes import OUTCOMES, HeldOutCase, chosen, confusion, held_out_cases
from promptopt.runs.formats import dollars, duration, interval, p_value, percent
from promptopt.runs.heartbeat import wall_seconds
from promptopt.runs.html_page import esc, facts, navigation, page, section, table
from promptopt.runs.prompt_diff import DiffLine, prompt_diff
from promptopt.runs.report import RunNotFound, mean_text, run_report, split_line
from promptopt.runs.report_plots import confusion_svg, trajectory_svg
from promptopt.runs.store import Store
from promptopt.runs.tables import RunRow
from promptopt.runs.trajectory import candidate_scores, incumbent_by_step

CONTEXT_CHARS = 400
"""How much of each earlier message the case table shows."""
DIFF_CONTEXT = 3
"""Unchanged lines shown around each change; longer unchanged stretches fold away."""
NUMBERS = {column: "num" for column in range(1, 5)}
"""Columns 1-4 of the result and evaluator tables hold figures."""
FILTER_SCRIPT = """
(function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll("#case-table tbody tr"));
  var pick = function (id) { return document.getElementById(id); };
  var count = pick("case-count");
  function show() {
    var outcome = pick("filter-outcome").value, language = pick("filter-language").value,
        tag = pick("filter-tag").value, text = pick("filter-text").value.trim().toLowerCase(), shown = 0;
    rows.forEach(function (row) {
      var keep = (!outcome || row.dataset.outcome === outcome) && (!language || row.dataset.language === language)
        && (!tag || JSON.parse(row.dataset.tags).indexOf(tag) >= 0)
        && (!text || row.textContent.toLowerCase().indexOf(text) >= 0);
      row.hidden = !keep;
      if (keep) { shown += 1; }
    });
    count.textContent = shown + " of " + rows.length + " cases";
  }
  ["filter-outcome", "filter-language", "filter-tag"].forEach(function (id) {
    pick(id).addEventListener("change", show);
  });
  pick("filter-text").addEventListener("input", show);
  show();
})();
"""


def render_report(store: Store, run_id: str) -> str:
    """The whole HTML page for run `run_id` (raises `RunNotFound`)."""
    run = store.run(run_id)
    if run is None:
        raise RunNotFound(run_id)
    report = run_report(store, run_id)
    outcomes = held_out_cases(store, run)
    parts = [
        ("result", "Result", _result(report, wall_seconds(run, report["status"]))),
        ("trajectory", "Search trajectory", _trajectory(store, run_id)),
        ("confusion", "Confusion on the test split", _confusion(outcomes)),
        ("cases", "Test cases, seed vs. winner", _cases(outcomes)),
        ("diff", "Prompt diff, seed → winner", _diff(store, run)),
    ]
    if report.get("evaluators"):
        parts.append(("evaluators", "Per evaluator (test split)", _evaluators(report["evaluators"])))
    body = "\n".join([_header(run, report), navigation([(a, t) for a, t, _ in parts]),
                      *[section(a, t, b) for a, t, b in parts], _footer()])
    return page(f"promptopt run {run_id}", body, FILTER_SCRIPT)


def _header(run: RunRow, report: dict[str, Any]) -> str:
    config = run.config or {}
    models = f"task model {config.get('model', '?')}"
    if config.get("optimizer_model") and config.get("optimizer_model") != config.get("model"):
        models += f", optimizer model {config['optimizer_model']}"
    started = run.created_at.strftime("%Y-%m-%d %H:%M UTC") if run.created_at else ""
    line = (f"task {run.task} · strategy {run.strategy} · {report['status']} · {models} · "
            f"{config.get('steps', '?')} step(s), seed {config.get('seed', '?')} · started {started}")
    banner = ""
    if report["status"] != "finished":
        banner = (f'<p class="banner">This run is {esc(report["status"])}: its result is not final'
                  f'{": " + esc(report["error"]) if report.get("error") else ""}. Resume it with '
                  f"<code>promptopt run --resume {esc(run.id)}</code>.</p>")
    return f"<header>\n<h1>promptopt run {esc(run.id)}</h1>\n<p>{esc(line)}</p>\n{banner}\n</header>"


def _result(report: dict[str, Any], wall: float) -> str:
    """Seed vs. winner on the test split with the key figures; for a run that did not finish, what it has so far."""
    spent = [(f"{report['candidates']} / {report['accepted']}",
              f"candidates / accepted ({report['invalid_candidates']} invalid)"),
             (str(report["model_calls"]), f"model calls ({report['new_model_calls']} new, {report['cache_hits']} "
                                          f"cached, {report['failed_calls']} failed)"),
             (f"{report['tokens_in']:,} / {report['tokens_out']:,}", "tokens in / out"),
             (dollars(report["cost_usd"]), "spent at list price"), (duration(wall), "wall time")]
    if report["status"] != "finished":
        planned = f" / {report['steps_planned']}" if report.get("steps_planned") else ""
        incumbent = report["incumbent"]
        return ('<p class="note">Not finished, so there is no seed-vs-winner verdict on the test split yet.</p>'
                + facts([(f"{report['steps_done']}{planned}", "search steps done / planned"),
                         (str(incumbent["candidate_id"]), "incumbent candidate"),
                         (percent(incumbent["val_accuracy"]), "the incumbent's validation score"), *spent]))
    rows = [[esc(title), percent(report[key]["test_accuracy"]), interval(report[key]["ci95"]),
             percent(report[key]["val_accuracy"])] for key, title in (("seed", "seed prompt"), ("winner", "winner"))]
    result = table(["", "test accuracy", "95% CI (Wilson)", "validation"], rows, classes=NUMBERS,
                   attributes='class="compact" id="result-table"')
    tiles = facts([
        (p_value(report["p_value"]), f"paired exact McNemar p on {report['test_cases']} test cases"),
        (str(report["fixed"]), "fixed (the seed got them wrong, the winner right)"),
        (str(report["broken"]), "broken (the seed got them right, the winner wrong)"),
        *spent,
    ])
    notes = [line[0].upper() + line[1:] + "." for line in split_line(report)]
    if report["winner"]["candidate_id"] == report["seed"]["candidate_id"]:
        notes.append("No candidate passed acceptance; the seed prompt stays the winner.")
    if report["failed_calls"]:
        notes.append(f"{report['failed_calls']} model call(s) failed after their last retry; those evaluations "
                     "count as wrong.")
    return result + tiles + "".join(f'<p class="note">{esc(n)}</p>' for n in notes)


def _trajectory(store: Store, run_id: str) -> str:
    points = candidate_scores(store, run_id)
    figure = (f"<figure>{trajectory_svg(points, incumbent_by_step(store, run_id))}<figcaption>Each candidate's "
              "share of passed cases on the training sample it was scored on (circles) and on the validation split "
              "(squares); stars mark the accepted ones (the seed is the first incumbent). The line is the "
              "incumbent's validation score after each step.</figcaption></figure>")
    rows = [[str(p.candidate_id), "seed" if p.step == 0 else str(p.step), esc(p.operator), esc(p.status),
             _share(p.train, p.train_cases), _share(p.val, p.val_cases), esc(p.rejection)] for p in points]
    listing = table(["candidate", "step", "operator", "status", "training", "validation", "why not accepted"], rows,
                    classes={0: "num", 4: "num", 5: "num"}, attributes='id="candidate-table"')
    return f"{figure}\n<details><summary>All {len(points)} candidates</summary>\n{listing}\n</details>"


def _share(value: float | None, cases: int) -> str:
    return "–" if value is None else f"{percent(value)} <small>of {cases}</small>"


def _confusion(outcomes: list[HeldOutCase]) -> str:
    if not outcomes:
        return '<p class="note">No test case was scored under both the seed and the winner.</p>'
    names, seed = confusion(outcomes, "seed")
    _, winner = confusion(outcomes, "winner")
    right = [sum(matrix[i][i] for i in range(len(names))) for matrix in (seed, winner)]
    svg = confusion_svg(names, [(f"seed prompt: {right[0]} of {len(outcomes)} on the diagonal", seed),
                                (f"winner: {right[1]} of {len(outcomes)} on the diagonal", winner)])
    return (f"<figure>{svg}<figcaption>Rows: the tool each test case expects; columns: the tool the model chose. "
            "The diagonal is the right choice (tool names only; arguments are not compared here).</figcaption>"
            "</figure>")


def _cases(outcomes: list[HeldOutCase]) -> str:
    counts = {name: sum(o.outcome == name for o in outcomes) for name in OUTCOMES}
    languages = sorted({o.language for o in outcomes})
    tags = sorted({tag for o in outcomes for tag in o.case.tags})
    filters = (
        '<div class="filters">'
        + _select("filter-outcome", "outcome", [(n, f"{n} ({counts[n]})") for n in OUTCOMES])
        + _select("filter-language", "language", [(lang, lang) for lang in languages])
        + _select("filter-tag", "tag", [(tag, tag) for tag in tags])
        + '<label>text <input id="filter-text" type="search" placeholder="query, tool…"></label>'
        + f'<span id="case-count" class="note">{len(outcomes)} cases</span></div>')
    rows, attributes = [], []
    for o in outcomes:
        rows.append([str(o.case.id), esc(o.case.query), _context(o.case), _call(o.case.expected),
                     _call(chosen(o.seed), o.seed.error), _call(chosen(o.winner), o.winner.error),
                     f'<span class="badge {o.outcome.replace(" ", "-")}">{esc(o.outcome)}</span>',
                     esc(o.language), esc(", ".join(o.case.tags))])
        attributes.append(f'data-case-id="{o.case.id}" data-outcome="{esc(o.outcome)}" '
                          f'data-language="{esc(o.language)}" '
                          f'data-tags="{esc(json.dumps(list(o.case.tags), ensure_ascii=False))}"')
    cases = table(["case", "query", "context", "expected", "seed chose", "winner chose", "outcome", "language",
                   "tags"], rows, classes={0: "num", 1: "query", 2: "context", 6: "nowrap", 7: "nowrap"},
                  attributes='id="case-table"', row_attributes=attributes)
    return filters + f'<div class="scroll">{cases}</div>'


def _select(element_id: str, title: str, options: list[tuple[str, str]]) -> str:
    choices = "".join(f'<option value="{esc(value)}">{esc(text)}</option>' for value, text in options)
    return f'<label>{esc(title)} <select id="{element_id}"><option value="">all</option>{choices}</select></label>'


def _context(case: Case) -> str:
    """The earlier messages, one `role: text` block each (long ones shortened)."""
    blocks = []
    for message in case.context:
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False) if content else ""
        calls = message.get("tool_calls") or []
        if calls and not text:
            text = "calls " + ", ".join(str((c.get("function") or {}).get("name", "?")) for c in calls)
        if len(text) > CONTEXT_CHARS:
            text = text[:CONTEXT_CHARS - 1] + "…"
        blocks.append(f"<div><b>{esc(message.get('role', '?'))}:</b> {esc(text)}</div>")
    return "".join(blocks)


def _call(call: ToolCall, error: str = "") -> str:
    """A routing choice, with its arguments when it has any."""
    text = f"<code>{esc(choice_text(call, error))}</code>"
    if call.arguments and not error:
        text += f"<br><small>{esc(json.dumps(call.arguments, ensure_ascii=False))}</small>"
    return text


def _diff(store: Store, run: RunRow) -> str:
    seed = store.candidate(run.seed_candidate_id) if run.seed_candidate_id else None
    winner = store.candidate(run.winner_candidate_id) if run.winner_candidate_id else None
    if seed is None or winner is None:
        return '<p class="note">The run has no seed or winner prompt stored.</p>'
    lines = prompt_diff(seed.prompt, winner.prompt)
    changed = sum(line.kind != "same" for line in lines)
    summary = ("The winner is the seed prompt: nothing changed." if seed.id == winner.id or not changed else
               f"{sum(line.kind == 'added' for line in lines)} line(s) added, "
               f"{sum(line.kind == 'removed' for line in lines)} removed (candidate {seed.id} → {winner.id}).")
    legend = ('<p class="legend"><span><i style="background:#e3f5ea"></i>added</span>'
              '<span><i style="background:#fdecea"></i>removed</span>'
              '<span><i style="background:#fff6db;border-left:4px solid #b08800"></i>protected region '
              "(never edited by an optimizer)</span></p>")
    return f'<p class="note">{esc(summary)}</p>{legend}<div class="diff" id="prompt-diff">{_diff_lines(lines)}</div>'


def _diff_lines(lines: list[DiffLine]) -> str:
    """The diff's lines; a long unchanged, unprotected stretch folds into a <details> element."""
    near = {i for i, line in enumerate(lines) if line.kind != "same" or line.protected}
    shown = {i for i in range(len(lines)) if any(abs(i - j) <= DIFF_CONTEXT for j in near)} if near else set()
    parts, folded = [], []
    for index, line in enumerate(lines):
        if index in shown or len(lines) <= 2 * DIFF_CONTEXT + 4:
            if folded:
                parts.append(_fold(folded))
                folded = []
            parts.append(_diff_line(line))
        else:
            folded.append(_diff_line(line))
    if folded:
        parts.append(_fold(folded))
    return "".join(parts)


def _fold(lines: list[str]) -> str:
    return f"<details><summary>{len(lines)} unchanged line(s)</summary>{''.join(lines)}</details>"


def _diff_line(line: DiffLine) -> str:
    sign = {"same": " ", "added": "+", "removed": "−"}[line.kind]
    classes = f"line {line.kind}{' protected' if line.protected else ''}"
    marker = '<span class="tag">protected</span>' if line.protected and MARKER.search(line.text) else ""
    return (f'<div class="{classes}"><span class="n">{line.seed_line or ""}</span>'
            f'<span class="n">{line.winner_line or ""}</span><span class="sign">{sign}</span>'
            f"<span>{esc(line.text)}{marker}</span></div>")


def _evaluators(breakdown: dict[str, dict[str, dict[str, float]]]) -> str:
    rows = [[esc(name), mean_text(scores["seed"]["mean_score"]), percent(scores["seed"]["pass_rate"]),
             mean_text(scores["winner"]["mean_score"]), percent(scores["winner"]["pass_rate"])]
            for name, scores in breakdown.items()]
    return table(["evaluator", "seed mean score", "seed passed", "winner mean score", "winner passed"], rows,
                 classes=NUMBERS, attributes='class="compact" id="evaluator-table"')


def _footer() -> str:
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"<footer>Made by promptopt {esc(version('promptopt'))} on {made}; this file needs nothing else to open." \
           "</footer>"
