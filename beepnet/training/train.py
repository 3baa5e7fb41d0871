"""Training BeepNet on labelled clips: ``beepnet train DATA_DIR --out MODEL``.

DATA_DIR holds one folder per class (``beep`` is the positive; any others are
negatives), each with audio files of any rate/channels/format. Steps:

1. `scan`: a DataFrame of readable files, labels and recording sessions (unusable
   files are skipped with one line each, and counted).
2. `split`: a stratified split that keeps each take (the clips recorded together, see
   beepnet.training.takes) on one side (StratifiedGroupKFold, one fold of five for
   validation).
3. `fit`: Adam, class-weighted cross-entropy, on-the-fly augmentation (gain, time
   shift, mixing in a background clip), early stopping on the validation loss. When the
   data carries beep times (the ``manifest.csv`` of a generated set), the frame outputs
   are trained too: beep or not, every 20 ms.
4. `pick_threshold`: the operating threshold on P(beep) from the validation set.
5. The model file (beepnet.training.torchmodel) with the metrics and a hash of the data list.
   Given the detector in use (``current``), the new model and that one are first scored on
   the same validation clips (beepnet.model.compare); a new model that makes more mistakes
   does not replace an existing file or the model in use (unless ``force``): it goes beside
   it as ``<stem>.rejected<suffix>``.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..audio import SAMPLE_RATE
from ..model.modelfile import STEADY_WOBBLE_HZ
from ..enroll.head import TIMBRE_CHECKED_MAX
from . import machinebeep

if TYPE_CHECKING:
    from ..config import DetectorConfig

log = logging.getLogger(__name__)

SR = SAMPLE_RATE
WINDOW_S = 3.0
HOP_S = 1.5
MIN_BEEPS = 10
MIN_NEGATIVES = 10
AUDIO_EXT = {".wav", ".flac", ".ogg", ".mp3"}


class TrainError(Exception):
    """Training cannot go on; ``str()`` is one line for the user."""


def session_of(stem: str) -> str:
    """The recording session a file name suggests: the name before its last "_".

    ``20261121-073138_0000024000`` (from `beepnet record`) -> ``20261121-073138``;
    generated ``s0g00012_000061`` -> ``s0g00012``. For ordering clips (`beepnet label`);
    training groups by `beepnet.training.takes.find_takes`, which trusts only those two
    schemes (``beep_003`` says nothing about where a clip was recorded).
    """
    return stem.rsplit("_", 1)[0] if "_" in stem else stem


def _read_clips(files: list[Path], prefix: str = ""):
    """(rows, int16 clips (n, 3 s), stems, mtimes) of the readable ``files``; each unusable
    one is skipped with one line. ``rel`` is ``<prefix><label folder>/<name>``."""
    from ..audio.files import AudioFileError, read_audio

    n = int(WINDOW_S * SR)
    # One preallocated int16 array (2 bytes a sample): 3000 clips take 290 MB.
    clips = np.zeros((len(files), n), np.int16)
    rows, stems, mtimes, skipped = [], [], [], 0
    for f in files:
        label_dir = f.parent
        try:
            audio = read_audio(f, SR)
            mtime = f.stat().st_mtime
        except AudioFileError as e:
            print(f"beepnet: skipped {f}: {e}", file=sys.stderr)
            skipped += 1
            continue
        except OSError as e:  # gone or unreadable between listing and reading
            print(f"beepnet: skipped {f}: {e.strerror or e}", file=sys.stderr)
            skipped += 1
            continue
        if len(audio) < n:
            audio = np.pad(audio, (0, n - len(audio)))
        clips[len(rows)] = np.round(np.clip(audio[:n], -1, 1) * 32767)
        rows.append({"path": str(f), "rel": f"{prefix}{label_dir.name}/{f.name}",
                     "label": label_dir.name, "session": ""})
        stems.append(f.stem)
        mtimes.append(mtime)
    if skipped:
        print(f"beepnet: skipped {skipped} unusable file(s)", file=sys.stderr)
    return rows, clips[:len(rows)], stems, mtimes


def _audio_files(folders: list[Path]) -> list[Path]:
    return [f for label_dir in folders for f in sorted(label_dir.iterdir())
            if f.is_file() and f.suffix.lower() in AUDIO_EXT]


def scan(data_dir: str | Path):
    """(DataFrame[path, rel, label, session], audio int16 array (n, 3 s)).

    Every file is read (at 16 kHz mono), cropped or zero-padded to 3 s. ``session`` is the
    take of each clip (`beepnet.training.takes`); ``df.attrs["grouping"]`` says how the
    takes were found.
    """
    import pandas as pd

    from .takes import find_takes

    root = Path(data_dir)
    if not root.is_dir():
        raise TrainError(f"{root}: no such directory")
    rows, clips, stems, mtimes = _read_clips(
        _audio_files(sorted(p for p in root.iterdir() if p.is_dir())))
    df = pd.DataFrame(rows, columns=["path", "rel", "label", "session"])
    df = _with_beep_times(df, root)
    n_beep = int((df.label == "beep").sum())
    n_neg = len(df) - n_beep
    if n_beep < MIN_BEEPS:
        raise TrainError(f"{root}: {n_beep} usable beep clip(s) in {root / 'beep'}; at least "
                         f"{MIN_BEEPS} are needed")
    if n_neg < MIN_NEGATIVES:
        raise TrainError(f"{root}: {n_neg} usable non-beep clip(s) (other folders); at least "
                         f"{MIN_NEGATIVES} are needed")
    takes = find_takes(stems, clips, np.asarray(mtimes, float), (df.label == "beep").to_numpy())
    df["session"] = takes.ids
    df.attrs["grouping"] = takes.how
    return df, clips


def scan_feedback(root: str | Path):
    """The owner's corrections (`beepnet.training.corrections`) as `scan` returns clips, with
    ``session`` the alert each window came from; TrainError when there are none."""
    import pandas as pd

    from ..notify.feedback import alert_of, label_folders

    root = Path(root)
    none = TrainError(f"{root}: no corrections yet (press ✅ or ❌ under an alert, or label "
                      "/missed's clips with `beepnet label --unsure`)")
    if not root.is_dir():
        raise none
    rows, clips, stems, _ = _read_clips(_audio_files(label_folders(root)), "feedback/")
    df = pd.DataFrame(rows, columns=["path", "rel", "label", "session"])
    if not len(df):
        raise none
    df["session"] = ["feedback-" + alert_of(s) for s in stems]
    return df.assign(beep_start=np.nan, beep_end=np.nan), clips


def _with_beep_times(df, root: Path):
    """Add ``beep_start``/``beep_end`` (seconds, NaN when unknown) from a generator manifest.

    `beepnet synth` writes where each beep lies in its clip; a hand-labelled folder has no
    manifest, and its beep times stay unknown (training then uses the clip labels only).
    """
    import pandas as pd

    df = df.assign(beep_start=np.nan, beep_end=np.nan)
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        return df
    try:
        times = pd.read_csv(manifest, usecols=["file", "beep_start", "beep_end"])
    except (ValueError, OSError, pd.errors.ParserError) as e:
        log.warning("%s: beep times not used (%s)", manifest, e)
        return df
    times = times.drop_duplicates("file").set_index("file")
    df["beep_start"] = df.rel.map(times.beep_start).astype(float)
    df["beep_end"] = df.rel.map(times.beep_end).astype(float)
    # Times of a file that is no longer a beep (moved by relabelling) mean nothing.
    df.loc[df.label != "beep", ["beep_start", "beep_end"]] = np.nan
    return df


def frame_targets(spans: np.ndarray, is_beep: np.ndarray, shifts: np.ndarray, n_frames: int,
                  frame_s: float, n_samples: int, rates: np.ndarray | None = None,
                  edge_s: float = 0.04) -> np.ndarray:
    """Per-frame beep targets for a batch: 1 beep, 0 not, -1 unknown (left out of the loss).

    ``spans`` (batch, 2) are the beep's start/end in the clip before the speed change by
    ``rates`` (see `_change_speed`) and the circular shift by ``shifts`` samples; NaN for
    clips without times. Frames of negative clips are 0;
    frames of a beep clip are 1 inside its span and unknown elsewhere (the gaps of a
    pattern, and its edges within ``edge_s``, are too vague to call).
    """
    clip_s = n_samples / SR
    t = (np.arange(n_frames) + 0.5) * frame_s
    out = np.where(is_beep[:, None], -1, 0).astype(np.int64) * np.ones(n_frames, np.int64)
    for i in np.flatnonzero(is_beep & np.isfinite(spans[:, 0])):
        orig = np.mod(t - shifts[i] / SR, clip_s)  # where each frame's audio came from
        if rates is not None:
            orig = np.mod(orig * rates[i], clip_s)
        inside = (orig >= spans[i, 0] + edge_s) & (orig <= spans[i, 1] - edge_s)
        out[i, inside] = 1
    return out


def split(df, seed: int, val_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices; a take (``df.session``) never straddles them, and
    both sides hold beeps.

    StratifiedGroupKFold's first fold that has beeps on both sides; with few beep takes
    none may, and then about ``val_fraction`` of the beep takes (at least one, never all)
    and of the rest are drawn by hand.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    groups = df.session.to_numpy()
    is_beep = (df.label == "beep").to_numpy()
    beep_takes = np.unique(groups[is_beep])
    if len(beep_takes) < 2:
        how = df.attrs.get("grouping", "")
        raise TrainError(f"all {int(is_beep.sum())} beep clips come from one take"
                         + (f" ({how})" if how else "")
                         + "; beeps from at least 2 separate recordings are needed to "
                         "validate on unseen audio: record the beep again")
    n_splits = max(2, min(round(1 / val_fraction), len(np.unique(groups))))
    skf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for tr, va in skf.split(np.zeros(len(df)), df.label.to_numpy(), groups):
        if is_beep[va].any() and is_beep[tr].any():
            return tr, va
    return _split_by_hand(groups, is_beep, seed, val_fraction)


def _split_by_hand(groups: np.ndarray, is_beep: np.ndarray, seed: int, val_fraction: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Whole takes drawn for validation: some beep takes (not all), then others up to about
    ``val_fraction`` of the clips."""
    rng = np.random.default_rng(seed)
    beep_takes = rng.permutation(np.unique(groups[is_beep]))
    n_val = min(len(beep_takes) - 1, max(1, round(len(beep_takes) * val_fraction)))
    chosen = set(beep_takes[:n_val].tolist())
    want = val_fraction * len(groups)
    size = int(np.isin(groups, list(chosen)).sum())
    for g in rng.permutation(np.unique(groups[~np.isin(groups, beep_takes)])):
        if size >= want:
            break
        chosen.add(g)
        size += int((groups == g).sum())
    in_val = np.isin(groups, list(chosen))
    return np.flatnonzero(~in_val), np.flatnonzero(in_val)


