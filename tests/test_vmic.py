"""Self-test of the virtual microphone (beepnet/testing/vmic.py) with the real PyAudio.

What the rest of the suite relies on: PyAudio sees an input device, records
what play() plays sample for sample and in real time, and sees the device
vanish on stop() and come back on restart().  Run with ``-s`` to see the
measurements.  Takes about a minute (the captures are real time).
"""

from __future__ import annotations

import ctypes
import itertools
import multiprocessing
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from beepnet.testing import vmic as vmic_mod
from beepnet.testing.vmic import VirtualMic
from beepnet.testing.procs import alive

pyaudio = pytest.importorskip("pyaudio")

pytestmark = [
    pytest.mark.mic,
    pytest.mark.skipif(vmic_mod.available() is not None, reason=str(vmic_mod.available())),
]

BEEP_AT = [1.0, 3.0, 3.5, 6.0, 8.25]  # seconds into the played signal
BEEP_S = 0.2
BEEP_HZ = 3000.0
NOISE = 0.01


def make_signal(rate: int, seconds: float = 10.0) -> np.ndarray:
    """Low noise with 3 kHz beeps at BEEP_AT: every sample is non-zero, so loss shows."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(int(seconds * rate)) * NOISE).clip(-5 * NOISE, 5 * NOISE)
    t = np.arange(int(BEEP_S * rate)) / rate
    for at in BEEP_AT:
        if at + BEEP_S > seconds:
            break
        i = round(at * rate)
        x[i:i + len(t)] = 0.5 * np.sin(2 * np.pi * BEEP_HZ * t)
    return x.astype(np.float32)




def as_int16(x: np.ndarray) -> np.ndarray:
    """What PulseAudio's float -> s16 conversion makes of x."""
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def onsets(x: np.ndarray, rate: int, level: float = 0.25 * 32768) -> list[int]:
    """First sample of each loud stretch (beeps), stretches at least 0.3 s apart."""
    loud = np.flatnonzero(np.abs(x.astype(np.float32)) > level)
    if len(loud) == 0:
        return []
    firsts = [loud[0]] + [b for a, b in itertools.pairwise(loud) if b - a > 0.3 * rate]
    return [int(i) for i in firsts]


class Recorder:
    """PyAudio's default input in callback mode, keeping every block and when it arrived."""

    def __init__(self, rate: int, pa=None):
        self.rate = rate
        self.pa = pa or pyaudio.PyAudio()
        self.blocks: list[np.ndarray] = []
        self.times: list[float] = []
        self.statuses: list[int] = []
        self.stream = self.pa.open(
            format=pyaudio.paInt16, channels=1, rate=rate, input=True,
            frames_per_buffer=rate // 10, stream_callback=self._callback)

    def _callback(self, data, frames, time_info, status):
        self.times.append(time.monotonic())
        self.blocks.append(np.frombuffer(data, dtype="<i2").copy())
        self.statuses.append(status)
        return (None, pyaudio.paContinue)

    def start(self, timeout: float = 5.0) -> None:
        """Start and return once the first block has arrived: the recorder is capturing."""
        self.stream.start_stream()
        deadline = time.monotonic() + timeout
        while not self.blocks:
            assert time.monotonic() < deadline, f"no audio block within {timeout:g} s"
            time.sleep(0.005)

    def close(self, terminate: bool = True) -> None:
        self.stream.stop_stream()
        self.stream.close()
        if terminate:
            self.pa.terminate()

    def samples(self) -> np.ndarray:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.int16)

    def arrival(self, index: int) -> float:
        """Estimated monotonic time sample ``index`` was captured (block arrival minus what follows it)."""
        ends = np.cumsum([len(b) for b in self.blocks])
        k = int(np.searchsorted(ends, index, side="right"))
        return self.times[k] - (ends[k] - 1 - index) / self.rate


def input_devices(pa) -> list[dict]:
    devs = [pa.get_device_info_by_index(i) for i in range(pa.get_device_count())]
    return [d for d in devs if d["maxInputChannels"] > 0]


# -- 1. PyAudio sees a microphone ----------------------------------------------


