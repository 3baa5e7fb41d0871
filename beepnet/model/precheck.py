"""A quick look at a model file before any process starts, without importing torch.

``torch.save`` writes a zip archive; a file that is not one, is cut short or has a damaged
member can never load. Catching that at start turns a bad ``detector.model`` into one
config-error line (exit 78) instead of a classifier that dies after the daemon is up.
The full check (format, labels, weights) still happens in `beepnet.model.io.load_model`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path


def model_file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be a model file, or None if it may be one."""
    p = Path(path).expanduser()
    if not p.is_file():
        return "no such file"
    try:
        if p.stat().st_size == 0:
            return "empty file"
        if not zipfile.is_zipfile(p):
            return "not a BeepNet model file (truncated, or another kind of file)"
        with zipfile.ZipFile(p) as z:
            bad = z.testzip()  # reads every member and checks its CRC
            if not any(n.endswith("data.pkl") for n in z.namelist()):
                return "not a BeepNet model file (a zip archive, but not a saved model)"
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        return f"cannot read it ({getattr(e, 'strerror', None) or e})"
    if bad is not None:
        return f"damaged (member {bad} fails its checksum)"
    return None
