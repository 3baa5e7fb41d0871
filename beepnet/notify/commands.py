"""What the bot answers: commands from the owner's chat and the buttons under each alert.

Only the configured chat may command the bot, and in a group only the members listed in
``telegram.allowed_user_ids`` (when set). Anyone else gets no answer at all (an answer would
tell a stranger the bot is alive) and is logged by id, at most once an hour each. A
CallbackQueryHandler-like press carries no chat filter of its own: the chat and the user are
checked here, for every press.

Buttons carry ``fb:<alert id>:<yes|no|mute>`` (under Telegram's 64 bytes): the alert id is
its clip's stem under ``storage.dir/alerts``, so a press still works after a restart, as
long as the clip is kept (storage.keep_days, keep_mb). The 🧺 Emptied button under a finish
and its reminders carries ``cy:<key>:emptied``, the key naming that cycle's end, so a press
under an old cycle's message never empties the next one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..daemon.status import read_status
from ..fsutil import remove_quietly
from ..logs import redact
from .duration import DurationError, duration_text, parse_duration
from .feedback import NO, UNSURE, YES, FeedbackError, FeedbackStore, describe, summary
from .mp3 import clip_to_mp3
from .mute import Ended, Mute
from .report import last_alert_record, status_text
from .retrain import Retrainer
from .timefmt import hhmm, hms

log = logging.getLogger(__name__)

CALLBACK_LIMIT = 64
"""Bytes Telegram allows in a button's callback data."""
MUTE_BUTTON_SECONDS = 2 * 3600.0
DEFAULT_MUTE_SECONDS = 2 * 3600.0
STRANGER_LOG_EVERY = 3600.0
LISTEN_WAIT_SECONDS = 8.0
"""The supervisor gives the recorder 5 s for /listen's clip, then answers itself."""
LATE_COMMAND_SECONDS = 60.0
"""A /mute older than this (sent while beepnet was not receiving) counts from when it was sent."""

BUTTONS = (("yes", "✅ That was it"), ("no", "❌ Not the beep"), ("mute", "🔕 Mute 2 h"))
EMPTIED_BUTTON = "🧺 Emptied"
FEEDBACK_MARKS = ("✅", "❌")
MUTE_MARK = "🔕"
EMPTIED_MARK = "🧺"

COMMANDS = (
    ("status", "is it listening? microphone, detector, last beep, outbox, disk"),
    ("listen", "the last 10 s the microphone heard, as a clip"),
    ("missed", "it missed a beep: keep the last minutes of sound to label and train on"),
    ("emptied", "the laundry is out: no more reminders"),
    ("mute", "no beep alerts for a while: /mute 2h, /mute 30m, /mute 90 (minutes)"),
    ("unmute", "beep alerts on again"),
    ("retrain", "learn from your ✅/❌ answers and put the new model in use"),
    ("help", "what the bot understands"),
)


HELP = ("/status: is it listening? microphone, detector, last beep and alert, outbox, disk\n"
        "/listen: the last 10 s the microphone heard, as a clip\n"
        "/missed: it missed a beep you heard: the sound of the last minutes is kept under "
        "storage.dir/feedback/unsure, to label (`beepnet label --unsure`) and train on\n"
        "/emptied: the laundry is out: no more \"still in the machine\" reminders\n"
        "/mute [duration]: no beep alerts for a while (/mute 2h, /mute 30m, /mute 90 for "
        "minutes; 2 h without one)\n"
        "/unmute: beep alerts on again\n"
        "/retrain: learn from your answers (✅/❌, labelled /missed clips) and put the new "
        "model in use if it does better (without PyTorch on this machine, only its beep "
        "output is refitted)\n"
        "/help: this list\n"
        "Under each alert: ✅ That was it / ❌ Not the beep keep its sound as training data "
        "(storage.dir/feedback, for /retrain); 🔕 mutes alerts for 2 h; 🧺 Emptied stops the "
        "reminders.")


