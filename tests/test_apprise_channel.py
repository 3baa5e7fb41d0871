"""Apprise channels (`beepnet.notify.apprise_channel`) against a local HTTP endpoint: real
Apprise, real requests, the sink on 127.0.0.1 sees what a service would."""

from __future__ import annotations

import base64
import logging
import re
import subprocess
import sys

import pytest
from beepnet.config import NotifyConfig
from beepnet.notify.apprise_channel import (AppriseChannel, ChannelError,
                                            channels_from_config, read_urls)
from beepnet.testing.httpsink import HttpSink

USER, PASSWORD = "alice", "s3cretPw"
TOPIC = "tok3nTopic9"          # an ntfy topic is as good as a password
PATH_TOKEN = "Zq7TokenPath42"  # a webhook token in a path
GOTIFY_TOKEN = "AbCdEfGhIjKlMnO"
SECRETS = (USER, PASSWORD, TOPIC, PATH_TOKEN, GOTIFY_TOKEN)
CLIP = b"ID3\x04\x00" + bytes(range(256)) * 8


@pytest.fixture(scope="module")
def sink():
    with HttpSink() as s:
        yield s


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "1700000000-beep.mp3"
    path.write_bytes(CLIP)
    return path


def _last(sink, path_prefix):
    return sink.received(lambda r: r.path.startswith(path_prefix))[-1]


def test_json_carries_the_clip_with_its_name(sink, clip):
    ch = AppriseChannel(f"json://127.0.0.1:{sink.port}/json-hook")
    assert ch.attachments
    ch.send("Washer finished at 10:00.", "Washer", attachment=clip,
            attachment_name="washer 10-00.mp3")
    body = _last(sink, "/json-hook").json()
    assert body["title"] == "Washer" and body["message"] == "Washer finished at 10:00."
    [att] = body["attachments"]
    assert att["filename"] == "washer 10-00.mp3"
    assert base64.b64decode(att["base64"]) == CLIP


def test_form_carries_the_clip_as_a_multipart_file(sink, clip):
    ch = AppriseChannel(f"form://127.0.0.1:{sink.port}/form-hook")
    ch.send("Beep.", attachment=clip)   # no name given: the file's own
    files = _last(sink, "/form-hook").files()
    assert files["message"][1] == b"Beep."
    assert ("1700000000-beep.mp3", CLIP) in files.values()


def test_ntfy_puts_the_clip_in_the_body_and_silent_lowers_the_priority(sink, clip):
    ch = AppriseChannel(f"ntfy://127.0.0.1:{sink.port}/beeps?priority=high")
    # Silent first: the copy it is sent through must leave the channel itself alone.
    # (Apprise waits 5.5 s between two requests of one ntfy plugin: one request each here.)
    ch.send("Washer finished.", "Washer", attachment=clip, silent=True)
    assert _last(sink, "/beeps").headers.get("x-priority") == "low"

    ch.send("Washer finished.", "Washer", attachment=clip, attachment_name="washer.mp3")
    req = _last(sink, "/beeps")
    # ntfy takes a file as the whole request body, its name and the text in the query.
    assert req.method in ("PUT", "POST") and req.body == CLIP
    assert "filename=washer.mp3" in req.path and "message=Washer+finished." in req.path
    assert req.headers.get("x-priority") == "high"


def test_a_service_without_files_says_where_the_clip_went(sink, clip):
    ch = AppriseChannel(f"gotify://127.0.0.1:{sink.port}/{GOTIFY_TOKEN}")
    assert not ch.attachments
    ch.send("Washer finished.", "Washer", attachment=clip)
    sent = _last(sink, "/message")
    assert sent.headers["x-gotify-key"] == GOTIFY_TOKEN
    message = sent.json()["message"]
    assert message.startswith("Washer finished.")
    assert "Telegram" in message.splitlines()[-1]
    assert sent.json()["priority"] == 5
    # Silent: Gotify's Android app sounds from priority 4 on.
    ch.send("Washer finished.", silent=True)
    assert _last(sink, "/message").json()["priority"] == 3
    # No clip, no note.
    ch.send("Listening again.")
    assert _last(sink, "/message").json()["message"] == "Listening again."


