"""BeepNet inference in numpy: the same scores as PyTorch without importing torch.

The daemon's runtime (``detector.runtime = "numpy"``, the default). ``import torch`` alone
costs a process about 220 MB of memory and a Pi owner a download of several hundred MB;
the net is 500 kB. The classifier reads the model file with `beepnet.model.modelfile`
and runs `NumpyBeepNet`, which computes what `beepnet.training.net.BeepNet.forward`
computes in eval mode, layer for layer:

- per-window RMS normalisation (same floor as the net);
- the learned filterbank (Conv1d, kernel 400, stride 160, padding 200) as one matrix
  product of the framed waveform with the filters, then summed squares of each
  (cosine, sine) pair and ``log(. + 1e-4)``;
- BatchNorm with its running statistics folded into a scale and shift (into the
  weights of the convolution before it, in the body);
- each body block's dilated Conv1d as one matrix product over stacked shifted copies
  of its input (im2col), ReLU, and the 2x max pooling (``ceil_mode``) after block 0;
- frame logits from [features, time mean], clip logits from [time max, time mean].

Dropout does nothing in eval mode. Only the ``beepnet`` architecture runs here: a file
with the original net (``arch.kind = "original"``, a baseline that is never the default)
is refused with a message that says to use the torch runtime, rather than silently
loading torch on a board picked for its small memory.

All arithmetic is float32, as in torch; the scores agree with torch's to about 1e-6.
"""

from __future__ import annotations

import ctypes
import logging
import os

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..audio import SAMPLE_RATE
from .arch import BODY_KERNEL, NetConfig
from .modelfile import ModelFileError, ModelInfo, read_model_file
from .preflight import torch_only

log = logging.getLogger(__name__)

BN_EPS = 1e-5
"""torch.nn.BatchNorm1d's default eps, which BeepNet uses."""
RMS_FLOOR = 1e-10
"""BeepNet.features' clamp on the mean square (keeps digital silence finite)."""
LOG_FLOOR = 1e-4
"""Added to the filterbank energies before the log, as in BeepNet.features."""


