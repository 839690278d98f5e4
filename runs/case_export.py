"""Stored cases written back as a case file (JSON Lines or CSV, by the file's suffix) that `cases import` reads
as the same cases: same query, context and expected output, so the same content hash, label, tags and source."""
from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence, TextIO

from promptopt.case import Case
from promptopt.runs.case_import import CSV_COLUMNS

EXPORT_FORMATS = ("jsonl", "csv")


def case_record(case: Case) -> dict[str, Any]:
    """`case` as one JSON line of a case file (the format `cases import` reads)."""
    record: dict[str, Any] = {"query": case.query, "context": [dict(m) for m in case.context],
                              "expected": case.expected.to_json()}
    if case.actual is not None:
        record["actual"] = case.actual.to_json()
    record.update(label=case.label, tags=list(case.tags), source=case.source)
    return record


def export_format(path: str | Path | None, given: str | None = None) -> str:
    """`given`, else the format the file's suffix names (`.csv`: CSV; anything else, or stdout: JSON Lines)."""
    if given:
        return given
    return "csv" if path is not None and str(path) != "-" and Path(path).suffix.lower() == ".csv" else "jsonl"


def write_cases_to(stream: TextIO, cases: Sequence[Case], fmt: str) -> None:
    """Write `cases` to `stream` as JSON Lines or CSV."""
    if fmt == "jsonl":
        for case in cases:
            stream.write(json.dumps(case_record(case), ensure_ascii=False) + "\n")
        return
    writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for case in cases:
        writer.writerow(_csv_row(case))


def write_cases(path: str | Path, cases: Sequence[Case], fmt: str) -> None:
    """Write `cases` to the file `path` whole or not at all (a temporary file renamed into place)."""
    target = Path(path)
    handle, temporary = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            write_cases_to(stream, cases, fmt)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _csv_row(case: Case) -> dict[str, str]:
    def arguments(call_arguments: dict[str, Any]) -> str:
        return json.dumps(call_arguments, ensure_ascii=False) if call_arguments else ""

    actual = case.actual
    return {
        "query": case.query,
        "context": json.dumps([dict(m) for m in case.context], ensure_ascii=False) if case.context else "",
        "expected_tool": "" if case.expected.is_none else case.expected.name,
        "expected_arguments": arguments(dict(case.expected.arguments)),
        "actual_tool": "" if actual is None or actual.is_none else actual.name,
        "actual_arguments": "" if actual is None else arguments(dict(actual.arguments)),
        "label": case.label, "tags": ";".join(case.tags), "source": case.source,
        "expected_text": case.expected.text,
    }