def pick_threshold(p_beep: np.ndarray, is_beep: np.ndarray, max_fa_per_1000: float = 1.0
                   ) -> tuple[float, str]:
    """The operating threshold on P(beep) and how it was chosen.

    With >= 1000 negative windows: the lowest threshold with at most
    ``max_fa_per_1000`` false positives per 1000 negatives. With fewer (a
    false-alarm rate cannot be measured), the threshold maximising F1.
    """
    neg = np.sort(p_beep[~is_beep])[::-1]
    if len(neg) >= 1000:
        allowed = math.floor(len(neg) * max_fa_per_1000 / 1000)
        t = float(neg[allowed]) + 1e-6 if allowed < len(neg) else 0.0
        return float(min(max(t, 0.05), 0.99)), f"<= {max_fa_per_1000:g} FP / 1000 negatives"
    best, best_t = -1.0, 0.5
    for t in np.unique(np.concatenate([p_beep, [0.5]])):
        pred = p_beep >= t
        tp = np.sum(pred & is_beep)
        f1 = 2 * tp / max(1, np.sum(pred) + np.sum(is_beep))
        if f1 > best + 1e-9:
            best, best_t = f1, float(t)
    # Just below the chosen score: the numpy runtime computes a beep's score a few 1e-7
    # lower than torch, which at the exact score would turn that beep into a miss.
    return float(min(max(best_t - 1e-6, 0.05), 0.99)), "max F1 (too few negatives for a FA rate)"


