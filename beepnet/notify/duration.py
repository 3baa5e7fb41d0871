"""Durations as a person types them in a chat: ``/mute 2h``, ``/mute 30m``, ``/mute 90``."""

from __future__ import annotations

import re

MIN_SECONDS = 60.0
MAX_SECONDS = 7 * 86400.0
"""A mute longer than a week is more likely a typo than a wish; /unmute ends any."""

_UNITS = {"d": 86400.0, "day": 86400.0, "days": 86400.0,
          "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
          "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0}
_PART = re.compile(r"(\d+(?:[.,]\d+)?)\s*([a-z]+)")
USAGE = "write it as 2h, 30m, 1h30m or 90 (minutes)"


class DurationError(ValueError):
    """``str()`` is one line for the person who typed it."""


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``2h``, ``30m``, ``1h30m``, ``1.5 h``, ``2 days``; a bare number
    is minutes (``90``). Raises DurationError outside 1 min .. 7 days."""
    s = text.strip().lower()
    if not s:
        raise DurationError(f"no duration given: {USAGE}")
    if re.fullmatch(r"\d+(?:[.,]\d+)?", s):
        seconds = float(s.replace(",", ".")) * 60.0
    else:
        seconds, at = 0.0, 0
        for m in _PART.finditer(s):
            if s[at:m.start()].strip() or m.group(2) not in _UNITS:
                raise DurationError(f"cannot read {text.strip()!r}: {USAGE}")
            seconds += float(m.group(1).replace(",", ".")) * _UNITS[m.group(2)]
            at = m.end()
        if at == 0 or s[at:].strip():
            raise DurationError(f"cannot read {text.strip()!r}: {USAGE}")
    if seconds < MIN_SECONDS:
        raise DurationError(f"{text.strip()} is too short: at least 1 minute")
    if seconds > MAX_SECONDS:
        raise DurationError(f"{text.strip()} is too long: at most 7 days (/unmute ends a "
                            "mute at any time)")
    return seconds


def duration_text(seconds: float) -> str:
    """"2 h", "30 min", "1 h 30 min", "2 days 3 h"."""
    minutes = int(round(seconds / 60.0))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = []
    if days:
        parts.append(f"{days} day{'s' if days > 1 else ''}")
    if hours:
        parts.append(f"{hours} h")
    if mins or not parts:
        parts.append(f"{mins} min")
    return " ".join(parts)
