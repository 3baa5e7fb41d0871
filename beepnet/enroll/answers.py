"""The owner's answers learnt without PyTorch: the beep output of the model in use refitted.

``beepnet train --feedback --head``, and what ``/retrain`` runs where the training extra is
not installed (the service's default; a Pi that only listens). The full retraining
(`beepnet.training.retrain`) fine-tunes every layer in PyTorch; this keeps the model's body
and refits only its beep row, in numpy, as `beepnet enroll` does, in seconds:

- the owner's windows of the training alerts: ✅ ones are beeps, ❌ ones (and clips labelled
  otherwise from ``/missed``) are not; beside them, generated talk, music, knocks and doors
  laid over the ❌ windows (`clips.hard_negatives`), so that a few answers are not the
  whole world;
- the checks: an enrolled (or one machine's trained) model keeps its beep pitches, timbres,
  tune and wobble; else, when the ✅ windows are one machine's beep, the new model learns
  its pitch from them (`training.machinebeep.learn`, as `beepnet train` does);
- pulled towards the old row: `PULL` with a pitch check, `PULL_UNCHECKED` without one;
- the model in use's threshold kept;
- compared with the model in use on whole held-out alerts (`corrections.owner_split`) and on
  held-out generated sounds, and put in use only when it is not worse
  (`training.train._save_unless_worse`, which imports no PyTorch).

Measured on `make bench-realuser`'s homes: see the README's "Learn from your answers".
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from ..audio.files import read_audio
from ..model.modelfile import STEADY_WOBBLE_HZ
from ..training import machinebeep
from ..training.corrections import CorrectionsError, REPLAY_TOLERANCE, owner_split
from ..training.train import TrainResult, _save_unless_worse

log = logging.getLogger(__name__)

PULL = 0.1
"""`head.fit_logistic`'s pull towards the old beep row, per clip, when the new model checks
the beep's pitch: five times enroll's (the answers are a few dozen windows, not hundreds
of clips of one beep), and the check keeps what the row learns from the ✅ windows from
reaching music at other pitches."""
PULL_UNCHECKED = 1000.0
"""Without a pitch check, so strong that in effect only the bias moves. Learning a
melody's ✅ windows freely taught the row that music is a beep: on `make bench-realuser`'s
seed-1430 melody home 301 false alarms in 4 h at `PULL` (the shipped model: 3), 34 at 1,
11 at this (and 4 missed beeps of 400, the shipped model 10): a melody's windows are
rarely enough alike for `machinebeep.learn` to find its notes."""
HARD = 200
"""Generated talk, music, knocks and doors learnt as "not a beep" beside the answers."""
HELD_HARD = 100
"""And held out, to see whether the new row takes more of them for beeps than the old."""
SEED = 0


def read_answers(root: Path) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(float32 windows, is_beep, alert of each) of a feedback folder; CorrectionsError when
    there are none."""
    from ..notify.feedback import alert_of, label_folders

    files = [f for d in label_folders(root) for f in sorted(d.glob("*.wav")) if f.is_file()]
    if not files:
        raise CorrectionsError(f"no corrections in {root}")
    windows, labels, alerts = [], [], []
    for f in files:
        try:
            windows.append(np.asarray(read_audio(f), np.float32))
        except (OSError, ValueError, RuntimeError) as e:  # soundfile raises RuntimeError
            raise CorrectionsError(f"{f}: cannot be read ({e})") from None
        labels.append(f.parent.name == "beep")
        alerts.append(f"{f.parent.name}/{alert_of(f.stem)}")
    return windows, np.array(labels), np.array(alerts)


def _fixed(x: np.ndarray, size: int) -> np.ndarray:
    """A window cut or padded to ``size`` samples (they are the daemon's: 3 s already)."""
    return x[:size] if len(x) >= size else np.pad(x, (0, size - len(x)))


