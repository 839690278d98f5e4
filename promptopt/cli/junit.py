"""`promptopt check --junit FILE`: the check as JUnit XML, so CI systems show each case as a test result."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from promptopt.case import choice_text
from promptopt.optimizer.check import CaseOutcome, CheckResult

SUITE = "promptopt check"
CLASS = "promptopt.check"


def junit_tree(result: CheckResult) -> ET.ElementTree:
    """One `<testsuite>`: a `<testcase>` per case (failed ones with `<failure>`, failed model calls with
    `<error>`) and a last one, `thresholds`, that fails when the check does."""
    errors = sum(1 for o in result.outcomes if o.result.error)
    failures = sum(1 for o in result.outcomes if not o.passed and not o.result.error) + (not result.passed)
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name=SUITE, tests=str(len(result.outcomes) + 1),
                          failures=str(failures), errors=str(errors), skipped="0")
    properties = ET.SubElement(suite, "properties")
    minimum = result.thresholds.min_accuracy
    for name, value in (("run_id", result.run_id), ("accuracy", f"{result.accuracy:.4f}"),
                        ("max_broken", str(result.thresholds.max_broken)),
                        ("min_accuracy", "none" if minimum is None else f"{minimum:.4f}")):
        ET.SubElement(properties, "property", name=name, value=value)
    for outcome in result.outcomes:
        _add_case(suite, outcome)
    summary = ET.SubElement(suite, "testcase", classname=CLASS, name="thresholds")
    if not result.passed:
        ET.SubElement(summary, "failure", message=result.verdict, type="threshold").text = result.verdict
    ET.indent(root)
    return ET.ElementTree(root)


def _add_case(suite: ET.Element, outcome: CaseOutcome) -> None:
    """A case's `<testcase>`: named by id and query, classed by label; why it failed when it did."""
    case, result = outcome.case, outcome.result
    query = " ".join(case.query.split())[:80]
    element = ET.SubElement(suite, "testcase", classname=f"{CLASS}.{case.label}", name=f"case {case.id}: {query}")
    if outcome.passed:
        return
    expected, chosen = choice_text(case.expected), choice_text(result.output, result.error)
    if result.error:
        ET.SubElement(element, "error", message=f"model call failed: {result.error}", type="model call")
        return
    kind = "broken" if outcome.broken else "wrong"
    message = f"{kind}: expected {expected}, the prompt chose {chosen}"
    ET.SubElement(element, "failure", message=message, type=kind).text = f"{message}\n{result.feedback}".strip()


def write_junit(result: CheckResult, path: str | Path) -> None:
    """Write the check's JUnit XML to `path` (UTF-8, with an XML declaration)."""
    junit_tree(result).write(path, encoding="utf-8", xml_declaration=True)
