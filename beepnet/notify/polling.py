"""Receiving: long polling (getUpdates) on the delivery thread's event loop and Bot.

One task beside the delivery loop, one Bot for both: python-telegram-bot gives getUpdates its
own connection (``get_updates_request``, see `make_bot`), so a send never waits behind a
50-s long poll. The poll starts once Telegram has accepted a first message (a wrong token or
chat is then reported once, by the delivery side, not twice).

It outlives the same faults as delivery, each logged once per episode, not per attempt:
- network down, timeouts, 5xx: exponential backoff up to a minute;
- 429: exactly the ``retry_after`` asked for;
- 409 Conflict (another program polls with the same token, or a webhook is set): one log
  line and one message to the owner, then retries backing off to 5 minutes (each retry
  takes the updates from the other program, so not more often), and a word when it is over;
- a refused token: retried every 10 minutes (delivery reports it).

The offset of the next update is kept in ``storage.dir/telegram/offset.json`` (atomically),
so a press made while beepnet was down is handled once after the restart, and never twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

from ..fsutil import write_atomic
from ..logs import redact
from .commands import COMMANDS, Commands

log = logging.getLogger(__name__)

POLL_SECONDS = 50
"""getUpdates' long-poll timeout: one idle request a minute at most, no busy loop."""
ALLOWED_UPDATES = ("message", "callback_query")
BACKOFF_MAX = 60.0
CONFLICT_FIRST, CONFLICT_MAX = 2.0, 300.0
SETUP_PAUSE = 600.0
MUTE_CHECK_SECONDS = 30.0
OFFSET_NAME = "offset.json"


class Poller:
    def __init__(self, state_dir: Path, commands: Commands, tell: Callable[[str, str], None],
                 token: str):
        """``tell``: queue an operational message for the owner (Notifier.message)."""
        self.offset_path = Path(state_dir) / OFFSET_NAME
        self.commands = commands
        self.tell = tell
        self.secrets = (token,)
        self._offset = self._load_offset()
        self._failures = 0
        self._trouble: str | None = None
        """What is wrong with receiving now ("conflict", "network" ...), None when fine."""
        self._registered = False

    def _load_offset(self) -> int | None:
        try:
            return int(json.loads(self.offset_path.read_text())["offset"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("cannot read %s (%s): taking the updates Telegram still has",
                        self.offset_path, e)
            return None

    def _save_offset(self) -> None:
        try:
            self.offset_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.offset_path, json.dumps({"offset": self._offset}).encode())
        except OSError as e:  # at worst an update is handled again after a restart
            log.warning("cannot keep the update offset in %s: %s", self.offset_path,
                        e.strerror or e)

    async def run(self, bot, accepted: asyncio.Event) -> None:
        """Poll until cancelled; ``accepted`` is set once a first message went out."""
        await self._sleep_until(accepted)
        log.info("receiving commands and button presses from Telegram")
        while True:
            self.commands.check_mute()
            try:
                await self._setup(bot)
                # After a fault, a poll that answers at once: the recovery is known (and
                # told) now, not at the end of a 50-s wait.
                updates = await bot.get_updates(
                    offset=self._offset, timeout=0 if self._trouble else POLL_SECONDS,
                    allowed_updates=list(ALLOWED_UPDATES))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - receiving must outlive any fault
                await self._sleep(self._on_fault(exc))
                continue
            self._on_success()
            for update in updates:
                try:
                    await self.commands.handle(bot, update)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - one bad update must not stick
                    log.error("cannot handle update %s: %s: %s", update.update_id,
                              type(exc).__name__, redact(str(exc), self.secrets))
                self._offset = update.update_id + 1
                self._save_offset()

    async def _setup(self, bot) -> None:
        """Once: the bot's own name (to ignore /cmd@otherbot) and its command menu."""
        from telegram import BotCommand
        from telegram.error import BadRequest

        if self.commands.username is None:
            me = await bot.get_me()
            self.commands.username = me.username or ""
        if not self._registered:
            try:
                await bot.set_my_commands([BotCommand(c, d) for c, d in COMMANDS])
            except BadRequest as e:  # the menu is a convenience: say it, never retry it
                log.warning("cannot register the command menu: %s",
                            redact(str(e), self.secrets))
            self._registered = True

    def _on_fault(self, exc: Exception) -> float:
        """Log (once per episode) and tell the owner what matters; returns the wait."""
        from telegram.error import (Conflict, EndPointNotFound, Forbidden, InvalidToken,
                                    RetryAfter)

        from .telegram import failure_text, is_transient, retry_after_seconds

        self._failures += 1
        backoff = min(BACKOFF_MAX, 2.0 ** (self._failures - 1)) * random.uniform(0.8, 1.0)
        detail = redact(str(exc), self.secrets)
        if isinstance(exc, Conflict):
            if self._trouble != "conflict":
                self._trouble = "conflict"
                webhook = "webhook" in detail.lower()
                what = ("a webhook is set for this bot" if webhook else
                        "another program is receiving this bot's updates with the same token "
                        "(a second beepnet?)")
                log.warning("Telegram 409 Conflict: %s (%s); commands and buttons wait until "
                            "it stops, alerts still go out; retrying, backing off up to %.0f "
                            "min", what, detail, CONFLICT_MAX / 60)
                self.tell("telegram", f"Commands and buttons do not reach beepnet: {what}. "
                          "Alerts still arrive. Stop the other one (or delete the webhook); "
                          "beepnet keeps trying.")
            return min(CONFLICT_MAX, CONFLICT_FIRST * 2.0 ** (self._failures - 1))
        if isinstance(exc, RetryAfter):
            self._note("slow", "Telegram asked to slow down receiving")
            return retry_after_seconds(exc)
        if isinstance(exc, (InvalidToken, Forbidden, EndPointNotFound)):
            # The delivery side says what to fix; receiving waits for the fix quietly.
            self._note("setup", f"receiving is refused ({detail}); trying again in "
                       f"{SETUP_PAUSE / 60:.0f} min", level=logging.INFO)
            return SETUP_PAUSE
        if is_transient(exc):
            why = failure_text(exc, self.secrets[0])
            self._note("network", f"cannot receive from Telegram ({why}); retrying, backing "
                       f"off up to {BACKOFF_MAX:.0f} s")
            return backoff
        self._note(f"error {type(exc).__name__}", f"receiving from Telegram failed "
                   f"({type(exc).__name__}: {detail}); retrying, backing off up to "
                   f"{BACKOFF_MAX:.0f} s", level=logging.ERROR)
        return backoff

    def _note(self, kind: str, text: str, level: int = logging.WARNING) -> None:
        if self._trouble != kind:
            log.log(level, "%s", text)
        else:
            log.debug("%s", text)
        self._trouble = kind

    def _on_success(self) -> None:
        if self._trouble == "conflict":
            log.info("Telegram: the other receiver has stopped; commands and buttons work "
                        "again")
            self.tell("telegram", "Commands and buttons work again.")
        elif self._trouble is not None:
            log.info("receiving from Telegram again")
        self._trouble, self._failures = None, 0

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, MUTE_CHECK_SECONDS))
            self.commands.check_mute()

    async def _sleep_until(self, event: asyncio.Event) -> None:
        while not event.is_set():
            try:
                await asyncio.wait_for(event.wait(), MUTE_CHECK_SECONDS)
            except asyncio.TimeoutError:
                self.commands.check_mute()
