"""A small library of real-recording stand-ins, laid out as `realsounds.fetch` leaves it
(no package is fetched in tests)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from beepnet.training.realsounds import NOTE_PITCHES, NOTE_PROGRAMS

SR = 16000


def _tone(hz: float, seconds: float, decay: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t) * np.exp(-decay * t)).astype(np.float32)


def make_library(root: Path) -> Path:
    """A folder as `realsounds.fetch` leaves it: index.csv, WAVs by split and kind, notes."""
    rng = np.random.default_rng(0)
    rows = []

    def add(rel: str, audio: np.ndarray, kind: str, split: str, member: str) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio, SR, subtype="PCM_16")
        rows.append({"path": rel, "package": "test", "member": member, "kind": kind,
                     "split": split, "licence": "CC0"})

    for split in ("train", "eval"):
        for i in range(40):
            # "speech": noise bursts with a gliding pitch, syllable-long
            t = np.arange(int(1.2 * SR)) / SR
            voice = np.sin(2 * np.pi * (150 + 60 * t) * t * 3) * (np.sin(2 * np.pi * 4 * t) > 0)
            add(f"wav/{split}/speech/s{i}.wav", (0.1 * voice + 0.01 * rng.standard_normal(
                len(t))).astype(np.float32), "speech", split, f"speech/{i}.wav")
            add(f"wav/{split}/kitchen/k{i}.wav", (0.2 * rng.standard_normal(SR // 5) *
                np.exp(-np.arange(SR // 5) / 400)).astype(np.float32), "kitchen", split,
                f"kitchen/{i}.wav")
        for i in range(40):
            chords = np.concatenate([_tone(220 * 2 ** ((k + i) / 12), 0.5, 1.0)
                                     for k in range(8)])
            add(f"wav/{split}/music/m{i}.wav", chords, "music", split, f"music/{i}.wav")
        add(f"wav/{split}/chime/c.wav", _tone(1800, 1.0), "chime", split, "chime/c.wav")
        for program in list(NOTE_PROGRAMS[split])[:4] + [80 if split == "train" else 81]:
            for pitch in NOTE_PITCHES[::4]:
                hz = 440 * 2 ** ((pitch - 69) / 12)
                rel = f"notes/{split}/p{program:03d}_n{pitch:03d}.wav"
                add(rel, _tone(hz, 2.0), "note", split, f"program {program} pitch {pitch}")
    with open(root / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root
