"""The benchmark loaders turn the public reference data into case files promptopt imports as they are."""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

from promptopt.runs.case_import import read_cases
from promptopt.tasks import load_prompt, load_tools

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from reference_tasks import DATA_ROOT, LOADERS, DataMissing  # noqa: E402


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_reference_task_imports_with_every_tool_and_no_tool_cases(name, tmp_path):
    try:
        task = LOADERS[name](limit=120, seed=0)
    except DataMissing as missing:
        pytest.skip(str(missing))
    case_file, tools_file, prompt_file = task.write(tmp_path)
    tools = load_tools(tools_file)
    cases = read_cases(case_file, tools)
    assert len(cases) == len(task.cases) == 120
    counts = Counter(c.expected.name for c in cases)
    assert counts["none"] >= 10, counts
    assert len(counts) >= 5, counts
    assert all(t["function"]["name"] in load_prompt(prompt_file) for t in tools)
    assert len({c.content_hash() for c in cases}) == len(cases)


def test_loaders_say_where_they_looked_when_the_data_is_absent(monkeypatch, tmp_path):
    import reference_tasks

    monkeypatch.setattr(reference_tasks, "DATA_ROOT", tmp_path / "nowhere")
    for loader in LOADERS.values():
        with pytest.raises(DataMissing, match="nowhere"):
            loader()
    assert DATA_ROOT.name == "data"
