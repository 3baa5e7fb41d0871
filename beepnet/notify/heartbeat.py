"""Liveness: a URL called every few minutes while listening works, so that a monitoring
service (healthchecks.io, an Uptime Kuma push monitor, an ntfy topic) tells the owner when
the calls stop: the Pi lost power, the network is down, or the microphone went quiet.

    hb = Heartbeat(cfg.notify.heartbeat_url, cfg.notify.heartbeat_minutes, supervisor_why_not)
    hb.start()
    ...
    hb.stop()

The URL holds a private token (whoever has it can fake "alive"), so no log line, error text
or ``last_error`` carries it: :func:`describe_url` shows it as ``https://hc-ping.com/…``.

Which HTTP method each service takes (their documentation and code):

- healthchecks.io: every ping endpoint accepts HEAD, GET and POST; a POST body is kept as
  the ping's log text (docs "Pinging API", healthchecks.io/docs/http_api).
- Uptime Kuma push monitors (``/api/push/<token>?status=up&msg=OK&ping=``): GET. Release 1.x
  registers the route for GET only, a POST gets "Cannot POST /api/push/…" 404
  (louislam/uptime-kuma#987, #3267; the maintainer declined a method option in #1991);
  2.0 moved to ``router.all``, but 1.x is what most installs still run.
- ntfy: publishing is PUT or POST on the topic URL (docs.ntfy.sh/publish). A GET on the
  topic URL does not publish: the server answers it with its web app's page, a 200 that
  looks like success (server.go: GET on a topic path -> handleTopic), and ``/<topic>/json``
  subscribes and streams forever. Its GET forms are ``/<topic>/publish`` (``/send``,
  ``/trigger``), and those take GET only.

So no one method works for all three: POST would be refused by Uptime Kuma 1.x, and GET
would silently publish nothing to ntfy. The rule (:func:`method_for`): GET for an Uptime
Kuma push path (``…/api/push/…``) and for ntfy's GET-publish paths, POST with a short text
body everywhere else: healthchecks.io stores the text, ntfy shows it as the message.
"""

from __future__ import annotations

import base64
import http.client
import logging
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from .. import __version__
from .duration import duration_text

log = logging.getLogger(__name__)

FIRST_DELAY_SECONDS = 10.0
"""The first call waits this long (at most one interval) after start: the recorder needs a
moment before healthy() can say anything true about it."""

HOLD_RECHECK_SECONDS = 15.0
"""While held, how often healthy() is asked again (at most one interval): the call comes
back soon after the pipeline does, not a whole interval later."""

_NTFY_GET_PUBLISH = ("publish", "send", "trigger")


def describe_url(url: str) -> str:
    """``scheme://host[:port]/…``: enough to tell which service, nothing of the token, path,
    query or user name and password."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(not a URL)"
    if not parts.scheme or not host:
        return "(not a URL)" if url.strip() else "(no URL)"
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"{parts.scheme.lower()}://{host}{f':{port}' if port else ''}/…"


def check_url(url: str) -> str | None:
    """None when ``url`` can be called, else a few words why not, without the token
    ("not an http:// or https:// URL"), to follow :func:`describe_url`."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        return "not a usable URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "not an http:// or https:// URL"
    if not parts.hostname:
        return "no host name in the URL"
    return None


def method_for(url: str) -> str:
    """"GET" or "POST" for ``url``: see the module's docstring for why."""
    path = urllib.parse.urlsplit(url.strip()).path.rstrip("/")
    if "/api/push/" in path + "/":
        return "GET"  # Uptime Kuma: 1.x answers a POST with 404
    if path.rsplit("/", 1)[-1].lower() in _NTFY_GET_PUBLISH and path.count("/") >= 2:
        return "GET"  # ntfy's /<topic>/publish|send|trigger: GET only
    return "POST"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is reported as an error, not followed: urllib turns a redirected POST
    into a GET without its body, which an ntfy server would take as "show the web app"."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        return None


