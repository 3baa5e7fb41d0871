"""The notifier used when Telegram is not configured: a log line and a JSON record.

Each alert's record sits beside its clip under ``storage.dir/alerts``, so `make demo` and a
daemon without a bot still leave a trail that a script (or a later Telegram send) can use.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

from ..messages import Detection

log = logging.getLogger(__name__)


def _local(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


class ConsoleNotifier:
    def __init__(self, alert_dir: Path):
        self.alert_dir = Path(alert_dir)
        self.alerts: list[dict] = []

    def alert(self, det: Detection) -> None:
        record = {
            "kind": "beep",
            "time": _local(det.time),
            "epoch": round(det.time, 3),
            "offset": round(det.offset, 3),
            "score": round(det.score, 4),
            "detector": det.detector,
            "clip": det.clip_path,
            "level_dbfs": round(det.chunk.peak_dbfs, 1),
        }
        self.alerts.append(record)
        log.warning("ALERT beep at %s (score %.2f) clip %s", record["time"], det.score,
                    det.clip_path or "(none)")
        stem = Path(det.clip_path).stem if det.clip_path else f"{int(det.time)}-beep"
        self._write(self.alert_dir / f"{stem}.json", record)

    def message(self, kind: str, text: str) -> None:
        """Operational news (listening, stopped, microphone lost ...)."""
        log.info("[%s] %s", kind, text)

    def _write(self, path: Path, record: dict) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(record, f, indent=1)
            os.replace(tmp, path)
        except OSError as e:
            log.error("cannot write alert record %s: %s", path, e.strerror or e)
