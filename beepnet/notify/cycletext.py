"""What the owner reads about the machine's cycle: one function per message, from times
(epoch seconds, local time) and durations (seconds) the daemon already worked out.

Short enough for a phone's notification line: the first sentence says what happened and
when, the rest what to do about it.
"""

from __future__ import annotations

from .timefmt import hhmm, minutes_text


def _span(seconds: float) -> str:
    return minutes_text(max(0, int(round(seconds / 60))))


def _title(machine: str) -> str:
    return machine[:1].upper() + machine[1:]


def finished_text(machine: str, at: float, duration: float | None, usual: float | None,
                  estimate_end: float | None = None) -> str:
    """"Washer finished at 14:02 after 1 h 32 min (usual: 1 h 30)." ``estimate_end``: when
    it was expected to end (said half-way through), to say how far off that was."""
    text = f"{_title(machine)} finished at {hhmm(at)}"
    if duration is not None:
        text += f" after {_span(duration)}"
        if usual is not None:
            text += f" (usual: {_span(usual)})"
    text += "."
    if estimate_end is not None:
        off = at - estimate_end
        if abs(off) < 90:
            text += f" As expected ({hhmm(estimate_end)})."
        else:
            text += (f" Expected at {hhmm(estimate_end)}: {_span(abs(off))} "
                     f"{'later' if off > 0 else 'sooner'}.")
    return text


def beep_again_text(machine: str, at: float, finished_at: float | None) -> str:
    """A beep while the laundry waits: many machines repeat their end signal."""
    since = f" (it finished at {hhmm(finished_at)})" if finished_at is not None else ""
    return f"{_title(machine)} beeped again at {hhmm(at)}{since}."


def started_text(machine: str, started: float, usual: float | None,
                 expected_end: float | None) -> str:
    text = f"{_title(machine)} started at {hhmm(started)}."
    if expected_end is not None:
        text += f" Usually done around {hhmm(expected_end)}."
    elif usual is not None:
        text += f" It usually takes {_span(usual)}."
    return text


def resumed_text(machine: str, beep_at: float) -> str:
    return (f"{_title(machine)} is still running: the beep at {hhmm(beep_at)} was not its "
            "end (it took up again at once). ❌ Not the beep under that alert teaches "
            "beepnet, if it was not a beep at all.")


def stopped_text(machine: str, last_sound: float, ran: float) -> str:
    return (f"{_title(machine)} went quiet at {hhmm(last_sound)} after {_span(ran)}, without "
            "its end beep: paused, power cut, door open, or a beep I missed? /listen hears "
            "it now; 🧺 Emptied if you took the laundry out.")


def running_long_text(machine: str, elapsed: float, usual: float) -> str:
    more = int(round((elapsed / usual - 1) * 100))
    return (f"{_title(machine)} has been running for {_span(elapsed)}, {more} % longer than "
            f"usual ({_span(usual)}), and has not beeped yet.")


def no_beep_yet_text(machine: str, elapsed: float, last_sound: float | None) -> str:
    """With no history: the meaning of the old watch ("no beep yet")."""
    text = (f"No beep yet: the {machine} has been running for {_span(elapsed)} without its "
            "end beep")
    if last_sound is not None:
        text += f"; last heard at {hhmm(last_sound)}"
    return text + "."


def reminder_text(machine: str, finished_at: float, now: float, number: int,
                  of: int) -> str:
    return (f"🧺 Still in the {machine}: it finished at {hhmm(finished_at)}, "
            f"{_span(now - finished_at)} ago (reminder {number} of {of}). "
            "Press 🧺 Emptied or send /emptied once it is out.")


def emptied_reply(machine: str, finished_at: float | None, now: float) -> str:
    when = (f" (finished at {hhmm(finished_at)}, {_span(now - finished_at)} ago)"
            if finished_at is not None else "")
    return f"🧺 Noted: the {machine} is emptied{when}. No more reminders."


def nothing_to_empty(machine: str, state: str) -> str:
    if state == "running":
        return f"The {machine} is still running: nothing to empty yet."
    return f"Nothing waits in the {machine}: no finished cycle since the last one was emptied."


def status_line(machine: str, snap: dict, now: float) -> str:
    """The /status line about the cycle, from the status file's ``cycle`` entry (wall
    times: `beepnet.daemon.cycleflow.CycleFlow.status`)."""
    name = _title(machine)
    state = snap.get("state")
    if state == "running" and snap.get("started"):
        text = f"{name}: running for {_span(now - snap['started'])}"
        if snap.get("phase"):
            text += f" ({snap['phase']})"
        left, end = snap.get("remaining"), snap.get("expected_end")
        if left is not None and end is not None:
            text += (f"; usually done in about {_span(left)} (around {hhmm(end)})"
                     if left >= 60 else "; usually done about now")
        elif snap.get("learning"):
            text += "; still learning how long its cycles take"
        return text + "."
    if state == "not_emptied" and snap.get("finished"):
        text = f"{name}: finished at {hhmm(snap['finished'])}, not emptied yet"
        if snap.get("reminders"):
            text += f" ({snap['reminders']} reminder(s) sent)"
        return text + "; /emptied once it is out."
    if state == "stopped_without_beep" and snap.get("last_sound"):
        return (f"{name}: went quiet at {hhmm(snap['last_sound'])} without its end beep; "
                "/emptied once it is out.")
    last = snap.get("last")
    if last and last.get("ended"):
        how = {"beeped": "finished", "stopped": "stopped without a beep"}.get(
            last.get("outcome"), "ended")
        dur = f" after {_span(last['duration'])}" if last.get("duration") else ""
        return f"{name}: idle; last cycle {how} at {hhmm(last['ended'])}{dur}."
    return f"{name}: idle."
