"""Home Assistant over MQTT, against a real Mosquitto (`beepnet.testing.mosquitto`): the
discovery payloads, the states through a cycle, beeps, levels, Home Assistant's birth, the
last will of a killed process, commands, two listeners on one broker, a broker restart, a
wrong password, and the removal. No mocks of paho or of the broker."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from beepnet.config import Config, ConfigError, CycleConfig, MqttConfig, NotifyConfig
from beepnet.mqtt import discovery
from beepnet.mqtt.discovery import (ENTITIES, Topics, TopicError, default_device_id,
                                    discovery_messages)
from beepnet.mqtt.link import MqttError, MqttLink, remove
from beepnet.testing import mosquitto
from beepnet.testing.mosquitto import Mosquitto, Peer

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "homeassistant"
# Short waits, so that reconnects and refused logins repeat within a test.
FAST = dict(reconnect_min=0.1, reconnect_max=0.5, refused_retry=0.3, connect_timeout=2.0)


def _need_mosquitto() -> None:
    reason = mosquitto.available()
    if reason:
        # `make test` installs mosquitto; in CI a missing broker is a failure, not a skip.
        if os.environ.get("CI"):
            pytest.fail(f"MQTT broker unavailable: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def broker():
    _need_mosquitto()
    with Mosquitto() as b:
        yield b


@pytest.fixture
def own_broker():
    """A broker of the test's own, to stop, kill and restart."""
    _need_mosquitto()
    with Mosquitto() as b:
        yield b


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG, logger="beepnet.mqtt")
    return caplog


class Calls:
    """What the links' command callbacks were called with."""

    def __init__(self):
        self.emptied = 0
        self.mute: list[bool] = []
        self.link: MqttLink | None = None

    def on_emptied(self) -> str:
        self.emptied += 1
        return "Thanks, the washer is emptied."

    def on_mute(self, on: bool) -> None:
        self.mute.append(on)
        if self.link is not None:  # as the daemon does: the switch shows what it did
            self.link.muted(time.time() + 600 if on else None)


def make_link(broker: Mosquitto, device_id: str, calls: Calls | None = None, *,
              password: str | None = None, port: int | None = None, name: str = "",
              level_seconds: float = 60.0, appliance: str = "washer") -> MqttLink:
    calls = calls or Calls()
    link = MqttLink(host=broker.host, port=port or broker.port, username=broker.username,
                    password=broker.password if password is None else password, tls=False,
                    ca_file="", topics=Topics("beepnet", device_id, PREFIX),
                    device_id=device_id, appliance=appliance, name=name, version="9.9.9",
                    level_seconds=level_seconds, on_emptied=calls.on_emptied,
                    on_mute=calls.on_mute, **FAST)
    calls.link = link
    return link


def wait_until(cond, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.02)


@contextmanager
def running(link: MqttLink):
    link.start()
    try:
        wait_until(lambda: link.connected, what=f"{link.client_id} connected")
        yield link
    finally:
        link.close()


@contextmanager
def watching(broker: Mosquitto, device_id: str):
    """Home Assistant's side: subscribed to everything of one device."""
    with Peer(broker) as peer:
        peer.subscribe(f"beepnet/{device_id}/#")
        peer.subscribe(f"{PREFIX}/+/{device_id}/#")
        yield peer


def of(peer: Peer, topic: str) -> list[str]:
    return [m.payload for m in peer.received(lambda m: m.topic == topic)]


# --- discovery, no network ----------------------------------------------------------------------

def test_device_ids_and_topics():
    assert default_device_id("garagepi", "washer") == "garagepi_washer"
    assert default_device_id("Garage-Pi.local", "Dish Washer") == "garage_pi_dish_washer"
    assert default_device_id("", "") == "beepnet"
    t = Topics("beepnet", "garagepi_washer", PREFIX)
    assert t.availability == "beepnet/garagepi_washer/status"
    assert t.emptied_command == "beepnet/garagepi_washer/emptied/press"
    assert t.mute_command == "beepnet/garagepi_washer/mute/set"
    assert t.ha_status == "homeassistant/status"
    assert t.config("sensor", "cycle") == "homeassistant/sensor/garagepi_washer/cycle/config"
    for bad in (dict(device_id="garage pi"), dict(device_id="a/b"), dict(device_id="x+"),
                dict(base_topic="beep/#"), dict(base_topic="/beepnet"),
                dict(discovery_prefix="")):
        args = dict(base_topic="beepnet", device_id="ok", discovery_prefix=PREFIX) | bad
        with pytest.raises(TopicError) as e:
            Topics(**args)
        assert "\n" not in str(e.value)


