"""The heartbeat URL: real HTTP to a local HttpSink, no urllib mocks."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
from beepnet.notify.heartbeat import Heartbeat, check_url, describe_url, method_for
from beepnet.testing.httpsink import HttpSink

TOKEN = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"
FAST = 0.01
"""minutes: one call every 0.6 s."""


@pytest.fixture
def sink():
    with HttpSink() as s:
        yield s


def healthy() -> None:
    return None


def records(caplog, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


def assert_no_secret(caplog, *secrets: str) -> None:
    for r in caplog.records:
        seen = r.getMessage() + (r.exc_text or "") + str(r.args)
        for secret in secrets:
            assert secret not in seen, f"{secret!r} logged by {r.name}: {seen!r}"


def test_describe_url_shows_scheme_and_host_only():
    assert describe_url(f"https://hc-ping.com/{TOKEN}") == "https://hc-ping.com/…"
    assert describe_url(f"https://kuma.example:3001/api/push/{TOKEN}?status=up&msg=OK&ping=") \
        == "https://kuma.example:3001/…"
    assert describe_url(f"https://me:{TOKEN}@ntfy.example/topic?x={TOKEN}#{TOKEN}") \
        == "https://ntfy.example/…"
    assert describe_url(f"http://[::1]:8080/{TOKEN}") == "http://[::1]:8080/…"
    assert describe_url("HTTPS://HC-PING.com/x") == "https://hc-ping.com/…"
    assert describe_url("") == "(no URL)"
    assert describe_url(TOKEN) == "(not a URL)"
    assert describe_url(f"http://h:port{TOKEN}/x") == "(not a URL)"


def test_check_url():
    assert check_url(f"https://hc-ping.com/{TOKEN}") is None
    assert check_url(f"ftp://host/{TOKEN}") == "not an http:// or https:// URL"
    assert check_url(f"http:/{TOKEN}") == "no host name in the URL"
    assert check_url("") is not None
    assert check_url(f"http://h:{TOKEN}/x") == "not a usable URL"


def test_an_unusable_url_is_reported_once_and_never_called(caplog):
    caplog.set_level(logging.DEBUG)
    hb = Heartbeat(f"ftp://host/{TOKEN}", 5, healthy)
    assert [hb.beat_now() for _ in range(3)] == [False, False, False]
    assert hb.last_error == "not an http:// or https:// URL"
    assert [r.getMessage() for r in caplog.records] == [
        "heartbeat off: notify.heartbeat_url ftp://host/… is not an http:// or https:// URL"]


def test_method_rule():
    # healthchecks.io takes HEAD, GET, POST: POST, its body becomes the ping's log
    assert method_for(f"https://hc-ping.com/{TOKEN}") == "POST"
    assert method_for(f"https://hc.example/ping/{TOKEN}/") == "POST"
    # Uptime Kuma 1.x: GET only (POST -> 404 "Cannot POST /api/push/...")
    assert method_for(f"https://kuma.example/api/push/{TOKEN}?status=up&msg=OK&ping=") == "GET"
    assert method_for(f"https://example.org/kuma/api/push/{TOKEN}") == "GET"
    # ntfy: GET on a topic only shows the web app; POST publishes
    assert method_for("https://ntfy.sh/beepnet_garage_x81") == "POST"
    assert method_for("https://ntfy.sh/beepnet_garage_x81/trigger?message=up") == "GET"
    assert method_for("https://ntfy.sh/beepnet_garage_x81/publish") == "GET"


def test_each_service_gets_a_method_it_accepts(sink):
    base = sink.url
    hc = Heartbeat(f"{base}/ping/{TOKEN}", 5, healthy, name="garage", clock=lambda: 1234.5)
    assert hc.beat_now()
    kuma = Heartbeat(f"{base}/api/push/{TOKEN}?status=up&msg=OK&ping=", 5, healthy,
                     name="garage")
    assert kuma.beat_now()
    ntfy = Heartbeat(f"{base}/beepnet_garage_{TOKEN[:8]}", 5, healthy, name="garage")
    assert ntfy.beat_now()
    got = sink.wait_for(count=3)
    by_path = {r.path: r for r in got}

    r = by_path[f"/ping/{TOKEN}"]
    assert (r.method, r.body) == ("POST", b"beepnet garage: listening")
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["user-agent"].startswith("beepnet/")

    r = by_path[f"/api/push/{TOKEN}?status=up&msg=OK&ping="]  # the query kept as given
    assert (r.method, r.body) == ("GET", b"")

    r = by_path[f"/beepnet_garage_{TOKEN[:8]}"]
    assert (r.method, r.body) == ("POST", b"beepnet garage: listening")

    assert hc.last_error is None and hc.last_ok == 1234.5  # on the injected clock


def test_user_and_password_in_the_url_go_as_basic_auth(sink, caplog):
    caplog.set_level(logging.DEBUG)
    hb = Heartbeat(f"http://phil:{TOKEN}@127.0.0.1:{sink.port}/mytopic", 5, healthy)
    assert hb.beat_now(), hb.last_error
    (r,) = sink.wait_for()
    assert r.path == "/mytopic"
    assert r.headers["authorization"].startswith("Basic ")
    assert_no_secret(caplog, TOKEN)


def test_calls_every_interval_held_while_unhealthy_resumed_after(sink, caplog):
    caplog.set_level(logging.DEBUG)
    why_not: list[str | None] = [None]
    asked = threading.Event()

    def health() -> str | None:
        asked.set()
        return why_not[0]

    hb = Heartbeat(f"{sink.url}/ping/{TOKEN}", FAST, health, first_delay=0.1)
    hb.start()
    try:
        got = sink.wait_for(count=3, timeout=10)
        gaps = [b.at - a.at for a, b in zip(got, got[1:])]
        assert all(0.4 < g < 3.0 for g in gaps), gaps  # 0.6 s, with room for a busy CI

        why_not[0] = "no audio from the microphone for 2 min"
        time.sleep(1.0)  # a call under way when it turned may still land
        held_at = len(sink.received())
        asked.clear()
        time.sleep(2.0)  # three intervals
        assert asked.is_set()  # still asking, not calling
        assert len(sink.received()) == held_at
        held = records(caplog, "heartbeat held")
        assert [r.getMessage() for r in held] \
            == ["heartbeat held: no audio from the microphone for 2 min"]
        assert held[0].levelno == logging.WARNING

        why_not[0] = None
        sink.wait_for(count=held_at + 2, timeout=10)
        assert len(records(caplog, "heartbeat resumed")) == 1
        assert len(records(caplog, "heartbeat held")) == 1
    finally:
        hb.stop()
    assert_no_secret(caplog, TOKEN)


def test_failures_never_raise_and_are_logged_once_per_outage(sink, caplog):
    caplog.set_level(logging.DEBUG)
    hb = Heartbeat(f"{sink.url}/ping/{TOKEN}", 5, healthy)

    sink.fail(3, 503)
    assert [hb.beat_now() for _ in range(3)] == [False, False, False]
    assert hb.last_error == "HTTP 503 Service Unavailable"
    failed = [r for r in records(caplog, "failed") if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in failed] == [
        f"heartbeat to http://127.0.0.1:{sink.port}/… failed: HTTP 503 Service Unavailable; "
        "trying again in 5 min"]

    assert hb.beat_now() and hb.last_error is None
    assert len(records(caplog, "works again (3 calls failed)")) == 1

    caplog.clear()
    sink.stop()  # the server went away
    assert [hb.beat_now() for _ in range(3)] == [False, False, False]
    assert hb.last_error == "connection refused"
    failed = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in failed] == [
        f"heartbeat to http://127.0.0.1:{sink.port}/… failed: connection refused; "
        "trying again in 5 min"]
    sink.start()  # and came back on the same port
    assert hb.beat_now()
    assert_no_secret(caplog, TOKEN)


def test_the_thread_rides_out_an_outage(sink, caplog):
    caplog.set_level(logging.DEBUG)
    hb = Heartbeat(f"{sink.url}/ping/{TOKEN}", FAST, healthy, first_delay=0)
    hb.start()
    try:
        sink.wait_for(count=1, timeout=10)
        sink.stop()
        time.sleep(2.0)  # three calls refused
        sink.start()
        before = len(sink.received())
        sink.wait_for(count=before + 2, timeout=10)
    finally:
        hb.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [f"heartbeat to http://127.0.0.1:{sink.port}/… failed: connection "
                        "refused; trying again in 1 s"]
    assert len(records(caplog, "works again")) == 1
    assert_no_secret(caplog, TOKEN)


def test_a_server_that_never_answers_times_out(caplog):
    caplog.set_level(logging.DEBUG)
    with socket.socket() as quiet:  # listens, never accepts: the request is never answered
        quiet.bind(("127.0.0.1", 0))
        quiet.listen(4)
        port = quiet.getsockname()[1]
        hb = Heartbeat(f"http://127.0.0.1:{port}/ping/{TOKEN}", 5, healthy, timeout=0.3)
        t0 = time.monotonic()
        assert hb.beat_now() is False
        assert time.monotonic() - t0 < 2.0
    assert hb.last_error == "no answer within 0.3 s"
    assert_no_secret(caplog, TOKEN)


def test_the_token_never_reaches_a_log_or_an_error(sink, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, urllib's and http.client's included
    urls = [
        f"{sink.url}/ping/{TOKEN}?rid={TOKEN}x",
        f"{sink.url}/api/push/{TOKEN}?status=up&msg=OK&ping=",
        f"http://user:{TOKEN}@127.0.0.1:{sink.port}/{TOKEN}y",
        f"ftp://127.0.0.1/{TOKEN}",
        f"http:/{TOKEN}",
        f"http://127.0.0.1:{TOKEN}/x",
        f"http://[{TOKEN}/x",
        f"{TOKEN}",
    ]
    for url in urls:
        for fail in (False, True):
            if fail:
                sink.fail(1, 500)
            hb = Heartbeat(url, 5, healthy)
            hb.beat_now()
            assert TOKEN not in (hb.last_error or ""), (url, hb.last_error)
            assert TOKEN not in hb.where
    assert caplog.records
    assert_no_secret(caplog, TOKEN)


def test_a_health_check_that_raises_holds_the_heartbeat(sink, caplog):
    caplog.set_level(logging.DEBUG)

    def broken() -> str | None:
        raise RuntimeError("bug")

    hb = Heartbeat(f"{sink.url}/ping/{TOKEN}", FAST, broken, first_delay=0)
    hb.start()
    try:
        deadline = time.monotonic() + 5
        while not records(caplog, "heartbeat held") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        hb.stop()
    assert [r.getMessage() for r in records(caplog, "heartbeat held")] \
        == ["heartbeat held: the health check failed (RuntimeError)"]
    assert sink.received() == []


def test_stop_is_prompt():
    hb = Heartbeat(f"http://127.0.0.1:9/ping/{TOKEN}", 60, healthy)
    hb.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    hb.stop()
    assert time.monotonic() - t0 < 0.5
    assert not any(t.name == "heartbeat" and t.is_alive() for t in threading.enumerate())
