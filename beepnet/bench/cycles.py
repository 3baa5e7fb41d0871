"""The time-left estimate (`beepnet.cycle.estimate`) on generated washer timelines.

A washer programme here is the sequence of phases the daemon would log: drum sound
("washing"), quiet ("pause": soaking, heating, a quiet drain) and "spinning". Each run of a
programme jitters every step by up to ± 10 % (seeded), so no two runs are alike and the
jitter adds up over a cycle as it does on a real machine (load, water temperature).

A trial draws a household (one programme, or three mixed), its history (past cycles, newest
first, in a random order of programmes), one more run of one of its programmes, and asks for
the time left at a fraction of that run, with the phases the daemon would have logged by
then. The error is |estimated total - true total| as a share of the true total; a trial with
no estimate counts as an infinite error. Beside it, the baselines: the median of the past
durations (what a smart-plug script starts from) and the median of those still possible
(longer than the time elapsed). One row repeats the mixed household with phases misheard
(pauses not heard, washing heard as a spin), in the past cycles and the running one alike.
Pure Python, a few seconds.
"""

from __future__ import annotations

import logging
import random
import statistics
import time
from dataclasses import asdict, dataclass

from ..cycle.estimate import PastCycle, estimate
from ..cycle.events import PAUSE, Phase
from .report import CYCLE_ESTIMATE_ERROR, Row

log = logging.getLogger(__name__)

SECTION = "cycles"
W, P, S = "washing", PAUSE, "spinning"

# Front-loader programmes as the daemon hears them, minutes per step. Rests shorter than a
# minute (the drum turning one way, then the other) are part of a step, as in the daemon.
PROGRAMMES: dict[str, tuple[tuple[str, float], ...]] = {
    "quick 30": ((W, 12), (P, 1.5), (S, 2.5), (W, 5), (P, 1.5), (S, 5), (P, 1.5)),
    "synthetics 55": ((W, 21), (P, 2), (S, 2), (W, 8), (P, 1.5), (S, 2), (W, 8), (P, 1.5),
                      (S, 6), (P, 2)),
    "cotton 40": ((W, 4), (P, 2), (W, 34), (P, 2), (S, 3), (W, 9), (P, 1.5), (S, 3), (W, 9),
                  (P, 1.5), (S, 3), (W, 8), (P, 1.5), (S, 7), (P, 1.5)),
    "cotton 60": ((W, 4), (P, 2), (W, 22), (P, 9), (W, 25), (P, 2), (S, 3), (W, 9),
                  (P, 1.5), (S, 3), (W, 9), (P, 1.5), (S, 3), (W, 8), (P, 1.5), (S, 12),
                  (P, 2)),
    "eco 40-60": ((W, 5), (P, 10), (W, 30), (P, 12), (W, 45), (P, 2), (S, 4), (W, 12),
                  (P, 2), (S, 4), (W, 12), (P, 2), (S, 4), (W, 10), (P, 2), (S, 12),
                  (P, 3)),
}


@dataclass(frozen=True)
class EstimateSettings:
    trials: int = 400
    """Per row; each programme is the running one in as many trials."""
    past_one: int = 5
    """Past cycles of the one programme (the issue's target)."""
    programmes_mixed: int = 3
    past_mixed: int = 15
    jitter: float = 0.10
    mishear: float = 0.10
    """In the robustness row: the share of pauses not heard, and of washing phases with a
    stretch misheard as a spin, in every cycle, past and running."""
    seed: int = 16
    timing_past: int = 50
    """Past cycles in the timing row: the most the daemon keeps."""


QUICK = EstimateSettings(trials=60)


def run_programme(steps, rng: random.Random, jitter: float, mishear: float = 0.0
                  ) -> PastCycle:
    """One run: every step jittered, adjacent steps of one kind merged as the daemon would
    log them; with ``mishear``, some pauses go unheard (the sound before them carries on)
    and some washing has a 1.5-min stretch heard as a spin."""
    stretches: list[tuple[str, float]] = []
    for i, (name, minutes) in enumerate(steps):
        seconds = minutes * 60 * rng.uniform(1 - jitter, 1 + jitter)
        if name == PAUSE and 0 < i < len(steps) - 1 and rng.random() < mishear:
            name = stretches[-1][0]
        if name == W and seconds > 300 and rng.random() < mishear:
            half = (seconds - 90) / 2
            stretches += [(W, half), (S, 90.0), (W, half)]
        else:
            stretches.append((name, seconds))
    return logged(stretches)


def logged(stretches: list[tuple[str, float]]) -> PastCycle:
    """(phase name, seconds) in order, as the daemon logs them: adjacent ones of one name
    merged into one phase."""
    phases: list[Phase] = []
    t = 0.0
    for name, seconds in stretches:
        if phases and phases[-1].name == name:
            phases[-1] = Phase(name, phases[-1].start, t + seconds)
        else:
            phases.append(Phase(name, t, t + seconds))
        t += seconds
    return PastCycle(t, tuple(phases))


def so_far(cycle: PastCycle, elapsed: float) -> tuple[Phase, ...]:
    """The phases the daemon has logged ``elapsed`` seconds in: the sound phase in progress
    up to now, a pause in progress not at all (it is listed when the sound resumes)."""
    out = []
    for p in cycle.phases:
        if p.start >= elapsed:
            break
        if p.end <= elapsed:
            out.append(p)
        elif p.name != PAUSE:
            out.append(Phase(p.name, p.start, elapsed))
    return tuple(out)


