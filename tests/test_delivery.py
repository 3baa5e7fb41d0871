"""Delivery and the outbox under faults (issue 13): disk errors in the delivery thread, an
unwritable outbox, outages, a wrong api_url, wall-clock steps, and what the monitor is told.

The real python-telegram-bot talks to the fake Bot API server on 127.0.0.1; full disks and
read-only outboxes are real tmpfs mounts."""

from __future__ import annotations

import http.server
import json
import logging
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from beepnet.config import TelegramConfig
from beepnet.daemon.status import StatusPublisher, read_status
from beepnet.messages import Chunk, Detection
from beepnet.monitor.app import delivery_states
from beepnet.notify import delivery as delivery_mod
from beepnet.notify import notifier as notifier_mod
from beepnet.notify.notifier import Notifier
from beepnet.notify.outbox import Clock, Outbox
from beepnet.testing.fake_telegram import DEFAULT_CHAT_ID, DEFAULT_TOKEN, FakeTelegram
from faketime import SteppedClock
from procs import wait_for
from signals import SR, convert, washer_with_beeps

HOUR = 3600.0


@pytest.fixture
def tg():
    with FakeTelegram(token=DEFAULT_TOKEN, chats={DEFAULT_CHAT_ID}) as fake:
        yield fake


def tg_config(url: str, token: str = DEFAULT_TOKEN) -> TelegramConfig:
    return TelegramConfig(token=token, chat_id=str(DEFAULT_CHAT_ID), api_url=url)


def make_notifier(tmp_path: Path, tg: FakeTelegram | None, **kw) -> Notifier:
    kw.setdefault("cooldown_minutes", 0)
    return Notifier(tmp_path / "alerts", tmp_path / "outbox",
                    telegram=tg_config(tg.url) if tg is not None else None,
                    retry_initial_seconds=0.1, retry_max_seconds=0.3, **kw)


def det(t: float | None = None, mono: float = 0.0, scale: float = 1.0) -> Detection:
    t = time.time() if t is None else t
    chunk = Chunk("", 0, t, 3.0, -20.0, time_scale=scale, start_mono=mono)
    return Detection(chunk, 0.9, t, 1.0, "", "tone", mono=mono)


def texts(tg: FakeTelegram) -> list[str]:
    return [r.fields.get("text", "") for r in tg.requests("sendMessage") if r.status == 200]


def wait_text(tg: FakeTelegram, part: str, timeout: float = 10.0) -> str:
    assert wait_for(lambda: any(part in t for t in texts(tg)), timeout), (part, texts(tg))
    return next(t for t in texts(tg) if part in t)


def queued_texts(outbox: Path) -> list[str]:
    out = []
    for p in outbox.glob("*.json"):
        try:
            out.append(json.loads(p.read_text())["text"])
        except (OSError, ValueError, KeyError):
            pass
    return out


@contextmanager
def tmpfs(path: Path, size: str = "1m"):
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


class StepClock:
    """A wall clock and a boot clock the test moves by hand."""

    def __init__(self, wall: float = 1.7e9, boot: float = 1000.0, boot_id: str = "boot-a"):
        self.w, self.b = wall, boot
        self.clock = Clock(wall=lambda: self.w, boot=lambda: self.b, boot_id=boot_id)

    def run(self, seconds: float) -> None:
        self.w += seconds
        self.b += seconds


# -- 1: faults in the delivery thread, an unwritable outbox ----------------------------------

def test_disk_faults_neither_stop_delivery_nor_lose_messages(tg, tmp_path, caplog):
    outbox = tmp_path / "outbox"
    with tmpfs(outbox):
        n = make_notifier(tmp_path, tg)
        n.start()
        try:
            n.message("start", "listening")
            wait_text(tg, "listening")
            # An unreadable item the delivery thread cannot move aside (read-only), which
            # used to end its event loop.
            (outbox / "00000000-000000-1-0000-mic.json").write_text("{not json")
            remount(outbox, "ro")
            n.message("mic", "microphone lost")
            n.alert(det())
            n.message("mic", "microphone back")  # used to raise "Event loop is closed"
            for part in ("microphone lost", "Beep at", "microphone back"):
                wait_text(tg, part)
            notices = [t for t in texts(tg) if t.startswith("Cannot keep messages on disk")]
            assert len(notices) == 1, texts(tg)
            assert str(outbox) in notices[0] and "Read-only file system" in notices[0]
            # The notice went out before the message it is about.
            assert texts(tg).index(notices[0]) < texts(tg).index("microphone lost")
            # The disk works again: said once, and messages are durable again.
            remount(outbox, "rw")
            tg.fail_always(502)
            n.message("disk", "durable again")
            assert wait_for(lambda: "durable again" in queued_texts(outbox), 5)
            tg.recover()
            wait_text(tg, "durable again")
            wait_text(tg, "Messages are kept on disk again")
            assert sum("kept on disk again" in t for t in texts(tg)) == 1
            assert sum(t.startswith("Cannot keep") for t in texts(tg)) == 1
        finally:
            n.close(5)
    assert "Traceback" not in caplog.text


