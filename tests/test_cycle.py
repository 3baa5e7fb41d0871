"""The cycle state machine on made-up timelines: no process, no clock, no sound.

A `Timeline` lays out what the daemon would feed: a `Heard` every hop (1.5 s) while the gate
is open, a `Quiet` or a `Tick` every 5 s otherwise. Each test asserts the exact outputs, in
order, and their times (± one hop for what follows a sound or a beep, ± one tick or 1 min
for timeouts).
"""

from __future__ import annotations

import random

import pytest

from beepnet.cycle.events import (
    PAUSE, Beep, CycleEvent, CycleFinished, CycleResumed, CycleStarted, Emptied, EmptiedEvent, Heard, Input,
    NoBeepYet, Phase, PresumedEmptied, Quiet, Reminder, RemindersExhausted, RunningLong,
    State, StopExpired, StoppedWithoutBeep, Tick)
from beepnet.cycle.machine import CycleMachine, CycleSettings

HOP = 1.5
"""The daemon analyses a window every 1.5 s while the gate is open."""
TICK = 5.0
"""And says Quiet or Tick this often otherwise."""
MIN = 60.0
SETTINGS = CycleSettings()


class Timeline:
    """Inputs in time order, laid out stretch by stretch from ``t`` (seconds)."""

    def __init__(self, t: float = 0.0):
        self.t = t
        self.inputs: list[Input] = []

    def sound(self, minutes: float, phase: str | None = None, machine: bool = True
              ) -> Timeline:
        """A `Heard` every hop for ``minutes``; the first stretch ends one hop from now."""
        for _ in range(round(minutes * MIN / HOP)):
            self.t += HOP
            self.inputs.append(Heard(self.t, machine, phase))
        return self

    def quiet(self, minutes: float) -> Timeline:
        return self._every_tick(minutes, Quiet)

    def ticks(self, minutes: float) -> Timeline:
        return self._every_tick(minutes, Tick)

    def _every_tick(self, minutes: float, kind: type) -> Timeline:
        for _ in range(round(minutes * MIN / TICK)):
            self.t += TICK
            self.inputs.append(kind(self.t))
        return self

    def beep(self) -> float:
        """A beep pattern starting now; returns its time."""
        self.inputs.append(Beep(self.t))
        return self.t

    def emptied(self, by: str = "button") -> float:
        self.inputs.append(Emptied(self.t, by))
        return self.t


def run(m: CycleMachine, inputs: list[Input]) -> list[CycleEvent]:
    out: list[CycleEvent] = []
    for i in inputs:
        out += m.feed(i)
    return out


def kinds(events: list[CycleEvent]) -> list[type]:
    return [type(e) for e in events]


def near(x: float, tolerance: float = HOP):
    return pytest.approx(x, abs=tolerance)


def test_a_normal_cycle_starts_once_and_finishes_at_the_beep():
    tl = Timeline().quiet(1)
    sound_from = tl.t
    tl.sound(40, "washing")
    spin_from = tl.t
    tl.sound(10, "spinning")
    last_sound = tl.t
    tl.quiet(2)                                  # the drain, quiet
    beep = tl.beep()
    tl.ticks(5)
    m = CycleMachine(SETTINGS)
    out = run(m, tl.inputs)

    assert kinds(out) == [CycleStarted, CycleFinished]
    started, finished = out
    assert started.started_at == near(sound_from)             # when the sound began ...
    assert started.at == near(sound_from + 2 * MIN)           # ... confirmed 2 min later
    assert finished.at == near(beep)
    assert finished.started_at == started.started_at
    assert finished.duration == near(beep - sound_from)
    assert finished.usual is None
    assert [p.name for p in finished.phases] == ["washing", "spinning", PAUSE]
    washing, spinning, pause = finished.phases
    assert washing.start == near(sound_from) and washing.end == near(spin_from)
    assert spinning.end == near(last_sound) and pause.end == beep
    assert pause.seconds == near(2 * MIN, TICK)
    assert m.state is State.NOT_EMPTIED
    snap = m.snapshot()
    assert snap.finished_at == beep and snap.reminders == 0 and snap.elapsed(beep) is None


