"""Quiet hours (issue 17): the window across midnight and daylight-saving changes, with an
injected clock; and through the real notifier and python-telegram-bot against the fake Bot
API server: news held until the window ends (and saying so), faults sent without sound,
"silent" mode, and held messages surviving a restart."""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest

from beepnet.config import ConfigError, TelegramConfig, load
from beepnet.notify.notifier import Notifier
from beepnet.notify.quiet import HOLD, NORMAL, SILENT, QuietHours, parse_window
from beepnet.testing.fake_telegram import DEFAULT_CHAT_ID, DEFAULT_TOKEN, FakeTelegram

BERLIN = ZoneInfo("Europe/Berlin")


def at(y, mo, d, h, mi, s=0) -> float:
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=BERLIN).timestamp()


def quiet(text: str, now: float, **kw) -> QuietHours:
    return QuietHours(parse_window(text), clock=lambda: now, tz=BERLIN, **kw)


def test_a_window_across_midnight():
    q = quiet("22:00-07:00", 0.0)
    assert q.ends(at(2026, 12, 5, 23, 30)) == at(2026, 12, 6, 7, 0)
    assert q.ends(at(2026, 12, 6, 2, 0)) == at(2026, 12, 6, 7, 0)
    assert q.ends(at(2026, 12, 5, 22, 0)) == at(2026, 12, 6, 7, 0)  # from its first minute
    assert q.ends(at(2026, 12, 6, 7, 0)) is None                    # to before its last
    assert q.ends(at(2026, 12, 6, 12, 0)) is None
    assert q.ends(at(2026, 12, 5, 21, 59, 59)) is None


def test_a_window_within_one_day():
    q = quiet("13:00-15:30", 0.0)
    assert q.ends(at(2026, 12, 5, 14, 0)) == at(2026, 12, 5, 15, 30)
    assert q.ends(at(2026, 12, 5, 16, 0)) is None
    assert q.ends(at(2026, 12, 5, 3, 0)) is None


def test_daylight_saving_changes_are_local_time():
    q = quiet("22:00-07:00", 0.0)
    # The night the clocks go forward (29 March 2026): 9 hours of wall clock are 8 real.
    start = at(2026, 3, 28, 22, 0)
    assert q.ends(start) == at(2026, 3, 29, 7, 0)
    assert q.ends(start) - start == 8 * 3600
    # ... and back (25 October 2026): 10 real hours.
    start = at(2026, 10, 24, 22, 0)
    assert q.ends(start) - start == 10 * 3600


def test_what_each_kind_of_message_gets():
    inside, outside = at(2026, 12, 5, 23, 0), at(2026, 12, 5, 12, 0)
    q = quiet("22:00-07:00", inside)
    assert q.treatment("beep") == HOLD and q.treatment("reminder") == HOLD
    assert q.treatment("mic") == SILENT and q.treatment("detector") == SILENT
    assert q.treatment("beep", outside) == NORMAL and q.treatment("mic", outside) == NORMAL
    assert quiet("22:00-07:00", inside, mode=SILENT).treatment("cycle") == SILENT
    assert quiet("22:00-07:00", inside, faults=HOLD).treatment("disk") == HOLD
    assert quiet("22:00-07:00", inside, faults=NORMAL).treatment("mic") == NORMAL


@pytest.mark.parametrize("text", ["22-7", "25:00-07:00", "22:00-07:60", "07:00-07:00",
                                  "22:00", "22:00-07:00-08:00", "ten-seven"])
def test_bad_windows_are_one_line(text):
    with pytest.raises(ValueError) as e:
        parse_window(text)
    assert "notify.quiet_hours" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError):
        load(None, [f"notify.quiet_hours={text}"], {})


def test_quiet_settings_load():
    cfg = load(None, ["notify.quiet_hours= 22:00 - 07:00 ", "notify.quiet_mode=silent",
                      "notify.quiet_faults=hold"], {})
    assert str(parse_window(cfg.notify.quiet_hours)) == "22:00-07:00"
    with pytest.raises(ConfigError):
        load(None, ["notify.quiet_mode=loud"], {})


