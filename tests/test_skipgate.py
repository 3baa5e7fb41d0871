"""The CI rule that no test is skipped silently (tests/skipgate.py), run on a tiny suite."""

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent

SUITE = '''
import pytest

def test_runs():
    assert True

def test_skips():
    pytest.skip("no tmux here")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False
'''


def _run(tmp_path, ci: bool, allowed: str = "") -> subprocess.CompletedProcess:
    (tmp_path / "allowed.txt").write_text(allowed)
    (tmp_path / "conftest.py").write_text(
        "import skipgate\nfrom pathlib import Path\n"
        "skipgate.ALLOWED = Path(__file__).with_name('allowed.txt')\n"
        "from skipgate import (pytest_runtest_logreport, pytest_sessionfinish,\n"
        "                      pytest_terminal_summary)\n")
    (tmp_path / "test_tiny.py").write_text(SUITE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(TESTS)
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_skip_fails_in_ci_and_only_there(tmp_path):
    r = _run(tmp_path, ci=False)
    assert r.returncode == 0, r.stdout
    r = _run(tmp_path, ci=True)
    assert r.returncode == 1, r.stdout
    assert "test_tiny.py::test_skips: no tmux here" in r.stdout
    assert "test_expected_failure" not in r.stdout.split("allowed_skips")[-1]


def test_a_listed_skip_passes_in_ci(tmp_path):
    r = _run(tmp_path, ci=True, allowed="# why\ntest_tiny.py::test_skips | no tmux\n")
    assert r.returncode == 0, r.stdout
    r = _run(tmp_path, ci=True, allowed="test_tiny.py::test_skips | another reason\n")
    assert r.returncode == 1, r.stdout


def test_the_repository_allows_no_skip_in_ci():
    from skipgate import ALLOWED, allowed_skips

    assert allowed_skips(ALLOWED) == []