# Required options of each component (Home Assistant's MQTT docs: event.mqtt, sensor.mqtt,
# binary_sensor.mqtt, button.mqtt, switch.mqtt).
REQUIRED = {"event": {"state_topic", "event_types"}, "sensor": {"state_topic"},
            "binary_sensor": {"state_topic"}, "button": {"command_topic"},
            "switch": {"command_topic"}}


def test_discovery_payloads_are_what_home_assistant_expects():
    t = Topics("beepnet", "garagepi_washer", PREFIX)
    msgs = discovery_messages(t, device_id="garagepi_washer", appliance="washer", name="",
                              version="1.2.3")
    assert len(msgs) == len(ENTITIES) == 8
    devices, unique_ids = [], []
    for topic, payload in msgs.items():
        m = re.fullmatch(rf"{PREFIX}/(\w+)/garagepi_washer/(\w+)/config", topic)
        assert m, topic
        component, object_id = m.groups()
        assert REQUIRED[component] <= payload.keys(), (topic, payload)
        assert payload["unique_id"] == f"garagepi_washer_{object_id}"
        assert payload["default_entity_id"] == f"{component}.garagepi_washer_{object_id}"
        assert payload["availability_topic"] == "beepnet/garagepi_washer/status"
        assert (payload["payload_available"], payload["payload_not_available"]) == (
            "online", "offline")
        assert payload["origin"] == {"name": "beepnet", "sw_version": "1.2.3"}
        for key in [k for k in payload if k.endswith("_topic")]:
            assert payload[key].startswith(("beepnet/garagepi_washer/",)), (key, payload)
        json.dumps(payload)
        devices.append(payload["device"])
        unique_ids.append(payload["unique_id"])
    assert len(set(unique_ids)) == len(unique_ids)
    assert all(d == devices[0] for d in devices)
    assert devices[0] == {"identifiers": ["beepnet_garagepi_washer"],
                          "name": "Washer (beepnet)", "manufacturer": "beepnet",
                          "model": "BeepNet listener", "sw_version": "1.2.3"}

    by_id = {topic.split("/")[-2]: p for topic, p in msgs.items()}
    assert by_id["beep"]["event_types"] == ["beep"]
    cycle = by_id["cycle"]
    assert cycle["device_class"] == "enum"
    assert cycle["options"] == ["idle", "running", "stopped_without_beep", "not_emptied"]
    # "options cannot be used together with state_class or unit_of_measurement"
    assert not {"state_class", "unit_of_measurement"} & cycle.keys()
    assert by_id["running"]["device_class"] == "running"
    level = by_id["level"]
    assert (level["unit_of_measurement"], level["state_class"]) == ("dBFS", "measurement")
    assert "device_class" not in level
    assert (by_id["last_duration"]["device_class"],
            by_id["last_duration"]["unit_of_measurement"]) == ("duration", "min")
    assert by_id["last_finished"]["device_class"] == "timestamp"
    assert "unit_of_measurement" not in by_id["last_finished"]
    assert by_id["emptied"]["payload_press"] == "PRESS"
    mute = by_id["mute"]
    assert (mute["payload_on"], mute["payload_off"]) == ("ON", "OFF")
    assert mute["command_topic"] == "beepnet/garagepi_washer/mute/set"
    assert mute["state_topic"] == "beepnet/garagepi_washer/mute"

    named = discovery_messages(t, device_id="garagepi_washer", appliance="washer",
                               name="garage", version="1")
    assert next(iter(named.values()))["device"]["name"] == "Garage washer (beepnet)"
    assert discovery.device_name("washer", "washer") == "Washer (beepnet)"


def test_from_config():
    assert MqttLink.from_config(Config(), on_emptied=str, on_mute=print) is None
    cfg = Config(mqtt=MqttConfig(host="broker.lan", password="pw"),
                 cycle=CycleConfig(machine="dryer"), notify=NotifyConfig(name="cellar"))
    link = MqttLink.from_config(cfg, on_emptied=str, on_mute=print)
    assert link.device_id.endswith("_dryer") and link.client_id == f"beepnet-{link.device_id}"
    assert link.topics.availability == f"beepnet/{link.device_id}/status"
    assert "pw" not in repr(link)
    with pytest.raises(ConfigError, match="mqtt.device_id"):
        MqttLink.from_config(Config(mqtt=MqttConfig(host="b", device_id="my pi")),
                             on_emptied=str, on_mute=print)


