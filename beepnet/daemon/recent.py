"""The last minutes of non-silent audio, kept for `/missed` (the owner heard a beep that was
not reported): the recorder's own chunk files, hard-linked into a folder beside the chunk
folder, so keeping them copies nothing.

Under systemd both folders are on the service's tmpfs (RuntimeDirectory): the ring lives in
RAM, never on the SD card, and not in any process's memory (the recorder's budget has no
room for 10 minutes of audio, about 19 MB). Chunks overlap (3 s every 1.5 s): a chunk that
its neighbours cover between them is let go, so the ring holds about the audio itself. It
never takes the space the live chunks need: below MIN_FREE_MB free, the oldest go first.

`save_recent` (the supervisor, for `/missed`) copies the ring to lasting storage.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MIN_FREE_MB = 16.0
"""Free space the ring leaves on its filesystem: the live chunks' backlog (40 x 94 kB) with
room to spare; a small Pi's /run is a few tens of MB."""


@dataclass(frozen=True)
class _Kept:
    path: Path
    session: str
    start: int
    end: int
    """Stream samples of the chunk's first sample and one past its last."""
    wall: float


class RecentChunks:
    """Keeps links to the chunks of the last ``seconds`` in ``folder``."""

    def __init__(self, folder: Path, seconds: float):
        self.folder = Path(folder)
        self.seconds = seconds
        self.kept: deque[_Kept] = deque()
        self._trouble: str | None = None
        self.folder.mkdir(parents=True, exist_ok=True)
        # A restarted recorder: what an earlier one kept still counts, by its age.
        found = []
        for p in self.folder.glob("*.wav"):
            try:
                found.append((p.stat().st_mtime, p))
            except OSError:
                continue
        for wall, p in sorted(found):
            self.kept.append(_Kept(p, "", 0, 0, wall))
        self._prune(time.time())

    def add(self, path: Path, session: str, start: int, end: int) -> None:
        """A chunk the recorder has just written (``start``/``end``: stream samples)."""
        now = time.time()
        self._prune(now)
        if not self._room():
            return
        dest = self.folder / path.name
        try:
            try:
                os.link(path, dest)
            except OSError:
                shutil.copyfile(path, dest)  # a filesystem without hard links
        except OSError as e:
            self._say(f"cannot keep recent audio in {self.folder}: {e.strerror or e}")
            return
        self._trouble = None
        new = _Kept(dest, session, start, end, now)
        if len(self.kept) >= 2:
            before, last = self.kept[-2], self.kept[-1]
            # The last one lies inside its neighbours' union: let it go.
            if (before.session == last.session == session and before.end >= start
                    and before.start <= last.start and last.end <= end):
                self.kept.pop()
                _unlink(last.path)
        self.kept.append(new)

    def _prune(self, now: float) -> None:
        while self.kept and now - self.kept[0].wall > self.seconds:
            _unlink(self.kept.popleft().path)

    def _room(self) -> bool:
        """Drop the oldest until MIN_FREE_MB is free; False when even an empty ring would
        leave less (then nothing is kept)."""
        while True:
            try:
                st = os.statvfs(self.folder)
            except OSError:
                return False
            if st.f_bavail * st.f_frsize >= MIN_FREE_MB * 1e6:
                return True
            if not self.kept:
                self._say(f"less than {MIN_FREE_MB:.0f} MB free in {self.folder}: not keeping "
                          "recent audio for /missed")
                return False
            _unlink(self.kept.popleft().path)

    def _say(self, text: str) -> None:
        if text != self._trouble:
            self._trouble = text
            log.warning("%s", text)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def save_recent(folder: Path, dest: Path) -> int:
    """Copy the ring's chunks into ``dest``; returns how many. Chunks the recorder lets go
    meanwhile are skipped."""
    dest.mkdir(parents=True, exist_ok=True)
    n = 0
    for p in sorted(Path(folder).glob("*.wav")):
        try:
            shutil.copyfile(p, dest / p.name)
        except FileNotFoundError:
            continue
        n += 1
    return n
