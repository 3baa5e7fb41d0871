"""BeepNet inference in numpy: the same scores as PyTorch without importing torch.

``import torch`` alone costs a process about 220 MB of memory; the net is 500 kB. With
``detector.runtime = "numpy"`` the classifier reads the model file with
`beepnet.model.torchfile` and runs `NumpyBeepNet`, which computes what
`beepnet.model.net.BeepNet.forward` computes in eval mode, layer for layer:

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
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import torchfile
from .arch import NetConfig
from .modelfile import (
    SAMPLE_RATE,
    ModelFileError,
    ModelInfo,
    check_metadata,
    first_line,
    misfit,
    model_info,
    unreadable,
)

log = logging.getLogger(__name__)

BN_EPS = 1e-5
"""torch.nn.BatchNorm1d's default eps, which BeepNet uses."""
RMS_FLOOR = 1e-10
"""BeepNet.features' clamp on the mean square (keeps digital silence finite)."""
LOG_FLOOR = 1e-4
"""Added to the filterbank energies before the log, as in BeepNet.features."""
BODY_KERNEL = 5


@dataclass(frozen=True)
class Arch(NetConfig):
    """A model file's ``arch`` for BeepNet, checked field by field (a file is untrusted
    input), with the layer layout the numpy forward pass needs."""

    @classmethod
    def from_dict(cls, d: dict) -> Arch:
        if not isinstance(d, dict):
            raise ValueError("no architecture")
        if d.get("kind", "beepnet") != "beepnet":
            raise ValueError(f"kind {d.get('kind')!r}")
        d = {k: v for k, v in d.items() if k != "kind"}
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown architecture keys {', '.join(sorted(map(str, unknown)))}")
        if "channels" in d:
            if not isinstance(d["channels"], (list, tuple)):
                raise ValueError("channels is not a list")
            d["channels"] = tuple(d["channels"])
        arch = cls(**d)
        sizes = [arch.n_classes, arch.n_filters, arch.kernel, arch.stride, arch.pool,
                 *arch.channels]
        if not arch.channels or not all(isinstance(v, int) and v > 0 for v in sizes):
            raise ValueError("sizes must be positive whole numbers")
        return arch

    def body_layers(self) -> list[tuple[int, int, int, int]]:
        """(conv index in ``body``, c_in, c_out, dilation) per block; its BatchNorm is the
        next index. Block 0 has conv, norm, ReLU and pooling; the others conv, norm, ReLU."""
        out, index, c_in = [], 0, self.n_filters
        for i, c_out in enumerate(self.channels):
            out.append((index, c_in, c_out, self.dilation(i)))
            index += 4 if i == 0 else 3
            c_in = c_out
        return out

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every state_dict entry BeepNet has, with its shape."""
        def norm(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
            return {f"{prefix}.{k}": (c,) for k in ("weight", "bias", "running_mean",
                                                      "running_var")} | {
                f"{prefix}.num_batches_tracked": ()}

        out = {"frontend.weight": (2 * self.n_filters, 1, self.kernel),
               **norm("front_norm", self.n_filters)}
        for index, c_in, c_out, _ in self.body_layers():
            out[f"body.{index}.weight"] = (c_out, c_in, BODY_KERNEL)
            out.update(norm(f"body.{index + 1}", c_out))
        out["classifier.weight"] = (self.n_classes, 2 * self.channels[-1], 1)
        out["classifier.bias"] = (self.n_classes,)
        return out


def _fold_norm(w: dict[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm in eval mode as ``x * scale + shift``."""
    scale = w[f"{prefix}.weight"] / np.sqrt(w[f"{prefix}.running_var"] + np.float32(BN_EPS))
    return scale, w[f"{prefix}.bias"] - w[f"{prefix}.running_mean"] * scale


class NumpyBeepNet:
    """Raw waveform (batch, samples) -> (clip logits (batch, C), frame logits (batch, C, T)),
    as numpy float32; interchangeable with an eval-mode BeepNet for the detector."""

    def __init__(self, cfg: Arch, state: dict[str, np.ndarray]) -> None:
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
    """Read and check a model file like `beepnet.model.io.load_model`, with a NumpyBeepNet."""
    path = Path(path)
    where = f"model file {path}"
    if not path.is_file():
        raise ModelFileError(f"{where}: no such file")
    try:
        blob = torchfile.load(path)
    except (torchfile.TorchFileError, zipfile.BadZipFile) as e:
        raise unreadable(where, first_line(e)) from None
    except Exception as e:  # noqa: BLE001 - damage shows as many kinds (EOF, pickle, zlib)
        raise unreadable(where, f"damaged or truncated: {first_line(e)}") from None
    labels, threshold = check_metadata(blob, where)
    arch = blob.get("arch")
    if isinstance(arch, dict) and arch.get("kind", "beepnet") != "beepnet":
        raise ModelFileError(f"{where}: holds the {arch.get('kind')!r} net, which only the "
                             "torch runtime runs; set detector.runtime = \"torch\"")
    try:
        cfg = Arch.from_dict(arch)
        if cfg.n_classes != len(labels):
            raise ValueError(f"{cfg.n_classes} outputs for {len(labels)} labels")
        state = blob.get("state_dict")
        if not isinstance(state, dict):
            raise ValueError("no state_dict")
        _check_state(state, cfg.shapes())
        net = NumpyBeepNet(cfg, state)
    except (TypeError, ValueError) as e:
        raise misfit(where, first_line(e)) from None
    return model_info(blob, net, labels, threshold, str(path))


def _check_state(state: dict, shapes: dict[str, tuple[int, ...]]) -> None:
    """What load_state_dict(strict=True) checks: the same keys, each with its shape."""
    missing = [k for k in shapes if k not in state]
    extra = [k for k in state if k not in shapes]
    if missing or extra:
        raise ValueError("; ".join(
            part for part in (f"missing {', '.join(missing)}" if missing else "",
                              f"unexpected {', '.join(map(str, extra))}" if extra else "")
            if part))
    for k, shape in shapes.items():
        v = state[k]
        if not isinstance(v, np.ndarray) or v.dtype.kind not in "fiub":
            raise ValueError(f"{k} is not a tensor")
        if v.shape != shape:
            raise ValueError(f"size mismatch for {k}: {tuple(v.shape)} in the file, "
                             f"{shape} in the net")
        if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            raise ValueError(f"{k} has values that are not finite")


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