# --- a link and a broker --------------------------------------------------------------------------

def test_announce_then_only_what_changed(broker, logs):
    dev = "states_washer"
    t = Topics("beepnet", dev, PREFIX)
    with watching(broker, dev) as ha, running(make_link(broker, dev)) as link:
        configs = ha.wait_for(lambda m: m.topic.endswith("/config"), count=8)
        assert {m.topic for m in configs} == set(discovery.config_topics(t))
        assert json.loads(configs[0].payload)["device"]["sw_version"] == "9.9.9"
        ha.wait_for(lambda m: m.topic == t.availability and m.payload == "online")

        link.cycle({"machine": "washer", "state": "idle", "phase": None, "reminders": 0,
                    "started": None, "finished": None, "last_sound": None})
        ha.wait_for(lambda m: m.topic == t.running)
        assert of(ha, t.cycle) == ["idle"] and of(ha, t.running) == ["OFF"]

        start = time.time() - 3700
        mark = len(ha.messages)
        link.cycle({"machine": "washer", "state": "idle", "started": None})  # no change
        link.cycle({"machine": "washer", "state": "running", "phase": "washing",
                    "started": start, "finished": None, "last_sound": time.time()})
        ha.wait_for(lambda m: m.topic == t.running and m.payload == "ON")
        assert [(m.topic, m.payload) for m in ha.messages[mark:]] == [
            (t.cycle, "running"), (t.running, "ON")]

        finished = start + 3690  # 61.5 minutes
        mark = len(ha.messages)
        link.cycle({"machine": "washer", "state": "not_emptied", "phase": None,
                    "started": start, "finished": finished, "last_sound": finished})
        ha.wait_for(lambda m: m.topic == t.last_finished)
        assert [m.topic for m in ha.messages[mark:]] == [
            t.cycle, t.running, t.last_duration, t.last_finished]
        assert of(ha, t.last_duration) == ["61.5"]
        when = datetime.fromisoformat(of(ha, t.last_finished)[0])
        assert when.tzinfo is not None and abs(when.timestamp() - finished) < 1

        mark = len(ha.messages)
        # Emptied: idle, with the same cycle from the history; then a new cycle starts.
        link.cycle({"machine": "washer", "state": "idle",
                    "last": {"ended": finished, "outcome": "beeped", "duration": 3690.0}})
        link.cycle({"machine": "washer", "state": "running", "started": time.time()})
        ha.wait_for(lambda m: m.topic == t.running and m.payload == "ON", count=2)
        # (running was OFF since not_emptied; duration and finished are the same)
        assert [(m.topic, m.payload) for m in ha.messages[mark:]] == [
            (t.cycle, "idle"), (t.cycle, "running"), (t.running, "ON")]
        assert of(ha, t.cycle) == ["idle", "running", "not_emptied", "idle", "running"]

    # Retained: what a new subscriber (Home Assistant restarted) sees at once.
    with Peer(broker) as late:
        late.subscribe(f"beepnet/{dev}/#")
        retained = {m.topic: m.payload for m in late.received() if m.retain}
        assert retained == {t.availability: "offline", t.cycle: "running",
                            t.running: "ON", t.last_duration: "61.5",
                            t.last_finished: of(ha, t.last_finished)[0]}
    assert sum("connected to" in r.getMessage() for r in logs.records) == 1


