"""The benchmark's smoke run: ``python -m beepnet.bench --quick`` must keep working.

Tiny sizes and a few seconds of live audio (about a minute in all), in a subprocess: the
benchmark imports torch, which must stay out of this process (test_detect checks its peak
memory). Only that every row is there with a sane number is checked, never a target: a slow
machine is a result, not a failure.
"""

from __future__ import annotations

import json
import math
import operator
import subprocess
import sys

from beepnet.bench import live
from beepnet.config import DetectorConfig
from beepnet.testing import mosquitto, vmic

SECTIONS = {"quality": 12, "speed": 14, "training": 13, "live": 37, "cycles": 5}
# (section, words in the measure) -> range a sane value falls in
SANE = [
    ("quality", "recall", 0.0, 1.0),
    ("quality", "precision", 0.0, 1.0),
    ("quality", "false alarms", 0.0, 1e5),
    ("speed", "throughput", 1.0, 1e6),
    ("speed", "inference", 0.01, 1000.0),
    ("speed", "command", 0.1, 1e6),
    ("speed", "refuses it in", 0.01, 60.0),
    ("speed", "peak RSS of that", 5.0, 4000.0),
    ("training", "training", 0.1, 1200.0),
    ("training", "recall", 0.0, 1.0),
    ("training", "false alarms", 0.0, 1e6),
    ("live", "CPU", 0.01, 100.0),
    ("live", "RSS", 10.0, 4000.0),
    ("live", "PSS", 5.0, 4000.0),
    ("live", "alert request", -1.0, 10.0),
    ("live", "clip", 0.0, 1.0),
    ("live", "alerts on every channel", 0.0, 100.0),
    ("cycles", "time-left error", 0.0, 100.0),
    ("cycles", "time-left estimate", 0.01, 1000.0),
]
OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt}


def test_quick_benchmark_writes_every_row(tmp_path):
    out = tmp_path / "results"
    r = subprocess.run([sys.executable, "-m", "beepnet.bench", "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "| part | measure | value | target |" in r.stdout
    (js,) = out.glob("*.json")
    report = json.loads(js.read_text())
    md = (out / "latest.md").read_text()
    assert report["machine"]["cpu"] and report["machine"]["python"] and report["machine"]["git"]
    assert report["settings"]["quick"] is True

    rows = report["rows"]
    assert {s: sum(x["section"] == s for x in rows) for s in SECTIONS} == SECTIONS, rows
    no_mic = vmic.available()
    channels = live.DAEMONS[live.CHANNELS][0]
    for row in rows:
        assert row["measure"] in md
        if row["skipped"]:
            # Only the live part may be skipped, and only where PulseAudio is missing (or,
            # for the daemon with every channel on, Mosquitto).
            assert row["section"] == "live" and (
                no_mic or (channels in row["measure"] and mosquitto.available())), row
            continue
        value = row["value"]
        if value is None:
            # Only where there was nothing to measure: precision without a detection, a
            # latency without an alert (the tone detector does catch the smoke run's beep).
            assert ("precision" in row["measure"] or ("alert" in row["measure"]
                                                      and "tone" not in row["measure"])), row
            continue
        assert math.isfinite(value), row
        lo, hi = next((lo, hi) for sec, words, lo, hi in SANE
                      if sec == row["section"] and words in row["measure"])
        assert lo <= value <= hi, row
        if row["target"]:
            assert row["ok"] == OPS[row["target"]["op"]](value, row["target"]["limit"]), row


def test_live_first_daemon_is_the_default():
    """The live part's first daemon is labelled the default and held to its targets: its
    settings must be the built-in defaults (what a new user runs)."""
    label, settings = live.DAEMONS[live.LiveSettings().detectors[0]]
    default = DetectorConfig()
    assert "default" in label
    assert set(settings) == {f"detector.kind={default.kind}",
                             f"detector.runtime={default.runtime}"}


def test_clip_share_finds_how_much_of_a_pattern_an_mp3_holds():
    """The live part's clip check: a clip of the whole pattern holds all of it; one cut
    after the third of five beeps holds what those three last."""
    from beepnet.notify.mp3 import encode_mp3

    audio, patterns, _ = live.signal_with_beeps(live.LiveSettings())
    beeps = next(p for p in patterns if len(p) == 5)
    sr = live.SR
    whole = encode_mp3(audio[int((beeps[0][0] - 2) * sr): int((beeps[-1][1] + 1) * sr)])
    cut = encode_mp3(audio[int((beeps[0][0] - 8) * sr): int(beeps[2][1] * sr)])
    assert live.clip_share(whole, audio, beeps) == 1.0
    three = sum(e - s for s, e in beeps[:3]) / sum(e - s for s, e in beeps)
    assert abs(live.clip_share(cut, audio, beeps) - three) < 0.01
    assert live.clip_share(b"not an mp3", audio, beeps) is None
