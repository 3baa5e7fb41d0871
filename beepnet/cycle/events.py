"""What the cycle machine takes and gives: inputs (what the daemon hears), cycle events (what
happened), the phases of a cycle and a read-only snapshot of where it is.

Plain frozen data, in time order, with ``at`` in seconds of the monotonic clock: the
supervisor makes the inputs, `beepnet.cycle.machine.CycleMachine` the events, and the
notifiers, the status file and the history read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

PAUSE = "pause"
UNKNOWN = "unknown"
"""The phase of machine sound the daemon gave no phase for, before any phase was told."""


class State(str, Enum):
    IDLE = "idle"
    RUNNING = "running"
    STOPPED_WITHOUT_BEEP = "stopped_without_beep"
    NOT_EMPTIED = "not_emptied"


# --- Inputs: what the daemon hears --------------------------------------------------------

@dataclass(frozen=True)
class Heard:
    """One analysed stretch of sound (the gate was open)."""

    at: float
    machine: bool
    """It sounded like the machine running (the supervisor decides, from the classifier's
    scores and the level)."""
    phase: str | None = None
    """"washing", "spinning" when known; None keeps the phase the cycle is in."""


@dataclass(frozen=True)
class Quiet:
    """The silence gate was closed for this stretch: nothing above the threshold."""

    at: float


@dataclass(frozen=True)
class Beep:
    """A beep pattern started at ``at``."""

    at: float


@dataclass(frozen=True)
class Emptied:
    """The owner said the laundry is out (the "🧺 Emptied" button, /emptied)."""

    at: float
    by: str
    """Who or what said so, for the history (e.g. "button", "/emptied")."""


@dataclass(frozen=True)
class Tick:
    """Time passes with nothing heard, so timeouts fire without sound."""

    at: float


Input = Heard | Quiet | Beep | Emptied | Tick


# --- Outputs: cycle events ----------------------------------------------------------------

@dataclass(frozen=True)
class Phase:
    """A stretch of a cycle: what the machine was doing from ``start`` to ``end``."""

    name: str
    """As the daemon told ("washing", "spinning"), "pause" (machine quiet for
    ``pause_minutes`` or more) or "unknown" (sound with no phase told yet)."""
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class CycleEvent:
    at: float
    """When it happened: the ``at`` of the input that made it happen."""


@dataclass(frozen=True)
class CycleStarted(CycleEvent):
    """A cycle is running (confirmed ``start_minutes`` of sound after it began)."""

    started_at: float
    """When its machine sound began, not when it was confirmed."""


@dataclass(frozen=True)
class CycleFinished(CycleEvent):
    """The machine beeped: the cycle is over, the laundry waits for the owner."""

    started_at: float | None
    """None when no cycle was seen running (a beep after a quiet stretch)."""
    duration: float | None
    usual: float | None
    """The usual duration at the time, for "(usual: 1 h 30)"; None without history."""
    phases: tuple[Phase, ...]


@dataclass(frozen=True)
class CycleResumed(CycleEvent):
    """The machine took up again at once after a beep: that beep was not its end (a
    mid-cycle signal, or a beep misheard in the machine's sound). The cycle runs on."""

    started_at: float
    beep_at: float
    """The beep that was not the end."""


@dataclass(frozen=True)
class StoppedWithoutBeep(CycleEvent):
    """The machine has been quiet for ``quiet_minutes`` and did not beep."""

    started_at: float
    last_sound_at: float
    phases: tuple[Phase, ...]


@dataclass(frozen=True)
class StopExpired(CycleEvent):
    """No late beep came after a stop: that cycle ended stopped, the machine is idle."""

    started_at: float
    last_sound_at: float


@dataclass(frozen=True)
class RunningLong(CycleEvent):
    """The running cycle has passed ``long_factor`` x its usual duration (once a cycle)."""

    started_at: float
    elapsed: float
    usual: float


@dataclass(frozen=True)
class NoBeepYet(CycleEvent):
    """With no usual duration known, a cycle has run ``no_beep_minutes`` without a beep
    (once a cycle)."""

    started_at: float
    elapsed: float


@dataclass(frozen=True)
class Reminder(CycleEvent):
    """"Still in the machine": the ``number``-th reminder since it finished."""

    finished_at: float
    number: int


@dataclass(frozen=True)
class RemindersExhausted(CycleEvent):
    """``max_reminders`` went unanswered: the machine stops waiting for the owner."""

    finished_at: float
    reminders: int


@dataclass(frozen=True)
class EmptiedEvent(CycleEvent):
    """The owner emptied the machine."""

    by: str
    finished_at: float | None
    """The beep that finished the cycle; None for a cycle that stopped without one."""


@dataclass(frozen=True)
class PresumedEmptied(CycleEvent):
    """A new cycle started while the last one waited to be emptied."""

    finished_at: float
    reason: ClassVar[str] = "next cycle started, the last one was presumably emptied"


# --- Snapshot, for /status ----------------------------------------------------------------

@dataclass(frozen=True)
class Snapshot:
    """Where the cycle is, read-only (for /status, the status file, the monitor)."""

    state: State
    started_at: float | None
    """The running or stopped cycle's start (None when idle, or a finish of unknown start)."""
    finished_at: float | None
    """The beep, while not emptied."""
    last_sound_at: float | None
    """The running or stopped cycle's last machine sound."""
    phase: str | None
    """The running cycle's phase now ("pause" after ``pause_minutes`` of quiet)."""
    reminders: int
    """Reminders given since it finished."""

    def elapsed(self, now: float) -> float | None:
        """Seconds the cycle has run: until ``now`` while running, until its last sound once
        stopped; None otherwise."""
        if self.started_at is None or self.last_sound_at is None:
            return None
        if self.state is State.RUNNING:
            return now - self.started_at
        if self.state is State.STOPPED_WITHOUT_BEEP:
            return self.last_sound_at - self.started_at
        return None
