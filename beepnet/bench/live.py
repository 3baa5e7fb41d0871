"""The daemon as a user runs it: CPU, memory and beep-to-alert latency in real time.

`beepnet run` starts as a subprocess on a virtual microphone (``beepnet.testing.vmic``: the
real PyAudio records a PulseAudio null sink) with Telegram pointed at a fake Bot API server
(``beepnet.testing.fake_telegram``) through ``--set telegram.api_url``. Then about a minute of
washer noise with beeps, between stretches of quiet room, is played into the microphone in
real time, while:

- the supervisor, recorder and classifier (named ``beepnet-rec`` and ``beepnet-clf`` by
  prctl), and multiprocessing's resource tracker, are sampled every second: CPU % of one
  core over the steady part of a washer running without a beep (its first ``quiet_s``,
  after start-up and the first seconds of sound: what the daemon costs nearly all the
  time), and over the beep patterns that follow (alerts, MP3s, denser windows), RSS and PSS
  (``/proc/<pid>/smaps_rollup``) of each, and ``VmHWM`` (peak RSS) at the end;
- a reader of the microphone (``VirtualMic.listen``) timestamps when the played audio
  reaches recorders, so each beep's end is known on this process's monotonic clock, the
  same clock the fake server stamps requests with. The beeps come in patterns (one to five
  beeps, as machines signal their end) and an alert waits for its pattern to end: latency =
  time the server received ``sendAudio`` - time the pattern's last beep ended;
- each alert's MP3 is decoded and placed in the played signal (cross-correlation): the share
  of its pattern's beeps that it holds.

All daemons run at once, each with its own fake server: the default one (BeepNet on the
numpy runtime) and, to compare, BeepNet on the torch runtime, the tone detector, and the
default one with Home Assistant and every channel on (``CHANNELS``: MQTT to a real local
Mosquitto with a login, an Apprise ``json://`` channel and a heartbeat URL every 3 s, both
to a local HTTP sink; a paho client plays Home Assistant and counts the beep events). That
takes one minute of audio instead of four, and their load on each other (a few % of a core
each) is far below the noise of a shared machine. The channels daemon also says whether
each alert reached all three of Telegram, Apprise (with its MP3) and Home Assistant.

Their memory is another matter: PSS splits the interpreter's and the libraries' pages among
every process mapping them, so alongside the others a daemon's PSS reads lower than alone
(15-20 MB for the default one). Hence, once the alerts are in, the other daemons are stopped
and the first one (the default) is sampled alone for a few seconds: its PSS rows are what it
pays by itself, after the workload. The other daemons' PSS rows (the channels daemon's too)
are alongside figures (until the first of them is stopped), and say so. (Even alone, PSS
shares with the benchmark's own Python process and anything else running, so a busy machine
reads a few MB low; RSS and VmHWM do not depend on other processes.)
"""

from __future__ import annotations

import base64
import importlib.util
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from ..training import synth
from ..testing.procs import children, cmdline, comm, cpu_ticks, memory_kb, pss_kb
from .report import (
    CLASSIFIER_RSS_MB,
    CLIP_COVERAGE,
    DAEMON_CPU_PERCENT,
    LATENCY_MEDIAN_S,
    LATENCY_P95_S,
    RECORDER_RSS_MB,
    TOTAL_PSS_MB,
    TOTAL_RSS_MB,
    Row,
    Target,
    skipped_rows,
)

log = logging.getLogger(__name__)

