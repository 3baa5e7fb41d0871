"""The cycle history on real SQLite files, and `beepnet history` run as a user runs it.

Everything here uses real files in tmp_path: a child process killed with SIGKILL mid-write,
garbage and truncated files, a hand-written version-1 database, a full database (SQLite's
``max_page_count``: the same SQLITE_FULL a full disk gives). The command runs as a
subprocess (``python -m beepnet history``), its output read as a user or a script would.

`sample_history` builds the made-up history of three cycles the README picture is drawn
from (``python tests/test_history.py DIR`` writes it to DIR/cycles.db).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pngs import check_png

from beepnet.cycle import history as history_module
from beepnet.cycle.events import Phase
from beepnet.cycle.history import (
    DB_NAME, CycleRecord, History, HistoryError, PhaseRecord, schema_version, to_wall)

MIN = 60.0
REPO = Path(__file__).resolve().parents[1]


# --- a made-up history ----------------------------------------------------------------------

def _levels(phases: list[PhaseRecord], end: float, rng: random.Random
            ) -> list[tuple[float, float]]:
    """A level every 10 s, as the daemon sends: the drum turning and resting while washing,
    a roar that builds while spinning, the room's hum in pauses and before the beep."""
    out = []
    t = phases[0].start + 10.0
    while t <= end:
        p = next((p for p in phases if p.start <= t < p.end), None)
        name = p.name if p else "pause"
        if name == "washing":
            # The loudest moment of each 10 s: the drum turning, but now and then a rest
            # long enough to fill the 10 s.
            level = (-45.0 if rng.random() < 0.12 else -36.0) + rng.gauss(0, 1.5)
        elif name == "spinning":
            assert p is not None
            ramp = min((t - p.start) / 150.0, 1.0, (p.end - t) / 60.0)
            level = -40.0 + 22.0 * max(ramp, 0.0) + rng.gauss(0, 1.0)
        else:
            level = -58.0 + rng.gauss(0, 1.2)
        out.append((t, round(level, 1)))
        t += 10.0
    return out


def _phases(t0: float, spec: list[tuple[str, float]]) -> list[PhaseRecord]:
    phases, t = [], t0
    for name, minutes in spec:
        phases.append(PhaseRecord(name, t, t + minutes * MIN))
        t += minutes * MIN
    return phases


SAMPLE_BASE = time.mktime((2026, 12, 3, 9, 14, 0, 0, 0, -1))
"""Thursday 3 December 2026, 09:14 local time: the first sample cycle's start."""


def sample_history(path: Path, base: float = SAMPLE_BASE) -> list[int]:
    """Three cycles over three days, written through the API as the daemon would: a cotton
    wash that beeped (estimate 4 min late, one reminder, emptied by the button), a cycle
    stopped without a beep (door opened), a quick wash that beeped (estimate 2 min early,
    two reminders). Returns their ids, oldest first."""
    rng = random.Random(16)
    ids = []
    with History.open(path) as h:
        # Cotton 40: wash, a soak, wash, a short spin, rinse, the final spin, the beep.
        t0 = base
        ph = _phases(t0, [("washing", 18), ("pause", 2), ("washing", 29), ("spinning", 4),
                          ("washing", 17), ("spinning", 12), ("pause", 2)])
        end = ph[-1].end
        cid = h.begin(t0)
        _progress(h, cid, ph, end, rng, estimate=(t0 + 42 * MIN, end + 4 * MIN))
        h.end(cid, ended=end, outcome="beeped", phases=ph)
        h.note_alert(cid, end + 21)
        h.note_feedback(cid, "beep")
        h.note_reminder(cid, end + 30 * MIN)
        h.note_emptied(cid, end + 41 * MIN, "button")
        ids.append(cid)
        # The next evening: washed 41 min, the door opened, no beep.
        t0 = base + 86400 + 9 * 3600 + 48 * MIN
        ph = _phases(t0, [("washing", 35), ("pause", 1.5), ("washing", 4.5)])
        last = ph[-1].end
        cid = h.begin(t0)
        _progress(h, cid, ph, last, rng)
        h.end(cid, ended=last, outcome="stopped", phases=ph)
        h.note_emptied(cid, last + 63 * MIN, "/emptied")
        ids.append(cid)
        # The morning after: a quick wash.
        t0 = base + 2 * 86400 - 94 * MIN
        ph = _phases(t0, [("washing", 19), ("spinning", 8), ("pause", 1.5)])
        end = ph[-1].end
        cid = h.begin(t0)
        _progress(h, cid, ph, end, rng, estimate=(t0 + 15 * MIN, end - 1.6 * MIN))
        h.end(cid, ended=end, outcome="beeped", phases=ph)
        h.note_alert(cid, end + 18)
        h.note_reminder(cid, end + 30 * MIN)
        h.note_reminder(cid, end + 60 * MIN)
        h.note_emptied(cid, end + 65 * MIN, "button")
        ids.append(cid)
    return ids


