"""Reading processes through /proc: children, names, liveness, CPU ticks and memory.

Shared by the tests (orphans, restarts) and the benchmark (CPU % and peak RSS of the
daemon's processes). The fields after a /proc/PID/stat line's parenthesised command name
(which may hold spaces) are split from its last ")".
"""

from __future__ import annotations

from pathlib import Path


def _stat_fields(pid: int | str) -> list[str]:
    """Fields 3.. of proc(5)'s /proc/PID/stat (state, ppid, ...); OSError once it is gone."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(p.name)[1])
        except OSError:
            continue
        if ppid == pid:
            out.append(int(p.name))
    return out


def comm(pid: int) -> str:
    """The process's name ("" once it is gone); beepnet's children set theirs with prctl."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Running and not a zombie (an orphan's zombie may wait for a slow init to reap it)."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except OSError:
        return False


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process, in clock ticks; None once it is gone."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB ({} once it is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1])
    except OSError:
        pass
    return out
