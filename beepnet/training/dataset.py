"""Generated, labelled 3-s training clips for BeepNet (``beepnet synth OUT_DIR``).

Every clip is built from beepnet.training.synth: a background (washer phases, fan, quiet room,
speech-like babble, music-like notes, knocks, a door, near-silence), optionally a
foreground, then room reverberation, microphone colouring and a random level.

Classes (the directory names under OUT_DIR; "beep" is the positive):

- ``beep``: an appliance beep pattern (repeated, long, melody, single; random harmonics
  and envelope; 1-6 kHz) at a random position, possibly cut by a window edge (at least
  100 ms of it inside), over any background at -5..30 dB SNR.
- ``washer``, ``speech``, ``music``: that background alone.
- ``tonal``: hard negatives, tones that are not beeps: whistles (gliding by 25-80 % of
  their pitch), warbles (+-8-20 % vibrato), short pings (< 30 ms), a steady whine through
  the whole window.
- ``other``: fan, room tone, knocks, a door, near-silence.

The ``user`` preset stands for one user's first labelled set instead: one appliance
whose beep pattern is fixed by ``appliance`` (a number; default the seed), one room and
microphone, about 6 % beep chunks, and the folder names of a first hand labelling
(``beep``, ``washing``, ``spinning``, ``human``, ``not_beep``). Another seed with the same
appliance gives new recordings of the same beep: a held-out set for that user.

The ``real`` preset (``beepnet synth --preset real --real DIR``, what `make model` uses)
mixes in real recordings (beepnet.training.realmix): real talk, music, TV and clatter as
backgrounds, and chimes, tunes and beeps from real sampled instruments and UI sounds.

Clips come in groups of 5 sharing a "room" (reverb and microphone settings); the
group is in the file name, ``s<seed>g<group>_<index>.wav``, so a split can keep a group
on one side. Clip i depends only on (seed, i), so workers change nothing.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile as sf

from . import realmix, synth

log = logging.getLogger(__name__)

SR = synth.SR
CLIP_S = 3.0
LABELS = ("beep", "washer", "speech", "music", "tonal", "other")
GROUP_SIZE = 5
MIN_BEEP_INSIDE_S = 0.1

# Class shares of a generated set; the "heldout" preset differs on purpose (more
# negatives, lower SNRs, more reverb) so that it tests generalisation, not memory.
PRESETS = {
    "train": {"shares": {"beep": 0.36, "washer": 0.14, "speech": 0.10, "music": 0.12,
                         "tonal": 0.14, "other": 0.14},
              "snr_db": (-5.0, 30.0), "reverb_p": 0.5, "rt60_s": (0.1, 0.7)},
    # Generated and real audio (beepnet.training.realmix): more negatives, since real talk,
    # music and clatter are where false alarms come from.
    "real": {"shares": {"beep": 0.32, "washer": 0.10, "speech": 0.17, "music": 0.18,
                        "tonal": 0.10, "other": 0.13},
             "snr_db": (-5.0, 30.0), "reverb_p": 0.5, "rt60_s": (0.1, 0.7),
             # More single long beeps: among real talk and singing (steady sung notes are
             # negatives), a model that saw few of them learned to reject long steady
             # tones at the pitches the singers held (3.09 kHz: 0 of 25 of one machine's
             # 1.6-s beeps caught).
             "patterns": {"repeat": 0.38, "long": 0.30, "melody": 0.20, "single": 0.12}},
    "heldout": {"shares": {"beep": 0.25, "washer": 0.20, "speech": 0.12, "music": 0.13,
                           "tonal": 0.15, "other": 0.15},
                "snr_db": (-5.0, 20.0), "reverb_p": 0.7, "rt60_s": (0.2, 0.9)},
}
# One user's home: their machine's beep in the chunks `beepnet record` kept from a few cycles.
USER_PRESET = {"shares": {"beep": 0.0625, "washing": 0.42, "spinning": 0.2, "human": 0.14,
                          "not_beep": 0.1775},
               "snr_db": (0.0, 30.0), "reverb_p": 1.0, "rt60_s": (0.2, 0.6)}
_USER_BACKGROUNDS = {"washing": ("wash", "drain"), "spinning": ("spin",), "human": ("speech",),
                     "not_beep": ("room", "fan", "knock", "door", "music", "silence"),
                     # the end-of-cycle beep: over the last spin, the drain, a quiet room or talk
                     "beep": ("spin", "drain", "room", "room", "speech", "door", "silence")}
PRESETS["user"] = USER_PRESET
BACKGROUNDS = ("wash", "drain", "spin", "fan", "room", "speech", "music", "knock", "door",
               "silence")
_BG_CLASS = {"wash": "washer", "drain": "washer", "spin": "washer", "speech": "speech",
             "music": "music", "fan": "other", "room": "other", "knock": "other",
             "door": "other", "silence": "other"}


@dataclass
class ClipInfo:
    """One manifest row."""

    file: str
    label: str
    group: str
    background: str
    foreground: str = ""
    snr_db: float = float("nan")
    level_dbfs: float = float("nan")
    beep_start: float = float("nan")
    beep_end: float = float("nan")
    reverb_rt60: float = 0.0
    splice: str = ""
    """"onset"/"offset" when the background starts/stops inside the clip ("...-zero":
    against digital silence, as in the zero-padded last window of a recording)."""


def _background(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    dur = n / SR
    if kind in ("wash", "drain", "spin"):
        x = synth.washer(rng, dur, phase=kind)
    elif kind == "fan":
        x = synth.fan(rng, dur)
    elif kind == "speech":
        x = synth.speech_like(rng, dur)
    elif kind == "music":
        x = synth.music_like(rng, dur)
    elif kind in ("knock", "door"):
        x = synth.room(rng, dur, level=rng.uniform(0.0005, 0.003))
        ev = synth.knock(rng) if kind == "knock" else synth.door(rng)
        at = rng.uniform(-0.1, dur - 0.2)
        x = synth.mix(x, ev, at, rng.uniform(10, 40))
    elif kind == "silence":
        x = synth.room(rng, dur, level=1e-5)  # an idle microphone's faint self-noise
    else:
        x = synth.room(rng, dur, level=rng.uniform(0.0005, 0.003))
    return np.asarray(x[:n], np.float32)


SPLICE_P = 0.3


def _splice_quiet(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Sometimes let the background start or stop inside the clip.

    Sounds begin and end after quiet: the washer starts, water runs, the recording
    ends. A model that only saw steady backgrounds takes such an edge for a beep's sharp
    onset, so ~30 % of clips get one: the background against a much quieter room tone
    (30-60 dB down) or digital silence, switched over within 5-100 ms.
    """
    if rng.random() >= SPLICE_P:
        return x, ""
    n = len(x)
    rms = float(np.sqrt(np.mean(x ** 2))) or 1e-6
    zero = rng.random() < 0.25
    quiet = (np.zeros(n, np.float32) if zero else
             synth.set_rms(synth.room(rng, n / SR), rms * 10 ** (-rng.uniform(30, 60) / 20)))
    cut = int(rng.uniform(0.3, CLIP_S - 0.3) * SR)
    fade = max(1, int(rng.uniform(0.005, 0.1) * SR))
    ramp = np.clip((np.arange(n) - cut) / fade + 0.5, 0.0, 1.0).astype(np.float32)
    onset = rng.random() < 0.5
    if not onset:
        ramp = 1.0 - ramp
    kind = ("onset" if onset else "offset") + ("-zero" if zero else "")
    return (x[:n] * ramp + quiet[:n] * (1 - ramp)).astype(np.float32), kind


