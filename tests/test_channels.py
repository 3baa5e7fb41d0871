"""Every channel from one outbox (issue 17): Telegram (the real python-telegram-bot against
the fake Bot API server) and Apprise channels (real Apprise posting to a local HTTP
endpoint). Each message reaches each channel once, with its clip; a channel that is down
holds back only itself, is retried alone, and resumes after a restart without the others
sending again."""

from __future__ import annotations

import base64
import json
import time
from contextlib import contextmanager

import numpy as np
import pytest

from beepnet.config import TelegramConfig
from beepnet.notify.apprise_channel import AppriseChannel
from beepnet.notify.mp3 import encode_mp3
from beepnet.notify.notifier import Notifier
from beepnet.testing.fake_telegram import DEFAULT_CHAT_ID, DEFAULT_TOKEN, FakeTelegram
from beepnet.testing.httpsink import HttpSink
from procs import wait_for


@pytest.fixture
def tg():
    with FakeTelegram(token=DEFAULT_TOKEN, chats={DEFAULT_CHAT_ID}) as fake:
        yield fake


@pytest.fixture
def sink():
    with HttpSink() as s:
        yield s


@pytest.fixture(scope="module")
def clip() -> bytes:
    t = np.arange(8000) / 16000
    return encode_mp3((0.3 * np.sin(2 * np.pi * 2900 * t)).astype(np.float32))


def notifier(tmp_path, tg, urls, **kw) -> Notifier:
    telegram = (TelegramConfig(token=DEFAULT_TOKEN, chat_id=str(DEFAULT_CHAT_ID),
                               api_url=tg.url) if tg is not None else None)
    return Notifier(tmp_path / "alerts", tmp_path / "outbox", cooldown_minutes=0,
                    telegram=telegram, channels=[AppriseChannel(u) for u in urls],
                    retry_initial_seconds=0.1, retry_max_seconds=0.3, **kw)


@contextmanager
def delivering(n: Notifier):
    """``n`` started; when the block ends, its outbox drained (every channel done with every
    item), then closed."""
    n.start()
    try:
        yield n
        wait_for(lambda: n.outbox.pending() == [], 10)
    finally:
        n.close(2)


def hook(sink) -> str:
    return f"json://127.0.0.1:{sink.port}/hook"


def posts(sink) -> list[dict]:
    return [r.json() for r in sink.received(lambda r: r.path == "/hook" and r.status < 400)]


def test_every_channel_gets_each_message_once_with_its_clip(tmp_path, tg, sink, clip):
    n = notifier(tmp_path, tg, [hook(sink)])
    with delivering(n):
        n.message("cycle", "Washer finished at 14:02.", audio=clip, title="Beep 14:02")
        n.message("reminder", "Still in the washer.")
        tg.wait_for(None, 2, timeout=15)
        sink.wait_for(lambda r: r.path == "/hook", 2, timeout=15)
    (audio,) = tg.requests("sendAudio")
    assert audio.files["audio"][2] == clip
    first, second = posts(sink)
    assert first["message"] == "Washer finished at 14:02."
    (att,) = first["attachments"]
    assert base64.b64decode(att["base64"]) == clip and att["filename"].endswith(".mp3")
    assert second["message"] == "Still in the washer." and not second.get("attachments")
    assert len(tg.messages(DEFAULT_CHAT_ID)) == 2 and len(posts(sink)) == 2


def test_a_channel_that_fails_is_retried_alone(tmp_path, tg, sink):
    sink.fail(4, 503)
    n = notifier(tmp_path, tg, [hook(sink)])
    with delivering(n):
        n.message("cycle", "Washer finished at 14:02.")
        tg.wait_for("sendMessage", 1, timeout=10)
        sink.wait_for(lambda r: r.path == "/hook", 1, timeout=20)
    assert len(sink.received(lambda r: r.path == "/hook")) == 5  # 4 refused, then taken
    assert len(tg.requests("sendMessage")) == 1                  # never sent twice


def test_a_channel_down_resumes_after_a_restart_without_the_others_resending(
        tmp_path, tg, sink):
    port = sink.port
    sink.stop()
    n = notifier(tmp_path, tg, [hook(sink)])
    n.start()
    n.message("cycle", "Washer finished at 14:02.")
    tg.wait_for("sendMessage", 1, timeout=10)
    n.close(1)
    (item,) = n.outbox.pending()
    assert item.sent == ["telegram"]
    # The next start, with the endpoint back on its port.
    with HttpSink(port) as back:
        n2 = notifier(tmp_path, tg, [hook(back)])
        with delivering(n2):
            back.wait_for(lambda r: r.path == "/hook", 1, timeout=15)
        assert [p["message"] for p in posts(back)] == ["Washer finished at 14:02."]
    assert back.port == port
    assert len(tg.requests("sendMessage")) == 1


def test_telegram_refusing_a_message_does_not_keep_it_from_the_others(tmp_path, tg, sink):
    tg.fail_next(1, 400, method="sendMessage", description="Bad Request: message is too long")
    n = notifier(tmp_path, tg, [hook(sink)])
    with delivering(n):
        n.message("cycle", "Washer finished at 14:02.")
        sink.wait_for(lambda r: r.path == "/hook", 1, timeout=15)
    (aside,) = (tmp_path / "outbox" / "rejected").glob("*.json")
    doc = json.loads(aside.read_text())
    assert sorted(doc["sent"]) == sorted(["telegram", n.outbox.channels[1]])
    assert "telegram" in doc["extra"]["refused"]


def test_apprise_alone_without_telegram(tmp_path, sink, clip):
    n = notifier(tmp_path, None, [hook(sink)])
    with delivering(n):
        n.message("start", "garage: listening on USB PnP Sound Device")
        sink.wait_for(lambda r: r.path == "/hook", 1, timeout=15)
    assert posts(sink)[0]["message"] == "garage: listening on USB PnP Sound Device"


def test_two_channels_one_down(tmp_path, sink):
    with HttpSink() as other:
        other.fail(1000, 500)
        n = notifier(tmp_path, None, [hook(sink), f"json://127.0.0.1:{other.port}/hook"])
        n.start()
        try:
            for i in range(3):
                n.message("reminder", f"reminder {i}")
            sink.wait_for(lambda r: r.path == "/hook", 3, timeout=15)
            time.sleep(0.5)
            assert len(n.outbox.pending()) == 3  # the other channel still owes them
        finally:
            n.close(0.5)
        assert [p["message"] for p in posts(sink)] == [f"reminder {i}" for i in range(3)]
