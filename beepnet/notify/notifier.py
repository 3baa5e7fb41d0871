"""The notifier the supervisor talks to: cooldown, the outbox, and a delivery thread.

``alert()`` and ``message()`` return at once and never raise: they write the outbox and wake
the delivery thread, which owns one event loop and one Bot for its whole life (a Bot reused
across ``asyncio.run()`` calls fails with "Event loop is closed") and sends the outbox oldest
first, retrying with tenacity. Whatever goes wrong in that thread (a disk error, a bug) is
logged once and waited out; the thread only ends when it is stopped. When the outbox cannot be
written, messages go out from memory (a bounded queue) and the owner is told. Without Telegram
configured there is no thread: alerts and messages go to the log, and each alert's record is
kept beside its clip.

With ``bot`` settings (a daemon, not a one-off message) the same thread and Bot also receive:
commands and the buttons under each alert (`beepnet.notify.polling`, `.commands`), and beep
alerts honour a mute (`.mute`).

Clocks: the wall clock only for what a person reads; durations, timeouts and pauses are
monotonic, and outbox ages use CLOCK_BOOTTIME (see outbox.py), so setting the clock is harmless.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from ..fsutil import write_atomic
from ..logs import redact
from ..messages import Detection
from .commands import BotSettings
from .mp3 import clip_to_mp3
from .mute import Mute
from .delivery import (IDLE_POLL_SECONDS, QUEUED, REJECTED, SENT, UNSAVED,
                       UNSAVED_SENT, ChannelDelivery, held_wait, sendable)
from .outbox import Clock, Item, Outbox
from .quiet import HOLD, SILENT, QuietHours, delay_note
from .timefmt import minutes_text, span_text

log = logging.getLogger(__name__)

PAUSE_SECONDS = 600.0
"""After Telegram refuses the set-up (token, chat, URL), wait this long before trying again."""
OUTAGE_NOTE_SECONDS = 60.0
"""Delivery impossible for longer than this: the next message that gets through says so."""
FAULT_BACKOFF_MAX = 60.0
TRACKED_ALERTS = 50

CONSOLE_ONLY = "logged"
MUTED = "muted"


def _local(t: float, fmt: str = "%H:%M:%S") -> str:
    return time.strftime(fmt, time.localtime(t))


def alert_id(det: Detection) -> str:
    """The alert's id: its clip's stem (the feedback reads the clip by it)."""
    return Path(det.clip_path).stem if det.clip_path else f"{int(det.time)}-beep"


def beep_caption(det: Detection) -> str:
    return f"Beep at {_local(det.time)} (score {det.score:.2f})."


class AlertState:
    """The delivery state of one alert, shared by the notifier and the status publisher."""

    __slots__ = ("state",)

    def __init__(self, state: str):
        self.state = state

    def __call__(self) -> str:
        return self.state


class Notifier:
    def __init__(self, alert_dir: Path, outbox_dir: Path, *, cooldown_minutes: float,
                 telegram=None, outbox_max_age_hours: float = 48.0, outbox_max_mb: float = 50.0,
                 retry_initial_seconds: float = 1.0, retry_max_seconds: float = 300.0,
                 clock: Clock | None = None, bot: BotSettings | None = None,
                 channels: list | None = None, quiet: QuietHours | None = None,
                 mute_dir: Path | None = None):
        """``telegram`` is the TelegramConfig when Telegram is configured, else None;
        ``bot``: receive commands and button presses too (only with ``telegram``);
        ``channels``: more channels (`beepnet.notify.apprise_channel.AppriseChannel`), each
        delivered in its own thread from the same outbox; ``quiet``: quiet hours;
        ``mute_dir``: keep a mute (/mute, Home Assistant's switch) there (default: the
        bot's state folder, when there is a bot)."""
        self.alert_dir = Path(alert_dir)
        self.cooldown = cooldown_minutes * 60.0
        self.telegram = telegram
        self.quiet = quiet
        self.alerts: list[dict] = []
        self.suppressed = 0
        self._last_alert: tuple[float, float] | None = None
        """(det.time, det.mono) of the last alert, for the cooldown."""
        self._tracked: OrderedDict[float, AlertState] = OrderedDict()
        self._disk_error: str | None = None
        channels = list(channels or ())
        self.outbox = (Outbox(outbox_dir, outbox_max_age_hours, outbox_max_mb, clock)
                       if telegram is not None or channels else None)
        self._delivery = (_Delivery(self.outbox, telegram, retry_initial_seconds,
                                    retry_max_seconds) if telegram is not None else None)
        self._deliveries: list = [self._delivery] if self._delivery is not None else []
        if channels:
            from .appriseworker import AppriseDelivery

            self._deliveries += [AppriseDelivery(c, self.outbox, retry_initial_seconds,
                                                 retry_max_seconds) for c in channels]
        if self.outbox is not None:
            self.outbox.channels = tuple(d.channel_id for d in self._deliveries)
            # The first channel tracks alerts for the monitor and expires old items.
            self._deliveries[0].lead = True
        self.mute: Mute | None = None
        if mute_dir is not None or (telegram is not None and bot is not None):
            self.mute = Mute(mute_dir or bot.state_dir)
        if telegram is not None and bot is not None:
            self._delivery.poller = self._make_poller(bot)

    def _make_poller(self, bot: BotSettings):
        from .commands import Commands
        from .polling import Poller

        commands = Commands(bot, self.telegram.chat_id, self.mute, self.undelivered,
                            self.message, self.telegram.token)
        return Poller(bot.state_dir, commands, self.message, self.telegram.token)

    def answer_for(self, daemon) -> None:
        """Let /listen and /missed reach the running daemon (the Supervisor)."""
        if self._delivery is not None and self._delivery.poller is not None:
            self._delivery.poller.commands.daemon = daemon

    # -- what the supervisor calls -------------------------------------------------------

    def start(self) -> None:
        if self._deliveries:
            pending = len(self.outbox.pending())
            if pending:
                log.info("%d message(s) left in the outbox from before; sending them first",
                         pending)
            for d in self._deliveries:
                d.start()

    def alert(self, det: Detection, caption: str | None = None,
              emptied: str | None = None) -> bool:
        """A beep. ``caption``: what it means for the cycle ("Washer finished at ...";
        default: the time and score); ``emptied``: the key of a 🧺 Emptied button for the
        cycle it finished. Returns False when the cooldown swallowed it."""
        when = _local(det.time, "%Y-%m-%d %H:%M:%S")
        if self._in_cooldown(det):
            self.suppressed += 1
            log.info("beep at %s within %.0f min of the last alert: not alerting again",
                     when, self.cooldown / 60)
            return False
        self._last_alert = (det.time, det.mono)
        try:
            self._alert(det, caption or beep_caption(det), emptied, when)
        except Exception as e:  # noqa: BLE001 - the supervisor must go on listening
            log.error("cannot pass on the alert for the beep at %s: %s: %s", when,
                      type(e).__name__, e)
        return True

    def message(self, kind: str, text: str, emptied: str | None = None,
                audio: bytes | None = None, title: str = "") -> None:
        """Operational and cycle news (listening, microphone lost, stopped without a beep,
        reminders ...); ``emptied``: the key of a 🧺 Emptied button under it; ``audio``: an
        MP3 to send it with (``title`` names it)."""
        log.info("[%s] %s", kind, text)
        if self.outbox is None:
            return
        until = self.mute.until() if self.mute is not None else None
        if kind == "start" and until is not None:
            text += (f" Beep alerts are muted until {_local(until, '%H:%M')} (/unmute to "
                     "end it).")
        try:
            self._queue(kind, text, audio, title, **self._emptied_button(emptied))
        except Exception as e:  # noqa: BLE001 - the supervisor must go on listening
            log.error("cannot queue the %s message: %s: %s", kind, type(e).__name__, e)

    def delivery_of(self, det: Detection) -> Callable[[], str] | None:
        """The live delivery state of the alert ``alert(det)`` made, or None."""
        return self._tracked.get(det.time)

    def undelivered(self) -> tuple[int, int]:
        """(messages in the outbox, messages only in memory) not sent yet."""
        if not self._deliveries:
            return 0, 0
        try:
            on_disk = len(self.outbox.pending())
        except OSError:
            on_disk = 0
        return on_disk, max(d.unsaved_count() for d in self._deliveries)

    def close(self, timeout: float = 10.0) -> None:
        """Give queued messages up to ``timeout`` seconds to go out; the rest stay queued."""
        for d in self._deliveries:  # all drain at once, each within the same time
            d.stop_soon(timeout)
        for d in self._deliveries:
            d.join(timeout)

    # -- internals ---------------------------------------------------------------------------

    def _in_cooldown(self, det: Detection) -> bool:
        if self._last_alert is None:
            return False
        last_time, last_mono = self._last_alert
        # Monotonic when both beeps have it: a step of the wall clock must not matter.
        gap = det.mono - last_mono if det.mono and last_mono else det.time - last_time
        # On the recording's own clock: a replay at --speed 20 compresses wall time.
        return gap / det.chunk.time_scale < self.cooldown

    def _receives(self) -> bool:
        """Whether button presses under messages reach this daemon (Telegram's bot)."""
        return self._delivery is not None and self._delivery.poller is not None

    def _emptied_button(self, key: str | None) -> dict:
        return {"emptied": key} if key and self._receives() else {}

    def _alert(self, det: Detection, caption: str, emptied: str | None, when: str) -> None:
        record = {"kind": "beep", "time": when,
                  "epoch": round(det.time, 3), "offset": round(det.offset, 3),
                  "score": round(det.score, 4), "detector": det.detector,
                  "clip": det.clip_path, "level_dbfs": round(det.chunk.peak_dbfs, 1)}
        record.update(_clip_geometry(det))
        muted = self.mute is not None and self.mute.hold(det.time)
        if muted:
            record["muted"] = True
        self.alerts.append(record)
        state = self._track(det, MUTED if muted else
                            QUEUED if self.outbox is not None else CONSOLE_ONLY)
        log.warning("ALERT beep at %s (score %.2f) clip %s%s", when, det.score,
                    det.clip_path or "(none)",
                    f"; muted until {_local(self.mute.until() or 0, '%H:%M')}: not sent"
                    if muted else "")
        stem = alert_id(det)
        self._write_record(self.alert_dir / f"{stem}.json", record)
        if self.outbox is None or muted:
            return
        audio = None
        if det.clip_path:
            try:
                audio = clip_to_mp3(det.clip_path)
            except Exception as e:  # noqa: BLE001 - the alert goes out without its clip
                log.error("cannot make the MP3 clip from %s: %s", det.clip_path, e)
        # How long ago the beep began, for its age in the outbox.
        ago = time.monotonic() - det.mono if det.mono else time.time() - det.time
        # The buttons' alert id: the clip's stem (the feedback reads the clip by it).
        buttons = ({"alert": stem, "feedback": bool(det.clip_path and audio)}
                   if self._receives() else {})
        self._queue("beep", caption, audio,
                    title=f"Beep {_local(det.time, '%H:%M')}", created=det.time,
                    ago=min(max(ago, 0.0), 600.0), state=state, **buttons,
                    **self._emptied_button(emptied))

    def _track(self, det: Detection, state: str) -> AlertState:
        tracked = self._tracked[det.time] = AlertState(state)
        while len(self._tracked) > TRACKED_ALERTS:
            self._tracked.popitem(last=False)
        return tracked

    def _queue(self, kind: str, text: str, audio: bytes | None = None, title: str = "",
               created: float | None = None, ago: float = 0.0,
               state: AlertState | None = None, **extra) -> None:
        item = self.outbox.new_item(kind, text, title, created, ago, **extra)
        self._quiet(item, state)
        if state is not None:
            self._deliveries[0].track(item.id, state)
        try:
            self.outbox.save(item, audio)
        except OSError as e:
            self._cannot_save(e)
            if state is not None:
                state.state = UNSAVED
            for d in self._deliveries:
                d.send_unsaved(item, audio)
            return
        for d in self._deliveries:
            d.wake()
        if self._disk_error is not None:
            self._disk_error = None
            log.warning("the outbox %s can be written again", self.outbox.dir)
            self._queue("outbox", f"Messages are kept on disk again ({self.outbox.dir}).")

    def _quiet(self, item: Item, state: AlertState | None) -> None:
        """Quiet hours: hold ``item`` until they end, or mark it to be sent silently."""
        if self.quiet is None:
            return
        treatment = self.quiet.treatment(item.kind)
        if treatment == HOLD:
            # Kept on the wall clock the channels read, as "when the window ends" from now
            # (the quiet hours' clock is a test's in tests).
            item.extra["hold_until"] = time.time() + self.quiet.ends() - self.quiet.clock()
            log.info("quiet hours: the %s message waits until %s", item.kind,
                     _local(item.extra["hold_until"], "%H:%M"))
            if state is not None:
                state.state = f"held until {_local(item.extra['hold_until'], '%H:%M')}"
        elif treatment == SILENT:
            item.extra["silent"] = True

    def _cannot_save(self, e: OSError) -> None:
        """Tell the owner once (from memory) that messages cannot be kept on disk."""
        reason = e.strerror or str(e)
        if self._disk_error is not None:
            return
        self._disk_error = reason
        text = (f"Cannot keep messages on disk ({self.outbox.dir}: {reason}): sending them "
                "from memory; those not sent yet are lost if beepnet stops.")
        log.error("cannot write the outbox %s (%s); sending messages without keeping them",
                  self.outbox.dir, reason)
        item = self.outbox.new_item("outbox", text)
        self._quiet(item, None)
        for d in self._deliveries:
            d.send_unsaved(item, None)

    def _write_record(self, path: Path, record: dict) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(record, indent=1).encode())
        except OSError as e:
            log.error("cannot write alert record %s: %s", path, e.strerror or e)


