"""The bot's parts on their own: durations, the mute, feedback windows and storage, who may
command the bot, the /status text, the start message, the config keys."""

from __future__ import annotations

import json
import time
import wave

import numpy as np
import pytest
from telegram import Chat, User

from beepnet import config
from beepnet.config import ConfigError
from beepnet.notify.commands import BotSettings, Commands, alert_keyboard
from beepnet.notify.duration import DurationError, duration_text, parse_duration
from beepnet.notify.feedback import NO, YES, FeedbackError, FeedbackStore, window_starts
from beepnet.notify.mute import Mute
from beepnet.notify.report import device_name, start_text, status_text

SR = 16000


@pytest.mark.parametrize("text, seconds", [
    ("2h", 7200), ("30m", 1800), ("90", 5400), ("1h30m", 5400), ("1.5 h", 5400),
    ("45min", 2700), ("2 hours", 7200), ("1d", 86400), ("1 day 2h", 93600), (" 10 ", 600),
    ("2H", 7200), ("1,5h", 5400),
])
def test_durations_read_as_people_type_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, why", [
    ("", "no duration"), ("2x", "cannot read"), ("h", "cannot read"), ("2h 5", "cannot read"),
    ("abc", "cannot read"), ("-5", "cannot read"), ("30s", "cannot read"),
    ("0", "too short"), ("0.5", "too short"), ("8d", "too long"),
])
def test_bad_durations_are_one_line_each(text, why):
    with pytest.raises(DurationError, match=why) as e:
        parse_duration(text)
    assert "\n" not in str(e.value)


def test_duration_text():
    assert [duration_text(s) for s in (7200, 1800, 5400, 93600, 30)] == \
        ["2 h", "30 min", "1 h 30 min", "1 day 2 h", "0 min"]


def test_mute_holds_beeps_persists_and_ends_once(tmp_path):
    now = [1_000_000.0]
    m = Mute(tmp_path, clock=lambda: now[0])
    assert m.until() is None and not m.hold(now[0]) and m.end() is None
    until = m.set(3600)
    assert until == now[0] + 3600 and m.until() == until
    assert m.hold(now[0] + 10) and m.hold(now[0] + 20)
    # Another process (a restart) reads the same state.
    again = Mute(tmp_path, clock=lambda: now[0])
    assert again.until() == until
    now[0] += 3601
    assert again.until() is None and not again.hold(now[0])
    ended = again.expired()
    assert ended is not None and ended.held_count == 2 and ended.until == until
    assert again.expired() is None  # told once
    assert json.loads((tmp_path / "mute.json").read_text())["until"] is None
    # /unmute before the end.
    m2 = Mute(tmp_path, clock=lambda: now[0])
    m2.set(600)
    assert m2.end() is not None and m2.until() is None and m2.end() is None


def test_a_damaged_mute_file_means_not_muted(tmp_path, caplog):
    (tmp_path / "mute.json").write_text("{nope")
    assert Mute(tmp_path).until() is None
    assert "cannot read the mute state" in caplog.text


def test_windows_of_a_clip():
    n = 9 * SR  # a clip of the old kind: 6 s before, the detected chunk last
    assert window_starts(n, NO, None, 0) == [0, 1 * 24000, 2 * 24000, 3 * 24000, 4 * 24000]
    assert window_starts(n, YES, None, 0) == [6 * SR]
    # A complete pattern: 2 s before its first beep, beeps for 5 s, 1 s after.
    n = 8 * SR
    starts = window_starts(n, YES, 2.0, 5.0)
    assert starts[0] == int(1.5 * SR) and all(s + 3 * SR <= n for s in starts)
    assert starts == [24000, 48000, 72000]     # every window holds some beep
    assert window_starts(n, NO, 2.0, 5.0)[-1] == n - 3 * SR
    # Shorter than a window: one window, padded.
    assert window_starts(SR, YES, 0.2, 0.4) == [0] and window_starts(SR, NO, None, 0) == [0]


def _write_clip(path, seconds: float, beep_at: float, beep_len: float) -> None:
    t = np.arange(int(seconds * SR)) / SR
    x = 0.01 * np.sin(2 * np.pi * 300 * t)
    on = (t >= beep_at) & (t < beep_at + beep_len)
    x[on] += 0.5 * np.sin(2 * np.pi * 3000 * t[on])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((x * 32767).astype("<i2").tobytes())