PATTERN_SHARES = {"repeat": 0.45, "long": 0.15, "melody": 0.25, "single": 0.15}
"""How often each beep pattern is drawn, unless a preset says otherwise ("patterns")."""


def _random_beeps(rng: np.random.Generator, end_of_cycle: bool = False,
                  shares: dict[str, float] | None = None
                  ) -> tuple[np.ndarray, list[tuple[float, float]], str]:
    """A beep pattern with random harmonics and envelope; returns audio, note times, kind.

    ``end_of_cycle``: only the patterns a machine plays when it is done (no single chirp).
    ``shares``: of each pattern (default PATTERN_SHARES).
    """
    if end_of_cycle:
        kind = str(rng.choice(["repeat", "long", "melody"], p=[0.55, 0.15, 0.3]))
    else:
        shares = shares or PATTERN_SHARES
        kind = str(rng.choice(list(shares), p=list(shares.values())))
    if kind == "single":  # one beep: a key press, a "ready" chirp, a lone end-of-cycle tone
        notes = [(0.0, float(np.exp(rng.uniform(np.log(1000), np.log(6000)))),
                  rng.uniform(0.06, 0.8))]
    else:
        notes = synth._PATTERNS[kind](rng)  # (start_s, freq_hz, duration_s)
    shape = rng.integers(3)
    if shape == 0:
        harm = synth.PIEZO_HARMONICS
    elif shape == 1:
        harm = (1.0,)  # a pure sine
    else:
        harm = tuple([1.0] + list(rng.uniform(0, 0.4, size=int(rng.integers(1, 5)))))
    attack, release = rng.uniform(0.001, 0.02), rng.uniform(0.005, 0.08)
    segs = []
    for start, freq, dur in notes:
        segs.append((round(start * SR) / SR,
                     synth.beep(freq, dur, harmonics=harm, attack_s=attack,
                                release_s=min(release, dur / 2))))
    times = [(s, s + len(a) / SR) for s, a in segs]
    return synth._place(segs, SR), times, kind