def test_beep_event_and_level(broker):
    dev = "beeps_washer"
    t = Topics("beepnet", dev, PREFIX)
    with watching(broker, dev) as ha, \
            running(make_link(broker, dev, level_seconds=1.0)) as link:
        at = time.time() - 5
        link.beep(at, 0.93456, "/var/lib/beepnet/alerts/2025-01-01/beep-120000.wav")
        link.beep(at + 1, 0.5, None)
        events = ha.wait_for(lambda m: m.topic == t.beep, count=2)
        first = json.loads(events[0].payload)
        assert first == {"event_type": "beep", "score": 0.935, "clip_at": first["clip_at"],
                         "clip": "beep-120000.wav"}
        assert abs(datetime.fromisoformat(first["clip_at"]).timestamp() - at) < 1
        assert "clip" not in json.loads(events[1].payload)
        assert not any(m.retain for m in events)

        for db in (-40.04, -12.0, -13.0, -14.0):  # a second's calls, and more
            link.level(db)
        time.sleep(1.1)  # level_seconds later
        link.level(-33.36)
        link.level(float("-inf"))  # too soon again
        got = ha.wait_for(lambda m: m.topic == t.level, count=2)
        time.sleep(0.2)
        assert [m.payload for m in ha.received(lambda m: m.topic == t.level)] == [
            "-40.0", "-33.4"]
        assert not any(m.retain for m in got)
        time.sleep(1.1)
        link.level(float("-inf"))  # digital silence
        assert ha.wait_for(lambda m: m.topic == t.level, count=3)[-1].payload == "-120.0"


def test_home_assistant_birth_announces_again(broker, logs):
    dev = "birth_washer"
    t = Topics("beepnet", dev, PREFIX)
    with watching(broker, dev) as ha:
        # A retained birth (someone's stray retain) is replayed at every subscription: no
        # reason to announce again, the connect just did.
        ha.publish(f"{PREFIX}/status", "online", retain=True)
        try:
            with running(make_link(broker, dev)) as link:
                link.cycle({"machine": "washer", "state": "running", "started": time.time()})
                link.muted(None)
                ha.wait_for(lambda m: m.topic == t.mute)
                time.sleep(0.3)
                assert len(ha.received(lambda m: m.topic.endswith("/config"))) == 8
                ha.publish(f"{PREFIX}/status", b"", retain=True)
                ha.clear()

                ha.publish(f"{PREFIX}/status", "offline")  # Home Assistant stopping
                ha.publish(f"{PREFIX}/status", "online")
                configs = ha.wait_for(lambda m: m.topic.endswith("/config"), count=8)
                ha.wait_for(lambda m: m.topic == t.mute)
                assert {m.topic for m in configs} == set(discovery.config_topics(t))
                assert of(ha, t.availability) == ["online"]
                assert of(ha, t.cycle) == ["running"] and of(ha, t.running) == ["ON"]
                assert of(ha, t.mute) == ["OFF"]
                time.sleep(0.2)
                assert len(ha.received(lambda m: m.topic.endswith("/config"))) == 8
        finally:
            ha.publish(f"{PREFIX}/status", b"", retain=True)
    assert "Home Assistant is online" in logs.text


def test_commands_reach_the_callbacks_and_strays_do_not(broker, logs):
    dev = "cmd_washer"
    t = Topics("beepnet", dev, PREFIX)
    calls = Calls()
    with Peer(broker) as stray:
        # Retained commands (not Home Assistant's doing) would be replayed at every
        # connect: a press hours later. Ignored.
        stray.publish(t.emptied_command, "PRESS", retain=True)
        stray.publish(t.mute_command, "ON", retain=True)
    with watching(broker, dev) as ha, running(make_link(broker, dev, calls)) as link:
        time.sleep(0.3)
        assert calls.emptied == 0 and calls.mute == []
        ha.publish(t.emptied_command, b"", retain=True)
        ha.publish(t.mute_command, b"", retain=True)
        # Strays: wrong payloads, bytes that are not text, a flood, another topic.
        for topic, payload in [(t.emptied_command, "press me"), (t.mute_command, "maybe"),
                               (t.mute_command, b"\xff\xfe\x00"), (t.emptied_command,
                                                                   "P" * 100_000),
                               ("beepnet/cmd_washer/other", "PRESS")]:
            ha.publish(topic, payload)
        ha.publish(t.emptied_command, "PRESS")
        wait_until(lambda: calls.emptied == 1, what="one press")
        ha.publish(t.mute_command, "ON")
        ha.wait_for(lambda m: m.topic == t.mute and m.payload == "ON")
        ha.publish(t.mute_command, "OFF")
        ha.wait_for(lambda m: m.topic == t.mute and m.payload == "OFF")
        assert calls.emptied == 1 and calls.mute == [True, False]
        assert [m.retain for m in ha.received(lambda m: m.topic == t.mute)] == [False, False]

        # A callback that fails is logged; the link goes on.
        calls.on_emptied = lambda: 1 / 0
        link._on_emptied = calls.on_emptied
        ha.publish(t.emptied_command, "PRESS")
        wait_until(lambda: "handling a message" in logs.text, what="the failure logged")
        ha.publish(t.mute_command, "ON")
        wait_until(lambda: calls.mute == [True, False, True], what="mute after the failure")
        assert link.connected
    assert "Thanks, the washer is emptied." in logs.text