def test_a_clip_that_is_gone_leaves_the_message(sink, tmp_path, caplog):
    ch = AppriseChannel(f"json://127.0.0.1:{sink.port}/gone-hook")
    ch.send("Beep.", attachment=tmp_path / "missing.mp3")
    assert _last(sink, "/gone-hook").json()["attachments"] == []
    assert "missing.mp3 is gone" in caplog.text


@pytest.mark.parametrize("url", [
    f"ntfy://{USER}:{PASSWORD}@127.0.0.1:{{port}}/{TOPIC}",
    f"json://{USER}:{PASSWORD}@127.0.0.1:{{port}}/hook/{PATH_TOKEN}",
    f"gotify://127.0.0.1:{{port}}/{GOTIFY_TOKEN}",
])
def test_a_refusal_says_why_and_no_secret_anywhere(sink, clip, caplog, url):
    caplog.set_level(logging.DEBUG)
    # The worst case: someone turned Apprise's own logging all the way up.
    caplog.set_level(1, logger="apprise")
    ch = AppriseChannel(url.format(port=sink.port))
    sink.fail(1, 503)
    with pytest.raises(ChannelError) as err:
        ch.send("Washer finished.", "Washer", attachment=clip, silent=True)
    reason = str(err.value)
    assert reason.startswith(ch.label) and "503" in reason, reason
    assert "\n" not in reason
    ch.send("Washer finished.", "Washer", attachment=clip)   # the next attempt goes through
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for text in (reason, ch.label, ch.describe(), repr(ch), logged):
        assert not [s for s in SECRETS if s in text], text
    # Apprise's own complaint is in the error, not also in the log.
    assert not [r for r in caplog.records if r.name == "apprise" and r.levelno >= logging.WARNING]


def test_an_endpoint_that_is_gone(caplog):
    with HttpSink() as gone:
        port = gone.port
    ch = AppriseChannel(f"ntfy://{USER}:{PASSWORD}@127.0.0.1:{port}/{TOPIC}")
    with pytest.raises(ChannelError) as err:
        ch.send("Washer finished.")
    assert "onnection" in str(err.value)
    for text in (str(err.value), caplog.text):
        assert not [s for s in SECRETS if s in text], text


def test_labels_and_ids():
    a = AppriseChannel(f"ntfys://{USER}:{PASSWORD}@ntfy.example.org:8080/{TOPIC}")
    assert a.label == "ntfy (ntfy.example.org:8080/t...9)"
    assert re.fullmatch(r"ntfys-[0-9a-f]{10}", a.id)
    assert AppriseChannel(f"ntfys://{USER}:{PASSWORD}@ntfy.example.org:8080/{TOPIC}").id == a.id
    b = AppriseChannel("pover://uQiRzpo4DXghDmr9QzzfQu27cmVRsG@azGDORePK8gMaC0QOYAMyEEuzJnyUi")
    assert b.id.startswith("pover-") and b.id != a.id
    assert "uQiRzpo4DXghDmr9QzzfQu27cmVRsG" not in b.label + b.describe()
    assert "azGDORePK8gMaC0QOYAMyEEuzJnyUi" not in b.label + b.describe()
    # Reordering the URLs changes no id: the outbox's delivery state stays matched.
    urls = [f"json://127.0.0.1/{n}" for n in "abc"]
    ids = {u: AppriseChannel(u).id for u in urls}
    assert {u: AppriseChannel(u).id for u in reversed(urls)} == ids
    assert len(set(ids.values())) == 3


