"""What the owner can ask for besides alerts: the last 10 s the microphone heard (/listen)
and the last minutes of non-silent audio (/missed), as the recorder keeps them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from signals import SR, convert

from beepnet.audio.sources import FileSource
from beepnet.config import AudioConfig
from beepnet.daemon.recent import RecentChunks, save_recent
from beepnet.daemon.recorder import LISTEN_SECONDS, Recorder
from beepnet.messages import Chunk, ListenClip, ListenRequest


def test_listen_writes_the_last_ten_seconds_whatever_the_gate_said(tmp_path):
    """A quiet stretch (under the gate: no chunk) ends the recording; /listen has it all."""
    rng = np.random.default_rng(1)
    loud = 0.3 * rng.standard_normal(8 * SR).astype(np.float32)
    quiet = (0.0005 * np.sin(2 * np.pi * 440 * np.arange(9 * SR) / SR)).astype(np.float32)
    rec_file = convert(np.concatenate([loud, quiet]), tmp_path / "in.wav")
    asked: list[ListenRequest] = [ListenRequest(str(tmp_path / "listen.wav"))]
    sent: list[object] = []
    chunks = tmp_path / "chunks"
    chunks.mkdir()
    src = FileSource(str(rec_file), 100.0, speed=1000.0)

    def requests():
        # Asked once the whole recording has been heard: the last block's turn.
        if asked and src_done():
            return asked.pop()
        return None

    heard = []

    def emit(msg):
        sent.append(msg)
        if isinstance(msg, Chunk):
            heard.append(msg.start_sample / SR)

    def src_done():
        return sum(len(b) for b in blocks) >= 17 * SR - 1600

    blocks: list[np.ndarray] = []
    rec = Recorder(AudioConfig(), chunks, emit, requests=requests)
    original = rec.ring.push
    rec.ring.push = lambda x: (blocks.append(x), original(x))  # noqa: E731 - count what came
    assert rec.run(src) is True
    (clip_msg,) = [m for m in sent if isinstance(m, ListenClip)]
    assert clip_msg.seconds == LISTEN_SECONDS
    clip, rate = sf.read(clip_msg.path, dtype="float32")
    assert rate == SR and len(clip) == LISTEN_SECONDS * SR
    # The quiet tone is there (no chunk of it was written: the gate closed) ...
    assert max(heard) < 8.0
    spec = np.abs(np.fft.rfft(clip[-5 * SR:]))
    assert abs(np.argmax(spec) * SR / (5 * SR) - 440) < 2
    # ... and so is the loud part's last second, before the quiet 9 s.
    assert np.std(clip[: int(0.4 * SR)]) > 0.1


def chunk_file(folder: Path, name: str) -> Path:
    p = folder / name
    p.write_bytes(b"RIFF" + os.urandom(64))
    return p


def test_recent_chunks_keep_the_audio_once_and_only_for_a_while(tmp_path):
    chunks, recent = tmp_path / "chunks", tmp_path / "recent"
    chunks.mkdir()
    ring = RecentChunks(recent, seconds=600)
    hop, size = 24000, 48000
    # Windows 0-5 all passed the gate, then a gap (7, 8 gated out), then window 9 alone.
    for k in [0, 1, 2, 3, 4, 5, 9]:
        p = chunk_file(chunks, f"s_{k * hop:010d}.wav")
        ring.add(p, "s", k * hop, k * hop + size)
        p.unlink()  # the classifier deletes its copy; the ring's link stays
    kept = sorted(int(p.stem.split("_")[1]) // hop for p in recent.glob("*.wav"))
    # Every second window tiles the run; the last one covers its tail; the lone one stays.
    assert kept == [0, 2, 4, 5, 9]
    out = tmp_path / "saved"
    assert save_recent(recent, out) == 5 and len(list(out.glob("*.wav"))) == 5
    # Older than the ring's span: let go, even across a restart of the recorder.
    old = time.time() - 700
    for p in sorted(recent.glob("*.wav"))[:2]:
        os.utime(p, (old, old))
    RecentChunks(recent, seconds=600)
    assert len(list(recent.glob("*.wav"))) == 3