def test_a_full_disk_still_sends_the_alert_with_its_clip(tg, tmp_path):
    clip = convert(washer_with_beeps([(1.0, 0.5, 3000.0)], 3.0, seed=3), tmp_path / "c.wav")
    outbox = tmp_path / "outbox"
    with tmpfs(outbox, size="64k"):
        n = make_notifier(tmp_path, tg)
        n.start()
        try:
            with open(outbox / "filler", "wb", buffering=0) as f:  # fill it to the last byte
                try:
                    while True:
                        f.write(b"x" * 4096)
                except OSError:
                    pass
            d = det()
            d = Detection(d.chunk, d.score, d.time, d.offset, str(clip), d.detector)
            assert n.alert(d)
            (sent,) = tg.wait_for("sendAudio", timeout=10)
            assert sent.files["audio"][2][:1] == b"\xff"  # the MP3 of the clip
            assert wait_for(lambda: sent.status == 200, 5)
            assert wait_for(lambda: n.delivery_of(d)() == "sent (not kept on disk)", 5)
            notice = wait_text(tg, "Cannot keep messages on disk")
            assert "No space left on device" in notice
        finally:
            n.close(5)


def test_messages_kept_in_memory_are_bounded(tg, tmp_path):
    outbox = tmp_path / "outbox"
    with tmpfs(outbox):
        remount(outbox, "ro")
        tg.fail_always(502)
        n = make_notifier(tmp_path, tg)
        n.start()
        try:
            states = []
            for i in range(delivery_mod.UNSAVED_MAX_ITEMS + 20):
                d = det(time.time() + i)
                n.alert(d)
                states.append(n.delivery_of(d))
            assert n.undelivered() == (0, delivery_mod.UNSAVED_MAX_ITEMS)
            assert {s() for s in states[:20]} == {"dropped (not kept on disk)"}
            assert states[-1]() == "not kept on disk"
        finally:
            n.close(0.5)


def test_an_outage_is_told_on_the_next_message_that_gets_through(tg, tmp_path, monkeypatch):
    monkeypatch.setattr(notifier_mod, "OUTAGE_NOTE_SECONDS", 1.5)
    n = make_notifier(tmp_path, tg)
    n.start()
    try:
        tg.fail_always(502)
        n.message("mic", "microphone lost")
        assert wait_for(lambda: len(tg.requests("sendMessage")) >= 3, 10)
        time.sleep(1.6)
        tg.recover()
        text = wait_text(tg, "microphone lost")
        assert text.startswith("Could not send to Telegram from "), text
        assert " to " in text and "server error" in text.split("\n")[0], text
        assert text.endswith("microphone lost")
        n.message("mic", "microphone back")  # the outage was told: said once
        assert wait_text(tg, "microphone back") == "microphone back"
    finally:
        n.close(5)


def test_a_page_that_is_not_json_is_an_outage_not_a_refusal(tg, tmp_path):
    """A captive portal or a proxy answering HTML (status 200 or 502): the alert waits and
    goes out once the Bot API answers again; it is not set aside as refused."""
    n = make_notifier(tmp_path, tg)
    n.start()
    try:
        for status in (200, 502):
            tg.fail_always(status, body=b"<html><body>Please log in</body></html>")
            n.message("mic", f"microphone lost {status}")
            assert wait_for(lambda: len(tg.requests("sendMessage")) >= 3, 10)
            tg.recover()
            wait_text(tg, f"microphone lost {status}")
            tg.clear()
        assert not (tmp_path / "outbox" / "rejected").exists()
    finally:
        n.close(5)


