"""``beepnet history``: the cycles the daemon saw, as a table, as JSON or as a picture.

Reads ``<storage.dir>/cycles.db`` (`beepnet.cycle.history`) read-only: a service's history
under /var/lib/beepnet may not be the user's to write, and the running daemon owns it.

- the table (default): the last ``-n`` cycles, newest last (as ``journalctl`` prints, so
  the latest one sits above the prompt): date, start–end, duration, how it ended, its
  phases in minutes, reminders, when and how it was emptied, the time-left estimate's error;
- ``--json``: the same cycles as a list of objects, every field, epoch seconds;
- ``--plot FILE.png``: one timeline per cycle (the last ``-n``, 5 by default) sharing a
  "minutes since start" axis: sound level, phases, the beep, the estimate made at half.
  Needs matplotlib (the ``train`` extra), imported only here.

Exit status: 0 shown, 1 no history to plot or the file cannot be read or written, 2 bad
usage or no matplotlib for ``--plot``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ..config import state_dir
from ..notify.duration import duration_text
from ..notify.timefmt import hhmm
from .history import DB_NAME, CycleRecord, History, HistoryError

log = logging.getLogger(__name__)

TABLE_CYCLES = 20
PLOT_CYCLES = 5
NEEDS_MATPLOTLIB = "`beepnet history --plot` needs matplotlib: pip install matplotlib"

HOW = {"beeped": "beeped", "stopped": "stopped without a beep", "unknown": "daemon stopped",
       "running": "running now"}
_HOW_STYLE = {"beeped": "green", "stopped": "yellow", "unknown": "dim", "running": "bold cyan"}
_SHORT = {"washing": "wash", "spinning": "spin", "rinsing": "rinse", "draining": "drain",
          "unknown": "?"}


def run(cfg, args) -> int:
    """The command's body; ``args`` has ``limit``, ``json`` and ``plot``."""
    if args.limit is not None and args.limit < 1:
        print("beepnet: history: -n must be at least 1", file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (only to know it is there before any work)
        except ImportError:
            print(NEEDS_MATPLOTLIB, file=sys.stderr)
            return 2
    # The service's history when its /etc config is read by hand (sudo beepnet history).
    path = state_dir(cfg) / DB_NAME
    if not path.is_file():
        line = f"no cycle history yet at {path}"
        if args.plot:
            print(f"beepnet: history: {line}", file=sys.stderr)
            return 1
        if args.json:
            print(line, file=sys.stderr)
            print("[]")
        else:
            print(line)
        return 0
    try:
        with History.open(path, readonly=True) as h:
            if args.plot:
                return _plot(h, Path(args.plot), args.limit or PLOT_CYCLES)
            cycles = h.recent(args.limit or TABLE_CYCLES)[::-1]
    except HistoryError as e:
        print(f"beepnet: history: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([as_json(c) for c in cycles], indent=1))
    elif not cycles:
        print(f"no cycles in {path} yet")
    else:
        _print_table(cycles, path)
    return 0


# --- JSON ---------------------------------------------------------------------------------

def as_json(c: CycleRecord) -> dict:
    """Every field, times as epoch seconds; ``duration`` and ``estimate_error`` (seconds the
    estimate was later than the beep) added. Keys are stable: scripts read them."""
    d = asdict(c)
    d["phases"] = [dict(p, seconds=p["end"] - p["start"]) for p in d["phases"]]
    d["duration"] = c.duration
    d["estimate_error"] = c.estimate_error
    return d


# --- Table --------------------------------------------------------------------------------

def _day(t: float) -> str:
    lt = time.localtime(t)
    fmt = "%a %d %b" if lt.tm_year == time.localtime().tm_year else "%a %d %b %Y"
    return time.strftime(fmt, lt)


def _same_day(a: float, b: float) -> bool:
    x, y = time.localtime(a), time.localtime(b)
    return (x.tm_year, x.tm_yday) == (y.tm_year, y.tm_yday)


def _minutes(seconds: float) -> str:
    m = seconds / 60.0
    return "<1" if m < 0.5 else str(int(m + 0.5))  # half up, not to even: 4.5 is 5


def phases_text(c: CycleRecord) -> str:
    """"wash 48 · pause 3 · spin 12" (minutes)."""
    return " · ".join(f"{_SHORT.get(p.name, p.name)} {_minutes(p.seconds)}" for p in c.phases)


def estimate_text(c: CycleRecord) -> str:
    """"est. +4 min": the estimate made at half was 4 minutes later than the beep."""
    err = c.estimate_error
    if err is None:
        return ""
    minutes = round(err / 60.0)
    sign = "+" if minutes > 0 else "−" if minutes < 0 else "±"
    return f"est. {sign}{abs(minutes)} min"


def how_text(c: CycleRecord) -> str:
    if c.outcome == "beeped" and c.started is None:
        return "beeped (start not heard)"
    return HOW.get(c.outcome, c.outcome)


def emptied_text(c: CycleRecord) -> str:
    if c.emptied_at is None:
        return "not yet" if c.outcome in ("beeped", "stopped") else ""
    when = hhmm(c.emptied_at)
    if c.ended is not None and not _same_day(c.ended, c.emptied_at):
        when = time.strftime("%a ", time.localtime(c.emptied_at)) + when
    return f"{when} {c.emptied_by}" if c.emptied_by else when


def row(c: CycleRecord) -> list[str]:
    """The table's cells for one cycle."""
    first = c.started if c.started is not None else c.ended
    span = (hhmm(c.started) if c.started is not None else "?") + "–"
    if c.ended is not None:
        span += hhmm(c.ended)
        if first is not None and not _same_day(first, c.ended):
            span += " (+1 d)"
    duration = duration_text(c.duration) if c.duration is not None else ""
    if c.outcome == "running" and c.started is not None:
        duration = duration_text(max(time.time() - c.started, 0.0)) + " so far"
    return [_day(first) if first is not None else "?", span, duration, how_text(c),
            phases_text(c), str(c.reminders) if c.reminders else "", emptied_text(c),
            estimate_text(c)]


COLUMNS = ("date", "time", "duration", "ended", "phases (min)", "reminders", "emptied",
           "estimate")
WRAPPED = ("ended", "phases (min)", "emptied")
"""The columns that wrap in a narrow terminal; the others are short and stay whole."""
WIDE = 120
"""A terminal narrower than this gets no phases column."""


def _print_table(cycles: list[CycleRecord], path: Path) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    tty = sys.stdout.isatty()
    # Not a terminal: no colours (rich decides), and a width no row reaches, so a pipe or
    # a file gets one line per cycle instead of cells wrapped at 80 columns.
    console = Console(highlight=False, width=None if tty else 1000)
    # The phases need some 60 columns of their own: squeezed, every cell wraps into a tower.
    shown = [n for n in COLUMNS if n != "phases (min)" or not tty or console.width >= WIDE]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold", pad_edge=False,
                  collapse_padding=True)
    for name in shown:
        table.add_column(name, justify="right" if name == "reminders" else "left",
                         no_wrap=name not in WRAPPED, overflow="fold")
    for c in cycles:
        # Text, not markup: a phase or "emptied by" name with brackets stays as written.
        cells = dict(zip(COLUMNS, (Text(cell) for cell in row(c))))
        cells["ended"].stylize(_HOW_STYLE.get(c.outcome, ""))
        table.add_row(*(cells[n] for n in shown))
    note = f"{len(cycles)} cycle(s) from {path}"
    if len(shown) < len(COLUMNS):
        note += f" (phases: a terminal {WIDE} columns wide, or --json)"
    if any(estimate_text(c) for c in cycles):
        note += "; est. ±N min: the time-left estimate made at half the cycle, minus the beep"
    if tty:
        console.print(table)
        console.print(note, style="dim")
        return
    with console.capture() as captured:
        console.print(table)
    # Cells are padded to their column's width: not worth keeping at the end of a line.
    lines = [line.rstrip() for line in captured.get().splitlines()]
    print("\n".join(lines + [note]))


# --- Plot ---------------------------------------------------------------------------------

PHASE_COLOURS = {"washing": "#4e8fd6", "spinning": "#f0913a", "pause": "#c9ccd1",
                 "unknown": "#a98bc4"}
_MORE_COLOURS = ("#59a14f", "#e15759", "#76b7b2", "#edc948", "#ff9da7", "#9c755f")
LEVEL_COLOUR = "#22313f"
BEEP_COLOUR = "#d62728"
ESTIMATE_COLOUR = "#6a3d9a"


def _plot(h: History, out: Path, limit: int) -> int:
    # A beep of unknown start has no timeline to draw: the last `limit` with a start.
    cycles = [c for c in h.recent(max(limit * 4, 50)) if c.started is not None][:limit][::-1]
    if not cycles:
        print(f"beepnet: history: nothing to plot: no cycle with a known start in {h.path}",
              file=sys.stderr)
        return 1
    timelines = [(c, h.levels(c.id)) for c in cycles]
    try:
        plot_cycles(timelines, out)
    except OSError as e:
        print(f"beepnet: history: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"wrote {out}: {len(cycles)} cycle(s)")
    return 0


def _phase_colour(name: str, seen: dict[str, str]) -> str:
    if name not in seen:
        extra = len([n for n in seen if n not in PHASE_COLOURS])
        seen[name] = PHASE_COLOURS.get(name, _MORE_COLOURS[extra % len(_MORE_COLOURS)])
    return seen[name]


def _title(c: CycleRecord) -> str:
    assert c.started is not None
    text = f"{_day(c.started)}, {hhmm(c.started)}"
    if c.ended is not None:
        text += f"–{hhmm(c.ended)}"
    if c.duration is not None:
        text += f"  ·  {duration_text(c.duration)}"
    text += f"  ·  {how_text(c)}"
    if c.emptied_at is not None and c.ended is not None and c.emptied_by:
        text += f"  ·  emptied {duration_text(max(c.emptied_at - c.ended, 0.0))} later " \
                f"({c.emptied_by})"
    return text


def plot_cycles(timelines: list[tuple[CycleRecord, list[tuple[float, float]]]],
                out: Path) -> None:
    """One row per (cycle, levels), oldest at the top, on a shared "minutes since start"
    axis; written to ``out`` as PNG with the Agg canvas (no display, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    n = len(timelines)
    fig = Figure(figsize=(11, 1.3 + 2.1 * n), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    colours: dict[str, str] = {}
    marks: dict[str, Line2D] = {}
    span = 1.0
    lows, highs = [], []
    for ax, (c, levels) in zip(axes, timelines):
        t0 = c.started
        assert t0 is not None

        def x(t: float) -> float:
            return (t - t0) / 60.0

        top = blended_transform_factory(ax.transData, ax.transAxes)
        for p in c.phases:
            ax.axvspan(x(p.start), x(p.end), color=_phase_colour(p.name, colours),
                       alpha=0.28 if p.name != "pause" else 0.45, lw=0, zorder=0)
        if levels:
            xs, ys = [x(t) for t, _ in levels], [v for _, v in levels]
            ax.plot(xs, ys, color=LEVEL_COLOUR, lw=1.1, zorder=3)
            marks.setdefault("sound level", Line2D([], [], color=LEVEL_COLOUR, lw=1.2))
            lows.append(min(ys))
            highs.append(max(ys))
            span = max(span, xs[-1])
        else:
            ax.text(0.5, 0.5, "no sound levels recorded", transform=ax.transAxes,
                    ha="center", va="center", color="0.45", fontsize=9)
        if c.ended is not None:
            end = x(c.ended)
            span = max(span, end)
            if c.outcome == "beeped":
                ax.axvline(end, color=BEEP_COLOUR, lw=2, zorder=4)
                ax.text(end, 0.96, " beep", transform=top, color=BEEP_COLOUR, ha="left",
                        va="top", fontsize=9, fontweight="bold")
                marks.setdefault("beep", Line2D([], [], color=BEEP_COLOUR, lw=2))
            else:
                label = "last sound" if c.outcome == "stopped" else "daemon stopped"
                ax.axvline(end, color="0.35", lw=1.5, ls="--", zorder=4)
                ax.text(end, 0.96, f" {label}", transform=top, color="0.3", ha="left",
                        va="top", fontsize=9)
        if c.estimate_end is not None:
            est = x(c.estimate_end)
            span = max(span, est)
            ax.axvline(est, color=ESTIMATE_COLOUR, lw=1.3, ls=":", zorder=4)
            if c.estimate_at is not None:
                # From where the estimate was made to where it said the cycle would end.
                ax.annotate("", xy=(est, 0.86), xytext=(x(c.estimate_at), 0.86),
                            xycoords=top, textcoords=top, zorder=5,
                            arrowprops=dict(arrowstyle="->", color=ESTIMATE_COLOUR, lw=1.1))
                ax.plot([x(c.estimate_at)], [0.86], "o", ms=4, color=ESTIMATE_COLOUR,
                        transform=top, zorder=5, clip_on=False)
                err = estimate_text(c).replace("est. ", "")
                ax.text(x(c.estimate_at), 0.9, "estimate at half" + (f": {err}" if err else ""),
                        transform=top, color=ESTIMATE_COLOUR, ha="left", va="bottom",
                        fontsize=8)
            marks.setdefault("time-left estimate", Line2D([], [], color=ESTIMATE_COLOUR,
                                                          lw=1.3, ls=":"))
        ax.set_title(_title(c), loc="left", fontsize=10)
        ax.set_ylabel("dBFS")
        ax.grid(axis="x", alpha=0.25)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    low = min(lows, default=-70.0)
    high = max(highs, default=-10.0)
    # A third more above the loudest level: room for the labels along the top.
    axes[0].set_ylim(low - 3, high + 0.32 * (high - low) + 2)
    axes[0].set_xlim(0, span * 1.06)
    axes[-1].set_xlabel("minutes since start")
    handles = [Patch(color=colour, alpha=0.45 if name == "pause" else 0.35, label=name)
               for name, colour in colours.items()]
    handles += [Line2D([], [], label=k, color=v.get_color(), lw=v.get_linewidth(),
                       ls=v.get_linestyle()) for k, v in marks.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 8),
               fontsize=9, frameon=False)
    fig.suptitle("Washing cycles: sound level and phases", x=0.01, ha="left",
                 fontweight="bold", fontsize=12)
    fig.savefig(out, format="png")