class Heartbeat:
    """Calls ``url`` every ``minutes`` while ``healthy()`` returns None, from a daemon
    thread. ``healthy()``: None when the pipeline is healthy, else one line why not (e.g.
    "no audio from the microphone for 2 min"); while it says why not, no call is made, so
    that the monitoring service raises the alarm the owner needs.

    ``last_ok`` (on ``clock``'s scale, monotonic unless a test injects one: the age is
    ``clock() - last_ok``) and ``last_error`` (one line, no token) are for /status and
    ``beepnet doctor``."""

    def __init__(self, url: str, minutes: float, healthy: Callable[[], str | None], *,
                 timeout: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 name: str = "", first_delay: float = FIRST_DELAY_SECONDS):
        if not minutes > 0:
            raise ValueError(f"heartbeat minutes must be > 0, not {minutes!r}")
        self._url = url.strip()
        self._interval = minutes * 60.0
        self._healthy = healthy
        self._timeout = timeout
        self._clock = clock
        self._first_delay = max(0.0, min(first_delay, self._interval))
        self._where = describe_url(self._url)
        self._body = f"beepnet {name or socket.gethostname()}: listening".encode()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._held = False
        self._failures = 0
        self._ever_ok = False
        self.last_ok: float | None = None
        self.last_error: str | None = None

    @property
    def where(self) -> str:
        """The URL as it may be shown: ``https://hc-ping.com/…``."""
        return self._where

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Ends the thread; prompt, except that a call under way may take up to its
        ``timeout`` (the daemon thread is then left to finish it alone)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- the loop

    def _run(self) -> None:
        due = self._clock() + self._first_delay
        while not self._stop.wait(max(0.0, due - self._clock())):
            started = self._clock()
            reason = self._why_not()
            if reason is None:
                if self._held:
                    self._held = False
                    log.info("heartbeat resumed")
                self.beat_now()
                due = started + self._interval
            else:
                if not self._held:
                    self._held = True
                    log.warning("heartbeat held: %s", reason)
                due = started + min(self._interval, HOLD_RECHECK_SECONDS)

    def _why_not(self) -> str | None:
        try:
            return self._healthy()
        except Exception as e:  # a bug there must not end the heartbeat for good
            log.debug("heartbeat: health check raised", exc_info=True)
            return f"the health check failed ({type(e).__name__})"

    # -- one call

    def beat_now(self) -> bool:
        """One call now (the thread's, tests', ``beepnet doctor --send-test``): True when
        the service answered 2xx. Never raises."""
        with self._lock:
            problem = check_url(self._url)
            if problem:  # no use in "trying again": only a new setting helps
                if problem != self.last_error:
                    log.error("heartbeat off: notify.heartbeat_url %s is %s", self._where,
                              problem)
                self.last_error = problem
                return False
            try:
                error = self._call()
            except Exception as e:  # anything at all: a heartbeat never takes its caller down
                if isinstance(e, urllib.error.HTTPError):
                    e.close()
                error = _scrub(_why(e, self._timeout), self._url)
            if error is None:
                self._succeeded()
                return True
            self._failed(error)
            return False

    def _call(self) -> str | None:
        """None on a 2xx answer, else why not."""
        parts = urllib.parse.urlsplit(self._url)
        headers = {"User-Agent": f"beepnet/{__version__}"}
        if parts.username is not None or parts.password is not None:
            # urllib cannot send user:password@ from the URL itself (http.client would take
            # it for the host, and name it in its error): send it as Basic auth.
            pair = (f"{urllib.parse.unquote(parts.username or '')}:"
                    f"{urllib.parse.unquote(parts.password or '')}")
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
            netloc = parts.hostname if ":" not in (parts.hostname or "") else f"[{parts.hostname}]"
            if parts.port:
                netloc += f":{parts.port}"
            parts = parts._replace(netloc=netloc)
        method = method_for(self._url)
        data = None
        if method == "POST":
            data = self._body
            headers["Content-Type"] = "text/plain; charset=utf-8"
        req = urllib.request.Request(urllib.parse.urlunsplit(parts), data=data,
                                     headers=headers, method=method)
        with self._opener.open(req, timeout=self._timeout) as resp:
            resp.read(4096)  # a short answer ("OK"); never wait on a stream
            status = resp.status
        return None if 200 <= status < 300 else f"HTTP {status}"

    def _succeeded(self) -> None:
        self.last_ok = self._clock()
        self.last_error = None
        if self._failures:
            log.info("heartbeat to %s works again (%d call%s failed)", self._where,
                     self._failures, "" if self._failures == 1 else "s")
        elif not self._ever_ok:
            log.info("heartbeat to %s works", self._where)
        else:
            log.debug("heartbeat sent")
        self._failures = 0
        self._ever_ok = True

    def _failed(self, error: str) -> None:
        self.last_error = error
        self._failures += 1
        if self._failures == 1:  # once per outage: the next lines would say the same
            log.warning("heartbeat to %s failed: %s; trying again in %s", self._where, error,
                        _interval_text(self._interval))
        else:
            log.debug("heartbeat still failing (%d calls)", self._failures)


def _interval_text(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else duration_text(seconds)


def _why(e: BaseException, timeout: float) -> str:
    """One short line for what went wrong, from the exception's type rather than its text:
    some of those texts quote the URL."""
    if isinstance(e, urllib.error.HTTPError):
        if 300 <= e.code < 400:
            return f"HTTP {e.code}, a redirect (set the address it points to instead)"
        reason = e.reason if isinstance(e.reason, str) and len(e.reason) < 60 else ""
        return f"HTTP {e.code}" + (f" {reason}" if reason else "")
    if isinstance(e, urllib.error.URLError):
        if isinstance(e.reason, BaseException):
            return _why(e.reason, timeout)
        return str(e.reason)
    if isinstance(e, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} s"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ConnectionResetError):
        return "connection reset"
    if isinstance(e, socket.gaierror):
        return "host name not found"
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted ({e.verify_message})"
    if isinstance(e, ssl.SSLError):
        return f"TLS error ({e.reason or type(e).__name__})"
    if isinstance(e, http.client.RemoteDisconnected):
        return "the server closed the connection without an answer"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror[0].lower() + e.strerror[1:]
    if isinstance(e, ValueError):
        return "not a usable URL"
    return type(e).__name__


def _scrub(text: str, url: str) -> str:
    """``text`` without any piece of ``url`` that could be the secret (belt and braces:
    :func:`_why` already avoids exception texts that quote the URL)."""
    pieces = [url]
    try:
        parts = urllib.parse.urlsplit(url)
        pieces += [parts.netloc, parts.path, parts.query, parts.fragment,
                   parts.username or "", parts.password or ""]
        pieces += parts.path.split("/") + re.split(r"[&=]", parts.query)
    except ValueError:
        pass
    for piece in sorted(pieces, key=len, reverse=True):
        if len(piece) >= 4:  # shorter ones ("api", "1") are no secret and too common
            text = text.replace(piece, "…")
    return text
