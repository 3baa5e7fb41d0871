"""Playing a clip through whatever command-line player the machine has.

On a Pi over SSH the sound comes out of the Pi (the speaker or headphones next to the
appliance); on a laptop out of the laptop. Playback runs in its own process group with no
terminal, so it can neither read the keys meant for the labeller nor draw on its screen.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

PLAYERS: tuple[tuple[str, ...], ...] = (
    ("aplay", "-q"),                                        # ALSA (Raspberry Pi OS, Debian)
    ("paplay",),                                            # PulseAudio
    ("pw-play",),                                           # PipeWire
    ("ffplay", "-nodisp", "-autoexit", "-loglevel", "quiet"),
    ("afplay",),                                            # macOS
)
"""Probed in this order; the clip's path is appended to the command."""


def find_player(spec: str | None) -> tuple[list[str] | None, str]:
    """(command, note). ``spec``: None or "auto" probes PLAYERS, "none" never plays, anything
    else is a command line the path is appended to. ``note`` says what was chosen, or why
    nothing will play."""
    if spec is not None and spec.strip().lower() == "none":
        return None, "playback off (--player none)"
    if spec is None or spec.strip().lower() == "auto":
        for cmd in PLAYERS:
            if shutil.which(cmd[0]):
                return list(cmd), f"playing with {cmd[0]}"
        return None, ("no audio player found (" + ", ".join(c[0] for c in PLAYERS)
                      + "): showing only")
    argv = shlex.split(spec)
    if not argv or not shutil.which(argv[0]):
        return None, f"player {spec!r} not found: showing only"
    return argv, f"playing with {Path(argv[0]).name}"


class Player:
    """At most one clip playing at a time; a new one stops the last."""

    def __init__(self, command: list[str] | None) -> None:
        self.command = command
        self._proc: subprocess.Popen | None = None

    def play(self, path: Path) -> None:
        self.stop()
        if not self.command:
            return
        try:
            self._proc = subprocess.Popen(
                [*self.command, str(path)], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            log.warning("cannot run %s: %s", self.command[0], e.strerror or e)
            self._proc = None

    def stop(self) -> None:
        p, self._proc = self._proc, None
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=1.0)