SECTION = "live"
SR = SAMPLE_RATE
PROCESS_NAMES = {"supervisor": None, "recorder": "beepnet-rec", "classifier": "beepnet-clf"}
CHAT_ID = 4242
DAEMONS = {
    "beepnet-numpy": ("default daemon (BeepNet, numpy runtime)",
                      ("detector.kind=beepnet", "detector.runtime=numpy")),
    "beepnet-torch": ("BeepNet, torch runtime", ("detector.kind=beepnet",
                                                 "detector.runtime=torch")),
    "tone": ("tone detector", ("detector.kind=tone",)),
    "beepnet-numpy-ha": ("default daemon with Home Assistant and every channel on "
                         "(MQTT, Apprise, heartbeat)",
                         ("detector.kind=beepnet", "detector.runtime=numpy")),
}
"""Daemon name -> (how its rows name it, its ``--set`` detector settings). The first is the
built-in default (tests/test_bench.py checks that against the config): its settings are
spelled out all the same, so that its rows measure what they are labelled with."""
CHANNELS = "beepnet-numpy-ha"
"""The daemon that also talks to Home Assistant over MQTT, an Apprise channel and a
heartbeat URL (`Channels`); the rest of its settings are the default daemon's."""
DEVICE_ID = "benchpi_washer"
"""Its ``mqtt.device_id``: its topics are beepnet/<DEVICE_ID>/..."""
HEARTBEAT_MINUTES = 0.05
"""Its heartbeat's period (3 s, the shortest allowed): far more calls than a real one."""
EVERY_CHANNEL = Target(">=", 100.0)
"""Share of the channels daemon's alerts that reached Telegram, the Apprise channel (with
the same MP3) and Home Assistant (a beep event): all of them."""
SEPARATION_S = 7.0
"""From the washer's start to a pattern, from a pattern's end to the next one, and from the
last to the washer's end: so long that the windows hearing one sound (3 s each, 1.5 s
apart) never touch those hearing the next."""
MAX_BEEP_S = 0.6
MAX_GAP_S = 0.6
MAX_BEEPS = 5
MAX_PATTERN_S = MAX_BEEPS * MAX_BEEP_S + (MAX_BEEPS - 1) * MAX_GAP_S
ROOM_RMS = 0.0005
"""Room tone around the washer: about -66 dBFS, below the default -50 dBFS gate."""
ONSET_LEVEL = 0.0002
"""Full-scale amplitude that marks the played audio's first sample in both copies (the
microphone gives exact zeros before it; the room tone's first samples cross it at once)."""


@dataclass(frozen=True)
class LiveSettings:
    seconds: float = 108.0
    """Washer with beep patterns played into the microphone (between room tone)."""
    quiet_s: float = 40.0
    """Before them, washer without a beep: the CPU row's stretch (after ``settle_s``)."""
    lead_s: float = 2.0
    """Room tone before the washer."""
    beeps: int = 8
    settle_s: float = 10.0
    """Start of the washer left out of the CPU figure (the first windows, the first alert's
    MP3 encoder start-up)."""
    tail_s: float = 8.0
    """Room tone after the washer, while the last alerts go out."""
    alone_s: float = 3.0
    """Then the first daemon runs alone for this long, for its PSS (see the module's doc)."""
    detectors: tuple[str, ...] = tuple(DAEMONS)
    """Names from DAEMONS; the first is the one sampled alone."""
    seed: int = 31


QUICK = LiveSettings(seconds=20.0, quiet_s=8.0, beeps=1, settle_s=4.0, tail_s=6.0)


def measures(daemon: str) -> dict[str, tuple[str, Target | None]]:
    """The rows one daemon gives (skipped ones too): key -> (measure, target)."""
    name = DAEMONS[daemon][0]
    channels = ({"channels": (f"alerts on every channel (Telegram, Apprise, MQTT), {name}",
                              EVERY_CHANNEL)} if daemon == CHANNELS else {})
    return {"cpu": (f"daemon CPU, % of one core, washer running, no beep, {name}",
                    DAEMON_CPU_PERCENT),
            "pss": (f"daemon PSS, all processes, {name}", TOTAL_PSS_MB),
            "classifier_pss": (f"classifier PSS, {name}", None),
            "rss": (f"daemon peak RSS, all processes, {name}", TOTAL_RSS_MB),
            "classifier_rss": (f"classifier peak RSS, {name}", CLASSIFIER_RSS_MB),
            "recorder": (f"recorder peak RSS, {name}", RECORDER_RSS_MB),
            "median": (f"pattern end to alert request, median, {name}", LATENCY_MEDIAN_S),
            "p95": (f"pattern end to alert request, p95, {name}", LATENCY_P95_S),
            "clip": (f"share of the beep pattern in the alert's clip, lowest, {name}",
                     CLIP_COVERAGE),
            **channels}


Beeps = list[tuple[float, float]]