def metrics(p_beep: np.ndarray, is_beep: np.ndarray, threshold: float) -> dict:
    """Precision, recall, F1 and false alarms (per 1000 negative windows, per hour)."""
    pred = p_beep >= threshold
    tp = int(np.sum(pred & is_beep))
    fp = int(np.sum(pred & ~is_beep))
    fn = int(np.sum(~pred & is_beep))
    n_neg = int(np.sum(~is_beep))
    hours = n_neg * HOP_S / 3600  # each negative window = 1.5 s of new audio at hop 1.5 s
    return {"precision": tp / max(1, tp + fp), "recall": tp / max(1, tp + fn),
            "f1": 2 * tp / max(1, 2 * tp + fp + fn), "tp": tp, "fp": fp, "fn": fn,
            "negatives": n_neg, "positives": int(np.sum(is_beep)),
            "fa_per_1000": 1000 * fp / max(1, n_neg),
            "fa_per_hour": fp / hours if hours else float("nan")}


@dataclass(frozen=True)
class Comparison:
    """The new model and the detector in use scored on one set of held-out clips."""

    title: str
    """Which clips: "held-out clips", "your held-out alerts", ..."""
    new: object
    current: object
    """`beepnet.model.compare.Score` each."""
    tolerance: int = 0
    """How many more mistakes the new model may make on these clips and still be put in
    use."""

    @property
    def worse(self) -> bool:
        return self.new.errors > self.current.errors + self.tolerance


