"""A real MQTT broker for tests: Mosquitto on 127.0.0.1, with a login, in a temporary
directory; and `Peer`, a small paho client that plays Home Assistant or a stray publisher.

    with Mosquitto() as broker:                 # a free port, user "beepnet"
        with Peer(broker) as ha:
            ha.subscribe("beepnet/#")
            ...                                 # the code under test connects to broker.port
            ha.wait_for(lambda m: m.topic == "beepnet/x/status" and m.payload == "online")
            ha.publish("beepnet/x/mute/set", "ON")
        broker.stop(); broker.start()           # a restart, on the same port
        broker.kill()                           # a crash: kill -9, nothing saved

Persistence is on (in the directory), so retained messages survive `stop` and `start`; a
`kill` loses what was not saved yet. The password file is made by ``mosquitto_passwd``,
which reads the password from its standard input, not its arguments.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

_SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
_START_TIMEOUT = 10.0


def _tool(name: str) -> str | None:
    # Debian puts mosquitto in /usr/sbin, which a user's PATH often lacks.
    return shutil.which(name, path=_SEARCH)


def available() -> str | None:
    """None when Mosquitto can run here, else why not (for pytest.skip)."""
    missing = [name for name in ("mosquitto", "mosquitto_passwd") if _tool(name) is None]
    if missing:
        return f"MQTT broker unavailable, missing: {', '.join(missing)} (Debian package " \
               "mosquitto)"
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        return "MQTT broker tests need paho-mqtt (pip install paho-mqtt)"
    return None


class MosquittoError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    def __init__(self, username: str = "beepnet", password: str | None = None,
                 port: int = 0):
        self.username = username
        self.password = password if password is not None else uuid.uuid4().hex
        self._port = port
        self.dir: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None

    # -- what clients need ---------------------------------------------------------------------

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        """What the broker logged so far (connections, refusals)."""
        return (self.dir / "mosquitto.log").read_text(errors="replace") if self.dir else ""

    # -- its life ----------------------------------------------------------------------------------

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> "Mosquitto":
        """Start it (again: on the same port, with what it saved)."""
        if self.running:
            return self
        reason = available()
        if reason:
            raise MosquittoError(reason)
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="mosquitto-"))
            self._port = self._port or _free_port()
            self._write_config()
        self._log = open(self.dir / "mosquitto.log", "ab")
        self._proc = subprocess.Popen([_tool("mosquitto"), "-c", str(self.dir / "mosquitto.conf")],
                                      stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                self._close_log()
                raise MosquittoError(f"mosquitto exited with status {self._proc.returncode}:"
                                     f" {self.log_text()[-2000:]}")
            try:
                socket.create_connection((self.host, self._port), timeout=0.5).close()
                return self
            except OSError:
                # Right after a stop the old listener's port may still be closing.
                if time.monotonic() > deadline:
                    self.kill()
                    raise MosquittoError(f"mosquitto did not listen on port {self._port} "
                                         f"within {_START_TIMEOUT:g} s: "
                                         f"{self.log_text()[-2000:]}")
                time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        """A clean stop (SIGTERM): it saves its retained messages first."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        self._close_log()

    def kill(self) -> None:
        """A crash (SIGKILL): clients see the connection drop; nothing is saved."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        self._close_log()

    def close(self) -> None:
        self.stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _write_config(self) -> None:
        assert self.dir is not None
        passwd = self.dir / "passwd"
        # mosquitto_passwd asks twice; off a terminal it reads the answers from stdin.
        done = subprocess.run([_tool("mosquitto_passwd"), "-c", str(passwd), self.username],
                              input=f"{self.password}\n{self.password}\n", text=True,
                              capture_output=True, timeout=10)
        if done.returncode != 0 or not passwd.exists():
            raise MosquittoError(f"mosquitto_passwd failed: {done.stderr.strip()}")
        passwd.chmod(0o600)
        lines = [
            f"listener {self._port} {self.host}",
            "allow_anonymous false",
            f"password_file {passwd}",
            "persistence true",
            f"persistence_location {self.dir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            # As root it would switch to the user "mosquitto", who cannot read this
            # directory; stay who we are.
            lines.append(f"user {getpass.getuser()}")
        (self.dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")


# --- a client for the other side -------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    topic: str
    payload: str
    retain: bool
    at: float = field(default_factory=time.monotonic, compare=False)


class Peer:
    """A paho client that collects what it receives (`messages`) and publishes: Home
    Assistant, a stray publisher, or a new subscriber looking at what is retained."""

    def __init__(self, broker: Mosquitto, client_id: str | None = None,
                 username: str | None = None, password: str | None = None):
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.broker = broker
        self.client_id = client_id or f"peer-{uuid.uuid4().hex[:8]}"
        self._cond = threading.Condition()
        self.messages: list[Message] = []
        self._connected = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                   protocol=paho.MQTTv311)
        self._client.username_pw_set(username if username is not None else broker.username,
                                     password if password is not None else broker.password)
        self._client.on_connect = lambda c, u, f, rc, p: (
            self._connected.set() if not rc.is_failure else None)
        self._client.on_message = self._on_message

    def __enter__(self) -> "Peer":
        self._client.connect(self.broker.host, self.broker.port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(10):
            self.close()
            raise AssertionError(f"{self.client_id} could not log in to the broker")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append(Message(msg.topic, msg.payload.decode("utf-8", "replace"),
                                         bool(msg.retain)))
            self._cond.notify_all()

    def subscribe(self, topic: str, timeout: float = 10.0) -> None:
        """Subscribe, and wait until the broker has sent what it retains there."""
        done = threading.Event()
        self._client.on_subscribe = lambda *a: done.set()
        self._client.subscribe(topic, qos=1)
        if not done.wait(timeout):
            raise AssertionError(f"no SUBACK for {topic} within {timeout} s")
        self.sync(timeout)

    def sync(self, timeout: float = 10.0) -> None:
        """Wait until everything the broker had for us before now has arrived: a message of
        our own to a private topic comes back after it."""
        mark = f"peer-sync/{self.client_id}/{uuid.uuid4().hex[:8]}"
        done = threading.Event()
        self._client.message_callback_add(mark, lambda *a: done.set())
        self._client.subscribe(mark, qos=1)
        self._client.publish(mark, "", qos=1)
        try:
            if not done.wait(timeout):
                raise AssertionError(f"{self.client_id}: the broker did not echo within "
                                     f"{timeout} s")
        finally:
            self._client.message_callback_remove(mark)
            self._client.unsubscribe(mark)

    def publish(self, topic: str, payload: str | bytes, retain: bool = False,
                qos: int = 1) -> None:
        self._client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)

    def received(self, match: Callable[[Message], bool] = lambda m: True) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if match(m)]

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()

    def wait_for(self, match: Callable[[Message], bool] = lambda m: True, count: int = 1,
                 timeout: float = 10.0) -> list[Message]:
        """Wait until ``count`` messages that ``match`` have arrived; AssertionError on
        timeout, naming what did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [m for m in self.messages if match(m)]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(m.topic, m.payload[:60], m.retain) for m in self.messages]
                    raise AssertionError(f"{count} message(s) expected within {timeout} s, "
                                         f"got {len(got)}; all received: {seen}")
                self._cond.wait(left)

    def last(self, topic: str) -> Message | None:
        """The newest message on ``topic``."""
        got = self.received(lambda m: m.topic == topic)
        return got[-1] if got else None
