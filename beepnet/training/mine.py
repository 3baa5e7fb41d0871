"""Hard negatives: the real talk, music, TV and clatter a model takes for a beep.

Random clips of real background are mostly easy: a model soon tells speech from a beep,
and the windows it still gets wrong (a held flute note, a chime in a game's music, a
spoon on a glass) are a few in a thousand. Those few are what the daemon's false alarms
are made of. `mine` plays hours of the training split's real backgrounds (the "fit" part:
never the part calibration uses, never the evaluation split) through a model, window by
window as the daemon cuts them but with a finer hop, and writes the windows it scores
highest into the training folder as negatives of their kind. Training again from that
model on the richer folder (`beepnet train DATA --init MODEL`) teaches it exactly the
difference it was missing.

``python -m beepnet.training.mine MODEL DATA --real DIR [--minutes 40] [--keep 1500]
[--seed 11] [--round 1]``
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from . import synth
from .calibrate import PIECE_S, negative_streams
from .realmix import RealPool

log = logging.getLogger(__name__)

SR = synth.SR
WINDOW_S = 3.0
HOP_S = 0.5
LABEL_OF = {"speech": "speech", "music": "music", "tv": "music", "kitchen": "other",
            "washer": "washer", "quiet": "other"}
"""The training class a mined window of each background kind joins."""
MAX_KIND_SHARE = 0.4
"""No background kind takes more than this share of the mined windows: a model that is
weak on music alone still gets some of its hardest talk and clatter."""
SEED_TAG = 90
"""Mined clips are named s<90 + round - 1>g<kind><piece>_<n> (s90g..., then s91g...), like
the generator's clips: windows of one 30-s piece share a take, so training never validates
on a neighbour of a window it learned; each round of mining gets names of its own."""


@dataclass(frozen=True)
class Mined:
    kind: str
    piece: int
    start: int
    score: float


def window_starts(n_samples: int, window: int, hop: int) -> np.ndarray:
    return np.arange(0, max(1, n_samples - window + 1), hop)


def score_stream(net, audio: np.ndarray, window: int, hop: int, beep_index: int,
                 batch: int = 64) -> np.ndarray:
    """P(beep) of every window (``hop`` apart) of one stream, with the torch net."""
    import torch

    starts = window_starts(len(audio), window, hop)
    audio = np.pad(audio, (0, max(0, window - len(audio))))
    views = np.lib.stride_tricks.sliding_window_view(audio, window)
    out = np.empty(len(starts), np.float64)
    with torch.no_grad():
        for i in range(0, len(starts), batch):
            x = torch.from_numpy(np.ascontiguousarray(views[starts[i:i + batch]]))
            out[i:i + len(x)] = torch.softmax(net(x)[0], dim=1)[:, beep_index].numpy()
    return out


def pick(scores: dict[str, np.ndarray], keep: int, min_score: float, hop_s: float,
         piece_s: float, window_s: float = WINDOW_S) -> list[Mined]:
    """The highest-scoring windows, at most ``keep``, none below ``min_score``, no two of
    one stream closer than half a window (they would be nearly the same clip), at most
    MAX_KIND_SHARE of them from one kind. A window must lie inside one piece of its
    stream: one that straddles two pieces is a splice no microphone hears."""
    per_piece = int(round(piece_s / hop_s))
    span = int(round(window_s / hop_s))
    cands = []
    for kind, s in scores.items():
        for i in np.flatnonzero(s >= min_score):
            if i % per_piece + span <= per_piece:
                cands.append((float(s[i]), kind, int(i)))
    cands.sort(reverse=True)
    cap = max(1, int(MAX_KIND_SHARE * keep))
    taken: dict[str, list[int]] = {k: [] for k in scores}
    out: list[Mined] = []
    gap = max(1, span // 2)
    for score, kind, i in cands:
        if len(out) >= keep:
            break
        if len(taken[kind]) >= cap or any(abs(i - j) < gap for j in taken[kind]):
            continue
        taken[kind].append(i)
        out.append(Mined(kind, i // per_piece, i, score))
    return out


def mine(model: str | Path, data_dir: str | Path, real: str | Path, minutes: float = 40.0,
         keep: int = 1500, min_score: float = 0.05, seed: int = 11,
         round_: int = 1) -> list[Mined]:
    """Score ``minutes`` per background kind of real training audio with ``model`` and
    add its hardest windows to ``data_dir`` (a `beepnet synth` folder) as negatives."""
    if round_ < 1:
        raise ValueError(f"--round {round_}: rounds count from 1")
    root, tag = Path(data_dir), f"s{SEED_TAG + round_ - 1}"
    _check_folder(root, tag)  # before a minute of scoring, not after
    import torch

    from ..audio.gate import Gate
    from ..config import AudioConfig
    from .torchmodel import load_model

    torch.set_num_threads(2)
    loaded = load_model(model)
    streams = negative_streams(RealPool(real, "train", "fit"), minutes, seed)
    window, hop = int(WINDOW_S * SR), int(HOP_S * SR)
    scores = {k: score_stream(loaded.net, x, window, hop, loaded.beep_index)
              for k, x in streams.items()}
    # Windows the daemon's gate would drop never reach the model: not worth learning.
    cfg = AudioConfig()
    gate = Gate(cfg.gate_dbfs, cfg.gate_frame_ms, SR)
    for kind, x in streams.items():
        for i in np.flatnonzero(scores[kind] >= min_score):
            if not gate.opens(x[i * hop:i * hop + window]):
                scores[kind][i] = np.nan
    chosen = pick(scores, keep, min_score, HOP_S, PIECE_S)
    _write(root, streams, chosen, window, hop, tag)
    hours = sum(len(x) for x in streams.values()) / SR / 3600
    by_kind = {k: sum(m.kind == k for m in chosen) for k in streams}
    log.info("mined %d hard negatives from %.1f h of real training audio (%s); scores %.2f "
             "to %.2f", len(chosen), hours, ", ".join(f"{k} {v}" for k, v in by_kind.items()),
             min((m.score for m in chosen), default=0), max((m.score for m in chosen),
                                                             default=0))
    return chosen


def _check_folder(root: Path, tag: str) -> None:
    """A `beepnet synth` folder without this round's windows, or the one-line reason why not."""
    if not (root / "manifest.csv").is_file():
        raise FileNotFoundError(f"{root}: not a beepnet synth folder (no manifest.csv)")
    if any(root.glob(f"*/{tag}g*.wav")):
        raise ValueError(f"{root}: already holds this round's windows ({tag}g*): mine "
                         "again with the next --round (and another --seed)")