@dataclass
class TrainResult:
    threshold: float
    threshold_rule: str
    val: dict
    epochs: int
    seconds: float
    path: str = ""
    """Where the model went: ``out``, or beside it when rejected."""
    rejected: bool = False
    """The new model was worse than the one in use and did not replace it."""
    scores: list[Comparison] | None = None
    """The comparisons with the detector in use on the validation clips, when compared."""
    note: str = ""
    """Why there was nothing to compare with, when there was not."""
    grouping: str = ""
    """How the clips were grouped into takes for the split."""
    owner: dict | None = None
    """With corrections: {"windows", "alerts", "held_out_alerts", "repeat", "labels"}."""
    machine: "machinebeep.MachineBeep | None" = None
    """The beep's pitches and timbres when the beep clips are one machine's."""

    @property
    def worse(self) -> bool:
        return any(c.worse for c in self.scores or [])


FEATURES_LR_SHARE = 0.3
"""`train --init` on a user's chunks: the layers before the classifier learn at this share
of its rate (`--features-share`; `make model`'s later steps pass 1). ~40 beep and ~600
other chunks of one home are too few to retrain features the start model learnt from
thousands of clips: with every layer at one rate, the machine's beeps over the home's
clatter were most of the misses. `make bench-realuser`, missed beep windows of 400 / false
alarms in 4 h (piezo, chime, melody machines):

    share   seed 1400            seed 1410            mistakes
    1       3, 2, 0 / 0, 0, 7    9, 5, 15 / 0, 0, 1   42
    0.3     2, 2, 2 / 0, 0, 6    4, 5, 11 / 0, 0, 1   33
    0.1     1, 3, 1 / 0, 0, 18   2, 6, 6 / 0, 0, 1    38

On `make bench`'s generated user set it costs: 0.985 of the beep windows and 2 false
alarms in 3.1 h, against 0.993 and none at one rate. The owner's answers (`--feedback`)
keep one rate: they come with 1500 generated clips, and at a tenth the chime's and the
melody's models on seed 1410 missed more (48 and 41 mistakes against 5 and 33)."""
SPEED_P = 0.5
"""Share of training clips played faster or slower (pitch and tempo together)."""
SPEED_RANGE = (0.88, 1.12)


def _change_speed(batch, rates: np.ndarray):
    """Each clip read ``rates[i]`` times as fast, circularly, by linear interpolation.

    A beep at f Hz becomes one at f * rate. Without it a net trained on a few thousand
    clips had narrow frequency holes: a 3.2 kHz beep scored "tonal" while 3.1 and 3.3 kHz
    were beeps. Reading circularly keeps the length (the time shift is circular too).
    """
    import torch

    # Only the clips whose speed changes: at rate 1 the interpolation gives each sample
    # back exactly, and skipping them halves the step's biggest cost after the net itself.
    moved = np.flatnonzero(rates != 1.0)
    if not len(moved):
        return batch
    n = batch.shape[1]
    pos = (torch.arange(n, dtype=torch.float64)[None, :]
           * torch.from_numpy(np.asarray(rates, np.float64)[moved])[:, None])
    pos = torch.remainder(pos, n)
    i0 = pos.floor().long()
    frac = (pos - i0).float()
    i1 = torch.remainder(i0 + 1, n)
    rows = batch[moved]
    out = batch.clone()
    out[moved] = rows.gather(1, i0) * (1 - frac) + rows.gather(1, i1) * frac
    return out


