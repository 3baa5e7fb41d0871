"""Where the recorder's audio comes from: a PyAudio input device, or a recording replayed.

Both yield mono float32 blocks at the source's native rate; the recorder converts to 16 kHz.
PyAudio is imported only when a microphone is opened, so `beepnet detect` works on machines
without PortAudio.
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import time
from typing import Iterator, Protocol

import numpy as np

from . import AudioFileError

log = logging.getLogger(__name__)


class SourceError(Exception):
    """The source cannot deliver audio (device missing or lost, file unreadable)."""


class Source(Protocol):
    description: str
    rate: int

    def open(self) -> None: ...
    def blocks(self) -> Iterator[np.ndarray]: ...
    def close(self) -> None: ...


_HANDLERS: list = []  # C callbacks stay referenced for as long as the libraries may call them


def quiet_audio_libraries() -> None:
    """Route the C libraries' own stderr chatter to our debug log.

    On every PortAudio start, libasound prints dozens of "Unknown PCM cards.pcm.rear" lines
    and libjack (Debian's PortAudio links it) "jack server is not running": noise that would
    bury beepnet's one-line messages, and the journal, on every microphone retry.
    """
    if _HANDLERS:
        return
    # Never let a PortAudio probe launch a JACK server as a side effect.
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    try:
        asound = ctypes.cdll.LoadLibrary("libasound.so.2")
        alsa_proto = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                      ctypes.c_int, ctypes.c_char_p)

        def alsa(filename, line, function, err, fmt):
            log.debug("ALSA: %s", (fmt or b"").decode(errors="replace"))

        _HANDLERS.append(alsa_proto(alsa))
        asound.snd_lib_error_set_handler(_HANDLERS[-1])
    except (OSError, AttributeError):
        pass  # no ALSA here: nothing to silence
    try:
        jack = ctypes.cdll.LoadLibrary("libjack.so.0")
        jack_proto = ctypes.CFUNCTYPE(None, ctypes.c_char_p)

        def jack_msg(msg):
            log.debug("JACK: %s", (msg or b"").decode(errors="replace"))

        _HANDLERS.append(jack_proto(jack_msg))
        jack.jack_set_error_function(_HANDLERS[-1])
        jack.jack_set_info_function(_HANDLERS[-1])
    except (OSError, AttributeError):
        pass


def _input_devices(pa) -> list[dict]:
    devices = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if int(info.get("maxInputChannels", 0)) > 0:
            devices.append(info)
    return devices


def list_input_devices() -> list[str]:
    """One line per input device PortAudio sees: index, name, native rate, channels."""
    import pyaudio

    quiet_audio_libraries()
    pa = pyaudio.PyAudio()
    try:
        return [f"{d['index']}: {d['name']} ({int(d['defaultSampleRate'])} Hz, "
                f"{int(d['maxInputChannels'])} ch)" for d in _input_devices(pa)]
    finally:
        pa.terminate()


def find_device(pa, spec: str) -> dict:
    """Resolve 'default', an index, or part of a name to a PortAudio device info dict."""
    devices = _input_devices(pa)
    if not devices:
        raise SourceError("no input device found: is the USB microphone plugged in? "
                          "(`arecord -l` lists what ALSA sees)")
    names = "; ".join(f"{d['index']}: {d['name']}" for d in devices)
    spec = spec.strip()
    if spec in ("", "default"):
        try:
            return pa.get_default_input_device_info()
        except (IOError, OSError):
            return devices[0]
    if spec.isdigit():
        for d in devices:
            if d["index"] == int(spec):
                return d
        raise SourceError(f"audio.device = {spec}: no input device with that index "
                          f"(inputs: {names})")
    matches = [d for d in devices if spec.lower() in d["name"].lower()]
    if not matches:
        raise SourceError(f"audio.device = {spec!r}: no input device with that in its name "
                          f"(inputs: {names})")
    return matches[0]


class MicSource:
    """A PyAudio input stream in callback mode.

    The callback only copies each block into a queue, so a slow disk write in the recorder
    never makes PortAudio drop samples; overflows that do happen are counted.
    """

    def __init__(self, device: str, block_ms: float, stall_seconds: float = 3.0):
        self.device_spec = device
        self.block_ms = block_ms
        self.stall_seconds = stall_seconds
        self.description = device
        self.rate = 0
        self.overflows = 0
        self._pa = None
        self._stream = None
        self._q: queue.Queue = queue.Queue()

    def open(self) -> None:
        try:
            import pyaudio
        except ImportError as e:  # pragma: no cover - install problem
            raise SourceError(f"PyAudio is not installed ({e}); run `make install`") from None
        quiet_audio_libraries()
        self._pa = pyaudio.PyAudio()
        try:
            info = find_device(self._pa, self.device_spec)
            self.rate = int(info["defaultSampleRate"])
            self.description = f"{info['name']} (#{info['index']}, {self.rate} Hz)"
            frames = max(1, int(self.rate * self.block_ms / 1000))
            self._stream = self._open_stream(pyaudio, info, frames)
        except SourceError:
            self.close()
            raise
        except (IOError, OSError, ValueError) as e:
            self.close()
            raise SourceError(f"cannot open input device {self.description}: {e}") from None

    def _open_stream(self, pyaudio, info: dict, frames: int):
        overflow = pyaudio.paInputOverflow

        def callback(data, n, time_info, status):
            if status & overflow:
                self.overflows += 1
            self._q.put(data)
            return (None, pyaudio.paContinue)

        # Mono is what we want; some raw hw: devices only open with their own channel count.
        last: Exception | None = None
        for channels in dict.fromkeys((1, int(info["maxInputChannels"]))):
            try:
                stream = self._pa.open(
                    format=pyaudio.paInt16, channels=channels, rate=self.rate, input=True,
                    input_device_index=int(info["index"]), frames_per_buffer=frames,
                    stream_callback=callback)
                self._channels = channels
                return stream
            except (IOError, OSError, ValueError) as e:
                last = e
        raise SourceError(f"cannot open input device {self.description}: {last}")

    def blocks(self) -> Iterator[np.ndarray]:
        assert self._stream is not None, "open() first"
        self._stream.start_stream()
        waited = 0.0
        while True:
            try:
                data = self._q.get(timeout=0.5)
            except queue.Empty:
                # A vanished device (USB unplugged, PulseAudio gone) just stops the callbacks,
                # with no error; PortAudio marks the stream inactive, so look at that.
                waited += 0.5
                if not self._stream.is_active():
                    raise SourceError(f"{self.description} stopped delivering audio "
                                      "(unplugged, or the sound server went away)") from None
                if waited >= self.stall_seconds:
                    raise SourceError(f"no audio from {self.description} for "
                                      f"{waited:g} s (stalled?)") from None
                continue
            waited = 0.0
            block = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
            if self._channels > 1:
                block = block.reshape(-1, self._channels).mean(axis=1)
            yield block

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.stop_stream()
                self._stream.close()
            except (IOError, OSError):
                pass
            self._stream = None
        if self._pa is not None:
            # terminate() also forgets PortAudio's device list, so reopening after a USB
            # replug sees the device again.
            self._pa.terminate()
            self._pa = None


class FileSource:
    """Replays a recording as if it were a microphone, in real time or ``speed`` times faster."""

    def __init__(self, path: str, block_ms: float = 100.0, speed: float = 1.0):
        self.path = path
        self.block_ms = block_ms
        self.speed = speed
        self.description = f"file {path}"
        self.rate = 0
        self.overflows = 0
        self._file = None  # a beepnet.audio.files.AudioFile once open

    def open(self) -> None:
        try:
            from .files import AudioFile  # soundfile: only for a --source file

            self._file = AudioFile(self.path)
        except AudioFileError as e:
            raise SourceError(f"{self.path}: {e}") from None
        self.rate = self._file.rate
        self.description = (f"file {self.path} ({self._file.rate} Hz, {self._file.channels} ch, "
                            f"{self._file.duration:.1f} s, x{self.speed:g})")

    def blocks(self) -> Iterator[np.ndarray]:
        assert self._file is not None, "open() first"
        frames = max(1, int(self.rate * self.block_ms / 1000))
        t0 = time.monotonic()
        sent = 0
        try:
            for block in self._file.blocks(frames):
                sent += len(block)
                # Pace by total samples, not per block, so sleep jitter never accumulates.
                due = t0 + sent / self.rate / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                yield block
        except AudioFileError as e:
            raise SourceError(f"{self.path}: {e}") from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
