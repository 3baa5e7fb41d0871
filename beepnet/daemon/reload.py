"""What a reload (SIGHUP) changes: which settings differ, and whether the model file did.

The supervisor imports this, so nothing here may import numpy or a detector: a model file is
known by its path, size and modification time, which a rewrite (a new enrolment saved over
the old one, `beepnet train --out` the same name) always changes, without reading it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..config import Config, DetectorConfig
from ..model.preflight import in_use_path

LIVE_SECTIONS = ("detector",)
"""What a reload applies in the running daemon; everything else needs a restart."""
IGNORED_SECTIONS = ("record",)
"""Settings the daemon does not use at all (`beepnet record`'s): no advice about them."""


def model_identity(det: DetectorConfig) -> tuple | None:
    """A cheap fingerprint of the model file in use: (resolved path, size, mtime_ns)."""
    path = in_use_path(det)
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return (str(path), None, None)
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def describe_model(det: DetectorConfig) -> str:
    """The model file for a log line: its path, or what stands for it."""
    if det.kind != "beepnet":
        return f"the {det.kind} detector (no model file)"
    path = in_use_path(det)
    shipped = "" if det.model else "the shipped model "
    return f"{shipped}{path}" if path else "the shipped model"


def changed_keys(old: Config, new: Config, sections: tuple[str, ...]) -> list[str]:
    """``section.key`` for each setting of ``sections`` that differs between the two."""
    out = []
    for name in sections:
        a, b = getattr(old, name), getattr(new, name)
        out += [f"{name}.{f.name}" for f in dataclasses.fields(a)
                if getattr(a, f.name) != getattr(b, f.name)]
    return out


def restart_only_sections(cfg: Config) -> tuple[str, ...]:
    """The sections whose changes need a restart of the daemon."""
    return tuple(f.name for f in dataclasses.fields(cfg)
                 if not f.metadata.get("origin")
                 and f.name not in LIVE_SECTIONS + IGNORED_SECTIONS)


def same_file(a: Path | None, b: Path | None) -> bool:
    if a is None or b is None:
        return a is b
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(os.path.abspath(a)) == Path(os.path.abspath(b))
