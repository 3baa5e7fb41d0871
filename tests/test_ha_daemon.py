"""Home Assistant, every channel and the heartbeat through the real daemon (issue 17):
`beepnet run --source` replays a generated washing cycle 20 times faster than real time, as a
user starts it, with its secrets in the environment; a real Mosquitto (with a login) plays
the broker and a paho client plays Home Assistant; Apprise posts to a local endpoint beside
the fake Bot API server; the heartbeat URL is another local endpoint.

What Home Assistant sees: the device's discovery, online, the cycle going idle -> running ->
not_emptied with running ON then OFF, the beep event, the last cycle's length, and offline
when the daemon stops; its "emptied" button ends the wait as the Telegram one does. Every
message reaches Telegram and the Apprise channel, the finished one with its MP3. The
heartbeat is called while the pipeline works, and stops while the recorder is stalled."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from beepnet.mqtt.discovery import default_device_id
from beepnet.testing.cycles import cached, programme
from beepnet.testing.fake_telegram import DEFAULT_CHAT_ID, DEFAULT_TOKEN, FakeTelegram
from beepnet.testing.httpsink import HttpSink
from beepnet.testing.mosquitto import Peer
from procs import REPO, LogReader, beepnet_children, wait_for

SPEED = 20
SCALED = ("--set", "cycle.start_minutes=0.5", "--set", "cycle.start_window_minutes=1.5",
          "--set", "cycle.pause_minutes=0.3", "--set", "cycle.quiet_minutes=2",
          "--set", "cycle.late_beep_minutes=4", "--set", "cycle.tell_start=true")
DEVICE = "testpi_washer"


@pytest.fixture(scope="module")
def cycle_wav(tmp_path_factory):
    # 6 minutes of machine, a beep, then 3 quiet minutes (9 s at ×20) to press "emptied" in.
    script = programme(np.random.default_rng(21), minutes=6.0, tail_s=180.0, talk=False,
                       room=False)
    return cached(script, tmp_path_factory.mktemp("cycle"), seed=21)


def start(tmp_path, wav, env_extra: dict, *args: str, telegram: bool = True
          ) -> tuple[subprocess.Popen, LogReader]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEEPNET_")}
    if telegram:
        env.update(BEEPNET_TELEGRAM_TOKEN=DEFAULT_TOKEN,
                   BEEPNET_TELEGRAM_CHAT_ID=str(DEFAULT_CHAT_ID))
    env.update(env_extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "beepnet", "run", "--source", str(wav), "--speed", str(SPEED),
         "--set", f"storage.dir={tmp_path / 's'}", "--set", "notify.retry_initial_seconds=0.1",
         *SCALED, *args], cwd=REPO, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        text=True)
    return proc, LogReader(proc)


def test_home_assistant_and_every_channel_through_a_replayed_cycle(tmp_path, cycle_wav,
                                                                    broker):
    """Two listeners share the broker: this one (washer) and a dryer's, whose device id
    comes from the host name and its appliance; Home Assistant's press reaches only the
    washer's."""
    base = f"beepnet/{DEVICE}"
    dryer = f"beepnet/{default_device_id(socket.gethostname(), 'dryer')}"
    with FakeTelegram(token=DEFAULT_TOKEN, chats={DEFAULT_CHAT_ID}) as tg, \
            HttpSink() as sink, Peer(broker) as ha:
        ha.subscribe("beepnet/#")
        ha.subscribe("homeassistant/#")
        proc, log = start(
            tmp_path, cycle_wav,
            {"BEEPNET_MQTT_PASSWORD": broker.password,
             "BEEPNET_APPRISE_URLS": f"json://127.0.0.1:{sink.port}/hook"},
            "--set", f"telegram.api_url={tg.url}", "--set", f"mqtt.host={broker.host}",
            "--set", f"mqtt.port={broker.port}", "--set", f"mqtt.username={broker.username}",
            "--set", f"mqtt.device_id={DEVICE}", "--set", "mqtt.level_seconds=1")
        other, other_log = start(
            tmp_path / "dryer", cycle_wav, {"BEEPNET_MQTT_PASSWORD": broker.password},
            "--set", f"mqtt.host={broker.host}", "--set", f"mqtt.port={broker.port}",
            "--set", f"mqtt.username={broker.username}", "--set", "mqtt.appliance=dryer",
            telegram=False)
        try:
            # Finished: Home Assistant presses "emptied" while the replay's tail plays.
            ha.wait_for(lambda m: m.topic == f"{base}/cycle" and m.payload == "not_emptied",
                        timeout=120)
            ha.publish(f"{base}/emptied/press", "PRESS")
            assert proc.wait(timeout=120) == 0, log.text[-3000:]
            assert other.wait(timeout=120) == 0, other_log.text[-3000:]
        finally:
            for p, r in ((proc, log), (other, other_log)):
                if p.poll() is None:
                    p.kill()
                r.join()
        text = log.text
        assert "Traceback" not in text, text[-3000:]
        assert broker.password not in text

        # Discovery: one device, eight entities, each config retained.
        configs = {m.topic: json.loads(m.payload) for m in ha.received(
            lambda m: m.topic.startswith("homeassistant/") and m.topic.endswith("/config")
            and m.payload and f"/{DEVICE}/" in m.topic)}
        assert {t.split("/")[1] for t in configs} == {"event", "sensor", "binary_sensor",
                                                      "button", "switch"}
        assert len(configs) == 8
        assert all(c["device"]["identifiers"] == [f"beepnet_{DEVICE}"]
                   for c in configs.values())
        # The cycle's states, in order, each once per change; running follows them.
        states = [m.payload for m in ha.received(lambda m: m.topic == f"{base}/cycle")]
        assert states[:4] == ["idle", "running", "not_emptied", "idle"], (states, text[-3000:])
        running = [m.payload for m in ha.received(lambda m: m.topic == f"{base}/running")]
        assert running[:3] == ["OFF", "ON", "OFF"], running
        (beep,) = [json.loads(m.payload) for m in ha.received(
            lambda m: m.topic == f"{base}/beep")]
        assert beep["event_type"] == "beep" and beep["score"] >= 0.5
        minutes = float(ha.last(f"{base}/last_cycle/duration").payload)
        assert 5.0 <= minutes <= 8.0, minutes  # 6 min of machine, ±20 % per step
        levels = [float(m.payload) for m in ha.received(lambda m: m.topic == f"{base}/level")]
        assert levels and max(levels) > -60
        status = [m.payload for m in ha.received(lambda m: m.topic == f"{base}/status")]
        assert status[0] == "online" and status[-1] == "offline"
        assert "emptied" in text and "Home Assistant" in text

        # Every message to both channels, the finished one with its clip.
        tg_texts = [m.get("text") or m.get("caption") or ""
                    for m in tg.messages(DEFAULT_CHAT_ID)]
        posts = [r.json() for r in sink.received(lambda r: r.path == "/hook")]
        assert [p["message"] for p in posts] == tg_texts
        (finished,) = [p for p in posts if "finished" in p["message"]]
        (clip,) = finished["attachments"]
        (audio,) = tg.requests("sendAudio")
        assert base64.b64decode(clip["base64"]) == audio.files["audio"][2]  # the same MP3
        assert len(audio.files["audio"][2]) > 5000
        # The dryer's listener: its own device and topics, still waiting to be emptied.
        assert [m.payload for m in ha.received(lambda m: m.topic == f"{dryer}/cycle")][:3] \
            == ["idle", "running", "not_emptied"], other_log.text[-3000:]
        assert ha.last(f"{dryer}/cycle").payload == "not_emptied"
        dryer_configs = [m.topic for m in ha.received(
            lambda m: m.topic.endswith("/config") and "_dryer/" in m.topic)]
        assert len(set(dryer_configs)) == 8
        assert "Traceback" not in other_log.text
    # The retained availability says offline to a Home Assistant that starts later.
    with Peer(broker) as late:
        late.subscribe(f"{base}/status")
        assert late.last(f"{base}/status").payload == "offline"


