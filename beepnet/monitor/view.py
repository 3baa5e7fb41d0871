"""Rendering one frame of `beepnet monitor` from a status document (see beepnet/daemon/status.py).

Pure functions of (status, view state, terminal size) -> a rich renderable, so the layout can
be checked without a terminal. Only unicode block characters and basic colours are used:
they survive SSH, tmux and a plain TERM=xterm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..notify.cycletext import status_line
from ..termdraw import FLOOR_DBFS, bar, spark

COMPACT_WIDTH, COMPACT_HEIGHT = 70, 24
TIMELINE_STEP = 2
"""Seconds per timeline column: a 100-column terminal shows the last 3 minutes."""


@dataclass
class ViewState:
    """What the monitor knows beyond the status document itself."""

    mode: str = "attached"
    """"attached" to a running daemon, or "standalone" (the monitor runs the pipeline)."""
    gate_dbfs: float | None = None
    """The threshold as nudged with g/G (None: the daemon's own)."""
    peak_dbfs: float = FLOOR_DBFS
    peak_until: float = 0.0
    message: str = ""
    """One line of feedback (saved the gate, ...), shown at the bottom."""
    down_since: float | None = None
    """When the daemon was last seen alive, while it is not."""
    delivery: dict = field(default_factory=dict)
    """Detection epoch -> "queued" / "retrying (n)" / "sent" / "expired" / "rejected" /
    "not kept on disk" ... / "logged" (see monitor.app.delivery_states)."""

    def hold_peak(self, level: float, now: float, hold: float = 2.0) -> None:
        """Peak hold: the highest level stays marked for ``hold`` seconds."""
        if level >= self.peak_dbfs or now >= self.peak_until:
            self.peak_dbfs, self.peak_until = level, now + hold


def _hms(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _uptime(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _pos(dbfs: float, width: int) -> int:
    frac = (min(max(dbfs, FLOOR_DBFS), 0.0) - FLOOR_DBFS) / -FLOOR_DBFS
    return min(round(frac * width), width)


def meter(level: float, peak: float, gate: float, width: int) -> Text:
    """A horizontal bar from FLOOR_DBFS to 0 dBFS: the level filled, ``┃`` the gate, ``▌``
    the held peak."""
    width = max(width, 10)
    fill = _pos(level, width)
    g, p = min(_pos(gate, width), width - 1), min(_pos(peak, width), width - 1)
    t = Text()
    for i in range(width):
        if i == g:
            t.append("┃", style="bold yellow")
        elif i == p and p >= fill:
            t.append("▌", style="bold red")
        elif i < fill:
            t.append("█", style="green" if i < g else "bold green")
        else:
            t.append("·", style="grey50")
    return t


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def timeline_rows(status: dict, width: int, now: float,
                  step: int = TIMELINE_STEP) -> tuple[str, str, str]:
    """Level, score and detection rows for the last ``width * step`` seconds (``step``
    seconds a column, the loudest level and highest score in it), oldest left, now right."""
    level: list[float | None] = [None] * width
    score: list[float | None] = [None] * width
    end = int(now)

    def column(t: float) -> int:
        return width - 1 - (end - int(t)) // step

    for sec, lv, sc in status.get("timeline", []):
        i = column(sec)
        if 0 <= i < width:
            level[i] = _max(level[i], lv if lv > -120 else None)
            score[i] = _max(score[i], sc)
    marks = [" "] * width
    for d in status.get("detections", []):
        i = column(d.get("seen", d["time"]))
        if 0 <= i < width:
            marks[i] = "▲"
    return spark(level, FLOOR_DBFS, 0.0), spark(score, 0.0, 1.0), "".join(marks)


def _gate(status: dict, vs: ViewState) -> float:
    return vs.gate_dbfs if vs.gate_dbfs is not None else float(status.get("gate_dbfs", -50))


def _headline(status: dict, vs: ViewState, live: bool, now: float) -> Text:
    t = Text()
    if live:
        t.append("● ", style="bold green")
        who = "standalone" if vs.mode == "standalone" else f"daemon pid {status.get('pid')}"
        t.append(f"{who}  up {_uptime(now - status.get('started', now))}  ")
    else:
        t.append("● ", style="bold red")
        since = _hms(vs.down_since or status.get("time") or now)
        if vs.mode == "attached":
            t.append(f"daemon not running since {since}, retrying  ", style="bold red")
        elif status.get("state") == "stopped" and status.get("source") != "mic":
            t.append(f"replay finished since {since}  ", style="bold red")
        else:
            t.append(f"pipeline stopped since {since} (see monitor.log)  ", style="bold red")
    t.append(f"{status.get('device') or 'no input yet'}", style="bold")
    t.no_wrap, t.overflow = True, "ellipsis"
    return t


def _level_line(status: dict, vs: ViewState, live: bool) -> Text:
    level = float(status.get("level_dbfs", -120))
    gate = _gate(status, vs)
    t = Text()
    if not live:
        t.append(f"no signal (last heard {level:.1f} dBFS)  gate {gate:.0f} dBFS",
                 style="grey50")
        return t
    t.append(f"level {level:6.1f} dBFS", style="bold")
    t.append(f"  peak {vs.peak_dbfs:6.1f}  gate {gate:.0f} dBFS")
    if vs.gate_dbfs is not None and vs.gate_dbfs != status.get("gate_dbfs"):
        t.append(f" (daemon {status.get('gate_dbfs'):.0f}; s saves)", style="yellow")
    t.append("  ")
    if level >= gate:
        t.append(" GATE OPEN ", style="bold black on green")
    else:
        t.append(" gate closed ", style="black on grey50")
    return t


def _labels(status: dict, width: int, now: float) -> Table:
    tab = Table.grid(padding=(0, 1))
    tab.add_column(justify="right", no_wrap=True)
    tab.add_column(no_wrap=True)
    tab.add_column(justify="right", no_wrap=True)
    sc = status.get("scored")
    if not sc:
        tab.add_row("", Text("no chunk classified yet (quiet: below the gate)",
                             style="grey50"), "")
        return tab
    labels = sc.get("labels") or {"score": sc.get("score", 0.0)}
    for name, p in labels.items():  # the detector's order: rows do not jump around
        tab.add_row(name[:12], bar(p, width), f"{p:.2f}")
    age = now - sc.get("time", now)
    tab.add_row("", Text(f"latest chunk {_hms(sc['time'])} ({age:.0f} s ago), threshold "
                         f"{status.get('threshold') or 0:.2f}", style="grey50"), "")
    return tab


def _detections(status: dict, vs: ViewState, rows: int) -> Table:
    tab = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    for col in ("time", "score", "alert", "delivery"):
        tab.add_column(col, no_wrap=True)
    dets = list(status.get("detections", []))[-rows:]
    if not dets:
        tab.add_row("none yet", "", "", "")
    for d in reversed(dets):
        state = vs.delivery.get(round(d["time"], 3), "") if d.get("alerted") else ""
        tab.add_row(_hms(d["time"]), f"{d['score']:.2f}",
                    "ALERT" if d.get("alerted") else "cooldown", state)
    return tab


def _stats(status: dict) -> Text:
    s = status.get("stats", {})
    t = Text()
    t.append(f"queue {s.get('pending', 0)}+{s.get('in_flight', 0)}  "
             f"dropped {s.get('dropped', 0)}  scored {s.get('scored', 0)}  "
             f"detections {s.get('detections', 0)}")
    if s.get("overflows"):
        t.append(f"  overflows {s['overflows']}", style="yellow")
    if s.get("mic_lost"):
        t.append("  MICROPHONE LOST", style="bold red")
    return t


KEYS = "q quit  g/G gate -/+1 dB  s save gate"


def render(status: dict | None, vs: ViewState, width: int, height: int, live: bool,
           now: float | None = None):
    """One frame. A terminal under COMPACT_WIDTH x COMPACT_HEIGHT gets a few plain lines."""
    now = time.time() if now is None else now
    status = status or {}
    if width < COMPACT_WIDTH or height < COMPACT_HEIGHT:
        return _compact(status, vs, width, height, live, now)
    inner = width - 4
    gate = _gate(status, vs)
    level = float(status.get("level_dbfs", -120))
    meter_w = inner
    level_panel = Group(_level_line(status, vs, live),
                        meter(level, vs.peak_dbfs, gate, meter_w),
                        Text(f"{FLOOR_DBFS:.0f} dBFS".ljust(meter_w - 6) + "0 dBFS",
                             style="grey50"))
    tl_w = inner - 7
    lv, sc, marks = timeline_rows(status, tl_w, now)
    timeline = Table.grid(padding=(0, 1))
    timeline.add_column(no_wrap=True, style="bold")
    timeline.add_column(no_wrap=True)
    timeline.add_row("level", Text(lv, style="green"))
    timeline.add_row("beep", Text(sc, style="cyan"))
    timeline.add_row("det", Text(marks, style="bold red"))
    span = tl_w * TIMELINE_STEP
    timeline.add_row("", Text(f"-{span // 60} min {span % 60} s".ljust(tl_w - 3) + "now",
                              style="grey50"))
    det_rows = max(1, height - 28)
    parts = [
        _headline(status, vs, live, now),
        Text(f"detector: {status.get('detector') or '-'}", style="grey50", no_wrap=True,
             overflow="ellipsis"),
        _cycle_line(status, now),
        Panel(level_panel, title="input", title_align="left"),
        Panel(_labels(status, max(10, inner - 26), now), title="latest chunk",
              title_align="left"),
        Panel(timeline, title="timeline", title_align="left"),
        Panel(_detections(status, vs, det_rows), title="detections", title_align="left"),
        _stats(status),
        Text(vs.message or KEYS, style="bold yellow" if vs.message else "grey50"),
    ]
    return Group(*parts)


def _cycle_line(status: dict, now: float) -> Text:
    """Where the machine's cycle is, as /status says it."""
    cycle = status.get("cycle")
    if not isinstance(cycle, dict) or not cycle.get("state"):
        return Text("cycle: -", style="grey50")
    busy = cycle["state"] != "idle"
    return Text(status_line(cycle.get("machine") or "washer", cycle, now),
                style="bold magenta" if busy else "grey50", no_wrap=True, overflow="ellipsis")


def _compact(status: dict, vs: ViewState, width: int, height: int, live: bool, now: float):
    """A small terminal: the essentials, one per line, as many as fit."""
    w = max(width, 10)
    level = float(status.get("level_dbfs", -120))
    gate = _gate(status, vs)
    sc = status.get("scored") or {}
    s = status.get("stats", {})
    dets = status.get("detections", [])
    lines = [
        _headline(status, vs, live, now),
        Text(f"{level:.0f} dBFS gate {gate:.0f} {'OPEN' if level >= gate else 'closed'}"),
        meter(level, vs.peak_dbfs, gate, w - 1),
        Text(f"beep {sc.get('score', 0.0):.2f} q{s.get('pending', 0)}+{s.get('in_flight', 0)} "
             f"drop {s.get('dropped', 0)}"),
        Text(f"last det {_hms(dets[-1]['time'])} {dets[-1]['score']:.2f}" if dets
             else "no detection yet"),
        Text(vs.message or "q g G s"),
    ]
    for ln in lines:
        ln.no_wrap, ln.overflow = True, "crop"
    return Group(*lines[:max(height - 1, 1)])
