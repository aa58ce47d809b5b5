"""JUnit XML, the test-report format every CI system reads: one test case per compared trial,
a failure per regression, so a job's test tab lists what got slower."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autotune.errors import InputError


@dataclass(frozen=True)
class Case:
    """One test case: ``failure`` (a regression) or ``skipped`` (nothing to compare) is the
    message shown; neither means it passed."""

    name: str
    classname: str
    failure: str | None = None
    skipped: str | None = None
    output: str = ""
    error: str | None = None  # the case could not run (a campaign's cell that failed)


@dataclass(frozen=True)
class Suite:
    """A named group of cases: one comparison (a campaign writes one per run)."""

    name: str
    cases: Sequence[Case]


def write_junit(path: Path, suite: str, cases: Sequence[Case]) -> Path:
    """Write ``cases`` as one test suite of a JUnit XML file at ``path``."""
    return write_suites(path, [Suite(suite, cases)])


def write_suites(path: Path, suites: Sequence[Suite]) -> Path:
    """Write ``suites`` into one JUnit XML file at ``path``."""
    totals = _counts([case for suite in suites for case in suite.cases])
    root = ET.Element("testsuites", name="autotune", **totals)
    for suite in suites:
        element = ET.SubElement(root, "testsuite", name=suite.name, **_counts(suite.cases))
        for case in suite.cases:
            node = ET.SubElement(element, "testcase", name=case.name,
                                 classname=case.classname, time="0")
            if case.error is not None:
                ET.SubElement(node, "error", message=case.error.splitlines()[0][:500],
                              type="error").text = case.error
            elif case.failure is not None:
                ET.SubElement(node, "failure", message=case.failure.splitlines()[0][:500],
                              type="regression").text = case.failure
            elif case.skipped is not None:
                ET.SubElement(node, "skipped", message=case.skipped)
            if case.output:
                ET.SubElement(node, "system-out").text = case.output
    ET.indent(root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    except OSError as error:
        raise InputError(f"--junit {path}: cannot write ({error.strerror})") from None
    return path


def _counts(cases: Sequence[Case]) -> dict[str, str]:
    errors = sum(case.error is not None for case in cases)
    failures = sum(case.failure is not None and case.error is None for case in cases)
    skipped = sum(case.skipped is not None and case.failure is None and case.error is None
                  for case in cases)
    return {"tests": str(len(cases)), "failures": str(failures), "errors": str(errors),
            "skipped": str(skipped)}
