"""Waiting for a daemon's children, to check restarts and orphans (/proc readers are in
beepnet.testing.procs, shared with the benchmark)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from beepnet.testing.procs import alive, children, comm

__all__ = ["LogReader", "alive", "beepnet_children", "children", "comm", "run_beepnet",
           "wait_for"]

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


class LogReader:
    """Collects a process's stderr lines in the background (a full pipe would block the
    process), so a test can wait for a line while it runs."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self._t.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> bool:
        return wait_for(lambda: any(text in ln for ln in self.lines), timeout)

    def join(self, timeout: float = 5.0) -> None:
        self._t.join(timeout)

    @property
    def text(self) -> str:
        return "".join(self.lines)
