"""What every channel's delivery thread shares (Telegram's in `notifier`, each Apprise URL's
in `appriseworker`): the one outbox they all send from, the messages only kept in memory
while it cannot be written, stopping within a grace period, and the alerts' delivery states
the lead channel (the first one) keeps for the monitor. Also what a channel asks of the
outbox each turn: what it may send now (quiet hours hold some), how long it may sleep, and
the lead's expiry of what is too old.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from .outbox import Item, Outbox
from .quiet import held

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 30.0
UNSAVED_MAX_ITEMS = 100
"""Messages kept in memory while the outbox cannot be written (also bounded by outbox_max_mb)."""

# What the monitor shows as an alert's delivery.
QUEUED, SENT, EXPIRED, REJECTED = "queued", "sent", "expired", "rejected"
UNSAVED = "not kept on disk"
UNSAVED_SENT = "sent (not kept on disk)"
UNSAVED_DROPPED = "dropped (not kept on disk)"


def _local(t: float, fmt: str = "%H:%M:%S") -> str:
    return time.strftime(fmt, time.localtime(t))


class ChannelDelivery:
    """One channel's delivery thread, less how it runs and sends (the subclass's ``start``,
    ``wake`` and thread)."""

    channel_id: str
    """Its name in the outbox items' ``sent`` lists."""
    label: str
    """How the log names it."""

    def __init__(self, outbox: Outbox):
        self.outbox = outbox
        self.lead = False
        """The first channel: it expires the outbox and tracks alerts' delivery."""
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._drain_deadline = 0.0
        self._lock = threading.Lock()
        self._unsaved: deque[tuple[Item, bytes | None]] = deque()
        self._states: dict = {}
        """Outbox item id -> the AlertState the monitor reads (the lead's only)."""

    def wake(self) -> None:
        raise NotImplementedError

    def track(self, item_id: str, state) -> None:
        self._states[item_id] = state

    def send_unsaved(self, item: Item, audio: bytes | None) -> None:
        """Send ``item`` from memory. The queue is bounded: the oldest are dropped first."""
        with self._lock:
            self._unsaved.append((item, audio))
            dropped = []
            while len(self._unsaved) > UNSAVED_MAX_ITEMS or (
                    len(self._unsaved) > 1 and self._unsaved_bytes() > self.outbox.max_bytes):
                dropped.append(self._unsaved.popleft()[0])
        for old in dropped:
            self._set_state(old, UNSAVED_DROPPED, final=True)
            log.warning("too many messages waiting in memory for %s: dropped the %s message "
                        "of %s", self.label, old.kind, _local(old.created))
        self.wake()

    def _unsaved_bytes(self) -> int:
        return sum(len(a or b"") + len(i.text) for i, a in self._unsaved)

    def unsaved_count(self) -> int:
        with self._lock:
            return len(self._unsaved)

    def stop(self, timeout: float) -> None:
        self.stop_soon(timeout)
        self.join(timeout)

    def stop_soon(self, timeout: float) -> None:
        """Stop taking new work; what is queued has ``timeout`` seconds to go out."""
        self._drain_deadline = time.monotonic() + timeout
        self._stopping.set()
        self.wake()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout + 5)
            if self._thread.is_alive():
                log.warning("%s delivery did not finish in time; the rest stays queued",
                            self.label)
        lost = self.unsaved_count()
        if lost:
            log.error("%d message(s) that could not be kept on disk were not sent to %s",
                      lost, self.label)

    def _nothing_left(self) -> bool:
        """Nothing for this channel to send now (stopping may end)."""
        try:
            return not self.unsaved_count() and not sendable(self.outbox, self.channel_id)
        except OSError:
            return True

    def _out_of_time(self) -> bool:
        return self._stopping.is_set() and time.monotonic() >= self._drain_deadline

    def _set_state(self, item: Item, state: str, final: bool = False) -> None:
        tracked = self._states.pop(item.id, None) if final else self._states.get(item.id)
        if tracked is not None:
            tracked.state = state

    def _expire(self) -> None:
        if self.lead:
            expire(self.outbox, lambda i: self._set_state(i, EXPIRED, final=True),
                   self.send_unsaved)


def expire(outbox: Outbox, dropped: Callable[[Item], None],
           send_unsaved: Callable[[Item, bytes | None], None]) -> None:
    """The lead channel's turn: drop what is too old or too much (``dropped`` is told of
    each), and queue one message saying what (from memory when the disk refuses it)."""
    expired = outbox.expire()
    for i in expired:
        dropped(i)
    if not expired:
        return
    what = ", ".join(f"{i.kind} of {_local(i.created, '%Y-%m-%d %H:%M')}"
                     for i in expired[:5])
    more = f" and {len(expired) - 5} more" if len(expired) > 5 else ""
    text = (f"{len(expired)} message(s) could not be delivered in time and were "
            f"dropped: {what}{more}")
    log.warning("outbox: %s", text)
    item = outbox.new_item("expired", text)
    try:
        outbox.save(item)
    except OSError:
        send_unsaved(item, None)


def sendable(outbox: Outbox, channel: str) -> list[Item]:
    """What ``channel`` should send now: its queued items, oldest first, except those held
    for quiet hours."""
    now = time.time()
    return [i for i in outbox.waiting_for(channel) if not held(i.extra, now)]


def held_wait(outbox: Outbox, channel: str) -> float:
    """How long a channel may sleep: until the next held item is due, at most the usual."""
    now = time.time()
    try:
        ends = [float(i.extra["hold_until"]) for i in outbox.waiting_for(channel)
                if held(i.extra, now)]
    except OSError:
        ends = []
    # A wall-clock wait: a step of the clock is caught at the next turn.
    return max(0.0, min([IDLE_POLL_SECONDS, *(e - now + 0.05 for e in ends)]))
