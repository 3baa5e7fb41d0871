"""The cycle history: every cycle the daemon saw, kept in one SQLite file.

What the cycle machine reported (`beepnet.cycle.events`) and what followed it: when a cycle
began and ended, how it ended, its phases, its sound level every few seconds, the alert, the
reminders, who emptied the machine, the owner's answer to the alert, and the time-left
estimate made at half the cycle. The daemon writes it as the cycle goes; ``beepnet history``
reads it; what the "usual duration" and time-left estimates learn from is `History.finished`.

One file, ``<storage.dir>/cycles.db``, in WAL mode, so ``beepnet history`` (another process)
reads while the daemon writes. Standard library only: the daemon on a Pi imports this.

Times are wall-clock epoch seconds (floats), unlike the cycle machine's monotonic ones: a
history outlives the process whose monotonic clock measured it (`to_wall` converts).

Schema versions live in ``PRAGMA user_version``; `MIGRATIONS` brings any older file up to
date, one transaction per version. A file that is not a database, or fails ``PRAGMA
quick_check``, is set aside (renamed, never deleted) and a fresh one started; a file from a
newer beepnet is refused untouched. Every storage failure is a `HistoryError` whose message
is one line: the daemon logs it and goes on without a history.

Threads: a `History` keeps one connection, opened with sqlite3's default
``check_same_thread=True``, so it must be used from the thread that opened it (the daemon's
supervisor thread); using it from another raises `sqlite3.ProgrammingError`, a bug, left
unconverted.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DB_NAME = "cycles.db"
BUSY_SECONDS = 5.0
"""How long a connection waits for another's lock (a checkpoint, WAL recovery) before
failing: readers and the writer never block each other in WAL mode, so this is only slack."""

OUTCOMES = ("running", "beeped", "stopped", "unknown")
ENDINGS = ("beeped", "stopped", "unknown")
"""What `History.end` accepts: a cycle ends as one of these, never as running."""


class HistoryError(Exception):
    """The history cannot be used or written; ``str()`` is one line."""


# --- Records ------------------------------------------------------------------------------

@dataclass(frozen=True)
class PhaseRecord:
    """A phase of a cycle (see `beepnet.cycle.events.Phase`), in wall-clock seconds."""

    name: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def to_wall(phases: Iterable, offset: float) -> tuple[PhaseRecord, ...]:
    """The cycle machine's phases (monotonic clock) as records: ``offset`` is wall time
    minus monotonic time, as the daemon measured it."""
    return tuple(PhaseRecord(p.name, p.start + offset, p.end + offset) for p in phases)


@dataclass(frozen=True)
class CycleRecord:
    """One cycle as the history holds it."""

    id: int
    started: float | None
    """None: a beep with no cycle seen running (unknown start)."""
    ended: float | None
    """The beep, or the last machine sound of a stopped or interrupted cycle; None while
    running."""
    outcome: str
    """"running", "beeped", "stopped" (no beep), "unknown" (the daemon stopped mid-cycle)."""
    phases: tuple[PhaseRecord, ...]
    alert_at: float | None
    reminders: int
    reminded_at: float | None
    """The last reminder: where the reminder schedule stands after a restart."""
    emptied_at: float | None
    emptied_by: str | None
    """"button", "/emptied", "next cycle", "reminders ran out", ..."""
    feedback: str | None
    """The owner's answer on the finished alert ("beep" / "not_beep")."""
    estimate_end: float | None
    """When, at half the cycle, it was expected to end."""
    estimate_at: float | None
    """When that estimate was made."""
    alert_id: str | None = None
    """The finish's alert (its clip's stem), which the owner's ✅/❌ answers name."""

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    @property
    def estimate_error(self) -> float | None:
        """Seconds the estimate was later than the beep (negative: earlier); None without
        an estimate or a beep."""
        if self.estimate_end is None or self.ended is None or self.outcome != "beeped":
            return None
        return self.estimate_end - self.ended


# --- Schema -------------------------------------------------------------------------------
# Each migration takes the database from the version before it to its own (its place in the
# list, from 1) and runs in a transaction with the user_version change, so a file is always
# at one whole version. Statements one by one: executescript() would commit first.

