"""The notifier the supervisor talks to: cooldown, the outbox, and a delivery thread.

``alert()`` and ``message()`` return at once: they write the outbox and wake the delivery
thread, which owns one event loop and one Bot for its whole life (a Bot reused across
``asyncio.run()`` calls fails with "Event loop is closed") and sends the outbox oldest first,
retrying with tenacity. Without Telegram configured there is no thread: alerts and messages go
to the log, and each alert's record is kept beside its clip.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path

from ..fsutil import write_atomic
from ..messages import Detection
from .mp3 import clip_to_mp3
from .outbox import Item, Outbox
from .timefmt import minutes_text

log = logging.getLogger(__name__)

PAUSE_SECONDS = 600.0
"""After Telegram refuses the set-up (token, chat), wait this long before trying again."""
IDLE_POLL_SECONDS = 30.0


def _local(t: float, fmt: str = "%H:%M:%S") -> str:
    return time.strftime(fmt, time.localtime(t))




def beep_caption(det: Detection, running_for: float | None) -> str:
    text = f"Beep at {_local(det.time)} (score {det.score:.2f})"
    if running_for is not None and running_for >= 60:
        text += f"; the machine had been running for {minutes_text(int(running_for // 60))}"
    return text + "."


class Notifier:
    def __init__(self, alert_dir: Path, outbox_dir: Path, *, cooldown_minutes: float,
                 telegram=None, outbox_max_age_hours: float = 48.0, outbox_max_mb: float = 50.0,
                 retry_initial_seconds: float = 1.0, retry_max_seconds: float = 300.0):
        """``telegram`` is the TelegramConfig when Telegram is configured, else None."""
        self.alert_dir = Path(alert_dir)
        self.cooldown = cooldown_minutes * 60.0
        self.telegram = telegram
        self.alerts: list[dict] = []
        self.suppressed = 0
        self._last_alert: float | None = None
        self.outbox = (Outbox(outbox_dir, outbox_max_age_hours, outbox_max_mb)
                       if telegram is not None else None)
        self._delivery = (_Delivery(self.outbox, telegram, retry_initial_seconds,
                                    retry_max_seconds) if telegram is not None else None)

    # -- what the supervisor calls -------------------------------------------------------

    def start(self) -> None:
        if self._delivery is not None:
            pending = len(self.outbox.pending())
            if pending:
                log.info("%d message(s) left in the outbox from before; sending them first",
                         pending)
            self._delivery.start()

    def alert(self, det: Detection, running_for: float | None = None) -> bool:
        """A beep. Returns False when the cooldown swallowed it."""
        record = {"kind": "beep", "time": _local(det.time, "%Y-%m-%d %H:%M:%S"),
                  "epoch": round(det.time, 3), "offset": round(det.offset, 3),
                  "score": round(det.score, 4), "detector": det.detector,
                  "clip": det.clip_path, "level_dbfs": round(det.chunk.peak_dbfs, 1)}
        # On the recording's own clock: a replay at --speed 20 compresses wall time.
        if (self._last_alert is not None and
                (det.time - self._last_alert) / det.chunk.time_scale < self.cooldown):
            self.suppressed += 1
            log.info("beep at %s within %.0f min of the last alert: not alerting again",
                     record["time"], self.cooldown / 60)
            return False
        self._last_alert = det.time
        self.alerts.append(record)
        log.warning("ALERT beep at %s (score %.2f) clip %s", record["time"], det.score,
                    det.clip_path or "(none)")
        stem = Path(det.clip_path).stem if det.clip_path else f"{int(det.time)}-beep"
        self._write_record(self.alert_dir / f"{stem}.json", record)
        if self.outbox is not None:
            audio = None
            if det.clip_path:
                try:
                    audio = clip_to_mp3(det.clip_path)
                except Exception as e:  # noqa: BLE001 - the alert goes out without its clip
                    log.error("cannot make the MP3 clip from %s: %s", det.clip_path, e)
            self._queue("beep", beep_caption(det, running_for), audio,
                        title=f"Beep {_local(det.time, '%H:%M')}", created=det.time)
        return True

    def message(self, kind: str, text: str) -> None:
        """Operational news (listening, stopped, no beep yet, microphone lost ...)."""
        log.info("[%s] %s", kind, text)
        if self.outbox is not None:
            self._queue(kind, text)

    def close(self, timeout: float = 10.0) -> None:
        """Give queued messages up to ``timeout`` seconds to go out; the rest stay queued."""
        if self._delivery is not None:
            self._delivery.stop(timeout)

    # -- internals ---------------------------------------------------------------------------

    def _queue(self, kind: str, text: str, audio: bytes | None = None, title: str = "",
               created: float | None = None) -> None:
        try:
            self.outbox.put(kind, text, audio, title=title, created=created)
        except OSError as e:
            # Nothing durable is possible; still try to send it from memory.
            log.error("cannot write the outbox (%s); sending %s without keeping it",
                      e.strerror or e, kind)
            self._delivery.send_unsaved(Item(f"unsaved-{kind}", kind, text, time.time()))
            return
        self._delivery.wake()

    def _write_record(self, path: Path, record: dict) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(record, indent=1).encode())
        except OSError as e:
            log.error("cannot write alert record %s: %s", path, e.strerror or e)


class _Delivery:
    """The delivery thread: sends the outbox oldest first, with retries, until stopped."""

    def __init__(self, outbox: Outbox, telegram, retry_initial: float, retry_max: float):
        self.outbox = outbox
        self.tg = telegram
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.paused_until = 0.0
        self.refusal: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = threading.Event()
        self._drain_deadline = 0.0
        self._unsaved: list[Item] = []
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="telegram", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def wake(self) -> None:
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def send_unsaved(self, item: Item) -> None:
        self._unsaved.append(item)
        self.wake()

    def stop(self, timeout: float) -> None:
        self._drain_deadline = time.monotonic() + timeout
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout + 5)
            if self._thread.is_alive():
                log.warning("Telegram delivery did not finish in time; the rest stays queued")

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from .telegram import make_bot

        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._ready.set()
        bot = make_bot(self.tg.token, self.tg.api_url)
        try:
            while True:
                self._expire()
                await self._send_all(bot)
                if self._stopping.is_set():
                    if self._done_draining():
                        break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._idle_time())
                except asyncio.TimeoutError:
                    pass
        finally:
            try:
                await bot.shutdown()
            except Exception:  # noqa: BLE001 - closing connections must not mask the exit
                pass

    def _idle_time(self) -> float:
        if self._stopping.is_set():
            return max(0.0, min(0.2, self._drain_deadline - time.monotonic()))
        if self.paused_until > time.time():
            return min(IDLE_POLL_SECONDS, self.paused_until - time.time())
        return IDLE_POLL_SECONDS

    def _done_draining(self) -> bool:
        if time.monotonic() >= self._drain_deadline or self.paused_until > time.time():
            return True
        return not self.outbox.pending() and not self._unsaved

    def _expire(self) -> None:
        expired = self.outbox.expire()
        if expired:
            what = ", ".join(f"{i.kind} of {_local(i.created, '%Y-%m-%d %H:%M')}"
                             for i in expired[:5])
            more = f" and {len(expired) - 5} more" if len(expired) > 5 else ""
            text = (f"{len(expired)} message(s) could not be delivered in time and were "
                    f"dropped: {what}{more}")
            log.warning("outbox: %s", text)
            self.outbox.put("expired", text)

    async def _send_all(self, bot) -> None:
        while self._unsaved and not self._paused():
            if await self._send(bot, self._unsaved[0], saved=False):
                self._unsaved.pop(0)
            else:
                return
        for item in self.outbox.pending():
            if self._paused() or (self._stopping.is_set() and
                                  time.monotonic() >= self._drain_deadline):
                return
            if not await self._send(bot, item):
                return

    def _paused(self) -> bool:
        return self.paused_until > time.time()

    async def _send(self, bot, item: Item, saved: bool = True) -> bool:
        """Send one item with retries. True when it is done with (sent or set aside)."""
        from tenacity import AsyncRetrying, retry_if_exception
        from telegram.error import TelegramError

        from .telegram import deliver, explain, is_transient, wait_for_telegram

        audio = self.outbox.audio_path(item) if saved else None
        if audio is not None and not audio.exists():
            audio = None

        def stop(retry_state) -> bool:
            # Keep retrying through an outage, but not past a shutdown's grace period.
            return self._stopping.is_set() and time.monotonic() >= self._drain_deadline

        async def sleep(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if stop(None):
                    return
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(),
                                           min(0.5, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    pass

        def before_sleep(rs) -> None:
            exc = rs.outcome.exception()
            log.warning("sending %s failed (%s: %s); retry %d in %.1f s", item.kind,
                        type(exc).__name__, exc, rs.attempt_number, rs.next_action.sleep)

        retrying = AsyncRetrying(retry=retry_if_exception(is_transient),
                                 wait=wait_for_telegram(self.retry_initial, self.retry_max),
                                 stop=stop, sleep=sleep, before_sleep=before_sleep,
                                 reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    if saved:
                        self.outbox.note_attempt(item)
                    await deliver(bot, self.tg.chat_id, item, audio, time.time())
        except TelegramError as exc:
            if is_transient(exc):
                return False  # stopped while retrying: stays queued for the next start
            refusal = explain(exc, self.tg.chat_id, self.tg.api_url, self.tg.token)
            if refusal.setup:
                self.paused_until = time.time() + PAUSE_SECONDS
                if refusal.reason != self.refusal:
                    log.error("%s; %d message(s) kept in the outbox, trying again in %.0f min",
                              refusal.reason, len(self.outbox.pending()), PAUSE_SECONDS / 60)
                self.refusal = refusal.reason
                return False
            log.error("%s; setting the %s message aside in %s/rejected", refusal.reason,
                      item.kind, self.outbox.dir)
            if saved:
                self.outbox.set_aside(item, refusal.reason)
            return True
        except Exception as exc:  # noqa: BLE001 - a bug here must not kill delivery for good
            log.exception("unexpected error sending %s: %s", item.kind, exc)
            self.paused_until = time.time() + 60
            return False
        if saved:
            self.outbox.remove(item)
        self.refusal = None
        log.info("sent %s to Telegram", item.kind)
        return True
