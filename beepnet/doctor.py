"""`beepnet doctor`: one line per check, and a fix for every failure.

Checks what a new install (or a silent Pi) most often gets wrong: the microphone and its
level, the detector, LAME, Telegram, the MQTT broker, the other channels (Apprise), the
heartbeat URL, free disk, and the service. ``--send-test`` also sends a test message through
every channel and calls the heartbeat URL once.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .audio import SAMPLE_RATE
from .config import Config, describe

MIC_SECONDS = 3.0
MIN_FREE_MB = 200.0


@dataclass
class Check:
    name: str
    ok: bool | None
    """True passed, False failed, None skipped (not applicable here)."""
    detail: str
    fix: str = ""


def check_config(cfg: Config, path: str | None) -> Check:
    # The file load() actually read, also when none was named (XDG, /etc) or it was skipped.
    return Check("config", True, f"valid ({describe(cfg)}); storage "
                 f"{cfg.storage.path}, detector {cfg.detector.kind}")


def check_microphone(cfg: Config, seconds: float = MIC_SECONDS) -> Check:
    from .audio.gate import frame_levels
    from .audio.resample import Resampler
    from .audio.sources import MicSource, SourceError

    src = MicSource(cfg.audio.device, cfg.audio.block_ms)
    try:
        src.open()
        rs = Resampler(src.rate)
        parts, end = [], time.monotonic() + seconds
        for block in src.blocks():
            parts.append(rs.process(block))
            if time.monotonic() >= end:
                break
    except SourceError as e:
        busy = "busy" in str(e).lower()
        return Check("microphone", False, str(e),
                     "stop the service while testing (sudo systemctl stop beepnet)" if busy else
                     "plug the USB microphone in; `arecord -l` lists cards, `beepnet devices` "
                     "what beepnet sees; set audio.device to its name or index")
    finally:
        src.close()
    audio = np.concatenate(parts)
    levels = frame_levels(audio, int(cfg.audio.gate_frame_ms * 16))
    peak_sample = float(np.max(np.abs(audio))) if len(audio) else 0.0
    peak, median = float(levels.max()), float(np.median(levels))
    detail = (f"{src.description}: loudest frame {peak:.0f} dBFS, typical {median:.0f} dBFS "
              f"over {seconds:g} s (gate {cfg.audio.gate_dbfs:g} dBFS)")
    if peak_sample >= 0.999:
        return Check("microphone", False, detail + "; clipping",
                     "lower the capture gain (alsamixer, F4 for capture) until loud sounds stay "
                     "below -3 dBFS")
    if peak < -90:
        return Check("microphone", False, detail + "; digital silence",
                     "the device delivers zeros: unmute its capture channel in alsamixer")
    if median >= cfg.audio.gate_dbfs:
        return Check("microphone", True, detail + "; the room is above the gate, so every "
                     "chunk is analysed (fine, but costs CPU: raise audio.gate_dbfs to save it)")
    return Check("microphone", True, detail + " (make a sound: it should rise above the gate)")


def check_detector(cfg: Config) -> Check:
    from .training import synth
    from .detectors import load_detector

    try:
        det = load_detector(cfg.detector)
    except Exception as e:  # noqa: BLE001 - any load failure is the finding
        return Check("detector", False, f"cannot load {cfg.detector.kind}: {e}",
                     "check detector.kind and detector.model")
    rng = np.random.default_rng(0)
    noise = synth.washer(rng, 3.0)
    beep = synth.mix(noise, synth.beep(2900.0, 0.5), 1.0, 10.0)
    t = time.perf_counter()
    hit = det.score(beep).score
    ms = (time.perf_counter() - t) * 1000
    miss = det.score(noise).score
    ok = hit >= det.threshold > miss
    return Check("detector", ok, f"{det.describe()}: generated beep {hit:.2f}, washer alone "
                 f"{miss:.2f} (threshold {det.threshold:.2f}), {ms:.1f} ms per chunk",
                 "" if ok else "the detector misjudges a plain beep: check detector.threshold")


def check_lame() -> Check:
    import io

    import soundfile as sf

    from .notify.mp3 import encode_mp3

    try:
        t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
        tone = (0.3 * np.sin(2 * np.pi * 2900 * t)).astype(np.float32)
        data = encode_mp3(tone)
        back, rate = sf.read(io.BytesIO(data), dtype="float32")
    except Exception as e:  # noqa: BLE001
        return Check("lame", False, f"MP3 encoding failed: {e}",
                     "reinstall: .venv/bin/pip install --force-reinstall lameenc")
    ok = rate == SAMPLE_RATE and abs(len(back) - SAMPLE_RATE) < 2000
    return Check("lame", ok, f"1 s of audio -> {len(data)} bytes of MP3, decodes to "
                 f"{len(back) / max(rate, 1):.2f} s", "" if ok else "reinstall lameenc")


def check_telegram(cfg: Config) -> Check:
    t = cfg.telegram
    if not t.enabled:
        return Check("telegram", None, "not configured: alerts only go to the log",
                     "set BEEPNET_TELEGRAM_TOKEN and BEEPNET_TELEGRAM_CHAT_ID (README, Telegram)")

    async def probe(bot) -> Check:
        from telegram.error import BadRequest, NetworkError, TelegramError

        from .logs import redact
        from .notify.telegram import explain

        try:
            me = await bot.get_me()
            chat = await bot.get_chat(t.chat_id)
            name = chat.title or chat.username or chat.first_name or chat.id
            return Check("telegram", True, f"bot @{me.username} can reach chat {t.chat_id} "
                         f"({name})")
        except BadRequest as e:  # a NetworkError subclass, but about the chat, not the net
            return Check("telegram", False, explain(e, t.chat_id, t.api_url, t.token).reason,
                         "see README, Telegram")
        except NetworkError as e:
            return Check("telegram", False, f"cannot reach {t.api_url}: "
                         f"{redact(str(e), (t.token,))}",
                         "check the network, DNS and any proxy; telegram.api_url")
        except TelegramError as e:
            return Check("telegram", False, explain(e, t.chat_id, t.api_url, t.token).reason,
                         "see README, Telegram")

    return _with_bot(cfg, probe)


def check_telegram_send(cfg: Config) -> Check:
    """--send-test: a test message to the chat."""
    t = cfg.telegram
    if not t.enabled:
        return Check("telegram test", None, "Telegram is not configured")

    async def send(bot) -> Check:
        from telegram.error import TelegramError

        from .notify.telegram import explain

        try:
            await bot.send_message(t.chat_id, _test_text(cfg))
            return Check("telegram test", True, f"test message sent to chat {t.chat_id}")
        except TelegramError as e:
            return Check("telegram test", False,
                         explain(e, t.chat_id, t.api_url, t.token).reason)

    return _with_bot(cfg, send)


def _with_bot(cfg: Config, work) -> Check:
    """``await work(bot)`` with a Bot for the configured chat, shut down after."""
    from .notify.telegram import make_bot

    async def run() -> Check:
        bot = make_bot(cfg.telegram.token, cfg.telegram.api_url, timeout=10.0)
        try:
            return await work(bot)
        finally:
            try:
                await bot.shutdown()
            except Exception:  # noqa: BLE001 - closing must not mask the finding
                pass

    return asyncio.run(run())


def _test_text(cfg: Config) -> str:
    import socket

    who = cfg.notify.name or socket.gethostname()
    return f"beepnet test message from {who} (beepnet doctor --send-test)."


def check_mqtt(cfg: Config) -> Check:
    if not cfg.mqtt.enabled:
        return Check("mqtt", None, "not configured (mqtt.host): no Home Assistant")
    from .config import ConfigError
    from .mqtt.link import MqttLink

    try:
        link = MqttLink.from_config(cfg, on_emptied=lambda: "", on_mute=lambda on: None)
    except ConfigError as e:
        return Check("mqtt", False, str(e), "fix the [mqtt] settings")
    problem = link.check()
    if problem:
        return Check("mqtt", False, problem,
                     "check mqtt.host/port/tls, mqtt.username and BEEPNET_MQTT_PASSWORD, and "
                     "that the broker lets this user use its topics")
    return Check("mqtt", True, f"{link.where}: publish/subscribe round trip as "
                 f"{link.device_id}; Home Assistant discovers it under "
                 f"{link.topics.discovery_prefix}/")


def check_channels(cfg: Config, send_test: bool) -> list[Check]:
    n = cfg.notify
    if not (n.apprise_urls or n.apprise_file):
        return [Check("channels", None, "no Apprise URLs (notify.apprise_urls): Telegram only")]
    from .notify.apprise_channel import ChannelError, channels_from_config

    try:
        channels = channels_from_config(n)
    except ValueError as e:
        return [Check("channels", False, str(e), "fix notify.apprise_urls / apprise_file")]
    if not send_test:
        return [Check("channels", True, ", ".join(c.label for c in channels)
                      + " (--send-test sends each a message)")]
    out = []
    for c in channels:
        try:
            c.send(_test_text(cfg), "beepnet test")
            out.append(Check(f"channel {c.label}", True, "test message sent"))
        except ChannelError as e:
            out.append(Check(f"channel {c.label}", False, str(e),
                             "check the URL (Apprise's wiki lists each service's form)"))
    return out


def check_heartbeat(cfg: Config, send_test: bool) -> Check:
    n = cfg.notify
    if not n.heartbeat_url:
        return Check("heartbeat", None, "no heartbeat URL (notify.heartbeat_url)")
    from .notify.heartbeat import Heartbeat

    beat = Heartbeat(n.heartbeat_url, n.heartbeat_minutes, lambda: None, name=n.name)
    if not send_test:
        return Check("heartbeat", True, f"{beat.where} every {n.heartbeat_minutes:g} min while "
                     "listening works (--send-test calls it once)")
    if beat.beat_now():
        return Check("heartbeat", True, f"{beat.where} answered")
    return Check("heartbeat", False, f"{beat.where}: {beat.last_error}",
                 "check notify.heartbeat_url / BEEPNET_HEARTBEAT_URL and the network")


def check_disk(cfg: Config) -> Check:
    paths = [cfg.storage.path, cfg.storage.chunk_dir]
    worst: tuple[float, Path] | None = None
    for p in paths:
        probe = p
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free / 1e6
        if worst is None or free < worst[0]:
            worst = (free, p)
    free, where = worst
    ok = free >= MIN_FREE_MB
    return Check("disk", ok, f"{free:.0f} MB free for {where}",
                 "" if ok else f"free at least {MIN_FREE_MB:.0f} MB, or lower storage.keep_mb")


def check_service() -> Check:
    if not Path("/run/systemd/system").is_dir() or not shutil.which("systemctl"):
        return Check("service", None, "systemd is not running here")
    r = subprocess.run(["systemctl", "is-active", "beepnet"], capture_output=True, text=True)
    state = r.stdout.strip() or "unknown"
    if state == "active":
        return Check("service", True, "beepnet.service is active")
    installed = subprocess.run(["systemctl", "cat", "beepnet"], capture_output=True).returncode
    if installed != 0:
        return Check("service", None, "beepnet.service is not installed",
                     "sudo make install-service")
    return Check("service", False, f"beepnet.service is {state}",
                 "journalctl -u beepnet -n 50 shows why; sudo systemctl restart beepnet")


def run_checks(cfg: Config, config_path: str | None, mic: bool = True,
               say: Callable[[str], None] = print, send_test: bool = False) -> bool:
    checks: list[Callable[[], Check | list[Check]]] = [lambda: check_config(cfg, config_path)]
    if mic:
        checks.append(lambda: check_microphone(cfg))
    checks += [lambda: check_detector(cfg), check_lame, lambda: check_telegram(cfg)]
    if send_test:
        checks.append(lambda: check_telegram_send(cfg))
    checks += [lambda: check_mqtt(cfg), lambda: check_channels(cfg, send_test),
               lambda: check_heartbeat(cfg, send_test), lambda: check_disk(cfg),
               check_service]
    all_ok = True
    for make in checks:
        found = make()
        for c in found if isinstance(found, list) else [found]:
            all_ok &= _say(c, say)
    return all_ok


def _say(c: Check, say: Callable[[str], None]) -> bool:
    """Print one check (and its fix when it did not pass); False when it failed."""
    mark = {True: "ok  ", False: "FAIL", None: "skip"}[c.ok]
    say(f"{mark} {c.name}: {c.detail}")
    if c.fix and c.ok is not True:
        say(f"     fix: {c.fix}")
    return c.ok is not False
