"""Every notification channel besides Telegram, through Apprise (ntfy, Pushover, Gotify,
Discord, e-mail ...): one :class:`AppriseChannel` per URL in ``notify.apprise_urls`` and
``notify.apprise_file``.

Apprise URLs carry passwords and tokens, and Apprise logs freely: its TRACE level prints a
URL as written while parsing it, its DEBUG level the payloads and headers (a Gotify key, the
ntfy topic), its WARNINGs name the topic or the token it rejects, and urllib3 logs each request
path at DEBUG (a Discord webhook's token is in it). So, from the first use on:

- the ``apprise`` logger is held at WARNING unless somebody set its level on purpose;
- a filter on Apprise's and urllib3's loggers replaces every secret of every channel in each
  record with ``****``;
- while a channel parses or sends, Apprise's records from that thread stay out of the log
  altogether: they become the text of the :class:`ChannelError` (or ValueError) instead, where
  the caller decides what to log.

Apprise itself is imported only inside the functions here: with its ~190 plugins, which it
loads on the first parse, it costs the daemon about 17 MB of memory (30 MB in a bare Python),
paid only when Apprise URLs are set.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

log = logging.getLogger(__name__)

MASK = "****"
MIN_SECRET = 3
"""Shorter pieces of a URL are no secret, and replacing them would garble every message."""
REASON_MAX = 400
SILENT_FLAG_DISCORD = 1 << 12
"""Discord's SUPPRESS_NOTIFICATIONS message flag."""
NO_FILE_NOTE = "(The sound clip goes to Telegram only: {service} takes no files.)"

_GUARDED_LOGGERS = ("apprise", "urllib3.connectionpool", "urllib3.util.retry")
_URL_START = r"[A-Za-z][A-Za-z0-9+.-]*://"
# Spaces always separate URLs; a comma only when a new URL follows it, since commas also
# occur inside one (mailto://...?to=a@x.org,b@y.org, ntfy's tags=a,b).
_SEPARATOR = re.compile(rf"\s+|,(?=\s*{_URL_START})")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,24})://")
_PIECE = re.compile(r"[/?&=,;@:#\s]+")
_STATUS = re.compile(r"error=(\d{3})\b")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_~+=-]+")
_ANY_URL = re.compile(rf"{_URL_START}\S*")


class ChannelError(Exception):
    """A send that did not get through. Its text is one line, without any secret."""


# -- sending without sound ------------------------------------------------------------------
#
# quiet_mode = "silent" sends during quiet hours without sound where the service allows it.
# What each one offers (from Apprise's plugins and the services' own documentation); applied
# to a copy of the channel, made from the URL with that one parameter changed:
#
# | service (Apprise plugin) | URL parameter   | effect                                          |
# |--------------------------|-----------------|-------------------------------------------------|
# | ntfy                     | priority=low    | no sound or vibration, listed in the drawer     |
# |                          |                 | (a URL already at min or low is left alone)     |
# | Pushover                 | priority=-1     | no sound or vibration, still a notification     |
# |                          |                 | (-2, no notification at all, is left alone)     |
# | Gotify                   | priority=3      | Android app: 1-3 icon only, 4-7 sound, 8-10     |
# |                          |                 | sound and vibration (0 to 3 are left alone)     |
# | Telegram (tgram://)      | silent=yes      | disable_notification: arrives without sound     |
# | Discord                  | flags |= 4096   | SUPPRESS_NOTIFICATIONS: no push or desktop      |
# |                          |                 | notification; other flags are kept              |
# | Bark (iOS)               | level=passive   | listed without sound or lighting the screen     |
# | Pushsafer                | sound=silent    | no sound (vibration as the device is set)       |
# | Nextcloud Talk           | silent=yes      | the message creates no notification             |
# | Matrix                   | msgtype=notice  | the default push rules do not notify notices    |
# | everything else: e-mail, Slack, Signal, WhatsApp, Pushbullet, Mattermost, MQTT, Home     |
# | Assistant, json/form/xml ...: no per-message way; sent normally                          |
#
# Each entry: the URL parameter, and from its current value (as Apprise renders it, or None)
# the value to set, or None when the URL is already that quiet.

