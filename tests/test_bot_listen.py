"""/listen and /missed on the virtual microphone: the real PyAudio records what is played,
a real `beepnet run` answers the fake Bot API server's updates (issue 15, item 3)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from beepnet.testing.fake_telegram import DEFAULT_CHAT_ID, DEFAULT_TOKEN, FakeTelegram
from beepnet.training import synth
from procs import LogReader, wait_for

pytestmark = pytest.mark.mic
SR = 16000
OWNER = DEFAULT_CHAT_ID


def tone_level(x: np.ndarray, freq: float) -> float:
    """Amplitude of a sine at ``freq`` in ``x``."""
    t = np.arange(len(x)) / SR
    return float(abs(np.dot(x, np.exp(-2j * np.pi * freq * t))) * 2 / len(x))


def text_replies(tg: FakeTelegram) -> list[str]:
    return [m["text"] for m in tg.messages(OWNER) if "text" in m]


def test_listen_sends_the_last_ten_seconds_and_missed_keeps_the_beep_it_missed(vmic, tmp_path):
    env = dict(vmic.env, BEEPNET_TELEGRAM_TOKEN=DEFAULT_TOKEN,
               BEEPNET_TELEGRAM_CHAT_ID=str(OWNER))
    env.pop("BEEPNET_CONFIG", None)
    storage = tmp_path / "state"
    with FakeTelegram(token=DEFAULT_TOKEN, chats={OWNER}) as tg:
        # A detector that hears nothing (threshold 1): the beep played is one it missed.
        p = subprocess.Popen(
            [sys.executable, "-m", "beepnet", "run", "--set", f"storage.dir={storage}",
             "--set", f"telegram.api_url={tg.url}", "--set", "detector.threshold=1"],
            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        log = LogReader(p)
        try:
            tg.wait_for("getUpdates", 1, timeout=60)  # listening, and receiving
            rng = np.random.default_rng(3)
            missed = synth.mix(synth.washer(rng, 6.0), synth.beep(2900.0, 0.5), 3.0, 0.0)
            # Then a tone under the silence gate (-50 dBFS): no chunk, but /listen hears it.
            hum = 0.002 * np.sin(2 * np.pi * 1000.0 * np.arange(5 * SR) / SR)
            vmic.play(np.concatenate([missed, hum]).astype(np.float32), rate=SR)
            tg.add_update(OWNER, "/listen")
            (req,) = tg.wait_for("sendAudio", 1, timeout=20)
            assert "what the microphone heard" in req.fields["caption"]
            clip, rate = sf.read(io.BytesIO(req.files["audio"][2]), dtype="float32")
            assert rate == SR and abs(len(clip) / SR - 10.0) < 0.2
            # Its last seconds are the quiet hum, its first ones the washer.
            assert abs(tone_level(clip[-3 * SR:], 1000.0) - 0.002) < 0.001
            assert np.std(clip[: 2 * SR]) > 0.01

            tg.add_update(OWNER, "/missed")
            assert wait_for(lambda: any("Kept" in t for t in text_replies(tg)), 15), \
                text_replies(tg)
            reply = next(t for t in text_replies(tg) if "Kept" in t)
            folders = list((storage / "feedback" / "unsure").iterdir())
            assert len(folders) == 1 and str(folders[0]) in reply
            assert "beepnet label --unsure\n" in reply and "beepnet train --feedback" in reply
            clips = sorted(folders[0].glob("*.wav"))
            assert f"Kept {len(clips)} clip(s)" in reply
            # The washer's 6 s in 3-s chunks, kept once (no hum: it never passed the gate),
            # and the missed beep is in one of them.
            assert 3 <= len(clips) <= 6, clips
            beep = max(tone_level(sf.read(c, dtype="float32")[0], 2900.0) for c in clips)
            whole = tone_level(missed[int(1.5 * SR): int(4.5 * SR)], 2900.0)  # 3 s around it
            assert beep > 0.6 * whole, (beep, whole)
        finally:
            p.send_signal(signal.SIGTERM)
            out, _ = p.communicate(timeout=20)
            log._t.join(5)
        assert p.returncode == 0, log.text
        assert "Traceback" not in log.text
        assert "ALERT" not in log.text  # it really was missed


def test_listen_without_audio_says_why(vmic, tmp_path):
    """The microphone gone: /listen answers in one line instead of hanging."""
    env = dict(vmic.env, BEEPNET_TELEGRAM_TOKEN=DEFAULT_TOKEN,
               BEEPNET_TELEGRAM_CHAT_ID=str(OWNER))
    env.pop("BEEPNET_CONFIG", None)
    with FakeTelegram(token=DEFAULT_TOKEN, chats={OWNER}) as tg:
        p = subprocess.Popen(
            [sys.executable, "-m", "beepnet", "run", "--set", f"storage.dir={tmp_path}",
             "--set", f"telegram.api_url={tg.url}"],
            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        log = LogReader(p)
        try:
            tg.wait_for("getUpdates", 1, timeout=60)
            vmic.stop()
            assert wait_for(lambda: "microphone lost" in log.text, 20), log.text
            tg.add_update(OWNER, "/listen")
            assert wait_for(lambda: any("Cannot listen" in t for t in text_replies(tg)), 15), \
                text_replies(tg)
            assert not tg.requests("sendAudio")
            vmic.restart()
        finally:
            p.send_signal(signal.SIGTERM)
            p.communicate(timeout=20)
            log._t.join(5)
        assert p.returncode == 0, log.text
        assert "Traceback" not in log.text
