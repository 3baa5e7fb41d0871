"""Detection quality per beep event, on continuous recordings no detector was trained on.

Steps (all generated in the run, into ``work``):

1. A training set of 3-s clips (``beepnet synth``'s generator, preset ``train``, its own
   seed), on which a BeepNet and the original 2-filter net are trained alike.
2. An evaluation set of continuous streams (``beepnet.training.streams``: another seed, the
   harder ``heldout`` settings): streams with beep patterns at known times, and beep-free
   ones.
3. Every detector (the shipped BeepNet model, the tone detector, the two trained here)
   runs over every stream through ``beepnet.detect.detect_file``: the daemon's windowing,
   silence gate, threshold and event merging.
4. Detected events are matched to true beep patterns by overlap: event recall (patterns
   with a detection), precision (detections on a pattern), false alarms per hour of audio
   away from any pattern.
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import AudioConfig, DetectorConfig
from ..detect import detect_file
from ..detectors import load_detector
from ..events import Event
from .report import Row, skipped_rows

log = logging.getLogger(__name__)

SECTION = "quality"
# Detector rows in table order: (key, label).
DETECTORS = (("shipped", "BeepNet (shipped model)"), ("tone", "tone detector"),
             ("beepnet", "BeepNet trained here"),
             ("original", "original 2-filter net trained here"))


@dataclass(frozen=True)
class QualitySettings:
    """Sizes and seeds; the defaults take about three minutes on a 2-core machine."""

    train_clips: int = 2000
    train_epochs: int = 10
    train_seed: int = 5
    """Seed of the generated training clips (the shipped model used seed 1)."""
    eval_positive: int = 20
    """Streams with beep patterns."""
    eval_negative: int = 10
    """Beep-free streams."""
    eval_seconds: float = 120.0
    beeps_per_stream: int = 4
    eval_seed: int = 2026
    eval_preset: str = "heldout"
    tolerance_s: float = 0.25
    """A detection this close to a beep pattern (before or after) still counts as on it."""


QUICK = QualitySettings(train_clips=80, train_epochs=1, eval_positive=2, eval_negative=1,
                        eval_seconds=40.0, beeps_per_stream=2)


def match(truth: list[tuple[float, float]], found: list[Event], tolerance: float
          ) -> tuple[list[bool], list[bool]]:
    """(each true event: detected?, each detection: on a true event?) by overlap."""
    def overlaps(ev: Event, t: tuple[float, float]) -> bool:
        return ev.start <= t[1] + tolerance and ev.end >= t[0] - tolerance

    return ([any(overlaps(ev, t) for ev in found) for t in truth],
            [any(overlaps(ev, t) for t in truth) for ev in found])


def negative_seconds(duration: float, truth: list[tuple[float, float]], window: float) -> float:
    """Audio no window touching a beep pattern covers: where any detection is a false alarm."""
    covered, end = 0.0, 0.0
    for s, e in sorted(truth):
        s, e = max(0.0, s - window, end), min(duration, e + window)
        covered += max(0.0, e - s)
        end = max(end, e)
    return max(0.0, duration - covered)


def evaluate(detector, streams: list, stream_dir: Path, audio: AudioConfig,
             tolerance: float) -> dict:
    """Event-level figures for one detector over all streams."""
    t0 = time.monotonic()
    events = hits = detections = correct = negative_fa = 0
    neg_s = total_s = 0.0
    by_kind: dict[str, list[int]] = {}
    for s in streams:
        result = detect_file(str(stream_dir / s.file), detector, audio)
        hit, ok = match(s.events, result.events, tolerance)
        events += len(hit)
        hits += sum(hit)
        detections += len(ok)
        correct += sum(ok)
        if not s.events:
            negative_fa += len(ok)
        neg_s += negative_seconds(result.duration, s.events, audio.chunk_seconds)
        total_s += result.duration
        for kind, h in zip(s.beep_kinds, hit):
            by_kind.setdefault(kind, [0, 0])
            by_kind[kind][0] += int(h)
            by_kind[kind][1] += 1
    false_alarms = detections - correct
    return {
        "threshold": detector.threshold, "describe": detector.describe(),
        "events": events, "detected": hits, "recall": hits / events if events else None,
        "detections": detections, "on_beeps": correct,
        "precision": correct / detections if detections else None,
        "false_alarms": false_alarms, "negative_hours": neg_s / 3600,
        "fa_per_hour": false_alarms / (neg_s / 3600) if neg_s else None,
        "false_alarms_in_beep_free_streams": negative_fa,
        "recall_by_pattern": {k: v[0] / v[1] for k, v in sorted(by_kind.items())},
        "audio_hours": total_s / 3600, "seconds": time.monotonic() - t0,
    }


def _train_models(s: QualitySettings, work: Path) -> tuple[dict[str, Path], dict]:
    """Generate the training clips and train both architectures on them."""
    from ..training import dataset
    from ..training.train import train

    info: dict = {}
    t = time.monotonic()
    clips = work / "train-clips"
    dataset.generate(clips, s.train_clips, seed=s.train_seed, preset="train")
    info["synth_seconds"] = time.monotonic() - t
    models: dict[str, Path] = {}
    archs = ["beepnet"]
    if "arch" in inspect.signature(train).parameters:
        archs.append("original")
    else:
        info["original_skipped"] = "this beepnet's train() has no arch='original'"
    for arch in archs:
        out = work / f"{arch}.safetensors"
        log.info("quality: training %s on %d clips (%d epochs)", arch, s.train_clips,
                 s.train_epochs)
        kw = {"arch": arch} if arch != "beepnet" else {}
        # One thread: on two cores it is as fast as two (measured: 4.7 s against 5.3 s for
        # 1000 clips x 2 epochs), and when other jobs want the cores two threads spinning on
        # each other made training 8 times slower.
        r = train(clips, out, epochs=s.train_epochs, seed=0, threads=1, **kw)
        info[arch] = {"seconds": r.seconds, "epochs": r.epochs, "threshold": r.threshold,
                      "validation": r.val}
        models[arch] = out
    return models, info


def run(settings: QualitySettings, work: Path) -> tuple[list[Row], dict]:
    """All quality rows and the details for the JSON file."""
    from ..training import streams as streamgen

    details: dict = {"settings": asdict(settings)}
    audio = AudioConfig()
    t = time.monotonic()
    log.info("quality: generating %d evaluation streams of %.0f s",
             settings.eval_positive + settings.eval_negative, settings.eval_seconds)
    stream_dir = work / "eval-streams"
    evalset = streamgen.generate(stream_dir, settings.eval_positive, settings.eval_negative,
                                 settings.eval_seconds, settings.beeps_per_stream,
                                 seed=settings.eval_seed, preset=settings.eval_preset)
    details["eval_generation_seconds"] = time.monotonic() - t
    details["eval_set"] = {"streams": len(evalset),
                           "beep_events": sum(len(x.events) for x in evalset),
                           "hours": sum(x.seconds for x in evalset) / 3600}

    detectors: dict[str, object] = {"tone": load_detector(DetectorConfig(kind="tone"))}
    try:
        detectors["shipped"] = load_detector(DetectorConfig(kind="beepnet"))
    except ValueError as e:  # no shipped model file (ModelFileError)
        details["shipped_skipped"] = str(e)
    try:
        models, details["training"] = _train_models(settings, work)
    except ImportError as e:  # pandas, scikit-learn, tqdm: the [train] extra
        models = {}
        details["training_skipped"] = f"needs the [train] extra ({e.name or e})"
    for arch, path in models.items():
        # The original 2-filter net runs on the torch runtime only; BeepNet on the default.
        runtime = {"runtime": "torch"} if arch == "original" else {}
        detectors[arch] = load_detector(DetectorConfig(kind="beepnet", model=str(path),
                                                       **runtime))

    rows: list[Row] = []
    details["detectors"] = {}
    for key, label in DETECTORS:
        if key not in detectors:
            reason = (details.get("training_skipped") or details.get("shipped_skipped")
                      or details.get("training", {}).get("original_skipped") or "not available")
            rows += skipped_rows(SECTION, [(f"event recall, {label}", None),
                                           (f"precision, {label}", None),
                                           (f"false alarms / hour, {label}", None)], reason)
            continue
        log.info("quality: %s over %d streams", label, len(evalset))
        m = evaluate(detectors[key], evalset, stream_dir, audio, settings.tolerance_s)
        details["detectors"][key] = m
        rows += [
            Row(SECTION, f"event recall, {label}", m["recall"], fmt=".3f",
                note=f"{m['detected']} of {m['events']} beep patterns"),
            Row(SECTION, f"precision, {label}", m["precision"], fmt=".3f",
                note=f"{m['on_beeps']} of {m['detections']} detections"),
            Row(SECTION, f"false alarms / hour, {label}", m["fa_per_hour"], fmt=".1f",
                note=f"{m['false_alarms']} in {m['negative_hours']:.2f} h without beeps"),
        ]
    return rows, details
