"""BeepNet model files: one ``torch.save`` dict with the weights and everything needed to use them.

Keys: ``format`` (this module's file format name), ``format_version``, ``state_dict``,
``arch`` (NetConfig as a dict, or OriginalConfig with ``kind: original``), ``labels`` (class names; "beep" is the positive),
``sample_rate``, ``window_seconds``, ``hop_seconds``, ``threshold`` (operating
threshold on P(beep)), ``metrics`` (validation figures), ``data_sha256`` (hash of the
sorted training file list with labels), ``beepnet_version``, ``created``.

`load_model` checks all of it and raises `ModelFileError` whose message is one line.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from pathlib import Path

import torch

from .. import __version__
from ..fsutil import write_atomic
# The format's names, error and metadata checks are torch-free (the numpy runtime shares them).
from .modelfile import (  # noqa: F401 - re-exported: callers import them from here
    FORMAT,
    FORMAT_VERSION,
    POSITIVE,
    ModelFileError,
    ModelInfo,
    check_metadata,
    first_line,
    misfit,
    model_info,
    unreadable,
)
from .net import SAMPLE_RATE, BeepNet, NetConfig
from .original import KIND as ORIGINAL, OriginalBeepNet, OriginalConfig

log = logging.getLogger(__name__)


def data_hash(items: list[tuple[str, str]]) -> str:
    """sha256 over the sorted (relative path, label) pairs the model was trained on."""
    h = hashlib.sha256()
    for path, label in sorted(items):
        h.update(f"{path}\t{label}\n".encode())
    return h.hexdigest()


def build_net(arch: dict) -> BeepNet | OriginalBeepNet:
    """A fresh net for a model file's ``arch`` dict (files before ``kind`` are BeepNets)."""
    if arch.get("kind") == ORIGINAL:
        return OriginalBeepNet(OriginalConfig.from_dict(arch))
    return BeepNet(NetConfig.from_dict({k: v for k, v in arch.items() if k != "kind"}))


def save_model(path: str | os.PathLike, net: BeepNet | OriginalBeepNet, labels: list[str], threshold: float, *,
               metrics: dict | None = None, data_sha256: str = "", window_seconds: float = 3.0,
               hop_seconds: float = 1.5) -> None:
    """Write the model file atomically (a half-written file never replaces a good one)."""
    if POSITIVE not in labels:
        raise ValueError(f"labels must include {POSITIVE!r}")
    blob = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "arch": net.cfg.to_dict(), "labels": list(labels), "sample_rate": SAMPLE_RATE,
        "window_seconds": float(window_seconds), "hop_seconds": float(hop_seconds),
        "threshold": float(threshold), "metrics": dict(metrics or {}),
        "data_sha256": data_sha256, "beepnet_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(blob, buf)
    write_atomic(path, buf.getvalue(), durable=True)


def load_model(path: str | os.PathLike) -> ModelInfo:
    """Read and validate a model file; the net comes back in eval mode on the CPU."""
    path = Path(path)
    where = f"model file {path}"
    if not path.is_file():
        raise ModelFileError(f"{where}: no such file")
    try:
        # weights_only: a model file must never be able to run code when loaded.
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        reason = first_line(e)
        if reason.isdigit():  # torch's unpickler reports some damage as a bare number
            reason = "damaged or truncated"
        raise unreadable(where, reason) from None
    labels, threshold = check_metadata(blob, where)
    try:
        net = build_net(blob["arch"])
        if net.cfg.n_classes != len(labels):
            raise ValueError(f"{net.cfg.n_classes} outputs for {len(labels)} labels")
        net.load_state_dict(blob["state_dict"])
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as e:
        raise misfit(where, first_line(e)) from None
    net.eval()
    return model_info(blob, net, labels, threshold, str(path))
