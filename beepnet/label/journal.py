"""Moving clips into label folders so that nothing is ever overwritten, deleted or forgotten.

Every move is written to a journal (``LABELLED_DIR/.label-journal.jsonl``, one JSON object a
line, flushed to disk) **before** the file is moved, and every undo after the files are back.
The journal is the undo history: it survives a restart, and after a kill at any point the
files on disk and the journal still agree on where everything is, because a record only counts
for what the disk confirms (see :meth:`Journal.open`).

Records (paths relative to the journal's folder, so the data folder can be moved as a whole)::

    {"op": "move", "batch": 7, "src": "../unlabelled/x.wav", "dst": "beep/x.wav",
     "label": "beep", "time": 1763710298.1}
    {"op": "abort", "batch": 7, "dst": "beep/x.wav", "reason": "..."}   the move failed
    {"op": "undo", "batch": 7, "restored": ["../unlabelled/x.wav"], "time": ...}

A batch is one user action: one clip, or a run of similar clips labelled at once.
"""

from __future__ import annotations

import errno
import fcntl
import filecmp
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

JOURNAL_NAME = ".label-journal.jsonl"


class JournalError(Exception):
    """The journal cannot be used; ``str()`` is one line for the user."""


@dataclass(frozen=True)
class Move:
    """One clip moved into a label folder."""

    batch: int
    src: Path
    dst: Path
    label: str


@dataclass(frozen=True)
class UndoResult:
    batch: int
    moves: list[Move]
    """The batch's moves, as journalled."""
    restored: list[tuple[Path, Path]]
    """(from, to) for each file moved back."""
    problems: list[str]
    """One line per file that could not be moved back (and why); it was left where it is."""


def free_name(directory: Path, name: str, taken: set[Path] | frozenset = frozenset()) -> Path:
    """``directory/name``, or ``stem-1.ext``, ``stem-2.ext`` ... the first that is not in use."""
    p = directory / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 0
    while os.path.lexists(p) or p in taken:
        n += 1
        p = directory / f"{stem}-{n}{suffix}"
    return p


def move_exact(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, which must not exist (FileExistsError, nothing moved, if it does).

    A hard link then an unlink of the old name: the new name appears atomically and is never
    written over, and the file is in at least one place at every instant. Where hard links are
    not possible (another filesystem, FAT on a USB stick) the data is copied to a hidden temp
    file beside ``dst``, synced, renamed into place, and only then is ``src`` removed.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK,
                           errno.ENOTSUP):
            raise
        _copy_then_remove(src, dst)
        return
    os.unlink(src)


