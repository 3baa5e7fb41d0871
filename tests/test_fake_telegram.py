"""The fake Telegram Bot API server, driven by the real python-telegram-bot client.

These tests double as documentation of how python-telegram-bot 22 reacts to each
failure the fake can inject (which exception class, what it carries), so that the
notifier's retry logic can be written against facts rather than guesses.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import http.client
import json
import logging
import re
import threading
import time
import uuid
import warnings

import pytest
import telegram
from beepnet.testing.fake_telegram import DEFAULT_CHAT_ID, DEFAULT_TOKEN, FakeTelegram
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

CHAT = DEFAULT_CHAT_ID
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 40 + b"\r\n--not-a-boundary\r\n"


@pytest.fixture
def tg():
    with FakeTelegram(chats={CHAT, -1001234567890, "@beepnet_alerts"}) as server:
        yield server


def make_bot(tg: FakeTelegram, token: str | None = None, **timeouts) -> telegram.Bot:
    """A real Bot pointed at the fake; `timeouts` go to HTTPXRequest (read_timeout=...)."""
    kwargs = tg.bot_kwargs(token)
    if timeouts:
        kwargs["request"] = HTTPXRequest(**timeouts)
    return telegram.Bot(**kwargs)


def run(tg: FakeTelegram, use, token: str | None = None, **timeouts):
    """asyncio.run `use(bot)` inside `async with Bot(...)` (which calls getMe first)."""
    async def main():
        async with make_bot(tg, token, **timeouts) as bot:
            return await use(bot)
    return asyncio.run(main())


def send_text(text: str = "hello", chat_id: int | str = CHAT):
    return lambda bot: bot.send_message(chat_id, text)


def wait_answered(req, timeout: float = 5.0) -> int | None:
    """The status the fake answered `req` with, waiting for a reply still in the making."""
    deadline = time.monotonic() + timeout
    while req.status is None and not req.dropped and time.monotonic() < deadline:
        time.sleep(0.01)
    return req.status


# --------------------------------------------------------------------------- wiring

def test_bot_urls_reach_the_fake(tg):
    bot = make_bot(tg)
    # python-telegram-bot appends the token to base_url, then "/<method>".
    assert tg.base_url == f"{tg.url}/bot"
    assert bot.base_url == f"http://127.0.0.1:{tg.port}/bot{DEFAULT_TOKEN}"
    assert bot.base_file_url == f"http://127.0.0.1:{tg.port}/file/bot{DEFAULT_TOKEN}"

    me = run(tg, lambda bot: bot.get_me())
    assert (me.id, me.is_bot, me.username) == (123456789, True, "beepnet_test_bot")
    first, second = tg.requests("getMe")           # one from `async with`, one explicit
    assert first.verb == "POST" and first.path == f"/bot{DEFAULT_TOKEN}/getMe"
    assert first.token == DEFAULT_TOKEN and first.method == "getMe"
    assert "python-telegram-bot" in first.headers["user-agent"]
    assert first.status == 200 and first.response["ok"] is True
    assert first.time <= second.time <= time.monotonic()
    # HTTP/1.1 keep-alive: both requests came over one connection.
    assert first.client == second.client


def test_default_token_passes_beepnets_config_check():
    # beepnet.config insists on a BotFather-shaped token; the fake's default has one.
    assert re.fullmatch(r"\d+:[A-Za-z0-9_-]{20,}", DEFAULT_TOKEN)


# --------------------------------------------------------------------------- happy paths

def test_send_message_records_text_and_chat_id(tg):
    async def use(bot):
        return [await bot.send_message(CHAT, f"beep {i} ✓") for i in range(3)]

    messages = run(tg, use)
    assert [m.message_id for m in messages] == [1, 2, 3]
    assert messages[0].chat.id == CHAT and messages[0].from_user.is_bot
    assert isinstance(messages[0].date, datetime.datetime)

    reqs = tg.wait_for("sendMessage", 3)
    assert [r.fields["text"] for r in reqs] == ["beep 0 ✓", "beep 1 ✓", "beep 2 ✓"]
    assert all(r.chat_id == CHAT and r.fields["chat_id"] == str(CHAT) for r in reqs)
    # python-telegram-bot posts form-urlencoded bodies when nothing is uploaded.
    assert reqs[0].headers["content-type"] == "application/x-www-form-urlencoded"
    assert [m["text"] for m in tg.messages(CHAT)] == ["beep 0 ✓", "beep 1 ✓", "beep 2 ✓"]


def test_groups_and_channels_are_chats_too(tg):
    async def use(bot):
        return (await bot.send_message(-1001234567890, "group"),
                await bot.send_message("@beepnet_alerts", "channel"))

    group, channel = run(tg, use)
    assert group.chat.type == "supergroup" and group.chat.id == -1001234567890
    assert channel.chat.type == "channel" and channel.chat.username == "beepnet_alerts"
    assert tg.requests("sendMessage")[1].chat_id == "@beepnet_alerts"


@pytest.mark.parametrize("source", ["path", "bytes"])
def test_send_audio_uploads_the_exact_bytes(tg, tmp_path, source):
    clip = tmp_path / "beep-2024.mp3"
    clip.write_bytes(MP3)
    audio = clip if source == "path" else MP3
    extra = {} if source == "path" else {"filename": "beep-2024.mp3"}

    message = run(tg, lambda bot: bot.send_audio(CHAT, audio=audio, caption="Washer done",
                                                 duration=2, title="beep", **extra))
    (req,) = tg.wait_for("sendAudio")
    assert req.headers["content-type"].startswith("multipart/form-data; boundary=")
    filename, content_type, data = req.files["audio"]
    assert data == MP3                        # byte for byte, CRLFs and all
    assert (filename, content_type) == ("beep-2024.mp3", "audio/mpeg")
    assert req.fields["caption"] == "Washer done" and req.chat_id == CHAT
    assert req.fields["duration"] == "2" and req.fields["title"] == "beep"

    assert message.caption == "Washer done"
    assert message.audio.file_size == len(MP3) and message.audio.file_name == "beep-2024.mp3"
    assert message.audio.mime_type == "audio/mpeg" and message.audio.file_id


def test_send_voice_and_document(tg, tmp_path):
    ogg = tmp_path / "clip.ogg"
    ogg.write_bytes(b"OggS" + bytes(1000))

    async def use(bot):
        return (await bot.send_voice(CHAT, voice=ogg, duration=1),
                await bot.send_document(CHAT, document=b"{}", filename="alert.json"))

    voice, document = run(tg, use)
    assert voice.voice.file_size == 1004 and voice.voice.mime_type == "audio/ogg"
    assert document.document.file_name == "alert.json"
    assert tg.requests("sendVoice")[0].files["voice"] == ("clip.ogg", "audio/ogg",
                                                          b"OggS" + bytes(1000))
    assert tg.requests("sendDocument")[0].files["document"][2] == b"{}"


def test_resend_by_file_id_and_download(tg):
    async def use(bot):
        first = await bot.send_audio(CHAT, audio=MP3, filename="a.mp3")
        again = await bot.send_audio(CHAT, audio=first.audio.file_id)
        file = await bot.get_file(first.audio.file_id)
        return first, again, file, bytes(await file.download_as_bytearray())

    first, again, file, downloaded = run(tg, use)
    assert again.audio.file_id == first.audio.file_id
    assert tg.requests("sendAudio")[1].files == {}          # no upload the second time
    assert file.file_path.startswith(f"{tg.base_file_url}{DEFAULT_TOKEN}/music/")
    assert downloaded == MP3
    (download,) = [r for r in tg.requests() if r.verb == "GET"]
    assert download.method is None and download.token == DEFAULT_TOKEN


def test_get_chat(tg):
    chat = run(tg, lambda bot: bot.get_chat(CHAT))
    assert isinstance(chat, telegram.ChatFullInfo) and chat.id == CHAT and chat.type == "private"
    with pytest.raises(BadRequest, match="Chat not found"):
        run(tg, lambda bot: bot.get_chat(999))


def test_concurrent_sends_are_all_recorded(tg):
    async def use(bot):
        return await asyncio.gather(*(bot.send_message(CHAT, str(i)) for i in range(20)))

    messages = run(tg, use)
    assert sorted(m.message_id for m in messages) == list(range(1, 21))
    assert sorted(int(r.fields["text"]) for r in tg.requests("sendMessage")) == list(range(20))


# --------------------------------------------------------------------------- API errors

def test_wrong_token_raises_invalid_token(tg):
    wrong = "987654321:AAWrongTokenForTests_abcdefghijklm"
    with pytest.raises(InvalidToken) as info:
        run(tg, lambda bot: bot.send_message(CHAT, "never sent"), token=wrong)
    # `async with Bot` calls getMe first; that is what fails.
    (req,) = tg.requests()
    assert (req.method, req.status, req.token) == ("getMe", 401, wrong)
    assert req.response == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    # Pitfall: python-telegram-bot puts the rejected token into the exception message.
    assert wrong in str(info.value)


def test_unknown_chat_raises_bad_request(tg):
    with pytest.raises(BadRequest, match="Chat not found") as info:
        run(tg, send_text(chat_id=424242))
    assert isinstance(info.value, NetworkError)      # BadRequest subclasses NetworkError!
    assert tg.requests("sendMessage")[0].response == {
        "ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
    assert tg.messages() == []


def test_blocked_chat_raises_forbidden():
    with FakeTelegram(chats={CHAT}, blocked={777}) as tg:
        with pytest.raises(Forbidden, match="bot was blocked by the user") as info:
            run(tg, send_text(chat_id=777))
        assert not isinstance(info.value, NetworkError)
        assert tg.requests("sendMessage")[0].status == 403


def test_bad_requests_the_real_api_rejects_too(tg, tmp_path):
    with pytest.raises(BadRequest, match="Message text is empty"):
        run(tg, send_text(" "))
    with pytest.raises(BadRequest, match="Message is too long"):
        run(tg, send_text("x" * 4097))
    with pytest.raises(BadRequest, match="caption is too long"):
        run(tg, lambda bot: bot.send_audio(CHAT, audio=MP3, caption="x" * 1025))
    # A str that is no existing file is sent as a file_id, which Telegram does not know.
    with pytest.raises(BadRequest, match="Wrong file identifier"):
        run(tg, lambda bot: bot.send_audio(CHAT, audio=str(tmp_path / "missing.mp3")))


def test_unknown_method_is_404(tg):
    # Telegram answers 404 for unknown methods; python-telegram-bot maps 404 to InvalidToken
    # (do_api_request turns it into EndPointNotFound).
    with pytest.raises(InvalidToken):
        run(tg, lambda bot: bot._post("sendTelepathy"))
    assert tg.requests("sendTelepathy")[0].response == {
        "ok": False, "error_code": 404, "description": "Not Found"}


# --------------------------------------------------------------------------- injected failures

@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_raise_network_error(tg, status):
    tg.fail_next(1, status, method="sendMessage")   # without `method`, getMe would get it
    with pytest.raises(NetworkError) as info:
        run(tg, send_text())
    assert type(info.value) is NetworkError          # not TimedOut, not BadRequest
    assert tg.requests("sendMessage")[0].status == status
    assert run(tg, send_text()).message_id == 1      # the queue is used up: next one works


def test_html_error_page_raises_network_error(tg, caplog):
    tg.fail_next(1, 502, body=b"<html><body>502 Bad Gateway</body></html>", method="sendMessage")
    with pytest.raises(NetworkError, match=r"Bad Gateway \(502\)"):
        run(tg, send_text())
    # python-telegram-bot logs the unparseable body at ERROR, with a traceback.
    assert any(r.name == "telegram.request.BaseRequest" and r.levelno == logging.ERROR
               for r in caplog.records)


def test_429_raises_retry_after_int_by_default(tg, monkeypatch):
    monkeypatch.delenv("PTB_TIMEDELTA", raising=False)
    tg.fail_next(1, 429, retry_after=3, method="sendMessage")
    # PTB 22.2+ warns that retry_after will become a timedelta (already when raising).
    with pytest.warns(PTBDeprecationWarning), pytest.raises(RetryAfter) as info:
        run(tg, send_text())
    with pytest.warns(PTBDeprecationWarning):
        assert info.value.retry_after == 3 and type(info.value.retry_after) is int
    assert not isinstance(info.value, NetworkError)
    assert tg.requests("sendMessage")[0].response == {
        "ok": False, "error_code": 429, "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3}}


def test_429_retry_after_is_a_timedelta_with_ptb_timedelta(tg, monkeypatch):
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    tg.fail_next(1, 429, retry_after=3, method="sendMessage")
    with pytest.raises(RetryAfter) as info:
        run(tg, send_text())
    assert info.value.retry_after == datetime.timedelta(seconds=3)


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_dropped_connection_raises_network_error_and_is_recorded(tg, reset):
    tg.drop_next(1, method="sendMessage", reset=reset)
    with pytest.raises(NetworkError) as info:
        run(tg, send_text("lost"))
    assert not isinstance(info.value, TimedOut)
    # FIN: httpx.RemoteProtocolError "Server disconnected without sending a response.";
    # RST: httpx.ReadError.  Either way: no automatic retry, exactly one request.
    assert info.value.message.startswith("httpx.ReadError" if reset
                                         else "httpx.RemoteProtocolError")
    (req,) = tg.requests("sendMessage")
    assert req.dropped and req.status is None and req.fields["text"] == "lost"
    assert tg.messages() == []
    assert run(tg, send_text("again")).message_id == 1


def test_slow_reply_beyond_read_timeout_raises_timed_out(tg):
    tg.delay_next(1, 1.0, method="sendMessage")
    started = time.monotonic()
    with pytest.raises(TimedOut) as info:
        run(tg, send_text("slow"), read_timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 1.0
    assert isinstance(info.value, NetworkError)      # TimedOut subclasses NetworkError
    # Pitfall: the server still delivers the message after the client gave up, so a
    # retry after TimedOut can send it twice.
    (req,) = tg.requests("sendMessage")
    assert wait_answered(req) == 200 and [m["text"] for m in tg.messages()] == ["slow"]


def test_slow_reply_within_read_timeout_succeeds(tg):
    tg.delay_next(1, 0.4)
    started = time.monotonic()
    run(tg, send_text(), read_timeout=2.0)           # the delay hits getMe (method=None)
    assert time.monotonic() - started >= 0.4
    assert tg.requests()[0].method == "getMe"


def test_scripts_are_consumed_in_order_and_per_method(tg, monkeypatch):
    # PTB warns about RetryAfter's int only without the opt-in beepnet.notify.telegram sets.
    monkeypatch.setenv("PTB_TIMEDELTA", "false")
    tg.fail_next(2, 500, method="sendAudio")
    tg.fail_next(1, 429, retry_after=1)              # any method

    async def use(bot):                              # getMe (from `async with`) takes the 429
        outcomes = []
        for call in (lambda: bot.send_message(CHAT, "a"), lambda: bot.send_audio(CHAT, MP3),
                     lambda: bot.send_audio(CHAT, MP3), lambda: bot.send_audio(CHAT, MP3)):
            try:
                await call()
                outcomes.append("ok")
            except TelegramError as exc:
                outcomes.append(type(exc).__name__)
        return outcomes

    with pytest.raises(RetryAfter), pytest.warns(PTBDeprecationWarning):
        run(tg, use)
    assert run(tg, use) == ["ok", "NetworkError", "NetworkError", "ok"]
    assert [r.status for r in tg.requests()] == [429, 200, 200, 500, 500, 200]


def test_outage_until_recover(tg):
    tg.fail_always(502, method="sendMessage")
    for _ in range(3):
        with pytest.raises(NetworkError):
            run(tg, send_text())
    tg.fail_next(1, 500)                             # queued, but the outage comes first
    tg.recover()                                     # ...and recover() discards it
    assert run(tg, send_text()).message_id == 1
    assert [r.status for r in tg.requests("sendMessage")] == [502, 502, 502, 200]


def test_stop_refuses_connections_and_start_comes_back_on_the_same_port(tg):
    port = tg.port

    async def use(bot):                              # one Bot, one connection pool throughout
        results = [(await bot.send_message(CHAT, "before")).message_id]
        tg.stop()
        with pytest.raises(NetworkError) as info:
            await bot.send_message(CHAT, "during")
        results.append(info.value.message)
        tg.start()
        results.append((await bot.send_message(CHAT, "after")).message_id)
        return results

    assert run(tg, use) == [1, "httpx.ConnectError: All connection attempts failed", 2]
    assert tg.port == port and tg.running
    assert [r.fields["text"] for r in tg.requests("sendMessage")] == ["before", "after"]


def test_stop_cuts_requests_in_flight(tg):
    tg.delay_next(1, 30.0, method="sendMessage")
    outcome = {}

    def client():
        try:
            run(tg, send_text("in flight"), read_timeout=60)
        except TelegramError as exc:
            outcome["exc"] = exc

    thread = threading.Thread(target=client)
    thread.start()
    tg.wait_for("sendMessage")
    started = time.monotonic()
    tg.stop()
    thread.join(10)
    assert time.monotonic() - started < 5
    assert type(outcome["exc"]) is NetworkError
    assert tg.requests("sendMessage")[0].dropped


# --------------------------------------------------------------------------- updates

def test_get_updates_with_offsets(tg):
    first = tg.add_update(CHAT, "/status")
    tg.add_update(CHAT, "hello")
    tg.add_update(555, "stranger")                   # from a chat the bot does not know

    async def use(bot):
        batch = await bot.get_updates()
        again = await bot.get_updates()              # nothing confirmed yet: same updates
        rest = await bot.get_updates(offset=batch[1].update_id)
        last = await bot.get_updates(offset=-1)
        done = await bot.get_updates(offset=last[0].update_id + 1)
        return batch, again, rest, last, done

    batch, again, rest, last, done = run(tg, use)
    assert [u.message.text for u in batch] == ["/status", "hello", "stranger"]
    assert batch[0].update_id == first["update_id"]
    assert [u.update_id for u in again] == [u.update_id for u in batch]
    assert [u.message.text for u in rest] == ["hello", "stranger"]
    assert [u.message.chat.id for u in last] == [555]
    assert done == () and tg.pending_updates() == []

    command = batch[0].message
    assert command.chat.id == CHAT and command.from_user.id == CHAT
    assert command.entities[0].type == "bot_command" and command.text == "/status"


def test_get_updates_long_poll_wakes_on_new_update(tg):
    timer = threading.Timer(0.3, tg.add_update, args=(CHAT, "/stop"))
    timer.start()
    started = time.monotonic()
    updates = run(tg, lambda bot: bot.get_updates(timeout=10))
    timer.join()
    assert [u.message.text for u in updates] == ["/stop"]
    assert 0.25 <= time.monotonic() - started < 3
    assert run(tg, lambda bot: bot.get_updates(timeout=0.2)) == tuple(updates)  # not confirmed


def test_delete_webhook_and_chat_action(tg):
    async def use(bot):
        return await bot.delete_webhook(), await bot.send_chat_action(CHAT, "upload_voice")

    assert run(tg, use) == (True, True)


# --------------------------------------------------------------------------- raw HTTP

def test_raw_http_json_form_multipart_keep_alive(tg):
    """Bodies other clients (or curl) would send, over one HTTP/1.1 connection."""
    conn = http.client.HTTPConnection("127.0.0.1", tg.port, timeout=5)
    path = f"/bot{DEFAULT_TOKEN}"

    def post(method: str, body: bytes, content_type: str) -> tuple[int, dict]:
        conn.request("POST", f"{path}/{method}", body=body,
                     headers={"Content-Type": content_type})
        resp = conn.getresponse()
        assert resp.version == 11 and not resp.will_close
        return resp.status, json.loads(resp.read())

    status, payload = post("sendMessage", json.dumps({"chat_id": CHAT, "text": "json"}).encode(),
                           "application/json")
    assert status == 200 and payload["result"]["text"] == "json"

    status, payload = post("sendMessage", f"chat_id={CHAT}&text=a%26b+c".encode(),
                           "application/x-www-form-urlencoded")
    assert status == 200 and payload["result"]["text"] == "a&b c"

    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="chat_id"\r\n\r\n{CHAT}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="document"; '
            f'filename="x;y \\"z\\".bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode() + b"\x00\r\n\r\n--\xff" + f"\r\n--{boundary}--\r\n".encode()
    status, payload = post("sendDocument", body, f"multipart/form-data; boundary={boundary}")
    assert status == 200 and payload["result"]["document"]["file_size"] == 8

    status, payload = post("getMe", b"", "application/json")
    assert status == 200 and payload["result"]["is_bot"] is True

    conn.request("POST", "/botnot-the-token/getMe")
    resp = conn.getresponse()
    assert resp.status == 401 and json.loads(resp.read())["description"] == "Unauthorized"

    for bad_path in ("/", "/favicon.ico", f"/file/bot{DEFAULT_TOKEN}/music/nothing.mp3"):
        conn.request("GET", bad_path)
        resp = conn.getresponse()
        assert resp.status == 404 and json.loads(resp.read())["description"] == "Not Found"

    json_req, form_req, multi_req, *_ = tg.requests()
    assert json_req.fields == {"chat_id": str(CHAT), "text": "json"}
    assert form_req.fields == {"chat_id": str(CHAT), "text": "a&b c"}
    assert multi_req.fields == {"chat_id": str(CHAT)}
    assert multi_req.files == {"document": ('x;y "z".bin', "application/octet-stream",
                                            b"\x00\r\n\r\n--\xff")}
    assert len({r.client for r in tg.requests()}) == 1        # one kept-alive connection
    conn.close()


def test_wait_for_times_out_with_a_useful_message(tg):
    run(tg, lambda bot: bot.get_me())
    with pytest.raises(TimeoutError, match=r"sendAudio.*got 0.*'getMe'"):
        tg.wait_for("sendAudio", timeout=0.2)
    tg.clear()
    assert tg.requests() == []


# --------------------------------------------------------------------------- what to know

def test_exception_hierarchy():
    # Catching NetworkError also catches BadRequest (a permanent error!) and TimedOut.
    assert issubclass(BadRequest, NetworkError) and issubclass(TimedOut, NetworkError)
    for cls in (Forbidden, InvalidToken, RetryAfter):
        assert issubclass(cls, TelegramError) and not issubclass(cls, NetworkError)


def test_client_logs_the_token_in_urls(tg, caplog):
    """httpx logs every request URL (token included) at INFO; python-telegram-bot logs
    the API URL at DEBUG.  The daemon must silence or filter these loggers."""
    caplog.set_level(logging.DEBUG)
    run(tg, send_text())
    leaking = {(r.name, r.levelname) for r in caplog.records if DEFAULT_TOKEN in r.getMessage()}
    assert ("httpx", "INFO") in leaking
    assert ("telegram.Bot", "DEBUG") in leaking
    assert {name for name, _ in leaking} <= {"httpx", "telegram.Bot"}  # not httpcore, not us


def test_file_handle_is_consumed_by_the_first_attempt(tg, tmp_path):
    """A retry that reuses an open file handle uploads nothing: pass a Path or bytes."""
    clip = tmp_path / "clip.mp3"
    clip.write_bytes(MP3)
    tg.fail_next(1, 500, method="sendAudio")

    async def use(bot):
        outcomes = []
        with clip.open("rb") as handle:
            for _ in range(2):
                try:
                    await bot.send_audio(CHAT, audio=handle)
                    outcomes.append("ok")
                except TelegramError as exc:
                    outcomes.append(repr(exc))
        return outcomes

    assert run(tg, use) == ["NetworkError('Internal Server Error')",
                            "BadRequest('File must be non-empty')"]
    assert [len(r.files["audio"][2]) for r in tg.requests("sendAudio")] == [len(MP3), 0]


def test_one_bot_across_event_loops(tg):
    """`async with bot` in each asyncio.run works; a Bot initialised in one event loop and
    used in the next fails with a NetworkError that is not a network problem at all."""
    bot = make_bot(tg)

    async def scoped(bot):
        async with bot:
            return (await bot.send_message(CHAT, "x")).message_id

    assert asyncio.run(scoped(bot)) == 1
    assert asyncio.run(scoped(bot)) == 2

    async def initialise(bot):
        await bot.initialize()
        await bot.send_message(CHAT, "opens a pooled connection in this loop")

    asyncio.run(initialise(bot))
    with pytest.raises(NetworkError, match="Event loop is closed"):
        asyncio.run(bot.send_message(CHAT, "next loop"))
    # Worse: the request went out over the dead loop's pooled connection and was delivered;
    # only then did the client fail.  A retry on this "NetworkError" sends a duplicate.
    last = tg.wait_for("sendMessage", 4)[-1]
    assert last.fields["text"] == "next loop" and wait_answered(last) == 200
    asyncio.run(bot.shutdown())
    # The dead loop's socket can no longer be closed properly; collect it here, quietly,
    # rather than have a ResourceWarning surface in some later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del bot
        gc.collect()
