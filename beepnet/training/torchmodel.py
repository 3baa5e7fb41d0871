"""Torch nets to and from model files, and the one-time conversion of beepnet 0.1's ``.pt``.

The file format and all its checks are `beepnet.model.modelfile`'s (torch-free): saving
hands it the state_dict as numpy arrays, loading reads the checked arrays and builds the
torch net its ``arch`` names. So a file that training writes is one the daemon's numpy
runtime reads, and a file either of them refuses, both refuse with the same line.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch

from ..model.arch import NetConfig, OriginalConfig, arch_from_dict
from ..model.modelfile import (
    FORMAT,
    POSITIVE,
    STEADY_WOBBLE_HZ,
    ModelFileError,
    ModelInfo,
    first_line,
    read_model_file,
    write_model_file,
)
from .net import BeepNet
from .original import OriginalBeepNet

log = logging.getLogger(__name__)

LEGACY_FORMAT_VERSION = 1
"""The ``torch.save`` dict of beepnet 0.1: the same metadata keys beside a ``state_dict``."""


def data_hash(items: list[tuple[str, str]]) -> str:
    """sha256 over the sorted (relative path, label) pairs the model was trained on."""
    h = hashlib.sha256()
    for path, label in sorted(items):
        h.update(f"{path}\t{label}\n".encode())
    return h.hexdigest()


def trained_on() -> str:
    """The CPU and the torch build training runs on, as a model file records it: on
    another kind of CPU torch's vector kernels round float sums differently, and the same
    code and data train into other weights."""
    import platform

    from ..bench.machine import cpu_model

    return (f"{cpu_model()} ({platform.machine()}), torch {torch.__version__}, "
            f"{torch.backends.cpu.get_cpu_capability()} kernels")


def build_net(arch: NetConfig | OriginalConfig) -> BeepNet | OriginalBeepNet:
    """A fresh torch net for an architecture."""
    return OriginalBeepNet(arch) if isinstance(arch, OriginalConfig) else BeepNet(arch)


def save_model(path: str | os.PathLike, net: BeepNet | OriginalBeepNet, labels: list[str],
               threshold: float, *, metrics: dict | None = None, data_sha256: str = "",
               window_seconds: float = 3.0, hop_seconds: float = 1.5,
               created: str | None = None, beep_pitches_hz: tuple[float, ...] = (),
               beep_timbre: tuple = (), beep_min_notes: int = 1,
               beep_wobble_hz: float = STEADY_WOBBLE_HZ) -> None:
    """Write ``net`` as a model file, atomically; ``beep_pitches_hz``, ``beep_timbre``,
    ``beep_min_notes`` and ``beep_wobble_hz``: one machine's beep
    (`beepnet.model.modelfile.write_model_file`)."""
    tensors = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    write_model_file(path, tensors, net.cfg, labels, threshold, metrics=metrics,
                     data_sha256=data_sha256, window_seconds=window_seconds,
                     hop_seconds=hop_seconds, created=created,
                     beep_pitches_hz=beep_pitches_hz, beep_timbre=beep_timbre,
                     beep_min_notes=beep_min_notes, beep_wobble_hz=beep_wobble_hz,
                     trained_on=trained_on())


def load_model(path: str | os.PathLike) -> ModelInfo:
    """Read and check a model file; the torch net comes back in eval mode on the CPU."""
    mf = read_model_file(path)
    net = build_net(mf.arch)
    # The shapes were checked against the architecture by read_model_file.
    net.load_state_dict({k: torch.from_numpy(v) for k, v in mf.tensors.items()})
    net.eval()
    return ModelInfo.of(mf, net)


def convert_legacy(old: str | os.PathLike, new: str | os.PathLike) -> ModelInfo:
    """Rewrite a beepnet 0.1 ``.pt`` model as a model file of today's format.

    The old file is read by ``torch.load(weights_only=True)``, which runs no code; its
    weights and metadata are carried over unchanged, then the new file is read back
    through the same checks as any other, so a conversion never writes a file that the
    daemon would refuse."""
    old, new = Path(old).expanduser(), Path(new).expanduser()
    where = f"model file {old}"
    if not old.is_file():
        raise ModelFileError(f"{where}: no such file")
    if old.resolve() == new.resolve():
        raise ModelFileError(f"{where}: give the converted file another name")
    try:
        blob = torch.load(old, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        reason = first_line(e)
        raise ModelFileError(f"{where}: not a readable beepnet 0.1 model "
                             f"({'damaged or truncated' if reason.isdigit() else reason})"
                             ) from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelFileError(f"{where}: not a BeepNet model file")
    if blob.get("format_version") != LEGACY_FORMAT_VERSION:
        raise ModelFileError(f"{where}: format version {blob.get('format_version')}, not "
                             f"beepnet 0.1's {LEGACY_FORMAT_VERSION}")
    labels, state = blob.get("labels"), blob.get("state_dict")
    if not isinstance(labels, list) or POSITIVE not in labels or not isinstance(state, dict):
        raise ModelFileError(f"{where}: its labels or weights are missing")
    try:
        arch = arch_from_dict(blob.get("arch"))
        tensors = {str(k): v.numpy() for k, v in state.items()}
        write_model_file(new, tensors, arch, labels, float(blob.get("threshold", -1)),
                         metrics=blob.get("metrics"), data_sha256=blob.get("data_sha256", ""),
                         window_seconds=blob.get("window_seconds", 3.0),
                         hop_seconds=blob.get("hop_seconds", 1.5), created=blob.get("created"))
    except (AttributeError, TypeError, ValueError) as e:
        raise ModelFileError(f"{where}: cannot convert it ({first_line(e)})") from None
    try:
        return load_model(new)
    except ModelFileError:
        new.unlink(missing_ok=True)  # never leave a file behind that nothing can load
        raise
