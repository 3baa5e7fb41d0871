"""The `beepnet` command.

    beepnet run      [--source mic|FILE] [--speed N]   listen and alert (the daemon)
    beepnet detect   [--json] FILE...                  find beeps in recordings
    beepnet record   [--minutes N] [--out DIR]         collect chunks for training
    beepnet synth    OUT_DIR [--n N] [--seed S]        generate labelled training clips
    beepnet train    DATA_DIR --out MODEL [--init default]  train a BeepNet model
    beepnet train    --feedback [DATA_DIR]             learn the answers to alerts, use it
    beepnet evaluate DATA_DIR --model MODEL [--out DIR]  report, confusion matrix, PR curve
    beepnet config                                     print the effective config
    beepnet devices                                    list input devices
    beepnet monitor  [--source mic|FILE] [--speed N]   live view of what the daemon hears
    beepnet label    [DIR] [--out DIR] [--labels A,B]  label recorded chunks, one key a clip
    beepnet label    --unsure                          label what the bot's /missed kept
    beepnet model    info MODEL | convert OLD.pt NEW   show a model file; convert a 0.1 one
    beepnet enroll   [--beeps FILE... [--room FILE...]]  learn your machine's beep
    beepnet history  [-n N] [--json | --plot FILE.png]  past cycles: when, how long, how ended

Every subcommand takes --config PATH and --set section.key=value (repeatable). Exit status:
0 fine, 1 a file or device could not be used, 2 bad usage, 78 bad configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path

from . import __version__, config, logs
from .audio import SAMPLE_RATE
from .config import EX_CONFIG, Config, ConfigError

log = logging.getLogger("beepnet")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH", help="TOML config file (default: "
                   "$BEEPNET_CONFIG if set, else the first that exists of "
                   "$XDG_CONFIG_HOME/beepnet/beepnet.toml (~/.config/beepnet/beepnet.toml) "
                   "and /etc/beepnet/beepnet.toml)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE", help="override one config value (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")


def _source(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--source", default="mic", metavar="mic|FILE",
                   help=f"{what}'mic' (default) or a recording to replay through the same "
                   "pipeline")
    p.add_argument("--speed", type=float, default=1.0, metavar="N",
                   help="replay a --source file N times faster than real time")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="beepnet", description="Hears your appliance's end-of-cycle beep and tells you.")
    parser.add_argument("--version", action="version", version=f"beepnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="listen and alert (what the service runs)")
    _common(p)
    _source(p, "")

    p = sub.add_parser("detect", help="find beeps in recordings")
    _common(p)
    p.add_argument("--model", metavar="PATH", help="model file (sets detector.model)")
    p.add_argument("--json", action="store_true",
                   help="one JSON line per beep: file, start, end, score")
    p.add_argument("files", nargs="+", metavar="FILE")

    p = sub.add_parser("record", help="collect non-silent chunks for training")
    _common(p)
    _source(p, "")
    p.add_argument("--minutes", type=float, metavar="N", help="stop after N minutes")
    p.add_argument("--out", metavar="DIR", help="where chunks go (sets record.dir)")

    p = sub.add_parser("config", help="print the effective config, secrets hidden")
    _common(p)
    p.add_argument("--example", action="store_true",
                   help="print the commented example config instead")

    p = sub.add_parser("devices", help="list the input devices PyAudio sees")
    _common(p)

    p = sub.add_parser("monitor", help="full-screen live view of what the daemon hears "
                       "(runs the pipeline itself when no daemon is running)")
    _common(p)
    _source(p, "without a running daemon: ")

    p = sub.add_parser("notify-test", help="send a test message and clip to the Telegram chat")
    _common(p)

    p = sub.add_parser("doctor", help="check microphone, detector, LAME, Telegram, the MQTT "
                       "broker, other channels, the heartbeat URL, disk, service")
    _common(p)
    p.add_argument("--no-mic", action="store_true", help="skip the microphone check")
    p.add_argument("--send-test", action="store_true",
                   help="also send a test message through every channel (Telegram, each "
                   "Apprise URL) and call the heartbeat URL once")

    p = sub.add_parser("mqtt", help="Home Assistant over MQTT: this listener's device and "
                       "topics, and a round trip through the broker")
    _common(p)
    p.add_argument("--remove", action="store_true",
                   help="clear this listener's retained discovery and states from the broker, "
                   "so Home Assistant forgets the device (stop the daemon first)")

    p = sub.add_parser("synth", help="generate labelled 3-s training clips (BeepNet)")
    _common(p)
    p.add_argument("out_dir", metavar="OUT_DIR", help="clips go to OUT_DIR/<label>/*.wav")
    p.add_argument("--n", type=int, default=2000, metavar="N", help="number of clips")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--preset", default="train", choices=("train", "heldout", "user", "real"),
                   help="class shares and SNR/reverb ranges (heldout: a harder mix; user: one "
                   "appliance's beep in one home, like a user's first labelled set; real: "
                   "generated and real recordings, needs --real)")
    p.add_argument("--real", metavar="DIR", help="real recordings fetched by `python -m "
                   "beepnet.training.realsounds fetch DIR` (the real preset)")
    p.add_argument("--appliance", type=int, metavar="N",
                   help="user preset: which appliance and room (default: the seed); the same "
                   "N with another seed gives new recordings of the same beep")

    p = sub.add_parser(
        "train", help="train a BeepNet model on DATA_DIR/<label>/*.wav",
        description="Train a BeepNet model on DATA_DIR/<label>/*.wav (beep: the beeps; any "
        "other folder: sounds that are not). Clips recorded together stay on one side of the "
        "train/validation split (sessions from `beepnet record` or `beepnet synth` file "
        "names, else shared audio, else file times, else each file alone). The new model "
        "and the detector in use (detector.kind/model) are then scored side by side on the "
        "validation clips; a new model that makes more mistakes does not replace MODEL if it "
        "exists or is the model in use: it is written to <stem>.rejected.safetensors beside "
        "it and the exit status is 3 (--force replaces anyway). With --feedback: learn the "
        "owner's corrections (storage.dir/feedback: the buttons under alerts, `beepnet label "
        "--unsure`) beside DATA_DIR (default: generated clips), starting from the model in "
        "use, and put the new model in use (detector.model; a running beepnet reloads) "
        "unless it is worse on the owner's held-out alerts; where PyTorch is not installed "
        "(or with --head) only the model's beep output is refitted, in numpy.",
        epilog="Exit status: 0 saved (with --feedback: and in use), 1 bad data or files, 2 bad "
        "usage, 3 the new model was worse and kept aside, 78 bad configuration.")
    _common(p)
    p.add_argument("data_dir", nargs="?", metavar="DATA_DIR",
                   help="labelled clips (with --feedback: learned beside the corrections; "
                   "default retrain.data_dir, else generated clips)")
    p.add_argument("--out", dest="model_out", metavar="MODEL",
                   help="model file to write (with --feedback: default "
                   "storage.dir/models/retrained-<time>.safetensors)")
    p.add_argument("--feedback", action="store_true",
                   help="learn the corrections kept under storage.dir/feedback, starting from "
                   "the model in use, and put the new model in use unless it is worse")
    p.add_argument("--head", action="store_true",
                   help="with --feedback: refit only the model's beep output, in numpy, in "
                   "seconds (what --feedback does where PyTorch is not installed)")
    p.add_argument("--force", action="store_true",
                   help="write MODEL even when the new model is worse than the one in use")
    p.add_argument("--epochs", type=int, metavar="N",
                   help="at most N epochs (default 15; with --feedback retrain.epochs, 6)")
    p.add_argument("--seed", type=int, default=0, metavar="N")
    p.add_argument("--lr", type=float, default=3e-3, metavar="RATE",
                   help="learning rate (default 0.003; a third of it with --init, and "
                   "--features-share of that for the layers before the classifier)")
    p.add_argument("--features-share", type=float, metavar="SHARE",
                   help="with --init: the layers before the classifier learn at SHARE of "
                   "its rate (default 0.3, so that a few hundred chunks of one home keep "
                   "the start model's features; 1: one rate, as make model uses)")
    p.add_argument("--threads", type=int, default=2, metavar="N",
                   help="CPU threads for torch (default 2)")
    p.add_argument("--arch", default="beepnet", choices=("beepnet", "original"),
                   help="network: beepnet (default) or the original 2-filter net (a baseline)")
    p.add_argument("--init", metavar="MODEL|default",
                   help="start from this model's weights ('default': the shipped model); "
                   "classes with the same name keep their outputs")

    p = sub.add_parser("evaluate", help="score a model on DATA_DIR/<label>/*.wav: per-class "
                       "report, confusion matrix, beep precision/recall, PNG figures")
    _common(p)
    p.add_argument("data_dir", metavar="DATA_DIR", help="labelled clips in DATA_DIR/<label>/ "
                   "(beep and negative classes, as for train)")
    # dest names differ from --model/--out: main() turns those into detector/record settings.
    p.add_argument("--model", dest="eval_model", required=True, metavar="PATH",
                   help="model file to evaluate")
    p.add_argument("--out", dest="report_dir", metavar="DIR", help="where report.json and the "
                   "PNGs go (default: evaluation/<model>_<data>/)")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="operating threshold on P(beep) (default: the model's own)")

    p = sub.add_parser("enroll", help="teach beepnet your machine's beep: press its button a "
                       "few times, then let the room sound as usual; builds a model for that "
                       "beep and puts it in use unless it is worse than the model in use")
    _common(p)
    p.add_argument("--presses", type=int, default=5, metavar="N",
                   help="button presses asked for (default 5)")
    p.add_argument("--press-seconds", type=float, default=4.0, metavar="S",
                   help="seconds recorded per press (default 4)")
    p.add_argument("--room-seconds", type=float, default=120.0, metavar="S",
                   help="seconds of ordinary room sound recorded (default 120)")
    p.add_argument("--beeps", nargs="+", metavar="FILE", help="use these recordings of the "
                   "beep instead of recording presses")
    p.add_argument("--room", nargs="+", metavar="FILE", help="use these recordings of the "
                   "room instead of recording it (default with --beeps: the sound between "
                   "the beeps)")
    # dest names differ from --model/--out: main() turns those into detector/record settings.
    p.add_argument("--dir", dest="enroll_dir", metavar="DIR", help="where the recordings are "
                   "kept (default: <storage dir>/enroll/<date>)")
    p.add_argument("--model-out", dest="model_out", metavar="PATH", help="the new model file "
                   "(default: <storage dir>/models/enrolled-<date>.safetensors)")
    p.add_argument("--force", action="store_true", help="put the new model in use even if it "
                   "makes more mistakes than the model in use on the held-out clips")
    p.add_argument("--use-shipped", action="store_true", help="only switch back to the shipped "
                   "model (sets detector.model = \"\" in the config file)")

    p = sub.add_parser("label", help="label recorded chunks one key a clip: plays each, shows "
                       "its spectrum, suggests a label from the model, moves it into a folder")
    _common(p)
    p.add_argument("in_dir", nargs="?", metavar="UNLABELLED_DIR",
                   help="the chunks to label (default: record.dir, data/unlabelled)")
    # dest names differ from --model/--out: main() turns those into detector/record settings.
    p.add_argument("--out", dest="labelled_dir", metavar="LABELLED_DIR",
                   help="labelled clips go to LABELLED_DIR/<label>/ (default: labelled/ beside "
                   "UNLABELLED_DIR)")
    p.add_argument("--labels", metavar="A,B,...", help="labels to offer besides beep and the "
                   "folders already in LABELLED_DIR (default when there are none: not_beep)")
    p.add_argument("--model", dest="label_model", metavar="PATH", help="model for suggestions "
                   "(default: detector.model, else the shipped one)")
    p.add_argument("--no-model", action="store_true", help="no suggestions")
    p.add_argument("--player", metavar="CMD|none", help="command that plays a clip (its path "
                   "is appended; default: the first of aplay, paplay, pw-play, ffplay, afplay)")
    p.add_argument("--unsure", action="store_true", help="label the clips the bot's /missed "
                   "kept (every folder under <storage dir>/feedback/unsure) into "
                   "<storage dir>/feedback/<label>/, where `beepnet train` finds them; takes "
                   "no UNLABELLED_DIR and no --out")

    p = sub.add_parser("history", help="the washing cycles heard: when, how long, how they "
                       "ended, phases, reminders, who emptied the machine",
                       epilog="Exit status: 0 shown (also when there is no history yet), 1 the "
                       "history cannot be read or --plot has nothing to draw or cannot write "
                       "FILE, 2 bad usage or --plot without matplotlib.")
    _common(p)
    p.add_argument("-n", dest="limit", type=int, metavar="N",
                   help="the last N cycles (default 20; with --plot 5)")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true",
                       help="a JSON list of the cycles, every field, times in epoch seconds")
    shown.add_argument("--plot", metavar="FILE.png", help="draw each cycle's sound level, "
                       "phases, beep and time-left estimate into a PNG (needs matplotlib)")

    p = sub.add_parser("model", help="show what a model file holds, or convert a beepnet 0.1 "
                       ".pt model to today's format")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    q = msub.add_parser("info", help="labels, threshold, architecture, validation figures")
    _common(q)
    q.add_argument("model_path", metavar="MODEL")
    q.add_argument("--json", action="store_true", help="the file's metadata as JSON")
    q = msub.add_parser("convert", help="rewrite a beepnet 0.1 .pt model as a .safetensors "
                        "model file (needs the train extra)")
    _common(q)
    q.add_argument("old", metavar="OLD.pt")
    q.add_argument("new", metavar="NEW.safetensors")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = _overrides(args)
    if getattr(args, "speed", 1.0) <= 0:
        print("beepnet: --speed must be greater than 0", file=sys.stderr)
        return 2
    try:
        cfg = config.load(args.config, overrides)
        _check_detector_args(cfg, args.command)
    except ConfigError as e:
        print(f"beepnet: config error: {e}", file=sys.stderr)
        return EX_CONFIG
    logs.setup("debug" if args.verbose else cfg.log.level,
               config.secrets(cfg))
    for warning in config.startup_warnings(cfg, args.command):
        log.warning("%s", warning)
    if cfg.origin.chosen is not None:
        from .model.inuse import describe

        log.info("%s", describe(cfg.origin.chosen))
    try:
        return COMMANDS[args.command](cfg, args)
    except ConfigError as e:  # found once the command looks closer (an Apprise URL ...)
        print(f"beepnet: config error: {e}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130


def _overrides(args) -> list[str]:
    """The settings given on the command line, as ``--set`` assignments."""
    overrides = list(args.overrides)
    if getattr(args, "model", None):
        # A model file only makes sense for the learned detector: --model implies it.
        overrides += ["detector.kind=beepnet", f"detector.model={args.model}"]
    if getattr(args, "out", None):
        overrides.append(f"record.dir={args.out}")
    return overrides


USES_DETECTOR = ("run", "detect", "monitor")
"""The commands whose model file is checked at start (doctor reports it as a check)."""


def _check_detector(cfg: Config, with_model: bool) -> None:
    """ConfigError when the detector settings cannot work; ``with_model``: read the model
    file's header too."""
    if cfg.detector.model and cfg.detector.kind == "tone":
        raise ConfigError("detector.model is set, but detector.kind = 'tone' uses no model")
    # Caught here, before any process starts: a bad file would only stop the classifier,
    # and a hostile one is refused before anything is built from it. The shipped model
    # (detector.model empty) is checked the same way.
    if cfg.detector.kind == "beepnet" and with_model:
        from .model.preflight import model_problem

        problem = model_problem(cfg.detector.model or None, cfg.detector.runtime)
        if problem:
            raise ConfigError(problem)


