"""The running daemon: its notifier, built from the config (`make_notifier`); finding the
daemon that runs with a config file, and telling it to reload (SIGHUP).

The daemon publishes its pid, its config file and a fresh time stamp in its status file
(`beepnet.daemon.status`), beside its chunks. A pid is signalled only when that status is
live (written in the last seconds, by a process that still exists) and /proc says the pid
is a `beepnet run`: a pid from a stopped daemon, since reused by another program, never
gets a signal.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from ..config import SYSTEM_CONFIG
from .reload import same_file
from .status import STATUS_NAME, is_live, status_path

log = logging.getLogger(__name__)

SERVICE_STATUS = Path("/run/beepnet") / STATUS_NAME
"""The service's status file (its RuntimeDirectory): `sudo beepnet enroll` does not have
the service's $RUNTIME_DIRECTORY, so its own config alone would not lead there."""
RELOAD_SERVICE = "sudo systemctl reload beepnet"


@dataclass(frozen=True)
class Found:
    pid: int | None = None
    config: str | None = None
    unreadable: Path | None = None
    """A status file this user may not read: a daemon of another user may be running."""


def make_notifier(cfg, receive: bool = False):
    """The notifier, with exactly the settings it needs. ``receive``: also answer commands
    and button presses (a `beepnet run` daemon; not a one-off message before exiting).
    A bad Apprise URL or file raises ConfigError (one line, secrets masked)."""
    from ..config import ConfigError
    from ..notify.commands import BotSettings
    from ..notify.notifier import Notifier
    from ..notify.quiet import QuietHours, parse_window

    n, t, s = cfg.notify, cfg.telegram, cfg.storage
    bot = None
    if receive and t.enabled:
        bot = BotSettings(state_dir=s.path / "telegram", feedback_dir=s.path / "feedback",
                          alert_dir=s.alert_dir, status_file=status_path(cfg),
                          storage_dir=s.path, name=n.name, config_path=cfg.origin.path,
                          allowed_user_ids=t.allowed_users)
    channels = []
    if n.apprise_urls or n.apprise_file:
        from ..notify.apprise_channel import channels_from_config

        try:
            channels = channels_from_config(n)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    window = parse_window(n.quiet_hours)
    return Notifier(s.alert_dir, s.outbox_dir, cooldown_minutes=n.cooldown_minutes,
                    telegram=t if t.enabled else None,
                    outbox_max_age_hours=n.outbox_max_age_hours, outbox_max_mb=n.outbox_max_mb,
                    retry_initial_seconds=n.retry_initial_seconds,
                    retry_max_seconds=n.retry_max_seconds, bot=bot, channels=channels,
                    quiet=QuietHours(window, n.quiet_mode, n.quiet_faults) if window else None,
                    # Home Assistant's mute switch and /mute share one mute.
                    mute_dir=s.path / "telegram" if receive and cfg.mqtt.enabled else None)


def is_beepnet_run(pid: int) -> bool:
    """Whether process ``pid`` is a `beepnet run` (its command line says so)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    names = [os.path.basename(a.decode(errors="replace")) for a in args]
    return "run" in names and "beepnet" in names


def find_daemon(paths: list[Path], config: Path | None) -> Found:
    """The live `beepnet run` publishing one of ``paths``: the one with ``config`` if several."""
    unreadable, other = None, None
    for path in dict.fromkeys(paths):
        try:
            status = json.loads(Path(path).read_bytes())
        except PermissionError:
            unreadable = unreadable or Path(path)
            continue
        except (OSError, ValueError):
            continue
        if not isinstance(status, dict) or not is_live(status):
            continue
        try:
            pid = int(status["pid"])
        except (KeyError, TypeError, ValueError):
            continue
        if pid <= 1 or pid == os.getpid() or not is_beepnet_run(pid):
            continue
        used = status.get("config")
        # A daemon started without a config file (None) finds a newly made one on reload.
        if not used or config is None or same_file(Path(used), config):
            return Found(pid, used)
        other = other or Found(pid, used)
    return other or Found(unreadable=unreadable)


def tell_daemon(cfg, config: Path | None, what: str,
                paths: list[Path] | None = None) -> str:
    """SIGHUP the daemon running with ``config``; returns the one line for the owner.
    ``what``: the model it is to load ("the new model") for that line."""
    if paths is None:
        paths = [status_path(cfg)]
        # The service runs with the system config only (systemd/beepnet.service).
        if config is not None and same_file(config, SYSTEM_CONFIG):
            paths.append(SERVICE_STATUS)
    found = find_daemon(paths, config)
    if found.pid is None:
        if found.unreadable is not None:
            return (f"cannot tell whether beepnet is running ({found.unreadable}: permission "
                    f"denied): if it is, `{RELOAD_SERVICE}` to load {what}")
        return f"beepnet is not running: it will use {what} when it starts"
    if found.config and config is not None and not same_file(Path(found.config), config):
        return (f"beepnet (pid {found.pid}) runs with another config file, {found.config}: "
                f"it keeps its model")
    try:
        os.kill(found.pid, signal.SIGHUP)
    except PermissionError:
        return (f"beepnet (pid {found.pid}) runs as another user: `{RELOAD_SERVICE}` to "
                f"load {what}")
    except ProcessLookupError:
        return f"beepnet is not running: it will use {what} when it starts"
    return f"told the running beepnet (pid {found.pid}) to load {what}"
