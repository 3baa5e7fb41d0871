"""Test recordings with beeps at known times, built from beepnet.training.synth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from beepnet.training import synth

SR = 16000


def washer_with_beeps(beeps: list[tuple[float, float, float]], seconds: float, seed: int = 0,
                      snr_db: float = 10.0, sr: int = SR) -> np.ndarray:
    """A washer background with beeps given as (start s, length s, frequency Hz)."""
    rng = np.random.default_rng(seed)
    x = synth.washer(rng, seconds, sr=sr, phase="wash")
    for at, length, freq in beeps:
        x = synth.mix(x, synth.beep(freq, length, sr=sr), at, snr_db, sr=sr)
    return x.astype(np.float32)


def shaky_blips(x: np.ndarray, at: float, count: int = 5, freq: float = 3721.0,
                seed: int = 0, sr: int = SR) -> np.ndarray:
    """``x`` with ``count`` 90-ms blips from ``at`` s, 0.38 s apart, at ``freq`` (and a
    partial at 4/3 of it) whose pitch shakes by 1 % at 20 Hz: what a real piezo's button
    blips look like to the 32-ms frames of the tone tracker (20-24 Hz of wobble)."""
    rng = np.random.default_rng(seed)
    x = np.array(x, np.float32)
    t = np.arange(int(0.09 * sr)) / sr
    env = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.004)
    for k in range(count):
        shake = 1 + 0.01 * np.sin(2 * np.pi * 20 * t + rng.uniform(0, 6))
        ph = 2 * np.pi * np.cumsum(freq * shake) / sr
        a = int((at + 0.38 * k) * sr)
        x[a:a + len(t)] += 0.3 * env * (np.sin(ph) + 0.5 * np.sin(4 / 3 * ph))
    return x


def convert(x: np.ndarray, path: Path, rate: int = SR, channels: int = 1,
            subtype: str | None = None) -> Path:
    """Write ``x`` (16 kHz) at another rate/channel count, format from the extension."""
    if rate != SR:
        from scipy.signal import resample_poly  # tests only; the package does its own

        g = np.gcd(rate, SR)
        x = resample_poly(x, rate // g, SR // g).astype(np.float32)
    data = np.stack([x] * channels, axis=1) if channels > 1 else x
    sf.write(str(path), data, rate, subtype=subtype)
    return path


def starts_ends(events: list[dict]) -> list[tuple[float, float]]:
    return [(e["start"], e["end"]) for e in events]


def labelled_set(folder: Path, n: int = 160, seed: int = 3) -> Path:
    """A small generated labelled set (``<label>/*.wav``): DATA_DIR, retrain.data_dir."""
    from beepnet.training.dataset import generate

    generate(folder, n, seed=seed, preset="train")
    return folder


def make_feedback(root: Path, labelled: Path, beep_alerts: int = 3, other_alerts: int = 4
                  ) -> Path:
    """Corrections as the bot keeps them under storage.dir/feedback: 4 windows an alert,
    named after the alert's time; beeps from ``labelled``'s beeps, "not the beep" from its
    tonal sounds; and /missed's unlabelled folder."""
    import shutil

    for label, src, alerts, minute in (("beep", "beep", beep_alerts, 1),
                                       ("not_beep", "tonal", other_alerts, 5)):
        files = sorted((labelled / src).glob("*.wav"))
        (root / label).mkdir(parents=True, exist_ok=True)
        for a in range(alerts):
            for w in range(4):
                shutil.copy(files[a * 4 + w],
                            root / label / f"20261205-10{minute}{a}00_{w * 24000:010d}.wav")
    (root / "unsure" / "20261205-120000").mkdir(parents=True, exist_ok=True)
    return root


def appliance_window(kind: str, seed: int, sr: int = SR) -> np.ndarray:
    """A 3-s window of one of two appliances in one home: the "washer" (three 0.25-s
    beeps at 2.7 kHz over its drum) or the "microwave" (two 0.6-s beeps at 1.15 kHz over a
    fan), 8-18 dB above the background, anywhere in the window."""
    rng = np.random.default_rng([7, seed, 0 if kind == "washer" else 1])
    if kind == "washer":
        bg = synth.washer(rng, 3.0, sr=sr, phase="wash")
        freq, length, gap, count = 2700.0, 0.25, 0.25, 3
    else:
        bg = synth.room(rng, 3.0, sr=sr, level=0.003) + synth.fan(rng, 3.0, sr=sr)
        freq, length, gap, count = 1150.0, 0.6, 0.4, 2
    freq *= rng.uniform(0.99, 1.01)
    fg = synth._place([(k * (length + gap), synth.beep(freq, length, sr=sr))
                       for k in range(count)], sr)
    at = rng.uniform(0.1, 2.9 - len(fg) / sr)
    return synth.mix(bg[:3 * sr], fg, at, rng.uniform(8, 18), sr=sr)[:3 * sr]


def appliance_feedback(root: Path, beep_alerts: int = 4, other_alerts: int = 4) -> Path:
    """The owner's answers where the microwave's beeps raised alerts: ✅ under the washer's
    alerts, ❌ under the microwave's, 4 windows an alert, named as the bot names them."""
    for label, kind, alerts, minute in (("beep", "washer", beep_alerts, 1),
                                        ("not_beep", "microwave", other_alerts, 5)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for a in range(alerts):
            for w in range(4):
                sf.write(str(root / label / f"20261205-10{minute}{a}00_{w * 24000:010d}.wav"),
                         appliance_window(kind, a * 4 + w), SR, subtype="PCM_16")
    return root
