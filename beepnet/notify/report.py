"""What the bot says about the daemon, written to be read on a phone.

The start message says what a person needs ("listening on USB PnP Sound Device; send /status
for details"); the technical line (device index and rate, detector, model, threshold) goes to
the log and to /status. /status is built from the live status the supervisor publishes for
`beepnet monitor` (`beepnet.daemon.status`), so there is one bookkeeping, not two.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from .. import __version__
from .cycletext import status_line
from .timefmt import minutes_text

LEVEL_STALE_SECONDS = 5.0
"""No heartbeat level for this long: the microphone is not delivering audio."""

_DEVICE_DETAIL = re.compile(r"\s*\(#\d+, \d+ Hz\)\s*$")


def device_name(description: str) -> str:
    """"USB PnP Sound Device (#2, 48000 Hz)" -> "USB PnP Sound Device"; a replayed file is
    named by its file name."""
    if description.startswith("file "):
        path = re.sub(r"\s+\(\d+ Hz, .*\)$", "", description[5:])
        return Path(path).name
    return _DEVICE_DETAIL.sub("", description) or description


def start_text(name: str, device: str) -> str:
    """The start message: ``name`` is notify.name ("" when not set)."""
    prefix = f"{name}: " if name else ""
    return f"{prefix}listening on {device_name(device)}; send /status for details."


def _clock(t: float, now: float) -> str:
    if time.localtime(t)[:3] == time.localtime(now)[:3]:
        return time.strftime("%H:%M:%S", time.localtime(t))
    return time.strftime("%d %b %H:%M", time.localtime(t))


def _ago(t: float, now: float) -> str:
    return minutes_text(max(0, int((now - t) // 60)))


def last_alert_record(alert_dir: Path) -> dict | None:
    """The newest alert record kept under storage.dir/alerts (it outlives restarts)."""
    try:
        records = sorted(Path(alert_dir).glob("*.json"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return None
    for p in reversed(records[-5:]):
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "epoch" in doc:
            return doc
    return None


def disk_text(path: Path) -> str:
    try:
        du = shutil.disk_usage(path)
    except OSError as e:
        return f"cannot tell ({e.strerror or e})"
    return f"{du.free / 1e9:.1f} GB free of {du.total / 1e9:.0f} GB ({path})"


def outlet_lines(outlets: dict, now: float) -> list[str]:
    """Home Assistant's connection and the heartbeat, as /status shows them."""
    lines = []
    mqtt = outlets.get("mqtt")
    if isinstance(mqtt, dict):
        link = "connected to" if mqtt.get("connected") else "not connected to"
        lines.append(f"Home Assistant: {link} {mqtt.get('where')} as {mqtt.get('device_id')}")
    beat = outlets.get("heartbeat")
    if isinstance(beat, dict):
        if beat.get("held"):
            text = f"held ({beat['held']})"
        elif beat.get("error"):
            text = f"failing ({beat['error']})"
        else:
            text = "on"
        if beat.get("last_ok"):
            text += f", last answered {_clock(float(beat['last_ok']), now)}"
        lines.append(f"Heartbeat: {text}")
    return lines


def status_text(status: dict | None, *, name: str, mute_until: float | None,
                pending: tuple[int, int], storage_dir: Path, last_alert: dict | None,
                now: float | None = None) -> str:
    """The /status reply. ``status``: the supervisor's published status (None: none yet);
    ``pending``: (messages in the outbox, only in memory) not sent yet."""
    now = time.time() if now is None else now
    lines = []
    who = f"{name}: " if name else ""
    if not status:
        lines.append(f"{who}starting (no status published yet)")
    else:
        state = status.get("state", "?")
        started = float(status.get("started") or now)
        what = "listening" if state == "running" else state
        lines.append(f"{who}{what} since {_clock(started, now)} ({_ago(started, now)})")
        device = status.get("device") or "not open yet"
        level_time = float(status.get("level_time") or 0)
        if level_time and now - level_time <= LEVEL_STALE_SECONDS:
            level = f"level {status.get('level_dbfs', 0):.0f} dBFS now"
        elif level_time:
            level = f"no audio for {_ago(level_time, now)}"
        else:
            level = "no audio yet"
        lines.append(f"Microphone: {device}, {level} (gate {status.get('gate_dbfs', 0):.0f} "
                     "dBFS)")
        if status.get("detector"):
            threshold = status.get("threshold")
            lines.append(f"Detector: {status['detector']}"
                         + (f", threshold {threshold:.2f}" if threshold is not None else ""))
        else:
            lines.append("Detector: loading")
        if status.get("model"):
            lines.append(f"Model file: {status['model']}")
        detections = status.get("detections") or []
        if detections:
            d = detections[-1]
            lines.append(f"Last beep: {_clock(d['time'], now)} (score {d['score']:.2f})")
        else:
            lines.append("Last beep: none since the start")
        cycle = status.get("cycle")
        if isinstance(cycle, dict) and cycle.get("state"):
            lines.insert(1, status_line(cycle.get("machine") or "washer", cycle, now))
    if last_alert:
        held = ", not sent (muted)" if last_alert.get("muted") else ""
        lines.append(f"Last alert: {_clock(float(last_alert['epoch']), now)} "
                     f"(score {float(last_alert.get('score', 0)):.2f}){held}")
    else:
        lines.append("Last alert: none kept")
    lines.append("Alerts: " + (f"muted until {_clock(mute_until, now)} (/unmute)" if mute_until
                               else "on"))
    on_disk, in_memory = pending
    waiting = on_disk + in_memory
    lines.append("Outbox: " + (f"{waiting} message(s) waiting" if waiting else "empty"))
    lines += outlet_lines((status or {}).get("outlets") or {}, now)
    lines.append(f"Disk: {disk_text(storage_dir)}")
    lines.append(f"beepnet {__version__}")
    return "\n".join(lines)