# -- through the real notifier ----------------------------------------------------------


@pytest.fixture
def tg():
    with FakeTelegram(token=DEFAULT_TOKEN, chats={DEFAULT_CHAT_ID}) as fake:
        yield fake


def notifier(tmp_path, tg, q: QuietHours) -> Notifier:
    cfg = TelegramConfig(token=DEFAULT_TOKEN, chat_id=str(DEFAULT_CHAT_ID), api_url=tg.url)
    return Notifier(tmp_path / "alerts", tmp_path / "outbox", cooldown_minutes=0,
                    telegram=cfg, retry_initial_seconds=0.1, retry_max_seconds=0.3, quiet=q)


def texts(tg) -> list[str]:
    return [m.get("text") or m.get("caption") or "" for m in tg.messages(DEFAULT_CHAT_ID)]


def test_news_waits_for_the_end_of_quiet_hours_and_faults_come_silently(tmp_path, tg):
    # The quiet hours' clock says 06:59:56: the window ends in 4 seconds of real time.
    q = quiet("22:00-07:00", at(2026, 12, 6, 6, 59, 56))
    n = notifier(tmp_path, tg, q)
    n.start()
    try:
        queued = time.monotonic()
        n.message("reminder", "Still in the washer.")
        n.message("mic", "microphone lost: unplugged; retrying")
        tg.wait_for("sendMessage", 1, timeout=10)
        time.sleep(1.0)
        assert texts(tg) == ["microphone lost: unplugged; retrying"]
        fault = tg.requests("sendMessage")[0]
        assert fault.fields.get("disable_notification") == "true"
        # Held on disk meanwhile, with when it may go.
        (held,) = n.outbox.pending()
        assert held.kind == "reminder" and held.extra["hold_until"] > time.time()
        tg.wait_for("sendMessage", 2, timeout=15)
        assert time.monotonic() - queued >= 3.5
        last = tg.requests("sendMessage")[-1]
        assert last.fields["text"].startswith("(Held for quiet hours since ")
        assert last.fields["text"].endswith("Still in the washer.")
        assert last.fields.get("disable_notification") in (None, "false")
    finally:
        n.close(2)
    assert n.outbox.pending() == []


def test_silent_mode_sends_at_once_without_sound(tmp_path, tg):
    q = quiet("22:00-07:00", at(2026, 12, 5, 23, 0), mode=SILENT)
    n = notifier(tmp_path, tg, q)
    n.start()
    try:
        n.message("cycle", "Washer finished at 23:00.")
        (req,) = tg.wait_for("sendMessage", 1, timeout=10)
        assert req.fields.get("disable_notification") == "true"
        assert req.fields["text"] == "Washer finished at 23:00."
    finally:
        n.close(2)


def test_held_messages_survive_a_restart(tmp_path, tg):
    q = quiet("22:00-07:00", at(2026, 12, 5, 23, 0))  # 8 hours to go
    n = notifier(tmp_path, tg, q)
    n.start()
    n.message("reminder", "Still in the washer.")
    n.close(1)
    assert texts(tg) == []
    (held,) = n.outbox.pending()
    # The next start (outside quiet hours by now, as far as this test is concerned: its
    # item's time has come) sends it, saying it was held.
    import json
    path = tmp_path / "outbox" / f"{held.id}.json"
    doc = json.loads(path.read_text())
    doc["extra"]["hold_until"] = time.time() - 1
    path.write_text(json.dumps(doc))
    n2 = notifier(tmp_path, tg, quiet("22:00-07:00", at(2026, 12, 6, 8, 0)))
    n2.start()
    try:
        (req,) = tg.wait_for("sendMessage", 1, timeout=10)
        assert req.fields["text"].startswith("(Held for quiet hours since ")
    finally:
        n2.close(2)
