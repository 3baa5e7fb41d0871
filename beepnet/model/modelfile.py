"""What a BeepNet model file holds, and the checks on it that need no torch.

`beepnet.model.io` (PyTorch) and `beepnet.model.npnet` (numpy) both read model files; the
format's names, the error they raise and the metadata checks live here so that the two
readers accept the same files with the same one-line messages, and so that the numpy
reader never imports torch through them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import __version__

FORMAT = "beepnet-model"
FORMAT_VERSION = 1
POSITIVE = "beep"
SAMPLE_RATE = 16000
"""The rate every model runs at (``beepnet.model.net`` takes it from here)."""


class ModelFileError(ValueError):
    """A model file that cannot be used; ``str()`` is one line, including the path."""


@dataclass
class ModelInfo:
    """A loaded model and its metadata."""

    net: Any
    """A torch BeepNet / OriginalBeepNet, or a numpy `beepnet.model.npnet.NumpyBeepNet`."""
    labels: list[str]
    threshold: float
    sample_rate: int = SAMPLE_RATE
    window_seconds: float = 3.0
    hop_seconds: float = 1.5
    metrics: dict = field(default_factory=dict)
    data_sha256: str = ""
    beepnet_version: str = __version__
    path: str = ""

    @property
    def beep_index(self) -> int:
        return self.labels.index(POSITIVE)


def first_line(e: BaseException) -> str:
    """An exception as a short reason: its first line, else its type's name."""
    text = str(e).strip()
    return text.splitlines()[0][:120] if text else type(e).__name__


def unreadable(where: str, reason: str) -> ModelFileError:
    return ModelFileError(f"{where}: not a readable BeepNet model ({reason[:120]})")


def misfit(where: str, reason: str) -> ModelFileError:
    return ModelFileError(f"{where}: weights do not fit the BeepNet architecture "
                          f"({reason[:120]})")


def check_metadata(blob: object, where: str) -> tuple[list[str], float]:
    """The file's labels and threshold, after the checks every reader makes."""
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelFileError(f"{where}: not a BeepNet model file")
    if blob.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{where}: format version {blob.get('format_version')} is not "
                             f"supported (this beepnet reads version {FORMAT_VERSION}); "
                             "retrain with `beepnet train`")
    if blob.get("sample_rate") != SAMPLE_RATE:
        raise ModelFileError(f"{where}: made for {blob.get('sample_rate')} Hz audio, "
                             f"beepnet runs at {SAMPLE_RATE} Hz")
    labels = blob.get("labels")
    if not isinstance(labels, list) or POSITIVE not in labels:
        raise ModelFileError(f"{where}: its class labels lack {POSITIVE!r}")
    threshold = blob.get("threshold")
    if not isinstance(threshold, float) or not 0.0 <= threshold <= 1.0:
        raise ModelFileError(f"{where}: operating threshold {threshold!r} is not in 0..1")
    return labels, threshold


def model_info(blob: dict, net: Any, labels: list[str], threshold: float, path: str
               ) -> ModelInfo:
    """The ModelInfo for a checked file and its ready net."""
    return ModelInfo(net=net, labels=labels, threshold=threshold,
                     window_seconds=float(blob.get("window_seconds", 3.0)),
                     hop_seconds=float(blob.get("hop_seconds", 1.5)),
                     metrics=dict(blob.get("metrics") or {}),
                     data_sha256=str(blob.get("data_sha256", "")),
                     beepnet_version=str(blob.get("beepnet_version", "")), path=path)
