"""The bot that listens (issue 15): buttons under every alert, commands, mute, and receiving
through faults. Real `beepnet run` daemons, the real python-telegram-bot, and the fake Bot
API server on 127.0.0.1 (which serves getUpdates, callback queries and edits)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from beepnet.config import TelegramConfig
from beepnet.notify.commands import BotSettings
from beepnet.notify.notifier import Notifier
from beepnet.testing.fake_telegram import CONFLICT, DEFAULT_CHAT_ID, DEFAULT_TOKEN, FakeTelegram
from procs import REPO, LogReader, wait_for
from signals import SR, appliance_feedback, convert, labelled_set, make_feedback, washer_with_beeps

OWNER = DEFAULT_CHAT_ID
STRANGER = 4242
TOKEN_SECRET = DEFAULT_TOKEN.split(":", 1)[1]


@pytest.fixture
def tg():
    with FakeTelegram(token=DEFAULT_TOKEN, chats={OWNER, STRANGER}) as fake:
        yield fake


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bot")
    return {
        "beep": convert(washer_with_beeps([(3.0, 0.6, 3200.0)], 8.0, seed=4), d / "one.wav"),
        "quiet": convert(np.zeros(SR * 120, np.float32), d / "quiet.wav"),
        # A beep, then a minute of quiet: time for reminders.
        "beep_then_quiet": convert(np.concatenate([
            washer_with_beeps([(3.0, 0.6, 3200.0)], 8.0, seed=4),
            np.zeros(SR * 70, np.float32)]), d / "beep_quiet.wav"),
        # Quiet long enough to send /unmute, then a beep.
        "late_beep": convert(np.concatenate([np.zeros(SR * 14, np.float32),
                                             washer_with_beeps([(3.0, 0.6, 3200.0)], 8.0,
                                                               seed=5)]), d / "late.wav"),
    }


@contextmanager
def daemon(tg: FakeTelegram, storage: Path, source: Path, speed: float = 1.0, *extra: str,
           env: dict | None = None):
    """A `beepnet run --source` as a user starts it; stopped with SIGTERM unless it ended.
    Yields (process, its stderr lines); checks a clean exit and no token in the log.
    ``env``: more environment variables."""
    env = dict(os.environ, BEEPNET_TELEGRAM_TOKEN=DEFAULT_TOKEN,
               BEEPNET_TELEGRAM_CHAT_ID=str(OWNER), **(env or {}))
    p = subprocess.Popen(
        [sys.executable, "-m", "beepnet", "run", "--source", str(source), "--speed", str(speed),
         "--set", f"telegram.api_url={tg.url}", "--set", f"storage.dir={storage}",
         "--set", "notify.retry_initial_seconds=0.1", "--set", "notify.cooldown_minutes=0",
         *extra], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = LogReader(p)
    try:
        yield p, log
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            p.stdout.read()
            p.wait(30)
        finally:
            if p.poll() is None:
                p.kill()
        log.join()
    assert p.returncode == 0, log.text
    assert "Traceback" not in log.text, log.text
    assert TOKEN_SECRET not in log.text


def receiving(tg: FakeTelegram, since: int = 0, timeout: float = 40.0) -> None:
    """Wait until the daemon long-polls (it starts once its first message went out)."""
    tg.wait_for("getUpdates", since + 1, timeout=timeout)


def replies(tg: FakeTelegram, chat: int = OWNER) -> list[str]:
    return [m["text"] for m in tg.messages(chat) if "text" in m]


def wait_reply(tg: FakeTelegram, part: str, timeout: float = 15.0) -> str:
    assert wait_for(lambda: any(part in t for t in replies(tg)), timeout), (part, replies(tg))
    return [t for t in replies(tg) if part in t][-1]


def ask(tg: FakeTelegram, command: str, expect: str, timeout: float = 15.0) -> str:
    before = len(replies(tg))
    tg.add_update(OWNER, command)
    assert wait_for(lambda: any(expect in t for t in replies(tg)[before:]), timeout), \
        (command, replies(tg)[before:])
    return [t for t in replies(tg)[before:] if expect in t][-1]


def alert_message(tg: FakeTelegram) -> dict:
    (m,) = [m for m in tg.messages(OWNER) if "audio" in m]
    return m


def buttons(message: dict) -> dict[str, str]:
    """{action: callback data} of the message's inline keyboard."""
    return {b["callback_data"].rsplit(":", 1)[1]: b["callback_data"]
            for row in message["reply_markup"]["inline_keyboard"] for b in row}