def test_a_pause_shorter_than_quiet_minutes_does_not_end_the_cycle():
    tl = Timeline().quiet(1)
    tl.sound(20, "washing")
    pause_from = tl.t
    tl.quiet(9.5)                                # the machine soaks, quiet
    pause_to = tl.t
    tl.sound(20)                                 # no phase told: still washing
    beep = tl.beep()
    m = CycleMachine(SETTINGS)
    mid_pause = tl.inputs.index(Quiet(pause_from + 5 * MIN))
    out = run(m, tl.inputs[:mid_pause + 1])
    snap = m.snapshot()
    assert snap.state is State.RUNNING and snap.phase == PAUSE
    assert snap.elapsed(pause_from + 5 * MIN) == near(25 * MIN, HOP)
    out += run(m, tl.inputs[mid_pause + 1:])

    assert kinds(out) == [CycleStarted, CycleFinished]
    assert [p.name for p in out[1].phases] == ["washing", PAUSE, "washing"]
    pause = out[1].phases[1]
    assert pause.start == near(pause_from) and pause.end == near(pause_to)
    assert out[1].at == near(beep)


def test_a_cycle_without_a_beep_stops_once_then_expires():
    tl = Timeline().quiet(1)
    tl.sound(30, "washing")
    last_sound = tl.t
    tl.quiet(90)
    m = CycleMachine(SETTINGS)
    out = run(m, tl.inputs)

    assert kinds(out) == [CycleStarted, StoppedWithoutBeep, StopExpired]
    _, stopped, expired = out
    assert stopped.last_sound_at == near(last_sound)
    assert stopped.at == near(last_sound + 10 * MIN, MIN)
    assert stopped.started_at == out[0].started_at
    assert [p.name for p in stopped.phases] == ["washing"]
    assert expired.at == near(last_sound + 60 * MIN, MIN)
    assert m.state is State.IDLE


def test_a_late_beep_after_the_stop_finishes_the_same_cycle():
    tl = Timeline().quiet(1)
    sound_from = tl.t
    tl.sound(30, "washing")
    last_sound = tl.t
    tl.quiet(25)                                 # a long, quiet drain
    beep = tl.beep()
    m = CycleMachine(SETTINGS)
    out = run(m, tl.inputs)

    assert kinds(out) == [CycleStarted, StoppedWithoutBeep, CycleFinished]
    assert m.snapshot().state is State.NOT_EMPTIED
    finished = out[2]
    assert finished.started_at == out[0].started_at == near(sound_from)
    assert finished.duration == near(beep - sound_from)
    assert finished.phases[-1] == Phase(PAUSE, pytest.approx(last_sound), beep)


def test_the_owner_can_empty_a_stopped_cycle_and_a_new_cycle_replaces_one():
    tl = Timeline().quiet(1)
    tl.sound(30).quiet(15)
    emptied = tl.emptied("/emptied")
    m = CycleMachine(SETTINGS)
    out = run(m, tl.inputs)
    assert kinds(out) == [CycleStarted, StoppedWithoutBeep, EmptiedEvent]
    assert out[2] == EmptiedEvent(emptied, "/emptied", None)
    assert m.state is State.IDLE

    tl = Timeline().quiet(1)
    tl.sound(30).quiet(15)
    again = tl.t
    tl.sound(5)
    m = CycleMachine(SETTINGS)
    out = run(m, tl.inputs)
    # The stopped cycle was reported; the new one simply starts (nothing said it finished).
    assert kinds(out) == [CycleStarted, StoppedWithoutBeep, CycleStarted]
    assert out[2].started_at == near(again + HOP)


def test_talking_in_an_idle_room_starts_no_cycle():
    rng = random.Random(4)
    inputs: list[Input] = []
    t = 0.0
    for _ in range(1200):                        # 30 min of talk and silence
        t += HOP
        if rng.random() < 0.3:
            inputs.append(Quiet(t))
        else:
            # Now and then a word the classifier takes for the machine.
            inputs.append(Heard(t, rng.random() < 0.08))
    tl = Timeline(t)
    tl.sound(1.5, "washing")                     # the vacuum cleaner, taken for the machine
    tl.quiet(3)
    m = CycleMachine(SETTINGS)
    assert run(m, inputs + tl.inputs) == []
    assert m.state is State.IDLE and m.snapshot().started_at is None