def _check_detector_args(cfg: Config, command: str) -> None:
    try:
        _check_detector(cfg, command in USES_DETECTOR)
    except ConfigError as e:
        if command == "run" and cfg.telegram.enabled:
            # The service stops for good (exit 78 is not restarted): its owner must hear why.
            _tell_owner_detector(cfg, str(e))
        raise


START_FAILURE_DRAIN_SECONDS = 5.0
"""How long `beepnet run` that cannot start waits for its message to reach Telegram (if it
does not, the message stays in the outbox for the next start)."""


def _tell_owner_detector(cfg: Config, problem: str) -> None:
    from .daemon.supervisor import detector_fatal_text

    # Warnings only: the caller prints the one line for the terminal; the delivery thread
    # may still log a failure, with the token hidden.
    logs.setup("warning", config.secrets(cfg))
    try:
        notifier = make_notifier(cfg)
        notifier.start()
    except OSError as e:
        log.warning("cannot queue a Telegram message (%s)", e.strerror or e)
        return
    notifier.message("detector", detector_fatal_text(problem))
    notifier.close(timeout=START_FAILURE_DRAIN_SECONDS)


def cmd_config(cfg: Config, args) -> int:
    if args.example:
        sys.stdout.write(config.EXAMPLE.read_text(encoding="utf-8"))
        return 0
    # A comment, so the output stays a valid config file.
    sys.stdout.write(f"# config file: {config.describe(cfg)}\n" + config.to_toml(cfg))
    return 0


