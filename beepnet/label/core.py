"""The labelling session without a terminal: the clip queue, suggestions, moves, undo, runs.

Everything here is plain Python on paths and numbers, so it is tested directly; the terminal
loop (terminal.py) only turns keys into calls on :class:`Session` and draws its state.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..training.train import session_of
from .journal import Journal, UndoResult
from .spectrum import ClipLook, spectral_distance

log = logging.getLogger(__name__)

POSITIVE = "beep"
DEFAULT_LABELS = ("beep", "not_beep")
NEGATIVE_NAMES = ("not_beep", "negative", "other", "background", "noise")
"""Label names (compared as normalised by :func:`norm`) that mean "anything but a beep": the
suggestion when the model's top class matches no label of the user's."""
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
LABEL_KEYS = "1234567890bcdefghijklmortvwxz"
"""Keys for labels, in label order; the letters left out (a n p q s u y) are commands."""


def norm(name: str) -> str:
    """A label or class name for matching: lower case, no separators, no plural s."""
    s = re.sub(r"[^a-z0-9]", "", name.lower())
    return s[:-1] if len(s) > 3 and s.endswith("s") else s


def check_label(name: str) -> str | None:
    """Why ``name`` cannot be a label folder, or None."""
    if not LABEL_RE.match(name):
        return (f"{name!r} is not a usable label: letters, digits, _ and - only, starting with "
                "a letter or digit, at most 40 characters")
    return None


# -- clips -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Clip:
    """A file waiting for a label, by its path in the unlabelled folder."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def session(self) -> str:
        """The recording session: the file name before its last "_" (as `beepnet train`)."""
        return session_of(self.path.stem)

    @property
    def order(self) -> tuple:
        """Session, then the first sample's number (numerically, if it is one), then name,
        then the whole path: two /missed close together can keep the same chunk in two
        folders, and the queue's order must not depend on the order a directory lists in."""
        tail = self.path.stem.rsplit("_", 1)[-1] if "_" in self.path.stem else ""
        return (self.session, int(tail) if tail.isdigit() else -1, self.path.name,
                str(self.path))


def list_clips(directory: Path) -> list[Clip]:
    """The files to label in ``directory``, in recording order.

    Every visible regular file counts, not just .wav: a stray non-audio file is shown as such
    and can be skipped or filed; hidden files (the recorder's temp files) never are.
    """
    clips = [Clip(p) for p in directory.iterdir()
             if not p.name.startswith(".") and p.is_file()]
    return sorted(clips, key=lambda c: c.order)


def unsure_folders(unsure_dir: Path) -> list[Path]:
    """``unsure_dir`` and its visible subfolders (one per /missed), the folder itself first.

    Only one level down: /missed makes ``unsure/<time>/`` and nothing deeper.
    """
    subs = sorted(p for p in unsure_dir.iterdir() if not p.name.startswith(".") and p.is_dir())
    return [unsure_dir, *subs]


def list_clips_in(folders: Sequence[Path]) -> list[Clip]:
    """The files to label in all of ``folders`` (see :func:`list_clips`), as one queue in
    recording order."""
    clips = [c for folder in folders for c in list_clips(folder)]
    return sorted(clips, key=lambda c: c.order)


# -- what the model says -----------------------------------------------------------------------

@dataclass(frozen=True)
class ModelView:
    """A model's verdict on one clip."""

    p_beep: float
    classes: dict[str, float]
    """Probability per model class (always includes "beep")."""
    threshold: float


@dataclass(frozen=True)
class Suggestion:
    label: str | None
    """A label of the user's, or None when the model's view matches none of them."""
    why: str
    """One line: which rule chose it."""


