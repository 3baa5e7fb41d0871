"""Where the shipped model is, and whether a BeepNet detector can start: without numpy.

`model_problem` is what `beepnet run`, `detect` and `monitor` ask before anything else,
in the process that becomes the daemon's supervisor: that process never needs numpy (18 MB)
or torch, so nothing here imports them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from .arch import Arch, NetConfig
from .modelfile import ModelFileError, read_header

DEFAULT_MODEL_NAME = "beepnet-default.safetensors"
RUNTIMES = ("numpy", "torch")
TORCH_MISSING = ("detector.runtime = \"torch\" needs PyTorch, which is not installed: "
                 "pip install 'beepnet[train]' (or use runtime \"numpy\", the default)")


def torch_only(path: str | os.PathLike, arch: Arch) -> str:
    """The one line for a net the numpy runtime cannot run (the original 2-filter net)."""
    return (f"model file {path}: holds the {arch.kind!r} net, which only the torch runtime "
            "runs; set detector.runtime = \"torch\" (needs the train extra: pip install "
            "'beepnet[train]')")


def default_model_candidates() -> list[Path]:
    """Where the shipped model is looked for, in order.

    The repository keeps it in the top-level ``models/`` folder (a source checkout and
    an editable install find it there, next to the package); a regular pip install
    copies it as data into ``<prefix>/share/beepnet/models/`` (pyproject's data-files).
    """
    repo = Path(__file__).resolve().parents[2]
    return [repo / "models" / DEFAULT_MODEL_NAME,
            Path(sys.prefix) / "share" / "beepnet" / "models" / DEFAULT_MODEL_NAME]


def find_default_model() -> Path:
    for p in default_model_candidates():
        if p.is_file():
            return p
    raise ModelFileError(
        "no shipped BeepNet model found (looked in "
        + ", ".join(str(p) for p in default_model_candidates())
        + "); build it with `make model` or set detector.model")


def in_use_path(det) -> Path | None:
    """The model file detector settings ``det`` (a `DetectorConfig`) put in use, or None
    (the tone detector, or no shipped model to be found: loading says why)."""
    if det.kind != "beepnet":
        return None
    if det.model:
        return Path(det.model).expanduser()
    try:
        return find_default_model()
    except ModelFileError:
        return None


def model_problem(model_path: str | os.PathLike | None, runtime: str) -> str | None:
    """Why a BeepNet detector could not start with this model and runtime (one line), or None.

    Checks the runtime, then the file's header: everything but the numbers (see
    `beepnet.model.modelfile`), in bounded memory. A weight that is not finite is the one
    thing left to the classifier, which reads the numbers and refuses such a file too."""
    try:
        path = Path(model_path).expanduser() if model_path else find_default_model()
        if runtime == "torch" and importlib.util.find_spec("torch") is None:
            return TORCH_MISSING
        header = read_header(path)
    except ModelFileError as e:
        return str(e)
    if runtime == "numpy" and not isinstance(header.arch, NetConfig):
        return torch_only(path, header.arch)
    return None