def cmd_devices(cfg: Config, args) -> int:
    from .audio.sources import list_input_devices

    devices = list_input_devices()
    if not devices:
        print("no input devices found (is the microphone plugged in? `arecord -l` lists what "
              "ALSA sees)", file=sys.stderr)
        return 1
    print("\n".join(devices))
    return 0


def cmd_run(cfg: Config, args) -> int:
    from .daemon.supervisor import Supervisor

    if args.source != "mic" and not Path(args.source).exists():
        print(f"beepnet: {args.source}: no such file", file=sys.stderr)
        return 1
    log.info("beepnet %s: %s", __version__, config.summary(cfg))
    try:
        notifier = make_notifier(cfg, receive=True)
        notifier.start()
        sup = Supervisor(cfg, notifier, source=args.source, speed=args.speed,
                         reload=_reloader(cfg, args))
        notifier.answer_for(sup)
        try:
            status = sup.run()
        finally:
            notifier.close(timeout=10.0)
    except OSError as e:
        print(f"beepnet: cannot use {e.filename or cfg.storage.path}: {e.strerror or e} "
              "(check storage.dir / storage.runtime_dir)", file=sys.stderr)
        return 1
    if args.source != "mic":
        _print_replay_summary(args.source, sup, notifier)
    return status


def _reloader(cfg: Config, args):
    """What SIGHUP reads: the config file found at start (even if another one has appeared
    on the search path since), with the same command-line settings, checked as at start."""
    path, overrides = cfg.origin.path or args.config, _overrides(args)

    def reload() -> Config:
        new = config.load(path, overrides)
        _check_detector(new, with_model=True)
        return new

    return reload