_CHILD = """
import os, sys, time
from beepnet.mqtt.discovery import Topics
from beepnet.mqtt.link import MqttLink
port, user, dev = int(sys.argv[1]), sys.argv[2], sys.argv[3]
link = MqttLink(host="127.0.0.1", port=port, username=user,
                password=os.environ["BEEPNET_MQTT_PASSWORD"], tls=False, ca_file="",
                topics=Topics("beepnet", dev), device_id=dev, appliance="washer", name="",
                version="test", level_seconds=60, on_emptied=lambda: "", on_mute=print)
link.start()
deadline = time.monotonic() + 20
while not link.connected and time.monotonic() < deadline:
    time.sleep(0.02)
print("connected" if link.connected else "not connected", flush=True)
time.sleep(120)
"""


def test_last_will_of_a_killed_process(broker):
    dev = "will_washer"
    t = Topics("beepnet", dev, PREFIX)
    cmd = [sys.executable, "-c", _CHILD, str(broker.port), broker.username, dev]
    assert broker.password not in " ".join(cmd)
    env = dict(os.environ, BEEPNET_MQTT_PASSWORD=broker.password)
    with watching(broker, dev) as ha:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, cwd=ROOT)
        try:
            assert proc.stdout.readline().strip() == "connected", proc.stderr.read()
            ha.wait_for(lambda m: m.topic == t.availability and m.payload == "online")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        ha.wait_for(lambda m: m.topic == t.availability and m.payload == "offline",
                    timeout=10)
    with Peer(broker) as late:
        late.subscribe(t.availability)
        assert [(m.payload, m.retain) for m in late.received()] == [("offline", True)]


def test_two_listeners_on_one_broker(broker, logs):
    a_calls, b_calls = Calls(), Calls()
    a, b = make_link(broker, "pia_washer", a_calls), make_link(broker, "pib_dryer", b_calls,
                                                              appliance="dryer")
    assert a.client_id != b.client_id
    with watching(broker, "pia_washer") as ha_a, watching(broker, "pib_dryer") as ha_b, \
            running(a), running(b):
        ha_a.publish(a.topics.emptied_command, "PRESS")
        ha_b.publish(b.topics.mute_command, "ON")
        wait_until(lambda: a_calls.emptied == 1 and b_calls.mute == [True],
                   what="each command at its own listener")
        ha_b.wait_for(lambda m: m.topic == b.topics.mute and m.payload == "ON")
        time.sleep(0.5)  # a client-id collision would have kicked one off by now
        assert a.connected and b.connected
        assert a_calls.mute == [] and b_calls.emptied == 0
        assert of(ha_a, a.topics.availability) == ["online"]
        assert of(ha_b, b.topics.availability) == ["online"]
        assert not ha_a.received(lambda m: "pib_dryer" in m.topic)
        names = {json.loads(m.payload)["device"]["name"]
                 for m in ha_b.received(lambda m: m.topic.endswith("/config"))}
        assert names == {"Dryer (beepnet)"}
    connects = [r.getMessage() for r in logs.records if "connected to" in r.getMessage()]
    assert len(connects) == 2 and "lost" not in logs.text, connects


def test_broker_restart(own_broker, logs):
    dev = "restart_washer"
    t = Topics("beepnet", dev, PREFIX)
    link = make_link(own_broker, dev)
    with running(link):
        link.cycle({"machine": "washer", "state": "idle"})
        own_broker.kill()  # nothing saved: the broker comes back empty
        wait_until(lambda: not link.connected, what="the link noticing")
        link.cycle({"machine": "washer", "state": "running", "started": time.time()})
        link.beep(time.time(), 0.9, None)  # heard while the broker was away
        time.sleep(0.3)
        own_broker.start()
        wait_until(lambda: link.connected, what="the link reconnected")
        wanted = {*discovery.config_topics(t), t.availability, t.cycle, t.running}
        with watching(own_broker, dev) as ha:  # the announcement may still be on its way
            wait_until(lambda: wanted <= {m.topic for m in ha.received()},
                       what="the announcement")
        with watching(own_broker, dev) as late:
            retained = {m.topic: m.payload for m in late.received() if m.retain}
        assert retained.keys() >= {*discovery.config_topics(t), t.availability}
        assert (retained[t.availability], retained[t.cycle], retained[t.running]) == (
            "online", "running", "ON")
    lines = [r.getMessage() for r in logs.records if r.levelno >= logging.INFO]
    assert sum("lost the connection" in x for x in lines) == 1, lines
    assert sum("cannot be reached" in x for x in lines) <= 1, lines
    assert any("connected again" in x for x in lines), lines


