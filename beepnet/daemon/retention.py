"""Keeping kept data within bounds: alert clips and records by age and total size.

Months on a 16 GB SD card: each alert keeps a WAV clip (~300 kB) and a JSON record. Files of
one alert share a stem and go together, oldest first.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path

log = logging.getLogger(__name__)


def prune(directory: Path, max_age_days: float, max_mb: float,
          now: float | None = None) -> tuple[int, int]:
    """Delete whole alerts (all files sharing a stem) older than ``max_age_days``, then the
    oldest until the rest fit in ``max_mb``. Returns (alerts removed, bytes freed)."""
    now = time.time() if now is None else now
    groups: dict[str, list[Path]] = defaultdict(list)
    try:
        for p in Path(directory).iterdir():
            if p.is_file() and not p.name.startswith("."):
                groups[p.stem].append(p)
    except FileNotFoundError:
        return 0, 0

    def stat(files: list[Path]) -> tuple[float, int]:
        mtime, size = 0.0, 0
        for f in files:
            try:
                st = f.stat()
            except FileNotFoundError:
                continue
            mtime, size = max(mtime, st.st_mtime), size + st.st_size
        return mtime, size

    entries = sorted((stat(files) + (stem,) for stem, files in groups.items()))
    total = sum(size for _, size, _ in entries)
    limit = int(max_mb * 1024 * 1024)
    removed = freed = 0
    for mtime, size, stem in entries:
        if now - mtime <= max_age_days * 86400 and total <= limit:
            break
        for f in groups[stem]:
            f.unlink(missing_ok=True)
        total -= size
        removed += 1
        freed += size
    if removed:
        log.info("removed %d old alert clip(s) from %s (%.1f MB) to stay within %g days and "
                 "%g MB", removed, directory, freed / 1e6, max_age_days, max_mb)
    return removed, freed
