"""Pointing the config file at a model: keys of one table changed in place in the TOML text.

As the monitor does for the gate (`beepnet.monitor.savegate`), the text is edited rather
than re-written by a TOML library, so the owner's comments and layout stay: each key's line
in the ``[detector]`` table is replaced (indentation and trailing comment kept), a missing
key is added right under the table's header, a missing table is appended. The result must
parse back to the values asked for before it replaces the file, atomically, with the old
file's mode (and owner, as root).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from ..fsutil import write_atomic

_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\"' -]+?)\s*\]\s*(#.*)?$")


class ConfigFileError(Exception):
    """The config file cannot be changed; ``str()`` is one line."""


def toml_string(value: str) -> str:
    """A TOML basic string (the path of a model may hold backslashes or quotes)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c >= " " or c == "\t" else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def set_keys(text: str, section: str, values: dict[str, str]) -> str:
    """``text`` with each ``section.key`` set to ``values[key]``; everything else untouched."""
    lines = text.splitlines(keepends=True)
    current, header = None, None
    todo = dict(values)
    for i, line in enumerate(lines):
        m = _TABLE.match(line)
        if m:
            current = m.group(1).strip().strip("\"'")
            if current == section and header is None:
                header = i
            continue
        if current != section:
            continue
        for key in list(todo):
            k = re.match(rf"^(\s*{re.escape(key)}\s*=\s*)([^#\n]*?)(\s*(#.*)?)$",
                         line.rstrip("\r\n"))
            if k:
                end = line[len(line.rstrip("\r\n")):]
                lines[i] = f"{k.group(1)}{toml_string(todo.pop(key))}{k.group(3)}{end}"
    added = "".join(f"{key} = {toml_string(v)}\n" for key, v in todo.items())
    if not added:
        return "".join(lines)
    if header is not None:
        lines.insert(header + 1, added)
        return "".join(lines)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return "".join(lines) + ("\n" if lines else "") + f"[{section}]\n" + added


def use_model(path: Path, model: str) -> None:
    """Make the config file at ``path`` run the BeepNet detector with ``model`` ("" is the
    shipped model); the file and its folder are created when missing. ConfigFileError."""
    values = {"kind": "beepnet", "model": model}
    try:
        old = path.read_text(encoding="utf-8")
        st = path.stat()
    except FileNotFoundError:
        old, st = "", None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigFileError(f"cannot read config file {path}: "
                              f"{getattr(e, 'strerror', None) or e}") from None
    new = set_keys(old, "detector", values)
    try:
        got = tomllib.loads(new).get("detector", {})
    except tomllib.TOMLDecodeError as e:
        raise ConfigFileError(f"config file {path}: the edited file would not be valid TOML "
                              f"({e}); left unchanged") from None
    if any(got.get(k) != v for k, v in values.items()):
        raise ConfigFileError(f"config file {path}: the edit does not read back as intended; "
                              "left unchanged")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, new.encode("utf-8"))
        if st is not None:
            os.chmod(path, st.st_mode & 0o7777)
            try:
                os.chown(path, st.st_uid, st.st_gid)
            except PermissionError:
                pass  # not root: the file was ours anyway
    except OSError as e:
        raise ConfigFileError(f"cannot write config file {path}: {e.strerror or e}") from None
