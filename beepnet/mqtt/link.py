"""The connection to the MQTT broker: Home Assistant's view of one listener.

`MqttLink` runs paho-mqtt's network thread. It never stops the daemon: a broker that cannot
be reached or refuses the login is logged as one line (again only when the reason changes)
and retried in the background; once connected, one line says so. On every (re)connect, and
whenever Home Assistant announces itself ("online" on ``<prefix>/status``), the discovery
payloads and the last known states are published again, so a broker that lost its retained
messages or a Home Assistant that restarted shows the listener as it is.

`remove` clears what a listener left on the broker (``beepnet mqtt --remove``); `MqttLink.check`
is `beepnet doctor`'s round trip. Both use a short-lived connection of their own, with a
client id of their own: borrowing the daemon's would disconnect it.

The password goes to paho and nowhere else: not into log lines, errors or process arguments.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import socket
import ssl
import sys
import threading
import time
from datetime import datetime
from typing import Any, Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from .discovery import (BEEP_EVENT, CYCLE_STATES, OFF, OFFLINE, ON, ONLINE, PRESS, Topics,
                        TopicError, config_topics, default_device_id, discovery_messages)

log = logging.getLogger(__name__)

QOS = 1
"""Commands, beep events and the removal: at least once (paho keeps a beep heard while the
broker is away and sends it when it is back)."""
STATE_QOS = 0
"""Discovery and retained states: every (re)connect publishes them all again, so one lost
with a connection needs no resending, and paho's resending of an unacknowledged one after
that would overwrite a newer state with an older."""
KEEPALIVE = 30
"""Seconds; the broker publishes the last will after 1.5 times this without a word."""
FLOOR_DBFS = -120.0
"""Digital silence is -inf dBFS, which JSON and Home Assistant cannot take."""
_LOGIN_REFUSED = {134, 135}
"""CONNACK reasons of a refused login: "bad user name or password", and "not authorized",
which is what Mosquitto answers an MQTT 3.1.1 client with a wrong password."""
_MAX_COMMAND = 64
"""A longer payload on a command topic is no command of ours."""


class MqttError(Exception):
    """The broker cannot be reached or refuses us; the message is one line for the user."""


def _iso(epoch: float) -> str:
    """Home Assistant's timestamp sensors need ISO 8601 with a time zone: local time, which
    reads naturally in an MQTT explorer too."""
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def _why(exc: BaseException | None, timeout: float) -> str:
    """A socket error in a few words."""
    if exc is None:
        return "no reason given"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: is the broker running, and on this port?"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return "the host name cannot be resolved"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    return exc.strerror or str(exc) or type(exc).__name__


def _refusal(where: str, reason) -> str:
    if getattr(reason, "value", None) in _LOGIN_REFUSED:
        return (f"MQTT broker {where} refused the login (bad user name or password): "
                "check mqtt.username and BEEPNET_MQTT_PASSWORD")
    return f"MQTT broker {where} refused the connection ({reason})"


class MqttLink:
    def __init__(self, *, host: str, port: int, username: str, password: str, tls: bool,
                 ca_file: str, topics: Topics, device_id: str, appliance: str, name: str,
                 version: str, level_seconds: float, on_emptied: Callable[[], str],
                 on_mute: Callable[[bool], None], reconnect_min: float = 1.0,
                 reconnect_max: float = 60.0, refused_retry: float = 300.0,
                 connect_timeout: float = 5.0):
        """``on_emptied`` (the "Emptied" button; returns the reply to log) and ``on_mute``
        (the mute switch, True: mute) run on paho's thread; ``on_mute`` should lead to a
        call of `muted` with the new state, which is what the switch then shows.

        ``reconnect_min``..``reconnect_max``: paho's back-off between attempts, in
        seconds; ``refused_retry``: the wait after a refused login, longer since a password
        is rarely fixed within a minute (tests shorten all of them)."""
        self.host, self.port = host, int(port)
        self._username, self._password = username, password
        self._tls, self._ca_file = tls, ca_file
        self.topics = topics
        self.device_id = device_id
        self.client_id = f"beepnet-{device_id}"
        self._level_seconds = float(level_seconds)
        self._on_emptied, self._on_mute = on_emptied, on_mute
        self._backoff = (reconnect_min, reconnect_max)
        self._refused_retry = refused_retry
        self._connect_timeout = connect_timeout
        self._discovery = discovery_messages(topics, device_id=device_id, appliance=appliance,
                                             name=name, version=version)
        self._lock = threading.Lock()
        self._states: dict[str, str] = {}
        """Retained state topic -> the payload last published (or to publish on connect)."""
        self._mute_until: float | None = None
        self._next_level = 0.0
        self._client: paho.Client | None = None
        self._connected = False
        self._was_connected = False
        self._problem = ""
        """The connection problem logged last: the same one is not logged again."""
        self._slowed = False
        self._closing = False

    @classmethod
    def from_config(cls, cfg, *, on_emptied: Callable[[], str],
                    on_mute: Callable[[bool], None], **kwargs) -> "MqttLink | None":
        """The link for ``cfg`` (a `beepnet.config.Config`), or None: MQTT is off (no
        mqtt.host). ConfigError for a base topic, prefix or device id that cannot be used."""
        from .. import __version__
        from ..config import ConfigError

        m = cfg.mqtt
        if not m.enabled:
            return None
        appliance = m.appliance or cfg.cycle.machine
        device_id = m.device_id or default_device_id(socket.gethostname(), appliance)
        try:
            topics = Topics(m.base_topic, device_id, m.discovery_prefix)
        except TopicError as e:
            raise ConfigError(str(e)) from None
        if m.tls and m.ca_file and not os.path.isfile(os.path.expanduser(m.ca_file)):
            raise ConfigError(f"mqtt.ca_file = {m.ca_file!r}: no such file")
        return cls(host=m.host, port=m.port, username=m.username, password=m.password,
                   tls=m.tls, ca_file=os.path.expanduser(m.ca_file) if m.ca_file else "",
                   topics=topics, device_id=device_id, appliance=appliance,
                   name=cfg.notify.name, version=__version__, level_seconds=m.level_seconds,
                   on_emptied=on_emptied, on_mute=on_mute, **kwargs)

    def __repr__(self) -> str:  # never the password
        return f"MqttLink({self.client_id} at {self.where})"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._connected

    # -- the connection --------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; returns at once, whether the broker is there or not."""
        if self._client is not None:
            return
        self._closing = False
        try:
            client = _client(self.client_id, username=self._username,
                             password=self._password, tls=self._tls, ca_file=self._ca_file,
                             timeout=self._connect_timeout)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            log.error("MQTT: cannot set up TLS for %s (%s): Home Assistant gets nothing",
                      self.where, e)
            return
        # Set before connecting: the broker publishes it when we vanish (kill -9, power cut,
        # network gone), and keeps it, so Home Assistant shows the listener unavailable.
        client.will_set(self.topics.availability, OFFLINE, qos=QOS, retain=True)
        client.reconnect_delay_set(*self._backoff)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        client.connect_async(self.host, self.port, keepalive=KEEPALIVE)
        client.loop_start()

    def close(self, timeout: float = 3.0) -> None:
        """Say "offline" (a clean disconnect drops the last will), disconnect, stop."""
        client, self._client = self._client, None
        if client is None:
            return
        self._closing = True
        if self._connected:
            info = client.publish(self.topics.availability, OFFLINE, qos=QOS, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass  # the connection went meanwhile: the broker sends the will instead
        client.disconnect()
        client.loop_stop()
        self._connected = False

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self._connected = False
            # The user must act (a password, an ACL): an error, not a passing warning.
            self._trouble(_refusal(self.where, reason), logging.ERROR)
            if reason.value in _LOGIN_REFUSED and not self._slowed:
                # paho would retry after reconnect_min: a wrong password does not fix itself.
                client.reconnect_delay_set(self._refused_retry, self._refused_retry)
                self._slowed = True
            return
        if self._slowed:
            client.reconnect_delay_set(*self._backoff)
            self._slowed = False
        again = " again" if self._was_connected else ""
        self._problem = ""
        self._was_connected = True
        log.info("MQTT: connected%s to %s as %s", again, self.where, self.client_id)
        for topic in (*self.topics.commands, self.topics.ha_status):
            client.subscribe(topic, qos=QOS)
        with self._lock:
            self._connected = True
            self._announce(client)

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this from inside its `except OSError`: the error is the one in flight.
        self._trouble(f"MQTT broker {self.where} cannot be reached "
                      f"({_why(sys.exc_info()[1], self._connect_timeout)}); retrying in the "
                      "background")

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        was, self._connected = self._connected, False
        if was and not self._closing:
            # MQTT 3.1.1 has no reason for a dropped connection (paho says "Unspecified
            # error"): none is better than that one.
            self._trouble(f"MQTT: lost the connection to {self.where}; reconnecting in the "
                          "background")

    def _trouble(self, line: str, level: int = logging.WARNING) -> None:
        if line != self._problem:
            log.log(level, "%s", line)
            self._problem = line

    def _announce(self, client: paho.Client) -> None:
        """Discovery, availability and every retained state (the lock held)."""
        for topic, payload in self._discovery.items():
            client.publish(topic, json.dumps(payload), qos=STATE_QOS, retain=True)
        client.publish(self.topics.availability, ONLINE, qos=STATE_QOS, retain=True)
        for topic, payload in self._states.items():
            client.publish(topic, payload, qos=STATE_QOS, retain=True)

    # -- commands, from paho's thread --------------------------------------------------------------

    def _on_message(self, client, userdata, msg) -> None:
        try:
            self._command(client, msg.topic, msg.payload, msg.retain)
        except Exception:  # a bug of ours or of a callback: paho's thread must go on
            log.exception("MQTT: handling a message on %s failed", msg.topic)

    def _command(self, client, topic: str, raw: bytes, retained: bool) -> None:
        if len(raw) > _MAX_COMMAND:
            log.debug("MQTT: ignored %d bytes on %s", len(raw), topic)
            return
        try:
            payload = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            log.debug("MQTT: ignored a payload that is not UTF-8 on %s", topic)
            return
        if retained:
            # A retained command would be replayed at every reconnect (an "Emptied" press
            # hours later); Home Assistant never retains them. Nor its birth, which every
            # connect is answered with already.
            log.debug("MQTT: ignored the retained %r on %s", payload, topic)
            return
        if topic == self.topics.ha_status:
            if payload == ONLINE:
                log.info("MQTT: Home Assistant is online: announcing %s again",
                         self.device_id)
                with self._lock:
                    if self._connected:
                        self._announce(client)
        elif topic == self.topics.emptied_command and payload.upper() == PRESS:
            reply = self._on_emptied()
            log.info("MQTT: Home Assistant pressed Emptied: %s", reply)
        elif topic == self.topics.mute_command and payload.upper() in (ON, OFF):
            log.info("MQTT: Home Assistant turned mute %s", payload.lower())
            self._on_mute(payload.upper() == ON)
        else:
            log.debug("MQTT: ignored %r on %s", payload, topic)

    # -- what the daemon tells -------------------------------------------------------------------

    def cycle(self, snapshot: dict) -> None:
        """After every change of the cycle (``snapshot``: `CycleFlow`'s, see
        beepnet/daemon/cycleflow.py): publishes the states that changed."""
        state = snapshot.get("state")
        state = getattr(state, "value", state)
        new: dict[str, str] = {}
        if state in CYCLE_STATES:
            new[self.topics.cycle] = state
            new[self.topics.running] = ON if state == "running" else OFF
        else:
            log.debug("MQTT: no such cycle state %r", state)
        duration = ended = None
        last = snapshot.get("last")
        if isinstance(last, dict):
            duration, ended = last.get("duration"), last.get("ended")
        elif state == "not_emptied":
            started, ended = snapshot.get("started"), snapshot.get("finished")
            if _number(started) and _number(ended):
                duration = ended - started
        if _number(duration) and duration >= 0:
            new[self.topics.last_duration] = f"{duration / 60:.1f}"
        if _number(ended):
            new[self.topics.last_finished] = _iso(ended)
        self._set(new)
        self._expire_mute()

    def beep(self, at: float, score: float, clip: str | None) -> None:
        """A beep (``at``: epoch seconds), as an event of the beep entity."""
        doc: dict[str, Any] = {"event_type": BEEP_EVENT,
                               "score": round(float(score), 3), "clip_at": _iso(at)}
        if clip:
            doc["clip"] = os.path.basename(clip)
        # Not retained: a retained event is fired again whenever Home Assistant subscribes
        # (each restart), a beep that happened once. Queued (QoS 1) while the broker is
        # away, and so told late rather than never.
        self._send(self.topics.beep, json.dumps(doc), qos=QOS)

    def level(self, dbfs: float) -> None:
        """The sound level (about every second): published at most every level_seconds."""
        self._expire_mute()
        now = time.monotonic()
        dbfs = float(dbfs)
        if now < self._next_level or math.isnan(dbfs):
            return
        self._next_level = now + self._level_seconds
        # Not retained, QoS 0: a level is true the moment it is measured; a retained one
        # would be shown as current long after (the daemon stopped, the broker restarted),
        # and one lost now is replaced by the next.
        self._send(self.topics.level, f"{round(max(dbfs, FLOOR_DBFS), 1):.1f}", qos=0)

    def muted(self, until: float | None) -> None:
        """The mute switch's state: on until ``until`` (epoch seconds), off for None."""
        on = until is not None and until > time.time()
        self._mute_until = until if on else None
        self._set({self.topics.mute: ON if on else OFF})

    def _expire_mute(self) -> None:
        # The daemon may not say when a mute runs out: the switch turns off by itself.
        until = self._mute_until
        if until is not None and time.time() >= until:
            self.muted(None)

    def _set(self, new: dict[str, str]) -> None:
        with self._lock:
            changed = {t: p for t, p in new.items() if self._states.get(t) != p}
            self._states.update(changed)
            client = self._client if self._connected else None
            # While disconnected, only remembered: the connect publishes them all.
            for topic, payload in changed.items() if client is not None else ():
                client.publish(topic, payload, qos=STATE_QOS, retain=True)

    def _send(self, topic: str, payload: str, qos: int) -> None:
        client = self._client
        if client is not None:
            client.publish(topic, payload, qos=qos, retain=False)

    # -- doctor and removal ------------------------------------------------------------------------

    def check(self, timeout: float = 5.0) -> str:
        """A publish/subscribe round trip through the broker on a test topic under this
        listener's own: "" when it came back, else one line why not."""
        topic = f"{self.topics.check}/{secrets.token_hex(4)}"
        token = secrets.token_hex(8)
        got = threading.Event()

        def on_message(client, userdata, msg) -> None:
            if msg.topic == topic and msg.payload == token.encode():
                got.set()

        try:
            with _session(self, "check", timeout) as client:
                client.on_message = on_message
                result, mid = client.subscribe(topic, qos=QOS)
                if result != paho.MQTT_ERR_SUCCESS:
                    return f"MQTT broker {self.where}: cannot subscribe to {topic}"
                info = client.publish(topic, token, qos=QOS)
                if not got.wait(timeout):
                    sent = info.is_published()
                    return (f"MQTT broker {self.where}: the test message on {topic} "
                            f"{'did not come back' if sent else 'was not taken'} within "
                            f"{timeout:g} s: may {self._username or 'anonymous'} publish "
                            f"and subscribe under {self.topics.root}/?")
        except MqttError as e:
            return str(e)
        return ""

    def remove(self, timeout: float = 5.0) -> list[str]:
        """`remove` for this listener."""
        return remove(self, timeout=timeout)


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _client(client_id: str, *, username: str, password: str, tls: bool, ca_file: str,
            timeout: float, retry: bool = True) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=paho.MQTTv311, clean_session=True,
                         reconnect_on_failure=retry)
    client.connect_timeout = timeout
    if username:
        client.username_pw_set(username, password or None)
    if tls:
        client.tls_set(ca_certs=ca_file or None)
    return client


