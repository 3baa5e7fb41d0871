"""`beepnet enroll`: record (or read) the owner's beeps and room, build, compare, switch.

    beepnet enroll [--presses N] [--press-seconds S] [--room-seconds S]   guided, live
    beepnet enroll --beeps FILE... [--room FILE...]                       from recordings
    beepnet enroll --use-shipped                                          switch back

``--room FILE`` with live presses skips the live room phase; ``--beeps FILE`` without
``--room`` takes the sound between the beeps for the room.

Everything it heard is kept in a folder it names (the owner's own clips: labelled training
data for later), the new model goes to ``<data dir>/models/``, and the config file in use
(or the user's, created when there is none) gets ``detector.model`` unless the new model
makes more mistakes than the model in use on the held-out clips (``--force`` overrides).
A running daemon with that config file is told to reload it (SIGHUP): it loads the new
model beside the one in use and switches once it is ready.

Exit status: 0 the new model is in use, 1 unusable input (no microphone, an unreadable
recording, too few beeps, too little room sound, a config file that cannot be written),
2 options that make no sense, 3 the new model was worse and the model in use stays.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..audio import SAMPLE_RATE
from ..config import Config
from ..model.modelfile import STEADY_WOBBLE_HZ

if TYPE_CHECKING:
    from .clips import Split
    from .head import Head

log = logging.getLogger(__name__)

WORSE = 3
"""Exit status when the new model was worse and the model in use stays (as `beepnet train`)."""
ROOM_GAP_S = 0.5
"""In file mode without --room: sound this far from any found beep stands for the room."""
TRAIN_BEEPS = 320
TRAIN_ROOM = 320
TRAIN_HARD = 200
"""Clips the head learns from: beeps, room, generated hard negatives (about 2 s to make and
run through the body on one core of a 2-core x86 machine; 10-20 s on a Pi 4)."""


class EnrollError(Exception):
    """What stops an enrolment; ``str()`` is the one line for the owner."""


class UsageError(EnrollError):
    """Options that make no sense (exit status 2)."""


def say(text: str) -> None:
    print(text, flush=True)


def run(cfg: Config, args) -> int:
    try:
        return _run(cfg, args)
    except EnrollError as e:
        print(f"beepnet: enroll: {e}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1


def _run(cfg: Config, args) -> int:
    from ..config import state_dir
    from .configfile import ConfigFileError, config_target, put_in_use, put_in_use_problem

    _check_numbers(args)
    target = config_target(cfg)
    problem = put_in_use_problem(cfg)
    if problem:
        raise EnrollError(problem)
    if args.use_shipped:
        try:
            how = put_in_use(cfg, "", "beepnet enroll --use-shipped")
        except ConfigFileError as e:
            raise EnrollError(str(e)) from None
        say(f"{how}: the shipped model is in use again (enrolled and retrained models stay "
            f"in {state_dir(cfg) / 'models'}).")
        _tell_daemon(cfg, target, "the shipped model")
        return 0

    stamp = time.strftime("%Y%m%d-%H%M%S")
    keep = Path(args.enroll_dir).expanduser() if args.enroll_dir else \
        state_dir(cfg) / "enroll" / stamp
    model_path = Path(args.model_out).expanduser() if args.model_out else \
        state_dir(cfg) / "models" / f"enrolled-{stamp}.safetensors"
    base_path, base = _base_model(cfg)

    heard = _get_audio(cfg, args)
    recordings, names, room = heard.recordings, heard.names, heard.room
    t0 = time.monotonic()
    from .clips import MIN_ROOM_S
    from .find import beep_table, find_machine_beeps

    beeps, wobble = find_machine_beeps(recordings, cfg.detector.tone_min_hz,
                                       cfg.detector.tone_max_hz)
    _keep(keep, heard, args.beeps or [])
    total = sum(len(x) for x in recordings) / SAMPLE_RATE
    if len(beeps) < 2:
        found = f"found {len(beeps)} beep{'s' if len(beeps) != 1 else ''} in {total:.0f} s"
        if heard.live:
            raise EnrollError(f"{found}: press the button closer to the microphone, or make "
                              f"the room quieter, and try again (the recordings are in {keep})")
        raise EnrollError(f"{found} of {', '.join(names)}: at least 2 are needed (recordings "
                          "with more beeps, or louder ones)")
    say(f"found {len(beeps)} beeps in {total:.0f} s:\n" + beep_table(beeps, names))
    (keep / "beeps.json").write_text(json.dumps(
        [{"recording": names[b.recording], "start": round(b.start, 3), "end": round(b.end, 3),
          "freq_hz": round(b.freq_hz, 1), "level_db": round(b.level_db, 1)} for b in beeps],
        indent=1) + "\n", encoding="utf-8")
    if room is None:
        room = _between_beeps(recordings, beeps)
        say(f"no room recording: using the {len(room) / SAMPLE_RATE:.0f} s between the beeps")
    else:
        _warn_beeps_in_room(room, beeps, cfg)
    if len(room) < MIN_ROOM_S * SAMPLE_RATE:
        raise EnrollError(f"only {len(room) / SAMPLE_RATE:.1f} s of room sound: at least "
                          f"{MIN_ROOM_S:g} s are needed (--room-seconds, or --room FILE)")

    new, current = _build(cfg, base, base_path, recordings, beeps, wobble, room, model_path)
    say(f"built {model_path} in {time.monotonic() - t0:.1f} s")
    return _decide(cfg, args, target, model_path, new, current, keep)


def _check_numbers(args) -> None:
    if args.use_shipped:
        if args.beeps or args.room or args.force:
            raise UsageError("--use-shipped only switches back to the shipped model: it takes "
                             "no recordings and no --force")
        return
    if args.presses < 2 and not args.beeps:
        raise UsageError("--presses must be at least 2")
    if args.press_seconds < 1.0:
        raise UsageError("--press-seconds must be at least 1")
    if args.room_seconds <= 0:
        raise UsageError("--room-seconds must be greater than 0")


def _warn_beeps_in_room(room: np.ndarray, beeps, cfg: Config) -> None:
    """The machine beeping while the room was recorded teaches the head that its beep is
    ordinary sound: say so (the comparison will then most likely keep the model in use)."""
    from .find import find_beeps

    pitch = float(np.median([b.freq_hz for b in beeps]))
    alike = [b for b in find_beeps(room, 0, cfg.detector.tone_min_hz, cfg.detector.tone_max_hz)
             if abs(b.freq_hz - pitch) <= 0.03 * pitch]
    if alike:
        say(f"warning: the room recording holds {len(alike)} beep(s) like yours (about "
            f"{pitch:.0f} Hz, first at {alike[0].start:.1f} s): did the machine beep while the "
            "room was recorded? The new model learns them as ordinary sound.")


def _base_model(cfg: Config):
    """The model whose body (and head, as the starting point) the new one gets: the model
    in use when it is a BeepNet, else the shipped one."""
    from ..model.arch import NetConfig
    from ..model.preflight import in_use_path
    from ..model.modelfile import ModelFileError, read_model_file
    from ..model.preflight import find_default_model

    path = in_use_path(cfg.detector)
    try:
        if path is not None:
            try:
                mf = read_model_file(path)
                # Its beep row is refitted against the other classes' rows: it needs some.
                if isinstance(mf.arch, NetConfig) and len(mf.labels) > 1:
                    return path, mf
                log.info("%s is not a BeepNet with classes besides beep; starting from the "
                         "shipped model", path)
            except ModelFileError as e:
                log.warning("the model in use cannot be read (%s); starting from the shipped "
                            "model", e)
        path = find_default_model()
        return path, read_model_file(path)
    except ModelFileError as e:
        raise EnrollError(str(e)) from None


@dataclass
class Heard:
    """The owner's audio at 16 kHz, and where it came from."""

    recordings: list[np.ndarray]
    """What holds the beeps: one take per press, or the --beeps files."""
    names: list[str]
    room: np.ndarray | None
    """None: take the sound between the beeps."""
    room_names: list[str]
    live: bool = False
    live_room: bool = False