def test_talking_and_short_gaps_do_not_stop_a_cycle_from_starting():
    tl = Timeline().quiet(1)
    tl.sound(0.05)                               # a word taken for the machine ...
    tl.sound(1.5, machine=False)                 # ... in a talk before it starts
    sound_from = tl.t
    for minute in range(4):
        tl.sound(0.5)
        tl.sound(0.1, machine=False)             # someone talks over it
        if minute == 1:
            tl.quiet(0.5)                        # the drum rests
        tl.sound(0.4)
    m = CycleMachine(SETTINGS)
    out = run(m, tl.inputs)
    assert kinds(out) == [CycleStarted]
    assert out[0].started_at == near(sound_from)
    # 2 min of machine sound, with 0.2 min of talk and 0.5 min of rest among it.
    assert out[0].at == near(sound_from + 2.7 * MIN, 2 * HOP)


def test_the_sound_after_a_beep_does_not_start_the_next_cycle():
    # The daemon starts in the last minutes of a cycle: not enough sound to call it running.
    tl = Timeline().quiet(1)
    tl.sound(1.5, "spinning")
    beep = tl.beep()
    tl.sound(1)                                  # the pump, the door lock
    tl.ticks(2)
    again = tl.beep()                            # the machine repeats its end signal
    tl.ticks(30)
    m = CycleMachine(SETTINGS)
    out = run(m, tl.inputs)
    assert kinds(out) == [CycleFinished, Reminder]
    assert out[0] == CycleFinished(beep, None, None, None, ())
    assert again > beep and out[1] == Reminder(pytest.approx(beep + 30 * MIN, abs=TICK), beep, 1)


def finished_cycle(m: CycleMachine) -> tuple[Timeline, float, list[CycleEvent]]:
    tl = Timeline().quiet(1)
    tl.sound(45, "washing").sound(5, "spinning").quiet(1)
    beep = tl.beep()
    out = run(m, tl.inputs)
    assert kinds(out) == [CycleStarted, CycleFinished]
    return Timeline(tl.t), beep, out


def test_reminders_every_30_min_up_to_the_max_then_it_stops_waiting():
    tl = Timeline().quiet(20)
    beep = tl.beep()                             # no cycle seen: a finish of unknown start
    tl.ticks(5 * 60)
    m = CycleMachine(SETTINGS)
    out = run(m, tl.inputs)

    assert kinds(out) == [CycleFinished] + [Reminder] * 6 + [RemindersExhausted]
    assert out[0] == CycleFinished(beep, None, None, None, ())
    for n, r in enumerate(out[1:7], start=1):
        assert r.number == n and r.finished_at == beep
        assert r.at == near(beep + 30 * MIN * n, TICK)
    assert out[7].at == near(beep + 7 * 30 * MIN, TICK) and out[7].reminders == 6
    assert m.state is State.IDLE


def test_emptied_stops_the_reminders():
    m = CycleMachine(SETTINGS)
    tl, beep, _ = finished_cycle(m)
    tl.ticks(70)
    emptied = tl.emptied()
    tl.ticks(4 * 60)
    out = run(m, tl.inputs)
    assert kinds(out) == [Reminder, Reminder, EmptiedEvent]
    assert out[2] == EmptiedEvent(emptied, "button", beep)
    assert m.state is State.IDLE
    assert m.feed(Emptied(tl.t + 1, "button")) == []          # nothing left to empty


