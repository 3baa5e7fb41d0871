"""A virtual microphone for tests and the benchmark on machines without a sound card.

A private PulseAudio daemon runs inside a temporary directory with one
``module-null-sink``.  Its monitor source is the default source, and ALSA's
default PCM is routed to PulseAudio through an ``.asoundrc`` in a temporary
HOME, so PyAudio (PortAudio -> ALSA "default" -> pulse plugin) records whatever
:meth:`VirtualMic.play` plays into the sink, paced in real time by the null
sink's clock.

Everything is selected through environment variables (HOME,
XDG_RUNTIME_DIR, PULSE_SERVER, ...), so processes started with
``subprocess`` (pass :attr:`VirtualMic.env`) or multiprocessing "spawn"
(use the context manager, which patches ``os.environ``) see the same
microphone.  Nothing is written outside the temporary directory.

Typical use::

    with VirtualMic(rate=48000) as mic:        # also patches os.environ
        proc = subprocess.Popen([...], env=mic.env)
        mic.play(signal)                        # float32 mono in [-1, 1]
        mic.stop()                              # "microphone unplugged"
        mic.restart()                           # "microphone is back"
"""

from __future__ import annotations

import glob
import logging
import os
import pathlib
import select
import shutil
import subprocess
import tempfile
import time

import numpy as np

log = logging.getLogger(__name__)

SINK = "vmic"
SOURCE = SINK + ".monitor"

# Tools the harness runs, and the Debian package that ships each.
_TOOLS = {
    "pulseaudio": "pulseaudio",
    "pactl": "pulseaudio-utils",
    "paplay": "pulseaudio-utils",
    "parec": "pulseaudio-utils",
}
_ALSA_PULSE_PLUGIN = "libasound_module_pcm_pulse.so"  # Debian: libasound2-plugins

# Variables that would send ALSA or PulseAudio clients somewhere other than
# our daemon if they leaked in from the caller's environment.
_STRIPPED_VARS = ("ALSA_CONFIG_PATH", "PULSE_SINK", "PULSE_SOURCE", "PULSE_COOKIE", "PULSE_PROP")

# Unix socket paths are limited to 108 bytes (sun_path); keep a margin.
_MAX_SOCKET_PATH = 100

# ALSA's default PCM and mixer go to PulseAudio (see _write_config).
_ASOUNDRC = "# written by beepnet.testing.vmic\npcm.!default { type pulse }\nctl.!default { type pulse }\n"

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0

# The null sink renders (and hands to monitor readers) up to its latency
# ahead of the wall clock, where its latency is the smallest any of its
# streams asks for, monitor readers included, else 2 s.  The parec keeper
# pins it to a 100 ms block whoever else is connected, so recorders get
# small regular blocks, never 2 s bursts.  Measured with PyAudio reading
# 100 ms buffers: keeper 100 ms + paplay 300 ms kept the capture delay
# constant (about 12 ms) over 40 s of playback at 16, 44.1 and 48 kHz, while
# a 20 ms keeper let the recorder lag 0.2-0.4 % behind the wall clock
# (delay growing from 60 to 150 ms, then catching up; no sample lost).
_KEEPER_LATENCY_MS = 100
# Latency paplay asks for.  Large enough that a busy CPU never starves the
# stream (at 50 ms a 25 ms gap of silence was once inserted mid-signal);
# it does not delay the start: with rewinds off a new stream joins at the
# sink's next block.
_PLAY_LATENCY_MS = 300


def _find_alsa_pulse_plugin() -> str | None:
    patterns = [
        f"/usr/lib/*/alsa-lib/{_ALSA_PULSE_PLUGIN}",
        f"/usr/lib/alsa-lib/{_ALSA_PULSE_PLUGIN}",
        f"/usr/lib64/alsa-lib/{_ALSA_PULSE_PLUGIN}",
    ]
    for pattern in patterns:
        found = glob.glob(pattern)
        if found:
            return found[0]
    return None