class _session:
    """A short connection of its own (``with``): MqttError when the broker cannot be reached
    or refuses the login."""

    def __init__(self, link: MqttLink, purpose: str, timeout: float):
        self.link, self.timeout = link, timeout
        self.client_id = f"{link.client_id}-{purpose}-{secrets.token_hex(3)}"

    def __enter__(self) -> paho.Client:
        link, timeout = self.link, self.timeout
        try:
            client = _client(self.client_id, username=link._username,
                             password=link._password, tls=link._tls, ca_file=link._ca_file,
                             timeout=timeout, retry=False)
        except (OSError, ValueError) as e:
            raise MqttError(f"MQTT: cannot set up TLS for {link.where} ({e})") from None
        answered = threading.Event()
        reasons: list = []

        def on_connect(client, userdata, flags, reason, properties) -> None:
            reasons.append(reason)
            answered.set()

        client.on_connect = on_connect
        try:
            client.connect(link.host, link.port, keepalive=KEEPALIVE)
        except (OSError, ValueError) as e:
            raise MqttError(f"MQTT broker {link.where} cannot be reached "
                            f"({_why(e, timeout)})") from None
        client.loop_start()
        self.client = client
        if not answered.wait(timeout):
            self._stop()
            raise MqttError(f"MQTT broker {link.where} did not answer the login within "
                            f"{timeout:g} s")
        if reasons[0].is_failure:
            self._stop()
            raise MqttError(_refusal(link.where, reasons[0]))
        return client

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def remove(target, *, timeout: float = 5.0) -> list[str]:
    """Clear everything a listener keeps on the broker (``target``: an `MqttLink`, or a
    `beepnet.config.Config`): publish an empty retained message to each of its discovery
    topics (Home Assistant then deletes the entities and the device) and to each of its
    retained state topics, availability included; also to any other retained topic found
    under them (what an older beepnet may have left). Returns the topics cleared; MqttError
    when the broker cannot be reached or refuses the login. Stop the daemon first: a running
    one publishes them again."""
    link = target if isinstance(target, MqttLink) else MqttLink.from_config(
        target, on_emptied=lambda: "", on_mute=lambda on: None)
    if link is None:
        raise MqttError("MQTT is off (mqtt.host is not set): nothing to remove")
    t = link.topics
    topics = set(config_topics(t)) | {t.availability, *t.retained_states}
    marker = f"{t.root}/remove/{secrets.token_hex(4)}"
    seen: set[str] = set()
    done = threading.Event()

    def on_message(client, userdata, msg) -> None:
        if msg.topic == marker:
            done.set()
        elif msg.retain and msg.payload:
            seen.add(msg.topic)

    with _session(link, "remove", timeout) as client:
        client.on_message = on_message
        client.subscribe([(f"{t.root}/#", QOS), (f"{t.discovery_prefix}/+/{t.device_id}/#",
                                                 QOS)])
        # The broker sends the retained messages of a subscription before anything
        # published after it: when this comes back, they are all in.
        client.publish(marker, "", qos=QOS)
        if not done.wait(timeout):
            log.debug("MQTT: the broker's retained messages did not all come within %g s",
                      timeout)
        client.unsubscribe([f"{t.root}/#", f"{t.discovery_prefix}/+/{t.device_id}/#"])
        topics |= seen
        infos = [client.publish(topic, b"", qos=QOS, retain=True) for topic in sorted(topics)]
        deadline = time.monotonic() + timeout
        for info in infos:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
            if not info.is_published():
                raise MqttError(f"MQTT broker {link.where} did not take the removal within "
                                f"{timeout:g} s")
    cleared = sorted(topics)
    log.info("MQTT: cleared %d retained topics of %s at %s", len(cleared), link.device_id,
             link.where)
    return cleared
