"""The durable outbox: every message is on disk before the first attempt to send it.

An item is a JSON file (and, for a beep, an MP3 beside it) under ``storage.dir/outbox``,
written atomically, MP3 first, so a crash or kill -9 at any point leaves either no item or a
whole one. It is removed only once Telegram has accepted it, so delivery is at-least-once:
a duplicate only when a reply was lost after the server took the message. The outbox is
bounded by age and size; what it expires it says.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..fsutil import write_atomic

log = logging.getLogger(__name__)

_seq = itertools.count()


@dataclass
class Item:
    id: str
    kind: str
    """"beep", or the operational kind: "start", "stop", "timeout", "mic", "classifier" ..."""
    text: str
    created: float
    """Epoch seconds when it was queued (for "late by" and expiry)."""
    audio: str | None = None
    """File name of the MP3 beside the JSON, for beeps."""
    title: str = ""
    attempts: int = 0
    extra: dict = field(default_factory=dict)


class Outbox:
    def __init__(self, directory: Path, max_age_hours: float = 48.0, max_mb: float = 50.0):
        self.dir = Path(directory)
        self.max_age = max_age_hours * 3600.0
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._clean_partials()

    def _clean_partials(self) -> None:
        """Temp files and MP3s whose JSON never got written (crash between the two writes)."""
        for p in self.dir.glob(".*.tmp"):
            p.unlink(missing_ok=True)
        names = {p.stem for p in self.dir.glob("*.json")}
        for p in self.dir.glob("*.mp3"):
            if p.stem not in names:
                p.unlink(missing_ok=True)

    def put(self, kind: str, text: str, audio: bytes | None = None, title: str = "",
            created: float | None = None, **extra) -> Item:
        created = time.time() if created is None else created
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(created))
        item_id = f"{stamp}-{os.getpid()}-{next(_seq):04d}-{kind}"
        item = Item(item_id, kind, text, created, title=title, extra=extra)
        if audio is not None:
            item.audio = f"{item_id}.mp3"
            write_atomic(self.dir / item.audio, audio, durable=True)
        self._save(item)
        return item

    def _save(self, item: Item) -> None:
        write_atomic(self.dir / f"{item.id}.json", json.dumps(asdict(item)).encode(),
                     durable=True)

    def note_attempt(self, item: Item) -> None:
        item.attempts += 1
        try:
            self._save(item)
        except OSError as e:  # a full disk must not stop delivery of what is already queued
            log.debug("cannot update %s: %s", item.id, e)

    def pending(self) -> list[Item]:
        """Queued items, oldest first."""
        items = []
        for p in sorted(self.dir.glob("*.json")):
            try:
                items.append(Item(**json.loads(p.read_text())))
            except (OSError, ValueError, TypeError) as e:
                log.error("outbox item %s is unreadable (%s); moving it aside", p.name, e)
                p.rename(p.with_suffix(".bad"))
        return sorted(items, key=lambda i: (i.created, i.id))

    def audio_path(self, item: Item) -> Path | None:
        return self.dir / item.audio if item.audio else None

    def remove(self, item: Item) -> None:
        if item.audio:
            (self.dir / item.audio).unlink(missing_ok=True)
        (self.dir / f"{item.id}.json").unlink(missing_ok=True)

    def set_aside(self, item: Item, reason: str) -> None:
        """Keep an item Telegram refused (it will never be accepted) out of the queue."""
        rejected = self.dir / "rejected"
        rejected.mkdir(exist_ok=True)
        item.extra["rejected"] = reason
        self._save(item)
        for name in filter(None, (f"{item.id}.json", item.audio)):
            os.replace(self.dir / name, rejected / name)

    def expire(self, now: float | None = None) -> list[Item]:
        """Drop items older than the age limit, then the oldest beyond the size limit."""
        now = time.time() if now is None else now
        items = self.pending()
        expired = [i for i in items if now - i.created > self.max_age]
        kept = [i for i in items if i not in expired]

        def size(i: Item) -> int:
            total = 0
            for name in filter(None, (f"{i.id}.json", i.audio)):
                try:
                    total += (self.dir / name).stat().st_size
                except OSError:
                    pass
            return total

        total = sum(size(i) for i in kept)
        while kept and total > self.max_bytes:
            total -= size(kept[0])
            expired.append(kept.pop(0))
        for i in expired:
            self.remove(i)
        return expired
