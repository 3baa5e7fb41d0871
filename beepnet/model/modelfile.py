"""BeepNet model files: the weights in safetensors, the metadata in its header. No torch.

A model file is one ``.safetensors`` file: an 8-byte length, a JSON header naming each
tensor's dtype, shape and byte range, then the raw little-endian numbers. It holds no
code, so loading one can never run any. The header's ``__metadata__`` has one entry,
``"beepnet"``, a JSON object:

``format`` (``"beepnet-model"``), ``format_version`` (2), ``arch`` (`beepnet.model.arch`
as a dict, with its ``kind``), ``labels`` (class names; ``"beep"`` is the positive),
``sample_rate``, ``window_seconds``, ``hop_seconds``, ``threshold`` (on P(beep)),
``metrics`` (validation figures), ``data_sha256`` (of the sorted training file list with
labels), ``beepnet_version`` and ``created``; a model made for one machine adds
``beep_pitches_hz`` and ``beep_timbre`` (``beep_min_notes`` for a tune, ``beep_wobble_hz``
for a shaky beep), one trained by `beepnet train` ``trained_on`` (the CPU and torch build:
`beepnet.training.rebuilt`).

Reading is in two steps. `read_header` checks everything but the numbers themselves
without numpy (the supervisor runs it at start, before any process is spawned: importing
numpy would cost that process 18 MB for nothing else). `read_model_file` then reads the
weights through safetensors' numpy API, for the classifier and for training. A file is
untrusted input; it is rejected with one-line `ModelFileError` in bounded memory when:

- it is larger than `MAX_FILE_BYTES` (a BeepNet is 0.5 MB), so nothing below can be asked
  to hold more than that;
- its header is not a JSON object within the file, or its tensors' byte ranges do not
  match their dtypes and shapes (a shape of 10^12 elements over 16 bytes), overlap, leave
  gaps or stop short of the file's end (checked by `read_header`, then again by
  safetensors);
- the metadata is missing, not JSON, or wrong (format, version, rate, labels, threshold,
  an architecture with unknown keys or absurd sizes);
- any tensor's name, dtype or shape differs from what that architecture has, which is
  known before a single weight is read; or a weight is not finite.

Files from beepnet 0.1 were ``torch.save`` zip archives (``.pt``): they are recognised
and refused with the command that converts them once (`beepnet.training.torchmodel`).
"""

from __future__ import annotations

import json
import math
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..audio import SAMPLE_RATE
from ..fsutil import write_atomic
from .arch import Arch, arch_from_dict

if TYPE_CHECKING:
    import numpy as np

FORMAT = "beepnet-model"
FORMAT_VERSION = 2
"""1 was the ``torch.save`` archive of beepnet 0.1; 2 is safetensors."""
POSITIVE = "beep"
SUFFIX = ".safetensors"
METADATA_KEY = "beepnet"
MAX_FILE_BYTES = 16 << 20
"""Largest model file read (a BeepNet is about 0.5 MB; the original 2-filter net 0.1 MB)."""
STEADY_WOBBLE_HZ = 5.0
"""The frequency wobble (standard deviation over a tone, in the tone tracker's 32-ms frames)
that costs a tone one unit of the tracker's score: `ToneDetector`'s own default, and the
pitch check's unless the machine's beep is shakier (`beepnet.enroll.find.beep_wobble`); a
model file without ``beep_wobble_hz`` has this."""
_ZIP_MAGIC = b"PK\x03\x04"
_ITEMSIZE = {"F32": 4, "I64": 8, "F16": 2, "BF16": 2, "F64": 8, "I32": 4, "I16": 2,
             "I8": 1, "U8": 1, "BOOL": 1}
"""Bytes per element of safetensors' dtypes (training writes F32 and I64 only)."""


class ModelFileError(ValueError):
    """A model file that cannot be used; ``str()`` is one line, including the path."""


@dataclass
class Header:
    """A model file's checked header: everything but the numbers."""

    path: str
    arch: Arch
    labels: list[str]
    threshold: float
    meta: dict[str, Any]