def _progress(h: History, cid: int, phases: list[PhaseRecord], end: float,
              rng: random.Random, estimate: tuple[float, float] | None = None) -> None:
    """The daemon's progress calls, one a minute, each with the levels since the last."""
    levels = _levels(phases, end, rng)
    sent, t = 0, phases[0].start
    while sent < len(levels):
        t += MIN
        new = [lv for lv in levels[sent:] if lv[0] <= t]
        sent += len(new)
        so_far = tuple(PhaseRecord(p.name, p.start, min(p.end, t)) for p in phases
                       if p.start < t)
        h.progress(cid, last_sound=min(t, end), phases=so_far, levels=new)
        if estimate and estimate[0] <= t < estimate[0] + MIN:
            h.note_estimate(cid, at=estimate[0], end=estimate[1])


# --- helpers ------------------------------------------------------------------------------

def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store" / DB_NAME


def beepnet_history(env: dict, store: Path, *args: str, extra_env: dict | None = None
                    ) -> subprocess.CompletedProcess:
    """``python -m beepnet history`` as a user runs it, the history in ``store``."""
    return subprocess.run(
        [sys.executable, "-m", "beepnet", "history", "--set", f"storage.dir={store}", *args],
        env=dict(env, **(extra_env or {})), capture_output=True, text=True, timeout=120,
        cwd=REPO, check=False)


def one_line(text: str) -> str:
    """The single line of ``text``; fails on more, or on a traceback."""
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == history_module.__name__ and r.levelno >= logging.WARNING]


def aside_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".corrupt-" in p.name)


# --- the API --------------------------------------------------------------------------------

def test_a_full_cycle_round_trips(tmp_path):
    path = db_path(tmp_path)
    wash = PhaseRecord("washing", 1000.0, 1600.0)
    with History.open(path) as h:
        cid = h.begin(1000.0)
        h.progress(cid, last_sound=1300.0, phases=[PhaseRecord("washing", 1000.0, 1300.0)],
                   levels=[(1010.0, -35.04), (1020.0, -36.0)])
        assert h.last_open().outcome == "running"
        h.note_estimate(cid, at=1300.0, end=1750.0)
        h.progress(cid, last_sound=1600.0, phases=[wash], levels=[(1590.0, -20.0)])
        final = (wash, PhaseRecord("spinning", 1600.0, 1700.0),
                 PhaseRecord("pause", 1700.0, 1800.0))
        h.end(cid, ended=1800.0, outcome="beeped", phases=final)
        h.note_alert(cid, 1805.0)
        h.note_reminder(cid, 3600.0)
        h.note_reminder(cid, 5400.0)
        h.note_feedback(cid, "not_beep")
        h.note_feedback(cid, "beep")  # the owner changed their mind: the last answer counts
        h.note_emptied(cid, 6000.0, "button")
        h.note_emptied(cid, 7000.0, "next cycle")  # the first word on it stays
    # Another process's view, later: a fresh connection to the same file.
    with History.open(path) as h:
        (c,) = h.recent()
        assert c == CycleRecord(
            id=cid, started=1000.0, ended=1800.0, outcome="beeped", phases=final,
            alert_at=1805.0, reminders=2, reminded_at=5400.0, emptied_at=6000.0,
            emptied_by="button", feedback="beep", estimate_end=1750.0, estimate_at=1300.0)
        assert c.duration == 800.0 and c.estimate_error == -50.0
        assert [p.seconds for p in c.phases] == [600.0, 100.0, 100.0]
        assert h.levels(cid) == [(1010.0, -35.0), (1020.0, -36.0), (1590.0, -20.0)]
        assert h.finished() == [c]
        assert h.last_open() is None  # emptied


