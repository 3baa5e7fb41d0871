"""What happens when the machine starts, finishes, stops, and waits to be emptied.

The one place that turns what the daemon hears into what the owner is told. Events flow one
way:

    supervisor (process messages)            scored chunks, beeps, levels, time passing,
        |                                    the owner's "Emptied"
        v
    MachineEar -> cycle inputs (Heard, Beep, Tick, Emptied)
        v
    CycleMachine -> cycle events (started, finished, stopped, reminders ...)
        v
    here: the notifier (messages, the beep alert's caption and buttons), the history
    (`beepnet.cycle.history`, SQLite) and the status file (/status, `beepnet monitor`)

Times: the cycle machine runs on the recording's own clock (`CycleClock`): the monotonic
clock for a microphone, stretched by ``--speed`` for a replay, so a cycle replayed 20 times
faster than real time lasts as long, in the cycle's terms, as it did when recorded. Wall
times (for people and the history) are derived from it, never the other way round.

What the daemon cannot do without is never lost to the history: a history that cannot be
opened or written is logged once, and cycles and messages go on without it.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from dataclasses import dataclass

from ..config import CycleConfig
from ..cycle.ear import MachineEar
from ..cycle.estimate import Estimate, PastCycle, estimate, usual_duration
from ..cycle.events import (PAUSE, Beep, CycleEvent, CycleFinished, CycleResumed,
                            CycleStarted, Emptied, EmptiedEvent, NoBeepYet, Phase,
                            PresumedEmptied, Reminder, RemindersExhausted, RunningLong, State,
                            StopExpired, StoppedWithoutBeep, Tick)
from ..cycle.history import History, HistoryError, PhaseRecord
from ..cycle.machine import CycleMachine
from ..audio import SAMPLE_RATE
from ..messages import BeepStarted, Chunk, Detection, Scored
from ..notify import cycletext
from ..notify.timefmt import hhmm, hms
from ..notify.notifier import alert_id, beep_caption
from .lastsound import LastSound

log = logging.getLogger(__name__)

TICK_SECONDS = 2.0
"""With nothing heard, time is fed to the cycle machine this often (cycle seconds), so its
timeouts (quiet, reminders) fire without sound."""
QUEUE_SLACK_SECONDS = 1.0
"""How long a finished window may still be on its way from the recorder: time is only fed
up to where every window has arrived and been scored."""
LEVEL_EVERY = 10.0
"""One level (the loudest) per this many cycle seconds goes into the history, for its plot."""
PROGRESS_EVERY = 60.0
"""The running cycle is written to the history this often: a kill -9 loses at most this."""
PAST_CYCLES = 50
"""Finished cycles the usual length and the time-left estimate learn from."""


class CycleClock:
    """Cycle seconds. Live: the monotonic clock (a microphone's stream restarts from zero
    when it is reopened; the monotonic clock goes on). A replay: the recording's own
    seconds, exact at any ``--speed``, so a cycle replayed 20 times faster than real time
    lasts as long, in the cycle's terms, as when it was recorded, and its events can be
    checked against the file."""

    def __init__(self, replay: bool = False):
        self.replay = replay
        self._stream_now = 0.0
        self._wall0 = time.time()

    def chunk(self, c: Chunk) -> float:
        """The middle of a chunk's window."""
        if self.replay:
            return c.start_sample / SAMPLE_RATE + c.duration / 2
        return (c.start_mono or time.monotonic()) + c.duration / 2

    def chunk_start(self, c: Chunk) -> float:
        return c.start_sample / SAMPLE_RATE if self.replay else c.start_mono or self.now()

    def beep(self, b: BeepStarted) -> float:
        return b.offset if self.replay else b.mono or time.monotonic()

    def heard(self, samples: int, mono: float) -> float:
        """A heartbeat: audio up to ``samples`` of the stream has been read (at ``mono``);
        returns its time on this clock."""
        if self.replay:
            self._stream_now = max(self._stream_now, samples / SAMPLE_RATE)
            return self._stream_now
        return mono

    def now(self) -> float:
        return self._stream_now if self.replay else time.monotonic()

    def wall(self, at: float) -> float:
        """The wall time of cycle time ``at``. Live, read against the wall clock now, so a
        step of it (NTP after boot) is followed; a replay's timeline starts when the
        daemon did."""
        if self.replay:
            return self._wall0 + at
        return at + (time.time() - time.monotonic())

    def say(self, at: float) -> str:
        """``at`` for the log: the time of day, and for a replay where in the recording."""
        text = hms(self.wall(at))
        return f"{text} ({at:.1f} s into the recording)" if self.replay else text


