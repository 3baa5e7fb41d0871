"""The original BeepNet, kept as a baseline: ``beepnet train --arch original``.

The project's first author trained this in a notebook on 1,417 hand-labelled chunks:
two learned Conv1d filters on the raw waveform, a rectifier, max pooling, and one
Linear layer over the flattened time axis. That Linear layer bakes the window length
(and, in effect, the beep's position in it) into the weights, which is why it
overfits: it learns *where* the beep was in the training chunks. It is rebuilt here
only so that benchmarks and ``beepnet train`` can compare it with BeepNet on the same
data; it is never the default.

It speaks the same interface as :class:`beepnet.training.net.BeepNet` (``cfg.kernel``,
``frame_seconds``, ``forward`` -> clip and frame logits) so the detector, training and
model files treat both alike. It has a single "frame": the whole window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..audio import SAMPLE_RATE
from ..model.arch import OriginalConfig


class OriginalBeepNet(nn.Module):
    """Raw waveform (batch, samples) -> (clip logits (batch, C), frame logits (batch, C, 1))."""

    def __init__(self, cfg: OriginalConfig = OriginalConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv = nn.Conv1d(1, cfg.n_filters, cfg.kernel, stride=cfg.stride)
        self.pool = nn.MaxPool1d(cfg.pool)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(cfg.fc_inputs, cfg.n_classes)

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
