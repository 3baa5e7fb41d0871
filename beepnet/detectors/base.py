"""What every detector gives the pipeline: one score per audio window."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class WindowScore:
    """A detector's verdict on one window of 16 kHz mono audio."""

    score: float
    """How sure the detector is that the window holds an appliance beep, 0..1."""
    labels: dict[str, float] = field(default_factory=dict)
    """Per-class probabilities when the detector knows classes (always includes "beep")."""
    start: float | None = None
    """Seconds from the window's start where the beep begins, when the detector can tell."""
    end: float | None = None
    """Seconds from the window's start where the beep ends, when the detector can tell."""


class Detector(Protocol):
    """Scores windows of 16 kHz mono float32 audio in [-1, 1]."""

    name: str
    sample_rate: int
    threshold: float
    """The operating threshold this detector was tuned for."""

    def score(self, window: np.ndarray) -> WindowScore: ...

    def describe(self) -> str:
        """One line for logs and the start message, e.g. "tone 1000-6000 Hz"."""
        ...
