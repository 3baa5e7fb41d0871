"""A wall clock that a test steps for the processes it starts (libfaketime), while their
monotonic clock stays true: how NTP setting a Pi's clock after boot looks to beepnet.

Debian's `faketime` (installed by `make test`) ships two builds; the daemon reads the clock
from several threads at once (supervisor loop, Telegram delivery), and only the MT build
reads the offset file under a lock: with the other, a thread now and then sees a step back
and forth that never happened.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

# libfaketime 0.9.10 with DONT_FAKE_MONOTONIC hands the kernel a negative time for
# clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME), which time.sleep uses since Python 3.11:
# every sleep fails with EINVAL (wolfcw/libfaketime#426). Under it, sleep through select's
# relative timeout instead; nothing else changes.
SLEEP_FIX = """
import select, time

def _sleep(seconds):
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    select.select([], [], [], seconds)

time.sleep = _sleep
"""


def library() -> str:
    """The thread-safe libfaketime, wherever this machine's architecture keeps it."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not found:
        pytest.fail("libfaketimeMT.so.1 missing (Debian package faketime): run `make test`")
    return found[0]


class SteppedClock:
    """Processes started with ``env(...)`` see the wall clock plus the offset last ``set``."""

    def __init__(self, directory: Path):
        self.file = Path(directory) / "faketime"
        self._site = Path(directory) / "faketime-site"
        self.set("+0")

    def env(self, base: dict) -> dict:
        self._site.mkdir(exist_ok=True)
        (self._site / "sitecustomize.py").write_text(SLEEP_FIX)
        path = os.pathsep.join(filter(None, (str(self._site), base.get("PYTHONPATH"))))
        return dict(base, LD_PRELOAD=library(), FAKETIME_TIMESTAMP_FILE=str(self.file),
                    FAKETIME_NO_CACHE="1", DONT_FAKE_MONOTONIC="1", PYTHONPATH=path)

    def set(self, offset: str) -> None:
        """``offset`` in libfaketime's words, from the true time: "+3d", "-1h", "+0"."""
        # Atomically: libfaketime re-reads the file at every clock read, and a half-written
        # one reads as no offset at all.
        new = self.file.with_suffix(".new")
        new.write_text(offset + "\n")
        os.replace(new, self.file)