def test_a_stopped_cycle_can_still_take_its_late_beep_and_bad_outcomes_are_refused(tmp_path):
    with History.open(db_path(tmp_path)) as h:
        cid = h.begin(0.0)
        h.end(cid, ended=600.0, outcome="stopped", phases=[PhaseRecord("washing", 0, 600)])
        assert h.last_open().outcome == "stopped"  # waits: a late beep may come, or emptied
        assert h.finished() == []
        h.end(cid, ended=1500.0, outcome="beeped",
              phases=[PhaseRecord("washing", 0, 600), PhaseRecord("pause", 600, 1500)])
        assert h.get(cid).outcome == "beeped" and h.get(cid).ended == 1500.0
        with pytest.raises(ValueError, match="running"):
            h.end(cid, ended=1.0, outcome="running", phases=())
        with pytest.raises(HistoryError, match="cycle 99 is not in the history"):
            h.note_alert(99, 1.0)


def test_a_beep_that_was_not_the_end_reopens_its_cycle(tmp_path):
    """The machine took up again at once after a beep: the cycle runs on, its alert noted,
    and it finishes again at its real end."""
    with History.open(db_path(tmp_path)) as h:
        cid = h.begin(0.0)
        h.end(cid, ended=1200.0, outcome="beeped", phases=[PhaseRecord("washing", 0, 1200)])
        h.note_alert(cid, 1201.0)
        h.reopen(cid)
        r = h.get(cid)
        assert (r.outcome, r.ended, r.alert_at) == ("running", None, 1201.0)
        assert h.finished() == [] and h.last_open().id == cid
        h.end(cid, ended=3000.0, outcome="beeped", phases=[PhaseRecord("washing", 0, 3000)])
        assert [x.duration for x in h.finished()] == [3000.0]


def test_a_beep_without_a_cycle_has_no_start_and_teaches_nothing(tmp_path):
    with History.open(db_path(tmp_path)) as h:
        a = h.begin(0.0)
        h.end(a, ended=3000.0, outcome="beeped", phases=())
        b = h.beep_without_cycle(9000.0)
        c = h.get(b)
        assert (c.started, c.ended, c.outcome, c.duration) == (None, 9000.0, "beeped", None)
        assert h.last_open().id == b
        assert [r.id for r in h.finished()] == [a]  # no duration to learn from
        assert [r.id for r in h.recent()] == [b, a]


def test_last_open_is_the_newest_cycle_only_while_it_waits(tmp_path):
    with History.open(db_path(tmp_path)) as h:
        assert h.last_open() is None
        old = h.begin(0.0)
        h.end(old, ended=100.0, outcome="beeped", phases=())
        assert h.last_open().id == old
        new = h.begin(200.0)
        assert h.last_open().id == new  # running
        h.end(new, ended=300.0, outcome="beeped", phases=())
        h.note_emptied(new, 400.0, "button")
        # The older cycle was never said emptied, but a newer cycle ran: it is not waiting.
        assert h.last_open() is None


def test_interrupted_cycles_become_unknown_at_their_last_sound(tmp_path):
    with History.open(db_path(tmp_path)) as h:
        a = h.begin(100.0)
        h.progress(a, last_sound=700.0, phases=[PhaseRecord("washing", 100, 700)])
        b = h.begin(1000.0)
        h.end(b, ended=2000.0, outcome="beeped", phases=())
        c = h.begin(3000.0)  # no progress before the daemon died
    with History.open(db_path(tmp_path)) as h:
        assert h.interrupted() == 2
        assert h.interrupted() == 0
        got = {r.id: (r.outcome, r.ended) for r in h.recent()}
        assert got == {a: ("unknown", 700.0), b: ("beeped", 2000.0), c: ("unknown", 3000.0)}
        assert h.last_open() is None
        assert h.get(a).phases == (PhaseRecord("washing", 100, 700),)