def available() -> str | None:
    """None if the virtual microphone can run here, else why not (for pytest.skip)."""
    missing = [f"{tool} (Debian package {pkg})" for tool, pkg in _TOOLS.items() if shutil.which(tool) is None]
    if _find_alsa_pulse_plugin() is None:
        missing.append(f"ALSA pulse plugin {_ALSA_PULSE_PLUGIN} (Debian package libasound2-plugins)")
    if missing:
        return "virtual microphone unavailable, missing: " + ", ".join(missing)
    return None


class VirtualMicError(RuntimeError):
    pass


class VirtualMic:
    """A PulseAudio null sink whose monitor is the default ALSA capture device."""

    #: pulseaudio --log-level for <root>/pulseaudio.log ("debug" when investigating)
    log_level = "notice"

    def __init__(self, rate: int = 48000, channels: int = 1, tmpdir: pathlib.Path | None = None):
        self.rate = int(rate)
        self.channels = int(channels)
        # We remove the directory on close() only if we created it.
        self._owns_root = tmpdir is None
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="vmic-")) if tmpdir is None else pathlib.Path(tmpdir)
        self.root.mkdir(parents=True, exist_ok=True)

        self.home = self.root / "home"
        self.config_home = self.home / ".config"
        self.state_dir = self.root / "state"
        self.runtime_dir = self.root / "run"
        self._short_runtime: pathlib.Path | None = None
        if len(str(self.runtime_dir / "pulse" / "native")) > _MAX_SOCKET_PATH:
            # A deep tmp_path would overflow sun_path; only the runtime
            # directory (socket) moves to a short temporary directory.
            self._short_runtime = pathlib.Path(tempfile.mkdtemp(prefix="vmic-run-"))
            self.runtime_dir = self._short_runtime
        self.pulse_runtime = self.runtime_dir / "pulse"
        self.socket_path = self.pulse_runtime / "native"
        self.daemon_conf = self.root / "daemon.conf"
        self.client_conf = self.root / "client.conf"
        self.log_path = self.root / "pulseaudio.log"
        self._play_dir = self.root / "play"

        self._write_config()

        # The variables children need; see the module docstring.
        self.audio_env: dict[str, str] = {
            # ALSA reads ~/.asoundrc and $XDG_CONFIG_HOME/alsa/asoundrc.
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.config_home),
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "PULSE_RUNTIME_PATH": str(self.pulse_runtime),
            "PULSE_STATE_PATH": str(self.state_dir),
            # Explicit server: clients never look for (or autospawn) another daemon.
            "PULSE_SERVER": f"unix:{self.socket_path}",
            "PULSE_CLIENTCONFIG": str(self.client_conf),
        }

        self._daemon: subprocess.Popen | None = None
        self._daemon_stdin: int | None = None
        self._keeper: subprocess.Popen | None = None
        self._players: list[subprocess.Popen] = []
        self._play_count = 0
        self._saved_environ: dict[str, str | None] | None = None
        self._closed = False
        #: seconds the last start() took, for the curious
        self.start_seconds: float | None = None

    # -- environment -----------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """Full environment for subprocesses: the current os.environ plus the audio variables."""
        env = {k: v for k, v in os.environ.items() if k not in _STRIPPED_VARS}
        env.update(self.audio_env)
        return env

    def patch_environ(self) -> None:
        """Set the audio variables in os.environ (so spawn children inherit them) until restore_environ()."""
        if self._saved_environ is not None:
            return
        keys = set(self.audio_env) | set(_STRIPPED_VARS)
        self._saved_environ = {k: os.environ.get(k) for k in keys}
        for k in _STRIPPED_VARS:
            os.environ.pop(k, None)
        os.environ.update(self.audio_env)

    def restore_environ(self) -> None:
        if self._saved_environ is None:
            return
        for k, v in self._saved_environ.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._saved_environ = None

    # -- files -----------------------------------------------------------

    def _write_config(self) -> None:
        for d in (self.config_home, self.state_dir, self.pulse_runtime, self._play_dir):
            d.mkdir(parents=True, exist_ok=True)
        # libpulse refuses a runtime dir that others can access.
        os.chmod(self.runtime_dir, 0o700)
        os.chmod(self.pulse_runtime, 0o700)

        # ALSA's default PCM and mixer go to PulseAudio (the server comes from
        # PULSE_SERVER).  Loaded after /etc/asound.conf, so "!" overrides it.
        (self.home / ".asoundrc").write_text(_ASOUNDRC)
        # Never autospawn a daemon with the system configuration.
        self.client_conf.write_text("autospawn = no\n")
        # Daemon configuration (replaces /etc/pulse/daemon.conf via PULSE_CONFIG).
        # The default and alternate rates equal the capture rate so that
        # PulseAudio never reconfigures the sink to another rate when a stream
        # of a different rate connects: recorders then get the sink's samples
        # unresampled.  Realtime scheduling: as root the daemon gets SCHED_RR
        # for the sink's thread (see its log), so a test loading both CPUs
        # delays the clock less; where refused it is only a log line.
        self.daemon_conf.write_text(
            "\n".join(
                [
                    "# written by beepnet.testing.vmic",
                    "daemonize = no",
                    "system-instance = no",
                    "exit-idle-time = -1",
                    "flat-volumes = no",
                    "high-priority = yes",
                    "realtime-scheduling = yes",
                    "default-sample-format = s16le",
                    f"default-sample-rate = {self.rate}",
                    f"alternate-sample-rate = {self.rate}",
                    f"default-sample-channels = {self.channels}",
                    "avoid-resampling = no",
                    "",
                ]
            )
        )

    def name_devices(self, *names: str) -> None:
        """Route ALSA PCMs with these names to the microphone, besides "default".

        PortAudio lists ALSA's PCMs in the order .asoundrc defines them, so names put before
        one move its device index: ``name_devices("vmicdev")``, later
        ``name_devices("other", "vmicdev")``, and a recorder opening "vmicdev" finds it at
        another index (a USB microphone replugged after another device appeared). Processes
        see the change when they initialise PortAudio again.
        """
        lines = [f"pcm.{name} {{ type pulse }}" for name in names]
        (self.home / ".asoundrc").write_text(_ASOUNDRC + "".join(line + "\n" for line in lines))

    # -- lifecycle -------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._daemon is not None and self._daemon.poll() is None

    def _pactl(self, *args: str, check: bool = True, timeout: float = 5.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["pactl", *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=check
        )

    def _log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def start(self) -> None:
        """Start the daemon, null sink and keeper; return once a recorder can capture."""
        if self._closed:
            raise VirtualMicError("start() after close(): make a new VirtualMic")
        if self.running:
            return
        reason = available()
        if reason:
            raise VirtualMicError(reason)
        t0 = time.monotonic()
        try:
            self._start_daemon()
            self._start_keeper()
            self._reset_sink_clock()
            self._wait_for_data()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        log.info("virtual microphone up at %d Hz in %.3f s (%s)", self.rate, self.start_seconds, self.root)

    def _start_daemon(self) -> None:
        # A daemon killed earlier may have left its socket behind.
        self.socket_path.unlink(missing_ok=True)
        # The startup script is written each time so start() after a change
        # of rate/channels by a caller is honoured.
        script = self.root / "startup.pa"
        script.write_text(
            "\n".join(
                [
                    # Anonymous auth: no cookie file needed by the clients.
                    (
                        f"load-module module-native-protocol-unix socket={self.socket_path}"
                        " auth-anonymous=1 auth-cookie-enabled=0"
                    ),
                    # norewinds: by default the sink rewinds its already
                    # rendered block to mix in a stream that just connected,
                    # but the monitor has already passed that block on, so
                    # the new stream's first 2-12 ms were lost.  Without
                    # rewinds the stream starts at the next block, whole.
                    (
                        f"load-module module-null-sink sink_name={SINK} rate={self.rate}"
                        f" channels={self.channels} format=s16le norewinds=1"
                        ' sink_properties=device.description="Virtual-microphone"'
                    ),
                    f"set-default-sink {SINK}",
                    f"set-default-source {SOURCE}",
                    # The daemon reads commands on stdin and exits at EOF.  We
                    # hold the pipe's only write end, so if this (test)
                    # process dies without stop(), the kernel closes it and the
                    # daemon exits instead of lingering (the keeper follows,
                    # as its connection drops).
                    "load-module module-cli exit_on_eof=1",
                    "",
                ]
            )
        )
        daemon_env = dict(self.env, PULSE_CONFIG=str(self.daemon_conf))
        read_end, write_end = os.pipe()  # both non-inheritable by default
        try:
            with open(self.log_path, "ab") as logf:
                self._daemon = subprocess.Popen(
                    [
                        "pulseaudio",
                        "--daemonize=no",
                        "--system=no",
                        "--use-pid-file=no",  # nothing to clean up; we track the pid
                        "--exit-idle-time=-1",  # only we decide when it ends
                        "-n",  # skip /etc/pulse/default.pa (udev, ALSA cards, X11, ...)
                        f"--file={script}",
                        f"--log-target=file:{self.log_path}",
                        f"--log-level={self.log_level}",
                    ],
                    stdin=read_end,
                    stdout=subprocess.DEVNULL,  # module-cli's prompt
                    stderr=logf,
                    env=daemon_env,
                    cwd=self.root,
                )
        finally:
            os.close(read_end)
        self._daemon_stdin = write_end

        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self._daemon.poll() is not None:
                raise VirtualMicError(
                    f"pulseaudio exited with {self._daemon.returncode}:\n{self._log_tail()}"
                )
            if self.socket_path.exists():
                res = self._pactl("get-default-source", check=False)
                if res.returncode == 0 and res.stdout.strip() == SOURCE:
                    break
            if time.monotonic() > deadline:
                raise VirtualMicError(f"pulseaudio not ready after {_START_TIMEOUT} s:\n{self._log_tail()}")
            time.sleep(0.01)

    def _start_keeper(self) -> None:
        # Reads the monitor at the sink's own format (no resampling) and throws
        # it away; see _KEEPER_LATENCY_MS for why it exists.  Its stderr goes
        # to a file: a pipe nobody reads could fill up and block it.
        with open(self.root / "keeper.log", "ab") as errf:
            self._keeper = subprocess.Popen(
                self._parec("vmic-keeper"),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errf,
                env=self.env,
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self._keeper.poll() is not None:
                err = (self.root / "keeper.log").read_text(errors="replace")[-2000:]
                raise VirtualMicError(f"parec keeper exited with {self._keeper.returncode}: {err}")
            # Ready once its record stream exists on the monitor: from then on
            # the sink renders in small blocks.
            res = self._pactl("list", "short", "source-outputs", check=False)
            if res.returncode == 0 and res.stdout.strip():
                return
            if time.monotonic() > deadline:
                raise VirtualMicError("parec keeper did not connect")
            time.sleep(0.01)

    def _reset_sink_clock(self) -> None:
        # The null sink starts with its maximum latency (2 s): its first
        # render covers 2 s and its next wake-up is 2 s later, and a later
        # change of latency does not move that wake-up.  Measured: with the
        # keeper alone, a recorder attached right after start() got its
        # first sample ~2 s after the daemon started.  Only leaving the
        # suspended state restarts the sink's clock at "now"; it then
        # renders in the keeper's 100 ms blocks.
        self._pactl("suspend-sink", SINK, "1")
        self._pactl("suspend-sink", SINK, "0")

    def _parec(self, client_name: str) -> list[str]:
        """A raw reader of the monitor at the sink's own format (no resampling)."""
        return ["parec", f"--device={SOURCE}", f"--rate={self.rate}",
                f"--channels={self.channels}", "--format=s16le", "--raw",
                f"--latency-msec={_KEEPER_LATENCY_MS}", f"--client-name={client_name}"]

    def listen(self, client_name: str = "vmic-listen") -> subprocess.Popen:
        """A reader of what the microphone hears: raw s16le samples at the sink's rate and
        channel count on the returned process's stdout, as soon as they are rendered (for
        timing when played audio reaches recorders). End it with terminate()."""
        if not self.running:
            raise VirtualMicError("virtual microphone is not running")
        return subprocess.Popen(self._parec(client_name), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env)

    def _wait_for_data(self) -> None:
        """Return once a fresh recorder receives samples from the monitor (end-to-end check)."""
        probe = subprocess.Popen(
            self._parec("vmic-probe"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self.env,
        )
        try:
            ready, _, _ = select.select([probe.stdout], [], [], _START_TIMEOUT)
            if not ready or not os.read(probe.stdout.fileno(), 4096):
                raise VirtualMicError(
                    f"no samples from {SOURCE} within {_START_TIMEOUT} s:\n{self._log_tail()}"
                )
        finally:
            self._end(probe, "parec probe")
            probe.stdout.close()

    @staticmethod
    def _end(proc: subprocess.Popen | None, name: str) -> None:
        """Terminate one process we started, then kill it if it lingers."""
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM; killing it", name, proc.pid)
                proc.kill()
                proc.wait(_STOP_TIMEOUT)
        if proc.stderr:
            proc.stderr.close()

    def stop(self) -> None:
        """Kill everything start()/play() started: the microphone vanishes."""
        for player in self._players:
            self._end(player, "paplay")
        self._players.clear()
        self._end(self._keeper, "parec")
        self._keeper = None
        self._end(self._daemon, "pulseaudio")
        self._daemon = None
        if self._daemon_stdin is not None:
            os.close(self._daemon_stdin)
            self._daemon_stdin = None
        self.socket_path.unlink(missing_ok=True)

    def restart(self) -> None:
        """stop() then start() with the same settings and paths: the microphone comes back."""
        self.stop()
        self.start()

    def close(self) -> None:
        """stop(), restore os.environ and remove the temporary directories we created (final)."""
        self._closed = True
        try:
            self.stop()
        finally:
            self.restore_environ()
            if self._owns_root:
                shutil.rmtree(self.root, ignore_errors=True)
            if self._short_runtime is not None:
                shutil.rmtree(self._short_runtime, ignore_errors=True)

    def __enter__(self) -> VirtualMic:  # noqa: PYI034 - typing.Self needs 3.11
        try:
            self.start()
            self.patch_environ()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- playback --------------------------------------------------------

    def play(
        self, audio: np.ndarray | pathlib.Path | str, rate: int | None = None, wait: bool = True
    ) -> subprocess.Popen | None:
        """Play audio into the sink with paplay, in real time.

        ``audio`` is float samples in [-1, 1] (1-D mono, or frames x
        channels) at ``rate`` (default: the sink's rate; PulseAudio resamples
        other rates), or the path of a file libsndfile reads (``rate`` is
        then ignored).  With ``wait`` the call returns once the last sample
        has been rendered; otherwise the running paplay is returned (stop()
        ends it).
        """
        if not self.running:
            raise VirtualMicError("virtual microphone is not running")
        if isinstance(audio, (str, pathlib.Path)):
            path = pathlib.Path(audio)
            duration = None
        else:
            import soundfile  # only needed for arrays

            data = np.asarray(audio, dtype=np.float32)
            if data.ndim not in (1, 2):
                raise ValueError(f"audio must be 1-D or frames x channels, got shape {data.shape}")
            rate = int(rate or self.rate)
            self._play_count += 1
            path = self._play_dir / f"play-{self._play_count}.wav"
            # Float WAV: the sink's own conversion to s16 is the only rounding.
            soundfile.write(path, np.clip(data, -1.0, 1.0), rate, subtype="FLOAT")
            duration = len(data) / rate
        cmd = [
            "paplay",
            f"--device={SINK}",
            f"--latency-msec={_PLAY_LATENCY_MS}",
            "--client-name=vmic-play",
            str(path),
        ]
        if not wait:
            # Nobody reads a background player's stderr: send it to a file so
            # a chatty paplay can never block on a full pipe.
            with open(self.root / "paplay.log", "ab") as errf:
                proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf, env=self.env
                )
            self._players = [p for p in self._players if p.poll() is None] + [proc]
            return proc
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env
        )
        # Generous: real time plus start-up and drain.
        timeout = None if duration is None else duration + 30.0
        try:
            _, err = proc.communicate(timeout=timeout)
        except BaseException:  # timeout, or the test interrupted: no stray player
            self._end(proc, "paplay")
            raise
        if proc.returncode != 0:
            raise VirtualMicError(f"paplay failed ({proc.returncode}): {err.decode(errors='replace')}")
        if duration is not None:
            path.unlink(missing_ok=True)
        return None