def _trial(rng: random.Random, household: list[str], past_n: int, at: float,
           jitter: float, mishear: float, running: str) -> tuple[float, float, float, int]:
    """(error of the estimate, of the median of the past durations, of the median of those
    still possible, alike count; 0 for no estimate)."""
    per = past_n // len(household)
    kinds = [household[i % len(household)] for i in range(per * len(household))]
    rng.shuffle(kinds)
    past = [run_programme(PROGRAMMES[k], rng, jitter, mishear) for k in kinds]
    now = run_programme(PROGRAMMES[running], rng, jitter, mishear)
    elapsed = at * now.duration
    e = estimate(past, elapsed, so_far(now, elapsed))
    base = statistics.median(p.duration for p in past)
    possible = statistics.median([p.duration for p in past if p.duration >= elapsed]
                                 or [elapsed])
    err = abs(e.total - now.duration) / now.duration if e else float("inf")
    return (err, abs(base - now.duration) / now.duration,
            abs(possible - now.duration) / now.duration, e.basis if e else 0)


def measure(s: EstimateSettings, mixed: int, past_n: int, at: float, seed: int,
            mishear: float = 0.0) -> dict:
    """``s.trials`` trials of households of ``mixed`` programmes with ``past_n`` past cycles,
    asked at ``at`` of the running cycle; errors in % of the cycle's length."""
    rng = random.Random(seed)
    names = list(PROGRAMMES)
    errors, baseline, possible, none = [], [], [], 0
    by_programme: dict[str, list[float]] = {n: [] for n in names}
    for k in range(s.trials):
        running = names[k % len(names)]
        others = [n for n in names if n != running]
        household = [running] + rng.sample(others, mixed - 1)
        err, base, still, basis = _trial(rng, household, past_n, at, s.jitter, mishear,
                                         running)
        errors.append(err)
        baseline.append(base)
        possible.append(still)
        by_programme[running].append(err)
        none += basis == 0
    def pct(xs: list[float]) -> float:
        return 100 * statistics.median(xs)

    return {"median_error_pct": pct(errors), "baseline_pct": pct(baseline),
            "possible_pct": pct(possible),
            "p90_error_pct": 100 * sorted(errors)[int(0.9 * len(errors))],
            "no_estimate": none, "trials": s.trials,
            "by_programme_pct": {n: pct(v) for n, v in by_programme.items()}}


def _timing(s: EstimateSettings) -> float:
    """Milliseconds per call with ``timing_past`` past cycles of mixed programmes, half way
    through a long one (the most landmarks to align)."""
    rng = random.Random(s.seed)
    names = list(PROGRAMMES)
    past = [run_programme(PROGRAMMES[rng.choice(names)], rng, s.jitter)
            for _ in range(s.timing_past)]
    now = run_programme(PROGRAMMES["eco 40-60"], rng, s.jitter)
    phases = so_far(now, now.duration / 2)
    calls, t0 = 0, time.perf_counter()
    while calls < 5 or time.perf_counter() - t0 < 0.3:
        estimate(past, now.duration / 2, phases)
        calls += 1
    return 1000 * (time.perf_counter() - t0) / calls


def run(settings: EstimateSettings) -> tuple[list[Row], dict]:
    """The rows: the issue's target (one programme), a mixed household at half and at 3/4,
    the same at half with misheard phases, and the time one estimate takes."""
    s = settings
    details: dict = {"settings": asdict(s), "programmes_minutes": {
        k: sum(m for _, m in v) for k, v in PROGRAMMES.items()}}
    mixed = f"{s.programmes_mixed} programmes mixed, {s.past_mixed} past cycles"
    cases = [
        ("one", 1, s.past_one, 0.5, 0.0, CYCLE_ESTIMATE_ERROR,
         f"one programme, {s.past_one} past cycles, at half the cycle"),
        ("mixed_half", s.programmes_mixed, s.past_mixed, 0.5, 0.0, None, f"{mixed}, at half"),
        ("mixed_three_quarters", s.programmes_mixed, s.past_mixed, 0.75, 0.0, None,
         f"{mixed}, at 3/4"),
        ("mixed_half_misheard", s.programmes_mixed, s.past_mixed, 0.5, s.mishear, None,
         f"{mixed}, at half, {100 * s.mishear:.0f} % of phases misheard"),
    ]
    rows = []
    for i, (key, programmes, past_n, at, mishear, target, label) in enumerate(cases):
        m = measure(s, programmes, past_n, at, s.seed + i, mishear)
        details[key] = m
        log.info("cycles: %s: %.1f %% (median of past durations %.1f %%)", label,
                 m["median_error_pct"], m["baseline_pct"])
        rows.append(Row(
            SECTION, f"time-left error, {label}", m["median_error_pct"], "%", target,
            fmt=".1f",
            note=(f"median of {m['trials']} trials over {len(PROGRAMMES)} programmes, 90th "
                  f"percentile {m['p90_error_pct']:.0f} %, no estimate in "
                  f"{m['no_estimate']}; median of the past durations: "
                  f"{m['baseline_pct']:.1f} %, of those still possible: "
                  f"{m['possible_pct']:.1f} %")))
    ms = _timing(s)
    details["ms_per_call"] = ms
    rows.append(Row(SECTION, f"time-left estimate, {s.timing_past} past cycles", ms, "ms",
                    fmt=".1f", note="one call on this machine; the daemon makes one a minute"))
    return rows, details
