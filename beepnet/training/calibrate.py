"""Setting a model's operating threshold on real audio, for a false-alarm rate.

A threshold picked on the generator's clips says little about a kitchen with a radio: the
real negatives are where false alarms come from. `calibrate` plays real talk, music, TV
and clatter that training never used (realmix's "calib" part of the training split) and a
generated washer and quiet room through the daemon's windowing, gate and event merging,
scores every window once, and picks the lowest threshold whose false alarms per hour stay
within the target. Real beeps of the same part, mixed into the same kinds of background,
give the window recall that threshold keeps. The threshold is written into the model file.

``python -m beepnet.training.calibrate MODEL --real DIR [--fa-per-hour 5] [--minutes 36]``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import synth
from .realmix import RealPool

log = logging.getLogger(__name__)

SR = synth.SR
PIECE_S = 30.0
KINDS = {"speech": 1.0, "music": 0.5, "tv": 0.5, "kitchen": 1.0, "washer": 1.0, "quiet": 1.0}
"""Background kinds and their shares of the negatives: "everyday audio" as the bench mixes
it, talk, music or TV, clatter, a running machine and a quiet room in equal parts."""


@dataclass
class Calibration:
    threshold: float
    fa_per_hour: float
    hours: float
    by_kind: dict
    beep_recall: float
    beep_windows: int
    old_threshold: float

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v:.1f}" for k, v in self.by_kind.items())
        return (f"threshold {self.old_threshold:.3f} -> {self.threshold:.3f}: "
                f"{self.fa_per_hour:.1f} false alarms/hour over {self.hours:.2f} h of real "
                f"and generated negatives ({kinds}); window recall on held-out real-sound "
                f"beeps {self.beep_recall:.3f} ({self.beep_windows} windows)")


def negative_streams(pool: RealPool, minutes_per_kind: float, seed: int
                     ) -> dict[str, np.ndarray]:
    """Long negative recordings by kind, made of 30-s pieces at varied levels and rooms."""
    out = {}
    for k, (kind, share) in enumerate(KINDS.items()):
        pieces = []
        for i in range(max(1, round(share * minutes_per_kind * 60 / PIECE_S))):
            rng = np.random.default_rng([seed, k, i])
            n = int(PIECE_S * SR)
            if kind == "washer":
                x = synth.washer(rng, PIECE_S, phase=str(rng.choice(["wash", "drain", "spin"])))
            elif kind == "quiet":
                x = synth.room(rng, PIECE_S, level=rng.uniform(0.0003, 0.003))
            else:
                x = pool.background(rng, kind, n)
            x = np.asarray(x[:n], np.float32)
            if rng.random() < 0.5:
                x = synth.reverb(x, rng, SR, float(rng.uniform(0.1, 0.7)), 0.3)
            if rng.random() < 0.7:
                x = synth.mic_eq(x, rng, SR)
            pieces.append(synth.set_peak_dbfs(x, float(rng.uniform(-40, -6))))
        out[kind] = np.concatenate(pieces).astype(np.float32)
    return out


def beep_clips(pool: RealPool, n: int, seed: int) -> np.ndarray:
    """n 3-s clips, each with a held-out real-sound beep over a held-out real background."""
    clips = np.zeros((n, 3 * SR), np.float32)
    for i in range(n):
        rng = np.random.default_rng([seed, 7, i])
        bg = pool.background(rng, str(rng.choice(["speech", "music", "tv", "kitchen"])), 3 * SR)
        fg, times, _ = pool.beeps(rng)
        at = rng.uniform(0, max(0.01, 2.8 - times[-1][1]))
        clips[i] = synth.mix(bg, fg, at, float(rng.uniform(0, 20)))
    return clips


def window_scores(detector, audio: np.ndarray, chunk_s: float = 3.0, hop_s: float = 1.5,
                  gate_dbfs: float | None = None) -> np.ndarray:
    """P(beep) of every window of ``audio`` as the daemon cuts it; NaN where the gate
    would not let the window through (an event cannot span it)."""
    from ..audio.gate import Gate
    from ..config import AudioConfig

    cfg = AudioConfig()
    gate = Gate(cfg.gate_dbfs if gate_dbfs is None else gate_dbfs, cfg.gate_frame_ms, SR)
    n, hop = int(chunk_s * SR), int(hop_s * SR)
    out = []
    for start in range(0, max(1, len(audio) - n + 1), hop):
        w = audio[start:start + n]
        out.append(detector.score(w).score if gate.opens(w) else np.nan)
    return np.asarray(out, np.float64)


def event_runs(scores: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(first, last) window of each event as beepnet.events merges them: runs of
    consecutive windows at or above the threshold (a gated window, NaN, breaks a run)."""
    on = np.nan_to_num(scores, nan=-1.0) >= threshold
    edges = np.diff(np.concatenate([[0], on.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(),
                    (np.flatnonzero(edges == -1) - 1).tolist()))


def count_events(scores: np.ndarray, threshold: float) -> int:
    """How many `event_runs` there are, without listing them (`pick` counts at every
    candidate threshold)."""
    on = np.nan_to_num(scores, nan=-1.0) >= threshold
    return int(np.count_nonzero(on[1:] & ~on[:-1]) + (1 if len(on) and on[0] else 0))


def pick(scores: dict[str, np.ndarray], fa_per_hour: float, hop_s: float = 1.5,
         floor: float = 0.05, windows_per_event: float = 5.0) -> tuple[float, float, dict]:
    """The lowest threshold (``floor`` to 0.99) at which there are at most ``fa_per_hour``
    events per hour over all kinds together; returns it, the rate and the rate by kind.

    Not a bisection: lowering the threshold can merge two events into one, so the count is
    not monotonic, and the daemon lives with the count at its own threshold. A threshold so
    low that the detector is on most of the time would merge everything into a few long
    events: positive windows are held to ``windows_per_event`` times the event rate too."""
    hours = sum(len(s) for s in scores.values()) * hop_s / 3600
    values = np.unique(np.concatenate([s[np.isfinite(s)] for s in scores.values()] + [[floor]]))
    candidates = np.concatenate([[floor], values[(values > floor) & (values < 0.99)] + 1e-6,
                                 [0.99]])
    every = np.concatenate([np.nan_to_num(s, nan=-1.0) for s in scores.values()])
    t = 0.99
    for c in candidates:
        events = sum(count_events(s, c) for s in scores.values()) / hours
        if events <= fa_per_hour and np.count_nonzero(every >= c) / hours <= \
                windows_per_event * fa_per_hour:
            t = float(c)
            break
    by_kind = {k: count_events(s, t) / (len(s) * hop_s / 3600) for k, s in scores.items()}
    return t, sum(count_events(s, t) for s in scores.values()) / hours, by_kind


def calibrate(model: str | Path, real: str | Path, fa_per_hour: float = 5.0,
              minutes_per_kind: float = 36.0, n_beeps: int = 300, seed: int = 11,
              write: bool = True) -> Calibration:
    from ..detectors.beepnet import BeepNetDetector
    from ..model.modelfile import read_model_file, write_model_file

    pool = RealPool(real, "train", "calib")
    det = BeepNetDetector(model)
    streams = negative_streams(pool, minutes_per_kind, seed)
    scores = {k: window_scores(det, x) for k, x in streams.items()}
    t, rate, by_kind = pick(scores, fa_per_hour)
    beeps = beep_clips(pool, n_beeps, seed)
    p = np.array([det.score(c).score for c in beeps])
    hours = sum(len(s) for s in scores.values()) * 1.5 / 3600
    cal = Calibration(t, rate, hours, by_kind, float(np.mean(p >= t)), n_beeps, det.threshold)
    if write:
        mf = read_model_file(model)
        meta = dict(mf.meta)
        metrics = dict(meta.get("metrics") or {})
        metrics["calibration"] = {"fa_per_hour_target": fa_per_hour, "fa_per_hour": rate,
                                  "hours": round(hours, 3), "by_kind": by_kind,
                                  "beep_window_recall": cal.beep_recall,
                                  "threshold_before": det.threshold}
        metrics["threshold_rule"] = (f"<= {fa_per_hour:g} false alarms/hour on held-out real "
                                     "negatives")
        # precision, recall etc. beside it were measured at the training threshold
        metrics.setdefault("validation_threshold", det.threshold)
        write_model_file(model, mf.tensors, mf.arch, mf.labels, t, metrics=metrics,
                         **{k: v for k, v in meta.items()
                            if k in ("data_sha256", "window_seconds", "hop_seconds",
                                     "created", "trained_on")})
    return cal


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m beepnet.training.calibrate",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--real", required=True, metavar="DIR")
    p.add_argument("--fa-per-hour", type=float, default=5.0)
    p.add_argument("--minutes", type=float, default=36.0, help="per kind of background "
                   "(music and TV: half as much each)")
    p.add_argument("--dry-run", action="store_true", help="report, do not write the file")
    p.add_argument("--json", metavar="OUT")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cal = calibrate(args.model, args.real, args.fa_per_hour, args.minutes,
                    write=not args.dry_run)
    print(cal.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(cal.__dict__, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