def _augment(batch, rng: np.random.Generator, pool):
    """Random speed (pitch) change, circular time shift, sometimes a background clip mixed
    in, random gain.

    Returns the augmented batch, each clip's shift in samples and its speed factor."""
    import torch

    b, n = batch.shape
    rates = np.where(rng.random(b) < SPEED_P, np.exp(rng.uniform(*np.log(SPEED_RANGE), size=b)),
                     1.0)
    batch = _change_speed(batch, rates)
    shifts = rng.integers(0, n, size=b)
    out = torch.stack([torch.roll(batch[i], int(shifts[i])) for i in range(b)])
    if len(pool):
        mix = rng.random(b) < 0.3
        for i in np.flatnonzero(mix):
            other = pool[int(rng.integers(len(pool)))].float() / 32767
            rms_a = out[i].pow(2).mean().sqrt().clamp_min(1e-6)
            rms_b = other.pow(2).mean().sqrt().clamp_min(1e-6)
            out[i] = out[i] + other * (rms_a / rms_b) * float(10 ** (-rng.uniform(3, 20) / 20))
    gain = torch.from_numpy(10 ** (rng.uniform(-20, 6, size=(b, 1)) / 20)).float()
    return (out * gain).clamp(-1, 1), shifts, rates


def _frame_loss(frame_logits, targets):
    """Balanced beep / not-beep cross-entropy over the frames with a target (0 or 1).

    P(beep) of a frame is its softmax over all classes; "not beep" is the sum of the
    others. Beep and non-beep frames count half each, however many there are of each.
    """
    import torch

    logp = torch.log_softmax(frame_logits, dim=1)
    log_beep = logp[:, 0]
    log_not = torch.logsumexp(logp[:, 1:], dim=1)
    parts = [(-log_beep[targets == 1]), (-log_not[targets == 0])]
    parts = [p.mean() for p in parts if p.numel()]
    return sum(parts) / len(parts) if parts else frame_logits.sum() * 0.0


