"""The machine's last minute of sound, kept for the "went quiet without its end beep" message:
the owner hears what it did last (a drain that stopped, a beep beepnet missed, nothing at all)
without getting up.

By the time a cycle counts as stopped (``cycle.quiet_minutes`` after its last sound) the
recorder's /missed ring (`beepnet.daemon.recent`, ``storage.recent_minutes``) has let that
minute go or is about to. So when the machine falls quiet for a pause (``pause_minutes``),
the chunks of its last minute are hard-linked out of the ring into a folder beside it: on
the same filesystem (the service's tmpfs), a link copies nothing, and the audio lives only as
long as it may still be asked for. Standard library only (the daemon's supervisor); the MP3
is made by LAME, as the alerts' clips are.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections import deque
from pathlib import Path

from ..audio import SAMPLE_RATE
from ..audio.wav import pcm16

log = logging.getLogger(__name__)

KEEP_SECONDS = 60.0
"""How much of the machine's last sound is kept."""
_NAME = re.compile(r"_(\d{10})\.wav$")
"""A chunk's name ends with the stream sample it starts at (`beepnet.daemon.recorder`)."""


class LastSound:
    """``recent``: the recorder's ring folder; ``folder``: where the last minute is kept."""

    def __init__(self, recent: Path, folder: Path, seconds: float = KEEP_SECONDS):
        self.recent = Path(recent)
        self.folder = Path(folder)
        self.seconds = seconds
        self._heard: deque[tuple[float, str]] = deque()
        """(cycle time, chunk file name) of the machine's recent windows."""
        self._kept_for: float | None = None
        self.clear()  # what an earlier daemon kept belongs to a cycle long gone

    def heard(self, at: float, chunk_path: str) -> None:
        """A window heard as the machine, centred on ``at``."""
        self._heard.append((at, os.path.basename(chunk_path)))
        while self._heard and self._heard[0][0] < at - 2 * self.seconds:
            self._heard.popleft()

    def keep(self, last_sound: float) -> None:
        """The machine fell quiet after ``last_sound``: keep its last minute (once)."""
        if self._kept_for == last_sound:
            return
        self._kept_for = last_sound
        names = [n for at, n in self._heard if last_sound - self.seconds <= at <= last_sound]
        if not names:
            return
        self._remove_files()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for name in names:
                src = self.recent / name
                if not src.exists():
                    continue  # the ring let it go (its neighbours cover it)
                try:
                    os.link(src, self.folder / name)
                except OSError:
                    shutil.copyfile(src, self.folder / name)  # no hard links there
        except OSError as e:
            log.warning("cannot keep the machine's last sound in %s: %s", self.folder,
                        e.strerror or e)

    def pcm(self) -> bytes | None:
        """The kept minute as 16-bit PCM, each chunk at its place in the stream (they
        overlap), or None when nothing is kept."""
        chunks = []
        for p in self.folder.glob("*.wav") if self.folder.is_dir() else ():
            m = _NAME.search(p.name)
            data = pcm16(p, SAMPLE_RATE) if m else None
            if data:
                chunks.append((int(m.group(1)), data))
        if not chunks:
            return None
        chunks.sort()
        first = chunks[0][0]
        if any(start < first for start, _ in chunks):  # a restarted stream: no order
            return b"".join(data for _, data in chunks)
        out = bytearray()
        for start, data in chunks:
            at = (start - first) * 2
            if at > len(out):
                out += bytes(at - len(out))  # a gap the gate left silent
            out[at:at + len(data)] = data
        return bytes(out)

    def mp3(self) -> bytes | None:
        """The kept minute as MP3 (None: nothing kept, or it cannot be encoded)."""
        pcm = self.pcm()
        if pcm is None:
            return None
        from ..notify.mp3 import encode_pcm16

        try:
            return encode_pcm16(pcm, SAMPLE_RATE)
        except Exception as e:  # noqa: BLE001 - the message goes out without its clip
            log.error("cannot make the MP3 of the machine's last sound: %s", e)
            return None

    def clear(self) -> None:
        """Let the kept minute go (emptied, a new cycle)."""
        self._kept_for = None
        self._remove_files()

    def _remove_files(self) -> None:
        if not self.folder.is_dir():
            return
        for p in self.folder.glob("*.wav"):
            try:
                p.unlink()
            except OSError:
                pass

