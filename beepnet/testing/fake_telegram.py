"""A fake Telegram Bot API server for tests and the benchmark.

It speaks enough of the Bot API (https://core.telegram.org/bots/api) for
python-telegram-bot 22 to work against it unchanged, records every request,
and can be told to misbehave (5xx, 429 flood control, dropped connections,
slow replies, outages, refused connections).

Pure standard library: one ``http.server`` listener on 127.0.0.1 with an
ephemeral port, HTTP/1.1 keep-alive, one thread per connection, all in the
background of the test process (a daemon under test may just as well run in a
subprocess and be pointed at :attr:`FakeTelegram.url`).

Typical use::

    with FakeTelegram(token=TOKEN, chats={12345}) as tg:
        bot = telegram.Bot(TOKEN, base_url=tg.base_url, base_file_url=tg.base_file_url)
        # i.e. base_url=f"{tg.url}/bot", base_file_url=f"{tg.url}/file/bot"
        ...
        (req,) = tg.wait_for("sendAudio")
        assert req.files["audio"][2] == clip_bytes

python-telegram-bot builds request URLs as ``base_url + token + "/" + method``
(``Bot._parse_base_url`` appends the token to ``base_url`` unless it contains
a ``{token}`` placeholder), so ``base_url`` must end in ``/bot`` *without* a
trailing slash: requests then arrive as ``POST /bot<token>/<method>``.  File
downloads use ``base_file_url + token + "/" + file_path``, i.e.
``GET /file/bot<token>/<file_path>``.

Incoming updates: :meth:`FakeTelegram.add_update` (a message, e.g. a command) and
:meth:`FakeTelegram.add_callback_query` (a press on a button of a message the bot sent) queue
updates for getUpdates; answerCallbackQuery (recorded in ``callback_answers``),
editMessageCaption / editMessageText / editMessageReplyMarkup (the stored message changes:
:meth:`FakeTelegram.message_by_id`) and setMyCommands (``commands``) are served. A second
poller's 409 is ``fail_always(409, description=CONFLICT, method="getUpdates")``.

Scripted failures (see :meth:`FakeTelegram.fail_next` and friends) are queued
and consumed one per request, in order, by the first request whose method
matches (``method=None`` matches any request).  A long outage
(:meth:`FakeTelegram.fail_always`: errors or garbage, :meth:`~FakeTelegram.drop_always`:
hang-ups, :meth:`~FakeTelegram.stall_always`: no answer at all) takes precedence over
the queue and does not consume it; :meth:`FakeTelegram.recover` ends the outage and discards
whatever is still queued.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import mimetypes
import re
import socket
import struct
import threading
import time
import urllib.parse
import zlib
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

log = logging.getLogger(__name__)

#: A token in the shape @BotFather hands out (digits, colon, 35 characters).
DEFAULT_TOKEN = "123456789:AAFakeTokenForTests_abcdefghijklmn"
DEFAULT_CHAT_ID = 12345

# Bot API limits the fake enforces, with the error texts Telegram uses.
MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_LONG_POLL = 30.0  # cap on getUpdates' `timeout`, so a stuck test cannot hang forever
#: What Telegram answers (409) to a getUpdates while another one is polling with the token.
CONFLICT = ("Conflict: terminated by other getUpdates request; make sure that only one bot "
            "instance is running")
_COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")

# /bot<token>/<method> and /file/bot<token>/<file_path>
_API_PATH = re.compile(r"^/bot(?P<token>[^/]*)/(?P<method>[^/]*)$")
_FILE_PATH = re.compile(r"^/file/bot(?P<token>[^/]*)/(?P<file_path>.+)$")

# Where Telegram puts uploads of each kind (the `file_path` getFile returns) and
# the MIME type assumed when an upload does not say.
_FILE_DIRS = {"audio": "music", "voice": "voice", "document": "documents"}
_DEFAULT_MIME = {"audio": "audio/mpeg", "voice": "audio/ogg",
                 "document": "application/octet-stream"}


# --------------------------------------------------------------------------- records

@dataclasses.dataclass
class Request:
    """One HTTP request as the fake received it."""

    verb: str                 # HTTP verb: "POST" (python-telegram-bot) or "GET"
    path: str                 # request target without the query string
    method: str | None        # Bot API method as sent ("sendMessage"); None for file downloads
    token: str | None         # the token from the URL (None if the path had none)
    headers: dict[str, str]   # header names lower-cased; repeated headers joined with ", "
    fields: dict[str, str]    # query string, form, multipart text parts or JSON (as strings)
    files: dict[str, tuple[str | None, str | None, bytes]]  # part -> (filename, type, data)
    time: float               # time.monotonic() when the request had been read
    client: tuple[str, int]   # client address: equal ports = same (kept-alive) connection
    body: bytes = dataclasses.field(default=b"", repr=False)
    dropped: bool = False     # the connection was closed instead of answering
    status: int | None = None  # HTTP status sent back (set just before the reply is written)
    response: Any = dataclasses.field(default=None, repr=False)  # the JSON sent back
    _stopping: threading.Event | None = dataclasses.field(default=None, repr=False,
                                                          compare=False)

    @property
    def chat_id(self) -> int | str | None:
        """``fields["chat_id"]`` as an int (or an ``@channel`` string), None if absent."""
        value = self.fields.get("chat_id")
        return None if value is None else _chat_key(value)

    def json(self, name: str, default: Any = None) -> Any:
        """A field decoded as JSON (python-telegram-bot JSON-encodes non-string values,
        e.g. ``reply_markup``); the raw string if it is not valid JSON."""
        if name not in self.fields:
            return default
        try:
            return json.loads(self.fields[name])
        except ValueError:
            return self.fields[name]


@dataclasses.dataclass
class _Script:
    """One scripted behaviour: what to do with the next `remaining` matching requests."""

    action: str                      # "fail", "drop" or "delay"
    remaining: float                 # math.inf for fail_always
    method: str | None = None        # lower-cased Bot API method, None = any request
    status: int = 500
    retry_after: int | None = None
    description: str | None = None
    body: bytes | None = None        # raw body instead of the JSON error (e.g. nginx HTML)
    seconds: float = 0.0
    reset: bool = False
    release: threading.Event | None = None  # "stall": set when the stall ends


    def matches(self, method: str | None) -> bool:
        return self.method is None or (method or "").lower() == self.method


class _ApiError(Exception):
    """Raised by a method implementation: becomes an ``{"ok": false, ...}`` reply."""

    def __init__(self, status: int, description: str, parameters: dict | None = None):
        super().__init__(description)
        self.status, self.description, self.parameters = status, description, parameters


def _error_payload(status: int, description: str, parameters: dict | None = None) -> dict:
    payload: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        payload["parameters"] = parameters
    return payload


def _chat_key(value: int | str) -> int | str:
    """Normalise a chat id: numeric strings become ints, ``@channel`` stays a string."""
    if isinstance(value, int):
        return value
    value = value.strip()
    return int(value) if re.fullmatch(r"-?\d+", value) else value


# --------------------------------------------------------------------------- body parsing

def _parse_params(header_value: str) -> tuple[str, dict[str, str]]:
    """Split ``form-data; name="audio"; filename="a b.mp3"`` into its value and params.

    Quoted values may contain ``;`` and backslash escapes; httpx writes a ``"`` inside
    a filename as ``%22`` (HTML5 form encoding), which is decoded too.
    """
    parts = re.findall(r'\s*((?:[^;"]|"(?:\\.|[^"\\])*")+)', header_value)
    value = parts[0].strip().lower() if parts else ""
    params: dict[str, str] = {}
    for part in parts[1:]:
        key, _, raw = part.partition("=")
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1]).replace("%22", '"')
        params[key.strip().lower()] = raw
    return value, params


def _parse_multipart(body: bytes, boundary: str
                     ) -> tuple[dict[str, str], dict[str, tuple[str | None, str | None, bytes]]]:
    """A small multipart/form-data parser (RFC 7578): text parts become fields, parts
    with a filename become files.  Binary content is returned byte for byte."""
    fields: dict[str, str] = {}
    files: dict[str, tuple[str | None, str | None, bytes]] = {}
    # Every delimiter but the first is preceded by CRLF; prefixing one makes all alike.
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    chunks = (b"\r\n" + body).split(delimiter)
    for chunk in chunks[1:]:             # chunks[0] is the (empty) preamble
        if chunk.startswith(b"--"):      # the close delimiter "--boundary--"
            break
        # After the delimiter: optional whitespace, CRLF, headers, CRLF CRLF, content.
        _, _, chunk = chunk.partition(b"\r\n")
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("multipart part without a header/body separator")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        _, params = _parse_params(headers.get("content-disposition", ""))
        name = params.get("name", "")
        if "filename" in params:
            files[name] = (params["filename"], headers.get("content-type"), content)
        else:
            fields[name] = content.decode("utf-8", "replace")
    return fields, files


def _parse_body(content_type: str, body: bytes
                ) -> tuple[dict[str, str], dict[str, tuple[str | None, str | None, bytes]]]:
    """Fields and files of a JSON, form-urlencoded or multipart/form-data body."""
    kind, params = _parse_params(content_type)
    if not body:
        return {}, {}
    if kind == "multipart/form-data":
        if "boundary" not in params:
            raise ValueError("multipart body without a boundary")
        return _parse_multipart(body, params["boundary"])
    if kind == "application/json":
        data = json.loads(body.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("JSON body is not an object")
        # Keep every field a string, as form encoding would have it ("12345", "true").
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}, {}
    # application/x-www-form-urlencoded (python-telegram-bot's choice without uploads)
    # and anything unlabelled.
    pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return dict(pairs), {}


# --------------------------------------------------------------------------- HTTP layer

class _Server(HTTPServer):
    """An HTTPServer with one daemon thread per connection that it can cut off on stop."""

    allow_reuse_address = True   # SO_REUSEADDR: start() again on the same port at once
    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: FakeTelegram):
        self.fake = fake
        self.stopping = threading.Event()   # per listener, so a restart starts afresh
        self._conn_lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address),
                                  name=f"fake-telegram-conn-{client_address[1]}", daemon=True)
        with self._conn_lock:
            self._connections[request] = thread
        thread.start()

    def _serve_connection(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:
            # socketserver would print a traceback to stderr; a client hanging up is
            # routine here (timeouts, drops), so it is only worth a debug line.
            log.debug("fake telegram: error on connection from %s", client_address,
                      exc_info=True)
        finally:
            self.shutdown_request(request)

    def close_request(self, request):
        with self._conn_lock:
            self._connections.pop(request, None)
        super().close_request(request)

    def cut_connections(self, timeout: float = 5.0) -> None:
        """Close every open connection (idle keep-alive ones too) and wait for their
        threads, so that a stopped server really answers nothing at all."""
        with self._conn_lock:
            connections = list(self._connections.items())
        for sock, _ in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for _, thread in connections:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"      # keep-alive; every reply carries Content-Length
    server_version = "FakeTelegram/1.0"
    # TCP_NODELAY: headers and body go out as two writes; with Nagle on, the body would
    # wait ~40 ms for the client's delayed ACK on every reused connection.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        # The stdlib would print to stderr; log at DEBUG instead, without the token (tests
        # that look for the token in captured logs should only find the client's leaks).
        message = format % args
        for token in {self.server.fake.token, urllib.parse.quote(self.server.fake.token)}:
            message = message.replace(token, "<token>")
        log.debug("fake telegram: %s", message)

    def do_POST(self) -> None:
        self._handle()

    do_GET = do_POST

    # -- reading -----------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass                      # skip trailers
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()             # CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _parse(self) -> Request | None:
        """Read and parse the request; answers 400 itself (and returns None) if malformed."""
        body = self._read_body()
        received = time.monotonic()
        target = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(target.path)
        method = token = None
        if m := _API_PATH.match(path):
            method, token = m["method"], m["token"]
        elif m := _FILE_PATH.match(path):
            token = m["token"]
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        fields = dict(urllib.parse.parse_qsl(target.query, keep_blank_values=True))
        try:
            body_fields, files = _parse_body(headers.get("content-type", ""), body)
        except (ValueError, UnicodeDecodeError) as exc:
            log.debug("fake telegram: unparseable body: %s", exc)
            self._reply_json(None, 400, _error_payload(400, "Bad Request: can't parse request"))
            return None
        fields.update(body_fields)
        return Request(verb=self.command, path=path, method=method, token=token,
                       headers=headers, fields=fields, files=files, time=received,
                       client=tuple(self.client_address[:2]), body=body,
                       _stopping=self.server.stopping)

    # -- answering ---------------------------------------------------------------

    def _handle(self) -> None:
        fake = self.server.fake
        req = self._parse()
        if req is None:
            return
        fake._record(req)
        script = fake._take_script(req.method)

        if script is not None and script.action == "stall":
            # A hung server: no answer until the stall ends, then a hang-up, so nothing a
            # stalled request asked for has taken effect.
            while not (script.release.is_set() or self.server.stopping.is_set()):
                script.release.wait(0.1)
            self._drop(req)
            return
        if script is not None and script.action == "delay":
            # Sleep, but wake up (and answer nothing) if the server is stopped meanwhile.
            self.server.stopping.wait(script.seconds)
        if self.server.stopping.is_set() or (script is not None and script.action == "drop"):
            self._drop(req, reset=script is not None and script.reset)
            return

        if script is not None and script.action == "fail":
            if script.body is not None:
                self._reply_raw(req, script.status, script.body, "text/html; charset=utf-8")
                return
            description = script.description or _default_description(script.status,
                                                                      script.retry_after)
            params = {"retry_after": script.retry_after} if script.retry_after else None
            self._reply_json(req, script.status,
                             _error_payload(script.status, description, params))
            return

        if req.method is None:                       # GET /file/bot<token>/<file_path> etc.
            status, data, content_type = fake._download(req)
            if self.server.stopping.is_set():
                self._drop(req)
            elif content_type == "application/json":
                self._reply_json(req, status, json.loads(data))
            else:
                self._reply_raw(req, status, data, content_type)
            return

        status, payload = fake._dispatch(req)
        if self.server.stopping.is_set():            # e.g. a long poll cut short by stop()
            self._drop(req)
            return
        self._reply_json(req, status, payload)

    def _reply_json(self, req: Request | None, status: int, payload: dict) -> None:
        if req is not None:
            req.response = payload
        self._reply_raw(req, status, json.dumps(payload).encode("utf-8"), "application/json")

    def _reply_raw(self, req: Request | None, status: int, data: bytes,
                   content_type: str) -> None:
        if req is not None:
            req.status = status
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            # The client gave up first (e.g. its read timeout expired during a delay).
            self.close_connection = True

    def _drop(self, req: Request, reset: bool = False) -> None:
        """Close the connection without a reply: the client sees the server hang up
        (EOF; with `reset`, a TCP RST, i.e. "connection reset by peer")."""
        req.dropped = True
        self.close_connection = True
        if reset:
            try:
                # Linger on, timeout 0: close() discards the socket with an RST, no FIN.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()
            except OSError:
                pass


def _default_description(status: int, retry_after: int | None = None) -> str:
    if status == 429:
        return f"Too Many Requests: retry after {retry_after}" if retry_after \
            else "Too Many Requests"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown Error"


# --------------------------------------------------------------------------- the fake

class FakeTelegram:
    """A fake Bot API server; see the module docstring.

    Args:
        token: the only token the server accepts; any other gets 401 Unauthorized.
        chats: chat ids the bot can write to (ints, or ``"@channel"`` names); others get
            400 "Bad Request: chat not found".  Mutable while running (``tg.chats.add``).
        blocked: chats that blocked the bot: sending there gets 403 "Forbidden: bot was
            blocked by the user" (they still count as known chats for getChat).
        port: 0 for an ephemeral port, kept across stop()/start().
    """

    def __init__(self, token: str = DEFAULT_TOKEN, chats: Iterable[int | str] = (DEFAULT_CHAT_ID,),
                 blocked: Iterable[int | str] = (), *, host: str = "127.0.0.1", port: int = 0,
                 bot_username: str = "beepnet_test_bot", bot_name: str = "beepnet test bot"):
        self.token = token
        self.chats: set[int | str] = {_chat_key(c) for c in chats}
        self.blocked: set[int | str] = {_chat_key(c) for c in blocked}
        self.host = host
        self._port = port
        head = token.split(":", 1)[0]
        self.bot_user = {"id": int(head) if head.isdigit() else 1, "is_bot": True,
                         "first_name": bot_name, "username": bot_username,
                         "can_join_groups": True, "can_read_all_group_messages": False,
                         "supports_inline_queries": False}

        # One condition guards all state below; waiters (wait_for, long polls) use it.
        self._cond = threading.Condition(threading.RLock())
        self._requests: list[Request] = []
        self._messages: list[dict] = []            # messages "delivered" by send* methods
        self._scripts: list[_Script] = []
        self._outage: _Script | None = None
        self._updates: list[dict] = []             # pending (unconfirmed) updates
        self._next_update_id = 100_000_001
        self._message_ids: dict[int | str, int] = {}
        self._files: dict[str, dict] = {}          # file_id -> stored upload
        self._file_seq = 0
        self._callbacks: dict[str, dict] = {}      # callback_query id -> its update
        self.callback_answers: list[dict] = []     # answerCallbackQuery calls, as fields
        self.commands: list[dict] = []             # what setMyCommands registered last

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._methods = {
            "getme": self._get_me,
            "sendmessage": self._send_message,
            "sendaudio": lambda req: self._send_media(req, "audio"),
            "sendvoice": lambda req: self._send_media(req, "voice"),
            "senddocument": lambda req: self._send_media(req, "document"),
            "sendchataction": self._send_chat_action,
            "getchat": self._get_chat,
            "getupdates": self._get_updates,
            "deletewebhook": lambda req: True,
            "getwebhookinfo": self._get_webhook_info,
            "getfile": self._get_file,
            "answercallbackquery": self._answer_callback_query,
            "editmessagecaption": lambda req: self._edit_message(req, "caption"),
            "editmessagetext": lambda req: self._edit_message(req, "text"),
            "editmessagereplymarkup": lambda req: self._edit_message(req, None),
            "setmycommands": self._set_my_commands,
            "getmycommands": lambda req: list(self.commands),
            "deletemycommands": self._delete_my_commands,
        }

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeTelegram:
        """Listen (again) and serve in a background thread.  After a stop() the same
        port is bound again, so a client configured with :attr:`url` comes back."""
        with self._cond:
            if self._server is not None:
                raise RuntimeError("FakeTelegram is already running")
            server = _Server((self.host, self._port), self)
            self._port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever,
                                            kwargs={"poll_interval": 0.05},
                                            name=f"fake-telegram-{self._port}", daemon=True)
            self._thread.start()
        log.debug("fake telegram listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection: from now on connections are
        refused, and requests in flight (delayed, long polls) get no answer."""
        with self._cond:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            if server is None:
                return
            server.stopping.set()
            self._cond.notify_all()              # wake long-polling getUpdates
        server.shutdown()                        # ends serve_forever()
        server.server_close()                    # closes the listening socket
        server.cut_connections()
        if thread is not None:
            thread.join()
        log.debug("fake telegram on port %d stopped", self._port)

    def __enter__(self) -> FakeTelegram:  # noqa: PYI034 (typing.Self needs 3.11)
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("FakeTelegram has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        """The API root, like ``https://api.telegram.org``: ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as ``telegram.Bot(base_url=...)``: ``{url}/bot``."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """What to pass as ``telegram.Bot(base_file_url=...)``: ``{url}/file/bot``."""
        return f"{self.url}/file/bot"

    def bot_kwargs(self, token: str | None = None) -> dict[str, str]:
        """Keyword arguments for ``telegram.Bot(**tg.bot_kwargs())``."""
        return {"token": token or self.token, "base_url": self.base_url,
                "base_file_url": self.base_file_url}

    # -- recorded requests -------------------------------------------------------------

    def requests(self, method: str | None = None) -> list[Request]:
        """Requests received so far (all, or those for one method, case-insensitive),
        oldest first, failed and dropped ones included."""
        with self._cond:
            return [r for r in self._requests if _same_method(r.method, method)]

    def wait_for(self, method: str | None, count: int = 1, timeout: float = 10.0
                 ) -> list[Request]:
        """Wait until at least `count` requests for `method` (None: any) have arrived;
        return all of them.  Raises TimeoutError naming what did arrive."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self._requests if _same_method(r.method, method)]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    break
                self._cond.wait(remaining)
            if len(found) < count:
                seen = [r.method for r in self._requests]
                raise TimeoutError(f"waited {timeout:g} s for {count} {method or 'any'} "
                                   f"request(s), got {len(found)}; all requests: {seen}")
            return found

    def messages(self, chat_id: int | str | None = None) -> list[dict]:
        """Messages the fake actually delivered (answered 200), as the Message objects it
        returned; a request that timed out on the client side may still be here."""
        with self._cond:
            return [m for m in self._messages
                    if chat_id is None or m["chat"]["id"] == self._chat(_chat_key(chat_id))["id"]]

    def clear(self) -> None:
        """Forget recorded requests and delivered messages (scripts stay queued)."""
        with self._cond:
            self._requests.clear()
            self._messages.clear()

    def _record(self, req: Request) -> None:
        with self._cond:
            self._requests.append(req)
            self._cond.notify_all()

    # -- failure injection -------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500, *, retry_after: int | None = None,
                  description: str | None = None, body: bytes | None = None,
                  method: str | None = None) -> None:
        """Answer the next `n` (matching) requests with an error.

        The body is ``{"ok": false, "error_code": status, "description": ...}``; with
        `retry_after` it gets ``"parameters": {"retry_after": N}`` and the description
        defaults to Telegram's "Too Many Requests: retry after N".  `body` replaces the
        JSON with raw bytes (served as text/html, like an nginx error page).
        """
        self._push(_Script("fail", n, _lower(method), status=status, retry_after=retry_after,
                           description=description, body=body))

    def drop_next(self, n: int = 1, *, method: str | None = None, reset: bool = False) -> None:
        """Read the next `n` (matching) requests, record them (``dropped=True``) and close
        the connection without answering; `reset` closes with a TCP RST instead of FIN."""
        self._push(_Script("drop", n, _lower(method), reset=reset))

    def delay_next(self, n: int = 1, seconds: float = 1.0, *, method: str | None = None) -> None:
        """Answer the next `n` (matching) requests normally, but only after `seconds`.
        The request takes effect even if the client has given up meanwhile (as it can
        with the real API: a timed-out sendMessage may still have been delivered)."""
        self._push(_Script("delay", n, _lower(method), seconds=seconds))

    def fail_always(self, status: int = 500, *, retry_after: int | None = None,
                    description: str | None = None, method: str | None = None,
                    body: bytes | None = None) -> None:
        """Start an outage: every (matching) request fails until :meth:`recover`.
        With `body`, the reply is those raw bytes (text/html) with `status`: e.g. status 200
        and an HTML page, as a captive portal or a misconfigured proxy answers."""
        self._start_outage(_Script("fail", math.inf, _lower(method), status=status,
                                   retry_after=retry_after, description=description,
                                   body=body))

    def drop_always(self, *, reset: bool = False, method: str | None = None) -> None:
        """Start an outage in which every (matching) request is read, recorded and its
        connection closed unanswered (with `reset`, by a TCP RST), until :meth:`recover`."""
        self._start_outage(_Script("drop", math.inf, _lower(method), reset=reset))

    def stall_always(self, *, method: str | None = None) -> None:
        """Start a stall: every (matching) request is read and recorded, then gets no answer
        at all until :meth:`recover` (or :meth:`stop`), when its connection is closed
        unanswered and the request has had no effect."""
        self._start_outage(_Script("stall", math.inf, _lower(method),
                                   release=threading.Event()))

    def _start_outage(self, script: _Script) -> None:
        with self._cond:
            self._release_stall()
            self._outage = script

    def _release_stall(self) -> None:
        if self._outage is not None and self._outage.release is not None:
            self._outage.release.set()

    def recover(self) -> None:
        """End an outage (stalled requests are then hung up on) and discard any scripted
        behaviour still queued."""
        with self._cond:
            self._release_stall()
            self._outage = None
            self._scripts.clear()

    def _push(self, script: _Script) -> None:
        if script.remaining < 1:
            raise ValueError("n must be at least 1")
        with self._cond:
            self._scripts.append(script)

    def _take_script(self, method: str | None) -> _Script | None:
        """The behaviour for a request for `method`, consuming one queued use."""
        with self._cond:
            if self._outage is not None and self._outage.matches(method):
                return self._outage
            for i, script in enumerate(self._scripts):
                if script.matches(method):
                    script.remaining -= 1
                    if script.remaining <= 0:
                        del self._scripts[i]
                    return script
            return None

    # -- incoming updates --------------------------------------------------------------

    def add_update(self, chat_id: int | str = DEFAULT_CHAT_ID, text: str = "/status", *,
                   user_id: int | None = None, first_name: str = "Tester",
                   username: str | None = "tester") -> dict:
        """Queue a text message update, as if a user wrote `text` in chat `chat_id`
        (any chat, known or not); a leading ``/command`` gets a bot_command entity.
        Returns the update (with its ``update_id``) as getUpdates will serve it."""
        key = _chat_key(chat_id)
        sender_id = user_id if user_id is not None else (key if isinstance(key, int) and key > 0
                                                         else 777000)
        user = {"id": sender_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        with self._cond:
            message = {"message_id": self._next_message_id(key), "date": int(time.time()),
                       "chat": self._chat(key), "from": user, "text": text}
        if m := re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": m.end()}]
        return self.add_raw_update({"message": message})

    def add_callback_query(self, message: dict, data: str, *, user_id: int | None = None,
                           first_name: str = "Tester", username: str | None = "tester") -> dict:
        """Queue a button press on `message` (a Message the bot sent, as :meth:`messages`
        returns it) with callback data `data`, by `user_id` (default: the chat's own id for
        a private chat). Returns the update; its ``callback_query.id`` is what
        answerCallbackQuery must name."""
        chat_id = message["chat"]["id"]
        sender = user_id if user_id is not None else (chat_id if chat_id > 0 else 777000)
        user = {"id": sender, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        with self._cond:
            current = next((m for m in self._messages if m["chat"]["id"] == chat_id
                            and m["message_id"] == message["message_id"]), message)
            query_id = f"{zlib.crc32(json.dumps(current).encode()):08x}{len(self._callbacks):06d}"
            update = {"callback_query": {"id": query_id, "from": user,
                                         "message": json.loads(json.dumps(current)),
                                         "chat_instance": f"ci{chat_id}", "data": data}}
            update = self.add_raw_update(update)
            self._callbacks[query_id] = update
            return update

    def message_by_id(self, chat_id: int | str, message_id: int) -> dict | None:
        """The bot's message as it stands now (edits included), or None."""
        key = self._chat(_chat_key(chat_id))["id"]
        with self._cond:
            return next((dict(m) for m in self._messages
                         if m["chat"]["id"] == key and m["message_id"] == message_id), None)

    def add_raw_update(self, update: dict) -> dict:
        """Queue any Update object; an ``update_id`` is assigned unless it has one."""
        with self._cond:
            update = dict(update)
            if "update_id" not in update:
                update["update_id"] = self._next_update_id
            self._next_update_id = max(self._next_update_id, update["update_id"]) + 1
            self._updates.append(update)
            self._cond.notify_all()
            return update

    def pending_updates(self) -> list[dict]:
        """Updates not yet confirmed by a getUpdates offset."""
        with self._cond:
            return list(self._updates)

    # -- Bot API -----------------------------------------------------------------------

    def _dispatch(self, req: Request) -> tuple[int, dict]:
        """Run a Bot API method: (HTTP status, JSON payload)."""
        if req.token != self.token:
            return 401, _error_payload(401, "Unauthorized")
        implementation = self._methods.get((req.method or "").lower())
        if implementation is None:
            return 404, _error_payload(404, "Not Found")
        try:
            result = implementation(req)
        except _ApiError as exc:
            return exc.status, _error_payload(exc.status, exc.description, exc.parameters)
        return 200, {"ok": True, "result": result}

    def _download(self, req: Request) -> tuple[int, bytes, str]:
        """GET /file/bot<token>/<file_path>: the bytes of an earlier upload.  Also answers
        any other path that is not /bot<token>/<method> (with 404)."""
        match = _FILE_PATH.match(req.path)
        if match is not None and req.token != self.token:
            return 401, json.dumps(_error_payload(401, "Unauthorized")).encode(), \
                "application/json"
        if match is not None:
            with self._cond:
                for stored in self._files.values():
                    if stored["file_path"] == match["file_path"]:
                        return 200, stored["data"], stored["mime_type"]
        return 404, json.dumps(_error_payload(404, "Not Found")).encode(), "application/json"

    def _get_me(self, req: Request) -> dict:
        return dict(self.bot_user)

    def _send_message(self, req: Request) -> dict:
        chat = self._chat_to_send_to(req)
        text = req.fields.get("text", "")
        if not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise _ApiError(400, "Bad Request: message is too long")
        return self._deliver(chat, {"text": text, **self._markup(req)})

    def _send_media(self, req: Request, kind: str) -> dict:
        """sendAudio / sendVoice / sendDocument: an upload, or the file_id of one."""
        chat = self._chat_to_send_to(req)
        caption = req.fields.get("caption")
        if caption is not None and len(caption) > MAX_CAPTION:
            raise _ApiError(400, "Bad Request: message caption is too long")
        stored = self._resolve_file(req, kind)
        media = {"file_id": stored["file_id"], "file_unique_id": stored["file_unique_id"],
                 "mime_type": stored["mime_type"], "file_size": len(stored["data"])}
        if kind in ("audio", "voice"):
            media["duration"] = int(float(req.fields.get("duration") or 0))
        if kind in ("audio", "document") and stored["file_name"]:
            media["file_name"] = stored["file_name"]
        if kind == "audio":
            media.update({k: req.fields[k] for k in ("performer", "title") if k in req.fields})
        extra: dict[str, Any] = {kind: media, **self._markup(req)}
        if caption:
            extra["caption"] = caption
        return self._deliver(chat, extra)

    @staticmethod
    def _markup(req: Request) -> dict:
        """An inline keyboard sent with a message stays on it (as Telegram keeps it)."""
        markup = req.json("reply_markup")
        if isinstance(markup, dict) and markup.get("inline_keyboard"):
            for row in markup["inline_keyboard"]:
                for button in row:
                    data = button.get("callback_data")
                    if data is not None and not 1 <= len(data.encode()) <= 64:
                        raise _ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            return {"reply_markup": markup}
        return {}

    def _send_chat_action(self, req: Request) -> bool:
        self._chat_to_send_to(req)
        return True

    def _get_chat(self, req: Request) -> dict:
        key = req.chat_id
        if key is None or (key not in self.chats and key not in self.blocked):
            raise _ApiError(400, "Bad Request: chat not found")
        # ChatFullInfo: python-telegram-bot 22 requires these beyond the plain Chat.
        return {**self._chat(key), "accent_color_id": 0, "max_reaction_count": 11,
                "accepted_gift_types": {"unlimited_gifts": False, "limited_gifts": False,
                                        "unique_gifts": False, "premium_subscription": False,
                                        "gifts_from_channels": False}}

    def _get_updates(self, req: Request) -> list[dict]:
        """getUpdates with offset semantics and long polling.

        ``offset`` > 0 confirms (forgets) every update with a smaller update_id;
        a negative offset keeps only the last ``-offset`` updates.  With ``timeout``
        the call waits (up to MAX_LONG_POLL s) for an update to arrive.
        """
        try:
            offset = int(req.fields.get("offset") or 0)
            limit = min(max(int(req.fields.get("limit") or 100), 1), 100)
            wait = min(max(float(req.fields.get("timeout") or 0), 0.0), MAX_LONG_POLL)
        except ValueError:
            raise _ApiError(400, "Bad Request: wrong parameter value") from None
        deadline = time.monotonic() + wait
        with self._cond:
            while True:
                if offset > 0:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                elif offset < 0:
                    self._updates = self._updates[offset:]
                remaining = deadline - time.monotonic()
                stopping = req._stopping is not None and req._stopping.is_set()
                if self._updates or remaining <= 0 or stopping:
                    return [dict(u) for u in self._updates[:limit]]
                self._cond.wait(remaining)

    def _answer_callback_query(self, req: Request) -> bool:
        query_id = req.fields.get("callback_query_id", "")
        with self._cond:
            if query_id not in self._callbacks or any(
                    a.get("callback_query_id") == query_id for a in self.callback_answers):
                raise _ApiError(400, "Bad Request: query is too old and response timeout "
                                     "expired or query ID is invalid")
            self.callback_answers.append(dict(req.fields))
            self._cond.notify_all()
        return True

    def _edit_message(self, req: Request, what: str | None) -> dict:
        """editMessageCaption / editMessageText / editMessageReplyMarkup of a bot message."""
        key = req.chat_id
        try:
            message_id = int(req.fields.get("message_id") or 0)
        except ValueError:
            raise _ApiError(400, "Bad Request: wrong message identifier") from None
        with self._cond:
            chat_id = self._chat(key)["id"] if key is not None else None
            message = next((m for m in self._messages if m["chat"]["id"] == chat_id
                            and m["message_id"] == message_id), None)
            if message is None:
                raise _ApiError(400, "Bad Request: message to edit not found")
            new = dict(message)
            if what is not None:
                value = req.fields.get(what, "")
                if what == "text" and "text" not in message:
                    raise _ApiError(400, "Bad Request: there is no text in the message to edit")
                if what == "caption" and "text" in message:
                    raise _ApiError(400, "Bad Request: there is no caption in the message to "
                                         "edit")
                limit = MAX_CAPTION if what == "caption" else MAX_TEXT
                if len(value) > limit:
                    raise _ApiError(400, f"Bad Request: message {what} is too long")
                new[what] = value
            markup = req.json("reply_markup")
            if markup:
                new["reply_markup"] = markup
            else:
                new.pop("reply_markup", None)
            if new == message:
                raise _ApiError(400, "Bad Request: message is not modified: specified new "
                                     "message content and reply markup are exactly the same "
                                     "as a current content and reply markup of the message")
            new["edit_date"] = int(time.time())
            message.clear()
            message.update(new)
            self._cond.notify_all()
            return dict(message)

    def _set_my_commands(self, req: Request) -> bool:
        commands = req.json("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _ApiError(400, "Bad Request: commands must be an array")
        for c in commands:
            if not (isinstance(c, dict) and _COMMAND_NAME.match(str(c.get("command", "")))
                    and 1 <= len(str(c.get("description", ""))) <= 256):
                raise _ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        with self._cond:
            self.commands = [dict(c) for c in commands]
        return True

    def _delete_my_commands(self, req: Request) -> bool:
        with self._cond:
            self.commands = []
        return True

    def _get_webhook_info(self, req: Request) -> dict:
        with self._cond:
            return {"url": "", "has_custom_certificate": False,
                    "pending_update_count": len(self._updates)}

    def _get_file(self, req: Request) -> dict:
        with self._cond:
            stored = self._files.get(req.fields.get("file_id", ""))
        if stored is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        return {"file_id": stored["file_id"], "file_unique_id": stored["file_unique_id"],
                "file_size": len(stored["data"]), "file_path": stored["file_path"]}

    # -- helpers for the methods -------------------------------------------------------

    def _chat_to_send_to(self, req: Request) -> dict:
        key = req.chat_id
        if key is None or key == "":
            raise _ApiError(400, "Bad Request: chat_id is empty")
        if key in self.blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        if key not in self.chats:
            raise _ApiError(400, "Bad Request: chat not found")
        return self._chat(key)

    def _chat(self, key: int | str) -> dict:
        """A Chat object for a chat id: private (> 0), group, supergroup (-100...) or
        channel (``@name``)."""
        if isinstance(key, str):                     # @channelname: a stable fake id
            name = key.lstrip("@")
            return {"id": -1_000_000_000_000 - zlib.crc32(name.encode()) % 10**9,
                    "type": "channel", "title": name, "username": name}
        if key > 0:
            return {"id": key, "type": "private", "first_name": "Tester", "username": "tester"}
        kind = "supergroup" if str(key).startswith("-100") else "group"
        return {"id": key, "type": kind, "title": f"Test {kind} {key}"}

    def _next_message_id(self, key: int | str) -> int:
        """Message ids increase per chat, from 1, as in private chats."""
        with self._cond:
            self._message_ids[key] = self._message_ids.get(key, 0) + 1
            return self._message_ids[key]

    def _deliver(self, chat: dict, content: dict) -> dict:
        """Create, remember and return a Message sent by the bot."""
        with self._cond:
            message = {"message_id": self._next_message_id(chat["id"]), "date": int(time.time()),
                       "chat": chat, "from": dict(self.bot_user), **content}
            self._messages.append(message)
            return message

    def _resolve_file(self, req: Request, kind: str) -> dict:
        """The upload in part `kind` (or ``attach://name``), or a known file_id."""
        ref = req.fields.get(kind)
        part = kind if kind in req.files else None
        if ref and ref.startswith("attach://"):
            part = ref[len("attach://"):]
            if part not in req.files:
                raise _ApiError(400, f"Bad Request: file {ref} not found")
        if part is not None:
            filename, content_type, data = req.files[part]
            if not data:
                raise _ApiError(400, "Bad Request: file must be non-empty")
            return self._store_file(kind, filename, content_type, data)
        if ref:
            with self._cond:
                if ref in self._files:
                    return self._files[ref]
            raise _ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        raise _ApiError(400, f"Bad Request: there is no {kind} in the request")

    def _store_file(self, kind: str, filename: str | None, content_type: str | None,
                    data: bytes) -> dict:
        mime = (content_type if content_type and content_type != "application/octet-stream"
                else mimetypes.guess_type(filename or "")[0]) or _DEFAULT_MIME[kind]
        ext = mimetypes.guess_extension(mime) or ".bin"
        with self._cond:
            self._file_seq += 1
            n = self._file_seq
            stored = {"file_id": f"FAKE-{kind}-{n:06d}-{zlib.crc32(data):08x}",
                      "file_unique_id": f"U{n:06d}", "file_name": filename,
                      "mime_type": mime, "data": data,
                      "file_path": f"{_FILE_DIRS[kind]}/file_{n}{ext}"}
            self._files[stored["file_id"]] = stored
            return stored

    def __repr__(self) -> str:
        where = self.url if self._port else "not started"
        return f"<FakeTelegram {where} {'running' if self.running else 'stopped'}>"


def _lower(method: str | None) -> str | None:
    return method.lower() if method else None


def _same_method(actual: str | None, wanted: str | None) -> bool:
    return wanted is None or (actual or "").lower() == wanted.lower()
