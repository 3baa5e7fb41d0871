"""Evaluating a BeepNet model on labelled clips: ``beepnet evaluate DATA_DIR --model MODEL``.

DATA_DIR has the layout `beepnet train` reads (``DATA_DIR/<label>/*.wav``; ``beep`` is
the positive, every other folder a negative class) and is read by the same
`beepnet.training.train.scan`, so both commands accept and skip the same files. Steps:

1. `evaluate`: every usable clip is scored in batches (one forward pass per batch);
   only the class probabilities are kept.
2. Each clip's predicted class is the model's decision at its operating point: ``beep``
   when P(beep) >= the threshold, otherwise the most likely other class. So the beep
   row of the per-class table and the beep-vs-rest figures describe the same decisions
   the detector makes.
3. `summarize`: scikit-learn's classification report over the model's classes, a
   confusion matrix (rows: true label, columns: predicted), beep-vs-rest figures from
   `train.metrics` (false alarms per hour count each negative clip as 1.5 s of new
   audio, the live hop) and the average precision.
4. `save_report`: ``report.json``, ``scores.csv`` (one row per clip, to find and listen
   to the mistakes) and three PNGs: the precision-recall curve with the operating point,
   histograms of P(beep) for beep and other clips with the threshold, the confusion
   matrix.

Folders whose name is not one of the model's classes are reported, not hidden: their
clips are negatives for beep-vs-rest, rows of the confusion matrix, and left out of the
per-class table (the model cannot name them, so "recall" means nothing there).
"""

from __future__ import annotations

import csv
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from . import train

log = logging.getLogger(__name__)

POSITIVE = "beep"
FIGURES = {"pr_curve": "pr_curve.png", "score_histogram": "score_histogram.png",
           "confusion": "confusion.png"}
_LIST_MISTAKES = 5  # the worst missed beeps and false alarms named in the text report


class EvaluateError(Exception):
    """The evaluation cannot run; ``str()`` is one line for the user."""


@dataclass
class Evaluation:
    """Every usable clip's scores and what they were scored with."""

    model_path: str
    data_dir: str
    labels: list[str]
    """The model's classes, in the order of its outputs."""
    threshold: float
    threshold_source: str
    """"model file" or "--threshold"."""
    clips: object
    """DataFrame, one row per clip: path, rel, label, session, p_beep, predicted."""
    probs: np.ndarray
    """(clips, classes) softmax outputs."""
    files_skipped: int

    @property
    def is_beep(self) -> np.ndarray:
        return (self.clips.label == POSITIVE).to_numpy()

    @property
    def p_beep(self) -> np.ndarray:
        return self.clips.p_beep.to_numpy()

    @property
    def unknown_labels(self) -> list[str]:
        """Data folders that are not classes of the model."""
        return sorted(set(self.clips.label) - set(self.labels))


def _audio_files(root: Path) -> dict[str, int]:
    """Audio files per label folder, chosen like `train.scan` (before reading any)."""
    return {d.name: sum(1 for f in d.iterdir()
                        if f.is_file() and f.suffix.lower() in train.AUDIO_EXT)
            for d in sorted(p for p in root.iterdir() if p.is_dir())}


def check_data_dir(data_dir: str | Path) -> dict[str, int]:
    """Fail fast, before the model is loaded, on a data folder that cannot be evaluated."""
    root = Path(data_dir)
    if not root.is_dir():
        raise EvaluateError(f"{root}: no such directory")
    counts = _audio_files(root)
    if not sum(counts.values()):
        raise EvaluateError(f"{root}: no audio clips in {root}/<label>/ folders (expected "
                            f"{root}/{POSITIVE}/*.wav and a folder per negative class)")
    if not counts.get(POSITIVE):
        raise EvaluateError(f"{root}: no clips in {root / POSITIVE}; beep clips (the positive "
                            "class) are needed to measure recall")
    if not any(n for label, n in counts.items() if label != POSITIVE):
        raise EvaluateError(f"{root}: only beep clips; clips of at least one negative class "
                            f"(another folder, e.g. {root}/other) are needed to measure "
                            "false alarms")
    return counts


def decide(probs: np.ndarray, beep_index: int, threshold: float) -> np.ndarray:
    """Predicted class per clip: beep at or above the threshold, else the best other class."""
    others = probs.copy()
    others[:, beep_index] = -np.inf
    pred = others.argmax(axis=1)
    pred[probs[:, beep_index] >= threshold] = beep_index
    return pred