def test_broker_keeps_retained_messages_across_a_restart(own_broker):
    with Peer(own_broker) as p:
        p.publish("beepnet/keep/x", "kept", retain=True)
    own_broker.stop()
    own_broker.start()
    with Peer(own_broker) as late:
        late.subscribe("beepnet/keep/#")
        assert [(m.payload, m.retain) for m in late.received()] == [("kept", True)]


def test_wrong_password_and_unreachable_broker(broker, logs):
    wrong = "not-the-password-4711"
    link = make_link(broker, "login_washer", password=wrong)
    t0 = time.monotonic()
    link.start()
    assert time.monotonic() - t0 < 0.5
    try:
        wait_until(lambda: "refused the login" in logs.text, what="the refusal logged")
        time.sleep(1.2)  # several more refused attempts (refused_retry 0.3 s)
        assert not link.connected
    finally:
        link.close()
    refusals = [r for r in logs.records if "refused the login" in r.getMessage()]
    assert [r.getMessage() for r in refusals] == [
        f"MQTT broker 127.0.0.1:{broker.port} refused the login (bad user name or password):"
        " check mqtt.username and BEEPNET_MQTT_PASSWORD"]
    assert broker.log_text().count("not authorised") >= 3  # it did retry
    assert link.check(timeout=3) == refusals[0].getMessage()
    with pytest.raises(MqttError, match="bad user name or password"):
        remove(link, timeout=3)

    # Nothing listens on this port.
    closed = make_link(broker, "gone_washer", port=mosquitto._free_port())
    t0 = time.monotonic()
    closed.start()
    assert time.monotonic() - t0 < 0.5
    try:
        wait_until(lambda: "cannot be reached" in logs.text, what="unreachable logged")
        time.sleep(0.8)
    finally:
        closed.close()
    unreachable = [r.getMessage() for r in logs.records if "cannot be reached" in r.getMessage()]
    assert len(unreachable) == 1 and "connection refused" in unreachable[0], unreachable
    with pytest.raises(MqttError, match="connection refused"):
        remove(closed, timeout=3)

    for r in logs.records:
        text = r.getMessage() + str(r.args) + (r.exc_text or "")
        assert wrong not in text and broker.password not in text
        assert "Traceback" not in text


def test_check_round_trip(broker):
    link = make_link(broker, "doctor_washer")
    assert link.check(timeout=5) == ""
    with running(link):  # beside a running link: its own client id, no kick
        assert link.check(timeout=5) == ""
        time.sleep(0.2)
        assert link.connected


def test_remove_clears_one_listener_only(broker):
    keep, gone = "keep_dryer", "gone_washer2"
    for dev in (keep, gone):
        link = make_link(broker, dev)
        with running(link):
            link.cycle({"machine": "washer", "state": "not_emptied", "started": 1000.0,
                        "finished": 4600.0})
            link.muted(None)
            link.check()
    cfg = Config(mqtt=MqttConfig(host=broker.host, port=broker.port,
                                 username=broker.username, password=broker.password,
                                 device_id=gone))
    with Peer(broker) as before:
        before.subscribe("#")
        assert any(gone in m.topic for m in before.received())
    cleared = remove(cfg, timeout=5)
    t = Topics("beepnet", gone, PREFIX)
    assert set(cleared) == {*discovery.config_topics(t), t.availability, t.cycle, t.running,
                            t.last_duration, t.last_finished, t.mute}
    with Peer(broker) as after:
        after.subscribe("#")
        left = [m.topic for m in after.received()]
    assert not [x for x in left if gone in x], left
    kept = Topics("beepnet", keep, PREFIX)
    assert set(left) >= {*discovery.config_topics(kept), kept.availability, kept.cycle}
