"""`beepnet doctor` with the virtual microphone and the fake Bot API server."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from beepnet.testing.fake_telegram import DEFAULT_CHAT_ID, DEFAULT_TOKEN, FakeTelegram


@pytest.fixture
def tg():
    with FakeTelegram(token=DEFAULT_TOKEN, chats={DEFAULT_CHAT_ID}) as fake:
        yield fake


def doctor(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beepnet", "doctor", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_all_checks_pass_with_a_working_setup(vmic, tg, tmp_path):
    env = dict(vmic.env, BEEPNET_TELEGRAM_TOKEN=DEFAULT_TOKEN,
               BEEPNET_TELEGRAM_CHAT_ID=str(DEFAULT_CHAT_ID))
    rng = np.random.default_rng(0)
    player = vmic.play((rng.standard_normal(16000 * 15) * 0.05).astype(np.float32), rate=16000,
                       wait=False)
    r = doctor(env, "--set", f"telegram.api_url={tg.url}", "--set", f"storage.dir={tmp_path}")
    player.kill()
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert any(ln.startswith("ok   microphone:") and "dBFS" in ln for ln in lines), r.stdout
    assert any(ln.startswith("ok   detector:") for ln in lines)
    assert any(ln.startswith("ok   lame:") for ln in lines)
    assert any(ln.startswith("ok   telegram: bot @beepnet_test_bot") for ln in lines)
    assert any(ln.startswith("ok   disk:") for ln in lines)
    assert [m.method for m in tg.requests()] == ["getMe", "getChat"]


def test_failures_are_named_with_a_fix_and_exit_1(vmic, tg, tmp_path):
    env = dict(vmic.env, BEEPNET_TELEGRAM_TOKEN=DEFAULT_TOKEN, BEEPNET_TELEGRAM_CHAT_ID="4242")
    # Nothing plays: the virtual microphone delivers digital silence.
    r = doctor(env, "--set", f"telegram.api_url={tg.url}", "--set", f"storage.dir={tmp_path}")
    assert r.returncode == 1
    out = r.stdout
    assert "FAIL microphone:" in out and "digital silence" in out
    assert "FAIL telegram: chat 4242 not found" in out
    assert out.count("     fix: ") >= 2
    assert "Traceback" not in r.stderr and DEFAULT_TOKEN.split(":")[1] not in out + r.stderr


# -- issue 17: the broker, the other channels, the heartbeat ------------------------------


def test_send_test_reaches_every_channel_the_broker_and_the_heartbeat(tg, broker, tmp_path,
                                                                       env):
    from beepnet.testing.httpsink import HttpSink

    with HttpSink() as sink:
        env = dict(env, BEEPNET_TELEGRAM_TOKEN=DEFAULT_TOKEN,
                   BEEPNET_TELEGRAM_CHAT_ID=str(DEFAULT_CHAT_ID),
                   BEEPNET_MQTT_PASSWORD=broker.password,
                   BEEPNET_APPRISE_URLS=f"json://127.0.0.1:{sink.port}/hook "
                                        f"json://127.0.0.1:{sink.port}/other",
                   BEEPNET_HEARTBEAT_URL=f"{sink.url}/ping/6a1b-private")
        r = doctor(env, "--no-mic", "--send-test", "--set", f"telegram.api_url={tg.url}",
                   "--set", f"storage.dir={tmp_path}", "--set", f"mqtt.host={broker.host}",
                   "--set", f"mqtt.port={broker.port}",
                   "--set", f"mqtt.username={broker.username}")
        out = r.stdout
        assert "ok   telegram test: test message sent" in out, out + r.stderr
        assert f"ok   mqtt: {broker.host}:{broker.port}: publish/subscribe round trip" in out
        assert out.count("ok   channel JSON") == 2, out
        assert "ok   heartbeat:" in out and "answered" in out
        paths = sorted(rq.path for rq in sink.received())
        assert paths == ["/hook", "/other", "/ping/6a1b-private"], paths
        assert "test message" in sink.received(lambda rq: rq.path == "/hook")[0].json()["message"]
        assert [m.method for m in tg.requests()][-1] == "sendMessage"
        assert "6a1b-private" not in out + r.stderr and broker.password not in out + r.stderr
        assert r.returncode == 0, out + r.stderr


def test_a_broker_refusing_the_login_and_a_channel_down_fail_with_a_fix(broker, tmp_path, env):
    from beepnet.testing.httpsink import HttpSink

    with HttpSink() as sink:
        sink.fail(5, 500)
        env = dict(env, BEEPNET_MQTT_PASSWORD="wrong-password",
                   BEEPNET_APPRISE_URLS=f"json://127.0.0.1:{sink.port}/hook")
        r = doctor(env, "--no-mic", "--send-test", "--set", f"storage.dir={tmp_path}",
                   "--set", f"mqtt.host={broker.host}", "--set", f"mqtt.port={broker.port}",
                   "--set", f"mqtt.username={broker.username}")
    out = r.stdout
    assert r.returncode == 1
    assert "FAIL mqtt:" in out and "refused the login" in out, out
    assert "FAIL channel JSON" in out and "500" in out, out
    assert out.count("fix:") >= 2
    assert "wrong-password" not in out + r.stderr