def test_feedback_store_cuts_moves_and_journals(tmp_path):
    alerts = tmp_path / "alerts"
    alerts.mkdir()
    aid = "20261204-151200-0000480000-beep"
    _write_clip(alerts / f"{aid}.wav", 8.0, 2.0, 2.0)
    (alerts / f"{aid}.json").write_text(json.dumps({"beep_at": 2.0, "beep_length": 2.0,
                                                    "clip_start_sample": 448000}))
    store = FeedbackStore(tmp_path / "feedback", alerts)
    saved = store.save(aid, YES, 7, "@anna")
    assert saved.previous is None and not saved.unchanged
    assert list(saved.files) == ["beep/20261204-151200_0000472000.wav",
                                 "beep/20261204-151200_0000496000.wav"]
    for rel in saved.files:
        with wave.open(str(tmp_path / "feedback" / rel)) as w:
            assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (1, SR, 3 * SR)
    assert store.save(aid, YES, 7, "@anna").unchanged      # the same answer: no copies
    assert len(list((tmp_path / "feedback" / "beep").iterdir())) == 2
    changed = store.save(aid, NO, 8, "@ben")
    assert changed.previous == YES and len(changed.files) == 5
    assert not list((tmp_path / "feedback" / "beep").iterdir())
    lines = [json.loads(x) for x in (tmp_path / "feedback" / "journal.jsonl").read_text()
             .splitlines()]
    assert [(e["user_id"], e["label"], e["alert"]) for e in lines] == \
        [(7, YES, aid), (7, YES, aid), (8, NO, aid)]
    with pytest.raises(FeedbackError, match="no longer kept"):
        store.save("20261204-151300-0000000000-beep", YES, 7, "x")
    with pytest.raises(FeedbackError, match="does not name an alert"):
        store.save("../../etc/passwd", YES, 7, "x")


def _commands(tmp_path, chat_id: str = "12345", allowed=frozenset()) -> Commands:
    s = BotSettings(tmp_path, tmp_path / "fb", tmp_path / "alerts", tmp_path / "status.json",
                    tmp_path, allowed_user_ids=frozenset(allowed))
    return Commands(s, chat_id, Mute(tmp_path), lambda: (0, 0), lambda k, t: None, "x:y")


def test_only_the_owner_s_chat_and_listed_group_members_may_command(tmp_path):
    anna, ben = User(12345, "Anna", False), User(777, "Ben", False)
    own = Chat(12345, "private")
    c = _commands(tmp_path)
    assert c.permits(own, anna)
    assert not c.permits(Chat(777, "private"), ben)
    assert not c.permits(own, None)
    group = Chat(-100123, "supergroup")
    g = _commands(tmp_path, "-100123", {777})
    assert g.permits(group, ben) and not g.permits(group, anna)
    assert _commands(tmp_path, "-100123").permits(group, anna)  # no list: every member
    assert not g.permits(Chat(-100999, "supergroup"), ben)
    ch = _commands(tmp_path, "@my_channel")
    assert ch.permits(Chat(-1001, "channel", username="My_Channel"), anna)


def test_alert_buttons_fit_in_64_bytes():
    kb = alert_keyboard("20261204-151200-0000480000-beep", feedback=True)
    datas = [b.callback_data for b in kb.inline_keyboard[0]]
    assert datas == ["fb:20261204-151200-0000480000-beep:yes",
                     "fb:20261204-151200-0000480000-beep:no",
                     "fb:20261204-151200-0000480000-beep:mute"]
    assert all(len(d.encode()) <= 64 for d in datas)
    assert [b.callback_data for b in alert_keyboard("1733-beep", False).inline_keyboard[0]] \
        == ["fb:1733-beep:mute"]  # no clip: nothing to label
    assert alert_keyboard("x" * 60, True) is None
    # The finish and its reminders: 🧺 Emptied on a row of its own, naming the cycle's end.
    kb = alert_keyboard("20261204-151200-0000480000-beep", True, emptied="1733327520")
    assert [[b.text for b in row] for row in kb.inline_keyboard] == \
        [["✅ That was it", "❌ Not the beep", "🔕 Mute 2 h"], ["🧺 Emptied"]]
    assert kb.inline_keyboard[1][0].callback_data == "cy:1733327520:emptied"
    assert [[b.text for b in row] for row in
            alert_keyboard(None, False, emptied="1733327520").inline_keyboard] == [["🧺 Emptied"]]
    assert alert_keyboard(None, False) is None


