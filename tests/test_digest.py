"""The digest: its schedule, when it goes out (local time, across DST), and its text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from beepnet.notify.digest import (DigestStats, LevelRange, Schedule, digest_text, next_time,
                                   parse_schedule)

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600.0
DAY = 24 * HOUR


def at(*args: int, tz=BERLIN) -> float:
    """Epoch of a wall-clock time in ``tz`` (the first pass, for a repeated one)."""
    return datetime(*args, tzinfo=tz).timestamp()


def wall(t: float, tz=BERLIN) -> str:
    return datetime.fromtimestamp(t, tz).strftime("%a %Y-%m-%d %H:%M %Z")


# -- parse_schedule

@pytest.mark.parametrize("text, want", [
    ("daily 09:00", Schedule(9, 0)),
    ("Daily 9:05", Schedule(9, 5)),
    ("  DAILY   23:59 ", Schedule(23, 59)),
    ("daily 00:00", Schedule(0, 0)),
    ("weekly mon 09:00", Schedule(9, 0, 0)),
    ("Weekly MON 09:00", Schedule(9, 0, 0)),
    ("weekly Monday 18:30", Schedule(18, 30, 0)),
    ("weekly tue 07:00", Schedule(7, 0, 1)),
    ("weekly wednesday 07:00", Schedule(7, 0, 2)),
    ("weekly Thursday 07:00", Schedule(7, 0, 3)),
    ("weekly fri 07:00", Schedule(7, 0, 4)),
    ("weekly saturday 07:00", Schedule(7, 0, 5)),
    ("weekly SUN 7:00", Schedule(7, 0, 6)),
])
def test_parse_good(text, want):
    assert parse_schedule(text) == want


def test_parse_empty_is_no_digest():
    assert parse_schedule("") is None
    assert parse_schedule("   ") is None


@pytest.mark.parametrize("text", [
    "daily", "daily 24:00", "daily 09:60", "daily 9", "daily 09:00 extra", "daily 0900",
    "weekly 09:00", "weekly funday 09:00", "weekly mon", "weekly mon tue 09:00",
    "hourly 09:00", "09:00", "every day 09:00", "daily\n09:00x", "daily -1:00",
])
def test_parse_bad_is_one_line(text):
    with pytest.raises(ValueError) as e:
        parse_schedule(text)
    msg = str(e.value)
    assert "\n" not in msg
    shown = " ".join(text.split()) if "\n" in text else text.strip()
    assert msg == (f'notify.digest = "{shown}" is not allowed: expected "daily 09:00" or '
                   '"weekly mon 09:00"')


def test_schedule_reads_back():
    assert str(parse_schedule("Weekly Sunday 7:05")) == "weekly sun 07:05"
    assert str(parse_schedule("daily 9:00")) == "daily 09:00"


# -- next_time, with an explicit zone

def test_next_daily():
    s = parse_schedule("daily 09:00")
    assert wall(next_time(s, at(2026, 1, 10, 8, 0), BERLIN)) == "Sat 2026-01-10 09:00 CET"
    # strictly after: at 09:00 sharp the next is tomorrow's
    assert wall(next_time(s, at(2026, 1, 10, 9, 0), BERLIN)) == "Sun 2026-01-11 09:00 CET"
    assert next_time(s, at(2026, 1, 10, 9, 0) - 0.5, BERLIN) == at(2026, 1, 10, 9, 0)
    assert wall(next_time(s, at(2026, 1, 10, 23, 30), BERLIN)) == "Sun 2026-01-11 09:00 CET"


def test_next_across_midnight_and_the_year():
    s = parse_schedule("daily 00:15")
    assert wall(next_time(s, at(2026, 1, 10, 23, 50), BERLIN)) == "Sun 2026-01-11 00:15 CET"
    assert wall(next_time(s, at(2026, 12, 31, 23, 59), BERLIN)) == "Fri 2027-01-01 00:15 CET"
    s = parse_schedule("daily 23:45")
    assert wall(next_time(s, at(2026, 1, 10, 23, 50), BERLIN)) == "Sun 2026-01-11 23:45 CET"


def test_next_weekly():
    s = parse_schedule("weekly mon 09:00")
    # 2026-01-12 is a Monday
    assert wall(next_time(s, at(2026, 1, 12, 8, 59), BERLIN)) == "Mon 2026-01-12 09:00 CET"
    assert wall(next_time(s, at(2026, 1, 12, 9, 0), BERLIN)) == "Mon 2026-01-19 09:00 CET"
    assert wall(next_time(s, at(2026, 1, 11, 22, 0), BERLIN)) == "Mon 2026-01-12 09:00 CET"
    assert wall(next_time(s, at(2026, 1, 13, 0, 0), BERLIN)) == "Mon 2026-01-19 09:00 CET"
    s = parse_schedule("weekly sun 23:30")
    assert wall(next_time(s, at(2026, 12, 28, 0, 0), BERLIN)) == "Sun 2027-01-03 23:30 CET"


def test_next_in_utc():
    s = parse_schedule("daily 09:00")
    after = datetime(2026, 3, 29, 8, 0, tzinfo=timezone.utc).timestamp()
    assert next_time(s, after, timezone.utc) == after + HOUR


def test_dst_spring_forward_berlin():
    # 2026-03-29: 02:00 CET -> 03:00 CEST, a day of 23 h
    s = parse_schedule("daily 09:00")
    first = next_time(s, at(2026, 3, 28, 9, 0), BERLIN)
    assert wall(first) == "Sun 2026-03-29 09:00 CEST"
    assert first - at(2026, 3, 28, 9, 0) == 23 * HOUR
    assert next_time(s, first, BERLIN) - first == DAY

    w = parse_schedule("weekly sun 09:00")
    t = next_time(w, at(2026, 3, 22, 9, 0), BERLIN)
    assert wall(t) == "Sun 2026-03-29 09:00 CEST" and t - at(2026, 3, 22, 9, 0) == 7 * DAY - HOUR

    # 02:30 does not exist that night: the digest goes at 03:30 CEST (02:30 read as CET),
    # once, and the next night at 02:30 again
    s = parse_schedule("daily 02:30")
    t = next_time(s, at(2026, 3, 29, 0, 0), BERLIN)
    assert t == datetime(2026, 3, 29, 1, 30, tzinfo=timezone.utc).timestamp()
    assert wall(t) == "Sun 2026-03-29 03:30 CEST"
    assert wall(next_time(s, t, BERLIN)) == "Mon 2026-03-30 02:30 CEST"


def test_dst_fall_back_berlin():
    # 2026-10-25: 03:00 CEST -> 02:00 CET, a day of 25 h
    s = parse_schedule("daily 09:00")
    first = next_time(s, at(2026, 10, 24, 9, 0), BERLIN)
    assert wall(first) == "Sun 2026-10-25 09:00 CET"
    assert first - at(2026, 10, 24, 9, 0) == 25 * HOUR

    # 02:30 happens twice that night: one digest, at the first
    s = parse_schedule("daily 02:30")
    t = next_time(s, at(2026, 10, 25, 0, 0), BERLIN)
    assert t == datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc).timestamp()
    again = next_time(s, t, BERLIN)
    assert wall(again) == "Mon 2026-10-26 02:30 CET"
    # asked during the second 02:00-03:00, it is not sent again either
    second_pass = datetime(2026, 10, 25, 1, 15, tzinfo=timezone.utc).timestamp()
    assert next_time(s, second_pass, BERLIN) == again


CASES = [
    ("daily 09:00", at(2026, 3, 28, 9, 0)),
    ("daily 09:00", at(2026, 10, 24, 9, 0)),
    ("daily 02:30", at(2026, 3, 29, 0, 0)),
    ("daily 02:30", at(2026, 10, 25, 0, 0)),
    ("daily 02:30", datetime(2026, 10, 25, 1, 15, tzinfo=timezone.utc).timestamp()),
    ("daily 00:15", at(2026, 1, 10, 23, 50)),
    ("weekly sun 09:00", at(2026, 3, 22, 9, 0)),
    ("weekly sun 02:30", at(2026, 10, 18, 3, 0)),
    ("weekly mon 09:00", at(2026, 1, 12, 9, 0)),
]


@pytest.mark.parametrize("tzname", ["Europe/Berlin", "CET-1CEST,M3.5.0,M10.5.0/3"])
def test_local_time_agrees_with_the_zone(tzname):
    """tz=None reads the process's local zone (TZ): the same answers as ZoneInfo's, from a
    zone name and from a POSIX TZ string."""
    code = ("import json, sys\n"
            "from beepnet.notify.digest import next_time, parse_schedule\n"
            "cases = json.loads(sys.argv[1])\n"
            "print(json.dumps([next_time(parse_schedule(s), a) for s, a in cases]))\n")
    env = {**os.environ, "TZ": tzname}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(CASES)], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    local = json.loads(out)
    zoned = [next_time(parse_schedule(s), a, BERLIN) for s, a in CASES]
    assert local == zoned, [(s, wall(a), wall(x), wall(y))
                            for (s, a), x, y in zip(CASES, local, zoned) if x != y]


# -- digest_text

def stats(**kw) -> DigestStats:
    now = at(2026, 5, 5, 9, 0)
    base = dict(since=now - DAY, now=now, uptime_seconds=6 * DAY + 3 * HOUR + 20 * 60,
                cycles=2, finished=2, stopped_without_beep=0, beeps=3, alerts_sent=3,
                corrections=1, outbox_waiting=0, disk_free_mb=12_300.0,
                level_min_dbfs=-62.2, level_max_dbfs=-18.4)
    base.update(kw)
    return DigestStats(**base)


def test_digest_text_example():
    assert digest_text(stats(), name="garage") == (
        "beepnet (garage): the last 24 h\n"
        "Up 6 d 3 h · 2 cycles (2 finished) · 3 beeps, 3 alerts sent · 1 correction\n"
        "Outbox empty · 12.3 GB free · microphone −62 to −18 dBFS")


def test_digest_text_singular_and_unknowns():
    s = stats(since=at(2026, 5, 5, 9, 0) - 7 * DAY, uptime_seconds=2 * HOUR + 5 * 60,
              cycles=1, finished=1, beeps=1, alerts_sent=1, corrections=0, outbox_waiting=1,
              disk_free_mb=None, level_min_dbfs=None, level_max_dbfs=None)
    assert digest_text(s) == (
        "beepnet: the last 7 days\n"
        "Up 2 h 5 min · 1 cycle (finished) · 1 beep, 1 alert sent\n"
        "Outbox: 1 message waiting · free disk space unknown · microphone level unknown")


def test_digest_text_nothing_happened():
    s = stats(uptime_seconds=40 * 60, cycles=0, finished=0, beeps=0, alerts_sent=0,
              corrections=0, outbox_waiting=3, disk_free_mb=850.4, level_min_dbfs=-70.4,
              level_max_dbfs=-69.6)
    assert digest_text(s, "washer").splitlines() == [
        "beepnet (washer): the last 24 h",
        "Up 40 min · no cycles · no beeps, no alerts sent",
        "Outbox: 3 messages waiting · 850 MB free · microphone −70 dBFS"]


def test_digest_text_cycles_and_corrections():
    s = stats(cycles=3, finished=1, stopped_without_beep=2, corrections=2)
    line = digest_text(s).splitlines()[1]
    assert "3 cycles (1 finished, 2 stopped without a beep)" in line
    assert line.endswith("· 2 corrections")
    assert "1 cycle ·" in digest_text(stats(cycles=1, finished=0))  # still running


def test_digest_text_notes_and_short_periods():
    s = stats(since=at(2026, 5, 5, 9, 0) - 5 * HOUR,
              notes=["microphone lost for 3 min at 02:10", "restarted at 04:00"])
    lines = digest_text(s).splitlines()
    assert lines[0] == "beepnet: the last 5 h"
    assert lines[3:] == ["• microphone lost for 3 min at 02:10", "• restarted at 04:00"]
    many = digest_text(stats(notes=[f"note {i}" for i in range(12)])).splitlines()
    assert many[-1] == "• and 4 more notes" and len(many) == 3 + 8 + 1
    assert digest_text(stats(since=at(2026, 5, 5, 9, 0) - 600)).startswith(
        "beepnet: the last 10 min")
    # a day with a DST change has 23 or 25 h: still "the last 24 h"
    assert digest_text(stats(since=at(2026, 5, 5, 9, 0) - 23 * HOUR)).startswith(
        "beepnet: the last 24 h")


# -- LevelRange

def test_level_range():
    r = LevelRange()
    assert r.take() == (None, None)
    for v in (-40.0, -62.5, float("nan"), -18.0, float("-inf"), -30.0):
        r.add(v)
    assert r.take() == (-62.5, -18.0)
    assert r.take() == (None, None)  # reset by take
    r.add(-50.0)
    assert r.take() == (-50.0, -50.0)