def evaluate(data_dir: str | Path, model_path: str | Path, threshold: float | None = None,
             batch_size: int = 64, threads: int = 2) -> Evaluation:
    """Score every usable clip of DATA_DIR with the model.

    Raises EvaluateError or TrainError (data) and ModelFileError (model), each with a
    one-line message.
    """
    import torch

    from .torchmodel import load_model

    counts = check_data_dir(data_dir)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise EvaluateError(f"threshold {threshold} is not in 0..1")
    torch.set_num_threads(threads)
    info = load_model(model_path)  # before reading the clips: a bad model fails at once
    if abs(info.window_seconds - train.WINDOW_S) > 1e-6:
        log.warning("%s was made for %.1f-s windows; clips are read as %.1f s like training",
                    model_path, info.window_seconds, train.WINDOW_S)
    t0 = time.monotonic()
    df, audio = train.scan(data_dir)
    labels = list(info.labels)
    probs = train.predict(info.net, audio, batch_size)
    del audio  # the int16 clips are no longer needed; only probabilities are kept
    beep = labels.index(POSITIVE)
    t = info.threshold if threshold is None else float(threshold)
    df["p_beep"] = probs[:, beep]
    df["predicted"] = [labels[i] for i in decide(probs, beep, t)]
    log.debug("scored %d clips in %.1f s", len(df), time.monotonic() - t0)
    return Evaluation(model_path=str(model_path), data_dir=str(data_dir), labels=labels,
                      threshold=t,
                      threshold_source="model file" if threshold is None else "--threshold",
                      clips=df, probs=probs,
                      files_skipped=sum(counts.values()) - len(df))


def confusion(ev: Evaluation) -> tuple[list[str], list[str], np.ndarray]:
    """(row labels, column labels, counts): rows are true labels (the model's classes,
    then data folders it does not know), columns the predicted classes."""
    rows = list(ev.labels) + ev.unknown_labels
    r = ev.clips.label.map({k: i for i, k in enumerate(rows)}).to_numpy()
    c = ev.clips.predicted.map({k: i for i, k in enumerate(ev.labels)}).to_numpy()
    m = np.zeros((len(rows), len(ev.labels)), np.int64)
    np.add.at(m, (r, c), 1)
    return rows, list(ev.labels), m


def summarize(ev: Evaluation) -> dict:
    """All figures of the evaluation as plain JSON-able values."""
    from sklearn.metrics import average_precision_score, classification_report

    known = ev.clips.label.isin(ev.labels).to_numpy()
    y_true = ev.clips.label.to_numpy()[known]
    y_pred = ev.clips.predicted.to_numpy()[known]
    kw = dict(labels=ev.labels, zero_division=0)
    per_class = classification_report(y_true, y_pred, output_dict=True, **kw)
    per_class_text = classification_report(y_true, y_pred, digits=3, **kw)
    rows, cols, m = confusion(ev)
    is_beep, p = ev.is_beep, ev.p_beep
    binary = train.metrics(p, is_beep, ev.threshold)
    binary["average_precision"] = float(average_precision_score(is_beep, p))
    binary["hours_of_negative_audio"] = binary["negatives"] * train.HOP_S / 3600
    said_beep = ev.clips.predicted == POSITIVE
    unknown = {k: {"clips": int((ev.clips.label == k).sum()),
                   "predicted_beep": int(((ev.clips.label == k) & said_beep).sum())}
               for k in ev.unknown_labels}
    return {
        "beepnet_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": ev.model_path, "data_dir": ev.data_dir,
        "model_labels": list(ev.labels),
        "threshold": ev.threshold, "threshold_source": ev.threshold_source,
        "decision": (f"beep when P(beep) >= {ev.threshold:.4g}, otherwise the most likely "
                     "other class"),
        "clips": int(len(ev.clips)), "files_skipped": int(ev.files_skipped),
        "sessions": int(ev.clips.session.nunique()),
        "clips_per_label": {k: int(v) for k, v in ev.clips.label.value_counts()
                            .sort_index().items()},
        "labels_not_in_model": unknown,
        "per_class": per_class, "per_class_text": per_class_text,
        "confusion": {"rows_true": rows, "columns_predicted": cols, "counts": m.tolist()},
        "beep_vs_rest": binary,
    }