def test_the_heartbeat_stops_while_the_recorder_is_stalled_and_a_kill_leaves_offline(
        tmp_path, cycle_wav, broker):
    """The heartbeat is held while the recorder is stopped (SIGSTOP) and resumes after; then
    the daemon is killed (SIGKILL): the broker publishes its last will, and Home Assistant
    shows the listener unavailable."""
    with FakeTelegram(token=DEFAULT_TOKEN, chats={DEFAULT_CHAT_ID}) as tg, \
            HttpSink() as hc:
        proc, log = start(tmp_path, cycle_wav,
                          {"BEEPNET_HEARTBEAT_URL": f"{hc.url}/ping/0f3c9b2a-secret",
                           "BEEPNET_MQTT_PASSWORD": broker.password},
                          "--set", f"telegram.api_url={tg.url}",
                          "--set", "notify.heartbeat_minutes=0.05",  # every 3 s
                          "--set", f"mqtt.host={broker.host}",
                          "--set", f"mqtt.port={broker.port}",
                          "--set", f"mqtt.username={broker.username}",
                          "--set", f"mqtt.device_id={DEVICE}")
        try:
            hc.wait_for(lambda r: r.path.startswith("/ping/"), 2, timeout=60)
            rec = beepnet_children(proc.pid)["beepnet-rec"]
            os.kill(rec, signal.SIGSTOP)
            try:
                assert log.wait_for("heartbeat held: no audio from the recorder", 30), \
                    log.text[-3000:]
                held = len(hc.received())
                # Nothing while it stays stalled.
                assert not wait_for(lambda: len(hc.received()) > held, 4.0)
            finally:
                os.kill(rec, signal.SIGCONT)
            assert log.wait_for("heartbeat resumed", 30), log.text[-3000:]
            hc.wait_for(lambda r: r.path.startswith("/ping/"), held + 1, timeout=30)
            with Peer(broker) as ha:
                ha.subscribe(f"beepnet/{DEVICE}/status")
                ha.wait_for(lambda m: m.payload == "online")
                assert proc.poll() is None, "the replay ended before the kill"
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
                ha.wait_for(lambda m: m.payload == "offline", timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.join()
    assert "0f3c9b2a-secret" not in log.text
    assert "Traceback" not in log.text, log.text[-3000:]
