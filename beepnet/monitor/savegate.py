"""Saving the gate threshold chosen in the monitor: one key, changed in place in the TOML.

A TOML library would rewrite the whole file and lose the user's comments and layout, so this
edits text: the ``gate_dbfs = ...`` line of the ``[audio]`` table is replaced (keeping its
indentation and any trailing comment), or added right under ``[audio]``, or an ``[audio]``
table is appended. The result is parsed again before it replaces the file, atomically and
with the file's mode kept.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..fsutil import write_atomic

_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\"' -]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^(\s*gate_dbfs\s*=\s*)([^#\n]*?)(\s*(#.*)?)$")


def _number(value: float) -> str:
    return f"{float(value):.1f}"


def set_gate(text: str, value: float) -> str:
    """``text`` with audio.gate_dbfs set to ``value``; everything else untouched."""
    lines = text.splitlines(keepends=True)
    section = None
    audio_header = None
    for i, line in enumerate(lines):
        m = _TABLE.match(line)
        if m:
            section = m.group(1).strip().strip("\"'")
            if section == "audio":
                audio_header = i
            continue
        if section == "audio":
            k = _KEY.match(line.rstrip("\n"))
            if k:
                end = line[len(line.rstrip("\r\n")):]
                lines[i] = f"{k.group(1)}{_number(value)}{k.group(3)}{end}"
                return "".join(lines)
    entry = f"gate_dbfs = {_number(value)}\n"
    if audio_header is not None:
        lines.insert(audio_header + 1, entry)
        return "".join(lines)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return "".join(lines) + ("\n" if lines else "") + "[audio]\n" + entry


def save_gate(path: str | os.PathLike, value: float) -> None:
    """Write audio.gate_dbfs = ``value`` into the config file at ``path`` (raises OSError,
    or ValueError if the edit would not parse back to that value)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    new = set_gate(path.read_text(encoding="utf-8"), value)
    try:
        got = tomllib.loads(new).get("audio", {}).get("gate_dbfs")
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"the edited file would not be valid TOML ({e}); left unchanged")
    if got is None or float(got) != float(value):
        raise ValueError("the edited file does not read back as intended; left unchanged")
    st = path.stat()
    write_atomic(path, new.encode("utf-8"))
    # The new file is a new inode: give it the old one's mode and (as root, for the service's
    # /etc/beepnet/beepnet.toml, readable by the beepnet group) its owner and group.
    os.chmod(path, st.st_mode & 0o7777)
    try:
        os.chown(path, st.st_uid, st.st_gid)
    except PermissionError:
        pass  # not root: the file was ours anyway