def _get_audio(cfg: Config, args) -> Heard:
    from ..audio.files import AudioFileError, read_audio

    def read(paths: list[str]) -> list[np.ndarray]:
        out = []
        for p in paths:
            try:
                out.append(read_audio(p))
            except AudioFileError as e:
                raise EnrollError(f"{p}: {e}") from None
        return out

    room = np.concatenate(read(args.room)) if args.room else None
    room_names = [str(Path(p).resolve()) for p in args.room or []]
    if args.beeps:
        return Heard(read(args.beeps), [Path(p).name for p in args.beeps], room, room_names)
    takes, heard = _record(cfg, args, args.presses, None if args.room else args.room_seconds)
    names = [f"press-{i + 1}.wav" for i in range(len(takes))]
    if heard is not None:
        return Heard(takes, names, heard, ["room.wav"], live=True, live_room=True)
    return Heard(takes, names, room, room_names, live=True)


def _record(cfg: Config, args, presses: int, room_seconds: float | None):
    from ..audio.sources import SourceError
    from .capture import LiveInput, get_ready, guided

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    try:
        if interactive:
            # No microphone: say so before asking the owner to walk over to the machine.
            with LiveInput(cfg.audio.device, cfg.audio.block_ms):
                pass
            get_ready(presses, args.press_seconds, say, interactive)
        with LiveInput(cfg.audio.device, cfg.audio.block_ms) as live:
            log.info("recording from %s", live.description)
            if not interactive:
                get_ready(presses, args.press_seconds, say, interactive)
            return guided(live, presses, args.press_seconds, room_seconds, say)
    except SourceError as e:
        raise EnrollError(str(e)) from None


