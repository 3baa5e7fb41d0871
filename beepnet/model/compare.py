"""Is a new model better than the one in use? Both scored on the same held-out clips.

`beepnet train` (and `beepnet enroll`) score the model they made and the detector the
config puts in use on the same labelled 3-s clips, print both side by side, and keep the
one in use when the new one makes more mistakes. Scoring goes through the runtime
detectors (numpy; no torch, pandas or scikit-learn), each at its own operating threshold,
so the figures are what the daemon would do with either.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..audio import SAMPLE_RATE

if TYPE_CHECKING:
    from ..config import DetectorConfig
    from ..detectors.base import Detector

log = logging.getLogger(__name__)

HOP_S = 1.5
"""New audio per negative clip: the daemon's windows overlap by half (as train.metrics)."""


@dataclass(frozen=True)
class Score:
    """One detector's verdicts on a set of labelled clips."""

    name: str
    """Which side of the comparison: "new", "in use"."""
    model: str
    """What was scored: a model file's name, or "tone detector"."""
    threshold: float
    beeps: int
    caught: int
    negatives: int
    false_positives: int

    @property
    def misses(self) -> int:
        return self.beeps - self.caught

    @property
    def errors(self) -> int:
        return self.misses + self.false_positives

    @property
    def recall(self) -> float:
        return self.caught / self.beeps if self.beeps else float("nan")

    @property
    def fa_per_hour(self) -> float:
        hours = self.negatives * HOP_S / 3600
        return self.false_positives / hours if hours else float("nan")


def score_detector(detector: "Detector", clips: Sequence[np.ndarray], is_beep: Sequence[bool],
                   name: str, model: str | None = None) -> Score:
    """Score each clip (float32, 16 kHz) at the detector's own threshold."""
    is_beep = np.asarray(is_beep, dtype=bool)
    if len(clips) != len(is_beep):
        raise ValueError(f"{len(clips)} clips but {len(is_beep)} labels")
    if getattr(detector, "sample_rate", SAMPLE_RATE) != SAMPLE_RATE:
        raise ValueError(f"{detector.describe()}: not a {SAMPLE_RATE} Hz detector")
    hit = np.array([detector.score(np.asarray(c, np.float32)).score >= detector.threshold
                    for c in clips], dtype=bool)
    return Score(name=name, model=model or _short(detector), threshold=float(detector.threshold),
                 beeps=int(is_beep.sum()), caught=int((hit & is_beep).sum()),
                 negatives=int((~is_beep).sum()), false_positives=int((hit & ~is_beep).sum()))


def score_model(path: str | os.PathLike, clips: Sequence[np.ndarray], is_beep: Sequence[bool],
                name: str, runtime: str = "numpy", threshold: float = 0.0) -> Score:
    """Load a model file as the daemon would and score it; ModelFileError if it cannot be.

    ``threshold``: 0 for the model's own; else this one (a config's detector.threshold,
    which the daemon applies to whatever model it runs)."""
    from ..detectors.beepnet import BeepNetDetector

    detector = BeepNetDetector(path, runtime=runtime)
    if threshold > 0:
        detector.threshold = threshold
    return score_detector(detector, clips, is_beep, name, Path(path).name)


def load_in_use(cfg: "DetectorConfig") -> "Detector":
    """The detector the config puts in use (the shipped model when detector.model is empty,
    the tone detector for kind "tone"), at the threshold it runs with."""
    from ..detectors import load_detector

    return load_detector(cfg)


def is_worse(new: Score, current: Score) -> bool:
    """More mistakes (misses plus false positives) on the same clips; a tie is not worse."""
    if (new.beeps, new.negatives) != (current.beeps, current.negatives):
        raise ValueError("the two scores are not on the same clips")
    return new.errors > current.errors


def side_by_side(new: Score, current: Score, what: str = "held-out clips") -> str:
    """Both scores as a small aligned table, one row each, with a heading line naming
    ``what`` was scored."""
    head = ("", "model", "threshold", "beeps caught", "false positives", "errors", "recall",
            "false alarms/h")
    rows = [head] + [(s.name, s.model, f"{s.threshold:.3f}", f"{s.caught} of {s.beeps}",
                      f"{s.false_positives} of {s.negatives}", str(s.errors),
                      _num(s.recall, 3), _num(s.fa_per_hour, 1))
                     for s in (new, current)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    title = (f"{what}: {new.beeps} beep(s), {new.negatives} other(s) "
             f"({new.negatives * HOP_S / 60:.1f} min of other audio)")
    return "\n".join([title] + lines)


def _num(x: float, digits: int) -> str:
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def _short(detector: "Detector") -> str:
    info = getattr(detector, "info", None)
    if info is not None and getattr(info, "path", None):
        return Path(info.path).name
    return f"{detector.name} detector"