def _fold_norm(w: dict[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm in eval mode as ``x * scale + shift``."""
    scale = w[f"{prefix}.weight"] / np.sqrt(w[f"{prefix}.running_var"] + np.float32(BN_EPS))
    return scale, w[f"{prefix}.bias"] - w[f"{prefix}.running_mean"] * scale


class NumpyBeepNet:
    """Raw waveform (batch, samples) -> (clip logits (batch, C), frame logits (batch, C, T)),
    as numpy float32; interchangeable with an eval-mode BeepNet for the detector."""

    def __init__(self, cfg: NetConfig, state: dict[str, np.ndarray]) -> None:
        self.cfg = cfg
        w = {k: np.asarray(state[k], np.float32) for k in cfg.shapes()}
        # Time runs down the rows everywhere (T, channels): each layer is `x @ weights`.
        self._front = np.ascontiguousarray(w["frontend.weight"][:, 0, :].T)  # (kernel, 2f)
        self._front_scale, self._front_shift = _fold_norm(w, "front_norm")
        self._body = []
        for index, c_in, c_out, dil in cfg.body_layers():
            scale, shift = _fold_norm(w, f"body.{index + 1}")
            conv = w[f"body.{index}.weight"] * scale[:, None, None]  # (c_out, c_in, 5)
            # Rows ordered (channel, tap), as the (T, c_in, 5) im2col view flattens.
            self._body.append((np.ascontiguousarray(conv.reshape(c_out, c_in * BODY_KERNEL).T),
                               shift, dil))
        cls = w["classifier.weight"][:, :, 0]  # (n_classes, 2 c): [features | mean]
        c = cfg.channels[-1]
        self._cls_feat = np.ascontiguousarray(cls[:, :c].T)
        self._cls_mean = np.ascontiguousarray(cls[:, c:].T)
        self._cls_bias = w["classifier.bias"]

    @property
    def frame_seconds(self) -> float:
        """Time between frame outputs."""
        return self.cfg.stride * self.cfg.pool / SAMPLE_RATE

    def __call__(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        wave = np.asarray(wave, np.float32)
        outs = [self.forward_one(row) for row in wave.reshape(-1, wave.shape[-1])]
        return (np.stack([c for c, _ in outs]), np.stack([fr for _, fr in outs]))

    def features(self, x: np.ndarray) -> np.ndarray:
        """One window (samples,) -> body features (T, channels)."""
        cfg = self.cfg
        # 1. level normalisation.
        rms = np.sqrt(max(np.float32(np.mean(x * x)), np.float32(RMS_FLOOR)))
        pad = cfg.kernel // 2
        padded = np.zeros(len(x) + 2 * pad, np.float32)
        np.divide(x, rms, out=padded[pad:pad + len(x)])
        # 2. filterbank: frames (T, kernel) @ filters; a contiguous copy lets BLAS run it.
        frames = np.ascontiguousarray(sliding_window_view(padded, cfg.kernel)[::cfg.stride])
        y = frames @ self._front
        y *= y
        e = y[:, :cfg.n_filters] + y[:, cfg.n_filters:]
        e += np.float32(LOG_FLOOR)
        h = np.log(e, out=e)
        h *= self._front_scale
        h += self._front_shift
        # 3. body.
        for i, (weight, shift, dil) in enumerate(self._body):
            t = len(h)
            reach = (BODY_KERNEL // 2) * dil
            hp = np.zeros((t + 2 * reach, h.shape[1]), np.float32)
            hp[reach:reach + t] = h
            cols = sliding_window_view(hp, 2 * reach + 1, axis=0)[:, :, ::dil]  # (T, c, 5)
            h = cols.reshape(t, -1) @ weight
            h += shift
            np.maximum(h, 0, out=h)
            if i == 0:
                h = self._pool(h)
        return h

    def _pool(self, h: np.ndarray) -> np.ndarray:
        """MaxPool1d(pool, ceil_mode=True) over time: a short last window still counts."""
        p = self.cfg.pool
        t = len(h)
        full = t - t % p
        out = h[:full].reshape(full // p, p, h.shape[1]).max(axis=1)
        if full < t:
            out = np.concatenate([out, h[full:].max(axis=0, keepdims=True)])
        return out

    def forward_one(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One window -> (clip logits (C,), frame logits (C, T))."""
        h = self.features(x)
        mean = h.mean(axis=0)
        by_mean = mean @ self._cls_mean + self._cls_bias
        frames = h @ self._cls_feat
        frames += by_mean
        clip = h.max(axis=0) @ self._cls_feat + by_mean
        return clip, frames.T


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


def load_numpy_model(path: str | os.PathLike) -> ModelInfo:
    """Read and check a model file, with a NumpyBeepNet to run it."""
    mf = read_model_file(path)
    if not isinstance(mf.arch, NetConfig):
        raise ModelFileError(torch_only(mf.path, mf.arch))
    return ModelInfo.of(mf, NumpyBeepNet(mf.arch, mf.tensors))


# ---------------------------------------------------------------------- BLAS threads

_SET_THREADS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
                "scipy_openblas_set_num_threads", "openblas_set_num_threads64_")


def limit_blas_threads(n: int = 1) -> bool:
    """Run numpy's matrix products on ``n`` threads (OpenBLAS's, found in this process).

    The classifier is one of three small processes on a board with few cores; OpenBLAS
    would otherwise start a thread per core and spin them for every window (and slow down
    badly when the cores are busy). Setting OPENBLAS_NUM_THREADS works only before numpy
    loads, which in the classifier has happened long before the detector is built.
    Returns whether a library took the setting; elsewhere (no /proc, another BLAS) numpy
    keeps its own threads.
    """
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f
                    if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return False
    done = False
    for lib in sorted(libs):
        try:
            handle = ctypes.CDLL(lib)  # already loaded: this only looks it up
        except OSError:
            continue
        for name in _SET_THREADS:
            fn = getattr(handle, name, None)
            if fn is not None:
                fn(ctypes.c_int(n))
                done = True
                break
    if not done:
        log.debug("no OpenBLAS found to limit to %d thread(s)", n)
    return done