def _keep(folder: Path, heard: Heard, beep_files: list[str]) -> None:
    """What was recorded live, as 16 kHz WAV; the recordings given are listed in
    sources.txt."""
    from ..audio.wav import write_wav_atomic

    try:
        folder.mkdir(parents=True, exist_ok=True)
        if heard.live:
            for x, name in zip(heard.recordings, heard.names):
                write_wav_atomic(folder / name, x)
        if heard.live_room:
            write_wav_atomic(folder / "room.wav", heard.room)
        sources = [str(Path(p).resolve()) for p in beep_files] + \
            ([] if heard.live_room else heard.room_names)
        if sources:
            (folder / "sources.txt").write_text("\n".join(sources) + "\n", encoding="utf-8")
    except OSError as e:
        raise EnrollError(f"cannot keep the recordings in {folder}: {e.strerror or e}") \
            from None


def _between_beeps(recordings: list[np.ndarray], beeps) -> np.ndarray:
    """The beep recordings without the beeps (and `ROOM_GAP_S` around them)."""
    parts = []
    for i, x in enumerate(recordings):
        keep = np.ones(len(x), bool)
        for b in beeps:
            if b.recording == i:
                a = max(0, int((b.start - ROOM_GAP_S) * SAMPLE_RATE))
                keep[a:int((b.end + ROOM_GAP_S) * SAMPLE_RATE)] = False
        edges = np.flatnonzero(np.diff(np.r_[0, keep.astype(np.int8), 0]))
        parts += [x[a:b] for a, b in zip(edges[::2], edges[1::2])]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


@dataclass(frozen=True)
class Fitted:
    """What `fit` made: the new head, the machine's beep pitches and their timbres, the
    train/held-out split, and the window and the hop between windows in samples."""

    head: Head
    pitches: list[float]
    timbres: list[dict | None]
    split: Split
    size: int
    hop: int
    min_notes: int = 1
    """2 when the beep is a tune (`find.min_notes`)."""
    wobble_hz: float = STEADY_WOBBLE_HZ
    """The wobble of the beep's pitch that the check allows (`find.beep_wobble`)."""


