"""Logging set-up shared by the CLI and every child process.

Under systemd (``$JOURNAL_STREAM`` set) lines carry a syslog priority prefix and no timestamp,
since journald adds its own; elsewhere they carry a time. Every line passes through a
formatter that hides bot tokens: httpx logs request URLs, and Telegram puts the token in them.
"""

from __future__ import annotations

import logging
import os
import re
import sys

_TOKEN_RE = re.compile(r"\d{5,}:[A-Za-z0-9_-]{30,}")
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Replace anything that looks like a bot token, and each given secret, with a marker."""
    for s in secrets:
        if s:
            text = text.replace(s, "<token>")
    return _TOKEN_RE.sub("<token>", text)


class RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, secrets: tuple[str, ...], journal: bool):
        super().__init__(fmt, datefmt="%H:%M:%S")
        self.secrets = secrets
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record), self.secrets)
        if self.journal:
            prefix = f"<{_PRIORITY.get(record.levelno, 6)}>"
            text = "\n".join(prefix + line for line in text.splitlines())
        return text


def setup(level: str = "info", secrets: tuple[str, ...] = ()) -> None:
    """Configure the root logger for this process (call once per process)."""
    journal = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = ("%(processName)s %(name)s: %(message)s" if journal
           else "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(fmt, secrets, journal))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO, and Bot API URLs contain the token; so does
    # python-telegram-bot at DEBUG. (The formatter would scrub them anyway: belt and braces.)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("telegram").setLevel(max(root.level, logging.INFO))