def _unless(value: str, *quiet: str) -> Callable[[str | None], str | None]:
    return lambda now: None if (now or "").lower() in quiet else value


def _discord_flags(now: str | None) -> str | None:
    flags = int(now) if now and now.isdigit() else 0
    return None if flags & SILENT_FLAG_DISCORD else str(flags | SILENT_FLAG_DISCORD)


_SILENT: dict[str, tuple[str, Callable[[str | None], str | None]]] = {
    "NotifyNtfy": ("priority", _unless("low", "low", "min")),
    "NotifyPushover": ("priority", _unless("-1", "moderate", "low")),
    "NotifyGotify": ("priority", _unless("3", "moderate", "low")),
    "NotifyTelegram": ("silent", _unless("yes", "yes")),
    "NotifyDiscord": ("flags", _discord_flags),
    "NotifyBark": ("level", _unless("passive", "passive")),
    "NotifyPushSafer": ("sound", _unless("silent", "silent")),
    "NotifyNextcloudTalk": ("silent", _unless("yes", "yes")),
    "NotifyMatrix": ("msgtype", _unless("notice", "notice")),
}
"""Keyed by the plugin's class, so a native URL (https://discord.com/api/webhooks/...) is
covered as well as its discord:// form."""


# -- keeping secrets out of the log -----------------------------------------------------------

def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with each of ``secrets`` (longest first) replaced by the mask."""
    for s in secrets:
        text = text.replace(s, MASK)
    return text


class _Guard(logging.Filter):
    """Sits on Apprise's and urllib3's loggers: scrubs every record of all known secrets, and
    while this thread is inside :meth:`holding`, keeps Apprise's records out of the log."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self._local = threading.local()

    def add(self, secrets: set[str]) -> None:
        with self._lock:
            self._secrets = tuple(sorted(set(self._secrets) | secrets, key=len, reverse=True))

    @contextmanager
    def holding(self) -> Iterator[list[logging.LogRecord]]:
        """Collect (instead of log) the ``apprise`` records this thread makes meanwhile.
        Apprise sends in the calling thread when a plugin is used directly."""
        before = getattr(self._local, "held", None)
        self._local.held = held = []
        try:
            yield held
        finally:
            self._local.held = before

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not stop the scrubbing
            text = str(record.msg)
        record.msg, record.args = _scrub(text, self._secrets), None
        if record.exc_info or record.exc_text:
            # A traceback's text can quote a URL; its type and message are enough here.
            exc = record.exc_info[1] if record.exc_info else None
            if exc is not None:
                record.msg += f" ({type(exc).__name__}: {_scrub(str(exc), self._secrets)})"
            record.exc_info, record.exc_text = None, None
        held = getattr(self._local, "held", None)
        if held is not None and record.name == "apprise":
            held.append(record)
            return False
        return True


_GUARD = _Guard()


def _apprise() -> Any:
    """The apprise module, imported on first use (its plugins cost ~17 MB: the daemon only
    pays for them when Apprise URLs are set), its logging guarded."""
    # Before the import, which already logs.
    for name in _GUARDED_LOGGERS:
        logger = logging.getLogger(name)
        if _GUARD not in logger.filters:
            logger.addFilter(_GUARD)
    core = logging.getLogger("apprise")
    if core.level == logging.NOTSET:
        # Below WARNING Apprise dumps URLs, payloads and headers: not for the daemon's log,
        # however verbose that is. (Someone who sets the level on purpose gets what they ask
        # for, still scrubbed.)
        core.setLevel(logging.WARNING)
    import apprise

    return apprise


# -- URLs ---------------------------------------------------------------------------------------

def _scheme_only(url: str) -> str:
    """What of a URL Apprise could not parse can be shown: its scheme."""
    m = _SCHEME.match(url)
    return f"{m.group(1).lower()}://..." if m else "without scheme://"


def _userinfo(url: str) -> tuple[str, str]:
    """(user, password) of a URL as written, '' when absent."""
    rest = url.split("://", 1)[-1]
    netloc = re.split(r"[/?]", rest, maxsplit=1)[0]
    info = netloc.rpartition("@")[0]
    user, _, password = info.partition(":")
    return user, password


