"""What every child process does first: logging, signals, and dying with its parent."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import signal
import sys

from .. import logs

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM us if the supervisor dies (even by kill -9): no orphans."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        log.debug("prctl(PR_SET_PDEATHSIG) unavailable; relying on the stop event")


def init(name: str, log_level: str, secrets: tuple[str, ...], stop) -> None:
    """Set up a freshly spawned child. ``stop`` is the multiprocessing.Event it obeys."""
    multiprocessing.current_process().name = name
    logs.setup(log_level, secrets)
    # Ctrl-C reaches the whole process group; the supervisor decides the order of shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    _die_with_parent()