def fit(base, recordings, beeps, room, wobble_hz: float = STEADY_WOBBLE_HZ) -> Fitted:
    """The base model's head refitted on the found beeps (`find.machine_beeps`) and the
    room, with the beeps' pitches and timbres, and the wobble the pitch check allows
    (``wobble_hz``, from `find.machine_beeps`). No file is written."""
    from ..detectors import timbre
    from ..detectors.beepnet import has_pitch, pitch_tracker
    from ..model.npnet import NumpyBeepNet, limit_blas_threads
    from . import clips
    from .find import beep_pitches, beep_timbres, min_notes
    from .head import THRESHOLD_RANGE, TIMBRE_CHECKED_MAX, fit_head

    limit_blas_threads(1)
    net = NumpyBeepNet(base.arch, base.tensors)
    size = int(round(float(base.meta.get("window_seconds", 3.0)) * SAMPLE_RATE))
    pitches = beep_pitches(beeps)
    timbres = beep_timbres(recordings, beeps)
    s = clips.split(recordings, beeps, room, size)
    rng = np.random.default_rng(0)
    # Generated one at a time as the features are computed: as a list they would be 100 MB.
    others = itertools.chain(clips.room_clips(s, TRAIN_ROOM, size, rng),
                             clips.hard_negatives(s.room, TRAIN_HARD, size, rng))
    tones = pitch_tracker(pitches, SAMPLE_RATE, wobble_hz)
    notes = min_notes(beeps)
    hop = int(round(float(base.meta.get("hop_seconds", 1.5)) * SAMPLE_RATE))
    at_pitch = [w for w in clips.windows(s.room, size, hop)
                if has_pitch(tones, w, pitches, timbres, notes)]
    head = fit_head(base, net, clips.beep_clips(s, TRAIN_BEEPS, size, rng), others,
                    highest=TIMBRE_CHECKED_MAX if timbre.every_pitch_has_one(timbres)
                    else THRESHOLD_RANGE[1], at_pitch=at_pitch)
    return Fitted(head, pitches, timbres, s, size, hop, notes, wobble_hz)