def signal_with_beeps(s: LiveSettings) -> tuple[np.ndarray, list[Beeps], float]:
    """Room tone, then a running washer (``quiet_s`` without a beep, then ``seconds`` with
    beep patterns), then room tone again for ``tail_s``; returns the audio, the (start, end)
    of each beep of each pattern and the washer's start, all in seconds from the signal's
    first sample.

    A pattern is one to five beeps of one pitch, 0.2-0.6 s each, 0.2-0.6 s apart. The room
    tone sits below the default gate, like a quiet room, and keeps the microphone from ever
    jumping between digital silence and a washer (no real microphone does that). Patterns
    are SEPARATION_S from each other and from the washer's start and end: the windows
    hearing one never touch those hearing another sound, so each is its own event and alert
    (with the cooldown off), whatever a detector makes of the rest.
    """
    rng = np.random.default_rng(s.seed)
    x = synth.room(rng, s.lead_s + s.quiet_s + s.seconds + s.tail_s, level=ROOM_RMS)
    washer = synth.washer(rng, s.quiet_s + s.seconds, phase="wash")
    washer *= synth.envelope(len(washer), SR, 1.0, 1.0)  # the machine fades in and out
    # Pattern starts evenly spread from SEPARATION_S after the start; the last one ends
    # SEPARATION_S before the end at the latest.
    slot = SEPARATION_S + MAX_PATTERN_S
    if s.beeps * slot + SEPARATION_S > s.seconds:
        raise ValueError(f"{s.seconds:.0f} s of washer is too short for {s.beeps} patterns")
    step = (s.seconds - 2 * SEPARATION_S - MAX_PATTERN_S) / max(1, s.beeps - 1)
    patterns = []
    for k in range(s.beeps):
        at = round((s.quiet_s + SEPARATION_S + k * step) * SR) / SR
        freq, snr = float(rng.uniform(1800, 4200)), float(rng.uniform(6, 15))
        beeps = []
        for _ in range(int(rng.integers(1, MAX_BEEPS + 1))):
            length = round(float(rng.uniform(0.2, MAX_BEEP_S)) * SR) / SR
            washer = synth.mix(washer, synth.beep(freq, length), at, snr)
            beeps.append((s.lead_s + at, s.lead_s + at + length))
            at += length + round(float(rng.uniform(0.2, MAX_GAP_S)) * SR) / SR
        patterns.append(beeps)
    start = int(s.lead_s * SR)
    x[start:start + len(washer)] += washer
    return np.clip(x, -1, 1).astype(np.float32), patterns, s.lead_s


def clip_share(mp3: bytes, played: np.ndarray, beeps: Beeps) -> float | None:
    """Share of the beeps' time (seconds into ``played``, at SR) that the alert's MP3 holds,
    placed where it fits the played signal best (cross-correlation around the beeps); None
    when it cannot be decoded."""
    import io

    import soundfile as sf

    try:
        clip, rate = sf.read(io.BytesIO(mp3), dtype="float32")
    except (RuntimeError, sf.LibsndfileError):
        return None
    if clip.ndim > 1:
        clip = clip.mean(axis=1)
    if rate != SR:
        from ..audio.resample import resample

        clip = resample(clip, rate, SR)
    # Where it can be: from 25 s before the first beep to 25 s after the last.
    lo = max(0, int((beeps[0][0] - 25.0) * SR))
    ref = played[lo: int((beeps[-1][1] + 25.0) * SR)]
    if len(clip) == 0 or len(ref) <= len(clip):
        return 0.0
    n = 1 << int(np.ceil(np.log2(len(ref) + len(clip))))
    corr = np.fft.irfft(np.fft.rfft(ref, n) * np.conj(np.fft.rfft(clip, n)), n)
    at = (lo + int(np.argmax(corr[: len(ref) - len(clip) + 1]))) / SR
    held = sum(max(0.0, min(e, at + len(clip) / SR) - max(b, at)) for b, e in beeps)
    return held / sum(e - b for b, e in beeps)


@dataclass
class Sample:
    """One look at a daemon's processes; a process that could not be read is left out."""

    t: float
    ticks: dict[str, int | None]
    rss_kb: dict[str, int]
    pss_kb: dict[str, int]


class Sampler:
    """Samples CPU ticks, RSS and PSS of a daemon's processes once a second, in a thread."""

    def __init__(self, pids: dict[str, int], interval: float = 1.0):
        self.pids = pids
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()

    def _sample(self) -> None:
        sample = Sample(time.monotonic(), {}, {}, {})
        for name, pid in self.pids.items():
            sample.ticks[name] = cpu_ticks(pid)
            rss, pss = memory_kb(pid).get("VmRSS"), pss_kb(pid)
            if rss:
                sample.rss_kb[name] = rss
            if pss:
                sample.pss_kb[name] = pss
        self.samples.append(sample)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def cpu_percent(self, start: float, end: float) -> dict[str, float]:
        """CPU % of one core per process between the samples nearest inside [start, end]."""
        inside = [s for s in self.samples if start <= s.t <= end]
        if len(inside) < 2:
            return {}
        a, b = inside[0], inside[-1]
        hz = os.sysconf("SC_CLK_TCK")
        return {name: 100.0 * (b.ticks[name] - a.ticks[name]) / hz / (b.t - a.t)
                for name in self.pids
                if a.ticks.get(name) is not None and b.ticks.get(name) is not None}

    def memory_mb(self, kind: str, start: float = -math.inf, end: float = math.inf
                  ) -> tuple[dict[str, float], float | None]:
        """Largest RSS or PSS (``kind`` "rss" or "pss") of each process among the samples
        in [start, end], and the largest sum over all processes in one sample (only
        samples that read every process: one left out would make the sum look small)."""
        per: dict[str, float] = {}
        total = None
        for s in self.samples:
            if not start <= s.t <= end:
                continue
            kb = s.rss_kb if kind == "rss" else s.pss_kb
            for name, v in kb.items():
                per[name] = max(per.get(name, 0.0), v / 1024)
            if len(kb) == len(self.pids):
                total = max(total or 0.0, sum(kb.values()) / 1024)
        return per, total