@dataclass
class _Open:
    """The cycle the history has a row for: running, stopped, or waiting to be emptied."""

    id: int | None
    """Its history row (None: no history)."""
    started: float | None = None  # cycle time
    estimate_end: float | None = None
    """Cycle time it was expected to end, said half-way through."""


class CycleFlow:
    def __init__(self, cfg: CycleConfig, notifier, *, history: History | None,
                 clock: CycleClock, chunk_seconds: float, hop_seconds: float,
                 last_sound: LastSound | None = None):
        """``last_sound``: keeps the machine's last minute for the "went quiet" message
        (None: the recorder keeps no recent audio, storage.recent_minutes = 0)."""
        self.cfg = cfg
        self.notifier = notifier
        self.history = history
        self.clock = clock
        self.machine = CycleMachine(cfg.settings())
        self.ear = MachineEar(cfg.machine_score, hop_seconds=hop_seconds)
        self.last_sound = last_sound
        self._lag = chunk_seconds + hop_seconds + QUEUE_SLACK_SECONDS
        self._fed = clock.now()
        self._past: list[PastCycle] = []
        self._cycle: _Open | None = None
        """The running or stopped cycle."""
        self._done: _Open | None = None
        """The finished (or stopped) cycle waiting to be emptied."""
        self._empty_key: str | None = None
        """The key the 🧺 Emptied buttons of the waiting cycle carry."""
        self._finishes: dict[str, CycleFinished] = {}
        """Chunk path of a beep's first chunk -> the finish it made, until its alert."""
        self._levels: deque[tuple[float, float]] = deque()
        """(cycle time, dBFS) of the last minutes, the running cycle's not yet written."""
        self._level_bin: tuple[float, float] | None = None
        self._next_progress = 0.0
        self._estimate: Estimate | None = None
        self._emptied_q: queue.Queue = queue.Queue()
        self._answers: queue.Queue = queue.Queue()
        """(alert id, label) of the owner's ✅/❌, from the bot's thread."""
        self.snapshot: dict = {"machine": cfg.machine, "state": State.IDLE.value}
        """What /status and the monitor show (replaced, never changed in place: other
        threads read it)."""
        self._history_failed = False
        self._learn()
        self._resume()
        self._publish()

    # -- from the supervisor -----------------------------------------------------------------

    def scored(self, msg: Scored) -> None:
        if msg.error:
            return
        c = msg.chunk
        heard = self.ear.hear(self.clock.chunk(c), msg.labels, c.peak_dbfs)
        if heard.machine and self.last_sound is not None:
            self.last_sound.heard(heard.at, c.path)
        self._feed_input(heard)

    def level(self, samples: int, mono: float, dbfs: float) -> None:
        """A heartbeat: audio read up to ``samples``, its loudest frame ``dbfs`` (the level
        line of the history's plot)."""
        at = self.clock.heard(samples, mono)
        if self._level_bin is not None and at - self._level_bin[0] < LEVEL_EVERY:
            self._level_bin = (self._level_bin[0], max(self._level_bin[1], dbfs))
            return
        if self._level_bin is not None:
            self._levels.append(self._level_bin)
        self._level_bin = (at, dbfs)
        # Enough to cover a cycle's start, which is dated back to its first sound.
        keep = self.cfg.start_window_minutes * 60 + PROGRESS_EVERY
        while self._levels and self._cycle is None and self._levels[0][0] < at - keep:
            self._levels.popleft()

    def beep_started(self, msg: BeepStarted) -> None:
        """A beep pattern began: for the cycle, the machine has finished (its alert, with the
        clip, follows when the pattern ends: `alert`)."""
        for e in self._feed_input(Beep(self.clock.beep(msg))):
            if isinstance(e, CycleFinished):
                self._finishes[msg.chunk.path] = e

    def alert(self, det: Detection) -> bool:
        """The beep pattern ended: alert it. Returns False when the cooldown held it."""
        finish = self._finishes.pop(det.chunk.path, None)
        self._finishes.clear()  # a beep whose pattern never ended was alerted without it
        if finish is not None:
            estimate_end = (self.clock.wall(self._done.estimate_end)
                            if self._done and self._done.estimate_end is not None else None)
            caption = cycletext.finished_text(self.cfg.machine, det.time, finish.duration,
                                              finish.usual, estimate_end)
        else:
            snap = self.machine.snapshot()
            finished = (self.clock.wall(snap.finished_at) if snap.finished_at is not None
                        else None)
            caption = cycletext.beep_again_text(self.cfg.machine, det.time, finished)
        # The beep's own line stays: its second and score tell the owner how sure it was.
        alerted = self.notifier.alert(det, caption=f"{caption}\n{beep_caption(det)}",
                                      emptied=self._empty_key)
        if alerted and finish is not None and self._done and self._done.id is not None:
            self._write("note_alert", self._done.id, det.time, alert_id(det))
        return alerted

    def tick(self, oldest_unscored: Chunk | None, final: bool = False) -> None:
        """Time passes: feed it up to where every window has been heard (``final``: all
        of it, everything heard is in)."""
        now = self.clock.now()
        upto = now if final else now - self._lag
        if oldest_unscored is not None:
            upto = min(upto, self.clock.chunk_start(oldest_unscored))
        for by, key in _drained(self._emptied_q):
            self._on_emptied(by, key, max(upto, self._fed))
        for alert, label in _drained(self._answers):
            self._write("feedback_for_alert", alert, label)
        if upto - self._fed >= TICK_SECONDS:
            self._feed_input(Tick(upto))
        snap = self.machine.snapshot()
        if (self.last_sound is not None and snap.phase == PAUSE
                and snap.last_sound_at is not None):
            # Fallen quiet: its last minute is still in the recorder's ring; keep it.
            self.last_sound.keep(snap.last_sound_at)
        if now >= self._next_progress:
            self._next_progress = now + PROGRESS_EVERY
            self._progress(now)

    def emptied(self, by: str, key: str | None) -> str:
        """The owner's 🧺 Emptied (``key``: the button's) or /emptied (None), from any thread:
        the reply now, the change in the supervisor's loop."""
        snap = self.snapshot
        waiting = snap.get("state") in (State.NOT_EMPTIED.value,
                                         State.STOPPED_WITHOUT_BEEP.value)
        if key is not None and key != snap.get("empty_key"):
            return f"That {self.cfg.machine} cycle is over already."
        if not waiting:
            return cycletext.nothing_to_empty(self.cfg.machine, snap.get("state", ""))
        self._emptied_q.put((by, key))
        return cycletext.emptied_reply(self.cfg.machine, snap.get("finished"), time.time())

    def answered(self, alert: str, label: str) -> None:
        """The owner's ✅/❌ on an alert (any thread): kept with the cycle it finished."""
        self._answers.put((alert, label))

    def prune(self, keep_days: float) -> None:
        self._write("prune", keep_days)

    def close(self) -> None:
        if self._cycle is not None:
            self._progress(self.clock.now())
        if self.history is not None:
            self.history.close()

    # -- into the cycle machine ----------------------------------------------------------------

    def _feed_input(self, event) -> list[CycleEvent]:
        self._fed = max(self._fed, event.at)
        out = self.machine.feed(event)
        for e in out:
            self._on(e)
        if out:
            self._publish()
        return out

    def _on_emptied(self, by: str, key: str | None, at: float) -> None:
        if key is not None and key != self._empty_key:
            return  # a cycle that ended meanwhile
        self._feed_input(Emptied(at, by))

    # -- what each cycle event does ------------------------------------------------------------

    def _on(self, e: CycleEvent) -> None:
        name, wall = self.cfg.machine, self.clock.wall
        log.info("cycle: %s at %s%s", _NAMES[type(e)], self.clock.say(e.at), self._detail(e))
        if isinstance(e, CycleStarted):
            if self._done is not None and self._done is self._cycle:
                # A stopped cycle, replaced by the next: emptied before it, presumably.
                if self._done.id is not None:
                    self._write("note_emptied", self._done.id, wall(e.at),
                                "next cycle")
                self._done, self._empty_key = None, None
            self._cycle = _Open(self._write("begin",
                                            wall(e.started_at)), e.started_at)
            self._estimate = None
            self._progress(e.at)
            if self.cfg.tell_start:
                usual = usual_duration(self._past)
                self.notifier.message("cycle", cycletext.started_text(
                    name, wall(e.started_at), usual,
                    wall(e.started_at) + usual if usual else None))
        elif isinstance(e, CycleFinished):
            cycle = self._cycle or _Open(None)
            phases = self._phase_records(e.phases)
            if cycle.id is not None:
                self._save_levels(cycle, e.at, phases)
                self._write("end", cycle.id, ended=wall(e.at), outcome="beeped",
                            phases=phases)
            elif e.started_at is None:
                cycle.id = self._write("beep_without_cycle", wall(e.at))
            self._cycle, self._done = None, cycle
            self._empty_key = str(int(wall(e.at)))
            self._let_last_sound_go()  # the beep says how it ended
            self._learn()
        elif isinstance(e, CycleResumed):
            cycle = self._done or _Open(None, e.started_at)
            if cycle.id is not None:
                self._write("reopen", cycle.id)
            self._cycle, self._done, self._empty_key = cycle, None, None
            self.notifier.message("cycle", cycletext.resumed_text(name, wall(e.beep_at)))
        elif isinstance(e, StoppedWithoutBeep):
            cycle = self._cycle or _Open(None)
            if cycle.id is not None:
                phases = self._phase_records(e.phases)
                self._save_levels(cycle, e.last_sound_at, phases)
                self._write("end", cycle.id, ended=wall(e.last_sound_at),
                            outcome="stopped", phases=phases)
            self._done = cycle  # waits to be emptied, or for a late beep
            self._empty_key = str(int(wall(e.last_sound_at)))
            self.notifier.message("cycle", cycletext.stopped_text(
                name, wall(e.last_sound_at), e.last_sound_at - e.started_at),
                emptied=self._empty_key,
                audio=self.last_sound.mp3() if self.last_sound is not None else None,
                title=f"{name} {hhmm(wall(e.last_sound_at))}")
        elif isinstance(e, StopExpired):
            self._let_last_sound_go()
            if self._done and self._done.id is not None:
                self._write("note_emptied", self._done.id, wall(e.at),
                            "nobody said (no late beep)")
            self._cycle = self._done = None
            self._empty_key = None
        elif isinstance(e, RunningLong):
            self.notifier.message("cycle", cycletext.running_long_text(name, e.elapsed,
                                                                       e.usual))
        elif isinstance(e, NoBeepYet):
            snap = self.machine.snapshot()
            last = wall(snap.last_sound_at) if snap.last_sound_at is not None else None
            self.notifier.message("timeout", cycletext.no_beep_yet_text(name, e.elapsed, last))
        elif isinstance(e, Reminder):
            self.notifier.message("reminder", cycletext.reminder_text(
                name, wall(e.finished_at), wall(e.at), e.number, self.cfg.max_reminders),
                emptied=self._empty_key)
            if self._done and self._done.id is not None:
                self._write("note_reminder", self._done.id, wall(e.at))
        elif isinstance(e, RemindersExhausted):
            if self._done and self._done.id is not None:
                self._write("note_emptied", self._done.id, wall(e.at),
                            "nobody said (reminders ran out)")
            self._done, self._empty_key = None, None
        elif isinstance(e, (EmptiedEvent, PresumedEmptied)):
            by = e.by if isinstance(e, EmptiedEvent) else "next cycle"
            self._let_last_sound_go()
            if self._done and self._done.id is not None:
                self._write("note_emptied", self._done.id, wall(e.at), by)
            if isinstance(e, EmptiedEvent) and self._cycle is self._done:
                self._cycle = None  # a stopped cycle, emptied: over
            self._done, self._empty_key = None, None

    def _let_last_sound_go(self) -> None:
        if self.last_sound is not None:
            self.last_sound.clear()

    def _detail(self, e: CycleEvent) -> str:
        say = self.clock.say
        if isinstance(e, CycleStarted):
            return f"; its sound began at {say(e.started_at)}"
        if isinstance(e, CycleResumed):
            return f"; the beep at {say(e.beep_at)} was not its end"
        if isinstance(e, CycleFinished) and e.duration is not None:
            return f" after {e.duration / 60:.1f} min"
        if isinstance(e, (StoppedWithoutBeep, StopExpired)):
            return f"; last sound at {say(e.last_sound_at)}"
        if isinstance(e, (RunningLong, NoBeepYet)):
            return f" after {e.elapsed / 60:.1f} min"
        if isinstance(e, Reminder):
            return f" ({e.number} of {self.cfg.max_reminders})"
        if isinstance(e, EmptiedEvent):
            return f" by {e.by}"
        return ""

    # -- the history ---------------------------------------------------------------------------

    def _write(self, method: str, *args, **kwargs):
        """Call a history method (by name); None without a history; a failure is logged
        once and the cycle goes on."""
        if self.history is None:
            return None
        try:
            result = getattr(self.history, method)(*args, **kwargs)
        except HistoryError as e:
            if not self._history_failed:
                log.error("the cycle history cannot be written (%s); cycles are still "
                          "followed and told", e)
            self._history_failed = True
            return None
        if self._history_failed:
            log.info("the cycle history can be written again")
            self._history_failed = False
        return result

    def _progress(self, now: float) -> None:
        """Write the running cycle so far, and think again about when it ends."""
        cycle = self._cycle
        snap = self.machine.snapshot()
        if cycle is None or snap.state is not State.RUNNING:
            self._publish()
            return
        wall = self.clock.wall
        if cycle.id is not None:
            last = now if snap.last_sound_at is None else snap.last_sound_at
            self._save_levels(cycle, last, self._phase_records(self.machine.phases()))
        start = cycle.started if cycle.started is not None else now
        rel = tuple(Phase(p.name, p.start - start, p.end - start)
                    for p in self.machine.phases())
        elapsed = now - start
        self._estimate = estimate(self._past, elapsed, rel)
        if (self._estimate is not None and cycle.estimate_end is None
                and elapsed >= self._estimate.total / 2):
            cycle.estimate_end = start + self._estimate.total
            log.info("cycle: half-way estimate: the %s should finish around %s (%s)",
                     self.cfg.machine, self.clock.say(cycle.estimate_end), self._estimate.how)
            if cycle.id is not None:
                self._write("note_estimate", cycle.id, at=wall(now),
                            end=wall(cycle.estimate_end))
        self._publish()

    def _save_levels(self, cycle: _Open, last_sound: float, phases: list[PhaseRecord]
                     ) -> None:
        """The running cycle so far, with the levels not written yet."""
        if self._level_bin is not None:  # the open bin too: the cycle may end with it
            self._levels.append(self._level_bin)
            self._level_bin = None
        levels = [(self.clock.wall(t), round(db, 1)) for t, db in self._levels
                  if cycle.started is None or t >= cycle.started - LEVEL_EVERY]
        self._write("progress", cycle.id, last_sound=self.clock.wall(last_sound),
                    phases=phases, levels=levels)
        self._levels.clear()

    def _phase_records(self, phases) -> list[PhaseRecord]:
        wall = self.clock.wall
        return [PhaseRecord(p.name, wall(p.start), wall(p.end)) for p in phases]

    def _learn(self) -> None:
        """The usual length and the estimate's past cycles, from the history."""
        records = self._write("finished", PAST_CYCLES) or []
        self._past = [PastCycle(r.duration, tuple(
            Phase(p.name, p.start - r.started, p.end - r.started) for p in r.phases))
            for r in records if r.duration and r.started is not None]
        self.machine.set_usual(usual_duration(self._past))

    def _resume(self) -> None:
        """A cycle that finished before a restart and still waits to be emptied goes on
        waiting: its reminders continue, its 🧺 buttons still work."""
        last = self._write("last_open")
        if last is None or last.outcome != "beeped" or last.ended is None:
            return
        waited = time.time() - last.ended
        if (last.reminders >= self.cfg.max_reminders
                or waited >= (self.cfg.max_reminders + 1) * self.cfg.remind_minutes * 60):
            return  # the reminders had run out: nobody is waited on
        now = self.clock.now()
        self.machine.resume_waiting(now - max(waited, 0.0), last.reminders)
        self._done = _Open(last.id)
        self._empty_key = str(int(last.ended))
        log.info("the %s finished at %s and is not emptied yet: reminders go on",
                 self.cfg.machine, hms(last.ended))

    # -- what /status and the monitor show -----------------------------------------------------

    def _publish(self) -> None:
        snap, wall, now = self.machine.snapshot(), self.clock.wall, self.clock.now()
        doc = {"machine": self.cfg.machine, "state": snap.state.value,
               "phase": snap.phase, "reminders": snap.reminders,
               "started": wall(snap.started_at) if snap.started_at is not None else None,
               "finished": wall(snap.finished_at) if snap.finished_at is not None else None,
               "last_sound": (wall(snap.last_sound_at) if snap.last_sound_at is not None
                              else None),
               "empty_key": self._empty_key}
        est = self._estimate
        if snap.state is State.RUNNING and snap.started_at is not None:
            if est is not None:
                left = max(0.0, snap.started_at + est.total - now)
                doc.update(remaining=left, expected_end=wall(now + left), how=est.how)
            else:
                doc["learning"] = True
        if snap.state is State.IDLE:
            last = self._write("recent", 1) or []
            if last:
                r = last[0]
                doc["last"] = {"ended": r.ended, "outcome": r.outcome,
                               "duration": r.duration}
        self.snapshot = doc


_NAMES = {CycleStarted: "started", CycleFinished: "finished", CycleResumed: "still running",
          StoppedWithoutBeep: "stopped without a beep", StopExpired: "no late beep, idle",
          RunningLong: "running longer than usual", NoBeepYet: "no beep yet",
          Reminder: "reminder", RemindersExhausted: "reminders ran out",
          EmptiedEvent: "emptied", PresumedEmptied: "next cycle, the last one presumed emptied"}


def _drained(q: queue.Queue):
    """What another thread has put on ``q`` so far."""
    while True:
        try:
            yield q.get_nowait()
        except queue.Empty:
            return


def open_history(path) -> History | None:
    """The history, or None (logged) when it cannot be opened: the daemon goes on without."""
    try:
        h = History.open(path)
    except HistoryError as e:
        log.error("no cycle history: %s", e)
        return None
    n = h.interrupted()
    if n:
        log.info("%d cycle(s) in the history were running when beepnet stopped: marked as "
                 "such", n)
    return h