@pytest.mark.parametrize("url, how", [
    ("pover://uQiRzpo4DXghDmr9QzzfQu27cmVRsG@azGDORePK8gMaC0QOYAMyEEuzJnyUi", "priority=-1"),
    ("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100123/", "silent=yes"),
    ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js?flags=4", "flags=4100"),
    ("ntfy://ntfy.example.org/x?priority=min", "silent as configured"),
    ("bark://bark.example.org/devkeyAbc123456", "level=passive"),
    ("matrixs://bob:s3cr3tpw@matrix.example.org/#washer:example.org", "msgtype=notice"),
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general", "no silent mode"),
])
def test_how_each_service_goes_silent(url, how):
    line = AppriseChannel(url).describe()
    assert how in line and "\n" not in line
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in line and "s3cr3tpw" not in line


def test_read_urls_from_a_string_and_a_file(tmp_path):
    mail = "mailtos://me:pw123@example.org?to=a@example.org,b@example.org"
    file = tmp_path / "apprise.txt"
    file.write_text("# my channels\n\n"
                    "json://127.0.0.1/b\n"
                    "   json://127.0.0.1/c   \n"
                    "json://127.0.0.1/a, json://127.0.0.1/d\n"
                    "  # an indented comment\n"
                    f"{mail}\n")
    got = read_urls(" json://127.0.0.1/a,json://127.0.0.1/b  json://127.0.0.1/a ,\n", str(file))
    # In order, each once; a comma inside a URL's query does not split it.
    assert got == ["json://127.0.0.1/a", "json://127.0.0.1/b", "json://127.0.0.1/c",
                   "json://127.0.0.1/d", mail]
    assert read_urls("", "") == []


def test_a_file_that_cannot_be_read(tmp_path):
    for path, why in ((tmp_path / "nope.txt", "No such file"), (tmp_path, "Is a directory")):
        with pytest.raises(ValueError) as err:
            read_urls("", str(path))
        text = str(err.value)
        assert text.startswith("notify.apprise_file: ") and str(path) in text and why in text
        assert "\n" not in text


@pytest.mark.parametrize("bad, scheme", [
    (f"nosuch://{USER}:{PASSWORD}@127.0.0.1/{PATH_TOKEN}", "nosuch://..."),
    (f"{PASSWORD}{PATH_TOKEN}", "without scheme://"),
    (f"pover://{PATH_TOKEN}", "pover://..."),
])
def test_a_bad_url_is_named_by_position_and_scheme_only(tmp_path, caplog, bad, scheme):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ValueError) as err:
        read_urls(f"json://127.0.0.1/a, {bad}", "")
    text = str(err.value)
    assert text.startswith(f"notify.apprise_urls: the 2nd URL ({scheme}) is not one Apprise "
                           "understands"), text
    file = tmp_path / "urls"
    file.write_text(f"# mine\njson://127.0.0.1/a\n{bad}\n")
    with pytest.raises(ValueError) as err2:
        read_urls("", str(file))
    assert str(err2.value).startswith(f"notify.apprise_file: line 3 of {file} ({scheme})")
    assert "\n" not in text and "\n" not in str(err2.value)
    for t in (text, str(err2.value), caplog.text):
        assert not [s for s in SECRETS if s in t], t


def test_channels_from_config(tmp_path):
    file = tmp_path / "urls"
    file.write_text("json://127.0.0.1/from-file\n")
    cfg = NotifyConfig(apprise_urls="json://127.0.0.1/a ntfy://127.0.0.1/washer",
                       apprise_file=str(file))
    chans = channels_from_config(cfg)
    assert [c.label for c in chans] == ["JSON (127.0.0.1/a)", "ntfy (127.0.0.1/w...r)",
                                        "JSON (127.0.0.1/from-file)"]
    with pytest.raises(ValueError):
        channels_from_config(NotifyConfig(apprise_urls="nosuch://x"))


def test_apprise_is_imported_only_when_urls_are_set():
    code = ("import sys; from beepnet.config import NotifyConfig\n"
            "from beepnet.notify.apprise_channel import channels_from_config\n"
            "assert channels_from_config(NotifyConfig()) == []\n"
            "assert 'apprise' not in sys.modules, 'imported without URLs'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
