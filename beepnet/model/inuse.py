"""A model put in use where the config file cannot be changed: ``storage.dir/models/in-use.json``.

`beepnet enroll` and `beepnet train --feedback` put their new model in use by setting
``detector.model`` in the config file. The service cannot: its config file is root's
(``/etc/beepnet``, read-only under ``ProtectSystem=strict``, and the service may read it,
not change it), yet the bot's ``/retrain`` runs as the service. So the retraining then
writes this small file in the state folder it owns instead, and config loading
(`beepnet.config.load`) applies it, with one rule that keeps the config file in charge:

    the file's model is used only while the effective ``detector.model`` is still what it
    was when the file was written (``config_model``).

So an owner who later sets ``detector.model`` (by hand, with `beepnet enroll`, or with
``--set``) gets that model, and a file left behind changes nothing. Switching back is
``beepnet enroll --use-shipped`` (which removes this file too) or deleting it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

NAME = "in-use.json"


@dataclass(frozen=True)
class Chosen:
    model: str
    """The model file put in use."""
    config_model: str
    """The effective detector.model when it was put in use ("" the shipped model)."""
    by: str
    """What put it in use ("beepnet train --feedback")."""
    time: float


def path_in(storage_dir: Path) -> Path:
    return Path(storage_dir) / "models" / NAME


def read(storage_dir: Path) -> Chosen | None:
    """The chosen model, or None when there is none (or it cannot be read: then the config
    file's model is the one, which is never a worse surprise than a half-read choice)."""
    try:
        blob = json.loads(path_in(storage_dir).read_text(encoding="utf-8"))
        return Chosen(str(blob["model"]), str(blob["config_model"]), str(blob.get("by", "")),
                      float(blob.get("time", 0.0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write(storage_dir: Path, model: Path, config_model: str, by: str) -> Path:
    """Put ``model`` in use for a daemon whose config says ``config_model``; OSError."""
    from ..fsutil import write_atomic

    dest = path_in(storage_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    blob = {"model": str(Path(model).resolve()), "config_model": config_model, "by": by,
            "time": time.time()}
    write_atomic(dest, (json.dumps(blob, indent=1) + "\n").encode())
    return dest


def forget(storage_dir: Path) -> bool:
    """Remove the choice (the config file decides again); whether there was one."""
    try:
        os.unlink(path_in(storage_dir))
        return True
    except FileNotFoundError:
        return False


def applies(chosen: Chosen | None, kind: str, config_model: str) -> bool:
    """Whether ``chosen`` stands for detector settings (kind, model) from the config."""
    return (chosen is not None and kind == "beepnet" and chosen.config_model == config_model
            and Path(chosen.model).is_file())


def describe(chosen: Chosen) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(chosen.time))
    return (f"detector.model {chosen.model}, put in use by `{chosen.by}` at {when} "
            f"(storage.dir/models/{NAME}; a detector.model set in the config file wins)")
