"""One Apprise channel's delivery thread (ntfy, Pushover, Gotify, Discord, e-mail ...).

Each channel sends the shared outbox on its own, oldest first, and notes itself in each item
it has delivered (`Outbox.done_for`): a channel that is down holds back only itself, and
after a restart it resumes where it was, never sending an item twice. Apprise's calls block
(its plugins use requests), so each channel is a plain thread, not a task in Telegram's
event loop. Apprise cannot tell a refusal from an outage, so every failure is retried with
tenacity's backoff until the item's age limit (the lead channel expires it and says so).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path

from tenacity import Retrying, retry_if_exception_type, wait_exponential_jitter

from .apprise_channel import AppriseChannel, ChannelError
from .delivery import SENT, ChannelDelivery, held_wait, sendable
from .outbox import Item, Outbox
from .quiet import delay_note

log = logging.getLogger(__name__)


class AppriseDelivery(ChannelDelivery):
    def __init__(self, channel: AppriseChannel, outbox: Outbox, retry_initial: float,
                 retry_max: float):
        super().__init__(outbox)
        self.channel = channel
        self.channel_id = channel.id
        self.label = channel.label
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._wake = threading.Event()
        self._failing: str | None = None
        """The reason of the outage going on (logged once), or None."""

    # -- from the notifier --------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"apprise-{self.channel.id}")
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                self._send_unsaved()
                self._expire()
                for item in sendable(self.outbox, self.channel_id):
                    if self._out_of_time() or not self._send(item):
                        break
                idle = held_wait(self.outbox, self.channel_id)
            except Exception as e:  # noqa: BLE001 - delivery must outlive any fault
                log.error("%s: delivery failed (%s: %s); trying again in a minute",
                          self.channel.label, type(e).__name__, e)
                idle = 60.0
            if self._stopping.is_set():
                if time.monotonic() >= self._drain_deadline or self._nothing_left():
                    return
                idle = 0.2
            self._wake.wait(idle)

    def _send_unsaved(self) -> None:
        while not self._out_of_time():
            with self._lock:
                if not self._unsaved:
                    return
                item, audio = self._unsaved[0]
            if not self._send(item, audio, saved=False):
                return
            with self._lock:
                if self._unsaved and self._unsaved[0][0] is item:
                    self._unsaved.popleft()

    def _send(self, item: Item, audio: bytes | None = None, saved: bool = True) -> bool:
        """One item, retried through an outage. True when this channel has it."""
        attachment = self.outbox.audio_path(item) if saved else None
        if attachment is not None and not attachment.exists():
            attachment = None
        tmp = None
        if not saved and audio is not None:
            tmp = self._spill(item, audio)
            attachment = tmp

        def stop(retry_state) -> bool:
            return self._out_of_time() or (saved and
                                           self.outbox.age(item) > self.outbox.max_age)

        def sleep(seconds: float) -> None:
            # Not on the wake event: new messages must not cut the backoff short.
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not self._out_of_time():
                time.sleep(min(0.2, deadline - time.monotonic()))

        def before_sleep(rs) -> None:
            reason = str(rs.outcome.exception())
            if reason != self._failing:
                log.warning("sending %s to %s failed (%s); retrying, backing off up to "
                            "%.0f s", item.kind, self.channel.label, reason, self.retry_max)
            self._failing = reason
            if saved:
                self.outbox.note_attempt(item)

        retrying = Retrying(retry=retry_if_exception_type(ChannelError),
                            wait=wait_exponential_jitter(multiplier=self.retry_initial,
                                                         max=self.retry_max,
                                                         jitter=self.retry_initial),
                            stop=stop, sleep=sleep, before_sleep=before_sleep, reraise=True)
        text = delay_note(item.extra, item.created, self.outbox.age(item)) + item.text
        try:
            retrying(self.channel.send, text, item.title, attachment,
                     bool(item.extra.get("silent")), _clip_name(item))
        except ChannelError:
            return False  # out of time or too old: stays queued, or the lead expires it
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        if self._failing is not None:
            log.info("%s takes messages again", self.channel.label)
            self._failing = None
        if saved:
            self.outbox.done_for(item, self.channel_id)
        self._set_state(item, SENT, final=True)
        log.info("sent %s to %s", item.kind, self.channel.label)
        return True

    def _spill(self, item: Item, audio: bytes):
        """A clip kept only in memory (the outbox cannot be written), as a file Apprise can
        attach (in the temp folder), or None: it goes without."""
        try:
            fd, name = tempfile.mkstemp(suffix=".mp3", prefix="beepnet-")
            with open(fd, "wb") as f:
                f.write(audio)
            return Path(name)
        except OSError:
            return None


def _clip_name(item: Item) -> str:
    """The clip's file name as the owner sees it: "beep-1402.mp3"."""
    if not item.audio:
        return ""
    return f"beep-{time.strftime('%H%M', time.localtime(item.created))}.mp3"
