"""Quiet hours: when messages wait until morning, or arrive without a sound.

``notify.quiet_hours = "22:00-07:00"`` is a window of local wall-clock time (it may cross
midnight). While it lasts, what a message does depends on its kind:

- news of the machine (finished, reminders, started, stopped ...) follows
  ``notify.quiet_mode``: "hold" keeps it in the outbox until the window ends (it then says it
  was held), "silent" sends it at once without sound;
- faults (microphone lost, detector failed, disk full ...) follow ``notify.quiet_faults``:
  "silent" by default (a fault may need the owner before morning), "normal", or "hold".

The window is wall-clock time by nature ("not before 7"), so it is read with the local
time of each moment, daylight-saving changes included; a held message carries the epoch its
window ends (``hold_until``), checked against the wall clock when it is due.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from typing import Callable

from .timefmt import hhmm, minutes_text

FAULT_KINDS = frozenset({"mic", "detector", "classifier", "disk", "config", "outbox",
                         "expired"})
"""Message kinds that are faults: they follow quiet_faults, not quiet_mode."""

HOLD, SILENT, NORMAL = "hold", "silent", "normal"

LATE_AFTER_SECONDS = 60.0
"""An item sent this long after it was queued says how late it is."""

_WINDOW = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


@dataclass(frozen=True)
class Window:
    start: dt.time
    end: dt.time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_window(text: str) -> Window | None:
    """"22:00-07:00" -> Window; "" -> None; anything else: ValueError, one line."""
    if not text.strip():
        return None
    m = _WINDOW.fullmatch(text)
    bad = ValueError(f"notify.quiet_hours = {text!r} is not allowed: expected a local time "
                     'span "HH:MM-HH:MM", e.g. "22:00-07:00" (it may cross midnight)')
    if not m:
        raise bad
    h1, m1, h2, m2 = map(int, m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h1, m1) == (h2, m2):
        raise bad
    return Window(dt.time(h1, m1), dt.time(h2, m2))


class QuietHours:
    def __init__(self, window: Window | None, mode: str = HOLD, faults: str = SILENT,
                 clock: Callable[[], float] = time.time, tz: dt.tzinfo | None = None):
        """``clock``: epoch seconds now; ``tz``: the local zone (None: the system's)."""
        self.window = window
        self.mode = mode
        self.faults = faults
        self.clock = clock
        self.tz = tz

    def _local(self, t: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(t, self.tz).astimezone(self.tz)

    def ends(self, t: float | None = None) -> float | None:
        """When the window ``t`` (default: now) lies in ends (epoch), or None: not quiet."""
        if self.window is None:
            return None
        t = self.clock() if t is None else t
        now = self._local(t)
        start, end = self.window.start, self.window.end
        clock_now = now.time().replace(tzinfo=None)
        if start < end:
            inside = start <= clock_now < end
            end_day = now.date()
        else:  # crosses midnight: inside from start to 24:00 and from 0:00 to end
            inside = clock_now >= start or clock_now < end
            end_day = now.date() + dt.timedelta(days=1) if clock_now >= start else now.date()
        if not inside:
            return None
        end_at = dt.datetime.combine(end_day, end)
        # Local wall time to epoch, daylight saving included (an end inside a skipped hour
        # comes out an hour later, which is when the clock shows it).
        if self.tz is None:
            return time.mktime(end_at.timetuple())
        return end_at.replace(tzinfo=self.tz).timestamp()

    def treatment(self, kind: str, t: float | None = None) -> str:
        """What a message of ``kind`` made at ``t`` gets: "hold", "silent" or "normal"."""
        if self.ends(t) is None:
            return NORMAL
        return self.faults if kind in FAULT_KINDS else self.mode

    def describe(self) -> str:
        if self.window is None:
            return "none"
        faults = {HOLD: "held too", SILENT: "silent", NORMAL: "as usual"}[self.faults]
        mode = "held until they end" if self.mode == HOLD else "sent without sound"
        return f"{self.window}: messages {mode}; faults {faults}"


def held(extra: dict, now: float) -> bool:
    """Whether an outbox item (its ``extra``) still waits for its quiet hours to end."""
    return float(extra.get("hold_until") or 0.0) > now


def delay_note(extra: dict, created: float, age: float) -> str:
    """The line a message sent late begins with: held for quiet hours, or delayed
    (``age``: seconds since it was queued, see Outbox.age)."""
    if extra.get("hold_until"):
        return f"(Held for quiet hours since {hhmm(created)}.) "
    if age < LATE_AFTER_SECONDS:
        return ""
    return f"(delayed {minutes_text(int(age // 60))}: could not be sent earlier) "
