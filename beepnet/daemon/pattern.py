"""The whole beep pattern: when it has ended, and the alert clip that holds all of it.

A machine's end signal is rarely one beep: three beeps, a short tune, a beep every second
for a while. The owner wants the alert soon after the signal ends, and a clip in which it
can be heard whole, from a little before its first beep to a little after its last.

A pattern starts with a beep event (`beepnet.events.EventTracker`) and ends at the first of:

- the event closes: a window without a beep, or a gap the silence gate left;
- a window that hears the beep shows ``PATTERN_GAP_SECONDS`` of no beep after it (the
  detector places the beep inside the window): waiting for a window without any beep would
  take 3 s and more after the last one; this takes 1-1.5 s, as windows come every 0.5 s
  while a pattern is open (`SetHop`);
- the clip reaches ``CLIP_MAX_SECONDS`` (a machine that beeps for minutes gets its first
  20 s);
- no chunk comes for longer than the next window would take (`overdue`): the gate skipped
  what followed, or the recorder stopped.

The gap is the longest pause a pattern may have inside: beeps further apart than that are
told as the first (the tracker's event goes on, so they are not alerted again, and the
supervisor's cooldown would hold a later one anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio import SAMPLE_RATE
from ..messages import Chunk

PRE_ROLL_SECONDS = 2.0
"""The clip starts this long before the first beep: what the machine did just before."""
POST_ROLL_SECONDS = 1.0
"""And ends this long after the last beep (when the audio is there)."""
CLIP_MAX_SECONDS = 20.0
PATTERN_GAP_SECONDS = 1.0
"""Silence after a beep that ends the pattern. The alert waits this long plus up to a hop
for the window that shows it (0.5 s: the supervisor has the recorder cut windows that
often while a pattern is open), plus about 0.3 s of work (chunk, score, MP3, upload):
about 1.5 s in the median, under the 2-s target with room for a busy Pi. Longer would keep
the alert waiting; shorter would split more patterns (beeps usually come 0.2-0.6 s apart;
of a machine whose beeps are further apart, the clip holds the first)."""
OVERDUE_SLACK_SECONDS = 1.0
"""Beyond the next window's due time, for the supervisor's relay and a busy CPU."""


@dataclass(frozen=True)
class EndedPattern:
    """A finished pattern: where its beeps were, and its clip."""

    start: float
    """Stream seconds where its first beep begins."""
    end: float
    """Stream seconds where its last beep ends (as far as the audio heard goes)."""
    clip: np.ndarray
    """16 kHz float audio from PRE_ROLL before ``start`` to POST_ROLL after ``end``."""
    clip_start: float
    """Stream seconds of the clip's first sample."""
    why: str
    """What ended it: "quiet", "gap", "cap", "overdue" or "stop" (for the log)."""


class Pattern:
    """One beep pattern being heard: collects its audio until it ends.

    ``history`` holds the (chunk, audio) pairs heard before the first beep, oldest first;
    the pattern keeps what falls inside its pre-roll.
    """

    def __init__(self, start: float, history: list[tuple[Chunk, np.ndarray]]):
        self.start = start
        self.end = start
        self.clip_start = max(0.0, start - PRE_ROLL_SECONDS)
        self.parts: list[tuple[Chunk, np.ndarray]] = [
            (c, a) for c, a in history if _end_of(c) > self.clip_start]
        self._last_chunk: Chunk | None = self.parts[-1][0] if self.parts else None

    def add(self, chunk: Chunk, audio: np.ndarray, beep_end: float | None) -> None:
        """A chunk heard during the pattern; ``beep_end``: where the event's last beep ends
        (stream seconds) when the chunk still belongs to the event."""
        self.parts.append((chunk, audio))
        self._last_chunk = chunk
        if beep_end is not None:
            self.end = max(self.end, beep_end)

    def ended(self, chunk: Chunk, positive: bool) -> str | None:
        """Whether ``chunk`` (just added, its beep event still open) ends the pattern, and
        why."""
        if _end_of(chunk) >= self.clip_start + CLIP_MAX_SECONDS:
            return "cap"
        if positive and _end_of(chunk) - self.end >= PATTERN_GAP_SECONDS:
            return "gap"
        return None

    def overdue(self, now_mono: float) -> bool:
        """No chunk has come since the window after the last one was due: the gate left it
        out (silence), or the input stopped."""
        c = self._last_chunk
        if c is None:
            return False
        due = c.start_mono + 2 * c.duration * c.time_scale  # a hop is at most a window
        return now_mono > due + OVERDUE_SLACK_SECONDS

    def finish(self, why: str) -> EndedPattern:
        clip_end = min(self.end + POST_ROLL_SECONDS, self.clip_start + CLIP_MAX_SECONDS,
                       max((_end_of(c) for c, _ in self.parts), default=self.end))
        clip = assemble(self.parts, self.clip_start, max(clip_end, self.clip_start))
        return EndedPattern(self.start, self.end, clip, self.clip_start, why)


def _end_of(chunk: Chunk) -> float:
    return chunk.start_sample / SAMPLE_RATE + chunk.duration


def assemble(parts: list[tuple[Chunk, np.ndarray]], begin: float, end: float) -> np.ndarray:
    """The stream's audio from ``begin`` to ``end`` (seconds), pieced from overlapping
    chunks, each at its own stream position; what no chunk covers (the gate skipped it) stays
    silent, as it was."""
    first = int(round(begin * SAMPLE_RATE))
    out = np.zeros(max(0, int(round(end * SAMPLE_RATE)) - first), dtype=np.float32)
    for c, a in parts:
        seg = a[: int(round(c.duration * SAMPLE_RATE))]
        lo = c.start_sample - first
        a_from, o_from = max(0, -lo), max(0, lo)
        n = min(len(seg) - a_from, len(out) - o_from)
        if n > 0:
            out[o_from: o_from + n] = seg[a_from: a_from + n]
    return out
