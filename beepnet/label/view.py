"""Drawing one screen of `beepnet label`: pure functions of a :class:`Screen` and the size.

Unicode block characters and basic colours only (they survive SSH, tmux and TERM=xterm); the
spectrogram's glyphs get denser as it gets louder, so it reads without colour too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rich.console import Group
from rich.text import Text

from ..termdraw import FLOOR_DBFS, bar, spark
from .core import LABEL_KEYS, Analysis, Clip, Suggestion
from .spectrum import BANDS, pool

SPECTRUM_RANGE_DB = 50.0
"""The spectrogram shows this many dB below the clip's loudest cell; quieter is blank."""
SHADES = ((" ", ""), ("·", "blue"), ("░", "blue"), ("▒", "cyan"), ("▓", "green"),
          ("▓", "yellow"), ("█", "yellow"), ("█", "bold red"))
KHZ = 8.0
COMMANDS = "Enter accept  s skip  p play  u undo  a label run  n new label  q quit"


@dataclass
class Screen:
    """What one frame shows; built by the terminal loop from the session's state."""

    clip: Clip | None
    position: int
    """1-based number of the clip in the queue."""
    total: int
    in_dir: str
    out_dir: str
    labels: list[str]
    in_folder: dict[str, int]
    analysis: Analysis | None = None
    complete: bool = True
    """False while the model has not scored this clip yet."""
    suggestion: Suggestion | None = None
    model_note: str = ""
    """"model beepnet-default.safetensors", "loading the model ...", or why there is none."""
    player_note: str = ""
    moved: int = 0
    undone: int = 0
    skipped: int = 0
    prompt: str = ""
    """A question waiting for an answer (run confirmation, a new label's name)."""
    message: str = ""
    """Feedback on the last key (what moved where, what went wrong)."""
    message_style: str = "bold yellow"
    extra: list[str] = field(default_factory=list)
    again: str = "beepnet label"
    """The command that brings the skipped clips back (``beepnet label --unsure`` for those)."""


def spectrogram_lines(spec: np.ndarray, rows: int, cols: int) -> list[Text]:
    """The clip's spectrogram as ``rows`` lines of ``cols`` cells plus a kHz axis on the left;
    top line the highest frequencies."""
    grid = pool(spec, rows, cols)
    top = float(grid.max())
    lo = top - SPECTRUM_RANGE_DB
    levels = np.clip((grid - lo) / SPECTRUM_RANGE_DB, 0.0, 1.0)
    idx = np.minimum((levels * len(SHADES)).astype(int), len(SHADES) - 1)
    n = grid.shape[0]
    lines = []
    for r in range(n - 1, -1, -1):  # highest band first
        t = Text(_khz_label(r, n), style="grey50")
        for j in range(grid.shape[1]):
            ch, style = SHADES[idx[r, j]]
            t.append(ch, style=style)
        t.no_wrap, t.overflow = True, "crop"
        lines.append(t)
    return lines


def _khz_label(row: int, rows: int) -> str:
    """A 4-wide axis label: "Nk ┤" on the row whose top edge is N kHz (N even), "0k" on the
    lowest row."""
    top = (row + 1) / rows * KHZ
    if row == 0:
        return "0k ┤" if rows > 4 else "   │"
    if abs(top - round(top)) < 1e-6 and round(top) % 2 == 0:
        return f"{round(top)}k ┤"
    return "   │"


def level_line(loudness: np.ndarray, cols: int) -> Text:
    """The level over time (loudest in each column), FLOOR_DBFS..0 dBFS."""
    edges = np.linspace(0, len(loudness), cols + 1)
    vals = []
    for j in range(cols):
        lo = int(edges[j])
        hi = max(lo + 1, int(np.ceil(edges[j + 1])))
        vals.append(float(loudness[min(lo, len(loudness) - 1):hi].max()))
    t = Text("lvl ", style="grey50")
    t.append(spark(vals, FLOOR_DBFS, 0.0), style="green")
    return t


def _labels_line(s: Screen) -> Text:
    t = Text()
    for i, lb in enumerate(s.labels):
        key = LABEL_KEYS[i] if i < len(LABEL_KEYS) else "?"
        chosen = s.suggestion is not None and s.suggestion.label == lb
        t.append(f"[{key}]", style="bold reverse" if chosen else "bold")
        t.append(f" {lb} ({s.in_folder.get(lb, 0)})  ", style="bold" if chosen else "")
    t.append("[n] new", style="grey50")
    return t