def make_notifier(cfg: Config, receive: bool = False):
    from .daemon.running import make_notifier

    return make_notifier(cfg, receive)


def _print_replay_summary(source: str, sup, notifier) -> None:
    s = sup.stats
    alerts = notifier.alerts
    print(f"{source}: {s.samples / SAMPLE_RATE:.1f} s of audio, {s.chunks_scored} chunk(s) "
          f"classified, {len(alerts)} beep alert(s)"
          + (f" ({notifier.suppressed} more beep(s) within the cooldown)"
             if notifier.suppressed else ""))
    for a in alerts:
        print(f"  ALERT beep at {a['offset']:.1f} s into the recording, score {a['score']:.2f}, "
              f"clip {a['clip']}")
    on_disk, in_memory = notifier.undelivered()
    if on_disk:
        print(f"{on_disk} message(s) not sent to Telegram yet, kept in "
              f"{notifier.outbox.dir}: the next `beepnet run` sends them")
    if in_memory:
        print(f"{in_memory} message(s) not sent to Telegram and lost (the outbox could not "
              "be written)")


def cmd_detect(cfg: Config, args) -> int:
    from .audio.files import AudioFileError
    from .detect import detect_file
    from .detectors import load_detector

    try:
        detector = load_detector(cfg.detector)
    except ValueError as e:  # e.g. a missing or corrupt model file (ModelFileError)
        print(f"beepnet: {e}", file=sys.stderr)
        return 1
    status = 0
    for path in args.files:
        try:
            result = detect_file(path, detector, cfg.audio)
        except AudioFileError as e:
            print(f"beepnet: {path}: {e}", file=sys.stderr)
            status = 1
            continue
        for ev in result.events:
            if args.json:
                print(json.dumps({"file": path, "start": round(ev.start, 3),
                                  "end": round(ev.end, 3), "score": round(ev.score, 4)}))
            else:
                print(f"{path}: beep {ev.start:.2f}-{ev.end:.2f} s (score {ev.score:.2f})")
        if not args.json and not result.events:
            print(f"{path}: no beep ({result.duration:.1f} s)")
        sys.stdout.flush()
    return status


