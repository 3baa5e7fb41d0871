"""How spans of time read in messages: "45 min", "2 h 5 min"."""

from __future__ import annotations


def minutes_text(minutes: int) -> str:
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