@dataclass
class ModelFile(Header):
    """A checked model file, with its weights as numpy arrays."""

    tensors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ModelInfo:
    """A loaded model, ready to score, and its metadata."""

    net: Any
    """A numpy `beepnet.model.npnet.NumpyBeepNet`, or a torch net from training."""
    labels: list[str]
    threshold: float
    sample_rate: int = SAMPLE_RATE
    window_seconds: float = 3.0
    hop_seconds: float = 1.5
    metrics: dict = field(default_factory=dict)
    data_sha256: str = ""
    beepnet_version: str = __version__
    path: str = ""
    beep_pitches_hz: tuple[float, ...] = ()
    """An enrolled model's beep pitches (`write_model_file`); () for a general model."""
    beep_timbre: tuple[dict | None, ...] = ()
    """The timbre of the beep at each of ``beep_pitches_hz`` (`beepnet.detectors.timbre`),
    None where enroll found too few beeps; () for a model without one."""
    beep_min_notes: int = 1
    """How many different notes of ``beep_pitches_hz`` a beep window must hold: 2 when the
    machine's beep is a tune (`beepnet.enroll.find.min_notes`)."""
    beep_wobble_hz: float = STEADY_WOBBLE_HZ
    """The wobble of the machine's beep pitch that the pitch check's tone tracker allows
    (`beepnet.enroll.find.beep_wobble`); `STEADY_WOBBLE_HZ` unless the beep is shaky."""

    @property
    def beep_index(self) -> int:
        return self.labels.index(POSITIVE)

    @classmethod
    def of(cls, mf: ModelFile, net: Any) -> ModelInfo:
        m = mf.meta
        return cls(net=net, labels=list(mf.labels), threshold=mf.threshold,
                   window_seconds=float(m.get("window_seconds", 3.0)),
                   hop_seconds=float(m.get("hop_seconds", 1.5)),
                   metrics=dict(m.get("metrics") or {}),
                   data_sha256=str(m.get("data_sha256", "")),
                   beepnet_version=str(m.get("beepnet_version", "")), path=mf.path,
                   beep_pitches_hz=_pitches(mf.path, m.get("beep_pitches_hz", [])),
                   beep_timbre=_timbre(mf.path, m.get("beep_timbre", []),
                                       len(m.get("beep_pitches_hz", []))),
                   beep_min_notes=_min_notes(mf.path, m.get("beep_min_notes", 1)),
                   beep_wobble_hz=_wobble(mf.path, m.get("beep_wobble_hz")))


def _pitches(path: str, value: Any) -> tuple[float, ...]:
    if (not isinstance(value, list)
            or not all(isinstance(f, (int, float)) and 20 <= f <= 20000 for f in value)):
        raise ModelFileError(f"{path}: beep_pitches_hz must be a list of frequencies in Hz")
    return tuple(float(f) for f in value)


def _min_notes(path: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 8:
        raise ModelFileError(f"{path}: beep_min_notes must be a whole number from 1 to 8")
    return value


def _wobble(path: str, value: Any) -> float:
    if value is None:
        return STEADY_WOBBLE_HZ
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 1 <= value <= 100:
        raise ModelFileError(f"{path}: beep_wobble_hz must be a number of Hz from 1 to 100")
    return float(value)


def _timbre(path: str, value: Any, pitches: int) -> tuple[dict | None, ...]:
    from ..detectors.timbre import check_reference

    if value == []:
        return ()
    if (not isinstance(value, list) or len(value) != pitches
            or not all(check_reference(v) for v in value)):
        raise ModelFileError(f"{path}: beep_timbre must hold one timbre (or null) per beep "
                             "pitch")
    return tuple(value)


def first_line(e: BaseException) -> str:
    """An exception as a short reason: its first line, else its type's name."""
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else type(e).__name__


def convert_hint(path: str | os.PathLike) -> str:
    new = Path(path).with_suffix(SUFFIX)
    return (f"a PyTorch model file from beepnet 0.1; convert it once with `beepnet model "
            f"convert {path} {new}` (needs the train extra: pip install 'beepnet[train]')")


def check_metadata(blob: object, where: str) -> tuple[list[str], float]:
    """The file's labels and threshold, after the checks every reader makes."""
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelFileError(f"{where}: not a BeepNet model file")
    if blob.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{where}: format version {str(blob.get('format_version'))[:20]} "
                             f"is not supported (this beepnet reads version {FORMAT_VERSION}); "
                             "retrain with `beepnet train`")
    if blob.get("sample_rate") != SAMPLE_RATE:
        raise ModelFileError(f"{where}: made for {str(blob.get('sample_rate'))[:20]} Hz audio, "
                             f"beepnet runs at {SAMPLE_RATE} Hz")
    labels = blob.get("labels")
    if (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)
            or POSITIVE not in labels or len(set(labels)) != len(labels)):
        raise ModelFileError(f"{where}: its class labels are not distinct names including "
                             f"{POSITIVE!r}")
    threshold = blob.get("threshold")
    if not isinstance(threshold, float) or not 0.0 <= threshold <= 1.0:
        raise ModelFileError(f"{where}: operating threshold {str(threshold)[:20]} is not in 0..1")
    for key in ("window_seconds", "hop_seconds"):
        v = blob.get(key, 1.0)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.1 <= v <= 60:
            raise ModelFileError(f"{where}: {key} {str(v)[:20]} is not 0.1 to 60 seconds")
    return labels, threshold