def cmd_record(cfg: Config, args) -> int:
    from .audio.sources import SourceError
    from .daemon.recorder import Recorder, make_source
    from .messages import Chunk, SourceFailed

    out = Path(cfg.record.dir).expanduser()
    deadline = time.monotonic() + args.minutes * 60 if args.minutes else None
    count = 0

    def emit(msg: object) -> None:
        nonlocal count
        if isinstance(msg, Chunk):
            count += 1
            if sys.stderr.isatty():
                print(f"\r{count} chunk(s) kept in {out}", end="", file=sys.stderr, flush=True)
            else:
                log.info("kept %s (%d so far)", Path(msg.path).name, count)
        elif isinstance(msg, SourceFailed):
            log.error("%s", msg.reason)

    stopped: list[int] = []

    def should_stop() -> bool:
        return bool(stopped) or (deadline is not None and time.monotonic() >= deadline)

    # Ctrl-C and SIGTERM end the recording between blocks, never in the middle of a write.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stopped.append(signum))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"beepnet: cannot create {out}: {e.strerror or e}", file=sys.stderr)
        return 1
    rec = Recorder(cfg.audio, out, emit, should_stop)
    source = make_source(cfg.audio, args.source, args.speed)
    status = 0
    try:
        rec.run(source, 1.0 if args.source == "mic" else 1.0 / args.speed)
    except SourceError as e:
        print(f"beepnet: {e}", file=sys.stderr)
        status = 1
    finally:
        if sys.stderr.isatty():
            print(file=sys.stderr)
    if status == 0 or count:
        print(f"recorded {count} chunk(s) into {out} ({rec.skipped} quiet window(s) skipped)")
    return status