def _clip_geometry(det: Detection) -> dict:
    """Where the beep lies in its clip, for the feedback buttons (`beepnet.notify.feedback`):
    ``beep_at`` and ``beep_length`` (seconds into the clip), ``clip_start_sample`` (its
    first sample in the stream). Empty when the clip says nothing about it."""
    from ..audio import SAMPLE_RATE

    if not det.clip_path or det.length <= 0:
        return {}  # no clip, or one made without its pattern's geometry
    at = det.clip_offset
    return {"beep_at": round(at, 3), "beep_length": round(det.length, 3),
            "clip_start_sample": max(0, int(round((det.offset - at) * SAMPLE_RATE)))}


class _Delivery(ChannelDelivery):
    """Telegram's delivery thread: sends the outbox oldest first, with retries, until
    stopped. With a ``poller``, the same loop and Bot also receive (`beepnet.notify.polling`).
    Other channels have their own (`beepnet.notify.appriseworker`), from the same outbox."""

    channel_id = "telegram"
    label = "Telegram"

    def __init__(self, outbox: Outbox, telegram, retry_initial: float, retry_max: float):
        super().__init__(outbox)
        self.tg = telegram
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.paused_until = 0.0
        """time.monotonic() before which nothing is tried (set-up refused, fault)."""
        self.refusal: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._ready = threading.Event()
        self._fault: str | None = None
        self._fault_backoff = 0.0
        self._down: tuple[float, str] | None = None
        """Since when (monotonic) nothing could be delivered, and the latest reason."""
        self._attempt_began: float | None = None
        self._again = False
        self.poller = None
        """The Poller when this daemon receives commands and button presses, else None."""
        self._accepted: asyncio.Event | None = None
        """Set once Telegram has accepted a message: receiving starts then."""

    # -- called from the supervisor's thread ------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="telegram", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def wake(self) -> None:
        loop, event = self._loop, self._wake
        if loop is None or event is None:
            return
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # the loop has ended: what is queued stays queued
            pass

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._accepted = asyncio.Event()
        self._ready.set()
        bot = None
        polling: asyncio.Task | None = None
        try:
            while True:
                # Cleared before the work, so a message queued during it is not left waiting.
                self._wake.clear()
                if self._stopping.is_set() and polling is not None:
                    polling.cancel()  # no new commands while stopping
                if not self._paused():
                    try:
                        bot = bot or self._make_bot()
                        if self.poller is not None and polling is None \
                                and not self._stopping.is_set():
                            polling = asyncio.create_task(self._poll(bot))
                        await self._send_all(bot)
                        self._fault, self._fault_backoff = None, 0.0
                    except Exception as exc:  # noqa: BLE001 - delivery must outlive any fault
                        self._on_fault(exc)
                if self._stopping.is_set() and self._done_draining():
                    break
                try:
                    await asyncio.wait_for(self._wake.wait(), self._idle_time())
                except asyncio.TimeoutError:
                    pass
        finally:
            if polling is not None:
                polling.cancel()
                try:
                    await polling
                except (asyncio.CancelledError, Exception):  # noqa: BLE001 - ending anyway
                    pass
            try:
                if bot is not None:
                    await bot.shutdown()
            except Exception:  # noqa: BLE001 - closing connections must not mask the exit
                pass

    def _make_bot(self):
        from .telegram import make_bot

        return make_bot(self.tg.token, self.tg.api_url)

    async def _poll(self, bot) -> None:
        """The receiving task; Poller.run handles its own faults, this catches its bugs."""
        while True:
            try:
                await self.poller.run(bot, self._accepted)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - receiving must outlive a bug
                log.error("receiving from Telegram stopped on an error (%s: %s); starting "
                          "again in a minute", type(exc).__name__,
                          redact(str(exc), (self.tg.token,)))
                await asyncio.sleep(60)

    def _buttons(self, item: Item):
        """The alert's inline keyboard, when this daemon receives the presses."""
        if self.poller is None or not (item.extra.get("alert") or item.extra.get("emptied")):
            return None
        from .commands import alert_keyboard

        return alert_keyboard(item.extra.get("alert"), bool(item.extra.get("feedback")),
                              item.extra.get("emptied"))

    def _on_fault(self, exc: Exception) -> None:
        """Log a fault once (not at every turn while it lasts), and back off."""
        detail = redact(f"{type(exc).__name__}: {exc}", (self.tg.token,))
        self._fault_backoff = min(FAULT_BACKOFF_MAX, max(1.0, self._fault_backoff * 2))
        self.paused_until = time.monotonic() + self._fault_backoff
        if detail != self._fault:
            log.error("Telegram delivery failed (%s); trying again, backing off up to %.0f s",
                      detail, FAULT_BACKOFF_MAX)
        self._fault = detail
        if isinstance(exc, OSError):
            self._note_down(f"the outbox could not be read or written "
                            f"({exc.strerror or exc})")
        else:
            self._note_down(f"an internal error ({type(exc).__name__})")

    def _idle_time(self) -> float:
        if self._again:
            self._again = False
            return 0.0
        if self._stopping.is_set():
            return max(0.0, min(0.2, self._drain_deadline - time.monotonic()))
        if self._paused():
            return min(IDLE_POLL_SECONDS, self.paused_until - time.monotonic())
        return held_wait(self.outbox, self.channel_id)

    def _paused(self) -> bool:
        return self.paused_until > time.monotonic()

    def _done_draining(self) -> bool:
        if time.monotonic() >= self._drain_deadline or self._paused():
            return True
        return self._nothing_left()

    async def _send_all(self, bot) -> None:
        while not self._paused() and not self._out_of_time():
            with self._lock:
                if not self._unsaved:
                    break
                item, audio = self._unsaved[0]
            done = await self._send(bot, item, audio, saved=False)
            with self._lock:
                if self._unsaved and self._unsaved[0][0] is item:
                    if not done:
                        return
                    self._unsaved.popleft()
        self._expire()
        for item in sendable(self.outbox, self.channel_id):
            if self._paused() or self._out_of_time():
                return
            if not await self._send(bot, item):
                return

    def _note_down(self, reason: str) -> None:
        # An outage began when the first attempt that failed began: a stalled server takes
        # the whole read timeout to fail, and that time was already lost.
        since = self._down[0] if self._down else (self._attempt_began or time.monotonic())
        self._down = (since, reason)

    def _outage_note(self) -> str:
        """For the first message through after delivery was impossible for a while."""
        if self._down is None:
            return ""
        lasted = time.monotonic() - self._down[0]
        if lasted < OUTAGE_NOTE_SECONDS:
            return ""
        now = time.time()
        return (f"Could not send to Telegram {span_text(now - lasted, now)} "
                f"({minutes_text(int(lasted // 60))}): {self._down[1]}.\n")

    async def _send(self, bot, item: Item, audio: bytes | None = None,
                    saved: bool = True) -> bool:
        """Send one item with retries. True when it is done with (sent or set aside)."""
        from tenacity import AsyncRetrying, retry_if_exception
        from telegram.error import TelegramError

        from .telegram import deliver, failure_text, is_transient, wait_for_telegram

        if saved:
            path = self.outbox.audio_path(item)
            audio = path if path is not None and path.exists() else None

        def stop(retry_state) -> bool:
            # Keep retrying through an outage, but not past a shutdown's grace period, nor
            # past the item's age limit (the next turn expires it and says so).
            return self._out_of_time() or (saved and
                                           self.outbox.age(item) > self.outbox.max_age)

        async def sleep(seconds: float) -> None:
            # Not on the wake event: the main loop needs its wake-ups for later messages.
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not self._out_of_time():
                await asyncio.sleep(min(0.2, deadline - time.monotonic()))

        def before_sleep(rs) -> None:
            exc = rs.outcome.exception()
            self._note_down(failure_text(exc, self.tg.token))
            if saved:
                self._set_state(item, f"retrying ({item.attempts})")
            log.warning("sending %s failed (%s: %s); retry %d in %.1f s", item.kind,
                        type(exc).__name__, redact(str(exc), (self.tg.token,)),
                        rs.attempt_number, rs.next_action.sleep)

        retrying = AsyncRetrying(retry=retry_if_exception(is_transient),
                                 wait=wait_for_telegram(self.retry_initial, self.retry_max),
                                 stop=stop, sleep=sleep, before_sleep=before_sleep,
                                 reraise=True)
        outage = ""
        try:
            async for attempt in retrying:
                with attempt:
                    if saved:
                        self.outbox.note_attempt(item)
                    else:
                        item.attempts += 1
                    outage = self._outage_note()
                    text = (outage + delay_note(item.extra, item.created,
                                                self.outbox.age(item)) + item.text)
                    self._attempt_began = time.monotonic()
                    await deliver(bot, self.tg.chat_id, text, audio, item.title,
                                  reply_markup=self._buttons(item),
                                  silent=bool(item.extra.get("silent")))
        except TelegramError as exc:
            return self._refused(exc, item, saved)
        except Exception as exc:  # noqa: BLE001 - a bug here must not kill delivery for good
            log.error("unexpected error sending %s: %s: %s", item.kind, type(exc).__name__,
                      redact(str(exc), (self.tg.token,)))
            self._note_down(f"an internal error ({type(exc).__name__})")
            self.paused_until = time.monotonic() + 60
            return False
        if saved:
            self.outbox.done_for(item, self.channel_id)
        if self._accepted is not None:
            self._accepted.set()
        self._set_state(item, SENT if saved else UNSAVED_SENT, final=True)
        self.refusal = None
        self._down = self._attempt_began = None
        if outage:
            log.info("told the owner: %s", outage.strip())
        log.info("sent %s to Telegram", item.kind)
        return True

    def _refused(self, exc, item: Item, saved: bool) -> bool:
        from .telegram import explain, failure_text, is_transient

        if is_transient(exc):
            self._note_down(failure_text(exc, self.tg.token))
            self._again = not self._out_of_time()  # too old: the next turn expires it
            return False  # stopped while retrying: stays queued for the next start
        refusal = explain(exc, self.tg.chat_id, self.tg.api_url, self.tg.token)
        if refusal.setup:
            self.paused_until = time.monotonic() + PAUSE_SECONDS
            self._note_down(refusal.reason)
            if refusal.reason != self.refusal:
                log.error("%s; %d message(s) kept in the outbox, trying again in %.0f min",
                          refusal.reason, len(self.outbox.pending()), PAUSE_SECONDS / 60)
            self.refusal = refusal.reason
            return False
        log.error("%s; setting the %s message aside in %s/rejected", refusal.reason,
                  item.kind, self.outbox.dir)
        if saved:
            self.outbox.done_for(item, self.channel_id, refused=refusal.reason)
        self._set_state(item, REJECTED, final=True)
        return True