def _write(root: Path, streams: dict[str, np.ndarray], chosen: list[Mined], window: int,
           hop: int, tag: str) -> None:
    """WAV files beside the generated ones, and their rows in the folder's manifest."""
    manifest = root / "manifest.csv"
    with open(manifest, newline="") as f:
        fields = next(csv.reader(f))
    kinds = list(streams)
    rows = []
    for n, m in enumerate(chosen):
        label = LABEL_OF[m.kind]
        group = f"{tag}g{kinds.index(m.kind)}{m.piece:04d}"
        rel = f"{label}/{group}_{n:06d}.wav"
        (root / label).mkdir(exist_ok=True)
        x = streams[m.kind][m.start * hop:m.start * hop + window]
        sf.write(root / rel, np.clip(x, -1, 1), SR, subtype="PCM_16")
        rows.append({"file": rel, "label": label, "group": group,
                     "background": f"mined-{m.kind}", "foreground": f"p={m.score:.3f}"})
    with open(manifest, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writerows({k: v for k, v in r.items() if k in fields} for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m beepnet.training.mine",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="the model whose mistakes to collect")
    ap.add_argument("data", help="a `beepnet synth` folder to add them to")
    ap.add_argument("--real", required=True, help="folder of real recordings (realsounds)")
    ap.add_argument("--minutes", type=float, default=40.0,
                    help="minutes of audio per background kind (music and TV: half)")
    ap.add_argument("--keep", type=int, default=1500, help="at most this many windows")
    ap.add_argument("--min-score", type=float, default=0.05,
                    help="ignore windows the model scores below this")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--round", type=int, default=1, dest="round_",
                    help="1 for the first mining of a folder, 2 for the next, ...")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from ..model.modelfile import ModelFileError

    try:
        chosen = mine(args.model, args.data, args.real, args.minutes, args.keep,
                      args.min_score, args.seed, args.round_)
    except (ModelFileError, FileNotFoundError, ValueError) as e:
        print(f"beepnet: {e}", file=sys.stderr)
        return 2
    print(f"added {len(chosen)} hard negative(s) to {args.data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
