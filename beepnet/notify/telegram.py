"""Sending one outbox item to Telegram, and telling apart the failures worth retrying.

python-telegram-bot (22.x) raises:
- ``NetworkError`` for connection problems and 5xx replies, ``TimedOut`` (a NetworkError) for
  timeouts: transient, retried with exponential backoff and jitter;
- ``RetryAfter`` for 429: retried after exactly the time the server asks for;
- ``BadRequest`` (also a NetworkError subclass, so test it first), ``Forbidden`` and
  ``InvalidToken``: retrying cannot help, so they are reported instead.
PTB raises InvalidToken for a 404 too; our request class turns a 404 into
``EndPointNotFound`` ("that URL is not a Bot API server"), see ``_BotApiRequest``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

# PTB 22 warns (PTBDeprecationWarning, on stderr) at every read of RetryAfter.retry_after as
# an int; opting in to the coming timedelta type avoids that. Set before telegram is imported.
os.environ.setdefault("PTB_TIMEDELTA", "true")

from telegram import Bot  # noqa: E402
from telegram.error import (BadRequest, ChatMigrated, EndPointNotFound,  # noqa: E402
                            Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError,
                            TimedOut)
from telegram.request import HTTPXRequest  # noqa: E402
from tenacity.wait import wait_base, wait_exponential_jitter  # noqa: E402

from ..logs import redact  # noqa: E402

CAPTION_LIMIT = 1024
TEXT_LIMIT = 4096


class _BotApiRequest(HTTPXRequest):
    """Tells a wrong ``api_url`` from a wrong token.

    PTB maps both 401 and 404 to InvalidToken. The Bot API answers 401 for a well-formed token
    it does not know (and the config only lets well-formed tokens through), so a 404 means
    the URL does not lead to a Bot API server: say that instead.
    """

    @staticmethod
    def parse_json_payload(payload: bytes) -> dict:
        # PTB's own logs a traceback for every HTML error page a proxy sends, then raises a
        # plain TelegramError, which is never retried. A page that is not JSON comes from
        # something between us and Telegram (a proxy, a captive portal, a server restarting):
        # an outage to wait out, like a dropped connection.
        try:
            return json.loads(payload.decode("utf-8", "replace"))
        except ValueError as exc:
            raise NetworkError("Invalid server response (not JSON)") from exc

    async def do_request(self, *args, **kwargs) -> tuple[int, bytes]:
        code, payload = await super().do_request(*args, **kwargs)
        if code == 404:
            raise EndPointNotFound("Not Found (404)")
        return code, payload


def make_bot(token: str, api_url: str, timeout: float = 30.0) -> Bot:
    """A Bot for ``{api_url}/bot{token}/{method}``. Not initialised: that would call getMe and
    fail while the network is down, and its InvalidToken message quotes the token."""
    api_url = api_url.rstrip("/")
    request = _BotApiRequest(connect_timeout=10.0, read_timeout=timeout,
                             write_timeout=timeout, media_write_timeout=2 * timeout,
                             connection_pool_size=2)
    return Bot(token, base_url=f"{api_url}/bot", base_file_url=f"{api_url}/file/bot",
               request=request, get_updates_request=_BotApiRequest(read_timeout=timeout))


def retry_after_seconds(exc: RetryAfter) -> float:
    value = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, RetryAfter):
        return True
    return isinstance(exc, NetworkError) and not isinstance(exc, BadRequest)


class wait_for_telegram(wait_base):
    """Exponential backoff with jitter, except that a 429 waits exactly ``retry_after``."""

    def __init__(self, initial: float, maximum: float):
        self.backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)

    def __call__(self, retry_state) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RetryAfter):
            return retry_after_seconds(exc)
        return self.backoff(retry_state)


@dataclass(frozen=True)
class Refusal:
    """Why Telegram will not take a message, and whether it is the item or the set-up."""

    reason: str
    setup: bool
    """True: token, chat or server is wrong; nothing can be sent until that is fixed."""


def explain(exc: TelegramError, chat_id: str, api_url: str, token: str) -> Refusal:
    """Turn a non-transient error into one line a user can act on (never with the token)."""
    detail = redact(str(exc), (token,))
    if isinstance(exc, InvalidToken):
        return Refusal("Telegram rejected the bot token: check telegram.token / "
                       "BEEPNET_TELEGRAM_TOKEN (from @BotFather)", True)
    if isinstance(exc, Forbidden):
        return Refusal(f"the bot may not write to chat {chat_id} ({detail}): open the chat "
                       "with the bot and press Start, or add it to the group again", True)
    if isinstance(exc, BadRequest) and "chat not found" in detail.lower():
        return Refusal(f"chat {chat_id} not found: check telegram.chat_id and that you have "
                       "sent the bot a message", True)
    if isinstance(exc, ChatMigrated):
        return Refusal(f"the group became a supergroup: set telegram.chat_id = "
                       f"{exc.new_chat_id}", True)
    if isinstance(exc, EndPointNotFound):
        return Refusal(f"{api_url} is not a Bot API server (404): check telegram.api_url", True)
    return Refusal(f"Telegram refused the message: {detail}", False)


def failure_text(exc: BaseException, token: str) -> str:
    """Why an attempt failed, in words for a person reading it on a phone."""
    if isinstance(exc, RetryAfter):
        return "Telegram asked to slow down"
    if isinstance(exc, TimedOut):
        return "Telegram did not answer in time"
    detail = redact(str(exc), (token,)).split(". Parsing the server response")[0]
    if isinstance(exc, NetworkError) and "httpx" in detail:
        return "no connection to the Bot API server"
    if isinstance(exc, NetworkError):
        return f"server error: {detail}"
    return detail


async def deliver(bot: Bot, chat_id: str, text: str, audio: Path | bytes | None,
                  title: str = "", filename: str = "beep.mp3", reply_markup=None,
                  silent: bool = False) -> None:
    """One attempt at sending a message (a clip with ``text`` as its caption when there is
    ``audio``; ``reply_markup``: the alert's buttons; ``silent``: no sound on the phone,
    for quiet hours); raises TelegramError on failure."""
    if isinstance(audio, Path):
        filename = audio.name
    if audio is not None:
        # A Path, not an open file: a retried upload from a file handle would send 0 bytes.
        await bot.send_audio(chat_id, audio=audio, caption=text[:CAPTION_LIMIT],
                             title=title or "beep", performer="beepnet",
                             filename=filename, reply_markup=reply_markup,
                             disable_notification=silent)
    else:
        await bot.send_message(chat_id, text[:TEXT_LIMIT], reply_markup=reply_markup,
                               disable_notification=silent)


async def self_test(token: str, chat_id: str, api_url: str, audio: bytes,
                    say=print) -> bool:
    """`beepnet notify-test`: the token, then a message, then a clip; one line per step."""
    import socket

    bot = make_bot(token, api_url, timeout=15.0)
    try:
        try:
            me = await bot.get_me()
            say(f"ok   token accepted: the bot is @{me.username}")
            await bot.send_message(chat_id, f"beepnet test message from {socket.gethostname()}: "
                                   "alerts will arrive in this chat.")
            say(f"ok   test message sent to chat {chat_id}")
            await bot.send_audio(chat_id, audio=audio, filename="beepnet-test.mp3",
                                 title="beepnet test beep", performer="beepnet",
                                 caption="A generated test beep, as alerts carry what was heard.")
            say("ok   test clip (mp3) sent")
            return True
        except (BadRequest, Forbidden, InvalidToken, ChatMigrated, EndPointNotFound) as e:
            say("FAIL " + explain(e, chat_id, api_url, token).reason)
        except NetworkError as e:
            say(f"FAIL cannot reach the Bot API at {api_url}: {redact(str(e), (token,))} "
                "(network unreachable, DNS, proxy or firewall?)")
        except TelegramError as e:
            say(f"FAIL Telegram error: {redact(str(e), (token,))}")
        return False
    finally:
        try:
            await bot.shutdown()
        except Exception:  # noqa: BLE001
            pass
