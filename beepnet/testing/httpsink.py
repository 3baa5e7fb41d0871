"""A local HTTP endpoint that records every request: what Apprise's json://, ntfy:// or
gotify:// channels and a heartbeat URL (healthchecks.io, Uptime Kuma) send, seen from the
receiving side.

    with HttpSink() as sink:
        url = f"json://127.0.0.1:{sink.port}/hook"
        ...
        req = sink.wait_for(lambda r: r.path == "/hook")
        req.json(), req.files()   # the body, and a multipart body's parts

``fail(n, status)`` answers the next ``n`` requests with ``status`` (a channel that is down);
``stop()`` then ``start()`` again on the same port is a server that went away and came back.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Request:
    method: str
    path: str
    """The path with its query string."""
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)
    status: int = 200
    """What the sink answered."""

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def files(self) -> dict[str, tuple[str, bytes]]:
        """A multipart/form-data body's parts: name -> (file name or "", content)."""
        ctype = self.headers.get("content-type", "")
        if not ctype.startswith("multipart/"):
            return {}
        msg = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + self.body)
        out = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition") or ""
            out[name] = (part.get_filename() or "", part.get_payload(decode=True) or b"")
        return out


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # quiet in test output
        pass

    def _record(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        sink = self.server.sink
        status = sink._next_status()
        sink._add(Request(self.command, self.path,
                          {k.lower(): v for k, v in self.headers.items()}, body,
                          status=status))
        payload = b'{"ok": true}' if status < 400 else b'{"error": "refused"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_HEAD = _record


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sink: "HttpSink"):
        self.sink = sink
        super().__init__(address, _Handler)


class HttpSink:
    def __init__(self, port: int = 0):
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self.requests: list[Request] = []
        self._failures: list[int] = []

    def start(self) -> "HttpSink":
        self._server = _Server(("127.0.0.1", self._port), self)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="httpsink")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "HttpSink":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def fail(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` requests with ``status``."""
        with self._cond:
            self._failures.extend([status] * n)

    def _next_status(self) -> int:
        with self._cond:
            return self._failures.pop(0) if self._failures else 200

    def _add(self, req: Request) -> None:
        with self._cond:
            self.requests.append(req)
            self._cond.notify_all()

    def received(self, match: Callable[[Request], bool] = lambda r: True) -> list[Request]:
        """The requests so far that ``match``, answered 2xx or not."""
        with self._cond:
            return [r for r in self.requests if match(r)]

    def wait_for(self, match: Callable[[Request], bool] = lambda r: True, count: int = 1,
                 timeout: float = 30.0) -> list[Request]:
        """Wait until ``count`` requests that ``match`` have arrived (answered 2xx), and
        return them; AssertionError on timeout, naming what did arrive."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self.requests if match(r) and r.status < 400]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(r.method, r.path, r.status) for r in self.requests]
                    raise AssertionError(f"{count} request(s) expected within {timeout} s, "
                                         f"got {len(got)}; all received: {seen}")
                self._cond.wait(left)