def test_an_outage_counts_from_the_start_of_the_attempt_that_hung(tg, tmp_path, monkeypatch):
    """A stalled server fails a request only when it hangs up (or the read times out): the
    outage began when that request was sent, and its whole length is told."""
    monkeypatch.setattr(notifier_mod, "OUTAGE_NOTE_SECONDS", 1.5)
    n = make_notifier(tmp_path, tg)
    n.start()
    try:
        tg.stall_always()
        n.message("mic", "microphone lost")
        assert wait_for(lambda: len(tg.requests("sendMessage")) >= 1, 10)
        time.sleep(2.0)
        tg.recover()  # the stalled request is hung up on; the retry goes through
        text = wait_text(tg, "microphone lost")
        assert text.startswith("Could not send to Telegram from "), text
    finally:
        n.close(5)


def test_a_fault_in_the_delivery_thread_is_logged_once_and_outlived(tg, tmp_path,
                                                                    monkeypatch, caplog):
    import errno

    monkeypatch.setattr(notifier_mod, "OUTAGE_NOTE_SECONDS", 0.5)
    n = make_notifier(tmp_path, tg)
    real_expire, faults = n.outbox.expire, [0]

    def failing_expire():
        if faults[0] < 2:
            faults[0] += 1
            raise OSError(errno.EIO, "Input/output error")
        return real_expire()

    monkeypatch.setattr(n.outbox, "expire", failing_expire)
    n.start()
    try:
        n.message("mic", "microphone lost")
        text = wait_text(tg, "microphone lost", timeout=15)
        assert faults[0] == 2
        assert text.startswith("Could not send to Telegram from "), text
        assert "the outbox could not be read or written (Input/output error)" in text, text
        assert caplog.text.count("Telegram delivery failed") == 1, caplog.text
    finally:
        n.close(5)


# -- 2: a message queued during a send -------------------------------------------------------

def test_a_message_queued_during_a_send_goes_out_at_once(tg, tmp_path):
    n = make_notifier(tmp_path, tg)
    n.start()
    try:
        tg.delay_next(1, 1.5, method="sendMessage")
        n.message("start", "first")
        tg.wait_for("sendMessage", count=1, timeout=10)  # in flight, held by the server
        queued = time.monotonic()
        n.message("mic", "second")
        assert wait_for(lambda: "second" in texts(tg), 8)
        (second,) = [r for r in tg.requests("sendMessage") if r.fields["text"] == "second"]
        # 1.5 s for the first to be answered, then at once; not the 30 s idle poll.
        assert second.time - queued < 1.5 + 2.0, second.time - queued
    finally:
        n.close(5)


# -- 3: a wrong api_url is not a wrong token -------------------------------------------------