def press(tg: FakeTelegram, message: dict, data: str, user_id: int | None = None) -> str:
    update = tg.add_callback_query(message, data, user_id=user_id)
    return update["callback_query"]["id"]


def answered(tg: FakeTelegram, query_id: str) -> list[dict]:
    return [a for a in tg.callback_answers if a.get("callback_query_id") == query_id]


def journal(storage: Path) -> list[dict]:
    path = storage / "feedback" / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# -- buttons ---------------------------------------------------------------------------------

def test_buttons_store_labelled_chunks_edit_the_alert_and_work_after_a_restart(
        tg, tmp_path, recordings):
    storage = tmp_path / "s"
    # 1. A replay with one beep: the alert carries the three buttons, then beepnet exits.
    with daemon(tg, storage, recordings["beep"], 4.0) as (p, log):
        p.wait(90)
    alert = alert_message(tg)
    data = buttons(alert)
    assert set(data) == {"yes", "no", "mute", "emptied"}
    assert [[b["text"] for b in row] for row in alert["reply_markup"]["inline_keyboard"]] == \
        [["✅ That was it", "❌ Not the beep", "🔕 Mute 2 h"], ["🧺 Emptied"]]
    # The beep finished a cycle (of unknown start: the replay began mid-cycle).
    assert alert["caption"].startswith("Washer finished at "), alert["caption"]
    assert "\nBeep at " in alert["caption"]
    alert_id = data["yes"].split(":")[1]
    assert all(len(d.encode()) <= 64 for d in data.values())
    assert (storage / "alerts" / f"{alert_id}.wav").exists()
    # The start message is written for a phone; the technical line stays in the log.
    assert "listening on one.wav; send /status for details." in replies(tg)
    assert "listening on file " in log.text and "detector beepnet model" in log.text

    # 2. Another daemon (a restart): the buttons of the earlier alert still work.
    with daemon(tg, storage, recordings["quiet"]) as (p, log):
        receiving(tg)
        q = press(tg, alert, data["yes"])
        assert wait_for(lambda: answered(tg, q), 15), log.text
        assert wait_for(lambda: "✅ That was it" in
                        tg.message_by_id(OWNER, alert["message_id"]).get("caption", ""), 15)
        edited = tg.message_by_id(OWNER, alert["message_id"])
        assert edited["caption"].startswith("Washer finished at ")  # the alert is still there
        assert edited["reply_markup"] == alert["reply_markup"]   # and so are its buttons
        beeps = sorted((storage / "feedback" / "beep").glob("*.wav"))
        assert beeps, list((storage / "feedback").rglob("*"))
        for f in beeps:
            audio, rate = sf.read(f)
            assert rate == 16000 and audio.ndim == 1 and len(audio) == 3 * 16000
        # The windows hold the beep (3.2 kHz), not only the washer before it.
        spec = np.abs(np.fft.rfft(sf.read(beeps[0])[0]))
        freqs = np.fft.rfftfreq(3 * 16000, 1 / 16000)
        band = freqs > 1000
        assert abs(freqs[band][np.argmax(spec[band])] - 3200) < 40
        (entry,) = journal(storage)
        assert entry["alert"] == alert_id and entry["label"] == "beep"
        assert entry["user_id"] == OWNER and entry["user"] == "@tester"
        assert entry["files"] == [f"beep/{f.name}" for f in beeps] and entry["time"]

        # A second answer changes the label: the files move, nothing is duplicated.
        q2 = press(tg, alert, data["no"])
        assert wait_for(lambda: answered(tg, q2), 15), log.text
        assert wait_for(lambda: "❌ Not the beep" in
                        tg.message_by_id(OWNER, alert["message_id"]).get("caption", ""), 15)
        caption = tg.message_by_id(OWNER, alert["message_id"])["caption"]
        assert "✅" not in caption
        assert wait_for(lambda: len(journal(storage)) == 2, 5)
        assert list((storage / "feedback" / "beep").glob("*.wav")) == []
        negatives = sorted((storage / "feedback" / "not_beep").glob("*.wav"))
        assert len(negatives) >= len(beeps)
        assert journal(storage)[1]["previous"] == "beep"

        # A stranger's press (in another chat) does nothing at all, and is logged by id.
        stranger = dict(alert, chat={"id": STRANGER, "type": "private", "first_name": "X"})
        q3 = press(tg, stranger, data["yes"], user_id=STRANGER)
        assert log.wait_for(f"user id {STRANGER}", 15), log.text
        time.sleep(1.0)
        assert answered(tg, q3) == []
        assert len(journal(storage)) == 2
        assert list((storage / "feedback" / "beep").glob("*.wav")) == []
        assert replies(tg, STRANGER) == []

        # 🔕 Mute 2 h: muted at once, said on the alert beside the earlier answer.
        q4 = press(tg, alert, data["mute"])
        assert wait_for(lambda: answered(tg, q4), 15), log.text
        assert wait_for(lambda: "🔕 Muted until" in
                        tg.message_by_id(OWNER, alert["message_id"]).get("caption", ""), 15)
        assert "❌ Not the beep" in tg.message_by_id(OWNER, alert["message_id"])["caption"]
        until = json.loads((storage / "telegram" / "mute.json").read_text())["until"]
        assert 7100 < until - time.time() <= 7200

        # The finished cycle still waits after the restart: its 🧺 button empties it, once.
        assert "Washer: finished at " in ask(tg, "/status", "not emptied yet")
        q5 = press(tg, alert, data["emptied"])
        assert wait_for(lambda: answered(tg, q5), 15), log.text
        assert answered(tg, q5)[0]["text"].startswith("🧺 Noted"), answered(tg, q5)
        assert log.wait_for("cycle: emptied at ", 10), log.text
        q6 = press(tg, alert, data["emptied"])
        assert wait_for(lambda: answered(tg, q6), 15), log.text
        assert "over already" in answered(tg, q6)[0]["text"], answered(tg, q6)

    # The history keeps the last answer with the cycle that alert finished.
    rows = subprocess.run([sys.executable, "-m", "beepnet", "history", "--json",
                           "--set", f"storage.dir={storage}"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert rows.returncode == 0, rows.stderr
    (cycle,) = json.loads(rows.stdout)
    assert cycle["alert_id"] == alert_id and cycle["feedback"] == "not_beep", cycle

    # 3. `beepnet train` reads the folder: one label per folder, 3-s 16 kHz chunks.
    labels = {d.name for d in (storage / "feedback").iterdir() if d.is_dir()
              and not d.name.startswith(".")}
    assert labels == {"beep", "not_beep"}


def test_reminders_come_until_the_emptied_button_and_emptied_says_what_it_did(
        tg, tmp_path, recordings):
    """The beep finishes the cycle; "still in the machine" every cycle.remind_minutes
    (here 4 s) with a 🧺 Emptied button, until it is pressed; /emptied then has nothing to
    empty. The history keeps the cycle, its reminders and who emptied it."""
    storage = tmp_path / "s"
    with daemon(tg, storage, recordings["beep_then_quiet"], 1.0,
                "--set", "cycle.remind_minutes=0.067", "--set", "cycle.max_reminders=5"
                ) as (p, log):
        receiving(tg)
        assert wait_for(lambda: any("audio" in m for m in tg.messages(OWNER)), 40), replies(tg)
        alert = alert_message(tg)
        assert alert["caption"].startswith("Washer finished at "), alert["caption"]

        def reminders() -> list[dict]:
            return [m for m in tg.messages(OWNER) if m.get("text", "").startswith("🧺 Still")]

        assert wait_for(lambda: len(reminders()) >= 2, 30), replies(tg)
        first = reminders()[0]
        assert "(reminder 1 of 5)" in first["text"], first["text"]
        assert "reminder 2 of 5" in reminders()[1]["text"]
        data = buttons(first)
        assert set(data) == {"emptied"} and data["emptied"] == buttons(alert)["emptied"]
        status = ask(tg, "/status", "not emptied yet")
        assert "Washer: finished at " in status, status
        q = press(tg, first, data["emptied"])
        assert wait_for(lambda: answered(tg, q), 15), log.text
        assert answered(tg, q)[0]["text"].startswith("🧺 Noted: the washer is emptied")
        assert wait_for(lambda: "🧺 Emptied (@tester, " in
                        tg.message_by_id(OWNER, first["message_id"]).get("text", ""), 15)
        said = len(reminders())
        assert log.wait_for("cycle: emptied at ", 10), log.text
        assert "by button (@tester)" in log.text
        time.sleep(10.0)                       # two more reminder periods: none comes
        assert len(reminders()) == said, [m["text"] for m in reminders()]
        assert "Nothing waits in the washer" in ask(tg, "/emptied", "Nothing waits")
        assert "Washer: idle; last cycle finished at " in ask(tg, "/status", "Washer: idle")
    rows = subprocess.run([sys.executable, "-m", "beepnet", "history", "--json",
                           "--set", f"storage.dir={storage}"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert rows.returncode == 0, rows.stderr
    (cycle,) = json.loads(rows.stdout)
    assert cycle["outcome"] == "beeped" and cycle["reminders"] == said
    assert cycle["emptied_by"] == "button (@tester)" and cycle["alert_at"]


# -- commands and mute -------------------------------------------------------------------------

def test_commands_answer_the_owner_and_mute_holds_across_a_restart(tg, tmp_path, recordings):
    storage = tmp_path / "s"
    with daemon(tg, storage, recordings["quiet"], 1.0, "--set", "notify.name=garage") as (p, log):
        receiving(tg)
        assert "garage: listening on quiet.wav; send /status for details." in replies(tg)
        assert [c["command"] for c in tg.commands] == ["status", "listen", "missed", "emptied",
                                                       "mute", "unmute", "retrain", "help"]
        # (/status reads the status the daemon publishes 5 times a second: let it appear.)
        assert wait_for(lambda: '"device":"file ' in (storage / "status.json").read_text(), 10)
        help_text = ask(tg, "/help", "/mute [duration]")
        assert "/status" in help_text and "/unmute" in help_text
        status = ask(tg, "/status", "listening since")
        assert status.startswith("garage: listening since")
        for part in ("Microphone: file ", "Detector: beepnet model", "Last beep: none",
                     "Alerts: on", "Outbox: empty", "Disk: ", "beepnet 0."):
            assert part in status, status
        assert "I do not know /frobnicate" in ask(tg, "/frobnicate", "I do not know")
        assert "Not muted: cannot read '2x'" in ask(tg, "/mute 2x", "Not muted")
        muted = ask(tg, "/mute 2h", "muted until")
        assert "(2 h)" in muted
        assert "Alerts: muted until" in ask(tg, "/status", "Alerts:")
        # Someone else gets no answer, and is logged by id.
        tg.add_update(STRANGER, "/unmute", user_id=STRANGER)
        assert log.wait_for(f"user id {STRANGER}", 15), log.text
        time.sleep(1.0)
        assert replies(tg, STRANGER) == []
    assert json.loads((storage / "telegram" / "mute.json").read_text())["until"] > time.time()

    # After a restart the mute still holds: the beep is kept and logged, not sent.
    tg.clear()
    with daemon(tg, storage, recordings["beep"], 4.0) as (p, log):
        p.wait(90)
    assert tg.requests("sendAudio") == []
    assert any("Beep alerts are muted until" in t for t in replies(tg)), replies(tg)
    (record,) = [json.loads(f.read_text()) for f in (storage / "alerts").glob("*.json")]
    assert record["muted"] is True
    assert "muted until" in log.text and "not sent" in log.text

    # /unmute ends it (and says what was held back); the next beep is alerted again.
    with daemon(tg, storage, recordings["late_beep"], 1.0) as (p, log):
        receiving(tg, len(tg.requests("getUpdates")))
        unmuted = ask(tg, "/unmute", "on again")
        assert "1 beep(s) while muted" in unmuted, unmuted
        tg.wait_for("sendAudio", timeout=60)
        p.wait(60)
    assert not json.loads((storage / "telegram" / "mute.json").read_text())["until"]


def test_retrain_learns_the_answers_and_the_daemon_switches_to_the_new_model(tg, tmp_path,
                                                                           recordings):
    """/retrain runs `beepnet train --feedback` beside the daemon, which then loads the new
    model (SIGHUP from the child, as from a shell) and the owner reads how it went."""
    storage = tmp_path / "s"
    cfg = tmp_path / "beepnet.toml"
    replay = labelled_set(tmp_path / "replay")
    cfg.write_text(f'[retrain]\ndata_dir = "{replay}"\nepochs = 1\n')
    with daemon(tg, storage, recordings["quiet"], 1.0, "--config", str(cfg)) as (p, log):
        receiving(tg)
        assert "Nothing to learn yet" in ask(tg, "/retrain", "Nothing to learn yet")
        make_feedback(storage / "feedback", replay)
        started = ask(tg, "/retrain", "Retraining on your answers")
        assert "beep 12 windows of 3 alerts, not_beep 16 windows of 4 alerts" in started
        assert "Already retraining since" in ask(tg, "/retrain", "Already retraining")
        done = wait_reply(tg, "Retrained on your answers", timeout=150)
        (model,) = (storage / "models").glob("retrained-*.safetensors")
        assert f"the new model {model.name} is in use now" in done, done
        assert "Your held-out alerts: new " in done and "Held-out other clips: new " in done
        assert f'model = "{model}"' in cfg.read_text()
        assert log.wait_for(f"model file {model} (was:", 60), log.text
        # The training ran as a child of the daemon, and its lines are in the daemon's log.
        assert "/retrain: corrections in" in log.text


def test_without_the_training_extra_retrain_refits_the_beep_output(tg, tmp_path, recordings):
    """A daemon installed without PyTorch (as the service is by default): /retrain says so,
    refits the beep output of the model in use on the answers (`beepnet train --feedback`
    falls back to `--head`), and the daemon switches to the new model."""
    hide = tmp_path / "site"
    hide.mkdir()
    # Python's own way to make a module absent: None in sys.modules (import fails, and
    # importlib.util.find_spec finds nothing), before beepnet starts; the child inherits it.
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    storage = tmp_path / "s"
    appliance_feedback(storage / "feedback")
    # The config the new model is put in use through (else it would be the user's own).
    cfg = tmp_path / "beepnet.toml"
    cfg.write_text("# the daemon's\n")
    with daemon(tg, storage, recordings["quiet"], 1.0, "--config", str(cfg),
                env={"PYTHONPATH": str(hide)}) as (p, log):
        receiving(tg)
        assert "retrain" in [c["command"] for c in tg.commands]
        reply = ask(tg, "/retrain", "Retraining on your answers")
        assert "(torch missing), so only the beep output" in reply, reply
        assert "pip install 'beepnet[train]'" in reply
        done = wait_reply(tg, "Retrained on your answers", timeout=60)
        (model,) = (storage / "models").glob("retrained-*.safetensors")
        assert f"the new model {model.name} is in use now" in done, done
        assert " s: the new model" in done  # seconds, not minutes
        assert "Your held-out alerts: new 4 of 4 beeps caught, 0 of 4 others" in done, done
        assert f'model = "{model}"' in cfg.read_text()
        assert log.wait_for(f"model file {model} (was:", 60), log.text
        assert "/retrain: refitting the beep output of beepnet-default.safetensors" in log.text


# -- receiving through faults ---------------------------------------------------------------------

def test_polling_survives_a_409_conflict_an_outage_5xx_and_429(tg, tmp_path, recordings):
    storage = tmp_path / "s"
    tg.fail_always(409, description=CONFLICT, method="getUpdates")
    with daemon(tg, storage, recordings["quiet"]) as (p, log):
        tg.wait_for("getUpdates", 3, timeout=60)
        told = wait_reply(tg, "Commands and buttons do not reach beepnet")
        assert "another program" in told
        # One clear log line, one message: no crash loop, no line per attempt.
        assert log.text.count("409 Conflict") == 1, log.text
        assert sum("do not reach beepnet" in t for t in replies(tg)) == 1
        tg.recover()
        wait_reply(tg, "Commands and buttons work again", timeout=40)
        ask(tg, "/status", "listening since")

        # The network goes away (connections refused, the long poll cut), then comes back.
        tg.stop()
        time.sleep(4)
        tg.start()
        ask(tg, "/status", "listening since", timeout=40)
        assert log.text.count("cannot receive from Telegram") == 1, log.text
        assert "receiving from Telegram again" in log.text

        # 5xx and 429 on getUpdates: waited out, the command still answered.
        tg.fail_next(2, 502, method="getUpdates")
        tg.fail_next(1, 429, retry_after=1, method="getUpdates")
        n = len(tg.requests("getUpdates"))
        tg.add_update(OWNER, "/help")   # ends the long poll in flight at once
        tg.wait_for("getUpdates", n + 3, timeout=30)
        wait_reply(tg, "/mute [duration]", timeout=40)
    assert p.returncode == 0


def test_sending_never_waits_behind_a_long_poll(tg, tmp_path):
    """The one Bot's getUpdates has its own connection: an alert goes out while it waits."""
    bot = BotSettings(tmp_path / "telegram", tmp_path / "feedback", tmp_path / "alerts",
                      tmp_path / "status.json", tmp_path)
    n = Notifier(tmp_path / "alerts", tmp_path / "outbox", cooldown_minutes=0,
                 telegram=TelegramConfig(DEFAULT_TOKEN, str(OWNER), tg.url), bot=bot,
                 retry_initial_seconds=0.1)
    n.start()
    try:
        n.message("start", "listening")
        (poll,) = tg.wait_for("getUpdates", timeout=10)
        time.sleep(0.5)
        assert poll.status is None  # still waiting: a 30-s long poll
        t = time.monotonic()
        n.message("mic", "microphone lost")
        assert wait_for(lambda: "microphone lost" in replies(tg), 5)
        assert time.monotonic() - t < 2.0
        assert poll.status is None  # and the poll was still open meanwhile
    finally:
        t = time.monotonic()
        n.close(5)
        assert time.monotonic() - t < 3.0  # the long poll does not hold up stopping