def test_pyaudio_lists_the_virtual_microphone(vmic):
    pa = pyaudio.PyAudio()
    try:
        devices = [pa.get_device_info_by_index(i) for i in range(pa.get_device_count())]
        for d in devices:
            print(f"device {d['index']}: {d['name']!r} hostApi={d['hostApi']} "
                  f"maxInputChannels={d['maxInputChannels']} defaultSampleRate={d['defaultSampleRate']}")
        names = {d["name"] for d in input_devices(pa)}
        # ALSA's "default" (routed to PulseAudio by the .asoundrc) and the "pulse" PCM.
        assert {"default", "pulse"} <= names
        default = pa.get_default_input_device_info()
        assert default["name"] == "default" and default["maxInputChannels"] > 0
    finally:
        pa.terminate()


# -- 2. complete, real-time capture at several rates -----------------------------


@pytest.mark.parametrize("rate", [48000, 44100, 16000])
def test_capture_is_complete_and_real_time(rate):
    played = make_signal(rate)
    with VirtualMic(rate=rate) as mic:
        print(f"\n[{rate} Hz] start() took {mic.start_seconds * 1000:.0f} ms")
        rec = Recorder(rate)
        try:
            rec.start()
            t_play = time.monotonic()
            mic.play(played)
            t_played = time.monotonic()
            time.sleep(0.5)
        finally:
            rec.close()
    got = rec.samples()
    assert set(rec.statuses) == {0}, "input overflow or underflow flagged"

    # Where the signal sits in the recording: the lag with the best correlation.
    n = 1 << int(np.ceil(np.log2(len(got) + len(played))))
    corr = np.fft.irfft(np.fft.rfft(got.astype(np.float64), n) * np.conj(np.fft.rfft(played, n)), n)
    lag = int(np.argmax(corr[: len(got)]))
    assert lag + len(played) <= len(got), "recording ends before the signal does"

    # Sample for sample what was played, from its very first sample; nothing
    # of it before (the sink is silent when nothing plays).
    segment = got[lag: lag + len(played)].astype(np.int32)
    diff = np.abs(segment - as_int16(played))
    assert diff.max() <= 1, f"{np.count_nonzero(diff > 1)} samples differ, first at {np.argmax(diff > 1)}"
    assert not got[:lag].any(), "sound before the signal started"

    # The beeps keep their spacing (a lost or inserted block would shift them).
    heard = np.asarray(onsets(got, rate), dtype=float)
    expected = np.asarray(onsets(as_int16(played), rate), dtype=float)
    assert len(heard) == len(BEEP_AT)
    spacing_error_ms = np.abs(np.diff(heard) - np.diff(expected)) / rate * 1000
    assert spacing_error_ms.max() <= 5.0, spacing_error_ms

    # Frames delivered per wall-clock second, fitted over the whole capture
    # but its first half second.
    ends = np.cumsum([len(b) for b in rec.blocks])
    skip = 5
    slope = np.polyfit(np.asarray(rec.times[skip:]) - rec.times[skip], ends[skip:], 1)[0]
    assert abs(slope / rate - 1) < 0.01, f"{slope:.1f} frames/s at {rate} Hz"

    # How late the first beep shows up, against when play() was called.
    # "captured" estimates when the sample entered PortAudio (block arrival
    # minus the samples after it); the sink renders up to 100 ms ahead of
    # the wall clock, so it can come out slightly negative.  "delivered" is
    # when the callback got it: what a recorder sees, about one buffer late.
    first_beep = int(heard[0])
    captured = rec.arrival(first_beep) - (t_play + BEEP_AT[0])
    k = int(np.searchsorted(ends, first_beep, side="right"))
    delivered = rec.times[k] - (t_play + BEEP_AT[0])
    signal_start = rec.arrival(lag) - t_play
    print(f"[{rate} Hz] {len(rec.blocks)} blocks of {rate // 10}, rate vs wall clock {slope / rate:.5f}, "
          f"play() of {len(played) / rate:.1f} s took {t_played - t_play:.3f} s, "
          f"first signal sample captured {signal_start * 1000:+.0f} ms after play(), "
          f"first beep captured {captured * 1000:+.0f} ms / delivered to the callback "
          f"{delivered * 1000:+.0f} ms late, beep spacing error max {spacing_error_ms.max():.3f} ms, "
          f"max sample difference {diff.max()} LSB")
    assert delivered < 0.5


