"""Reading a ``torch.save`` file of plain data and tensors without torch, tensors as numpy.

``torch.save`` writes a zip archive: ``<name>/data.pkl`` is a pickle of the saved object in
which every tensor is a call of ``torch._utils._rebuild_tensor_v2`` on a storage, and each
storage's bytes are the member ``<name>/data/<key>``. The pickle is read with an unpickler
that knows only the few names that format uses; any other global (``os.system``, a class
with a ``__reduce__``...) stops the read before anything is called, so, like
``torch.load(weights_only=True)``, a file can never run code.
"""

from __future__ import annotations

import collections
import io
import logging
import pickle
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

log = logging.getLogger(__name__)

MAX_MEMBER_BYTES = 64 << 20
"""Largest storage or pickle read (a BeepNet's is under 1 MB): a damaged or hostile
archive cannot make the reader allocate gigabytes."""

_STORAGE_DTYPES = {
    "DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "LongStorage": "i8",
    "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?",
}


class TorchFileError(ValueError):
    """The file is not a ``torch.save`` archive this reader accepts; one-line message."""


class _StorageType(NamedTuple):
    """Stands for ``torch.FloatStorage`` and the like. A tuple: a hostile pickle's BUILD
    cannot change it (these are shared by every load)."""

    name: str


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2``'s numpy twin: a strided view of the storage,
    copied; offset, sizes and strides are checked so that no view reaches outside it."""
    if not isinstance(storage, np.ndarray):
        raise TorchFileError("a tensor without a storage")
    dims = (size, stride)
    if (not isinstance(storage_offset, int) or storage_offset < 0
            or not all(isinstance(d, tuple) for d in dims) or len(size) != len(stride)
            or not all(isinstance(v, int) and v >= 0 for d in dims for v in d)):
        raise TorchFileError("a tensor with a bad shape")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= len(storage):
        raise TorchFileError("a tensor that reaches past its storage")
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=size,
        strides=tuple(s * storage.itemsize for s in stride), writeable=False)
    return np.array(view, order="C")


# (module, name) -> what the unpickler gets for it; nothing outside this table loads.
_ALLOWED: dict[tuple[str, str], object] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(io.BytesIO(data))
        self._archive, self._prefix, self._byteorder = archive, prefix, byteorder
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise TorchFileError(f"it names {module}.{name}, which a model file never "
                                 "needs; not loaded") from None

    def persistent_load(self, pid: object) -> np.ndarray:
        """A storage record ``('storage', type, key, location, numel)`` -> its elements."""
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or pid[1].name not in _STORAGE_DTYPES
                or not isinstance(pid[2], str) or not isinstance(pid[4], int) or pid[4] < 0):
            raise TorchFileError(f"an unknown storage record {str(pid)[:60]}")
        _, kind, key, _location, numel = pid
        if key not in self._storages:
            order = "<" if self._byteorder == "little" else ">"
            dtype = np.dtype(_STORAGE_DTYPES[kind.name]).newbyteorder(order)
            raw = _read(self._archive, f"{self._prefix}/data/{key}")
            if len(raw) < numel * dtype.itemsize:
                raise TorchFileError(f"storage {key} is cut short")
            # Native byte order from here on, so the arithmetic later runs at full speed.
            arr = np.frombuffer(raw, dtype, count=numel)
            self._storages[key] = arr.astype(dtype.newbyteorder("="))
        return self._storages[key]


def _read(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise TorchFileError(f"member {name} is missing") from None
    if info.file_size > MAX_MEMBER_BYTES:
        raise TorchFileError(f"member {name} is {info.file_size} bytes, too large")
    return archive.read(info)  # checks the member's CRC


def load(path: str | Path) -> object:
    """The object ``torch.save`` wrote to ``path``, tensors as numpy arrays.

    Raises TorchFileError (or zipfile/OSError/pickle errors for a damaged file) with a
    message suitable as the reason in a one-line error.
    """
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.count("/") == 1
                   and n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise TorchFileError("a zip archive, but not a saved model")
        prefix = pickles[0].split("/")[0]
        try:
            byteorder = archive.read(f"{prefix}/byteorder").decode().strip()
        except KeyError:
            byteorder = "little"  # files from before torch wrote it were little-endian
        if byteorder not in ("little", "big"):
            raise TorchFileError(f"unknown byte order {byteorder[:20]!r}")
        return _Unpickler(_read(archive, pickles[0]), archive, prefix, byteorder).load()
