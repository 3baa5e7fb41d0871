"""Turning per-window scores into beep events, the same way live and offline.

Windows overlap, so one beep usually scores positive in two or more windows in a row; those
(and any other positive windows that overlap or touch) make one event. A window below the
threshold, or a gap (windows the silence gate skipped), ends the event.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .detectors.base import WindowScore

# Window edges are whole samples; allow for float rounding when testing "touching".
_EPS = 1e-6
_EDGE = 0.02
"""A localised end this close to its window's end means the beep ran past the window."""


@dataclass(frozen=True)
class Event:
    start: float
    """Seconds (stream time) where the beep begins, as precisely as the detector can tell."""
    end: float
    score: float
    """Highest window score within the event."""
    window_start: float
    """Start of the first positive window."""
    window_end: float
    """End of the last positive window (used to test adjacency)."""


class EventTracker:
    def __init__(self, threshold: float):
        self.threshold = threshold
        self._open: Event | None = None

    def update(self, start: float, end: float, result: WindowScore
               ) -> tuple[Event | None, Event | None]:
        """Feed one window (stream seconds); returns (event just opened, event just closed)."""
        if result.score < self.threshold:
            return None, self.finish()
        b_start = start + (result.start if result.start is not None else 0.0)
        b_end = start + (result.end if result.end is not None else end - start)
        cur = self._open
        # Adjacent: starts inside the open event's span of windows (a restarted stream, whose
        # clock went back to zero, is not).
        if cur is not None and cur.window_start <= start <= cur.window_end + _EPS:
            # An end at the previous window's right edge only says "cut off here"; the later
            # window saw past that edge, so its end is the better estimate.
            cut_off = cur.end >= cur.window_end - _EDGE
            new_end = b_end if cut_off else max(cur.end, b_end)
            self._open = replace(cur, start=min(cur.start, b_start), end=new_end,
                                 score=max(cur.score, result.score), window_end=end)
            return None, None
        closed = self.finish()
        self._open = Event(b_start, b_end, result.score, start, end)
        return self._open, closed

    @property
    def current(self) -> Event | None:
        """The open event, if any."""
        return self._open

    def finish(self) -> Event | None:
        """Close the open event, if any, and return it."""
        closed, self._open = self._open, None
        return closed
