"""The durable outbox: every message is on disk before the first attempt to send it.

An item is a JSON file (and, for a beep, an MP3 beside it) under ``storage.dir/outbox``,
written atomically, MP3 first, so a crash or kill -9 at any point leaves either no item or a
whole one. It is removed only once every channel (Telegram, each Apprise URL) has accepted it: each
channel that has is listed in the item (``sent``), so a message Telegram took but ntfy not yet
is retried for ntfy only, across restarts too. Delivery is at-least-once per channel: a
duplicate only when a reply was lost after the server took the message. The outbox is
bounded by age and size, set-aside (``rejected/``) and unreadable (``*.bad``) files included;
what it expires it says.

Ages are measured on CLOCK_BOOTTIME (it counts suspend, and nobody steps it) when the item was
made in this boot, so setting the wall clock neither expires fresh items nor keeps old ones;
across a reboot only the wall clock is left, and a negative difference counts as zero.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..fsutil import write_atomic

log = logging.getLogger(__name__)

_seq = itertools.count()


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass
class Clock:
    """Where the outbox reads the time; tests inject their own."""

    wall: Callable[[], float] = time.time
    boot: Callable[[], float] = boottime
    boot_id: str = field(default_factory=boot_id)


@dataclass
class Item:
    id: str
    kind: str
    """"beep", or the operational kind: "start", "stop", "timeout", "mic", "classifier" ..."""
    text: str
    created: float
    """Epoch seconds when it was queued (what a person reads; and the age across reboots)."""
    audio: str | None = None
    """File name of the MP3 beside the JSON, for beeps."""
    title: str = ""
    attempts: int = 0
    extra: dict = field(default_factory=dict)
    boot_id: str = ""
    """The boot it was made in: ``booted`` only means something within the same boot."""
    booted: float | None = None
    """CLOCK_BOOTTIME when it was made (None in items written by older versions)."""
    sent: list[str] = field(default_factory=list)
    """The channels done with it (accepted, or refused for good: ``extra["refused"]``)."""


class Outbox:
    def __init__(self, directory: Path, max_age_hours: float = 48.0, max_mb: float = 50.0,
                 clock: Clock | None = None):
        self.dir = Path(directory)
        self.max_age = max_age_hours * 3600.0
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.clock = clock or Clock()
        self._reported_bad: set[str] = set()
        self._gone: set[str] = set()
        """Items done with (sent, expired) whose files could not be deleted: never again."""
        self.channels: tuple[str, ...] = ("telegram",)
        """Every channel an item goes to (set by the notifier): done when all have it."""
        self._lock = threading.RLock()
        """Each channel delivers in its own thread; an item's file is read and written
        under this lock, so that one channel's note never overwrites another's."""
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self._clean_partials()
        except OSError as e:  # a read-only outbox still lets messages go out from memory
            log.warning("cannot tidy the outbox %s: %s", self.dir, e.strerror or e)

    def _clean_partials(self) -> None:
        """Temp files and MP3s whose JSON never got written (crash between the two writes)."""
        for p in self.dir.glob(".*.tmp"):
            p.unlink(missing_ok=True)
        names = {p.stem for p in self.dir.glob("*.json")}
        for p in self.dir.glob("*.mp3"):
            if p.stem not in names:
                p.unlink(missing_ok=True)

    def new_item(self, kind: str, text: str, title: str = "", created: float | None = None,
                 ago: float = 0.0, **extra) -> Item:
        """An item stamped with the clocks, not yet on disk; ``ago``: seconds since it
        happened (a beep is queued a little after it began)."""
        ago = max(0.0, ago)
        created = self.clock.wall() - ago if created is None else created
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(created))
        item_id = f"{stamp}-{os.getpid()}-{next(_seq):04d}-{kind}"
        return Item(item_id, kind, text, created, title=title, extra=extra,
                    boot_id=self.clock.boot_id, booted=self.clock.boot() - ago)

    def put(self, kind: str, text: str, audio: bytes | None = None, title: str = "",
            created: float | None = None, ago: float = 0.0, **extra) -> Item:
        return self.save(self.new_item(kind, text, title, created, ago, **extra), audio)

    def save(self, item: Item, audio: bytes | None = None) -> Item:
        if audio is not None:
            item.audio = f"{item.id}.mp3"
            write_atomic(self.dir / item.audio, audio, durable=True)
        try:
            self._save(item)
        except OSError:
            if item.audio:
                (self.dir / item.audio).unlink(missing_ok=True)
                item.audio = None
            raise
        return item

    def _save(self, item: Item) -> None:
        write_atomic(self.dir / f"{item.id}.json", json.dumps(asdict(item)).encode(),
                     durable=True)

    def age(self, item: Item) -> float:
        """Seconds since ``item`` was made, never negative, whatever the wall clock did."""
        if item.booted is not None and item.boot_id and item.boot_id == self.clock.boot_id:
            return max(0.0, self.clock.boot() - item.booted)
        return max(0.0, self.clock.wall() - item.created)

    def note_attempt(self, item: Item) -> None:
        item.attempts += 1
        with self._lock:
            on_disk = self._reload(item)
            if on_disk is None:
                return  # done with meanwhile (expired)
            on_disk.attempts = max(on_disk.attempts + 1, item.attempts)
            try:
                self._save(on_disk)
            except OSError as e:  # a full disk must not stop delivery of what is queued
                log.debug("cannot update %s: %s", item.id, e)

    def _reload(self, item: Item) -> Item | None:
        """The item as on disk now (another channel may have noted itself), or None."""
        path = self.dir / f"{item.id}.json"
        if item.id in self._gone or not path.exists():
            return None
        return self._load(path)

    def done_for(self, item: Item, channel: str, refused: str | None = None) -> bool:
        """``channel`` is done with ``item`` (accepted it, or ``refused`` it for good).
        Returns True when every channel is: the item is then removed, or set aside when a
        channel refused it. Safe from any channel's thread."""
        with self._lock:
            on_disk = self._reload(item)
            if on_disk is None:
                return True
            if channel not in on_disk.sent:
                on_disk.sent.append(channel)
            if refused:
                on_disk.extra.setdefault("refused", {})[channel] = refused
            item.sent, item.extra = on_disk.sent, on_disk.extra
            if not set(self.channels) <= set(on_disk.sent):
                try:
                    self._save(on_disk)
                except OSError as e:
                    # Not noted: this channel may send it again after a restart (at least
                    # once), which beats losing the note for the others.
                    log.warning("cannot note that %s has %s (%s)", channel, item.id,
                                e.strerror or e)
                return False
            refusals = on_disk.extra.get("refused") or {}
            if refusals:
                try:
                    self.set_aside(on_disk, next(iter(refusals.values()))
                                   if len(refusals) == 1 else
                                   "; ".join(f"{c}: {r}" for c, r in refusals.items()))
                    return True
                except OSError as e:
                    log.error("cannot set the %s message aside (%s); not sending it again",
                              item.kind, e.strerror or e)
            self.remove(on_disk)
            return True

    def waiting_for(self, channel: str) -> list[Item]:
        """Queued items ``channel`` has not done yet, oldest first."""
        with self._lock:
            return [i for i in self.pending() if channel not in i.sent]

    def _load(self, p: Path) -> Item | None:
        try:
            return Item(**json.loads(p.read_text()))
        except (OSError, ValueError, TypeError) as e:
            if p.name not in self._reported_bad:
                self._reported_bad.add(p.name)
                log.error("outbox item %s is unreadable (%s); moving it aside", p.name, e)
            try:
                p.rename(p.with_suffix(".bad"))
            except OSError as e2:  # read-only: leave it, skip it, say it once (above)
                log.debug("cannot move %s aside: %s", p.name, e2)
            return None

    def pending(self) -> list[Item]:
        """Queued items, oldest first."""
        with self._lock:
            return self._pending()

    def _pending(self) -> list[Item]:
        items = [i for i in map(self._load, sorted(self.dir.glob("*.json"))) if i is not None]
        for i in [i for i in items if i.id in self._gone]:
            self.remove(i)  # sent or expired already: try the deletion again
        items = [i for i in items if i.id not in self._gone]
        # By age, not by the wall-clock stamp: after the clock is set back, new is still new.
        return sorted(items, key=lambda i: (-self.age(i), i.id))

    def audio_path(self, item: Item) -> Path | None:
        return self.dir / item.audio if item.audio else None

    def remove(self, item: Item, folder: Path | None = None) -> None:
        """Delete an item; when the disk refuses, it is forgotten until that works again."""
        with self._lock:
            self._remove(item, folder or self.dir)

    def _remove(self, item: Item, folder: Path) -> None:
        try:
            if item.audio:
                (folder / item.audio).unlink(missing_ok=True)
            (folder / f"{item.id}.json").unlink(missing_ok=True)
        except OSError as e:
            if folder == self.dir:
                if item.id not in self._gone:
                    log.warning("cannot delete outbox item %s (%s); skipping it until that "
                                "works", item.id, e.strerror or e)
                self._gone.add(item.id)
            else:
                log.debug("cannot delete %s: %s", item.id, e)
            return
        self._gone.discard(item.id)

    def set_aside(self, item: Item, reason: str) -> None:
        """Keep an item a channel refused (it will never be accepted) out of the queue."""
        with self._lock:
            rejected = self.dir / "rejected"
            rejected.mkdir(exist_ok=True)
            item.extra["rejected"] = reason
            self._save(item)
            for name in filter(None, (f"{item.id}.json", item.audio)):
                os.replace(self.dir / name, rejected / name)

    def _size(self, folder: Path, item: Item) -> int:
        total = 0
        for name in filter(None, (f"{item.id}.json", item.audio)):
            try:
                total += (folder / name).stat().st_size
            except OSError:
                pass
        return total

    def _leftovers(self) -> list[tuple[float, Path, int, Item | None]]:
        """What will never be sent but still takes room: set-aside items and ``*.bad``
        files, as (age, folder, bytes, item or None for a bad file)."""
        out = []
        rejected = self.dir / "rejected"
        for p in sorted(rejected.glob("*.json")) if rejected.is_dir() else ():
            try:
                item = Item(**json.loads(p.read_text()))
            except (OSError, ValueError, TypeError):
                item = None
            if item is not None:
                out.append((self.age(item), rejected, self._size(rejected, item), item))
            else:
                self._leftover_file(out, p)
        for p in [*self.dir.glob("*.bad"), *(rejected.glob("*.bad") if rejected.is_dir()
                                              else ())]:
            self._leftover_file(out, p)
        return out

    def _leftover_file(self, out: list, p: Path) -> None:
        try:
            st = p.stat()
        except OSError:
            return
        # No clock of ours inside an unreadable file: its mtime is all there is.
        out.append((max(0.0, self.clock.wall() - st.st_mtime), p, st.st_size, None))

    def _drop_leftover(self, where: Path, item: Item | None) -> None:
        if item is not None:
            self.remove(item, where)
            return
        try:
            where.unlink(missing_ok=True)
        except OSError as e:
            log.debug("cannot delete %s: %s", where, e)

    def expire(self) -> list[Item]:
        """Drop what is older than the age limit, then, beyond the size limit, what will never
        be sent (set aside, unreadable) before the oldest queued items. Returns the queued
        items dropped (the set-aside ones were reported when they were refused)."""
        with self._lock:
            return self._expire()

    def _expire(self) -> list[Item]:
        items = self.pending()
        expired = [i for i in items if self.age(i) > self.max_age]
        kept = [i for i in items if i not in expired]
        leftovers = []
        for age, where, size, item in self._leftovers():
            if age > self.max_age:
                self._drop_leftover(where, item)
            else:
                leftovers.append((age, where, size, item))
        total = sum(self._size(self.dir, i) for i in kept) + sum(s for _, _, s, _ in leftovers)
        leftovers.sort(key=lambda x: -x[0])  # oldest first
        while leftovers and total > self.max_bytes:
            _, where, size, item = leftovers.pop(0)
            self._drop_leftover(where, item)
            total -= size
        while kept and total > self.max_bytes:
            total -= self._size(self.dir, kept[0])
            expired.append(kept.pop(0))
        for i in expired:
            self.remove(i)
        return expired