def test_the_next_cycle_ends_the_not_emptied_state():
    m = CycleMachine(SETTINGS)
    tl, beep, _ = finished_cycle(m)
    tl.ticks(45)
    second_from = tl.t
    tl.sound(30, "washing")
    beep2 = tl.beep()
    tl.ticks(40)
    out = run(m, tl.inputs)

    assert kinds(out) == [Reminder, PresumedEmptied, CycleStarted, CycleFinished, Reminder]
    presumed, started = out[1], out[2]
    assert presumed == PresumedEmptied(started.at, beep)
    assert "presumably emptied" in presumed.reason
    assert started.started_at == near(second_from + HOP)
    assert started.at == near(second_from + 2 * MIN)
    assert out[3].duration == near(beep2 - second_from)
    assert out[4] == Reminder(pytest.approx(beep2 + 30 * MIN, abs=TICK), beep2, 1)


def test_running_long_against_the_usual_duration_once_a_cycle():
    m = CycleMachine(SETTINGS, usual=60 * MIN)
    tl = Timeline().quiet(1)
    sound_from = tl.t
    tl.sound(160)                                # past 1.4 x 1 h, and past 150 min
    out = run(m, tl.inputs)
    assert kinds(out) == [CycleStarted, RunningLong]
    long = out[1]
    assert long.at == near(out[0].started_at + 84 * MIN)
    assert long.elapsed == near(84 * MIN) and long.usual == 60 * MIN
    assert long.started_at == near(sound_from)


def test_no_beep_yet_without_history_once_a_cycle_then_running_long_once_learnt():
    m = CycleMachine(SETTINGS)
    tl = Timeline().quiet(1)
    tl.sound(160).quiet(15)
    out = run(m, tl.inputs)
    assert kinds(out) == [CycleStarted, NoBeepYet, StoppedWithoutBeep]
    assert out[1].at == near(out[0].started_at + 150 * MIN)
    assert out[1].elapsed == near(150 * MIN)

    m.set_usual(100 * MIN)                       # the history has learnt
    tl = Timeline(tl.t).sound(150)
    out = run(m, tl.inputs)
    assert kinds(out) == [CycleStarted, RunningLong]
    assert out[1].elapsed == near(140 * MIN)


def test_time_never_runs_backwards():
    tl = Timeline().quiet(1)
    tl.sound(30, "washing")
    beep = tl.t
    tl.sound(0.25)                               # the pattern is reported after it ends ...
    tl.inputs.append(Beep(beep))                 # ... with the time it began
    tl.ticks(40)
    rng = random.Random(7)
    jittered = [type(i)(**{**vars(i), "at": i.at + rng.uniform(-1.0, 1.0)})
                for i in tl.inputs]
    for inputs in (tl.inputs, jittered):
        m = CycleMachine(SETTINGS)
        out = run(m, inputs)
        assert kinds(out) == [CycleStarted, CycleFinished, Reminder]
        ats = [e.at for e in out]
        assert ats == sorted(ats)
        finished = out[1]
        assert finished.at == near(beep + 0.25 * MIN, 1.0)   # taken as the latest time
        assert finished.duration > 0
        assert all(p.end >= p.start for p in finished.phases)

    m = CycleMachine(SETTINGS)
    run(m, Timeline().sound(3).inputs)
    assert m.state is State.RUNNING
    now = 3 * MIN
    assert m.feed(Tick(now - 20)) == [] and m.feed(Heard(now - 10, True)) == []
    assert m.snapshot().last_sound_at == now                 # not 10 s back


def test_a_suspended_daemon_gets_one_reminder_not_a_burst():
    m = CycleMachine(SETTINGS)
    tl, beep, _ = finished_cycle(m)
    woke = beep + 5 * 3600
    assert m.feed(Tick(woke)) == [Reminder(woke, beep, 1)]
    assert m.feed(Tick(woke + 1)) == [] and m.feed(Heard(woke + 2, False)) == []
    out = run(m, Timeline(woke + 2).ticks(31).inputs)
    assert out == [Reminder(pytest.approx(woke + 30 * MIN, abs=TICK), beep, 2)]

    # Suspended while idle: a stretch of machine sound on waking is one stretch, not hours.
    m = CycleMachine(SETTINGS)
    assert m.feed(Heard(0.0, True)) == [] and m.feed(Heard(3600.0, True)) == []
    assert run(m, Timeline(3600.0).sound(1.5).inputs) == []

    # Suspended while running: the stop is reported, then (next input) its expiry; not all
    # of "no beep yet", the stop and the expiry at once.
    m = CycleMachine(SETTINGS)
    tl = Timeline().sound(10)
    run(m, tl.inputs)
    assert kinds(m.feed(Tick(tl.t + 5 * 3600))) == [StoppedWithoutBeep]
    assert kinds(m.feed(Tick(tl.t + 5 * 3600 + 5))) == [StopExpired]