def cmd_notify_test(cfg: Config, args) -> int:
    import asyncio

    import numpy as np

    from .notify.mp3 import encode_mp3
    from .notify.telegram import self_test
    from .training import synth

    t = cfg.telegram
    if not t.enabled:
        missing = [n for n, v in (("telegram.token (or BEEPNET_TELEGRAM_TOKEN)", t.token),
                                  ("telegram.chat_id (or BEEPNET_TELEGRAM_CHAT_ID)", t.chat_id))
                   if not v]
        print("beepnet: config error: Telegram is not configured: set " + " and ".join(missing),
              file=sys.stderr)
        return EX_CONFIG
    beep = synth.beep(2900.0, 0.4)
    audio = encode_mp3(np.concatenate([np.zeros(4000, np.float32), beep, np.zeros(2000, np.float32),
                                       beep, np.zeros(4000, np.float32)]))
    ok = asyncio.run(self_test(t.token, t.chat_id, t.api_url, audio))
    return 0 if ok else 1


def cmd_monitor(cfg: Config, args) -> int:
    from .monitor.app import cmd_monitor as monitor

    return monitor(cfg, args)


def cmd_doctor(cfg: Config, args) -> int:
    from .doctor import run_checks

    ok = run_checks(cfg, args.config or None, mic=not args.no_mic, send_test=args.send_test)
    return 0 if ok else 1


