"""Faults injected into real `beepnet run` daemons (issue 13: nothing lost, nothing silent).

One module fixture starts a daemon per fault, each with its own storage.dir and its own fake
Bot API server, all listening to one PulseAudio virtual microphone (the microphone that
vanishes is a second one of its own). It applies every fault at once, plays one beep to all,
ends the faults after over a minute, waits for delivery and stops the daemons. Each test then
checks one daemon's record: the beep alert delivered exactly once (at most twice when the
supervisor was killed mid-send), the daemon still running at the end and stopping cleanly,
and the owner told about a fault that lasted over a minute.

Real time: about two and a half minutes for the whole module, the faults running side by side.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from beepnet.testing import vmic as vmic_mod
from beepnet.testing.fake_telegram import DEFAULT_CHAT_ID, DEFAULT_TOKEN, FakeTelegram
from beepnet.training import synth
import faketime
from faketime import SteppedClock
from procs import LogReader, alive, beepnet_children, children, comm, wait_for

pytestmark = [pytest.mark.mic, pytest.mark.timeout(480)]   # the fixture runs it all

SR = 16000

# What the owner must be told, by the kind of fault, in a delivered message's text or
# caption (a notice may lead the next message through). Kept in one place: the notifier's
# wording is being written alongside this suite.
OWNER_TOLD = {
    # The outbox cannot be written (read-only, full): messages are not kept on disk.
    "outbox": r"(?i)cannot (keep|write|save) (messages|the outbox)|outbox.*(read-only|full)",
    # Telegram could not be reached (garbage, hang-ups, stalls) for over a minute.
    "telegram": r"(?i)(could not|cannot) (send to|reach) telegram|telegram.*unreachable",
    "mic": r"(?i)microphone lost",
    "mic_back": r"(?i)microphone back",
    "crash": r"(?i)process died",
}
# Messages that must not appear after a clock step.
FALSE_NEWS = {
    "no beep yet": r"(?i)no beep yet",
    "expired": r"(?i)could not be delivered in time|dropped",
}
# The beep alert's caption, on a line of its own; an alert sent late says so first, and
# notices may come on lines before it.
BEEP_CAPTION = re.compile(r"^(\([^)]*\) )?Beep at (\d\d):(\d\d):(\d\d)", re.M)

FAULT_SECONDS = 80.0
"""How long the lasting faults last: over a minute from the first failed attempt (the beep
reaches the daemons a few seconds after the faults begin)."""
DELIVERY_SECONDS = 75.0
"""After the faults end: a retry (at most notify.retry_max_seconds apart), a microphone
reopened (the recorder's backoff reaches 30 s) and its beep classified and sent."""
SETTLE_SECONDS = 6.0
"""Once everything arrived, this long for duplicates to show."""
STARTUP_SECONDS = 90.0

HTML = (b"<html><head><title>Welcome</title></head><body><h1>Sign in to the hotel "
        b"Wi-Fi</h1></body></html>")


def beep_sound(seed: int = 1) -> np.ndarray:
    """A washer with one 3 kHz beep at 2 s, the sound test_mic.py's daemons catch."""
    return synth.mix(synth.washer(np.random.default_rng(seed), 5.0), synth.beep(3000, 0.5),
                     2.0, 10.0)


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


# --------------------------------------------------------------------------- scenarios

class Scenario:
    """One daemon and the fault applied to it. The fixture calls prepare, start, begin (when
    every daemon listens), during (in a thread of its own), end, and cleanup."""

    name = ""
    told: str | None = None
    """Key of OWNER_TOLD: the owner must hear about this fault."""
    max_alerts = 1

    def __init__(self, root: Path, mic: vmic_mod.VirtualMic):
        self.storage = root / self.name
        self.storage.mkdir(parents=True)
        self.mic = mic
        self.tg = FakeTelegram(token=DEFAULT_TOKEN, chats={DEFAULT_CHAT_ID}).start()
        self.procs: list[subprocess.Popen] = []
        self.readers: list[LogReader] = []
        self.problems: list[str] = []
        """What went wrong in the fixture's own steps (a fault that could not be applied)."""
        self.exit_status: int | None = None
        self.running_at_end = False
        self.faults_ended = 0.0

    @property
    def proc(self) -> subprocess.Popen:
        return self.procs[-1]

    @property
    def log(self) -> str:
        return "".join(r.text for r in self.readers)

    def env(self) -> dict:
        e = {k: v for k, v in self.mic.env.items()
             if k not in ("STATE_DIRECTORY", "RUNTIME_DIRECTORY", "BEEPNET_CONFIG", "TMUX")}
        # Through the environment, never on a command line.
        e["BEEPNET_TELEGRAM_TOKEN"] = DEFAULT_TOKEN
        e["BEEPNET_TELEGRAM_CHAT_ID"] = str(DEFAULT_CHAT_ID)
        return e

    def args(self) -> list[str]:
        return ["--set", f"storage.dir={self.storage}",
                "--set", f"telegram.api_url={self.tg.url}",
                "--set", "notify.retry_initial_seconds=0.5",
                "--set", "notify.retry_max_seconds=5"]

    def start(self) -> None:
        p = subprocess.Popen([sys.executable, "-m", "beepnet", "run", *self.args()],
                             env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        self.procs.append(p)
        self.readers.append(LogReader(p))

    def listening(self) -> bool:
        """Up: the "listening" message went out (so the outbox is empty again)."""
        return any("listening" in m.get("text", "") for m in self.tg.messages())

    def prepare(self) -> None: ...
    def begin(self) -> None: ...
    def during(self) -> None: ...
    def end(self) -> None: ...
    def cleanup(self) -> None: ...

    def step(self, fn) -> None:
        """Run one of the fixture's steps; a step that fails spoils this scenario only."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported by this scenario's test
            self.problems.append(f"{fn.__name__}: {type(e).__name__}: {e}")

    def sent(self) -> list[str]:
        """What reached the chat, for assertion messages."""
        return [("[audio] " if "audio" in m else "") + m.get("caption", m.get("text", ""))
                for m in self.tg.messages()]

    def beep_alerts(self) -> list[dict]:
        return [m for m in self.tg.messages()
                if "audio" in m and BEEP_CAPTION.search(m.get("caption", ""))]

    def texts(self) -> list[str]:
        """Texts and captions that reached the chat."""
        return [m.get("text", m.get("caption", "")) for m in self.tg.messages()]

    def done(self) -> bool:
        return bool(self.beep_alerts())

    def stop(self) -> None:
        """SIGTERM: the daemon must exit 0 (the systemd unit's stop)."""
        self.running_at_end = self.proc.poll() is None
        if not self.running_at_end:
            self.exit_status = self.proc.returncode
            return
        self.proc.send_signal(signal.SIGTERM)

    def wait(self) -> None:
        # wait(), not communicate(): the LogReader owns stderr; stdout is a short summary.
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.problems.append("did not stop within 30 s of SIGTERM")
            self.proc.kill()
            self.proc.wait()
        if self.exit_status is None:
            self.exit_status = self.proc.returncode
        for r in self.readers:
            r.join()


class OutboxMount(Scenario):
    """storage.dir/outbox on a tmpfs of its own, so it can be made read-only or full."""

    size = "4m"

    @property
    def outbox(self) -> Path:
        return self.storage / "outbox"

    def prepare(self) -> None:
        self.outbox.mkdir()
        sh("mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.outbox))

    def cleanup(self) -> None:
        subprocess.run(["umount", "-l", str(self.outbox)], capture_output=True)


class OutboxReadOnly(OutboxMount):
    name = "outbox-read-only"
    told = "outbox"

    def begin(self) -> None:
        sh("mount", "-o", "remount,ro", str(self.outbox))
        try:
            (self.outbox / ".probe").write_bytes(b"x")
        except OSError:
            return
        self.problems.append("the outbox is still writable")

    def end(self) -> None:
        sh("mount", "-o", "remount,rw", str(self.outbox))


class OutboxFull(OutboxMount):
    name = "outbox-full"
    told = "outbox"
    size = "16k"   # the listening message fits; the beep's MP3 (48 kbit/s, 3 s and more) not

    def end(self) -> None:
        sh("mount", "-o", "remount,size=4m", str(self.outbox))


class TelegramOutage(Scenario):
    """The Bot API server misbehaves (how: ``begin``) until the fault ends."""

    told = "telegram"

    def end(self) -> None:
        self.tg.recover()


class TelegramGarbage(TelegramOutage):
    name = "telegram-garbage"

    def begin(self) -> None:
        self.tg.fail_always(200, body=HTML)   # a captive portal: 200 and an HTML page


class TelegramHangsUp(TelegramOutage):
    name = "telegram-hangs-up"

    def begin(self) -> None:
        self.tg.drop_always()


class TelegramResets(TelegramOutage):
    name = "telegram-resets"

    def begin(self) -> None:
        self.tg.drop_always(reset=True)


class TelegramStalls(TelegramOutage):
    """Requests get no answer at all for the whole fault (longer than the client's timeout)."""

    name = "telegram-stalls"

    def begin(self) -> None:
        self.tg.stall_always()


class ClockSteps(Scenario):
    """libfaketime steps the daemon's wall clock (its children's too) 3 days forward, then
    1 hour back, before the beep; time.monotonic() stays true."""

    name = "clock-steps"
    offset = 3 * 86400 - 3600   # where the daemon's wall clock ends up: 71 h ahead

    def env(self) -> dict:
        self.clock = SteppedClock(self.storage)
        self.env_used = self.clock.env(super().env())
        return self.env_used

    def step_forward(self) -> None:
        self.clock.set("+3d")
        seen = subprocess.run(["date", "+%s"], env=self.env_used, capture_output=True,
                              text=True, timeout=10).stdout
        if not seen.strip().isdigit() or int(seen) - time.time() < 2.9 * 86400:
            self.problems.append(f"libfaketime did not step the clock: date says {seen!r}")

    def step_back(self) -> None:
        self.clock.set(f"+{self.offset // 3600}h")


class KillDuringSend(Scenario):
    """SIGKILL of one process while the beep's sendAudio hangs on the server."""

    target = ""          # the child's name, beepnet-rec or beepnet-clf
    hang = 8.0

    def begin(self) -> None:
        self.tg.delay_next(1, self.hang, method="sendAudio")

    def during(self) -> None:
        try:
            self.tg.wait_for("sendAudio", timeout=60)
        except TimeoutError:
            self.problems.append("no sendAudio to interrupt")
            return
        self.kill()

    def kill(self) -> None:
        old = beepnet_children(self.proc.pid)[self.target]
        os.kill(old, signal.SIGKILL)

        def replaced() -> bool:
            return any(comm(c) == self.target and c != old and alive(c)
                       for c in children(self.proc.pid))

        if not wait_for(replaced, 20):
            self.problems.append(f"{self.target} was not restarted")


class KillRecorder(KillDuringSend):
    name = "kill-recorder"
    target = "beepnet-rec"
    told = "crash"


class KillClassifier(KillDuringSend):
    name = "kill-classifier"
    target = "beepnet-clf"
    told = "crash"


class KillSupervisor(KillDuringSend):
    """The server holds the send longer than the daemon lives: it may apply it after the
    sender died, so one duplicate is allowed."""

    name = "kill-supervisor"
    max_alerts = 2
    hang = 30.0

    def kill(self) -> None:
        kids = beepnet_children(self.proc.pid)
        self.proc.kill()
        self.proc.wait(10)
        if not wait_for(lambda: not any(alive(k) for k in kids.values()), 10):
            self.problems.append(f"children outlived the supervisor: {kids}")
        self.start()   # as systemd restarts it, with the same storage.dir


class MicMoves(Scenario):
    """The microphone vanishes, then comes back under the same name at another index."""

    name = "mic-moves"
    told = "mic"
    device = "vmicdev"

    def prepare(self) -> None:
        self.mic.name_devices(self.device)

    def args(self) -> list[str]:
        return [*super().args(), "--set", f"audio.device={self.device}"]

    def begin(self) -> None:
        self.mic.stop()

    def end(self) -> None:
        # Two devices appear before it, as a replug into another USB port can make it.
        self.mic.name_devices("usbhub_a", "usbhub_b", self.device)
        self.mic.start()

    def after_end(self) -> None:
        """Back: play a beep to it alone."""
        def back() -> bool:
            return any(re.search(OWNER_TOLD["mic_back"], t) for t in self.texts()) or \
                "microphone back" in self.log

        if not wait_for(back, 50, interval=0.2):
            self.problems.append("the microphone did not come back within 50 s")
            return
        time.sleep(1.0)
        self.mic.play(beep_sound(seed=2), rate=SR)

    def indexes(self) -> list[int]:
        """Device indexes the daemon captured from, in order (its "capturing from" lines)."""
        return [int(m) for m in re.findall(rf"capturing from {self.device} \(#(\d+)", self.log)]


SCENARIOS = [OutboxReadOnly, OutboxFull, TelegramGarbage, TelegramHangsUp, TelegramResets,
             TelegramStalls, ClockSteps, KillRecorder, KillClassifier, KillSupervisor, MicMoves]


# --------------------------------------------------------------------------- the run

def _mic_or_fail() -> None:
    reason = vmic_mod.available()
    if reason:
        pytest.fail(f"virtual microphone unavailable ({reason}): run `make test`")
    faketime.library()  # fails the suite when it is missing


def _in_threads(fns) -> None:
    threads = [threading.Thread(target=fn, daemon=True) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Scenario]:
    _mic_or_fail()
    root = tmp_path_factory.mktemp("faults")
    shared = vmic_mod.VirtualMic(rate=48000)
    own = vmic_mod.VirtualMic(rate=48000)
    scenarios: list[Scenario] = []
    try:
        shared.start()
        own.start()
        scenarios = [s(root, own if s is MicMoves else shared) for s in SCENARIOS]
        for s in scenarios:
            s.step(s.prepare)
        for s in scenarios:
            s.start()
        up = wait_for(lambda: all(s.listening() for s in scenarios), STARTUP_SECONDS, 0.2)
        assert up, "not listening: " + ", ".join(
            f"{s.name}:\n{s.log[-1500:]}" for s in scenarios if not s.listening())
        _run_faults(scenarios, shared)
        for s in scenarios:
            s.stop()
        _in_threads([s.wait for s in scenarios])
        yield {s.name: s for s in scenarios}
    finally:
        for s in scenarios:
            for p in s.procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(10)
            s.tg.stop()
            s.cleanup()
        shared.close()
        own.close()


def _run_faults(scenarios: list[Scenario], shared: vmic_mod.VirtualMic) -> None:
    clock = next(s for s in scenarios if isinstance(s, ClockSteps))
    clock.step(clock.step_forward)
    time.sleep(5.0)             # long enough for its watch and outbox to look at the clock
    clock.step(clock.step_back)
    for s in scenarios:
        s.step(s.begin)
    during = [threading.Thread(target=s.step, args=(s.during,), daemon=True)
              for s in scenarios]
    for t in during:
        t.start()
    started = time.monotonic()
    clock.beep_wall = time.time() + 2.0      # the beep sounds 2 s into the sound
    shared.play(beep_sound(), rate=SR)
    time.sleep(max(0.0, FAULT_SECONDS - (time.monotonic() - started)))
    for s in scenarios:
        s.step(s.end)
        s.faults_ended = time.monotonic()
    mic = next(s for s in scenarios if isinstance(s, MicMoves))
    mic.step(mic.after_end)
    wait_for(lambda: all(s.done() for s in scenarios), DELIVERY_SECONDS, 0.2)
    for t in during:
        t.join(30)
    time.sleep(SETTLE_SECONDS)


# --------------------------------------------------------------------------- the checks

def check(s: Scenario) -> None:
    """What holds for every fault."""
    assert not s.problems, s.problems
    alerts = s.beep_alerts()
    sent = s.sent()
    assert 1 <= len(alerts) <= s.max_alerts, \
        f"{len(alerts)} beep alert(s) with their clip; sent: {sent}\n{s.log[-3000:]}"
    assert s.running_at_end, f"the daemon exited on its own ({s.exit_status}):\n{s.log[-3000:]}"
    assert s.exit_status == 0, f"exit status {s.exit_status} after SIGTERM:\n{s.log[-3000:]}"
    assert "Traceback" not in s.log, s.log[-3000:]
    assert DEFAULT_TOKEN.split(":")[1] not in s.log
    if s.told:
        assert any(re.search(OWNER_TOLD[s.told], t) for t in s.texts()), \
            f"the owner was not told ({s.told}); sent: {sent}\n{s.log[-3000:]}"


def test_outbox_made_read_only_mid_run(runs):
    check(runs["outbox-read-only"])


def test_full_disk_during_an_outbox_write(runs):
    s = runs["outbox-full"]
    check(s)
    # The fault really hit: the beep's MP3 could not have fitted in the full outbox.
    (alert,) = s.beep_alerts()
    assert alert["audio"]["file_size"] > 16 * 1024


def test_telegram_answering_garbage(runs):
    s = runs["telegram-garbage"]
    check(s)
    assert any(r.method == "sendAudio" and r.status == 200 and r.response is None
               for r in s.tg.requests()), "the beep never got the garbage"


def test_telegram_closing_connections(runs):
    s = runs["telegram-hangs-up"]
    check(s)
    assert any(r.dropped and r.method == "sendAudio" for r in s.tg.requests())


def test_telegram_resetting_connections(runs):
    s = runs["telegram-resets"]
    check(s)
    assert any(r.dropped and r.method == "sendAudio" for r in s.tg.requests())


def test_telegram_stalling_for_a_minute(runs):
    s = runs["telegram-stalls"]
    check(s)
    stalled = [r for r in s.tg.requests("sendAudio") if r.dropped]
    assert stalled and s.faults_ended - stalled[0].time > 60, "no request stalled for 60 s"


def test_clock_stepped_forward_3_days_and_back_1_hour(runs):
    s = runs["clock-steps"]
    check(s)
    (alert,) = s.beep_alerts()
    hh, mm, ss = map(int, BEEP_CAPTION.search(alert["caption"]).groups()[1:])
    # The caption tells the daemon's own (stepped) wall time of the beep.
    want = time.localtime(s.beep_wall + s.offset)
    diff = (hh * 3600 + mm * 60 + ss) - (want.tm_hour * 3600 + want.tm_min * 60 + want.tm_sec)
    diff = (diff + 43200) % 86400 - 43200
    assert abs(diff) < 60, (alert["caption"], time.strftime("%H:%M:%S", want))
    for what, pattern in FALSE_NEWS.items():
        wrong = [t for t in s.texts() if re.search(pattern, t)]
        assert not wrong, f"{what}: {wrong}"
    assert not list((s.storage / "outbox").glob("*.json")), "left in the outbox"


def test_sigkill_of_the_recorder_during_a_send(runs):
    check(runs["kill-recorder"])


def test_sigkill_of_the_classifier_during_a_send(runs):
    check(runs["kill-classifier"])


def test_sigkill_of_the_supervisor_during_a_send(runs):
    s = runs["kill-supervisor"]
    check(s)
    assert len(s.procs) == 2 and s.procs[0].returncode == -signal.SIGKILL


def test_microphone_vanishes_and_comes_back_at_another_index(runs):
    s = runs["mic-moves"]
    check(s)
    assert any(re.search(OWNER_TOLD["mic_back"], t) for t in s.texts()), s.texts()
    indexes = s.indexes()
    assert len(indexes) >= 2 and indexes[0] != indexes[-1], indexes


# --------------------------------------------------------------------------- the fake's faults

def _post(tg: FakeTelegram, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(tg.host, tg.port, timeout=timeout)
    try:
        conn.request("POST", f"/bot{tg.token}/sendMessage", body="chat_id=12345&text=hi",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_fake_telegram_garbage_hangups_and_stalls():
    with FakeTelegram() as tg:
        tg.fail_always(200, body=HTML)
        assert _post(tg) == (200, HTML)
        tg.drop_always()
        with pytest.raises(http.client.RemoteDisconnected):
            _post(tg)
        tg.drop_always(reset=True)
        with pytest.raises(ConnectionResetError):
            _post(tg)
        tg.stall_always()
        with pytest.raises(socket.timeout):
            _post(tg, timeout=1.0)
        result: list = []
        t = threading.Thread(target=lambda: result.append(_catch(lambda: _post(tg, 10))))
        t.start()
        assert wait_for(lambda: len(tg.requests()) == 5, 5)
        time.sleep(0.3)
        assert t.is_alive()            # still no answer
        tg.recover()                   # ends the stall: hung up on, and without effect
        t.join(5)
        assert isinstance(result[0], http.client.RemoteDisconnected)
        assert tg.messages() == []
        assert _post(tg)[0] == 200 and len(tg.messages()) == 1


def _catch(fn):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - the test looks at which
        return e