@pytest.mark.parametrize("bad", [dict(start_minutes=6.0), dict(pause_minutes=10.0),
                                 dict(late_beep_minutes=5.0), dict(long_factor=1.0),
                                 dict(max_reminders=-1), dict(remind_minutes=0.0)])
def test_settings_that_cannot_work_are_refused(bad):
    with pytest.raises(ValueError, match="cycle\\."):
        CycleSettings(**bad)


def test_a_finished_cycle_resumes_waiting_after_a_restart():
    """The daemon restarted while the laundry waited: reminders go on where they were, the
    owner's Emptied still ends them; only a fresh (idle) machine resumes."""
    S = SETTINGS
    m = CycleMachine(S)
    m.resume_waiting(finished_at=-100.0, reminders=2)     # finished before this process
    assert m.state is State.NOT_EMPTIED and m.snapshot().reminders == 2
    assert m.snapshot().finished_at == -100.0
    assert m.feed(Tick(0.0)) == []
    due = -100.0 + 3 * S.remind_minutes * MIN             # the third reminder's time
    assert m.feed(Tick(due - 1)) == []
    (r,) = m.feed(Tick(due))
    assert isinstance(r, Reminder) and r.number == 3 and r.finished_at == -100.0
    (e,) = m.feed(Emptied(due + 5, "button"))
    assert isinstance(e, EmptiedEvent) and e.finished_at == -100.0
    assert m.state is State.IDLE
    running = CycleMachine(S)
    for x in Timeline().sound(3).inputs:
        running.feed(x)
    assert running.state is State.RUNNING
    with pytest.raises(RuntimeError):
        running.resume_waiting(0.0, 0)


def test_sound_before_the_first_named_phase_is_that_phase():
    """The ear names a phase only after hearing some of it: no "unknown" stretch at the
    start of every cycle."""
    m = CycleMachine(SETTINGS)
    for x in Timeline().sound(3).sound(5, "washing").sound(4, "spinning").inputs:
        m.feed(x)
    phases = m.phases()
    assert [p.name for p in phases] == ["washing", "spinning"], phases
    assert phases[0].start == HOP


def test_a_beep_the_machine_runs_on_after_was_not_its_end():
    """A beep mid-cycle (a signal, or a beep misheard in the drum): the machine took up
    again at once, so the cycle goes on with its start and phases, and its real end is
    one finish of the whole cycle. Sound that comes back after a pause is a new cycle."""
    tl = Timeline().sound(10, "washing")
    beep = tl.beep()
    tl.sound(3, "washing").sound(5, "spinning")
    end = tl.beep()
    out = run(CycleMachine(SETTINGS), tl.inputs)
    kinds = [type(e) for e in out]
    assert kinds == [CycleStarted, CycleFinished, CycleResumed, CycleFinished], out
    started, first, resumed, last = out
    assert resumed.started_at == started.started_at == HOP and resumed.beep_at == beep
    # Told once the sound after the beep has lasted as a start needs.
    assert abs(resumed.at - (beep + SETTINGS.start_minutes * MIN)) <= 2 * HOP
    assert last.at == end and last.duration == end - HOP
    assert [p.name for p in last.phases] == ["washing", "spinning"], last.phases

    # The same sound after a pause of a minute or more: the laundry's next cycle.
    tl = Timeline().sound(10, "washing")
    tl.beep()
    tl.ticks(SETTINGS.pause_minutes + 0.5).sound(3, "washing")
    kinds = [type(e) for e in run(CycleMachine(SETTINGS), tl.inputs)]
    assert kinds == [CycleStarted, CycleFinished, PresumedEmptied, CycleStarted], kinds
