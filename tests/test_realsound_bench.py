"""The real-sound evaluation (beepnet.bench.realsound) and the guards of the real-recording
fetcher it reads (beepnet.training.realsounds).

Nothing is downloaded: the library is a small folder this file writes (tones for beeps,
low-passed noise for talk and music, thuds for clatter), laid out as `fetch` lays it out,
and the fetch guards run on a .deb built here with dpkg-deb. The shipped model's figures
are never asserted (the model changes); the tone detector's are, on signals whose answer is
known.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from beepnet.bench import realsound
from beepnet.bench.quality import negative_seconds
from beepnet.config import AudioConfig, DetectorConfig
from beepnet.detectors import load_detector
from beepnet.training import realsounds
from beepnet.training.realsounds import FetchError, Library

SR = 16000
REPO = Path(__file__).resolve().parents[1]
BAND = (1200.0, 5000.0)
"""Where the test's beeps are (1.48 and 2 kHz, and the sawtooth's harmonics) and nothing
in its backgrounds is."""
TINY = realsound.RealSettings(minutes=2.5, stream_s=30.0, slot_s=8.0, jitter_s=1.0, lead_s=2.0,
                              snr_db=(10.0, 20.0), seed=3)


def _write(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.asarray(x, np.float32), SR, subtype="PCM_16")


def _tone(hz: float, seconds: float, amp: float = 0.3, decay_s: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    env = np.exp(-t / decay_s) if decay_s else 1.0
    return (amp * env * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _lowpassed(rng: np.random.Generator, seconds: float, amp: float, hz: float = 700.0
               ) -> np.ndarray:
    """Noise with nothing above ``hz``: voice- and music-like loudness, no beep band."""
    n = int(seconds * SR)
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[np.fft.rfftfreq(n, 1 / SR) > hz] = 0
    x = np.fft.irfft(spec, n)
    return (amp * x / np.abs(x).max()).astype(np.float32)


def _band_rms(x: np.ndarray) -> float:
    spec = np.fft.rfft(np.asarray(x, np.float64))
    f = np.fft.rfftfreq(len(x), 1 / SR)
    spec[(f < BAND[0]) | (f > BAND[1])] = 0
    return float(np.sqrt(np.mean(np.fft.irfft(spec, len(x)) ** 2)))


def _make_library(root: Path) -> None:
    """A folder as `realsounds.fetch` writes it, with an index.csv listing it."""
    rng = np.random.default_rng(0)
    rows = []

    def add(rel: str, x: np.ndarray, kind: str, split: str, member: str, package: str = "pkg"):
        _write(root / rel, x)
        rows.append({"path": rel, "package": package, "member": member, "kind": kind,
                     "split": split, "licence": "test"})

    for i in range(6):
        add(f"wav/eval/speech/pkg/v{i}.wav", _lowpassed(rng, 0.5 + 0.2 * i, 0.3), "speech",
            "eval", f"usr/share/voices/a/v{i}.wav")
    add("wav/eval/music/pkg/m.wav", _lowpassed(rng, 40.0, 0.3), "music", "eval",
        "usr/share/music/m.ogg")
    for i in range(3):
        add(f"wav/eval/kitchen/pkg/k{i}.wav", _tone(120 + 40 * i, 0.4, 0.5, 0.08), "kitchen",
            "eval", f"usr/share/clatter/k{i}.wav")
    add("wav/eval/chime/pkg/ding.wav", _tone(2000, 0.5, 0.3, 0.2), "chime", "eval",
        "usr/share/sounds/ding.wav")
    # Train-split pieces: the bench must never use them.
    add("wav/train/chime/pkg/trainbell.wav", _tone(3300, 0.5), "chime", "train",
        "usr/share/sounds/trainbell.wav")
    add("wav/train/speech/pkg/trainvoice.wav", _lowpassed(rng, 1.0, 0.3), "speech", "train",
        "usr/share/voices/b/trainvoice.wav")
    # A sawtooth-lead note at MIDI 90 (1480 Hz) ringing for 2.4 s, and a train-split note.
    t = np.arange(int(2.4 * SR)) / SR
    saw = 0.3 * np.exp(-t / 0.8) * (2 * ((1480 * t) % 1.0) - 1)
    for rel, split in (("notes/eval/p081_n090.wav", "eval"), ("notes/train/p080_n090.wav",
                                                               "train")):
        _write(root / rel, saw)
        rows.append({"path": rel, "package": "fluid-soundfont-gm", "kind": "note",
                     "member": f"program {rel[-12:-9]} pitch 90", "split": split,
                     "licence": "MIT"})
    with open(root / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=("path", "package", "member", "kind", "split",
                                          "licence"))
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="module")
def lib_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("real")
    _make_library(root)
    return root


@pytest.fixture(scope="module")
def built(lib_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    return (work,) + realsound.build(Library(lib_dir), TINY, work)


# --------------------------------------------------------------------------------------
# realsounds.py: the library and the fetch guards
# --------------------------------------------------------------------------------------


def test_library_lists_a_split_and_its_notes(lib_dir, tmp_path):
    with pytest.raises(FetchError, match="realsounds fetch"):
        Library(tmp_path)
    lib = Library(lib_dir)
    assert {s.path.name for s in lib.sounds("eval", "chime")} == {"ding.wav"}
    assert {s.path.name for s in lib.sounds("train", ("chime", "speech"))} == {
        "trainbell.wav", "trainvoice.wav"}
    assert len(lib.sounds("eval")) == 11  # notes are not sounds
    (note,) = lib.notes("eval")
    assert (note.program, note.instrument, note.pitch) == (81, "sawtooth lead", 90)
    assert note.hz == pytest.approx(1480, abs=1)
    assert note.path.is_file()


def _manifest(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=realsounds.FIELDS)
        w.writeheader()
        w.writerows(rows)
    return path


def test_fetch_refuses_off_limits_packages(tmp_path):
    row = {"package": "espeak-ng-data", "version": "1.51", "licence": "GPL",
           "member": "usr/share/x.wav", "sha256": "0" * 64, "kind": "speech", "split": "eval"}
    manifest = _manifest(tmp_path / "m.csv", [row])
    with pytest.raises(FetchError, match="off-limits package.*espeak-ng-data"):
        realsounds.fetch(tmp_path / "out", manifest=manifest, notes=False)
    assert not (tmp_path / "out" / "debs").exists()
    # The download itself refuses too, whatever list asks for it.
    with pytest.raises(FetchError, match="off limits"):
        realsounds._download(("sound-theme-freedesktop", "0.8-2"), tmp_path / "debs")
    assert not (tmp_path / "debs").exists()


def test_shipped_manifest_matches_the_sources_and_the_model_card():
    """data/real-sounds.csv is what `write-manifest` made from SOURCES: every package at
    the version and licence SOURCES names, none off limits, no file in both splits, and
    the model card lists each package with that licence (the card is how users learn
    what the model heard)."""
    rows = realsounds.read_manifest()
    sources = {s.package: s for s in realsounds.SOURCES}
    assert {r["package"] for r in rows} == set(sources)
    for r in rows:
        src = sources[r["package"]]
        assert (r["version"], r["licence"]) == (src.version, src.licence), r
        assert r["split"] in realsounds.SPLITS and len(r["sha256"]) == 64, r
    members = [(r["package"], r["member"]) for r in rows]
    assert len(members) == len(set(members))
    card = (Path(__file__).parents[1] / "models/README.md").read_text()
    for src in realsounds.SOURCES:
        assert f"| `{src.package}` | {src.version} | " in card, src.package
    # the evaluation split keeps its own packages or folders: none of its files trains
    train = {r["sha256"] for r in rows if r["split"] == "train"}
    assert not [r["member"] for r in rows if r["split"] == "eval" and r["sha256"] in train]


def test_fetch_checks_every_file_against_the_manifest(tmp_path):
    # A real .deb, already in DIR/debs as a download would leave it: fetch reuses it.
    pkg = tmp_path / "src"
    _write(pkg / "usr/share/sounds/bell.wav", _tone(2000, 0.3))
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN/control").write_text(
        "Package: test-bells\nVersion: 1:2.0-1\nArchitecture: all\n"
        "Maintainer: Test <t@example.org>\nDescription: bells for a test\n")
    root = tmp_path / "real"
    (root / "debs").mkdir(parents=True)
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(pkg),
                    str(root / "debs/test-bells_1%3a2.0-1_all.deb")], check=True,
                   capture_output=True)
    digest = hashlib.sha256((pkg / "usr/share/sounds/bell.wav").read_bytes()).hexdigest()
    row = {"package": "test-bells", "version": "1:2.0-1", "licence": "test",
           "member": "usr/share/sounds/bell.wav", "sha256": "f" * 64, "kind": "chime",
           "split": "eval"}
    with pytest.raises(FetchError, match="bell.wav is missing or differs from the manifest"):
        realsounds.fetch(root, manifest=_manifest(tmp_path / "bad.csv", [row]), notes=False)
    assert not (root / "index.csv").exists()

    row["sha256"] = digest
    realsounds.fetch(root, manifest=_manifest(tmp_path / "good.csv", [row]), notes=False)
    (bell,) = Library(root).sounds("eval", "chime")
    assert bell.package == "test-bells" and bell.member == row["member"]
    info = sf.info(bell.path)
    assert (info.samplerate, info.channels) == (SR, 1)
    assert info.duration == pytest.approx(0.3, abs=0.01)


def test_npm_and_pypi_packages_and_audio_sprites(tmp_path, monkeypatch):
    """An npm tarball with an audio sprite (one file of UI sounds cut by the JSON map
    beside it) and a PyPI wheel, in DIR/archives as a download leaves them: the manifest
    lists each sprite sound as its own member, and fetch cuts it out."""
    import tarfile
    import zipfile

    root = tmp_path / "real"
    (root / "archives").mkdir(parents=True)
    kit = tmp_path / "kit" / "package"
    sprite = np.concatenate([_tone(1500, 0.4), np.zeros(SR // 2, np.float32),
                             _tone(300, 0.2, decay_s=0.02), np.zeros(SR // 2, np.float32)])
    (kit / "sounds").mkdir(parents=True)
    sf.write(kit / "sounds/ui.ogg", sprite, SR, format="OGG", subtype="VORBIS")
    (kit / "sounds/ui.json").write_text(json.dumps({
        "resources": ["./sounds/ui.ogg"],
        "spritemap": {"done": {"start": 0, "end": 0.4, "loop": False},
                      "tap": {"start": 0.9, "end": 1.1, "loop": False}}}))
    (kit / "package.json").write_text('{"name": "@test/ui-kit"}')  # JSON, not a sprite map
    with tarfile.open(root / "archives" / "npm_@test+ui-kit_2.0.1.tgz", "w:gz") as t:
        t.add(kit, arcname="package")
    wav = tmp_path / "ding.wav"
    _write(wav, _tone(2500, 0.25))
    with zipfile.ZipFile(root / "archives" / "test_dings-0.3-py3-none-any.whl", "w") as z:
        z.write(wav, "test_dings/sounds/ding.wav")

    r = realsounds._r
    monkeypatch.setattr(realsounds, "SOURCES", (
        realsounds.Source("@test/ui-kit", "2.0.1", "MIT", registry="npm", rules=(
            r("chime", "train", "package/sounds/ui.ogg#done"),
            r("kitchen", "train", "package/sounds/ui.ogg#t*"))),
        realsounds.Source("test-dings", "0.3", "CC0", registry="pypi", rules=(
            r("single", "eval", "test_dings/sounds/*.wav"),))))
    manifest = tmp_path / "m.csv"
    assert realsounds.write_manifest(root, out=manifest) == 3
    rows = realsounds.read_manifest(manifest)
    assert [(x["registry"], x["member"], x["kind"]) for x in rows] == [
        ("npm", "package/sounds/ui.ogg#done", "chime"),
        ("npm", "package/sounds/ui.ogg#tap", "kitchen"),
        ("pypi", "test_dings/sounds/ding.wav", "single")]

    realsounds.fetch(root, manifest=manifest, notes=False)
    lib = Library(root)
    (done,) = lib.sounds("train", "chime")
    (tap,) = lib.sounds("train", "kitchen")
    (ding,) = lib.sounds("eval", "single")
    assert (done.package, done.licence, ding.package) == ("@test/ui-kit", "MIT", "test-dings")
    assert sf.info(done.path).duration == pytest.approx(0.4, abs=0.01)
    assert sf.info(tap.path).duration == pytest.approx(0.2, abs=0.01)
    x, _ = sf.read(done.path)
    spec = np.abs(np.fft.rfft(x))
    assert np.fft.rfftfreq(len(x), 1 / SR)[spec.argmax()] == pytest.approx(1500, abs=20)


def test_a_pypi_wheel_is_downloaded_by_pip_into_a_relative_folder(tmp_path, monkeypatch):
    """The real `pip download`, from a local wheel folder instead of PyPI (pip reads its
    settings from the environment), with the library folder given relative, as `make
    model` gives it."""
    import zipfile

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "test_dings-0.3-py3-none-any.whl", "w") as z:
        z.writestr("test_dings/__init__.py", "")
        z.writestr("test_dings-0.3.dist-info/METADATA",
                   "Metadata-Version: 2.1\nName: test-dings\nVersion: 0.3\n")
        z.writestr("test_dings-0.3.dist-info/WHEEL",
                   "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                   "Tag: py3-none-any\n")
        z.writestr("test_dings-0.3.dist-info/RECORD", "")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    got = realsounds._download(("test-dings", "0.3"), Path("build/real/archives"), "pypi")
    assert got == Path("build/real/archives/test_dings-0.3-py3-none-any.whl")
    assert got.is_file()
    # Downloaded once: the second call finds it without pip.
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nowhere"))
    assert realsounds._download(("test-dings", "0.3"), Path("build/real/archives"),
                                "pypi") == got
    with pytest.raises(FetchError, match=r"cannot download test-dings=0\.4 \(pypi\): ERROR"):
        realsounds._download(("test-dings", "0.4"), Path("build/real/archives"), "pypi")


def test_an_unreachable_registry_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(realsounds, "NPM_REGISTRY", "http://127.0.0.1:9")
    with pytest.raises(FetchError, match=r"cannot download ion-sound@3\.0\.7 \(npm\)"):
        realsounds._download(("ion-sound", "3.0.7"), tmp_path / "archives", "npm")
    assert not list((tmp_path / "archives").iterdir())  # no half-written tarball
    with pytest.raises(FetchError, match="unknown registry 'cpan'"):
        realsounds._download(("x", "1"), tmp_path / "archives", "cpan")


# --------------------------------------------------------------------------------------
# The streams
# --------------------------------------------------------------------------------------


def test_streams_hold_the_events_where_the_truth_says(built):
    work, folder, streams, missing = built
    kinds = [k for s in streams for k in s.beep_kinds]
    # The plan: 30 s per background (music as 15 s of music and 15 s of TV), one event
    # per 8-s slot, the four kinds taking turns.
    assert [(s.background, s.variant, s.seconds, len(s.events)) for s in streams] == [
        ("speech", "speech", 30.0, 3), ("music", "music", 15.0, 1), ("music", "tv", 15.0, 1),
        ("kitchen", "kitchen", 30.0, 3), ("machine", "machine", 30.0, 3),
        ("quiet", "quiet", 30.0, 3)]
    assert {k: kinds.count(k) for k in realsound.KINDS} == {
        "piezo": 4, "chime": 4, "melody": 3, "single": 3}
    assert missing == {}
    # No mallet notes in this library: every chime is the eval chime file; the rest are
    # played on the eval sawtooth lead. Nothing from the train split, nor the tone prompt.
    sources = [src for s in streams for src in s.sources]
    assert all(src == "file ding.wav" for s in streams
               for src, k in zip(s.sources, s.beep_kinds) if k == "chime")
    assert all(src.startswith("sawtooth lead") for s in streams
               for src, k in zip(s.sources, s.beep_kinds) if k != "chime")
    heard = {p for s in streams for p, _, _ in s.pieces}
    assert {p for p in heard if p.startswith("v")} == {f"v{i}.wav" for i in range(6)}
    assert "m.wav" in heard and heard & {"k0.wav", "k1.wav", "k2.wav"}
    assert not heard & {"trainvoice.wav", "trainbell.wav"}
    assert not any("train" in src for src in sources)

    for s in streams:
        x, rate = sf.read(folder / s.file, dtype="float32")
        assert rate == SR and len(x) == int(s.seconds * SR)
        starts = [a for a, _ in s.events]
        assert all(b - a >= TINY.slot_s - TINY.jitter_s for a, b in zip(starts, starts[1:]))
        levels = []
        for a, b in s.events:
            beep = _band_rms(x[int(a * SR):int(b * SR)])
            before = _band_rms(x[max(0, int((a - 1.0) * SR)):int(a * SR)])
            assert beep > 3 * before, (s.file, a, b, beep, before)
            levels.append(beep)
        if s.background == "machine":
            continue  # a washer's splashing and air noise do reach the beep band
        # Away from the events, nothing sounds in the beep band.
        busy = np.zeros(len(x), bool)
        for a, b in s.events:
            busy[max(0, int((a - 0.3) * SR)):int((b + 0.5) * SR)] = True
        frames = [x[i:i + SR // 10] for i in range(0, len(x) - SR // 10, SR // 10)
                  if not busy[i:i + SR // 10].any()]
        assert max(_band_rms(f) for f in frames) < 0.2 * min(levels), s.file


def test_streams_are_built_once_per_seed(built, lib_dir):
    work, folder, streams, _ = built
    stamp = (folder / streams[0].file).stat().st_mtime_ns
    again, same, _ = realsound.build(Library(lib_dir), TINY, work)
    assert again == folder and same == streams
    assert (folder / streams[0].file).stat().st_mtime_ns == stamp
    other = realsound.cache_key(realsound.RealSettings(**{**TINY.__dict__, "seed": 4}),
                                Library(lib_dir))
    assert other != folder.name.removeprefix("real-") and other.startswith("seed4-2.5min-")


def test_a_library_without_pieces_says_what_it_cannot_build(tmp_path):
    root = tmp_path / "real"
    _write(root / "wav/eval/chime/pkg/ding.wav", _tone(2000, 0.5, 0.3, 0.2))
    with open(root / "index.csv", "w") as f:
        f.write("path,package,member,kind,split,licence\n"
                "wav/eval/chime/pkg/ding.wav,pkg,ding.wav,chime,eval,test\n")
    kinds, backgrounds, why = realsound.buildable(realsound.pool_of(Library(root)))
    assert kinds == ["chime"] and backgrounds == ["machine", "quiet"]
    assert set(why) == {"piezo", "melody", "single", "speech", "music", "kitchen"}
    assert "sawtooth lead" in why["piezo"]
    (root / "index.csv").write_text("path,package,member,kind,split,licence\n")
    with pytest.raises(realsound.Unavailable, match="no eval beeps"):
        realsound.build(Library(root), TINY, tmp_path / "work")


# --------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------


def test_the_tone_detector_finds_every_event_and_nothing_else(built):
    """Beeps in the 1-5 kHz band over backgrounds with nothing there: a detector of tones in
    that band must find each event once and raise no false alarm but in the washer."""
    _, folder, streams, _ = built
    m = realsound.evaluate(load_detector(DetectorConfig(kind="tone")), streams, folder,
                           AudioConfig(), TINY.tolerance_s)
    assert m["recall_all"] == {"detected": 14, "events": 14, "recall": 1.0}
    assert {k: v["events"] for k, v in m["recall"].items()} == {
        "piezo": 4, "chime": 4, "melody": 3, "single": 3}
    for bg in ("speech", "music", "kitchen", "quiet"):
        assert m["false_alarms"][bg]["false_alarms"] == 0, (bg, m["false_alarm_list"])
    # Every hour counted lies away from the events: 30 s of each background, less 3 s (one
    # window) either side of each event.
    for bg in realsound.BACKGROUNDS:
        s = [x for x in streams if x.background == bg]
        want = sum(negative_seconds(x.seconds, x.events, 3.0) for x in s) / 3600
        assert m["false_alarms"][bg]["hours"] == pytest.approx(want)
        assert 0 < want < sum(x.seconds for x in s) / 3600


def test_recall_and_false_alarms_are_counted_per_event(tmp_path):
    """One stream of known content: two true events with a tone, one true event without,
    and a tone nobody put in the truth."""
    rng = np.random.default_rng(1)
    x = _lowpassed(rng, 60.0, 0.05)
    for at in (5.0, 20.0, 40.0):
        i = int(at * SR)
        x[i:i + int(0.3 * SR)] += _tone(2000, 0.3, 0.2)
    _write(tmp_path / "s.wav", x)
    truth = [(5.0, 5.3), (20.0, 20.3), (50.0, 50.3)]
    stream = realsound.RealStream(file="s.wav", background="kitchen", variant="kitchen",
                                  seconds=60.0, events=truth,
                                  beep_kinds=["piezo", "chime", "single"],
                                  sources=["sawtooth lead 84/84 x2 170 ms",
                                           "file usr__share__sounds__a.wav",
                                           "file usr__share__sounds__b.wav"])
    audio = AudioConfig()
    tone = load_detector(DetectorConfig(kind="tone"))
    m = realsound.evaluate(tone, [stream], tmp_path, audio, 0.25)
    assert m["recall"]["piezo"]["recall"] == 1.0 and m["recall"]["chime"]["recall"] == 1.0
    assert m["recall"]["single"] == {"detected": 0, "events": 1, "recall": 0.0}
    assert m["recall"]["melody"] == {"detected": 0, "events": 0, "recall": None}
    assert m["recall_all"]["recall"] == pytest.approx(2 / 3)
    # Real sound files apart (the chime caught, the single missed), instruments apart.
    assert m["recall_by_source"] == {"file": {"detected": 1, "events": 2, "recall": 0.5},
                                     "instrument": {"detected": 1, "events": 1,
                                                    "recall": 1.0}}
    assert m["recall_by_file"] == {"usr__share__sounds__a.wav": {"detected": 1, "events": 1,
                                                                 "recall": 1.0},
                                   "usr__share__sounds__b.wav": {"detected": 0, "events": 1,
                                                                 "recall": 0.0}}
    hours = (60.0 - 3 * (0.3 + 2 * audio.chunk_seconds)) / 3600
    assert m["false_alarms"]["kitchen"] == {"false_alarms": 1, "hours": pytest.approx(hours),
                                           "per_hour": pytest.approx(1 / hours)}
    assert m["false_alarms"]["speech"]["per_hour"] is None
    assert m["everyday"]["per_hour"] == pytest.approx(1 / hours)
    (alarm,) = m["false_alarm_list"]
    assert 39.5 <= alarm["start"] <= 40.5

    # A detector that never fires, beside the tone detector: the rows and the table.
    deaf = load_detector(DetectorConfig(kind="tone", threshold=1.0))
    deaf.threshold = 1.01
    quiet = realsound.evaluate(deaf, [stream], tmp_path, audio, 0.25)
    details = {"detectors": {"m": {**quiet, "label": "BeepNet (m)"},
                             "tone": {**m, "label": "tone detector"}}}
    rows = {r.measure: r for r in realsound.rows(details)}
    assert rows["event recall, BeepNet (m)"].value == 0.0
    assert rows["event recall, BeepNet (m)"].ok is False
    assert rows["false alarms / hour of everyday audio, BeepNet (m)"].value == 0.0
    assert rows["false alarms / hour of everyday audio, BeepNet (m)"].ok is True
    # No false alarm at all counts as one: 1 against "1", a lower bound, short of 10x.
    fewer = rows["fewer false alarms than the tone detector, BeepNet (m)"]
    assert (fewer.value, fewer.ok) == (1.0, False) and "≥" in fewer.note
    assert rows["event recall, tone detector"].target is None
    table = realsound.wide_table(details)
    assert table.splitlines()[2:] == [
        "| BeepNet (m) | 0.00 | 0.00 | — | 0.00 | 0.00 (0/2) | **0.000** (0/3) | — | — "
        "| 0.0 | — | — | **0.0** (0) |",
        "| tone detector | 1.00 | 1.00 | — | 0.00 | 0.50 (1/2) | **0.667** (2/3) | — | — "
        "| 87.6 | — | — | **87.6** (1) |"]
    assert "real sound files 0.50 (1 of 2)" in rows["event recall, tone detector"].note
    # The files a model caught least, by name; none for the tone detector.
    assert realsound.caught_least(details) == (
        "Real sound files BeepNet (m) caught in under half of their events: a (0 of 1), "
        "b (0 of 1).")
    assert realsound.caught_least(details, most=1).endswith("a (0 of 1) and 1 more.")


# --------------------------------------------------------------------------------------
# The commands
# --------------------------------------------------------------------------------------


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False)


def test_command_prints_one_table(lib_dir, tmp_path):
    out = tmp_path / "r.json"
    r = _run("-m", "beepnet.bench.realsound", "--real", str(lib_dir), "--work",
             str(tmp_path / "w"), "--minutes", "5", "--no-fetch", "--json", str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("| detector | recall piezo | recall chime | recall melody |")
    assert lines[2].startswith("| BeepNet (shipped model) |")
    assert lines[3].startswith("| tone detector |")
    details = json.loads(out.read_text())
    # 5 min: 60 s per background, room for one event per stream but in the 30-s music ones.
    assert details["set"]["events"] == {"piezo": 1, "chime": 1, "melody": 1, "single": 1}
    assert set(details["detectors"]) == {"shipped", "tone"}
    for m in details["detectors"].values():
        assert m["recall_all"]["events"] == 4
        assert 0 <= m["recall_all"]["recall"] <= 1
        assert m["everyday"]["hours"] == pytest.approx(
            sum(v["hours"] for v in m["false_alarms"].values()))


@pytest.mark.parametrize("args, status, words", [
    (["--minutes", "0"], 2, "--minutes must be positive"),
    (["--model", "/nonexistent/m.safetensors"], 2, "no such model file"),
    (["--real", "{tmp}/none", "--no-fetch"], 1, "no real recordings here"),
    (["--model", "{tmp}/junk.safetensors"], 1, "junk.safetensors"),
])
def test_command_bad_input_is_one_line(lib_dir, tmp_path, args, status, words):
    (tmp_path / "junk.safetensors").write_bytes(b"not a model")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = _run("-m", "beepnet.bench.realsound", "--real", str(lib_dir), "--work",
             str(tmp_path / "w"), "--no-fetch", *args)
    assert r.returncode == status, r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("beepnet:")]
    assert words in line and "Traceback" not in r.stderr
    assert r.stdout == "" and not (tmp_path / "w").exists()


def test_bench_puts_the_real_sound_table_first(lib_dir, tmp_path):
    out = tmp_path / "results"
    r = _run("-m", "beepnet.bench", "--quick", "--only", "realsound", "--real", str(lib_dir),
             "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    md = (out / "latest.md").read_text()
    assert md.index("Machine:") < md.index("## Real sounds") < md.index("| part | measure |")
    assert "| detector | recall piezo |" in md and "machine (a washer)" in md
    (js,) = out.glob("*.json")
    rows = [x for x in json.loads(js.read_text())["rows"] if x["section"] == "real sounds"]
    assert [x["measure"].split(",")[0] for x in rows] == [
        "event recall", "false alarms / hour of everyday audio",
        "fewer false alarms than the tone detector", "event recall",
        "false alarms / hour of everyday audio"]
    assert all(x["value"] is None or math.isfinite(x["value"]) for x in rows)
    assert [x["target"] is not None for x in rows] == [True, True, True, False, False]

    # Without the recordings (and a quick run never fetches): one line, the rest goes on.
    r = _run("-m", "beepnet.bench", "--quick", "--only", "realsound", "--real",
             str(tmp_path / "none"), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    md = (out / "latest.md").read_text()
    (line,) = [x for x in md.splitlines() if x.startswith("Real sounds")]
    assert line.startswith("Real sounds: not measured (") and "realsounds fetch" in line
    assert "## Real sounds" not in md