def read_header(path: str | os.PathLike) -> Header:
    """Check a model file without reading its numbers (and without numpy); see the module
    docstring. ModelFileError otherwise."""
    path = Path(path).expanduser()
    where = f"model file {path}"
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ModelFileError(f"{where}: not a file")
        with open(path, "rb") as f:
            head = f.read(8)
            if head.startswith(_ZIP_MAGIC):
                raise ModelFileError(f"{where}: {convert_hint(path)}")
            if size == 0:
                raise ModelFileError(f"{where}: empty file")
            if size > MAX_FILE_BYTES:
                raise ModelFileError(f"{where}: {size} bytes, more than a BeepNet model can "
                                     f"be ({MAX_FILE_BYTES >> 20} MB); not read")
            # Hand-parsed rather than by safetensors: its numpy API imports numpy, which
            # the supervisor never needs otherwise. The layout is two fields.
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if not 2 <= n <= size - 8:
                raise ModelFileError(f"{where}: not a readable BeepNet model (its header "
                                     "length does not fit the file)")
            table = json.loads(f.read(n))
    except ModelFileError:
        raise
    except FileNotFoundError:
        raise ModelFileError(f"{where}: no such file") from None
    except OSError as e:
        raise ModelFileError(f"{where}: cannot read it ({e.strerror or e})") from None
    except ValueError as e:  # JSON, or UTF-8 inside it
        raise ModelFileError(f"{where}: not a readable BeepNet model (its header is not "
                             f"JSON: {first_line(e)})") from None
    if not isinstance(table, dict):
        raise ModelFileError(f"{where}: not a readable BeepNet model (no tensor table)")
    meta_strings = table.pop("__metadata__", None) or {}
    try:
        _check_layout(table, size - 8 - n)
    except ValueError as e:
        raise ModelFileError(f"{where}: not a readable BeepNet model ({first_line(e)})") \
            from None
    raw = meta_strings.get(METADATA_KEY) if isinstance(meta_strings, dict) else None
    if not isinstance(raw, str):
        raise ModelFileError(f"{where}: not a BeepNet model file (a safetensors file "
                             "without beepnet's metadata)")
    try:
        blob = json.loads(raw)
    except ValueError as e:
        raise ModelFileError(f"{where}: its metadata is not JSON ({first_line(e)})") from None
    labels, threshold = check_metadata(blob, where)
    try:
        arch = arch_from_dict(blob.get("arch"))
        if arch.n_classes != len(labels):
            raise ValueError(f"{arch.n_classes} outputs for {len(labels)} labels")
        _check_table(table, arch)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{where}: weights do not fit the BeepNet architecture "
                             f"({first_line(e)})") from None
    return Header(path=str(path), arch=arch, labels=labels, threshold=threshold, meta=blob)


def _check_layout(table: dict, data_bytes: int) -> None:
    """Every tensor's byte range matches its dtype and shape, and the ranges tile the data
    exactly (what safetensors itself insists on); ValueError says what is wrong."""
    spans = []
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise ValueError(f"tensor {str(name)[:40]} has no description")
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        itemsize = _ITEMSIZE.get(entry.get("dtype"))
        if (itemsize is None or not isinstance(shape, list)
                or not all(type(v) is int and v >= 0 for v in shape)
                or not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(v) is int for v in offsets)
                or offsets[1] - offsets[0] != math.prod(shape) * itemsize):
            raise ValueError(f"tensor {str(name)[:40]}: its bytes do not match its type and "
                             "shape")
        spans.append(tuple(offsets))
    end = 0
    for a, b in sorted(spans):
        if a != end:
            raise ValueError("the tensors' bytes overlap or leave gaps")
        end = b
    if end != data_bytes:
        raise ValueError(f"cut short or padded: its tensors take {end} bytes, the file has "
                         f"{data_bytes}")


def _check_table(table: dict, arch: Arch) -> None:
    """The tensors are the architecture's, with its shapes, in F32 (I64 for the BatchNorm
    counters); ValueError says what is not."""
    expected = arch.shapes()
    missing = sorted(set(expected) - set(table))
    extra = sorted(map(str, set(table) - set(expected)))
    if missing or extra:
        raise ValueError("; ".join(filter(None, (
            f"missing {', '.join(missing)}"[:80] if missing else "",
            f"unexpected {', '.join(extra)}"[:80] if extra else ""))))
    for name, shape in expected.items():
        got = table[name]["shape"]
        if tuple(got) != shape:
            raise ValueError(f"size mismatch for {name}: {str(got)[:40]} in the file, "
                             f"{list(shape)} in the net")
        want = "I64" if name.endswith("num_batches_tracked") else "F32"
        if table[name]["dtype"] != want:
            raise ValueError(f"{name} is {table[name]['dtype']}, not {want}")