@dataclass(frozen=True)
class BotSettings:
    """What the bot needs beyond sending, from the one config (`beepnet.daemon.running`)."""

    state_dir: Path
    """Small files that must outlive a restart: the mute, the getUpdates offset."""
    feedback_dir: Path
    """Where answered alerts become training data (storage.dir/feedback)."""
    alert_dir: Path
    status_file: Path
    """The supervisor's live status (`beepnet.daemon.status`), for /status."""
    storage_dir: Path
    """Whose free disk space /status reports."""
    name: str = ""
    """notify.name: this listener's short name, "" when not set."""
    config_path: Path | None = None
    """The daemon's config file, which /retrain's `beepnet train --feedback` reads and
    points at the new model (None: built-in defaults)."""
    allowed_user_ids: frozenset[int] = field(default_factory=frozenset)
    """In a group chat, who may command the bot (empty: every member)."""


def callback_data(alert_id: str, action: str) -> str:
    return f"fb:{alert_id}:{action}"


def emptied_data(key: str) -> str:
    return f"cy:{key}:emptied"


def alert_keyboard(alert_id: str | None, feedback: bool, emptied: str | None = None):
    """The buttons under an alert (feedback only when its clip is kept) and under a cycle's
    end and reminders (🧺 Emptied, with the ``emptied`` key); None when there are none
    (an alert id too long for Telegram's 64 bytes has none of its own)."""
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup

    rows = []
    if alert_id and len(callback_data(alert_id, "mute").encode()) > CALLBACK_LIMIT:
        log.debug("alert id %s too long for buttons", alert_id)
    elif alert_id:
        rows.append([InlineKeyboardButton(text, callback_data=callback_data(alert_id, action))
                     for action, text in BUTTONS if feedback or action == "mute"])
    if emptied:
        rows.append([InlineKeyboardButton(EMPTIED_BUTTON, callback_data=emptied_data(emptied))])
    return InlineKeyboardMarkup(rows) if rows else None


def held_text(ended: Ended) -> str:
    if not ended.held_count:
        return "no beep while muted."
    times = ", ".join(hhmm(t) for t in ended.held[-10:])
    more = f" (and {ended.held_count - 10} more)" if ended.held_count > 10 else ""
    return (f"{ended.held_count} beep(s) while muted, at {times}{more}; their clips are in "
            "storage.dir/alerts.")


def _user_name(user) -> str:
    if user is None:
        return "?"
    return user.username and f"@{user.username}" or user.first_name or str(user.id)