def predict(net, audio: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Softmax class probabilities (clips, classes) for int16 clips, one forward pass a batch.

    Only one batch is converted to float at a time, so the memory beyond the int16 clips
    themselves is ``batch_size`` windows.
    """
    import torch

    net.eval()
    out = np.empty((len(audio), net.cfg.n_classes), np.float32)
    with torch.inference_mode():
        for i in range(0, len(audio), batch_size):
            x = torch.from_numpy(audio[i:i + batch_size]).float().div_(32767)
            out[i:i + len(x)] = torch.softmax(net(x)[0], dim=1).numpy()
    return out


def _build(arch: str, labels: list[str], init: str | None, lr: float):
    """(the net to train, its learning rate, the start model's ModelInfo or None): fresh, or
    started from a model file."""
    from ..model.arch import NetConfig, OriginalConfig
    from .net import BeepNet
    from .original import OriginalBeepNet
    from .torchmodel import load_model

    if arch == "original":
        return OriginalBeepNet(OriginalConfig(n_classes=len(labels))), lr, None
    if not init:
        return BeepNet(NetConfig(n_classes=len(labels))), lr, None
    if init == "default":
        from ..model.preflight import find_default_model

        init = str(find_default_model())
    start = load_model(init)
    if not isinstance(start.net, BeepNet):
        raise TrainError(f"{init}: --init needs a BeepNet model, not the original net")
    # The start model's own architecture, with an output per class of this data set.
    net = BeepNet(replace(start.net.cfg, n_classes=len(labels)))
    _transfer(start.net.state_dict(), start.labels, net, labels)
    log.info("starting from %s (classes %s)", init, ", ".join(start.labels))
    # Fine-tuning: a gentler rate keeps what the start model knows about beeps in general.
    return net, lr / 3, start


def _param_groups(net, lr: float, features_share: float) -> list[dict]:
    """The optimiser's parameter groups: the classifier at ``lr``, every layer before it at
    ``lr * features_share``."""
    head = [p for name, p in net.named_parameters() if name.startswith("classifier.")]
    rest = [p for name, p in net.named_parameters() if not name.startswith("classifier.")]
    return [{"params": rest, "lr": lr * features_share}, {"params": head, "lr": lr}]


def _transfer(src: dict, src_labels: list[str], net, labels: list[str]) -> None:
    """Copy every weight whose shape fits; output rows go to the classes of the same name."""
    import torch

    dst = net.state_dict()
    with torch.no_grad():
        for k, v in src.items():
            if k not in dst:
                continue
            if dst[k].shape == v.shape and not k.startswith("classifier."):
                dst[k].copy_(v)
            elif k.startswith("classifier."):
                for i, name in enumerate(labels):
                    if name in src_labels:
                        dst[k][i].copy_(v[src_labels.index(name)])
    net.load_state_dict(dst)


def train(data_dir: str | Path, out: str | Path, epochs: int = 15, seed: int = 0,
          batch_size: int = 32, threads: int = 2, patience: int = 6, arch: str = "beepnet",
          init: str | None = None, lr: float = 3e-3, frame_weight: float = 0.5,
          current: "DetectorConfig | None" = None, force: bool = False,
          feedback: str | Path | None = None,
          features_share: float | None = None) -> TrainResult:
    """Train a model on DATA_DIR, save it to ``out``, return the validation figures.

    ``current``: the detector in use (the config's ``detector``); the new model is compared
    with it on the validation clips and, when worse, not written over ``out`` if that exists
    or is the model in use, unless ``force`` (see `_save_unless_worse`). None: no comparison.

    ``arch``: "beepnet" or "original" (the first author's 2-filter net, a baseline).
    ``init``: a model file (or "default", the shipped one) to start from, at a third of
    ``lr``, the layers before the classifier at ``features_share`` of that.
    ``features_share``: None for `FEATURES_LR_SHARE` with ``init`` and no ``feedback``, one
    rate for every layer otherwise; 1 is what `make model`'s rounds of mining use (they
    start from its own first model with thousands of clips, and the shipped weights were
    trained so).
    ``frame_weight``: share of the frame loss beside the clip loss, where beep times are
    known (0: clip labels only).
    ``feedback``: the owner's corrections (a ``storage.dir/feedback`` folder) to learn beside
    DATA_DIR (`beepnet.training.corrections`): repeated in every epoch, held out by alert,
    the start model's threshold kept, and a worse model never written to ``out``.
    """
    import pandas as pd
    import torch
    from torch import nn

    from . import corrections
    from .torchmodel import data_hash, save_model

    if arch not in ("beepnet", "original"):
        raise TrainError(f"unknown architecture {arch!r} (beepnet or original)")
    if arch == "original" and init:
        raise TrainError("--init only works with --arch beepnet")
    if feedback is not None and not init:
        raise TrainError("learning from corrections starts from a model (init)")
    t0 = time.monotonic()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    df, audio = scan(data_dir)
    grouping = df.attrs.get("grouping", "")
    tr, va = split(df, seed)
    n_data = len(df)
    own_tr = own_va = np.zeros(0, np.int64)
    copies, owner = 0, None
    if feedback is not None:
        fdf, faudio = scan_feedback(feedback)
        df = pd.concat([df, fdf], ignore_index=True)
        audio = np.concatenate([audio, faudio])
        own_tr, own_va = corrections.owner_split(fdf.session.to_numpy(), fdf.label.to_numpy(),
                                                 seed)
        own_tr, own_va = own_tr + n_data, own_va + n_data
        copies = corrections.repeats(len(own_tr), len(tr))
        owner = {"windows": len(fdf), "alerts": int(fdf.session.nunique()),
                 "held_out_alerts": int(df.session.iloc[own_va].nunique()), "repeat": copies,
                 "labels": {k: int(v) for k, v in fdf.label.value_counts().items()}}
        log.info("corrections: %d windows of %d alerts (%s); %d alerts held out; each "
                 "learned %d times an epoch", owner["windows"], owner["alerts"],
                 ", ".join(f"{k} {v}" for k, v in owner["labels"].items()),
                 owner["held_out_alerts"], copies)
    labels = ["beep"] + sorted(set(df.label) - {"beep"})
    y = df.label.map({k: i for i, k in enumerate(labels)}).to_numpy()
    log.info("%s", grouping)
    log.info("%d clips (%s); %d train, %d validation, %d takes",
             len(df), ", ".join(f"{k} {int((df.label == k).sum())}" for k in labels),
             len(tr) + len(own_tr), len(va) + len(own_va), df.session.nunique())
    # What an epoch goes through: the owner's corrections repeated (none without them).
    epoch_rows = np.concatenate([tr, np.repeat(own_tr, copies)]).astype(np.int64)
    val_rows = np.concatenate([va, own_va]).astype(np.int64)
    # Class weights: inverse frequency in what an epoch sees, mean 1.
    counts = np.bincount(y[epoch_rows], minlength=len(labels)).astype(float)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / len(labels), 0.0)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
    net, lr, start = _build(arch, labels, init, lr)
    if features_share is None:
        # A user's own chunks (`--init`, not the owner's answers): the layers before the
        # classifier learn slower than it.
        features_share = FEATURES_LR_SHARE if start is not None and feedback is None else 1.0
    if start is not None and features_share != 1.0:
        log.info("fine-tuning: the classifier at rate %g, the layers before it at %g",
                 lr, lr * features_share)
        params = _param_groups(net, lr, features_share)
    else:
        # One group, as the shipped weights were trained (`make model` rebuilds them on
        # the kind of CPU that built them).
        params = net.parameters()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    audio_t = torch.from_numpy(audio)
    bg_pool = audio_t[tr[np.isin(df.label.to_numpy()[tr], ["washer", "other", "speech"])]]
    y_t = torch.from_numpy(y.copy())
    spans = df[["beep_start", "beep_end"]].to_numpy(float)
    use_frames = (arch == "beepnet" and frame_weight > 0
                  and bool(np.isfinite(spans[:, 0]).any()))
    if use_frames:
        log.info("beep times known for %d beep clips: training the frame outputs too",
                 int(np.isfinite(spans[:, 0]).sum()))
    best = (float("inf"), None, 0)
    quiet = not sys.stderr.isatty()
    from tqdm import tqdm

    ran = 0
    for epoch in range(1, epochs + 1):
        net.train()
        order = rng.permutation(epoch_rows)
        bar = tqdm(range(0, len(order), batch_size), desc=f"epoch {epoch}/{epochs}",
                   disable=quiet, leave=False)
        total = 0.0
        for i in bar:
            idx = order[i:i + batch_size]
            if len(idx) < 2:  # BatchNorm needs 2 examples
                continue
            x, shifts, rates = _augment(audio_t[idx].float() / 32767, rng, bg_pool)
            clip_logits, frame_logits = net(x)
            loss = loss_fn(clip_logits, y_t[idx])
            if use_frames:
                tgt = frame_targets(spans[idx], y[idx] == 0, shifts, frame_logits.shape[2],
                                    net.frame_seconds, x.shape[1], rates)
                loss = loss + frame_weight * _frame_loss(frame_logits, torch.from_numpy(tgt))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        sched.step()
        ran = epoch
        probs = predict(net, audio[val_rows])
        val_loss = float(loss_fn(torch.from_numpy(np.log(probs + 1e-9)), y_t[val_rows]))
        acc = float(np.mean(probs.argmax(1) == y[val_rows]))
        log.info("epoch %d: train loss %.3f, validation loss %.3f, accuracy %.3f",
                 epoch, total / len(epoch_rows), val_loss, acc)
        if val_loss < best[0] - 1e-4:
            best = (val_loss, {k: v.clone() for k, v in net.state_dict().items()}, epoch)
        elif epoch - best[2] >= patience:
            log.info("early stop: no validation improvement for %d epochs", patience)
            break
    net.load_state_dict(best[1])
    probs = predict(net, audio[val_rows])
    p_beep, is_beep = probs[:, 0], y[val_rows] == 0
    pitches: tuple[float, ...] = ()
    timbres: tuple = ()
    min_notes, wobble = 1, STEADY_WOBBLE_HZ
    machine = None
    if feedback is not None:
        # The start model's threshold was set on real negatives (or the owner's room, by
        # enroll); the validation clips here are too few to set a false-alarm rate.
        threshold, rule = float(start.threshold), f"kept from {Path(start.path).name}"
        pitches = tuple(start.beep_pitches_hz or ())
        timbres = tuple(start.beep_timbre or ())
        min_notes, wobble = start.beep_min_notes, start.beep_wobble_hz
    else:
        # The original net stays as its author built it: the baseline `make
        # bench-realuser` compares with.
        machine = (machinebeep.learn([audio[i] for i in tr[y[tr] == 0]], SR, seed)
                   if arch == "beepnet" else None)
        if machine is not None:
            # Scored as the detector will score them: no tone at the pitch, no alert.
            pitches, timbres, min_notes = machine.pitches, machine.timbres, machine.min_notes
            wobble = machine.wobble_hz
            p_beep = machinebeep.gated(p_beep, [audio[i] for i in val_rows], machine, SR)
        threshold, rule = pick_threshold(p_beep, is_beep)
        if machine is not None and machine.timbre_checked and threshold > TIMBRE_CHECKED_MAX:
            threshold, rule = TIMBRE_CHECKED_MAX, f"{rule}, at most {TIMBRE_CHECKED_MAX:g} " \
                "with the timbre check"
    val = metrics(p_beep, is_beep, threshold)
    val.update(val_loss=best[0], best_epoch=best[2], threshold_rule=rule)
    if owner is not None:
        val["corrections"] = owner

    def write(path: Path) -> None:
        save_model(path, net, labels, threshold, metrics=val,
                   data_sha256=data_hash(list(zip(df.rel, df.label))),
                   window_seconds=WINDOW_S, hop_seconds=HOP_S, beep_pitches_hz=pitches,
                   beep_timbre=timbres, beep_min_notes=min_notes, beep_wobble_hz=wobble)

    sets = [("held-out clips", val_rows, 0)]
    if feedback is not None:
        sets = [("your held-out alerts", own_va, 0),
                ("held-out other clips", va, max(1, math.floor(len(va)
                                                              * corrections.REPLAY_TOLERANCE)))]
        sets = [s for s in sets if len(s[1])]
    saved, scores, note = _save_unless_worse(
        write, Path(out), [(title, audio[rows], y[rows] == 0, tol) for title, rows, tol in sets],
        current, force, always_guard=feedback is not None)
    return TrainResult(threshold, rule, val, ran, time.monotonic() - t0, path=str(saved),
                       rejected=saved != Path(out), scores=scores, note=note,
                       grouping=grouping, owner=owner, machine=machine)


def rejected_path(out: Path) -> Path:
    """Where a new model that lost the comparison goes: ``<stem>.rejected<suffix>``."""
    return out.with_name(f"{out.stem}.rejected{out.suffix or '.safetensors'}")


def _save_unless_worse(write, out: Path, sets: list[tuple[str, np.ndarray, np.ndarray, int]],
                       current: "DetectorConfig | None", force: bool,
                       always_guard: bool = False) -> tuple[Path, list | None, str]:
    """Write the new model to ``out``, or beside it when it is worse than the model in use.

    ``sets``: (title, int16 clips, is_beep, tolerance) the two are scored on. The new model
    is written to a hidden file beside ``out`` first, so that it is scored exactly as the
    daemon would load it, then moved into place. It does not replace ``out`` when it makes
    more mistakes than the detector in use on any set (beyond that set's tolerance) and
    ``out`` already exists or is the model in use (a fresh path harms nothing), or
    ``always_guard`` (it is to be put in use). Returns (where it went, [Comparison] or None,
    why nothing was compared).
    """
    if current is None:
        write(out)
        return out, None, ""
    from ..model import compare
    from ..model.preflight import in_use_path, model_problem

    tmp = out.with_name(f".{out.stem}.new-{os.getpid()}{out.suffix}")
    write(tmp)
    try:
        # The original net runs only in torch; BeepNet as the daemon runs it by default. A
        # detector.threshold in the config would apply to the new model too.
        runtime = "torch" if model_problem(tmp, "numpy") else "numpy"
        try:
            in_use = compare.load_in_use(current)
        except ValueError as e:  # ModelFileError: a missing or broken model in use
            os.replace(tmp, out)
            return out, None, f"the detector in use could not be loaded ({e}): nothing to compare"
        scores = []
        for title, clips, is_beep, tolerance in sets:
            audio = clips.astype(np.float32) / 32767
            new = replace(compare.score_model(tmp, audio, is_beep, "new", runtime,
                                              current.threshold), model=out.name)
            cur = compare.score_detector(in_use, audio, is_beep, "in use")
            scores.append(Comparison(title, new, cur, tolerance))
        used = in_use_path(current)
        guarded = always_guard or out.exists() or (
            used is not None and used.resolve() == out.resolve())
        if any(c.worse for c in scores) and guarded and not force:
            dest = rejected_path(out)
            os.replace(tmp, dest)
            return dest, scores, ""
        os.replace(tmp, out)
        return out, scores, ""
    finally:
        tmp.unlink(missing_ok=True)
