"""Logging set-up shared by the CLI and every child process.

Under systemd (``$JOURNAL_STREAM`` set) lines carry a syslog priority prefix and no timestamp,
since journald adds its own; elsewhere they carry a time. Every line passes through a
formatter that hides bot tokens: httpx logs request URLs, and Telegram puts the token in them.
So do uncaught exceptions, in the main thread or any other, and whatever else reaches stderr
(multiprocessing prints a dying child's traceback straight to it).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from types import TracebackType

log = logging.getLogger(__name__)

_TOKEN_RE = re.compile(r"\d{5,}:[A-Za-z0-9_-]{30,}")
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Replace anything that looks like a bot token, and each given secret, with a marker."""
    for s in secrets:
        if s:
            text = text.replace(s, "<token>")
    return _TOKEN_RE.sub("<token>", text)


class RedactingStream:
    """A text stream that scrubs what is written to it, then passes it on."""

    def __init__(self, stream, secrets: tuple[str, ...]):
        self.stream = stream
        self.secrets = secrets

    def write(self, text: str) -> int:
        self.stream.write(redact(text, self.secrets))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        # flush, fileno, isatty, encoding, buffer...: the wrapped stream's own.
        return getattr(self.stream, name)


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
    _scrub_stderr(secrets)
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
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_exception


def _scrub_stderr(secrets: tuple[str, ...]) -> None:
    if isinstance(sys.stderr, RedactingStream):
        sys.stderr.secrets = secrets
    elif sys.stderr is not None:  # pythonw, or a daemon started with stderr closed
        sys.stderr = RedactingStream(sys.stderr, secrets)


def _log_uncaught(kind: type[BaseException], value: BaseException,
                  tb: TracebackType | None) -> None:
    """sys.excepthook: the traceback through the log's formatter, so the token is hidden."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    log.critical("uncaught exception", exc_info=(kind, value, tb))


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """threading.excepthook: as the default one (which ignores SystemExit), but logged."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    log.critical("uncaught exception in thread %s", name,
                 exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
