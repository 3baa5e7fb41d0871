"""The digest: one summary message a day or a week ("daily 09:00", "weekly mon 09:00"), so
the owner sees that beepnet is alive and what it did, without a message per event.

    schedule = parse_schedule(cfg.notify.digest)       # None: no digest
    when = next_time(schedule, time.time())              # epoch, local time
    ...
    send(digest_text(stats, name=cfg.notify.name))
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

from .timefmt import minutes_text

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = {
    **{d: i for i, d in enumerate(DAYS)},
    **{d: i for i, d in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday",
                                   "saturday", "sunday"))},
    "tues": 1, "weds": 2, "thur": 3, "thurs": 3,
}
_SCHEDULE = re.compile(r"(daily|weekly\s+([a-z]+))\s+(\d{1,2}):(\d{2})")
MAX_NOTES = 8
"""More notes than this are counted, not listed: a digest stays a glance."""


@dataclass(frozen=True)
class Schedule:
    """When the digest goes out: ``weekday`` None for every day, else 0 (Monday) .. 6."""

    hour: int
    minute: int
    weekday: int | None = None

    @property
    def weekly(self) -> bool:
        return self.weekday is not None

    def __str__(self) -> str:
        day = f"weekly {DAYS[self.weekday]}" if self.weekday is not None else "daily"
        return f"{day} {self.hour:02d}:{self.minute:02d}"


def parse_schedule(text: str) -> Schedule | None:
    """``""`` -> None (no digest); ``"daily 09:00"``, ``"weekly mon 09:00"`` (any case, full
    day names too) -> a Schedule; anything else -> ValueError, one line naming the value."""
    s = " ".join(text.split()).lower()
    if not s:
        return None
    m = _SCHEDULE.fullmatch(s)
    day = None
    if m and m.group(2) is not None:
        day = _DAY_NAMES.get(m.group(2))
    if not m or (m.group(2) is not None and day is None) \
            or int(m.group(3)) > 23 or int(m.group(4)) > 59:
        shown = "".join(c if c.isprintable() else " " for c in text.strip())[:60]
        raise ValueError(f'notify.digest = "{shown}" is not allowed: expected "daily 09:00" '
                         'or "weekly mon 09:00"')
    return Schedule(int(m.group(3)), int(m.group(4)), day)


def next_time(s: Schedule, after: float, tz: tzinfo | None = None) -> float:
    """The epoch of the next digest strictly after ``after``, on the wall clock of ``tz``
    (None: the local time zone), so that 09:00 stays 09:00 across a DST change. A time the
    clocks skip (02:30 when they jump from 02:00 to 03:00) is read with the offset before
    the jump (03:30 that day); a time they pass twice (02:30 when they go back) counts
    once, at its first pass."""
    today = (datetime.fromtimestamp(after, tz) if tz else datetime.fromtimestamp(after)).date()
    for ahead in range(9):  # a week and a bit: enough for any weekday, and DST days
        day = today + timedelta(days=ahead)
        if s.weekday is not None and day.weekday() != s.weekday:
            continue
        t = _zone_epoch(day, s.hour, s.minute, tz) if tz else _local_epoch(day, s.hour,
                                                                          s.minute)
        if t > after:
            return t
    raise AssertionError("unreachable: some day in nine matches")  # pragma: no cover


def _zone_epoch(day: date, hour: int, minute: int, tz: tzinfo) -> float:
    # fold=0: the first pass of a repeated time, the earlier offset for a skipped one
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz).timestamp()


def _local_epoch(day: date, hour: int, minute: int) -> float:
    """Like _zone_epoch in the process's local zone (TZ, /etc/localtime), through mktime:
    a POSIX TZ string ("CET-1CEST,M3.5.0,M10.5.0/3") has no zoneinfo equivalent."""
    want = (day.year, day.month, day.day, hour, minute)
    found = []
    for isdst in (0, 1):
        t = time.mktime((*want, 0, 0, 0, isdst))
        if tuple(time.localtime(t)[:5]) == want:
            found.append(t)
    if found:
        return min(found)  # passed twice when the clocks go back: the first pass
    return time.mktime((*want, 0, 0, 0, 0))  # skipped: read with standard time's offset


@dataclass
class DigestStats:
    """What the supervisor counts between two digests (``since`` .. ``now``, epoch)."""

    since: float
    now: float
    uptime_seconds: float
    cycles: int
    finished: int
    stopped_without_beep: int
    beeps: int
    alerts_sent: int
    corrections: int
    """The owner's ✅/❌ answers."""
    outbox_waiting: int
    disk_free_mb: float | None
    level_min_dbfs: float | None
    level_max_dbfs: float | None
    notes: list[str] = field(default_factory=list)
    """Anything else worth a line, e.g. "microphone lost for 3 min at 02:10"."""