def test_prune_deletes_old_cycles_with_their_phases_and_levels(tmp_path):
    now = 1_800_000_000.0
    day = 86400.0
    path = db_path(tmp_path)
    with History.open(path) as h:
        ids = {}
        for name, started, ended in (("old", now - 100 * day, now - 100 * day + 3600),
                                     ("recent", now - 10 * day, now - 10 * day + 3600)):
            ids[name] = h.begin(started)
            phases = [PhaseRecord("washing", started, ended)]
            h.progress(ids[name], last_sound=ended, phases=phases,
                       levels=[(started + 10 * i, -30.0) for i in range(50)])
            h.end(ids[name], ended=ended, outcome="beeped", phases=phases)
        # Running for 40 days (a daemon that never heard it end): kept, it has not ended.
        ids["running"] = h.begin(now - 40 * day)
        h.progress(ids["running"], last_sound=now - 40 * day,
                   phases=[PhaseRecord("washing", now - 40 * day, now - 40 * day + 60)],
                   levels=[(now - 40 * day, -30.0)])
        assert h.prune(30, now=now) == 1
        assert h.prune(30, now=now) == 0
        assert {r.id for r in h.recent()} == {ids["recent"], ids["running"]}
        assert h.levels(ids["old"]) == []
    raw = sqlite3.connect(path)
    for table in ("phases", "levels"):
        left = {r[0] for r in raw.execute(f"SELECT DISTINCT cycle_id FROM {table}")}
        assert left == {ids["recent"], ids["running"]}, table
    raw.close()


def test_to_wall_moves_the_machines_phases_to_the_wall_clock():
    phases = (Phase("washing", 10.0, 70.0), Phase("pause", 70.0, 130.0))
    assert to_wall(phases, 1000.0) == (PhaseRecord("washing", 1010.0, 1070.0),
                                       PhaseRecord("pause", 1070.0, 1130.0))


def test_the_file_is_wal_with_normal_sync_and_a_busy_timeout(tmp_path):
    with History.open(db_path(tmp_path)) as h:
        db = h._db
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert db.execute("PRAGMA user_version").fetchone()[0] == schema_version() == 3


def test_only_the_thread_that_opened_it_may_use_it(tmp_path):
    with History.open(db_path(tmp_path)) as h:
        caught = []

        def other() -> None:
            try:
                h.begin(0.0)
            except Exception as e:  # noqa: BLE001 -- the test wants to see which
                caught.append(e)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        # A bug in the caller, left as sqlite3 reports it (not a storage HistoryError).
        assert len(caught) == 1 and isinstance(caught[0], sqlite3.ProgrammingError)
        assert h.recent() == []


# --- read-only ------------------------------------------------------------------------------

def test_read_only_leaves_a_closed_history_untouched_and_refuses_writes(tmp_path):
    sample_history(db_path(tmp_path))
    folder = db_path(tmp_path).parent
    before = sorted(p.name for p in folder.iterdir())
    hashed = digest(db_path(tmp_path))
    with History.open(db_path(tmp_path), readonly=True) as h:
        assert len(h.recent()) == 3
        with pytest.raises(HistoryError, match="read-only"):
            h.begin(0.0)
    # No -wal or -shm appeared: a service's folder gets nothing from a user's reader.
    assert sorted(p.name for p in folder.iterdir()) == before == [DB_NAME]
    assert digest(db_path(tmp_path)) == hashed


def test_read_only_sees_what_a_live_writer_committed(tmp_path, env):
    store = tmp_path / "store"
    with History.open(store / DB_NAME) as h:
        cid = h.begin(time.time() - 600)
        h.progress(cid, last_sound=time.time(), phases=[], levels=[(time.time(), -30.0)])
        assert (store / f"{DB_NAME}-wal").exists()  # committed rows wait in the WAL
        r = beepnet_history(env, store, "--json")
        assert r.returncode == 0, r.stderr
        (c,) = json.loads(r.stdout)
        assert (c["id"], c["outcome"]) == (cid, "running")
        h.end(cid, ended=time.time(), outcome="beeped", phases=())  # the writer goes on
        assert h.get(cid).outcome == "beeped"


# --- failures -------------------------------------------------------------------------------

def test_an_unwritable_place_is_one_history_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(HistoryError) as e:
        History.open(blocker / "store" / DB_NAME)
    assert "\n" not in str(e.value) and str(blocker / "store") in str(e.value)


def test_a_full_database_while_writing_is_a_history_error_and_loses_nothing_before(tmp_path):
    with History.open(db_path(tmp_path)) as h:
        cid = h.begin(0.0)
        h.progress(cid, last_sound=10.0, phases=[], levels=[(10.0, -30.0)])
        db = h._db
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        # The same SQLITE_FULL a full disk gives, at the size the file has now.
        db.execute(f"PRAGMA max_page_count = {pages}")
        many = [(20.0 + i, -30.0) for i in range(5000)]
        with pytest.raises(HistoryError) as e:
            h.progress(cid, last_sound=5020.0, phases=[PhaseRecord("washing", 0, 5020)],
                       levels=many)
        assert "full" in str(e.value) and "\n" not in str(e.value)
        # The failed call left nothing half-written, and the history is still usable.
        assert h.levels(cid) == [(10.0, -30.0)] and h.get(cid).phases == ()
        db.execute("PRAGMA max_page_count = 1073741823")
        h.progress(cid, last_sound=5020.0, phases=[], levels=many)
        assert len(h.levels(cid)) == 5001