def learn(start: Path, root: Path, out: Path, current, force: bool = False,
          seed: int = SEED) -> TrainResult:
    """Refit the beep row of ``start`` (a BeepNet model file) on the answers under ``root``
    and write the result to ``out`` unless it is worse than ``current`` (the
    `DetectorConfig` in use) on the held-out answers (then beside it: `rejected_path`)."""
    from ..model.modelfile import ModelFileError, read_model_file
    from ..model.npnet import NumpyBeepNet, limit_blas_threads
    from . import clips
    from .head import clip_features, refit_beep_row, write_enrolled

    t0 = time.monotonic()
    limit_blas_threads(1)
    base = read_model_file(start)
    if "classifier.weight" not in base.tensors or "beep" not in base.labels:
        raise ModelFileError(f"{start}: not a BeepNet with a beep output")
    size = int(round(float(base.meta.get("window_seconds", 3.0)) * SAMPLE_RATE))
    windows, is_beep, alerts = read_answers(root)
    windows = [_fixed(w, size) for w in windows]
    tr, va = owner_split(alerts, is_beep.astype(int), seed)
    if not is_beep[tr].any():
        raise CorrectionsError(
            "no ✅ answer to learn the beep from: press ✅ That was it under an alert that "
            "was your machine (or label a /missed clip as beep), then retrain")
    # An enrolled (or one machine's trained) model keeps its checks; else the ✅ windows,
    # when they are one machine's, give the check its pitch (`machinebeep.learn`).
    checks = {"beep_pitches_hz": tuple(base.meta.get("beep_pitches_hz", ())),
              "beep_timbre": tuple(base.meta.get("beep_timbre", ())),
              "beep_min_notes": int(base.meta.get("beep_min_notes", 1)),
              "beep_wobble_hz": float(base.meta.get("beep_wobble_hz", STEADY_WOBBLE_HZ))}
    machine = None
    if not checks["beep_pitches_hz"]:
        machine = machinebeep.learn([windows[i] for i in tr if is_beep[i]], SAMPLE_RATE, seed)
    if machine is not None:
        checks = {"beep_pitches_hz": machine.pitches, "beep_timbre": machine.timbres,
                  "beep_min_notes": machine.min_notes, "beep_wobble_hz": machine.wobble_hz}
    net = NumpyBeepNet(base.arch, base.tensors)
    rng = np.random.default_rng(seed)
    owner_neg = [windows[i] for i in tr if not is_beep[i]]
    room = np.concatenate(owner_neg) if owner_neg else np.zeros(size, np.float32)
    zp = clip_features(net, [windows[i] for i in tr if is_beep[i]])
    zn = clip_features(net, itertools.chain(owner_neg,
                                            clips.hard_negatives(room, HARD, size, rng)))
    pull = PULL if checks["beep_pitches_hz"] else PULL_UNCHECKED
    # The threshold stays: set on real negatives, or on the owner's room by enroll; a few
    # dozen windows cannot set a false-alarm rate (raised above the ❌ windows and the
    # generated sounds, it cost the seed-1420 piezo 142 of its 400 beeps).
    threshold, rule = float(base.threshold), f"kept from {start.name}"
    head = replace(refit_beep_row(base, zp, zn, pull), threshold=threshold)
    sha = hashlib.sha256()
    for i in tr:
        sha.update(alerts[i].encode())
    counts = {"beep": int(is_beep.sum()), "not_beep": int((~is_beep).sum())}
    owner = {"windows": len(windows), "alerts": len(set(alerts.tolist())),
             "held_out_alerts": len(set(alerts[va].tolist())), "repeat": 1,
             "labels": counts}
    metrics = {"corrections": owner, "refitted": "beep output (numpy)",
               "threshold_rule": rule}

    def write(path: Path) -> None:
        write_enrolled(path, base, head, metrics=metrics, data_sha256=sha.hexdigest(),
                       **checks)

    held_rng = np.random.default_rng(seed + 1)
    held_room = np.concatenate([windows[i] for i in va if not is_beep[i]] or [room])
    hard = np.stack(list(clips.hard_negatives(held_room, HELD_HARD, size, held_rng)))
    sets = [("generated talk, music, knocks and doors", _int16(hard),
             np.zeros(len(hard), bool), max(1, int(len(hard) * REPLAY_TOLERANCE)))]
    if len(va):
        sets.insert(0, ("your held-out alerts", _int16(np.stack([windows[i] for i in va])),
                        is_beep[va], 0))
    saved, scores, note = _save_unless_worse(write, out, sets, current, force,
                                             always_guard=True)
    return TrainResult(threshold, rule, {}, 0, time.monotonic() - t0, path=str(saved),
                       rejected=saved != out, scores=scores, note=note, owner=owner,
                       machine=machine)


def _int16(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1.0, 1.0) * 32767).astype(np.int16)

