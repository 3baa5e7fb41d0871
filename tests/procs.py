"""Waiting for a daemon's children, to check restarts and orphans (/proc readers are in
beepnet.testing.procs, shared with the benchmark)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from beepnet.testing.procs import alive, children, comm

__all__ = ["alive", "beepnet_children", "children", "comm", "run_beepnet", "wait_for"]

REPO = Path(__file__).resolve().parents[1]


def run_beepnet(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m beepnet ARGS`` from the repository, as a user runs it; output captured."""
    return subprocess.run([sys.executable, "-m", "beepnet", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, check=False)


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def beepnet_children(pid: int, timeout: float = 20.0) -> dict[str, int]:
    """Wait until ``pid`` has started its recorder and classifier; {comm: pid}."""
    found: dict[str, int] = {}

    def both() -> bool:
        found.clear()
        for c in children(pid):
            found[comm(c)] = c
        return {"beepnet-rec", "beepnet-clf"} <= set(found)

    assert wait_for(both, timeout), f"children of {pid}: {found}"
    return found

