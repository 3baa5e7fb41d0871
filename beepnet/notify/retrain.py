"""`/retrain`: `beepnet train --feedback` run by the bot, its outcome told in the chat.

The training is a child process (``python -m beepnet train --feedback --config <the
daemon's file>``), niced so that listening keeps its CPU: with PyTorch (the train extra),
hundreds of MB the daemon itself never loads, it fine-tunes the whole model in a minute on
an idle 2-core x86 machine (several on a Pi, 5-10x slower a core: not measured yet);
without it the command falls back to ``--head`` by itself and refits the model's beep
output in numpy in seconds (`beepnet.enroll.answers`). It puts the new model in use itself, as from a shell: it sets
``detector.model`` in the config file and sends this daemon SIGHUP, which loads the new
model beside the old one and switches once it is ready. One retraining at a time; a daemon
that stops ends it (asyncio cancels the waiting task, which terminates the child).

What the owner reads comes from the report the command leaves in the feedback folder
(`beepnet.notify.feedback.RETRAIN_REPORT`), written for a phone rather than the aligned
tables the command prints.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .feedback import RETRAIN_REPORT

log = logging.getLogger(__name__)

NICE = 10
TAIL_LINES = 3


TRAIN_MODULES = ("torch", "pandas", "sklearn", "tqdm")
"""What `beepnet train` imports from the train extra (found, not imported: the daemon never
loads them)."""


def missing_train_modules() -> list[str]:
    """The train extra's modules that are not installed here: then /retrain refits only the
    model's beep output, in numpy (`beepnet.enroll.answers`)."""
    return [m for m in TRAIN_MODULES if importlib.util.find_spec(m) is None]


def _score_text(s: dict) -> str:
    return (f"{s['caught']} of {s['beeps']} beeps caught, {s['false_positives']} of "
            f"{s['negatives']} others taken for one")


def outcome_text(report: dict) -> str:
    """The report of `beepnet train --feedback`, for a phone."""
    lines = []
    status = report.get("status")
    model = Path(report.get("model") or "").name
    seconds = float(report.get("seconds", 0))
    took = f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
    if status == "in use":
        lines.append(f"Retrained on your answers in {took}: the new model {model} is in use "
                     "now.")
    elif status == "worse":
        lines.append(f"Retrained on your answers, but the new model makes more mistakes: the "
                     f"model in use stays (the new one is kept as {model}).")
    else:
        lines.append(f"Retraining ended: {report.get('message', status)}")
    for c in report.get("comparisons", []):
        lines.append(f"{c['title'].capitalize()}: new {_score_text(c['new'])}; before "
                     f"{_score_text(c['current'])}.")
    if status == "in use":
        lines.append("To go back: beepnet enroll --use-shipped (the shipped model), or set "
                     "detector.model to the previous one.")
    return "\n".join(lines)


class Retrainer:
    """At most one `beepnet train --feedback` child at a time."""

    def __init__(self, config_path: Path | None, storage_dir: Path, feedback_dir: Path,
                 tell: Callable[[str, str], None]):
        """``tell``: queue a message for the owner (Notifier.message): the outcome arrives
        minutes later, and must outlive a network fault then."""
        self.config_path = config_path
        self.storage_dir = storage_dir
        self.feedback_dir = feedback_dir
        self.tell = tell
        self.started: float | None = None
        self._task: asyncio.Task | None = None

    def command(self) -> list[str]:
        # The storage folder as this daemon resolved it (its --set storage.dir included):
        # the corrections are there, and so is the status file that finds this daemon.
        cmd = [sys.executable, "-m", "beepnet", "train", "--feedback",
               "--set", f"storage.dir={self.storage_dir}"]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        return cmd

    def start(self, counts_text: str) -> str:
        """Start retraining (on the running loop); the reply to /retrain."""
        if self._task is not None and not self._task.done():
            since = time.strftime("%H:%M", time.localtime(self.started))
            return f"Already retraining since {since}; I will tell you how it went."
        self.started = time.time()
        self._task = asyncio.get_running_loop().create_task(self._run())
        missing = missing_train_modules()
        if missing:
            return (f"Retraining on your answers ({counts_text}): the training extra is not "
                    f"installed here ({', '.join(missing)} missing), so only the beep output "
                    "of the model in use is refitted, in seconds (pip install "
                    "'beepnet[train]' on this machine fine-tunes all of it; for the service: "
                    "sudo TORCH_SPEC='torch==2.13.*' make install-service). I will tell you "
                    "how it went.")
        return (f"Retraining on your answers ({counts_text}), starting from the model in "
                "use. This takes a few minutes; beepnet keeps listening meanwhile, and I will "
                "tell you how it went.")

    async def _run(self) -> None:
        report_path = self.feedback_dir / RETRAIN_REPORT
        try:
            report_path.unlink(missing_ok=True)
        except OSError:
            pass
        cmd = self.command()
        log.info("/retrain: %s", " ".join(cmd))
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                preexec_fn=lambda: os.nice(NICE))
        except OSError as e:
            log.error("/retrain: cannot start %s: %s", sys.executable, e.strerror or e)
            self.tell("retrain", f"Could not start retraining: {e.strerror or e}.")
            return
        try:
            out, _ = await proc.communicate()
        except asyncio.CancelledError:
            # beepnet is stopping: a half-trained model is worth nothing.
            proc.terminate()
            raise
        text = out.decode(errors="replace").strip()
        for line in text.splitlines():
            log.info("/retrain: %s", line)
        try:
            report = json.loads(report_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            report = None
        if report is None or proc.returncode not in (0, 3):
            tail = [ln for ln in text.splitlines() if ln.startswith("beepnet")][-TAIL_LINES:] \
                or text.splitlines()[-TAIL_LINES:]
            self.tell("retrain", "Retraining failed (exit status "
                      f"{proc.returncode}): " + ("\n".join(tail) or "no output"))
            return
        self.tell("retrain", outcome_text(report))
