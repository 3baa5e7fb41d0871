"""Muting beep alerts for a while (/mute, the "Mute 2 h" button), kept across restarts.

The state is one small JSON file under ``storage.dir/telegram/``, written atomically: a mute
the owner set must not end because the Pi rebooted. Its end is a wall-clock time, since
that is what the owner was told ("muted until 18:00"). Beeps heard while muted are still
logged and kept under ``storage.dir/alerts``; only their Telegram alert is held back, and
their times are listed when the mute ends.

Used from two threads (the supervisor asks :meth:`hold` for every beep, the delivery
thread sets and ends mutes): every method takes the lock.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..fsutil import write_atomic

log = logging.getLogger(__name__)

MUTE_NAME = "mute.json"
HELD_KEPT = 50
"""Beep times remembered while muted (the count goes on beyond that)."""


@dataclass(frozen=True)
class Ended:
    """A mute that is over: when it was to end and the beeps it held back."""

    until: float
    held: tuple[float, ...]
    held_count: int


class Mute:
    def __init__(self, directory: Path, clock: Callable[[], float] = time.time):
        self.path = Path(directory) / MUTE_NAME
        self.clock = clock
        self._lock = threading.Lock()
        self._until: float | None = None
        self._held: list[float] = []
        self._held_count = 0
        self._load()

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_text())
            self._until = float(doc["until"]) if doc.get("until") else None
            self._held = [float(t) for t in doc.get("held", [])][-HELD_KEPT:]
            self._held_count = int(doc.get("held_count", len(self._held)))
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError) as e:
            log.warning("cannot read the mute state %s (%s): alerts are not muted",
                        self.path, e)
            self._until = None

    def _save(self) -> None:
        doc = {"until": self._until, "held": self._held, "held_count": self._held_count}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(doc).encode(), durable=True)
        except OSError as e:  # the mute still holds until beepnet stops
            log.error("cannot keep the mute state in %s (%s): it ends if beepnet restarts",
                      self.path, e.strerror or e)

    def until(self) -> float | None:
        """The end of the mute in force (epoch seconds), or None."""
        with self._lock:
            if self._until is not None and self._until > self.clock():
                return self._until
            return None

    def set(self, seconds: float) -> float:
        """Mute for ``seconds`` from now (replacing any mute); returns its end."""
        with self._lock:
            if self._until is None or self._until <= self.clock():
                self._held, self._held_count = [], 0
            self._until = self.clock() + seconds
            self._save()
            return self._until

    def hold(self, t: float) -> bool:
        """A beep at ``t``: True (and noted) when alerts are muted now."""
        with self._lock:
            if self._until is None or self._until <= self.clock():
                return False
            self._held = (self._held + [t])[-HELD_KEPT:]
            self._held_count += 1
            self._save()
            return True

    def end(self) -> Ended | None:
        """End the mute now (/unmute); None when none was in force."""
        with self._lock:
            if self._until is None or self._until <= self.clock():
                return None
            return self._finish()

    def expired(self) -> Ended | None:
        """A mute whose time has come, once (the caller tells the owner); else None."""
        with self._lock:
            if self._until is None or self._until > self.clock():
                return None
            return self._finish()

    def _finish(self) -> Ended:
        ended = Ended(self._until, tuple(self._held), self._held_count)
        self._until, self._held, self._held_count = None, [], 0
        self._save()
        return ended