def suggest(view: ModelView | None, labels: list[str]) -> Suggestion:
    """The label to propose for a clip.

    1. P(beep) at or above the model's threshold: ``beep``.
    2. Otherwise the model's most likely non-beep class, if a label has the same name (see
       :func:`norm`: case, separators and a plural s do not matter; "speech" matches "Speech").
    3. Otherwise the first "anything but a beep" label (:data:`NEGATIVE_NAMES`), if any.
    """
    if view is None:
        return Suggestion(None, "no model")
    by_norm = {norm(lb): lb for lb in labels}
    if view.p_beep >= view.threshold and POSITIVE in labels:
        return Suggestion(POSITIVE, f"P(beep) {view.p_beep:.2f} >= threshold "
                                    f"{view.threshold:.2f}")
    others = {c: p for c, p in view.classes.items() if c != POSITIVE}
    if others:
        top = max(others, key=others.get)
        if norm(top) in by_norm:
            return Suggestion(by_norm[norm(top)], f"model: {top} {others[top]:.2f}")
        negative = _negative_label(by_norm)
        if negative:
            return Suggestion(negative, f"P(beep) {view.p_beep:.2f} < threshold "
                                        f"{view.threshold:.2f}; model: {top}")
        return Suggestion(None, f"model: {top} {others[top]:.2f}, no label of that name")
    negative = _negative_label(by_norm)
    if negative:
        return Suggestion(negative, f"P(beep) {view.p_beep:.2f} < threshold")
    return Suggestion(None, f"P(beep) {view.p_beep:.2f} < threshold, no not-beep label")


def _negative_label(by_norm: dict[str, str]) -> str | None:
    for name in NEGATIVE_NAMES:
        if norm(name) in by_norm:
            return by_norm[norm(name)]
    return None


# -- "similar" ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Similarity:
    """When a clip counts as "like" the one just labelled, for labelling a run at once."""

    max_spectral_db: float = 6.0
    """Largest allowed difference in any of the 32 bands of the level-aligned spectral
    profiles (:func:`spectrum.spectral_distance`)."""
    max_level_db: float = 10.0
    """Largest allowed difference in RMS level."""

    def why_not(self, ref: Analysis, other: Analysis, labels: list[str]) -> str | None:
        """None if ``other`` is similar to ``ref``, else the reason it is not."""
        if other.look is None:
            return "unreadable"
        if ref.look is None:
            return "the labelled clip is unreadable"
        d = spectral_distance(ref.look, other.look)
        if d > self.max_spectral_db:
            return f"spectrum differs by {d:.0f} dB"
        lv = abs(ref.look.rms_dbfs - other.look.rms_dbfs)
        if lv > self.max_level_db:
            return f"level differs by {lv:.0f} dB"
        if ref.model is not None and other.model is not None:
            a, b = suggest(ref.model, labels).label, suggest(other.model, labels).label
            if a != b:
                return f"model suggests {b or 'nothing'}, not {a or 'nothing'}"
        return None


@dataclass(frozen=True)
class Analysis:
    """Everything known about one clip: how it looks and, if a model is loaded, what it says."""

    look: ClipLook | None
    error: str | None = None
    """Why the file cannot be read as audio (then ``look`` is None)."""
    model: ModelView | None = None


# -- the session -------------------------------------------------------------------------------

@dataclass
class Counts:
    moved: int = 0
    """Clips moved into a label folder in this session."""
    undone: int = 0
    """Clips moved back by undo in this session."""
    skipped: int = 0
    in_folder: dict[str, int] = field(default_factory=dict)
    """Files in each label folder (counted at the start, kept up to date since)."""


@dataclass(frozen=True)
class Labelled:
    """The clip labelled last: the reference a run is compared with."""

    clip: Clip
    """As it was queued (its path in the unlabelled folder)."""
    label: str
    moved_to: Path


