"""What every child process does first: logging, signals, and dying with its parent; and
the children's entry points.

The supervisor starts its children by naming `run_recorder` and `run_classifier` (with
``spawn``, a process's target is pickled by name). They import their real modules only
in the child, so the supervisor itself never imports numpy, soundfile or a detector: 18 MB
of numpy alone in a process that never touches audio, on a board with 512 MB.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import signal
import sys

from .. import logs

log = logging.getLogger(__name__)

EXIT_DETECTOR = 78
"""The classifier's exit status when its detector cannot be loaded and restarting would not
help: a bad or missing model file, a bad setting (the same as a config error's)."""
EXIT_DETECTOR_RETRY = 75
"""The classifier's exit status when its detector failed to load for a reason that may pass
(out of memory, a library mid-upgrade): the supervisor starts it again, backing off
(EX_TEMPFAIL)."""

_PR_SET_NAME = 15
_SHORT = {"recorder": "rec", "classifier": "clf"}  # the kernel keeps 15 characters
_PR_SET_PDEATHSIG = 1


def _prctl(option: int, arg) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        log.debug("prctl(%d) unavailable", option)


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM us if the supervisor dies (even by kill -9): no orphans."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def init(name: str, log_level: str, secrets: tuple[str, ...], stop) -> None:
    """Set up a freshly spawned child. ``stop`` is the multiprocessing.Event it obeys."""
    multiprocessing.current_process().name = name
    # Shows in top/ps -o comm (and /proc/PID/comm) instead of a dozen "python3".
    comm = "beepnet-" + _SHORT.get(name, name)
    _prctl(_PR_SET_NAME, ctypes.c_char_p(comm[:15].encode()))
    logs.setup(log_level, secrets)
    # Ctrl-C reaches the whole process group; the supervisor decides the order of shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGHUP (a reload, or a closed terminal) is the supervisor's to act on, not the child's.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    _die_with_parent()


def run_recorder(*args) -> None:
    """The recorder child's target: `beepnet.daemon.recorder.recorder_main`."""
    from .recorder import recorder_main

    recorder_main(*args)


def run_classifier(*args) -> None:
    """The classifier child's target: `beepnet.daemon.classifier.classifier_main`."""
    from .classifier import classifier_main

    classifier_main(*args)