class Commands:
    """Handles one Update at a time, on the delivery thread's event loop."""

    def __init__(self, settings: BotSettings, chat_id: str, mute: Mute,
                 pending: Callable[[], tuple[int, int]], tell: Callable[[str, str], None],
                 token: str):
        """``pending``: messages not sent yet (Notifier.undelivered); ``tell``: queue an
        operational message (Notifier.message)."""
        self.settings = settings
        self.chat_id = chat_id
        self.mute = mute
        self.feedback = FeedbackStore(settings.feedback_dir, settings.alert_dir)
        self.pending = pending
        self.tell = tell
        self.secrets = (token,)
        self.retrainer = Retrainer(settings.config_path, settings.storage_dir,
                                   settings.feedback_dir, tell)
        self.daemon = None
        """The supervisor, for /listen and /missed (`Supervisor.listen`, `.save_recent`);
        None until it runs."""
        self.username: str | None = None
        """The bot's own @username (from getMe), to ignore /cmd@otherbot in groups."""
        self._strangers: dict[tuple, float] = {}

    # -- who may -------------------------------------------------------------------------

    def _our_chat(self, chat) -> bool:
        if chat is None:
            return False
        if self.chat_id.startswith("@"):
            return (chat.username or "").lower() == self.chat_id[1:].lower()
        return str(chat.id) == self.chat_id

    def permits(self, chat, user) -> bool:
        if not self._our_chat(chat) or user is None:
            return False
        allowed = self.settings.allowed_user_ids
        if chat.type in ("group", "supergroup") and allowed:
            return user.id in allowed
        return True

    def _stranger(self, what: str, chat, user) -> None:
        key = (getattr(user, "id", None), getattr(chat, "id", None))
        now = time.monotonic()
        if now - self._strangers.get(key, -STRANGER_LOG_EVERY) < STRANGER_LOG_EVERY:
            log.debug("ignored %s from user %s in chat %s", what, *key)
            return
        self._strangers[key] = now
        log.warning("ignored %s from user id %s in chat %s: only chat %s%s may command this "
                    "bot (not answered)", what, key[0], key[1], self.chat_id,
                    " (telegram.allowed_user_ids)" if self.settings.allowed_user_ids else "")

    # -- updates ---------------------------------------------------------------------------

    async def handle(self, bot, update) -> None:
        if update.callback_query is not None:
            await self._on_button(bot, update.callback_query)
        elif update.message is not None:
            await self._on_message(bot, update.message)

    async def _on_message(self, bot, msg) -> None:
        text = msg.text or ""
        if not self.permits(msg.chat, msg.from_user):
            self._stranger(f"a message ({text.split(' ')[0][:32] or 'no text'})", msg.chat,
                           msg.from_user)
            return
        if not text.startswith("/"):
            return  # talk in the chat is not for the bot
        word, _, arg = text.partition(" ")
        command, _, addressed = word[1:].partition("@")
        if addressed and self.username and addressed.lower() != self.username.lower():
            return  # /status@another_bot in a group
        command = command.lower()
        log.info("command /%s from %s", command, _user_name(msg.from_user))
        if command in ("help", "start"):
            reply = HELP
        elif command == "status":
            reply = self.status()
        elif command == "listen":
            await self._listen(bot, msg.chat.id)
            return
        elif command == "missed":
            reply = await self._missed()
        elif command == "emptied":
            reply = self._emptied(_user_name(msg.from_user), None, "/emptied")
        elif command == "mute":
            reply = self._mute(arg.strip(), msg.date.timestamp() if msg.date else time.time())
        elif command == "retrain":
            reply = self._retrain()
        elif command == "unmute":
            ended = self.mute.end()
            reply = ("Beep alerts are on again; " + held_text(ended) if ended
                     else "Beep alerts were not muted.")
        else:
            reply = f"I do not know /{command}.\n{HELP}"
        await self.reply(bot, msg.chat.id, reply)

    async def _listen(self, bot, chat_id: int) -> None:
        """The recorder writes its last 10 s (`Supervisor.listen`); sent as an MP3."""
        if self.daemon is None:
            await self.reply(bot, chat_id, "Not listening yet: try again in a moment.")
            return
        loop = asyncio.get_running_loop()
        answer: asyncio.Future = loop.create_future()

        def done(path: str | None, seconds: float, why: str) -> None:  # supervisor's thread
            try:
                loop.call_soon_threadsafe(
                    lambda: answer.done() or answer.set_result((path, seconds, why)))
            except RuntimeError:  # the loop has closed: beepnet is stopping
                if path:
                    remove_quietly(path)

        asked = time.time()
        self.daemon.listen(done)
        try:
            path, seconds, why = await asyncio.wait_for(answer, LISTEN_WAIT_SECONDS)
        except asyncio.TimeoutError:
            path, seconds, why = None, 0.0, "no answer from the recorder"
        if path is None:
            await self.reply(bot, chat_id, f"Cannot listen: {why}.")
            return
        try:
            audio = await asyncio.to_thread(clip_to_mp3, path)
        except Exception as e:  # noqa: BLE001 - a broken encoder is one line, not a crash
            log.error("cannot make the /listen clip: %s: %s", type(e).__name__, e)
            await self.reply(bot, chat_id, "Cannot listen: the clip could not be encoded.")
            return
        finally:
            remove_quietly(path)
        name = f"{self.settings.name}: " if self.settings.name else ""
        caption = (f"{name}what the microphone heard from {hms(asked - seconds)} to "
                   f"{hms(asked)} ({seconds:.0f} s)")
        await self._send(bot, lambda: bot.send_audio(
            chat_id, audio=audio, filename="listen.mp3", title=f"Heard {hhmm(asked)}",
            performer="beepnet", caption=caption))

    async def _missed(self) -> str:
        if self.daemon is None:
            return "Not listening yet: nothing kept."
        dest = self.settings.feedback_dir / UNSURE / time.strftime("%Y%m%d-%H%M%S")
        try:
            n = await asyncio.to_thread(self.daemon.save_recent, dest)
        except OSError as e:
            log.error("cannot keep the recent sound in %s: %s", dest, e.strerror or e)
            return f"Could not keep the sound: {e.strerror or e} ({dest})."
        if not n:
            try:
                dest.rmdir()
            except OSError:
                pass
            return ("Nothing to keep: no sound above the silence gate in the last minutes "
                    "(or storage.recent_minutes is 0).")
        log.info("/missed: kept %d clip(s) in %s", n, dest)
        return (f"Kept {n} clip(s) of 3 s, the sound of the last minutes, in {dest}. To teach "
                "beepnet the beep it missed, label them on the Pi:\n"
                "beepnet label --unsure\n"
                "then retrain with `beepnet train --feedback` (or /retrain here).")

    def _retrain(self) -> str:
        counts = summary(self.settings.feedback_dir)
        if not counts:
            return ("Nothing to learn yet: answer alerts with ✅ That was it or ❌ Not the beep "
                    "(or label /missed's clips with `beepnet label --unsure`), then /retrain.")
        return self.retrainer.start(describe(counts))

    def _emptied(self, who: str, key: str | None, how: str) -> str:
        if self.daemon is None:
            return "Not listening yet: try again in a moment."
        return self.daemon.emptied(f"{how} ({who})", key)

    def status(self) -> str:
        s = self.settings
        return status_text(read_status(s.status_file), name=s.name,
                           mute_until=self.mute.until(), pending=self.pending(),
                           storage_dir=s.storage_dir, last_alert=last_alert_record(s.alert_dir))

    def _mute(self, arg: str, sent: float) -> str:
        if arg.lower() in ("off", "0", "no"):
            ended = self.mute.end()
            return "Beep alerts are on again." if ended else "Beep alerts were not muted."
        try:
            seconds = parse_duration(arg) if arg else DEFAULT_MUTE_SECONDS
        except DurationError as e:
            return f"Not muted: {e}."
        late = time.time() - sent
        if late > LATE_COMMAND_SECONDS:
            # Sent while beepnet was not receiving: the owner meant from then, not from now.
            seconds -= late
            if seconds <= 0:
                return (f"Your /mute {arg} of {hhmm(sent)} arrived only now (beepnet was not "
                        "receiving) and has run out already: alerts stay on.")
        until = self.mute.set(seconds)
        log.info("beep alerts muted until %s",
                 time.strftime("%Y-%m-%d %H:%M", time.localtime(until)))
        return (f"Beep alerts muted until {hhmm(until)} ({duration_text(seconds)}); beeps are "
                "still logged and kept. /unmute ends it sooner.")

    def check_mute(self) -> None:
        """Tell the owner once when a mute has run out on its own."""
        ended = self.mute.expired()
        if ended is not None:
            self.tell("mute", f"The mute has ended ({hhmm(ended.until)}): beep alerts are on "
                              f"again; {held_text(ended)}")

    # -- buttons -----------------------------------------------------------------------------

    async def _on_button(self, bot, q) -> None:
        msg = q.message
        chat = msg.chat if msg is not None else None
        if not self.permits(chat, q.from_user):
            self._stranger(f"a button press ({(q.data or '')[:40]})", chat, q.from_user)
            return  # no answer: the press just spins out on the stranger's phone
        parts = (q.data or "").split(":")
        if len(parts) == 3 and parts[0] == "cy" and parts[2] == "emptied":
            await self._on_emptied(bot, q, parts[1])
            return
        if len(parts) != 3 or parts[0] != "fb" or parts[2] not in ("yes", "no", "mute"):
            await self._answer(bot, q, "This button is not beepnet's.")
            return
        alert_id, action = parts[1], parts[2]
        who = _user_name(q.from_user)
        log.info("button %s on alert %s from %s", action, alert_id, who)
        if action == "mute":
            until = self.mute.set(MUTE_BUTTON_SECONDS)
            await self._answer(bot, q, f"Muted until {hhmm(until)}")
            line = f"{MUTE_MARK} Muted until {hhmm(until)} by {who} (/unmute to end it)"
            await self._edit(bot, msg, (MUTE_MARK,), line)
            return
        label = YES if action == "yes" else NO
        # Answered at once: Telegram shows a spinner on the button until then.
        await self._answer(bot, q, "Saved: that was the beep" if action == "yes"
                           else "Saved: not the beep")
        try:
            saved = await asyncio.to_thread(self.feedback.save, alert_id, label,
                                            q.from_user.id, who)
        except FeedbackError as e:
            line = f"{'✅' if action == 'yes' else '❌'} {who}: not saved, {e}"
        except OSError as e:
            log.error("cannot keep feedback for alert %s: %s", alert_id, e.strerror or e)
            line = f"{'✅' if action == 'yes' else '❌'} {who}: not saved ({e.strerror or e})"
        else:
            if saved.unchanged:
                return
            if self.daemon is not None:
                self.daemon.answered(alert_id, label)
            text = "That was it" if action == "yes" else "Not the beep"
            line = (f"{'✅' if action == 'yes' else '❌'} {text} ({who}, {hhmm(time.time())}): "
                    f"kept as {label} training data")
        await self._edit(bot, msg, FEEDBACK_MARKS, line)

    async def _on_emptied(self, bot, q, key: str) -> None:
        who = _user_name(q.from_user)
        log.info("button emptied (%s) from %s", key, who)
        reply = self._emptied(who, key, "button")
        await self._answer(bot, q, reply[:200])
        if reply.startswith(EMPTIED_MARK):
            await self._edit(bot, q.message, (EMPTIED_MARK + " Emptied",),
                             f"{EMPTIED_MARK} Emptied ({who}, {hhmm(time.time())})")

    async def _answer(self, bot, q, text: str) -> None:
        from telegram.error import TelegramError

        try:
            await bot.answer_callback_query(q.id, text=text)
        except TelegramError as e:  # too old (a press made while beepnet was down): go on
            log.info("cannot answer the button press: %s", redact(str(e), self.secrets))

    async def _edit(self, bot, msg, marks: tuple[str, ...], line: str) -> None:
        """Show the choice on the alert: one line per kind of choice, the buttons kept (a
        second press changes the answer)."""
        from telegram import Message
        from telegram.error import BadRequest, TelegramError

        from .telegram import CAPTION_LIMIT, TEXT_LIMIT

        if not isinstance(msg, Message):  # too old for Telegram to send its content
            return
        old = msg.caption if msg.caption is not None else (msg.text or "")
        kept = [ln for ln in old.split("\n") if not ln.startswith(marks)]
        new = "\n".join(kept + [line])
        try:
            if msg.caption is not None or msg.audio is not None:
                await bot.edit_message_caption(chat_id=msg.chat.id, message_id=msg.message_id,
                                               caption=new[:CAPTION_LIMIT],
                                               reply_markup=msg.reply_markup)
            else:
                await bot.edit_message_text(new[:TEXT_LIMIT], chat_id=msg.chat.id,
                                            message_id=msg.message_id,
                                            reply_markup=msg.reply_markup)
        except BadRequest as e:
            if "not modified" not in str(e).lower():
                log.warning("cannot edit the alert: %s", redact(str(e), self.secrets))
        except TelegramError as e:
            log.warning("cannot edit the alert: %s", redact(str(e), self.secrets))

    # -- replies -----------------------------------------------------------------------------

    async def reply(self, bot, chat_id: int, text: str) -> None:
        from .telegram import TEXT_LIMIT

        await self._send(bot, lambda: bot.send_message(chat_id, text[:TEXT_LIMIT]))

    async def _send(self, bot, request: Callable) -> None:
        """A few quick retries: a reply is worth sending only while someone waits for it.
        ``request`` makes the call anew for each attempt (an upload is bytes, never an open
        file, so a retry sends it all)."""
        from telegram.error import TelegramError
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        from .telegram import is_transient, wait_for_telegram

        try:
            async for attempt in AsyncRetrying(retry=retry_if_exception(is_transient),
                                               wait=wait_for_telegram(1.0, 10.0),
                                               stop=stop_after_attempt(4), reraise=True):
                with attempt:
                    await request()
        except TelegramError as e:
            log.warning("cannot send the reply: %s", redact(str(e), self.secrets))
