"""Held-out comparison of a BeepNet model with the tone detector on generated clips.

    python -m beepnet.training.heldout MODEL [--n 600] [--seed 99] [--data DIR]

Generates (or reuses) a set with the "heldout" preset and a seed the default model was
not trained on, scores every clip with both detectors at their operating thresholds, and
prints a Markdown report: overall recall/precision/false alarms per hour, recall per
background under beeps, false alarms per negative kind, model size and inference time.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..audio.files import read_audio
from ..detectors.beepnet import BeepNetDetector
from ..detectors.tone import ToneDetector
from .dataset import generate
from .train import metrics


def _time_ms(det, window: np.ndarray, n: int = 100) -> float:
    det.score(window)
    t = time.perf_counter()
    for _ in range(n):
        det.score(window)
    return (time.perf_counter() - t) / n * 1000


def report(model: str, data: Path) -> str:
    with open(data / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    dets = {"beepnet": BeepNetDetector(model), "tone": ToneDetector()}
    audio = [read_audio(data / r["file"]) for r in rows]
    scores = {k: np.array([d.score(a).score for a in audio]) for k, d in dets.items()}
    is_beep = np.array([r["label"] == "beep" for r in rows])
    lines = [(f"Held-out set: {len(rows)} generated 3-s clips ({int(is_beep.sum())} with "
              f"beeps, {int((~is_beep).sum())} without), `{data.name}`."), "",
             ("| detector | threshold | recall | precision | false alarms / 1000 windows "
              "| false alarms / hour |"), "|---|---|---|---|---|---|"]
    for k, d in dets.items():
        m = metrics(scores[k], is_beep, d.threshold)
        lines.append(f"| {k} | {d.threshold:.2f} | {m['recall']:.3f} | {m['precision']:.3f} | "
                     f"{m['fa_per_1000']:.1f} | {m['fa_per_hour']:.1f} |")
    lines += ["", "Recall on beep clips, by background:", "",
              "| background | clips | beepnet | tone |", "|---|---|---|---|"]
    bgs = sorted({r["background"] for r in rows})
    for bg in bgs:
        sel = is_beep & np.array([r["background"] == bg for r in rows])
        if sel.any():
            lines.append(f"| {bg} | {int(sel.sum())} | "
                         + " | ".join(f"{np.mean(scores[k][sel] >= dets[k].threshold):.3f}"
                                      for k in dets) + " |")
    lines += ["", "False alarms on clips without beeps, by kind (fraction of clips):", "",
              "| kind | clips | beepnet | tone |", "|---|---|---|---|"]
    kinds = sorted({(r["foreground"] or r["background"]) for r in rows if r["label"] != "beep"})
    for kind in kinds:
        sel = ~is_beep & np.array([(r["foreground"] or r["background"]) == kind
                                   and r["label"] != "beep" for r in rows])
        lines.append(f"| {kind} | {int(sel.sum())} | "
                     + " | ".join(f"{np.mean(scores[k][sel] >= dets[k].threshold):.3f}"
                                  for k in dets) + " |")
    window = audio[int(np.flatnonzero(is_beep)[0])]
    lines += ["", (f"Model file: {os.path.getsize(model) / 1024:.0f} KB. Inference per 3-s "
                   f"window, one thread: beepnet {_time_ms(dets['beepnet'], window):.2f} ms, "
                   f"tone {_time_ms(dets['tone'], window):.2f} ms.")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m beepnet.training.heldout")
    p.add_argument("model")
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--seed", type=int, default=99)
    p.add_argument("--data", help="reuse or create the held-out set here (default: a temp dir)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data or tmp)
        if not (data / "manifest.csv").exists():
            generate(data, args.n, args.seed, preset="heldout")
        print(report(args.model, data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
