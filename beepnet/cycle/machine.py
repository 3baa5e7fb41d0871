"""The cycle state machine: from what the daemon hears to where the laundry is.

The daemon feeds it inputs in time order (`Heard`, `Quiet`, `Beep`, `Emptied`, `Tick`), each
with its own ``at`` in seconds of the monotonic clock; `CycleMachine.feed` returns what
happened as cycle events. The machine never reads a clock: the same timeline gives the same
events, live, replayed faster than real time, or in a test. Only a `Heard` with
``machine=True`` is machine sound; `Quiet`, other sounds (someone talking) and `Tick` are
time passing with the machine quiet.

States, and the one output that reports each change (every change is reported once):

- idle, not_emptied or stopped_without_beep -> running: ``start_minutes`` of machine sound
  within ``start_window_minutes``, with no gap of ``pause_minutes`` in it. `CycleStarted`
  (leaving not_emptied, `PresumedEmptied` first).
- running -> not_emptied: a beep. `CycleFinished`.
- not_emptied -> running: machine sound that came back within ``pause_minutes`` of that
  beep and lasts as a start does: the beep was not the end (a mid-cycle signal, a beep
  misheard in the drum). `CycleResumed`; the cycle goes on with its start and phases.
- idle -> not_emptied: a beep with no cycle seen (machines often beep after a quiet drain):
  `CycleFinished` of a cycle of unknown start.
- running -> stopped_without_beep: no machine sound for ``quiet_minutes``.
  `StoppedWithoutBeep`.
- stopped_without_beep -> not_emptied: a beep within ``late_beep_minutes`` of the last
  machine sound, the same cycle's, late. `CycleFinished`.
- stopped_without_beep -> idle: ``late_beep_minutes`` after the last sound. `StopExpired`.
- not_emptied or stopped_without_beep -> idle: the owner's "Emptied". `EmptiedEvent`.
- not_emptied -> idle: ``remind_minutes`` after the last reminder. `RemindersExhausted`.

"Finished" is the moment of the beep, not a place to stay: the machine reports
`CycleFinished` and waits in not_emptied. Outputs that change no state: `Reminder` (every
``remind_minutes`` in not_emptied, at most ``max_reminders``), and one "overdue" message per
cycle while running: `RunningLong` past ``long_factor`` x the usual duration, or, with no
usual duration yet (no history), `NoBeepYet` after ``no_beep_minutes`` (the meaning of the
old "No beep yet" watch, `beepnet.notify.watch`).

Times in outputs are the inputs' ``at`` (as precise as the daemon's hop): an input earlier
than the one before it counts as arriving at the same time, so time never runs backwards.
Timeouts fire on the first input at or after their time, and each input fires at most one
timeout, so a daemon that was suspended for hours gets one reminder, not a burst.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from .events import (
    PAUSE,
    UNKNOWN,
    Beep,
    CycleEvent,
    CycleFinished,
    CycleResumed,
    CycleStarted,
    Emptied,
    EmptiedEvent,
    Heard,
    Input,
    NoBeepYet,
    Phase,
    PresumedEmptied,
    Quiet,
    Reminder,
    RemindersExhausted,
    RunningLong,
    Snapshot,
    State,
    StopExpired,
    StoppedWithoutBeep,
    Tick,
)

log = logging.getLogger(__name__)

MAX_STRETCH_SECONDS = 5.0
"""One input stands for at most this much sound: the daemon feeds something every hop
(1.5 s) while the gate is open and a `Tick` at least every few seconds, so a longer gap
before a `Heard` is time nobody listened, not machine sound."""
BACKWARDS_WARN_SECONDS = 30.0
"""An input this much older than the previous one is logged: a beep pattern is reported
after it ends (up to 20 s after it began), anything later hints at a wiring mistake."""

# --- Settings -----------------------------------------------------------------------------

@dataclass(frozen=True)
class CycleSettings:
    """The timing rules of a cycle (the config's ``cycle`` section will fill these)."""

    start_minutes: float = 2.0
    """Machine sound this long, within ``start_window_minutes``, is a cycle running: long
    enough that a slammed door, a vacuum cleaner pass or a misheard word is not one."""
    start_window_minutes: float = 5.0
    """The span ``start_minutes`` of sound must fit in: a drum turns with rests between, so
    its sound is not continuous."""
    pause_minutes: float = 1.0
    """Machine quiet this long is a pause (a phase of its own); shorter rests are part of
    the phase. It also breaks the sound that would start a cycle."""
    quiet_minutes: float = 10.0
    """Machine quiet this long while running, with no beep, ends the cycle as stopped
    without a beep (paused, power cut, door open, or a missed beep)."""
    late_beep_minutes: float = 60.0
    """A beep up to this long after the last machine sound of a stopped cycle still
    finishes it (a long quiet drain, then the beep); later, the stopped cycle is history."""
    long_factor: float = 1.4
    """A cycle running this many times its usual duration is reported once."""
    no_beep_minutes: float = 150.0
    """With no usual duration yet, a cycle running this long without a beep is reported
    once (the old watch's ``timeout_minutes``)."""
    remind_minutes: float = 30.0
    """"Still in the machine": a reminder this long after finished, and after each one."""
    max_reminders: int = 6
    """Reminders at most; ``remind_minutes`` after the last, the machine stops waiting."""

    def __post_init__(self) -> None:
        for name in ("start_minutes", "start_window_minutes", "pause_minutes",
                     "quiet_minutes", "late_beep_minutes", "no_beep_minutes",
                     "remind_minutes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"cycle.{name} = {getattr(self, name)}: expected more than 0")
        if self.start_minutes > self.start_window_minutes:
            raise ValueError(f"cycle.start_minutes = {self.start_minutes} cannot fit in "
                             f"cycle.start_window_minutes = {self.start_window_minutes}")
        if self.pause_minutes >= self.quiet_minutes:
            raise ValueError(f"cycle.pause_minutes = {self.pause_minutes}: expected less than "
                             f"cycle.quiet_minutes = {self.quiet_minutes}")
        if self.late_beep_minutes <= self.quiet_minutes:
            raise ValueError(f"cycle.late_beep_minutes = {self.late_beep_minutes}: expected "
                             f"more than cycle.quiet_minutes = {self.quiet_minutes}")
        if not self.long_factor > 1:
            raise ValueError(f"cycle.long_factor = {self.long_factor}: expected more than 1")
        if self.max_reminders < 0:
            raise ValueError(f"cycle.max_reminders = {self.max_reminders}: expected 0 or more")


# --- Helpers ------------------------------------------------------------------------------

class _Onset:
    """Machine sound heard while no cycle runs: enough of it, recently, starts a cycle, and
    its first stretch says when the cycle began.

    A gap of ``gap_s`` without machine sound starts over, so a stray misheard window minutes
    earlier does not move the start back; other sounds in between (someone talking) are
    simply not machine sound and break nothing shorter than that.
    """

    def __init__(self, window_s: float, gap_s: float):
        self.window_s = window_s
        self.gap_s = gap_s
        self._heard: deque[tuple[float, float, str | None]] = deque()  # (at, seconds, phase)
        self._seconds = 0.0

    def add(self, at: float, seconds: float, phase: str | None) -> None:
        if self._heard and at - self._heard[-1][0] >= self.gap_s:
            self.clear()
        self._heard.append((at, seconds, phase))
        self._seconds += seconds
        while self._heard[0][0] < at - self.window_s:
            self._seconds -= self._heard.popleft()[1]

    @property
    def seconds(self) -> float:
        """Machine sound within the window."""
        return self._seconds

    def stretches(self) -> list[tuple[float, str | None]]:
        """(at, phase) of each stretch heard, oldest first."""
        return [(at, phase) for at, _, phase in self._heard]

    def clear(self) -> None:
        self._heard.clear()
        self._seconds = 0.0


class _PhaseLog:
    """The phases of one cycle, recorded as its sound comes."""

    def __init__(self, pause_s: float):
        self.pause_s = pause_s
        self._done: list[Phase] = []
        self._name: str | None = None  # the open phase; None before any sound
        self._start = self._last = 0.0

    def sound(self, at: float, name: str | None) -> None:
        """Machine sound at ``at``; ``name`` None keeps the phase it was in."""
        was = self._name
        if was is not None and at - self._last >= self.pause_s:
            self._done += [Phase(was, self._start, self._last), Phase(PAUSE, self._last, at)]
            self._name = None
        name = name or was or UNKNOWN
        if self._name is None:
            self._name, self._start = name, at
        elif self._name == UNKNOWN:
            # The ear names a phase only after hearing some of it: the sound before was
            # that phase already.
            self._name = name
        elif name != self._name:
            self._done.append(Phase(self._name, self._start, at))
            self._name, self._start = name, at
        self._last = at

    def now(self, at: float) -> str | None:
        if self._name is None:
            return None
        return PAUSE if at - self._last >= self.pause_s else self._name

    def until(self, end: float | None = None) -> tuple[Phase, ...]:
        """The phases so far, the open one ending at its last sound; an ``end`` (the beep)
        adds the quiet before it as a pause when it is long enough to be one."""
        if self._name is None:
            return tuple(self._done)
        phases = [*self._done, Phase(self._name, self._start, self._last)]
        if end is not None and end - self._last >= self.pause_s:
            phases.append(Phase(PAUSE, self._last, end))
        return tuple(phases)


# --- The machine --------------------------------------------------------------------------

class CycleMachine:
    """One washing machine's cycle, driven by `feed`.

    ``usual`` is the usual cycle duration in seconds (from the history), None while there is
    none; `set_usual` changes it as the history learns.
    """

    def __init__(self, settings: CycleSettings, usual: float | None = None):
        self.settings = settings
        self._start_s = settings.start_minutes * 60
        self._pause_s = settings.pause_minutes * 60
        self._quiet_s = settings.quiet_minutes * 60
        self._late_s = settings.late_beep_minutes * 60
        self._no_beep_s = settings.no_beep_minutes * 60
        self._remind_s = settings.remind_minutes * 60
        self._usual: float | None = None
        self.set_usual(usual)
        self._state = State.IDLE
        self._now: float | None = None
        self._onset = _Onset(settings.start_window_minutes * 60, self._pause_s)
        # The running or stopped cycle.
        self._started_at: float | None = None
        self._last_sound_at: float | None = None
        self._phases: _PhaseLog | None = None
        self._overdue_said = False
        # The finished cycle, waiting for the owner.
        self._finished_at: float | None = None
        self._reminders = 0
        self._next_reminder = 0.0
        self._resumable: tuple[float, _PhaseLog, bool] | None = None
        """The finished cycle's (start, phases, overdue said), should it take up again."""

    @property
    def state(self) -> State:
        return self._state

    def set_usual(self, seconds: float | None) -> None:
        """The usual cycle duration (None: no history yet, so `NoBeepYet` applies)."""
        if seconds is not None and not seconds > 0:
            raise ValueError(f"usual cycle duration {seconds} s: expected more than 0")
        self._usual = seconds

    def snapshot(self) -> Snapshot:
        phase = None
        if self._state is State.RUNNING and self._phases and self._now is not None:
            phase = self._phases.now(self._now)
        return Snapshot(self._state, self._started_at, self._finished_at,
                        self._last_sound_at, phase, self._reminders)

    def resume_waiting(self, finished_at: float, reminders: int) -> None:
        """After a restart: the cycle that finished at ``finished_at`` (this machine's clock;
        it may be long before the first input) still waits to be emptied, ``reminders``
        given. Reminders go on from there; only an idle machine (a fresh one) resumes."""
        if self._state is not State.IDLE:
            raise RuntimeError(f"cannot resume a finished cycle while {self._state.value}")
        self._state = State.NOT_EMPTIED
        self._finished_at, self._reminders = finished_at, max(0, reminders)
        self._next_reminder = finished_at + (self._reminders + 1) * self._remind_s

    def phases(self) -> tuple[Phase, ...]:
        """The running or stopped cycle's phases so far (empty otherwise)."""
        return self._phases.until() if self._phases is not None else ()

    def feed(self, event: Input) -> list[CycleEvent]:
        """Take one input (in time order) and return what it made happen, oldest first."""
        if not isinstance(event, (Heard, Quiet, Beep, Emptied, Tick)):
            raise TypeError(f"not a cycle input: {event!r}")
        at, seconds = self._advance(event.at)
        # Timeouts first: they fell due before this input arrived.
        out = self._timeout(at)
        if isinstance(event, Heard) and event.machine:
            out += self._machine_sound(at, seconds, event.phase)
        elif isinstance(event, Beep):
            out += self._beep(at)
        elif isinstance(event, Emptied):
            out += self._emptied(at, event.by)
        for e in out:
            log.debug("cycle: %s", e)
        return out

    # -- time ---------------------------------------------------------------------------

    def _advance(self, at: float) -> tuple[float, float]:
        """The input's time, never before the previous one's, and the seconds of sound it
        stands for."""
        if self._now is None:
            self._now = at
            return at, 0.0
        if at < self._now:
            if self._now - at > BACKWARDS_WARN_SECONDS:
                log.warning("cycle input %.1f s older than the previous one: taken as now",
                            self._now - at)
            at = self._now
        seconds = min(at - self._now, MAX_STRETCH_SECONDS)
        self._now = at
        return at, seconds

    def _timeout(self, at: float) -> list[CycleEvent]:
        """The one timeout due at ``at``, if any."""
        if self._state is State.RUNNING:
            return self._running_timeout(at)
        if self._state is State.STOPPED_WITHOUT_BEEP:
            assert self._started_at is not None and self._last_sound_at is not None
            if at - self._last_sound_at < self._late_s:
                return []
            gone = StopExpired(at, self._started_at, self._last_sound_at)
            self._forget_cycle()
            self._state = State.IDLE
            return [gone]
        if self._state is State.NOT_EMPTIED and at >= self._next_reminder:
            assert self._finished_at is not None
            if self._reminders >= self.settings.max_reminders:
                over = RemindersExhausted(at, self._finished_at, self._reminders)
                self._forget_finished()
                self._state = State.IDLE
                return [over]
            self._reminders += 1
            # On the schedule; after a gap (a suspended daemon) the schedule starts again
            # from now, or every input after the gap would be due another reminder.
            due = self._next_reminder + self._remind_s
            self._next_reminder = due if due > at else at + self._remind_s
            return [Reminder(at, self._finished_at, self._reminders)]
        return []

    def _running_timeout(self, at: float) -> list[CycleEvent]:
        assert self._started_at is not None and self._last_sound_at is not None
        assert self._phases is not None
        if at - self._last_sound_at >= self._quiet_s:
            self._state = State.STOPPED_WITHOUT_BEEP
            return [StoppedWithoutBeep(at, self._started_at, self._last_sound_at,
                                       self._phases.until())]
        if self._overdue_said:
            return []
        elapsed = at - self._started_at
        if self._usual is not None and elapsed >= self.settings.long_factor * self._usual:
            self._overdue_said = True
            return [RunningLong(at, self._started_at, elapsed, self._usual)]
        if self._usual is None and elapsed >= self._no_beep_s:
            self._overdue_said = True
            return [NoBeepYet(at, self._started_at, elapsed)]
        return []

    # -- inputs -------------------------------------------------------------------------

    def _machine_sound(self, at: float, seconds: float, phase: str | None
                       ) -> list[CycleEvent]:
        if self._state is State.RUNNING:
            assert self._phases is not None
            self._phases.sound(at, phase)
            self._last_sound_at = at
            return []
        self._onset.add(at, seconds, phase)
        if self._onset.seconds < self._start_s:
            return []
        out: list[CycleEvent] = []
        if self._state is State.NOT_EMPTIED and self._took_up_again():
            return [self._resume(at)]
        if self._state is State.NOT_EMPTIED:
            assert self._finished_at is not None
            out.append(PresumedEmptied(at, self._finished_at))
            self._forget_finished()
        # From stopped_without_beep: that cycle is over as stopped (its StoppedWithoutBeep
        # said so); the new one replaces it.
        self._forget_cycle()
        self._phases = _PhaseLog(self._pause_s)
        stretches = self._onset.stretches()
        for t, p in stretches:
            self._phases.sound(t, p)
        self._onset.clear()
        self._started_at, self._last_sound_at = stretches[0][0], at
        self._state = State.RUNNING
        out.append(CycleStarted(at, self._started_at))
        return out

    def _beep(self, at: float) -> list[CycleEvent]:
        if self._state is State.NOT_EMPTIED:
            # Many machines repeat their end signal until the door opens: the same finish.
            log.debug("cycle: a beep while not emptied, taken as the same end signal")
            return []
        started = self._started_at  # None from idle: a cycle of unknown start
        phases = self._phases.until(at) if self._phases is not None else ()
        done = CycleFinished(at, started, None if started is None else at - started,
                             self._usual, phases)
        self._resumable = None
        if self._state is State.RUNNING:
            assert started is not None and self._phases is not None
            self._resumable = (started, self._phases, self._overdue_said)
        self._forget_cycle()
        self._onset.clear()  # the cycle's own sound must not start the next one
        self._state = State.NOT_EMPTIED
        self._finished_at, self._reminders = at, 0
        self._next_reminder = at + self._remind_s
        return [done]

    def _emptied(self, at: float, by: str) -> list[CycleEvent]:
        if self._state is State.NOT_EMPTIED:
            done = EmptiedEvent(at, by, self._finished_at)
            self._forget_finished()
        elif self._state is State.STOPPED_WITHOUT_BEEP:
            done = EmptiedEvent(at, by, None)
            self._forget_cycle()
        else:
            # A button under an old message: nothing waits to be emptied.
            log.info("'emptied' (%s) while %s: nothing to empty", by, self._state.value)
            return []
        self._state = State.IDLE
        return [done]

    def _forget_cycle(self) -> None:
        self._started_at = self._last_sound_at = None
        self._phases = None
        self._overdue_said = False

    def _took_up_again(self) -> bool:
        """The sound starting now began within a pause of the beep that finished a running
        cycle: the machine never stopped."""
        first = self._onset.stretches()[0][0]
        return (self._resumable is not None and self._finished_at is not None
                and first - self._finished_at < self._pause_s)

    def _resume(self, at: float) -> CycleEvent:
        assert self._resumable is not None and self._finished_at is not None
        started, phases, overdue = self._resumable
        beep_at = self._finished_at
        for t, p in self._onset.stretches():
            phases.sound(t, p)
        self._onset.clear()
        self._forget_finished()
        self._started_at, self._last_sound_at = started, at
        self._phases, self._overdue_said = phases, overdue
        self._state = State.RUNNING
        return CycleResumed(at, started, beep_at)

    def _forget_finished(self) -> None:
        self._finished_at = None
        self._reminders = 0
        self._resumable = None