class Session:
    """The clips still to label, the labels, and the moves (through a :class:`Journal`)."""

    def __init__(self, clips: list[Clip], out_dir: Path, labels: list[str],
                 journal: Journal, reserved: Sequence[str] = ()) -> None:
        self.queue: list[Clip] = list(clips)
        self.pos = 0
        self.out_dir = Path(out_dir)
        self.labels: list[str] = list(labels)
        self.reserved = frozenset(reserved)
        """Folder names of ``out_dir`` that must not become labels (``unsure`` for --unsure)."""
        self.journal = journal
        self.counts = Counts(in_folder={lb: _count_files(self.out_dir / lb) for lb in labels})
        self.last: Labelled | None = None

    # -- reading state ---------------------------------------------------------------------------

    @property
    def current(self) -> Clip | None:
        return self.queue[self.pos] if self.pos < len(self.queue) else None

    def ahead(self, n: int) -> list[Clip]:
        """The current clip and up to ``n - 1`` after it."""
        return self.queue[self.pos:self.pos + n]

    def label_for_key(self, key: str) -> str | None:
        i = LABEL_KEYS.find(key)
        return self.labels[i] if 0 <= i < len(self.labels) else None

    # -- actions ---------------------------------------------------------------------------------

    def add_label(self, name: str) -> str | None:
        """Add a label (its folder is made on the first move); the reason if it is refused."""
        problem = check_label(name)
        if problem:
            return problem
        if name in self.reserved:
            return f"{name!r} cannot be a label here: {self.out_dir / name} holds clips to label"
        if name not in self.labels:
            if len(self.labels) >= len(LABEL_KEYS):
                return f"no key left for another label ({len(LABEL_KEYS)} is the most)"
            self.labels.append(name)
            self.counts.in_folder.setdefault(name, _count_files(self.out_dir / name))
        return None

    def label(self, label: str) -> list[str]:
        """Move the current clip into ``label``; problems (one line each) if it stayed."""
        clip = self.current
        if clip is None:
            return ["no clip to label"]
        return self.label_run(label, [clip])

    def label_run(self, label: str, clips: list[Clip]) -> list[str]:
        """Move ``clips`` (queued ones) into ``label`` as one undo step."""
        if label not in self.labels:
            raise ValueError(f"unknown label {label!r}")
        done, problems = self.journal.move([c.path for c in clips], label,
                                           self.out_dir / label)
        moved = {m.src: m.dst for m in done}
        for c in clips:
            dst = moved.get(c.path.absolute())
            if dst is not None:
                self.queue.remove(c)
                self.last = Labelled(c, label, dst)
        self.counts.moved += len(done)
        self.counts.in_folder[label] = self.counts.in_folder.get(label, 0) + len(done)
        self.pos = min(self.pos, len(self.queue))
        # A clip that could not be moved stays in the queue: step past it, it was shown.
        while self.pos < len(self.queue) and self.queue[self.pos] in clips:
            self.pos += 1
        return problems

    def skip(self) -> None:
        if self.current is not None:
            self.pos += 1
            self.counts.skipped += 1

    def undo(self, in_dirs: Path | Sequence[Path]) -> UndoResult | None:
        """Undo the last batch in the journal (this session's or an earlier one's).

        Clips moved back into one of ``in_dirs`` (one folder, or the folders the queue was
        read from) rejoin the queue in recording order, and the first of them becomes the
        current clip; clips moved back elsewhere (an earlier session's other folder) do not.
        """
        if isinstance(in_dirs, (str, os.PathLike)):
            in_dirs = [Path(in_dirs)]
        result = self.journal.undo_last()
        if result is None:
            return None
        queued_from = {Path(d).resolve() for d in in_dirs}
        back = [Clip(to) for _, to in result.restored if to.parent.resolve() in queued_from]
        for c in back:
            if c not in self.queue:
                self.queue.append(c)
        self.queue.sort(key=lambda c: c.order)
        if back:
            self.pos = min(self.queue.index(c) for c in back)
        self.counts.undone += len(result.restored)
        label_of = {m.dst: m.label for m in result.moves}
        for frm, _ in result.restored:
            lb = label_of.get(frm)
            if lb in self.counts.in_folder:
                self.counts.in_folder[lb] = max(0, self.counts.in_folder[lb] - 1)
        if self.last is not None and any(self.last.moved_to == m.dst for m in result.moves):
            self.last = None
        return result


def _count_files(folder: Path) -> int:
    try:
        return sum(1 for e in os.scandir(folder) if e.is_file() and not e.name.startswith("."))
    except OSError:
        return 0


def select_run(session: Session, analyse: Callable[[Clip], Analysis],
               similarity: Similarity, limit: int = 100) -> tuple[list[Clip], str]:
    """The clips a run label would move, and why the run ends there.

    The run starts at the current clip and takes each following queued clip while it belongs
    to the same recording session as the last labelled clip and is similar to it
    (:class:`Similarity`); it ends at the first clip that is not, or after ``limit`` clips.
    """
    if session.last is None:
        return [], "label a clip first"
    ref_clip = session.last.clip
    ref = analyse(ref_clip)  # normally cached from when it was shown
    if ref.look is None:
        ref = analyse(Clip(session.last.moved_to))
    run: list[Clip] = []
    for clip in session.queue[session.pos:]:
        if len(run) >= limit:
            return run, f"stopped at {limit} clips"
        if clip.session != ref_clip.session:
            return run, f"{clip.name} is from another session"
        why = similarity.why_not(ref, analyse(clip), session.labels)
        if why:
            return run, f"{clip.name}: {why}"
        run.append(clip)
    return run, "end of the queue"
