"""Candidate validation, splits and statistics."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from promptopt.api import optimize
from promptopt.case import Case, ToolCall
from promptopt.markup import strip_markers
from promptopt.optimizer.candidates import validation_problem
from promptopt.optimizer.splits import split_cases, stratified_sample
from promptopt.runs.case_import import read_cases
from promptopt.runs.store import Store
from promptopt.statistics import mcnemar_exact, wilson_interval
from tests.fakes import OPTIONS, RUNS, ScriptedModel

TOOLS = ["get_order_status", "find_stores"]
SEED = ("Use get_order_status or find_stores.\n<!-- protected -->\nNever share card numbers.\n"
        "<!-- /protected -->\n")


def test_valid_edit_passes():
    assert validation_problem(SEED + "\nExamples: ...", SEED, TOOLS) is None


@pytest.mark.parametrize("prompt, reason", [
    (SEED.replace("Never share", "Feel free to share"), "protected region"),
    (SEED.replace("<!-- /protected -->\n", ""), "protected region"),
    (SEED.replace("find_stores", "the store finder"), "no longer names tool(s): find_stores"),
    (SEED + "x" * 13000, "too long"),
    ("   ", "empty"),
])
def test_invalid_candidates_are_named(prompt, reason):
    assert reason in validation_problem(prompt, SEED, TOOLS)


@pytest.mark.parametrize("prompt, line, why", [
    (SEED + "<!-- protected -->\nNo refunds.\n", 5, "without a closing"),
    (SEED + "Done.\n<!-- /protected -->\n", 6, "without an opening"),
    (SEED.replace("Never share", "<!-- protected -->\nNever share"), 3, "inside the protected region opened on line 2"),
])
def test_unpaired_protection_markers_are_a_rejection(prompt, line, why):
    reason = validation_problem(prompt, prompt, TOOLS)
    assert reason.startswith(f"protected region markers do not pair up: line {line}: ") and why in reason


def test_strip_markers_keeps_the_text():
    assert strip_markers(SEED) == "Use get_order_status or find_stores.\nNever share card numbers.\n"


def test_splits_are_seeded_and_stratified():
    cases = [Case(query=f"q{i}", expected=ToolCall(["a", "b", "none"][i % 3]), id=i) for i in range(120)]
    first, again, other = split_cases(cases, 7), split_cases(cases, 7), split_cases(cases, 8)
    assert first == again and first != other
    counts = Counter((c.expected.name, first[c.id]) for c in cases)
    for tool in ("a", "b", "none"):
        assert (counts[(tool, "train")], counts[(tool, "val")], counts[(tool, "test")]) == (20, 10, 10)


def test_the_split_follows_the_cases_not_their_store_ids():
    cases = [Case(query=f"q{i}", expected=ToolCall(["a", "b", "none"][i % 3]), id=i) for i in range(120)]
    renumbered = [replace(c, id=5000 - c.id) for c in reversed(cases)]
    by_query = lambda given: {c.query: split for c in given for split in [split_cases(given, 7)[c.id]]}  # noqa: E731
    assert by_query(cases) == by_query(renumbered)


def test_a_store_that_already_held_some_cases_gives_the_same_split_and_seed_accuracy(tmp_path, task):
    """Importing good_cases.jsonl first (so the bundled cases get other store ids) changes nothing of the run's split
    or its seed's test result."""
    fresh = optimize(model=ScriptedModel(task), db=f"sqlite:///{tmp_path / 'fresh.db'}", **OPTIONS, **RUNS["demos"])
    used = f"sqlite:///{tmp_path / 'used.db'}"
    good = next(path for path in task.case_files if path.name == "good_cases.jsonl")
    Store(used).import_cases(read_cases(good, task.tools))
    again = optimize(model=ScriptedModel(task), db=used, **OPTIONS, **RUNS["demos"])
    assert again.report["split"] == fresh.report["split"]
    assert again.report["seed"]["test_accuracy"] == fresh.report["seed"]["test_accuracy"]
    assert again.report["winner"]["test_accuracy"] == fresh.report["winner"]["test_accuracy"]


def test_training_samples_keep_every_tool_even_a_rare_one():
    """The samples strategies score on: each tool in proportion, a tool with two cases still present."""
    cases = [Case(query=f"q{i}", expected=ToolCall("none" if i < 60 else "a" if i < 98 else "rare"), id=i)
             for i in range(100)]
    sample = stratified_sample(cases, 20, np.random.default_rng(3))
    assert Counter(c.expected.name for c in sample) == {"none": 12, "a": 8, "rare": 1}
    assert [c.id for c in sample] == sorted(c.id for c in sample)
    assert sample == stratified_sample(cases, 20, np.random.default_rng(3))
    assert stratified_sample(cases[:15], 20, np.random.default_rng(3)) == cases[:15]


def test_wilson_interval_matches_reference_values():
    lo, hi = wilson_interval(30, 100)
    assert lo == pytest.approx(0.2189, abs=1e-4) and hi == pytest.approx(0.3958, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # plain floats, so CSV and Markdown reports print numbers rather than `np.float64(...)`
    assert str([lo, hi]).startswith("[0.2189")


def test_exact_mcnemar():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(10, 0) == pytest.approx(2 * 0.5 ** 10)
    assert mcnemar_exact(5, 5) == 1.0