def _pieces(url: str) -> list[str]:
    """The pieces of a URL after its scheme (host, path segments, query keys and values,
    user and password), as written."""
    return [p for p in _PIECE.split(url.split("://", 1)[-1]) if p]


def _looks_like_token(piece: str) -> bool:
    """A piece that reads as a credential (a webhook id or token in a path, which Apprise's
    privacy rendering leaves as it is): long, of token characters (no dots or @: not a host
    or an address), with letters and digits or very long."""
    if not _TOKEN_CHARS.fullmatch(piece) or len(piece) < 12:
        return False
    mixed = re.search(r"[A-Za-z]", piece) is not None and re.search(r"\d", piece) is not None
    return mixed or len(piece) >= 24


def _path_and_query_values(url: str) -> list[str]:
    rest = url.split("://", 1)[-1]
    path, _, query = rest.partition("?")
    segments = path.split("/")[1:]
    values = [kv.partition("=")[2] for kv in query.split("&")]
    return [p for p in segments + values if p]


def _secrets_of(url: str, plugin: Any) -> set[str]:
    """Every string of ``url`` that must not be shown: its user and password (also as HTTP
    Basic credentials), the tokens Apprise marks private, whatever Apprise's privacy
    rendering hides, path segments and values that look like tokens, and an ntfy topic
    (which ntfy's documentation calls essentially a password)."""
    found: set[str] = set()
    user, password = _userinfo(url)
    users = {user, unquote(user), str(getattr(plugin, "user", "") or "")}
    passwords = {password, unquote(password), str(getattr(plugin, "password", "") or "")}
    found |= users | passwords
    for u in users:
        for p in passwords:
            if u and p:
                found.add(base64.b64encode(f"{u}:{p}".encode()).decode())

    specs = {**getattr(plugin, "template_tokens", {}), **getattr(plugin, "template_args", {})}
    for key, spec in specs.items():
        if isinstance(spec, dict) and spec.get("private"):
            value = getattr(plugin, spec.get("map_to", key), None)
            values = value if isinstance(value, (list, tuple, set)) else [value]
            found |= {v for v in values if isinstance(v, str)}

    # Apprise's full rendering of a URL parses back to the same plugin, so every secret is in
    # it; whatever its privacy rendering leaves out is one.
    shown = plugin.url(privacy=True)
    shown_pieces = {p.lower() for p in _pieces(shown) + _pieces(unquote(shown))}
    full = plugin.url()
    for piece in _pieces(full) + _pieces(unquote(full)):
        if piece.lower() not in shown_pieces:
            found.add(piece)
    found |= {p for p in _path_and_query_values(url) if _looks_like_token(unquote(p))}
    if type(plugin).__name__ == "NotifyNtfy":
        found |= set(_path_and_query_values(url.partition("?")[0]))
        found |= {t for t in getattr(plugin, "topics", None) or () if isinstance(t, str)}

    found |= {unquote(s) for s in found}
    return {s for s in found if len(s) >= MIN_SECRET}


def _mask_piece(piece: str, secrets: set[str]) -> str:
    """A piece of the privacy rendering for the label: masked the way Apprise masks tokens
    when it is one of the secrets, else scrubbed of any it contains."""
    if piece.lower() in {s.lower() for s in secrets}:
        return f"{piece[0]}...{piece[-1]}" if len(piece) >= 6 else MASK
    return _scrub(piece, tuple(sorted(secrets, key=len, reverse=True)))


def _label(plugin: Any, secrets: set[str]) -> str:
    """"ntfy (127.0.0.1:8080/b...t)": the service, then host and path from Apprise's privacy
    rendering, without user, query or any secret."""
    rest = plugin.url(privacy=True).split("://", 1)[-1].split("?", 1)[0]
    netloc, _, path = rest.partition("/")
    parts = [netloc.rpartition("@")[2]] + [unquote(s) for s in path.split("/") if s]
    where = "/".join(_mask_piece(p, secrets) for p in parts if p)
    return f"{plugin.service_name} ({where})" if where else str(plugin.service_name)


def _with_param(url: str, key: str, value: str) -> str:
    """``url`` with query parameter ``key`` set to ``value`` (Apprise's keys are case-blind)."""
    base, _, query = url.partition("?")
    kept = [kv for kv in query.split("&") if kv and kv.partition("=")[0].lower() != key]
    return f"{base}?{'&'.join(kept + [f'{key}={value}'])}"


