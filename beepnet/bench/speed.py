"""Speed on one core: offline detection throughput and per-chunk inference.

- ``beepnet detect`` throughput: ``detect_file`` (the command's own code path: decoding,
  resampling, windowing, gate, detector, events) over a few minutes of generated household
  audio with beeps, in this process pinned to one CPU with one torch thread, after the
  detector is loaded; best of a few runs, since other jobs on a shared machine only ever
  slow a run down. The whole command, interpreter and model loading included, is timed
  too, as a user would see it.
- Inference per 3-s chunk: ``detector.score`` on a few hundred different windows of that
  audio after a warm-up; median and 95th percentile. BeepNet is measured in both runtimes
  (``detector.runtime``: torch and numpy).
- A crafted model file (one tensor of 10^12 elements described over 16 bytes of data):
  how long ``beepnet detect`` takes to refuse it, and its peak RSS, measured by a small
  parent process whose only child it is (``RUSAGE_CHILDREN`` keeps the largest child's
  figure, and this process has had bigger ones).

Training time on a user's first labelled set is measured in ``user`` (the "training" part),
beside how well the trained models then work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import AudioConfig, DetectorConfig
from ..detect import detect_file
from ..detectors import load_detector
from ..testing.procs import measure
from .report import CRAFTED_MB, CRAFTED_S, DETECT_REALTIME, INFERENCE_MS, Row, skipped_rows

log = logging.getLogger(__name__)

SECTION = "speed"
# key -> (row label, the detector's config): BeepNet in both runtimes, side by side.
DETECTORS = {
    "tone": ("tone detector", DetectorConfig(kind="tone")),
    "beepnet": ("BeepNet (torch)", DetectorConfig(kind="beepnet", runtime="torch")),
    "beepnet-numpy": ("BeepNet (numpy)", DetectorConfig(kind="beepnet", runtime="numpy")),
}


@dataclass(frozen=True)
class SpeedSettings:
    audio_seconds: float = 300.0
    """Length of the generated recording detect runs over."""
    runs: int = 3
    """detect_file runs per detector; the fastest counts."""
    windows: int = 300
    """Windows timed for per-chunk inference (after `warmup`)."""
    warmup: int = 20
    seed: int = 77


QUICK = SpeedSettings(audio_seconds=30.0, runs=1, windows=40, warmup=3)


@contextlib.contextmanager
def one_core():
    """Pin this thread to one CPU (the last one usable) and torch to one thread."""
    cpus = os.sched_getaffinity(0)
    cpu = max(cpus)
    os.sched_setaffinity(0, {cpu})
    try:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, cpus)  # later children (the live daemon) must not inherit it
        if torch is not None:
            torch.set_num_threads(threads)


def _recording(s: SpeedSettings, work: Path) -> Path:
    """A household stream with beeps, as `beepnet detect` would be given."""
    import soundfile as sf

    from ..training import streams

    path = work / "speed.wav"
    audio, _ = streams.make_stream(s.seed, 0, s.audio_seconds,
                                   max(1, int(s.audio_seconds // 40)), preset="train")
    sf.write(path, audio, streams.SR, subtype="PCM_16")
    return path


def _windows(path: Path, n: int, audio_cfg: AudioConfig) -> list[np.ndarray]:
    """n different 3-s windows spread over the recording (overlapping when it is short)."""
    from ..audio.files import read_audio

    x = read_audio(path, audio_cfg.sample_rate)
    size = int(audio_cfg.chunk_seconds * audio_cfg.sample_rate)
    starts = np.linspace(0, max(0, len(x) - size), n).astype(int)
    return [np.ascontiguousarray(x[i:i + size]) for i in starts]


def _cli_detect(path: Path, cfg: DetectorConfig, cpu: int) -> float:
    """Wall seconds of the whole `beepnet detect` command on one CPU."""
    cmd = [sys.executable, "-m", "beepnet", "detect", "--json", str(path),
           "--set", f"detector.kind={cfg.kind}", "--set", f"detector.runtime={cfg.runtime}"]
    t = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False,
                       preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    took = time.monotonic() - t
    if r.returncode != 0:
        raise RuntimeError(f"beepnet detect failed ({r.returncode}): {r.stderr.strip()[-300:]}")
    return took


def detection(s: SpeedSettings, work: Path) -> tuple[list[Row], dict]:
    audio_cfg = AudioConfig()
    path = _recording(s, work)
    windows = _windows(path, s.warmup + s.windows, audio_cfg)
    rows: list[Row] = []
    details: dict = {"settings": asdict(s)}
    for key, (label, det_cfg) in DETECTORS.items():
        try:
            det = load_detector(det_cfg)
        except ValueError as e:  # the shipped model is missing
            rows += skipped_rows(SECTION, [(f"detect throughput, {label}", DETECT_REALTIME),
                                           (f"inference per chunk, {label}", INFERENCE_MS)],
                                 str(e))
            continue
        with one_core() as cpu:
            runs = []
            for _ in range(s.runs):
                t = time.perf_counter()
                result = detect_file(str(path), det, audio_cfg)
                runs.append(time.perf_counter() - t)
            for w in windows[:s.warmup]:
                det.score(w)
            times = []
            for w in windows[s.warmup:]:
                t = time.perf_counter()
                det.score(w)
                times.append(time.perf_counter() - t)
        ms = np.array(times) * 1000
        median, p95 = float(np.median(ms)), float(np.percentile(ms, 95))
        realtime = result.duration / min(runs)
        cli = _cli_detect(path, det_cfg, cpu)
        details[key] = {"cpu": cpu, "run_seconds": runs, "audio_seconds": result.duration,
                        "windows": result.windows, "windows_scored": result.windows_scored,
                        "events": len(result.events), "inference_ms_median": median,
                        "inference_ms_p95": p95, "inference_ms_max": float(ms.max()),
                        "cli_seconds": cli}
        rows += [
            Row(SECTION, f"detect throughput, {label}", realtime, "×", DETECT_REALTIME,
                fmt=".0f", note=f"{_minutes(result.duration)} of audio in "
                f"{min(runs):.2f} s, one core, best of {len(runs)}"),
            Row(SECTION, f"inference per chunk, {label}, median", median, "ms", INFERENCE_MS,
                fmt=".2f", note=f"{len(ms)} windows"),
            Row(SECTION, f"inference per chunk, {label}, p95", p95, "ms", INFERENCE_MS,
                fmt=".2f"),
            Row(SECTION, f"`beepnet detect` command, {label}, start-up included",
                result.duration / cli, "×", fmt=".0f",
                note=f"{cli:.1f} s for {_minutes(result.duration)}, one core"),
        ]
    crafted_rows, details["crafted_model"] = crafted_model(work)
    return rows + crafted_rows, details


def crafted_model(work: Path) -> tuple[list[Row], dict]:
    """`beepnet detect` against a model file whose header claims 10^12 weights."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [10**6, 10**6],
                               "data_offsets": [0, 16]}}).encode()
    model = work / "crafted.safetensors"
    model.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    audio = work / "crafted.wav"
    audio.write_bytes(b"")  # never read: the model is refused first
    m = measure([sys.executable, "-m", "beepnet", "detect", "--model", str(model), str(audio)])
    details = {"status": m.status, "seconds": m.seconds, "peak_rss_mb": m.peak_rss_mb,
               "stderr": m.stderr.strip()}
    # The line ends in the reason, in brackets: "... (tensor w: its bytes do not match ...)".
    reason = m.stderr.strip().rsplit("(", 1)[-1].rstrip(")")
    note = f"exit {m.status}, {m.stderr.strip().count(chr(10)) + 1} line: {reason[:80]}"
    return [Row(SECTION, "crafted model file: `beepnet detect` refuses it in", m.seconds,
                "s", CRAFTED_S, fmt=".2f", note=note),
            Row(SECTION, "crafted model file: peak RSS of that `beepnet detect`",
                m.peak_rss_mb, "MB", CRAFTED_MB, fmt=".0f")], details


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"
