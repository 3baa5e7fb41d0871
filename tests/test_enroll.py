"""`beepnet enroll`, as an owner runs it: live on the PulseAudio virtual microphone (a beep
played after each prompt), from recordings, the comparison that keeps a worse model out,
switching back, and the refusals. Real processes, real files; about a minute together."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from beepnet.model.modelfile import read_header
from beepnet.training import synth
from procs import REPO, LogReader
from signals import shaky_blips

SR = 16000
PITCH = 2700.0
BEEPNET = Path(sys.executable).with_name("beepnet")
FORBIDDEN = ("torch", "pandas", "sklearn", "matplotlib")


def room(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A room with a fan running: steady broadband sound, no tone in the beep band."""
    return (synth.room(rng, seconds, level=0.003)
            + synth.fan(rng, seconds, level=0.01)).astype(np.float32)


def with_beeps(rng: np.random.Generator, seconds: float, at: list[float],
               pitch: float = PITCH, snr_db: float = 18.0) -> np.ndarray:
    x = room(rng, seconds)
    for t in at:
        x = synth.mix(x, synth.beep(pitch, 0.3), t, snr_db)
    return x


def write(path: Path, x: np.ndarray) -> Path:
    sf.write(path, x, SR)
    return path


def enroll(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The console script, as an owner types it; never a terminal (timed phases)."""
    return subprocess.run([str(BEEPNET), "enroll", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def detect(env: dict, *args: str) -> dict[str, list[dict]]:
    r = subprocess.run([sys.executable, "-m", "beepnet", "detect", "--json", *args], env=env,
                       capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert r.returncode == 0, r.stderr
    events: dict[str, list[dict]] = {}
    for line in r.stdout.splitlines():
        e = json.loads(line)
        events.setdefault(Path(e["file"]).name, []).append(e)
    return events


def detector_settings(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8")).get("detector", {})


def found_pitches(stdout: str) -> list[float]:
    return [float(m) for m in re.findall(r"\s(\d+)Hz\s", stdout)]


def build_seconds(stdout: str) -> float:
    m = re.search(r"^built \S+ in ([\d.]+) s$", stdout, re.M)
    assert m, stdout
    return float(m.group(1))


def one_error_line(r: subprocess.CompletedProcess, status: int = 1) -> str:
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("beepnet: enroll: "), r.stderr
    return lines[-1]


@pytest.mark.mic
def test_live_enrolment_on_the_virtual_microphone(vmic, tmp_path):
    """Three presses and 15 s of room, as prompted on stdout; the beeps are found, a model is
    built and put in use, and it then catches the same beep in a new recording and stays
    quiet through talk and music in that room."""
    state = tmp_path / "state"
    cfg = tmp_path / "beepnet.toml"
    cfg.write_text(f'# my settings\n[storage]\ndir = "{state}"\n\n'
                   '[detector]\nkind = "beepnet"  # the learned one\n', encoding="utf-8")
    rng = np.random.default_rng(14)
    # The room sounds all along, under the presses too.
    background = vmic.play(room(rng, 60.0), rate=SR, wait=False)
    beep = synth.beep(PITCH, 0.3, level=0.3)
    p = subprocess.Popen([sys.executable, "-m", "beepnet", "enroll", "--config", str(cfg),
                          "--presses", "3", "--press-seconds", "3", "--room-seconds", "15"],
                         env=vmic.env, cwd=REPO, text=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader = LogReader(p)
    watchdog = threading.Timer(120, p.kill)
    watchdog.start()
    out, prompts = [], 0
    try:
        for line in p.stdout:
            out.append(line)
            if line.startswith("Press a button on the machine now"):
                prompts += 1
                time.sleep(0.4)  # the owner reaches for the button
                vmic.play(beep, rate=SR, wait=False)
        p.wait(30)
    finally:
        watchdog.cancel()
        background.terminate()
        reader.join()
    stdout = "".join(out)
    assert p.returncode == 0, stdout + reader.text
    assert "Traceback" not in reader.text, reader.text
    assert prompts == 3, stdout
    assert "Now leave the room as it usually is: recording 15 s of ordinary sound" in stdout
    assert "found 3 beeps" in stdout, stdout
    assert all(abs(f - PITCH) < 0.02 * PITCH for f in found_pitches(stdout)), stdout
    # Well under a minute on a Pi 4, which is 5-10 times slower than this machine.
    assert build_seconds(stdout) < 15, stdout
    assert re.search(r"^new .*\n^in use .*beepnet-default", stdout, re.M), stdout

    models = list((state / "models").glob("enrolled-*.safetensors"))
    assert len(models) == 1, stdout
    header = read_header(models[0])
    assert "beep" in header.labels
    # The machine's pitch goes with the model: the detector then wants a tone there, made
    # as the machine makes it (its three beeps' timbre).
    assert header.meta["beep_pitches_hz"] == [pytest.approx(PITCH, rel=0.02)]
    assert header.meta["beep_timbre"][0]["beeps"] == 3, header.meta
    text = cfg.read_text(encoding="utf-8")
    assert "# my settings" in text and "# the learned one" in text, text
    assert detector_settings(cfg) == {"kind": "beepnet", "model": str(models[0])}
    kept = next((state / "enroll").iterdir())
    assert sorted(f.name for f in kept.glob("*.wav")) == [
        "press-1.wav", "press-2.wav", "press-3.wav", "room.wav"]
    assert sf.info(kept / "room.wav").duration == pytest.approx(15.0, abs=0.01)
    assert "beepnet enroll --use-shipped" in stdout
    assert "beepnet is not running: it will use the new model when it starts" in stdout

    # New recordings of that machine and room, scored through the config: what the daemon
    # loads when it starts (or reloads).
    rng = np.random.default_rng(41)
    new = write(tmp_path / "new_beep.wav", with_beeps(rng, 12.0, [5.2], snr_db=12.0))
    talk = write(tmp_path / "talk.wav", synth.mix(room(rng, 12.0), synth.speech_like(rng, 12.0),
                                                  0.0, 10.0))
    music = write(tmp_path / "music.wav", synth.mix(room(rng, 12.0),
                                                    synth.music_like(rng, 12.0), 0.0, 10.0))
    quiet = write(tmp_path / "quiet.wav", room(rng, 30.0))
    events = detect(vmic.env, "--config", str(cfg), str(new), str(talk), str(music),
                    str(quiet))
    assert list(events) == ["new_beep.wav"], events
    (ev,) = events["new_beep.wav"]
    assert ev["start"] == pytest.approx(5.2, abs=0.3), ev


def test_enrol_from_recordings_without_torch_then_switch_back(env, tmp_path):
    """File mode with the sound between the beeps as the room; the runtime install's
    packages only (no torch, pandas, scikit-learn); the user's config is created; then
    --use-shipped puts the shipped model back."""
    rng = np.random.default_rng(7)
    beeps = write(tmp_path / "washer beeps.wav",
                  with_beeps(rng, 40.0, [3.0, 11.0, 19.5, 27.0, 35.0]))
    r = enroll(dict(env, PYTHONPROFILEIMPORTTIME="1"), "--beeps", str(beeps))
    assert r.returncode == 0, r.stdout + r.stderr
    imported = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \| +(\S+)\s*$", r.stderr, re.M))
    assert "numpy" in imported and not imported & set(FORBIDDEN), imported & set(FORBIDDEN)
    assert "found 5 beeps in 40 s" in r.stdout, r.stdout
    assert re.search(r"^the beep at 2\d{3} Hz: at half the pitch .* \(over 5 beeps\)$",
                     r.stdout, re.M), r.stdout
    assert len(found_pitches(r.stdout)) == 5
    assert all(abs(f - PITCH) < 0.02 * PITCH for f in found_pitches(r.stdout)), r.stdout
    assert "no room recording: using the" in r.stdout

    home = Path(env["HOME"])
    user_cfg = home / ".config" / "beepnet" / "beepnet.toml"
    (model,) = (home / ".local" / "share" / "beepnet" / "models").glob("*.safetensors")
    assert detector_settings(user_cfg) == {"kind": "beepnet", "model": str(model)}
    assert read_header(model).meta["beep_pitches_hz"] == [pytest.approx(PITCH, rel=0.02)]
    info = subprocess.run([sys.executable, "-m", "beepnet", "model", "info", str(model)],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert re.search(r"^  beep pitches  2\d{3} Hz \(one machine's beep", info.stdout,
                     re.M), info.stdout
    assert re.search(r"^  beep timbre   2\d{3} Hz: at half the pitch .* \(over 5 beeps\)$",
                     info.stdout, re.M), info.stdout
    kept = next((home / ".local" / "share" / "beepnet" / "enroll").iterdir())
    found = json.loads((kept / "beeps.json").read_text())
    assert [round(b["start"]) for b in found] == [3, 11, 20, 27, 35]
    assert (kept / "sources.txt").read_text().strip() == str(beeps)

    r = enroll(env, "--use-shipped")
    assert r.returncode == 0, r.stderr
    assert detector_settings(user_cfg) == {"kind": "beepnet", "model": ""}
    assert model.exists()  # switching back deletes nothing


def test_a_worse_model_is_not_put_in_use_unless_forced(env, tmp_path):
    """The machine kept beeping while the 'room' was recorded: the new model learns its beep
    as ordinary sound, misses it on the held-out clips, and the shipped model stays in use;
    --force puts it in use all the same."""
    rng = np.random.default_rng(1)
    beeps = write(tmp_path / "beeps.wav", with_beeps(rng, 20.0, [2.0, 6.0, 10.0, 14.0, 18.0],
                                                     pitch=2500.0, snr_db=20.0))
    noisy = with_beeps(rng, 40.0, list(np.arange(0.5, 30.0, 1.0)), pitch=2500.0, snr_db=20.0)
    room_file = write(tmp_path / "room.wav", noisy)
    cfg = tmp_path / "beepnet.toml"
    cfg.write_text(f'[storage]\ndir = "{tmp_path / "state"}"\n', encoding="utf-8")
    before = cfg.read_text()

    r = enroll(env, "--config", str(cfg), "--beeps", str(beeps), "--room", str(room_file))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "warning: the room recording holds 30 beep(s) like yours" in r.stdout, r.stdout
    # Columns: name, model, threshold, beeps caught ("N of M"), ...
    new = re.search(r"^new\s+\S+\s+[\d.]+\s+(\d+) of (\d+)", r.stdout, re.M)
    current = re.search(r"^in use\s+\S+\s+[\d.]+\s+(\d+) of (\d+)", r.stdout, re.M)
    assert new and current, r.stdout
    assert int(new.group(1)) < int(current.group(1)), r.stdout
    assert r.stderr.strip().splitlines()[-1].startswith(
        "beepnet: enroll: kept the model in use: the new one makes more mistakes"), r.stderr
    assert cfg.read_text() == before
    assert len(list((tmp_path / "state" / "models").glob("*.safetensors"))) == 1

    r = enroll(env, "--config", str(cfg), "--beeps", str(beeps), "--room", str(room_file),
               "--force")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kept the model in use" not in r.stdout + r.stderr
    model = detector_settings(cfg)["model"]
    assert Path(model).parent == tmp_path / "state" / "models" and Path(model).is_file()


def test_a_piezo_whose_short_blips_shake_in_pitch(env, tmp_path):
    """Button blips of 90 ms whose pitch wobbles by 20 Hz, as a cheap piezo's do: enroll
    finds them (the tone detector's own tracker scores them 0), says that its pitch check
    allows the wobble, and the model file carries it."""
    rng = np.random.default_rng(3)
    x = room(rng, 40.0)
    for k, at in enumerate([3.0, 11.0, 19.5, 27.0, 35.0]):
        x = shaky_blips(x, at, count=3, seed=k)
    beeps = write(tmp_path / "blips.wav", x)
    cfg = tmp_path / "beepnet.toml"
    cfg.write_text(f'[storage]\ndir = "{tmp_path / "state"}"\n', encoding="utf-8")
    out = tmp_path / "blips.safetensors"
    r = enroll(env, "--config", str(cfg), "--beeps", str(beeps), "--model-out", str(out),
               "--force")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "found 15 beeps in 40 s" in r.stdout, r.stdout
    assert all(abs(f - 3721.0) < 0.02 * 3721.0 for f in found_pitches(r.stdout)), r.stdout
    m = re.search(r"^the beep's pitch wobbles more than most .* allows (\d+) Hz of wobble, "
                  r"not 5$", r.stdout, re.M)
    assert m and int(m.group(1)) > 5, r.stdout
    assert read_header(out).meta["beep_wobble_hz"] == int(m.group(1))


def radio(seed: int, seconds: float) -> np.ndarray:
    """The room with a radio on: music, and every 4 s a note at the beep's pitch with the
    beep's harmonics, ringing out as a piano's or a bell's does: the pitch and timbre check
    passes it, only the head's score tells it from the beep."""
    rng = np.random.default_rng(seed)
    x = room(rng, seconds) + synth.music_like(rng, seconds, level=0.02)
    for at in np.arange(1.0, seconds - 2.0, 4.0):
        note = synth.beep(PITCH, float(rng.uniform(0.4, 1.2)), attack_s=0.01, release_s=0.1)
        ring = np.exp(-np.arange(len(note)) / (float(rng.uniform(0.15, 0.6)) * SR))
        x = synth.mix(x, note * ring, float(at), 12.0)
    return x.astype(np.float32)


def test_notes_at_the_beeps_pitch_in_the_room_stay_under_the_threshold(env, tmp_path):
    """The room recording holds notes at the machine's pitch: enroll says so and puts the
    threshold above them, so another stretch of that radio raises no alert, while the
    beeps over music are all heard (at the threshold the timbre check usually allows, 0.7,
    some of that radio's notes alert)."""
    rng = np.random.default_rng(7)
    beeps = write(tmp_path / "beeps.wav", with_beeps(rng, 40.0, [3.0, 11.0, 19.5, 27.0, 35.0]))
    room_file = write(tmp_path / "radio.wav", radio(1, 120.0))
    cfg = tmp_path / "beepnet.toml"
    cfg.write_text(f'[storage]\ndir = "{tmp_path / "state"}"\n', encoding="utf-8")
    out = tmp_path / "radio.safetensors"
    r = enroll(env, "--config", str(cfg), "--beeps", str(beeps), "--room", str(room_file),
               "--model-out", str(out), "--force")
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"^(\d+) window\(s\) of the room recording hold a tone at the beep's "
                  r"pitch, with its timbre \(music\? another appliance\?\): the new model's "
                  r"threshold goes above them, as far as your beeps allow \(([\d.]+)\)$",
                  r.stdout, re.M)
    assert m and int(m.group(1)) > 0, r.stdout
    threshold = read_header(out).meta["threshold"]
    assert threshold > 0.7 and f"{threshold:.2f}" == m.group(2)

    rng = np.random.default_rng(8)
    over_music = room(rng, 40.0) + synth.music_like(rng, 40.0, level=0.02)
    for at in [3.0, 11.0, 19.5, 27.0, 35.0]:
        over_music = synth.mix(over_music, synth.beep(PITCH, 0.3), at, 18.0)
    write(tmp_path / "beeps over music.wav", over_music)
    write(tmp_path / "more radio.wav", radio(2, 120.0))
    events = detect(env, "--model", str(out), str(tmp_path / "beeps over music.wav"),
                    str(tmp_path / "more radio.wav"))
    assert "more radio.wav" not in events, events["more radio.wav"]
    heard = events["beeps over music.wav"]
    assert len(heard) == 5 and all(any(e["start"] <= at + 0.1 and at < e["end"] for e in heard)
                                   for at in [3.0, 11.0, 19.5, 27.0, 35.0]), heard


def test_refusals_are_one_line_and_an_exit_status(env, tmp_path):
    rng = np.random.default_rng(3)
    cfg = tmp_path / "beepnet.toml"
    cfg.write_text(f'[storage]\ndir = "{tmp_path / "state"}"\n', encoding="utf-8")
    c = ("--config", str(cfg))

    one = write(tmp_path / "one.wav", with_beeps(rng, 20.0, [8.0]))
    line = one_error_line(enroll(env, *c, "--beeps", str(one)))
    assert "found 1 beep in 20 s of one.wav: at least 2 are needed" in line

    junk = tmp_path / "notes.wav"
    junk.write_text("not audio\n")
    line = one_error_line(enroll(env, *c, "--beeps", str(junk)))
    assert f"{junk}: not an audio file" in line

    short = write(tmp_path / "short.wav", with_beeps(rng, 8.0, [2.0, 6.0]))
    line = one_error_line(enroll(env, *c, "--beeps", str(short)))
    assert re.search(r"only [\d.]+ s of room sound: at least 12 s are needed", line), line

    line = one_error_line(enroll(env, *c, "--set", "audio.device=no-such-microphone"))
    assert "input device" in line, line

    # Neither the config nor the state folder can be written (where a model is put in use
    # when the config is not ours to change): refused before anything is recorded.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    r = enroll(dict(env, XDG_CONFIG_HOME=str(blocker), XDG_DATA_HOME=str(blocker)),
               "--presses", "3")
    line = one_error_line(r)
    assert (f"cannot write config file {blocker}/beepnet/beepnet.toml (" in line
            and f"nor {blocker}/beepnet/models/in-use.json" in line), line
    assert "Press a button" not in r.stdout and "Stand by" not in r.stdout

    line = one_error_line(enroll(env, *c, "--presses", "1"), status=2)
    assert "--presses must be at least 2" in line
    line = one_error_line(enroll(env, *c, "--use-shipped", "--beeps", str(one)), status=2)
    assert "--use-shipped only switches back" in line
    assert cfg.read_text() == f'[storage]\ndir = "{tmp_path / "state"}"\n'
