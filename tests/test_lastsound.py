"""The machine's last minute, kept out of the recorder's ring when it falls quiet, and put
back together from overlapping chunks for the "went quiet" message."""

from __future__ import annotations

import os
import wave

import numpy as np

from beepnet.daemon.lastsound import LastSound

SR = 16000
CHUNK = 3 * SR


def chunk(folder, start: int, value: int) -> str:
    """A 3-s chunk of constant ``value`` starting at stream sample ``start``, as the
    recorder names them."""
    path = folder / f"20261205-120000_{start:010d}.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(np.full(CHUNK, value, "<i2").tobytes())
    return str(path)


def test_the_last_minute_is_linked_out_of_the_ring_and_put_back_in_place(tmp_path):
    ring, kept = tmp_path / "recent", tmp_path / "last-sound"
    ring.mkdir()
    last = LastSound(ring, kept)
    old = chunk(ring, 0, 1)                       # more than a minute before the end
    a = chunk(ring, 100 * SR, 100)                # 100-103 s
    b = chunk(ring, 100 * SR + SR * 3 // 2, 200)  # 101.5-104.5 s: overlaps a
    c = chunk(ring, 110 * SR, 300)                # 110-113 s, after a gap
    for at, path in ((1.5, old), (101.5, a), (103.0, b), (111.5, c)):
        last.heard(at, path)
    last.keep(111.5)
    assert sorted(p.name for p in kept.iterdir()) == sorted(
        os.path.basename(p) for p in (a, b, c))
    # Linked, not copied: the ring letting its files go does not lose them.
    assert os.stat(a).st_ino == (kept / os.path.basename(a)).stat().st_ino
    for p in (old, a, b, c):
        os.unlink(p)
    pcm = np.frombuffer(last.pcm(), "<i2")
    assert len(pcm) == 13 * SR                    # 100 s to 113 s
    assert (pcm[:SR * 3 // 2] == 100).all()       # a, until b begins
    assert (pcm[SR * 3 // 2: SR * 9 // 2] == 200).all()
    assert (pcm[SR * 9 // 2: 10 * SR] == 0).all()  # the gap the gate left silent
    assert (pcm[10 * SR:] == 300).all()
    assert last.mp3()[:2] in (b"\xff\xfb", b"\xff\xf3", b"ID")
    # Once a minute is kept for that silence, the same silence keeps nothing new.
    last.heard(112.0, chunk(ring, 111 * SR, 7))
    last.keep(111.5)
    assert len(list(kept.iterdir())) == 3
    last.clear()
    assert list(kept.iterdir()) == [] and last.pcm() is None and last.mp3() is None


def test_a_new_daemon_starts_with_nothing_kept_and_a_vanished_ring_keeps_nothing(tmp_path):
    ring, kept = tmp_path / "recent", tmp_path / "last-sound"
    ring.mkdir()
    kept.mkdir()
    chunk(kept, 0, 5)                              # left by an earlier daemon
    last = LastSound(ring, kept)
    assert list(kept.iterdir()) == []
    path = chunk(ring, 10 * SR, 9)
    last.heard(11.5, path)
    os.unlink(path)                                # the ring let it go already
    last.keep(11.5)
    assert last.pcm() is None
