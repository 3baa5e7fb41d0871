"""The guided recording: button presses, then the room as it usually sounds.

The microphone is the one `beepnet record` and the daemon use (audio.device, through
`beepnet.audio.sources.MicSource`), opened once for the whole session: its callback keeps
queueing audio while a prompt is printed, so no sound between two phases is lost, and
each phase's audio is converted to 16 kHz as the recorder converts it. Every phase is
timed (a few seconds per press, then the room), so enrolment also runs without a
terminal; only on a terminal does it wait for Enter before it starts.
"""

from __future__ import annotations

import logging
import sys
from typing import Callable, Iterator

import numpy as np

from ..audio import SAMPLE_RATE
from ..audio.resample import Resampler
from ..audio.sources import MicSource

log = logging.getLogger(__name__)

PRIME_S = 0.2
"""Audio read (and dropped) before the first prompt: proves the microphone delivers."""


class LiveInput:
    """An open microphone read in timed takes of 16 kHz audio. Raises SourceError."""

    def __init__(self, device: str, block_ms: float) -> None:
        self._mic = MicSource(device, block_ms)
        self._blocks: Iterator[np.ndarray] | None = None
        self._rs: Resampler | None = None
        self._spare = np.zeros(0, np.float32)

    @property
    def description(self) -> str:
        return self._mic.description

    def __enter__(self) -> LiveInput:
        self._mic.open()
        try:
            self._rs = Resampler(self._mic.rate, SAMPLE_RATE)
            self._blocks = self._mic.blocks()
            self.take(PRIME_S)
        except BaseException:
            self._mic.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._mic.close()

    def take(self, seconds: float) -> np.ndarray:
        """The next ``seconds`` of audio, at 16 kHz."""
        assert self._blocks is not None and self._rs is not None, "open it first"
        want = int(round(seconds * SAMPLE_RATE))
        parts, have = [self._spare], len(self._spare)
        while have < want:
            y = self._rs.process(next(self._blocks))
            parts.append(y)
            have += len(y)
        x = np.concatenate(parts).astype(np.float32)
        self._spare = x[want:]
        return x[:want]


def get_ready(presses: int, press_seconds: float, say: Callable[[str], None],
              interactive: bool) -> None:
    """What is about to happen; on a terminal, wait for Enter (before the microphone opens:
    audio queued while the owner walks over would fill the first take)."""
    say(f"Stand by the machine. You will be asked {presses} times to press one of its "
        f"buttons, {press_seconds:g} s apart; each press should make it beep.")
    if interactive:
        say("Press Enter when you are ready.")
        sys.stdin.readline()


def guided(live: LiveInput, presses: int, press_seconds: float, room_seconds: float | None,
           say: Callable[[str], None]) -> tuple[list[np.ndarray], np.ndarray | None]:
    """One take per press, then the room (skipped when ``room_seconds`` is None)."""
    takes = []
    for i in range(presses):
        say(f"Press a button on the machine now ({i + 1}/{presses})")
        takes.append(live.take(press_seconds))
    room = None
    if room_seconds:
        say(f"Now leave the room as it usually is: recording {duration(room_seconds)} of "
            "ordinary sound")
        room = live.take(room_seconds)
        say("Done recording.")
    return takes, room


def duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        m = int(seconds // 60)
        return f"{m} minute{'s' if m != 1 else ''}"
    return f"{seconds:g} s"