def format_confusion(rows: list[str], cols: list[str], m: np.ndarray,
                     unknown: list[str] = ()) -> str:
    """A text table; rows not among the model's classes are marked with "*"."""
    names = [f"{r}*" if r in unknown else r for r in rows]
    w0 = max(len(n) for n in names + ["true \\ predicted"])
    w = max(max(len(c) for c in cols), len(str(int(m.max()) if m.size else 0))) + 1
    lines = ["true \\ predicted".ljust(w0) + "".join(c.rjust(w) for c in cols)]
    lines += [n.ljust(w0) + "".join(str(int(v)).rjust(w) for v in row)
              for n, row in zip(names, m, strict=True)]
    if unknown:
        lines.append("* not a class of this model")
    return "\n".join(lines)


def format_report(ev: Evaluation, s: dict) -> str:
    """The text report `beepnet evaluate` prints."""
    b = s["beep_vs_rest"]
    counts = ", ".join(f"{k} {v}" for k, v in s["clips_per_label"].items())
    lines = [
        f"model {ev.model_path}: classes {', '.join(ev.labels)}; threshold "
        f"{ev.threshold:.3f} (from the {ev.threshold_source})",
        f"data {ev.data_dir}: {s['clips']} clip(s) from {s['sessions']} session(s) ({counts})"
        + (f"; {s['files_skipped']} unusable file(s) skipped" if s["files_skipped"] else ""),
        f"predicted class: {s['decision']}", ""]
    for k, u in s["labels_not_in_model"].items():
        lines.append(f"note: {k!r} is not a class of this model: its {u['clips']} clip(s) are "
                     f"negatives for beep vs rest ({u['predicted_beep']} taken for a beep), "
                     "a confusion-matrix row, and not in the per-class table")
    if s["labels_not_in_model"]:
        lines.append("")
    lines += ["Per class (the model's classes):", s["per_class_text"].rstrip(), "",
              "Confusion matrix (rows: true label, columns: predicted):",
              format_confusion(s["confusion"]["rows_true"], s["confusion"]["columns_predicted"],
                               np.array(s["confusion"]["counts"]), ev.unknown_labels), "",
              f"Beep vs rest at threshold {ev.threshold:.3f}:",
              f"  precision {b['precision']:.3f}, recall {b['recall']:.3f}, F1 {b['f1']:.3f} "
              f"({b['tp']} beeps found, {b['fn']} missed, {b['fp']} false alarm(s))",
              f"  false alarms: {b['fp']} of {b['negatives']} negative clips = "
              f"{b['fa_per_1000']:.1f} per 1000 windows, {b['fa_per_hour']:.1f} per hour "
              f"(each negative clip counted as {train.HOP_S:g} s of new audio)",
              f"  average precision (area under the precision-recall curve) "
              f"{b['average_precision']:.3f}"]
    df = ev.clips
    missed = df[(df.label == POSITIVE) & (df.predicted != POSITIVE)].sort_values("p_beep")
    false = df[(df.label != POSITIVE) & (df.predicted == POSITIVE)].sort_values(
        "p_beep", ascending=False)
    for title, sel in (("Missed beeps (lowest P(beep) first)", missed),
                       ("False alarms (highest P(beep) first)", false)):
        if len(sel):
            lines += ["", f"{title}:"]
            lines += [f"  {r.p_beep:.3f}  {r.rel}" for r in sel.head(_LIST_MISTAKES).itertuples()]
            if len(sel) > _LIST_MISTAKES:
                lines.append(f"  ... {len(sel) - _LIST_MISTAKES} more in scores.csv")
    return "\n".join(lines)


# --- figures ------------------------------------------------------------------------------
# Each plot draws on an Axes it is given: `save_report` renders them with the Agg canvas
# (no display, no global pyplot state); a notebook can draw them inline as well.


def plot_pr_curve(ev: Evaluation, ax, s: dict | None = None) -> None:
    """Precision against recall for beep vs rest, with the operating point marked."""
    from sklearn.metrics import precision_recall_curve

    s = s or summarize(ev)
    precision, recall, _ = precision_recall_curve(ev.is_beep, ev.p_beep)
    b = s["beep_vs_rest"]
    ax.plot(recall, precision, drawstyle="steps-post", color="C0",
            label=f"beep vs rest (AP {b['average_precision']:.3f})")
    ax.plot([b["recall"]], [b["precision"]], "o", color="C3", markersize=8,
            label=f"operating point, threshold {ev.threshold:.2f}")
    ax.annotate(f"P {b['precision']:.2f}, R {b['recall']:.2f}", (b["recall"], b["precision"]),
                textcoords="offset points", xytext=(-10, -18), ha="right", fontsize=9)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.05),
           title="Precision-recall, beep")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=9)


