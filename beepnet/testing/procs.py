"""Reading processes through /proc: children, names, liveness, CPU ticks and memory; and
measuring one command's time and peak memory.

Shared by the tests (orphans, restarts, a refused model file's cost) and the benchmark (CPU
%, PSS and peak RSS of the daemon's processes). The fields after a /proc/PID/stat line's parenthesised command name
(which may hold spaces) are split from its last ")".
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
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


def cmdline(pid: int) -> str:
    """The process's command line, arguments joined by spaces ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
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


def pss_kb(pid: int) -> int | None:
    """Proportional set size of a process, in kB; None once it is gone (or unreadable).

    RSS counts every page a process maps in full, so the RSS of processes sharing pages
    (the Python interpreter, numpy's libraries) adds up to more than they hold: PSS charges
    a page shared by n processes 1/n to each, and the PSS of a group sums to what the group
    costs (shares with processes outside it excepted). /proc/PID/smaps_rollup gives it in
    one line; kernels before 4.14 lack that file, so then the per-mapping lines of
    /proc/PID/smaps are summed.
    """
    for name in ("smaps_rollup", "smaps"):
        try:
            text = Path(f"/proc/{pid}/{name}").read_text()
        except OSError:
            continue
        total = [int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:")]
        if total:
            return sum(total)
    return None


_MEASURE = """
import json, resource, subprocess, sys, time
t = time.monotonic()
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps([r.returncode, time.monotonic() - t,
                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.stderr]))
"""


@dataclass(frozen=True)
class Measured:
    """A command's exit status, wall time, peak RSS and stderr."""

    status: int
    seconds: float
    peak_rss_mb: float
    stderr: str


def measure(cmd: list[str], timeout: float = 120) -> Measured:
    """Run ``cmd`` under a fresh parent whose only child it is, so that RUSAGE_CHILDREN's
    peak RSS is that command's own (the caller's may have had bigger children)."""
    r = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True,
                       text=True, timeout=timeout, check=True)
    status, seconds, max_kb, stderr = json.loads(r.stdout)
    return Measured(status, seconds, max_kb / 1024, stderr)