def _copy_then_remove(src: Path, dst: Path) -> None:
    tmp = dst.parent / f".{dst.name}.{os.getpid()}.tmp"
    shutil.copy2(src, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    try:
        if os.path.lexists(dst):  # checked again right before the rename: never write over
            raise FileExistsError(errno.EEXIST, "file exists", str(dst))
        os.rename(tmp, dst)
    except BaseException:
        os.unlink(tmp)
        raise
    os.unlink(src)


def _same_content(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


class Journal:
    """The move history of one labelled folder; holds an exclusive lock while open."""

    def __init__(self, root: Path, path: Path, fd: int, moves: list[Move],
                 aborted: set[tuple[int, Path]], undone: set[int]) -> None:
        self.root = root
        self.path = path
        self._fd = fd
        self._moves = moves
        self._aborted = aborted
        self._undone = undone
        self.next_batch = max((m.batch for m in moves), default=0) + 1
        self.skipped_lines = 0

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, root: str | os.PathLike) -> Journal:
        """Open (creating) ``root/.label-journal.jsonl``, lock it, read the history, and finish
        any move a kill interrupted between its link and its unlink."""
        root = Path(root).absolute()
        path = root / JOURNAL_NAME
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as e:
            raise JournalError(f"cannot create {e.filename or path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise JournalError(f"another `beepnet label` is using {root} (its journal "
                               f"{path.name} is locked); finish that one first") from None
        moves, aborted, undone, bad = [], set(), set(), 0
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                    op, batch = rec["op"], int(rec["batch"])
                    if op == "move":
                        moves.append(Move(batch, _abs(root, rec["src"]), _abs(root, rec["dst"]),
                                          str(rec["label"])))
                    elif op == "abort":
                        aborted.add((batch, _abs(root, rec["dst"])))
                    elif op == "undo":
                        undone.add(batch)
                except (ValueError, KeyError, TypeError):
                    # A line cut short by a kill or power cut: the rest is still good.
                    bad += 1
        j = cls(root, path, fd, moves, aborted, undone)
        j.skipped_lines = bad
        if bad:
            log.warning("%s: ignored %d unreadable line(s)", path, bad)
        j._finish_interrupted()
        return j

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # also releases the lock
            self._fd = -1

    def __enter__(self) -> Journal:  # noqa: PYI034 - typing.Self needs 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _finish_interrupted(self) -> None:
        """A kill between link and unlink leaves the clip under both names: drop the old one
        (only when both are provably the same data)."""
        for m in self.effective():
            if m.src.exists() and m.dst.exists() and _same_content(m.src, m.dst):
                log.info("finishing the interrupted move of %s to %s", m.src, m.dst)
                try:
                    os.unlink(m.src)
                except OSError as e:
                    log.warning("cannot finish moving %s: %s", m.src, e.strerror or e)

    # -- history -----------------------------------------------------------------------------

    def effective(self) -> list[Move]:
        """Moves that were not aborted or undone, oldest first."""
        return [m for m in self._moves
                if m.batch not in self._undone and (m.batch, m.dst) not in self._aborted]

    def undoable(self) -> list[int]:
        """Batches that can still be undone, oldest first."""
        return sorted({m.batch for m in self.effective()})

    def moves_of(self, batch: int) -> list[Move]:
        return [m for m in self.effective() if m.batch == batch]

    # -- writing -----------------------------------------------------------------------------

    def _append(self, records: list[dict]) -> None:
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
        os.write(self._fd, data)
        os.fsync(self._fd)

    def _rel(self, p: Path) -> str:
        return os.path.relpath(p, self.root)

    def move(self, clips: list[Path], label: str, label_dir: Path) -> tuple[list[Move], list[str]]:
        """Move ``clips`` into ``label_dir`` as one batch (one undo step).

        Returns the moves done and one line per clip that could not be moved (left in place).
        """
        batch = self.next_batch
        self.next_batch += 1
        planned: list[Move] = []
        taken: set[Path] = set()
        for src in clips:
            dst = free_name(label_dir, src.name, taken)
            taken.add(dst)
            planned.append(Move(batch, Path(src).absolute(), dst.absolute(), label))
        now = time.time()
        # Written (and synced) before any file moves: a kill can only leave records whose
        # files did not move yet, and those count for nothing (see effective()/undo()).
        try:
            self._append([{"op": "move", "batch": batch, "src": self._rel(m.src),
                           "dst": self._rel(m.dst), "label": label, "time": round(now, 3)}
                          for m in planned])
        except OSError as e:
            why = e.strerror or e
            return [], [f"nothing moved: cannot write the journal {self.path} ({why})"]
        self._moves.extend(planned)
        done, problems = [], []
        for m in planned:
            try:
                move_exact(m.src, m.dst)
            except OSError as e:
                reason = e.strerror or str(e)
                problems.append(f"{m.src.name}: not moved ({reason})")
                self._aborted.add((batch, m.dst))
                try:
                    self._append([{"op": "abort", "batch": batch, "dst": self._rel(m.dst),
                                   "reason": reason}])
                except OSError:
                    pass  # harmless: a record whose file did not move counts for nothing
                continue
            done.append(m)
        return done, problems

    def undo_last(self) -> UndoResult | None:
        """Move the last batch's clips back to where they came from; None when nothing is left.

        A clip's old name taken in the meantime gets a suffix; a clip no longer in its label
        folder (moved or deleted by hand) is reported and skipped.
        """
        batches = self.undoable()
        # A batch whose clips all sit where they came from (killed before its moves, or undone
        # by an undo the journal missed) has nothing to undo: passed over, not shown as a step.
        while batches and all(m.src.exists() and not m.dst.exists()
                              for m in self.moves_of(batches[-1])):
            self._undone.add(batches.pop())
        if not batches:
            return None
        batch = batches[-1]
        moves = self.moves_of(batch)
        restored, problems = [], []
        for m in reversed(moves):
            if not m.dst.exists():
                if not m.src.exists():
                    problems.append(f"{m.dst.name}: no longer in {m.dst.parent.name}/ "
                                    "(moved or deleted outside beepnet label)")
                continue  # else: the move never happened (killed before it); nothing to do
            try:
                if m.src.exists() and _same_content(m.src, m.dst):
                    os.unlink(m.dst)  # an interrupted move: the clip is already back
                    restored.append((m.dst, m.src))
                    continue
                target = free_name(m.src.parent, m.src.name)
                move_exact(m.dst, target)
            except OSError as e:
                problems.append(f"{m.dst.name}: not moved back ({e.strerror or e})")
                continue
            restored.append((m.dst, target))
        try:
            self._append([{"op": "undo", "batch": batch,
                           "restored": [self._rel(t) for _, t in restored],
                           "time": round(time.time(), 3)}])
        except OSError as e:
            # The files are back; the journal still lists the batch, but its moves now count
            # for nothing (their files are gone from the label folder), so it stays consistent.
            problems.append(f"cannot write the journal ({e.strerror or e})")
        self._undone.add(batch)
        return UndoResult(batch, moves, restored, problems)


def _abs(root: Path, rel: str) -> Path:
    return Path(os.path.normpath(root / rel))