def _param(url: str, key: str) -> str | None:
    for kv in url.partition("?")[2].split("&"):
        k, _, v = kv.partition("=")
        if k.lower() == key:
            return unquote(v)
    return None


def _one_line(records: list[logging.LogRecord], secrets: tuple[str, ...]) -> str:
    """Apprise's warnings and errors as one line, each once, scrubbed."""
    said: list[str] = []
    for r in records:
        if r.levelno >= logging.WARNING:
            text = " ".join(r.getMessage().split()).rstrip(".")
            if text and text not in said:
                said.append(text)
    return _scrub("; ".join(said), secrets)


def _parse(url: str, where: str) -> Any:
    """Apprise's plugin for ``url``; ValueError (one line, the URL masked) when Apprise cannot
    use it. ``where`` names it: "notify.apprise_urls: the 2nd URL"."""
    apprise = _apprise()
    with _GUARD.holding() as held:
        try:
            plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        except Exception:  # noqa: BLE001 - whatever Apprise raises, the answer is the same
            plugin = None
    if plugin is None:
        # Apprise's reason quotes the URL's parts: hide all but the scheme.
        hide = {p for p in _path_and_query_values(url) + _pieces(url.partition("?")[0])}
        hide |= {unquote(p) for p in hide}
        secrets = tuple(sorted((p for p in hide if len(p) >= 2), key=len, reverse=True))
        # Apprise quotes the URL in its privacy rendering, which keeps a token's first and
        # last character: the scheme is enough.
        why = _ANY_URL.sub(lambda m: _scheme_only(m.group(0)), _one_line(held, secrets))
        raise ValueError(f"{where} ({_scheme_only(url)}) is not one Apprise understands"
                         + (f": {why}" if why else ""))
    if not getattr(plugin, "enabled", True):
        needs = (getattr(plugin, "requirements", None) or {}).get("packages_required") or []
        needs = ", ".join([needs] if isinstance(needs, str) else needs)
        shown = _label(plugin, _secrets_of(url, plugin))
        raise ValueError(f"{where} ({shown}) cannot be used on this system"
                         + (f": it needs {needs}" if needs else ""))
    return plugin


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _split(text: str) -> list[str]:
    return [p.strip(",") for p in _SEPARATOR.split(text) if p and p.strip(",")]


def read_urls(urls: str, file: str) -> list[str]:
    """The Apprise URLs of ``urls`` (separated by spaces or commas) and of ``file`` (one a
    line, '#' comments, blank lines), duplicates dropped, in order. ValueError, one line,
    for a file that cannot be read or a URL Apprise cannot use (its secrets masked)."""
    found: list[tuple[str, str]] = []
    for n, url in enumerate(_split(urls or ""), 1):
        found.append((url, f"notify.apprise_urls: the {_ordinal(n)} URL"))
    if file:
        try:
            text = Path(file).expanduser().read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"notify.apprise_file: cannot read {file}: "
                             f"{e.strerror or type(e).__name__}") from None
        except UnicodeDecodeError:
            raise ValueError(f"notify.apprise_file: {file} is not UTF-8 text") from None
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                for url in _split(line):
                    found.append((url, f"notify.apprise_file: line {n} of {file}"))
    out: list[str] = []
    for url, where in found:
        if url not in out:
            _parse(url, where)
            out.append(url)
    return out