def test_other_rates_and_files_are_resampled_in_real_time(vmic, tmp_path):
    """A 16 kHz array into the 48 kHz sink, recorded at 44.1 kHz (PortAudio's defaultSampleRate
    for these devices, which is what a recorder using it gets); then a 16 kHz file."""
    capture_rate = 44100
    played = make_signal(16000, seconds=4.0)  # beeps at 1.0, 3.0, 3.5 s
    rec = Recorder(capture_rate)
    try:
        rec.start()
        vmic.play(played, rate=16000)
        path = tmp_path / "beep.wav"
        import soundfile

        soundfile.write(path, make_signal(16000, seconds=1.5), 16000)
        vmic.play(path)
        time.sleep(0.3)
    finally:
        rec.close()
    assert set(rec.statuses) == {0}
    heard = np.asarray(onsets(rec.samples(), capture_rate)) / capture_rate
    assert len(heard) == 4, heard
    spacing_error_ms = np.abs(np.diff(heard[:3]) - np.diff(BEEP_AT[:3])) * 1000
    assert spacing_error_ms.max() <= 5.0, spacing_error_ms
    # The file follows the array at once: its beep (1.0 s in) 4.0 + 1.0 s after the first
    # one's signal start, give or take paplay's start-up.
    assert abs((heard[3] - heard[0]) - 4.0) < 0.3, heard


# -- 3. the microphone vanishes and comes back ------------------------------------


def test_stop_ends_the_callback_stream_and_restart_brings_the_device_back(vmic):
    rec = Recorder(vmic.rate)
    rec.start()
    time.sleep(0.3)
    # Something playing when the microphone goes: stop() ends it too.
    player = vmic.play(make_signal(vmic.rate), wait=False)

    t_stop = time.monotonic()
    vmic.stop()
    assert player.poll() is not None
    # PortAudio's callback thread fails on the dead connection and ends the
    # stream: no more callbacks, no status flag, no exception in this thread.
    deadline = time.monotonic() + 2
    while rec.stream.is_active() and time.monotonic() < deadline:
        time.sleep(0.002)
    inactive_after = time.monotonic() - t_stop
    assert not rec.stream.is_active()
    n_blocks = len(rec.blocks)
    time.sleep(1.0)
    assert len(rec.blocks) == n_blocks, "callbacks went on after the microphone vanished"
    assert all(t <= t_stop + 0.2 for t in rec.times)
    assert not rec.stream.is_stopped()  # inactive, but not stopped by anyone
    # Cleaning up the dead stream works.
    rec.stream.stop_stream()
    rec.stream.close()

    # PortAudio is initialised once per process: while any PyAudio instance
    # is alive, a new one shares its device list, cached when the first was
    # made, so it still shows the vanished device...
    pa_shared = pyaudio.PyAudio()
    try:
        assert "default" in {d["name"] for d in input_devices(pa_shared)}
    finally:
        pa_shared.terminate()
    # ...only once all are terminated does a new one look again, and see none.
    rec.pa.terminate()
    pa_down = pyaudio.PyAudio()
    try:
        assert input_devices(pa_down) == []
        with pytest.raises(OSError):
            pa_down.get_default_input_device_info()
    finally:
        pa_down.terminate()

    t_restart = time.monotonic()
    vmic.restart()
    restart_s = time.monotonic() - t_restart

    # A new PyAudio instance records again.
    fresh = Recorder(vmic.rate)
    try:
        fresh.start()
        vmic.play(make_signal(vmic.rate, seconds=1.5))
        time.sleep(0.3)
    finally:
        fresh.close()
    assert len(onsets(fresh.samples(), vmic.rate)) == 1
    print(f"\nstream inactive {inactive_after * 1000:.0f} ms after stop(); "
          f"restart() took {restart_s * 1000:.0f} ms")


def test_same_pyaudio_instance_can_reopen_after_restart(vmic):
    """No PyAudio.terminate() needed to recover: "default" is an ALSA alias, opened anew."""
    rec = Recorder(vmic.rate)
    try:
        rec.start()
        vmic.restart()  # a quick bounce, as a flaky USB contact would do
        time.sleep(0.5)
        # The stream that was open does not come back by itself.
        assert not rec.stream.is_active()
        n_blocks = len(rec.blocks)
        time.sleep(0.3)
        assert len(rec.blocks) == n_blocks
        rec.stream.close()
        again = Recorder(vmic.rate, pa=rec.pa)
        again.start()
        again.close(terminate=False)
    finally:
        rec.pa.terminate()