def test_a_garbage_file_is_set_aside_with_its_wal_and_a_fresh_history_started(tmp_path,
                                                                              caplog):
    path = db_path(tmp_path)
    path.parent.mkdir()
    garbage = random.Random(1).randbytes(8192)
    path.write_bytes(garbage)
    Path(f"{path}-wal").write_bytes(b"stale wal")
    Path(f"{path}-shm").write_bytes(b"stale shm")
    with caplog.at_level(logging.INFO, logger=history_module.__name__):
        h = History.open(path)
    with h:
        assert h.recent() == []
        h.begin(0.0)  # and it works
    (warning,) = warnings_of(caplog)
    assert "set aside" in warning and "not a database" in warning and "\n" not in warning
    names = aside_files(path.parent)
    assert len(names) == 3, names
    (main,) = [n for n in names if not n.endswith(("-wal", "-shm"))]
    assert main in warning
    assert (path.parent / main).read_bytes() == garbage
    assert (path.parent / f"{main}-wal").read_bytes() == b"stale wal"
    assert time.strptime(main.split(".corrupt-")[1], "%Y%m%d-%H%M%S")


def test_a_truncated_database_is_set_aside_and_a_fresh_history_started(tmp_path, caplog):
    path = db_path(tmp_path)
    with History.open(path) as h:
        for k in range(6):
            cid = h.begin(k * 10000.0)
            h.progress(cid, last_sound=k * 10000.0 + 9000, phases=[],
                       levels=[(k * 10000.0 + 10 * i, -30.0) for i in range(900)])
            h.end(cid, ended=k * 10000.0 + 9000, outcome="beeped", phases=())
    data = path.read_bytes()
    assert len(data) > 50_000
    path.write_bytes(data[:len(data) // 2])  # the header is whole, half the pages are gone
    with caplog.at_level(logging.WARNING, logger=history_module.__name__):
        with History.open(path) as h:
            assert h.recent() == []
    (warning,) = warnings_of(caplog)
    assert "set aside" in warning
    (main,) = [n for n in aside_files(path.parent) if not n.endswith(("-wal", "-shm"))]
    assert (path.parent / main).read_bytes() == data[:len(data) // 2]


def test_a_history_from_a_newer_beepnet_is_refused_untouched(tmp_path, caplog):
    path = db_path(tmp_path)
    path.parent.mkdir()
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE cycles (id INTEGER PRIMARY KEY, future TEXT)")
    raw.execute("INSERT INTO cycles (future) VALUES ('kept')")
    raw.execute(f"PRAGMA user_version = {schema_version() + 1}")
    raw.commit()
    raw.close()
    hashed = digest(path)
    with pytest.raises(HistoryError) as e:
        History.open(path)
    assert "newer" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(HistoryError, match="newer"):
        History.open(path, readonly=True)
    assert digest(path) == hashed
    assert aside_files(path.parent) == [] and warnings_of(caplog) == []


V1_SCHEMA = [
    """CREATE TABLE cycles (id INTEGER PRIMARY KEY, started REAL, ended REAL,
       last_sound REAL, outcome TEXT NOT NULL, alert_at REAL,
       reminders INTEGER NOT NULL DEFAULT 0, reminded_at REAL, emptied_at REAL,
       emptied_by TEXT, feedback TEXT)""",
    """CREATE TABLE phases (cycle_id INTEGER NOT NULL REFERENCES cycles(id) ON DELETE CASCADE,
       seq INTEGER NOT NULL, name TEXT NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL,
       PRIMARY KEY (cycle_id, seq)) WITHOUT ROWID""",
    """CREATE TABLE levels (cycle_id INTEGER NOT NULL REFERENCES cycles(id) ON DELETE CASCADE,
       at REAL NOT NULL, dbfs REAL NOT NULL, PRIMARY KEY (cycle_id, at)) WITHOUT ROWID""",
]
"""Version 1 as it shipped, written out by hand: what an older daemon left on disk."""


def _write_v1(path: Path) -> None:
    path.parent.mkdir(parents=True)
    raw = sqlite3.connect(path)
    for statement in V1_SCHEMA:
        raw.execute(statement)
    raw.execute("INSERT INTO cycles VALUES (7, 100.0, 5500.0, 5400.0, 'beeped', 5510.0, 1, "
                "7300.0, 8000.0, 'button', 'beep')")
    raw.executemany("INSERT INTO phases VALUES (7, ?, ?, ?, ?)",
                    [(0, "washing", 100.0, 4000.0), (1, "spinning", 4000.0, 5500.0)])
    raw.executemany("INSERT INTO levels VALUES (7, ?, ?)", [(110.0, -35.5), (120.0, -36.0)])
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()


def test_a_version_1_history_is_migrated_with_its_data_kept(tmp_path, caplog):
    path = db_path(tmp_path)
    _write_v1(path)
    with caplog.at_level(logging.INFO, logger=history_module.__name__):
        h = History.open(path)
    with h:
        assert h._db.execute("PRAGMA user_version").fetchone()[0] == schema_version()
        assert h.recent() == [CycleRecord(
            id=7, started=100.0, ended=5500.0, outcome="beeped",
            phases=(PhaseRecord("washing", 100.0, 4000.0),
                    PhaseRecord("spinning", 4000.0, 5500.0)),
            alert_at=5510.0, reminders=1, reminded_at=7300.0, emptied_at=8000.0,
            emptied_by="button", feedback="beep", estimate_end=None, estimate_at=None)]
        assert h.levels(7) == [(110.0, -35.5), (120.0, -36.0)]
        h.note_estimate(7, at=2800.0, end=5600.0)  # version 2's columns work
        assert h.get(7).estimate_error == 100.0
        indexes = [r[1] for r in h._db.execute("PRAGMA index_list(cycles)")]
        assert "cycles_ended" in indexes and "cycles_alert" in indexes
        h.note_alert(7, 5510.0, "20261205-061647-0041328000-beep")  # and version 3's
        assert h.feedback_for_alert("20261205-061647-0041328000-beep", "not_beep")
        assert h.get(7).feedback == "not_beep"
        assert not h.feedback_for_alert("no-such-alert", "beep")
        assert h.begin(9000.0) == 8  # new rows follow the old
    assert any("migrated from schema version 1 to 3" in r.getMessage()
               for r in caplog.records)


def test_a_failing_migration_leaves_the_file_at_its_last_whole_version(tmp_path, monkeypatch):
    path = db_path(tmp_path)
    _write_v1(path)

    def v4_breaks(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE cycles ADD COLUMN half_done REAL")
        db.execute("INSERT INTO no_such_table VALUES (1)")

    monkeypatch.setattr(history_module, "MIGRATIONS", [*history_module.MIGRATIONS, v4_breaks])
    with pytest.raises(HistoryError) as e:
        History.open(path)
    assert "no_such_table" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.undo()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 3  # v3 done, v4 rolled back
    columns = [r[1] for r in raw.execute("PRAGMA table_info(cycles)")]
    assert "estimate_end" in columns and "half_done" not in columns
    raw.close()
    with History.open(path) as h:
        assert h.get(7).emptied_by == "button"


# --- kill -9 ------------------------------------------------------------------------------

WRITER = r"""
import sys, time
from pathlib import Path
from beepnet.cycle.history import History, PhaseRecord

path, pause = Path(sys.argv[1]), float(sys.argv[2])
h = History.open(path)
cid = h.last_open().id if h.last_open() else h.begin(1000.0)
i = len(h.levels(cid)) // 20  # 20 levels a call
while True:
    t = 1000.0 + 10.0 * (i + 1)
    # The phases tell how many calls were made: a call half stored would not match.
    phases = [PhaseRecord("washing", 1000.0, t)] + [
        PhaseRecord("pause", 2000.0 + k, 2001.0 + k) for k in range(i // 5)]
    h.progress(cid, last_sound=t, phases=phases,
               levels=[(t + 0.5 * j, -30.0 - j % 7) for j in range(20)])
    i += 1
    print(i, flush=True)  # after the commit: every number printed is stored
    time.sleep(pause)
"""


def _kill_midway(path: Path, pause: float, lines: int, rng: random.Random) -> int:
    """Run the writer until it has reported ``lines`` commits, SIGKILL it at a random
    moment after, and return the last commit it reported."""
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(pause)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        for _ in range(lines):
            line = p.stdout.readline()
            assert line, p.stderr.read()
        time.sleep(rng.uniform(0.0, max(pause, 0.02)))
        p.send_signal(signal.SIGKILL)
        rest = p.stdout.read()
    finally:
        p.kill()
        p.wait()
    assert p.returncode == -signal.SIGKILL
    return int((line + rest).split()[-1])


def test_a_kill_9_loses_at_most_the_write_after_the_last_commit(tmp_path, env):
    path = db_path(tmp_path)
    rng = random.Random(9)
    # Five kills into the same file: two of a writer every 0.2 s, then three of one writing
    # as fast as it can, so that kills land inside transactions (without them, this test
    # fails three times in four).
    rounds = [(0.2, rng.randint(5, 10)) for _ in range(2)] + [(0.0, 300)] * 3
    for pause, lines in rounds:
        reported = _kill_midway(path, pause, lines, rng)
        # `beepnet history` reads what the dead writer left in its WAL...
        r = beepnet_history(env, path.parent, "--json")
        assert r.returncode == 0, r.stderr
        (c,) = json.loads(r.stdout)
        calls = round((c["phases"][0]["end"] - 1000.0) / 10.0)
        assert reported <= calls <= reported + 1, (reported, calls)
        # ...and the daemon's next start finds it whole: nothing set aside, every call
        # that reported its commit is there, and no call is there in part.
        with History.open(path) as h:
            assert aside_files(path.parent) == []
            cycle = h.last_open()
            levels = h.levels(cycle.id)
            assert len(levels) == 20 * calls
            assert len(cycle.phases) == 1 + (calls - 1) // 5
            assert h._db.execute("PRAGMA quick_check").fetchone()[0] == "ok"


# --- `beepnet history` --------------------------------------------------------------------

def test_no_history_yet_is_one_line(tmp_path, env):
    store = tmp_path / "store"
    r = beepnet_history(env, store)
    assert r.returncode == 0 and one_line(r.stdout) == f"no cycle history yet at {store / DB_NAME}"
    r = beepnet_history(env, store, "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == []
    r = beepnet_history(env, store, "--plot", str(tmp_path / "x.png"))
    assert r.returncode == 1 and "no cycle history yet at" in one_line(r.stderr)
    assert not (tmp_path / "x.png").exists() and not store.exists()


def test_the_table_shows_each_cycle_on_one_line_newest_last(tmp_path, env):
    store = tmp_path / "store"
    a, b, c = sample_history(store / DB_NAME)
    with History.open(store / DB_NAME) as h:
        h.beep_without_cycle(SAMPLE_BASE + 2.5 * 86400)
        h.begin(time.time() - 25 * MIN)
    r = beepnet_history(env, store)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for words in (["Thu 03 Dec", "09:14", "10:38", "1 h 24 min", "beeped",
                   "wash 18 · pause 2 · wash 29 · spin 4 · wash 17 · spin 12 · pause 2",
                   "1", "11:19 button", "est. +4 min"],
                  ["Fri 04 Dec", "19:02", "19:43", "41 min", "stopped without a beep",
                   "wash 35 · pause 2 · wash 5", "20:46 /emptied"],
                  ["Sat 05 Dec", "07:40", "28 min", "beeped", "wash 19 · spin 8 · pause 2",
                   "2", "09:13 button", "est. −2 min"],
                  ["?", "beeped (start not heard)", "not yet"],
                  ["25 min so far", "running now"]):
        found = [i for i, ln in enumerate(lines) if all(w in ln for w in words)]
        assert len(found) == 1, (words, r.stdout)
    order = [next(i for i, ln in enumerate(lines) if key in ln)
             for key in ("est. +4 min", "stopped without", "est. −2 min", "start not heard",
                         "running now")]
    assert order == sorted(order), r.stdout
    assert "\x1b[" not in r.stdout  # no colours into a pipe
    r = beepnet_history(env, store, "-n", "2")
    assert "start not heard" in r.stdout and "est. −2 min" not in r.stdout
    r = beepnet_history(env, store, "-n", "0")
    assert r.returncode == 2 and "-n must be at least 1" in one_line(r.stderr)


def test_json_holds_every_field_oldest_first(tmp_path, env):
    store = tmp_path / "store"
    ids = sample_history(store / DB_NAME)
    r = beepnet_history(env, store, "--json")
    assert r.returncode == 0, r.stderr
    cycles = json.loads(r.stdout)
    assert [c["id"] for c in cycles] == ids
    assert set(cycles[0]) == {
        "id", "started", "ended", "outcome", "phases", "alert_at", "reminders", "reminded_at",
        "emptied_at", "emptied_by", "feedback", "estimate_end", "estimate_at", "alert_id",
        "duration", "estimate_error"}
    first = cycles[0]
    assert first["started"] == SAMPLE_BASE and first["duration"] == 84 * MIN
    assert first["estimate_error"] == 4 * MIN and first["feedback"] == "beep"
    assert first["phases"][0] == {"name": "washing", "start": SAMPLE_BASE,
                                  "end": SAMPLE_BASE + 18 * MIN, "seconds": 18 * MIN}
    assert [c["outcome"] for c in cycles] == ["beeped", "stopped", "beeped"]
    assert cycles[1]["estimate_error"] is None and cycles[2]["reminders"] == 2


def test_plot_draws_one_row_per_cycle(tmp_path, env):
    store = tmp_path / "store"
    sample_history(store / DB_NAME)
    out = tmp_path / "history.png"
    r = beepnet_history(env, store, "--plot", str(out))
    assert r.returncode == 0, r.stderr
    assert one_line(r.stdout) == f"wrote {out}: 3 cycle(s)"
    assert check_png(out, min_bytes=40_000) == (1210, round((1.3 + 2.1 * 3) * 110))
    r = beepnet_history(env, store, "--plot", str(out), "-n", "1")
    assert r.returncode == 0, r.stderr
    assert check_png(out, min_bytes=20_000) == (1210, round((1.3 + 2.1) * 110))
    r = beepnet_history(env, store, "--plot", str(tmp_path / "no" / "such" / "x.png"))
    assert r.returncode == 1 and "cannot write" in one_line(r.stderr)


def test_without_matplotlib_plot_says_what_to_install_and_the_table_still_works(tmp_path,
                                                                                env):
    hide = tmp_path / "site"
    hide.mkdir()
    # Python's own way to make a module absent: None in sys.modules, before beepnet starts.
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['matplotlib'] = None\n")
    store = tmp_path / "store"
    sample_history(store / DB_NAME)
    no_mpl = {"PYTHONPATH": str(hide)}
    r = beepnet_history(env, store, "--plot", str(tmp_path / "x.png"), extra_env=no_mpl)
    assert r.returncode == 2
    assert one_line(r.stderr) == ("`beepnet history --plot` needs matplotlib: "
                                  "pip install matplotlib")
    r = beepnet_history(env, store, extra_env=no_mpl)
    assert r.returncode == 0 and "stopped without a beep" in r.stdout, r.stderr


def test_a_damaged_or_newer_history_is_one_line_and_left_as_it_is(tmp_path, env):
    store = tmp_path / "store"
    store.mkdir()
    (store / DB_NAME).write_bytes(b"\x00garbage" * 500)
    r = beepnet_history(env, store)
    assert r.returncode == 1 and "is damaged" in one_line(r.stderr)
    assert sorted(p.name for p in store.iterdir()) == [DB_NAME]  # a reader sets nothing aside
    (store / DB_NAME).unlink()
    raw = sqlite3.connect(store / DB_NAME)
    raw.execute("PRAGMA user_version = 99")
    raw.execute("CREATE TABLE t (x)")
    raw.commit()
    raw.close()
    r = beepnet_history(env, store, "--json")
    assert r.returncode == 1 and "newer than this beepnet" in one_line(r.stderr)


def test_the_history_module_needs_only_the_standard_library(tmp_path):
    """The daemon on a Pi imports it: no numpy, pandas, rich or matplotlib on the way."""
    # What importing it adds (site's .pth hooks may have loaded modules of their own).
    code = ("import sys\nbefore = set(sys.modules)\nimport beepnet.cycle.history\n"
            "added = {n.split('.')[0] for n in set(sys.modules) - before}\n"
            "print(','.join(sorted(added - set(sys.stdlib_module_names) - {'beepnet'})))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=REPO, check=False, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", r.stdout


if __name__ == "__main__":
    # python tests/test_history.py DIR: the sample history in DIR/cycles.db, for
    # `beepnet history --set storage.dir=DIR --plot FILE.png`.
    folder = Path(sys.argv[1])
    if (folder / DB_NAME).exists():
        sys.exit(f"{folder / DB_NAME} exists: give an empty folder")
    print("cycles", sample_history(folder / DB_NAME), "in", folder / DB_NAME)
