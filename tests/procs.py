"""Finding a process's children through /proc, to check for orphans."""

from __future__ import annotations

import time
from pathlib import Path


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        # Field 4 (after the parenthesised comm, which may contain spaces) is the ppid.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(p.name))
    return out


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def beepnet_children(pid: int, timeout: float = 20.0) -> dict[str, int]:
    """Wait until ``pid`` has started its recorder and classifier; {comm: pid}."""
    found: dict[str, int] = {}

    def both() -> bool:
        found.clear()
        for c in children(pid):
            found[comm(c)] = c
        return {"beepnet-rec", "beepnet-clf"} <= set(found)

    assert wait_for(both, timeout), f"children of {pid}: {found}"
    return found