class AppriseChannel:
    """One Apprise URL: a channel the notifier can send to, one attempt at a time."""

    def __init__(self, url: str):
        """Parses ``url`` once; ValueError (one line, the URL masked) when Apprise cannot."""
        url = url.strip()
        self._url = url
        self._plugin = _parse(url, "the Apprise URL")
        self._secrets = _secrets_of(url, self._plugin)
        _GUARD.add(self._secrets)
        self._ordered = tuple(sorted(self._secrets, key=len, reverse=True))
        scheme = _SCHEME.match(url)
        schema = scheme.group(1).lower() if scheme else "apprise"
        # From the URL as written: stable across restarts and reorderings, so the outbox's
        # per-channel delivery state still matches and nothing is sent twice.
        self.id = f"{schema}-{hashlib.sha256(url.encode()).hexdigest()[:10]}"
        self.label = _label(self._plugin, self._secrets)
        self.attachments = bool(getattr(self._plugin, "attachment_support", False))
        self._quiet: Any = None
        """The silent copy: None until first needed, then a plugin or False (none)."""

    def __repr__(self) -> str:
        return f"AppriseChannel({self.label})"

    # -- silent ----------------------------------------------------------------------------

    def _silent_change(self) -> tuple[str, str] | None:
        """(parameter, value) that makes this channel silent; None when there is no way, or
        the URL is that quiet already."""
        entry = _SILENT.get(type(self._plugin).__name__)
        if entry is None:
            return None
        key, quieter = entry
        value = quieter(_param(self._plugin.url(privacy=True), key))
        return (key, value) if value is not None else None

    def _silent_plugin(self) -> Any:
        if self._quiet is None:
            change = self._silent_change()
            self._quiet = False
            if change is not None:
                try:
                    # From Apprise's own full rendering of the URL, which it parses back the
                    # same way (a native https:// URL included).
                    self._quiet = _parse(_with_param(self._plugin.url(), *change),
                                         f"{self.label} made silent")
                except ValueError:
                    log.warning("%s: cannot make a silent copy; silent messages go out with "
                                "sound", self.label)
        return self._quiet or self._plugin

    # -- sending ---------------------------------------------------------------------------

    def send(self, text: str, title: str = "", attachment: Path | None = None,
             silent: bool = False, attachment_name: str = "") -> None:
        """Send once (blocking); ChannelError with the reason when it does not get through.
        ``attachment``: a file to attach (as ``attachment_name`` when given); a service that
        takes no files gets a last line saying so. ``silent``: without sound where the service
        has a way (see the table above), else as usual."""
        apprise = _apprise()
        plugin = self._silent_plugin() if silent else self._plugin
        attach = None
        if attachment is not None:
            if not Path(attachment).is_file():
                # Better the message without its clip than no message at all.
                log.warning("%s: the clip %s is gone; sending the message without it",
                            self.label, Path(attachment).name)
            elif self.attachments:
                from apprise.attachment.file import AttachFile

                attach = apprise.AppriseAttachment(
                    AttachFile(str(attachment), name=attachment_name or None))
            else:
                note = NO_FILE_NOTE.format(service=self._plugin.service_name)
                text = f"{text}\n\n{note}" if text else note
        with _GUARD.holding() as held:
            try:
                ok = plugin.notify(body=text, title=title, attach=attach)
            except Exception as e:  # noqa: BLE001 - anything Apprise raises is a failed send
                raise ChannelError(self._reason(held, f"{type(e).__name__}: {e}")) from None
        if not ok:
            raise ChannelError(self._reason(held))

    def _reason(self, held: list[logging.LogRecord], extra: str = "") -> str:
        said = _one_line(held, self._ordered)
        if extra:
            said = f"{said}; {extra}" if said else extra
        status = _STATUS.search(said)
        head = f"{self.label} answered {status.group(1)}" if status else f"{self.label} failed"
        text = f"{head}: {said}" if said else f"{head} (Apprise gave no reason)"
        text = _scrub(" ".join(text.split()), self._ordered)
        return text if len(text) <= REASON_MAX else text[:REASON_MAX - 3] + "..."

    def describe(self) -> str:
        """One line for `beepnet doctor` and `beepnet config`."""
        files = "sends the sound clip" if self.attachments else "text only (no files)"
        change = self._silent_change()
        if change is not None:
            quiet = f"silent with {change[0]}={change[1]}"
        elif type(self._plugin).__name__ in _SILENT:
            quiet = "silent as configured"
        else:
            quiet = "no silent mode (sent with sound)"
        return f"{self.label} [{self.id}]: {files}; {quiet}"


def channels_from_config(notify_cfg: Any) -> list[AppriseChannel]:
    """A channel for each URL of ``notify.apprise_urls`` and ``notify.apprise_file``;
    ValueError (one line) for a file or URL that cannot be used."""
    urls = read_urls(notify_cfg.apprise_urls, notify_cfg.apprise_file)
    return [AppriseChannel(url) for url in urls]
