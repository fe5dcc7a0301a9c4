"""A pytest plugin for compat_suites/run.py: counts tests and subtests and writes them as JSON.

The unit counted is a subtest (``self.subTest`` in unittest, the ``subtests`` fixture in pytest),
or a test that has none. A test with subtests also counts once if it fails outside all of them.
A test file that cannot be imported counts as one failure. The JSON file (path in ``$COMPAT_COUNT_JSON``) holds ``{"passed": n, "failed": n, "skipped": n,
"failures": [{"test": nodeid, "subtest": text, "message": first line}]}``.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

_outcomes: dict[str, dict] = defaultdict(lambda: {"subtests": [], "own": "passed", "msg": ""})


def _message(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message.strip().splitlines()[0][:300] if crash.message.strip() else ""
    text = str(report.longrepr or "").strip().splitlines()
    return text[-1][:300] if text else ""


def pytest_runtest_logreport(report) -> None:
    entry = _outcomes[report.nodeid]
    context = getattr(report, "context", None)
    if context is not None:  # a SubtestReport
        if report.when == "call":
            label = " ".join(
                [context.msg or ""] + [f"{k}={v}" for k, v in (context.kwargs or {}).items()]
            ).strip()
            entry["subtests"].append(
                (label, report.outcome, _message(report) if report.failed else "")
            )
        return
    if report.failed and entry["own"] != "failed":
        entry["own"], entry["msg"] = "failed", _message(report)
    elif report.skipped and report.when in ("setup", "call") and entry["own"] == "passed":
        entry["own"] = "skipped"


def pytest_collectreport(report) -> None:
    """A test file that cannot be collected counts as one failure."""
    if report.failed:
        entry = _outcomes[report.nodeid]
        entry["own"], entry["msg"] = "failed", "collection: " + _message(report)


def pytest_sessionfinish(session) -> None:
    path = os.environ.get("COMPAT_COUNT_JSON")
    if not path:
        return
    counts = {"passed": 0, "failed": 0, "skipped": 0, "failures": []}
    for nodeid, entry in _outcomes.items():
        subtests = entry["subtests"]
        for label, outcome, msg in subtests:
            counts[outcome if outcome in counts else "failed"] += 1
            if outcome == "failed":
                counts["failures"].append({"test": nodeid, "subtest": label, "message": msg})
        sub_failed = any(outcome == "failed" for _, outcome, _ in subtests)
        if subtests and (entry["own"] != "failed" or sub_failed):
            continue
        counts[entry["own"]] += 1
        if entry["own"] == "failed":
            counts["failures"].append({"test": nodeid, "subtest": "", "message": entry["msg"]})
    with open(path, "w") as file:
        json.dump(counts, file, indent=1)