def digest_text(stats: DigestStats, name: str = "") -> str:
    """The digest as a phone shows it, e.g.::

        beepnet (garage): the last 24 h
        Up 6 d 3 h · 2 cycles (2 finished) · 3 beeps, 3 alerts sent · 1 correction
        Outbox empty · 12.3 GB free · microphone −62 to −18 dBFS
    """
    who = f"beepnet ({name})" if name else "beepnet"
    lines = [f"{who}: {_period_text(stats.now - stats.since)}"]
    activity = [f"Up {_uptime_text(stats.uptime_seconds)}",
                _cycles_text(stats.cycles, stats.finished, stats.stopped_without_beep),
                f"{_count(stats.beeps, 'beep')}, {_count(stats.alerts_sent, 'alert')} sent"]
    if stats.corrections:
        activity.append(_count(stats.corrections, "correction"))
    lines.append(" · ".join(activity))
    outbox = (f"Outbox: {_count(stats.outbox_waiting, 'message')} waiting"
              if stats.outbox_waiting else "Outbox empty")
    lines.append(" · ".join([outbox, _disk_text(stats.disk_free_mb),
                             _level_text(stats.level_min_dbfs, stats.level_max_dbfs)]))
    lines += [f"• {note}" for note in stats.notes[:MAX_NOTES]]
    if len(stats.notes) > MAX_NOTES:
        lines.append(f"• and {_count(len(stats.notes) - MAX_NOTES, 'more note')}")
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    if n == 0:
        return f"no {noun}s"
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _period_text(seconds: float) -> str:
    # A day with a DST change has 23 or 25 h; the first digest after a start may be short.
    hours = seconds / 3600.0
    if 6.5 * 24 <= hours <= 7.5 * 24:
        return "the last 7 days"
    if 20 <= hours <= 28:
        return "the last 24 h"
    if hours < 1:
        return f"the last {max(1, round(seconds / 60))} min"
    if hours < 48:
        return f"the last {round(hours)} h"
    return f"the last {round(hours / 24)} days"


def _uptime_text(seconds: float) -> str:
    minutes = max(0, int(seconds // 60))
    days, rest = divmod(minutes, 1440)
    if days:
        return f"{days} d {rest // 60} h"
    return minutes_text(rest)


def _cycles_text(cycles: int, finished: int, stopped: int) -> str:
    if not cycles:
        return "no cycles"
    parts = []
    if finished:
        parts.append(f"{finished} finished")
    if stopped:
        parts.append(f"{stopped} stopped without a beep")
    if cycles == 1 and parts == ["1 finished"]:
        return "1 cycle (finished)"
    return _count(cycles, "cycle") + (f" ({', '.join(parts)})" if parts else "")


def _disk_text(free_mb: float | None) -> str:
    if free_mb is None:
        return "free disk space unknown"
    if free_mb >= 1000:
        return f"{free_mb / 1000:.1f} GB free"  # decimal, as /status writes GB
    return f"{free_mb:.0f} MB free"


def _dbfs(value: float) -> str:
    n = round(value)
    return f"−{-n}" if n < 0 else f"{n}"  # a real minus sign: a phone may wrap at "-"


def _level_text(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "microphone level unknown"
    if round(low) == round(high):
        return f"microphone {_dbfs(low)} dBFS"
    return f"microphone {_dbfs(low)} to {_dbfs(high)} dBFS"


class LevelRange:
    """The quietest and loudest sound level (dBFS) since the last :meth:`take`; fed from
    the recorder's heartbeats, read by the digest, from different threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._low: float | None = None
        self._high: float | None = None

    def add(self, dbfs: float) -> None:
        if not math.isfinite(dbfs):
            return
        with self._lock:
            self._low = dbfs if self._low is None else min(self._low, dbfs)
            self._high = dbfs if self._high is None else max(self._high, dbfs)

    def take(self) -> tuple[float | None, float | None]:
        """(min, max) so far, (None, None) if nothing came; and start over."""
        with self._lock:
            got = (self._low, self._high)
            self._low = self._high = None
        return got