def _tonal_negative(rng: np.random.Generator, n: int) -> tuple[np.ndarray, float, str]:
    """A tone that is not an appliance beep; returns audio, start offset, kind."""
    kind = str(rng.choice(["whistle", "warble", "ping", "whine"]))
    if kind in ("whistle", "warble"):
        dur = rng.uniform(0.3, 1.8)
        m = int(dur * SR)
        t = np.arange(m) / SR
        f0 = rng.uniform(1000, 4500)
        # The pitch moves by more than a filterbank band (a glide of 25-80 % of f0,
        # vibrato of +-8-20 %). A wobble of a few per cent leaves what the filterbank
        # sees as a steady tone, which is what a beep is: labelling those "tonal" taught
        # earlier models to reject long beeps at some frequencies.
        if kind == "whistle":  # a glide up or down
            f = f0 * (1 + rng.choice([-1, 1]) * rng.uniform(0.25, 0.8) * t / dur)
        else:  # vibrato of 4-8 Hz
            f = f0 * (1 + rng.uniform(0.08, 0.2) * np.sin(2 * np.pi * rng.uniform(4, 8) * t))
        f = np.clip(f, 600, 7000)
        x = synth._harmonic_tone(f, m, SR, (1.0, 0.1), 0.95 * SR / 2, rng)
        x *= synth.envelope(m, SR, 0.05, 0.1)
        return x.astype(np.float32), rng.uniform(-0.2, 3.0 - dur), kind
    if kind == "ping":  # 1-4 very short tonal clicks (< 30 ms): glass, spoon, keys
        segs = []
        t = 0.0
        for _ in range(int(rng.integers(1, 5))):
            d = rng.uniform(0.005, 0.028)
            segs.append((t, synth.beep(rng.uniform(1000, 6000), d, attack_s=0.001,
                                       release_s=d / 2)))
            t += rng.uniform(0.08, 0.6)
        return synth._place(segs, SR), rng.uniform(0, 2.0), kind
    # whine: a steady tone through the whole window (charger, TV, fridge)
    x = synth.beep(np.exp(rng.uniform(np.log(1000), np.log(7000))), (n + 800) / SR,
                   harmonics=(1.0,), attack_s=0.01, release_s=0.01)
    x *= 1 + 0.05 * synth.smooth_random(rng, len(x), SR, 2.0)
    return x.astype(np.float32), -0.02, kind


