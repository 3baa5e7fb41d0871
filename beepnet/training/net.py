"""BeepNet: a small 1D-conv classifier on the raw 16 kHz waveform.

Layout (``T`` = frames at 10 ms after the front end, 20 ms after pooling):

1. Per-window level normalisation: the waveform is divided by its RMS, so a
   beep at -40 dBFS and one at -3 dBFS give the same input.
2. Learned filterbank: Conv1d(1 -> 2 x n_filters, kernel 400 = 25 ms, stride 160 =
   10 ms) as n_filters (cosine, sine) pairs whose summed squares are log-compressed
   (log-energies, like a mel spectrogram whose filters are learned). The pairs start
   as Gabor filters on a mel scale from 60 Hz to 7.8 kHz (a smooth, gap-free
   filterbank), which training then adapts.
3. A few Conv1d / BatchNorm / ReLU blocks with one 2x max pooling over time.
4. Frame logits: a 1x1 convolution over [frame features, window mean features]
   gives per-class logits for every frame.
5. Clip logits: the same classifier over [global max, global mean] of the features
   over time. The max finds a beep wherever it is; the mean tells a beep (present
   part of the window) from a whine (present all the time). No layer depends on
   the window length, so any length (>= 25 ms) and any beep position work.

The frame logits let the detector say where in the window the beep is.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..audio import SAMPLE_RATE
from ..model.arch import BODY_KERNEL, NetConfig

__all__ = ["SAMPLE_RATE", "BeepNet", "NetConfig", "gabor_filterbank"]


class BeepNet(nn.Module):
    """Raw waveform (batch, samples) -> (clip logits (batch, C), frame logits (batch, C, T))."""

    def __init__(self, cfg: NetConfig = NetConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.frontend = nn.Conv1d(1, 2 * cfg.n_filters, cfg.kernel, stride=cfg.stride,
                                  padding=cfg.kernel // 2, bias=False)
        with torch.no_grad():
            self.frontend.weight.copy_(gabor_filterbank(cfg.n_filters, cfg.kernel))
        self.front_norm = nn.BatchNorm1d(cfg.n_filters)
        layers: list[nn.Module] = []
        c_in = cfg.n_filters
        for i, c_out in enumerate(cfg.channels):
            dil = cfg.dilation(i)
            layers += [nn.Conv1d(c_in, c_out, BODY_KERNEL, padding=(BODY_KERNEL // 2) * dil,
                                 dilation=dil, bias=False),
                       nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)]
            if i == 0:
                layers.append(nn.MaxPool1d(cfg.pool, ceil_mode=True))
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Conv1d(2 * c_in, cfg.n_classes, 1)

    @property
    def frame_seconds(self) -> float:
        """Time between frame outputs."""
        return self.cfg.stride * self.cfg.pool / SAMPLE_RATE

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, channels, T)."""
        # 1. level normalisation per window (eps keeps digital silence finite).
        rms = wave.pow(2).mean(dim=1, keepdim=True).clamp_min(1e-10).sqrt()
        x = (wave / rms).unsqueeze(1)
        # 2. learned filterbank, log-energies.
        y = self.frontend(x).pow(2)
        x = torch.log(y[:, :self.cfg.n_filters] + y[:, self.cfg.n_filters:] + 1e-4)
        x = self.front_norm(x)
        return self.body(x)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(wave)
        mean = feats.mean(dim=2, keepdim=True)
        frame_logits = self.classifier(torch.cat([feats, mean.expand_as(feats)], dim=1))
        pooled = self.dropout(torch.cat([feats.amax(dim=2, keepdim=True), mean], dim=1))
        clip_logits = self.classifier(pooled).squeeze(2)
        return clip_logits, frame_logits


def gabor_filterbank(n: int, kernel: int, lo_hz: float = 60.0, hi_hz: float = 7800.0
                     ) -> torch.Tensor:
    """(2n, 1, kernel) weights: n cosine then n sine Gabor filters, centres equally spaced
    in mel, each with a Gaussian window whose bandwidth matches the spacing."""
    def mel(f):
        return 2595 * math.log10(1 + f / 700)

    def hz(m):
        return 700 * (10 ** (m / 2595) - 1)

    mels = torch.linspace(mel(lo_hz), mel(hi_hz), n + 2)
    centres = torch.tensor([hz(float(m)) for m in mels])
    fc = centres[1:-1]
    bw = (centres[2:] - centres[:-2]) / 2  # about the spacing to the neighbours
    t = (torch.arange(kernel) - (kernel - 1) / 2) / SAMPLE_RATE
    sigma_t = 1 / (2 * math.pi * (bw / 2))  # Gaussian: sigma_t * sigma_f = 1 / (2 pi)
    sigma_t = sigma_t.clamp(max=kernel / SAMPLE_RATE / 5)
    win = torch.exp(-0.5 * (t[None] / sigma_t[:, None]) ** 2)
    win = win / win.sum(dim=1, keepdim=True)
    phase = 2 * math.pi * fc[:, None] * t[None]
    w = torch.cat([win * torch.cos(phase), win * torch.sin(phase)])
    return w.unsqueeze(1).float()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weight_bytes(model: nn.Module) -> int:
    """Bytes of all parameters and buffers (what a state_dict holds)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())