def _build(cfg: Config, base, base_path: Path, recordings, beeps, wobble: float, room,
           model_path: Path):
    """Fit, write and score the new model; (its Score, the model in use's Score or None)."""
    from ..model.compare import load_in_use, score_detector
    from ..model.modelfile import ModelFileError
    from ..detectors.timbre import describe
    from . import clips
    from .head import write_enrolled

    fitted = fit(base, recordings, beeps, room, wobble)
    head, s, size, hop = fitted.head, fitted.split, fitted.size, fitted.hop
    for f, ref in zip(fitted.pitches, fitted.timbres):
        say(f"the beep at {f:.0f} Hz: " + (describe(ref) if ref is not None else
                                           "too few beeps to learn its timbre"))
    if fitted.min_notes > 1:
        say(f"the beep is a tune: an alert needs {fitted.min_notes} of its notes, so that a "
            "single note of music at one of its pitches does not pass")
    if fitted.wobble_hz != STEADY_WOBBLE_HZ:
        say(f"the beep's pitch wobbles more than most beeps' (short tones of a ringing "
            f"piezo do): the pitch check allows {fitted.wobble_hz:.0f} Hz of wobble, not 5")
    if head.room_at_pitch:
        say(f"{head.room_at_pitch} window(s) of the room recording hold a tone at the "
            "beep's pitch, with its timbre (music? another appliance?): the new model's "
            f"threshold goes above them, as far as your beeps allow ({head.threshold:.2f})")
    sha = hashlib.sha256()
    for x in [*recordings, room]:
        sha.update(np.asarray(x, np.float32).tobytes())
    metrics = {"enrolled_beeps": len(beeps), "enrolled_room_seconds":
               round(len(room) / SAMPLE_RATE, 1), "base_model": Path(base_path).name}
    try:
        write_enrolled(model_path, base, head, metrics=metrics, data_sha256=sha.hexdigest(),
                       beep_pitches_hz=fitted.pitches, beep_timbre=fitted.timbres,
                       beep_min_notes=fitted.min_notes, beep_wobble_hz=fitted.wobble_hz)
        os.chmod(model_path, 0o644)  # the service's own user reads it
    except OSError as e:
        raise EnrollError(f"cannot write {model_path}: {e.strerror or e}") from None

    beep_clips, other_clips = clips.heldout_clips(s, size, hop)
    held = beep_clips + other_clips
    is_beep = [True] * len(beep_clips) + [False] * len(other_clips)
    # As the daemon would run it: a detector.threshold in the config applies to it too.
    try:
        new = score_detector(load_in_use(replace(cfg.detector, kind="beepnet",
                                                 model=str(model_path))),
                             held, is_beep, "new")
    except ValueError as e:
        raise EnrollError(f"the new model cannot be loaded: {e}") from None
    try:
        current = score_detector(load_in_use(cfg.detector), held, is_beep, "in use")
    except ValueError as e:  # ModelFileError: the model in use cannot even be loaded
        say(f"the model in use cannot be loaded ({e}): nothing to compare with")
        current = None
    metrics.update({"heldout_beeps": new.beeps, "heldout_caught": new.caught,
                    "heldout_negatives": new.negatives,
                    "heldout_false_positives": new.false_positives})
    try:
        write_enrolled(model_path, base, head, metrics=metrics, data_sha256=sha.hexdigest(),
                       beep_pitches_hz=fitted.pitches, beep_timbre=fitted.timbres,
                       beep_min_notes=fitted.min_notes, beep_wobble_hz=fitted.wobble_hz)
        os.chmod(model_path, 0o644)
    except (OSError, ModelFileError) as e:
        raise EnrollError(f"cannot write {model_path}: {e}") from None
    return new, current


def _decide(cfg: Config, args, target: Path, model_path: Path, new, current, keep: Path
            ) -> int:
    from ..model.compare import is_worse, side_by_side
    from .configfile import ConfigFileError, put_in_use

    if current is not None:
        say(side_by_side(new, current))
        if is_worse(new, current) and not args.force:
            # Exit status 3, as `beepnet train` when its new model is worse.
            print(f"beepnet: enroll: kept the model in use: the new one makes more mistakes "
                  f"on the held-out clips ({new.errors} against {current.errors}). It is "
                  f"saved as {model_path}: to use it anyway, set detector.model = "
                  f"\"{model_path}\" in {target} (or enroll again with --force). Your "
                  f"recordings are in {keep}.", file=sys.stderr)
            return WORSE
    try:
        say(put_in_use(cfg, str(model_path), "beepnet enroll"))
    except ConfigFileError as e:
        raise EnrollError(f"{e} (the new model is saved as {model_path})") from None
    if 0 < cfg.detector.threshold:
        from ..model.modelfile import read_header

        own = read_header(model_path).threshold
        say(f"note: detector.threshold = {cfg.detector.threshold:g} overrides the new model's "
            f"own threshold ({own:.3f}); remove it from {target} to use the model's")
    say(f"your recordings are in {keep}")
    say("to switch back to the shipped model: beepnet enroll --use-shipped"
        + (f" --config {target}" if cfg.origin.path else ""))
    _tell_daemon(cfg, target, "the new model")
    return 0


def _tell_daemon(cfg: Config, target: Path, what: str) -> None:
    """Have a running daemon with this config load ``what`` now, and say what happened."""
    from ..daemon.running import tell_daemon

    say(tell_daemon(cfg, target, what))