def _model_line(s: Screen, width: int) -> Text:
    t = Text()
    a = s.analysis
    if a is None or a.look is None:
        return t
    if a.model is None:
        t.append(("model: scoring ..." if not s.complete else f"no suggestion: {s.model_note}"),
                 style="grey50")
        return t
    m = a.model
    t.append("P(beep) ", style="bold")
    t.append_text(bar(m.p_beep, max(8, min(30, width - 60))))
    t.append(f" {m.p_beep:.2f}  ")
    others = sorted(((p, c) for c, p in m.classes.items() if c != "beep"), reverse=True)[:2]
    t.append("  ".join(f"{c} {p:.2f}" for p, c in others), style="grey50")
    return t


def _suggestion_line(s: Screen) -> Text:
    t = Text()
    sug = s.suggestion
    if sug is None or s.analysis is None or s.analysis.look is None:
        return t
    if sug.label is None:
        t.append(f"no suggestion ({sug.why})", style="grey50")
        return t
    key = LABEL_KEYS[s.labels.index(sug.label)] if sug.label in s.labels else "?"
    t.append("suggests ", style="bold")
    t.append(f"[{key}] {sug.label}", style="bold reverse")
    t.append(f"  Enter accepts  ({sug.why})", style="grey50")
    return t


def render(s: Screen, width: int, height: int):
    """One frame for a terminal of ``width`` x ``height``."""
    width = max(width, 20)
    lines: list[Text] = []
    head = Text("beepnet label  ", style="bold")
    if s.clip is not None:
        head.append(f"clip {s.position} of {s.total}", style="bold cyan")
    else:
        head.append("nothing left to label", style="bold green")
    head.append(f"   moved {s.moved}  undone {s.undone}  skipped {s.skipped}", style="grey50")
    lines.append(head)
    lines.append(Text(f"{s.model_note}   {s.player_note}   {s.in_dir} -> {s.out_dir}",
                      style="grey50"))

    if s.clip is None:
        lines.append(Text(f"No clip left to look at in {s.in_dir}."))
        if s.skipped:
            lines.append(Text(f"{s.skipped} skipped clip(s) stay there: run `{s.again}` "
                              "again to see them."))
        lines.append(Text("u undo  q quit", style="grey50"))
    else:
        lines.append(_clip_line(s))
        a = s.analysis
        fixed = 9 + len(s.prompt.splitlines()) + (1 if s.message else 0)
        if a is None:
            lines.append(Text("reading ...", style="grey50"))
        elif a.look is None:
            lines.append(Text(f"cannot use this file: {a.error}", style="bold red"))
            lines.append(Text("s skips it, or a label key files it anyway", style="grey50"))
        else:
            rows = max(2, min(BANDS // 2, height - fixed - 2))
            cols = max(10, width - 5)
            lines.append(Text(f"spectrum 0-8 kHz, {SPECTRUM_RANGE_DB:.0f} dB below the "
                              "loudest; time →", style="grey50"))
            lines.extend(spectrogram_lines(a.look.spectrogram, rows, cols))
            axis = Text("    0 s".ljust(4 + cols - 6) + f"{a.look.duration:.1f} s",
                        style="grey50")
            lines.append(axis)
            lines.append(level_line(a.look.loudness, cols))
        lines.append(_model_line(s, width))
        lines.append(_suggestion_line(s))
        lines.append(_labels_line(s))
        lines.append(Text(COMMANDS, style="grey50"))
    for extra in s.extra:
        lines.append(Text(extra, style="grey50"))
    for i, ln in enumerate(s.prompt.splitlines()):
        lines.append(Text(ln, style="bold black on yellow" if i == 0 else "yellow"))
    if s.message:
        lines.append(Text(s.message, style=s.message_style))
    for ln in lines:
        ln.no_wrap, ln.overflow = True, "ellipsis"
    # A short terminal keeps the bottom lines (keys, prompt, message) and loses spectrum rows.
    if len(lines) > height:
        lines = lines[:1] + lines[len(lines) - height + 1:]
    return Group(*lines)


def _clip_line(s: Screen) -> Text:
    assert s.clip is not None
    t = Text(s.clip.name, style="bold")
    t.append(f"  session {s.clip.session}", style="cyan")
    a = s.analysis
    if a is not None and a.look is not None:
        lk = a.look
        t.append(f"  {lk.duration:.2f} s  peak {lk.peak_dbfs:.1f} dBFS  RMS {lk.rms_dbfs:.1f} "
                 "dBFS")
    return t
