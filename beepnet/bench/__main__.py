"""``python -m beepnet.bench [--quick] [--out bench/results]``: the benchmark (``make bench``).

Measures detection quality on real sounds and on generated streams, speed, training time and
the live daemon on this machine, prints one table (each figure beside its target) and writes
``<out>/<UTC time>-<host>.json`` and ``<out>/latest.md``, the real-sound table first. A missed
target is a result, never a failure; a part that cannot run here (no PulseAudio, no training
extra, no real recordings) says why in its rows or, for the real sounds, in one line. The exit
status is 1 only when a part failed with an error.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path

from . import cycles, live, machine, quality, realsound, speed, user
from .report import Row, table, write_results

log = logging.getLogger("beepnet.bench")

REPO = Path(__file__).resolve().parents[2]
PARTS = ("realsound", "quality", "speed", "training", "live", "cycles")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m beepnet.bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes and a few seconds of live audio (the test suite's smoke run)")
    p.add_argument("--out", default="bench/results", metavar="DIR",
                   help="where the JSON and latest.md go (default: bench/results)")
    p.add_argument("--only", action="append", choices=PARTS, metavar="PART",
                   help=f"run only this part (repeatable): {', '.join(PARTS)}")
    p.add_argument("--real", metavar="DIR",
                   help="the real recordings (python -m beepnet.training.realsounds fetch DIR; "
                   "default build/real, fetched when missing; --quick uses them only when "
                   "given)")
    p.add_argument("--work", metavar="DIR",
                   help="keep the generated data and models here (default: a temporary "
                   "directory, removed at the end)")
    return p.parse_args(argv)


def _logging() -> None:
    """Progress lines from the benchmark on stderr; the libraries' chatter stays quiet."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("bench %(asctime)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    _logging()
    parts = args.only or list(PARTS)
    q = args.quick
    settings = {"quick": q, "parts": parts,
                "realsound": realsound.QUICK if q else realsound.RealSettings(),
                "quality": quality.QUICK if q else quality.QualitySettings(),
                "speed": speed.QUICK if q else speed.SpeedSettings(),
                "training": user.QUICK if q else user.UserSettings(),
                "live": live.QUICK if q else live.LiveSettings(),
                "cycles": cycles.QUICK if q else cycles.EstimateSettings()}
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="beepnet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    info = machine.describe(REPO)
    log.info("beepnet benchmark%s on %s, %s cores; work directory %s",
             " (quick)" if q else "", info["cpu"], info["cores"], work)

    runners = {
        "realsound": lambda: _realsound(settings["realsound"], work, args.real, q),
        "quality": lambda: quality.run(settings["quality"], work),
        "speed": lambda: speed.detection(settings["speed"], work),
        "training": lambda: user.run(settings["training"], work),
        "live": lambda: live.run(settings["live"], work),
        "cycles": lambda: cycles.run(settings["cycles"]),
    }
    rows: list[Row] = []
    details: dict = {}
    failed = []
    try:
        for part in parts:
            started = time.monotonic()
            log.info("%s ...", part)
            try:
                part_rows, details[part] = runners[part]()
            except Exception as e:  # noqa: BLE001 - one broken part must not hide the others
                log.exception("%s failed", part)
                failed.append(part)
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                part_rows = [Row(part, "all measures", skipped=f"failed: {reason[:200]}")]
                details[part] = {"error": repr(e)}
            details[part]["part_seconds"] = time.monotonic() - started
            rows += part_rows
            log.info("%s done in %.0f s", part, time.monotonic() - started)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - t0
    info["load_end"] = machine.load_average()
    plain = {k: (asdict(v) if is_dataclass(v) else v) for k, v in settings.items()}
    js, md = write_results(args.out, rows, info, plain, details, seconds,
                           lead_md=_realsound_md(details))
    print(table(rows))
    print(f"\n{sum(r.ok is True for r in rows)} targets met, {sum(r.ok is False for r in rows)} "
          f"missed, {sum(bool(r.skipped) for r in rows)} skipped; {seconds / 60:.1f} min. "
          f"Results: {js}, {md}")
    return 1 if failed else 0


def _realsound(settings: realsound.RealSettings, work: Path, real: str | None, quick: bool
               ) -> tuple[list[Row], dict]:
    """The real-sound part; without the recordings (offline, or a quick run not given
    --real) no rows, and the reason for latest.md's one line."""
    if real is None and quick:
        return [], {"skipped": "the quick run uses real recordings only when given --real"}
    try:
        return realsound.run(settings, work, Path(real or "build/real"),
                             fetch_missing=not quick)
    except realsound.Unavailable as e:
        log.warning("real sounds: skipped: %s", e)
        return [], {"skipped": str(e)}


def _realsound_md(details: dict) -> str:
    """The real-sound table with the generated streams' figures beside, or why it is not
    there: the first thing in latest.md."""
    real = details.get("realsound")
    if real is None:
        return ""
    if "detectors" not in real:
        why = real.get("skipped") or f"failed: {real.get('error', '?')}"
        return f"Real sounds: not measured ({why})."
    least = realsound.caught_least(real)
    return "\n\n".join(["## Real sounds", realsound.wide_table(real, details.get("quality")),
                         realsound.summary(real) + (f" {least}" if least else "")])


if __name__ == "__main__":
    sys.exit(main())