def test_status_text_reads_the_published_status(tmp_path):
    now = time.time()
    status = {"state": "running", "started": now - 3 * 3600 - 300, "gate_dbfs": -50,
              "device": "USB PnP Sound Device (#2, 48000 Hz)", "level_dbfs": -41.6,
              "level_time": now - 0.3, "detector": "beepnet model x.safetensors",
              "threshold": 0.51, "model": "/m/x.safetensors",
              "detections": [{"time": now - 60, "score": 0.97}],
              "cycle": {"machine": "washer", "state": "running", "started": now - 48 * 60,
                        "phase": "washing", "remaining": 42 * 60,
                        "expected_end": now + 42 * 60}}
    text = status_text(status, name="garage", mute_until=now + 3600, pending=(2, 1),
                       storage_dir=tmp_path, last_alert={"epoch": now - 60, "score": 0.97},
                       now=now)
    lines = text.splitlines()
    assert lines[0].startswith("garage: listening since ") and "(3 h 5 min)" in lines[0]
    assert "Microphone: USB PnP Sound Device (#2, 48000 Hz), level -42 dBFS now (gate -50 dBFS)" \
        in lines
    assert "Detector: beepnet model x.safetensors, threshold 0.51" in lines
    assert any(x.startswith("Last beep: ") and "score 0.97" in x for x in lines)
    # Where the machine is comes first after the headline.
    assert lines[1] == (f"Washer: running for 48 min (washing); usually done in about 42 min "
                        f"(around {time.strftime('%H:%M', time.localtime(now + 42 * 60))}).")
    assert "Outbox: 3 message(s) waiting" in lines
    assert any(x.startswith("Alerts: muted until") for x in lines)
    assert lines[-1].startswith("beepnet ")
    stale = status_text(dict(status, level_time=now - 600), name="", mute_until=None,
                        pending=(0, 0), storage_dir=tmp_path, last_alert=None, now=now)
    assert "no audio for 10 min" in stale and "Alerts: on" in stale
    assert "Last alert: none kept" in stale


def test_the_start_message_is_written_for_a_phone():
    assert start_text("", "USB PnP Sound Device (#2, 48000 Hz)") == \
        "listening on USB PnP Sound Device; send /status for details."
    assert start_text("garage", "default (#0, 44100 Hz)") == \
        "garage: listening on default; send /status for details."
    assert device_name("file /tmp/x/cycle.flac (44100 Hz, 2 ch, 30.0 s, x1)") == "cycle.flac"


def test_config_keys_of_the_bot():
    cfg = config.load(None, ["telegram.allowed_user_ids=123, 456 789", "notify.name=garage"],
                      environ={})
    assert cfg.telegram.allowed_users == {123, 456, 789} and cfg.notify.name == "garage"
    assert config.load(None, [], environ={}).telegram.allowed_users == frozenset()
    with pytest.raises(ConfigError, match="telegram.allowed_user_ids = '12, @ben' is not "
                                          "allowed"):
        config.load(None, ["telegram.allowed_user_ids=12, @ben"], environ={})
    with pytest.raises(ConfigError, match="notify.name"):
        config.load(None, ["notify.name=" + "x" * 41], environ={})


def test_the_fake_server_answers_buttons_and_edits_as_telegram_does():
    import asyncio

    from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
    from telegram.error import BadRequest

    from beepnet.testing.fake_telegram import FakeTelegram

    async def scenario(tg: FakeTelegram) -> None:
        async with Bot(**tg.bot_kwargs()) as bot:
            kb = InlineKeyboardMarkup([[InlineKeyboardButton("a", callback_data="fb:x:yes")]])
            sent = await bot.send_message(12345, "hello", reply_markup=kb)
            update = tg.add_callback_query(tg.message_by_id(12345, sent.message_id), "fb:x:yes")
            (got,) = await bot.get_updates(timeout=1)
            assert got.callback_query.data == "fb:x:yes"
            assert got.callback_query.message.reply_markup == kb
            qid = update["callback_query"]["id"]
            assert await bot.answer_callback_query(qid, text="ok")
            with pytest.raises(BadRequest, match="(?i)query is too old"):
                await bot.answer_callback_query(qid, text="twice")
            edited = await bot.edit_message_text("hello\n✅", chat_id=12345,
                                                 message_id=sent.message_id, reply_markup=kb)
            assert edited.text == "hello\n✅" and edited.reply_markup == kb
            with pytest.raises(BadRequest, match="(?i)not modified"):
                await bot.edit_message_text("hello\n✅", chat_id=12345,
                                            message_id=sent.message_id, reply_markup=kb)
            with pytest.raises(BadRequest, match="(?i)message to edit not found"):
                await bot.edit_message_caption(chat_id=12345, message_id=999, caption="x")
            with pytest.raises(BadRequest, match="(?i)no caption"):
                await bot.edit_message_caption(chat_id=12345, message_id=sent.message_id,
                                               caption="x")

    with FakeTelegram() as tg:
        asyncio.run(scenario(tg))
        assert tg.message_by_id(12345, 1)["text"] == "hello\n✅"
        assert [a["text"] for a in tg.callback_answers] == ["ok"]