class _NotFound(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = b"<html><body>404 Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def plain_http():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _notify_test(url: str, token: str = DEFAULT_TOKEN) -> subprocess.CompletedProcess:
    env = dict(os.environ, BEEPNET_TELEGRAM_TOKEN=token,
               BEEPNET_TELEGRAM_CHAT_ID=str(DEFAULT_CHAT_ID))
    return subprocess.run([sys.executable, "-m", "beepnet", "notify-test",
                           "--set", f"telegram.api_url={url}"],
                          env=env, capture_output=True, text=True, timeout=60)


def test_wrong_url_and_wrong_token_are_told_apart(tg, plain_http, tmp_path, caplog):
    from beepnet.doctor import check_telegram

    bad_token = "987654321:" + "Q" * 35
    cases = [(plain_http, DEFAULT_TOKEN, "is not a Bot API server"),
             (tg.url + "/wrong/prefix", DEFAULT_TOKEN, "is not a Bot API server"),
             (tg.url, bad_token, "rejected the bot token")]
    for url, token, expected in cases:
        r = _notify_test(url, token)
        assert r.returncode == 1 and expected in r.stdout, (url, r.stdout + r.stderr)
        assert "Traceback" not in r.stderr and "Q" * 35 not in r.stdout + r.stderr
        check = check_telegram(SimpleNamespace(telegram=tg_config(url, token)))
        assert check.ok is False and expected in check.detail, (url, check)
    # The daemon's log says it too.
    caplog.set_level(logging.ERROR)
    n = Notifier(tmp_path / "a", tmp_path / "o", cooldown_minutes=0,
                 telegram=tg_config(plain_http), retry_initial_seconds=0.1)
    n.start()
    try:
        n.message("start", "listening")
        assert wait_for(lambda: "is not a Bot API server" in caplog.text, 10), caplog.text
        assert "rejected the bot token" not in caplog.text
    finally:
        n.close(0.5)


# -- 4: a replay with messages left over ---------------------------------------------------

def test_replay_summary_tells_of_messages_left_in_the_outbox(tg, tmp_path):
    quiet = convert(np.zeros(SR * 4, np.float32), tmp_path / "quiet.wav")
    env = dict(os.environ, BEEPNET_TELEGRAM_TOKEN="987654321:" + "Q" * 35,
               BEEPNET_TELEGRAM_CHAT_ID=str(DEFAULT_CHAT_ID))
    r = subprocess.run([sys.executable, "-m", "beepnet", "run", "--source", str(quiet),
                        "--speed", "4", "--set", f"telegram.api_url={tg.url}",
                        "--set", f"storage.dir={tmp_path / 's'}"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    left = len(list((tmp_path / "s" / "outbox").glob("*.json")))
    assert left >= 1
    assert (f"{left} message(s) not sent to Telegram yet" in r.stdout
            and "the next `beepnet run` sends them" in r.stdout), r.stdout


# -- 5: limits and the delivery state the monitor shows ---------------------------------------

def test_set_aside_and_unreadable_files_are_within_the_limits(tmp_path):
    c = StepClock()
    box = Outbox(tmp_path, max_age_hours=1.0, max_mb=0.01, clock=c.clock)  # ~10 kB
    refused = box.put("beep", "refused", audio=b"x" * 3000)
    box.set_aside(refused, "Telegram refused the message: wrong file")
    (tmp_path / "broken.bad").write_bytes(b"y" * 3000)
    os.utime(tmp_path / "broken.bad", (c.w, c.w))
    c.run(2 * HOUR)
    assert box.expire() == []
    assert not (tmp_path / "rejected" / f"{refused.id}.json").exists()  # too old
    assert not (tmp_path / "rejected" / refused.audio).exists()
    assert not (tmp_path / "broken.bad").exists()
    # Beyond the size limit, what will never be sent goes before what is waiting.
    refused = box.put("beep", "refused", audio=b"x" * 4000)
    box.set_aside(refused, "Telegram refused the message: wrong file")
    c.run(60)
    waiting = box.put("beep", "waiting", audio=b"x" * 7000)
    assert box.expire() == []
    assert not (tmp_path / "rejected" / refused.audio).exists()
    assert [i.id for i in box.pending()] == [waiting.id]


def test_the_monitor_shows_each_alert_s_real_delivery_state(tg, tmp_path):
    c = StepClock(wall=time.time(), boot=1000.0)
    n = make_notifier(tmp_path, tg, outbox_max_age_hours=1.0, clock=c.clock)
    cfg = SimpleNamespace(audio=SimpleNamespace(gate_dbfs=-50.0),
                          storage=SimpleNamespace(outbox_dir=tmp_path / "outbox"),
                          telegram=SimpleNamespace(enabled=True),
                          origin=SimpleNamespace(path=None))
    pub = StatusPublisher(tmp_path / "status.json", cfg, "mic")
    n.start()
    try:
        sent, stale = det(), det(time.time() + 1)
        for d in (sent, stale):
            pub.on_detection(d.time, d.score, n.alert(d), "", n.delivery_of(d))
            if d is sent:
                wait_text(tg, "Beep at")
                tg.fail_always(502)  # the second cannot go out ...
        assert wait_for(lambda: n.delivery_of(stale)().startswith("retrying"), 10)
        c.run(2 * HOUR)  # ... until it is too old
        assert wait_for(lambda: n.delivery_of(stale)() == "expired", 10), n.delivery_of(stale)()
        pub.publish({}, force=True)
        status = read_status(tmp_path / "status.json")
        assert [d["delivery"] for d in status["detections"]] == ["sent", "expired"]
        assert sorted(delivery_states(status).values()) == ["expired", "sent"]
    finally:
        n.close(0.5)
    console = make_notifier(tmp_path / "c", None)
    d = det()
    console.alert(d)
    assert console.delivery_of(d)() == "logged"


# -- 6: clocks ------------------------------------------------------------------------------

def test_outbox_age_is_immune_to_wall_clock_steps(tmp_path):
    c = StepClock()
    box = Outbox(tmp_path, max_age_hours=48.0, clock=c.clock)
    item = box.put("beep", "fresh")
    c.w += 3 * 24 * HOUR                       # NTP sets the clock 3 days ahead
    c.b += 10
    assert box.age(item) == 10 and box.expire() == []
    c.w -= 3 * 24 * HOUR + HOUR                # then an hour behind
    c.b += 10
    assert box.age(item) == 20
    c.b += 49 * HOUR                           # not immortal either
    assert [i.id for i in box.expire()] == [item.id]
    # Across a reboot only the wall clock is left; backwards counts as no age at all.
    other = Outbox(tmp_path, max_age_hours=48.0, clock=Clock(wall=lambda: 1.7e9 - 2 * HOUR,
                                                             boot=lambda: 5.0,
                                                             boot_id="boot-b"))
    again = box.put("beep", "from the last boot")
    assert other.age(again) == 0.0
    # Items written before these fields existed still load, aged by the wall clock.
    (tmp_path / "19700101-000000-1-0000-start.json").write_text(json.dumps(
        {"id": "19700101-000000-1-0000-start", "kind": "start", "text": "old",
         "created": 1.7e9 - 3 * HOUR, "audio": None, "title": "", "attempts": 0,
         "extra": {}}))
    (old,) = [i for i in other.pending() if i.text == "old"]
    assert other.age(old) == HOUR


def test_cooldown_runs_on_the_monotonic_clock(tmp_path):
    n = make_notifier(tmp_path, None, cooldown_minutes=10)
    t = time.time()
    assert n.alert(det(t, mono=1000.0))
    assert n.alert(det(t - HOUR, mono=1000.0 + 700))            # the clock went back an hour
    assert not n.alert(det(t + 3 * 24 * HOUR, mono=1700.0 + 60))  # ... or 3 days ahead
    assert n.alert(det(t, mono=1700.0 + 70, scale=0.1))           # a replay at --speed 10
    # Old callers without the monotonic time: the wall clock, as before.
    n = make_notifier(tmp_path, None, cooldown_minutes=10)
    assert n.alert(det(t)) and not n.alert(det(t + 60)) and n.alert(det(t + 601))


_CHILD = r"""
import sys, time, logging
logging.basicConfig(level=logging.INFO)
from beepnet.config import TelegramConfig
from beepnet.messages import Chunk, Detection
from beepnet.notify.notifier import Notifier
root, url, chat, token = sys.argv[1:5]
n = Notifier(root + "/alerts", root + "/outbox", cooldown_minutes=0,
             telegram=TelegramConfig(token=token, chat_id=chat, api_url=url),
             retry_initial_seconds=0.1, retry_max_seconds=0.3)
n.start()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "alert":
        t, m = time.time(), time.monotonic()
        c = Chunk("", 0, t, 3.0, -20.0, start_mono=m)
        n.alert(Detection(c, 0.9, t, 1.0, "", "tone", mono=m))
        print("queued", flush=True)
    else:
        break
n.close(5)
"""


def test_a_real_notifier_under_stepped_wall_clock(tg, tmp_path):
    """libfaketime steps the wall clock the notifier sees (+3 days, then back 1 h) while an
    alert waits out an outage: it is delivered once, not dropped, not "delayed" by days."""
    clock = SteppedClock(tmp_path)
    env = clock.env(dict(os.environ))
    p = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path), tg.url,
                          str(DEFAULT_CHAT_ID), DEFAULT_TOKEN], env=env, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == "ready\n"
        for step in ("+3d", "-1h"):
            tg.clear()
            tg.fail_always(502)
            p.stdin.write("alert\n")
            p.stdin.flush()
            assert p.stdout.readline() == "queued\n"
            assert wait_for(lambda: len(tg.requests("sendMessage")) >= 2, 10)
            clock.set(step)
            time.sleep(1.5)  # retries, and expiry checks, on the stepped clock
            tg.recover()
            wait_text(tg, "Beep at")
            time.sleep(0.5)
            assert len([t for t in texts(tg) if "Beep at" in t]) == 1, texts(tg)
            assert not any("delayed" in t or "dropped" in t for t in texts(tg)), texts(tg)
        p.stdin.write("quit\n")
        p.stdin.flush()
        _, err = p.communicate(timeout=20)
        assert p.returncode == 0, err
        assert "Traceback" not in err and "expired" not in err
        assert list((tmp_path / "outbox").glob("*.json")) == []
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
