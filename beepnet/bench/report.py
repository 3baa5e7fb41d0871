"""Benchmark rows, their targets, the printed table and the files in bench/results/.

Every measurement becomes one `Row`: what was measured, the value, and (when the project has
one) its target. A row that could not be measured carries the reason instead of a value;
a missed target is marked, never raised: a slow machine is a result, not an error.
"""

from __future__ import annotations

import json
import logging
import math
import operator
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PASS, MISS, NONE = "✓", "✗", "—"


@dataclass(frozen=True)
class Target:
    """A bound the value should respect: ``value <op> limit``."""

    op: str
    """"<=", ">=" or "<" (a strict bound: "fewer than 1 false alarm per 20 h")."""
    limit: float

    def met(self, value: float) -> bool:
        return _OPS[self.op](value, self.limit)

    def text(self, unit: str) -> str:
        return f"{_SIGNS[self.op]} {self.limit:g}{_sep(unit)}{unit}"


_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt}
_SIGNS = {"<=": "≤", ">=": "≥", "<": "<"}


# The project's targets, in one place (the README's performance claims quote these).
INFERENCE_MS = Target("<=", 10.0)
DETECT_REALTIME = Target(">=", 300.0)
# A crafted model file (a tensor of 10^12 elements over 16 bytes): `beepnet detect` refuses
# it in one line, this fast and this small.
CRAFTED_S = Target("<=", 1.0)
CRAFTED_MB = Target("<=", 100.0)
# The live daemon: the default one (BeepNet on the numpy runtime, Telegram configured), all
# its processes; the benchmark's comparison daemons (torch runtime, tone) are held to the
# same bounds. PSS splits each shared page among the processes mapping it, so the sum is
# what the daemon costs together: the figure a 512 MB board pays. Peak RSS (each
# process's VmHWM, shared pages counted in every one) bounds the worst moment.
DAEMON_CPU_PERCENT = Target("<=", 3.0)
TOTAL_PSS_MB = Target("<=", 100.0)
TOTAL_RSS_MB = Target("<=", 160.0)
CLASSIFIER_RSS_MB = Target("<=", 45.0)
RECORDER_RSS_MB = Target("<=", 60.0)
# From the end of a beep pattern's last beep to the alert's request at the Bot API: the
# alert waits for the pattern to end, so that its clip holds all of it (issue 15).
LATENCY_MEDIAN_S = Target("<=", 2.0)
LATENCY_P95_S = Target("<=", 3.0)
CLIP_COVERAGE = Target(">=", 0.90)
USER_TRAINING_S = Target("<=", 120.0)
# On held-out recordings of the user's own beep, after training on their first set.
USER_RECALL = Target(">=", 0.99)
USER_FA_PER_20H = Target("<", 1.0)
# Real sounds (bench.realsound): beeps and everyday audio training never heard, at event
# level; the figures the README quotes first.
REAL_RECALL = Target(">=", 0.90)
REAL_FA_PER_HOUR = Target("<=", 5.0)
REAL_FA_VS_TONE = Target(">=", 10.0)
# Time left in a cycle (issue 16): half way through, after 5 past cycles of one programme
# run with ± 10 % jitter, the median |estimated - true| duration as a share of the cycle.
CYCLE_ESTIMATE_ERROR = Target("<=", 10.0)


@dataclass
class Row:
    section: str
    measure: str
    value: float | None = None
    unit: str = ""
    target: Target | None = None
    fmt: str = ".3g"
    """Format spec for the value."""
    note: str = ""
    """Extra context shown after the value, e.g. "44 of 48 events"."""
    skipped: str = ""
    """Why there is no value (the part could not run here)."""

    @property
    def ok(self) -> bool | None:
        """True/False against the target; None without a target or a value."""
        if self.target is None or self.value is None or not math.isfinite(self.value):
            return None
        return self.target.met(self.value)

    @property
    def mark(self) -> str:
        return {True: PASS, False: MISS, None: NONE}[self.ok]

    def value_text(self) -> str:
        if self.skipped:
            return f"skipped: {self.skipped}"
        if self.value is None or not math.isfinite(self.value):
            return "n/a" + (f" ({self.note})" if self.note else "")
        text = f"{format(self.value, self.fmt)}{_sep(self.unit)}{self.unit}"
        return text + (f" ({self.note})" if self.note else "")

    def target_text(self) -> str:
        return self.target.text(self.unit) if self.target else ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["target"] = asdict(self.target) if self.target else None
        d["ok"] = self.ok
        if d["value"] is not None and not math.isfinite(d["value"]):
            d["value"] = None  # JSON has no NaN
        return d


def _sep(unit: str) -> str:
    return "" if unit in ("", "%", "×") else " "


def skipped_rows(section: str, measures: list[tuple[str, Target | None]], reason: str
                 ) -> list[Row]:
    """The rows of a part that could not run, each saying why."""
    return [Row(section, m, target=t, skipped=reason) for m, t in measures]


def table(rows: list[Row]) -> str:
    """A Markdown table: section, measure, value, target, mark."""
    lines = ["| part | measure | value | target | |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.section} | {r.measure} | {r.value_text()} | {r.target_text()} | "
                     f"{r.mark if not r.skipped else ''} |")
    return "\n".join(lines)


def markdown(rows: list[Row], machine: dict, settings: dict, seconds: float,
             extra: str = "", lead: str = "") -> str:
    """The whole latest.md: heading, machine, ``lead`` (the real-sound table), the table,
    how it was run."""
    m = machine
    head = [f"# beepnet benchmark, {m.get('date', '')}", "",
            (f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores "
             f"({m.get('cores_usable', '?')} usable), {m.get('ram_gb', '?')} GB RAM, "
             f"{m.get('os', '?')}; Python {m.get('python', '?')}, torch {m.get('torch', '?')}; "
             f"beepnet {m.get('beepnet', '?')} at {m.get('git', '?')}. "
             f"Load average at start {m.get('load_start', '?')}, at end {m.get('load_end', '?')} "
             "(other jobs on the machine make every figure noisier)."), ""]
    if lead:
        head += [lead, ""]
    head += [table(rows), "",
            (f"{sum(r.ok is True for r in rows)} targets met, "
             f"{sum(r.ok is False for r in rows)} missed, "
             f"{sum(bool(r.skipped) for r in rows)} rows skipped; the run took "
             f"{seconds / 60:.1f} min. "
             f"Reproduce: `make bench` (or `python -m beepnet.bench"
             f"{' --quick' if settings.get('quick') else ''}`)."), ""]
    if extra:
        head += [extra, ""]
    return "\n".join(head)


def write_results(out_dir: str | os.PathLike, rows: list[Row], machine: dict, settings: dict,
                  details: dict, seconds: float, extra_md: str = "", lead_md: str = ""
                  ) -> tuple[Path, Path]:
    """``<out>/<UTC time>-<host>.json`` (everything) and ``<out>/latest.md`` (the table)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())
    js = out / f"{stamp}-{host}.json"
    js.write_text(json.dumps({"format": "beepnet-bench", "version": 1, "seconds": round(seconds, 1),
                              "machine": machine, "settings": settings,
                              "rows": [r.to_dict() for r in rows],
                              "details": _finite(details)},
                             indent=1, default=_jsonable, allow_nan=False) + "\n")
    md = out / "latest.md"
    md.write_text(markdown(rows, machine, settings, seconds, extra_md, lead_md))
    return js, md


def _finite(x):
    """``x`` with NaN and infinities replaced by None, which JSON can hold."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _jsonable(x):
    """numpy scalars and the like, for json.dumps."""
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