# With real recordings: how often a clip's background (by label) and its beep are real.
# Beeps keep mostly generated backgrounds (washer phases among them) and generated patterns:
# with half of each real, a model missed long piezo beeps over a draining washer.
REAL_BG_P = {"washer": 0.0, "speech": 0.75, "music": 0.75, "other": 0.4, "beep": 0.35,
             "tonal": 0.5}
REAL_BG_KINDS = {"speech": ("speech",), "music": ("music", "tv"), "other": ("kitchen",),
                 "beep": ("speech", "music", "tv", "kitchen"),
                 "tonal": ("speech", "music", "tv", "kitchen")}
REAL_BEEP_P = 0.4
_BG_CLASS.update({"real-speech": "speech", "real-music": "music", "real-tv": "music",
                  "real-kitchen": "other"})
_POOLS: dict[str, "realmix.RealPool"] = {}


def _pool(root: str) -> "realmix.RealPool":
    """One RealPool per worker process and folder (it caches decoded files)."""
    if root not in _POOLS:
        _POOLS[root] = realmix.RealPool(root, "train", "fit")
    return _POOLS[root]


def make_clip(seed: int, index: int, label: str, preset: str = "train",
              appliance: int | None = None, real: str | None = None
              ) -> tuple[np.ndarray, ClipInfo]:
    """Clip ``index`` of the set made with ``seed``: audio (3 s) and its manifest row.

    ``appliance`` (user preset only) fixes the beep pattern and the room; default: seed.
    ``real``: a folder of real recordings (beepnet.training.realsounds) to draw real
    backgrounds and beeps from; without it the clip is exactly what it always was.
    """
    p = PRESETS[preset]
    user = preset == "user"
    home = seed if appliance is None else appliance
    group = index // GROUP_SIZE
    rng = np.random.default_rng([seed, index])
    # shared by the group; for one user, by the whole home (one room, one microphone)
    room_rng = np.random.default_rng([home, 3_000_000] if user else [seed, 1_000_000 + group])
    n = int(CLIP_S * SR)
    if user:
        bg_kind = str(rng.choice(_USER_BACKGROUNDS[label]))
    elif label in ("beep", "tonal"):
        bg_kind = str(rng.choice(BACKGROUNDS))
    else:
        choices = [b for b in BACKGROUNDS if _BG_CLASS[b] == label]
        bg_kind = str(rng.choice(choices))
    # Real choices draw from their own stream, so that the generated clips stay the same.
    real_rng = np.random.default_rng([seed, 6_000_000 + index]) if real and not user else None
    if real_rng is not None and real_rng.random() < REAL_BG_P[label]:
        kinds = REAL_BG_KINDS[label]
        bg_kind = "real-" + str(kinds[int(real_rng.integers(len(kinds)))])
        x = _pool(real).background(real_rng, bg_kind[5:], n)
    else:
        x = _background(rng, bg_kind, n)
    x, info_splice = _splice_quiet(x, np.random.default_rng([seed, 5_000_000 + index]))
    info = ClipInfo(file="", label=label, group=f"s{seed}g{group:05d}", background=bg_kind,
                    splice=info_splice)
    snr = float(rng.uniform(*p["snr_db"]))
    if bg_kind == "silence":
        snr = float(rng.uniform(20, 50))
    if label == "beep":
        if user:  # the same machine, the same beep, every time
            fg, times, info.foreground = _random_beeps(np.random.default_rng([home, 4_000_000]),
                                                       end_of_cycle=True)
        elif real_rng is not None and real_rng.random() < REAL_BEEP_P:
            fg, times, info.foreground = _pool(real).beeps(real_rng)
        else:
            fg, times, info.foreground = _random_beeps(rng, shares=p.get("patterns"))
        total = times[-1][1]
        for _ in range(20):  # a position with >= 100 ms of beep inside the window
            at = rng.uniform(-total + MIN_BEEP_INSIDE_S, CLIP_S - MIN_BEEP_INSIDE_S)
            inside = [(max(0.0, at + s), min(CLIP_S, at + e)) for s, e in times]
            inside = [(s, e) for s, e in inside if e - s > 0]
            if sum(e - s for s, e in inside) >= MIN_BEEP_INSIDE_S:
                break
        else:
            at = 0.0
            inside = [(s, min(CLIP_S, e)) for s, e in times if s < CLIP_S]
        info.beep_start, info.beep_end = round(inside[0][0], 3), round(inside[-1][1], 3)
        x = synth.mix(x, fg, at, snr)
        info.snr_db = round(snr, 1)
    elif label == "tonal":
        fg, at, info.foreground = _tonal_negative(rng, n)
        x = synth.mix(x, fg, at, snr)
        info.snr_db = round(snr, 1)
    if room_rng.random() < p["reverb_p"]:
        info.reverb_rt60 = round(float(room_rng.uniform(*p["rt60_s"])), 2)
        x = synth.reverb(x, np.random.default_rng([seed, 2_000_000 + index]), SR,
                         info.reverb_rt60, float(room_rng.uniform(0.1, 0.5)))
    if room_rng.random() < 0.7:
        x = synth.mic_eq(x, np.random.default_rng([home, 3_000_000] if user
                                                  else [seed, 1_000_000 + group]), SR)
    level = float(rng.uniform(-45, -3))
    if np.any(x):
        info.level_dbfs = round(level, 1)
    x = synth.set_peak_dbfs(x, level)
    return np.clip(x, -1, 1).astype(np.float32), info


