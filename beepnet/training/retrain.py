"""``beepnet train --feedback [DATA_DIR]``: learn the owner's corrections, put the result in use.

The steps (what is learned and how is `beepnet.training.corrections`):

1. the corrections under ``storage.dir/feedback`` (the service's state folder when run with
   sudo for /etc's config, as `beepnet enroll` does), counted before anything slow;
2. the start model: the model in use when it is a BeepNet model file, else the shipped one;
3. the new model must be able to be put in use (checked first: a training that cannot be is
   minutes lost): through the config file, or, where that is not ours to change (the
   service's /retrain), through the state folder (`beepnet.enroll.configfile.put_in_use`);
4. the replay clips: DATA_DIR, or `corrections.REPLAY_CLIPS` generated into a temporary
   folder beside the models (not /tmp: on a Pi that is often RAM);
5. training, the comparison with the model in use on the owner's held-out alerts and the
   other held-out clips, printed side by side; where the training extra is not installed
   (or with ``--head``), 4 and 5 are `beepnet.enroll.answers` instead: the model's beep
   output refitted in numpy, compared the same way;
6. when it is not worse: the new model put in use and a running daemon told to reload
   (SIGHUP), as `beepnet enroll` does.

Exit status: 0 the new model is in use, 1 no corrections, unusable data or files, 2 bad
options, 3 the new model was worse and the model in use stays.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from ..config import Config

log = logging.getLogger(__name__)

WORSE = 3


def say(text: str) -> None:
    print(text, flush=True)


def fail(text: str, status: int = 1) -> int:
    print(f"beepnet: train: {text}", file=sys.stderr)
    return status


def start_model(cfg: Config) -> Path:
    """The model to fine-tune: the one in use when it is a readable BeepNet, else the
    shipped one (ModelFileError when there is none)."""
    from ..model.arch import NetConfig
    from ..model.modelfile import ModelFileError, read_header
    from ..model.preflight import find_default_model, in_use_path

    path = in_use_path(cfg.detector)
    if path is not None:
        try:
            if isinstance(read_header(path).arch, NetConfig):
                return path
            log.info("%s is not a BeepNet: starting from the shipped model", path)
        except ModelFileError as e:
            log.warning("the model in use cannot be read (%s): starting from the shipped "
                        "model", e)
    return find_default_model()


def write_report(root: Path, status: str, model: Path, r, counts: dict) -> None:
    """The outcome as JSON beside the corrections, for /retrain (a failure to write it is
    only logged)."""
    from ..fsutil import write_atomic
    from ..notify.feedback import RETRAIN_REPORT

    blob = {"time": time.time(), "status": status, "model": str(model),
            "seconds": round(r.seconds, 1), "threshold": r.threshold,
            "corrections": {k: {"windows": w, "alerts": a} for k, (w, a) in counts.items()},
            "comparisons": [{"title": c.title, "tolerance": c.tolerance,
                             "new": asdict(c.new), "current": asdict(c.current)}
                            for c in r.scores or []]}
    try:
        write_atomic(root / RETRAIN_REPORT, (json.dumps(blob, indent=1) + "\n").encode())
    except OSError as e:
        log.warning("cannot write %s: %s", root / RETRAIN_REPORT, e.strerror or e)


def run(cfg: Config, args) -> int:
    from ..config import state_dir
    from ..enroll import answers
    from ..enroll.configfile import config_target, put_in_use_problem
    from ..model.modelfile import ModelFileError
    from ..notify.feedback import describe, summary
    from ..notify.retrain import missing_train_modules
    from . import corrections

    if args.init:
        return fail("--feedback starts from the model in use: it takes no --init", 2)
    if args.arch != "beepnet":
        return fail("--feedback fine-tunes a BeepNet: it takes no --arch", 2)
    if args.head and args.data_dir:
        return fail("--head learns from your answers alone: it takes no DATA_DIR", 2)
    missing = missing_train_modules()
    head = bool(args.head or missing)
    epochs = args.epochs or cfg.retrain.epochs
    root = state_dir(cfg) / "feedback"
    counts = summary(root)
    if not counts:
        return fail(f"no corrections in {root} yet: press ✅ That was it or ❌ Not the beep "
                    "under alerts, or label /missed's clips with `beepnet label --unsure`")
    say(f"corrections in {root}: {describe(counts)}")
    target = config_target(cfg)
    problem = put_in_use_problem(cfg)
    if problem:
        return fail(problem)
    try:
        start = start_model(cfg)
    except ModelFileError as e:
        return fail(str(e))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    models = state_dir(cfg) / "models"
    out = Path(args.model_out).expanduser() if args.model_out else \
        models / f"retrained-{stamp}.safetensors"
    if head:
        if missing and not args.head:
            say(f"the training extra is not installed here ({', '.join(missing)} missing): "
                "only the model's beep output is refitted, in numpy (pip install "
                "'beepnet[train]' to fine-tune all of it)")
        say(f"refitting the beep output of {start.name} on your answers ...")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            r = answers.learn(start, root, out, cfg.detector, force=args.force,
                              seed=args.seed)
        except (corrections.CorrectionsError, ModelFileError) as e:
            return fail(str(e))
        except OSError as e:
            return fail(f"{e.filename or out}: {e.strerror or e}")
        return _finish(cfg, r, root, out, target, counts,
                       f"beep output refitted in {r.seconds:.0f} s")
    from .train import TrainError, train

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".replay-", dir=out.parent) as tmp:
            if args.data_dir or cfg.retrain.data_dir:
                replay = Path(args.data_dir or cfg.retrain.data_dir).expanduser()
            else:
                say(f"generating {corrections.REPLAY_CLIPS} clips to learn beside them ...")
                replay = corrections.make_replay(Path(tmp) / "replay")
            say(f"fine-tuning {start.name} ({epochs} epochs at most) ...")
            r = train(replay, out, epochs=epochs, seed=args.seed, threads=args.threads,
                      init=str(start), lr=args.lr, current=cfg.detector, force=args.force,
                      feedback=root, patience=3)
    except (TrainError, ModelFileError) as e:
        return fail(str(e))
    except OSError as e:  # a folder that cannot be read, a model that cannot be written
        return fail(f"{e.filename or out}: {e.strerror or e}")
    except ImportError as e:  # pandas, scikit-learn, tqdm come with the [train] extra
        return fail(f"needs {e.name or e}: pip install 'beepnet[train]'")
    return _finish(cfg, r, root, out, target, counts,
                   f"{r.epochs} epoch(s), {r.seconds:.0f} s")


def _finish(cfg: Config, r, root: Path, out: Path, target: Path, counts: dict,
            how_long: str) -> int:
    """Print the comparisons; put the new model in use unless it was worse."""
    from ..model.compare import side_by_side

    if r.machine is not None:
        say(r.machine.describe())
    for c in r.scores or []:
        say(side_by_side(c.new, c.current, c.title))
    if r.note:
        say(r.note)
    if r.owner and not r.owner["held_out_alerts"]:
        say("none of your alerts could be held out (one alert of each answer so far): the "
            "comparison is on the other clips only")
    learned = f"{how_long}; threshold {r.threshold:.3f} ({r.threshold_rule})"
    if r.rejected:
        worse = [c for c in r.scores if c.worse]
        print("beepnet: train: kept the model in use: the new one makes more mistakes on "
              + "; ".join(f"{c.title} ({c.new.errors} against {c.current.errors}"
                          + (f", {c.tolerance} allowed" if c.tolerance else "") + ")"
                          for c in worse)
              + f". It is saved as {r.path} (--force puts it in use anyway).",
              file=sys.stderr)
        write_report(root, "worse", Path(r.path), r, counts)
        return WORSE
    from ..daemon.running import tell_daemon
    from ..enroll.configfile import ConfigFileError, put_in_use

    try:
        out.chmod(0o644)  # the service's own user reads it
        how = put_in_use(cfg, str(out), "beepnet train --feedback")
    except OSError as e:
        return fail(f"cannot make {out} readable: {e.strerror or e}")
    except ConfigFileError as e:
        return fail(f"{e} (the new model is saved as {out})")
    write_report(root, "in use", out, r, counts)
    forced = " (worse than the one in use: put in use because of --force)" if r.worse else ""
    say(f"saved {out}{forced}: {learned}")
    say(how)
    say(tell_daemon(cfg, target, "the new model"))
    say("to switch back to the shipped model: beepnet enroll --use-shipped"
        + (f" --config {target}" if cfg.origin.path else ""))
    return 0