def _v1_tables(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE cycles (
            id          INTEGER PRIMARY KEY,
            started     REAL,
            ended       REAL,
            last_sound  REAL,
            outcome     TEXT NOT NULL,
            alert_at    REAL,
            reminders   INTEGER NOT NULL DEFAULT 0,
            reminded_at REAL,
            emptied_at  REAL,
            emptied_by  TEXT,
            feedback    TEXT
        )""")
    db.execute("""
        CREATE TABLE phases (
            cycle_id INTEGER NOT NULL REFERENCES cycles(id) ON DELETE CASCADE,
            seq      INTEGER NOT NULL,
            name     TEXT NOT NULL,
            start    REAL NOT NULL,
            "end"    REAL NOT NULL,
            PRIMARY KEY (cycle_id, seq)
        ) WITHOUT ROWID""")
    # About one level per 10 s, some 1000 per cycle: clustered by (cycle, time) with no
    # rowid, so a cycle's curve is one range read and a row is three numbers.
    db.execute("""
        CREATE TABLE levels (
            cycle_id INTEGER NOT NULL REFERENCES cycles(id) ON DELETE CASCADE,
            at       REAL NOT NULL,
            dbfs     REAL NOT NULL,
            PRIMARY KEY (cycle_id, at)
        ) WITHOUT ROWID""")


def _v2_estimates(db: sqlite3.Connection) -> None:
    # The time-left estimate came with the second version, and pruning by end time needs
    # an index once months of cycles are kept.
    db.execute("ALTER TABLE cycles ADD COLUMN estimate_end REAL")
    db.execute("ALTER TABLE cycles ADD COLUMN estimate_at REAL")
    db.execute("CREATE INDEX cycles_ended ON cycles(ended)")


def _v3_alert_ids(db: sqlite3.Connection) -> None:
    # The owner answers an alert, not a cycle: the third version keeps which alert a cycle's
    # finish was, so the answer reaches its cycle.
    db.execute("ALTER TABLE cycles ADD COLUMN alert_id TEXT")
    db.execute("CREATE INDEX cycles_alert ON cycles(alert_id)")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1_tables, _v2_estimates,
                                                          _v3_alert_ids]
"""Append a function to change the schema; never edit one that has shipped."""


def schema_version() -> int:
    """The version this code writes and reads."""
    return len(MIGRATIONS)


# --- Errors -------------------------------------------------------------------------------

_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB (primary result codes)


def _is_corrupt(e: sqlite3.Error) -> bool:
    """The file's content is bad, as opposed to it being unreadable, locked or full."""
    code = getattr(e, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in _CORRUPT_CODES
    text = str(e)
    return "file is not a database" in text or "malformed" in text


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return " ".join(str(e).split()) or type(e).__name__


class _Corrupt(Exception):
    """Internal: the file failed a check; the message says how."""


# --- The history --------------------------------------------------------------------------

_COLUMNS = ("id, started, ended, outcome, alert_at, reminders, reminded_at, emptied_at, "
            "emptied_by, feedback, estimate_end, estimate_at, alert_id")


class History:
    """The cycle history in one SQLite file. Open with `History.open`."""

    def __init__(self, db: sqlite3.Connection, path: Path, readonly: bool):
        self._db = db
        self.path = path
        self.readonly = readonly

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str, *, readonly: bool = False) -> History:
        """Open the history at ``path``, creating its folder and file, migrating an older
        schema and setting a damaged file aside. ``readonly`` (``beepnet history``): change
        nothing, and work where the file is not writable (a service's /var/lib/beepnet)."""
        path = Path(path)
        if readonly:
            return cls(_open_readonly(path), path, True)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise HistoryError(f"cannot create {path.parent}: {_one_line(e)}") from None
        try:
            db = _open_checked(path)
        except _Corrupt as why:
            aside = _set_aside(path)
            log.warning("cycle history %s is damaged (%s): set aside as %s, starting a fresh "
                        "one", path, why, aside.name)
            try:
                db = _open_checked(path)
            except _Corrupt as again:  # only if something rewrote it under us
                raise HistoryError(f"cycle history {path} is damaged again ({again})") from None
        try:
            _migrate(db, path)
        except BaseException:
            db.close()
            raise
        return cls(db, path, False)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing the cycle as it goes ----------------------------------------------------

    def begin(self, started: float) -> int:
        """A cycle is running since ``started``; returns its id."""
        with self._write() as db:
            cur = db.execute("INSERT INTO cycles (started, last_sound, outcome) "
                             "VALUES (?, ?, 'running')", (started, started))
            return int(cur.lastrowid)

    def progress(self, cycle_id: int, *, last_sound: float, phases: Sequence[PhaseRecord],
                 levels: Sequence[tuple[float, float]] = ()) -> None:
        """The running cycle so far: its last machine sound, its phases (replacing those
        stored) and new (wall time, dBFS) levels (each sent once; a repeat of the same time
        replaces it). One transaction: after a crash the stored cycle is one whole call."""
        with self._write() as db:
            self._require(db, cycle_id)
            db.execute("UPDATE cycles SET last_sound = ? WHERE id = ?", (last_sound, cycle_id))
            self._put_phases(db, cycle_id, phases)
            # 0.1 dB is finer than any level reading means; rounding keeps rows small.
            db.executemany("INSERT OR REPLACE INTO levels (cycle_id, at, dbfs) VALUES (?, ?, ?)",
                           [(cycle_id, at, round(dbfs, 1)) for at, dbfs in levels])

    def end(self, cycle_id: int, *, ended: float, outcome: str,
            phases: Sequence[PhaseRecord]) -> None:
        """The cycle is over: ``ended`` is the beep ("beeped") or its last machine sound
        ("stopped"). A stopped cycle may end again as beeped: a late beep finishes it."""
        if outcome not in ENDINGS:
            raise ValueError(f"outcome {outcome!r}: expected one of {', '.join(ENDINGS)}")
        with self._write() as db:
            self._require(db, cycle_id)
            db.execute("UPDATE cycles SET ended = ?, outcome = ? WHERE id = ?",
                       (ended, outcome, cycle_id))
            self._put_phases(db, cycle_id, phases)

    def reopen(self, cycle_id: int) -> None:
        """The cycle's beep was not its end (the machine took up again at once): running
        again; its alert stays noted."""
        self._update(cycle_id, "ended = NULL, outcome = 'running'")

    def beep_without_cycle(self, at: float) -> int:
        """A beep with no cycle seen running: a finished cycle of unknown start."""
        with self._write() as db:
            cur = db.execute("INSERT INTO cycles (ended, last_sound, outcome) "
                             "VALUES (?, ?, 'beeped')", (at, at))
            return int(cur.lastrowid)

    # -- what followed -----------------------------------------------------------------

    def note_alert(self, cycle_id: int, at: float, alert_id: str | None = None) -> None:
        self._update(cycle_id, "alert_at = ?, alert_id = ?", at, alert_id)

    def note_reminder(self, cycle_id: int, at: float) -> None:
        """One more reminder, at ``at``."""
        self._update(cycle_id, "reminders = reminders + 1, reminded_at = ?", at)

    def note_emptied(self, cycle_id: int, at: float, by: str) -> None:
        """The wait for the owner is over (``by``: "button", "/emptied", "next cycle",
        "reminders ran out", ...). The first word on it stays: a second is ignored."""
        self._update(cycle_id, "emptied_at = COALESCE(emptied_at, ?), "
                     "emptied_by = COALESCE(emptied_by, ?)", at, by)

    def note_feedback(self, cycle_id: int, label: str) -> None:
        """The owner's answer on the finished alert; a new answer replaces the old."""
        self._update(cycle_id, "feedback = ?", label)

    def feedback_for_alert(self, alert_id: str, label: str) -> bool:
        """The owner's answer on an alert, kept with the cycle it finished (if any)."""
        with self._write() as db:
            cur = db.execute("UPDATE cycles SET feedback = ? WHERE alert_id = ?",
                             (label, alert_id))
            return cur.rowcount > 0

    def note_estimate(self, cycle_id: int, *, at: float, end: float) -> None:
        """At ``at`` the cycle was expected to end at ``end``."""
        self._update(cycle_id, "estimate_at = ?, estimate_end = ?", at, end)

    # -- upkeep --------------------------------------------------------------------------

    def interrupted(self) -> int:
        """Cycles still "running" (the daemon died or stopped mid-cycle) become "unknown",
        ended at their last machine sound; returns how many. For the daemon's start."""
        with self._write() as db:
            cur = db.execute("UPDATE cycles SET outcome = 'unknown', "
                             "ended = COALESCE(last_sound, started) WHERE outcome = 'running'")
            return cur.rowcount

    def prune(self, keep_days: float, now: float | None = None) -> int:
        """Delete the cycles (with their phases and levels) that ended more than
        ``keep_days`` ago; returns how many. A running cycle is never pruned."""
        cutoff = (time.time() if now is None else now) - keep_days * 86400.0
        with self._write() as db:
            old = "SELECT id FROM cycles WHERE ended < ?"
            db.execute(f"DELETE FROM levels WHERE cycle_id IN ({old})", (cutoff,))
            db.execute(f"DELETE FROM phases WHERE cycle_id IN ({old})", (cutoff,))
            removed = db.execute("DELETE FROM cycles WHERE ended < ?", (cutoff,)).rowcount
        if removed:
            log.info("removed %d cycle(s) older than %g days from %s", removed, keep_days,
                     self.path)
        return removed

    # -- reading -------------------------------------------------------------------------

    def get(self, cycle_id: int) -> CycleRecord | None:
        rows = self._select("WHERE id = ?", (cycle_id,))
        return rows[0] if rows else None

    def last_open(self) -> CycleRecord | None:
        """The newest cycle if it is still open: running, or beeped or stopped and not
        emptied. Only the newest: a newer cycle means the machine was emptied before it."""
        rows = self._select("ORDER BY id DESC LIMIT 1")
        if not rows:
            return None
        r = rows[0]
        if r.outcome == "running" or (r.outcome in ("beeped", "stopped")
                                      and r.emptied_at is None):
            return r
        return None

    def recent(self, limit: int = 20) -> list[CycleRecord]:
        """The newest ``limit`` cycles, newest first."""
        return self._select("ORDER BY id DESC LIMIT ?", (limit,))

    def finished(self, limit: int = 50) -> list[CycleRecord]:
        """The newest ``limit`` cycles that beeped and whose start is known, newest first:
        what the usual duration and time-left estimates learn from."""
        return self._select("WHERE outcome = 'beeped' AND started IS NOT NULL "
                            "ORDER BY id DESC LIMIT ?", (limit,))

    def levels(self, cycle_id: int) -> list[tuple[float, float]]:
        """The cycle's (wall time, dBFS) levels, oldest first."""
        return self._read(lambda db: [
            (at, dbfs) for at, dbfs in db.execute(
                "SELECT at, dbfs FROM levels WHERE cycle_id = ? ORDER BY at", (cycle_id,))])

    # -- internals -----------------------------------------------------------------------

    def _write(self) -> _Transaction:
        if self.readonly:
            raise HistoryError(f"cycle history {self.path} is open read-only")
        return _Transaction(self._db, self.path)

    def _update(self, cycle_id: int, assignments: str, *values) -> None:
        with self._write() as db:
            self._require(db, cycle_id)
            db.execute(f"UPDATE cycles SET {assignments} WHERE id = ?", (*values, cycle_id))

    @staticmethod
    def _require(db: sqlite3.Connection, cycle_id: int) -> None:
        if db.execute("SELECT 1 FROM cycles WHERE id = ?", (cycle_id,)).fetchone() is None:
            raise HistoryError(f"cycle {cycle_id} is not in the history (pruned, or the file "
                               "was set aside since)")

    @staticmethod
    def _put_phases(db: sqlite3.Connection, cycle_id: int,
                    phases: Sequence[PhaseRecord]) -> None:
        db.execute("DELETE FROM phases WHERE cycle_id = ?", (cycle_id,))
        db.executemany('INSERT INTO phases (cycle_id, seq, name, start, "end") '
                       "VALUES (?, ?, ?, ?, ?)",
                       [(cycle_id, i, p.name, p.start, p.end) for i, p in enumerate(phases)])

    def _select(self, where: str, args: tuple = ()) -> list[CycleRecord]:
        def read(db: sqlite3.Connection) -> list[CycleRecord]:
            # One snapshot for the cycles and their phases: the daemon may write in between.
            db.execute("BEGIN")
            try:
                rows = db.execute(f"SELECT {_COLUMNS} FROM cycles {where}", args).fetchall()
                phases: dict[int, list[PhaseRecord]] = {r[0]: [] for r in rows}
                if rows:
                    marks = ",".join("?" * len(rows))
                    for cid, name, start, end in db.execute(
                            f'SELECT cycle_id, name, start, "end" FROM phases WHERE cycle_id '
                            f"IN ({marks}) ORDER BY cycle_id, seq", list(phases)):
                        phases[cid].append(PhaseRecord(name, start, end))
            finally:
                db.execute("COMMIT")
            return [CycleRecord(id=r[0], started=r[1], ended=r[2], outcome=r[3],
                                phases=tuple(phases[r[0]]), alert_at=r[4], reminders=r[5],
                                reminded_at=r[6], emptied_at=r[7], emptied_by=r[8],
                                feedback=r[9], estimate_end=r[10], estimate_at=r[11],
                                alert_id=r[12])
                    for r in rows]

        return self._read(read)

    def _read(self, fn):
        try:
            return fn(self._db)
        except sqlite3.ProgrammingError:
            raise  # wrong thread, closed: a bug in the caller, not the storage
        except sqlite3.Error as e:
            raise HistoryError(f"cannot read cycle history {self.path}: {_one_line(e)}"
                               ) from None


class _Transaction:
    """``with``: one write transaction; any sqlite error rolls it back and becomes a
    `HistoryError` (a full disk, a file turned read-only, damage found while writing)."""

    def __init__(self, db: sqlite3.Connection, path: Path):
        self.db, self.path = db, path

    def __enter__(self) -> sqlite3.Connection:
        try:
            # IMMEDIATE takes the write lock now, where the busy timeout applies; a deferred
            # transaction that reads first can fail later on its upgrade to a writer.
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.ProgrammingError:
            raise
        except sqlite3.Error as e:
            raise HistoryError(f"cannot write cycle history {self.path}: {_one_line(e)}"
                               ) from None
        return self.db

    def __exit__(self, kind, e, tb) -> bool:
        if kind is None:
            try:
                self.db.execute("COMMIT")
                return False
            except sqlite3.Error as commit_error:
                e = commit_error
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite may have rolled back itself (a full disk does)
        if isinstance(e, sqlite3.Error) and not isinstance(e, sqlite3.ProgrammingError):
            raise HistoryError(f"cannot write cycle history {self.path}: {_one_line(e)}"
                               ) from None
        return False


# --- Opening, checking, migrating -----------------------------------------------------------

def _connect(target: str, uri: bool = False) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; every write is an explicit
    # BEGIN IMMEDIATE ... COMMIT (see _Transaction), so what is committed is known.
    return sqlite3.connect(target, timeout=BUSY_SECONDS, isolation_level=None, uri=uri)


def _open_checked(path: Path) -> sqlite3.Connection:
    """A writable connection to a sound file at a version this code knows; `_Corrupt` if
    the file is damaged, `HistoryError` if it cannot be used or is too new."""
    _check(path)
    try:
        db = _connect(str(path))
    except sqlite3.Error as e:
        raise HistoryError(f"cannot open cycle history {path}: {_one_line(e)}") from None
    try:
        # WAL: `beepnet history` reads while the daemon writes, neither waiting. NORMAL
        # syncs the WAL at checkpoints, not at every commit: a commit is in the OS as soon
        # as it returns, so a kill -9 of the daemon loses nothing committed, and only a
        # power cut can lose the last commits (never corrupt the file). FULL would flush the
        # SD card at every progress write, ten seconds apart, for little more safety.
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as e:
        db.close()
        if _is_corrupt(e):
            raise _Corrupt(_one_line(e)) from None
        raise HistoryError(f"cannot use cycle history {path}: {_one_line(e)}") from None
    return db


def _check(path: Path) -> None:
    """`HistoryError` for a file from a newer beepnet, `_Corrupt` for a damaged one.

    On a read-only connection: closing a writable one checkpoints the WAL into the main
    file and deletes the WAL (even one it cannot read), which would change a newer file
    that must stay untouched and destroy the evidence of a damaged one.
    """
    try:
        if path.stat().st_size == 0:
            return  # new, or created empty: SQLite makes it a database
    except FileNotFoundError:
        return
    except OSError as e:
        raise HistoryError(f"cannot use cycle history {path}: {_one_line(e)}") from None
    try:
        db = _connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise HistoryError(f"cannot open cycle history {path}: {_one_line(e)}") from None
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > schema_version():
            raise HistoryError(
                f"cycle history {path} has schema version {version}, newer than this "
                f"beepnet knows ({schema_version()}): upgrade beepnet, or move the file "
                "away to start a new history")
        problems = [r[0] for r in db.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise _Corrupt("quick_check: " + "; ".join(problems))
    except sqlite3.Error as e:
        if _is_corrupt(e):
            raise _Corrupt(_one_line(e)) from None
        raise HistoryError(f"cannot use cycle history {path}: {_one_line(e)}") from None
    finally:
        db.close()


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Run the migrations the file lacks, each in its own transaction with its version."""
    try:
        was = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as e:
        raise HistoryError(f"cannot read cycle history {path}: {_one_line(e)}") from None
    for version, migration in enumerate(MIGRATIONS, start=1):
        with _Transaction(db, path):
            # Read again inside the transaction: the version is whatever it is now.
            if db.execute("PRAGMA user_version").fetchone()[0] >= version:
                continue
            migration(db)
            db.execute(f"PRAGMA user_version = {version:d}")
    if 0 < was < schema_version():
        log.info("cycle history %s migrated from schema version %d to %d", path, was,
                 schema_version())


def _set_aside(path: Path) -> Path:
    """Rename a damaged file, and its -wal and -shm, to ``<name>.corrupt-<time>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():  # two in one second: keep both
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        # The -wal and -shm keep their suffixes, so SQLite opens the set-aside file with
        # its WAL for whoever wants to look into it. Main file last: a failure half-way
        # leaves the main file where the next start finds it again.
        for suffix in ("-wal", "-shm"):
            side = Path(f"{path}{suffix}")
            if side.exists():
                os.replace(side, f"{aside}{suffix}")
        os.replace(path, aside)
    except OSError as e:
        raise HistoryError(f"cycle history {path} is damaged and cannot be set aside: "
                           f"{_one_line(e)}") from None
    return aside


def _open_readonly(path: Path) -> sqlite3.Connection:
    """A connection that cannot write, at this code's schema version.

    With no -wal beside it no writer has the file open (a WAL writer keeps one while it
    is connected), so it is read as immutable: no lock, no -shm created, nothing left
    behind in a folder that may not be the reader's. With a -wal (the daemon is running,
    or was killed), the committed rows in it are wanted: a plain read-only open, which
    needs the -shm.
    """
    if not path.is_file():
        raise HistoryError(f"no cycle history at {path}")
    live = Path(f"{path}-wal").exists()
    uri = path.resolve().as_uri() + ("?mode=ro" if live else "?mode=ro&immutable=1")
    try:
        db = _connect(uri, uri=True)
        version = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as e:
        how = "damaged" if _is_corrupt(e) else "unreadable"
        raise HistoryError(f"cycle history {path} is {how}: {_one_line(e)}") from None
    if version != schema_version():
        db.close()
        if version > schema_version():
            raise HistoryError(f"cycle history {path} has schema version {version}, newer "
                               f"than this beepnet knows ({schema_version()}): upgrade beepnet")
        raise HistoryError(f"cycle history {path} has schema version {version}, older than "
                           f"this beepnet's ({schema_version()}): the daemon upgrades it when "
                           "it starts (`beepnet run`)")
    return db