def cmd_mqtt(cfg: Config, args) -> int:
    from .mqtt.discovery import config_topics
    from .mqtt.link import MqttError, MqttLink, remove

    if not cfg.mqtt.enabled:
        print("beepnet: config error: MQTT is off: set mqtt.host (README, Home Assistant)",
              file=sys.stderr)
        return EX_CONFIG
    link = MqttLink.from_config(cfg, on_emptied=lambda: "", on_mute=lambda on: None)
    if args.remove:
        try:
            cleared = remove(link)
        except MqttError as e:
            print(f"beepnet: {e}", file=sys.stderr)
            return 1
        print(f"cleared {len(cleared)} retained topic(s) of {link.device_id} at {link.where}: "
              "Home Assistant removes the device")
        return 0
    t = link.topics
    print(f"device      {link.device_id} (client id {link.client_id}) at {link.where}")
    print(f"state       {t.root}/...  (availability {t.availability})")
    print("discovery   " + "\n            ".join(config_topics(t)))
    problem = link.check()
    print(f"broker      {problem or 'publish/subscribe round trip ok'}")
    return 1 if problem else 0


def cmd_synth(cfg: Config, args) -> int:
    from .training.dataset import generate

    if args.n < 1:
        print("beepnet: --n must be at least 1", file=sys.stderr)
        return 2
    from .training.realsounds import FetchError

    try:
        manifest = generate(args.out_dir, args.n, args.seed, args.preset,
                            progress=sys.stderr.isatty(), appliance=args.appliance,
                            real=args.real)
    except (ValueError, FetchError) as e:
        print(f"beepnet: synth: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.n} clip(s) into {args.out_dir} (manifest {manifest})")
    return 0


