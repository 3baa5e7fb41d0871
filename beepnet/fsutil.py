"""Small file-system helpers shared by the recorder, the classifier and the notifier."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def write_atomic(path: str | os.PathLike, data: bytes, durable: bool = False) -> None:
    """Write ``data`` so readers see the old file or the whole new one, never a part.

    A temp file in the same directory, renamed over the target. ``durable`` also fsyncs it, so
    the content survives a power cut, not just a crash (worth it for alerts, not for chunks).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def remove_quietly(path: str | os.PathLike) -> None:
    """Delete a file; one already gone is fine, any other failure is logged."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("cannot delete %s: %s", path, e.strerror or e)
