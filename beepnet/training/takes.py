"""Which clips were recorded together ("takes"), so that validation hears unseen audio.

`beepnet train` keeps every take on one side of its train/validation split: the recorder's
chunks overlap (3-s windows every 1.5 s), and the same samples on both sides would make the
validation figures look better than the model is. Where the takes come from, first that
applies:

1. the file names, when every one follows a known scheme: `beepnet record`'s
   ``YYYYmmdd-HHMMSS_<sample offset>`` and `beepnet synth`'s ``s<seed>g<group>_<i>``;
2. shared audio: chunks holding the same stretch of samples (found by fingerprints of short
   sample blocks, wherever they lie in the clip) are one take, so renamed or hand-sorted
   chunks (``beep/beep_000.wav``) still stay together;
3. file times: files written less than `TAKE_GAP_S` apart are one take (lossy or resampled
   copies share no exact samples, but renaming and moving keep the times);
4. otherwise every file is its own take.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

RECORD_NAME = re.compile(r"^(\d{8}-\d{6})_\d+$")
SYNTH_NAME = re.compile(r"^(s\d+g\d+)_\d+$")

ANCHOR_LEN = 8
"""Samples whose hash decides, from the audio alone, where a fingerprint starts: the same
audio gets the same anchors whatever its offset in the clip."""
ANCHOR_EVERY = 128
"""One anchor per this many samples on average (about 190 in 1.5 s of shared audio)."""
BLOCK_LEN = 64
"""Samples a fingerprint covers."""
MIN_PTP = 16
"""A block must move at least this many int16 steps: digital silence and zero padding are
the same in every file and say nothing about where a clip came from."""
MIN_SHARED = 4
"""Fingerprints two clips must share to count as one take (a chance collision is one)."""
MAX_CLIPS_PER_BLOCK = 8
"""A block found in more clips than this is a sound that repeats (the same digital tone in
many files), not a shared recording: overlapping windows put a sample in at most
chunk/hop of them."""
TAKE_GAP_S = 60.0
"""Files written further apart than this belong to different takes (by file times)."""

_MIX = np.uint64(0x9E3779B97F4A7C15)
_WEIGHTS = np.random.default_rng(14).integers(1, 2**63, size=BLOCK_LEN, dtype=np.uint64) | 1


@dataclass(frozen=True)
class Takes:
    ids: list[str]
    """The take of each clip."""
    how: str
    """One line for the user: how the clips were grouped."""

    @property
    def count(self) -> int:
        return len(set(self.ids))


def named_session(stem: str) -> str | None:
    """The recording session a known file-name scheme carries, or None.

    ``20261121-073138_0000024000`` (`beepnet record`) -> ``20261121-073138``;
    generated ``s0g00012_000061`` -> ``s0g00012``; ``beep_003`` -> None.
    """
    m = RECORD_NAME.match(stem) or SYNTH_NAME.match(stem)
    return m.group(1) if m else None


def find_takes(stems: list[str], clips: np.ndarray, mtimes: np.ndarray,
               is_beep: np.ndarray) -> Takes:
    """Group clips (int16, one row each) into takes; see the module docstring."""
    n = len(stems)
    names = [named_session(s) for s in stems]
    if all(names):
        return Takes(list(names), f"{n} clips from {len(set(names))} recording sessions named "
                     "in the file names")
    parent = list(range(n))
    first_of: dict[str, int] = {}
    for i, name in enumerate(names):
        if name is not None:
            _union(parent, i, first_of.setdefault(name, i))
    links = shared_audio_links(clips)
    for a, b in links:
        _union(parent, a, b)
    unnamed = {i for i, name in enumerate(names) if name is None}
    if any(a in unnamed or b in unnamed for a, b in links):
        ids = [names[i] or f"take{_find(parent, i):05d}" for i in range(n)]
        # A take holding a named session is called after it.
        by_root = {_find(parent, i): name for i, name in enumerate(names) if name}
        ids = [by_root.get(_find(parent, i), ids[i]) for i in range(n)]
        k = len(set(ids))
        also = " and the file names" if len(unnamed) < n else ""
        return Takes(ids, f"grouped {n} clips into {k} takes by shared audio{also}")
    idx = sorted(unnamed)
    times = _by_time(np.asarray(mtimes, float)[idx])
    beep_takes = {t for t, i in zip(times, idx) if is_beep[i]}
    ids = [name or "" for name in names]
    if len(set(times)) >= 2 and len(beep_takes) >= 2:
        for t, i in zip(times, idx):
            ids[i] = f"time{t:05d}"
        return Takes(ids, f"no sessions in the file names and no shared audio: grouped "
                     f"{len(idx)} clips into {len(set(times))} takes by file times "
                     f"(apart by more than {TAKE_GAP_S:.0f} s)")
    for i in idx:
        ids[i] = f"file{i:06d}"
    return Takes(ids, f"no sessions in the file names, no shared audio, no usable file "
                 f"times: split by file ({len(idx)} clips)")


def fingerprints(clip: np.ndarray) -> np.ndarray:
    """Hashes of the sample blocks at the clip's content-chosen anchors (unique, sorted)."""
    x = np.asarray(clip).astype(np.int64).astype(np.uint64)
    m = len(x) - BLOCK_LEN + 1
    if m <= 0:
        return np.zeros(0, np.uint64)
    h = np.zeros(m, np.uint64)
    for j in range(ANCHOR_LEN):
        h = h * np.uint64(1000003) + x[j:j + m]
    h = (h ^ (h >> np.uint64(29))) * _MIX
    anchors = np.flatnonzero(h % np.uint64(ANCHOR_EVERY) == 0)
    if not len(anchors):
        return np.zeros(0, np.uint64)
    blocks = np.asarray(clip)[anchors[:, None] + np.arange(BLOCK_LEN)]
    blocks = blocks[np.ptp(blocks.astype(np.int32), axis=1) >= MIN_PTP]
    return np.unique((blocks.astype(np.int64).astype(np.uint64) * _WEIGHTS).sum(axis=1))


