"""`promptopt check --junit FILE`: the check as JUnit XML, so CI systems show each case as a test result."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from promptopt.case import choice_text
from promptopt.optimizer.check import CaseOutcome, CheckResult

SUITE = "promptopt check"
CLASS = "promptopt.check"


def junit_tree(result: CheckResult) -> ET.ElementTree:
    """One `<testsuite>`: a `<testcase>` per case and a last one, `thresholds`, that fails when the check does.
    Only regressions fail: a previously-good case the prompt breaks has a `<failure>`, a failed model call an
    `<error>`; a bad case the prompt still gets wrong passes, with what it chose in `<system-out>` (it was wrong
    before, so it is not what the gate guards)."""
    errors = sum(1 for o in result.outcomes if o.result.error)
    failures = sum(1 for o in result.outcomes if o.broken and not o.result.error) + (not result.passed)
    root = ET.Element("testsuites")
    seconds = sum(o.result.seconds for o in result.outcomes)
    suite = ET.SubElement(root, "testsuite", name=SUITE, tests=str(len(result.outcomes) + 1),
                          failures=str(failures), errors=str(errors), skipped="0", time=f"{seconds:.3f}")
    properties = ET.SubElement(suite, "properties")
    minimum = result.thresholds.min_accuracy
    for name, value in (("run_id", result.run_id), ("accuracy", f"{result.accuracy:.4f}"),
                        ("max_broken", str(result.thresholds.max_broken)),
                        ("min_accuracy", "none" if minimum is None else f"{minimum:.4f}")):
        ET.SubElement(properties, "property", name=name, value=value)
    for outcome in result.outcomes:
        _add_case(suite, outcome)
    summary = ET.SubElement(suite, "testcase", classname=CLASS, name="thresholds", time="0")
    if not result.passed:
        ET.SubElement(summary, "failure", message=result.verdict, type="threshold")
    ET.indent(root)
    return ET.ElementTree(root)


def _add_case(suite: ET.Element, outcome: CaseOutcome) -> None:
    """A case's `<testcase>`: named by id and query, classed by label; why it failed when it did."""
    case, result = outcome.case, outcome.result
    query = " ".join(case.query.split())[:80]
    element = ET.SubElement(suite, "testcase", classname=f"{CLASS}.{case.label}", name=f"case {case.id}: {query}",
                            time=f"{result.seconds:.3f}")  # the model call's, 0 when the cache answered
    if outcome.passed:
        return
    expected, chosen = choice_text(case.expected), choice_text(result.output, result.error)
    if result.error:
        ET.SubElement(element, "error", message=f"model call failed: {result.error}", type="model call")
        return
    message = f"expected {expected}, the prompt chose {chosen}"
    if outcome.broken:
        ET.SubElement(element, "failure", message=f"broken: {message}", type="broken").text = result.feedback or None
    else:
        ET.SubElement(element, "system-out").text = \
            f"still wrong (a bad case, not a regression): {message}\n{result.feedback}".strip()


def write_junit(result: CheckResult, path: str | Path) -> None:
    """Write the check's JUnit XML to `path` (UTF-8, with an XML declaration)."""
    junit_tree(result).write(path, encoding="utf-8", xml_declaration=True)
