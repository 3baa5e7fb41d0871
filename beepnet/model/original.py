"""The original BeepNet, kept as a baseline: ``beepnet train --arch original``.

The project's first author trained this in a notebook on 1,417 hand-labelled chunks:
two learned Conv1d filters on the raw waveform, a rectifier, max pooling, and one
Linear layer over the flattened time axis. That Linear layer bakes the window length
(and, in effect, the beep's position in it) into the weights, which is why it
overfits: it learns *where* the beep was in the training chunks. It is rebuilt here
only so that benchmarks and ``beepnet train`` can compare it with BeepNet on the same
data; it is never the default.

It speaks the same interface as :class:`beepnet.model.net.BeepNet` (``cfg.kernel``,
``frame_seconds``, ``forward`` -> clip and frame logits) so the detector, training and
model files treat both alike. It has a single "frame": the whole window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .net import SAMPLE_RATE

KIND = "original"


@dataclass(frozen=True)
class OriginalConfig:
    """Architecture of the original net (stored in the model file)."""

    n_classes: int = 2
    n_filters: int = 2
    kernel: int = 400
    stride: int = 160
    pool: int = 4
    window_samples: int = 48000
    kind: str = KIND

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> OriginalConfig:
        return cls(**d)


class OriginalBeepNet(nn.Module):
    """Raw waveform (batch, samples) -> (clip logits (batch, C), frame logits (batch, C, 1))."""

    def __init__(self, cfg: OriginalConfig = OriginalConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv = nn.Conv1d(1, cfg.n_filters, cfg.kernel, stride=cfg.stride)
        self.pool = nn.MaxPool1d(cfg.pool)
        steps = (cfg.window_samples - cfg.kernel) // cfg.stride + 1
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(cfg.n_filters * (steps // cfg.pool), cfg.n_classes)

    @property
    def frame_seconds(self) -> float:
        """One output for the whole window."""
        return self.cfg.window_samples / SAMPLE_RATE

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.cfg.window_samples
        # The Linear layer only fits one window length: shorter input is padded, longer cut.
        if wave.shape[1] != n:
            wave = F.pad(wave, (0, n - wave.shape[1])) if wave.shape[1] < n else wave[:, :n]
        x = self.pool(F.relu(self.conv(wave.unsqueeze(1))))
        clip = self.fc(self.dropout(x.flatten(1)))
        return clip, clip.unsqueeze(2)
