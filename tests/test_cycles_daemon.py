"""Whole washing cycles through the real daemon (issue 16): generated cycles (fill, wash with
rests, drains, spins, a long soak; someone talking before, a radio after) replayed by
`beepnet run --source` 20 times faster than real time, with the real python-telegram-bot
against the fake Bot API server. Every state change is reported once, at the right time
(the beep within one hop, the rest within a minute), and a pause shorter than
cycle.quiet_minutes is not a stop.

The cycle settings are scaled down with the cycles (10-12 minutes instead of 1-3 hours):
start after 0.5 min of machine sound, pauses from 0.3 min, stopped after 2 min of quiet.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from beepnet.testing.cycles import cached, programme
from beepnet.testing.fake_telegram import DEFAULT_CHAT_ID, DEFAULT_TOKEN, FakeTelegram
from procs import REPO

SPEED = 20
HOP = 1.5
QUIET_MIN = 2.0
SCALED = ("--set", "cycle.start_minutes=0.5", "--set", "cycle.start_window_minutes=1.5",
          "--set", "cycle.pause_minutes=0.3", "--set", f"cycle.quiet_minutes={QUIET_MIN}",
          "--set", "cycle.late_beep_minutes=4", "--set", "cycle.tell_start=true")
EVENT = re.compile(r"cycle: (?P<what>[a-z ,]+?) at \S+ \((?P<at>[\d.]+) s into the recording\)"
                   r"(?:; its sound began at \S+ \((?P<began>[\d.]+) s)?"
                   r"(?:; last sound at \S+ \((?P<last>[\d.]+) s)?")


def replay(tmp_path, wav) -> tuple[list[dict], list[dict], FakeTelegram, str]:
    """Run the daemon over ``wav``: (cycle events from its log, the history, Telegram)."""
    storage = tmp_path / "s"
    env = dict(os.environ, BEEPNET_TELEGRAM_TOKEN=DEFAULT_TOKEN,
               BEEPNET_TELEGRAM_CHAT_ID=str(DEFAULT_CHAT_ID))
    with FakeTelegram(token=DEFAULT_TOKEN, chats={DEFAULT_CHAT_ID}) as tg:
        r = subprocess.run(
            [sys.executable, "-m", "beepnet", "run", "--source", str(wav), "--speed",
             str(SPEED), "--set", f"telegram.api_url={tg.url}", "--set",
             f"storage.dir={storage}", "--set", "notify.retry_initial_seconds=0.1", *SCALED],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr
    events = [dict(m.groupdict()) for m in EVENT.finditer(r.stderr)]
    hist = subprocess.run([sys.executable, "-m", "beepnet", "history", "--json", "--set",
                           f"storage.dir={storage}"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert hist.returncode == 0, hist.stderr
    return events, json.loads(hist.stdout), tg, r.stderr


def texts(tg: FakeTelegram) -> list[str]:
    return [m.get("text") or m.get("caption") or "" for m in tg.messages(DEFAULT_CHAT_ID)]


@pytest.fixture(scope="module")
def cycles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cycles")
    soak = programme(np.random.default_rng(11), minutes=11.0, long_pause_minutes=1.2,
                     room=False)
    silent = programme(np.random.default_rng(12), minutes=9.0, beep=False, tail_s=200.0,
                       room=False)
    return {"soak": (soak, cached(soak, folder, seed=11)),
            "silent": (silent, cached(silent, folder, seed=12))}


def test_a_cycle_with_a_soak_is_started_and_finished_once_and_never_stopped(tmp_path, cycles):
    script, wav = cycles["soak"]
    events, history, tg, log = replay(tmp_path, wav)
    what = [e["what"] for e in events]
    assert what == ["started", "finished"], (what, log[-3000:])
    started, finished = events
    # Started: its sound began within a minute of the machine's; told after start_minutes.
    assert abs(float(started["began"]) - script.machine_start) <= 60, (started, script)
    assert float(started["at"]) <= script.machine_start + 0.5 * 60 + 60
    # Finished: at the beep, within a hop.
    assert abs(float(finished["at"]) - script.beep_at) <= HOP, (finished, script.beep_at)
    # The owner heard each once: the start, then the alert with the clip.
    said = texts(tg)
    assert sum(t.startswith("Washer started at ") for t in said) == 1, said
    assert sum(t.startswith("Washer finished at ") for t in said) == 1, said
    assert not [t for t in said if "went quiet" in t or "No beep yet" in t], said
    (cycle,) = history
    assert cycle["outcome"] == "beeped" and cycle["alert_at"]
    assert abs(cycle["duration"] - (script.beep_at - script.machine_start)) <= 60, cycle
    names = [p["name"] for p in cycle["phases"]]
    # The soak is a pause of its own; the cycle ends spinning, then the quiet before the
    # beep (longer than pause_minutes or not).
    soak = next(s for s in script.segments if s[0] == "pause")
    pauses = [p for p in cycle["phases"] if p["name"] == "pause"]
    assert any(abs((p["end"] - p["start"]) - (soak[2] - soak[1])) <= 20 for p in pauses), \
        (pauses, soak)
    assert "spinning" in names and "washing" in names, names
    assert names[0] == "washing", names
    spin_s = sum(p["end"] - p["start"] for p in cycle["phases"] if p["name"] == "spinning")
    true_spin = sum(e - s for k, s, e in script.segments if k == "spinning")
    assert 0.6 * true_spin <= spin_s <= 1.5 * true_spin, (spin_s, true_spin)


def test_a_cycle_without_a_beep_is_said_stopped_once_after_the_quiet(tmp_path, cycles):
    script, wav = cycles["silent"]
    events, history, tg, log = replay(tmp_path, wav)
    what = [e["what"] for e in events]
    assert what == ["started", "stopped without a beep"], (what, log[-3000:])
    started, stopped = events
    assert abs(float(started["began"]) - script.machine_start) <= 60, (started, script)
    # Said quiet_minutes after the machine's last sound, and that sound dated right.
    assert abs(float(stopped["last"]) - script.machine_end) <= 60, (stopped, script)
    assert abs(float(stopped["at"]) - (script.machine_end + QUIET_MIN * 60)) <= 60, stopped
    said = texts(tg)
    (quiet,) = [t for t in said if "went quiet" in t]
    assert "without its end beep" in quiet
    (m,) = [m for m in tg.messages(DEFAULT_CHAT_ID) if "went quiet" in m.get("caption", "")]
    assert [b["text"] for row in m["reply_markup"]["inline_keyboard"] for b in row] == \
        ["🧺 Emptied"]
    # With it, the machine's last minute of sound: the spin that ended the cycle, loud
    # throughout (kept when it fell quiet; the recorder's ring had let it go since).
    (audio,) = [r.files["audio"][2] for r in tg.requests("sendAudio")
                if "went quiet" in r.fields.get("caption", "")]
    pcm, rate = sf.read(io.BytesIO(audio), dtype="float32")
    assert rate == 16000 and 45 <= len(pcm) / rate <= 70, len(pcm) / rate
    seconds = np.abs(pcm[: len(pcm) // rate * rate]).reshape(-1, rate).max(axis=1)
    assert (seconds > 0.01).mean() >= 0.9, seconds
    assert sum(t.startswith("Washer started at ") for t in said) == 1, said
    assert not [t for t in said if t.startswith("Washer finished")], said
    (cycle,) = history
    assert cycle["outcome"] == "stopped" and cycle["alert_at"] is None
    assert abs(cycle["duration"] - (script.machine_end - script.machine_start)) <= 60, cycle
