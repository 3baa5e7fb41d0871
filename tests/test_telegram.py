"""Telegram alerts end to end: real `beepnet` processes, the real python-telegram-bot client,
and a fake Bot API server on 127.0.0.1 that records every request and fails on demand."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from beepnet.testing.fake_telegram import DEFAULT_CHAT_ID, DEFAULT_TOKEN, FakeTelegram
from procs import beepnet_children, wait_for
from signals import SR, convert, washer_with_beeps

TOKEN_SECRET = DEFAULT_TOKEN.split(":", 1)[1]


@pytest.fixture
def tg():
    with FakeTelegram(token=DEFAULT_TOKEN, chats={DEFAULT_CHAT_ID}, blocked={666}) as fake:
        yield fake


@pytest.fixture(scope="module")
def one_beep(tmp_path_factory) -> Path:
    x = washer_with_beeps([(3.0, 0.6, 3200.0)], 8.0, seed=4)
    return convert(x, tmp_path_factory.mktemp("tg") / "one.wav")


def env(**extra) -> dict:
    import os

    e = dict(os.environ, BEEPNET_TELEGRAM_TOKEN=DEFAULT_TOKEN,
             BEEPNET_TELEGRAM_CHAT_ID=str(DEFAULT_CHAT_ID))
    e.update(extra)
    return e


def run(tg: FakeTelegram, storage: Path, *args: str, e: dict | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "beepnet", "run", "--set", f"telegram.api_url={tg.url}",
         "--set", f"storage.dir={storage}", "--set", "notify.retry_initial_seconds=0.1", *args],
        env=e or env(), capture_output=True, text=True, timeout=timeout)


def start(tg: FakeTelegram, storage: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "beepnet", "run", "--set", f"telegram.api_url={tg.url}",
         "--set", f"storage.dir={storage}", "--set", "notify.retry_initial_seconds=0.1", *args],
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def decode_mp3(data: bytes) -> np.ndarray:
    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == SR
    return audio


def peak_hz(audio: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(len(audio), 1 / SR)
    band = freqs > 1000
    return float(freqs[band][np.argmax(spec[band])])


def assert_no_token(*texts: str) -> None:
    for t in texts:
        assert TOKEN_SECRET not in t


def test_alerts_carry_an_mp3_of_the_beep(tg, tmp_path):
    x = washer_with_beeps([(3.0, 0.6, 3200.0), (14.0, 0.5, 2100.0)], 20.0, seed=9)
    src = convert(x, tmp_path / "two.flac", 44100)
    r = run(tg, tmp_path / "s", "--source", str(src), "--speed", "10",
            "--set", "notify.cooldown_minutes=0", "-v")
    assert r.returncode == 0, r.stderr
    messages = tg.requests("sendMessage")
    assert "listening" in messages[0].fields["text"]
    audios = tg.requests("sendAudio")
    assert len(audios) == 2
    assert audios[0].time > messages[0].time  # "listening" went first
    for req, freq in zip(audios, (3200.0, 2100.0)):
        assert req.fields["chat_id"] == str(DEFAULT_CHAT_ID)
        # What it means for the cycle first, the beep's own line below.
        first, beep = req.fields["caption"].split("\n")
        assert first.startswith("Washer finished at ") or "beeped again" in first, first
        assert beep.startswith("Beep at ") and "score" in beep
        name, ctype, data = req.files["audio"]
        # An MPEG audio frame sync (11 set bits) starts the upload: a real MP3, not a WAV.
        assert name.endswith(".mp3") and data[0] == 0xFF and data[1] & 0xE0 == 0xE0
        audio = decode_mp3(data)
        assert 3.0 <= len(audio) / SR <= 10.5
        assert abs(peak_hz(audio) - freq) < 40
    assert list((tmp_path / "s" / "outbox").glob("*.json")) == []  # all delivered
    # The token is in the URL path by protocol, and nowhere else: not in any field, nor logs.
    for req in tg.requests():
        assert_no_token(json.dumps(req.fields))
    assert_no_token(r.stdout, r.stderr)


def test_500s_then_429_then_success_is_one_alert_after_five_attempts(tg, tmp_path, one_beep):
    tg.fail_next(3, 500, method="sendAudio")
    tg.fail_next(1, 429, retry_after=2, method="sendAudio")
    r = run(tg, tmp_path, "--source", str(one_beep), "--speed", "4")
    assert r.returncode == 0, r.stderr
    attempts = tg.requests("sendAudio")
    assert len(attempts) == 5
    assert [m["text"] if "text" in m else "audio" for m in tg.messages()].count("audio") == 1
    gap = attempts[4].time - attempts[3].time
    assert 2.0 <= gap < 2.8, gap  # retry_after honoured, not the (short) backoff
    assert "429" in r.stderr or "RetryAfter" in r.stderr
    assert_no_token(r.stderr)


def test_bad_request_is_not_retried(tg, tmp_path, one_beep):
    tg.fail_next(1, 400, description="Bad Request: wrong file", method="sendAudio")
    r = run(tg, tmp_path, "--source", str(one_beep), "--speed", "4")
    assert r.returncode == 0, r.stderr
    assert len(tg.requests("sendAudio")) == 1
    assert "Telegram refused the message" in r.stderr and "wrong file" in r.stderr.lower()
    assert len(list((tmp_path / "outbox" / "rejected").glob("*.json"))) == 1


def test_wrong_token_is_reported_and_the_alert_kept(tg, tmp_path, one_beep):
    bad = "987654321:" + "Z" * 35
    r = run(tg, tmp_path, "--source", str(one_beep), "--speed", "4",
            e=env(BEEPNET_TELEGRAM_TOKEN=bad))
    assert r.returncode == 0
    assert "rejected the bot token" in r.stderr
    assert "Z" * 35 not in r.stderr
    assert len(tg.requests()) == 1  # the first refusal pauses delivery: no hammering
    assert len(list((tmp_path / "outbox").glob("*.json"))) >= 2  # start message + alert


def test_alert_survives_kill_9_during_an_outage(tg, tmp_path, one_beep):
    tg.fail_always(502)
    p = start(tg, tmp_path, "--source", str(one_beep), "--speed", "1")
    kids = beepnet_children(p.pid)
    # The alert is queued (behind "listening", which is being retried): kill -9 now.
    assert wait_for(lambda: any((tmp_path / "outbox").glob("*-beep.json")), 20)
    tg.wait_for(None, count=3, timeout=10)
    p.kill()
    p.wait(5)
    assert wait_for(lambda: not any(Path(f"/proc/{k}").exists() for k in kids.values()), 5)
    (item,) = [json.loads(f.read_text()) for f in (tmp_path / "outbox").glob("*-beep.json")]
    assert item["audio"] and (tmp_path / "outbox" / item["audio"]).stat().st_size > 1000
    # Pretend the outage lasted an hour, then the network comes back and beepnet restarts.
    path = tmp_path / "outbox" / f"{item['id']}.json"
    item["created"] -= 3600
    item["booted"] -= 3600  # its age is measured on the boot clock, not the wall clock
    path.write_text(json.dumps(item))
    tg.recover()
    tg.clear()
    quiet = convert(np.zeros(SR * 4, np.float32), tmp_path / "quiet.wav")
    r = run(tg, tmp_path, "--source", str(quiet), "--speed", "4")
    assert r.returncode == 0, r.stderr
    (sent,) = tg.requests("sendAudio")
    assert sent.fields["caption"].startswith("(delayed 1 h 0 min")
    assert abs(peak_hz(decode_mp3(sent.files["audio"][2])) - 3200) < 40
    assert list((tmp_path / "outbox").glob("*.json")) == []


def test_no_beep_yet_is_said_once_and_not_again_when_quiet(tg, tmp_path):
    rng = np.random.default_rng(2)
    from beepnet.training import synth

    x = np.concatenate([synth.washer(rng, 9.0), np.zeros(SR * 9, np.float32)])
    src = convert(x, tmp_path / "nobeep.wav")
    # A cycle starts after 3 s of washer; 6 s later, with no history to know its usual
    # length, "no beep yet"; the quiet after it is shorter than cycle.quiet_minutes.
    r = run(tg, tmp_path / "s", "--source", str(src), "--set", "cycle.no_beep_minutes=0.1",
            "--set", "cycle.start_minutes=0.05", "--set", "cycle.start_window_minutes=0.1",
            "--set", "cycle.pause_minutes=0.05", "--set", "cycle.quiet_minutes=0.25")
    assert r.returncode == 0, r.stderr
    texts = [m.fields["text"] for m in tg.requests("sendMessage")]
    timeouts = [t for t in texts if t.startswith("No beep yet")]
    assert len(timeouts) == 1, texts
    assert timeouts[0].startswith("No beep yet: the washer has been running for 0 min"), \
        timeouts[0]
    assert "last heard at " in timeouts[0]
    assert not [t for t in texts if "went quiet" in t], texts


def test_sigterm_sends_the_stop_message(tg, tmp_path, one_beep):
    long_src = convert(np.tile(washer_with_beeps([], 6.0, seed=1), 5), tmp_path / "long.wav")
    p = start(tg, tmp_path, "--source", str(long_src))
    tg.wait_for("sendMessage", count=1, timeout=20)  # "listening"
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    texts = [m.fields["text"] for m in tg.requests("sendMessage")]
    assert texts[-1] == "stopped listening"
    assert list((tmp_path / "outbox").glob("*.json")) == []


def notify_test(tg: FakeTelegram, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beepnet", "notify-test",
                           "--set", f"telegram.api_url={tg.url}"],
                          env=env(**extra), capture_output=True, text=True, timeout=60)


def test_notify_test_sends_a_message_and_a_clip(tg):
    r = notify_test(tg)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "token accepted" in r.stdout and "@beepnet_test_bot" in r.stdout
    (msg,) = tg.requests("sendMessage")
    assert "beepnet test message" in msg.fields["text"]
    (audio,) = tg.requests("sendAudio")
    assert abs(peak_hz(decode_mp3(audio.files["audio"][2])) - 2900) < 40


@pytest.mark.parametrize("extra, expected", [
    ({"BEEPNET_TELEGRAM_TOKEN": "987654321:" + "Y" * 35}, "rejected the bot token"),
    ({"BEEPNET_TELEGRAM_CHAT_ID": "424242"}, "chat 424242 not found"),
    ({"BEEPNET_TELEGRAM_CHAT_ID": "666"}, "may not write to chat 666"),
])
def test_notify_test_says_what_is_wrong(tg, extra, expected):
    r = notify_test(tg, **extra)
    assert r.returncode == 1
    assert expected in r.stdout, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "Y" * 35 not in r.stdout + r.stderr


def test_notify_test_when_the_network_is_down(tg):
    tg.stop()
    r = notify_test(tg)
    assert r.returncode == 1
    assert "cannot reach the Bot API" in r.stdout
    assert_no_token(r.stdout, r.stderr)