def test_blocking_read_raises_once_the_microphone_is_gone(vmic):
    pa = pyaudio.PyAudio()
    try:
        stream = pa.open(format=pyaudio.paInt16, channels=1, rate=vmic.rate, input=True,
                         frames_per_buffer=vmic.rate // 10)
        assert len(stream.read(vmic.rate // 10)) == vmic.rate // 10 * 2
        vmic.stop()
        t0 = time.monotonic()
        with pytest.raises(OSError) as err:
            for _ in range(30):  # 3 s of audio if it never failed
                stream.read(vmic.rate // 10, exception_on_overflow=False)
        print(f"\nread() after stop(): {err.value!r} after {time.monotonic() - t0:.3f} s")
        stream.close()
    finally:
        pa.terminate()


# -- 4. start-up time, teardown, children --------------------------------------------


def test_start_is_quick_and_close_leaves_nothing():
    mic = VirtualMic(rate=48000)
    t0 = time.monotonic()
    mic.start()
    took = time.monotonic() - t0
    pids = [mic._daemon.pid, mic._keeper.pid]
    root = mic.root
    mic.close()
    print(f"\nstart() took {took * 1000:.0f} ms")
    assert took < 5.0
    assert not any(alive(p) for p in pids)
    assert not root.exists()


def test_daemon_exits_when_its_owner_dies_without_stop(tmp_path):
    """A test process killed hard (os._exit, SIGKILL) must not leave the daemon behind."""
    code = (
        "import os, sys, pathlib; from beepnet.testing import vmic\n"
        "m = vmic.VirtualMic(tmpdir=pathlib.Path(sys.argv[1])); m.start()\n"
        "print(m._daemon.pid, m._keeper.pid, flush=True); os._exit(0)\n"
    )
    # Adopt the orphans while this runs (instead of init), to see them exit
    # and reap them: no zombie is left for other tests' process checks.
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    adopted = libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0
    try:
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "mic")],
                             check=False, capture_output=True, text=True, timeout=30)
        pids = [int(p) for p in out.stdout.split()]
        assert len(pids) == 2, out.stderr
        deadline = time.monotonic() + 5
        running = set(pids)
        while running and time.monotonic() < deadline:
            for pid in list(running):
                if adopted:
                    try:
                        if os.waitpid(pid, os.WNOHANG)[0] == pid:
                            running.discard(pid)
                        continue
                    except ChildProcessError:
                        pass
                if not alive(pid):
                    running.discard(pid)
            time.sleep(0.05)
        assert not running, f"still running: {running}"
    finally:
        if adopted:
            libc.prctl(pr_set_child_subreaper, 0, 0, 0, 0)


def _record_in_child(rate: int, queue) -> None:
    """Runs in a spawned process: what the environment inherited from the parent gives."""
    import pyaudio as pa_mod

    pa = pa_mod.PyAudio()
    try:
        stream = pa.open(format=pa_mod.paInt16, channels=1, rate=rate, input=True,
                         frames_per_buffer=rate // 10)
        data = stream.read(rate // 5)
        stream.close()
        queue.put((len(data) // 2, [d["name"] for d in input_devices(pa)]))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which fails the test
        queue.put((0, repr(e)))
    finally:
        pa.terminate()


def test_spawned_process_and_subprocess_record_from_it(vmic):
    # multiprocessing "spawn" child: inherits os.environ, patched by the fixture.
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_record_in_child, args=(vmic.rate, queue))
    child.start()
    frames, names = queue.get(timeout=30)
    child.join(10)
    assert frames == vmic.rate // 5, names
    assert "default" in names

    # Plain subprocess with vmic.env.
    code = (
        "import pyaudio; pa = pyaudio.PyAudio()\n"
        "s = pa.open(format=pyaudio.paInt16, channels=1, rate=16000, input=True, frames_per_buffer=1600)\n"
        "print(len(s.read(3200)) // 2); s.close(); pa.terminate()\n"
    )
    env = vmic.env
    assert env["PULSE_SERVER"] == os.environ["PULSE_SERVER"]
    out = subprocess.run([sys.executable, "-c", code], env=env, check=False,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "3200", out.stderr[-2000:]
