"""Detectors score 3-s windows of 16 kHz audio; the config's detector.kind picks one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Detector, WindowScore

if TYPE_CHECKING:
    from ..config import DetectorConfig


def load_detector(cfg: "DetectorConfig") -> Detector:
    """Build the configured detector once (the classifier process keeps it for its life)."""
    if cfg.kind == "tone":
        from .tone import ToneDetector

        det = ToneDetector(min_hz=cfg.tone_min_hz, max_hz=cfg.tone_max_hz,
                           min_ms=cfg.tone_min_ms)
    elif cfg.kind == "beepnet":
        # Imported here: the model code loads only when the learned detector is chosen
        # (and torch only with runtime "torch").
        from .beepnet import BeepNetDetector

        det = BeepNetDetector(cfg.model or None, runtime=cfg.runtime)
    else:  # the config's choices make this unreachable from the CLI
        raise ValueError(f"unknown detector kind {cfg.kind!r}")
    if cfg.threshold > 0:
        det.threshold = cfg.threshold
    return det


__all__ = ["Detector", "WindowScore", "load_detector"]
