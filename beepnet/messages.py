"""The messages the processes send each other (pickled through multiprocessing queues).

recorder   --Chunk, Started, Heartbeat, SourceEnded, SourceFailed-->  supervisor
supervisor --Chunk (None = stop)-->                                   classifier
classifier --DetectorReady or DetectorFailed, Scored,
             BeepStarted, then Detection-->                        supervisor
supervisor --ListenRequest, SetHop-->                                 recorder
recorder   --ListenClip-->                                            supervisor
supervisor --Detection-->                                             notifier

Chunks travel as paths to 16-bit WAV files, never as audio, so a queue entry stays small and a
chunk survives on disk if a process dies while it waits.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Chunk:
    """A non-silent window the recorder wrote to disk."""

    path: str
    start_sample: int
    """Index of its first 16 kHz sample since the recorder's stream began."""
    start_time: float
    """Wall-clock time (epoch seconds) of its first sample, read from the clock when the
    window was complete: a person reads it, so it follows the clock when NTP sets it."""
    duration: float
    """Seconds of real audio in it (the file may be zero-padded at the end of a replay)."""
    peak_dbfs: float
    """Level of its loudest short frame, the figure the gate compared."""
    time_scale: float = 1.0
    """Wall seconds per stream second: 1/speed for a fast replay, else 1."""
    start_mono: float = 0.0
    """``time.monotonic()`` of its first sample: for durations and cooldowns, which a step
    of the wall clock (NTP setting a Pi's clock after boot) must not disturb."""


@dataclass(frozen=True)
class Started:
    """The first block of audio has been captured: the input really works."""

    device: str
    native_rate: int


@dataclass(frozen=True)
class Heartbeat:
    """About once a second: proof that audio is flowing, with running totals."""

    samples: int
    """16 kHz samples captured since the stream began."""
    level_dbfs: float
    """Loudest short frame since the previous heartbeat."""
    chunks_written: int
    chunks_skipped: int
    """Windows below the gate, not written."""
    write_errors: int
    overflows: int
    """Times the device reported lost input (samples the recorder never saw)."""


@dataclass(frozen=True)
class SourceEnded:
    """A replayed recording reached its end (never sent for a microphone)."""

    samples: int


@dataclass(frozen=True)
class SourceFailed:
    """The input could not be opened or stopped delivering; ``reason`` is one line."""

    reason: str


@dataclass(frozen=True)
class Scored:
    """The classifier's verdict on one chunk."""

    chunk: Chunk
    score: float
    labels: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    """Why the chunk could not be scored (vanished, unreadable); score is 0 then."""


@dataclass(frozen=True)
class BeepStarted:
    """A beep event has begun (its first positive chunk): its Detection follows once the
    pattern has ended. Should the classifier die in between, the supervisor alerts from
    this, without a clip."""

    chunk: Chunk
    score: float
    time: float
    offset: float
    mono: float = 0.0


@dataclass(frozen=True)
class Detection:
    """A beep pattern that has ended (`beepnet.daemon.pattern`), from its first beep."""

    chunk: Chunk
    """The chunk in which its first beep was heard."""
    score: float
    time: float
    """Wall-clock time of the first beep's start (epoch seconds)."""
    offset: float
    """Stream time of the first beep's start: seconds since the recorder's stream began."""
    clip_path: str
    """WAV clip of the whole pattern, with a little before and after, kept under
    storage.dir/alerts ("" when it could not be written)."""
    detector: str
    mono: float = 0.0
    """``time.monotonic()`` of the first beep's start (see Chunk.start_mono)."""
    length: float = 0.0
    """Seconds from the first beep's start to the last one's end."""
    clip_offset: float = 0.0
    """Seconds into the clip where the first beep starts."""


@dataclass(frozen=True)
class DetectorReady:
    """The classifier has loaded its detector."""

    description: str
    threshold: float


@dataclass(frozen=True)
class DetectorFailed:
    """The classifier could not load its detector and is about to exit."""

    reason: str
    """One line: what is wrong (the model file's problem, or the error)."""
    permanent: bool
    """True when loading again cannot help (a bad or missing model file, a bad setting)."""


@dataclass(frozen=True)
class ListenRequest:
    """The owner asked what the microphone hears (`/listen`): write the last seconds the
    recorder heard, gated or not, to ``path``."""

    path: str


@dataclass(frozen=True)
class ListenClip:
    """The recorder wrote ``seconds`` of its latest audio to ``path`` (``seconds`` 0: it had
    none yet, and wrote nothing)."""

    path: str
    seconds: float


@dataclass(frozen=True)
class SetHop:
    """Windows ``seconds`` apart from now on (None: audio.hop_seconds again). Denser while a
    beep pattern is open, so that its end is heard sooner (`beepnet.daemon.pattern`)."""

    seconds: float | None