def plot_score_histogram(ev: Evaluation, ax) -> None:
    """P(beep) of beep clips and of all other clips, with the threshold marked."""
    bins = np.linspace(0, 1, 41)
    p, pos = ev.p_beep, ev.is_beep
    ax.hist(p[~pos], bins=bins, alpha=0.6, color="C0", label=f"not beep ({int((~pos).sum())})")
    ax.hist(p[pos], bins=bins, alpha=0.6, color="C1", label=f"beep ({int(pos.sum())})")
    ax.axvline(ev.threshold, color="C3", linestyle="--", label=f"threshold {ev.threshold:.2f}")
    # Most clips pile up near 0 or 1; a log axis keeps the few near the threshold visible.
    ax.set_yscale("log")
    ax.set(xlabel="P(beep)", ylabel="clips (log scale)", xlim=(0, 1),
           title="Scores of beep and other clips")
    ax.legend(fontsize=9)


def plot_confusion(ev: Evaluation, ax) -> None:
    """The confusion matrix as a picture: colour = share of the row, text = count."""
    rows, cols, m = confusion(ev)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=9,
                color="white" if share[i, j] > 0.6 else "black")
    unknown = set(ev.unknown_labels)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), [f"{r}*" if r in unknown else r for r in rows])
    ax.set(xlabel="predicted", ylabel="true label", title="Confusion matrix"
           + (" (* not a model class)" if unknown else ""))


def default_out_dir(model_path: str | Path, data_dir: str | Path) -> Path:
    """``evaluation/<model>_<data>/`` in the current directory: one folder per model and
    data set, outside models/ and data/ (git ignores it)."""
    data = Path(data_dir).resolve().name or "data"
    return Path("evaluation") / f"{Path(model_path).stem}_{data}"


def _save_figure(draw, path: Path, size: tuple[float, float]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100, layout="tight")
    FigureCanvasAgg(fig)
    draw(fig.add_subplot())
    fig.savefig(path, format="png")


def save_report(ev: Evaluation, s: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, scores.csv and the PNGs into out_dir; returns {name: path}."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EvaluateError(f"cannot create {out}: {e.strerror or e}") from None
    paths = {k: out / v for k, v in FIGURES.items()}
    n = len(ev.labels) + len(ev.unknown_labels)
    _save_figure(lambda ax: plot_pr_curve(ev, ax, s), paths["pr_curve"], (6, 5))
    _save_figure(lambda ax: plot_score_histogram(ev, ax), paths["score_histogram"], (7, 4.5))
    _save_figure(lambda ax: plot_confusion(ev, ax), paths["confusion"],
                 (2.5 + 0.75 * len(ev.labels), 2 + 0.5 * n))
    paths["scores"] = out / "scores.csv"
    with open(paths["scores"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "session", "predicted"] + [f"p_{k}" for k in ev.labels])
        for row, probs in zip(ev.clips[["rel", "label", "session", "predicted"]].itertuples(
                index=False), ev.probs, strict=True):
            w.writerow(list(row) + [f"{x:.5f}" for x in probs])
    paths["report"] = out / "report.json"
    doc = dict(s, files={k: str(v) for k, v in paths.items()})
    paths["report"].write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return paths


def run(data_dir: str, model_path: str, out_dir: str | None = None,
        threshold: float | None = None) -> int:
    """`beepnet evaluate`: print the report, write the files; returns the exit status."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        print(f"beepnet: evaluate: --threshold {threshold:g} is not in 0..1", file=sys.stderr)
        return 2
    try:
        # Before importing torch (seconds on a Pi): a typo fails in a blink.
        check_data_dir(data_dir)
        if not Path(model_path).is_file():
            raise EvaluateError(f"model file {model_path}: no such file")
    except EvaluateError as e:
        print(f"beepnet: evaluate: {e}", file=sys.stderr)
        return 1
    from ..model.modelfile import ModelFileError

    out = Path(out_dir) if out_dir else default_out_dir(model_path, data_dir)
    try:
        ev = evaluate(data_dir, model_path, threshold)
        s = summarize(ev)
        print(format_report(ev, s))
        paths = save_report(ev, s, out)
    except (EvaluateError, train.TrainError, ModelFileError) as e:
        print(f"beepnet: evaluate: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the report folder: read-only, full disk, a file in the way
        print(f"beepnet: evaluate: cannot write the report into {out}: {e.strerror or e}",
              file=sys.stderr)
        return 1
    except ImportError as e:  # pandas, scikit-learn, matplotlib come with the [train] extra
        print(f"beepnet: evaluate needs {e.name or e}: pip install 'beepnet[train]'",
              file=sys.stderr)
        return 1
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    return 0
