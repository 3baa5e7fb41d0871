"""`beepnet monitor`: the loop that reads the status channel, draws, and handles keys.

Attached: a daemon's status file (beepnet/daemon/status.py) is fresh; the monitor only
reads it and never opens the microphone. Standalone: no daemon is running, so the monitor
starts the very same pipeline (:class:`beepnet.daemon.supervisor.Supervisor` with its
recorder and classifier) in a child process, with a notifier that only logs, all of its
output going to a log file, and reads the status file that child publishes.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import select
import signal
import sys
import termios
import time
import tty
from contextlib import contextmanager
from pathlib import Path

from ..config import user_config
from ..daemon.status import is_live, read_status, status_path
from ..termdraw import FLOOR_DBFS
from .view import ViewState, render

log = logging.getLogger(__name__)

REFRESH_SECONDS = 0.2
DELIVERY_EVERY = 1.0
"""Seconds between two looks into the outbox for the delivery state of alerts."""
START_TIMEOUT = 30.0
"""Standalone: the pipeline must publish its first status within this time."""
LOG_NAME = "monitor.log"


# -- standalone: the pipeline in a child process -----------------------------------------------

def standalone_main(cfg, source: str, speed: float, log_path: str) -> None:
    """Entry point of the standalone pipeline process (spawned, so it starts clean)."""
    from .. import logs
    from ..daemon import child
    from ..daemon.supervisor import Supervisor
    from ..notify.notifier import Notifier

    # Everything this process and its children print goes to the log file, not the screen
    # the monitor draws on (spawned children inherit file descriptors 1 and 2).
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    logs.setup(cfg.log.level)
    child._die_with_parent()  # no orphaned pipeline if the monitor is killed
    # No Telegram: a monitor session must not message anybody.
    notifier = Notifier(cfg.storage.alert_dir, cfg.storage.outbox_dir,
                        cooldown_minutes=cfg.notify.cooldown_minutes)
    status = Supervisor(cfg, notifier, source=source, speed=speed).run()
    sys.exit(status)


def _no_input_reason(source: str) -> str | None:
    """Why the pipeline cannot run here, in one line, or None."""
    if source != "mic":
        return None if Path(source).exists() else f"{source}: no such file"
    from ..audio.sources import list_input_devices

    try:
        devices = list_input_devices()
    except Exception as e:  # noqa: BLE001 - PortAudio failing to start is "no microphone"
        return f"no daemon running and no microphone ({e})"
    if not devices:
        return ("no daemon running and no microphone: PyAudio sees no input device "
                "(start the daemon, plug a microphone in, or use --source FILE)")
    return None


# -- the terminal ------------------------------------------------------------------------------

@contextmanager
def _cbreak(stream):
    """Keys arrive one at a time, unechoed; the terminal is restored whatever happens."""
    if not stream.isatty():
        yield None
        return
    fd = stream.fileno()
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _keys(fd: int | None, timeout: float) -> str:
    """Keys typed within ``timeout`` seconds (sleeps that long when there are none)."""
    if fd is None:
        time.sleep(timeout)
        return ""
    ready, _, _ = select.select([fd], [], [], timeout)
    return os.read(fd, 64).decode(errors="ignore") if ready else ""


# -- delivery state of alerts --------------------------------------------------------------------

def delivery_states(status: dict) -> dict:
    """Detection epoch (rounded to ms) -> "queued", "retrying (n)", "sent", "rejected",
    "expired", "not kept on disk" ... or "logged": as the daemon publishes it, else (a daemon
    of an older version) from what is in the outbox directory right now."""
    import json

    dets = [d for d in status.get("detections", []) if d.get("alerted")]
    if not dets:
        return {}
    if not status.get("telegram"):
        return {round(d["time"], 3): d.get("delivery") or "logged" for d in dets}
    outbox = Path(status.get("outbox_dir", ""))
    waiting: dict[float, int] = {}
    rejected: set[float] = set()
    for folder, into in ((outbox, None), (outbox / "rejected", rejected)):
        for p in folder.glob("*-beep.json"):
            try:
                item = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            key = round(float(item.get("created", 0)), 3)
            if into is None:
                waiting[key] = int(item.get("attempts", 0))
            else:
                into.add(key)
    out = {}
    for d in dets:
        key = round(d["time"], 3)
        if d.get("delivery"):  # the daemon's own word: it knows what never reached the disk
            out[key] = d["delivery"]
        elif key in rejected:
            out[key] = "rejected"
        elif key in waiting:
            out[key] = f"retrying ({waiting[key]})" if waiting[key] else "queued"
        else:
            out[key] = "sent"
    return out


# -- the loop ----------------------------------------------------------------------------------

class Monitor:
    def __init__(self, cfg, config_path: str | None, source: str = "mic", speed: float = 1.0):
        self.cfg = cfg
        self.config_path = config_path
        self.source = source
        self.speed = speed
        self.path = status_path(cfg)
        self.vs = ViewState()
        self.proc: mp.process.BaseProcess | None = None
        self._next_delivery = 0.0
        self._saved_gate: float | None = None
        self._status: dict = {}
        self._quit = False

    def run(self) -> int:
        status = read_status(self.path)
        if is_live(status):
            self.vs.mode = "attached"
        else:
            reason = _no_input_reason(self.source)
            if reason:
                print(f"beepnet monitor: {reason}", file=sys.stderr)
                return 1
            if not self._start_standalone():
                return 1
        self._quiet_logging()
        from rich.console import Console
        from rich.live import Live

        console = Console()
        # A closed SSH session (SIGHUP) or a kill: leave the loop, restore the terminal and
        # stop a standalone pipeline, as q does.
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: setattr(self, "_quit", True))
        try:
            with _cbreak(sys.stdin) as fd, Live(console=console, screen=True,
                                                auto_refresh=False) as live:
                while not self._quit:
                    if self._handle_keys(_keys(fd, REFRESH_SECONDS)):
                        break
                    live.update(self._frame(console), refresh=True)
        finally:
            self._stop_standalone()
        self._say_gate_hint()
        return 0

    def _start_standalone(self) -> bool:
        self.vs.mode = "standalone"
        log_path = self.path.parent / LOG_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            log_path.touch()
        except OSError as e:
            print(f"beepnet monitor: no daemon running, and cannot run the pipeline here: "
                  f"{e.filename}: {e.strerror or e} (check storage.dir / storage.runtime_dir)",
                  file=sys.stderr)
            return False
        ctx = mp.get_context("spawn")
        self.proc = ctx.Process(target=standalone_main, name="beepnet-monitor-pipeline",
                                args=(self.cfg, self.source, self.speed, str(log_path)))
        self.proc.start()
        # Wait for the child's first status, so the screen does not open on "not running".
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            st = read_status(self.path)
            if st and st.get("pid") == self.proc.pid:
                return True
            if not self.proc.is_alive():
                break
            time.sleep(0.1)
        print(f"beepnet monitor: the pipeline did not start (see {log_path})", file=sys.stderr)
        self._stop_standalone()
        return False

    def _stop_standalone(self) -> None:
        if self.proc is None or not self.proc.is_alive():
            return
        self.proc.terminate()  # SIGTERM: the supervisor stops its children cleanly
        self.proc.join(15)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2)

    def _quiet_logging(self) -> None:
        """Log lines would tear the full-screen view: send them to the log file instead."""
        root = logging.getLogger()
        try:
            handler: logging.Handler = logging.FileHandler(self.path.parent / LOG_NAME)
        except OSError:
            handler = logging.NullHandler()
        if root.handlers:
            handler.setFormatter(root.handlers[0].formatter)
        root.handlers[:] = [handler]

    def _frame(self, console):
        now = time.time()
        status = read_status(self.path) or {}
        if self.proc is not None and status.get("pid") != self.proc.pid:
            status = {}  # a stale file from someone else
        live = is_live(status, now)
        if live:
            self.vs.down_since = None
            self.vs.hold_peak(float(status.get("level_dbfs", FLOOR_DBFS)), now)
        elif self.vs.down_since is None:
            self.vs.down_since = status.get("time", now) if status else now
        new = any(round(d["time"], 3) not in self.vs.delivery
                  for d in status.get("detections", []) if d.get("alerted"))
        if status and (new or now >= self._next_delivery):
            self._next_delivery = now + DELIVERY_EVERY
            self.vs.delivery = delivery_states(status)
        self._status = status
        w, h = console.size
        return render(status, self.vs, w, h, live, now)

    def _daemon_gate(self) -> float:
        return float(self._status.get("gate_dbfs", self.cfg.audio.gate_dbfs))

    def _handle_keys(self, keys: str) -> bool:
        """React to typed keys; True means quit."""
        for k in keys:
            if k in "qQ":
                return True
            if k in "gG":
                gate = min(0.0, max(-120.0, self._gate() + (1.0 if k == "G" else -1.0)))
                self.vs.gate_dbfs = gate
                self.vs.message = f"gate {gate:.0f} dBFS (preview; s saves it)"
            elif k == "s":
                self._save()
        return False

    def _gate(self) -> float:
        return self.vs.gate_dbfs if self.vs.gate_dbfs is not None else self._daemon_gate()

    def _save(self) -> None:
        from .savegate import save_gate

        gate = self._gate()
        if not self.config_path:
            self.vs.message = (f"no config file in use: write audio.gate_dbfs = {gate:.1f} "
                               f"into {user_config(os.environ)}")
            return
        try:
            save_gate(self.config_path, gate)
        except (OSError, ValueError) as e:
            why = getattr(e, "strerror", None) or e
            self.vs.message = f"cannot save to {self.config_path}: {why}"
            return
        self._saved_gate = gate
        self.vs.message = (f"saved audio.gate_dbfs = {gate:.1f} to {self.config_path}; "
                           "restart the daemon to use it")

    def _say_gate_hint(self) -> None:
        """After the screen is gone: what to do with a nudged gate, in plain text."""
        gate = self.vs.gate_dbfs
        if gate is None or gate == self._saved_gate or gate == self._daemon_gate():
            return
        print(f"gate not saved: use --set audio.gate_dbfs={gate:.1f}, or press s with a config "
              "file in use")


def cmd_monitor(cfg, args) -> int:
    """The `beepnet monitor` subcommand; s saves to the config file in use (--config,
    $BEEPNET_CONFIG, or the first found in the default places)."""
    config_path = str(cfg.origin.path) if cfg.origin.path else None
    return Monitor(cfg, config_path, args.source, args.speed).run()