def read_model_file(path: str | os.PathLike) -> ModelFile:
    """`read_header`, then the weights as numpy arrays; ModelFileError for any problem."""
    header = read_header(path)
    where = f"model file {header.path}"
    try:
        tensors = _read_tensors(header)
    except ModelFileError:
        raise
    except Exception as e:  # noqa: BLE001 - safetensors' own error, OSError, MemoryError...
        reason = first_line(e).replace("Error while deserializing header: ", "")
        raise ModelFileError(f"{where}: not a readable BeepNet model ({reason})") from None
    return ModelFile(path=header.path, arch=header.arch, labels=header.labels,
                     threshold=header.threshold, meta=header.meta, tensors=tensors)


def _read_tensors(header: Header) -> dict[str, np.ndarray]:
    import numpy as np
    from safetensors import safe_open

    with safe_open(header.path, framework="numpy") as f:
        # The file may have changed since read_header: check the shapes safetensors sees.
        expected = header.arch.shapes()
        if set(f.keys()) != set(expected) or any(
                tuple(f.get_slice(k).get_shape()) != shape for k, shape in expected.items()):
            raise ModelFileError(f"model file {header.path}: changed while being read")
        tensors = {name: f.get_tensor(name) for name in expected}
    for name, v in tensors.items():
        if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            raise ModelFileError(f"model file {header.path}: weights do not fit the BeepNet "
                                 f"architecture ({name} has values that are not finite)")
    return tensors


def model_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be used as a model file (one line), or None: `read_header`,
    the start-up check."""
    try:
        read_header(path)
    except ModelFileError as e:
        return str(e)
    return None


def write_model_file(path: str | os.PathLike, tensors: dict[str, np.ndarray], arch: Arch,
                     labels: list[str], threshold: float, *, metrics: dict | None = None,
                     data_sha256: str = "", window_seconds: float = 3.0,
                     hop_seconds: float = 1.5, created: str | None = None,
                     beep_pitches_hz: list[float] | tuple[float, ...] = (),
                     beep_timbre: list | tuple = (), beep_min_notes: int = 1,
                     beep_wobble_hz: float = STEADY_WOBBLE_HZ, trained_on: str = ""
                     ) -> None:
    """Write a model file atomically (a half-written file never replaces a good one).

    ``beep_pitches_hz``: the pitches of the one machine's beep a model was made for
    (`beepnet enroll`); the detector then also wants a tone at one of them (see
    `beepnet.detectors.beepnet`). Empty for a general model. ``beep_timbre``: one
    `beepnet.detectors.timbre.ranges` (or None) per pitch, which that tone must then fit;
    empty for none. ``beep_min_notes``: 2 when the beep is a tune whose window must hold
    two of its notes (written only then). ``beep_wobble_hz``: the wobble of the beep's
    pitch that the check allows (written only when not `STEADY_WOBBLE_HZ`).
    ``trained_on``: the CPU and torch that trained the weights
    (`beepnet.training.torchmodel.trained_on`): the same training on another kind of CPU
    gives other weights, and `beepnet.training.rebuilt` says so when a rebuild differs."""
    import numpy as np
    from safetensors.numpy import save

    if POSITIVE not in labels:
        raise ValueError(f"labels must include {POSITIVE!r}")
    blob = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "arch": arch.to_dict(),
        "labels": list(labels), "sample_rate": SAMPLE_RATE,
        "window_seconds": float(window_seconds), "hop_seconds": float(hop_seconds),
        "threshold": float(threshold), "metrics": dict(metrics or {}),
        "data_sha256": data_sha256, "beepnet_version": __version__,
        "created": created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if beep_pitches_hz:
        blob["beep_pitches_hz"] = [round(float(f), 1) for f in beep_pitches_hz]
    if beep_timbre:
        if len(beep_timbre) != len(beep_pitches_hz):
            raise ValueError("beep_timbre needs one entry per beep pitch")
        blob["beep_timbre"] = list(beep_timbre)
    if beep_min_notes > 1:
        blob["beep_min_notes"] = int(beep_min_notes)
    if beep_wobble_hz != STEADY_WOBBLE_HZ:
        blob["beep_wobble_hz"] = round(float(beep_wobble_hz), 1)
    if trained_on:
        blob["trained_on"] = str(trained_on)
    arrays = {}
    for name, v in tensors.items():
        v = np.asarray(v)
        dtype = np.int64 if v.dtype.kind in "iu" else np.float32
        arrays[name] = np.array(v, dtype=dtype, order="C")  # ascontiguousarray makes 0-d 1-d
    data = save(arrays, metadata={METADATA_KEY: json.dumps(blob, sort_keys=True)})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, durable=True)
