"""`beepnet label`: the terminal loop. Keys in, :class:`core.Session` calls, frames out.

Single keys are read in cbreak mode (no Enter needed, nothing echoed); the terminal is put
back however the loop ends: q, Ctrl-C, a dropped SSH connection (SIGHUP) or SIGTERM. Those
signals only set a flag, so a batch of moves is never cut in half by them.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import termios
import time
import tty
from contextlib import contextmanager
from pathlib import Path

from ..notify.feedback import UNSURE
from .analysis import Analyser, ModelState, Prefetcher
from .core import (
    DEFAULT_LABELS,
    LABEL_KEYS,
    POSITIVE,
    Clip,
    Session,
    Similarity,
    check_label,
    list_clips,
    list_clips_in,
    select_run,
    suggest,
    unsure_folders,
)
from .journal import Journal, JournalError
from .player import Player, find_player
from .view import Screen, render

log = logging.getLogger(__name__)

LOOKAHEAD = 8
"""Clips scored ahead of the one shown (a few ms each on a PC, ~0.1 s on a Pi)."""
TICK = 0.1
"""Seconds between redraws while nothing is typed (the model's verdict may arrive)."""
ENTER = ("\r", "\n")
ESC = "\x1b"
BACKSPACE = ("\x7f", "\b")


# -- the terminal ------------------------------------------------------------------------------

@contextmanager
def cbreak(fd: int):
    """Keys arrive one at a time, unechoed; the old settings come back whatever happens."""
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def read_keys(fd: int, timeout: float) -> list[str]:
    """Keys typed within ``timeout`` seconds. An escape sequence (an arrow key, F1 ...) comes
    back as one string starting with ESC, so it is never taken for the letters in it."""
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return []
    data = os.read(fd, 256).decode(errors="ignore")
    keys, i = [], 0
    while i < len(data):
        if data[i] == ESC and i + 1 < len(data) and data[i + 1] in "[O":
            j = i + 2
            while j < len(data) and not (data[j].isalpha() or data[j] == "~"):
                j += 1
            keys.append(data[i:j + 1])
            i = j + 1
        else:
            keys.append(data[i])
            i += 1
    return keys


class _Messages(logging.Handler):
    """Warnings logged while the screen is up become the message line instead of tearing it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage().splitlines()[0] if record.getMessage() else None


# -- the loop ----------------------------------------------------------------------------------

class App:
    """Turns keys into session actions; one clip on screen at a time."""

    def __init__(self, session: Session, analyser: Analyser, player: Player, player_note: str,
                 in_dirs: list[Path], similarity: Similarity,
                 again: str = "beepnet label") -> None:
        self.session = session
        self.analyser = analyser
        self.prefetch = Prefetcher(analyser)
        self.player = player
        self.player_note = player_note
        self.in_dirs = list(in_dirs)
        """The folders the queue was read from: an undo puts clips back into them."""
        self.where = describe_folders(self.in_dirs)
        self.again = again
        """The command that shows the skipped clips again."""
        self.similarity = similarity
        self.message = ""
        self.message_style = "bold yellow"
        self.mode = "clip"        # "clip", "confirm" (a run), "name" (a new label)
        self.typed = ""           # the new label's name so far
        self.run: list[Clip] = []
        self.run_label = ""
        self.run_note = ""
        self.status: int | None = None
        self._shown: Path | None = None
        self._deferred = None  # slow work (waiting for the model) done once its note is drawn

    # -- signals -------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame) -> None:
        self.status = 128 + signum

    def run_loop(self, fd: int) -> int:
        from rich.console import Console
        from rich.live import Live

        console = Console()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        handler = _Messages()
        root = logging.getLogger()
        saved = root.handlers[:]
        root.handlers[:] = [handler]
        logging.captureWarnings(True)
        self.prefetch.start()
        try:
            with cbreak(fd), Live(console=console, screen=True, auto_refresh=False) as live:
                drawn = None
                while self.status is None:
                    self._on_current()
                    if handler.last:
                        self._say(handler.last, "bold red")
                        handler.last = None
                    # Drawn again only when something changed: over SSH every frame is a
                    # screenful of bytes, and on a Pi rendering one costs real CPU.
                    screen = self._screen()
                    w, h = console.size
                    if (screen, w, h) != drawn:
                        live.update(render(screen, w, h), refresh=True)
                        drawn = (screen, w, h)
                    if self._deferred is not None:
                        work, self._deferred = self._deferred, None
                        work()
                        continue
                    for key in read_keys(fd, TICK):
                        self._key(key)
                        if self.status is not None:
                            break
        finally:
            self.player.stop()
            self.prefetch.stop()
            root.handlers[:] = saved
            logging.captureWarnings(False)
        return self.status

    # -- state for the screen --------------------------------------------------------------------

    def _on_current(self) -> None:
        """A new clip on screen: play it, and have the next ones scored."""
        s = self.session
        clip = s.current
        path = clip.path if clip else None
        if path == self._shown:
            return
        self._shown = path
        self.player.stop()
        self.prefetch.want(s.ahead(LOOKAHEAD))
        if clip is not None and self.analyser.look(clip)[0] is not None:
            self.player.play(clip.path)

    def _model_note(self) -> str:
        a = self.analyser
        if a.model_state == ModelState.LOADING:
            return "loading the model ..."
        if a.model_state == ModelState.READY:
            return a.model_name
        return a.model_error

    def _screen(self) -> Screen:
        s = self.session
        clip = s.current
        analysis, complete, sug = None, True, None
        if clip is not None:
            analysis, complete = self.analyser.analysis(clip)
            sug = suggest(analysis.model, s.labels) if analysis.model is not None else None
        prompt = ""
        if self.mode == "confirm":
            first, last = self.run[0].name, self.run[-1].name
            span = first if len(self.run) == 1 else f"{first} .. {last}"
            prompt = (f"Label the next {len(self.run)} clip(s) of session {self.run[0].session} "
                      f"as {self.run_label} too? y yes, any other key no\n"
                      f"{span}\nthe run ends: {self.run_note}")
        elif self.mode == "name":
            prompt = f"New label: {self.typed}█   Enter files this clip under it, Esc cancels"
        return Screen(
            clip=clip, position=s.pos + 1, total=len(s.queue), in_dir=self.where,
            out_dir=str(s.out_dir), labels=s.labels, in_folder=s.counts.in_folder,
            analysis=analysis, complete=complete, suggestion=sug,
            model_note=self._model_note(), player_note=self.player_note,
            moved=s.counts.moved, undone=s.counts.undone, skipped=s.counts.skipped,
            prompt=prompt, message=self.message, message_style=self.message_style,
            again=self.again)

    def _say(self, text: str, style: str = "bold yellow") -> None:
        self.message, self.message_style = text, style

    # -- keys ----------------------------------------------------------------------------------

    def _key(self, key: str) -> None:
        if self.mode == "confirm":
            self._confirm(key)
        elif self.mode == "name":
            self._name_key(key)
        else:
            self._command(key)

    def _command(self, key: str) -> None:
        s = self.session
        clip = s.current
        if key == "q":
            self.status = 0
        elif key == "u":
            self._undo()
        elif clip is None:
            if key not in (ESC,):
                self._say("nothing left to label: u undoes, q quits")
        elif key in ENTER:
            if self.analyser.analysis(clip)[1]:
                self._accept()
            else:  # the suggestion is still on its way (model loading): wait for it
                self._say("waiting for the model's suggestion ...")
                self._deferred = self._accept
        elif key == "s":
            s.skip()
            self._say(f"skipped {clip.name} (it stays in {clip.path.parent})")
        elif key == "p":
            if self.analyser.look(clip)[0] is None:
                self._say("cannot play this file: it is not readable audio")
            elif self.player.command is None:
                self._say(self.player_note)
            else:
                self.player.play(clip.path)
                self._say(f"playing {clip.name}")
        elif key == "a":
            if s.last is None:
                self._say("a labels a run after a clip: label one clip first")
            else:
                self._say("comparing the following clips ...")
                self._deferred = self._propose_run
        elif key == "n":
            self.mode, self.typed = "name", ""
            self._say("")
        elif len(key) == 1 and key in LABEL_KEYS:
            label = s.label_for_key(key)
            if label is None:
                self._say(f"no label on key {key}; n adds one")
            else:
                self._label(label)
        elif key.startswith(ESC) or key.isspace():
            pass
        else:
            self._say(f"key {key!r} does nothing here")

    def _accept(self) -> None:
        s = self.session
        a, _ = self.analyser.analysis(s.current, wait=True)
        sug = suggest(a.model, s.labels) if a.model is not None else None
        if sug is None or sug.label is None:
            self._say("no suggestion for this clip: press a label's key")
        else:
            self._label(sug.label)

    def _label(self, label: str) -> None:
        s = self.session
        clip = s.current
        problems = s.label(label)
        if problems:
            self._say("; ".join(problems), "bold red")
        else:
            self._say(f"{clip.name} -> {label}/  (a: also label the similar clips that follow)")

    def _undo(self) -> None:
        result = self.session.undo(self.in_dirs)
        if result is None:
            self._say("nothing to undo")
            return
        n = len(result.restored)
        if n == 1:
            text = f"undone: {result.restored[0][0].name} back to {result.restored[0][1].parent}"
        else:
            text = f"undone: {n} clips moved back"
        if result.problems:
            text += "; " + "; ".join(result.problems)
        self._say(text, "bold red" if result.problems else "bold yellow")

    def _propose_run(self) -> None:
        s = self.session

        def analyse(c: Clip):
            return self.analyser.analysis(c, wait=True)[0]

        run, why = select_run(s, analyse, self.similarity)
        if not run:
            self._say(f"no similar clip follows {s.last.clip.name} ({why})")
            return
        self.run, self.run_label, self.run_note = run, s.last.label, why
        self.mode = "confirm"
        self._say("")

    def _confirm(self, key: str) -> None:
        self.mode = "clip"
        run, label = self.run, self.run_label
        self.run = []
        if key not in ("y", "Y"):
            self._say("run not labelled")
            return
        problems = self.session.label_run(label, run)
        moved = len(run) - len(problems)
        text = f"{moved} clip(s) -> {label}/ (u undoes them together)"
        if problems:
            text += "; " + "; ".join(problems)
        self._say(text, "bold red" if problems else "bold yellow")

    def _name_key(self, key: str) -> None:
        if key == ESC:
            self.mode = "clip"
            self._say("no new label")
        elif key in ENTER:
            name = self.typed.strip()
            self.mode = "clip"
            if not name:
                self._say("no new label")
                return
            problem = self.session.add_label(name)
            if problem:
                self._say(problem, "bold red")
                return
            if self.session.current is not None:
                self._label(name)
        elif key in BACKSPACE:
            self.typed = self.typed[:-1]
        elif len(key) == 1 and key.isprintable() and len(self.typed) < 40:
            self.typed += key


# -- the subcommand ----------------------------------------------------------------------------

def describe_folders(folders: list[Path]) -> str:
    """The input folders in one short phrase for the screen and the messages: the folder
    itself when there is one (as before --unsure), else where they are."""
    if len(folders) == 1:
        return str(folders[0])
    common = Path(os.path.commonpath([str(f) for f in folders]))
    if common == folders[0]:  # --unsure: unsure/ first, then its <time>/ subfolders
        return f"{common} and {len(folders) - 1} folder(s) in it"
    return f"{len(folders)} folders under {common}"


def initial_labels(out_dir: Path, given: str | None,
                   reserved: tuple[str, ...] = ()) -> tuple[list[str], str | None]:
    """(labels, problem). ``--labels`` first, then label folders already in ``out_dir``, then
    beep and not_beep; "beep" is always one of them, and first. A folder named in
    ``reserved`` is not a label (feedback/unsure holds the clips still to label)."""
    names: list[str] = []
    if given:
        names = [n.strip() for n in given.split(",") if n.strip()]
    if out_dir.is_dir():
        names += sorted(p.name for p in out_dir.iterdir()
                        if p.is_dir() and not p.name.startswith(".") and p.name not in reserved)
    if not names:
        names = list(DEFAULT_LABELS)
    out: list[str] = [POSITIVE]
    for n in names:
        problem = check_label(n)
        if problem:
            return [], problem
        if n in reserved:
            return [], f"{n!r} cannot be a label here: {out_dir / n} holds clips to label"
        if n not in out:
            out.append(n)
    if len(out) > len(LABEL_KEYS):
        return [], f"{len(out)} labels: at most {len(LABEL_KEYS)} fit on the keys"
    return out, None


def unsure_undo_folders(unsure: Path, journal: Journal) -> list[Path]:
    """The ``unsure/<time>/`` folders of journalled moves that can still be undone.

    Emptied subfolders are removed when a session ends, so they are no longer listed at the
    next start; an undo there still brings a clip back into its own folder (the move makes it
    again), and the clip must rejoin the queue.
    """
    base = unsure.absolute()
    return sorted({m.src.parent for m in journal.effective()
                   if m.src.parent.parent == base and not m.src.parent.name.startswith(".")})


def remove_emptied(unsure: Path, folders: list[Path]) -> None:
    """Remove the ``unsure/<time>/`` folders left empty by labelling (rmdir: only an empty
    folder goes; one still holding a skipped clip, or refilled meanwhile, stays)."""
    for folder in folders:
        if folder.parent.absolute() == unsure.absolute():
            try:
                folder.rmdir()
            except OSError:
                pass
            else:
                log.debug("removed the emptied %s", folder)


def cmd_label(cfg, args) -> int:
    """Check the arguments and the folders, then run the labelling screen."""

    def fail(text: str, status: int) -> int:
        print(f"beepnet label: {text}", file=sys.stderr)
        return status

    unsure = None
    if getattr(args, "unsure", False):
        if args.in_dir or args.labelled_dir:
            return fail("--unsure takes no UNLABELLED_DIR and no --out: it labels the clips "
                        "under storage.dir/feedback/unsure into storage.dir/feedback", 2)
        # Where the daemon keeps it: for the service's /etc config (with sudo), its state
        # folder, as `beepnet enroll` and `beepnet train --feedback` find it.
        from ..config import state_dir

        out_dir = state_dir(cfg) / "feedback"
        unsure = out_dir / UNSURE
    else:
        in_dir = Path(args.in_dir or cfg.record.dir).expanduser()
        out_dir = Path(args.labelled_dir).expanduser() if args.labelled_dir else (
            in_dir.parent / "labelled")
    reserved = (UNSURE,) if unsure is not None else ()
    labels, problem = initial_labels(out_dir, args.labels, reserved)
    if problem:
        return fail(problem, 2)
    model = args.label_model or cfg.detector.model or None
    if args.label_model and args.no_model:
        return fail("--model and --no-model contradict each other", 2)
    if args.label_model and not Path(args.label_model).expanduser().is_file():
        return fail(f"{args.label_model}: no such model file", 1)
    if unsure is not None:
        # The path tells a user whose shell has another storage.dir than the service where
        # this looked; the bot's /missed is what fills it.
        none_yet = (f"{unsure}: no clips to label (the bot's /missed keeps the last minutes "
                    "of sound there; another storage.dir: --set storage.dir=DIR)")
        if not unsure.is_dir():
            return fail(none_yet, 1)
        try:
            in_dirs = unsure_folders(unsure)
            clips = list_clips_in(in_dirs)
        except OSError as e:
            return fail(f"{e.filename or unsure}: {e.strerror or e}", 1)
        if not clips:
            return fail(none_yet, 1)
    else:
        if not in_dir.is_dir():
            return fail(f"{in_dir}: no such directory (record some chunks with `beepnet "
                        "record`, or give the folder they are in)", 1)
        try:
            clips = list_clips(in_dir)
        except OSError as e:
            return fail(f"{in_dir}: {e.strerror or e}", 1)
        if not clips:
            return fail(f"{in_dir}: no clips to label (record some with `beepnet record`)", 1)
        in_dirs = [in_dir]
    if not sys.stdin.isatty():
        return fail("needs a terminal to read keys from (stdin is not a tty); run it in an "
                    "SSH session or a terminal", 2)
    try:
        journal = Journal.open(out_dir)
    except JournalError as e:
        return fail(str(e), 1)
    with journal:
        if unsure is not None:
            in_dirs += [d for d in unsure_undo_folders(unsure, journal)
                        if d.absolute() not in {f.absolute() for f in in_dirs}]
        # A restart after a kill: a clip whose move was finished by the journal is gone now.
        clips = [c for c in clips if c.path.exists()]
        session = Session(clips, out_dir, labels, journal, reserved)
        command, note = find_player(args.player)
        app = App(session, Analyser(model, use_model=not args.no_model), Player(command), note,
                  in_dirs, Similarity(),
                  again="beepnet label --unsure" if unsure is not None else "beepnet label")
        started = time.monotonic()
        status = app.run_loop(sys.stdin.fileno())
    if unsure is not None:
        remove_emptied(unsure, in_dirs)
    c = session.counts
    left = len(session.queue)
    print(f"moved {c.moved} clip(s), undid {c.undone}, skipped {c.skipped}; {left} clip(s) "
          f"left in {app.where} ({time.monotonic() - started:.0f} s)")
    if c.moved:
        print("per label now: " + ", ".join(f"{lb} {n}" for lb, n in c.in_folder.items()))
    return status
