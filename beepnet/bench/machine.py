"""What the benchmark ran on: CPU, cores, memory, OS, Python, torch, beepnet and its commit.

Figures only mean something next to the machine that produced them, and on a shared
machine next to how busy it was, so the load average is recorded at the start and the end.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from .. import __version__

log = logging.getLogger(__name__)


def cpu_model() -> str:
    """The CPU's model name as the kernel gives it, else what the platform says."""
    try:
        fields = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
        # x86 says "model name"; Raspberry Pi kernels name the board in "Model".
        for key in ("model name", "Model", "Hardware"):
            if fields.get(key):
                return fields[key]
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))}, Linux {platform.release()}"
    except OSError:
        pass
    return platform.platform()


def _git(repo: Path) -> str:
    """Short commit of the checkout, with "+changes" when the work tree differs from it."""
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                                  text=True, timeout=10, check=True).stdout.strip()

        head = git("rev-parse", "--short=10", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def describe(repo: Path) -> dict:
    """The machine and software the figures come from."""
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    import numpy

    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": platform.node(),
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gb": _ram_gb(),
        "os": _os_name(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "torch": torch_version,
        "numpy": numpy.__version__,
        "beepnet": __version__,
        "git": _git(repo),
        "load_start": load_average(),
    }
