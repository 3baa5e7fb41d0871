"""How times and spans of time read in messages: "45 min", "2 h 5 min", "from 12:01 to 12:09"."""

from __future__ import annotations

import time


def hhmm(t: float) -> str:
    """Epoch seconds as local "14:02"."""
    return time.strftime("%H:%M", time.localtime(t))


def hms(t: float) -> str:
    """Epoch seconds as local "14:02:11"."""
    return time.strftime("%H:%M:%S", time.localtime(t))


def minutes_text(minutes: int) -> str:
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def span_text(start: float, end: float) -> str:
    """"from 12:01 to 12:09" (epoch seconds, local time); with dates when the day changes."""
    a, b = time.localtime(start), time.localtime(end)
    if (a.tm_year, a.tm_yday) == (b.tm_year, b.tm_yday):
        return f"from {time.strftime('%H:%M', a)} to {time.strftime('%H:%M', b)}"
    return f"from {time.strftime('%d %b %H:%M', a)} to {time.strftime('%d %b %H:%M', b)}"
