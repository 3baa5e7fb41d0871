"""Pointing the config file at a model: keys of one table changed in place in the TOML text.

Also which config file that is (`config_target`), and `put_in_use` for every command that
puts a model in use (`beepnet enroll`, `beepnet train --feedback`, the bot's /retrain):
through the config file when it can be written, else through the state folder's
``models/in-use.json`` (`beepnet.model.inuse`: the service's own /retrain, whose config
file is root's).

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

from .. import config
from ..config import Config
from ..fsutil import write_atomic

_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\"' -]+?)\s*\]\s*(#.*)?$")


class ConfigFileError(Exception):
    """The config file cannot be changed; ``str()`` is one line."""


def config_target(cfg: Config) -> Path:
    """The config file to change: the one in use, else the user's own (created)."""
    return cfg.origin.path or config.user_config(os.environ)


def writable(path: Path) -> str | None:
    """Why the config file ``path`` (maybe not there yet) cannot be written, or None."""
    if path.exists():
        if not path.is_file():
            return "not a file"
        if not os.access(path, os.W_OK):
            return "permission denied"
        folder = path.parent
    else:
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            return f"{folder} is not a folder"
    # It is replaced atomically, through a temp file in its folder.
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot create files in {folder}"
    return None


def put_in_use_problem(cfg: Config) -> str | None:
    """Why no new model could be put in use (one line), or None: the config file can be
    written, or else the state folder's in-use.json can."""
    from ..model import inuse

    target = config_target(cfg)
    why = writable(target)
    if why is None:
        return None
    choice = inuse.path_in(config.state_dir(cfg))
    also = writable(choice)
    if also is None:
        return None
    return (f"cannot write config file {target} ({why}) nor {choice} ({also}): run as a user "
            "who can (sudo for /etc/beepnet/beepnet.toml), or give --config PATH")


def put_in_use(cfg: Config, model: str, by: str) -> str:
    """Make ``model`` ("" the shipped model) the model in use; the line that says how.
    ConfigFileError when it cannot be."""
    from ..model import inuse

    target = config_target(cfg)
    state = config.state_dir(cfg)
    why = writable(target)
    if why is None:
        use_model(target, model)
        try:
            inuse.forget(state)  # the config file decides again
        except OSError:
            pass
        return f"set detector.model = \"{model}\" in {target}"
    # The config's own detector.model, under any model put in use before this way.
    config_model = cfg.origin.chosen.config_model if cfg.origin.chosen else cfg.detector.model
    try:
        if not model:
            inuse.forget(state)
            if config_model:
                raise ConfigFileError(f"cannot write config file {target} ({why}), which sets "
                                      f"detector.model = \"{config_model}\"")
            return f"removed {inuse.path_in(state)}: the config file's model is in use again"
        where = inuse.write(state, Path(model), config_model, by)
    except OSError as e:
        raise ConfigFileError(f"cannot write config file {target} ({why}) nor "
                              f"{inuse.path_in(state)} ({e.strerror or e})") from None
    return (f"config file {target} cannot be changed ({why}): put the new model in use "
            f"through {where} (a detector.model set in the config file wins over it)")


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
