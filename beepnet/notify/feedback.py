"""The owner's answers to an alert ("That was it" / "Not the beep") kept as training data.

An alert's clip (``storage.dir/alerts/<id>.wav``, with its JSON record beside it) is cut into
3-s windows, 1.5 s apart, 16 kHz mono 16-bit WAV, exactly what `beepnet train` reads: one
folder per label under ``storage.dir/feedback/`` (``beep`` is the positive; ``not_beep``,
the negative `beepnet label` uses too). So ``beepnet train storage.dir/feedback --init
default`` (or together with other labelled folders) learns from them.

- "That was it": the windows that hold the beep pattern (from just before its first beep to
  its last), not the running machine before it.
- "Not the beep": every window of the clip; the detected one is the hard negative that
  matters most.

Files are named like `beepnet record`'s chunks, ``<YYYYmmdd-HHMMSS>_<stream sample>.wav``,
so training keeps one alert's overlapping windows on one side of its split. A second answer
for the same alert replaces the first (its files are removed before the new ones are
written): an alert is never in two folders. Every answer is one JSON line in
``feedback/journal.jsonl``: time, who, which alert, the label, the files.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..audio import SAMPLE_RATE
from ..fsutil import write_atomic

log = logging.getLogger(__name__)

YES, NO = "beep", "not_beep"
WINDOW_SECONDS = 3.0
HOP_SECONDS = 1.5
"""As `beepnet train` reads clips (beepnet.training.train.WINDOW_S, HOP_S), and as the
daemon cuts its chunks."""
LEAD_IN_SECONDS = 0.5
"""A positive window starts this long before the first beep, so its onset is inside."""
INDEX_DIR = ".alerts"
JOURNAL = "journal.jsonl"
ALERT_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,59}$")
_STAMP = re.compile(r"^(\d{8}-\d{6})")


class FeedbackError(Exception):
    """The answer cannot be stored; ``str()`` is one line for the owner."""


@dataclass(frozen=True)
class Saved:
    label: str
    files: tuple[str, ...]
    previous: str | None
    """The label this alert had before (a changed answer), or None."""
    unchanged: bool = False
    """The same answer again: nothing was written."""


def window_starts(n: int, label: str, beep_at: float | None, beep_length: float,
                  rate: int = SAMPLE_RATE) -> list[int]:
    """Start samples of the windows of an ``n``-sample clip to keep under ``label``.

    ``beep_at``: seconds into the clip where the first beep starts (None: unknown, then the
    detected window is taken to be the clip's last, as clips before complete patterns were);
    ``beep_length``: seconds from the first beep's start to the last one's end.
    """
    w, hop = int(WINDOW_SECONDS * rate), int(HOP_SECONDS * rate)
    last = max(0, n - w)
    if label != YES:
        starts = list(range(0, last + 1, hop))
        if starts[-1] != last:
            starts.append(last)  # the end of the clip, the detected part, is in
        return starts
    if beep_at is None:
        return [last]
    first = min(max(0, int((beep_at - LEAD_IN_SECONDS) * rate)), last)
    # Windows beginning before the last beep's end (with a tenth of a second of it inside).
    end = int((beep_at + max(beep_length, 0.0) - 0.1) * rate)
    starts = [first]
    while starts[-1] + hop <= last and starts[-1] + hop < end:
        starts.append(starts[-1] + hop)
    return starts


UNSURE = "unsure"
"""feedback/unsure/<time>/: /missed's audio, unlabelled until `beepnet label --unsure`."""
RETRAIN_REPORT = ".retrain.json"
"""The last `beepnet train --feedback`'s outcome (beepnet.training.retrain), which /retrain
tells the owner (beepnet.notify.retrain)."""


def label_folders(root: Path) -> list[Path]:
    """The label folders of a feedback folder: not ``unsure`` (unlabelled), not hidden."""
    return sorted(p for p in Path(root).iterdir()
                  if p.is_dir() and p.name != UNSURE and not p.name.startswith("."))


def alert_of(stem: str) -> str:
    """The alert (or /missed save) a kept window came from: the time its name starts with.
    A name without one is its own group."""
    m = _STAMP.match(stem)
    return m.group(1) if m else stem


def summary(root: Path) -> dict[str, tuple[int, int]]:
    """{label: (windows, alerts)} of a feedback folder, from the file names alone."""
    out: dict[str, tuple[int, int]] = {}
    if not Path(root).is_dir():
        return out
    for folder in label_folders(root):
        stems = [f.stem for f in folder.iterdir() if f.is_file() and f.suffix == ".wav"]
        if stems:
            out[folder.name] = (len(stems), len({alert_of(s) for s in stems}))
    return out


def describe(counts: dict[str, tuple[int, int]]) -> str:
    """``beep 12 windows of 3 alerts, not_beep 20 windows of 5 alerts``."""
    return ", ".join(f"{label} {w} window{'s' if w != 1 else ''} of {a} "
                     f"alert{'s' if a != 1 else ''}" for label, (w, a) in counts.items())


class FeedbackStore:
    def __init__(self, root: Path, alert_dir: Path):
        self.root = Path(root)
        self.alert_dir = Path(alert_dir)

    def save(self, alert_id: str, label: str, user_id: int, user_name: str) -> Saved:
        """Keep alert ``alert_id``'s clip under ``label`` (replacing an earlier answer)."""
        # Bytes, not numpy: this runs in the supervisor, which never loads numpy (18 MB).
        from ..audio.wav import pcm16, write_pcm16_atomic

        if not ALERT_ID.match(alert_id):
            raise FeedbackError("this button does not name an alert")
        index = self.root / INDEX_DIR / f"{alert_id}.json"
        before = self._read_index(index)
        if before.get("label") == label and all((self.root / f).exists()
                                                 for f in before.get("files", [])):
            self._journal(alert_id, label, user_id, user_name, before["files"], label)
            return Saved(label, tuple(before["files"]), label, unchanged=True)
        clip = self.alert_dir / f"{alert_id}.wav"
        pcm = pcm16(clip)
        if pcm is None:
            if not clip.exists():
                raise FeedbackError("its clip is no longer kept (storage.keep_days / "
                                    "keep_mb)")
            raise FeedbackError("its clip cannot be read (not a clip beepnet wrote)")
        record = self._record(alert_id)
        beep_at = record.get("beep_at")
        starts = window_starts(len(pcm) // 2, label, None if beep_at is None else float(beep_at),
                               float(record.get("beep_length") or 0.0))
        m = _STAMP.match(alert_id)
        stamp = m.group(1) if m else time.strftime("%Y%m%d-%H%M%S")
        base = int(record.get("clip_start_sample") or 0)
        w = int(WINDOW_SECONDS * SAMPLE_RATE)
        for old in before.get("files", []):
            (self.root / old).unlink(missing_ok=True)
        files = []
        (self.root / label).mkdir(parents=True, exist_ok=True)
        for s in starts:
            part = pcm[2 * s: 2 * (s + w)]
            rel = f"{label}/{stamp}_{base + s:010d}.wav"
            write_pcm16_atomic(self.root / rel, part + bytes(2 * w - len(part)))
            files.append(rel)
        index.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(index, json.dumps({"label": label, "files": files}).encode())
        previous = before.get("label")
        self._journal(alert_id, label, user_id, user_name, files, previous)
        log.info("feedback: alert %s is %s (%d window(s)%s)", alert_id, label, len(files),
                 f", was {previous}" if previous and previous != label else "")
        return Saved(label, tuple(files), previous)

    @staticmethod
    def _read_index(path: Path) -> dict:
        try:
            doc = json.loads(path.read_text())
            return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}

    def _record(self, alert_id: str) -> dict:
        try:
            doc = json.loads((self.alert_dir / f"{alert_id}.json").read_text())
            return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}

    def _journal(self, alert_id: str, label: str, user_id: int, user_name: str,
                 files: list[str], previous: str | None) -> None:
        now = time.time()
        line = {"time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)),
                "epoch": round(now, 3), "user_id": user_id, "user": user_name,
                "alert": alert_id, "label": label, "files": files, "previous": previous}
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / JOURNAL, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