def cmd_train(cfg: Config, args) -> int:
    from .model.compare import side_by_side
    from .model.modelfile import ModelFileError
    from .training.train import TrainError, train

    if (args.epochs is not None and args.epochs < 1) or args.threads < 1 or not args.lr > 0:
        print("beepnet: train: --epochs and --threads must be at least 1, --lr above 0",
              file=sys.stderr)
        return 2
    if args.features_share is not None and not 0 <= args.features_share <= 1:
        print("beepnet: train: --features-share must be between 0 and 1", file=sys.stderr)
        return 2
    if args.features_share is not None and (not args.init or args.feedback):
        print("beepnet: train: --features-share only goes with --init", file=sys.stderr)
        return 2
    if args.head and not args.feedback:
        print("beepnet: train: --head only goes with --feedback", file=sys.stderr)
        return 2
    if args.feedback:
        from .training.retrain import run

        return run(cfg, args)
    if not args.data_dir or not args.model_out:
        print("beepnet: train: give DATA_DIR and --out MODEL (or --feedback to learn the "
              "corrections kept from alerts)", file=sys.stderr)
        return 2
    try:
        r = train(args.data_dir, args.model_out, epochs=args.epochs or 15, seed=args.seed,
                  threads=args.threads, arch=args.arch, init=args.init, lr=args.lr,
                  current=cfg.detector, force=args.force,
                  features_share=args.features_share)
    except (TrainError, ModelFileError) as e:
        print(f"beepnet: train: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the model file or its folder cannot be written
        print(f"beepnet: train: cannot write {e.filename or args.model_out}: "
              f"{e.strerror or e}", file=sys.stderr)
        return 1
    except ImportError as e:  # pandas, scikit-learn, tqdm come with the [train] extra
        print(f"beepnet: train needs {e.name or e}: pip install 'beepnet[train]'",
              file=sys.stderr)
        return 1
    v = r.val
    if r.machine is not None:
        print(r.machine.describe())
    for c in r.scores or []:
        print(side_by_side(c.new, c.current, c.title))
    if not r.scores and r.note:
        print(r.note)
    figures = (f"threshold {r.threshold:.3f} ({r.threshold_rule}); "
               f"validation precision {v['precision']:.3f}, recall {v['recall']:.3f}, "
               f"{v['fa_per_hour']:.2f} false alarms/hour of negative audio "
               f"({v['fp']} of {v['negatives']} negative windows); "
               f"{r.epochs} epoch(s), {r.seconds:.0f} s")
    if r.rejected:
        new, cur = r.scores[0].new, r.scores[0].current
        print(f"not saved as {args.model_out}: {figures}")
        print(f"beepnet: train: the new model makes more mistakes on the held-out clips than "
              f"the one in use ({new.errors} vs {cur.errors}); kept {args.model_out}, wrote "
              f"the new one to {r.path} (--force replaces it anyway)", file=sys.stderr)
        return 3
    forced = (" (worse than the one in use: written because of --force)"
              if args.force and r.worse else "")
    print(f"saved {args.model_out}{forced}: {figures}")
    return 0


def cmd_evaluate(cfg: Config, args) -> int:
    from .training.evaluate import run

    return run(args.data_dir, args.eval_model, args.report_dir, args.threshold)


def cmd_enroll(cfg: Config, args) -> int:
    from .enroll.command import run

    return run(cfg, args)


def cmd_label(cfg: Config, args) -> int:
    from .label.terminal import cmd_label as label

    return label(cfg, args)


def cmd_history(cfg: Config, args) -> int:
    from .cycle.historycli import run

    return run(cfg, args)


def cmd_model(cfg: Config, args) -> int:
    from .model.modelfile import ModelFileError, read_model_file

    if args.model_command == "convert":
        try:
            from .training.torchmodel import convert_legacy
        except ImportError as e:
            print(f"beepnet: model convert needs {e.name or e} to read a .pt file: "
                  "pip install 'beepnet[train]'", file=sys.stderr)
            return 1
        try:
            info = convert_legacy(args.old, args.new)
        except (ModelFileError, OSError) as e:
            print(f"beepnet: {e}", file=sys.stderr)
            return 1
        print(f"wrote {args.new}: {', '.join(info.labels)}; threshold {info.threshold:.3f}")
        return 0
    try:
        mf = read_model_file(args.model_path)
    except ModelFileError as e:
        print(f"beepnet: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(mf.meta, indent=2, sort_keys=True))
        return 0
    m, arch = mf.meta, mf.arch
    weights = sum(v.size for v in mf.tensors.values())
    metrics = m.get("metrics") or {}
    print(f"{mf.path}\n"
          f"  architecture  {arch.kind}: {arch.to_dict()}, {weights:,} numbers\n"
          f"  labels        {', '.join(mf.labels)} (positive: beep)\n"
          f"  threshold     {mf.threshold:.3f}\n"
          f"  windows       {m.get('window_seconds')} s every {m.get('hop_seconds')} s at "
          f"{m.get('sample_rate')} Hz\n"
          f"  created       {m.get('created', '?')} by beepnet {m.get('beepnet_version', '?')}\n"
          f"  training data sha256 {m.get('data_sha256') or '?'}")
    if m.get("beep_pitches_hz"):
        print("  beep pitches  " + ", ".join(f"{f:.0f}" for f in m["beep_pitches_hz"])
              + " Hz (one machine's beep: a beep window must hold a tone at one of them)")
        if m.get("beep_min_notes", 1) > 1:
            print(f"  beep tune     a beep window must hold {m['beep_min_notes']} of its notes "
                  "(harmonics of a lower pitch are that note)")
        if m.get("beep_wobble_hz") is not None:
            print(f"  beep wobble   the pitch check allows {m['beep_wobble_hz']:g} Hz of wobble "
                  "(its beep's pitch shakes; a steady beep's: 5 Hz)")
        from .detectors.timbre import describe

        for f, ref in zip(m["beep_pitches_hz"], m.get("beep_timbre") or []):
            if ref is not None:
                print(f"  beep timbre   {f:.0f} Hz: {describe(ref)}")
    if metrics:
        print("  validation    " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in sorted(metrics.items()) if not isinstance(v, (dict, list))))
    return 0


COMMANDS = {"synth": cmd_synth, "train": cmd_train, "run": cmd_run,
            "notify-test": cmd_notify_test, "doctor": cmd_doctor, "detect": cmd_detect,
            "record": cmd_record, "config": cmd_config, "devices": cmd_devices,
            "monitor": cmd_monitor, "label": cmd_label, "evaluate": cmd_evaluate,
            "model": cmd_model, "enroll": cmd_enroll, "history": cmd_history,
            "mqtt": cmd_mqtt}

if __name__ == "__main__":
    sys.exit(main())
