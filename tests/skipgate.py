"""In CI (``$CI`` set), a skipped test fails the run unless tests/allowed_skips.txt lists it.

`make test` installs everything the tests need, so in CI a skip means a missing piece or a
test that quietly stopped testing: it must be seen, not summarised as "s". A skip that is
legitimate in CI is listed with its reason, one per line: ``NODEID_PREFIX | REASON_TEXT``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ALLOWED = Path(__file__).with_name("allowed_skips.txt")

_skipped: list[tuple[str, str]] = []


def allowed_skips(path: Path) -> list[tuple[str, str]]:
    rules = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        nodeid, _, reason = line.partition("|")
        rules.append((nodeid.strip(), reason.strip()))
    return rules


def _reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def unlisted(skipped: list[tuple[str, str]], rules: list[tuple[str, str]]
             ) -> list[tuple[str, str]]:
    return [(nodeid, reason) for nodeid, reason in skipped
            if not any(nodeid.startswith(n) and r in reason for n, r in rules)]


def pytest_runtest_logreport(report) -> None:
    # An expected failure is reported as "skipped" too, but it ran.
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append((report.nodeid, _reason(report)))


def _offenders() -> list[tuple[str, str]]:
    if not os.environ.get("CI"):
        return []
    return unlisted(_skipped, allowed_skips(ALLOWED))


def pytest_terminal_summary(terminalreporter) -> None:
    offenders = _offenders()
    if offenders:
        terminalreporter.section("skipped in CI, not in tests/allowed_skips.txt", red=True)
        for nodeid, reason in offenders:
            terminalreporter.line(f"{nodeid}: {reason}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session) -> None:
    if _offenders() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