def plan_labels(n: int, preset: str = "train") -> list[str]:
    """Labels for n clips in the preset's proportions, interleaved (deterministic)."""
    shares = PRESETS[preset]["shares"]
    counts = {k: round(v * n) for k, v in shares.items()}
    counts["beep"] += n - sum(counts.values())
    labels: list[str] = []
    # interleave: clip i gets the class furthest behind its share so far
    done = dict.fromkeys(counts, 0)
    for i in range(n):
        k = max(counts, key=lambda c: (counts[c] - done[c]) / max(counts[c], 1))
        labels.append(k)
        done[k] += 1
    return labels


def _write_one(job: tuple[str, int, int, str, str, int | None, str | None]) -> dict:
    out_dir, seed, index, label, preset, appliance, real = job
    audio, info = make_clip(seed, index, label, preset, appliance, real)
    rel = f"{label}/{info.group}_{index:06d}.wav"
    sf.write(os.path.join(out_dir, rel), audio, SR, subtype="PCM_16")
    info.file = rel
    return asdict(info)


def generate(out_dir: str | os.PathLike, n: int, seed: int = 0, preset: str = "train",
             workers: int = 2, progress: bool = False, appliance: int | None = None,
             real: str | os.PathLike | None = None) -> Path:
    """Write n clips into out_dir/<label>/*.wav and out_dir/manifest.csv; returns the manifest.

    ``real``: a folder of real recordings (`beepnet.training.realsounds.fetch`), needed by
    the "real" preset."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} ({', '.join(PRESETS)})")
    if (preset == "real") != (real is not None):
        raise ValueError("the real preset, and only it, takes a folder of real recordings")
    if real is not None:
        _pool(str(real))  # fails here, once, when the folder is unusable
    out = Path(out_dir)
    for label in PRESETS[preset]["shares"]:
        (out / label).mkdir(parents=True, exist_ok=True)
    jobs = [(str(out), seed, i, lab, preset, appliance, str(real) if real else None)
            for i, lab in enumerate(plan_labels(n, preset))]
    if workers > 1 and n > 50:
        with get_context("spawn").Pool(workers) as pool:
            it = pool.imap(_write_one, jobs, chunksize=16)
            rows = list(_progress(it, n, progress))
    else:
        rows = list(_progress(map(_write_one, jobs), n, progress))
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["file", "label"])
        w.writeheader()
        w.writerows(rows)
    log.info("wrote %d clips into %s", n, out)
    return manifest


def _progress(it, total: int, enabled: bool):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc="synth", unit="clip")