def shared_audio_links(clips: np.ndarray) -> list[tuple[int, int]]:
    """Pairs of clips (indices) that hold the same stretch of samples."""
    prints = [fingerprints(c) for c in clips]
    if not prints:
        return []
    fp = np.concatenate(prints)
    owner = np.repeat(np.arange(len(prints)), [len(p) for p in prints])
    order = np.argsort(fp, kind="stable")
    fp, owner = fp[order], owner[order]
    starts = np.flatnonzero(np.r_[True, fp[1:] != fp[:-1]])
    sizes = np.diff(np.r_[starts, len(fp)])
    shared: dict[tuple[int, int], int] = {}
    for s, k in zip(starts[(sizes >= 2) & (sizes <= MAX_CLIPS_PER_BLOCK)],
                    sizes[(sizes >= 2) & (sizes <= MAX_CLIPS_PER_BLOCK)]):
        members = owner[s:s + k]
        for a in range(k):
            for b in range(a + 1, k):
                pair = (int(members[a]), int(members[b]))
                shared[pair] = shared.get(pair, 0) + 1
    return sorted(p for p, c in shared.items() if c >= MIN_SHARED)


def _by_time(mtimes: np.ndarray) -> list[int]:
    """A take number per file: a new take wherever the next file was written more than
    TAKE_GAP_S after the previous one."""
    order = np.argsort(mtimes, kind="stable")
    take = np.cumsum(np.r_[0, np.diff(mtimes[order]) > TAKE_GAP_S])
    out = np.empty(len(mtimes), np.int64)
    out[order] = take
    return [int(t) for t in out]


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _union(parent: list[int], a: int, b: int) -> None:
    ra, rb = _find(parent, a), _find(parent, b)
    if ra != rb:
        parent[max(ra, rb)] = min(ra, rb)
