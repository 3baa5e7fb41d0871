"""The daemon's outlets besides messages (issue 17), with real parts: Home Assistant's mute
switch through a real Mosquitto muting the real notifier's alerts (python-telegram-bot
against the fake Bot API server), the digest counting what happened, the heartbeat's view
of a stuck loop; and `beepnet mqtt` as a user runs it (the round trip, --remove)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from beepnet.config import load
from beepnet.cycle.history import History
from beepnet.daemon import outlets as outlets_mod
from beepnet.daemon.outlets import Outlets
from beepnet.messages import Chunk, Detection
from beepnet.notify.notifier import Notifier
from beepnet.testing.fake_telegram import DEFAULT_CHAT_ID, DEFAULT_TOKEN, FakeTelegram
from beepnet.testing.mosquitto import Peer
from procs import REPO, wait_for


@pytest.fixture
def tg():
    with FakeTelegram(token=DEFAULT_TOKEN, chats={DEFAULT_CHAT_ID}) as fake:
        yield fake


def notifier(tmp_path, tg, **kw) -> Notifier:
    cfg = load(None, [f"telegram.api_url={tg.url}"],
               {"BEEPNET_TELEGRAM_TOKEN": DEFAULT_TOKEN,
                "BEEPNET_TELEGRAM_CHAT_ID": str(DEFAULT_CHAT_ID)})
    return Notifier(tmp_path / "alerts", tmp_path / "outbox", cooldown_minutes=0,
                    telegram=cfg.telegram, retry_initial_seconds=0.1, retry_max_seconds=0.3,
                    **kw)


def det(score: float = 0.9) -> Detection:
    t = time.time()
    return Detection(Chunk("", 0, t, 3.0, -20.0), score, t, 1.0, "", "tone")


def mqtt_cfg(broker, *more: str):
    return load(None, [f"mqtt.host={broker.host}", f"mqtt.port={broker.port}",
                       f"mqtt.username={broker.username}", "mqtt.device_id=garage_washer",
                       *more], {"BEEPNET_MQTT_PASSWORD": broker.password})


def test_home_assistants_mute_switch_mutes_the_alerts(tmp_path, tg, broker):
    n = notifier(tmp_path, tg, mute_dir=tmp_path / "state")
    n.start()
    out = Outlets(mqtt_cfg(broker), n, emptied=lambda by, key: "")
    out.start()
    out.step({"state": "idle"}, None, tmp_path)  # the daemon's loop, turning
    try:
        with Peer(broker) as ha:
            ha.subscribe("beepnet/garage_washer/#")
            ha.wait_for(lambda m: m.topic.endswith("/mute") and m.payload == "OFF")
            ha.publish("beepnet/garage_washer/mute/set", "ON")
            ha.wait_for(lambda m: m.topic.endswith("/mute") and m.payload == "ON")
            assert n.mute.until() is not None
            # 24 hours at most: a switch forgotten on does not silence the laundry for good.
            assert n.mute.until() - time.time() == pytest.approx(
                outlets_mod.MUTE_SWITCH_HOURS * 3600, abs=60)
            n.alert(det())
            assert n.alerts[-1].get("muted") is True
            ha.publish("beepnet/garage_washer/mute/set", "OFF")
            ha.wait_for(lambda m: m.topic.endswith("/mute") and m.payload == "OFF", count=2)
            n.alert(det())
            tg.wait_for("sendMessage", 1, timeout=10)
            # /unmute in Telegram (the same mute) shows on the switch at the next turn.
            n.mute.set(600)
            out.step({"state": "idle"}, None, tmp_path)
            ha.wait_for(lambda m: m.topic.endswith("/mute") and m.payload == "ON", count=2)
    finally:
        out.close()
        n.close(2)
    assert len(tg.messages(DEFAULT_CHAT_ID)) == 1  # the muted beep never went out


def test_the_digest_counts_what_happened(tmp_path, tg, monkeypatch):
    history = History.open(tmp_path / "history.sqlite")
    now = time.time()
    a = history.begin(now - 3600)
    history.end(a, ended=now - 600, outcome="beeped", phases=())
    b = history.begin(now - 500)
    history.end(b, ended=now - 100, outcome="stopped", phases=())
    n = notifier(tmp_path, tg)
    n.start()
    cfg = load(None, ["notify.digest=daily 09:00", "notify.name=garage"], {})
    out = Outlets(cfg, n, emptied=lambda by, key: "", history=history, started=now - 7200)
    try:
        for level in (-62.0, -30.5, -18.2):
            out.level(level)
        out.beep(det(), alerted=True)
        out.beep(det(), alerted=False)  # held by the cooldown
        out.answered()
        out.note("microphone lost")
        out.step({"state": "idle"}, None, tmp_path)
        assert tg.requests("sendMessage") == []  # not due yet
        assert out._digest.due > now
        out._digest.due = 0.0
        out._digest.since = now - 86400
        out.step({"state": "idle"}, None, tmp_path)
        (req,) = tg.wait_for("sendMessage", 1, timeout=10)
    finally:
        out.close()
        n.close(2)
        history.close()
    text = req.fields["text"]
    assert text.startswith("beepnet (garage): the last 24 h"), text
    assert "Up 2 h 0 min" in text
    assert "2 cycles (1 finished, 1 stopped without a beep)" in text or \
        "2 cycles" in text and "1 finished" in text, text
    assert "2 beeps, 1 alert sent" in text and "1 correction" in text, text
    assert "−62 to −18 dBFS" in text, text
    assert "microphone lost" in text
    assert out._digest.due > time.time() and out._digest.beeps == 0


def test_the_heartbeat_sees_a_loop_that_stopped_turning(tmp_path, monkeypatch):
    out = Outlets(load(None, [], {}), notifier=None, emptied=lambda by, key: "")
    out.step({"state": "idle"}, None, tmp_path)
    assert out.unhealthy() is None
    out.step({"state": "idle"}, "the microphone is lost", tmp_path)
    assert out.unhealthy() == "the microphone is lost"
    out.step({"state": "idle"}, None, tmp_path)
    monkeypatch.setattr(outlets_mod, "STALE_LOOP_SECONDS", 0.05)
    time.sleep(0.1)
    assert "loop has not run" in out.unhealthy()


def beepnet(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beepnet", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_beepnet_mqtt_checks_the_broker_and_removes_the_device(broker, env, tmp_path):
    env = dict(env, BEEPNET_MQTT_PASSWORD=broker.password)
    sets = ("--set", f"mqtt.host={broker.host}", "--set", f"mqtt.port={broker.port}",
            "--set", f"mqtt.username={broker.username}", "--set", "mqtt.device_id=garage_washer",
            "--set", f"storage.dir={tmp_path}")
    r = beepnet(env, "mqtt", *sets)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "device      garage_washer" in r.stdout
    assert "homeassistant/sensor/garage_washer/cycle/config" in r.stdout
    assert "publish/subscribe round trip ok" in r.stdout
    # A listener announced itself (as a daemon does), and another one beside it.
    cfg = mqtt_cfg(broker)
    n = Notifier(tmp_path / "a", tmp_path / "o", cooldown_minutes=0)
    for device in ("garage_washer", "cellar_dryer"):
        o = Outlets(mqtt_cfg(broker, f"mqtt.device_id={device}"), n,
                    emptied=lambda by, key: "")
        o.start()
        assert wait_for(lambda: o.mqtt.connected, 10)
        o.step({"state": "running"}, None, tmp_path)
        o.close()
    assert cfg.mqtt.device_id == "garage_washer"
    r = beepnet(env, "mqtt", "--remove", *sets)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Home Assistant removes the device" in r.stdout
    with Peer(broker) as ha:
        ha.subscribe("#")
        left = {m.topic for m in ha.received() if m.retain and m.payload}
    assert left and not [t for t in left if "garage_washer" in t], left
    assert [t for t in left if "cellar_dryer" in t]
    # Without a broker configured: one line, EX_CONFIG.
    r = beepnet(env, "mqtt", "--set", f"storage.dir={tmp_path}")
    assert r.returncode == 78 and r.stderr.count("\n") == 1, r.stderr
    assert broker.password not in r.stdout + r.stderr


def test_status_shows_home_assistant_and_the_heartbeat(tmp_path, broker):
    from beepnet.notify.report import outlet_lines
    from beepnet.testing.httpsink import HttpSink

    with HttpSink() as hc:
        cfg = load(None, [f"mqtt.host={broker.host}", f"mqtt.port={broker.port}",
                          f"mqtt.username={broker.username}", "mqtt.device_id=garage_washer",
                          "notify.heartbeat_minutes=0.05"],
                   {"BEEPNET_MQTT_PASSWORD": broker.password,
                    "BEEPNET_HEARTBEAT_URL": f"{hc.url}/ping/abc"})
        out = Outlets(cfg, Notifier(tmp_path / "a", tmp_path / "o", cooldown_minutes=0),
                      emptied=lambda by, key: "")
        out.step({"state": "idle"}, None, tmp_path)
        out.start()
        try:
            assert wait_for(lambda: out.mqtt.connected, 10)
            hc.wait_for(lambda r: r.path == "/ping/abc", timeout=20)
            out.step({"state": "idle"}, None, tmp_path)
            assert wait_for(lambda: out.heartbeat.last_ok is not None, 5)
            lines = outlet_lines(out.status(), time.time())
            assert lines[0] == (f"Home Assistant: connected to {broker.host}:{broker.port} "
                                "as garage_washer")
            assert lines[1].startswith("Heartbeat: on, last answered ")
            out.step({"state": "idle"}, "the microphone is lost", tmp_path)
            assert outlet_lines(out.status(), time.time())[1].startswith(
                "Heartbeat: held (the microphone is lost)")
            broker.stop()
            assert wait_for(lambda: not out.mqtt.connected, 10)
            assert "not connected to" in outlet_lines(out.status(), time.time())[0]
        finally:
            out.close()