# ------------------------------------------------------------------- playback clock

class PlaybackClock:
    """When the played audio reached the microphone, on time.monotonic().

    Reads the microphone's raw samples as they are rendered. The time of stream sample 0 is
    estimated from every block read as (arrival time - samples so far / rate), keeping the
    earliest: a read delayed by a busy CPU only ever looks later. The played signal is found
    by its first sample at or above ONSET_LEVEL. A sample's time is thus the earliest moment
    any recorder could have had it; latencies measured from it err on the long side, by at
    most the sink's 100 ms block.
    """

    def __init__(self, mic):
        self.rate, self.channels = mic.rate, mic.channels
        self._proc = mic.listen("bench-clock")
        self._zero = float("inf")
        self._samples = 0
        self._armed = threading.Event()
        self.onset_sample: int | None = None
        self._thread = threading.Thread(target=self._read, name="bench-clock", daemon=True)
        self._thread.start()

    def arm(self) -> None:
        """Look for the onset from now on (the microphone is silent until the playback)."""
        self._armed.set()

    def _read(self) -> None:
        fd = self._proc.stdout.fileno()
        frame = 2 * self.channels
        rest = b""
        level = int(ONSET_LEVEL * 32768)
        while True:
            data = os.read(fd, 1 << 14)
            now = time.monotonic()
            if not data:
                return
            data = rest + data
            usable = len(data) - len(data) % frame
            block, rest = data[:usable], data[usable:]
            x = np.frombuffer(block, np.int16)[:: self.channels]
            if self._armed.is_set() and self.onset_sample is None:
                loud = np.flatnonzero(np.abs(x.astype(np.int32)) >= level)
                if len(loud):
                    self.onset_sample = self._samples + int(loud[0])
            self._samples += len(x)
            self._zero = min(self._zero, now - self._samples / self.rate)

    def onset_time(self) -> float | None:
        """Monotonic time at which the played signal's onset reached the microphone."""
        if self.onset_sample is None:
            return None
        return self._zero + self.onset_sample / self.rate

    def close(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        self._thread.join(5)
        self._proc.stdout.close()


# ------------------------------------------------------------------ the other channels

class Channels:
    """What the channels daemon talks to besides its fake Bot API server: a real Mosquitto
    (with a login) for Home Assistant, with a paho client subscribed to the daemon's topics
    in Home Assistant's place, and one local HTTP sink for both the Apprise ``json://``
    channel (its posts carry the alert's MP3 in base64) and the heartbeat URL. Entered on
    ``stack``, which stops them all, whatever happens."""

    def __init__(self, stack: ExitStack):
        from ..testing.httpsink import HttpSink
        from ..testing.mosquitto import Mosquitto, Peer

        self.broker = stack.enter_context(Mosquitto())
        self.sink = stack.enter_context(HttpSink())
        self.ha = stack.enter_context(Peer(self.broker))
        self.ha.subscribe(f"beepnet/{DEVICE_ID}/#")
        # The sink stamps requests with time.time(); alerts are placed on time.monotonic().
        self._wall_minus_mono = time.time() - time.monotonic()

    @staticmethod
    def unavailable() -> str | None:
        """None when the channels daemon can run here, else why not."""
        from ..testing import mosquitto

        reason = mosquitto.available()
        if reason:
            return reason
        if importlib.util.find_spec("apprise") is None:
            return "Apprise is not installed (pip install apprise)"
        return None

    def env(self) -> dict[str, str]:
        """The daemon's secrets, in the environment as a user sets them."""
        return {"BEEPNET_MQTT_PASSWORD": self.broker.password,
                "BEEPNET_APPRISE_URLS": f"json://127.0.0.1:{self.sink.port}/hook",
                "BEEPNET_HEARTBEAT_URL": f"{self.sink.url}/ping/x"}

    def settings(self) -> tuple[str, ...]:
        return (f"mqtt.host={self.broker.host}", f"mqtt.port={self.broker.port}",
                f"mqtt.username={self.broker.username}", f"mqtt.device_id={DEVICE_ID}",
                f"notify.heartbeat_minutes={HEARTBEAT_MINUTES}")

    def online(self) -> bool:
        """The daemon told Home Assistant it is online (its link to the broker is up)."""
        last = self.ha.last(f"beepnet/{DEVICE_ID}/status")
        return last is not None and last.payload == "online"

    def beeps(self) -> list[float]:
        """When each beep event reached Home Assistant (time.monotonic())."""
        return [m.at for m in self.ha.received(lambda m: m.topic == f"beepnet/{DEVICE_ID}/beep")]

    def posts(self) -> list[tuple[float, list[bytes]]]:
        """Each Apprise post answered 2xx: when it arrived (time.monotonic()) and its
        attachments' contents (an alert's MP3; none for the other messages)."""
        out = []
        for r in self.sink.received(lambda r: r.path == "/hook" and r.status < 400):
            try:
                files = [base64.b64decode(a.get("base64") or "")
                         for a in r.json().get("attachments") or ()]
            except (ValueError, AttributeError, TypeError):
                files = []
            out.append((r.at - self._wall_minus_mono, files))
        return out

    def pings(self) -> list[float]:
        """When each heartbeat call arrived (time.monotonic())."""
        return [r.at - self._wall_minus_mono
                for r in self.sink.received(lambda r: r.path.startswith("/ping/"))]


def channel_check(spans: list[tuple[float, float]], mp3s: list[bytes | None],
                  posts: list[tuple[float, list[bytes]]], beeps: list[float]) -> dict:
    """Which channels each pattern's alert reached. ``spans``: (start, end) of each pattern;
    ``mp3s``: the MP3 its Telegram alert carried (b"" for an alert without one, None for
    no alert); ``posts``: the Apprise posts (time, attachments); ``beeps``: the MQTT beep
    events' times. A pattern's alert is whatever arrived from its start to the next one's
    (as in `latencies`). Apprise counts when a post there carries the very MP3 Telegram got
    (not just any attachment); Home Assistant, when a beep event arrived there."""
    with_clip = [(t, files) for t, files in posts if files]
    per = []
    for k, (start, _end) in enumerate(spans):
        until = spans[k + 1][0] if k + 1 < len(spans) else math.inf
        mp3 = mp3s[k]
        clips = [f for t, files in with_clip if start <= t < until for f in files]
        per.append({"telegram": mp3 is not None,
                    "apprise": bool(mp3) and mp3 in clips,
                    "apprise_any_clip": bool(clips),
                    "mqtt": any(start <= t < until for t in beeps)})
    first = spans[0][0] if spans else math.inf
    return {"patterns": per,
            "alerted": sum(p["telegram"] or p["apprise_any_clip"] or p["mqtt"] for p in per),
            "every_channel": sum(p["telegram"] and p["apprise"] and p["mqtt"] for p in per),
            "telegram": sum(p["telegram"] for p in per),
            "apprise": sum(p["apprise"] for p in per),
            "mqtt": sum(p["mqtt"] for p in per),
            # before the first pattern: false alerts on the washer alone
            "apprise_clips_before": sum(t < first for t, _ in with_clip),
            "mqtt_before": sum(t < first for t in beeps)}


# ------------------------------------------------------------------------ the daemon

class Daemon:
    """One `beepnet run` with its own fake Bot API server and storage directory."""

    def __init__(self, detector: str, work: Path, mic_env: dict[str, str],
                 channels: Channels | None = None):
        """``channels``: what the CHANNELS daemon talks to (None for the others)."""
        from ..testing.fake_telegram import FakeTelegram

        self.detector = detector
        # A token per daemon, in Telegram's shape (bot id, colon, 35 characters).
        self.token = f"{100000000 + zlib.crc32(detector.encode()) % 10**8}:{'BenchToken' * 4}"[:45]
        self.tg = FakeTelegram(token=self.token, chats={CHAT_ID}).start()
        self.dir = work / f"live-{detector}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "daemon.log"
        # The built-in defaults, as a new user has them: no BEEPNET_CONFIG, and none of the
        # secrets that turn channels on (BEEPNET_APPRISE_URLS ...) from this shell.
        env = {k: v for k, v in mic_env.items() if not k.startswith("BEEPNET_")}
        env.update(BEEPNET_TELEGRAM_TOKEN=self.token, BEEPNET_TELEGRAM_CHAT_ID=str(CHAT_ID))
        settings = DAEMONS[detector][1]
        if channels is not None:
            env.update(channels.env())
            settings = (*settings, *channels.settings())
        self.channels = channels
        with open(self.log_path, "w") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "beepnet", "run",
                 "--set", f"storage.dir={self.dir / 'state'}",
                 "--set", f"telegram.api_url={self.tg.url}",
                 *[arg for setting in settings for arg in ("--set", setting)],
                 # Every beep of the minute should alert: without this only the first would.
                 "--set", "notify.cooldown_minutes=0"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env)
        self.pids: dict[str, int] = {}

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, timeout: float) -> None:
        """Until both children run and the "listening" message reached the server."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"beepnet run ({self.detector}) exited with "
                                   f"{self.proc.returncode}:\n{self.log_tail()}")
            kids = {comm(c): c for c in children(self.proc.pid)}
            if (set(PROCESS_NAMES.values()) - {None} <= set(kids)
                    and any("listening" in r.fields.get("text", "")
                            for r in self.tg.requests("sendMessage"))):
                self.pids = {"supervisor": self.proc.pid,
                             **{name: kids[comm] for name, comm in PROCESS_NAMES.items()
                                if comm}}
                # multiprocessing's resource tracker (a bare interpreter that unlinks the
                # queues' semaphores should the daemon die) is one of its processes too.
                tracker = [c for c in kids.values() if "resource_tracker" in cmdline(c)]
                if tracker:
                    self.pids["resource tracker"] = tracker[0]
                return
            time.sleep(0.2)
        raise RuntimeError(f"beepnet run ({self.detector}) not listening after {timeout:.0f} s:"
                           f"\n{self.log_tail()}")

    def peak_rss_mb(self) -> dict[str, float]:
        return {name: memory_kb(pid).get("VmHWM", 0) / 1024 for name, pid in self.pids.items()}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                log.warning("beepnet run (%s) ignored SIGTERM for 20 s; killing it",
                            self.detector)
                self.proc.kill()
                self.proc.wait(5)
        self.tg.stop()


def latencies(spans: list[tuple[float, float]], requests: list[float]
              ) -> tuple[list[float], list[int | None], int]:
    """Latency of each pattern's alert request (the first one after its start and before
    the next pattern's start: patterns are SEPARATION_S apart, so a missed one never takes
    the next one's alert) from its end; which request that was (None: no alert); and the
    number of requests that belong to no pattern."""
    used: set[int] = set()
    out, which = [], []
    for k, (start, end) in enumerate(spans):
        until = spans[k + 1][0] if k + 1 < len(spans) else math.inf
        hit = next((i for i, t in enumerate(requests)
                    if i not in used and start <= t < until), None)
        which.append(hit)
        if hit is not None:
            used.add(hit)
            out.append(requests[hit] - end)
    return out, which, len(requests) - len(used)


def run(settings: LiveSettings, work: Path) -> tuple[list[Row], dict]:
    from ..testing import vmic

    reason = vmic.available()
    if reason:
        return [r for d in settings.detectors
                for r in skipped_rows(SECTION, list(measures(d).values()), reason)], \
            {"skipped": reason}
    details: dict = {"settings": asdict(settings)}
    rows: dict[str, list[Row]] = {}
    running = list(settings.detectors)
    with ExitStack() as stack:  # the broker, the sink and Home Assistant's client, at the end
        channels = None
        if CHANNELS in running:
            why = Channels.unavailable()
            if why is None:
                try:
                    channels = Channels(stack)
                except (OSError, RuntimeError, AssertionError) as e:  # MosquittoError too
                    why = f"the MQTT broker or the HTTP sink did not start: {e}"[:300]
            if why:
                log.warning("live: %s skipped: %s", CHANNELS, why)
                rows[CHANNELS] = skipped_rows(SECTION, list(measures(CHANNELS).values()), why)
                details[CHANNELS] = {"skipped": why}
                running.remove(CHANNELS)
        if running:
            rows.update(_run_daemons(settings, running, channels, work, details))
    return [r for d in settings.detectors for r in rows.get(d, [])], details


def _run_daemons(settings: LiveSettings, detectors: list[str], channels: Channels | None,
                 work: Path, details: dict) -> dict[str, list[Row]]:
    """The daemons named ``detectors`` at once, the first one alone at the end: their rows
    by name; ``details`` gets theirs. ``channels``: what the CHANNELS daemon talks to."""
    from ..testing import vmic

    audio, patterns, washer_at = signal_with_beeps(settings)
    details["patterns"] = patterns
    daemons: list[Daemon] = []
    with vmic.VirtualMic(rate=48000) as mic:
        try:
            for det in detectors:
                daemons.append(Daemon(det, work, mic.env,
                                      channels if det == CHANNELS else None))
            for d in daemons:
                d.wait_ready(60)
            if channels is not None:
                # Its link to the broker is up before the washer starts (a beep event
                # queued while it connects would arrive late; it should not have to).
                deadline = time.monotonic() + 20.0
                while not channels.online() and time.monotonic() < deadline:
                    time.sleep(0.2)
                details.setdefault(CHANNELS, {})["mqtt_online_before_playback"] = \
                    channels.online()
            samplers = {d.detector: Sampler(d.pids).start() for d in daemons}
            clock = PlaybackClock(mic)
            try:
                time.sleep(1.0)  # the clock reader's first blocks: silence
                clock.arm()
                log.info("live: playing %.0f s (%.0f s of washer, %d beep patterns in the "
                         "last %.0f s) into the virtual microphone", len(audio) / SR,
                         settings.quiet_s + settings.seconds, len(patterns), settings.seconds)
                t_play = time.monotonic()
                mic.play(audio, rate=SR)  # returns once the tail has played too
                want = len(patterns)
                deadline = time.monotonic() + 3.0  # the tail's grace, if it was not enough
                while time.monotonic() < deadline and (
                        any(len(d.tg.requests("sendAudio")) < want for d in daemons)
                        or (channels is not None and (
                            len(channels.beeps()) < want
                            or sum(bool(f) for _, f in channels.posts()) < want))):
                    time.sleep(0.2)
                onset = clock.onset_time()
            finally:
                clock.close()
            # The first daemon alone, for PSS that is not split with the other daemons.
            solo, others = daemons[0], daemons[1:]
            peaks: dict[str, dict[str, float]] = {}
            t_stopping = time.monotonic()
            for d in others:
                samplers[d.detector].stop()
                peaks[d.detector] = d.peak_rss_mb()
                d.stop()
            t_alone = time.monotonic()
            if others:
                log.info("live: %s alone for %.0f s", solo.detector, settings.alone_s)
                time.sleep(settings.alone_s)
            samplers[solo.detector].stop()
            peaks[solo.detector] = solo.peak_rss_mb()
        finally:
            for d in daemons:
                d.stop()
    if onset is None:
        raise RuntimeError("the played audio never reached the microphone reader")
    # Sample index of the onset in the played signal, at its own rate.
    first = int(np.flatnonzero(np.abs(audio) >= ONSET_LEVEL)[0])
    t0 = onset - first / SR
    details["playback_start_delay_s"] = t0 - t_play
    # When the other daemons were being stopped, and from when the first one ran alone,
    # for the PSS series below (seconds into the played signal).
    details["others_stopping_at_s"] = t_stopping - t0
    details["alone_at_s"] = t_alone - t0
    # Alongside: until the first of the others was stopped (later samples read more, as
    # each daemon that stops leaves its shared pages to those still running).
    _, solo_alongside = samplers[solo.detector].memory_mb("pss", end=t_stopping)
    _, solo_alone = samplers[solo.detector].memory_mb("pss", start=t_alone)
    spans = [(t0 + p[0][0], t0 + p[-1][1]) for p in patterns]
    out: dict[str, list[Row]] = {}
    for d in daemons:
        # Steady part: from settle_s after the washer starts until the first pattern's
        # stretch; then the patterns' stretch, for the details.
        sampler = samplers[d.detector]
        beeps_at = t0 + washer_at + settings.quiet_s
        cpu = sampler.cpu_percent(t0 + washer_at + settings.settle_s, beeps_at)
        cpu_beeps = sampler.cpu_percent(beeps_at, beeps_at + settings.seconds)
        peak = peaks[d.detector]
        pss, pss_total = sampler.memory_mb("pss", end=math.inf if d is solo else t_stopping)
        rss, rss_total = sampler.memory_mb("rss")
        sent = d.tg.requests("sendAudio")
        reqs = [r.time for r in sent]
        lat, which, false = latencies(spans, reqs)
        shares = [clip_share(sent[i].files["audio"][2], audio, p) if "audio" in sent[i].files
                  else 0.0 for p, i in zip(patterns, which) if i is not None]
        shares = [0.0 if x is None else x for x in shares]
        details.setdefault(d.detector, {}).update({
            "cpu_percent": cpu, "cpu_percent_beep_patterns": cpu_beeps,
            "peak_rss_mb": peak,
            "max_sampled_rss_mb": rss, "max_sampled_rss_total_mb": rss_total,
            "max_pss_mb": pss, "max_pss_total_mb": pss_total,
            # the first daemon's PSS alongside the others and alone
            **({"max_pss_total_alongside_mb": solo_alongside,
                "max_pss_total_alone_mb": solo_alone}
               if d is solo and others else {}),
            "latencies_s": lat, "false_alerts": false,
            "clip_shares": shares,
            # seconds into the played signal, to compare with "beeps"
            "alerts_at_s": [round(t - t0, 3) for t in reqs],
            "alerts": len(reqs), "pids": d.pids,
            # the sum of every process's PSS, each second (samples that read them all)
            "pss_total_mb_series": [[round(x.t - t0, 1), round(sum(x.pss_kb.values()) / 1024, 1)]
                                    for x in sampler.samples
                                    if len(x.pss_kb) == len(sampler.pids)]})
        per = ", ".join(f"{k} {v:.1f}%" for k, v in cpu.items())
        if cpu_beeps:
            per += (f"; {sum(cpu_beeps.values()):.1f}% over the {len(patterns)} beep patterns "
                    "that follow (alerts, MP3s, denser windows)")
        alerted = f"{len(lat)} of {len(patterns)} beep patterns alerted" + (
            f", {false} other alerts" if false else "")
        if not others:
            where = "alone"
        elif solo_alone is None or solo_alongside is None:
            where = ""  # not read in one of the phases (a process gone): nothing to compare
        elif d is solo:
            where = f"alone after the run; {solo_alongside:.0f} alongside the other daemons"
        else:
            where = (f"alongside the other daemons, which lowers it: {solo.detector} read "
                     f"{solo_alongside:.0f} alongside, {solo_alone:.0f} alone")
        m = measures(d.detector)
        out[d.detector] = [
            Row(SECTION, m["cpu"][0], sum(cpu.values()) if cpu else None, "%", m["cpu"][1],
                fmt=".1f", note=per),
            Row(SECTION, m["pss"][0], pss_total, "MB", m["pss"][1], fmt=".0f",
                note="; ".join(x for x in (_mb(pss), where) if x)),
            Row(SECTION, m["classifier_pss"][0], pss.get("classifier"), "MB",
                m["classifier_pss"][1], fmt=".0f"),
            Row(SECTION, m["rss"][0], sum(peak.values()), "MB", m["rss"][1], fmt=".0f",
                note=_mb(peak)),
            Row(SECTION, m["classifier_rss"][0], peak.get("classifier"), "MB",
                m["classifier_rss"][1], fmt=".0f"),
            Row(SECTION, m["recorder"][0], peak.get("recorder"), "MB", m["recorder"][1],
                fmt=".0f"),
            Row(SECTION, m["median"][0], float(np.median(lat)) if lat else None, "s",
                m["median"][1], fmt=".2f", note=alerted),
            Row(SECTION, m["p95"][0], float(np.percentile(lat, 95)) if lat else None, "s",
                m["p95"][1], fmt=".2f"),
            Row(SECTION, m["clip"][0], min(shares) if shares else None, "", m["clip"][1],
                fmt=".2f", note=(f"mean {np.mean(shares):.2f} over {len(shares)} alerts; "
                                 "MP3 decoded, placed by cross-correlation" if shares else "")),
        ]
        if d.channels is not None:
            out[d.detector].append(_channel_row(d, m["channels"], spans, which, sent, t0,
                                                details[d.detector]))
    return out


def _channel_row(d: Daemon, measure: tuple[str, Target | None],
                 spans: list[tuple[float, float]], which: list[int | None], sent: list,
                 t0: float, detail: dict) -> Row:
    """The channels daemon's check: each alert reached Telegram, the Apprise channel (the
    same MP3) and Home Assistant (a beep event); the heartbeat's calls in the note."""
    ch = d.channels
    mp3s = [None if i is None else sent[i].files.get("audio", (None, None, b""))[2]
            for i in which]
    check = channel_check(spans, mp3s, ch.posts(), ch.beeps())
    pings = ch.pings()
    gaps = np.diff(pings)
    detail.update({"channels": check,
                   "mqtt_beep_events_at_s": [round(t - t0, 3) for t in ch.beeps()],
                   "apprise_posts_at_s": [[round(t - t0, 3), len(f)] for t, f in ch.posts()],
                   "heartbeat_calls": len(pings),
                   "heartbeat_interval_s": [round(float(g), 2) for g in gaps]})
    n = check["alerted"]
    before = check["apprise_clips_before"] + check["mqtt_before"]
    note = (f"{check['every_channel']} of {n} alerts on all three: Telegram "
            f"{check['telegram']}, Apprise {check['apprise']} with Telegram's MP3, MQTT beep "
            f"events {check['mqtt']}"
            + (f"; {before} Apprise clips or beep events before the first pattern"
               if before else "")
            + (f"; heartbeat called {len(pings)} times, every {np.median(gaps):.1f} s "
               f"(median; {HEARTBEAT_MINUTES * 60:g} s set)" if len(gaps)
               else f"; heartbeat called {len(pings)} times"))
    return Row(SECTION, measure[0], 100.0 * check["every_channel"] / n if n else None, "%",
               measure[1], fmt=".0f", note=note)


def _mb(per: dict[str, float]) -> str:
    """A figure per process, in MB: "supervisor 60, recorder 54, classifier 43"."""
    return ", ".join(f"{k} {v:.0f}" for k, v in per.items())
